//! The redemption flow on the effect engine ([`crate::driver::Engine`]):
//! the only code that performs a redemption's side effects. Each step
//! reads the redemption's committed state and performs the one next step
//! that state calls for:
//!
//! | State | Step |
//! |---|---|
//! | `Detected` | held while the listing is frozen; then the redeem call to Alpaca (idempotent: `Idempotency-Key` from the id, 422 recovered by lookup) → `AlpacaCalled` |
//! | `AlpacaCalled` | poll the keyed GET (250 ms doubling to 30 s, timeout from the persisted `called_at`) → `AlpacaJournalCompleted` / `Failed` |
//! | `JournalCompleted` | select receipts, sign the burn, commit `BurnIntended` (reserves them), broadcast ([`TxPipeline::submit`]) |
//! | `Burning` | [`TxPipeline::advance`]: record the landed burn, wait, replace (bounded, after the log search) or fail |
//!
//! Everything it needs to resume is in the event store, so a restart picks
//! every redemption up where it stopped (the in-memory poll backoff simply
//! restarts with an immediate poll). The receipt inventory is reconciled
//! against the chain as the flow's housekeeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use alloy::primitives::{TxHash, U256};
use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use sqlite_es::claim_conflict;
use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::{
    AlpacaCall, BurnAttempt, BurnFailure, Detection, Redemption,
    RedemptionCommand, RedemptionCqrs, RedemptionError, RedemptionId, Refusal,
    ReturnOrder, find, non_terminal,
};
use crate::alpaca::{AlpacaClient, AlpacaError, RedeemRequest, RequestStatus};
use crate::chain::{
    Advance, Attempts, Burn, ChainError, Effect, ReceiptInformation, ReceiptOp,
    ReceiptSummary, SignedTx, SubmitError, TxFailure, TxPipeline, VaultError,
    VaultService, Whose,
};
use crate::clock::Clock;
use crate::driver::{
    Engine, EngineSettings, Flow, FlowName, Retry, Step, StepError,
};
use crate::receipt_inventory::{self, RESERVATIONS_TABLE, select_burns};
use crate::tokenized_asset::{self, Network};

/// What only redemptions need beside the engine's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverSettings {
    /// First poll of a request after the redeem call.
    pub poll_first: Duration,
    /// Polling backoff cap.
    pub poll_max: Duration,
    /// Give up polling this long after the persisted `called_at`.
    pub poll_timeout: Duration,
    /// Wait after a soft refusal (receipts short, a burn that would
    /// revert, a failed redeem call) before trying again.
    pub retry_after: Duration,
    /// How long the receipts may fail to cover a burn before it fails.
    pub insufficient_receipts_grace: Duration,
    /// The network whose vaults' receipts are reconciled.
    pub network: Network,
    /// How often receipt balances are compared with the chain (also
    /// on the first dispatch).
    pub reconcile_every: Duration,
    /// Scheduling, deadlines, backoff and shutdown.
    pub engine: EngineSettings,
}

impl Default for DriverSettings {
    fn default() -> Self {
        Self {
            poll_first: Duration::from_millis(250),
            poll_max: Duration::from_secs(30),
            poll_timeout: Duration::from_hours(1),
            retry_after: Duration::from_secs(5),
            insufficient_receipts_grace: Duration::from_mins(10),
            network: Network::Base,
            reconcile_every: Duration::from_mins(5),
            engine: EngineSettings {
                tick: Duration::from_secs(1),
                ..EngineSettings::default()
            },
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

#[derive(Debug, thiserror::Error)]
enum FlowError {
    #[error("command on redemption failed: {0}")]
    Command(Box<AggregateError<RedemptionError>>),
    #[error(transparent)]
    Query(#[from] super::RedemptionQueryError),
    #[error(transparent)]
    Inventory(Box<receipt_inventory::InventoryError>),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    ReceiptInfo(#[from] crate::chain::ReceiptInfoError),
    #[error("redemption has no Alpaca quantity")]
    NoQuantity,
}

impl From<AggregateError<RedemptionError>> for FlowError {
    fn from(error: AggregateError<RedemptionError>) -> Self {
        Self::Command(Box::new(error))
    }
}

impl From<receipt_inventory::InventoryError> for FlowError {
    fn from(error: receipt_inventory::InventoryError) -> Self {
        Self::Inventory(Box::new(error))
    }
}

impl From<FlowError> for StepError {
    fn from(error: FlowError) -> Self {
        Self::from_error(&error, Retry::Soon)
    }
}

impl AsRef<str> for RedemptionId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// The engine that drives every non-terminal redemption.
pub type RedemptionDriver = Engine<RedemptionFlow>;

/// Builds the redemption engine on the shared transaction pipeline.
pub fn engine(
    pool: SqlitePool,
    cqrs: Arc<RedemptionCqrs>,
    alpaca: AlpacaClient,
    pipeline: TxPipeline,
    clock: Arc<dyn Clock>,
    settings: DriverSettings,
    wake: Arc<Notify>,
) -> RedemptionDriver {
    Engine::new(
        RedemptionFlow {
            pool: pool.clone(),
            cqrs,
            alpaca,
            pipeline,
            clock: Arc::clone(&clock),
            settings,
            poll_delays: Mutex::new(HashMap::new()),
            last_reconcile: Mutex::new(None),
        },
        pool,
        clock,
        settings.engine,
        wake,
    )
    .with_network(settings.network)
}

/// How redemptions are stepped.
pub struct RedemptionFlow {
    pool: SqlitePool,
    cqrs: Arc<RedemptionCqrs>,
    alpaca: AlpacaClient,
    pipeline: TxPipeline,
    clock: Arc<dyn Clock>,
    settings: DriverSettings,
    /// The next poll delay of each redemption waiting on Alpaca.
    poll_delays: Mutex<HashMap<RedemptionId, Duration>>,
    last_reconcile: Mutex<Option<Instant>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Flow for RedemptionFlow {
    const NAME: FlowName = FlowName::Redemption;
    type Id = RedemptionId;

    async fn open(&self) -> Result<Vec<RedemptionId>, StepError> {
        let open = non_terminal(&self.pool)
            .await
            .map_err(|error| StepError::from_error(&error, Retry::Soon))?;
        // Each chain has its engine: a redemption detected on this chain
        // (or a return of a transfer made on it) is driven here, and
        // another chain's outage never holds it.
        let network = self.settings.network;
        Ok(open
            .into_iter()
            .filter(|(_, state)| state.network() == Some(network))
            .map(|(id, _)| id)
            .collect())
    }

    async fn step(&self, id: &RedemptionId) -> Result<Step, StepError> {
        // The chain metrics of the step's calls carry its network. Boxed:
        // the step is a large future and the scope would hold it inline.
        crate::telemetry::network::scope(
            self.settings.network.as_str(),
            Box::pin(self.step_on_chain(id)),
        )
        .await
    }

    async fn housekeeping(&self) {
        if self.reconcile_due() {
            crate::telemetry::network::scope(
                self.settings.network.as_str(),
                self.reconcile(),
            )
            .await;
        }
    }
}

impl RedemptionFlow {
    async fn step_on_chain(
        &self,
        id: &RedemptionId,
    ) -> Result<Step, StepError> {
        let Some(state) =
            find(&self.pool, id).await.map_err(FlowError::from)?
        else {
            return Ok(Step::Done);
        };
        let step = match &state {
            Redemption::Detected { detection } => {
                self.hold_while_frozen(detection).await?;
                self.call_alpaca(id, detection)
                    .instrument(crate::flow_span!("redemption.redeem_call"))
                    .await?
            }
            Redemption::AlpacaCalled { detection, alpaca } => {
                self.poll(id, detection, alpaca)
                    .instrument(crate::flow_span!("redemption.poll"))
                    .await?
            }
            Redemption::JournalCompleted {
                detection,
                alpaca,
                journal_completed_at,
            } => {
                self.start_burn(id, detection, alpaca, *journal_completed_at)
                    .instrument(crate::flow_span!("redemption.burn"))
                    .await?
            }
            Redemption::Burning {
                detection,
                burn,
                superseded,
                ..
            } => {
                self.drive_burn(id, detection, burn, superseded)
                    .instrument(crate::flow_span!(
                        "redemption.follow_burn",
                        tx_hash = %burn.tx.hash
                    ))
                    .await?
            }
            Redemption::ReturnRequested { order } => {
                self.start_return(id, order)
                    .instrument(crate::flow_span!("redemption.return"))
                    .await?
            }
            Redemption::Returning {
                order,
                tx,
                superseded,
            } => {
                self.drive_return(id, order, tx, superseded)
                    .instrument(crate::flow_span!(
                        "redemption.follow_return",
                        tx_hash = %tx.hash
                    ))
                    .await?
            }
            Redemption::NotDetected
            | Redemption::Completed { .. }
            | Redemption::Failed { .. }
            | Redemption::Closed { .. }
            | Redemption::Returned { .. } => Step::Done,
        };
        if step == Step::Progress {
            lock(&self.poll_delays).remove(id);
        }
        Ok(step)
    }
}

impl RedemptionFlow {
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
        match receipt_inventory::reconcile(
            &self.pool,
            self.pipeline.vault(),
            &vaults,
        )
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

    async fn execute(
        &self,
        id: &RedemptionId,
        command: RedemptionCommand,
    ) -> Result<(), AggregateError<RedemptionError>> {
        let span =
            crate::flow_span!("redemption.command", command = command.name());
        self.cqrs
            .execute(id.as_str(), command)
            .instrument(span)
            .await
    }

    /// A redemption not yet called to Alpaca waits while its listing is
    /// frozen (reported as `asset frozen: <reason>`); one already called
    /// carries on to its burn, like a mint confirmed before a freeze.
    async fn hold_while_frozen(
        &self,
        detection: &Detection,
    ) -> Result<(), StepError> {
        let transfer = &detection.transfer;
        let asset = tokenized_asset::find(
            &self.pool,
            &transfer.underlying,
            transfer.network,
        )
        .await
        .map_err(|error| StepError::from_error(&error, Retry::Soon))?;
        match asset
            .as_ref()
            .and_then(|asset| asset.active_freeze(self.clock.now()))
        {
            Some(freeze) => Err(StepError::held(
                format!("asset frozen: {}", freeze.reason),
                self.settings.retry_after,
            )),
            None => Ok(()),
        }
    }

    fn retry_later(&self) -> Step {
        Step::WaitFor(self.settings.retry_after)
    }

    async fn call_alpaca(
        &self,
        id: &RedemptionId,
        detection: &Detection,
    ) -> Result<Step, FlowError> {
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
                return Ok(Step::Progress);
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
                return Ok(self.retry_later());
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
        match record.status {
            RequestStatus::Completed => {
                self.execute(id, RedemptionCommand::RecordJournalCompleted)
                    .await?;
                Ok(Step::Progress)
            }
            RequestStatus::Rejected => {
                self.execute(
                    id,
                    RedemptionCommand::RecordAlpacaRejected { refusal: None },
                )
                .await?;
                Ok(Step::Progress)
            }
            // The first poll comes after a short pause, not immediately.
            RequestStatus::Pending | RequestStatus::Other(_) => {
                let first = self.settings.poll_first;
                lock(&self.poll_delays).insert(id.clone(), first);
                Ok(Step::WaitFor(first))
            }
        }
    }

    async fn poll(
        &self,
        id: &RedemptionId,
        detection: &Detection,
        alpaca: &AlpacaCall,
    ) -> Result<Step, FlowError> {
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
                tracing::info!(target: "redemption", %id, "Alpaca journal completed");
                Ok(Step::Progress)
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
                Ok(Step::Progress)
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
        id: &RedemptionId,
        alpaca: &AlpacaCall,
    ) -> Result<Step, FlowError> {
        let now = self.clock.now();
        if !has_elapsed(alpaca.polling_since(), now, self.settings.poll_timeout)
        {
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
        Ok(Step::Progress)
    }

    fn poll_again(&self, id: &RedemptionId) -> Step {
        let mut delays = lock(&self.poll_delays);
        let delay = delays.get(id).copied().unwrap_or(self.settings.poll_first);
        delays
            .insert(id.clone(), next_poll_delay(delay, self.settings.poll_max));
        Step::WaitFor(delay)
    }

    async fn start_burn(
        &self,
        id: &RedemptionId,
        detection: &Detection,
        alpaca: &AlpacaCall,
        journal_completed_at: DateTime<Utc>,
    ) -> Result<Step, FlowError> {
        let transfer = &detection.transfer;
        let qty = detection.alpaca_qty.ok_or(FlowError::NoQuantity)?;
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
                    return Ok(Step::Progress);
                }
                tracing::warn!(
                    target: "redemption",
                    %id,
                    %short,
                    "receipts cannot cover the burn yet"
                );
                return Ok(self.retry_later());
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
        let calldata = match self.pipeline.vault().burn_calldata(
            &chain_burns,
            transfer.from_wallet,
            Some(detection.dust),
        ) {
            Ok(calldata) => calldata,
            Err(VaultError::Chain(error)) => return Err(error.into()),
            Err(error) => {
                tracing::error!(target: "redemption", %id, %error, "cannot build the burn");
                return Ok(self.retry_later());
            }
        };
        let submitted = self
            .pipeline
            .submit(transfer.vault, calldata, |tx| {
                self.execute(
                    id,
                    RedemptionCommand::IntendBurn {
                        tx,
                        burns: burns.clone(),
                        dust: detection.dust,
                        replaces: None,
                    },
                )
            })
            .await;
        let tx = match submitted {
            Ok(tx) => tx,
            Err(SubmitError::Chain(ChainError::WouldRevert { revert })) => {
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
                    self.pipeline.vault(),
                    &[transfer.vault],
                )
                .await
                {
                    tracing::warn!(target: "redemption", %error, "reconciliation failed");
                }
                return Ok(self.retry_later());
            }
            Err(SubmitError::Chain(error)) => return Err(error.into()),
            Err(SubmitError::Record(error))
                if is_reservation_conflict(&error) =>
            {
                tracing::info!(
                    target: "redemption",
                    %id,
                    "receipts changed while signing; reselecting"
                );
                return Ok(Step::Progress);
            }
            Err(SubmitError::Record(error)) => return Err(error.into()),
        };
        tracing::info!(
            target: "redemption",
            %id,
            tx_hash = %tx.hash,
            receipts = burns.len(),
            dust = %detection.dust,
            "burn intended"
        );
        // Recorded and sent: follow it at once (see the mint flow).
        Ok(Step::Progress)
    }

    async fn drive_burn(
        &self,
        id: &RedemptionId,
        detection: &Detection,
        burn: &BurnAttempt,
        superseded: &[SignedTx],
    ) -> Result<Step, StepError> {
        let superseded_hashes: Vec<TxHash> =
            superseded.iter().map(|tx| tx.hash).collect();
        let attempts = Attempts {
            current: &burn.tx,
            superseded: &superseded_hashes,
            since_block: superseded.first().unwrap_or(&burn.tx).head_at_signing,
            max_replacements: super::MAX_BURN_REPLACEMENTS,
            vault: detection.transfer.vault,
            effect: Effect::Burn {
                issuer_request_id: id.as_str(),
            },
        };
        let advance = self
            .pipeline
            .advance(&attempts, self.clock.now())
            .await
            .map_err(FlowError::from)?;
        match advance {
            Advance::Landed {
                tx_hash,
                receipt,
                whose: Whose::Current | Whose::Superseded,
            } => Ok(self.record_burn(id, detection, tx_hash, &receipt).await?),
            Advance::Landed {
                tx_hash,
                whose: Whose::NoAttempt,
                ..
            } => {
                tracing::error!(
                    target: "redemption",
                    %id,
                    %tx_hash,
                    "a burn for this redemption landed in a transaction that \
                     is none of its attempts; reconcile by hand"
                );
                Err(StepError::slowly(format!(
                    "a burn for this redemption landed in {tx_hash}, which is \
                     none of its attempts; reconcile by hand"
                )))
            }
            Advance::Wait => Ok(Step::Wait),
            Advance::Unobservable { operation, message } => {
                Err(StepError::soon(format!(
                    "cannot observe burn {}: {operation}: {message}",
                    burn.tx.hash
                )))
            }
            Advance::Unseen { detail, stuck } => {
                if stuck {
                    tracing::error!(
                        target: "redemption",
                        %id,
                        tx_hash = %burn.tx.hash,
                        "redemption stuck: its burn's landing stays invisible"
                    );
                    Err(StepError::soon(format!("stuck: {detail}")))
                } else {
                    Err(StepError::soon(detail))
                }
            }
            Advance::Replace { cause } => {
                let submitted = self
                    .pipeline
                    .replace(&burn.tx, |tx| {
                        self.execute(
                            id,
                            RedemptionCommand::IntendBurn {
                                tx,
                                burns: burn.burns.clone(),
                                dust: burn.dust,
                                replaces: Some(burn.tx.hash),
                            },
                        )
                    })
                    .await;
                match submitted {
                    Ok(replacement) => {
                        tracing::warn!(
                            target: "redemption",
                            %id,
                            old = %burn.tx.hash,
                            new = %replacement.hash,
                            ?cause,
                            "burn replaced"
                        );
                        Ok(Step::Progress)
                    }
                    Err(SubmitError::Chain(error)) => {
                        tracing::warn!(
                            target: "redemption",
                            %id,
                            %error,
                            "signing a replacement burn failed"
                        );
                        Ok(self.retry_later())
                    }
                    Err(SubmitError::Record(error)) => {
                        Err(FlowError::from(error).into())
                    }
                }
            }
            Advance::Failed(reason) => {
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
                .await
                .map_err(FlowError::from)?;
                Ok(Step::Progress)
            }
        }
    }

    /// Records the burn `tx_hash` (an attempt of this redemption) as done.
    async fn record_burn(
        &self,
        id: &RedemptionId,
        detection: &Detection,
        tx_hash: TxHash,
        receipt: &ReceiptSummary,
    ) -> Result<Step, FlowError> {
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
        Ok(Step::Progress)
    }
}

impl RedemptionFlow {
    /// Signs the transfer back to the sender and commits `ReturnIntended`
    /// (with its `tx_intents` row) before it is broadcast.
    async fn start_return(
        &self,
        id: &RedemptionId,
        order: &ReturnOrder,
    ) -> Result<Step, FlowError> {
        let transfer = &order.transfer;
        let calldata = VaultService::return_calldata(
            transfer.from_wallet,
            transfer.shares,
        );
        let submitted = self
            .pipeline
            .submit(transfer.vault, calldata, |tx| {
                self.execute(
                    id,
                    RedemptionCommand::IntendReturn { tx, replaces: None },
                )
            })
            .await;
        match submitted {
            Ok(tx) => {
                tracing::warn!(
                    target: "redemption",
                    %id,
                    tx_hash = %tx.hash,
                    to = %transfer.from_wallet,
                    shares = %transfer.shares,
                    "unattributed transfer being returned"
                );
                // Recorded and sent: follow it at once (see the mint flow).
                Ok(Step::Progress)
            }
            Err(SubmitError::Chain(ChainError::WouldRevert { revert })) => {
                tracing::error!(
                    target: "redemption",
                    %id,
                    %revert,
                    "the return would revert"
                );
                Ok(self.retry_later())
            }
            Err(SubmitError::Chain(error)) => Err(error.into()),
            Err(SubmitError::Record(error)) => Err(error.into()),
        }
    }

    /// Follows the return with [`TxPipeline::advance`]: its evidence rules
    /// decide, so a crash after the broadcast never sends a second one.
    async fn drive_return(
        &self,
        id: &RedemptionId,
        order: &ReturnOrder,
        current: &SignedTx,
        superseded: &[SignedTx],
    ) -> Result<Step, StepError> {
        let transfer = &order.transfer;
        let superseded_hashes: Vec<TxHash> =
            superseded.iter().map(|tx| tx.hash).collect();
        let attempts = Attempts {
            current,
            superseded: &superseded_hashes,
            since_block: superseded.first().unwrap_or(current).head_at_signing,
            max_replacements: super::MAX_BURN_REPLACEMENTS,
            vault: transfer.vault,
            effect: Effect::Return {
                to: transfer.from_wallet,
                shares: transfer.shares,
            },
        };
        let advance = self
            .pipeline
            .advance(&attempts, self.clock.now())
            .await
            .map_err(FlowError::from)?;
        match advance {
            Advance::Landed {
                tx_hash,
                receipt,
                whose,
            } => {
                if whose == Whose::NoAttempt {
                    // The same transfer back, sent by hand: the tokens
                    // are home, and sending ours would pay twice.
                    tracing::warn!(
                        target: "redemption",
                        %id,
                        %tx_hash,
                        "the return landed in a transaction that is none of \
                         its attempts; recording it"
                    );
                }
                self.execute(
                    id,
                    RedemptionCommand::RecordReturned {
                        tx_hash,
                        block: receipt.block_number,
                    },
                )
                .await
                .map_err(FlowError::from)?;
                tracing::info!(target: "redemption", %id, %tx_hash, "unattributed transfer returned");
                Ok(Step::Progress)
            }
            Advance::Wait => Ok(Step::Wait),
            Advance::Unobservable { operation, message } => {
                Err(StepError::soon(format!(
                    "cannot observe return {}: {operation}: {message}",
                    current.hash
                )))
            }
            Advance::Unseen { detail, stuck } => {
                Err(StepError::soon(if stuck {
                    format!("stuck: {detail}")
                } else {
                    detail
                }))
            }
            Advance::Replace { cause } => {
                let submitted = self
                    .pipeline
                    .replace(current, |tx| {
                        self.execute(
                            id,
                            RedemptionCommand::IntendReturn {
                                tx,
                                replaces: Some(current.hash),
                            },
                        )
                    })
                    .await;
                match submitted {
                    Ok(replacement) => {
                        tracing::warn!(
                            target: "redemption",
                            %id,
                            old = %current.hash,
                            new = %replacement.hash,
                            ?cause,
                            "return replaced"
                        );
                        Ok(Step::Progress)
                    }
                    Err(SubmitError::Chain(error)) => {
                        tracing::warn!(target: "redemption", %id, %error, "signing a replacement return failed");
                        Ok(self.retry_later())
                    }
                    Err(SubmitError::Record(error)) => {
                        Err(FlowError::from(error).into())
                    }
                }
            }
            // Nothing more is sent; an operator looks (`/admin/stuck`).
            Advance::Failed(failure) => {
                let why = match failure {
                    TxFailure::DeterministicRevert(revert) => {
                        format!("reverted: {revert}")
                    }
                    TxFailure::ReplacementBudgetExhausted { used } => {
                        format!("not landed after {used} replacements")
                    }
                };
                Err(StepError::slowly(format!(
                    "return {} {why}; nothing more is sent",
                    current.hash
                )))
            }
        }
    }
}

/// The redeem call for a detection (rebuilt identically on every attempt,
/// which the `Idempotency-Key` replay relies on).
fn redeem_request(
    id: &RedemptionId,
    detection: &Detection,
) -> Result<RedeemRequest, FlowError> {
    let transfer = &detection.transfer;
    Ok(RedeemRequest {
        issuer_request_id: id.to_string(),
        underlying_symbol: transfer.underlying.to_string(),
        token_symbol: transfer.token.to_string(),
        ap: transfer.ap.clone(),
        qty: detection.alpaca_qty.ok_or(FlowError::NoQuantity)?,
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
    claim_conflict(error) == Some(RESERVATIONS_TABLE)
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
