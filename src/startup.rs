//! Composition root. Startup order in [`serve`]: open the database → take
//! the single-writer OS lock → record the lease row → migrate → build
//! feature state (rebuilding views) → serve until SIGTERM/Ctrl-C → stop
//! the workers → delete the lease row → release the lock.

use crate::http::front::FrontSecret;
use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use rocket::data::{ByteUnit, Limits};
use rocket::fairing::AdHoc;
use rocket::http::uncased::Uncased;
use rocket::{Build, Ignite, Rocket};
use sqlx::SqlitePool;
use sqlx::migrate::{MigrateError, Migrator};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::alpaca::AlpacaClient;
use crate::auth::{Authenticator, ClientIpSource};
use crate::chain::{
    BotSigner, ChainClient, ChainError, ChainProbe, TxPipeline, TxPolicy,
    VaultService,
};
use crate::clock::{Clock, IdGenerator, RandomIds, SystemClock};
use crate::config::{Config, DatabaseConfig, ServerConfig};
use crate::driver::EngineSettings;
use crate::feature::Install;
use crate::http::health::{DatabaseProbe, MigrationsProbe, Readiness};
use crate::http::request_log::RequestTelemetry;
use crate::instance_lock::{InstanceLock, InstanceLockError};
use crate::lease::{HEARTBEAT_INTERVAL, Lease, LeaseError, LeaseHolder};
use crate::mint::MintState;

/// A pending transaction is re-sent at most this often.
const REBROADCAST_EVERY: std::time::Duration =
    std::time::Duration::from_secs(5);
use crate::observability::FlowGauges;
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
    InstanceLock(#[from] InstanceLockError),
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
    #[error("the HTTP server stopped before it was listening")]
    NotListening,
    #[error("cannot listen on {bind}: {source}")]
    Bind {
        bind: SocketAddr,
        source: std::io::Error,
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

/// Rebuilds every view table from the event log whatever version it
/// records (an operator's explicit rebuild, e.g. from the admin API);
/// returns the events replayed. Each table is rebuilt in one write
/// transaction, so commands wait meanwhile. Startup rebuilds only the
/// views whose projection version changed.
pub async fn rebuild_views(
    pool: &SqlitePool,
) -> Result<u64, sqlite_es::SqliteEsError> {
    Ok(crate::admin::rebuild_each_view(pool)
        .await?
        .iter()
        .fold(0_u64, |sum, view| sum.saturating_add(view.events)))
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
        deps.clock.clone(),
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
        .manage(crate::chain::ChainSlot::default())
        .mount("/", crate::http::health::routes())
        .mount("/", crate::openapi::routes())
        .register("/", crate::http::catchers::catchers());
    // Features: each builds its state (rebuilding stale views) and mounts
    // its routes, all through the same signature.
    let networks = config.chains.networks();
    let with = Install {
        pool: &deps.pool,
        clock: &deps.clock,
        ids: &deps.ids,
        networks: &networks,
        alpaca: config.alpaca.as_ref(),
    };
    let rocket = crate::account::install(rocket, with)
        .await
        .map_err(|err| feature_error("account", err))?;
    let rocket = crate::tokenized_asset::install(rocket, with)
        .await
        .map_err(|err| feature_error("tokenized_asset", err))?;
    let rocket = crate::mint::install(rocket, with)
        .await
        .map_err(|err| feature_error("mint", err))?;
    let rocket = crate::redemption::install(rocket, with)
        .await
        .map_err(|err| feature_error("redemption", err))?;
    crate::admin::install(rocket, with)
        .await
        .map_err(|err| feature_error("admin", err))
}

fn feature_error(
    feature: &'static str,
    source: impl Error + Send + Sync + 'static,
) -> StartupError {
    StartupError::Feature {
        feature,
        source: Box::new(source),
    }
}

/// Runs the service until it is told to stop.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    start_service(config).await?.wait().await
}

/// A service started by [`start_service`]: listening, drivers running.
#[derive(Debug)]
pub struct RunningService {
    addr: SocketAddr,
    /// The metrics listener's bound address, when it is listening.
    metrics_addr: Option<SocketAddr>,
    stop: rocket::Shutdown,
    server: JoinHandle<Result<(), StartupError>>,
}

impl RunningService {
    /// The address actually bound (the configured port may be 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `GET /metrics` is served on (`metrics.bind`, with the
    /// real port when it was 0); `None` without `metrics.bind` or if that
    /// listener failed to start.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Asks the service to stop, as SIGTERM would.
    pub fn shutdown_handle(&self) -> rocket::Shutdown {
        self.stop.clone()
    }

    /// Waits until the service has stopped and cleaned up.
    pub async fn wait(self) -> Result<(), StartupError> {
        match self.server.await {
            Ok(result) => result,
            Err(join) => Err(StartupError::Feature {
                feature: "server task",
                source: Box::new(join),
            }),
        }
    }

    /// Stops the service and waits for it.
    pub async fn stop(self) -> Result<(), StartupError> {
        self.stop.clone().notify();
        self.wait().await
    }
}

/// Everything [`serve`] does up to and including binding the listener:
/// open the database, take the single-writer lock, record the lease,
/// migrate, build the features, connect the chain and Alpaca, start the
/// background drivers, listen.
/// Returns once the server accepts connections.
pub async fn start_service(
    config: Config,
) -> Result<RunningService, StartupError> {
    // Everything that can fail on config alone comes before the lock.
    let (metrics, metrics_bound) = match config.metrics.bind {
        Some(bind) => {
            let handle = telemetry::install_metrics_recorder()?;
            let (bound_tx, bound_rx) = oneshot::channel();
            let rocket = telemetry::metrics_rocket(bind, handle.clone())
                .attach(report_bound_address(bound_tx))
                .ignite()
                .await
                .map_err(Box::new)?;
            (Some((bind, handle, rocket)), Some(bound_rx))
        }
        None => (None, None),
    };
    let pool = open_database(&config.database).await?;
    let deps = Deps::production(pool.clone());
    let holder = LeaseHolder::generate(deps.ids.as_ref());
    // The guard: refused at once if another live process holds it, free
    // at once if its holder died. No row or schema of ours is written
    // before it is ours.
    let lock = InstanceLock::acquire(&pool, &holder, deps.clock.now()).await?;
    let lease = match Lease::acquire(
        pool.clone(),
        &MIGRATOR,
        deps.clock.clone(),
        holder,
        &lock,
    )
    .await
    {
        Ok(lease) => lease,
        Err(error) => {
            lock.release();
            return Err(error.into());
        }
    };
    let (bound_tx, bound_rx) = oneshot::channel();
    let secret = FrontSecret::generate();
    let prepared = async {
        // The public port is ours before anything runs; Rocket itself
        // listens on loopback only, behind the front door.
        let public =
            TcpListener::bind(config.server.bind)
                .await
                .map_err(|source| StartupError::Bind {
                    bind: config.server.bind,
                    source,
                })?;
        migrate(&pool).await?;
        let mut behind = config.clone();
        behind.server.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        let rocket = build_rocket_with(behind, deps.clone())
            .await?
            .manage(secret.clone())
            .attach(report_bound_address(bound_tx))
            .ignite()
            .await
            .map_err(Box::new)?;
        let workers = start_workers(&config, &rocket, &deps).await?;
        Ok::<_, StartupError>((rocket, workers, public))
    }
    .await;
    let (rocket, mut workers, public) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            // Drivers that did start stop with the signal.
            deps.shutdown.trigger();
            if let Err(release) = lease.release().await {
                tracing::warn!(
                    target: "startup",
                    %release,
                    "lease not released"
                );
            }
            lock.release();
            return Err(error);
        }
    };

    let stop = rocket.shutdown();
    let stop_server = stop.clone();
    // The lease row and the lock outlive the drivers: the row is deleted
    // only after every worker has stopped, and the lock (the guard a
    // successor needs) is released after that, last, so a successor
    // never overlaps a finishing one.
    let (release_lease, lease_released_on) = crate::shutdown::channel();
    let heartbeat = lease.spawn_heartbeat(
        HEARTBEAT_INTERVAL,
        lease_released_on,
        move || stop_server.notify(),
    );
    if metrics.is_some() {
        workers.push(
            FlowGauges {
                pool: pool.clone(),
                clock: deps.clock.clone(),
                readiness: rocket.state::<Readiness>().cloned(),
                stuck_after: Duration::from_secs(
                    config.metrics.stuck_after_secs.get(),
                ),
            }
            .spawn(deps.shutdown.subscribe()),
        );
    }
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

    let bind = public.local_addr().unwrap_or(config.server.bind);
    tracing::info!(target: "startup", %bind, "serving");
    let shutdown = deps.shutdown.clone();
    let (front_tx, front_rx) = oneshot::channel::<JoinHandle<()>>();
    let mut server = tokio::spawn(async move {
        let result = rocket.launch().await;
        // Rocket stopped (launch may even fail before Rocket's own
        // shutdown hook runs); the front door follows the signal.
        shutdown.trigger();
        if let Ok(front) = front_rx.await
            && let Err(error) = front.await
        {
            tracing::warn!(target: "shutdown", %error, "front door task failed");
        }
        if let Some((stop_metrics, task)) = metrics_server {
            stop_metrics.notify();
            if let Err(error) = task.await {
                tracing::warn!(target: "shutdown", %error, "metrics task failed");
            }
        }
        for worker in workers {
            if let Err(error) = worker.await {
                tracing::warn!(target: "shutdown", %error, "worker failed");
            }
        }
        release_lease.trigger();
        if let Err(error) = heartbeat.await {
            tracing::warn!(target: "shutdown", %error, "lease task failed");
        }
        lock.release();
        tracing::info!(target: "shutdown", "stopped");
        result
            .map(drop)
            .map_err(|error| StartupError::Rocket(Box::new(error)))
    });
    tokio::select! {
        bound = bound_rx => match bound {
            Ok(upstream) => {
                let front = crate::http::front::spawn(
                    public,
                    upstream,
                    config.server.connections,
                    secret,
                    deps.shutdown.subscribe(),
                );
                // Only fails if the server task is already gone.
                let _ = front_tx.send(front);
                // The metrics listener was launched above; it either lifts
                // off or drops the sender (its failure is logged).
                let metrics_addr = match metrics_bound {
                    Some(bound) => bound.await.ok(),
                    None => None,
                };
                Ok(RunningService { addr: bind, metrics_addr, stop, server })
            }
            // The fairing was dropped unused: launch failed (e.g. bind).
            Err(_) => RunningService {
                addr: bind,
                metrics_addr: None,
                stop,
                server,
            }
            .wait()
            .await
            .and(Err(StartupError::NotListening)),
        },
        finished = &mut server => match finished {
            Ok(result) => result.and(Err(StartupError::NotListening)),
            Err(join) => Err(StartupError::Feature {
                feature: "server task",
                source: Box::new(join),
            }),
        },
    }
}

/// Sends the bound address once Rocket listens.
fn report_bound_address(sender: oneshot::Sender<SocketAddr>) -> AdHoc {
    let sender = std::sync::Mutex::new(Some(sender));
    AdHoc::on_liftoff("bound address", move |rocket| {
        let addr =
            SocketAddr::new(rocket.config().address, rocket.config().port);
        let sender = sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        Box::pin(async move {
            if let Some(sender) = sender {
                // The receiver only goes away if start_service was dropped.
                let _ = sender.send(addr);
            }
        })
    })
}

/// Connects every chain and Alpaca once (one `ChainClient` per chain and
/// wallet: its nonce manager must be shared by every flow that signs on
/// that chain) and starts the background drivers, each chain's on their
/// own: its pipeline, mint engine, transfer monitor and redemption
/// engine, so an outage on one chain never holds another's flows.
/// Without a chain or `[alpaca]` nothing starts: the HTTP side still
/// records mints, which wait for a driver.
async fn start_workers(
    config: &Config,
    rocket: &Rocket<Ignite>,
    deps: &Deps,
) -> Result<Vec<JoinHandle<()>>, StartupError> {
    let Some(alpaca) =
        config.alpaca.as_ref().filter(|_| !config.chains.is_empty())
    else {
        tracing::warn!(
            target: "startup",
            "no chain or no [alpaca] configured: mints are recorded but not \
             executed"
        );
        return Ok(Vec::new());
    };
    // Every chain is checked at once: one that is down costs no other
    // chain its start.
    let clients = futures::future::try_join_all(
        config.chains.iter().map(|chain| connect_chain(chain, deps)),
    )
    .await?;
    let alpaca = AlpacaClient::new(alpaca)
        .map_err(|err| feature_error("alpaca", err))?;
    let mut workers = Vec::new();
    let count = clients.len();
    let mint_wakers = rocket.state::<MintState>().map(|mints| {
        let (wakers, task) = crate::driver::fan_out(
            mints.waker(),
            count,
            deps.shutdown.subscribe(),
        );
        workers.extend(task);
        wakers
    });
    let redemption_wakers = rocket
        .state::<crate::redemption::RedemptionState>()
        .map(|state| {
            let (wakers, task) = crate::driver::fan_out(
                state.waker(),
                count,
                deps.shutdown.subscribe(),
            );
            workers.extend(task);
            wakers
        });
    let mut pipelines = std::collections::BTreeMap::new();
    for (index, (chain, client)) in
        config.chains.iter().zip(clients).enumerate()
    {
        if let Some(readiness) = rocket.state::<Readiness>() {
            readiness.register(Arc::new(ChainProbe::new(
                client.clone(),
                chain.network,
            )));
        }
        if config.metrics.bind.is_some() {
            crate::observability::register_chain_counters(
                chain.network.as_str(),
            );
            workers.push(crate::observability::spawn_chain_gauges(
                client.clone(),
                chain.network,
                deps.shutdown.subscribe(),
            ));
        }
        // One pipeline for every flow on this chain: one rebroadcast
        // cadence, one nonce manager, one evidence rule.
        let pipeline = TxPipeline::new(
            VaultService::new(client),
            REBROADCAST_EVERY,
            chain.unseen_landing_alert,
        );
        pipelines.insert(chain.network, pipeline.clone());
        if let (Some(mints), Some(wake)) = (
            rocket.state::<MintState>(),
            mint_wakers.as_ref().and_then(|wakers| wakers.get(index)),
        ) {
            workers.push(
                crate::mint::engine(
                    mints,
                    chain.network,
                    pipeline.clone(),
                    alpaca.clone(),
                    EngineSettings {
                        tick: chain.receipt_poll_interval,
                        step_timeout: chain.step_timeout,
                        ..EngineSettings::default()
                    },
                    Arc::clone(wake),
                )
                .spawn(deps.shutdown.subscribe()),
            );
        }
        if let (Some(redemptions), Some(wake)) = (
            rocket.state::<crate::redemption::RedemptionState>(),
            redemption_wakers
                .as_ref()
                .and_then(|wakers| wakers.get(index)),
        ) {
            let tasks = crate::redemption::start(
                redemptions,
                chain,
                config.redemption,
                pipeline,
                alpaca.clone(),
                &deps.shutdown,
                Arc::clone(wake),
            );
            workers.push(tasks.monitor);
            workers.push(tasks.driver);
        }
    }
    if let Some(slot) = rocket.state::<crate::chain::ChainSlot>() {
        slot.fill(pipelines);
    }
    Ok(workers)
}

/// One chain's client, its chain id checked. A wrong chain is a
/// configuration error; an RPC that is down is not: Alpaca's calls are
/// still recorded, the drivers wait, and readiness reports the chain
/// until it answers.
async fn connect_chain(
    chain: &crate::chain::ChainConfig,
    deps: &Deps,
) -> Result<ChainClient, StartupError> {
    let signer = BotSigner::from_source(&chain.signer)
        .map_err(|err| feature_error("chain signer", err))?;
    let client = ChainClient::from_parts(
        crate::chain::http_provider(chain)
            .map_err(|err| feature_error("chain rpc client", err))?,
        signer,
        chain.chain_id,
        TxPolicy::from_config(chain),
        deps.pool.clone(),
        deps.clock.clone(),
    );
    match client.check_chain_id().await {
        Ok(()) => {}
        Err(error @ ChainError::WrongChain { .. }) => {
            return Err(feature_error("chain", error));
        }
        Err(error) => tracing::warn!(
            target: "startup",
            network = %chain.network,
            error = %crate::http::ErrorChain(&error),
            "chain RPC not answering at startup; continuing"
        ),
    }
    tracing::info!(
        target: "startup",
        chain_id = chain.chain_id,
        network = %chain.network,
        wallet = %client.address(),
        "chain connected"
    );
    Ok(client)
}

#[cfg(test)]
mod tests;
