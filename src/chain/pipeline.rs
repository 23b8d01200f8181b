//! [`TxPipeline`]: the one way every flow sends and follows a transaction.
//!
//! - **submit**: sign, record the intent in the owner's commit (the caller's
//!   closure; if it fails the nonce is released: nothing was sent), then
//!   broadcast;
//! - **advance**: classify the current attempt, resolve a consumed nonce
//!   with chain evidence (never a second send on missing evidence), decide
//!   with [`TxLifecycle`], rebroadcast on one cadence, and search the logs
//!   before any replacement.
//!
//! The owner only maps an [`Advance`] onto its own commands.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alloy::primitives::{Address, Bytes, TxHash};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::client::{ChainClient, ChainError};
use super::landing::{Effect, Landed, Landing};
use super::tx::{
    AttemptRole, ReceiptSummary, SignedTx, TxAction, TxFailure, TxLifecycle,
    TxStatus, Uncertainty,
};
use super::vault::VaultService;

/// The owner's transactions for one effect, as it has recorded them.
#[derive(Debug, Clone, Copy)]
pub struct Attempts<'a> {
    pub current: &'a SignedTx,
    /// Earlier attempts it replaced, oldest first.
    pub superseded: &'a [TxHash],
    /// The chain head when the first attempt was signed, if known.
    pub since_block: Option<u64>,
    /// Replacements the owner may still sign, in total.
    pub max_replacements: u32,
    /// The vault whose logs show the effect.
    pub vault: Address,
    pub effect: Effect<'a>,
}

impl Attempts<'_> {
    fn replacements_used(&self) -> u32 {
        u32::try_from(self.superseded.len()).unwrap_or(u32::MAX)
    }
}

/// Which of the owner's transactions a landing belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose {
    Current,
    /// An attempt the owner had replaced: both may have landed.
    Superseded,
    /// None of the owner's attempts (a copy sent by hand, another key
    /// user): never "fixed" by sending more.
    NoAttempt,
}

/// What the owner should record, as far as the chain shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// The effect landed in `tx_hash`, settled.
    Landed {
        tx_hash: TxHash,
        receipt: ReceiptSummary,
        whose: Whose,
    },
    /// Nothing to record yet (pending, unconfirmed, rebroadcast if due).
    Wait,
    /// The chain cannot be observed now (an RPC failed or timed out).
    Unobservable {
        operation: &'static str,
        message: String,
    },
    /// The nonce is consumed but no node shows the landing yet; `stuck`
    /// once that lasted `unseen_alert`. Never a reason to send again.
    Unseen { detail: String, stuck: bool },
    /// Proven reverted (not deterministically) or its nonce taken by a
    /// transaction that is not ours, and the logs show no landing: the
    /// owner may sign the same call again ([`TxPipeline::replace`]).
    Replace { cause: ReplaceCause },
    /// Stop: resending cannot help, or the budget is spent.
    Failed(TxFailure),
}

impl Advance {
    /// Its name in traces.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Landed { .. } => "landed",
            Self::Wait => "wait",
            Self::Unobservable { .. } => "unobservable",
            Self::Unseen { .. } => "unseen",
            Self::Replace { .. } => "replace",
            Self::Failed(_) => "failed",
        }
    }
}

/// Why a replacement is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceCause {
    /// Our nonce was taken by a transaction that is not ours.
    Dead,
    Reverted,
}

/// Signing, recording or sending failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The owner's commit refused the intent: nothing was sent.
    #[error("recording the transaction intent failed")]
    Record(#[source] E),
}

/// One per (chain, wallet), shared by every flow; cheap to clone.
#[derive(Debug, Clone)]
pub struct TxPipeline {
    vault: VaultService,
    rebroadcast_every: Duration,
    unseen_alert: Duration,
    last_broadcast: Arc<Mutex<HashMap<TxHash, Instant>>>,
}

impl TxPipeline {
    pub fn new(
        vault: VaultService,
        rebroadcast_every: Duration,
        unseen_alert: Duration,
    ) -> Self {
        Self {
            vault,
            rebroadcast_every,
            unseen_alert,
            last_broadcast: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn vault(&self) -> &VaultService {
        &self.vault
    }

    pub fn client(&self) -> &ChainClient {
        self.vault.client()
    }

    /// Signs a call, records it with `record` (the owner's commit), then
    /// broadcasts it. A failed broadcast is only logged: the next
    /// [`TxPipeline::advance`] classifies and resends.
    pub async fn submit<E, Fut>(
        &self,
        to: Address,
        calldata: Bytes,
        record: impl FnOnce(SignedTx) -> Fut,
    ) -> Result<SignedTx, SubmitError<E>>
    where
        E: std::error::Error + 'static,
        Fut: Future<Output = Result<(), E>>,
    {
        let tx = self
            .client()
            .sign(to, calldata)
            .instrument(crate::flow_span!("chain.sign", %to))
            .await?;
        self.record_and_send(tx, record).await
    }

    /// As [`TxPipeline::submit`], for a replacement of `old` (same call,
    /// fresh nonce, gas and fees). Only after [`Advance::Replace`].
    pub async fn replace<E, Fut>(
        &self,
        old: &SignedTx,
        record: impl FnOnce(SignedTx) -> Fut,
    ) -> Result<SignedTx, SubmitError<E>>
    where
        E: std::error::Error + 'static,
        Fut: Future<Output = Result<(), E>>,
    {
        let tx = self
            .client()
            .replacement_for(old)
            .instrument(crate::flow_span!(
                "chain.sign",
                replaces = %old.hash
            ))
            .await?;
        self.record_and_send(tx, record).await
    }

    async fn record_and_send<E, Fut>(
        &self,
        tx: SignedTx,
        record: impl FnOnce(SignedTx) -> Fut,
    ) -> Result<SignedTx, SubmitError<E>>
    where
        E: std::error::Error + 'static,
        Fut: Future<Output = Result<(), E>>,
    {
        if let Err(error) = record(tx.clone()).await {
            // Never recorded, so never sent: the nonce is free again.
            self.client().release(&tx).await;
            return Err(SubmitError::Record(error));
        }
        self.broadcast(&tx).await;
        Ok(tx)
    }

    async fn broadcast(&self, tx: &SignedTx) {
        self.last_broadcast
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tx.hash, Instant::now());
        let span = crate::flow_span!(
            "chain.broadcast",
            tx_hash = %tx.hash,
            nonce = tx.nonce,
            error = tracing::field::Empty,
        );
        let sent = self.client().broadcast(tx).instrument(span.clone()).await;
        if let Err(error) = sent {
            span.record("error", tracing::field::display(&error));
            tracing::warn!(
                target: "chain",
                tx_hash = %tx.hash,
                error = %crate::http::ErrorChain(&error),
                "broadcast failed; will classify and resend"
            );
        }
    }

    fn rebroadcast_due(&self, hash: TxHash) -> bool {
        self.last_broadcast
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&hash)
            .is_none_or(|at| at.elapsed() >= self.rebroadcast_every)
    }

    fn forget(&self, hash: TxHash) {
        self.last_broadcast
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&hash);
    }

    /// Observes the current attempt and says what the owner should do.
    pub async fn advance(
        &self,
        attempts: &Attempts<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Advance, ChainError> {
        let span = crate::flow_span!(
            "chain.receipt",
            tx_hash = %attempts.current.hash,
            outcome = tracing::field::Empty,
        );
        let advance =
            self.observe(attempts, now).instrument(span.clone()).await;
        span.record(
            "outcome",
            match &advance {
                Ok(advance) => advance.as_str(),
                Err(_) => "error",
            },
        );
        advance
    }

    async fn observe(
        &self,
        attempts: &Attempts<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Advance, ChainError> {
        let tx = attempts.current;
        let lifecycle = TxLifecycle {
            replacements_used: attempts.replacements_used(),
            max_replacements: attempts.max_replacements,
        };
        let mut status = self.client().classify(tx).await?;
        if lifecycle.decide(AttemptRole::Current, &status)
            == TxAction::FindLanding
        {
            match self.find_landing(attempts, now).await? {
                Ok(landed) => return Ok(self.landed(attempts, landed)),
                Err(Resolved::Dead(dead)) => status = dead,
                Err(Resolved::Unseen(advance)) => return Ok(advance),
            }
        }
        Ok(match lifecycle.decide(AttemptRole::Current, &status) {
            TxAction::RecordSuccess => match status {
                TxStatus::Mined { receipt } => {
                    self.forget(tx.hash);
                    Advance::Landed {
                        tx_hash: tx.hash,
                        receipt,
                        whose: Whose::Current,
                    }
                }
                _ => Advance::Wait,
            },
            TxAction::Rebroadcast => {
                if self.rebroadcast_due(tx.hash) {
                    self.broadcast(tx).await;
                }
                Advance::Wait
            }
            TxAction::Replace => {
                // Proof before a second transaction: an attempt whose
                // landing we missed must not be repeated.
                if let Some(landed) = self
                    .vault
                    .find_effect(
                        attempts.vault,
                        attempts.effect,
                        self.search_from(attempts),
                    )
                    .await?
                {
                    return Ok(self.landed(attempts, landed));
                }
                Advance::Replace {
                    cause: if matches!(status, TxStatus::Dead { .. }) {
                        ReplaceCause::Dead
                    } else {
                        ReplaceCause::Reverted
                    },
                }
            }
            TxAction::Fail { reason } => Advance::Failed(reason),
            TxAction::Wait => match status {
                TxStatus::Uncertain {
                    reason: Uncertainty::Rpc { operation, message },
                } => Advance::Unobservable { operation, message },
                _ => Advance::Wait,
            },
            // Only superseded attempts get these; ours is current, and a
            // consumed nonce was resolved above.
            TxAction::FindLanding
            | TxAction::NothingToDo
            | TxAction::SupersededAttemptMined => Advance::Wait,
        })
    }

    fn search_from(&self, attempts: &Attempts<'_>) -> u64 {
        attempts
            .since_block
            .unwrap_or_else(|| self.client().policy().start_block)
    }

    fn landed(&self, attempts: &Attempts<'_>, landed: Landed) -> Advance {
        let whose = if landed.tx_hash == attempts.current.hash {
            Whose::Current
        } else if attempts.superseded.contains(&landed.tx_hash) {
            Whose::Superseded
        } else {
            Whose::NoAttempt
        };
        tracing::warn!(
            target: "chain",
            tx_hash = %landed.tx_hash,
            block = landed.receipt.block_number,
            receipt_visible = landed.receipt.gas_used.is_some(),
            ?whose,
            "landing found in the vault's logs"
        );
        self.forget(attempts.current.hash);
        Advance::Landed {
            tx_hash: landed.tx_hash,
            receipt: landed.receipt,
            whose,
        }
    }

    /// Our nonce is consumed but the node shows no receipt: the landed
    /// attempt, proof that a transaction not ours took the nonce (`Dead`,
    /// which allows a replacement), or an [`Advance::Unseen`].
    async fn find_landing(
        &self,
        attempts: &Attempts<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Result<Landed, Resolved>, ChainError> {
        let tx = attempts.current;
        let landing = self
            .vault
            .find_landing(
                attempts.vault,
                attempts.effect,
                tx,
                self.search_from(attempts),
            )
            .await?;
        let detail = match landing {
            Landing::Landed(landed) => return Ok(Ok(landed)),
            Landing::NonceTakenBy { tx_hash, block } => {
                metrics::counter!(
                    "chain_foreign_nonce_total",
                    "network" => crate::telemetry::network::label()
                )
                .increment(1);
                tracing::error!(
                    target: "chain",
                    ours = %tx.hash,
                    nonce = tx.nonce,
                    taken_by = %tx_hash,
                    block,
                    "ALERT: a transaction we did not sign took our nonce; \
                     someone else is using the issuer key"
                );
                return Ok(Err(Resolved::Dead(TxStatus::Dead {
                    consumed_by: tx_hash,
                })));
            }
            Landing::InBlockLogsUnseen { block } => format!(
                "it is in block {block} but the node does not show its logs"
            ),
            Landing::NotVisible => {
                "no node answer shows its receipt, logs or block".to_owned()
            }
        };
        let stuck = (now - tx.signed_at)
            .to_std()
            .is_ok_and(|waited| waited >= self.unseen_alert);
        if stuck {
            metrics::counter!(
                "chain_unseen_landing_stuck_total",
                "flow" => crate::telemetry::flow::kind().unwrap_or_default(),
                "network" => crate::telemetry::network::label()
            )
            .increment(1);
        }
        Ok(Err(Resolved::Unseen(Advance::Unseen {
            detail: format!(
                "transaction {} took nonce {} but cannot be confirmed \
                 ({detail}); it is not replaced, since only our transactions \
                 use this wallet; still looking",
                tx.hash, tx.nonce
            ),
            stuck,
        })))
    }
}

enum Resolved {
    Dead(TxStatus),
    Unseen(Advance),
}
