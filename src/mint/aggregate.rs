//! The `Mint` aggregate: one lifecycle enum, decide (`handle`) and evolve
//! (`apply`); every side effect is the flow's (`flow.rs`).

use std::fmt;
use std::sync::Arc;

use alloy::primitives::{TxHash, U256};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use super::{MintCommand, MintEvent, MintId, TokenizationRequestId, Vault};
use crate::account::{ClientId, Wallet};
use crate::alpaca::ApRef;
use crate::chain::SignedTx;
use crate::clock::Clock;
use crate::operator::{EchoError, OperatorReason, check_echo};
use crate::quantity::AlpacaQuantity;
use crate::tokenized_asset::{Network, TokenSymbol, UnderlyingSymbol};

/// The stream type under which mints own `tx_intents` rows.
pub const OWNER_TYPE: &str = Mint::TYPE;

/// Transactions one mint may sign: the first and up to three
/// replacements of a dead or non-deterministically reverted one.
pub const MAX_TX_ATTEMPTS: u32 = 4;

/// What Alpaca asked for: the fields compared when a mint request is
/// repeated (same order → same answer; different order → 409).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintOrder {
    pub tokenization_request_id: TokenizationRequestId,
    pub qty: AlpacaQuantity,
    pub underlying: UnderlyingSymbol,
    pub token: TokenSymbol,
    pub network: Network,
    /// The AP id field exactly as Alpaca sent it; the callback repeats it.
    pub ap: ApRef,
    pub wallet: Wallet,
}

/// An accepted order plus what we resolved at initiation. The vault is
/// captured here so that repointing a listing never moves a mint that
/// is already under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintRequest {
    pub order: MintOrder,
    pub issuer_request_id: MintId,
    pub client_id: ClientId,
    pub vault: Vault,
}

/// The signed transaction a mint currently stands behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxAttempt {
    pub tx: SignedTx,
    /// 1 for the first transaction, +1 per replacement.
    pub number: u32,
    /// Earlier attempts, each proven dead or reverted, oldest first.
    pub superseded: Vec<TxHash>,
    /// The chain head when the first attempt was signed: no attempt can
    /// have landed earlier, so evidence searches start here.
    #[serde(default)]
    pub since_block: Option<u64>,
}

/// What the deposit produced, from its `Deposit` log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintedTokens {
    pub tx_hash: TxHash,
    pub vault: Vault,
    pub receipt_id: U256,
    pub shares: U256,
    pub block: u64,
    /// `None` when the landing was proven from the vault's logs.
    #[serde(default)]
    pub gas_used: Option<u64>,
}

/// Why a replacement transaction was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplacementCause {
    /// Our nonce was taken by a transaction that is not ours (found in
    /// its block): ours can never be mined.
    Dead,
    /// Mined with status 0 for a reason that may not recur.
    Reverted,
}

/// Why a mint stopped for an operator.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The vault refused on purpose; resending cannot help.
    DeterministicRevert,
    /// Every allowed transaction died or reverted.
    ReplacementBudgetExhausted,
    /// An attempt we had replaced was mined after all: both may have
    /// landed, so reconcile by hand.
    SupersededAttemptMined,
    /// Mined, but the receipt does not show the deposit we asked for.
    VaultOutcomeMismatch,
    /// The chain shows a deposit for this mint from a transaction that is
    /// none of its attempts: reconcile by hand, never mint again.
    LandedOutsideAttempts,
    /// The stored transaction or request cannot be used any more.
    Unprocessable,
}

impl FailureClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DeterministicRevert => "deterministic_revert",
            Self::ReplacementBudgetExhausted => "replacement_budget_exhausted",
            Self::SupersededAttemptMined => "superseded_attempt_mined",
            Self::VaultOutcomeMismatch => "vault_outcome_mismatch",
            Self::LandedOutsideAttempts => "landed_outside_attempts",
            Self::Unprocessable => "unprocessable",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct MintFailure {
    pub classification: FailureClass,
    pub reason: String,
    #[schema(value_type = Option<String>)]
    pub tx_hash: Option<TxHash>,
}

/// Alpaca's journal outcome, as sent in the confirmation's `status`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JournalOutcome {
    Completed,
    Rejected,
}

impl fmt::Display for JournalOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Completed => "completed",
            Self::Rejected => "rejected",
        })
    }
}

/// The mint lifecycle. Every state after `NotInitiated` carries the
/// request; `Minted` means "tokens delivered, callback pending".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mint {
    #[default]
    NotInitiated,
    Initiated {
        request: MintRequest,
    },
    /// Terminal: nothing was or will be minted.
    JournalRejected {
        request: MintRequest,
        reason: Option<String>,
    },
    JournalConfirmed {
        request: MintRequest,
    },
    MintIntended {
        request: MintRequest,
        attempt: TxAttempt,
    },
    Minted {
        request: MintRequest,
        minted: MintedTokens,
    },
    /// Terminal: minted and Alpaca told.
    Completed {
        request: MintRequest,
        minted: MintedTokens,
    },
    /// Terminal until an operator acts.
    Failed {
        request: MintRequest,
        failure: MintFailure,
        /// The transaction the mint stood behind when it failed, kept so
        /// that a retry follows it again before signing anything new.
        last_attempt: Option<TxAttempt>,
    },
    /// Terminal: an operator closed the mint for a reason.
    Closed {
        request: MintRequest,
        reason: OperatorReason,
        closed_from: MintStatus,
    },
}

/// The lifecycle state's name, as shown by the API and stored in views.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MintStatus {
    NotInitiated,
    Initiated,
    JournalRejected,
    JournalConfirmed,
    MintIntended,
    Minted,
    Completed,
    Failed,
    Closed,
}

impl MintStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotInitiated => "not_initiated",
            Self::Initiated => "initiated",
            Self::JournalRejected => "journal_rejected",
            Self::JournalConfirmed => "journal_confirmed",
            Self::MintIntended => "mint_intended",
            Self::Minted => "minted",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Closed => "closed",
        }
    }

    /// States the driver has work for.
    pub const fn needs_driver(self) -> bool {
        matches!(
            self,
            Self::JournalConfirmed | Self::MintIntended | Self::Minted
        )
    }
}

impl fmt::Display for MintStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Mint {
    pub fn request(&self) -> Option<&MintRequest> {
        match self {
            Self::NotInitiated => None,
            Self::Initiated { request }
            | Self::JournalRejected { request, .. }
            | Self::JournalConfirmed { request }
            | Self::MintIntended { request, .. }
            | Self::Minted { request, .. }
            | Self::Completed { request, .. }
            | Self::Failed { request, .. }
            | Self::Closed { request, .. } => Some(request),
        }
    }

    pub const fn status(&self) -> MintStatus {
        match self {
            Self::NotInitiated => MintStatus::NotInitiated,
            Self::Initiated { .. } => MintStatus::Initiated,
            Self::JournalRejected { .. } => MintStatus::JournalRejected,
            Self::JournalConfirmed { .. } => MintStatus::JournalConfirmed,
            Self::MintIntended { .. } => MintStatus::MintIntended,
            Self::Minted { .. } => MintStatus::Minted,
            Self::Completed { .. } => MintStatus::Completed,
            Self::Failed { .. } => MintStatus::Failed,
            Self::Closed { .. } => MintStatus::Closed,
        }
    }

    fn invalid(&self, command: &'static str) -> MintError {
        MintError::InvalidState {
            command,
            state: self.status(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    #[error("mint is already initiated as {issuer_request_id}")]
    AlreadyInitiated { issuer_request_id: MintId },
    #[error("mint is not initiated")]
    NotInitiated,
    #[error("issuer_request_id {found} does not match this mint's {expected}")]
    IssuerRequestIdMismatch { expected: MintId, found: MintId },
    #[error(
        "journal already recorded as {recorded}, cannot become {requested}"
    )]
    ConflictingConfirmation {
        recorded: JournalOutcome,
        requested: JournalOutcome,
    },
    #[error("{command} is not allowed in state {state}")]
    InvalidState {
        command: &'static str,
        state: MintStatus,
    },
    #[error("transaction {found} is not the mint's current one ({expected})")]
    TxMismatch { expected: TxHash, found: TxHash },
    #[error("deposit in vault {found}, but the mint targets {expected}")]
    VaultMismatch { expected: Vault, found: Vault },
    #[error("deposit of {found} shares, but the mint is for {expected}")]
    SharesMismatch { expected: U256, found: U256 },
    #[error("all {max} transaction attempts are used")]
    AttemptsExhausted { max: u32 },
    #[error(transparent)]
    Echo(#[from] EchoError),
}

/// What the mint aggregate needs from the outside world.
#[derive(Clone)]
pub struct MintServices {
    pub clock: Arc<dyn Clock>,
}

impl Aggregate for Mint {
    const TYPE: &'static str = "Mint";
    type Command = MintCommand;
    type Event = MintEvent;
    type Error = MintError;
    type Services = MintServices;

    async fn handle(
        &mut self,
        command: MintCommand,
        services: &MintServices,
        sink: &EventSink<Self>,
    ) -> Result<(), MintError> {
        let Some(event) = self.decide(command, services.clock.now())? else {
            return Ok(());
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: MintEvent) {
        *self = match (std::mem::take(self), event) {
            (Self::NotInitiated, MintEvent::Initiated { request, .. }) => {
                Self::Initiated { request }
            }
            (
                Self::Initiated { request },
                MintEvent::JournalConfirmed { .. },
            )
            // A retry of a mint that never signed anything signs anew.
            | (
                Self::Failed {
                    request,
                    last_attempt: None,
                    ..
                },
                MintEvent::MintRetried { .. },
            ) => Self::JournalConfirmed { request },
            (
                Self::Initiated { request },
                MintEvent::JournalRejected { reason, .. },
            ) => Self::JournalRejected { request, reason },
            (
                Self::JournalConfirmed { request },
                MintEvent::MintTxIntended { tx, .. },
            ) => Self::MintIntended {
                request,
                attempt: TxAttempt {
                    since_block: tx.head_at_signing,
                    tx,
                    number: 1,
                    superseded: Vec::new(),
                },
            },
            (
                Self::MintIntended {
                    request,
                    attempt: previous,
                },
                MintEvent::MintReplacementIntended { tx, attempt, .. },
            ) => {
                let mut superseded = previous.superseded;
                superseded.push(previous.tx.hash);
                Self::MintIntended {
                    request,
                    attempt: TxAttempt {
                        since_block: previous
                            .since_block
                            .or(tx.head_at_signing),
                        tx,
                        number: attempt,
                        superseded,
                    },
                }
            }
            (
                Self::MintIntended { request, .. },
                MintEvent::TokensMinted {
                    tx_hash,
                    vault,
                    receipt_id,
                    shares,
                    block,
                    gas_used,
                    ..
                },
            )
            // The failed mint's deposit, found on chain by an operator.
            | (
                Self::Failed { request, .. },
                MintEvent::MintRecovered {
                    tx_hash,
                    vault,
                    receipt_id,
                    shares,
                    block,
                    gas_used,
                    ..
                },
            ) => Self::Minted {
                request,
                minted: MintedTokens {
                    tx_hash,
                    vault,
                    receipt_id,
                    shares,
                    block,
                    gas_used,
                },
            },
            (
                Self::JournalConfirmed { request },
                MintEvent::MintFailed {
                    classification,
                    reason,
                    tx_hash,
                    ..
                },
            ) => Self::Failed {
                request,
                failure: MintFailure {
                    classification,
                    reason,
                    tx_hash,
                },
                last_attempt: None,
            },
            (
                Self::MintIntended { request, attempt },
                MintEvent::MintFailed {
                    classification,
                    reason,
                    tx_hash,
                    ..
                },
            ) => Self::Failed {
                request,
                failure: MintFailure {
                    classification,
                    reason,
                    tx_hash,
                },
                last_attempt: Some(attempt),
            },
            // A retry follows the last transaction again (with a fresh
            // replacement budget), or signs anew if there was none.
            (
                Self::Failed {
                    request,
                    last_attempt: Some(attempt),
                    ..
                },
                MintEvent::MintRetried { .. },
            ) => Self::MintIntended {
                request,
                attempt: TxAttempt {
                    number: 1,
                    ..attempt
                },
            },
            (state, MintEvent::MintClosed { reason, .. })
                if state.closable() =>
            {
                let closed_from = state.status();
                match state.request() {
                    Some(request) => Self::Closed {
                        request: request.clone(),
                        reason,
                        closed_from,
                    },
                    None => state,
                }
            }
            (
                Self::Minted { request, minted },
                MintEvent::CallbackDelivered { .. },
            ) => Self::Completed { request, minted },
            // `decide` never emits an event out of order; a stored stream
            // that did is kept as it was rather than invented, and said.
            (state, event) => {
                crate::telemetry::aggregate::impossible_event(
                    "mint",
                    state.status().as_str(),
                    &cqrs_es::DomainEvent::event_type(&event),
                );
                state
            }
        };
    }
}

impl Mint {
    /// The event a command produces in the current state; `None` for an
    /// idempotent repeat.
    fn decide(
        &self,
        command: MintCommand,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<MintEvent>, MintError> {
        if let MintCommand::Initiate { request } = command {
            return match self.request() {
                None => Ok(Some(MintEvent::Initiated {
                    request,
                    initiated_at: now,
                })),
                Some(existing) => Err(MintError::AlreadyInitiated {
                    issuer_request_id: existing.issuer_request_id,
                }),
            };
        }
        let request = self.request().ok_or(MintError::NotInitiated)?;
        match command {
            MintCommand::Initiate { .. } => Err(self.invalid("Initiate")),
            MintCommand::ConfirmJournal { issuer_request_id } => {
                check_id(request, issuer_request_id)?;
                match self {
                    Self::Initiated { .. } => {
                        Ok(Some(MintEvent::JournalConfirmed {
                            confirmed_at: now,
                        }))
                    }
                    Self::JournalRejected { .. } => {
                        Err(MintError::ConflictingConfirmation {
                            recorded: JournalOutcome::Rejected,
                            requested: JournalOutcome::Completed,
                        })
                    }
                    // Closed before Alpaca confirmed: shares journaled
                    // now would never be minted, so Alpaca must hear it.
                    Self::Closed {
                        closed_from: MintStatus::Initiated,
                        ..
                    } => Err(self.invalid("ConfirmJournal")),
                    _ => Ok(None),
                }
            }
            MintCommand::RejectJournal {
                issuer_request_id,
                reason,
            } => {
                check_id(request, issuer_request_id)?;
                match self {
                    Self::Initiated { .. } => {
                        Ok(Some(MintEvent::JournalRejected {
                            reason,
                            rejected_at: now,
                        }))
                    }
                    Self::JournalRejected { .. }
                    | Self::Closed {
                        closed_from: MintStatus::Initiated,
                        ..
                    } => Ok(None),
                    _ => Err(MintError::ConflictingConfirmation {
                        recorded: JournalOutcome::Completed,
                        requested: JournalOutcome::Rejected,
                    }),
                }
            }
            MintCommand::RecordTxIntent { tx } => match self {
                Self::JournalConfirmed { .. } => {
                    Ok(Some(MintEvent::MintTxIntended {
                        tx,
                        intended_at: now,
                    }))
                }
                Self::MintIntended { attempt, .. } if attempt.tx == tx => {
                    Ok(None)
                }
                _ => Err(self.invalid("RecordTxIntent")),
            },
            MintCommand::RecordReplacement {
                replaced,
                cause,
                tx,
            } => self.replacement(replaced, cause, tx, now),
            MintCommand::RecordMinted {
                tx_hash,
                vault,
                receipt_id,
                shares,
                block,
                gas_used,
            } => {
                let minted = MintedTokens {
                    tx_hash,
                    vault,
                    receipt_id,
                    shares,
                    block,
                    gas_used,
                };
                self.minted(request, minted, now)
            }
            MintCommand::RecordFailure {
                classification,
                reason,
                tx_hash,
            } => match self {
                Self::JournalConfirmed { .. } | Self::MintIntended { .. } => {
                    Ok(Some(MintEvent::MintFailed {
                        classification,
                        reason,
                        tx_hash,
                        failed_at: now,
                    }))
                }
                Self::Failed { .. } => Ok(None),
                _ => Err(self.invalid("RecordFailure")),
            },
            MintCommand::Retry { reason } => match self {
                Self::Failed { .. } => Ok(Some(MintEvent::MintRetried {
                    reason,
                    retried_at: now,
                })),
                _ => Err(self.invalid("Retry")),
            },
            MintCommand::Recover { reason, minted } => {
                self.recovered(request, reason, minted, now)
            }
            MintCommand::Close { reason, tx_hash } => match self {
                Self::Closed { .. } => Ok(None),
                state if state.closable() => {
                    check_echo(state.tx_hash(), tx_hash)?;
                    Ok(Some(MintEvent::MintClosed {
                        reason,
                        closed_at: now,
                    }))
                }
                _ => Err(self.invalid("Close")),
            },
            MintCommand::RecordCallbackDelivered => match self {
                Self::Minted { .. } => {
                    Ok(Some(MintEvent::CallbackDelivered { delivered_at: now }))
                }
                Self::Completed { .. } => Ok(None),
                _ => Err(self.invalid("RecordCallbackDelivered")),
            },
        }
    }

    fn replacement(
        &self,
        replaced: TxHash,
        cause: ReplacementCause,
        tx: SignedTx,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<MintEvent>, MintError> {
        let Self::MintIntended { attempt, .. } = self else {
            return Err(self.invalid("RecordReplacement"));
        };
        // A repeat of the replacement we already recorded.
        if attempt.tx == tx && attempt.superseded.last() == Some(&replaced) {
            return Ok(None);
        }
        if attempt.tx.hash != replaced {
            return Err(MintError::TxMismatch {
                expected: attempt.tx.hash,
                found: replaced,
            });
        }
        if attempt.number >= MAX_TX_ATTEMPTS {
            return Err(MintError::AttemptsExhausted {
                max: MAX_TX_ATTEMPTS,
            });
        }
        Ok(Some(MintEvent::MintReplacementIntended {
            replaced,
            cause,
            tx,
            attempt: attempt.number.saturating_add(1),
            intended_at: now,
        }))
    }

    fn minted(
        &self,
        request: &MintRequest,
        minted: MintedTokens,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<MintEvent>, MintError> {
        match self {
            Self::MintIntended { attempt, .. } => {
                if attempt.tx.hash != minted.tx_hash {
                    return Err(MintError::TxMismatch {
                        expected: attempt.tx.hash,
                        found: minted.tx_hash,
                    });
                }
                check_deposit(request, &minted)?;
                Ok(Some(MintEvent::TokensMinted {
                    tx_hash: minted.tx_hash,
                    vault: minted.vault,
                    receipt_id: minted.receipt_id,
                    shares: minted.shares,
                    block: minted.block,
                    gas_used: minted.gas_used,
                    minted_at: now,
                }))
            }
            Self::Minted {
                minted: recorded, ..
            }
            | Self::Completed {
                minted: recorded, ..
            } if *recorded == minted => Ok(None),
            _ => Err(self.invalid("RecordMinted")),
        }
    }
}

impl Mint {
    /// States an operator may close. Not `MintIntended`: its transaction
    /// may still land (let it land or fail first); not a terminal state.
    const fn closable(&self) -> bool {
        matches!(
            self,
            Self::Initiated { .. }
                | Self::JournalConfirmed { .. }
                | Self::Minted { .. }
                | Self::Failed { .. }
        )
    }

    /// The transaction an operator must echo to close this mint.
    pub fn tx_hash(&self) -> Option<TxHash> {
        match self {
            Self::MintIntended { attempt, .. } => Some(attempt.tx.hash),
            Self::Minted { minted, .. } | Self::Completed { minted, .. } => {
                Some(minted.tx_hash)
            }
            Self::Failed {
                failure,
                last_attempt,
                ..
            } => failure
                .tx_hash
                .or_else(|| last_attempt.as_ref().map(|a| a.tx.hash)),
            Self::NotInitiated
            | Self::Initiated { .. }
            | Self::JournalRejected { .. }
            | Self::JournalConfirmed { .. }
            | Self::Closed { .. } => None,
        }
    }

    /// A failed mint whose deposit the chain shows after all: the deposit
    /// is recorded (never made again) and the callback follows.
    fn recovered(
        &self,
        request: &MintRequest,
        reason: OperatorReason,
        minted: MintedTokens,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<MintEvent>, MintError> {
        match self {
            Self::Failed { .. } => {
                check_deposit(request, &minted)?;
                Ok(Some(MintEvent::MintRecovered {
                    reason,
                    tx_hash: minted.tx_hash,
                    vault: minted.vault,
                    receipt_id: minted.receipt_id,
                    shares: minted.shares,
                    block: minted.block,
                    gas_used: minted.gas_used,
                    recovered_at: now,
                }))
            }
            Self::Minted {
                minted: recorded, ..
            }
            | Self::Completed {
                minted: recorded, ..
            } if *recorded == minted => Ok(None),
            _ => Err(self.invalid("Recover")),
        }
    }
}

/// The deposit must be the one this mint asked for.
fn check_deposit(
    request: &MintRequest,
    minted: &MintedTokens,
) -> Result<(), MintError> {
    if request.vault != minted.vault {
        return Err(MintError::VaultMismatch {
            expected: request.vault,
            found: minted.vault,
        });
    }
    let expected = request.order.qty.to_shares();
    if expected != minted.shares {
        return Err(MintError::SharesMismatch {
            expected,
            found: minted.shares,
        });
    }
    Ok(())
}

fn check_id(request: &MintRequest, found: MintId) -> Result<(), MintError> {
    if request.issuer_request_id == found {
        Ok(())
    } else {
        Err(MintError::IssuerRequestIdMismatch {
            expected: request.issuer_request_id,
            found,
        })
    }
}
