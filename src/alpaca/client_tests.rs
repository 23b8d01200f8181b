//! Narrow HTTP tests of the client against httpmock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, TxHash};
use base64::Engine;
use httpmock::prelude::*;
use httpmock::{HttpMockRequest, HttpMockResponse};
use reqwest::Url;
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::quantity::AlpacaQuantity;

const ACCOUNT: Uuid = Uuid::from_u128(0x1234);
const SECRET: &str = "s3cret-value-never-logged";
const KEY_ID: &str = "key-id-1";
const TRID: &str = "9b2f6a1e-4c1d-4f8e-9a77-0d2c5b1e7f10";

fn config(server: &MockServer) -> AlpacaConfig {
    let mut cfg = AlpacaConfig::new(
        Url::parse(&server.base_url()).unwrap(),
        ACCOUNT,
        KEY_ID.into(),
        SecretString::from(SECRET),
    );
    cfg.retry_min_delay_ms = 5;
    cfg.retry_max_delay_ms = 40;
    cfg.max_retries = 3;
    cfg
}

fn client(server: &MockServer) -> AlpacaClient {
    AlpacaClient::new(&config(server)).unwrap()
}

fn path(tail: &str) -> String {
    format!("/v1/accounts/{ACCOUNT}/tokenization/{tail}")
}

fn basic() -> String {
    let raw = format!("{KEY_ID}:{SECRET}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn redeem_request() -> RedeemRequest {
    RedeemRequest {
        issuer_request_id: "red-0001".into(),
        underlying_symbol: "AAPL".into(),
        token_symbol: "tAAPL".into(),
        ap: ApRef::External("ap-7".into()),
        qty: AlpacaQuantity::parse("1.5").unwrap(),
        network: "base".into(),
        wallet_address: Address::repeat_byte(0xaa),
        tx_hash: TxHash::repeat_byte(0xbb),
    }
}

/// Alpaca's record for [`redeem_request`], as it would echo it.
fn redeem_record(status: &str) -> Value {
    let request = redeem_request();
    json!({
        "tokenization_request_id": TRID,
        "issuer_request_id": request.issuer_request_id,
        "created_at": "2026-09-22T10:00:00-04:00",
        "type": "redeem",
        "status": status,
        "underlying_symbol": "AAPL",
        "token_symbol": "tAAPL",
        "qty": "1.500000000",
        "issuer": "st0x",
        "network": "base",
        "wallet_address": request.wallet_address.to_string().to_lowercase(),
        "tx_hash": "",
        "client_external_account_id": "ap-7"
    })
}

fn respond(status: u16, body: &Value) -> HttpMockResponse {
    HttpMockResponse::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}

/// Answers with `failures` in order, then `success` forever; records
/// every request's `Idempotency-Key`.
fn scripted(
    failures: Vec<HttpMockResponse>,
    success: Value,
    keys: Arc<Mutex<Vec<Option<String>>>>,
) -> impl Fn(&HttpMockRequest) -> HttpMockResponse + Send + Sync + 'static {
    let failures = Mutex::new(failures.into_iter());
    move |req: &HttpMockRequest| {
        let key = req
            .headers()
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        keys.lock().unwrap().push(key);
        failures
            .lock()
            .unwrap()
            .next()
            .unwrap_or_else(|| respond(200, &success))
    }
}

fn error_body(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message})
}

#[tokio::test]
async fn mint_callback_sends_both_auth_forms_and_exact_body() {
    let server = MockServer::start_async().await;
    let affiliated = Uuid::from_u128(0x77);
    let mock = server
        .mock_async(|when, then| {
            when.method(POST)
                .path(path("callback/mint"))
                .header("authorization", basic())
                .header("apca-api-key-id", KEY_ID)
                .header("apca-api-secret-key", SECRET)
                .header("content-type", "application/json")
                .header_missing("idempotency-key")
                .json_body(json!({
                    "tokenization_request_id": TRID,
                    "client_account_id": affiliated.to_string(),
                    "wallet_address": Address::repeat_byte(0x11),
                    "tx_hash": TxHash::repeat_byte(0x22),
                    "network": "base"
                }));
            then.status(200);
        })
        .await;
    client(&server)
        .send_mint_callback(&MintCallback {
            tokenization_request_id: TRID.into(),
            ap: ApRef::Affiliated(affiliated),
            wallet_address: Address::repeat_byte(0x11),
            tx_hash: TxHash::repeat_byte(0x22),
            network: "base".into(),
        })
        .await
        .unwrap();
    mock.assert_calls_async(1).await;
}

#[tokio::test]
async fn mint_callback_400_is_final_and_typed() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(POST).path(path("callback/mint"));
            then.status(400)
                .json_body(error_body(40_010_000, "internal failure"));
        })
        .await;
    let error = client(&server)
        .send_mint_callback(&MintCallback {
            tokenization_request_id: TRID.into(),
            ap: ApRef::Legacy("client-1".into()),
            wallet_address: Address::repeat_byte(0x11),
            tx_hash: TxHash::repeat_byte(0x22),
            network: "base".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(
        &error,
        AlpacaError::Http { status: 400, code: Some(40_010_000), message }
            if message == "internal failure"
    ));
    assert!(!error.is_retryable());
    mock.assert_calls_async(1).await;
}

#[tokio::test]
async fn redeem_uses_seed_path_by_default_and_callback_path_on_request() {
    let server = MockServer::start_async().await;
    let seed = server
        .mock_async(|when, then| {
            when.method(POST).path(path("redeem"));
            then.status(200).json_body(redeem_record("pending"));
        })
        .await;
    let callback = server
        .mock_async(|when, then| {
            when.method(POST).path(path("callback/redeem"));
            then.status(200).json_body(redeem_record("completed"));
        })
        .await;

    let record = client(&server).redeem(&redeem_request()).await.unwrap();
    assert_eq!(record.status, RequestStatus::Pending);
    assert_eq!(record.tokenization_request_id, TRID);
    assert_eq!(record.tx_hash, None);

    let mut cfg = config(&server);
    cfg.redeem_path = RedeemPath::Callback;
    let record = AlpacaClient::new(&cfg)
        .unwrap()
        .redeem(&redeem_request())
        .await
        .unwrap();
    assert_eq!(record.status, RequestStatus::Completed);
    seed.assert_calls_async(1).await;
    callback.assert_calls_async(1).await;
}

#[tokio::test]
async fn redeem_body_names_exactly_one_ap_field() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(POST).path(path("redeem")).json_body(json!({
                "issuer_request_id": "red-0001",
                "underlying_symbol": "AAPL",
                "token_symbol": "tAAPL",
                "client_external_account_id": "ap-7",
                "qty": "1.5",
                "network": "base",
                "wallet_address": Address::repeat_byte(0xaa),
                "tx_hash": TxHash::repeat_byte(0xbb)
            }));
            then.status(200).json_body(redeem_record("pending"));
        })
        .await;
    client(&server).redeem(&redeem_request()).await.unwrap();
    mock.assert_calls_async(1).await;
}

#[tokio::test]
async fn redeem_retries_500_503_429_with_one_stable_idempotency_key() {
    let server = MockServer::start_async().await;
    let keys = Arc::new(Mutex::new(Vec::new()));
    let failures = vec![
        respond(500, &error_body(50_000_000, "boom")),
        respond(503, &json!({})),
        respond(429, &json!({})),
    ];
    let responder =
        scripted(failures, redeem_record("pending"), Arc::clone(&keys));
    let mock = server
        .mock_async(|when, then| {
            when.method(POST).path(path("redeem"));
            then.respond_with(responder);
        })
        .await;
    let client = client(&server);
    let record = client.redeem(&redeem_request()).await.unwrap();
    assert_eq!(record.tokenization_request_id, TRID);
    mock.assert_calls_async(4).await;

    let expected =
        Uuid::new_v5(&DEFAULT_IDEMPOTENCY_NAMESPACE, b"red-0001").to_string();
    let keys = keys.lock().unwrap().clone();
    assert_eq!(keys, vec![Some(expected.clone()); 4]);
    assert_eq!(client.idempotency_key("red-0001").to_string(), expected);
    assert_ne!(client.idempotency_key("red-0002").to_string(), expected);
}

#[tokio::test]
async fn idempotency_key_depends_only_on_namespace_and_id() {
    let server = MockServer::start_async().await;
    let first = client(&server);
    let second = client(&server);
    assert_eq!(
        first.idempotency_key("red-9"),
        second.idempotency_key("red-9")
    );
    let mut cfg = config(&server);
    cfg.idempotency_namespace = Some(Uuid::from_u128(5));
    let other = AlpacaClient::new(&cfg).unwrap();
    assert_ne!(
        first.idempotency_key("red-9"),
        other.idempotency_key("red-9")
    );
    assert_eq!(
        other.idempotency_key("red-9"),
        Uuid::new_v5(&Uuid::from_u128(5), b"red-9")
    );
}

#[tokio::test]
async fn gives_up_after_max_retries_with_the_last_error() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(GET).path(path("requests"));
            then.status(502).body("bad gateway");
        })
        .await;
    let error = client(&server)
        .list_requests(&ListFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(
        &error,
        AlpacaError::Http { status: 502, message, .. } if message == "bad gateway"
    ));
    assert!(error.is_retryable());
    // One attempt plus `max_retries` (3) retries.
    mock.assert_calls_async(4).await;
}

#[tokio::test]
async fn final_4xx_are_not_retried() {
    for status in [400_u16, 401, 403, 404, 422] {
        let server = MockServer::start_async().await;
        let mock = server
            .mock_async(|when, then| {
                when.method(GET).path(path("requests"));
                then.status(status).json_body(error_body(1, "no"));
            })
            .await;
        let error = client(&server)
            .list_requests(&ListFilter::default())
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(status));
        assert!(!error.is_retryable());
        mock.assert_calls_async(1).await;
    }
}

#[tokio::test]
async fn redeem_401_and_403_are_not_retried_or_looked_up() {
    for status in [400_u16, 401, 403] {
        let server = MockServer::start_async().await;
        let redeem = server
            .mock_async(|when, then| {
                when.method(POST).path(path("redeem"));
                then.status(status).json_body(error_body(2, "denied"));
            })
            .await;
        let lookup = server
            .mock_async(|when, then| {
                when.method(GET).path(path("requests:by_issuer_request_id"));
                then.status(200).json_body(redeem_record("pending"));
            })
            .await;
        let error =
            client(&server).redeem(&redeem_request()).await.unwrap_err();
        assert_eq!(error.status(), Some(status));
        redeem.assert_calls_async(1).await;
        lookup.assert_calls_async(0).await;
    }
}

#[tokio::test]
async fn redeem_422_duplicate_recovers_through_lookup_with_literal_colon() {
    let server = MockServer::start_async().await;
    let redeem = server
        .mock_async(|when, then| {
            when.method(POST).path(path("redeem"));
            then.status(422).json_body(error_body(
                42_210_000,
                "issuer_request_id already used",
            ));
        })
        .await;
    let lookup = server
        .mock_async(|when, then| {
            when.method(GET)
                .path(path("requests:by_issuer_request_id"))
                .query_param("issuer_request_id", "red-0001")
                .header("apca-api-key-id", KEY_ID)
                .is_true(|req: &HttpMockRequest| {
                    let uri = req.uri_str();
                    uri.contains("/requests:by_issuer_request_id?")
                        && !uri.contains("%3A")
                        && !uri.contains("%3a")
                });
            then.status(200).json_body(redeem_record("completed"));
        })
        .await;
    let record = client(&server).redeem(&redeem_request()).await.unwrap();
    assert_eq!(record.tokenization_request_id, TRID);
    assert_eq!(record.status, RequestStatus::Completed);
    redeem.assert_calls_async(1).await;
    lookup.assert_calls_async(1).await;
}

#[tokio::test]
async fn redeem_422_without_existing_request_is_typed() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method(POST).path(path("redeem"));
            then.status(422)
                .json_body(error_body(42_210_001, "tx_hash is required"));
        })
        .await;
    let lookup = server
        .mock_async(|when, then| {
            when.method(GET).path(path("requests:by_issuer_request_id"));
            then.status(404)
                .json_body(error_body(40_410_000, "not found"));
        })
        .await;
    let error = client(&server).redeem(&redeem_request()).await.unwrap_err();
    assert!(matches!(
        &error,
        AlpacaError::RedeemUnprocessable { issuer_request_id, code: Some(42_210_001), message }
            if issuer_request_id == "red-0001" && message == "tx_hash is required"
    ));
    assert!(!error.is_retryable());
    lookup.assert_calls_async(1).await;
}

#[tokio::test]
async fn redeem_422_with_conflicting_existing_request_is_a_mismatch() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method(POST).path(path("redeem"));
            then.status(422).json_body(error_body(42_210_000, "dup"));
        })
        .await;
    let mut other = redeem_record("pending");
    other["qty"] = json!("2");
    server
        .mock_async(|when, then| {
            when.method(GET).path(path("requests:by_issuer_request_id"));
            then.status(200).json_body(other);
        })
        .await;
    let error = client(&server).redeem(&redeem_request()).await.unwrap_err();
    assert!(matches!(
        &error,
        AlpacaError::RecordMismatch { field: "qty", expected, found, .. }
            if expected == "1.5" && found == "2"
    ));
}

#[tokio::test]
async fn replayed_redeem_returns_the_original_record() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(POST).path(path("redeem"));
            then.status(200)
                .header("Idempotent-Replayed", "true")
                .json_body(redeem_record("pending"));
        })
        .await;
    let record = client(&server).redeem(&redeem_request()).await.unwrap();
    assert_eq!(record.tokenization_request_id, TRID);
    mock.assert_calls_async(1).await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = MockServer::start_async().await;
    let keys = Arc::new(Mutex::new(Vec::new()));
    let limited = HttpMockResponse::builder()
        .status(429)
        .header("retry-after", "1")
        .build();
    let responder =
        scripted(vec![limited], redeem_record("pending"), Arc::clone(&keys));
    let mock = server
        .mock_async(|when, then| {
            when.method(GET).path(path(&format!("requests/{TRID}")));
            then.respond_with(responder);
        })
        .await;
    let mut cfg = config(&server);
    cfg.retry_max_delay_ms = 2_000;
    let started = Instant::now();
    let record = AlpacaClient::new(&cfg)
        .unwrap()
        .get_request(TRID)
        .await
        .unwrap();
    assert!(record.is_some());
    assert!(started.elapsed() >= Duration::from_secs(1));
    mock.assert_calls_async(2).await;
}

#[tokio::test]
async fn retry_after_beyond_max_delay_returns_rate_limited() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(GET).path(path("requests"));
            then.status(429).header("retry-after", "3600");
        })
        .await;
    let error = client(&server)
        .list_requests(&ListFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        AlpacaError::RateLimited { retry_after: Some(wait) }
            if wait == Duration::from_hours(1)
    ));
    mock.assert_calls_async(1).await;
}

#[tokio::test]
async fn get_request_found_missing_and_mismatched() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method(GET).path(path(&format!("requests/{TRID}")));
            then.status(200).json_body(redeem_record("pending"));
        })
        .await;
    let missing_id = Uuid::from_u128(1).to_string();
    let missing = server
        .mock_async(|when, then| {
            when.method(GET)
                .path(path(&format!("requests/{missing_id}")));
            then.status(404)
                .json_body(error_body(40_410_000, "not found"));
        })
        .await;
    let wrong_id = Uuid::from_u128(2).to_string();
    server
        .mock_async(|when, then| {
            when.method(GET).path(path(&format!("requests/{wrong_id}")));
            then.status(200).json_body(redeem_record("pending"));
        })
        .await;
    let client = client(&server);

    let found = client.get_request(TRID).await.unwrap().unwrap();
    assert_eq!(found.qty, Decimal::new(15, 1));
    assert_eq!(client.get_request(&missing_id).await.unwrap(), None);
    missing.assert_calls_async(1).await;
    assert!(matches!(
        client.get_request(&wrong_id).await,
        Err(AlpacaError::RecordMismatch {
            field: "tokenization_request_id",
            ..
        })
    ));
}

#[tokio::test]
async fn get_request_percent_encodes_the_id_segment() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(GET).is_true(|req: &HttpMockRequest| {
                req.uri_str().ends_with("/tokenization/requests/a%2Fb%3Fc")
            });
            then.status(404);
        })
        .await;
    assert_eq!(client(&server).get_request("a/b?c").await.unwrap(), None);
    mock.assert_calls_async(1).await;
}

#[tokio::test]
async fn find_by_issuer_request_id_404_is_none() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(GET)
                .path(path("requests:by_issuer_request_id"))
                .query_param("issuer_request_id", "0xab&c=d");
            then.status(404);
        })
        .await;
    let found = client(&server)
        .find_by_issuer_request_id("0xab&c=d")
        .await
        .unwrap();
    assert_eq!(found, None);
    mock.assert_calls_async(1).await;
}

#[tokio::test]
async fn list_requests_parses_a_bare_array_and_sends_filters() {
    let server = MockServer::start_async().await;
    let mut mint = redeem_record("completed");
    mint["type"] = json!("mint");
    mint["network"] = json!("hypercore");
    mint["fees"] = json!(0.5);
    mint["tx_hash"] = Value::Null;
    let mut odd = redeem_record("pending");
    odd["network"] = json!("newchain");
    odd["fees"] = json!("0.01");
    odd["account"] = json!(Uuid::from_u128(3).to_string());
    odd.as_object_mut()
        .unwrap()
        .remove("client_external_account_id");
    let mock = server
        .mock_async(|when, then| {
            when.method(GET)
                .path(path("requests"))
                .query_param("type", "mint")
                .query_param("status", "completed")
                .query_param("underlying_symbol", "AAPL");
            then.status(200).json_body(json!([mint, odd]));
        })
        .await;
    let rows = client(&server)
        .list_requests(&ListFilter {
            r#type: Some(RequestType::Mint),
            status: Some(RequestStatus::Completed),
            underlying_symbol: Some("AAPL".into()),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    mock.assert_calls_async(1).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].r#type, RequestType::Mint);
    assert_eq!(rows[0].network, "hypercore");
    assert_eq!(rows[0].fees, Some(Decimal::new(5, 1)));
    assert_eq!(rows[1].network, "newchain");
    assert_eq!(rows[1].fees, Some(Decimal::new(1, 2)));
    assert_eq!(rows[1].ap, Some(ApRef::Affiliated(Uuid::from_u128(3))));
}

#[tokio::test]
async fn list_wrapped_in_an_object_is_a_decode_error_not_retried() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(GET).path(path("requests"));
            then.status(200).json_body(json!({"requests": []}));
        })
        .await;
    let error = client(&server)
        .list_requests(&ListFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        AlpacaError::Decode {
            operation: Operation::ListRequests,
            status: 200,
            ..
        }
    ));
    mock.assert_calls_async(1).await;
}

#[tokio::test]
async fn base_url_path_prefix_is_kept() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(GET).path(format!(
                "/broker/v1/accounts/{ACCOUNT}/tokenization/requests"
            ));
            then.status(200).json_body(json!([]));
        })
        .await;
    let mut cfg = config(&server);
    cfg.base_url = Url::parse(&server.url("/broker/")).unwrap();
    let rows = AlpacaClient::new(&cfg)
        .unwrap()
        .list_requests(&ListFilter::default())
        .await
        .unwrap();
    assert!(rows.is_empty());
    mock.assert_calls_async(1).await;
}

#[tokio::test]
async fn connection_failure_is_a_retryable_transport_error() {
    // Bind then drop a listener so the port is (almost surely) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = AlpacaConfig::new(
        Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        ACCOUNT,
        KEY_ID.into(),
        SecretString::from(SECRET),
    );
    cfg.retry_min_delay_ms = 1;
    cfg.retry_max_delay_ms = 2;
    cfg.max_retries = 1;
    let error = AlpacaClient::new(&cfg)
        .unwrap()
        .get_request(TRID)
        .await
        .unwrap_err();
    assert!(matches!(error, AlpacaError::Transport(_)));
    assert!(error.is_retryable());
}

#[test]
fn debug_output_never_contains_the_secret() {
    let cfg = AlpacaConfig::new(
        Url::parse("https://broker-api.sandbox.alpaca.markets").unwrap(),
        ACCOUNT,
        KEY_ID.into(),
        SecretString::from(SECRET),
    );
    let client = AlpacaClient::new(&cfg).unwrap();
    for rendered in [format!("{cfg:?}"), format!("{client:?}")] {
        assert!(!rendered.contains(SECRET), "{rendered}");
        assert!(rendered.contains(&ACCOUNT.to_string()), "{rendered}");
    }
}

#[test]
fn config_parses_from_toml_with_defaults_and_rejects_unknown_keys() {
    let cfg: AlpacaConfig = toml::from_str(&format!(
        r#"
        base_url = "https://broker-api.alpaca.markets"
        account_id = "{ACCOUNT}"
        api_key_id = "{KEY_ID}"
        api_secret = "{SECRET}"
        redeem_path = "callback"
        "#
    ))
    .unwrap();
    assert_eq!(cfg.redeem_path, RedeemPath::Callback);
    assert_eq!(cfg.connect_timeout_secs, 10);
    assert_eq!(cfg.request_timeout_secs, 30);
    assert_eq!(cfg.max_retries, 5);
    assert_eq!(cfg.retry_min_delay_ms, 1_000);
    assert_eq!(cfg.retry_max_delay_ms, 60_000);
    assert_eq!(cfg.idempotency_namespace, None);
    assert!(!cfg.send_legacy_client_id);
    assert_eq!(cfg.handshake_id_field(), HandshakeIdField::External);

    let seed: AlpacaConfig = toml::from_str(&format!(
        r#"
        base_url = "http://localhost:9000"
        account_id = "{ACCOUNT}"
        api_key_id = "k"
        api_secret = "s"
        send_legacy_client_id = true
        "#
    ))
    .unwrap();
    assert_eq!(seed.redeem_path, RedeemPath::Seed);
    assert_eq!(seed.handshake_id_field(), HandshakeIdField::Legacy);

    let unknown = toml::from_str::<AlpacaConfig>(&format!(
        r#"
        base_url = "http://localhost:9000"
        account_id = "{ACCOUNT}"
        api_key_id = "k"
        api_secret = "s"
        api_sekret = "typo"
        "#
    ));
    assert!(unknown.is_err());
}

#[test]
fn zero_timeouts_are_rejected() {
    for key in ["connect_timeout_secs", "request_timeout_secs"] {
        let err = toml::from_str::<AlpacaConfig>(&format!(
            r#"
            base_url = "http://localhost:9000"
            account_id = "{ACCOUNT}"
            api_key_id = "k"
            api_secret = "s"
            {key} = 0
            "#
        ))
        .unwrap_err();
        assert!(err.to_string().contains("greater than 0"), "{key}: {err}");
    }
}

#[test]
fn service_config_carries_the_alpaca_section_from_the_environment() {
    use crate::config::{Config, TEST_ALPACA_KEY, TEST_INTERNAL_KEY};
    let vars = [
        ("ISSUANCE_AUTH__ALPACA__API_KEY", TEST_ALPACA_KEY.to_owned()),
        (
            "ISSUANCE_AUTH__INTERNAL__API_KEY",
            TEST_INTERNAL_KEY.to_owned(),
        ),
        (
            "ISSUANCE_ALPACA__BASE_URL",
            "https://broker-api.sandbox.alpaca.markets".to_owned(),
        ),
        ("ISSUANCE_ALPACA__ACCOUNT_ID", ACCOUNT.to_string()),
        ("ISSUANCE_ALPACA__API_KEY_ID", KEY_ID.to_owned()),
        ("ISSUANCE_ALPACA__API_SECRET", SECRET.to_owned()),
        ("ISSUANCE_ALPACA__MAX_RETRIES", "2".to_owned()),
        ("ISSUANCE_ALPACA__SEND_LEGACY_CLIENT_ID", "true".to_owned()),
    ]
    .map(|(name, value)| (name.into(), value.into()));
    let loaded = Config::from_sources(None, vars).unwrap();
    let alpaca = loaded.alpaca.unwrap();
    assert_eq!(alpaca.account_id, ACCOUNT);
    assert_eq!(alpaca.max_retries, 2);
    assert_eq!(alpaca.redeem_path, RedeemPath::Seed);
    assert!(alpaca.send_legacy_client_id);
    assert!(!format!("{alpaca:?}").contains(SECRET));

    let without = Config::from_sources(
        None,
        [
            ("ISSUANCE_AUTH__ALPACA__API_KEY", TEST_ALPACA_KEY),
            ("ISSUANCE_AUTH__INTERNAL__API_KEY", TEST_INTERNAL_KEY),
        ]
        .map(|(name, value)| (name.into(), value.into())),
    )
    .unwrap();
    assert!(without.alpaca.is_none());
}

/// The one AP field (name, value) of each body, in order.
fn ap_fields_sent(bodies: &[Value]) -> Vec<(String, Value)> {
    bodies
        .iter()
        .map(|body| {
            let fields: Vec<(String, Value)> = body
                .as_object()
                .unwrap()
                .iter()
                .filter(|(name, _)| name.starts_with("client_"))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            assert_eq!(fields.len(), 1, "exactly one AP field: {body}");
            fields.into_iter().next().unwrap()
        })
        .collect()
}

/// Sends a mint callback and a redeem for each AP reference and returns
/// the AP field of every body, callbacks first.
async fn ap_fields_for(legacy: bool, refs: &[ApRef]) -> Vec<(String, Value)> {
    let server = MockServer::start_async().await;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    for tail in ["callback/mint", "redeem"] {
        let seen = Arc::clone(&bodies);
        server
            .mock_async(move |when, then| {
                when.method(POST).path(path(tail));
                then.respond_with(move |request: &HttpMockRequest| {
                    let body: Value =
                        serde_json::from_slice(request.body().as_ref())
                            .unwrap();
                    seen.lock().unwrap().push(body);
                    respond(200, &redeem_record("pending"))
                });
            })
            .await;
    }
    let mut cfg = config(&server);
    cfg.send_legacy_client_id = legacy;
    let client = AlpacaClient::new(&cfg).unwrap();
    for ap in refs {
        client
            .send_mint_callback(&MintCallback {
                tokenization_request_id: TRID.into(),
                ap: ap.clone(),
                wallet_address: Address::repeat_byte(0x11),
                tx_hash: TxHash::repeat_byte(0x22),
                network: "base".into(),
            })
            .await
            .unwrap();
    }
    for ap in refs {
        client
            .redeem(&RedeemRequest {
                ap: ap.clone(),
                ..redeem_request()
            })
            .await
            .unwrap();
    }
    ap_fields_sent(&bodies.lock().unwrap())
}

#[tokio::test]
async fn handshake_aps_are_sent_as_client_external_account_id_by_default() {
    let affiliated = Uuid::from_u128(0xA1);
    let refs = [
        ApRef::Legacy("ap-7".into()),
        ApRef::External("ap-7".into()),
        ApRef::Affiliated(affiliated),
    ];
    let external = ("client_external_account_id".to_owned(), json!("ap-7"));
    let account = (
        "client_account_id".to_owned(),
        json!(affiliated.to_string()),
    );
    let expected = [external.clone(), external, account];
    let sent = ap_fields_for(false, &refs).await;
    assert_eq!(sent, [expected.clone(), expected].concat());
}

#[tokio::test]
async fn send_legacy_client_id_restores_client_id_for_handshake_aps() {
    let affiliated = Uuid::from_u128(0xA1);
    let refs = [
        ApRef::Legacy("ap-7".into()),
        ApRef::External("ap-7".into()),
        ApRef::Affiliated(affiliated),
    ];
    let legacy = ("client_id".to_owned(), json!("ap-7"));
    let account = (
        "client_account_id".to_owned(),
        json!(affiliated.to_string()),
    );
    let expected = [legacy.clone(), legacy, account];
    let sent = ap_fields_for(true, &refs).await;
    assert_eq!(sent, [expected.clone(), expected].concat());
}
