//! The redemption driver: the only code that performs a redemption's side
//! effects. One task owns every non-terminal redemption; it is woken by the
//! monitor and by a periodic tick, reads each redemption's committed state
//! and performs the one next step that state calls for:
//!
//! | State | Step |
//! |---|---|
//! | `Detected` | redeem call to Alpaca (idempotent: `Idempotency-Key` from the id, 422 recovered by lookup) → `AlpacaCalled` |
//! | `AlpacaCalled` | poll the keyed GET (250 ms doubling to 30 s, timeout from the persisted `called_at`) → `AlpacaJournalCompleted` / `Failed` |
//! | `JournalCompleted` | select receipts, sign the burn, commit `BurnIntended` (reserves them), broadcast |
//! | `Burning` | classify the signed burn: record success, rebroadcast, wait, replace (bounded) or fail |
//!
//! Everything it needs to resume is in the event store, so a restart picks
//! every redemption up where it stopped (the in-memory poll backoff simply
//! restarts with an immediate poll).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use alloy::primitives::{TxHash, U256};
use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use sqlite_es::SqliteEsError;
use sqlx::SqlitePool;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{
    AlpacaCall, BurnAttempt, BurnFailure, Detection, IssuerRequestId,
    Redemption, RedemptionCommand, RedemptionCqrs, RedemptionError, Refusal,
    find, non_terminal,
};
use crate::alpaca::{AlpacaClient, AlpacaError, RedeemRequest, RequestStatus};
use crate::chain::{
    AttemptRole, Burn, ChainError, Effect, Landed, Landing, ReceiptInformation,
    ReceiptOp, ReceiptSummary, SignedTx, TxAction, TxFailure, TxLifecycle,
    TxStatus, Uncertainty, VaultError, VaultService,
};
use crate::clock::Clock;
use crate::driver::{self, Flow};
use crate::receipt_inventory::{self, RESERVATIONS_TABLE, select_burns};
use crate::shutdown::ShutdownListener;
use crate::tokenized_asset::{self, Network};

/// How long shutdown waits for running steps before cancelling them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Steps taken on one redemption per pass before moving on.
const MAX_STEPS_PER_PASS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverSettings {
    /// First poll of a request after the redeem call.
    pub poll_first: Duration,
    /// Polling backoff cap.
    pub poll_max: Duration,
    /// Give up polling this long after the persisted `called_at`.
    pub poll_timeout: Duration,
    /// Wait after a failed redeem call or chain step before retrying.
    pub retry_after: Duration,
    /// How long the receipts may fail to cover a burn before it fails.
    pub insufficient_receipts_grace: Duration,
    /// Upper bound on the pause between passes.
    pub tick: Duration,
    /// The network whose vaults' receipts are reconciled.
    pub network: Network,
    /// How often receipt balances are compared with the chain (also
    /// on the first dispatch).
    pub reconcile_every: Duration,
    /// Redemptions driven at the same time.
    pub max_concurrent: usize,
    /// A step running longer is cancelled, reported and retried.
    pub step_timeout: Duration,
    /// A burn whose nonce is consumed without visible evidence for this
    /// long is reported as stuck (never replaced for that).
    pub unseen_landing_alert: Duration,
}

impl Default for DriverSettings {
    fn default() -> Self {
        Self {
            poll_first: Duration::from_millis(250),
            poll_max: Duration::from_secs(30),
            poll_timeout: Duration::from_hours(1),
            retry_after: Duration::from_secs(5),
            insufficient_receipts_grace: Duration::from_mins(10),
            tick: Duration::from_secs(1),
            network: Network::Base,
            reconcile_every: Duration::from_mins(5),
            max_concurrent: 8,
            step_timeout: Duration::from_mins(2),
            unseen_landing_alert: Duration::from_mins(10),
        }
    }
}

/// The poll delay after `current`: doubled, capped at `max`.
pub fn next_poll_delay(current: Duration, max: Duration) -> Duration {
    current.saturating_mul(2).min(max)
}

/// Whether `elapsed` since `since` has reached `limit` (clock skew that
/// puts `since` in the future counts as nothing elapsed).
pub fn has_elapsed(
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: Duration,
) -> bool {
    (now - since).to_std().is_ok_and(|elapsed| elapsed >= limit)
}

/// When to touch a redemption next, and the poll backoff.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    next_at: Instant,
    poll_delay: Duration,
}

/// Whether a step changed the redemption (so the next one can run now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Advanced,
    Waiting,
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("command on redemption failed: {0}")]
    Command(Box<AggregateError<RedemptionError>>),
    #[error(transparent)]
    Query(#[from] super::RedemptionQueryError),
    #[error(transparent)]
    Inventory(Box<receipt_inventory::InventoryError>),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    ReceiptInfo(#[from] crate::chain::ReceiptInfoError),
    #[error("redemption has no Alpaca quantity")]
    NoQuantity,
    #[error("cannot observe burn {tx_hash}: {operation}: {message}")]
    Observe {
        tx_hash: TxHash,
        operation: &'static str,
        message: String,
    },
    #[error(
        "{}burn {tx_hash} took nonce {nonce} but cannot be confirmed \
         ({detail}); it is not replaced, since only our transactions use \
         this wallet; still looking",
        if *stuck { "stuck: " } else { "" }
    )]
    UnseenLanding {
        tx_hash: TxHash,
        nonce: u64,
        detail: String,
        stuck: bool,
    },
    #[error(
        "a burn for this redemption landed in {tx_hash}, which is none of \
         its attempts; reconcile by hand"
    )]
    LandedOutsideAttempts { tx_hash: TxHash },
    #[error("step cancelled after {after_ms} ms (a call hung)")]
    TimedOut { after_ms: u128 },
}

impl From<AggregateError<RedemptionError>> for StepError {
    fn from(error: AggregateError<RedemptionError>) -> Self {
        Self::Command(Box::new(error))
    }
}

impl From<receipt_inventory::InventoryError> for StepError {
    fn from(error: receipt_inventory::InventoryError) -> Self {
        Self::Inventory(Box::new(error))
    }
}

/// Drives every non-terminal redemption; cheap to clone. Redemptions are
/// driven concurrently (up to `max_concurrent`), never two tasks on one.
#[derive(Clone)]
pub struct RedemptionDriver {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    cqrs: Arc<RedemptionCqrs>,
    alpaca: AlpacaClient,
    vaults: VaultService,
    clock: Arc<dyn Clock>,
    settings: DriverSettings,
    wake: Arc<Notify>,
    permits: Semaphore,
    schedules: Mutex<HashMap<IssuerRequestId, Schedule>>,
    in_flight: Mutex<HashSet<IssuerRequestId>>,
    /// Redemptions with a `flow_status` row to clear on progress.
    erroring: Mutex<HashSet<IssuerRequestId>>,
    reconciling: AtomicBool,
    last_reconcile: Mutex<Option<Instant>>,
}

/// Removes a redemption from the in-flight set when its task ends.
struct InFlight {
    inner: Arc<Inner>,
    id: IssuerRequestId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.inner.in_flight).remove(&self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RedemptionDriver {
    pub fn new(
        pool: SqlitePool,
        cqrs: Arc<RedemptionCqrs>,
        alpaca: AlpacaClient,
        vaults: VaultService,
        clock: Arc<dyn Clock>,
        settings: DriverSettings,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                cqrs,
                alpaca,
                vaults,
                clock,
                settings,
                wake,
                permits: Semaphore::new(settings.max_concurrent.max(1)),
                schedules: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashSet::new()),
                erroring: Mutex::new(HashSet::new()),
                reconciling: AtomicBool::new(false),
                last_reconcile: Mutex::new(None),
            }),
        }
    }

    /// Drives redemptions until shutdown, then lets running steps finish.
    /// The first pass resumes every non-terminal redemption left by a
    /// previous run and reconciles the receipt inventory.
    pub fn spawn(
        self,
        mut shutdown: ShutdownListener,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            loop {
                while tasks.try_join_next().is_some() {}
                let pause = match self.dispatch(&mut tasks).await {
                    Ok(pause) => pause,
                    Err(error) => {
                        tracing::warn!(
                            target: "redemption",
                            %error,
                            "redemption driver pass failed"
                        );
                        self.inner.settings.retry_after
                    }
                };
                let wake = Arc::clone(&self.inner.wake);
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
            // Every step is safe to cut short (state changes commit before
            // side effects, and the redeem call is idempotent), so a step
            // stuck on a hung call does not hold up shutdown.
            let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    target: "redemption",
                    running = tasks.len(),
                    "redemption steps still running at shutdown; cancelled"
                );
                tasks.shutdown().await;
            }
            tracing::info!(target: "redemption", "redemption driver stopped");
        })
    }

    /// One pass that waits for every step it started (for tests and
    /// tools; the service uses [`RedemptionDriver::spawn`]).
    pub async fn pass(&self) -> Result<(), super::RedemptionQueryError> {
        let mut tasks = JoinSet::new();
        let result = self.dispatch(&mut tasks).await;
        while tasks.join_next().await.is_some() {}
        result.map(drop)
    }

    /// Starts a task for every non-terminal redemption that is neither in
    /// flight nor waiting for its next poll or retry (and the receipt
    /// reconciliation when due); returns how long to pause before the
    /// next dispatch.
    pub async fn dispatch(
        &self,
        tasks: &mut JoinSet<()>,
    ) -> Result<Duration, super::RedemptionQueryError> {
        let inner = &self.inner;
        if inner.reconcile_due()
            && !inner.reconciling.swap(true, Ordering::AcqRel)
        {
            let worker = Arc::clone(inner);
            tasks.spawn(async move {
                worker.reconcile().await;
                worker.reconciling.store(false, Ordering::Release);
            });
        }
        let open = non_terminal(&inner.pool).await?;
        metrics::gauge!("redemptions_open")
            .set(f64::from(u32::try_from(open.len()).unwrap_or(u32::MAX)));
        let now = Instant::now();
        {
            let mut schedules = lock(&inner.schedules);
            schedules.retain(|id, _| open.iter().any(|(open, _)| open == id));
        }
        for (id, state) in open {
            let waiting = lock(&inner.schedules)
                .get(&id)
                .is_some_and(|schedule| schedule.next_at > now);
            if waiting || !lock(&inner.in_flight).insert(id.clone()) {
                continue;
            }
            let guard = InFlight {
                inner: Arc::clone(inner),
                id,
            };
            tasks.spawn(async move {
                let Ok(_permit) = guard.inner.permits.acquire().await else {
                    return;
                };
                guard.inner.drive(&guard.id, state).await;
            });
        }
        let pause = lock(&inner.schedules)
            .values()
            .map(|schedule| schedule.next_at.saturating_duration_since(now))
            .fold(inner.settings.tick, Duration::min);
        Ok(pause)
    }
}

impl Inner {
    fn reconcile_due(&self) -> bool {
        lock(&self.last_reconcile)
            .is_none_or(|at| at.elapsed() >= self.settings.reconcile_every)
    }

    /// Compares the inventory with the chain; a failure is logged and
    /// retried on the next dispatch.
    async fn reconcile(&self) {
        let vaults: Vec<_> = match tokenized_asset::list_enabled(&self.pool)
            .await
        {
            Ok(assets) => assets
                .into_iter()
                .filter(|asset| asset.network == self.settings.network)
                .flat_map(|asset| {
                    std::iter::once(asset.vault).chain(asset.previous_vaults)
                })
                .collect(),
            Err(error) => {
                tracing::warn!(target: "redemption", %error, "cannot list vaults to reconcile");
                return;
            }
        };
        match receipt_inventory::reconcile(&self.pool, &self.vaults, &vaults)
            .await
        {
            Ok(report) => {
                *lock(&self.last_reconcile) = Some(Instant::now());
                tracing::debug!(
                    target: "redemption",
                    checked = report.checked,
                    corrected = report.corrected,
                    "receipt inventory reconciled"
                );
            }
            Err(error) => tracing::warn!(
                target: "redemption",
                %error,
                "receipt reconciliation failed"
            ),
        }
    }

    async fn drive(&self, id: &IssuerRequestId, mut state: Redemption) {
        for _ in 0..MAX_STEPS_PER_PASS {
            let waiting = lock(&self.schedules)
                .get(id)
                .is_some_and(|schedule| schedule.next_at > Instant::now());
            if waiting {
                return;
            }
            let limit = self.settings.step_timeout;
            let outcome = tokio::time::timeout(limit, self.step(id, &state))
                .await
                .unwrap_or_else(|_| {
                    metrics::counter!("redemption_step_timeouts_total")
                        .increment(1);
                    Err(StepError::TimedOut {
                        after_ms: limit.as_millis(),
                    })
                });
            match outcome {
                Ok(step) => {
                    self.clear_error(id, step == Step::Advanced).await;
                    if step == Step::Waiting {
                        return;
                    }
                }
                Err(error) => {
                    self.record_error(id, &state, &error).await;
                    self.retry_later(id);
                    return;
                }
            }
            state = match find(&self.pool, id).await {
                Ok(Some(next)) if !next.is_terminal() => next,
                Ok(Some(done)) => {
                    count_outcome(&done);
                    return;
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(target: "redemption", %id, %error, "reload failed");
                    return;
                }
            };
        }
    }

    /// Logs a failed step and shows it as the redemption's `last_error`.
    async fn record_error(
        &self,
        id: &IssuerRequestId,
        state: &Redemption,
        error: &StepError,
    ) {
        let stuck = matches!(
            error,
            StepError::UnseenLanding { stuck: true, .. }
                | StepError::LandedOutsideAttempts { .. }
        );
        if stuck {
            tracing::error!(
                target: "redemption",
                %id,
                state = state.state_name(),
                %error,
                "redemption stuck; operator attention needed"
            );
        } else {
            tracing::warn!(
                target: "redemption",
                %id,
                state = state.state_name(),
                %error,
                "redemption step failed; will retry"
            );
        }
        metrics::counter!("redemption_step_errors_total").increment(1);
        lock(&self.erroring).insert(id.clone());
        let message = crate::http::ErrorChain(error).to_string();
        if let Err(db) = driver::record_error(
            &self.pool,
            Flow::Redemption,
            id.as_str(),
            &message,
            self.clock.now(),
        )
        .await
        {
            tracing::warn!(target: "redemption", error = %db, "cannot record driver status");
        }
    }

    /// Progress clears the row (always, so a row left by an earlier run
    /// goes too); a wait clears it only after an error of this run.
    async fn clear_error(&self, id: &IssuerRequestId, progressed: bool) {
        if !lock(&self.erroring).remove(id) && !progressed {
            return;
        }
        if let Err(db) =
            driver::clear_error(&self.pool, Flow::Redemption, id.as_str()).await
        {
            tracing::warn!(target: "redemption", error = %db, "cannot clear driver status");
        }
    }

    async fn step(
        &self,
        id: &IssuerRequestId,
        state: &Redemption,
    ) -> Result<Step, StepError> {
        match state {
            Redemption::Detected { detection } => {
                self.call_alpaca(id, detection).await
            }
            Redemption::AlpacaCalled { detection, alpaca } => {
                self.poll(id, detection, alpaca).await
            }
            Redemption::JournalCompleted {
                detection,
                alpaca,
                journal_completed_at,
            } => {
                self.start_burn(id, detection, alpaca, *journal_completed_at)
                    .await
            }
            Redemption::Burning {
                detection,
                burn,
                superseded,
                ..
            } => self.drive_burn(id, detection, burn, superseded).await,
            Redemption::NotDetected
            | Redemption::Completed { .. }
            | Redemption::Failed { .. } => Ok(Step::Waiting),
        }
    }

    async fn execute(
        &self,
        id: &IssuerRequestId,
        command: RedemptionCommand,
    ) -> Result<(), AggregateError<RedemptionError>> {
        self.cqrs.execute(id.as_str(), command).await
    }

    fn retry_later(&self, id: &IssuerRequestId) {
        let retry_after = self.settings.retry_after;
        let mut schedules = lock(&self.schedules);
        let schedule = schedules.entry(id.clone()).or_insert(Schedule {
            next_at: Instant::now(),
            poll_delay: self.settings.poll_first,
        });
        schedule.next_at = Instant::now() + retry_after;
    }

    async fn call_alpaca(
        &self,
        id: &IssuerRequestId,
        detection: &Detection,
    ) -> Result<Step, StepError> {
        let request = redeem_request(id, detection)?;
        let record = match self.alpaca.redeem(&request).await {
            Ok(record) => record,
            Err(error) if is_refusal(&error) => {
                tracing::error!(
                    target: "redemption",
                    %id,
                    %error,
                    "Alpaca refused the redeem call; tokens stay with the \
                     issuer wallet"
                );
                self.execute(
                    id,
                    RedemptionCommand::RecordAlpacaRejected {
                        refusal: Some(Refusal {
                            status: error.status(),
                            message: error.to_string(),
                        }),
                    },
                )
                .await?;
                return Ok(Step::Advanced);
            }
            Err(error) => {
                let level_error = !error.is_retryable();
                if level_error {
                    tracing::error!(target: "redemption", %id, %error, "redeem call failed");
                } else {
                    tracing::warn!(target: "redemption", %id, %error, "redeem call failed; retrying");
                }
                metrics::counter!("alpaca_errors_total", "operation" => "redeem")
                    .increment(1);
                self.retry_later(id);
                return Ok(Step::Waiting);
            }
        };
        self.execute(
            id,
            RedemptionCommand::RecordAlpacaCall {
                tokenization_request_id: record.tokenization_request_id.clone(),
            },
        )
        .await?;
        tracing::info!(
            target: "redemption",
            %id,
            tokenization_request_id = %record.tokenization_request_id,
            status = %record.status,
            "Alpaca accepted the redeem call"
        );
        // The first poll comes after a short pause, not immediately.
        lock(&self.schedules).insert(
            id.clone(),
            Schedule {
                next_at: Instant::now() + self.settings.poll_first,
                poll_delay: self.settings.poll_first,
            },
        );
        match record.status {
            RequestStatus::Completed => {
                self.execute(id, RedemptionCommand::RecordJournalCompleted)
                    .await?;
                lock(&self.schedules).remove(id);
            }
            RequestStatus::Rejected => {
                self.execute(
                    id,
                    RedemptionCommand::RecordAlpacaRejected { refusal: None },
                )
                .await?;
            }
            RequestStatus::Pending | RequestStatus::Other(_) => {}
        }
        Ok(Step::Advanced)
    }

    async fn poll(
        &self,
        id: &IssuerRequestId,
        detection: &Detection,
        alpaca: &AlpacaCall,
    ) -> Result<Step, StepError> {
        let request = redeem_request(id, detection)?;
        let outcome = self
            .alpaca
            .get_request(&alpaca.tokenization_request_id)
            .await;
        let record = match outcome {
            Ok(Some(record)) => record,
            Ok(None) => {
                tracing::debug!(target: "redemption", %id, "request not found yet");
                return self.poll_again_or_time_out(id, alpaca).await;
            }
            Err(error) => {
                // No answer is not "still pending": an Alpaca outage never
                // runs a redemption into the timeout.
                tracing::warn!(target: "redemption", %id, %error, "polling Alpaca failed");
                return Ok(self.poll_again(id));
            }
        };
        if let Some(mismatch) = request.mismatch(&record) {
            // Transient anomalies happen; never terminalise on them.
            tracing::error!(
                target: "redemption",
                %id,
                field = mismatch.field,
                expected = %mismatch.expected,
                found = %mismatch.found,
                "Alpaca's record disagrees with the redemption; still polling"
            );
            return self.poll_again_or_time_out(id, alpaca).await;
        }
        match record.status {
            RequestStatus::Completed => {
                self.execute(id, RedemptionCommand::RecordJournalCompleted)
                    .await?;
                lock(&self.schedules).remove(id);
                tracing::info!(target: "redemption", %id, "Alpaca journal completed");
                Ok(Step::Advanced)
            }
            RequestStatus::Rejected => {
                tracing::warn!(
                    target: "redemption",
                    %id,
                    "Alpaca rejected the redemption; tokens stay with the \
                     issuer wallet"
                );
                self.execute(
                    id,
                    RedemptionCommand::RecordAlpacaRejected { refusal: None },
                )
                .await?;
                lock(&self.schedules).remove(id);
                Ok(Step::Advanced)
            }
            RequestStatus::Pending | RequestStatus::Other(_) => {
                self.poll_again_or_time_out(id, alpaca).await
            }
        }
    }

    /// Called only after Alpaca answered without a final status (pending,
    /// 404, a disagreeing record), so an outage (ours or Alpaca's) longer
    /// than the timeout never fails a redemption Alpaca may already have
    /// completed: the first poll after the outage still reads the answer.
    async fn poll_again_or_time_out(
        &self,
        id: &IssuerRequestId,
        alpaca: &AlpacaCall,
    ) -> Result<Step, StepError> {
        let now = self.clock.now();
        if !has_elapsed(alpaca.called_at, now, self.settings.poll_timeout) {
            return Ok(self.poll_again(id));
        }
        let waited_secs = self.settings.poll_timeout.as_secs();
        tracing::error!(
            target: "redemption",
            %id,
            tokenization_request_id = %alpaca.tokenization_request_id,
            waited_secs,
            "Alpaca did not complete the redemption in time"
        );
        self.execute(id, RedemptionCommand::RecordPollTimeout { waited_secs })
            .await?;
        lock(&self.schedules).remove(id);
        Ok(Step::Advanced)
    }

    fn poll_again(&self, id: &IssuerRequestId) -> Step {
        let first = self.settings.poll_first;
        let max = self.settings.poll_max;
        let mut schedules = lock(&self.schedules);
        let schedule = schedules.entry(id.clone()).or_insert(Schedule {
            next_at: Instant::now(),
            poll_delay: first,
        });
        schedule.next_at = Instant::now() + schedule.poll_delay;
        schedule.poll_delay = next_poll_delay(schedule.poll_delay, max);
        Step::Waiting
    }

    async fn start_burn(
        &self,
        id: &IssuerRequestId,
        detection: &Detection,
        alpaca: &AlpacaCall,
        journal_completed_at: DateTime<Utc>,
    ) -> Result<Step, StepError> {
        let transfer = &detection.transfer;
        let qty = detection.alpaca_qty.ok_or(StepError::NoQuantity)?;
        let amount = detection.burn_shares();
        let held = {
            let mut conn =
                self.pool.acquire().await.map_err(|err| {
                    receipt_inventory::InventoryError::Sqlx(err)
                })?;
            receipt_inventory::holdings(&mut conn, transfer.vault).await?
        };
        let burns = match select_burns(&held, amount) {
            Ok(burns) => burns,
            Err(short) => {
                let now = self.clock.now();
                if has_elapsed(
                    journal_completed_at,
                    now,
                    self.settings.insufficient_receipts_grace,
                ) {
                    tracing::error!(
                        target: "redemption",
                        %id,
                        %short,
                        "receipts cannot cover the burn; failing"
                    );
                    self.execute(
                        id,
                        RedemptionCommand::RecordBurnFailed {
                            failure: BurnFailure::InsufficientReceipts {
                                requested: short.requested,
                                available: short.available,
                            },
                        },
                    )
                    .await?;
                    return Ok(Step::Advanced);
                }
                tracing::warn!(
                    target: "redemption",
                    %id,
                    %short,
                    "receipts cannot cover the burn yet"
                );
                self.retry_later(id);
                return Ok(Step::Waiting);
            }
        };
        let info = ReceiptInformation::new(
            ReceiptOp::Redeem,
            alpaca.tokenization_request_id.clone(),
            id.to_string(),
            transfer.underlying.to_string(),
            qty.quantity(),
            journal_completed_at,
        )?;
        let chain_burns: Vec<Burn> = burns
            .iter()
            .map(|burn| Burn {
                receipt_id: burn.receipt_id,
                shares: burn.shares,
                receipt_information: info.encode(),
            })
            .collect();
        let tx = match self
            .vaults
            .sign_burn(
                transfer.vault,
                &chain_burns,
                transfer.from_wallet,
                Some(detection.dust),
            )
            .await
        {
            Ok(tx) => tx,
            Err(VaultError::Chain(ChainError::WouldRevert { revert })) => {
                // Most likely the inventory overstates a receipt: re-read
                // the chain before the next attempt.
                tracing::warn!(
                    target: "redemption",
                    %id,
                    %revert,
                    "burn would revert; reconciling receipts"
                );
                if let Err(error) = receipt_inventory::reconcile(
                    &self.pool,
                    &self.vaults,
                    &[transfer.vault],
                )
                .await
                {
                    tracing::warn!(target: "redemption", %error, "reconciliation failed");
                }
                self.retry_later(id);
                return Ok(Step::Waiting);
            }
            Err(error) => return Err(error.into()),
        };
        let command = RedemptionCommand::IntendBurn {
            tx: tx.clone(),
            burns: burns.clone(),
            dust: detection.dust,
            replaces: None,
        };
        if let Err(error) = self.execute(id, command).await {
            // Never broadcast: give the nonce back.
            self.vaults.client().release(&tx).await;
            if is_reservation_conflict(&error) {
                tracing::info!(
                    target: "redemption",
                    %id,
                    "receipts changed while signing; reselecting"
                );
                return Ok(Step::Advanced);
            }
            return Err(error.into());
        }
        tracing::info!(
            target: "redemption",
            %id,
            tx_hash = %tx.hash,
            receipts = burns.len(),
            dust = %detection.dust,
            "burn intended"
        );
        self.broadcast(id, &tx).await;
        Ok(Step::Waiting)
    }

    async fn broadcast(
        &self,
        id: &IssuerRequestId,
        tx: &crate::chain::SignedTx,
    ) {
        if let Err(error) = self.vaults.client().broadcast(tx).await {
            // The intent is persisted; classification decides what next.
            tracing::warn!(
                target: "redemption",
                %id,
                tx_hash = %tx.hash,
                %error,
                "burn broadcast failed"
            );
        }
    }

    async fn drive_burn(
        &self,
        id: &IssuerRequestId,
        detection: &Detection,
        burn: &BurnAttempt,
        superseded: &[SignedTx],
    ) -> Result<Step, StepError> {
        let client = self.vaults.client().clone();
        let mut status = client.classify(&burn.tx).await?;
        let lifecycle = TxLifecycle::new(
            u32::try_from(superseded.len()).unwrap_or(u32::MAX),
        );
        if lifecycle.decide(AttemptRole::Current, &status)
            == TxAction::FindLanding
        {
            match self
                .find_burn_landing(id, detection, burn, superseded)
                .await?
            {
                Ok(landed) => {
                    return self
                        .burn_landed(id, detection, burn, superseded, landed)
                        .await;
                }
                Err(dead) => status = dead,
            }
        }
        match lifecycle.decide(AttemptRole::Current, &status) {
            TxAction::RecordSuccess => {
                let TxStatus::Mined { receipt } = status else {
                    return Ok(Step::Waiting);
                };
                self.record_burn(id, detection, burn.tx.hash, &receipt)
                    .await
            }
            TxAction::Rebroadcast => {
                self.broadcast(id, &burn.tx).await;
                Ok(Step::Waiting)
            }
            TxAction::Wait => match status {
                // Not a failure of the burn, but it must be visible.
                TxStatus::Uncertain {
                    reason: Uncertainty::Rpc { operation, message },
                } => Err(StepError::Observe {
                    tx_hash: burn.tx.hash,
                    operation,
                    message,
                }),
                _ => Ok(Step::Waiting),
            },
            TxAction::FindLanding
            | TxAction::NothingToDo
            | TxAction::SupersededAttemptMined => Ok(Step::Waiting),
            TxAction::Replace => {
                // Proof before a second transaction: a burn whose landing
                // we missed must not be sent again.
                let from = search_from(&client, burn, superseded);
                if let Some(landed) = self
                    .vaults
                    .find_effect(
                        detection.transfer.vault,
                        burn_effect(id),
                        from,
                    )
                    .await?
                {
                    return self
                        .burn_landed(id, detection, burn, superseded, landed)
                        .await;
                }
                let replacement = match client.replacement_for(&burn.tx).await {
                    Ok(tx) => tx,
                    Err(error) => {
                        tracing::warn!(
                            target: "redemption",
                            %id,
                            %error,
                            "signing a replacement burn failed"
                        );
                        self.retry_later(id);
                        return Ok(Step::Waiting);
                    }
                };
                let command = RedemptionCommand::IntendBurn {
                    tx: replacement.clone(),
                    burns: burn.burns.clone(),
                    dust: burn.dust,
                    replaces: Some(burn.tx.hash),
                };
                if let Err(error) = self.execute(id, command).await {
                    client.release(&replacement).await;
                    return Err(error.into());
                }
                tracing::warn!(
                    target: "redemption",
                    %id,
                    old = %burn.tx.hash,
                    new = %replacement.hash,
                    "burn replaced after a revert or a foreign nonce"
                );
                self.broadcast(id, &replacement).await;
                Ok(Step::Waiting)
            }
            TxAction::Fail { reason } => {
                let failure = match reason {
                    TxFailure::DeterministicRevert(revert) => {
                        BurnFailure::DeterministicRevert {
                            tx_hash: burn.tx.hash,
                            revert: revert.to_string(),
                        }
                    }
                    TxFailure::ReplacementBudgetExhausted { used } => {
                        BurnFailure::ReplacementBudgetExhausted {
                            tx_hash: burn.tx.hash,
                            used,
                        }
                    }
                };
                tracing::error!(
                    target: "redemption",
                    %id,
                    ?failure,
                    "burn failed; manual intervention required"
                );
                self.execute(
                    id,
                    RedemptionCommand::RecordBurnFailed { failure },
                )
                .await?;
                Ok(Step::Advanced)
            }
        }
    }

    /// Records the burn `tx_hash` (an attempt of this redemption) as done.
    async fn record_burn(
        &self,
        id: &IssuerRequestId,
        detection: &Detection,
        tx_hash: TxHash,
        receipt: &ReceiptSummary,
    ) -> Result<Step, StepError> {
        let withdrawn =
            VaultService::parse_burn(&receipt.logs, detection.transfer.vault);
        let burned = withdrawn
            .iter()
            .try_fold(U256::ZERO, |sum, w| sum.checked_add(w.shares));
        if burned != Some(detection.burn_shares()) {
            tracing::error!(
                target: "redemption",
                %id,
                %tx_hash,
                ?withdrawn,
                "burn landed with unexpected Withdraw logs"
            );
        }
        self.execute(
            id,
            RedemptionCommand::RecordBurnCompleted {
                burn_tx_hash: tx_hash,
                block: receipt.block_number,
            },
        )
        .await?;
        tracing::info!(
            target: "redemption",
            %id,
            %tx_hash,
            block = receipt.block_number,
            "redemption completed"
        );
        Ok(Step::Advanced)
    }

    /// Our burn's nonce is consumed but the node shows no receipt: the
    /// landed attempt (`Ok`), or proof that a transaction not ours took
    /// the nonce (`Err(Dead)`). Anything else waits; nothing is sent.
    async fn find_burn_landing(
        &self,
        id: &IssuerRequestId,
        detection: &Detection,
        burn: &BurnAttempt,
        superseded: &[SignedTx],
    ) -> Result<Result<Landed, TxStatus>, StepError> {
        let tx = &burn.tx;
        let from = search_from(self.vaults.client(), burn, superseded);
        let landing = self
            .vaults
            .find_landing(detection.transfer.vault, burn_effect(id), tx, from)
            .await?;
        let detail = match landing {
            Landing::Landed(landed) => return Ok(Ok(landed)),
            Landing::NonceTakenBy { tx_hash, block } => {
                metrics::counter!("chain_foreign_nonce_total").increment(1);
                tracing::error!(
                    target: "redemption",
                    %id,
                    ours = %tx.hash,
                    nonce = tx.nonce,
                    taken_by = %tx_hash,
                    block,
                    "ALERT: a transaction we did not sign took our nonce; \
                     someone else is using the issuer key"
                );
                return Ok(Err(TxStatus::Dead {
                    consumed_by: tx_hash,
                }));
            }
            Landing::InBlockLogsUnseen { block } => format!(
                "it is in block {block} but the node does not show its logs"
            ),
            Landing::NotVisible => {
                "no node answer shows its receipt, logs or block".to_owned()
            }
        };
        let waited = self.clock.now() - tx.signed_at;
        let stuck = waited
            .to_std()
            .is_ok_and(|waited| waited >= self.settings.unseen_landing_alert);
        if stuck {
            metrics::counter!(
                "chain_unseen_landing_stuck_total",
                "flow" => "redemption"
            )
            .increment(1);
        }
        Err(StepError::UnseenLanding {
            tx_hash: tx.hash,
            nonce: tx.nonce,
            detail,
            stuck,
        })
    }

    /// Records a burn proven landed by the chain's logs. A landing that is
    /// none of this redemption's attempts is never "fixed" by sending
    /// more: it stays an error for an operator.
    async fn burn_landed(
        &self,
        id: &IssuerRequestId,
        detection: &Detection,
        burn: &BurnAttempt,
        superseded: &[SignedTx],
        landed: Landed,
    ) -> Result<Step, StepError> {
        tracing::warn!(
            target: "redemption",
            %id,
            tx_hash = %landed.tx_hash,
            block = landed.receipt.block_number,
            receipt_visible = landed.receipt.gas_used.is_some(),
            "landed burn found on chain"
        );
        let ours = landed.tx_hash == burn.tx.hash
            || superseded.iter().any(|tx| tx.hash == landed.tx_hash);
        if !ours {
            tracing::error!(
                target: "redemption",
                %id,
                tx_hash = %landed.tx_hash,
                "a burn for this redemption landed in a transaction that is \
                 none of its attempts; reconcile by hand"
            );
            return Err(StepError::LandedOutsideAttempts {
                tx_hash: landed.tx_hash,
            });
        }
        self.record_burn(id, detection, landed.tx_hash, &landed.receipt)
            .await
    }
}

/// Where to look for a landed burn: no attempt can be older than the
/// first one's signing head.
fn search_from(
    client: &crate::chain::ChainClient,
    burn: &BurnAttempt,
    superseded: &[SignedTx],
) -> u64 {
    superseded
        .first()
        .unwrap_or(&burn.tx)
        .head_at_signing
        .unwrap_or_else(|| client.policy().start_block)
}

fn burn_effect(id: &IssuerRequestId) -> Effect<'_> {
    Effect::Burn {
        issuer_request_id: id.as_str(),
    }
}

/// `redemptions_finished_total{outcome}`: completed, or the failure kind.
fn count_outcome(state: &Redemption) {
    let outcome = match state {
        Redemption::Failed { reason, .. } => match reason {
            super::FailureReason::AlpacaRejected { .. } => "alpaca_rejected",
            super::FailureReason::PollTimedOut { .. } => "poll_timed_out",
            super::FailureReason::BelowMinimumQuantity { .. } => {
                "below_minimum_quantity"
            }
            super::FailureReason::UnrepresentableQuantity { .. } => {
                "unrepresentable_quantity"
            }
            super::FailureReason::BurnFailed { .. } => "burn_failed",
        },
        _ => "completed",
    };
    metrics::counter!("redemptions_finished_total", "outcome" => outcome)
        .increment(1);
}

/// The redeem call for a detection (rebuilt identically on every attempt,
/// which the `Idempotency-Key` replay relies on).
fn redeem_request(
    id: &IssuerRequestId,
    detection: &Detection,
) -> Result<RedeemRequest, StepError> {
    let transfer = &detection.transfer;
    Ok(RedeemRequest {
        issuer_request_id: id.to_string(),
        underlying_symbol: transfer.underlying.to_string(),
        token_symbol: transfer.token.to_string(),
        ap: transfer.ap.clone(),
        qty: detection.alpaca_qty.ok_or(StepError::NoQuantity)?,
        network: transfer.network.to_string(),
        wallet_address: transfer.from_wallet,
        tx_hash: transfer.tx_hash,
    })
}

/// A final business refusal of the redeem call (400, or a 422 that is not
/// a duplicate). Auth, decoding and configuration errors are not: they
/// are ours to fix, so the call is retried.
fn is_refusal(error: &AlpacaError) -> bool {
    matches!(
        error,
        AlpacaError::Http { status: 400, .. }
            | AlpacaError::Http { status: 422, .. }
            | AlpacaError::RedeemUnprocessable { .. }
    )
}

fn is_reservation_conflict(error: &AggregateError<RedemptionError>) -> bool {
    let AggregateError::UnexpectedError(cause) = error else {
        return false;
    };
    matches!(
        cause.downcast_ref::<SqliteEsError>(),
        Some(SqliteEsError::ProjectionConflict { table, .. })
            if table == RESERVATIONS_TABLE
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn poll_delays_double_up_to_the_cap() {
        let max = Duration::from_secs(30);
        let mut delay = Duration::from_millis(250);
        let mut seen = vec![delay];
        for _ in 0..10 {
            delay = next_poll_delay(delay, max);
            seen.push(delay);
        }
        let millis: Vec<u128> = seen.iter().map(Duration::as_millis).collect();
        assert_eq!(
            millis,
            vec![
                250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000,
                30000
            ]
        );
        assert_eq!(next_poll_delay(Duration::MAX, max), max);
    }

    #[test]
    fn timeouts_are_measured_from_the_persisted_time() {
        let called = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let hour = Duration::from_hours(1);
        let later = |secs| called + chrono::TimeDelta::seconds(secs);
        assert!(!has_elapsed(called, later(3599), hour));
        assert!(has_elapsed(called, later(3600), hour));
        // A clock behind the persisted time is not a timeout.
        assert!(!has_elapsed(called, later(-10), hour));
    }

    #[test]
    fn only_business_answers_are_refusals() {
        let http = |status| AlpacaError::Http {
            status,
            code: None,
            message: String::new(),
        };
        assert!(is_refusal(&http(400)));
        assert!(is_refusal(&http(422)));
        assert!(!is_refusal(&http(401)));
        assert!(!is_refusal(&http(403)));
        assert!(!is_refusal(&http(503)));
        assert!(!is_refusal(&AlpacaError::RateLimited { retry_after: None }));
    }
}
