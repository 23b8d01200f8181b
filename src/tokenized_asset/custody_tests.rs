//! The custody-account lookup through the whole service (`build_rocket`),
//! via Rocket's local client, with and without an `[alpaca]` section.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rocket::http::{ContentType, Header, Method, Status};
use rocket::local::asynchronous::Client;
use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

use super::*;
use crate::alpaca::{AlpacaConfig, CustodyOverrides};
use crate::config::{Config, TEST_ALPACA_KEY, TEST_INTERNAL_KEY};

const DESIGNATED: Uuid = Uuid::from_u128(0xD0);
const BRK_ACCOUNT: Uuid = Uuid::from_u128(0xB2);
const VAULTS: [&str; 3] = [
    "0x1111111111111111111111111111111111111111",
    "0x2222222222222222222222222222222222222222",
    "0x3333333333333333333333333333333333333333",
];

struct Harness {
    client: Client,
    _dir: TempDir,
}

fn alpaca(overrides: CustodyOverrides) -> AlpacaConfig {
    let mut alpaca = AlpacaConfig::new(
        "http://127.0.0.1:9".parse().unwrap(),
        DESIGNATED,
        "key".into(),
        SecretString::from("secret"),
    );
    alpaca.custody_accounts = overrides;
    alpaca
}

fn overrides(pairs: &[(&str, Uuid)]) -> CustodyOverrides {
    CustodyOverrides::new(
        pairs
            .iter()
            .map(|(symbol, account)| ((*symbol).to_owned(), *account))
            .collect(),
    )
    .unwrap()
}

impl Harness {
    async fn start(alpaca: Option<AlpacaConfig>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bot.db").display());
        let mut config = Config::for_tests(&url);
        config.alpaca = alpaca;
        let rocket = crate::build_rocket(config).await.unwrap();
        Self {
            client: Client::tracked(rocket).await.unwrap(),
            _dir: dir,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (Status, Value) {
        let mut request = self
            .client
            .req(method, path)
            .remote(SocketAddr::from(([127, 0, 0, 1], 40_000)))
            .header(Header::new("X-API-KEY", key.to_owned()));
        if let Some(body) = body {
            request = request.header(ContentType::JSON).body(body.to_string());
        }
        let response = request.dispatch().await;
        let status = response.status();
        let text = response.into_string().await.unwrap_or_default();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON body {text:?} ({status})"));
        (status, value)
    }

    async fn list(&self, underlying: &str, network: &str, vault: &str) {
        let body = json!({
            "underlying": underlying,
            "token": format!("t{underlying}"),
            "network": network,
            "vault": vault,
        });
        let (status, response) = self
            .send(
                Method::Post,
                "/tokenized-assets",
                TEST_INTERNAL_KEY,
                Some(body),
            )
            .await;
        assert_eq!(status, Status::Ok, "{response}");
    }

    async fn lookup(&self, symbol: &str) -> (Status, Value) {
        self.send(
            Method::Get,
            &format!("/tokenization/custody-accounts/{symbol}"),
            TEST_ALPACA_KEY,
            None,
        )
        .await
    }
}

#[rocket::async_test]
async fn listed_symbols_resolve_to_the_designated_or_overriding_account() {
    let h = Harness::start(Some(alpaca(overrides(&[("brk.b", BRK_ACCOUNT)]))))
        .await;
    h.list("AAPL", "base", VAULTS[0]).await;
    h.list("BRK.B", "ethereum", VAULTS[1]).await;
    let (status, body) = h.lookup("AAPL").await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(
        body,
        json!({
            "account_id": DESIGNATED.to_string(),
            "underlying_symbol": "AAPL",
        })
    );
    let (status, body) = h.lookup("BRK.B").await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["account_id"], BRK_ACCOUNT.to_string());
    assert_eq!(body["underlying_symbol"], "BRK.B");
}

#[rocket::async_test]
async fn unlisted_disabled_and_miscased_symbols_are_404() {
    let h = Harness::start(Some(alpaca(CustodyOverrides::default()))).await;
    h.list("AAPL", "base", VAULTS[0]).await;
    h.list("TSLA", "base", VAULTS[1]).await;
    let (status, response) = h
        .send(
            Method::Post,
            "/tokenized-assets/TSLA/base/disable",
            TEST_INTERNAL_KEY,
            None,
        )
        .await;
    assert_eq!(status, Status::Ok, "{response}");
    for symbol in ["MSFT", "TSLA", "aapl", "AAPL%20", "A$PL"] {
        let (status, body) = h.lookup(symbol).await;
        assert_eq!(status, Status::NotFound, "{symbol}: {body}");
        assert_eq!(body["error"], "underlying symbol not listed", "{symbol}");
    }
    // Enabled on one network is enough.
    h.list("TSLA", "ethereum", VAULTS[2]).await;
    let (status, body) = h.lookup("TSLA").await;
    assert_eq!(status, Status::Ok, "{body}");
}

#[rocket::async_test]
async fn without_an_alpaca_section_the_lookup_is_503() {
    let h = Harness::start(None).await;
    h.list("AAPL", "base", VAULTS[0]).await;
    let (status, body) = h.lookup("AAPL").await;
    assert_eq!(status, Status::ServiceUnavailable, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("[alpaca]"),
        "{body}"
    );
}

#[rocket::async_test]
async fn the_lookup_needs_alpacas_key() {
    let h = Harness::start(Some(alpaca(CustodyOverrides::default()))).await;
    h.list("AAPL", "base", VAULTS[0]).await;
    let (status, _) = h
        .send(
            Method::Get,
            "/tokenization/custody-accounts/AAPL",
            TEST_INTERNAL_KEY,
            None,
        )
        .await;
    assert_eq!(status, Status::Unauthorized);
}

#[test]
fn overrides_are_case_insensitive_and_validated() {
    let parsed: CustodyOverrides = toml::from_str(&format!(
        "aapl = \"{BRK_ACCOUNT}\"\n\"BRK.B\" = \"{DESIGNATED}\""
    ))
    .unwrap();
    let aapl = UnderlyingSymbol::new("AAPL").unwrap();
    assert_eq!(parsed.get(&aapl), Some(BRK_ACCOUNT));
    let accounts = CustodyAccounts::new(Uuid::from_u128(1), parsed);
    assert_eq!(accounts.account_for(&aapl), BRK_ACCOUNT);
    assert_eq!(
        accounts.account_for(&UnderlyingSymbol::new("MSFT").unwrap()),
        Uuid::from_u128(1)
    );

    let twice = BTreeMap::from([
        ("AAPL".to_owned(), BRK_ACCOUNT),
        ("aapl".to_owned(), DESIGNATED),
    ]);
    assert!(CustodyOverrides::new(twice).is_err());
    let nil = BTreeMap::from([("AAPL".to_owned(), Uuid::nil())]);
    assert!(CustodyOverrides::new(nil).is_err());
    let bad = BTreeMap::from([("A-PL".to_owned(), BRK_ACCOUNT)]);
    let error = CustodyOverrides::new(bad).unwrap_err();
    assert_eq!(error.symbol, "A-PL");
}

#[test]
fn the_alpaca_section_reads_custody_accounts() {
    let section: AlpacaConfig = toml::from_str(&format!(
        r#"
        base_url = "http://localhost:9000"
        account_id = "{DESIGNATED}"
        api_key_id = "k"
        api_secret = "s"
        custody_accounts = {{ AAPL = "{BRK_ACCOUNT}" }}
        "#
    ))
    .unwrap();
    assert_eq!(
        section
            .custody_accounts
            .get(&UnderlyingSymbol::new("AAPL").unwrap()),
        Some(BRK_ACCOUNT)
    );
    let bad = toml::from_str::<AlpacaConfig>(&format!(
        r#"
        base_url = "http://localhost:9000"
        account_id = "{DESIGNATED}"
        api_key_id = "k"
        api_secret = "s"
        custody_accounts = {{ "not a symbol" = "{BRK_ACCOUNT}" }}
        "#
    ));
    assert!(bad.is_err());
    // Environment variables arrive lowercased.
    let vars = [
        ("ISSUANCE_AUTH__ALPACA__API_KEY", TEST_ALPACA_KEY.to_owned()),
        (
            "ISSUANCE_AUTH__INTERNAL__API_KEY",
            TEST_INTERNAL_KEY.to_owned(),
        ),
        (
            "ISSUANCE_ALPACA__BASE_URL",
            "http://localhost:9000".to_owned(),
        ),
        ("ISSUANCE_ALPACA__ACCOUNT_ID", DESIGNATED.to_string()),
        ("ISSUANCE_ALPACA__API_KEY_ID", "k".to_owned()),
        ("ISSUANCE_ALPACA__API_SECRET", "s".to_owned()),
        (
            "ISSUANCE_ALPACA__CUSTODY_ACCOUNTS__TSLA",
            BRK_ACCOUNT.to_string(),
        ),
    ]
    .map(|(name, value)| (name.into(), value.into()));
    let loaded = Config::from_sources(None, vars).unwrap();
    assert_eq!(
        loaded
            .alpaca
            .unwrap()
            .custody_accounts
            .get(&UnderlyingSymbol::new("TSLA").unwrap()),
        Some(BRK_ACCOUNT)
    );
}
