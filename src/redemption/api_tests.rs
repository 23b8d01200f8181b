//! Redemption and receipt endpoints through the whole service
//! (`build_rocket`) on a temp-file database, via Rocket's local client.

use std::net::SocketAddr;

use alloy::primitives::{Address, TxHash, U256, address};
use rocket::http::{Header, Status};
use rocket::local::asynchronous::Client;
use serde_json::Value;
use sqlx::SqlitePool;
use tempfile::TempDir;
use uuid::Uuid;

use super::*;
use crate::account::ClientId;
use crate::alpaca::ApRef;
use crate::config::{Config, TEST_ALPACA_KEY, TEST_INTERNAL_KEY};
use crate::receipt_inventory::record_deposit;
use crate::vocabulary::{Network, TokenSymbol, UnderlyingSymbol};

const VAULT: Address = address!("0x00000000000000000000000000000000000000fa");
const AP: Address = address!("0x00000000000000000000000000000000000000a1");

struct Harness {
    client: Client,
    _dir: TempDir,
}

impl Harness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bot.db").display());
        let rocket =
            crate::build_rocket(Config::for_tests(&url)).await.unwrap();
        Self {
            client: Client::tracked(rocket).await.unwrap(),
            _dir: dir,
        }
    }

    fn pool(&self) -> &SqlitePool {
        self.client.rocket().state::<SqlitePool>().unwrap()
    }

    fn cqrs(&self) -> &RedemptionCqrs {
        self.client
            .rocket()
            .state::<RedemptionState>()
            .unwrap()
            .cqrs()
    }

    async fn get(&self, path: &str, key: Option<&str>) -> (Status, Value) {
        let mut request = self
            .client
            .get(path)
            .remote(SocketAddr::from(([127, 0, 0, 1], 40_000)));
        if let Some(key) = key {
            request = request.header(Header::new("X-API-KEY", key.to_owned()));
        }
        let response = request.dispatch().await;
        let status = response.status();
        let text = response.into_string().await.unwrap_or_default();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON body {text:?} ({status})"));
        (status, value)
    }
}

fn transfer(shares: U256) -> DetectedTransfer {
    let client_id = ClientId::new(Uuid::from_u128(9));
    DetectedTransfer {
        network: Network::Base,
        vault: VAULT,
        underlying: UnderlyingSymbol::new("AAPL").unwrap(),
        token: TokenSymbol::new("tAAPL").unwrap(),
        tx_hash: TxHash::repeat_byte(0x42),
        log_index: 1,
        block: 7,
        from_wallet: AP,
        client_id,
        ap: ApRef::External(client_id.to_string()),
        shares,
    }
}

#[tokio::test]
async fn a_redemption_is_shown_to_operators_only() {
    let harness = Harness::start().await;
    let detected = transfer(U256::from(2_500_000_000_000_000_123_u128));
    let id = detected.issuer_request_id();
    harness
        .cqrs()
        .execute(
            id.as_str(),
            RedemptionCommand::Detect { transfer: detected },
        )
        .await
        .unwrap();
    harness
        .cqrs()
        .execute(
            id.as_str(),
            RedemptionCommand::RecordAlpacaCall {
                tokenization_request_id: "tok-9".into(),
            },
        )
        .await
        .unwrap();
    let path = format!("/redemptions/{id}");
    let (status, body) = harness.get(&path, Some(TEST_INTERNAL_KEY)).await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["issuer_request_id"], id.as_str());
    assert_eq!(body["state"], "alpaca_called");
    assert_eq!(body["shares"], "2500000000000000123");
    assert_eq!(body["alpaca_qty"], "2.5");
    assert_eq!(body["dust"], "123");
    assert_eq!(body["tokenization_request_id"], "tok-9");
    assert_eq!(body["log_index"], 1);
    assert_eq!(body["burns"], Value::Array(vec![]));
    assert_eq!(body["failure_reason"], Value::Null);

    let (status, _) = harness.get(&path, Some(TEST_ALPACA_KEY)).await;
    assert_eq!(status, Status::Unauthorized);
    let (status, _) = harness.get(&path, None).await;
    assert_eq!(status, Status::Unauthorized);
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let harness = Harness::start().await;
    let unknown = RedemptionId::for_transfer(TxHash::repeat_byte(1), 0);
    let (status, body) = harness
        .get(&format!("/redemptions/{unknown}"), Some(TEST_INTERNAL_KEY))
        .await;
    assert_eq!(status, Status::NotFound);
    assert_eq!(body["error"], "redemption not found");
    let (status, _) = harness
        .get("/redemptions/0x12-1", Some(TEST_INTERNAL_KEY))
        .await;
    assert_eq!(status, Status::UnprocessableEntity);
}

#[tokio::test]
async fn failures_say_why() {
    let harness = Harness::start().await;
    let detected = transfer(U256::from(5_u8));
    let id = detected.issuer_request_id();
    harness
        .cqrs()
        .execute(
            id.as_str(),
            RedemptionCommand::Detect { transfer: detected },
        )
        .await
        .unwrap();
    let (status, body) = harness
        .get(&format!("/redemptions/{id}"), Some(TEST_INTERNAL_KEY))
        .await;
    assert_eq!(status, Status::Ok);
    assert_eq!(body["state"], "failed");
    assert_eq!(body["alpaca_qty"], Value::Null);
    assert_eq!(
        body["failure_reason"],
        "5 shares is below Alpaca's minimum quantity (1e-9)"
    );
    assert!(body["failed_at"].is_string());
}

#[tokio::test]
async fn unattributed_transfers_and_receipts_are_listed() {
    let harness = Harness::start().await;
    let (status, body) = harness
        .get("/redemptions/unattributed", Some(TEST_INTERNAL_KEY))
        .await;
    assert_eq!(status, Status::Ok);
    assert_eq!(body["transfers"], Value::Array(vec![]));
    monitor::record_unattributed(
        harness.pool(),
        &monitor::UnattributedTransfer {
            network: Network::Base,
            vault: VAULT,
            tx_hash: TxHash::repeat_byte(3),
            log_index: 0,
            from_wallet: AP,
            amount: "77".into(),
            block: 5,
            detected_at: "2026-11-28T12:00:00.000000Z".into(),
        },
    )
    .await
    .unwrap();
    let (_, body) = harness
        .get("/redemptions/unattributed", Some(TEST_INTERNAL_KEY))
        .await;
    assert_eq!(body["transfers"][0]["amount"], "77");
    assert_eq!(body["transfers"][0]["network"], "base");

    {
        let mut conn = harness.pool().acquire().await.unwrap();
        record_deposit(&mut conn, VAULT, U256::from(4), U256::from(900), "m")
            .await
            .unwrap();
    }
    let (status, body) =
        harness.get("/receipts", Some(TEST_INTERNAL_KEY)).await;
    assert_eq!(status, Status::Ok);
    let row = &body["receipts"][0];
    assert_eq!(row["receipt_id"], "4");
    assert_eq!(row["balance"], "900");
    assert_eq!(row["available"], "900");
    assert_eq!(row["source_issuer_request_id"], "m");
    let (status, _) = harness.get("/receipts", Some(TEST_ALPACA_KEY)).await;
    assert_eq!(status, Status::Unauthorized);
}
