//! Mint endpoints through the whole service (`build_rocket_with`) on a
//! temp-file SQLite database, via Rocket's local client. Accounts and
//! listings are set up through their own endpoints.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::TimeZone;
use rocket::http::{ContentType, Header, Method, Status};
use rocket::local::asynchronous::Client;
use serde_json::{Value, json};
use sqlx::SqlitePool;
use tempfile::TempDir;

use super::api::{
    ASSET_FROZEN, DIFFERENT_CONTENT, INVALID_PAYLOAD, INVALID_TOKEN,
    INVALID_WALLET, NOT_ELIGIBLE,
};
use crate::clock::{FixedClock, SequentialIds};
use crate::config::{BodyLimit, Config, TEST_ALPACA_KEY, TEST_INTERNAL_KEY};
use crate::{Deps, build_rocket_with, migrate};

const WALLET: &str = "0x1111111111111111111111111111111111111111";
const OTHER_WALLET: &str = "0x2222222222222222222222222222222222222222";
const VAULT: &str = "0x3333333333333333333333333333333333333333";
const TOK: &str = "7f1c0c8e-5a9b-4d7e-9a0b-1c2d3e4f5a6b";

#[derive(Debug, Clone, Copy)]
enum Key {
    Alpaca,
    Internal,
}

struct Harness {
    client: Client,
    clock: Arc<FixedClock>,
    _dir: TempDir,
}

/// What `seed` set up.
struct Seed {
    client_id: String,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bot.db").display());
        let pool = sqlite_es::open_pool(&url, 4).await.unwrap();
        migrate(&pool).await.unwrap();
        let clock = Arc::new(FixedClock::new(
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
                .unwrap(),
        ));
        let deps = Deps {
            pool,
            clock: clock.clone(),
            ids: Arc::new(SequentialIds::new()),
            shutdown: crate::shutdown::channel().0,
        };
        let mut config = Config::for_tests(&url);
        configure(&mut config);
        let rocket = build_rocket_with(config, deps).await.unwrap();
        let client = Client::tracked(rocket).await.unwrap();
        Self {
            client,
            clock,
            _dir: dir,
        }
    }

    fn pool(&self) -> &SqlitePool {
        self.client.rocket().state::<SqlitePool>().unwrap()
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    async fn mint_events(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM events WHERE aggregate_type = 'Mint'")
            .await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        key: Key,
        body: Option<String>,
    ) -> (Status, Value) {
        let key = match key {
            Key::Alpaca => TEST_ALPACA_KEY,
            Key::Internal => TEST_INTERNAL_KEY,
        };
        let mut request = self
            .client
            .req(method, path)
            .remote(SocketAddr::from(([127, 0, 0, 1], 40_000)))
            .header(Header::new("X-API-KEY", key));
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

    async fn post(
        &self,
        path: &str,
        key: Key,
        body: &Value,
    ) -> (Status, Value) {
        self.send(Method::Post, path, key, Some(body.to_string()))
            .await
    }

    async fn post_raw(&self, path: &str, body: &str) -> (Status, Value) {
        self.send(Method::Post, path, Key::Alpaca, Some(body.to_owned()))
            .await
    }

    /// POSTs raw bytes with Alpaca's key and the given `Content-Type`
    /// (`None`: no header) or another key.
    async fn post_bytes(
        &self,
        path: &str,
        key: Option<Key>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (Status, Value) {
        let mut request = self
            .client
            .post(path)
            .remote(SocketAddr::from(([127, 0, 0, 1], 40_000)))
            .body(body);
        if let Some(key) = key {
            let key = match key {
                Key::Alpaca => TEST_ALPACA_KEY,
                Key::Internal => TEST_INTERNAL_KEY,
            };
            request = request.header(Header::new("X-API-KEY", key));
        }
        if let Some(content_type) = content_type {
            request = request
                .header(Header::new("Content-Type", content_type.to_owned()));
        }
        let response = request.dispatch().await;
        let status = response.status();
        let text = response.into_string().await.unwrap_or_default();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON body {text:?} ({status})"));
        (status, value)
    }

    async fn get_mint(&self, issuer_request_id: &str) -> (Status, Value) {
        self.send(
            Method::Get,
            &format!("/mints/{issuer_request_id}"),
            Key::Internal,
            None,
        )
        .await
    }

    async fn ok(&self, path: &str, key: Key, body: &Value) -> Value {
        let (status, response) = self.post(path, key, body).await;
        assert_eq!(status, Status::Ok, "{path}: {response}");
        response
    }

    /// A linked AP with one allow-listed wallet, and AAPL listed on
    /// base as tAAPL.
    async fn seed(&self) -> Seed {
        let client_id = self
            .register_and_whitelist("desk@ap.example.com", WALLET)
            .await;
        self.ok(
            "/accounts/connect",
            Key::Alpaca,
            &json!({"email": "desk@ap.example.com", "account": "AP-0001"}),
        )
        .await;
        self.ok(
            "/tokenized-assets",
            Key::Internal,
            &json!({
                "underlying": "AAPL",
                "token": "tAAPL",
                "network": "base",
                "vault": VAULT,
            }),
        )
        .await;
        Seed { client_id }
    }

    async fn register_and_whitelist(
        &self,
        email: &str,
        wallet: &str,
    ) -> String {
        let body = self
            .ok("/accounts", Key::Internal, &json!({ "email": email }))
            .await;
        let client_id = body["client_id"].as_str().unwrap().to_owned();
        self.ok(
            &format!("/accounts/{client_id}/wallets"),
            Key::Internal,
            &json!({ "wallet": wallet }),
        )
        .await;
        client_id
    }

    async fn initiate(&self, body: &Value) -> String {
        let response = self.ok("/inkind/issuance", Key::Alpaca, body).await;
        assert_eq!(response["status"], "created");
        response["issuer_request_id"].as_str().unwrap().to_owned()
    }
}

/// A valid oldest-wire mint request.
fn oldest(seed: &Seed) -> Value {
    json!({
        "tokenization_request_id": TOK,
        "qty": "1.5",
        "underlying_symbol": "AAPL",
        "token_symbol": "tAAPL",
        "network": "base",
        "client_id": seed.client_id,
        "wallet_address": WALLET,
    })
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

fn without(mut body: Value, field: &str) -> Value {
    body.as_object_mut().unwrap().remove(field);
    body
}

fn confirm_body(issuer_request_id: &str, status: &str) -> Value {
    json!({
        "tokenization_request_id": TOK,
        "issuer_request_id": issuer_request_id,
        "status": status,
    })
}

fn assert_error(status: Status, body: &Value, expected: Status, text: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"].as_str(), Some(text), "{body}");
}

#[rocket::async_test]
async fn each_wire_version_creates_a_mint() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let issuer_request_id = h.initiate(&oldest(&seed)).await;
    // SequentialIds: account registration drew id 1, the mint id 2.
    assert_eq!(issuer_request_id, "00000000-0000-0000-0000-000000000002");
    let (status, mint) = h.get_mint(&issuer_request_id).await;
    assert_eq!(status, Status::Ok, "{mint}");
    assert_eq!(mint["status"], "initiated");
    assert_eq!(mint["tokenization_request_id"], TOK);
    assert_eq!(mint["qty"], "1.5");
    assert_eq!(mint["underlying"], "AAPL");
    assert_eq!(mint["token"], "tAAPL");
    assert_eq!(mint["network"], "base");
    assert_eq!(mint["client_id"], seed.client_id);
    assert_eq!(mint["ap"], json!({ "client_id": seed.client_id }));
    assert_eq!(mint["wallet"].as_str().unwrap().to_lowercase(), WALLET);
    assert_eq!(mint["vault"].as_str().unwrap().to_lowercase(), VAULT);
    assert_eq!(mint["initiated_at"], "2026-11-28T12:00:00Z");
    assert_eq!(mint["tx_hash"], Value::Null);
    assert_eq!(mint["last_error"], Value::Null);

    // Middle wire: `id` and `client_id`, qty as a JSON number.
    let middle = json!({
        "id": "middle-1",
        "qty": 2,
        "underlying_symbol": "AAPL",
        "token_symbol": "tAAPL",
        "network": "base",
        "client_id": seed.client_id,
        "wallet_address": WALLET,
    });
    let response = h.ok("/tokenization/mint", Key::Alpaca, &middle).await;
    let (_, mint) = h
        .get_mint(response["issuer_request_id"].as_str().unwrap())
        .await;
    assert_eq!(mint["tokenization_request_id"], "middle-1");
    assert_eq!(mint["qty"], "2");

    // Current wire: client_external_account_id, an unknown extra field.
    let current = json!({
        "tokenization_request_id": "current-1",
        "qty": 0.000_000_001,
        "underlying_symbol": "AAPL",
        "token_symbol": "tAAPL",
        "network": "base",
        "client_external_account_id": seed.client_id,
        "wallet_address": WALLET.to_uppercase().replace("0X", "0x"),
        "client_request_id": "ap-label",
    });
    let response = h.ok("/tokenization/mint", Key::Alpaca, &current).await;
    let (_, mint) = h
        .get_mint(response["issuer_request_id"].as_str().unwrap())
        .await;
    assert_eq!(mint["qty"], "0.000000001");
    assert_eq!(
        mint["ap"],
        json!({ "client_external_account_id": seed.client_id })
    );
    assert_eq!(h.count("SELECT COUNT(*) FROM mint_ids").await, 3);
}

#[rocket::async_test]
async fn invalid_payloads_get_the_validation_string() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let valid = oldest(&seed);
    let cases = [
        without(valid.clone(), "qty"),
        with(valid.clone(), "qty", json!("0")),
        with(valid.clone(), "qty", json!(0)),
        with(valid.clone(), "qty", json!("-1")),
        with(valid.clone(), "qty", json!(-1)),
        with(valid.clone(), "qty", json!("1.0000000001")),
        with(valid.clone(), "qty", json!(1.000_000_000_1)),
        with(valid.clone(), "qty", json!("1e3")),
        with(valid.clone(), "qty", json!(1e-10)),
        with(valid.clone(), "qty", json!("abc")),
        with(valid.clone(), "qty", json!(null)),
        with(valid.clone(), "qty", json!(true)),
        with(valid.clone(), "network", json!("mars")),
        with(valid.clone(), "network", json!("Base")),
        without(valid.clone(), "network"),
        without(valid.clone(), "tokenization_request_id"),
        with(valid.clone(), "tokenization_request_id", json!("")),
        with(valid.clone(), "tokenization_request_id", json!("has space")),
        with(valid.clone(), "id", json!("another")),
        without(valid.clone(), "wallet_address"),
        with(valid.clone(), "wallet_address", json!("0x12")),
        with(
            valid.clone(),
            "wallet_address",
            json!("0x0000000000000000000000000000000000000000"),
        ),
        without(valid.clone(), "client_id"),
        with(valid.clone(), "client_external_account_id", json!("x")),
        with(valid.clone(), "underlying_symbol", json!(5)),
        without(valid.clone(), "token_symbol"),
        json!([1, 2]),
    ];
    for body in cases {
        let (status, response) =
            h.post("/inkind/issuance", Key::Alpaca, &body).await;
        assert_error(status, &response, Status::BadRequest, INVALID_PAYLOAD);
    }
    for raw in ["{", "", "not json"] {
        let (status, response) = h.post_raw("/tokenization/mint", raw).await;
        assert_error(status, &response, Status::BadRequest, INVALID_PAYLOAD);
    }
    assert_eq!(h.mint_events().await, 0);
}

#[rocket::async_test]
async fn unavailable_tokens_get_the_token_string() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let valid = oldest(&seed);
    let cases = [
        with(valid.clone(), "underlying_symbol", json!("MSFT")),
        with(valid.clone(), "token_symbol", json!("xAAPL")),
        with(valid.clone(), "network", json!("ethereum")),
    ];
    for body in cases {
        let (status, response) =
            h.post("/inkind/issuance", Key::Alpaca, &body).await;
        assert_error(status, &response, Status::BadRequest, INVALID_TOKEN);
    }
    h.ok(
        "/tokenized-assets/AAPL/base/disable",
        Key::Internal,
        &json!({}),
    )
    .await;
    let (status, response) =
        h.post("/inkind/issuance", Key::Alpaca, &valid).await;
    assert_error(status, &response, Status::BadRequest, INVALID_TOKEN);
    assert_eq!(h.mint_events().await, 0);
}

#[rocket::async_test]
async fn a_frozen_asset_refuses_new_mints_on_every_wire_but_not_earlier_ones() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let earlier = h.initiate(&oldest(&seed)).await;
    h.ok(
        "/tokenized-assets/AAPL/freeze",
        Key::Internal,
        &json!({"reason": "2-for-1 split"}),
    )
    .await;
    let middle = json!({
        "id": "middle-1",
        "qty": "2",
        "underlying_symbol": "AAPL",
        "token_symbol": "tAAPL",
        "network": "base",
        "client_id": seed.client_id,
        "wallet_address": WALLET,
    });
    let current = json!({
        "tokenization_request_id": "current-1",
        "qty": "2",
        "underlying_symbol": "AAPL",
        "token_symbol": "tAAPL",
        "network": "base",
        "client_external_account_id": seed.client_id,
        "wallet_address": WALLET,
    });
    let fresh = with(oldest(&seed), "tokenization_request_id", json!("old-2"));
    for (path, body) in [
        ("/inkind/issuance", &fresh),
        ("/tokenization/mint", &middle),
        ("/tokenization/mint", &current),
    ] {
        let (status, response) = h.post(path, Key::Alpaca, body).await;
        assert_error(status, &response, Status::BadRequest, ASSET_FROZEN);
    }
    assert_eq!(h.mint_events().await, 1);
    // The mint initiated before the freeze: a repeat gets its id, and its
    // confirmation is accepted.
    assert_eq!(h.initiate(&oldest(&seed)).await, earlier);
    let confirmed = h
        .ok(
            "/inkind/issuance/confirm",
            Key::Alpaca,
            &confirm_body(&earlier, "completed"),
        )
        .await;
    assert_eq!(confirmed["status"], "journal_confirmed");

    h.ok(
        "/tokenized-assets/AAPL/unfreeze",
        Key::Internal,
        &json!({"reason": "split done"}),
    )
    .await;
    h.ok("/tokenization/mint", Key::Alpaca, &current).await;
}

#[rocket::async_test]
async fn a_freeze_window_starts_and_ends_by_itself() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    h.ok(
        "/tokenized-assets/AAPL/freeze",
        Key::Internal,
        &json!({
            "reason": "dividend",
            "network": "base",
            "from": "2026-11-29T00:00:00Z",
            "until": "2026-11-30T00:00:00Z",
        }),
    )
    .await;
    let order =
        |id: &str| with(oldest(&seed), "tokenization_request_id", json!(id));
    h.initiate(&order("before")).await;
    h.clock
        .set(chrono::Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap());
    let (status, response) = h
        .post("/inkind/issuance", Key::Alpaca, &order("during"))
        .await;
    assert_error(status, &response, Status::BadRequest, ASSET_FROZEN);
    h.clock
        .set(chrono::Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap());
    h.initiate(&order("after")).await;
    assert_eq!(h.mint_events().await, 2);
}

#[rocket::async_test]
async fn ineligible_clients_and_foreign_wallets_are_refused() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let valid = oldest(&seed);
    // Registered, wallet allow-listed, but never linked by Alpaca.
    let unlinked = h
        .register_and_whitelist("other@ap.example.com", OTHER_WALLET)
        .await;
    let cases = [
        with(
            valid.clone(),
            "client_id",
            json!("9b2d3c4e-0000-4000-8000-000000000000"),
        ),
        with(valid.clone(), "client_id", json!("not-a-uuid")),
        with(
            with(valid.clone(), "client_id", json!(unlinked)),
            "wallet_address",
            json!(OTHER_WALLET),
        ),
        with(
            without(valid.clone(), "client_id"),
            "client_account_id",
            json!("9b2d3c4e-0000-4000-8000-000000000000"),
        ),
    ];
    for body in cases {
        let (status, response) =
            h.post("/inkind/issuance", Key::Alpaca, &body).await;
        assert_error(status, &response, Status::BadRequest, NOT_ELIGIBLE);
    }
    // The other account's wallet does not belong to this client.
    let foreign = with(valid, "wallet_address", json!(OTHER_WALLET));
    let (status, response) =
        h.post("/inkind/issuance", Key::Alpaca, &foreign).await;
    assert_error(status, &response, Status::BadRequest, INVALID_WALLET);
    assert_eq!(h.mint_events().await, 0);
}

const AP_ACCOUNT: &str = "5d0c8a3e-1b2f-4c6d-9e8f-7a6b5c4d3e2f";
const THIRD_WALLET: &str = "0x4444444444444444444444444444444444444444";

impl Harness {
    /// Records `alpaca_account_id` for the account (affiliated flow).
    async fn set_alpaca_account_id(&self, client_id: &str, id: &str) {
        let (status, response) = self
            .send(
                Method::Put,
                &format!("/accounts/{client_id}/alpaca-account-id"),
                Key::Internal,
                Some(json!({ "alpaca_account_id": id }).to_string()),
            )
            .await;
        assert_eq!(status, Status::Ok, "{response}");
    }
}

/// A current-wire mint request naming the AP by its Alpaca account.
fn affiliated(id: &str, wallet: &str) -> Value {
    json!({
        "tokenization_request_id": TOK,
        "qty": "3",
        "underlying_symbol": "AAPL",
        "token_symbol": "tAAPL",
        "network": "base",
        "client_account_id": id,
        "wallet_address": wallet,
    })
}

#[rocket::async_test]
async fn an_affiliated_ap_mints_without_a_handshake() {
    let h = Harness::start().await;
    h.seed().await;
    // Registered and never linked: only the Alpaca account id is known.
    let client_id = h
        .register_and_whitelist("corr@ap.example.com", OTHER_WALLET)
        .await;
    h.set_alpaca_account_id(&client_id, AP_ACCOUNT).await;
    let response = h
        .ok(
            "/tokenization/mint",
            Key::Alpaca,
            &affiliated(&AP_ACCOUNT.to_uppercase(), OTHER_WALLET),
        )
        .await;
    assert_eq!(response["status"], "created");
    let issuer_request_id = response["issuer_request_id"].as_str().unwrap();
    let (_, mint) = h.get_mint(issuer_request_id).await;
    assert_eq!(mint["client_id"], client_id);
    assert_eq!(mint["ap"], json!({ "client_account_id": AP_ACCOUNT }));

    // The confirmation names the same AP, plus the AP's own label.
    let mut confirm = confirm_body(issuer_request_id, "completed");
    confirm["client_account_id"] = json!(AP_ACCOUNT);
    confirm["client_request_id"] = json!("ap-label-1");
    // Naming the AP by our client id instead is a mismatch.
    let crossed = with(
        confirm.clone(),
        "client_external_account_id",
        json!(client_id),
    );
    let crossed = without(crossed, "client_account_id");
    let (status, body) = h
        .post("/tokenization/mint/confirm", Key::Alpaca, &crossed)
        .await;
    assert_eq!(status, Status::BadRequest, "{body}");
    let body = h
        .ok("/tokenization/mint/confirm", Key::Alpaca, &confirm)
        .await;
    assert_eq!(body["status"], "journal_confirmed");
}

#[rocket::async_test]
async fn a_linked_ap_with_an_alpaca_account_may_use_either_flow() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    h.set_alpaca_account_id(&seed.client_id, AP_ACCOUNT).await;
    h.initiate(&oldest(&seed)).await;
    let body = with(
        affiliated(AP_ACCOUNT, WALLET),
        "tokenization_request_id",
        json!("affiliated-2"),
    );
    let response = h.ok("/tokenization/mint", Key::Alpaca, &body).await;
    let (_, mint) = h
        .get_mint(response["issuer_request_id"].as_str().unwrap())
        .await;
    assert_eq!(mint["client_id"], seed.client_id);
    assert_eq!(mint["ap"], json!({ "client_account_id": AP_ACCOUNT }));
}

#[rocket::async_test]
async fn affiliated_requests_need_a_known_account_and_its_wallet() {
    let h = Harness::start().await;
    h.seed().await;
    let client_id = h
        .register_and_whitelist("corr@ap.example.com", OTHER_WALLET)
        .await;
    h.set_alpaca_account_id(&client_id, AP_ACCOUNT).await;
    let not_eligible = [
        // No account has this Alpaca account.
        affiliated("0f1e2d3c-4b5a-4697-8877-665544332211", OTHER_WALLET),
        // The nil UUID names nobody.
        affiliated("00000000-0000-0000-0000-000000000000", OTHER_WALLET),
        // The affiliated-only account named on the handshake flow: it was
        // never linked, so our client id is not eligible.
        with(
            without(affiliated(AP_ACCOUNT, OTHER_WALLET), "client_account_id"),
            "client_external_account_id",
            json!(client_id),
        ),
    ];
    for body in not_eligible {
        let (status, response) =
            h.post("/tokenization/mint", Key::Alpaca, &body).await;
        assert_error(status, &response, Status::BadRequest, NOT_ELIGIBLE);
    }
    // The linked AP's wallet, and a wallet nobody allow-listed.
    for wallet in [WALLET, THIRD_WALLET] {
        let (status, response) = h
            .post(
                "/tokenization/mint",
                Key::Alpaca,
                &affiliated(AP_ACCOUNT, wallet),
            )
            .await;
        assert_error(status, &response, Status::BadRequest, INVALID_WALLET);
    }
    // Not a UUID at all: the payload itself is invalid.
    let (status, response) = h
        .post(
            "/tokenization/mint",
            Key::Alpaca,
            &affiliated("AP-0001", OTHER_WALLET),
        )
        .await;
    assert_error(status, &response, Status::BadRequest, INVALID_PAYLOAD);
    assert_eq!(h.mint_events().await, 0);
}

#[rocket::async_test]
async fn a_repeated_request_gets_the_same_id_and_a_changed_one_409() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let first = h.initiate(&oldest(&seed)).await;
    // Same content, qty spelled differently: the same order.
    let same = with(oldest(&seed), "qty", json!("1.50"));
    assert_eq!(h.initiate(&same).await, first);
    assert_eq!(h.initiate(&oldest(&seed)).await, first);
    for changed in [
        with(oldest(&seed), "qty", json!("2")),
        with(oldest(&seed), "wallet_address", json!(OTHER_WALLET)),
        with(oldest(&seed), "network", json!("ethereum")),
    ] {
        let (status, response) =
            h.post("/inkind/issuance", Key::Alpaca, &changed).await;
        assert_error(status, &response, Status::Conflict, DIFFERENT_CONTENT);
    }
    assert_eq!(h.mint_events().await, 1);
}

#[rocket::async_test]
async fn concurrent_duplicates_create_exactly_one_mint() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let body = oldest(&seed).to_string();
    let requests = (0..8).map(|_| {
        h.client
            .post("/inkind/issuance")
            .remote(SocketAddr::from(([127, 0, 0, 1], 40_000)))
            .header(Header::new("X-API-KEY", TEST_ALPACA_KEY))
            .header(ContentType::JSON)
            .body(body.clone())
            .dispatch()
    });
    let responses = futures::future::join_all(requests).await;
    let mut ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), Status::Ok);
        let value: Value =
            serde_json::from_str(&response.into_string().await.unwrap())
                .unwrap();
        ids.push(value["issuer_request_id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(h.mint_events().await, 1);
    assert_eq!(h.count("SELECT COUNT(*) FROM mint_ids").await, 1);
}

#[rocket::async_test]
async fn confirm_completed_is_idempotent_and_reject_then_conflicts() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let id = h.initiate(&oldest(&seed)).await;
    let expected = json!({
        "tokenization_request_id": TOK,
        "issuer_request_id": id,
        "status": "journal_confirmed",
    });
    let body = confirm_body(&id, "completed");
    for _ in 0..3 {
        let response =
            h.ok("/inkind/issuance/confirm", Key::Alpaca, &body).await;
        assert_eq!(response, expected);
    }
    assert_eq!(h.mint_events().await, 2);
    let (_, mint) = h.get_mint(&id).await;
    assert_eq!(mint["status"], "journal_confirmed");
    assert_eq!(mint["journal_confirmed_at"], "2026-11-28T12:00:00Z");

    let (status, response) = h
        .post(
            "/inkind/issuance/confirm",
            Key::Alpaca,
            &confirm_body(&id, "rejected"),
        )
        .await;
    assert_eq!(status, Status::Conflict, "{response}");
    assert_eq!(h.mint_events().await, 2);
}

#[rocket::async_test]
async fn confirm_rejected_on_every_wire_then_completed_conflicts() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let id = h.initiate(&oldest(&seed)).await;
    let middle = json!({
        "id": TOK,
        "issuer_request_id": id,
        "status": "rejected",
        "reason": "insufficient position",
    });
    let current = json!({
        "tokenization_request_id": TOK,
        "issuer_request_id": id,
        "client_external_account_id": seed.client_id,
        "client_request_id": "ap-label",
        "status": "rejected",
    });
    for body in [&middle, &current] {
        let response =
            h.ok("/tokenization/mint/confirm", Key::Alpaca, body).await;
        assert_eq!(response["status"], "journal_rejected");
        assert_eq!(response["issuer_request_id"], id.as_str());
    }
    let (_, mint) = h.get_mint(&id).await;
    assert_eq!(mint["status"], "journal_rejected");
    assert_eq!(mint["rejection_reason"], "insufficient position");
    let (status, response) = h
        .post(
            "/tokenization/mint/confirm",
            Key::Alpaca,
            &confirm_body(&id, "completed"),
        )
        .await;
    assert_eq!(status, Status::Conflict, "{response}");
    assert_eq!(h.mint_events().await, 2);
}

#[rocket::async_test]
async fn confirm_refuses_unknown_and_mismatched_requests() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let id = h.initiate(&oldest(&seed)).await;
    let other = h
        .initiate(&with(oldest(&seed), "tokenization_request_id", json!("b")))
        .await;
    let path = "/inkind/issuance/confirm";
    // Unknown tokenization_request_id with an unknown issuer id.
    let unknown = with(
        confirm_body("00000000-0000-0000-0000-00000000ffff", "completed"),
        "tokenization_request_id",
        json!("nope"),
    );
    let (status, response) = h.post(path, Key::Alpaca, &unknown).await;
    assert_error(status, &response, Status::NotFound, "mint not found");
    // Known id, another mint's issuer_request_id (either way round).
    let crossed = confirm_body(&other, "completed");
    let (status, response) = h.post(path, Key::Alpaca, &crossed).await;
    assert_eq!(status, Status::BadRequest, "{response}");
    let crossed = with(
        confirm_body(&id, "completed"),
        "tokenization_request_id",
        json!("nope"),
    );
    let (status, response) = h.post(path, Key::Alpaca, &crossed).await;
    assert_eq!(status, Status::BadRequest, "{response}");
    let not_uuid = confirm_body("abc", "completed");
    let (status, response) = h.post(path, Key::Alpaca, &not_uuid).await;
    assert_eq!(status, Status::BadRequest, "{response}");
    // An AP id that is not the mint's.
    let wrong_ap = with(
        confirm_body(&id, "completed"),
        "client_external_account_id",
        json!("9b2d3c4e-0000-4000-8000-000000000000"),
    );
    let (status, response) = h.post(path, Key::Alpaca, &wrong_ap).await;
    assert_eq!(status, Status::BadRequest, "{response}");
    for bad in [
        with(confirm_body(&id, "completed"), "status", json!("done")),
        without(confirm_body(&id, "completed"), "status"),
        without(confirm_body(&id, "completed"), "issuer_request_id"),
    ] {
        let (status, response) = h.post(path, Key::Alpaca, &bad).await;
        assert_error(status, &response, Status::BadRequest, INVALID_PAYLOAD);
    }
    // Nothing beyond the two Initiated events.
    assert_eq!(h.mint_events().await, 2);
    let (_, mint) = h.get_mint(&id).await;
    assert_eq!(mint["status"], "initiated");
}

#[rocket::async_test]
async fn get_mint_needs_the_internal_key_and_a_known_id() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let id = h.initiate(&oldest(&seed)).await;
    let (status, _) = h
        .send(Method::Get, &format!("/mints/{id}"), Key::Alpaca, None)
        .await;
    assert_eq!(status, Status::Unauthorized);
    let (status, response) =
        h.get_mint("00000000-0000-0000-0000-00000000ffff").await;
    assert_error(status, &response, Status::NotFound, "mint not found");
    let (status, _) = h.get_mint("nope").await;
    assert_eq!(status, Status::UnprocessableEntity);
}

#[rocket::async_test]
async fn mint_endpoints_need_alpacas_key() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let (status, _) = h
        .post("/inkind/issuance", Key::Internal, &oldest(&seed))
        .await;
    assert_eq!(status, Status::Unauthorized);
    assert_eq!(h.mint_events().await, 0);
}

#[rocket::async_test]
async fn the_driver_query_uses_the_status_index() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let id = h.initiate(&oldest(&seed)).await;
    h.ok(
        "/inkind/issuance/confirm",
        Key::Alpaca,
        &confirm_body(&id, "completed"),
    )
    .await;
    let unfinished = super::unfinished_mints(h.pool(), None).await.unwrap();
    assert_eq!(
        unfinished
            .iter()
            .map(super::TokenizationRequestId::as_str)
            .collect::<Vec<_>>(),
        vec![TOK]
    );
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT view_id FROM mint_view \
         WHERE json_extract(payload, '$.status') \
               IN ('journal_confirmed', 'mint_intended', 'minted') \
         ORDER BY json_extract(payload, '$.initiated_at'), view_id",
    )
    .fetch_all(h.pool())
    .await
    .unwrap();
    assert!(
        plan.iter()
            .any(|(_, _, _, detail)| detail.contains("mint_view_by_status")),
        "{plan:?}"
    );
}

/// The oldest-wire request as JSON text with `qty` spelled exactly as
/// given: a `serde_json::Value` would round a long number through f64.
fn oldest_text(seed: &Seed, qty: &str) -> String {
    let mut body = oldest(seed);
    body["qty"] = json!("QTY");
    body.to_string().replace("\"QTY\"", qty)
}

/// Every Alpaca mint route (request and confirmation, every wire).
const MINT_ROUTES: [&str; 4] = [
    "/inkind/issuance",
    "/tokenization/mint",
    "/inkind/issuance/confirm",
    "/tokenization/mint/confirm",
];

#[rocket::async_test]
async fn bodies_that_are_not_utf8_get_the_validation_string() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let valid = oldest(&seed).to_string();
    // A stray byte inside a string, a lone continuation byte, an encoded
    // surrogate, an overlong '/', Latin-1 text, and a body that is
    // nothing but garbage.
    let spliced = |bad: &[u8]| {
        let mut bytes = valid.clone().into_bytes();
        let at = valid.find("tAAPL").unwrap() + 1;
        bytes.splice(at..at, bad.iter().copied());
        bytes
    };
    let bodies = [
        spliced(b"\xff"),
        spliced(b"\x80"),
        spliced(b"\xed\xa0\x80"),
        spliced(b"\xc0\xaf"),
        spliced(b"\xe9"),
        b"\xfe\xff\x00{".to_vec(),
    ];
    for path in MINT_ROUTES {
        for body in &bodies {
            let (status, response) = h
                .post_bytes(
                    path,
                    Some(Key::Alpaca),
                    Some("application/json"),
                    body,
                )
                .await;
            assert_error(
                status,
                &response,
                Status::BadRequest,
                INVALID_PAYLOAD,
            );
        }
    }
    assert_eq!(h.mint_events().await, 0);
}

#[rocket::async_test]
async fn an_oversized_body_is_413_even_when_the_limit_splits_a_character() {
    let h = Harness::start_with(|config| {
        config.server.body_limit = BodyLimit::new(64).unwrap();
    })
    .await;
    // The 64th byte is the first half of a two-byte 'é': reading only up
    // to the limit would look like invalid UTF-8, but the body is too
    // large.
    let body =
        format!("{{\"tokenization_request_id\":\"x{}\"}}", "é".repeat(40));
    assert!(!body.is_char_boundary(64));
    for path in MINT_ROUTES {
        let (status, response) = h
            .post_bytes(
                path,
                Some(Key::Alpaca),
                Some("application/json"),
                body.as_bytes(),
            )
            .await;
        assert_error(
            status,
            &response,
            Status::PayloadTooLarge,
            "request body exceeds the size limit",
        );
    }
}

#[rocket::async_test]
async fn numeric_qty_is_read_exactly_or_refused_never_rounded() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    // Exact values in every JSON spelling are accepted...
    let first = h
        .post_raw("/inkind/issuance", &oldest_text(&seed, "15e-1"))
        .await;
    assert_eq!(first.0, Status::Ok, "{}", first.1);
    let id = first.1["issuer_request_id"].as_str().unwrap().to_owned();
    let (_, mint) = h.get_mint(&id).await;
    assert_eq!(mint["qty"], "1.5");
    // ...and a repeat that spells the same number differently is the
    // same order.
    for same in [
        "1.5",
        "1.50",
        "1.5e0",
        "0.15E+1",
        "1500000000e-9",
        "\"1.5\"",
    ] {
        let (status, response) = h
            .post_raw("/inkind/issuance", &oldest_text(&seed, same))
            .await;
        assert_eq!(status, Status::Ok, "{same}: {response}");
        assert_eq!(response["issuer_request_id"], id.as_str(), "{same}");
    }
    // One part in 10^32 more is not 1.5 and not rounded to it: it has
    // more than 9 decimals, so the payload is invalid (checked before the
    // repeat, so not a 409 either).
    let refused = [
        "1.50000000000000000000000000000001",
        "1.50000000000000000000000000000001e0",
        "150000000000000000000000000000001e-32",
        "1.0000000001",
        "1e-10",
        "1e999999999999999999",
        "1e-999999999999999999",
        "-1.5",
        "-0",
        "0e5",
        "\"1.5e0\"",
        "\" 1.5\"",
    ];
    for qty in refused {
        let (status, response) = h
            .post_raw("/inkind/issuance", &oldest_text(&seed, qty))
            .await;
        assert_error(status, &response, Status::BadRequest, INVALID_PAYLOAD);
    }
    assert_eq!(h.mint_events().await, 1);
}

#[rocket::async_test]
async fn the_campaigns_qty_is_refused_on_every_wire() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let body = oldest_text(&seed, "1.00000000000000000000000000000001e0");
    for path in ["/inkind/issuance", "/tokenization/mint"] {
        let (status, response) = h.post_raw(path, &body).await;
        assert_error(status, &response, Status::BadRequest, INVALID_PAYLOAD);
    }
    assert_eq!(h.mint_events().await, 0);
    // The same order with qty 1 is a fresh mint: nothing was recorded
    // under this id.
    let response = h
        .post_raw("/inkind/issuance", &oldest_text(&seed, "1"))
        .await;
    assert_eq!(response.0, Status::Ok, "{}", response.1);
}

#[rocket::async_test]
async fn a_repeat_naming_the_ap_by_its_alias_gets_the_same_answer() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let first = h.initiate(&oldest(&seed)).await;
    let by_current_name = with(
        without(oldest(&seed), "client_id"),
        "client_external_account_id",
        json!(seed.client_id),
    );
    for path in ["/inkind/issuance", "/tokenization/mint"] {
        let response = h.ok(path, Key::Alpaca, &by_current_name).await;
        assert_eq!(response["issuer_request_id"], first.as_str(), "{path}");
        assert_eq!(response["status"], "created");
    }
    // The mint keeps the name the first request used (the callback
    // follows `[alpaca] send_legacy_client_id`, not this).
    let (_, mint) = h.get_mint(&first).await;
    assert_eq!(mint["ap"], json!({ "client_id": seed.client_id }));

    // The other way round, on a second mint.
    let second_external =
        with(by_current_name, "tokenization_request_id", json!("second"));
    let second = h
        .ok("/tokenization/mint", Key::Alpaca, &second_external)
        .await["issuer_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second_legacy =
        with(oldest(&seed), "tokenization_request_id", json!("second"));
    let response = h.ok("/inkind/issuance", Key::Alpaca, &second_legacy).await;
    assert_eq!(response["issuer_request_id"], second.as_str());
    assert_eq!(h.mint_events().await, 2);
}

#[rocket::async_test]
async fn a_repeat_naming_another_ap_is_409_whatever_the_field() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    // The linked AP also has an Alpaca account id: the affiliated name of
    // the same AP is still a different reference (the callback would name
    // the AP differently), so it is a different order.
    h.set_alpaca_account_id(&seed.client_id, AP_ACCOUNT).await;
    h.initiate(&oldest(&seed)).await;
    let other_ap = "9b2d3c4e-0000-4000-8000-000000000000";
    let changed = [
        with(oldest(&seed), "client_id", json!(other_ap)),
        with(
            without(oldest(&seed), "client_id"),
            "client_external_account_id",
            json!(other_ap),
        ),
        with(
            without(oldest(&seed), "client_id"),
            "client_account_id",
            json!(AP_ACCOUNT),
        ),
    ];
    for body in changed {
        let (status, response) =
            h.post("/tokenization/mint", Key::Alpaca, &body).await;
        assert_error(status, &response, Status::Conflict, DIFFERENT_CONTENT);
    }
    assert_eq!(h.mint_events().await, 1);
}

#[rocket::async_test]
async fn a_non_json_content_type_is_415_and_a_missing_one_is_json() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let request = oldest(&seed).to_string();
    let refused = [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/json",
        "application/jsonp",
        "json",
        "not a media type",
        "",
    ];
    for path in MINT_ROUTES {
        for content_type in refused {
            let (status, response) = h
                .post_bytes(
                    path,
                    Some(Key::Alpaca),
                    Some(content_type),
                    request.as_bytes(),
                )
                .await;
            assert_error(
                status,
                &response,
                Status::UnsupportedMediaType,
                "unsupported media type: send application/json",
            );
        }
        // The key is checked before the body.
        let (status, _) = h
            .post_bytes(path, None, Some("text/plain"), request.as_bytes())
            .await;
        assert_eq!(status, Status::Unauthorized, "{path}");
    }
    assert_eq!(h.mint_events().await, 0);

    // JSON in any letter case, with parameters, as a +json subtype, or no
    // Content-Type at all: read as JSON, and a repeat of the same order.
    let accepted = [
        None,
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("APPLICATION/JSON"),
        Some("application/problem+json"),
    ];
    let mut ids = Vec::new();
    for path in ["/inkind/issuance", "/tokenization/mint"] {
        for content_type in accepted {
            let (status, response) = h
                .post_bytes(
                    path,
                    Some(Key::Alpaca),
                    content_type,
                    request.as_bytes(),
                )
                .await;
            assert_eq!(status, Status::Ok, "{content_type:?}: {response}");
            ids.push(response["issuer_request_id"].clone());
        }
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let confirm =
        confirm_body(ids[0].as_str().unwrap(), "completed").to_string();
    for path in ["/inkind/issuance/confirm", "/tokenization/mint/confirm"] {
        let (status, response) = h
            .post_bytes(path, Some(Key::Alpaca), None, confirm.as_bytes())
            .await;
        assert_eq!(status, Status::Ok, "{path}: {response}");
        assert_eq!(response["status"], "journal_confirmed");
    }
    assert_eq!(h.mint_events().await, 2);
}

#[rocket::async_test]
async fn an_operator_closes_a_mint_alpaca_never_confirmed() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let id = h.initiate(&oldest(&seed)).await;
    // The clock is fixed: the mint is 0 s old, stuck from age 0 up.
    let (status, stuck) = h
        .send(
            Method::Get,
            "/admin/stuck?older_than_secs=0",
            Key::Internal,
            None,
        )
        .await;
    assert_eq!(status, Status::Ok, "{stuck}");
    assert_eq!(stuck["mints"].as_array().unwrap().len(), 0, "{stuck}");
    let (status, stuck) = h
        .send(Method::Get, "/admin/stuck", Key::Internal, None)
        .await;
    assert_eq!(status, Status::Ok);
    assert_eq!(stuck["older_than_secs"], 600);

    let close = format!("/admin/mints/{id}/close");
    let (status, answer) = h
        .post(&close, Key::Internal, &json!({"reason": "  "}))
        .await;
    assert_eq!(status, Status::UnprocessableEntity, "{answer}");
    let (status, answer) = h.post(&close, Key::Internal, &json!({})).await;
    assert_eq!(status, Status::UnprocessableEntity, "{answer}");
    let (status, _) = h
        .post(&close, Key::Alpaca, &json!({"reason": "abandoned"}))
        .await;
    assert_eq!(status, Status::Unauthorized);
    let (status, answer) = h
        .post(
            "/admin/mints/00000000-0000-0000-0000-00000000ffff/close",
            Key::Internal,
            &json!({"reason": "abandoned"}),
        )
        .await;
    assert_eq!(status, Status::NotFound, "{answer}");

    for _ in 0..2 {
        let (status, answer) = h
            .post(&close, Key::Internal, &json!({"reason": "abandoned"}))
            .await;
        assert_eq!(status, Status::Ok, "{answer}");
        assert_eq!(answer["action"], "closed");
        assert_eq!(answer["mint"]["status"], "closed");
        assert_eq!(answer["mint"]["close_reason"], "abandoned");
    }
    assert_eq!(h.mint_events().await, 2);
    // Alpaca's late confirmation cannot revive it.
    let (status, _) = h
        .post(
            "/inkind/issuance/confirm",
            Key::Alpaca,
            &confirm_body(&id, "completed"),
        )
        .await;
    assert_eq!(status, Status::Conflict);

    let (status, history) = h
        .send(
            Method::Get,
            &format!("/admin/history/mint/{id}"),
            Key::Internal,
            None,
        )
        .await;
    assert_eq!(status, Status::Ok, "{history}");
    let events = history["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_type"], "MintEvent::Initiated");
    assert_eq!(events[1]["event_type"], "MintEvent::MintClosed");
    assert_eq!(events[1]["sequence"], 2);
    assert_eq!(events[1]["time"], "2026-11-28T12:00:00Z");
    assert_eq!(events[1]["payload"]["MintClosed"]["reason"], "abandoned");
    assert_eq!(history["id"], TOK);
    let (status, _) = h
        .send(
            Method::Get,
            &format!("/admin/history/mint/{TOK}"),
            Key::Internal,
            None,
        )
        .await;
    assert_eq!(status, Status::Ok);
    let (status, _) = h
        .send(Method::Get, "/admin/history/widget/1", Key::Internal, None)
        .await;
    assert_eq!(status, Status::NotFound);
    let (status, _) = h
        .send(Method::Get, "/admin/history/mint/nope", Key::Internal, None)
        .await;
    assert_eq!(status, Status::NotFound);
}

#[rocket::async_test]
async fn only_a_failed_mint_is_retried() {
    let h = Harness::start().await;
    let seed = h.seed().await;
    let id = h.initiate(&oldest(&seed)).await;
    h.ok(
        "/inkind/issuance/confirm",
        Key::Alpaca,
        &confirm_body(&id, "completed"),
    )
    .await;
    let (status, answer) = h
        .post(
            &format!("/admin/mints/{id}/retry"),
            Key::Internal,
            &json!({"reason": "again"}),
        )
        .await;
    assert_error(
        status,
        &answer,
        Status::Conflict,
        "Retry is not allowed in state journal_confirmed",
    );
    assert_eq!(h.mint_events().await, 2);
    let (status, rebuilt) = h
        .send(Method::Post, "/admin/views/rebuild", Key::Internal, None)
        .await;
    assert_eq!(status, Status::Ok, "{rebuilt}");
    assert!(
        rebuilt["replayed"]
            .as_array()
            .unwrap()
            .contains(&json!({"view": "mint", "events": 2})),
        "{rebuilt}"
    );
    let (status, stuck) = h
        .send(
            Method::Get,
            "/admin/stuck?older_than_secs=9223372036854775806",
            Key::Internal,
            None,
        )
        .await;
    assert_eq!(status, Status::Ok, "{stuck}");
    assert_eq!(stuck["mints"].as_array().unwrap().len(), 0);
    let (_, mint) = h.get_mint(&id).await;
    assert_eq!(mint["status"], "journal_confirmed");
}
