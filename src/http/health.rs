//! Liveness (`GET /health`) and readiness (`GET /ready`). Readiness runs
//! every registered [`ReadinessProbe`]; features add their own (chain RPC
//! reachable, startup recovery finished) through [`Readiness::register`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

/// The failure of one readiness check; logged, never shown to callers.
pub type ProbeError = Box<dyn std::error::Error + Send + Sync>;

/// How long one probe may take before it counts as failing.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[async_trait::async_trait]
pub trait ReadinessProbe: Send + Sync + 'static {
    /// Key of this check in the readiness report.
    fn name(&self) -> &str;
    async fn check(&self) -> Result<(), ProbeError>;
}

/// The registered probes (managed state). Clones share the probes: the
/// metrics task reruns the same checks as `GET /ready`.
#[derive(Default, Clone)]
pub struct Readiness {
    probes: Arc<RwLock<Vec<Arc<dyn ReadinessProbe>>>>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    NotReady,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Failing,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct ReadinessReport {
    pub status: ReadyStatus,
    pub checks: BTreeMap<String, CheckStatus>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&self, probe: Arc<dyn ReadinessProbe>) {
        self.probes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(probe);
    }

    /// Runs every probe concurrently, each bounded by a timeout.
    pub async fn report(&self) -> ReadinessReport {
        let probes = self
            .probes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let results =
            futures::future::join_all(probes.iter().map(|probe| async move {
                let outcome =
                    tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await;
                let status = match outcome {
                    Ok(Ok(())) => CheckStatus::Ok,
                    Ok(Err(error)) => {
                        tracing::warn!(
                            target: "readiness",
                            check = probe.name(),
                            %error,
                            "readiness check failed"
                        );
                        CheckStatus::Failing
                    }
                    Err(_) => {
                        tracing::warn!(
                            target: "readiness",
                            check = probe.name(),
                            timeout_ms = PROBE_TIMEOUT.as_millis(),
                            "readiness check timed out"
                        );
                        CheckStatus::Failing
                    }
                };
                metrics::gauge!("readiness_check_up", "check" => probe.name().to_owned())
                    .set(if status == CheckStatus::Ok { 1.0 } else { 0.0 });
                (probe.name().to_owned(), status)
            }))
            .await;
        let status =
            if results.iter().all(|(_, status)| *status == CheckStatus::Ok) {
                ReadyStatus::Ready
            } else {
                ReadyStatus::NotReady
            };
        ReadinessReport {
            status,
            checks: results.into_iter().collect(),
        }
    }
}

/// The database answers a trivial query.
pub struct DatabaseProbe {
    pool: SqlitePool,
}

impl DatabaseProbe {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl ReadinessProbe for DatabaseProbe {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), ProbeError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("migrations not applied: {missing:?}")]
struct MissingMigrations {
    missing: Vec<i64>,
}

/// Every migration this binary knows about has been applied successfully.
pub struct MigrationsProbe {
    pool: SqlitePool,
    expected: BTreeSet<i64>,
}

impl MigrationsProbe {
    pub fn new(
        pool: SqlitePool,
        expected: impl IntoIterator<Item = i64>,
    ) -> Self {
        Self {
            pool,
            expected: expected.into_iter().collect(),
        }
    }
}

#[async_trait::async_trait]
impl ReadinessProbe for MigrationsProbe {
    fn name(&self) -> &'static str {
        "migrations"
    }

    async fn check(&self) -> Result<(), ProbeError> {
        let applied: BTreeSet<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success = 1",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .collect();
        let missing: Vec<i64> =
            self.expected.difference(&applied).copied().collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Box::new(MissingMigrations { missing }))
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{name} has not completed")]
struct GateClosed {
    name: String,
}

/// A check that fails until [`GateProbe::open`] is called, e.g. to hold
/// readiness until startup recovery has run.
pub struct GateProbe {
    name: String,
    open: AtomicBool,
}

impl GateProbe {
    pub fn closed(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            open: AtomicBool::new(false),
        }
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
    }
}

#[async_trait::async_trait]
impl ReadinessProbe for GateProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<(), ProbeError> {
        if self.open.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Box::new(GateClosed {
                name: self.name.clone(),
            }))
        }
    }
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct HealthBody {
    pub status: String,
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses((status = 200, description = "Always `{\"status\":\"ok\"}`", body = HealthBody))
)]
#[rocket::get("/health")]
fn health() -> Json<HealthBody> {
    Json(HealthBody {
        status: "ok".to_owned(),
    })
}

/// Readiness: every registered check (database, migrations, chain RPC,
/// startup recovery, ...).
#[utoipa::path(
    get,
    path = "/ready",
    tag = "health",
    responses(
        (status = 200, description = "Every check passes", body = ReadinessReport),
        (status = 503, description = "Some check fails: `status` is `not_ready`, failing checks `failing`", body = ReadinessReport),
    )
)]
#[rocket::get("/ready")]
async fn ready(
    readiness: &State<Readiness>,
) -> (Status, Json<ReadinessReport>) {
    let report = readiness.report().await;
    let status = match report.status {
        ReadyStatus::Ready => Status::Ok,
        ReadyStatus::NotReady => Status::ServiceUnavailable,
    };
    (status, Json(report))
}

pub fn routes() -> Vec<Route> {
    rocket::routes![health, ready]
}

/// The health routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(health, ready))]
pub struct HealthApiDoc;
