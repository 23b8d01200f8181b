//! Guard behaviour through the real service composition, with test-only
//! routes standing in for the feature endpoints.

use std::net::SocketAddr;
use std::num::NonZeroU32;

use rocket::http::{Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};

use super::*;
use crate::config::{
    AlpacaAuthConfig, AlpacaCredentials, AudienceConfig, Config,
    TEST_ALPACA_KEY, TEST_INTERNAL_KEY,
};
use crate::http::ErrorBody;

#[rocket::get("/alpaca")]
fn alpaca_route(_auth: AlpacaAuth) -> &'static str {
    "alpaca ok"
}

#[rocket::get("/internal")]
fn internal_route(_auth: InternalAuth) -> &'static str {
    "internal ok"
}

async fn client(config: Config) -> Client {
    let pool = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
    crate::migrate(&pool).await.unwrap();
    let rocket =
        crate::build_rocket_with(config, crate::Deps::production(pool))
            .await
            .unwrap()
            .mount("/test", rocket::routes![alpaca_route, internal_route]);
    Client::tracked(rocket).await.unwrap()
}

fn test_config() -> Config {
    Config::for_tests("sqlite::memory:")
}

fn with_auth(
    config: Config,
    alpaca_cidrs: &[&str],
    internal_cidrs: &[&str],
    failures_per_minute: u32,
) -> Config {
    let auth = crate::config::AuthConfig::new(
        AlpacaAuthConfig {
            credentials: AlpacaCredentials::ApiKey(
                ApiKey::new(TEST_ALPACA_KEY).unwrap(),
            ),
            allowed_cidrs: AllowList::parse(alpaca_cidrs).unwrap(),
            requests_per_minute: None,
        },
        AudienceConfig {
            api_key: ApiKey::new(TEST_INTERNAL_KEY).unwrap(),
            allowed_cidrs: AllowList::parse(internal_cidrs).unwrap(),
            requests_per_minute: None,
        },
        NonZeroU32::new(failures_per_minute).unwrap(),
    )
    .unwrap();
    let mut config = config;
    config.auth = auth;
    config
}

fn addr(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40_000)
}

async fn get(
    client: &Client,
    path: &str,
    key: Option<&str>,
    from: &str,
) -> (Status, String) {
    let mut request = client.get(path).remote(addr(from));
    if let Some(key) = key {
        request = request.header(Header::new(API_KEY_HEADER, key.to_owned()));
    }
    let response = request.dispatch().await;
    read(response).await
}

async fn read(response: LocalResponse<'_>) -> (Status, String) {
    (
        response.status(),
        response.into_string().await.unwrap_or_default(),
    )
}

fn error_of(body: &str) -> String {
    serde_json::from_str::<ErrorBody>(body)
        .unwrap_or_else(|_| panic!("not a JSON error body: {body}"))
        .error
}

#[rocket::async_test]
async fn correct_keys_are_accepted() {
    let client = client(test_config()).await;
    let (status, body) = get(
        &client,
        "/test/alpaca",
        Some(TEST_ALPACA_KEY),
        "198.51.100.7",
    )
    .await;
    assert_eq!((status, body.as_str()), (Status::Ok, "alpaca ok"));
    let (status, body) = get(
        &client,
        "/test/internal",
        Some(TEST_INTERNAL_KEY),
        "127.0.0.1",
    )
    .await;
    assert_eq!((status, body.as_str()), (Status::Ok, "internal ok"));
    let (status, _) =
        get(&client, "/test/internal", Some(TEST_INTERNAL_KEY), "::1").await;
    assert_eq!(status, Status::Ok);
}

#[rocket::async_test]
async fn missing_or_wrong_key_is_401_json() {
    let client = client(test_config()).await;
    let (status, body) =
        get(&client, "/test/alpaca", None, "198.51.100.7").await;
    assert_eq!(status, Status::Unauthorized);
    assert_eq!(error_of(&body), "missing X-API-KEY header");

    let wrong = "x".repeat(40);
    let (status, body) =
        get(&client, "/test/alpaca", Some(&wrong), "198.51.100.7").await;
    assert_eq!(status, Status::Unauthorized);
    assert_eq!(error_of(&body), "invalid API key");
}

#[rocket::async_test]
async fn audience_keys_are_not_interchangeable() {
    let client = client(test_config()).await;
    let (status, _) = get(
        &client,
        "/test/alpaca",
        Some(TEST_INTERNAL_KEY),
        "127.0.0.1",
    )
    .await;
    assert_eq!(status, Status::Unauthorized);
    let (status, _) = get(
        &client,
        "/test/internal",
        Some(TEST_ALPACA_KEY),
        "127.0.0.1",
    )
    .await;
    assert_eq!(status, Status::Unauthorized);
}

#[rocket::async_test]
async fn address_outside_allow_list_is_403() {
    let client = client(with_auth(
        test_config(),
        &["203.0.113.0/24"],
        &["127.0.0.0/8"],
        10,
    ))
    .await;
    let (status, body) = get(
        &client,
        "/test/internal",
        Some(TEST_INTERNAL_KEY),
        "10.0.0.1",
    )
    .await;
    assert_eq!(status, Status::Forbidden);
    assert_eq!(error_of(&body), "client address 10.0.0.1 is not allowed");

    let (status, _) = get(
        &client,
        "/test/alpaca",
        Some(TEST_ALPACA_KEY),
        "198.51.100.7",
    )
    .await;
    assert_eq!(status, Status::Forbidden);
    let (status, _) = get(
        &client,
        "/test/alpaca",
        Some(TEST_ALPACA_KEY),
        "203.0.113.7",
    )
    .await;
    assert_eq!(status, Status::Ok);
}

#[rocket::async_test]
async fn repeated_failures_are_429_but_successes_are_not_limited() {
    let client =
        client(with_auth(test_config(), &[], &["127.0.0.0/8"], 3)).await;
    let wrong = "y".repeat(40);
    for _ in 0..3 {
        let (status, _) =
            get(&client, "/test/alpaca", Some(&wrong), "192.0.2.9").await;
        assert_eq!(status, Status::Unauthorized);
    }
    let response = client
        .get("/test/alpaca")
        .remote(addr("192.0.2.9"))
        .header(Header::new(API_KEY_HEADER, wrong.clone()))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::TooManyRequests);
    let retry_after: u64 = response
        .headers()
        .get_one("Retry-After")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    let (_, body) = read(response).await;
    assert!(
        error_of(&body).starts_with("too many failed authentication"),
        "{body}"
    );

    // The right key still works from the throttled address.
    let (status, _) =
        get(&client, "/test/alpaca", Some(TEST_ALPACA_KEY), "192.0.2.9").await;
    assert_eq!(status, Status::Ok);
    // Another address has its own budget.
    let (status, _) =
        get(&client, "/test/alpaca", Some(&wrong), "192.0.2.10").await;
    assert_eq!(status, Status::Unauthorized);
}

#[rocket::async_test]
async fn proxy_header_is_ignored_unless_configured() {
    let client = client(test_config()).await;
    let response = client
        .get("/test/internal")
        .remote(addr("10.0.0.1"))
        .header(Header::new(API_KEY_HEADER, TEST_INTERNAL_KEY))
        .header(Header::new("X-Real-IP", "127.0.0.1"))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Forbidden);
}

#[rocket::async_test]
async fn configured_proxy_header_is_honoured() {
    let mut config = test_config();
    config.server.client_ip_header =
        Some(ClientIpHeader::new("X-Forwarded-For").unwrap());
    let client = client(config).await;

    // The proxy runs on loopback; the header names the real client.
    let request = |forwarded: Option<&'static str>| {
        let mut request = client
            .get("/test/internal")
            .remote(addr("127.0.0.1"))
            .header(Header::new(API_KEY_HEADER, TEST_INTERNAL_KEY));
        if let Some(forwarded) = forwarded {
            request = request.header(Header::new("X-Forwarded-For", forwarded));
        }
        request
    };
    let response = request(Some("127.0.0.1")).dispatch().await;
    assert_eq!(response.status(), Status::Ok);

    let (status, body) =
        read(request(Some("203.0.113.5")).dispatch().await).await;
    assert_eq!(status, Status::Forbidden);
    assert!(error_of(&body).contains("203.0.113.5"), "{body}");

    // Spoofed left-most entries do not count.
    let response = request(Some("127.0.0.1, 203.0.113.5")).dispatch().await;
    assert_eq!(response.status(), Status::Forbidden);

    // No header: fail closed rather than trusting the proxy's address.
    let (status, body) = read(request(None).dispatch().await).await;
    assert_eq!(status, Status::Forbidden);
    assert_eq!(error_of(&body), "client address could not be determined");
}

#[rocket::async_test]
async fn request_without_peer_address() {
    let client = client(test_config()).await;
    // Alpaca admits any address in the test config, so no address is
    // needed; internal requires one.
    let response = client
        .get("/test/alpaca")
        .header(Header::new(API_KEY_HEADER, TEST_ALPACA_KEY))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);
    let response = client
        .get("/test/internal")
        .header(Header::new(API_KEY_HEADER, TEST_INTERNAL_KEY))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Forbidden);
}

#[rocket::async_test]
async fn audience_request_cap_throttles_only_that_audience() {
    let mut config = test_config();
    let alpaca = AlpacaAuthConfig {
        requests_per_minute: NonZeroU32::new(2),
        ..config.auth.alpaca().clone()
    };
    config.auth = crate::config::AuthConfig::new(
        alpaca,
        config.auth.internal().clone(),
        config.auth.failures_per_minute(),
    )
    .unwrap();
    let client = client(config).await;
    for _ in 0..2 {
        let (status, _) =
            get(&client, "/test/alpaca", Some(TEST_ALPACA_KEY), "192.0.2.1")
                .await;
        assert_eq!(status, Status::Ok);
    }
    let response = client
        .get("/test/alpaca")
        .remote(addr("192.0.2.2"))
        .header(Header::new(API_KEY_HEADER, TEST_ALPACA_KEY))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::TooManyRequests);
    assert!(response.headers().get_one("Retry-After").is_some());
    let (_, body) = read(response).await;
    assert!(error_of(&body).starts_with("request rate limit"), "{body}");

    // A wrong key is still a 401, not a throttle.
    let wrong = "z".repeat(40);
    let (status, _) =
        get(&client, "/test/alpaca", Some(&wrong), "192.0.2.3").await;
    assert_eq!(status, Status::Unauthorized);
    // The internal audience has its own (unlimited) budget.
    let (status, _) = get(
        &client,
        "/test/internal",
        Some(TEST_INTERNAL_KEY),
        "127.0.0.1",
    )
    .await;
    assert_eq!(status, Status::Ok);
}
