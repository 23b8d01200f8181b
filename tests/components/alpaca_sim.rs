//! The client against the real Alpaca simulator (`itn_sim`) over HTTP.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, TxHash};
use httpmock::prelude::*;
use itn_sim::{
    ApId, ApSpec, ClientIdMode, Endpoint, Fault, FeeQuirk, MintSpec, Quirks,
    SimConfig, SimHandle, Simulator,
};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use issuance_bot::alpaca::*;
use issuance_bot::quantity::AlpacaQuantity;

const WAIT: Duration = Duration::from_secs(5);

async fn sim() -> SimHandle {
    Simulator::spawn(SimConfig {
        journal_delay: Duration::from_millis(5),
        redeem_settle_delay: Duration::from_millis(30),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn config_for(sim: &SimHandle) -> AlpacaConfig {
    let cfg = sim.config();
    let mut alpaca = AlpacaConfig::new(
        sim.base_url(),
        sim.issuer_account_id(),
        cfg.broker_key_id.clone(),
        SecretString::from(cfg.broker_secret.clone()),
    );
    alpaca.retry_min_delay_ms = 5;
    alpaca.retry_max_delay_ms = 40;
    alpaca.max_retries = 3;
    alpaca
}

fn client_for(sim: &SimHandle) -> AlpacaClient {
    AlpacaClient::new(&config_for(sim)).unwrap()
}

fn affiliated_ap(sim: &SimHandle) -> ApId {
    sim.add_ap(ApSpec {
        email: "ap@example.com".into(),
        account_number: "AP0001".into(),
        positions: vec![("AAPL".into(), Decimal::new(100, 0))],
        id_mode: ClientIdMode::Affiliated,
    })
}

fn redeem_for(ap: ApId, issuer_request_id: &str) -> RedeemRequest {
    RedeemRequest {
        issuer_request_id: issuer_request_id.into(),
        underlying_symbol: "AAPL".into(),
        token_symbol: "tAAPL".into(),
        ap: ApRef::Affiliated(ap.uuid()),
        qty: AlpacaQuantity::parse("2.123456789").unwrap(),
        network: "base".into(),
        wallet_address: Address::repeat_byte(0x5a),
        tx_hash: TxHash::repeat_byte(0x7c),
    }
}

/// Drives a mint through the simulator against an httpmock issuer that
/// accepts the request and the confirmation; returns the confirmed id.
async fn confirmed_mint(
    sim: &SimHandle,
    issuer: &MockServer,
    ap: ApId,
) -> Uuid {
    issuer
        .mock_async(|when, then| {
            when.method(POST).path("/inkind/issuance");
            then.status(200).json_body(json!({
                "issuer_request_id": "iss-1",
                "status": "created"
            }));
        })
        .await;
    issuer
        .mock_async(|when, then| {
            when.method(POST).path("/inkind/issuance/confirm");
            then.status(200);
        })
        .await;
    sim.set_issuer_base_url(itn_sim::Url::parse(&issuer.base_url()).unwrap());
    let outcome = sim
        .request_mint(
            ap,
            MintSpec {
                underlying: "AAPL".into(),
                token: "tAAPL".into(),
                network: "base".into(),
                qty: Decimal::new(15, 1),
                wallet: Address::repeat_byte(0x11).to_string(),
            },
        )
        .await
        .unwrap();
    let id = outcome.tokenization_request_id;
    assert!(
        sim.wait_for(|sim| !sim.confirm_deliveries(id).is_empty(), WAIT)
            .await
    );
    id
}

fn callback_for(id: Uuid, ap: ApId) -> MintCallback {
    MintCallback {
        tokenization_request_id: id.to_string(),
        ap: ApRef::Affiliated(ap.uuid()),
        wallet_address: Address::repeat_byte(0x11),
        tx_hash: TxHash::repeat_byte(0x22),
        network: "base".into(),
    }
}

#[tokio::test]
async fn mint_callback_completes_a_mint_the_simulator_created() {
    let sim = sim().await;
    let issuer = MockServer::start_async().await;
    let ap = affiliated_ap(&sim);
    let id = confirmed_mint(&sim, &issuer, ap).await;
    let client = client_for(&sim);

    client
        .send_mint_callback(&callback_for(id, ap))
        .await
        .unwrap();

    assert_eq!(sim.hits(Endpoint::MintCallback), 1);
    assert_eq!(sim.mint_callbacks(id).len(), 1);
    let record = client.get_request(&id.to_string()).await.unwrap().unwrap();
    assert_eq!(record.status, RequestStatus::Completed);
    assert_eq!(record.r#type, RequestType::Mint);
    assert_eq!(
        record.tx_hash.as_deref(),
        Some(TxHash::repeat_byte(0x22).to_string().as_str())
    );
    assert_eq!(record.ap, Some(ApRef::Affiliated(ap.uuid())));
    sim.shutdown().await;
}

#[tokio::test]
async fn mint_callback_retries_simulated_503s() {
    let sim = sim().await;
    let issuer = MockServer::start_async().await;
    let ap = affiliated_ap(&sim);
    let id = confirmed_mint(&sim, &issuer, ap).await;
    sim.inject(Fault::BrokerStatus {
        endpoint: Endpoint::MintCallback,
        status: 503,
        times: 2,
    });

    client_for(&sim)
        .send_mint_callback(&callback_for(id, ap))
        .await
        .unwrap();

    assert_eq!(sim.hits(Endpoint::MintCallback), 3);
    assert_eq!(sim.mint_callbacks(id).len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn mint_callback_for_unconfirmed_request_is_final() {
    let sim = sim().await;
    let ap = affiliated_ap(&sim);
    let error = client_for(&sim)
        .send_mint_callback(&callback_for(Uuid::new_v4(), ap))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(404));
    assert!(!error.is_retryable());
    assert_eq!(sim.hits(Endpoint::MintCallback), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn redeem_happy_path_settles_and_polls_completed() {
    let sim = sim().await;
    sim.set_issuer_position("AAPL", Decimal::new(10, 0));
    let ap = affiliated_ap(&sim);
    let client = client_for(&sim);
    let request = redeem_for(ap, "0xfeed:0");

    let first = client.redeem(&request).await.unwrap();

    assert_eq!(first.status, RequestStatus::Pending);
    assert_eq!(first.qty, Decimal::new(2_123_456_789, 9));
    assert_eq!(first.issuer_request_id.as_deref(), Some("0xfeed:0"));
    let call = sim.last_request(Endpoint::Redeem).unwrap();
    let key = client.idempotency_key("0xfeed:0").to_string();
    assert_eq!(call.header("idempotency-key"), Some(key.as_str()));
    assert_eq!(call.json().unwrap()["client_account_id"], json!(ap.uuid()));

    let id = Uuid::parse_str(&first.tokenization_request_id).unwrap();
    let settled = sim
        .wait_for(
            |sim| {
                sim.request(id).is_some_and(|req| {
                    req.status == itn_sim::RequestStatus::Completed
                })
            },
            WAIT,
        )
        .await;
    assert!(settled);
    let polled = client.get_request(&id.to_string()).await.unwrap().unwrap();
    assert_eq!(polled.status, RequestStatus::Completed);
    assert!(request.mismatch(&polled).is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn redeem_repeat_is_a_replay_with_the_same_key() {
    let sim = sim().await;
    sim.set_issuer_position("AAPL", Decimal::new(10, 0));
    let ap = affiliated_ap(&sim);
    let client = client_for(&sim);
    let request = redeem_for(ap, "0xfeed:1");

    let first = client.redeem(&request).await.unwrap();
    let second = client.redeem(&request).await.unwrap();

    assert_eq!(
        second.tokenization_request_id,
        first.tokenization_request_id
    );
    let calls = sim.redeem_calls();
    assert_eq!(calls.len(), 2);
    let key = client.idempotency_key("0xfeed:1").to_string();
    for call in &calls {
        assert_eq!(call.header("idempotency-key"), Some(key.as_str()));
    }
    let redeems = sim
        .requests()
        .into_iter()
        .filter(|req| req.issuer_request_id.as_deref() == Some("0xfeed:1"))
        .count();
    assert_eq!(redeems, 1, "a replay must not create a second redeem");
    sim.shutdown().await;
}

#[tokio::test]
async fn redeem_422_duplicate_is_recovered_by_issuer_request_id() {
    let sim = sim().await;
    sim.set_issuer_position("AAPL", Decimal::new(10, 0));
    let ap = affiliated_ap(&sim);
    let request = redeem_for(ap, "0xbeef:3");
    let original = client_for(&sim).redeem(&request).await.unwrap();

    // Another key for the same issuer_request_id (as from a build with
    // another namespace): Alpaca answers 422, not a replay.
    let mut cfg = config_for(&sim);
    cfg.idempotency_namespace = Some(Uuid::from_u128(99));
    let recovered = AlpacaClient::new(&cfg)
        .unwrap()
        .redeem(&request)
        .await
        .unwrap();

    assert_eq!(
        recovered.tokenization_request_id,
        original.tokenization_request_id
    );
    assert_eq!(sim.hits(Endpoint::Redeem), 2);
    assert_eq!(sim.hits(Endpoint::GetByIssuerRequestId), 1);
    let lookup = sim.last_request(Endpoint::GetByIssuerRequestId).unwrap();
    assert!(
        lookup.path.contains("requests:by_issuer_request_id?"),
        "{}",
        lookup.path
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn redeem_422_for_a_bad_network_is_unprocessable() {
    let sim = sim().await;
    sim.set_issuer_position("AAPL", Decimal::new(10, 0));
    let ap = affiliated_ap(&sim);
    let mut request = redeem_for(ap, "0xdead:1");
    request.network = "notachain".into();
    let error = client_for(&sim).redeem(&request).await.unwrap_err();
    assert!(matches!(
        error,
        AlpacaError::RedeemUnprocessable { ref issuer_request_id, .. }
            if issuer_request_id == "0xdead:1"
    ));
    assert_eq!(sim.hits(Endpoint::Redeem), 1);
    assert_eq!(sim.hits(Endpoint::GetByIssuerRequestId), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn lookups_of_unknown_requests_are_none() {
    let sim = sim().await;
    let client = client_for(&sim);
    assert_eq!(
        client
            .get_request(&Uuid::new_v4().to_string())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        client.find_by_issuer_request_id("nope").await.unwrap(),
        None
    );
    let not_uuid = client.get_request("not-a-uuid").await.unwrap_err();
    assert_eq!(not_uuid.status(), Some(422));
    sim.shutdown().await;
}

#[tokio::test]
async fn quirky_records_parse_and_list_is_a_bare_array() {
    let sim = sim().await;
    sim.set_issuer_position("AAPL", Decimal::new(10, 0));
    sim.inject(Fault::Quirks(Quirks {
        empty_tx_hash_when_pending: true,
        fees: FeeQuirk::Number,
        deprecated_aliases: true,
    }));
    let ap = affiliated_ap(&sim);
    let client = client_for(&sim);
    let record = client.redeem(&redeem_for(ap, "0xcafe:0")).await.unwrap();
    assert_eq!(record.tx_hash, None);
    assert_eq!(record.ap, Some(ApRef::Affiliated(ap.uuid())));

    let rows = client
        .list_requests(&ListFilter {
            r#type: Some(RequestType::Redeem),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].tokenization_request_id,
        record.tokenization_request_id
    );
    assert!(rows[0].fees.is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn simulated_429_with_retry_after_is_waited_out() {
    let sim = sim().await;
    sim.inject(Fault::RateLimit {
        times: 1,
        retry_after: Duration::from_secs(1),
    });
    let mut cfg = config_for(&sim);
    cfg.retry_max_delay_ms = 2_000;
    let started = Instant::now();
    let rows = AlpacaClient::new(&cfg)
        .unwrap()
        .list_requests(&ListFilter::default())
        .await
        .unwrap();
    assert!(rows.is_empty());
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(sim.hits(Endpoint::ListRequests), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_is_a_final_403() {
    let sim = sim().await;
    let mut cfg = config_for(&sim);
    cfg.api_secret = SecretString::from("wrong");
    let error = AlpacaClient::new(&cfg)
        .unwrap()
        .list_requests(&ListFilter::default())
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(403));
    assert_eq!(sim.hits(Endpoint::ListRequests), 1);
    sim.shutdown().await;
}
