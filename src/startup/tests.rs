//! The composed service: health, readiness, JSON catchers, body limit,
//! request ids, migrations.

use std::sync::Arc;

use rocket::http::{ContentType, Status};
use rocket::local::asynchronous::Client;
use rocket::serde::json::Json;

use super::*;
use crate::config::BodyLimit;
use crate::http::health::{
    CheckStatus, GateProbe, ReadinessReport, ReadyStatus,
};
use crate::http::request_log::REQUEST_ID_HEADER;
use crate::http::{ApiError, ErrorBody};

#[rocket::get("/status/<code>")]
fn status_route(code: u16) -> Status {
    Status::from_code(code).unwrap_or(Status::ImATeapot)
}

#[rocket::post("/echo", format = "json", data = "<body>")]
fn echo_route(body: Json<serde_json::Value>) -> Json<serde_json::Value> {
    body
}

#[rocket::get("/boom")]
fn boom_route() -> ApiError {
    ApiError::internal(std::io::Error::other("disk on fire"))
}

async fn migrated_pool() -> SqlitePool {
    let pool = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
    migrate(&pool).await.unwrap();
    pool
}

async fn client_on(config: Config, pool: SqlitePool) -> Client {
    let rocket = build_rocket_with(config, Deps::production(pool))
        .await
        .unwrap()
        .mount(
            "/test",
            rocket::routes![status_route, echo_route, boom_route],
        );
    Client::tracked(rocket).await.unwrap()
}

async fn client() -> Client {
    client_on(Config::for_tests("sqlite::memory:"), migrated_pool().await).await
}

async fn ready_report(client: &Client) -> (Status, ReadinessReport) {
    let response = client.get("/ready").dispatch().await;
    let status = response.status();
    (status, response.into_json().await.unwrap())
}

#[rocket::async_test]
async fn health_is_ok() {
    let client = client().await;
    let response = client.get("/health").dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(
        response.into_json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );
}

#[rocket::async_test]
async fn ready_on_a_migrated_database() {
    let client = client().await;
    let (status, report) = ready_report(&client).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(report.status, ReadyStatus::Ready);
    assert_eq!(report.checks.get("database"), Some(&CheckStatus::Ok));
    assert_eq!(report.checks.get("migrations"), Some(&CheckStatus::Ok));
}

#[rocket::async_test]
async fn not_ready_when_a_migration_is_missing() {
    let pool = migrated_pool().await;
    // As if the database predated the newest migration.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ?")
        .bind(crate::lease::LEASE_MIGRATION_VERSION)
        .execute(&pool)
        .await
        .unwrap();
    let client = client_on(Config::for_tests("sqlite::memory:"), pool).await;
    let (status, report) = ready_report(&client).await;
    assert_eq!(status, Status::ServiceUnavailable);
    assert_eq!(report.status, ReadyStatus::NotReady);
    assert_eq!(report.checks.get("database"), Some(&CheckStatus::Ok));
    assert_eq!(report.checks.get("migrations"), Some(&CheckStatus::Failing));
}

#[rocket::async_test]
async fn registered_probe_gates_readiness() {
    let client = client().await;
    let gate = Arc::new(GateProbe::closed("startup_recovery"));
    client
        .rocket()
        .state::<Readiness>()
        .unwrap()
        .register(gate.clone());
    let (status, report) = ready_report(&client).await;
    assert_eq!(status, Status::ServiceUnavailable);
    assert_eq!(
        report.checks.get("startup_recovery"),
        Some(&CheckStatus::Failing)
    );
    gate.open();
    let (status, report) = ready_report(&client).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        report.checks.get("startup_recovery"),
        Some(&CheckStatus::Ok)
    );
}

#[rocket::async_test]
async fn every_error_status_is_answered_with_json() {
    let client = client().await;
    for code in [
        400, 401, 403, 404, 405, 409, 413, 415, 418, 422, 429, 500, 503,
    ] {
        let response =
            client.get(format!("/test/status/{code}")).dispatch().await;
        assert_eq!(response.status().code, code);
        assert_eq!(response.content_type(), Some(ContentType::JSON));
        let body: ErrorBody = response.into_json().await.unwrap();
        assert!(!body.error.is_empty(), "{code}");
    }
}

#[rocket::async_test]
async fn unknown_route_is_404_json() {
    let client = client().await;
    let response = client.get("/nope").dispatch().await;
    assert_eq!(response.status(), Status::NotFound);
    let body: ErrorBody = response.into_json().await.unwrap();
    assert_eq!(body.error, "no such endpoint: GET /nope");
}

#[rocket::async_test]
async fn oversized_body_is_413_json() {
    let mut config = Config::for_tests("sqlite::memory:");
    config.server.body_limit = BodyLimit::new(64).unwrap();
    let client = client_on(config, migrated_pool().await).await;

    let small = serde_json::json!({"a": 1}).to_string();
    let response = client
        .post("/test/echo")
        .header(ContentType::JSON)
        .body(small)
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);

    let big = serde_json::json!({"a": "x".repeat(100)}).to_string();
    let response = client
        .post("/test/echo")
        .header(ContentType::JSON)
        .body(big)
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::PayloadTooLarge);
    let body: ErrorBody = response.into_json().await.unwrap();
    assert_eq!(body.error, "request body exceeds the limit of 64 bytes");
}

#[rocket::async_test]
async fn malformed_body_is_json_error() {
    let client = client().await;
    let response = client
        .post("/test/echo")
        .header(ContentType::JSON)
        .body("{not json")
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::BadRequest);
    let body: ErrorBody = response.into_json().await.unwrap();
    assert!(!body.error.is_empty());
}

#[rocket::async_test]
async fn internal_errors_hide_their_cause() {
    let client = client().await;
    let response = client.get("/test/boom").dispatch().await;
    assert_eq!(response.status(), Status::InternalServerError);
    let body: ErrorBody = response.into_json().await.unwrap();
    assert_eq!(body.error, "internal server error");
}

#[rocket::async_test]
async fn responses_carry_distinct_request_ids() {
    let client = client().await;
    let first = client.get("/health").dispatch().await;
    let second = client.get("/nope").dispatch().await;
    let id = |response: &rocket::local::asynchronous::LocalResponse<'_>| {
        response
            .headers()
            .get_one(REQUEST_ID_HEADER)
            .unwrap()
            .parse::<uuid::Uuid>()
            .unwrap()
    };
    assert_ne!(id(&first), id(&second));
}

#[rocket::async_test]
async fn shutdown_signal_fires_when_rocket_stops() {
    let client = client().await;
    let mut listener = client
        .rocket()
        .state::<ShutdownTrigger>()
        .unwrap()
        .subscribe();
    assert!(!listener.is_triggered());
    client.rocket().shutdown().notify();
    drop(client);
    tokio::time::timeout(std::time::Duration::from_secs(5), listener.wait())
        .await
        .unwrap();
}

#[rocket::async_test]
async fn build_rocket_opens_and_migrates_a_file_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/issuance.db", dir.path().display());
    let rocket = build_rocket(Config::for_tests(&url)).await.unwrap();
    let client = Client::tracked(rocket).await.unwrap();
    let (status, _) = ready_report(&client).await;
    assert_eq!(status, Status::Ok);

    // Migrating again is a no-op.
    let pool = open_database(&Config::for_tests(&url).database)
        .await
        .unwrap();
    migrate(&pool).await.unwrap();
    let lease_table: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE name = 'service_lease'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(lease_table, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_service_on_one_database_is_refused_until_the_first_stops() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/issuance.db", dir.path().display());
    let mut config = Config::for_tests(&url);
    config.server.bind = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let first = start_service(config.clone()).await.unwrap();
    let lease_row = || async {
        let pool = open_database(&config.database).await.unwrap();
        let holder: Option<String> =
            sqlx::query_scalar("SELECT holder FROM service_lease")
                .fetch_optional(&pool)
                .await
                .unwrap();
        holder
    };
    let first_holder = lease_row().await.unwrap();

    let error = start_service(config.clone()).await.unwrap_err();
    match &error {
        StartupError::InstanceLock(InstanceLockError::Held {
            path,
            holder,
        }) => {
            assert_eq!(
                path,
                &std::fs::canonicalize(dir.path())
                    .unwrap()
                    .join("issuance.db.lock")
            );
            assert_eq!(holder.pid, Some(std::process::id()));
            assert_eq!(holder.holder.as_deref(), Some(first_holder.as_str()));
        }
        other => panic!("expected a held lock, got {other:?}"),
    }
    // The refused start wrote nothing: the first still owns the row.
    assert_eq!(lease_row().await, Some(first_holder.clone()));

    // A clean stop deletes the row, then frees the lock: a successor
    // starts at once.
    first.stop().await.unwrap();
    assert_eq!(lease_row().await, None);
    let successor = start_service(config.clone()).await.unwrap();
    let successor_holder = lease_row().await.unwrap();
    assert_ne!(successor_holder, first_holder);
    successor.stop().await.unwrap();
}
