//! Account endpoints through the whole service (`build_rocket`) on a
//! temp-file SQLite database, via Rocket's local client.

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
    url: String,
    dir: TempDir,
}

impl Harness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bot.db").display());
        let client = Self::client(&url).await;
        Self { client, url, dir }
    }

    async fn client(url: &str) -> Client {
        let rocket = crate::build_rocket(Config::for_tests(url)).await.unwrap();
        Client::tracked(rocket).await.unwrap()
    }

    /// Stops the service and starts a new one on the same database.
    async fn restart(self) -> Self {
        let Self { client, url, dir } = self;
        client.terminate().await;
        let client = Self::client(&url).await;
        Self { client, url, dir }
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

    /// POSTs raw bytes with the given `Content-Type` (`None`: no header).
    async fn post_bytes(
        &self,
        path: &str,
        key: Key,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (Status, Value) {
        let mut request = self
            .client
            .post(path)
            .remote(SocketAddr::from(([127, 0, 0, 1], 40_000)))
            .body(body);
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

    async fn post(
        &self,
        path: &str,
        key: Key,
        body: &Value,
    ) -> (Status, Value) {
        self.send(Method::Post, path, key, Some(&body.to_string()))
            .await
    }

    async fn register(&self, email: &str) -> ClientId {
        let (status, body) = self
            .post("/accounts", Key::Internal, &json!({ "email": email }))
            .await;
        assert_eq!(status, Status::Ok, "{body}");
        body["client_id"].as_str().unwrap().parse().unwrap()
    }

    async fn get_account(&self, client_id: ClientId) -> (Status, Value) {
        self.send(
            Method::Get,
            &format!("/accounts/{client_id}"),
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

const WALLET: &str = "0x1111111111111111111111111111111111111111";
const OTHER_WALLET: &str = "0xAbCdEf0000000000000000000000000000000001";

#[rocket::async_test]
async fn register_then_view_shows_a_registered_account() {
    let h = Harness::start().await;
    let client_id = h.register("  Desk@AP.example.com ").await;
    let (status, view) = h.get_account(client_id).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(view["client_id"], client_id.to_string());
    assert_eq!(view["email"], "desk@ap.example.com");
    assert_eq!(view["status"], "registered");
    assert_eq!(view["alpaca_account"], Value::Null);
    assert_eq!(view["wallets"], json!([]));

    let email = Email::new("DESK@ap.example.com").unwrap();
    let found = find_by_email(h.pool(), &email).await.unwrap().unwrap();
    assert_eq!(found.client_id, client_id);
    assert!(!found.is_linked());
}

#[rocket::async_test]
async fn register_same_email_twice_is_409() {
    let h = Harness::start().await;
    h.register("ap@example.com").await;
    let (status, body) = h
        .post(
            "/accounts",
            Key::Internal,
            &json!({"email": "AP@example.com"}),
        )
        .await;
    assert_error(status, &body, Status::Conflict, "email already registered");
    assert_eq!(h.event_count().await, 1);
}

#[rocket::async_test]
async fn concurrent_registrations_of_one_email_admit_exactly_one() {
    let h = Harness::start().await;
    let body = json!({"email": "race@example.com"}).to_string();
    let requests = (0..8)
        .map(|_| h.send(Method::Post, "/accounts", Key::Internal, Some(&body)));
    let results = futures::future::join_all(requests).await;
    let ok = results.iter().filter(|(s, _)| *s == Status::Ok).count();
    assert_eq!(ok, 1, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != Status::Ok) {
        assert_error(*status, body, Status::Conflict, "already registered");
    }
    assert_eq!(h.event_count().await, 1);
    let claims: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM account_emails")
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(claims, 1);
}

#[rocket::async_test]
async fn register_rejects_bad_bodies_without_changing_state() {
    let h = Harness::start().await;
    let cases: [(&str, &str); 7] = [
        ("{not json", "invalid request body"),
        ("{\"email\": 5}", "invalid type"),
        ("{}", "missing field `email`"),
        (
            "{\"email\": \"ap@example.com\", \"admin\": true}",
            "unknown field `admin`",
        ),
        ("{\"email\": \"no-at-sign\"}", "exactly one '@'"),
        ("{\"email\": \"ap@localhost\"}", "domain"),
        ("[]", "invalid request body"),
    ];
    for (body, text) in cases {
        let (status, response) = h
            .send(Method::Post, "/accounts", Key::Internal, Some(body))
            .await;
        assert!(status.code >= 400 && status.code < 500, "{body}: {status}");
        let message = response["error"].as_str().unwrap();
        assert!(message.contains(text), "{body}: {message}");
    }
    assert_eq!(h.event_count().await, 0);
}

#[rocket::async_test]
async fn endpoints_require_the_right_key() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    let internal = [
        (
            Method::Post,
            "/accounts".to_owned(),
            Some(json!({"email": "x@y.io"})),
        ),
        (
            Method::Post,
            format!("/accounts/{client_id}/wallets"),
            Some(json!({"wallet": WALLET})),
        ),
        (
            Method::Delete,
            format!("/accounts/{client_id}/wallets/{WALLET}"),
            None,
        ),
        (Method::Get, format!("/accounts/{client_id}"), None),
    ];
    for (method, path, body) in &internal {
        for key in [Key::Missing, Key::Alpaca] {
            let body = body.as_ref().map(Value::to_string);
            let (status, response) =
                h.send(*method, path, key, body.as_deref()).await;
            assert_eq!(status, Status::Unauthorized, "{method} {path} {key:?}");
            assert!(response["error"].is_string());
        }
    }
    // A fresh service: the failure budget per address is 10 a minute.
    let h = h.restart().await;
    let connect = json!({"email": "ap@example.com", "account": "A1"});
    for path in ["/accounts/connect", "/tokenization/accounts/connect"] {
        for key in [Key::Missing, Key::Internal] {
            let (status, response) = h.post(path, key, &connect).await;
            assert_eq!(status, Status::Unauthorized, "{path} {key:?}");
            assert!(response["error"].is_string());
        }
    }
    // Nothing but the first registration happened.
    assert_eq!(h.event_count().await, 1);
}

#[rocket::async_test]
async fn connect_oldest_wire_links_once() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    let body = json!({"email": "AP@example.com", "account": "5505-1234"});
    let (status, response) =
        h.post("/accounts/connect", Key::Alpaca, &body).await;
    assert_eq!(status, Status::Ok, "{response}");
    assert_eq!(response, json!({"client_id": client_id.to_string()}));

    let (status, view) = h.get_account(client_id).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(view["status"], "linked");
    assert_eq!(view["alpaca_account"], "5505-1234");
    assert!(
        find_by_client_id(h.pool(), &client_id)
            .await
            .unwrap()
            .unwrap()
            .is_linked()
    );

    // Alpaca retrying after a lost answer: the identical body gets the
    // identical answer, and nothing is written.
    let (status, response) =
        h.post("/accounts/connect", Key::Alpaca, &body).await;
    assert_eq!(status, Status::Ok, "{response}");
    assert_eq!(response, json!({"client_id": client_id.to_string()}));
    assert_eq!(h.event_count().await, 2);

    // Another Alpaca account for the same email is a real conflict.
    let other = json!({"email": "ap@example.com", "account": "5505-9999"});
    let (status, response) =
        h.post("/accounts/connect", Key::Alpaca, &other).await;
    assert_error(
        status,
        &response,
        Status::Conflict,
        "account already linked",
    );
    assert_eq!(h.event_count().await, 2);
    let (_, view) = h.get_account(client_id).await;
    assert_eq!(view["alpaca_account"], "5505-1234");
}

#[rocket::async_test]
async fn connect_unknown_email_is_404() {
    let h = Harness::start().await;
    for path in ["/accounts/connect", "/tokenization/accounts/connect"] {
        let (status, response) = h
            .post(
                path,
                Key::Alpaca,
                &json!({"email": "nobody@example.com", "account": "A1"}),
            )
            .await;
        assert_error(status, &response, Status::NotFound, "email not found");
    }
    assert_eq!(h.event_count().await, 0);
}

#[rocket::async_test]
async fn connect_current_wire_answers_client_external_account_id() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    let (status, response) = h
        .post(
            "/tokenization/accounts/connect",
            Key::Alpaca,
            &json!({
                "email": "ap@example.com",
                "client_account_number": "5505-1234-ABC-4G45",
            }),
        )
        .await;
    assert_eq!(status, Status::Ok, "{response}");
    assert_eq!(
        response,
        json!({"client_external_account_id": client_id.to_string()})
    );
    // The identical repeat: the same answer, nothing written.
    let (status, response) = h
        .post(
            "/tokenization/accounts/connect",
            Key::Alpaca,
            &json!({
                "email": "ap@example.com",
                "client_account_number": "5505-1234-ABC-4G45",
            }),
        )
        .await;
    assert_eq!(status, Status::Ok, "{response}");
    assert_eq!(
        response,
        json!({"client_external_account_id": client_id.to_string()})
    );
    assert_eq!(h.event_count().await, 2);
    // A different account number: 409.
    let (status, response) = h
        .post(
            "/tokenization/accounts/connect",
            Key::Alpaca,
            &json!({
                "email": "ap@example.com",
                "client_account_number": "5505-1234-ABC-4G46",
            }),
        )
        .await;
    assert_error(
        status,
        &response,
        Status::Conflict,
        "account already linked",
    );
    assert_eq!(h.event_count().await, 2);
}

#[rocket::async_test]
async fn a_repeated_link_is_answered_in_the_shape_of_each_wire() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    let id = client_id.to_string();
    h.post(
        "/accounts/connect",
        Key::Alpaca,
        &json!({"email": "ap@example.com", "account": "ACC-1"}),
    )
    .await;
    // The same link repeated on the other wires (email in another case:
    // emails are compared normalised) answers in each wire's shape.
    let repeats = [
        (
            "/tokenization/accounts/connect",
            json!({"email": "AP@Example.com", "account": "ACC-1"}),
            json!({"client_id": id}),
        ),
        (
            "/tokenization/accounts/connect",
            json!({"email": "ap@example.com", "client_account_number": "ACC-1"}),
            json!({"client_external_account_id": id}),
        ),
    ];
    for (path, body, expected) in repeats {
        let (status, response) = h.post(path, Key::Alpaca, &body).await;
        assert_eq!(status, Status::Ok, "{path} {body}: {response}");
        assert_eq!(response, expected);
    }
    // Account numbers are compared exactly: another spelling is another
    // account.
    for number in ["acc-1", "ACC-2"] {
        let (status, response) = h
            .post(
                "/tokenization/accounts/connect",
                Key::Alpaca,
                &json!({"email": "ap@example.com", "client_account_number": number}),
            )
            .await;
        assert_error(
            status,
            &response,
            Status::Conflict,
            "account already linked",
        );
    }
    assert_eq!(h.event_count().await, 2);
}

#[rocket::async_test]
async fn concurrent_identical_links_all_get_the_client_id() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    let body =
        json!({"email": "ap@example.com", "account": "ACC-1"}).to_string();
    let requests = (0..8).map(|_| {
        h.send(Method::Post, "/accounts/connect", Key::Alpaca, Some(&body))
    });
    for (status, response) in futures::future::join_all(requests).await {
        assert_eq!(status, Status::Ok, "{response}");
        assert_eq!(response, json!({"client_id": client_id.to_string()}));
    }
    // One Registered, one Linked.
    assert_eq!(h.event_count().await, 2);
}

#[rocket::async_test]
async fn link_bodies_that_are_not_utf8_are_refused_as_invalid() {
    let h = Harness::start().await;
    h.register("ap@example.com").await;
    let bodies: [&[u8]; 3] = [
        b"{\"email\": \"ap@example.com\", \"account\": \"A\xff\"}",
        b"\xc3\x28",
        b"{\"email\": \"ap@example.com\", \"account\": \"\xed\xa0\x80\"}",
    ];
    for path in ["/accounts/connect", "/tokenization/accounts/connect"] {
        for body in bodies {
            let (status, response) = h
                .post_bytes(path, Key::Alpaca, Some("application/json"), body)
                .await;
            assert_error(
                status,
                &response,
                Status::UnprocessableEntity,
                "invalid request body: request body is not valid UTF-8",
            );
        }
    }
    assert_eq!(h.event_count().await, 1);
}

#[rocket::async_test]
async fn link_content_type_must_be_json_when_sent() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    let body = json!({"email": "ap@example.com", "account": "ACC-1"});
    let bytes = body.to_string();
    for path in ["/accounts/connect", "/tokenization/accounts/connect"] {
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json",
            "application/jsonx",
            "json",
            "",
        ] {
            let (status, response) = h
                .post_bytes(
                    path,
                    Key::Alpaca,
                    Some(content_type),
                    bytes.as_bytes(),
                )
                .await;
            assert_error(
                status,
                &response,
                Status::UnsupportedMediaType,
                "unsupported media type: send application/json",
            );
        }
        // Authentication comes first.
        let (status, _) = h
            .post_bytes(
                path,
                Key::Missing,
                Some("text/plain"),
                bytes.as_bytes(),
            )
            .await;
        assert_eq!(status, Status::Unauthorized);
    }
    assert_eq!(h.event_count().await, 1);
    // JSON with parameters, another letter case, a +json subtype, or no
    // Content-Type at all are read as JSON.
    let accepted = [
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
        Some("application/vnd.alpaca+json"),
        None,
    ];
    for content_type in accepted {
        let (status, response) = h
            .post_bytes(
                "/accounts/connect",
                Key::Alpaca,
                content_type,
                bytes.as_bytes(),
            )
            .await;
        assert_eq!(status, Status::Ok, "{content_type:?}: {response}");
        assert_eq!(response, json!({"client_id": client_id.to_string()}));
    }
    assert_eq!(h.event_count().await, 2);
}

#[rocket::async_test]
async fn connect_middle_wire_answers_client_id() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    let (status, response) = h
        .post(
            "/tokenization/accounts/connect",
            Key::Alpaca,
            &json!({"email": "ap@example.com", "account": "ACC-1"}),
        )
        .await;
    assert_eq!(status, Status::Ok, "{response}");
    assert_eq!(response, json!({"client_id": client_id.to_string()}));
}

#[rocket::async_test]
async fn connect_rejects_bad_bodies_without_changing_state() {
    let h = Harness::start().await;
    h.register("ap@example.com").await;
    let current = "/tokenization/accounts/connect";
    let cases: [(&str, Value, &str); 6] = [
        (
            current,
            json!({"email": "ap@example.com", "account": "A",
                   "client_account_number": "A"}),
            "exactly one",
        ),
        (current, json!({"email": "ap@example.com"}), "exactly one"),
        (
            current,
            json!({"email": "ap@example.com", "account": "A", "x": 1}),
            "unknown field",
        ),
        (
            "/accounts/connect",
            json!({"email": "ap@example.com", "client_account_number": "A"}),
            "unknown field",
        ),
        (
            "/accounts/connect",
            json!({"email": "ap@example.com", "account": ""}),
            "Alpaca account number",
        ),
        (
            current,
            json!({"email": "ap@", "account": "A"}),
            "invalid email",
        ),
    ];
    for (path, body, text) in cases {
        let (status, response) = h.post(path, Key::Alpaca, &body).await;
        assert!(status.code >= 400 && status.code < 500, "{body}: {status}");
        let message = response["error"].as_str().unwrap();
        assert!(message.contains(text), "{body}: {message}");
    }
    let (status, response) = h
        .send(Method::Post, current, Key::Alpaca, Some("{\"email\":"))
        .await;
    assert!(status.code >= 400 && status.code < 500, "{status}");
    assert!(response["error"].is_string());
    assert_eq!(h.event_count().await, 1);
}

#[rocket::async_test]
async fn whitelist_is_idempotent_and_checksum_insensitive() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    let path = format!("/accounts/{client_id}/wallets");
    let (status, response) = h
        .post(&path, Key::Internal, &json!({"wallet": OTHER_WALLET}))
        .await;
    assert_eq!(status, Status::Ok, "{response}");
    assert_eq!(response["client_id"], client_id.to_string());
    assert_eq!(response["whitelisted"], true);
    let checksummed = response["wallet"].as_str().unwrap().to_owned();
    assert_eq!(checksummed.to_lowercase(), OTHER_WALLET.to_lowercase());

    let lower = OTHER_WALLET.to_lowercase();
    let (status, response) = h
        .post(&path, Key::Internal, &json!({"wallet": lower}))
        .await;
    assert_eq!(status, Status::Ok, "{response}");
    assert_eq!(response["wallet"], checksummed);
    assert_eq!(h.event_count().await, 2);

    let (_, view) = h.get_account(client_id).await;
    assert_eq!(view["wallets"], json!([checksummed]));
    let address = address!("0xabcdef0000000000000000000000000000000001");
    assert_eq!(
        find_owner_of_wallet(h.pool(), &address).await.unwrap(),
        Some(client_id)
    );
    let account = find_by_client_id(h.pool(), &client_id)
        .await
        .unwrap()
        .unwrap();
    assert!(account.owns_wallet(&address));
}

#[rocket::async_test]
async fn whitelist_wallet_of_another_account_is_409() {
    let h = Harness::start().await;
    let first = h.register("first@example.com").await;
    let second = h.register("second@example.com").await;
    let (status, _) = h
        .post(
            &format!("/accounts/{first}/wallets"),
            Key::Internal,
            &json!({"wallet": WALLET}),
        )
        .await;
    assert_eq!(status, Status::Ok);
    let (status, response) = h
        .post(
            &format!("/accounts/{second}/wallets"),
            Key::Internal,
            &json!({"wallet": WALLET.to_uppercase().replacen("0X", "0x", 1)}),
        )
        .await;
    assert_error(
        status,
        &response,
        Status::Conflict,
        "wallet belongs to another account",
    );
    let (_, view) = h.get_account(second).await;
    assert_eq!(view["wallets"], json!([]));
    assert_eq!(h.event_count().await, 3);

    // Once released by the first account, the second may claim it.
    let (status, _) = h
        .send(
            Method::Delete,
            &format!("/accounts/{first}/wallets/{WALLET}"),
            Key::Internal,
            None,
        )
        .await;
    assert_eq!(status, Status::Ok);
    let (status, response) = h
        .post(
            &format!("/accounts/{second}/wallets"),
            Key::Internal,
            &json!({"wallet": WALLET}),
        )
        .await;
    assert_eq!(status, Status::Ok, "{response}");
    let wallet = WALLET.parse::<Wallet>().unwrap().address();
    assert_eq!(
        find_owner_of_wallet(h.pool(), &wallet).await.unwrap(),
        Some(second)
    );
}

#[rocket::async_test]
async fn concurrent_claims_of_one_wallet_give_it_to_one_account() {
    let h = Harness::start().await;
    let first = h.register("first@example.com").await;
    let second = h.register("second@example.com").await;
    let body = json!({"wallet": WALLET}).to_string();
    let paths: Vec<(ClientId, String)> = (0..8)
        .map(|i| if i % 2 == 0 { first } else { second })
        .map(|id| (id, format!("/accounts/{id}/wallets")))
        .collect();
    let requests = paths.iter().map(|(_, path)| {
        h.send(Method::Post, path, Key::Internal, Some(&body))
    });
    let results = futures::future::join_all(requests).await;

    let wallet = WALLET.parse::<Wallet>().unwrap().address();
    let owner = find_owner_of_wallet(h.pool(), &wallet)
        .await
        .unwrap()
        .unwrap();
    for ((id, _), (status, response)) in paths.iter().zip(&results) {
        if *id == owner {
            assert_eq!(*status, Status::Ok, "{response}");
        } else {
            assert_error(
                *status,
                response,
                Status::Conflict,
                "wallet belongs to another account",
            );
        }
    }
    let loser = if owner == first { second } else { first };
    let (_, view) = h.get_account(loser).await;
    assert_eq!(view["wallets"], json!([]));
    // Two registrations and exactly one whitelisting.
    assert_eq!(h.event_count().await, 3);
}

#[rocket::async_test]
async fn whitelist_errors() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    let unknown = ClientId::new(uuid::Uuid::from_u128(7));
    let (status, response) = h
        .post(
            &format!("/accounts/{unknown}/wallets"),
            Key::Internal,
            &json!({"wallet": WALLET}),
        )
        .await;
    assert_error(status, &response, Status::NotFound, "account not found");
    let (status, response) = h
        .post(
            "/accounts/not-a-uuid/wallets",
            Key::Internal,
            &json!({"wallet": WALLET}),
        )
        .await;
    assert_error(status, &response, Status::UnprocessableEntity, "client id");

    let path = format!("/accounts/{client_id}/wallets");
    let cases: [(Value, &str); 5] = [
        (json!({"wallet": "0x1234"}), "40 hexadecimal digits"),
        (
            json!({"wallet": "1111111111111111111111111111111111111111"}),
            "0x-prefixed",
        ),
        (
            json!({"wallet": "0x0000000000000000000000000000000000000000"}),
            "zero address",
        ),
        (json!({"wallet": WALLET, "label": "x"}), "unknown field"),
        (json!({"address": WALLET}), "unknown field"),
    ];
    for (body, text) in cases {
        let (status, response) = h.post(&path, Key::Internal, &body).await;
        assert_error(status, &response, Status::UnprocessableEntity, text);
    }
    assert_eq!(h.event_count().await, 1);
}

#[rocket::async_test]
async fn unwhitelist_is_idempotent() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    h.post(
        &format!("/accounts/{client_id}/wallets"),
        Key::Internal,
        &json!({"wallet": WALLET}),
    )
    .await;
    let path = format!("/accounts/{client_id}/wallets/{WALLET}");
    for _ in 0..2 {
        let (status, response) =
            h.send(Method::Delete, &path, Key::Internal, None).await;
        assert_eq!(status, Status::Ok, "{response}");
        assert_eq!(response["whitelisted"], false);
    }
    assert_eq!(h.event_count().await, 3);
    let (_, view) = h.get_account(client_id).await;
    assert_eq!(view["wallets"], json!([]));
    let wallet = WALLET.parse::<Wallet>().unwrap().address();
    assert_eq!(find_owner_of_wallet(h.pool(), &wallet).await.unwrap(), None);
}

#[rocket::async_test]
async fn unwhitelist_errors() {
    let h = Harness::start().await;
    let unknown = ClientId::new(uuid::Uuid::from_u128(7));
    let (status, response) = h
        .send(
            Method::Delete,
            &format!("/accounts/{unknown}/wallets/{WALLET}"),
            Key::Internal,
            None,
        )
        .await;
    assert_error(status, &response, Status::NotFound, "account not found");
    let client_id = h.register("ap@example.com").await;
    let (status, response) = h
        .send(
            Method::Delete,
            &format!("/accounts/{client_id}/wallets/0xnothex"),
            Key::Internal,
            None,
        )
        .await;
    assert_error(
        status,
        &response,
        Status::UnprocessableEntity,
        "invalid wallet address",
    );
    assert_eq!(h.event_count().await, 1);
}

#[rocket::async_test]
async fn get_unknown_account_is_404() {
    let h = Harness::start().await;
    let unknown = ClientId::new(uuid::Uuid::from_u128(7));
    let (status, response) = h.get_account(unknown).await;
    assert_error(status, &response, Status::NotFound, "account not found");
    let (status, response) = h
        .send(Method::Get, "/accounts/nope", Key::Internal, None)
        .await;
    assert_error(status, &response, Status::UnprocessableEntity, "UUID");
}

#[rocket::async_test]
async fn startup_rebuilds_a_view_only_when_its_version_changed() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    h.post(
        &format!("/accounts/{client_id}/wallets"),
        Key::Internal,
        &json!({"wallet": WALLET}),
    )
    .await;
    let (_, before) = h.get_account(client_id).await;
    sqlx::query("DELETE FROM account_view")
        .execute(h.pool())
        .await
        .unwrap();
    // Same projection version: the table is trusted as it is (commits
    // keep it current), so a restart does not replay the log.
    let h = h.restart().await;
    assert!(
        find_by_client_id(h.pool(), &client_id)
            .await
            .unwrap()
            .is_none()
    );
    // Another version recorded (as after a bump): rebuilt from the log.
    sqlx::query(
        "UPDATE view_versions SET version = version + 1 \
         WHERE view = 'account_view'",
    )
    .execute(h.pool())
    .await
    .unwrap();
    let h = h.restart().await;
    let (status, after) = h.get_account(client_id).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(after, before);
}

const ALPACA_ID: &str = "9b2d3c4e-5f60-4718-8a9b-0c1d2e3f4a5b";
const OTHER_ALPACA_ID: &str = "0f1e2d3c-4b5a-4697-8877-665544332211";

impl Harness {
    async fn put_alpaca_id(
        &self,
        client_id: ClientId,
        body: &Value,
    ) -> (Status, Value) {
        self.send(
            Method::Put,
            &format!("/accounts/{client_id}/alpaca-account-id"),
            Key::Internal,
            Some(&body.to_string()),
        )
        .await
    }

    async fn owner_of_alpaca_id(&self, raw: &str) -> Option<ClientId> {
        find_by_alpaca_account_id(self.pool(), &raw.parse().unwrap())
            .await
            .unwrap()
            .map(|view| view.client_id)
    }
}

#[rocket::async_test]
async fn record_alpaca_account_id_is_idempotent_and_findable() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    for _ in 0..2 {
        // Upper case is the same UUID.
        let (status, view) = h
            .put_alpaca_id(
                client_id,
                &json!({"alpaca_account_id": ALPACA_ID.to_uppercase()}),
            )
            .await;
        assert_eq!(status, Status::Ok, "{view}");
        assert_eq!(view["alpaca_account_id"], ALPACA_ID);
        assert_eq!(view["status"], "registered");
    }
    // One registration, one recording: the repeat wrote nothing.
    assert_eq!(h.event_count().await, 2);
    let (_, view) = h.get_account(client_id).await;
    assert_eq!(view["alpaca_account_id"], ALPACA_ID);
    let found =
        find_by_alpaca_account_id(h.pool(), &ALPACA_ID.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(found.client_id, client_id);
    assert!(!found.is_linked());
    assert_eq!(found.affiliated_only(), Some(ALPACA_ID.parse().unwrap()));
    assert_eq!(h.owner_of_alpaca_id(OTHER_ALPACA_ID).await, None);
}

#[rocket::async_test]
async fn alpaca_account_id_of_another_account_is_409() {
    let h = Harness::start().await;
    let first = h.register("first@example.com").await;
    let second = h.register("second@example.com").await;
    let (status, _) = h
        .put_alpaca_id(first, &json!({"alpaca_account_id": ALPACA_ID}))
        .await;
    assert_eq!(status, Status::Ok);
    let (status, response) = h
        .put_alpaca_id(second, &json!({"alpaca_account_id": ALPACA_ID}))
        .await;
    assert_error(
        status,
        &response,
        Status::Conflict,
        "Alpaca account id belongs to another account",
    );
    let (_, view) = h.get_account(second).await;
    assert_eq!(view["alpaca_account_id"], Value::Null);
    assert_eq!(h.event_count().await, 3);

    // Replacing the first account's id releases the old one.
    let (status, view) = h
        .put_alpaca_id(first, &json!({"alpaca_account_id": OTHER_ALPACA_ID}))
        .await;
    assert_eq!(status, Status::Ok, "{view}");
    assert_eq!(view["alpaca_account_id"], OTHER_ALPACA_ID);
    assert_eq!(h.owner_of_alpaca_id(OTHER_ALPACA_ID).await, Some(first));
    assert_eq!(h.owner_of_alpaca_id(ALPACA_ID).await, None);
    let (status, response) = h
        .put_alpaca_id(second, &json!({"alpaca_account_id": ALPACA_ID}))
        .await;
    assert_eq!(status, Status::Ok, "{response}");
    assert_eq!(h.owner_of_alpaca_id(ALPACA_ID).await, Some(second));
    let claims: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM account_alpaca_ids")
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert_eq!(claims, 2);
}

#[rocket::async_test]
async fn concurrent_claims_of_one_alpaca_account_id_admit_one_account() {
    let h = Harness::start().await;
    let first = h.register("first@example.com").await;
    let second = h.register("second@example.com").await;
    let body = json!({"alpaca_account_id": ALPACA_ID}).to_string();
    let paths: Vec<(ClientId, String)> = (0..8)
        .map(|i| if i % 2 == 0 { first } else { second })
        .map(|id| (id, format!("/accounts/{id}/alpaca-account-id")))
        .collect();
    let requests = paths
        .iter()
        .map(|(_, path)| h.send(Method::Put, path, Key::Internal, Some(&body)));
    let results = futures::future::join_all(requests).await;
    let owner = h.owner_of_alpaca_id(ALPACA_ID).await.unwrap();
    for ((id, _), (status, response)) in paths.iter().zip(&results) {
        if *id == owner {
            assert_eq!(*status, Status::Ok, "{response}");
        } else {
            assert_error(
                *status,
                response,
                Status::Conflict,
                "belongs to another account",
            );
        }
    }
    assert_eq!(h.event_count().await, 3);
}

#[rocket::async_test]
async fn record_alpaca_account_id_errors() {
    let h = Harness::start().await;
    let unknown = ClientId::new(uuid::Uuid::from_u128(7));
    let (status, response) = h
        .put_alpaca_id(unknown, &json!({"alpaca_account_id": ALPACA_ID}))
        .await;
    assert_error(status, &response, Status::NotFound, "account not found");
    let client_id = h.register("ap@example.com").await;
    let cases: [(Value, &str); 4] = [
        (json!({"alpaca_account_id": "AP-0001"}), "UUID"),
        (
            json!({"alpaca_account_id": "00000000-0000-0000-0000-000000000000"}),
            "nil UUID",
        ),
        (json!({}), "missing field"),
        (
            json!({"alpaca_account_id": ALPACA_ID, "note": "x"}),
            "unknown field",
        ),
    ];
    for (body, text) in cases {
        let (status, response) = h.put_alpaca_id(client_id, &body).await;
        assert_error(status, &response, Status::UnprocessableEntity, text);
    }
    // Alpaca's key is refused on the operators' endpoint.
    let (status, _) = h
        .send(
            Method::Put,
            &format!("/accounts/{client_id}/alpaca-account-id"),
            Key::Alpaca,
            Some(&json!({"alpaca_account_id": ALPACA_ID}).to_string()),
        )
        .await;
    assert_eq!(status, Status::Unauthorized);
    assert_eq!(h.event_count().await, 1);
}

#[rocket::async_test]
async fn alpaca_account_id_survives_a_view_rebuild() {
    let h = Harness::start().await;
    let client_id = h.register("ap@example.com").await;
    h.put_alpaca_id(client_id, &json!({"alpaca_account_id": ALPACA_ID}))
        .await;
    // Lose the table and its recorded version (as a version bump does):
    // the restart rebuilds it from the log.
    sqlx::query(
        "DELETE FROM account_view; \
         DELETE FROM view_versions WHERE view = 'account_view'",
    )
    .execute(h.pool())
    .await
    .unwrap();
    let h = h.restart().await;
    let (_, view) = h.get_account(client_id).await;
    assert_eq!(view["alpaca_account_id"], ALPACA_ID);
    assert_eq!(h.owner_of_alpaca_id(ALPACA_ID).await, Some(client_id));
}
