//! Alpaca's signature scheme through the real service composition (the
//! real catchers, guards and Alpaca routes): accepted requests, one 401
//! per fault with a message naming it, key rotation, the digest check on
//! every Alpaca route with a body, and one log line per failure.
//!
//! Requests are signed here by plain string building, independently of
//! the verifier's structured-field code; `itn-sim`'s signer is checked
//! against the verifier too.

use std::io;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::DateTime;
use ed25519_dalek::pkcs8::EncodePublicKey as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::{Signer as _, SigningKey};
use rocket::http::{Header, Method, Status};
use rocket::local::asynchronous::Client;
use rocket::serde::json::Json;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tracing::Dispatch;
use tracing::subscriber::NoSubscriber;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

use super::*;
use crate::clock::{FixedClock, RandomIds};
use crate::config::{
    AlpacaAuthConfig, AlpacaCredentials, Config, TEST_ALPACA_KEY,
};
use crate::http::body::JsonBody;
use crate::http::{ApiError, ErrorBody};

const KEYID_A: &str = "alpaca-issuer-2026-01";
const KEYID_B: &str = "alpaca-issuer-2026-07";
const HOST: &str = "issuer.test";
const PATH: &str = "/test/alpaca";
/// Our (fixed) clock: 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;
const SKEW: i64 = 300;

fn key_a() -> SigningKey {
    SigningKey::from_bytes(&[0xa1; 32])
}

fn key_b() -> SigningKey {
    SigningKey::from_bytes(&[0xb2; 32])
}

fn pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

fn public(
    keyid: &str,
    key: &SigningKey,
    not_after: Option<i64>,
) -> SignatureKey {
    SignatureKey::from_pem(
        keyid,
        &pem(key),
        not_after.map(|at| DateTime::from_timestamp(at, 0).unwrap()),
    )
    .unwrap()
}

fn settings(
    keys: Vec<SignatureKey>,
    capacity: usize,
    base_url: Option<&str>,
) -> SignatureConfig {
    SignatureConfig::new(
        keys,
        NonZeroU64::new(SKEW.unsigned_abs()).unwrap(),
        NonZeroUsize::new(capacity).unwrap(),
        base_url.map(|url| PublicBaseUrl::new(url).unwrap()),
    )
    .unwrap()
}

fn config(signature: SignatureConfig) -> Config {
    let mut config = Config::for_tests("sqlite::memory:");
    config.auth = crate::config::AuthConfig::new(
        AlpacaAuthConfig {
            credentials: AlpacaCredentials::Signature(signature),
            allowed_cidrs: AllowList::any(),
            requests_per_minute: None,
        },
        config.auth.internal().clone(),
        // Many refusals from one (unknown) address in these tests.
        NonZeroU32::new(1000).unwrap(),
    )
    .unwrap();
    config
}

fn one_key() -> Config {
    config(settings(vec![public(KEYID_A, &key_a(), None)], 1000, None))
}

#[rocket::get("/alpaca")]
fn get_route(_auth: AlpacaAuth) -> &'static str {
    "alpaca ok"
}

#[rocket::post("/alpaca", data = "<body>")]
fn post_route(
    _auth: AlpacaAuth,
    body: AlpacaJson<Value>,
) -> Result<Json<Value>, ApiError> {
    body.into_result()
        .map(|JsonBody(value)| Json(value))
        .map_err(|error| ApiError::from_body_error(&error))
}

fn deps(pool: sqlx::SqlitePool) -> crate::Deps {
    crate::Deps {
        pool,
        clock: Arc::new(FixedClock::new(
            DateTime::from_timestamp(NOW, 0).unwrap(),
        )),
        ids: Arc::new(RandomIds),
        shutdown: crate::shutdown::channel().0,
    }
}

async fn rocket(config: Config) -> rocket::Rocket<rocket::Build> {
    let pool = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
    crate::migrate(&pool).await.unwrap();
    crate::build_rocket_with(config, deps(pool)).await.unwrap()
}

async fn client(config: Config) -> Client {
    let rocket = rocket(config)
        .await
        .mount("/test", rocket::routes![get_route, post_route]);
    Client::tracked(rocket).await.unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(bytes)))
}

/// One request as Alpaca would sign it, with knobs to break each part.
#[derive(Clone)]
struct Signed {
    method: Method,
    path: String,
    /// Public scheme://authority the signer used for `@target-uri`.
    origin: String,
    body: Option<String>,
    /// The `Content-Digest` header; `None` sends none.
    digest: Option<String>,
    components: Vec<&'static str>,
    created: Option<i64>,
    expires: Option<i64>,
    keyid: &'static str,
    alg: Option<&'static str>,
    nonce: Option<String>,
    /// The key that really signs (may differ from `keyid`'s).
    key: SigningKey,
}

fn fresh_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Signed {
    fn get() -> Self {
        Self {
            method: Method::Get,
            path: PATH.to_owned(),
            origin: format!("http://{HOST}"),
            body: None,
            digest: None,
            components: vec!["@method", "@target-uri"],
            created: Some(NOW),
            expires: None,
            keyid: KEYID_A,
            alg: Some("ed25519"),
            nonce: Some(fresh_nonce()),
            key: key_a(),
        }
    }

    fn post(body: &str) -> Self {
        Self {
            method: Method::Post,
            body: Some(body.to_owned()),
            digest: Some(sha256(body.as_bytes())),
            components: vec![
                "@method",
                "@target-uri",
                "content-type",
                "content-digest",
            ],
            ..Self::get()
        }
    }

    fn signature_params(&self) -> String {
        let components = self
            .components
            .iter()
            .map(|name| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(" ");
        let mut params = vec![format!("({components})")];
        if let Some(created) = self.created {
            params.push(format!("created={created}"));
        }
        if let Some(expires) = self.expires {
            params.push(format!("expires={expires}"));
        }
        params.push(format!("keyid=\"{}\"", self.keyid));
        if let Some(alg) = self.alg {
            params.push(format!("alg=\"{alg}\""));
        }
        if let Some(nonce) = &self.nonce {
            params.push(format!("nonce=\"{nonce}\""));
        }
        params.join(";")
    }

    fn headers(&self) -> Vec<Header<'static>> {
        let params = self.signature_params();
        let mut lines: Vec<String> = self
            .components
            .iter()
            .map(|name| {
                let value = match *name {
                    "@method" => self.method.as_str().to_owned(),
                    "@target-uri" => format!("{}{}", self.origin, self.path),
                    "content-type" => "application/json".to_owned(),
                    "content-digest" => self.digest.clone().unwrap_or_default(),
                    // Refused before its value matters.
                    _ => String::new(),
                };
                format!("\"{name}\": {value}")
            })
            .collect();
        lines.push(format!("\"@signature-params\": {params}"));
        let signature = self.key.sign(lines.join("\n").as_bytes());
        let mut headers = vec![
            Header::new("Host", HOST),
            Header::new("Signature-Input", format!("sig={params}")),
            Header::new(
                "Signature",
                format!("sig=:{}:", STANDARD.encode(signature.to_bytes())),
            ),
        ];
        if self.body.is_some() {
            headers.push(Header::new("Content-Type", "application/json"));
        }
        if let Some(digest) = &self.digest {
            headers.push(Header::new("Content-Digest", digest.clone()));
        }
        headers
    }

    async fn send_with(
        &self,
        client: &Client,
        edit: impl FnOnce(&mut Vec<Header<'static>>),
    ) -> (Status, String) {
        let mut headers = self.headers();
        edit(&mut headers);
        let mut request = client.req(self.method, self.path.clone());
        for header in headers {
            request = request.header(header);
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        let response = request.dispatch().await;
        (
            response.status(),
            response.into_string().await.unwrap_or_default(),
        )
    }

    async fn send(&self, client: &Client) -> (Status, String) {
        self.send_with(client, |_| {}).await
    }
}

fn error_of(body: &str) -> String {
    serde_json::from_str::<ErrorBody>(body)
        .unwrap_or_else(|_| panic!("not a JSON error body: {body}"))
        .error
}

#[rocket::async_test]
async fn signed_requests_are_accepted() {
    let client = client(one_key()).await;
    let (status, body) = Signed::get().send(&client).await;
    assert_eq!((status, body.as_str()), (Status::Ok, "alpaca ok"));
    let (status, body) = Signed::post(r#"{"qty": "1.5"}"#).send(&client).await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"qty": "1.5"})
    );
    // A second signature (say a proxy's) on extra header lines: the
    // lines are combined and `sig` is still found.
    let (status, body) = Signed::get()
        .send_with(&client, |headers| {
            headers.push(Header::new(
                "Signature-Input",
                r#"proxy=("@method");created=1"#,
            ));
            headers.push(Header::new("Signature", "proxy=:AAAA:"));
        })
        .await;
    assert_eq!(status, Status::Ok, "{body}");
    // A body that is not JSON still gets the route's own answer once
    // the digest holds.
    let (status, _) = Signed::post("{not json").send(&client).await;
    assert_eq!(status, Status::UnprocessableEntity);
}

#[rocket::async_test]
async fn created_at_either_edge_of_the_window_is_accepted() {
    let client = client(one_key()).await;
    for created in [NOW - SKEW, NOW + SKEW] {
        let (status, body) = Signed {
            created: Some(created),
            ..Signed::get()
        }
        .send(&client)
        .await;
        assert_eq!(status, Status::Ok, "created {created}: {body}");
    }
}

/// The simulator's signer (an independent implementation) against the
/// verifier: what the e2e tests rely on.
#[rocket::async_test]
async fn itn_sim_signatures_verify() {
    let client = client(one_key()).await;
    let signing = itn_sim::IssuerSigning::new(KEYID_A, [0xa1; 32]);
    assert_eq!(signing.public_key_pem(), pem(&key_a()));
    let url = itn_sim::Url::parse(&format!("http://{HOST}{PATH}")).unwrap();
    let body = br#"{"tokenization_request_id": "x"}"#;
    for method in [Method::Get, Method::Post] {
        let params = itn_sim::SignatureParams {
            created: NOW,
            nonce: fresh_nonce(),
        };
        let signed_body =
            (method == Method::Post).then_some(itn_sim::SignedBody {
                content_type: "application/json",
                bytes: body,
            });
        let mut request =
            client.req(method, PATH).header(Header::new("Host", HOST));
        for (name, value) in
            signing.sign_with(method.as_str(), &url, signed_body, &params)
        {
            request = request.header(Header::new(name, value));
        }
        if method == Method::Post {
            request = request
                .header(Header::new("Content-Type", "application/json"))
                .body(body.as_slice());
        }
        let response = request.dispatch().await;
        assert_eq!(response.status(), Status::Ok, "{method}");
    }
}

/// Every fault: 401 with a JSON message naming it.
#[rocket::async_test]
async fn each_fault_is_a_401_naming_it() {
    let client = client(one_key()).await;
    let body = r#"{"qty": "1"}"#;
    let cases: Vec<(&str, Signed, &str)> = vec![
        (
            "signed with another key than keyid's",
            Signed {
                key: key_b(),
                ..Signed::post(body)
            },
            "bad signature: it does not verify with keyid \
             \"alpaca-issuer-2026-01\" over the signature base (with \
             @target-uri http://issuer.test/test/alpaca)",
        ),
        (
            "signed for another URL",
            Signed {
                origin: "https://elsewhere.example.com".to_owned(),
                ..Signed::get()
            },
            "bad signature",
        ),
        (
            "body changed after signing",
            Signed {
                body: Some(r#"{"qty": "1000"}"#.to_owned()),
                ..Signed::post(body)
            },
            "Content-Digest sha-256 does not match the request body",
        ),
        (
            "stale created",
            Signed {
                created: Some(NOW - SKEW - 1),
                ..Signed::get()
            },
            "signature `created` 1767225299 is stale: more than 300 s \
             before our clock (1767225600)",
        ),
        (
            "future created",
            Signed {
                created: Some(NOW + SKEW + 1),
                ..Signed::get()
            },
            "signature `created` 1767225901 is in the future: more than \
             300 s after our clock (1767225600)",
        ),
        (
            "expired",
            Signed {
                created: Some(NOW - 10),
                expires: Some(NOW - 1),
                ..Signed::get()
            },
            "signature expired at 1767225599 (our clock: 1767225600)",
        ),
        (
            "unknown keyid",
            Signed {
                keyid: "alpaca-issuer-1999-01",
                ..Signed::get()
            },
            "unknown keyid \"alpaca-issuer-1999-01\"",
        ),
        (
            "no created",
            Signed {
                created: None,
                ..Signed::get()
            },
            "signature parameter `created` is missing or not an integer",
        ),
        (
            "no nonce",
            Signed {
                nonce: None,
                ..Signed::get()
            },
            "signature parameter `nonce` is missing or not a string",
        ),
        (
            "another algorithm",
            Signed {
                alg: Some("rsa-pss-sha512"),
                ..Signed::get()
            },
            "signature algorithm \"rsa-pss-sha512\" is not supported; use \
             \"ed25519\"",
        ),
        (
            "GET without @target-uri",
            Signed {
                components: vec!["@method"],
                ..Signed::get()
            },
            "the signature must cover \"@target-uri\"",
        ),
        (
            "POST without content-digest covered",
            Signed {
                components: vec!["@method", "@target-uri", "content-type"],
                ..Signed::post(body)
            },
            "the signature must cover \"content-digest\"",
        ),
        (
            "POST without content-type covered",
            Signed {
                components: vec!["@method", "@target-uri", "content-digest"],
                ..Signed::post(body)
            },
            "the signature must cover \"content-type\"",
        ),
        (
            "content-digest covered but not sent",
            Signed {
                digest: None,
                ..Signed::post(body)
            },
            "header content-digest is covered by the signature but missing",
        ),
        (
            "unsupported component",
            Signed {
                components: vec!["@method", "@target-uri", "@status"],
                ..Signed::get()
            },
            "covered component \"@status\" is not supported",
        ),
    ];
    for (case, signed, expected) in cases {
        let (status, answer) = signed.send(&client).await;
        assert_eq!(status, Status::Unauthorized, "{case}: {answer}");
        let error = error_of(&answer);
        assert!(error.starts_with(expected), "{case}: {error}");
    }
}

/// Changes a signed request's headers after signing.
type Edit = Box<dyn FnOnce(&mut Vec<Header<'static>>)>;

#[rocket::async_test]
async fn missing_or_malformed_headers_are_named() {
    let client = client(one_key()).await;
    let drop_header = |name: &'static str| {
        move |headers: &mut Vec<Header<'static>>| {
            headers.retain(|header| {
                !header.name().as_str().eq_ignore_ascii_case(name)
            });
        }
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "no Signature-Input",
            Box::new(drop_header("Signature-Input")),
            "missing Signature-Input header",
        ),
        (
            "no Signature",
            Box::new(drop_header("Signature")),
            "missing Signature header",
        ),
        (
            "malformed Signature-Input",
            Box::new(|headers: &mut Vec<Header<'static>>| {
                headers.retain(|header| header.name() != "Signature-Input");
                headers.push(Header::new("Signature-Input", "sig=("));
            }),
            "malformed Signature-Input header",
        ),
        (
            "X-API-KEY instead of a signature",
            Box::new(|headers: &mut Vec<Header<'static>>| {
                headers.clear();
                headers.push(Header::new(API_KEY_HEADER, TEST_ALPACA_KEY));
            }),
            "this issuer authenticates Alpaca by HTTP message signature \
             (Signature-Input, Signature); X-API-KEY is not accepted",
        ),
    ];
    for (case, edit, expected) in cases {
        let (status, answer) =
            Signed::post("{}").send_with(&client, edit).await;
        assert_eq!(status, Status::Unauthorized, "{case}: {answer}");
        let error = error_of(&answer);
        assert!(error.starts_with(expected), "{case}: {error}");
    }
}

#[rocket::async_test]
async fn a_nonce_is_accepted_once() {
    let client = client(one_key()).await;
    let signed = Signed::post("{}");
    let (status, _) = signed.send(&client).await;
    assert_eq!(status, Status::Ok);
    let nonce = signed.nonce.clone().unwrap();
    let (status, answer) = signed.send(&client).await;
    assert_eq!(status, Status::Unauthorized);
    assert_eq!(
        error_of(&answer),
        format!("nonce \"{nonce}\" was already used")
    );
    // The same nonce on another request is a replay too.
    let (status, _) = Signed {
        nonce: Some(nonce),
        ..Signed::get()
    }
    .send(&client)
    .await;
    assert_eq!(status, Status::Unauthorized);
}

#[rocket::async_test]
async fn a_full_nonce_cache_throttles_instead_of_forgetting() {
    let client = client(config(settings(
        vec![public(KEYID_A, &key_a(), None)],
        1,
        None,
    )))
    .await;
    assert_eq!(Signed::get().send(&client).await.0, Status::Ok);
    let response = {
        let signed = Signed::get();
        let mut request = client.get(PATH);
        for header in signed.headers() {
            request = request.header(header);
        }
        request.dispatch().await
    };
    assert_eq!(response.status(), Status::TooManyRequests);
    // The first nonce lives until created + skew.
    assert_eq!(
        response.headers().get_one("Retry-After"),
        Some((SKEW + 1).to_string().as_str())
    );
}

/// Rotation: Alpaca announces a new key before the cut-over; both are
/// configured for the overlap, and the old one can be given a
/// `not_after` so that it stops by itself.
#[rocket::async_test]
async fn key_rotation_overlap_accepts_both_keys() {
    let client = client(config(settings(
        vec![
            public(KEYID_A, &key_a(), Some(NOW + 3600)),
            public(KEYID_B, &key_b(), None),
        ],
        1000,
        None,
    )))
    .await;
    for (keyid, key) in [(KEYID_A, key_a()), (KEYID_B, key_b())] {
        let (status, answer) = Signed {
            keyid,
            key,
            ..Signed::post("{}")
        }
        .send(&client)
        .await;
        assert_eq!(status, Status::Ok, "{keyid}: {answer}");
    }
    // One key's signature does not pass under the other's keyid.
    let (status, _) = Signed {
        keyid: KEYID_B,
        key: key_a(),
        ..Signed::get()
    }
    .send(&client)
    .await;
    assert_eq!(status, Status::Unauthorized);
}

#[rocket::async_test]
async fn a_key_past_its_not_after_is_refused() {
    let client = client(config(settings(
        vec![
            public(KEYID_A, &key_a(), Some(NOW - 1)),
            public(KEYID_B, &key_b(), None),
        ],
        1000,
        None,
    )))
    .await;
    let (status, answer) = Signed::get().send(&client).await;
    assert_eq!(status, Status::Unauthorized);
    assert_eq!(
        error_of(&answer),
        "keyid \"alpaca-issuer-2026-01\" is no longer accepted (not_after \
         2025-12-31 23:59:59 UTC)"
    );
    let (status, _) = Signed {
        keyid: KEYID_B,
        key: key_b(),
        ..Signed::get()
    }
    .send(&client)
    .await;
    assert_eq!(status, Status::Ok);
}

/// Behind a proxy: Alpaca signs the public URL; we rebuild it from
/// `public_base_url` (prefix included) and the path we received.
#[rocket::async_test]
async fn public_base_url_rebuilds_the_target_uri() {
    let client = client(config(settings(
        vec![public(KEYID_A, &key_a(), None)],
        1000,
        Some("https://issuer.example.com/itn/"),
    )))
    .await;
    let signed = Signed {
        origin: "https://issuer.example.com/itn".to_owned(),
        ..Signed::post("{}")
    };
    let (status, answer) = signed.send(&client).await;
    assert_eq!(status, Status::Ok, "{answer}");
    // What the request itself says about scheme and host is not used.
    let (status, answer) = Signed::get().send(&client).await;
    assert_eq!(status, Status::Unauthorized);
    assert!(
        error_of(&answer).ends_with(
            "(with @target-uri https://issuer.example.com/itn/test/alpaca)"
        ),
        "{answer}"
    );
}

/// Every POST route of the service: Alpaca's must refuse a correctly
/// signed request whose body does not match its digest (proof that it
/// reads its body through `AlpacaJson`); the others are internal and
/// want the internal key. A new Alpaca route that skipped the digest
/// check would answer something else here.
#[rocket::async_test]
async fn every_alpaca_route_with_a_body_checks_the_digest() {
    let rocket = rocket(one_key()).await;
    let routes: Vec<String> = rocket
        .routes()
        .filter(|route| route.method == Method::Post)
        .map(|route| {
            route
                .uri
                .path()
                .split('/')
                .map(|segment| {
                    if segment.starts_with('<') {
                        "x"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    let client = Client::tracked(rocket).await.unwrap();
    let mut alpaca_routes = 0;
    for path in routes {
        let (status, answer) = Signed {
            path: path.clone(),
            body: Some(r#"{"tampered": true}"#.to_owned()),
            ..Signed::post("{}")
        }
        .send(&client)
        .await;
        assert_eq!(status, Status::Unauthorized, "{path}: {answer}");
        match error_of(&answer).as_str() {
            "missing X-API-KEY header" => {}
            "Content-Digest sha-256 does not match the request body" => {
                alpaca_routes += 1;
            }
            other => panic!("POST {path}: {other}"),
        }
    }
    // connect (2), mint (2), confirm (2).
    assert_eq!(alpaca_routes, 6);
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs two refused requests (one refused by the request guard, one by
/// the body's data guard) with this thread's logs captured.
fn refusals_logged() -> String {
    // Rocket's generated code logs through `log`; bridge it as the
    // service's subscriber does.
    let _ = tracing_log::LogTracer::init();
    let captured = Captured::default();
    let sink = captured.clone();
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(move || sink.clone());
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(crate::telemetry::without_rocket_guard_echoes());
    // See alpaca/log_tests.rs: a second dispatcher keeps callsite
    // interest from being cached by a parallel test without one.
    let _second = Dispatch::new(NoSubscriber::default());
    let _guard = tracing::subscriber::set_default(subscriber);
    rocket::async_test(async {
        let client = client(one_key()).await;
        let (status, _) = Signed {
            key: key_b(),
            ..Signed::get()
        }
        .send(&client)
        .await;
        assert_eq!(status, Status::Unauthorized);
        let (status, _) = Signed {
            body: Some("{}".to_owned()),
            ..Signed::post("[]")
        }
        .send(&client)
        .await;
        assert_eq!(status, Status::Unauthorized);
    });
    String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned()
}

#[test]
fn each_failure_is_logged_once() {
    let logs = refusals_logged();
    let lines = |needle: &str| {
        logs.lines().filter(|line| line.contains(needle)).count()
    };
    assert_eq!(lines("authentication failed"), 2, "{logs}");
    assert_eq!(lines("bad signature"), 1, "{logs}");
    assert_eq!(lines("does not match the request body"), 1, "{logs}");
    assert_eq!(lines("guard `"), 0, "{logs}");
}

/// Why the filter is there: Rocket's generated guard code logs each
/// refusal again under a `…::_` target. Rocket's own `log` output reaches
/// a test's subscriber only if no parallel test installed Rocket's logger
/// first, so the echo is emitted here under the same kind of target.
#[test]
fn the_filter_drops_only_rocket_generated_echoes() {
    let captured = Captured::default();
    let sink = captured.clone();
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(move || sink.clone());
    let subscriber = tracing_subscriber::registry().with(
        layer.with_filter(crate::telemetry::without_rocket_guard_echoes()),
    );
    let _second = Dispatch::new(NoSubscriber::default());
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(target: "issuance_bot::auth::_", "Request guard `AlpacaAuth` failed");
        tracing::warn!(target: "issuance_bot::auth", "authentication failed");
    });
    let logs =
        String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(!logs.contains("Request guard"), "{logs}");
    assert!(logs.contains("authentication failed"), "{logs}");
}
