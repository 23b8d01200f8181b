//! How the redemption feature plugs into the service: its state, its
//! install, and the background tasks of one chain.

use std::sync::Arc;
use std::time::Duration;

use rocket::{Build, Rocket};
use sqlite_es::SqliteEsError;
use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{
    RedemptionConfig, RedemptionCqrs, RedemptionServices, admin, cqrs, flow,
    monitor, rebuild_stale_views, routes,
};
use crate::alpaca::AlpacaClient;
use crate::chain::{ChainConfig, TxPipeline};
use crate::clock::Clock;
use crate::driver::EngineSettings;
use crate::feature::Install;
use crate::shutdown::ShutdownTrigger;

/// Managed by Rocket: the command side shared by the endpoints and the
/// background tasks, and the wake-up the monitor sends the driver.
pub struct RedemptionState {
    pub(super) pool: SqlitePool,
    cqrs: Arc<RedemptionCqrs>,
    clock: Arc<dyn Clock>,
    pub(super) wake: Arc<Notify>,
}

impl RedemptionState {
    pub fn new(pool: SqlitePool, clock: Arc<dyn Clock>) -> Self {
        let cqrs = Arc::new(cqrs(
            pool.clone(),
            RedemptionServices {
                clock: clock.clone(),
            },
        ));
        Self {
            pool,
            cqrs,
            clock,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn cqrs(&self) -> &Arc<RedemptionCqrs> {
        &self.cqrs
    }

    /// Notified on every detected transfer; feeds each chain's driver.
    pub fn waker(&self) -> &Arc<Notify> {
        &self.wake
    }
}

/// Rebuilds `redemption_view` if its projection's version changed, manages
/// [`RedemptionState`] and mounts the redemption and receipt endpoints at
/// `/`.
pub async fn install(
    rocket: Rocket<Build>,
    with: Install<'_>,
) -> Result<Rocket<Build>, SqliteEsError> {
    if let Some(replayed) = rebuild_stale_views(with.pool).await? {
        tracing::info!(target: "redemption", replayed, "redemption view rebuilt");
    }
    Ok(rocket
        .manage(RedemptionState::new(with.pool.clone(), with.clock.clone()))
        .mount("/", routes())
        .mount("/", admin::routes())
        .mount("/", crate::receipt_inventory::routes()))
}

/// The background tasks of the redemption flow.
pub struct RedemptionTasks {
    pub monitor: JoinHandle<()>,
    pub driver: JoinHandle<()>,
}

/// Starts the transfer monitor and the driver of one chain; both stop
/// when `shutdown` triggers. The driver's first pass resumes every
/// unfinished redemption detected on this chain and reconciles its
/// receipt inventory. The monitor wakes every chain's driver through the
/// state's waker; this chain's driver waits on `wake` (fed by it).
pub fn start(
    state: &RedemptionState,
    chain: &ChainConfig,
    config: RedemptionConfig,
    pipeline: TxPipeline,
    alpaca: AlpacaClient,
    shutdown: &ShutdownTrigger,
    wake: Arc<Notify>,
) -> RedemptionTasks {
    let bot = pipeline.client().address();
    // The monitor's detection span starts each redemption's trace.
    let origins = crate::driver::FlowOrigins::default();
    let monitor = monitor::TransferMonitor::new(
        state.pool.clone(),
        pipeline.client().provider().clone(),
        Arc::clone(&state.cqrs),
        state.clock.clone(),
        monitor::MonitorSettings {
            network: chain.network,
            bot,
            confirmations: chain.confirmations,
            chunk_blocks: chain.log_chunk_blocks,
            start_block: chain.start_block,
            poll_interval: Duration::from_millis(
                config.monitor_interval_ms.get(),
            ),
            head_poll_interval: Duration::from_millis(
                config.monitor_head_poll_ms.get(),
            ),
        },
        Arc::clone(&state.wake),
    )
    .with_origins(origins.clone());
    let defaults = flow::DriverSettings::default();
    let driver = flow::engine(
        state.pool.clone(),
        Arc::clone(&state.cqrs),
        alpaca,
        pipeline,
        state.clock.clone(),
        flow::DriverSettings {
            network: chain.network,
            poll_timeout: Duration::from_secs(config.poll_timeout_secs.get()),
            reconcile_every: Duration::from_secs(
                config.reconcile_interval_secs.get(),
            ),
            engine: EngineSettings {
                step_timeout: chain.step_timeout,
                ..defaults.engine
            },
            ..defaults
        },
        wake,
    )
    .with_origins(origins);
    tracing::info!(
        target: "redemption",
        network = %chain.network,
        %bot,
        "redemption monitor and driver started"
    );
    RedemptionTasks {
        monitor: monitor.spawn(shutdown.subscribe()),
        driver: driver.spawn(shutdown.subscribe()),
    }
}
