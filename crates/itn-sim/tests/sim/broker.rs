//! The Broker API endpoints the issuer calls.

use itn_sim::{
    Endpoint, Fault, FeeQuirk, InitialRedeemStatus, MintSpec, Quirks,
    RequestStatus, SimConfig, SimHandle,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

use crate::{
    WAIT, broker, dec, fake_issuer, json_of, linked_ap, sim, sim_with,
    unauthenticated,
};

fn redeem_body(client_id: &str, issuer_request_id: &str, qty: &str) -> Value {
    json!({
        "issuer_request_id": issuer_request_id,
        "underlying_symbol": "AAPL",
        "token_symbol": "tAAPL",
        "qty": qty,
        "network": "base",
        "wallet_address": "0x1111111111111111111111111111111111111111",
        "tx_hash": "0xabc",
        "client_external_account_id": client_id,
    })
}

async fn post_redeem(
    sim: &SimHandle,
    body: &Value,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = broker(sim, Method::POST, "callback/redeem").json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

/// A simulator with a fake issuer, one linked AP and issuer shares.
async fn redeem_setup() -> (
    itn_sim::SimHandle,
    fake_issuer::FakeIssuer,
    itn_sim::ApId,
    String,
) {
    let sim = sim().await;
    let issuer = fake_issuer::spawn().await;
    sim.set_issuer_base_url(issuer.url.clone());
    let (ap, client_id) = linked_ap(&sim, "ap@x.com", &[]).await;
    sim.set_issuer_position("AAPL", dec("10"));
    (sim, issuer, ap, client_id)
}

#[tokio::test]
async fn auth_missing_is_401_and_wrong_is_403() {
    let sim = sim_with(SimConfig {
        broker_bearer_token: Some("tok".into()),
        ..SimConfig::default()
    })
    .await;
    let (status, body) = json_of(
        unauthenticated(&sim, Method::GET, "requests")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({"code": 40_110_000, "message": "unauthorized"}));

    let wrong = unauthenticated(&sim, Method::GET, "requests")
        .basic_auth("nope", Some("bad"))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(wrong).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], 40_310_000);

    let key = sim.config().broker_key_id.clone();
    let secret = sim.config().broker_secret.clone();
    let apca_only = unauthenticated(&sim, Method::GET, "requests")
        .header("APCA-API-KEY-ID", &key)
        .header("APCA-API-SECRET-KEY", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(apca_only.status(), 200);
    let half_apca = unauthenticated(&sim, Method::GET, "requests")
        .header("APCA-API-KEY-ID", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(half_apca.status(), 401);
    let basic_ok_apca_bad = unauthenticated(&sim, Method::GET, "requests")
        .basic_auth(&key, Some(&secret))
        .header("APCA-API-KEY-ID", &key)
        .header("APCA-API-SECRET-KEY", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(basic_ok_apca_bad.status(), 403);
    let bearer = unauthenticated(&sim, Method::GET, "requests")
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let bad_bearer = unauthenticated(&sim, Method::GET, "requests")
        .bearer_auth("other")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_bearer.status(), 403);

    // Another account id than the issuer's own is forbidden.
    let other = reqwest::Client::new()
        .get(format!(
            "{}v1/accounts/{}/tokenization/requests",
            sim.base_url(),
            uuid::Uuid::new_v4()
        ))
        .basic_auth(&key, Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);

    assert_eq!(sim.hits(Endpoint::ListRequests), 8);
    let last = sim.last_request(Endpoint::ListRequests).unwrap();
    assert_eq!(last.method, "GET");
    assert!(last.header("authorization").is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn mint_callback_validates_input() {
    let sim = sim().await;
    let (status, body) = json_of(
        broker(&sim, Method::POST, "callback/mint")
            .json(&json!({"client_external_account_id": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({
            "code": 42_210_001,
            "message": "tokenization_request_id is required, tx_hash is required"
        })
    );

    let not_uuid = broker(&sim, Method::POST, "callback/mint")
        .json(
            &json!({"tokenization_request_id": "123-abc", "tx_hash": "0x1",
                      "client_external_account_id": "x"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(not_uuid.status(), 422);

    let both_ids = broker(&sim, Method::POST, "callback/mint")
        .json(&json!({"tokenization_request_id": uuid::Uuid::new_v4(),
                      "tx_hash": "0x1", "client_external_account_id": "x",
                      "client_account_id": uuid::Uuid::new_v4()}))
        .send()
        .await
        .unwrap();
    assert_eq!(both_ids.status(), 422);

    let no_id = broker(&sim, Method::POST, "callback/mint")
        .json(&json!({"tokenization_request_id": uuid::Uuid::new_v4(),
                      "tx_hash": "0x1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_id.status(), 422);

    let (status, body) = json_of(
        broker(&sim, Method::POST, "callback/mint")
            .json(&json!({"tokenization_request_id": uuid::Uuid::new_v4(),
                          "tx_hash": "0x1", "client_external_account_id": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], 40_410_000);

    let garbage = broker(&sim, Method::POST, "callback/mint")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(sim.hits(Endpoint::MintCallback), 6);
    sim.shutdown().await;
}

fn mint_spec(qty: &str) -> MintSpec {
    MintSpec {
        underlying: "AAPL".into(),
        token: "tAAPL".into(),
        network: "base".into(),
        qty: dec(qty),
        wallet: "0x2222222222222222222222222222222222222222".into(),
    }
}

#[tokio::test]
async fn mint_callback_completes_a_confirmed_mint_once() {
    let sim = sim().await;
    let issuer = fake_issuer::spawn().await;
    sim.set_issuer_base_url(issuer.url.clone());
    let (ap, client_id) = linked_ap(&sim, "ap@x.com", &[("AAPL", "5")]).await;
    let outcome = sim.request_mint(ap, mint_spec("2.5")).await.unwrap();
    let id = outcome.tokenization_request_id;
    assert!(
        sim.wait_for(|s| !s.confirm_deliveries(id).is_empty(), WAIT)
            .await
    );
    assert_eq!(sim.position(ap, "AAPL"), dec("2.5"));
    assert_eq!(sim.issuer_position("AAPL"), dec("2.5"));
    assert_eq!(sim.request(id).unwrap().status, RequestStatus::Pending);

    let callback = json!({
        "tokenization_request_id": id,
        "tx_hash": "0xmint",
        "client_id": client_id,
        "wallet_address": "0x2222222222222222222222222222222222222222",
        "network": "base",
    });
    let (status, body) = json_of(
        broker(&sim, Method::POST, "callback/mint")
            .json(&callback)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "completed");
    assert_eq!(body["tx_hash"], "0xmint");
    assert_eq!(body["type"], "mint");
    assert_eq!(body["qty"], "2.5");
    assert_eq!(body["tokenization_request_id"], id.to_string());
    assert_eq!(
        body["issuer_request_id"],
        outcome.issuer_request_id.unwrap()
    );
    assert_eq!(sim.request(id).unwrap().status, RequestStatus::Completed);

    // A repeat is answered with the same record and recorded.
    let (status, again) = json_of(
        broker(&sim, Method::POST, "callback/mint")
            .json(&callback)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again, body);
    assert_eq!(sim.mint_callbacks(id).len(), 2);
    assert_eq!(sim.mint_callbacks(id)[0], callback);

    // Naming another AP than the request's is refused.
    let wrong_ap = broker(&sim, Method::POST, "callback/mint")
        .json(&json!({"tokenization_request_id": id, "tx_hash": "0xmint",
                      "client_external_account_id": "someone-else"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_ap.status(), 422);
    assert_eq!(sim.mint_callbacks(id).len(), 2);
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn mint_callback_before_confirmation_or_after_rejection_is_422() {
    let sim = sim_with(SimConfig {
        journal_delay: Duration::from_millis(400),
        ..SimConfig::default()
    })
    .await;
    let issuer = fake_issuer::spawn().await;
    sim.set_issuer_base_url(issuer.url.clone());
    let (ap, client_id) = linked_ap(&sim, "ap@x.com", &[("AAPL", "5")]).await;
    let early = sim.request_mint(ap, mint_spec("1")).await.unwrap();
    let resp = broker(&sim, Method::POST, "callback/mint")
        .json(&json!({"tokenization_request_id": early.tokenization_request_id,
                      "tx_hash": "0x1", "client_external_account_id": client_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);

    sim.inject(Fault::RejectNextMint);
    let rejected = sim.request_mint(ap, mint_spec("1")).await.unwrap();
    let id = rejected.tokenization_request_id;
    assert!(
        sim.wait_for(|s| !s.confirm_deliveries(id).is_empty(), WAIT)
            .await
    );
    let resp = broker(&sim, Method::POST, "callback/mint")
        .json(&json!({"tokenization_request_id": id,
                      "tx_hash": "0x1", "client_external_account_id": client_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert!(sim.mint_callbacks(id).is_empty());
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn injected_callback_faults_are_counted() {
    let sim = sim().await;
    let issuer = fake_issuer::spawn().await;
    sim.set_issuer_base_url(issuer.url.clone());
    let (ap, client_id) = linked_ap(&sim, "ap@x.com", &[("AAPL", "5")]).await;
    let id = sim
        .request_mint(ap, mint_spec("1"))
        .await
        .unwrap()
        .tokenization_request_id;
    assert!(
        sim.wait_for(|s| !s.confirm_deliveries(id).is_empty(), WAIT)
            .await
    );
    sim.inject(Fault::BrokerStatus {
        endpoint: Endpoint::MintCallback,
        status: 500,
        times: 2,
    });
    let callback = json!({"tokenization_request_id": id, "tx_hash": "0x1",
                          "client_external_account_id": client_id});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = broker(&sim, Method::POST, "callback/mint")
            .json(&callback)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [500, 500, 200]);
    assert_eq!(sim.hits(Endpoint::MintCallback), 3);
    assert_eq!(sim.mint_callbacks(id).len(), 1);
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn redeem_settles_pending_to_completed_on_both_paths() {
    let (sim, issuer, ap, client_id) = redeem_setup().await;
    let (status, body) = json_of(
        post_redeem(&sim, &redeem_body(&client_id, "red-1", "1.5"), None).await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "pending");
    assert_eq!(body["type"], "redeem");
    assert_eq!(body["issuer_request_id"], "red-1");
    assert_eq!(body["qty"], "1.5");
    assert_eq!(body["tx_hash"], "0xabc");
    assert_eq!(body["issuer"], "st0x");
    let id: uuid::Uuid = body["tokenization_request_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(id.get_version_num(), 4);
    // Nothing moves before settlement.
    assert_eq!(sim.issuer_position("AAPL"), dec("10"));
    assert!(
        sim.wait_for(
            |s| s.request(id).unwrap().status == RequestStatus::Completed,
            WAIT
        )
        .await
    );
    assert_eq!(sim.issuer_position("AAPL"), dec("8.5"));
    assert_eq!(sim.position(ap, "AAPL"), dec("1.5"));

    // The seed path works too.
    let legacy = broker(&sim, Method::POST, "redeem")
        .json(&redeem_body(&client_id, "red-2", "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.status(), 200);
    assert_eq!(sim.redeem_calls().len(), 2);
    assert_eq!(
        sim.redeem_calls()[1].json().unwrap()["issuer_request_id"],
        "red-2"
    );
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn redeem_idempotency_key_rules() {
    let (sim, issuer, _ap, client_id) = redeem_setup().await;
    let body = redeem_body(&client_id, "red-1", "1");
    let first = post_redeem(&sim, &body, Some("key-1")).await;
    assert!(first.headers().get("Idempotent-Replayed").is_none());
    let (status, original) = json_of(first).await;
    assert_eq!(status, 200);

    let replay = post_redeem(&sim, &body, Some("key-1")).await;
    assert_eq!(replay.headers().get("Idempotent-Replayed").unwrap(), "true");
    let (status, replayed) = json_of(replay).await;
    assert_eq!(status, 200);
    assert_eq!(replayed, original);
    assert_eq!(sim.requests().len(), 1);

    let changed = redeem_body(&client_id, "red-1", "2");
    let (status, _) =
        json_of(post_redeem(&sim, &changed, Some("key-1")).await).await;
    assert_eq!(status, 422);

    // Without the key, reusing issuer_request_id is 422.
    let (status, reused) = json_of(post_redeem(&sim, &body, None).await).await;
    assert_eq!(status, 422);
    assert_eq!(reused["message"], "issuer_request_id already exists");

    for bad in ["has space", "", &"k".repeat(129), "caf\u{e9}"] {
        let resp = broker(&sim, Method::POST, "callback/redeem")
            .json(&redeem_body(&client_id, "red-x", "1"))
            .header("Idempotency-Key", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "key {bad:?}");
    }

    // A rejected original replays as 400.
    let too_much = redeem_body(&client_id, "red-2", "100");
    let (status, rejected) =
        json_of(post_redeem(&sim, &too_much, Some("key-2")).await).await;
    assert_eq!(status, 400);
    let replay = post_redeem(&sim, &too_much, Some("key-2")).await;
    assert_eq!(replay.status(), 400);
    assert_eq!(replay.headers().get("Idempotent-Replayed").unwrap(), "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), rejected);
    assert_eq!(sim.requests().len(), 1);
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn redeem_refuses_bad_quantities_and_unknown_aps() {
    let (sim, issuer, _ap, client_id) = redeem_setup().await;
    let (status, body) = json_of(
        post_redeem(&sim, &redeem_body(&client_id, "r1", "11"), None).await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"code": 40_010_000, "message": "insufficient quantity"})
    );

    let (status, _) = json_of(
        post_redeem(&sim, &redeem_body(&client_id, "r2", "1.0000000001"), None)
            .await,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = json_of(
        post_redeem(&sim, &redeem_body(&client_id, "r3", "0"), None).await,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = json_of(
        post_redeem(&sim, &redeem_body("stranger", "r4", "1"), None).await,
    )
    .await;
    assert_eq!(status, 400);

    let mut missing = redeem_body(&client_id, "r5", "1");
    missing.as_object_mut().unwrap().remove("tx_hash");
    missing.as_object_mut().unwrap().remove("issuer_request_id");
    let (status, body) = json_of(post_redeem(&sim, &missing, None).await).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["message"],
        "issuer_request_id is required, tx_hash is required"
    );

    let mut bad_network = redeem_body(&client_id, "r6", "1");
    bad_network["network"] = json!("dogechain");
    assert_eq!(post_redeem(&sim, &bad_network, None).await.status(), 422);

    // Pending redeems reserve the issuer's shares.
    assert_eq!(
        post_redeem(&sim, &redeem_body(&client_id, "r7", "6"), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        post_redeem(&sim, &redeem_body(&client_id, "r8", "6"), None)
            .await
            .status(),
        400
    );
    assert_eq!(sim.requests().len(), 1);
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn redeem_rejection_and_status_faults() {
    let (sim, issuer, ap, client_id) = redeem_setup().await;
    sim.inject(Fault::RejectNextRedeem);
    let (_, body) = json_of(
        post_redeem(&sim, &redeem_body(&client_id, "r1", "1"), None).await,
    )
    .await;
    assert_eq!(body["status"], "pending");
    let id: uuid::Uuid = body["tokenization_request_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        sim.wait_for(
            |s| s.request(id).unwrap().status == RequestStatus::Rejected,
            WAIT
        )
        .await
    );
    assert_eq!(sim.issuer_position("AAPL"), dec("10"));
    assert_eq!(sim.position(ap, "AAPL"), dec("0"));

    sim.inject(Fault::RedeemStatusOn200(InitialRedeemStatus::Completed));
    let (_, body) = json_of(
        post_redeem(&sim, &redeem_body(&client_id, "r2", "1"), None).await,
    )
    .await;
    assert_eq!(body["status"], "completed");
    assert_eq!(sim.issuer_position("AAPL"), dec("9"));
    assert_eq!(sim.position(ap, "AAPL"), dec("1"));
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn dropped_redeem_answer_is_applied_and_replayable() {
    let (sim, issuer, _ap, client_id) = redeem_setup().await;
    sim.inject(Fault::DropResponse {
        endpoint: Endpoint::Redeem,
        times: 1,
    });
    let body = redeem_body(&client_id, "r1", "1");
    let lost = post_redeem(&sim, &body, Some("k")).await;
    assert_eq!(lost.status(), 504);
    assert_eq!(sim.requests().len(), 1);
    let replay = post_redeem(&sim, &body, Some("k")).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers().get("Idempotent-Replayed").unwrap(), "true");
    let (_, replayed) = json_of(replay).await;
    assert_eq!(
        replayed["tokenization_request_id"],
        sim.requests()[0].tokenization_request_id.to_string()
    );
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn keyed_get_and_lookup_by_issuer_request_id() {
    let (sim, issuer, _ap, client_id) = redeem_setup().await;
    let (_, created) = json_of(
        post_redeem(&sim, &redeem_body(&client_id, "0xdetect", "1"), None)
            .await,
    )
    .await;
    let id = created["tokenization_request_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, got) = json_of(
        broker(&sim, Method::GET, &format!("requests/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["tokenization_request_id"], id);
    let (status, _) = json_of(
        broker(&sim, Method::GET, "requests/12345-678-90AB")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = json_of(
        broker(
            &sim,
            Method::GET,
            &format!("requests/{}", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 404);

    let (status, found) = json_of(
        broker(
            &sim,
            Method::GET,
            "requests:by_issuer_request_id?issuer_request_id=0xdetect",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found["tokenization_request_id"], id);
    let (status, _) = json_of(
        broker(
            &sim,
            Method::GET,
            "requests:by_issuer_request_id?issuer_request_id=nope",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = json_of(
        broker(&sim, Method::GET, "requests:by_issuer_request_id")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], 42_210_001);
    assert_eq!(sim.hits(Endpoint::GetByIssuerRequestId), 3);
    assert_eq!(sim.hits(Endpoint::GetRequest), 3);
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn list_filters_and_bare_array() {
    let (sim, issuer, ap, client_id) = redeem_setup().await;
    sim.set_position(ap, "AAPL", dec("5"));
    let mint = sim
        .request_mint(ap, mint_spec("1"))
        .await
        .unwrap()
        .tokenization_request_id;
    post_redeem(&sim, &redeem_body(&client_id, "r1", "1"), None).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    post_redeem(&sim, &redeem_body(&client_id, "r2", "1"), None).await;

    let list = |query: &str| {
        let sim = sim.clone();
        let query = query.to_owned();
        async move {
            json_of(
                broker(&sim, Method::GET, &format!("requests{query}"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (status, all) = list("").await;
    assert_eq!(status, 200);
    assert_eq!(all.as_array().unwrap().len(), 3);
    let (_, mints) = list("?type=mint").await;
    assert_eq!(mints.as_array().unwrap().len(), 1);
    assert_eq!(mints[0]["tokenization_request_id"], mint.to_string());
    let (_, redeems) =
        list("?type=redeem&underlying_symbol=AAPL&network=base&issuer=st0x")
            .await;
    assert_eq!(redeems.as_array().unwrap().len(), 2);
    let (_, none) = list("?underlying_symbol=TSLA").await;
    assert_eq!(none, json!([]));

    // `after`/`before` are exclusive on created_at.
    let first_redeem = sim.requests()[1].created_at.to_rfc3339();
    let (_, after) =
        list(&format!("?type=redeem&after={}", urlencode(&first_redeem))).await;
    assert_eq!(after.as_array().unwrap().len(), 1);
    assert_eq!(after[0]["issuer_request_id"], "r2");
    let (_, before) =
        list(&format!("?type=redeem&before={}", urlencode(&first_redeem)))
            .await;
    assert_eq!(before, json!([]));

    let (status, body) = list("?after=yesterday").await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"code": 42_210_001, "message": "failed to parse after"})
    );
    let (status, _) = list("?status=done").await;
    assert_eq!(status, 422);

    assert!(
        sim.wait_for(
            |s| s
                .requests()
                .iter()
                .filter(|r| r.status == RequestStatus::Completed)
                .count()
                == 2,
            WAIT
        )
        .await
    );
    let (_, completed) = list("?status=completed").await;
    assert_eq!(completed.as_array().unwrap().len(), 2);
    sim.shutdown().await;
    issuer.stop();
}

fn urlencode(raw: &str) -> String {
    raw.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn rate_limit_answers_429_with_headers() {
    let sim = sim().await;
    sim.inject(Fault::RateLimit {
        times: 1,
        retry_after: Duration::from_secs(3),
    });
    let limited = broker(&sim, Method::GET, "requests").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "3");
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    assert!(limited.headers().contains_key("x-ratelimit-reset"));
    assert!(limited.headers().contains_key("x-ratelimit-limit"));
    let ok = broker(&sim, Method::GET, "requests").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn quirks_shape_request_records() {
    let (sim, issuer, _ap, client_id) = redeem_setup().await;
    sim.inject(Fault::Quirks(Quirks {
        empty_tx_hash_when_pending: true,
        fees: FeeQuirk::Number,
        deprecated_aliases: true,
    }));
    let (_, body) = json_of(
        post_redeem(&sim, &redeem_body(&client_id, "r1", "1"), None).await,
    )
    .await;
    assert_eq!(body["tx_hash"], "");
    assert!(body["fees"].is_number());
    assert_eq!(body["client_id"], client_id);
    assert_eq!(body["issuer_account"], client_id);

    sim.clear_faults();
    let (_, body) = json_of(
        post_redeem(&sim, &redeem_body(&client_id, "r2", "1"), None).await,
    )
    .await;
    assert_eq!(body["tx_hash"], "0xabc");
    assert_eq!(body["fees"], "0");
    assert!(body.get("client_id").is_none());
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn unknown_paths_use_the_error_envelope() {
    let sim = sim().await;
    let (status, body) = json_of(
        broker(&sim, Method::GET, "nothing/here")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], 40_410_000);
    sim.shutdown().await;
}

#[tokio::test]
async fn inserted_records_with_unknown_enums_are_listed() {
    let (sim, issuer, ap, client_id) = redeem_setup().await;
    let foreign = itn_sim::TokenizationRequest {
        tokenization_request_id: uuid::Uuid::new_v4(),
        issuer_request_id: None,
        request_type: itn_sim::RequestType::Mint,
        status: RequestStatus::Pending,
        created_at: chrono::Utc::now(),
        updated_at: None,
        underlying_symbol: "TSLA".into(),
        token_symbol: String::new(),
        qty: itn_sim::Qty::parse("1").unwrap(),
        issuer: "newco".into(),
        network: "futurechain".into(),
        wallet_address: "0x5".into(),
        tx_hash: None,
        fees: dec("0"),
        client: itn_sim::ClientRef::External(client_id),
        ap,
    };
    sim.insert_request(foreign.clone());
    let (_, body) = json_of(
        broker(&sim, Method::GET, "requests?issuer=newco")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["network"], "futurechain");
    assert_eq!(body[0]["token_symbol"], "");
    sim.shutdown().await;
    issuer.stop();
}
