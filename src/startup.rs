//! Composition root. Startup order in [`serve`]: open the database → take
//! the single-writer lease → migrate → build feature state (rebuilding
//! views) → serve until SIGTERM/Ctrl-C → release the lease.

use std::error::Error;
use std::sync::Arc;

use rocket::data::{ByteUnit, Limits};
use rocket::fairing::AdHoc;
use rocket::http::uncased::Uncased;
use rocket::{Build, Rocket};
use sqlx::SqlitePool;
use sqlx::migrate::{MigrateError, Migrator};

use crate::auth::{Authenticator, ClientIpSource};
use crate::clock::{Clock, IdGenerator, RandomIds, SystemClock};
use crate::config::{Config, DatabaseConfig, ServerConfig};
use crate::http::health::{DatabaseProbe, MigrationsProbe, Readiness};
use crate::http::request_log::RequestTelemetry;
use crate::lease::{
    HEARTBEAT_INTERVAL, LEASE_TTL, Lease, LeaseError, LeaseHolder,
};
use crate::shutdown::{self, ShutdownTrigger};
use crate::telemetry::{self, TelemetryError};

/// The service's own migrations (timestamped; they sort after the event
/// store's small version numbers in the shared `_sqlx_migrations`).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database: {0}")]
    Database(#[from] sqlite_es::SqliteEsError),
    #[error("database migration failed: {0}")]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error("HTTP server failed: {0}")]
    Rocket(#[from] Box<rocket::Error>),
    #[error("cannot start {feature}: {source}")]
    Feature {
        feature: &'static str,
        source: Box<dyn Error + Send + Sync>,
    },
}

/// What the service is built from besides its config; tests substitute
/// a fixed clock and sequential ids.
#[derive(Clone)]
pub struct Deps {
    pub pool: SqlitePool,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
    /// Triggered when Rocket shuts down; background tasks subscribe.
    pub shutdown: ShutdownTrigger,
}

impl Deps {
    /// Production sources: wall clock, random ids, a fresh shutdown
    /// signal.
    pub fn production(pool: SqlitePool) -> Self {
        Self {
            pool,
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            shutdown: shutdown::channel().0,
        }
    }
}

pub async fn open_database(
    config: &DatabaseConfig,
) -> Result<SqlitePool, StartupError> {
    Ok(
        sqlite_es::open_pool(config.url.as_str(), config.max_connections.get())
            .await?,
    )
}

/// Applies the event-store schema, then ours. Both sets share
/// `_sqlx_migrations`, so each ignores the other's versions.
pub async fn migrate(pool: &SqlitePool) -> Result<(), StartupError> {
    sqlite_es::run_migrations(pool).await?;
    let mut ours =
        Migrator::with_migrations(MIGRATOR.iter().cloned().collect());
    ours.set_ignore_missing(true);
    ours.run(pool).await?;
    Ok(())
}

/// Every migration version this binary expects to be applied.
pub fn expected_migrations() -> Vec<i64> {
    sqlite_es::MIGRATOR
        .iter()
        .chain(MIGRATOR.iter())
        .map(|migration| migration.version)
        .collect()
}

fn server_rocket_config(server: &ServerConfig) -> rocket::Config {
    let limit = ByteUnit::from(server.body_limit.bytes());
    let limits = [
        "json",
        "form",
        "data-form",
        "file",
        "string",
        "bytes",
        "msgpack",
    ]
    .into_iter()
    .fold(Limits::default(), |limits, name| limits.limit(name, limit));
    rocket::Config {
        limits,
        ip_header: server
            .client_ip_header
            .as_ref()
            .map(|header| Uncased::from_owned(header.as_str().to_owned())),
        ..crate::http::rocket_config(server.bind)
    }
}

/// Opens and migrates the configured database, then builds the service
/// with production clock and ids.
pub async fn build_rocket(
    config: Config,
) -> Result<Rocket<Build>, StartupError> {
    let pool = open_database(&config.database).await?;
    migrate(&pool).await?;
    build_rocket_with(config, Deps::production(pool)).await
}

/// Builds the service on an already migrated database.
#[expect(
    clippy::unused_async,
    reason = "feature state constructors (view rebuilds) are awaited here"
)]
pub async fn build_rocket_with(
    config: Config,
    deps: Deps,
) -> Result<Rocket<Build>, StartupError> {
    let readiness = Readiness::new();
    readiness.register(Arc::new(DatabaseProbe::new(deps.pool.clone())));
    readiness.register(Arc::new(MigrationsProbe::new(
        deps.pool.clone(),
        expected_migrations(),
    )));
    let authenticator = Authenticator::new(
        &config.auth,
        ClientIpSource::from_config(config.server.client_ip_header.as_ref()),
    );
    let trigger = deps.shutdown.clone();
    let rocket = rocket::custom(server_rocket_config(&config.server))
        .attach(RequestTelemetry)
        .attach(AdHoc::on_shutdown("shutdown signal", move |_| {
            Box::pin(async move { trigger.trigger() })
        }))
        .manage(deps.pool.clone())
        .manage(authenticator)
        .manage(readiness)
        .manage(deps.shutdown.clone())
        .mount("/", crate::http::health::routes())
        .register("/", crate::http::catchers::catchers());
    // Features: build state (rebuilding views) and mount routes here.
    Ok(rocket)
}

/// Runs the service until it is told to stop.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    // Everything that can fail on config alone comes before the lease.
    let metrics = match config.metrics.bind {
        Some(bind) => {
            let handle = telemetry::install_metrics_recorder()?;
            let rocket = telemetry::metrics_rocket(bind, handle.clone())
                .ignite()
                .await
                .map_err(Box::new)?;
            Some((bind, handle, rocket))
        }
        None => None,
    };
    let pool = open_database(&config.database).await?;
    let deps = Deps::production(pool.clone());
    let lease = Lease::acquire(
        pool.clone(),
        &MIGRATOR,
        deps.clock.clone(),
        LeaseHolder::generate(deps.ids.as_ref()),
        LEASE_TTL,
    )
    .await?;
    let bind = config.server.bind;
    let prepared = async {
        migrate(&pool).await?;
        let rocket = build_rocket_with(config, deps.clone()).await?;
        Ok::<_, StartupError>(rocket.ignite().await.map_err(Box::new)?)
    }
    .await;
    let rocket = match prepared {
        Ok(rocket) => rocket,
        Err(error) => {
            if let Err(release) = lease.release().await {
                tracing::warn!(
                    target: "startup",
                    %release,
                    "lease not released"
                );
            }
            return Err(error);
        }
    };

    let stop_server = rocket.shutdown();
    let heartbeat = lease.spawn_heartbeat(
        HEARTBEAT_INTERVAL,
        deps.shutdown.subscribe(),
        move || stop_server.notify(),
    );
    let metrics_server =
        metrics.map(|(metrics_bind, handle, metrics_rocket)| {
            telemetry::spawn_metrics_upkeep(handle, deps.shutdown.subscribe());
            let stop_metrics = metrics_rocket.shutdown();
            tracing::info!(target: "startup", %metrics_bind, "serving metrics");
            let task = tokio::spawn(async move {
                if let Err(error) = metrics_rocket.launch().await {
                    tracing::error!(
                        target: "startup",
                        %metrics_bind,
                        %error,
                        "metrics listener failed"
                    );
                }
            });
            (stop_metrics, task)
        });

    tracing::info!(target: "startup", %bind, "serving");
    let result = rocket.launch().await;
    // Launch may fail before Rocket's own shutdown hook runs.
    deps.shutdown.trigger();
    if let Some((stop_metrics, task)) = metrics_server {
        stop_metrics.notify();
        if let Err(error) = task.await {
            tracing::warn!(target: "shutdown", %error, "metrics task failed");
        }
    }
    if let Err(error) = heartbeat.await {
        tracing::warn!(target: "shutdown", %error, "lease task failed");
    }
    tracing::info!(target: "shutdown", "stopped");
    result
        .map(drop)
        .map_err(|error| StartupError::Rocket(Box::new(error)))
}

#[cfg(test)]
mod tests;
