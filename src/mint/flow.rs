//! The mint flow on the effect engine ([`crate::driver::Engine`]): the
//! only place where a mint touches the chain or Alpaca.
//!
//! The engine lists the mints with work (`journal_confirmed`,
//! `mint_intended`, `minted`) and asks for one step at a time; each step
//! reads the aggregate, decides from its state alone and records the
//! result as a command:
//!
//! - `JournalConfirmed`: sign the deposit, commit `RecordTxIntent` (the
//!   exact bytes), then broadcast ([`TxPipeline::submit`]), and follow it
//!   in the same run (`Step::Progress`): no tick between send and receipt.
//! - `MintIntended`: [`TxPipeline::advance`]: landed → `RecordMinted`
//!   (a landing of a replaced attempt, or of none of ours, stops the mint
//!   for an operator); pending → rebroadcast; proven reverted or nonce
//!   taken by a foreign transaction (and no landing in the logs) → a
//!   replacement, committed then sent; deterministic revert or budget
//!   spent → `RecordFailure`; an RPC failure or an unseen landing → an
//!   error the engine retries. A missing receipt is never a failure.
//! - `Minted`: send the mint callback; on 200 `RecordCallbackDelivered`.
//!   Failures back off and retry forever (a 400 may have been applied).

use alloy::primitives::TxHash;
use cqrs_es::{AggregateError, EventStore};
use sqlite_es::SqliteStore;
use sqlx::SqlitePool;
use std::sync::Arc;
use tracing::Instrument as _;

use super::{
    FailureClass, MAX_TX_ATTEMPTS, Mint, MintCommand, MintCqrs, MintError,
    MintRequest, MintState, MintedTokens, ReplacementCause,
    TokenizationRequestId, TxAttempt, unfinished_mints,
};
use crate::alpaca::{AlpacaClient, MintCallback};
use crate::chain::{
    Advance, Attempts, ChainError, Effect, ReceiptInformation, ReceiptOp,
    ReceiptSummary, ReplaceCause, SubmitError, TxFailure, TxPipeline,
    VaultService, Whose,
};
use crate::clock::Clock;
use crate::driver::{
    Engine, EngineSettings, Flow, FlowName, Retry, Step, StepError,
};
use crate::tokenized_asset::Network;

/// The mint engine's settings (see [`EngineSettings`]).
pub type DriverSettings = EngineSettings;

/// The engine that drives every unfinished mint.
pub type MintDriver = Engine<MintFlow>;

/// Builds the engine of the mints on `network`, on that chain's
/// transaction pipeline (each chain has its own engine, so an outage on
/// one never holds another's mints). It wakes on `wake`, fed by the
/// state's waker (see [`crate::driver::fan_out`]).
pub fn engine(
    state: &MintState,
    network: Network,
    pipeline: TxPipeline,
    alpaca: AlpacaClient,
    settings: EngineSettings,
    wake: Arc<tokio::sync::Notify>,
) -> MintDriver {
    Engine::new(
        MintFlow {
            network,
            cqrs: state.cqrs().clone(),
            store: SqliteStore::new(state.pool().clone()),
            pool: state.pool().clone(),
            clock: state.clock().clone(),
            pipeline,
            alpaca,
        },
        state.pool().clone(),
        state.clock().clone(),
        settings,
        wake,
    )
    .with_origins(state.origins().clone())
    .with_network(network)
}

/// How mints are stepped.
pub struct MintFlow {
    /// Only this network's mints are stepped here.
    network: Network,
    cqrs: Arc<MintCqrs>,
    /// Read-only access to the aggregates (no projections).
    store: SqliteStore<Mint>,
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    pipeline: TxPipeline,
    alpaca: AlpacaClient,
}

impl AsRef<str> for TokenizationRequestId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

fn command_error(error: &AggregateError<MintError>) -> StepError {
    let retry = if matches!(
        error,
        AggregateError::AggregateConflict
            | AggregateError::DatabaseConnectionError(_)
    ) {
        Retry::Soon
    } else {
        Retry::Slowly
    };
    StepError {
        message: format!("recording the step failed: {error}"),
        retry,
    }
}

fn chain_error(error: &ChainError) -> StepError {
    match error {
        ChainError::FeeAboveCeiling { .. } => {
            tracing::warn!(
                target: "mint",
                %error,
                "fee above the ceiling; holding the mint"
            );
            StepError::soon(error.to_string())
        }
        // Nothing was signed; the vault would refuse now (e.g. the
        // certification expired or a role is missing). Keep the mint and
        // retry, so it proceeds once an operator fixes the cause.
        ChainError::WouldRevert { .. } => {
            StepError::from_error(error, Retry::Slowly)
        }
        _ => StepError::from_error(
            error,
            if error.is_retryable() {
                Retry::Soon
            } else {
                Retry::Slowly
            },
        ),
    }
}

fn submit_error(error: &SubmitError<AggregateError<MintError>>) -> StepError {
    match error {
        SubmitError::Chain(error) => chain_error(error),
        SubmitError::Record(error) => command_error(error),
    }
}

impl Flow for MintFlow {
    const NAME: FlowName = FlowName::Mint;
    type Id = TokenizationRequestId;

    async fn open(&self) -> Result<Vec<TokenizationRequestId>, StepError> {
        unfinished_mints(&self.pool, Some(self.network))
            .await
            .map_err(|error| StepError::from_error(&error, Retry::Soon))
    }

    async fn step(
        &self,
        id: &TokenizationRequestId,
    ) -> Result<Step, StepError> {
        // The chain metrics of the step's calls carry its network. Boxed:
        // the step is a large future and the scope would hold it inline.
        crate::telemetry::network::scope(
            self.network.as_str(),
            Box::pin(self.step_on_chain(id)),
        )
        .await
    }
}

impl MintFlow {
    async fn step_on_chain(
        &self,
        id: &TokenizationRequestId,
    ) -> Result<Step, StepError> {
        let context = self
            .store
            .load_aggregate(id.as_str())
            .await
            .map_err(|err| command_error(&err))?;
        match context.state() {
            Mint::JournalConfirmed { request } => {
                self.sign_and_send(id, request)
                    .instrument(crate::flow_span!("mint.deposit"))
                    .await
            }
            Mint::MintIntended { request, attempt } => {
                self.follow(id, request, attempt)
                    .instrument(crate::flow_span!(
                        "mint.follow",
                        tx_hash = %attempt.tx.hash
                    ))
                    .await
            }
            Mint::Minted { request, minted } => {
                self.send_callback(id, request, minted)
                    .instrument(crate::flow_span!("mint.callback"))
                    .await
            }
            Mint::NotInitiated
            | Mint::Initiated { .. }
            | Mint::JournalRejected { .. }
            | Mint::Completed { .. }
            | Mint::Failed { .. }
            | Mint::Closed { .. } => Ok(Step::Done),
        }
    }
}

impl MintFlow {
    async fn execute(
        &self,
        id: &TokenizationRequestId,
        command: MintCommand,
    ) -> Result<(), AggregateError<MintError>> {
        let span = crate::flow_span!("mint.command", command = command.name());
        self.cqrs
            .execute(id.as_str(), command)
            .instrument(span)
            .await
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
        .await
        .map_err(|err| command_error(&err))?;
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
            self.clock.now(),
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
        let calldata = self.pipeline.vault().mint_calldata(
            order.qty.to_shares(),
            order.wallet.address(),
            &info,
        );
        let tx = self
            .pipeline
            .submit(request.vault.address(), calldata, |tx| {
                self.execute(id, MintCommand::RecordTxIntent { tx })
            })
            .await
            .map_err(|err| submit_error(&err))?;
        tracing::info!(
            target: "mint",
            tokenization_request_id = %id,
            tx_hash = %tx.hash,
            nonce = tx.nonce,
            "mint transaction intended"
        );
        // Recorded and sent: follow it at once (on a fast chain it has
        // already landed); a pending one then waits for a tick or wake.
        Ok(Step::Progress)
    }

    /// Follows the current transaction and records what the chain shows.
    async fn follow(
        &self,
        id: &TokenizationRequestId,
        request: &MintRequest,
        attempt: &TxAttempt,
    ) -> Result<Step, StepError> {
        let tx = &attempt.tx;
        let attempts = Attempts {
            current: tx,
            superseded: &attempt.superseded,
            since_block: attempt.since_block,
            max_replacements: MAX_TX_ATTEMPTS - 1,
            vault: request.vault.address(),
            effect: Effect::Mint {
                tokenization_request_id: request
                    .order
                    .tokenization_request_id
                    .as_str(),
            },
        };
        let advance =
            match self.pipeline.advance(&attempts, self.clock.now()).await {
                Ok(advance) => advance,
                Err(error) if error.is_retryable() => {
                    return Err(StepError::from_error(&error, Retry::Soon));
                }
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
        match advance {
            Advance::Landed {
                tx_hash,
                receipt,
                whose: Whose::Current,
            } => self.record_mined(id, request, tx_hash, &receipt).await,
            Advance::Landed {
                tx_hash,
                whose: Whose::Superseded,
                ..
            } => {
                self.fail(
                    id,
                    FailureClass::SupersededAttemptMined,
                    format!(
                        "replaced attempt {tx_hash} landed after all; \
                         reconcile by hand"
                    ),
                    Some(tx_hash),
                )
                .await
            }
            Advance::Landed {
                tx_hash,
                whose: Whose::NoAttempt,
                ..
            } => {
                self.fail(
                    id,
                    FailureClass::LandedOutsideAttempts,
                    format!(
                        "a deposit for this mint landed in {tx_hash}, which \
                         is none of its attempts; reconcile by hand"
                    ),
                    Some(tx_hash),
                )
                .await
            }
            Advance::Wait => Ok(Step::Wait),
            // An RPC failure is not a failure of the mint, but operators
            // must see it (a hung or down node).
            Advance::Unobservable { operation, message } => {
                Err(StepError::soon(format!(
                    "cannot observe transaction {}: {operation}: {message}",
                    tx.hash
                )))
            }
            Advance::Unseen { detail, stuck } => {
                if stuck {
                    tracing::error!(
                        target: "mint",
                        tokenization_request_id = %id,
                        tx_hash = %tx.hash,
                        "mint stuck: its transaction's landing stays invisible"
                    );
                    Err(StepError::soon(format!("stuck: {detail}")))
                } else {
                    Err(StepError::soon(detail))
                }
            }
            Advance::Replace { cause } => {
                let cause = match cause {
                    ReplaceCause::Dead => ReplacementCause::Dead,
                    ReplaceCause::Reverted => ReplacementCause::Reverted,
                };
                let replacement = self
                    .pipeline
                    .replace(tx, |new| {
                        self.execute(
                            id,
                            MintCommand::RecordReplacement {
                                replaced: tx.hash,
                                cause,
                                tx: new,
                            },
                        )
                    })
                    .await
                    .map_err(|err| submit_error(&err))?;
                tracing::warn!(
                    target: "mint",
                    tokenization_request_id = %id,
                    replaced = %tx.hash,
                    ?cause,
                    tx_hash = %replacement.hash,
                    nonce = replacement.nonce,
                    "mint transaction replaced"
                );
                Ok(Step::Progress)
            }
            Advance::Failed(reason) => {
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
        }
    }

    async fn record_mined(
        &self,
        id: &TokenizationRequestId,
        request: &MintRequest,
        tx_hash: TxHash,
        receipt: &ReceiptSummary,
    ) -> Result<Step, StepError> {
        let vault = request.vault;
        let deposit = match VaultService::parse_mint(receipt, vault.address()) {
            Ok(deposit) => deposit,
            Err(error) => {
                return self
                    .fail(
                        id,
                        FailureClass::VaultOutcomeMismatch,
                        error.to_string(),
                        Some(tx_hash),
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
                    Some(tx_hash),
                )
                .await;
        }
        self.execute(
            id,
            MintCommand::RecordMinted {
                tx_hash,
                vault,
                receipt_id: deposit.receipt_id,
                shares: deposit.shares,
                block: deposit.block,
                gas_used: deposit.gas_used,
            },
        )
        .await
        .map_err(|err| command_error(&err))?;
        tracing::info!(
            target: "mint",
            tokenization_request_id = %id,
            %tx_hash,
            receipt_id = %deposit.receipt_id,
            block = deposit.block,
            "tokens minted"
        );
        Ok(Step::Progress)
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
        if let Err(error) = self.alpaca.send_mint_callback(&callback).await {
            let message = format!("mint callback failed: {error}");
            return Err(if error.is_retryable() {
                StepError::soon(message)
            } else {
                // A final 4xx may still have been applied inside Alpaca
                // (itn-wire.md §5.3): keep the mint pending and retry
                // slowly; operators see the error in GET /mints.
                StepError::slowly(message)
            });
        }
        self.execute(id, MintCommand::RecordCallbackDelivered)
            .await
            .map_err(|err| command_error(&err))?;
        tracing::info!(
            target: "mint",
            tokenization_request_id = %id,
            tx_hash = %minted.tx_hash,
            "mint completed; Alpaca called back"
        );
        Ok(Step::Done)
    }
}
