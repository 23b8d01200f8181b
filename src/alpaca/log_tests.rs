//! What the client logs: one DEBUG line per attempt, WARN per retry with
//! the status, INFO for replays and 422 recoveries, and never a secret.

use std::io;
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, TxHash};
use base64::Engine;
use httpmock::prelude::*;
use reqwest::Url;
use secrecy::SecretString;
use serde_json::json;
use tracing::Dispatch;
use tracing::subscriber::{DefaultGuard, NoSubscriber};
use uuid::Uuid;

use super::*;
use crate::quantity::AlpacaQuantity;

const SECRET: &str = "log-test-secret-b7f1";
const ACCOUNT: Uuid = Uuid::from_u128(0xabc);

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Routes this thread's tracing output (DEBUG and up) into `self`
    /// while the returned value lives; `#[tokio::test]` runs on one
    /// thread.
    fn install(&self) -> Installed {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        // With a single registered dispatcher, tracing-core computes a
        // callsite's interest from the *registering thread's* default, so
        // a parallel test without a subscriber that hits our callsites
        // first caches "never" for everyone. A second live dispatcher
        // makes it consult every registered one instead.
        let second = Dispatch::new(NoSubscriber::default());
        let guard = tracing::subscriber::set_default(subscriber);
        Installed {
            _guard: guard,
            _second: second,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn lines_at(&self, level: &str, needle: &str) -> usize {
        self.text()
            .lines()
            .filter(|line| line.contains(level) && line.contains(needle))
            .count()
    }
}

struct Installed {
    _guard: DefaultGuard,
    _second: Dispatch,
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn client(server: &MockServer) -> AlpacaClient {
    let mut cfg = AlpacaConfig::new(
        Url::parse(&server.base_url()).unwrap(),
        ACCOUNT,
        "key-id".into(),
        SecretString::from(SECRET),
    );
    cfg.retry_min_delay_ms = 1;
    cfg.retry_max_delay_ms = 5;
    cfg.max_retries = 2;
    AlpacaClient::new(&cfg).unwrap()
}

fn path(tail: &str) -> String {
    format!("/v1/accounts/{ACCOUNT}/tokenization/{tail}")
}

fn request() -> RedeemRequest {
    RedeemRequest {
        issuer_request_id: "red-log".into(),
        underlying_symbol: "AAPL".into(),
        token_symbol: "tAAPL".into(),
        ap: ApRef::External("ap-1".into()),
        qty: AlpacaQuantity::parse("3").unwrap(),
        network: "base".into(),
        wallet_address: Address::repeat_byte(0x01),
        tx_hash: TxHash::repeat_byte(0x02),
    }
}

fn record() -> serde_json::Value {
    json!({
        "tokenization_request_id": Uuid::from_u128(8).to_string(),
        "issuer_request_id": "red-log",
        "type": "redeem",
        "status": "pending",
        "underlying_symbol": "AAPL",
        "token_symbol": "tAAPL",
        "qty": "3",
        "network": "base",
        "wallet_address": Address::repeat_byte(0x01),
        "tx_hash": null
    })
}

#[tokio::test]
async fn attempts_are_debug_retries_are_warn_and_secrets_never_appear() {
    let logs = Captured::default();
    let _guard = logs.install();
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method(GET).path(path("requests"));
            then.status(503).body("maintenance");
        })
        .await;

    let error = client(&server)
        .list_requests(&ListFilter::default())
        .await
        .unwrap_err();

    assert_eq!(error.status(), Some(503));
    assert_eq!(logs.lines_at("DEBUG", "calling Alpaca"), 3);
    assert_eq!(logs.lines_at("WARN", "retrying"), 2);
    assert_eq!(logs.lines_at("WARN", "status=Some(503)"), 2);
    assert_eq!(logs.lines_at("WARN", "operation=list_requests"), 2);
    let text = logs.text();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("key-id:{SECRET}"));
    assert!(!text.contains(SECRET), "{text}");
    assert!(!text.contains(&basic), "{text}");
}

#[tokio::test]
async fn replay_is_logged_at_info() {
    let logs = Captured::default();
    let _guard = logs.install();
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method(POST).path(path("redeem"));
            then.status(200)
                .header("Idempotent-Replayed", "true")
                .json_body(record());
        })
        .await;

    client(&server).redeem(&request()).await.unwrap();

    assert_eq!(logs.lines_at("INFO", "answered by idempotent replay"), 1);
    assert!(!logs.text().contains(SECRET));
}

#[tokio::test]
async fn duplicate_recovery_is_logged_at_info_with_both_ids() {
    let logs = Captured::default();
    let _guard = logs.install();
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method(POST).path(path("redeem"));
            then.status(422)
                .json_body(json!({"code": 42_210_000, "message": "dup"}));
        })
        .await;
    server
        .mock_async(|when, then| {
            when.method(GET).path(path("requests:by_issuer_request_id"));
            then.status(200).json_body(record());
        })
        .await;

    client(&server).redeem(&request()).await.unwrap();

    assert_eq!(logs.lines_at("INFO", "redeem refused with 422"), 1);
    let trid = Uuid::from_u128(8).to_string();
    assert_eq!(logs.lines_at("INFO", &trid), 1);
    assert_eq!(logs.lines_at("WARN", "retrying"), 0);
}
