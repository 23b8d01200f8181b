//! Alpaca -> issuer: linking, mint request and confirmation per wire
//! version, retries and faults, checked on a fake issuer.

use std::time::Duration;

use itn_sim::{
    ApSpec, ClientIdMode, DeliveryOutcome, Endpoint, Fault, IssuerPaths,
    MintSpec, RequestStatus, SimConfig, SimError, WireVersion,
};
use serde_json::json;

use crate::{WAIT, ap_spec, dec, fake_issuer, linked_ap, sim_with};

fn spec(qty: &str) -> MintSpec {
    MintSpec {
        underlying: "AAPL".into(),
        token: "tAAPL".into(),
        network: "base".into(),
        qty: dec(qty),
        wallet: "0x3333333333333333333333333333333333333333".into(),
    }
}

async fn setup(
    wire: WireVersion,
) -> (itn_sim::SimHandle, fake_issuer::FakeIssuer) {
    let issuer = fake_issuer::spawn().await;
    let sim = sim_with(SimConfig {
        wire,
        issuer_base_url: Some(issuer.url.clone()),
        ..SimConfig::default()
    })
    .await;
    (sim, issuer)
}

#[tokio::test]
async fn oldest_wire_paths_and_fields() {
    let (sim, issuer) = setup(WireVersion::Oldest).await;
    let (ap, client_id) = linked_ap(&sim, "ap@x.com", &[("AAPL", "10")]).await;
    assert_eq!(client_id, "issuer-id-ap@x.com");
    let out = sim.request_mint(ap, spec("1.25")).await.unwrap();
    assert_eq!(out.issuer_response_status, 200);
    let id = out.tokenization_request_id;
    assert_eq!(id.get_version_num(), 4);
    assert!(issuer_confirmed(&issuer).await);

    let calls = issuer.calls();
    let paths: Vec<&str> = calls.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/accounts/connect",
            "/inkind/issuance",
            "/inkind/issuance/confirm"
        ]
    );
    assert!(
        calls.iter().all(|c| c.api_key.as_deref()
            == Some(sim.config().issuer_api_key.as_str()))
    );
    assert_eq!(
        calls[0].body,
        json!({"email": "ap@x.com", "account": "ACC-ap@x.com"})
    );
    assert_eq!(
        calls[1].body,
        json!({
            "tokenization_request_id": id,
            "qty": "1.25",
            "underlying_symbol": "AAPL",
            "token_symbol": "tAAPL",
            "network": "base",
            "client_id": client_id,
            "wallet_address": "0x3333333333333333333333333333333333333333",
        })
    );
    assert_eq!(
        calls[2].body,
        json!({
            "tokenization_request_id": id,
            "issuer_request_id": out.issuer_request_id.unwrap(),
            "status": "completed",
        })
    );
    assert_eq!(sim.position(ap, "AAPL"), dec("8.75"));
    assert_eq!(sim.issuer_position("AAPL"), dec("1.25"));
    assert_eq!(sim.hits(Endpoint::IssuerMint), 1);
    sim.shutdown().await;
    issuer.stop();
}

async fn issuer_confirmed(issuer: &fake_issuer::FakeIssuer) -> bool {
    for _ in 0..500 {
        if !issuer.calls_to("confirm").is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn middle_wire_uses_id_and_client_id() {
    let (sim, issuer) = setup(WireVersion::Middle).await;
    let (ap, client_id) = linked_ap(&sim, "m@x.com", &[("AAPL", "10")]).await;
    let out = sim.request_mint(ap, spec("1")).await.unwrap();
    assert!(issuer_confirmed(&issuer).await);
    let calls = issuer.calls();
    let paths: Vec<&str> = calls.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/tokenization/accounts/connect",
            "/tokenization/mint",
            "/tokenization/mint/confirm"
        ]
    );
    assert_eq!(
        calls[0].body,
        json!({"email": "m@x.com", "account": "ACC-m@x.com"})
    );
    assert_eq!(calls[1].body["id"], out.tokenization_request_id.to_string());
    assert!(calls[1].body.get("tokenization_request_id").is_none());
    assert_eq!(calls[1].body["client_id"], client_id);
    assert_eq!(
        calls[2].body,
        json!({
            "id": out.tokenization_request_id,
            "issuer_request_id": out.issuer_request_id.unwrap(),
            "status": "completed",
        })
    );
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn current_wire_external_and_affiliated_ids() {
    let (sim, issuer) = setup(WireVersion::Current).await;
    let (ap, client_id) = linked_ap(&sim, "c@x.com", &[("AAPL", "10")]).await;
    let out = sim.request_mint(ap, spec("1")).await.unwrap();
    assert!(issuer_confirmed(&issuer).await);
    let calls = issuer.calls();
    assert_eq!(calls[0].path, "/tokenization/accounts/connect");
    assert_eq!(
        calls[0].body,
        json!({"email": "c@x.com", "client_account_number": "ACC-c@x.com"})
    );
    assert_eq!(calls[1].path, "/tokenization/mint");
    assert_eq!(
        calls[1].body["tokenization_request_id"],
        out.tokenization_request_id.to_string()
    );
    assert_eq!(calls[1].body["client_external_account_id"], client_id);
    assert!(calls[1].body.get("client_id").is_none());
    assert!(calls[1].body.get("client_account_id").is_none());
    assert_eq!(
        calls[2].body,
        json!({
            "tokenization_request_id": out.tokenization_request_id,
            "issuer_request_id": out.issuer_request_id.unwrap(),
            "client_external_account_id": client_id,
            "status": "completed",
        })
    );

    // Affiliated APs are named by their account UUID, no linking needed.
    let affiliated = sim.add_ap(ApSpec {
        id_mode: ClientIdMode::Affiliated,
        ..ap_spec("aff@x.com", &[("AAPL", "3")])
    });
    let out = sim.request_mint(affiliated, spec("1")).await.unwrap();
    let mint = &issuer.calls_to("/tokenization/mint")[1];
    assert_eq!(
        mint.body["client_account_id"],
        affiliated.uuid().to_string()
    );
    assert!(mint.body.get("client_external_account_id").is_none());
    let id = out.tokenization_request_id;
    assert!(
        sim.wait_for(|s| !s.confirm_deliveries(id).is_empty(), WAIT)
            .await
    );
    let confirm = issuer.calls_to("confirm").pop().unwrap();
    assert_eq!(
        confirm.body["client_account_id"],
        affiliated.uuid().to_string()
    );
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn path_overrides_are_honoured() {
    let issuer = fake_issuer::spawn().await;
    let sim = sim_with(SimConfig {
        wire: WireVersion::Current,
        issuer_base_url: Some(issuer.url.join("/api/").unwrap()),
        issuer_paths: IssuerPaths {
            connect: Some("/alpaca/accounts/connect".into()),
            mint: None,
            confirm: Some("/alpaca/confirm".into()),
            ..IssuerPaths::default()
        },
        ..SimConfig::default()
    })
    .await;
    let (ap, _) = linked_ap(&sim, "p@x.com", &[("AAPL", "1")]).await;
    sim.request_mint(ap, spec("1")).await.unwrap();
    assert!(issuer_confirmed(&issuer).await);
    let paths: Vec<String> =
        issuer.calls().into_iter().map(|c| c.path).collect();
    // The base URL's path prefix survives.
    assert_eq!(
        paths,
        [
            "/api/alpaca/accounts/connect",
            "/api/tokenization/mint",
            "/api/alpaca/confirm"
        ]
    );
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn confirm_is_retried_on_5xx_with_identical_bodies() {
    let (sim, issuer) = setup(WireVersion::Oldest).await;
    issuer.script_confirms(&[500, 503]);
    let (ap, _) = linked_ap(&sim, "r@x.com", &[("AAPL", "10")]).await;
    let id = sim
        .request_mint(ap, spec("1"))
        .await
        .unwrap()
        .tokenization_request_id;
    assert!(
        sim.wait_for(|s| s.confirm_deliveries(id).len() == 3, WAIT)
            .await
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let deliveries = sim.confirm_deliveries(id);
    let outcomes: Vec<_> =
        deliveries.iter().map(|d| d.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        [
            DeliveryOutcome::Answered { status: 500 },
            DeliveryOutcome::Answered { status: 503 },
            DeliveryOutcome::Answered { status: 200 },
        ]
    );
    let bodies: Vec<_> = issuer
        .calls_to("confirm")
        .into_iter()
        .map(|c| c.body)
        .collect();
    assert_eq!(bodies.len(), 3);
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    assert_eq!(sim.hits(Endpoint::IssuerConfirm), 3);
    // Shares moved once despite three deliveries.
    assert_eq!(sim.issuer_position("AAPL"), dec("1"));
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn confirm_stops_on_4xx() {
    let (sim, issuer) = setup(WireVersion::Oldest).await;
    issuer.script_confirms(&[409]);
    let (ap, _) = linked_ap(&sim, "s@x.com", &[("AAPL", "10")]).await;
    let id = sim
        .request_mint(ap, spec("1"))
        .await
        .unwrap()
        .tokenization_request_id;
    assert!(
        sim.wait_for(|s| !s.confirm_deliveries(id).is_empty(), WAIT)
            .await
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(sim.confirm_deliveries(id).len(), 1);
    assert_eq!(issuer.calls_to("confirm").len(), 1);
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn dropped_confirm_answers_and_duplicates_resend_the_same_body() {
    let (sim, issuer) = setup(WireVersion::Current).await;
    sim.inject(Fault::DropResponse {
        endpoint: Endpoint::IssuerConfirm,
        times: 1,
    });
    sim.inject(Fault::DuplicateConfirm { times: 2 });
    let (ap, _) = linked_ap(&sim, "d@x.com", &[("AAPL", "10")]).await;
    let id = sim
        .request_mint(ap, spec("1"))
        .await
        .unwrap()
        .tokenization_request_id;
    assert!(
        sim.wait_for(|s| s.confirm_deliveries(id).len() == 4, WAIT)
            .await
    );
    let deliveries = sim.confirm_deliveries(id);
    assert_eq!(deliveries[0].outcome, DeliveryOutcome::Dropped);
    assert!(!deliveries[1].duplicate);
    assert!(deliveries[2].duplicate && deliveries[3].duplicate);
    let bodies: Vec<_> = issuer
        .calls_to("confirm")
        .into_iter()
        .map(|c| c.body)
        .collect();
    assert_eq!(bodies.len(), 4);
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    assert_eq!(issuer.script.lock().unwrap().minted, 4);
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn rejected_mint_confirms_rejected_and_moves_nothing() {
    let (sim, issuer) = setup(WireVersion::Oldest).await;
    sim.inject(Fault::RejectNextMint);
    let (ap, _) = linked_ap(&sim, "j@x.com", &[("AAPL", "10")]).await;
    let id = sim
        .request_mint(ap, spec("4"))
        .await
        .unwrap()
        .tokenization_request_id;
    assert!(issuer_confirmed(&issuer).await);
    assert_eq!(issuer.calls_to("confirm")[0].body["status"], "rejected");
    assert_eq!(sim.request(id).unwrap().status, RequestStatus::Rejected);
    assert_eq!(sim.position(ap, "AAPL"), dec("10"));
    assert_eq!(sim.issuer_position("AAPL"), dec("0"));
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn alpaca_side_checks_stop_a_mint_before_the_issuer() {
    let (sim, issuer) = setup(WireVersion::Oldest).await;
    let (ap, _) = linked_ap(&sim, "k@x.com", &[("AAPL", "1")]).await;
    assert!(matches!(
        sim.request_mint(ap, spec("2")).await,
        Err(SimError::InsufficientPosition { .. })
    ));
    assert!(matches!(
        sim.request_mint(ap, spec("0.0000000001")).await,
        Err(SimError::InvalidQty(_))
    ));
    let mut bad_network = spec("1");
    bad_network.network = "dogechain".into();
    assert!(matches!(
        sim.request_mint(ap, bad_network).await,
        Err(SimError::UnknownNetwork(_))
    ));
    let unlinked = sim.add_ap(ap_spec("u@x.com", &[("AAPL", "5")]));
    assert!(matches!(
        sim.request_mint(unlinked, spec("1")).await,
        Err(SimError::NotLinked(_))
    ));
    assert!(issuer.calls_to("issuance").is_empty());
    assert!(sim.requests().is_empty());
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn issuer_refusal_rejects_the_request_without_confirm() {
    let (sim, issuer) = setup(WireVersion::Oldest).await;
    issuer.script_mint(
        400,
        json!({"error": "Invalid Wallet: Wallet does not belong to client"}),
    );
    let (ap, _) = linked_ap(&sim, "f@x.com", &[("AAPL", "5")]).await;
    let out = sim.request_mint(ap, spec("1")).await.unwrap();
    assert_eq!(out.issuer_response_status, 400);
    assert_eq!(out.issuer_request_id, None);
    assert_eq!(
        out.issuer_body["error"],
        "Invalid Wallet: Wallet does not belong to client"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(issuer.calls_to("confirm").is_empty());
    assert_eq!(
        sim.request(out.tokenization_request_id).unwrap().status,
        RequestStatus::Rejected
    );
    assert_eq!(sim.position(ap, "AAPL"), dec("5"));
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn duplicate_mint_requests_repeat_the_same_body() {
    let (sim, issuer) = setup(WireVersion::Oldest).await;
    sim.inject(Fault::DuplicateMintRequest { times: 1 });
    let (ap, _) = linked_ap(&sim, "g@x.com", &[("AAPL", "5")]).await;
    sim.request_mint(ap, spec("1")).await.unwrap();
    let mints = issuer.calls_to("/inkind/issuance");
    assert_eq!(mints.len(), 2);
    assert_eq!(mints[0].body, mints[1].body);
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn linking_failures_surface_as_errors() {
    let issuer = fake_issuer::spawn().await;
    let sim = sim_with(SimConfig::default()).await;
    let ap = sim.add_ap(ap_spec("n@x.com", &[]));
    assert!(matches!(sim.link_ap(ap).await, Err(SimError::NoIssuerUrl)));
    sim.set_issuer_base_url(issuer.url.clone());
    assert_eq!(sim.link_ap(ap).await.unwrap(), "issuer-id-n@x.com");
    assert_eq!(
        sim.linked_client_id(ap).as_deref(),
        Some("issuer-id-n@x.com")
    );
    issuer.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(
        sim.link_ap(ap).await,
        Err(SimError::IssuerUnreachable { .. })
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn token_list_is_read_and_enforced_when_enabled() {
    let issuer = fake_issuer::spawn().await;
    let sim = sim_with(SimConfig {
        wire: WireVersion::Current,
        issuer_base_url: Some(issuer.url.clone()),
        check_token_list: true,
        ..SimConfig::default()
    })
    .await;
    let tokens = sim.fetch_tokens().await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].networks, ["base", "ethereum"]);
    let get = sim.last_request(Endpoint::IssuerTokens).unwrap();
    assert_eq!(get.method, "GET");
    assert_eq!(get.path, "/tokenization/tokens");
    assert_eq!(
        get.header("x-api-key"),
        Some(sim.config().issuer_api_key.as_str())
    );

    let (ap, _) = linked_ap(&sim, "t@x.com", &[("AAPL", "5")]).await;
    let mut unlisted = spec("1");
    unlisted.network = "solana".into();
    assert!(matches!(
        sim.request_mint(ap, unlisted).await,
        Err(SimError::TokenNotListed { .. })
    ));
    assert!(sim.requests().is_empty());
    sim.request_mint(ap, spec("1")).await.unwrap();
    assert_eq!(sim.hits(Endpoint::IssuerTokens), 3);
    assert_eq!(sim.requests().len(), 1);
    sim.shutdown().await;
    issuer.stop();
}

#[tokio::test]
async fn oldest_wire_reads_tokenized_assets() {
    let (sim, issuer) = setup(WireVersion::Oldest).await;
    sim.fetch_tokens().await.unwrap();
    assert_eq!(issuer.calls()[0].path, "/tokenized-assets");
    sim.shutdown().await;
    issuer.stop();
}
