//! The mint driver: the only place where a mint touches the chain or
//! Alpaca.
//!
//! Woken by accepted confirmations and by a periodic tick; every pass
//! lists the mints that have work (`journal_confirmed`, `mint_intended`,
//! `minted`) and drives each one in its own task, at most one task per
//! mint and a bounded number at once. Each step reads the aggregate,
//! decides from its state alone and records the result as a command:
//!
//! - `JournalConfirmed`: sign the deposit, commit `RecordTxIntent` (the
//!   exact bytes), then broadcast.
//! - `MintIntended`: classify the transaction. Mined → `RecordMinted`;
//!   pending → rebroadcast the identical bytes; dead or reverted for a
//!   reason that may not recur → sign a replacement, commit it, send it;
//!   deterministic revert or budget spent → `RecordFailure`; uncertain →
//!   wait. A missing receipt is never a failure.
//! - `Minted`: send the mint callback; on 200 `RecordCallbackDelivered`.
//!   Failures back off and retry forever (a 400 may have been applied).
//!
//! Errors that only mean "not now" (RPC down, fee above the ceiling,
//! Alpaca unavailable) are written to `flow_status` for operators
//! and retried with backoff; they never fail a mint.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alloy::primitives::TxHash;
use cqrs_es::{AggregateError, EventStore};
use sqlite_es::SqliteStore;
use sqlx::SqlitePool;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{
    FailureClass, MAX_TX_ATTEMPTS, Mint, MintCommand, MintCqrs, MintError,
    MintRequest, MintState, MintedTokens, ReplacementCause,
    TokenizationRequestId, TxAttempt, unfinished_mints,
};
use crate::alpaca::{AlpacaClient, MintCallback};
use crate::chain::{
    AttemptRole, ChainConfig, ChainError, Effect, Landed, Landing,
    ReceiptInformation, ReceiptOp, SignedTx, TxAction, TxFailure, TxLifecycle,
    TxStatus, Uncertainty, VaultService,
};
use crate::clock::Clock;
use crate::driver::{self, Flow};
use crate::shutdown::ShutdownListener;

/// Steps one task takes for a mint before yielding to the next pass.
const MAX_STEPS_PER_RUN: usize = 8;

/// How long shutdown waits for running steps before cancelling them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Cadence and limits of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverSettings {
    /// How often every unfinished mint is looked at without a wake-up.
    pub tick: Duration,
    /// Mints driven at the same time.
    pub max_concurrent: usize,
    /// A pending transaction is re-sent at most this often.
    pub rebroadcast_every: Duration,
    /// First delay after a retryable error; doubles per failure.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Delay after an error retrying cannot fix by itself (e.g. a final
    /// 4xx from Alpaca): long, but the mint is never given up.
    pub final_error_backoff: Duration,
    /// A step running longer is cancelled, reported and retried, so a hung
    /// call never holds a driver slot.
    pub step_timeout: Duration,
    /// A transaction whose nonce is consumed without visible evidence for
    /// this long is reported as stuck (never replaced for that).
    pub unseen_landing_alert: Duration,
}

impl DriverSettings {
    /// Ticks as often as receipts are polled.
    pub fn from_chain(config: &ChainConfig) -> Self {
        Self {
            tick: config.receipt_poll_interval,
            step_timeout: config.step_timeout,
            unseen_landing_alert: config.unseen_landing_alert,
            ..Self::default()
        }
    }
}

impl Default for DriverSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(500),
            max_concurrent: 8,
            rebroadcast_every: Duration::from_secs(5),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_mins(1),
            final_error_backoff: Duration::from_mins(10),
            step_timeout: Duration::from_mins(2),
            unseen_landing_alert: Duration::from_mins(10),
        }
    }
}

/// What a step achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// State changed; take the next step now.
    Progress,
    /// Waiting on the chain; look again next pass.
    Wait,
    /// Nothing left to do for this mint.
    Done,
}

/// A step that could not complete; the mint stays where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StepError {
    message: String,
    /// Whether trying again soon may help.
    retryable: bool,
}

impl StepError {
    fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    fn command(error: &AggregateError<MintError>) -> Self {
        let retryable = matches!(
            error,
            AggregateError::AggregateConflict
                | AggregateError::DatabaseConnectionError(_)
        );
        Self {
            message: format!("recording the step failed: {error}"),
            retryable,
        }
    }

    fn chain(error: &ChainError) -> Self {
        Self {
            message: crate::http::ErrorChain(error).to_string(),
            retryable: error.is_retryable(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    not_before: Instant,
}

/// Drives every unfinished mint; cheap to clone.
#[derive(Clone)]
pub struct MintDriver {
    inner: Arc<Inner>,
}

struct Inner {
    cqrs: Arc<MintCqrs>,
    /// Read-only access to the aggregates (no projections).
    store: SqliteStore<Mint>,
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    waker: Arc<Notify>,
    vault: VaultService,
    alpaca: AlpacaClient,
    settings: DriverSettings,
    permits: Arc<Semaphore>,
    in_flight: Mutex<HashSet<TokenizationRequestId>>,
    backoff: Mutex<HashMap<TokenizationRequestId, Backoff>>,
    last_broadcast: Mutex<HashMap<TxHash, Instant>>,
}

/// Removes a mint from the in-flight set when its task ends, however.
struct InFlight {
    inner: Arc<Inner>,
    id: TokenizationRequestId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl MintDriver {
    pub fn new(
        state: &MintState,
        vault: VaultService,
        alpaca: AlpacaClient,
        settings: DriverSettings,
    ) -> Self {
        let max = settings.max_concurrent.max(1);
        Self {
            inner: Arc::new(Inner {
                cqrs: state.cqrs().clone(),
                store: SqliteStore::new(state.pool().clone()),
                pool: state.pool().clone(),
                clock: state.clock().clone(),
                waker: state.waker().clone(),
                vault,
                alpaca,
                settings,
                permits: Arc::new(Semaphore::new(max)),
                in_flight: Mutex::new(HashSet::new()),
                backoff: Mutex::new(HashMap::new()),
                last_broadcast: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Runs until `shutdown`, then waits for the running steps (each is
    /// safe to interrupt, but finishing them avoids needless repeats).
    pub fn spawn(
        self,
        shutdown: ShutdownListener,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(self, mut shutdown: ShutdownListener) {
        tracing::info!(
            target: "mint",
            tick_ms = self.inner.settings.tick.as_millis(),
            "mint driver started"
        );
        let mut tasks = JoinSet::new();
        let mut tick = tokio::time::interval(self.inner.settings.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                _ = tick.tick() => {}
                () = self.inner.waker.notified() => {}
            }
            while tasks.try_join_next().is_some() {}
            self.dispatch(&mut tasks).await;
        }
        // Every step is safe to cut short (its state change is committed
        // before any side effect, and a cut broadcast is simply resent),
        // so a step stuck in Alpaca's retries does not hold up shutdown.
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                target: "mint",
                running = tasks.len(),
                "mint steps still running at shutdown; cancelled"
            );
            tasks.shutdown().await;
        }
        tracing::info!(target: "mint", "mint driver stopped");
    }

    /// One pass: starts a task for every unfinished mint that is neither
    /// in flight nor backing off. Returns how many were started.
    pub async fn dispatch(&self, tasks: &mut JoinSet<()>) -> usize {
        let ids = match unfinished_mints(&self.inner.pool).await {
            Ok(ids) => ids,
            Err(error) => {
                tracing::warn!(
                    target: "mint",
                    %error,
                    "cannot list unfinished mints"
                );
                return 0;
            }
        };
        let now = Instant::now();
        let mut started = 0;
        for id in ids {
            if self.is_backing_off(&id, now) {
                continue;
            }
            let Ok(permit) = self.inner.permits.clone().try_acquire_owned()
            else {
                break;
            };
            let newly_claimed = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id.clone());
            if !newly_claimed {
                continue;
            }
            let guard = InFlight {
                inner: self.inner.clone(),
                id: id.clone(),
            };
            let driver = self.clone();
            tasks.spawn(async move {
                driver.drive(&id).await;
                drop(guard);
                drop(permit);
            });
            started += 1;
        }
        started
    }

    fn is_backing_off(&self, id: &TokenizationRequestId, now: Instant) -> bool {
        self.inner
            .backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .is_some_and(|backoff| backoff.not_before > now)
    }

    /// Takes steps for one mint until it waits, finishes or fails. Each
    /// step is bounded by `step_timeout`: every step is safe to cut short
    /// (its state change commits before any side effect).
    pub async fn drive(&self, id: &TokenizationRequestId) {
        let limit = self.inner.settings.step_timeout;
        for _ in 0..MAX_STEPS_PER_RUN {
            let outcome = tokio::time::timeout(limit, self.step(id))
                .await
                .unwrap_or_else(|_| {
                    metrics::counter!("mint_step_timeouts_total").increment(1);
                    Err(StepError::retryable(format!(
                        "step cancelled after {} ms (a call hung)",
                        limit.as_millis()
                    )))
                });
            match outcome {
                Ok(step) => {
                    self.succeeded(id, step).await;
                    if step != Step::Progress {
                        return;
                    }
                }
                Err(error) => {
                    self.failed(id, &error).await;
                    return;
                }
            }
        }
    }

    async fn succeeded(&self, id: &TokenizationRequestId, step: Step) {
        let had_errors = self
            .inner
            .backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .is_some();
        if (had_errors || step != Step::Wait)
            && let Err(error) =
                driver::clear_error(&self.inner.pool, Flow::Mint, id.as_str())
                    .await
        {
            tracing::warn!(target: "mint", %error, "cannot clear driver status");
        }
    }

    async fn failed(&self, id: &TokenizationRequestId, error: &StepError) {
        let settings = self.inner.settings;
        let delay = {
            let mut backoff = self
                .inner
                .backoff
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let failures = backoff
                .get(id)
                .map_or(1, |entry| entry.failures.saturating_add(1));
            let delay = if error.retryable {
                let doublings = failures.saturating_sub(1).min(16);
                settings
                    .retry_base
                    .saturating_mul(2_u32.saturating_pow(doublings))
                    .min(settings.retry_max)
            } else {
                settings.final_error_backoff
            };
            backoff.insert(
                id.clone(),
                Backoff {
                    failures,
                    not_before: Instant::now() + delay,
                },
            );
            delay
        };
        metrics::counter!(
            "mint_step_errors_total",
            "retryable" => if error.retryable { "true" } else { "false" }
        )
        .increment(1);
        if error.retryable {
            tracing::warn!(
                target: "mint",
                tokenization_request_id = %id,
                error = %error.message,
                retry_in_ms = delay.as_millis(),
                "mint step failed; will retry"
            );
        } else {
            tracing::error!(
                target: "mint",
                tokenization_request_id = %id,
                error = %error.message,
                retry_in_ms = delay.as_millis(),
                "mint step failed and needs attention; will retry later"
            );
        }
        let now = self.inner.clock.now();
        if let Err(db) = driver::record_error(
            &self.inner.pool,
            Flow::Mint,
            id.as_str(),
            &error.message,
            now,
        )
        .await
        {
            tracing::warn!(target: "mint", error = %db, "cannot record driver status");
        }
    }

    async fn step(
        &self,
        id: &TokenizationRequestId,
    ) -> Result<Step, StepError> {
        let context = self
            .inner
            .store
            .load_aggregate(id.as_str())
            .await
            .map_err(|err| StepError::command(&err))?;
        match context.state() {
            Mint::JournalConfirmed { request } => {
                self.sign_and_send(id, request).await
            }
            Mint::MintIntended { request, attempt } => {
                self.follow(id, request, attempt).await
            }
            Mint::Minted { request, minted } => {
                self.send_callback(id, request, minted).await
            }
            Mint::NotInitiated
            | Mint::Initiated { .. }
            | Mint::JournalRejected { .. }
            | Mint::Completed { .. }
            | Mint::Failed { .. } => Ok(Step::Done),
        }
    }

    async fn execute(
        &self,
        id: &TokenizationRequestId,
        command: MintCommand,
    ) -> Result<(), StepError> {
        self.inner
            .cqrs
            .execute(id.as_str(), command)
            .await
            .map_err(|err| StepError::command(&err))
    }

    async fn fail(
        &self,
        id: &TokenizationRequestId,
        classification: FailureClass,
        reason: String,
        tx_hash: Option<TxHash>,
    ) -> Result<Step, StepError> {
        tracing::error!(
            target: "mint",
            tokenization_request_id = %id,
            %classification,
            reason,
            ?tx_hash,
            "mint failed; operator attention needed"
        );
        self.execute(
            id,
            MintCommand::RecordFailure {
                classification,
                reason,
                tx_hash,
            },
        )
        .await?;
        finished("failed");
        Ok(Step::Done)
    }

    /// Signs the deposit, persists it, then sends it.
    async fn sign_and_send(
        &self,
        id: &TokenizationRequestId,
        request: &MintRequest,
    ) -> Result<Step, StepError> {
        let order = &request.order;
        let info = match ReceiptInformation::new(
            ReceiptOp::Mint,
            order.tokenization_request_id.to_string(),
            request.issuer_request_id.to_string(),
            order.underlying.to_string(),
            order.qty.quantity(),
            self.inner.clock.now(),
        ) {
            Ok(info) => info,
            Err(error) => {
                return self
                    .fail(
                        id,
                        FailureClass::Unprocessable,
                        error.to_string(),
                        None,
                    )
                    .await;
            }
        };
        let calldata = self.inner.vault.mint_calldata(
            order.qty.to_shares(),
            order.wallet.address(),
            &info,
        );
        let client = self.inner.vault.client();
        let tx = client
            .sign(request.vault.address(), calldata)
            .await
            .map_err(|err| Self::sign_error(&err))?;
        if let Err(error) = self
            .execute(id, MintCommand::RecordTxIntent { tx: tx.clone() })
            .await
        {
            // Never recorded, so never sent: the nonce is free again.
            client.release(&tx).await;
            return Err(error);
        }
        tracing::info!(
            target: "mint",
            tokenization_request_id = %id,
            tx_hash = %tx.hash,
            nonce = tx.nonce,
            "mint transaction intended"
        );
        self.broadcast(&tx).await;
        Ok(Step::Wait)
    }

    fn sign_error(error: &ChainError) -> StepError {
        match error {
            ChainError::FeeAboveCeiling { .. } => {
                tracing::warn!(
                    target: "mint",
                    %error,
                    "fee above the ceiling; holding the mint"
                );
                StepError::retryable(error.to_string())
            }
            // Nothing was signed; the vault would refuse now (e.g. the
            // certification expired or a role is missing). Keep the mint
            // and retry, so it proceeds once an operator fixes the cause.
            ChainError::WouldRevert { .. } => {
                StepError::fatal(crate::http::ErrorChain(error).to_string())
            }
            _ => StepError::chain(error),
        }
    }

    /// Sends the identical bytes; a failure is only logged, since the
    /// next pass classifies the transaction anyway.
    async fn broadcast(&self, tx: &SignedTx) {
        self.inner
            .last_broadcast
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tx.hash, Instant::now());
        if let Err(error) = self.inner.vault.client().broadcast(tx).await {
            tracing::warn!(
                target: "mint",
                tx_hash = %tx.hash,
                error = %crate::http::ErrorChain(&error),
                "broadcast failed; will classify and retry"
            );
        }
    }

    fn rebroadcast_due(&self, hash: TxHash) -> bool {
        self.inner
            .last_broadcast
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&hash)
            .is_none_or(|at| {
                at.elapsed() >= self.inner.settings.rebroadcast_every
            })
    }

    /// Classifies the current transaction and acts on it.
    async fn follow(
        &self,
        id: &TokenizationRequestId,
        request: &MintRequest,
        attempt: &TxAttempt,
    ) -> Result<Step, StepError> {
        let tx = &attempt.tx;
        let client = self.inner.vault.client();
        let mut status = match client.classify(tx).await {
            Ok(status) => status,
            Err(error) => {
                return self
                    .fail(
                        id,
                        FailureClass::Unprocessable,
                        error.to_string(),
                        Some(tx.hash),
                    )
                    .await;
            }
        };
        let lifecycle = TxLifecycle {
            replacements_used: attempt.number.saturating_sub(1),
            max_replacements: MAX_TX_ATTEMPTS - 1,
        };
        if lifecycle.decide(AttemptRole::Current, &status)
            == TxAction::FindLanding
        {
            match self.find_landing(request, attempt).await? {
                Ok(landed) => {
                    return self.landed(id, request, attempt, landed).await;
                }
                Err(dead) => status = dead,
            }
        }
        match lifecycle.decide(AttemptRole::Current, &status) {
            TxAction::RecordSuccess => {
                self.record_mined(id, request, tx, &status).await
            }
            TxAction::Rebroadcast => {
                if self.rebroadcast_due(tx.hash) {
                    self.broadcast(tx).await;
                }
                Ok(Step::Wait)
            }
            TxAction::Replace => {
                // Proof before a second transaction: an earlier attempt
                // whose landing we missed must not be minted again.
                let vault = self.inner.vault.clone();
                let effect = mint_effect(request);
                let from = self.search_from(attempt);
                if let Some(landed) = vault
                    .find_effect(request.vault.address(), effect, from)
                    .await
                    .map_err(|err| StepError::chain(&err))?
                {
                    return self.landed(id, request, attempt, landed).await;
                }
                let cause = if matches!(status, TxStatus::Dead { .. }) {
                    ReplacementCause::Dead
                } else {
                    ReplacementCause::Reverted
                };
                self.replace(id, tx, cause).await
            }
            TxAction::Fail { reason } => {
                let (classification, text) = match reason {
                    TxFailure::DeterministicRevert(revert) => (
                        FailureClass::DeterministicRevert,
                        format!("the vault refused the deposit: {revert}"),
                    ),
                    TxFailure::ReplacementBudgetExhausted { used } => (
                        FailureClass::ReplacementBudgetExhausted,
                        format!(
                            "the transaction and {used} replacements died or \
                             reverted"
                        ),
                    ),
                };
                self.fail(id, classification, text, Some(tx.hash)).await
            }
            TxAction::Wait => match &status {
                // An RPC failure is not a failure of the mint, but
                // operators must see it (a hung or down node).
                TxStatus::Uncertain {
                    reason: Uncertainty::Rpc { operation, message },
                } => Err(StepError::retryable(format!(
                    "cannot observe transaction {}: {operation}: {message}",
                    tx.hash
                ))),
                _ => Ok(Step::Wait),
            },
            // Only superseded attempts get these; ours is current, and a
            // consumed nonce was resolved above.
            TxAction::FindLanding
            | TxAction::NothingToDo
            | TxAction::SupersededAttemptMined => Ok(Step::Wait),
        }
    }

    fn search_from(&self, attempt: &TxAttempt) -> u64 {
        attempt
            .since_block
            .unwrap_or_else(|| self.inner.vault.client().policy().start_block)
    }

    /// Our nonce is consumed but the node shows no receipt: find the
    /// landed attempt (`Ok`), or the proof that a transaction not ours
    /// took the nonce (`Err(Dead)`, which allows a replacement). Anything
    /// else is an error that keeps the mint waiting, never a new send.
    async fn find_landing(
        &self,
        request: &MintRequest,
        attempt: &TxAttempt,
    ) -> Result<Result<Landed, TxStatus>, StepError> {
        let tx = &attempt.tx;
        let landing = self
            .inner
            .vault
            .find_landing(
                request.vault.address(),
                mint_effect(request),
                tx,
                self.search_from(attempt),
            )
            .await
            .map_err(|err| StepError::chain(&err))?;
        let detail = match landing {
            Landing::Landed(landed) => return Ok(Ok(landed)),
            Landing::NonceTakenBy { tx_hash, block } => {
                metrics::counter!("chain_foreign_nonce_total").increment(1);
                tracing::error!(
                    target: "mint",
                    tokenization_request_id = %request.order.tokenization_request_id,
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
        Err(self.unseen_landing(request, tx, &detail))
    }

    /// The error for a landing we cannot see yet: retried with backoff,
    /// and reported as stuck once it lasts too long.
    fn unseen_landing(
        &self,
        request: &MintRequest,
        tx: &SignedTx,
        detail: &str,
    ) -> StepError {
        let waited = self.inner.clock.now() - tx.signed_at;
        let stuck = waited.to_std().is_ok_and(|waited| {
            waited >= self.inner.settings.unseen_landing_alert
        });
        let message = format!(
            "transaction {} took nonce {} but cannot be confirmed ({detail}); \
             it is not replaced, since only our transactions use this \
             wallet; still looking",
            tx.hash, tx.nonce
        );
        if stuck {
            metrics::counter!("chain_unseen_landing_stuck_total", "flow" => "mint")
                .increment(1);
            tracing::error!(
                target: "mint",
                tokenization_request_id = %request.order.tokenization_request_id,
                tx_hash = %tx.hash,
                waited_s = waited.num_seconds(),
                "mint stuck: its transaction's landing stays invisible"
            );
            StepError::retryable(format!("stuck: {message}"))
        } else {
            StepError::retryable(message)
        }
    }

    /// Records a landing proven by the chain: the current attempt is a
    /// success; anything else stops the mint for an operator (both an
    /// earlier and a later transaction may have minted).
    async fn landed(
        &self,
        id: &TokenizationRequestId,
        request: &MintRequest,
        attempt: &TxAttempt,
        landed: Landed,
    ) -> Result<Step, StepError> {
        tracing::warn!(
            target: "mint",
            tokenization_request_id = %id,
            tx_hash = %landed.tx_hash,
            block = landed.receipt.block_number,
            receipt_visible = landed.receipt.gas_used.is_some(),
            "landed deposit found on chain"
        );
        if landed.tx_hash == attempt.tx.hash {
            let status = TxStatus::Mined {
                receipt: landed.receipt,
            };
            return self.record_mined(id, request, &attempt.tx, &status).await;
        }
        let (classification, reason) =
            if attempt.superseded.contains(&landed.tx_hash) {
                (
                    FailureClass::SupersededAttemptMined,
                    format!(
                        "replaced attempt {} landed after all; reconcile by \
                         hand",
                        landed.tx_hash
                    ),
                )
            } else {
                (
                    FailureClass::LandedOutsideAttempts,
                    format!(
                        "a deposit for this mint landed in {}, which is none \
                         of its attempts; reconcile by hand",
                        landed.tx_hash
                    ),
                )
            };
        self.fail(id, classification, reason, Some(landed.tx_hash))
            .await
    }

    async fn record_mined(
        &self,
        id: &TokenizationRequestId,
        request: &MintRequest,
        tx: &SignedTx,
        status: &TxStatus,
    ) -> Result<Step, StepError> {
        let TxStatus::Mined { receipt } = status else {
            return Ok(Step::Wait);
        };
        let vault = request.vault;
        let deposit = match VaultService::parse_mint(receipt, vault.address()) {
            Ok(deposit) => deposit,
            Err(error) => {
                return self
                    .fail(
                        id,
                        FailureClass::VaultOutcomeMismatch,
                        error.to_string(),
                        Some(tx.hash),
                    )
                    .await;
            }
        };
        let expected = request.order.qty.to_shares();
        if deposit.shares != expected {
            return self
                .fail(
                    id,
                    FailureClass::VaultOutcomeMismatch,
                    format!(
                        "deposited {} shares, {expected} requested",
                        deposit.shares
                    ),
                    Some(tx.hash),
                )
                .await;
        }
        self.execute(
            id,
            MintCommand::RecordMinted {
                tx_hash: tx.hash,
                vault,
                receipt_id: deposit.receipt_id,
                shares: deposit.shares,
                block: deposit.block,
                gas_used: deposit.gas_used,
            },
        )
        .await?;
        self.inner
            .last_broadcast
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&tx.hash);
        tracing::info!(
            target: "mint",
            tokenization_request_id = %id,
            tx_hash = %tx.hash,
            receipt_id = %deposit.receipt_id,
            block = deposit.block,
            "tokens minted"
        );
        Ok(Step::Progress)
    }

    /// Signs a replacement for a transaction proven dead or reverted,
    /// persists it, then sends it.
    async fn replace(
        &self,
        id: &TokenizationRequestId,
        old: &SignedTx,
        cause: ReplacementCause,
    ) -> Result<Step, StepError> {
        let client = self.inner.vault.client();
        let tx = client
            .replacement_for(old)
            .await
            .map_err(|err| Self::sign_error(&err))?;
        let command = MintCommand::RecordReplacement {
            replaced: old.hash,
            cause,
            tx: tx.clone(),
        };
        if let Err(error) = self.execute(id, command).await {
            client.release(&tx).await;
            return Err(error);
        }
        tracing::warn!(
            target: "mint",
            tokenization_request_id = %id,
            replaced = %old.hash,
            ?cause,
            tx_hash = %tx.hash,
            nonce = tx.nonce,
            "mint transaction replaced"
        );
        self.broadcast(&tx).await;
        Ok(Step::Wait)
    }

    async fn send_callback(
        &self,
        id: &TokenizationRequestId,
        request: &MintRequest,
        minted: &MintedTokens,
    ) -> Result<Step, StepError> {
        let order = &request.order;
        let callback = MintCallback {
            tokenization_request_id: order.tokenization_request_id.to_string(),
            ap: order.ap.clone(),
            wallet_address: order.wallet.address(),
            tx_hash: minted.tx_hash,
            network: order.network.to_string(),
        };
        if let Err(error) =
            self.inner.alpaca.send_mint_callback(&callback).await
        {
            let message = format!("mint callback failed: {error}");
            return Err(if error.is_retryable() {
                StepError::retryable(message)
            } else {
                // A final 4xx may still have been applied inside Alpaca
                // (itn-wire.md §5.3): keep the mint pending and retry
                // slowly; operators see the error in GET /mints.
                StepError::fatal(message)
            });
        }
        self.execute(id, MintCommand::RecordCallbackDelivered)
            .await?;
        finished("completed");
        tracing::info!(
            target: "mint",
            tokenization_request_id = %id,
            tx_hash = %minted.tx_hash,
            "mint completed; Alpaca called back"
        );
        Ok(Step::Done)
    }
}

fn mint_effect(request: &MintRequest) -> Effect<'_> {
    Effect::Mint {
        tokenization_request_id: request.order.tokenization_request_id.as_str(),
    }
}

/// Counts mints reaching a terminal state, by outcome.
fn finished(outcome: &'static str) {
    metrics::counter!("mints_finished_total", "outcome" => outcome)
        .increment(1);
}
