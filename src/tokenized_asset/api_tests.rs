//! Tokenized-asset endpoints through the whole service (`build_rocket`) on
//! a temp-file SQLite database, via Rocket's local client.

use std::net::SocketAddr;

use alloy::primitives::address;
use rocket::http::{ContentType, Header, Method, Status};
use rocket::local::asynchronous::Client;
use serde_json::{Value, json};
use sqlx::SqlitePool;
use tempfile::TempDir;

use super::*;
use crate::config::{Config, TEST_ALPACA_KEY, TEST_INTERNAL_KEY};

#[derive(Debug, Clone, Copy)]
enum Key {
    Alpaca,
    Internal,
    Missing,
}

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

    async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        key: Key,
        body: Option<&str>,
    ) -> (Status, Value) {
        let mut request = self
            .client
            .req(method, path)
            .remote(SocketAddr::from(([127, 0, 0, 1], 40_000)));
        match key {
            Key::Alpaca => {
                request =
                    request.header(Header::new("X-API-KEY", TEST_ALPACA_KEY));
            }
            Key::Internal => {
                request =
                    request.header(Header::new("X-API-KEY", TEST_INTERNAL_KEY));
            }
            Key::Missing => {}
        }
        if let Some(body) = body {
            request = request.header(ContentType::JSON).body(body);
        }
        let response = request.dispatch().await;
        let status = response.status();
        let text = response.into_string().await.unwrap_or_default();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON body {text:?} ({status})"));
        (status, value)
    }

    async fn add(
        &self,
        underlying: &str,
        token: &str,
        network: &str,
        vault: &str,
    ) -> (Status, Value) {
        let body = json!({
            "underlying": underlying,
            "token": token,
            "network": network,
            "vault": vault,
        });
        self.send(
            Method::Post,
            "/tokenized-assets",
            Key::Internal,
            Some(&body.to_string()),
        )
        .await
    }

    async fn toggle(
        &self,
        underlying: &str,
        network: &str,
        action: &str,
    ) -> (Status, Value) {
        self.send(
            Method::Post,
            &format!("/tokenized-assets/{underlying}/{network}/{action}"),
            Key::Internal,
            None,
        )
        .await
    }
}

fn assert_error(status: Status, body: &Value, expected: Status, text: &str) {
    assert_eq!(status, expected, "{body}");
    let message = body["error"].as_str().unwrap_or_else(|| {
        panic!("expected an error envelope, got {body}");
    });
    assert!(
        message.contains(text),
        "error {message:?} should mention {text:?}"
    );
}

const VAULT_1: &str = "0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const VAULT_2: &str = "0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const VAULT_3: &str = "0xcccccccccccccccccccccccccccccccccccccccc";

fn checksummed(vault: &str) -> String {
    vault.parse::<Vault>().unwrap().address().to_string()
}

#[rocket::async_test]
async fn add_creates_an_enabled_listing() {
    let h = Harness::start().await;
    let (status, body) = h.add("AAPL", "tAAPL", "base", VAULT_1).await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["outcome"], "created");
    assert_eq!(body["underlying"], "AAPL");
    assert_eq!(body["token"], "tAAPL");
    assert_eq!(body["network"], "base");
    assert_eq!(body["vault"], checksummed(VAULT_1));
    assert_eq!(body["enabled"], true);
    assert!(body.get("previous_vault").is_none());

    let (status, fetched) = h
        .send(
            Method::Get,
            "/tokenized-assets/AAPL/base",
            Key::Internal,
            None,
        )
        .await;
    assert_eq!(status, Status::Ok);
    assert_eq!(fetched["vault"], checksummed(VAULT_1));

    let underlying = UnderlyingSymbol::new("AAPL").unwrap();
    let view = find(h.pool(), &underlying, Network::Base)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.token.as_str(), "tAAPL");
    assert!(view.enabled);
    assert!(
        find(h.pool(), &underlying, Network::Ethereum)
            .await
            .unwrap()
            .is_none()
    );
}

#[rocket::async_test]
async fn re_add_is_unchanged_or_repoints_with_previous_vault() {
    let h = Harness::start().await;
    h.add("AAPL", "tAAPL", "base", VAULT_1).await;
    let (status, body) = h
        .add(
            "AAPL",
            "tAAPL",
            "base",
            &VAULT_1.to_uppercase().replace("0X", "0x"),
        )
        .await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["outcome"], "unchanged");
    assert_eq!(h.event_count().await, 1);

    let (status, body) = h.add("AAPL", "tAAPL", "base", VAULT_2).await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["outcome"], "repointed");
    assert_eq!(body["previous_vault"], checksummed(VAULT_1));
    assert_eq!(body["vault"], checksummed(VAULT_2));
    assert_eq!(body["previous_vaults"], json!([checksummed(VAULT_1)]));

    let stored: String = sqlx::query_scalar(
        "SELECT payload FROM events WHERE event_type = \
         'TokenizedAssetEvent::VaultRepointed'",
    )
    .fetch_one(h.pool())
    .await
    .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    let repointed = &stored["VaultRepointed"];
    assert_eq!(
        repointed["previous_vault"].as_str().unwrap().to_lowercase(),
        VAULT_1
    );

    let vault_2 = VAULT_2.parse::<Vault>().unwrap().address();
    let vault_1 = VAULT_1.parse::<Vault>().unwrap().address();
    let found = find_by_vault(h.pool(), vault_2).await.unwrap().unwrap();
    assert_eq!(found.key().to_string(), "AAPL:base");
    assert!(find_by_vault(h.pool(), vault_1).await.unwrap().is_none());
}

#[rocket::async_test]
async fn re_add_with_another_token_is_409() {
    let h = Harness::start().await;
    h.add("AAPL", "tAAPL", "base", VAULT_1).await;
    let (status, body) = h.add("AAPL", "AAPLx", "base", VAULT_1).await;
    assert_error(status, &body, Status::Conflict, "already listed as token");
    assert_eq!(h.event_count().await, 1);
}

#[rocket::async_test]
async fn a_vault_backs_only_one_listing() {
    let h = Harness::start().await;
    h.add("AAPL", "tAAPL", "base", VAULT_1).await;
    let (status, body) = h.add("TSLA", "tTSLA", "base", VAULT_1).await;
    assert_error(status, &body, Status::Conflict, "vault already backs");
    let (status, body) = h.add("AAPL", "tAAPL", "ethereum", VAULT_1).await;
    assert_error(status, &body, Status::Conflict, "vault already backs");
    assert_eq!(h.event_count().await, 1);

    // Repointing onto a claimed vault fails too; the old claim survives.
    h.add("TSLA", "tTSLA", "base", VAULT_2).await;
    let (status, body) = h.add("TSLA", "tTSLA", "base", VAULT_1).await;
    assert_error(status, &body, Status::Conflict, "vault already backs");
    let vault_2 = VAULT_2.parse::<Vault>().unwrap().address();
    let found = find_by_vault(h.pool(), vault_2).await.unwrap().unwrap();
    assert_eq!(found.key().to_string(), "TSLA:base");

    // A released vault can be reused.
    h.add("AAPL", "tAAPL", "base", VAULT_3).await;
    let (status, body) = h.add("TSLA", "tTSLA", "base", VAULT_1).await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["outcome"], "repointed");
}

#[rocket::async_test]
async fn enable_and_disable() {
    let h = Harness::start().await;
    h.add("AAPL", "tAAPL", "base", VAULT_1).await;
    let (status, body) = h.toggle("AAPL", "base", "disable").await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["enabled"], false);
    let (status, body) = h.toggle("AAPL", "base", "disable").await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(h.event_count().await, 2);

    // Re-adding a disabled asset does not re-enable it.
    let (_, body) = h.add("AAPL", "tAAPL", "base", VAULT_1).await;
    assert_eq!(body["outcome"], "unchanged");
    assert_eq!(body["enabled"], false);

    let (status, body) = h.toggle("AAPL", "base", "enable").await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["enabled"], true);
    let (status, _) = h.toggle("AAPL", "base", "enable").await;
    assert_eq!(status, Status::Ok);
    assert_eq!(h.event_count().await, 3);
}

#[rocket::async_test]
async fn unknown_or_malformed_listing_paths() {
    let h = Harness::start().await;
    for action in ["enable", "disable"] {
        let (status, body) = h.toggle("MSFT", "base", action).await;
        assert_error(status, &body, Status::NotFound, "not found");
    }
    let (status, body) = h
        .send(
            Method::Get,
            "/tokenized-assets/MSFT/base",
            Key::Internal,
            None,
        )
        .await;
    assert_error(status, &body, Status::NotFound, "not found");
    let (status, body) = h.toggle("MSFT", "polygon", "enable").await;
    assert_error(
        status,
        &body,
        Status::UnprocessableEntity,
        "unknown network",
    );
    let (status, body) = h
        .send(
            Method::Get,
            "/tokenized-assets/msft/base",
            Key::Internal,
            None,
        )
        .await;
    assert_error(
        status,
        &body,
        Status::UnprocessableEntity,
        "invalid underlying symbol",
    );
    assert_eq!(h.event_count().await, 0);
}

#[rocket::async_test]
async fn add_rejects_bad_bodies_without_changing_state() {
    let h = Harness::start().await;
    let valid = json!({
        "underlying": "AAPL", "token": "tAAPL",
        "network": "base", "vault": VAULT_1,
    });
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body.to_string()
    };
    let cases: Vec<(String, &str)> =
        vec![
        ("{\"underlying\":".to_owned(), "invalid request body"),
        (with("network", json!("polygon")), "unknown variant `polygon`"),
        (with("network", json!("Base")), "unknown variant"),
        (with("vault", json!("0x12")), "40 hexadecimal digits"),
        (
            with("vault", json!("0x0000000000000000000000000000000000000000")),
            "zero address",
        ),
        (with("underlying", json!("aapl")), "invalid underlying symbol"),
        (with("token", json!("t-AAPL")), "invalid token symbol"),
        (with("token", json!(5)), "invalid type"),
        (with("extra", json!(true)), "unknown field `extra`"),
        (
            json!({"underlying": "AAPL", "token": "tAAPL", "network": "base"})
                .to_string(),
            "missing field `vault`",
        ),
    ];
    for (body, text) in cases {
        let (status, response) = h
            .send(
                Method::Post,
                "/tokenized-assets",
                Key::Internal,
                Some(&body),
            )
            .await;
        assert!(status.code >= 400 && status.code < 500, "{body}: {status}");
        let message = response["error"].as_str().unwrap();
        assert!(message.contains(text), "{body}: {message}");
    }
    assert_eq!(h.event_count().await, 0);
}

#[rocket::async_test]
async fn token_list_shows_enabled_assets_with_merged_networks() {
    let h = Harness::start().await;
    let vault = |n: u8| format!("0x{}", format!("{n:02x}").repeat(20));
    h.add("AAPL", "tAAPL", "ethereum", &vault(1)).await;
    h.add("AAPL", "tAAPL", "base", &vault(2)).await;
    h.add("AAPL", "tAAPL", "solana", &vault(3)).await;
    h.add("AAPL", "AAPLx", "tron", &vault(4)).await;
    h.add("TSLA", "tTSLA", "base", &vault(5)).await;
    h.add("MSFT", "tMSFT", "base", &vault(6)).await;
    h.toggle("AAPL", "solana", "disable").await;
    h.toggle("MSFT", "base", "disable").await;

    let expected = json!({"tokens": [
        {"underlying": "AAPL", "token": "AAPLx", "networks": ["tron"]},
        {"underlying": "AAPL", "token": "tAAPL",
         "networks": ["base", "ethereum"]},
        {"underlying": "TSLA", "token": "tTSLA", "networks": ["base"]},
    ]});
    for path in ["/tokenized-assets", "/tokenization/tokens"] {
        let (status, body) = h.send(Method::Get, path, Key::Alpaca, None).await;
        assert_eq!(status, Status::Ok, "{path}");
        assert_eq!(body, expected, "{path}");
    }
    let enabled = list_enabled(h.pool()).await.unwrap();
    assert_eq!(enabled.len(), 4);
    assert!(enabled.iter().all(|asset| asset.enabled));
}

#[rocket::async_test]
async fn token_list_is_empty_without_assets() {
    let h = Harness::start().await;
    let (status, body) = h
        .send(Method::Get, "/tokenization/tokens", Key::Alpaca, None)
        .await;
    assert_eq!(status, Status::Ok);
    assert_eq!(body, json!({"tokens": []}));
}

#[rocket::async_test]
async fn endpoints_require_the_right_key() {
    let h = Harness::start().await;
    let add = json!({
        "underlying": "AAPL", "token": "tAAPL",
        "network": "base", "vault": VAULT_1,
    })
    .to_string();
    let internal = [
        (Method::Post, "/tokenized-assets", Some(add.as_str())),
        (Method::Post, "/tokenized-assets/AAPL/base/enable", None),
        (Method::Post, "/tokenized-assets/AAPL/base/disable", None),
        (Method::Get, "/tokenized-assets/AAPL/base", None),
    ];
    for (method, path, body) in internal {
        let (status, response) = h.send(method, path, Key::Alpaca, body).await;
        assert_eq!(status, Status::Unauthorized, "{method} {path}");
        assert!(response["error"].is_string());
    }
    for path in ["/tokenized-assets", "/tokenization/tokens"] {
        let (status, response) =
            h.send(Method::Get, path, Key::Internal, None).await;
        assert_eq!(status, Status::Unauthorized, "{path}");
        assert!(response["error"].is_string());
    }
    for path in ["/tokenized-assets", "/tokenization/tokens"] {
        let (status, _) = h.send(Method::Get, path, Key::Missing, None).await;
        assert_eq!(status, Status::Unauthorized, "{path}");
    }
    assert_eq!(h.event_count().await, 0);
}

#[rocket::async_test]
async fn find_by_vault_ignores_checksum_case() {
    let h = Harness::start().await;
    h.add("AAPL", "tAAPL", "base", VAULT_1).await;
    let vault = address!("0xAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let found = find_by_vault(h.pool(), vault).await.unwrap().unwrap();
    assert_eq!(found.underlying.as_str(), "AAPL");
}

impl Harness {
    async fn freeze(&self, underlying: &str, body: &Value) -> (Status, Value) {
        self.send(
            Method::Post,
            &format!("/tokenized-assets/{underlying}/freeze"),
            Key::Internal,
            Some(&body.to_string()),
        )
        .await
    }

    async fn unfreeze(
        &self,
        underlying: &str,
        body: &Value,
    ) -> (Status, Value) {
        self.send(
            Method::Post,
            &format!("/tokenized-assets/{underlying}/unfreeze"),
            Key::Internal,
            Some(&body.to_string()),
        )
        .await
    }

    async fn token_list(&self) -> Value {
        let (status, body) = self
            .send(Method::Get, "/tokenization/tokens", Key::Alpaca, None)
            .await;
        assert_eq!(status, Status::Ok, "{body}");
        body
    }
}

fn frozen_flags(body: &Value) -> Vec<(String, bool)> {
    body["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|asset| {
            (
                asset["network"].as_str().unwrap().to_owned(),
                asset["frozen"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[rocket::async_test]
async fn freeze_all_networks_then_unfreeze_one_then_all() {
    let h = Harness::start().await;
    h.add("AAPL", "tAAPL", "ethereum", VAULT_1).await;
    h.add("AAPL", "tAAPL", "base", VAULT_2).await;
    h.add("TSLA", "tTSLA", "base", VAULT_3).await;
    let freeze = json!({"reason": "2-for-1 split"});
    let (status, body) = h.freeze("AAPL", &freeze).await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(
        frozen_flags(&body),
        [("base".to_owned(), true), ("ethereum".to_owned(), true)]
    );
    assert_eq!(body["assets"][0]["freeze"]["reason"], "2-for-1 split");
    assert_eq!(body["assets"][0]["freeze"]["until"], Value::Null);
    let events = h.event_count().await;
    // A repeat answers the same and writes nothing.
    let (status, again) = h.freeze("AAPL", &freeze).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(again, body);
    assert_eq!(h.event_count().await, events);

    let (status, fetched) = h
        .send(
            Method::Get,
            "/tokenized-assets/AAPL/base",
            Key::Internal,
            None,
        )
        .await;
    assert_eq!(status, Status::Ok);
    assert_eq!(fetched["frozen"], true);
    assert_eq!(fetched["freeze"]["reason"], "2-for-1 split");
    assert_eq!(
        h.token_list().await,
        json!({"tokens": [
            {"underlying": "AAPL", "token": "tAAPL",
             "networks": ["base", "ethereum"],
             "frozen_networks": ["base", "ethereum"]},
            {"underlying": "TSLA", "token": "tTSLA", "networks": ["base"]},
        ]})
    );

    let (status, body) = h
        .unfreeze("AAPL", &json!({"reason": "split done", "network": "base"}))
        .await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(frozen_flags(&body), [("base".to_owned(), false)]);
    assert_eq!(body["assets"][0]["freeze"], Value::Null);
    assert_eq!(
        h.token_list().await["tokens"][0]["frozen_networks"],
        json!(["ethereum"])
    );

    let (status, body) =
        h.unfreeze("AAPL", &json!({"reason": "split done"})).await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(
        frozen_flags(&body),
        [("base".to_owned(), false), ("ethereum".to_owned(), false)]
    );
    let events = h.event_count().await;
    let (status, _) =
        h.unfreeze("AAPL", &json!({"reason": "split done"})).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(h.event_count().await, events);
    assert!(
        h.token_list().await["tokens"][0]
            .get("frozen_networks")
            .is_none()
    );
}

#[rocket::async_test]
async fn a_scheduled_window_is_shown_but_not_yet_active() {
    let h = Harness::start().await;
    h.add("AAPL", "tAAPL", "base", VAULT_1).await;
    let from = chrono::Utc::now() + chrono::Duration::hours(1);
    let until = from + chrono::Duration::days(1);
    let (status, body) = h
        .freeze(
            "AAPL",
            &json!({
                "reason": "dividend",
                "network": "base",
                "from": from.to_rfc3339(),
                "until": until.to_rfc3339(),
            }),
        )
        .await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(frozen_flags(&body), [("base".to_owned(), false)]);
    let stored: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(body["assets"][0]["freeze"]["from"].clone())
            .unwrap();
    assert_eq!(stored, from);
    assert!(
        h.token_list().await["tokens"][0]
            .get("frozen_networks")
            .is_none()
    );
}

#[rocket::async_test]
async fn freeze_refuses_bad_input_and_unknown_assets() {
    let h = Harness::start().await;
    h.add("AAPL", "tAAPL", "base", VAULT_1).await;
    let events = h.event_count().await;
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let soon = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let cases = [
        (
            "AAPL",
            json!({"reason": "  "}),
            Status::UnprocessableEntity,
            "reason",
        ),
        ("AAPL", json!({}), Status::UnprocessableEntity, "reason"),
        (
            "AAPL",
            json!({"reason": "split", "why": "x"}),
            Status::UnprocessableEntity,
            "why",
        ),
        (
            "AAPL",
            json!({"reason": "split", "network": "polygon"}),
            Status::UnprocessableEntity,
            "polygon",
        ),
        (
            "AAPL",
            json!({"reason": "split", "until": past}),
            Status::UnprocessableEntity,
            "already ended",
        ),
        (
            "AAPL",
            json!({"reason": "split", "from": soon, "until": soon}),
            Status::UnprocessableEntity,
            "ends",
        ),
        (
            "AAPL",
            json!({"reason": "split", "until": "tomorrow"}),
            Status::UnprocessableEntity,
            "invalid request body",
        ),
        (
            "aapl",
            json!({"reason": "split"}),
            Status::UnprocessableEntity,
            "underlying symbol",
        ),
        (
            "MSFT",
            json!({"reason": "split"}),
            Status::NotFound,
            "tokenized asset not found",
        ),
        (
            "AAPL",
            json!({"reason": "split", "network": "ethereum"}),
            Status::NotFound,
            "tokenized asset not found",
        ),
    ];
    for (underlying, body, expected, text) in cases {
        let (status, answer) = h.freeze(underlying, &body).await;
        assert_error(status, &answer, expected, text);
    }
    let (status, answer) = h.unfreeze("MSFT", &json!({"reason": "x"})).await;
    assert_error(
        status,
        &answer,
        Status::NotFound,
        "tokenized asset not found",
    );
    let (status, answer) = h.unfreeze("AAPL", &json!({"reason": ""})).await;
    assert_error(status, &answer, Status::UnprocessableEntity, "reason");
    assert_eq!(h.event_count().await, events);
}

#[rocket::async_test]
async fn freeze_endpoints_require_the_internal_key() {
    let h = Harness::start().await;
    h.add("AAPL", "tAAPL", "base", VAULT_1).await;
    let events = h.event_count().await;
    let body = json!({"reason": "split"}).to_string();
    for action in ["freeze", "unfreeze"] {
        let path = format!("/tokenized-assets/AAPL/{action}");
        for key in [Key::Alpaca, Key::Missing] {
            let (status, _) =
                h.send(Method::Post, &path, key, Some(&body)).await;
            assert_eq!(status, Status::Unauthorized, "{path} {key:?}");
        }
    }
    assert_eq!(h.event_count().await, events);
}
