//! The `/sim` control endpoints a devnet user drives with curl.

use serde_json::{Value, json};

use crate::{dec, fake_issuer, sim};

#[tokio::test]
async fn control_endpoints_drive_the_simulator() {
    let sim = sim().await;
    let issuer = fake_issuer::spawn().await;
    sim.set_issuer_base_url(issuer.url.clone());
    let http = reqwest::Client::new();
    let url = |tail: &str| format!("{}sim/{tail}", sim.base_url());

    let created: Value = http
        .post(url("aps"))
        .json(&json!({"email": "curl@x.com", "account_number": "A1",
                      "positions": {"AAPL": "4"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ap = created["ap_id"].as_str().unwrap().to_owned();

    let linked: Value = http
        .post(url(&format!("aps/{ap}/link")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(linked["client_id"], "issuer-id-curl@x.com");

    let minted = http
        .post(url(&format!("aps/{ap}/mint")))
        .json(
            &json!({"underlying": "AAPL", "token": "tAAPL", "network": "base",
                      "qty": "1.5", "wallet": "0x44"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 200);
    let minted: Value = minted.json().await.unwrap();
    assert_eq!(minted["issuer_response_status"], 200);

    let shown: Value = http
        .get(url(&format!("aps/{ap}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["email"], "curl@x.com");
    assert_eq!(shown["link"]["client_id"], "issuer-id-curl@x.com");

    let requests: Value = http
        .get(url("requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(requests.as_array().unwrap().len(), 1);
    assert_eq!(requests[0]["type"], "mint");

    let injected = http
        .post(url("faults"))
        .json(&json!({"kind": "broker_status",
                      "args": {"endpoint": "list_requests", "status": 503, "times": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(injected.status(), 200);
    let bad_fault = http
        .post(url("faults"))
        .json(&json!({"kind": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_fault.status(), 400);
    let listed = crate::broker(&sim, reqwest::Method::GET, "requests")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 503);
    assert_eq!(
        http.delete(url("faults")).send().await.unwrap().status(),
        200
    );

    let hits: Value = http
        .get(url("hits"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hits["list_requests"], 1);
    assert_eq!(hits["issuer_mint"], 1);
    assert_eq!(hits["issuer_connect"], 1);

    // The background journal lands first, then the override wins.
    assert!(
        sim.wait_for(|s| s.issuer_position("AAPL") == dec("1.5"), crate::WAIT)
            .await
    );
    let set = http
        .put(url("issuer/positions/AAPL"))
        .json(&json!({"qty": "7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(sim.issuer_position("TSLA"), dec("0"));
    assert_eq!(sim.issuer_position("AAPL"), dec("7"));
    let issuer_view: Value = http
        .get(url("issuer"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(issuer_view["positions"]["AAPL"], "7");
    let unknown = http
        .get(url(&format!("aps/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    sim.shutdown().await;
    issuer.stop();
}
