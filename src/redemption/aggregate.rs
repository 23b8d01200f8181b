//! The `Redemption` aggregate: one lifecycle enum, decide (`handle`) and
//! evolve (`apply`); every side effect is the flow's (`flow.rs`).

use std::fmt;
use std::sync::Arc;

use alloy::primitives::{Address, TxHash, U256};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use super::{RedemptionCommand, RedemptionEvent, RedemptionId, ReturnOrder};
use crate::account::ClientId;
use crate::alpaca::ApRef;
use crate::chain::{SignedTx, TxLifecycle};
use crate::clock::Clock;
use crate::operator::{EchoError, OperatorReason, check_echo};
use crate::quantity::{AlpacaQuantity, split_for_alpaca};
use crate::receipt_inventory::ReceiptBurn;
use crate::tokenized_asset::{Network, TokenSymbol, UnderlyingSymbol};

/// The aggregate type, also the `owner_type` of burn intents.
pub const AGGREGATE_TYPE: &str = "Redemption";

/// A qualifying `Transfer(from, bot, shares)` and who sent it, as the
/// monitor found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectedTransfer {
    pub network: Network,
    pub vault: Address,
    pub underlying: UnderlyingSymbol,
    pub token: TokenSymbol,
    pub tx_hash: TxHash,
    pub log_index: u64,
    pub block: u64,
    /// The AP wallet the tokens came from; dust goes back here.
    pub from_wallet: Address,
    /// The account owning `from_wallet` at detection time, captured so a
    /// later un-whitelisting does not strand the redemption.
    pub client_id: ClientId,
    pub ap: ApRef,
    pub shares: U256,
}

impl DetectedTransfer {
    pub fn issuer_request_id(&self) -> RedemptionId {
        RedemptionId::for_transfer(self.tx_hash, self.log_index)
    }
}

/// The transfer plus the split of its amount for Alpaca.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    pub transfer: DetectedTransfer,
    /// `shares` truncated to 9 decimals; `None` when below 10^-9.
    pub alpaca_qty: Option<AlpacaQuantity>,
    /// `shares - alpaca_qty`, returned to the sender with the burn.
    pub dust: U256,
    pub detected_at: DateTime<Utc>,
}

impl Detection {
    /// Shares to burn from receipts (the dust is returned, not burned).
    pub fn burn_shares(&self) -> U256 {
        self.alpaca_qty.map_or(U256::ZERO, |qty| qty.to_shares())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlpacaCall {
    pub tokenization_request_id: String,
    pub called_at: DateTime<Utc>,
    /// When an operator's retry restarted polling (the timeout then
    /// counts from here, not from `called_at`).
    #[serde(default)]
    pub polling_since: Option<DateTime<Utc>>,
}

impl AlpacaCall {
    /// Where the poll timeout counts from.
    pub fn polling_since(&self) -> DateTime<Utc> {
        self.polling_since.unwrap_or(self.called_at)
    }
}

/// One signed burn transaction and what it burns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BurnAttempt {
    pub tx: SignedTx,
    pub burns: Vec<ReceiptBurn>,
    pub dust: U256,
    pub intended_at: DateTime<Utc>,
}

/// Alpaca's final refusal of the redeem call itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub status: Option<u16>,
    pub message: String,
}

/// Why a burn cannot be completed automatically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BurnFailure {
    /// The vault refused on purpose; resending cannot help.
    DeterministicRevert {
        tx_hash: TxHash,
        revert: String,
    },
    ReplacementBudgetExhausted {
        tx_hash: TxHash,
        used: u32,
    },
    /// The inventory cannot cover the burn.
    InsufficientReceipts {
        requested: U256,
        available: U256,
    },
}

/// Why a redemption stopped. Every reason leaves the tokens with the
/// issuer wallet (nothing was burned), for an operator to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureReason {
    /// `rejected` by Alpaca (`refusal` = None), or the redeem call was
    /// refused for good. Never burn: the AP did not get its shares back.
    AlpacaRejected {
        refusal: Option<Refusal>,
    },
    PollTimedOut {
        waited_secs: u64,
    },
    /// Less than 10^-9 tokens: nothing Alpaca could be asked for.
    BelowMinimumQuantity {
        shares: U256,
    },
    /// The amount does not fit Alpaca's decimal quantity.
    UnrepresentableQuantity {
        shares: U256,
    },
    BurnFailed {
        failure: BurnFailure,
    },
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlpacaRejected { refusal: None } => {
                f.write_str("Alpaca rejected the redemption")
            }
            Self::AlpacaRejected {
                refusal: Some(refusal),
            } => match refusal.status {
                Some(status) => write!(
                    f,
                    "Alpaca refused the redeem call (HTTP {status}): {}",
                    refusal.message
                ),
                None => write!(
                    f,
                    "Alpaca refused the redeem call: {}",
                    refusal.message
                ),
            },
            Self::PollTimedOut { waited_secs } => write!(
                f,
                "Alpaca did not complete the journal within {waited_secs} s"
            ),
            Self::BelowMinimumQuantity { shares } => write!(
                f,
                "{shares} shares is below Alpaca's minimum quantity (1e-9)"
            ),
            Self::UnrepresentableQuantity { shares } => {
                write!(f, "{shares} shares cannot be expressed as a quantity")
            }
            Self::BurnFailed {
                failure: BurnFailure::DeterministicRevert { tx_hash, revert },
            } => write!(f, "burn {tx_hash} reverted: {revert}"),
            Self::BurnFailed {
                failure:
                    BurnFailure::ReplacementBudgetExhausted { tx_hash, used },
            } => write!(
                f,
                "burn {tx_hash} could not be landed after {used} replacements"
            ),
            Self::BurnFailed {
                failure:
                    BurnFailure::InsufficientReceipts {
                        requested,
                        available,
                    },
            } => write!(
                f,
                "receipts cover {available} shares, {requested} needed"
            ),
        }
    }
}

/// The redemption lifecycle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Redemption {
    #[default]
    NotDetected,
    Detected {
        detection: Detection,
    },
    AlpacaCalled {
        detection: Detection,
        alpaca: AlpacaCall,
    },
    JournalCompleted {
        detection: Detection,
        alpaca: AlpacaCall,
        journal_completed_at: DateTime<Utc>,
    },
    Burning {
        detection: Detection,
        alpaca: AlpacaCall,
        journal_completed_at: DateTime<Utc>,
        burn: BurnAttempt,
        /// Earlier attempts, proven reverted or dead, oldest first.
        superseded: Vec<SignedTx>,
    },
    Completed {
        detection: Detection,
        alpaca: AlpacaCall,
        /// What the landed burn took from each receipt.
        burns: Vec<ReceiptBurn>,
        burn_tx_hash: TxHash,
        block: u64,
        completed_at: DateTime<Utc>,
    },
    /// Terminal until an operator acts (retry, force-complete, close).
    Failed {
        detection: Detection,
        alpaca: Option<AlpacaCall>,
        burn: Option<BurnAttempt>,
        /// Set when Alpaca had journaled (a burn failure): a retry burns
        /// again from there.
        #[serde(default)]
        journal_completed_at: Option<DateTime<Utc>>,
        reason: FailureReason,
        failed_at: DateTime<Utc>,
    },
    /// Terminal: an operator closed it; the tokens stay in the wallet.
    Closed {
        detection: Detection,
        alpaca: Option<AlpacaCall>,
        reason: OperatorReason,
        closed_from: String,
        closed_at: DateTime<Utc>,
    },
    /// An operator asked to send an unattributed transfer back.
    ReturnRequested {
        order: ReturnOrder,
    },
    /// The return transfer is signed and recorded; followed until it
    /// lands.
    Returning {
        order: ReturnOrder,
        tx: SignedTx,
        /// Earlier attempts, proven reverted or dead, oldest first.
        superseded: Vec<SignedTx>,
    },
    /// Terminal: the tokens are back with their sender.
    Returned {
        order: ReturnOrder,
        tx_hash: TxHash,
        block: u64,
        returned_at: DateTime<Utc>,
    },
}

impl Redemption {
    /// The network whose chain this redemption (or return) is on.
    pub fn network(&self) -> Option<Network> {
        self.detection()
            .map(|detection| detection.transfer.network)
            .or_else(|| self.return_order().map(|order| order.transfer.network))
    }

    pub fn detection(&self) -> Option<&Detection> {
        match self {
            Self::NotDetected
            | Self::ReturnRequested { .. }
            | Self::Returning { .. }
            | Self::Returned { .. } => None,
            Self::Detected { detection }
            | Self::AlpacaCalled { detection, .. }
            | Self::JournalCompleted { detection, .. }
            | Self::Burning { detection, .. }
            | Self::Completed { detection, .. }
            | Self::Failed { detection, .. }
            | Self::Closed { detection, .. } => Some(detection),
        }
    }

    pub fn alpaca(&self) -> Option<&AlpacaCall> {
        match self {
            Self::NotDetected
            | Self::Detected { .. }
            | Self::ReturnRequested { .. }
            | Self::Returning { .. }
            | Self::Returned { .. } => None,
            Self::AlpacaCalled { alpaca, .. }
            | Self::JournalCompleted { alpaca, .. }
            | Self::Burning { alpaca, .. }
            | Self::Completed { alpaca, .. } => Some(alpaca),
            Self::Failed { alpaca, .. } | Self::Closed { alpaca, .. } => {
                alpaca.as_ref()
            }
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Completed { .. }
                | Self::Failed { .. }
                | Self::Closed { .. }
                | Self::Returned { .. }
        )
    }

    /// The burn transaction an operator must echo to close this one.
    pub fn burn_tx_hash(&self) -> Option<TxHash> {
        match self {
            Self::Burning { burn, .. }
            | Self::Failed {
                burn: Some(burn), ..
            } => Some(burn.tx.hash),
            Self::Completed { burn_tx_hash, .. } => Some(*burn_tx_hash),
            _ => None,
        }
    }

    pub const fn state_name(&self) -> &'static str {
        match self {
            Self::NotDetected => "not_detected",
            Self::Detected { .. } => "detected",
            Self::AlpacaCalled { .. } => "alpaca_called",
            Self::JournalCompleted { .. } => "journal_completed",
            Self::Burning { .. } => "burning",
            Self::Completed { .. } => "completed",
            Self::Failed { .. } => "failed",
            Self::Closed { .. } => "closed",
            Self::ReturnRequested { .. } => "return_requested",
            Self::Returning { .. } => "returning",
            Self::Returned { .. } => "returned",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedemptionError {
    #[error("redemption has not been detected")]
    NotDetected,
    #[error(
        "redemption was detected from another transfer ({tx_hash} log \
         {log_index})"
    )]
    DetectedDifferently { tx_hash: TxHash, log_index: u64 },
    #[error("{command} is not allowed in state {state}")]
    InvalidState {
        command: &'static str,
        state: &'static str,
    },
    #[error("Alpaca request {recorded} is already recorded, not {given}")]
    TokenizationRequestMismatch { recorded: String, given: String },
    #[error(transparent)]
    BurnMismatch(Box<BurnMismatch>),
    #[error("burn {given} is not the current attempt {current}")]
    NotCurrentAttempt { given: TxHash, current: TxHash },
    #[error("burn {given} is not an attempt of this redemption")]
    UnknownAttempt { given: TxHash },
    #[error("all {used} burn replacements are used")]
    ReplacementBudgetExhausted { used: u32 },
    #[error("a redemption that failed with \"{reason}\" cannot be retried")]
    NotRetryable { reason: String },
    #[error("the burn took {burned} shares; this redemption burns {expected}")]
    RecordedBurnMismatch { burned: U256, expected: U256 },
    #[error(transparent)]
    Echo(#[from] EchoError),
}

/// A burn whose amounts do not add up to the detected transfer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "burn of {burned:?} shares and {dust} dust does not match the detection \
     ({expected} shares, {expected_dust} dust)"
)]
pub struct BurnMismatch {
    /// `None` when the burns overflow U256.
    pub burned: Option<U256>,
    pub dust: U256,
    pub expected: U256,
    pub expected_dust: U256,
}

/// What the redemption aggregate needs from the outside world.
#[derive(Clone)]
pub struct RedemptionServices {
    pub clock: Arc<dyn Clock>,
}

pub(super) fn invalid(
    command: &'static str,
    state: &Redemption,
) -> RedemptionError {
    RedemptionError::InvalidState {
        command,
        state: state.state_name(),
    }
}

/// Replacements allowed per redemption (the chain's default budget).
pub const MAX_BURN_REPLACEMENTS: u32 = TxLifecycle::DEFAULT_MAX_REPLACEMENTS;

impl Aggregate for Redemption {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = RedemptionCommand;
    type Event = RedemptionEvent;
    type Error = RedemptionError;
    type Services = RedemptionServices;

    async fn handle(
        &mut self,
        command: RedemptionCommand,
        services: &RedemptionServices,
        sink: &EventSink<Self>,
    ) -> Result<(), RedemptionError> {
        let now = services.clock.now();
        for event in self.decide(command, now)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: RedemptionEvent) {
        let state = std::mem::take(self);
        *self = if event.is_return_step() {
            state.evolve_return(event)
        } else {
            state.evolve(event)
        };
    }
}

impl Redemption {
    fn decide(
        &self,
        command: RedemptionCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        match command {
            RedemptionCommand::Detect { transfer } => {
                self.detect(transfer, now)
            }
            RedemptionCommand::RecordAlpacaCall {
                tokenization_request_id,
            } => self.record_alpaca_call(tokenization_request_id, now),
            RedemptionCommand::RecordJournalCompleted => {
                self.record_journal_completed(now)
            }
            RedemptionCommand::RecordAlpacaRejected { refusal } => {
                self.record_rejected(refusal, now)
            }
            RedemptionCommand::RecordPollTimeout { waited_secs } => {
                self.record_poll_timeout(waited_secs, now)
            }
            RedemptionCommand::IntendBurn {
                tx,
                burns,
                dust,
                replaces,
            } => self.intend_burn(&tx, &burns, dust, replaces, now),
            RedemptionCommand::RecordBurnCompleted {
                burn_tx_hash,
                block,
            } => self.record_burn_completed(burn_tx_hash, block, now),
            RedemptionCommand::RecordBurnFailed { failure } => {
                self.record_burn_failed(failure, now)
            }
            RedemptionCommand::Retry { reason } => self.retry(reason, now),
            RedemptionCommand::RecordBurnByOperator {
                reason,
                burn_tx_hash,
                burns,
                block,
            } => self.record_burn_by_operator(
                reason,
                burn_tx_hash,
                burns,
                block,
                now,
            ),
            RedemptionCommand::Close { reason, tx_hash } => {
                self.close(reason, tx_hash, now)
            }
            RedemptionCommand::RequestReturn { transfer, reason } => {
                self.request_return(transfer, reason, now)
            }
            RedemptionCommand::IntendReturn { tx, replaces } => {
                self.intend_return(&tx, replaces, now)
            }
            RedemptionCommand::RecordReturned { tx_hash, block } => {
                self.record_returned(tx_hash, block, now)
            }
            RedemptionCommand::Attribute { transfer, reason } => {
                let mut events = self.detect(transfer, now)?;
                // A repeat (already detected the same way) records nothing.
                if !events.is_empty() {
                    events.insert(
                        0,
                        RedemptionEvent::Attributed {
                            reason,
                            attributed_at: now,
                        },
                    );
                }
                Ok(events)
            }
        }
    }

    /// Which failures an operator may run again, and from where.
    fn retry(
        &self,
        reason: OperatorReason,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        let Self::Failed {
            reason: failure,
            alpaca,
            journal_completed_at,
            ..
        } = self
        else {
            return Err(invalid("Retry", self));
        };
        let retryable = match failure {
            FailureReason::PollTimedOut { .. } => alpaca.is_some(),
            FailureReason::BurnFailed { .. } => {
                alpaca.is_some() && journal_completed_at.is_some()
            }
            // Alpaca answers a repeated redeem call (same Idempotency-Key)
            // with the same refusal: the tokens go back instead.
            FailureReason::AlpacaRejected { .. }
            | FailureReason::BelowMinimumQuantity { .. }
            | FailureReason::UnrepresentableQuantity { .. } => false,
        };
        if !retryable {
            return Err(RedemptionError::NotRetryable {
                reason: failure.to_string(),
            });
        }
        Ok(vec![RedemptionEvent::Retried {
            reason,
            retried_at: now,
        }])
    }

    /// A burn the chain shows (found by a retry's search, or done by
    /// hand): recorded instead of burning again.
    fn record_burn_by_operator(
        &self,
        reason: OperatorReason,
        burn_tx_hash: TxHash,
        burns: Vec<ReceiptBurn>,
        block: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        match self {
            Self::NotDetected => Err(RedemptionError::NotDetected),
            Self::JournalCompleted { detection, .. }
            | Self::Burning { detection, .. }
            | Self::Failed {
                detection,
                reason: FailureReason::BurnFailed { .. },
                journal_completed_at: Some(_),
                ..
            } => {
                let burned = burns
                    .iter()
                    .try_fold(U256::ZERO, |sum, burn| {
                        sum.checked_add(burn.shares)
                    })
                    .unwrap_or(U256::MAX);
                let expected = detection.burn_shares();
                if burned != expected {
                    return Err(RedemptionError::RecordedBurnMismatch {
                        burned,
                        expected,
                    });
                }
                Ok(vec![RedemptionEvent::BurnRecordedByOperator {
                    reason,
                    vault: detection.transfer.vault,
                    burn_tx_hash,
                    burns,
                    block,
                    recorded_at: now,
                }])
            }
            Self::Completed {
                burn_tx_hash: recorded,
                ..
            } if *recorded == burn_tx_hash => Ok(Vec::new()),
            other => Err(invalid("RecordBurnByOperator", other)),
        }
    }

    /// Only a failed redemption, or one Alpaca was never asked about, is
    /// closed: anything in between may still move money.
    fn close(
        &self,
        reason: OperatorReason,
        tx_hash: Option<TxHash>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        match self {
            Self::NotDetected => Err(RedemptionError::NotDetected),
            Self::Closed { .. } => Ok(Vec::new()),
            Self::Detected { .. } | Self::Failed { .. } => {
                check_echo(self.burn_tx_hash(), tx_hash)?;
                Ok(vec![RedemptionEvent::Closed {
                    reason,
                    closed_at: now,
                }])
            }
            other => Err(invalid("Close", other)),
        }
    }

    fn detect(
        &self,
        transfer: DetectedTransfer,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        // A transfer being returned is never redeemed.
        if self.return_order().is_some() {
            return Err(invalid("Detect", self));
        }
        if let Some(existing) = self.detection() {
            if existing.transfer == transfer {
                return Ok(Vec::new());
            }
            return Err(RedemptionError::DetectedDifferently {
                tx_hash: existing.transfer.tx_hash,
                log_index: existing.transfer.log_index,
            });
        }
        let shares = transfer.shares;
        let (alpaca_qty, dust, failure) = match split_for_alpaca(shares) {
            Ok(split) => (
                split.alpaca,
                split.dust,
                split
                    .alpaca
                    .is_none()
                    .then_some(FailureReason::BelowMinimumQuantity { shares }),
            ),
            Err(_) => (
                None,
                U256::ZERO,
                Some(FailureReason::UnrepresentableQuantity { shares }),
            ),
        };
        let mut events = vec![RedemptionEvent::Detected {
            detection: Detection {
                transfer,
                alpaca_qty,
                dust,
                detected_at: now,
            },
        }];
        if let Some(reason) = failure {
            events.push(RedemptionEvent::Failed {
                reason,
                resolves: None,
                failed_at: now,
            });
        }
        Ok(events)
    }

    fn record_alpaca_call(
        &self,
        tokenization_request_id: String,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        if let Some(alpaca) = self.alpaca() {
            return if alpaca.tokenization_request_id == tokenization_request_id
            {
                Ok(Vec::new())
            } else {
                Err(RedemptionError::TokenizationRequestMismatch {
                    recorded: alpaca.tokenization_request_id.clone(),
                    given: tokenization_request_id,
                })
            };
        }
        match self {
            Self::NotDetected => Err(RedemptionError::NotDetected),
            Self::Detected { .. } => Ok(vec![RedemptionEvent::AlpacaCalled {
                tokenization_request_id,
                called_at: now,
            }]),
            other => Err(invalid("RecordAlpacaCall", other)),
        }
    }

    fn record_journal_completed(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        match self {
            Self::NotDetected => Err(RedemptionError::NotDetected),
            Self::AlpacaCalled { .. } => {
                Ok(vec![RedemptionEvent::AlpacaJournalCompleted {
                    completed_at: now,
                }])
            }
            Self::JournalCompleted { .. }
            | Self::Burning { .. }
            | Self::Completed { .. } => Ok(Vec::new()),
            other => Err(invalid("RecordJournalCompleted", other)),
        }
    }

    fn record_rejected(
        &self,
        refusal: Option<Refusal>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        match self {
            Self::NotDetected => Err(RedemptionError::NotDetected),
            Self::Detected { .. } | Self::AlpacaCalled { .. } => {
                Ok(vec![RedemptionEvent::Failed {
                    reason: FailureReason::AlpacaRejected { refusal },
                    resolves: None,
                    failed_at: now,
                }])
            }
            Self::Failed {
                reason: FailureReason::AlpacaRejected { .. },
                ..
            } => Ok(Vec::new()),
            other => Err(invalid("RecordAlpacaRejected", other)),
        }
    }

    fn record_poll_timeout(
        &self,
        waited_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        match self {
            Self::NotDetected => Err(RedemptionError::NotDetected),
            Self::AlpacaCalled { .. } => Ok(vec![RedemptionEvent::Failed {
                reason: FailureReason::PollTimedOut { waited_secs },
                resolves: None,
                failed_at: now,
            }]),
            Self::Failed {
                reason: FailureReason::PollTimedOut { .. },
                ..
            } => Ok(Vec::new()),
            other => Err(invalid("RecordPollTimeout", other)),
        }
    }

    fn intend_burn(
        &self,
        tx: &SignedTx,
        burns: &[ReceiptBurn],
        dust: U256,
        replaces: Option<TxHash>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        let intended = || RedemptionEvent::BurnIntended {
            tx: tx.clone(),
            burns: burns.to_vec(),
            dust,
            replaces,
            intended_at: now,
        };
        match self {
            Self::NotDetected => Err(RedemptionError::NotDetected),
            Self::JournalCompleted { detection, .. } => {
                check_burn_amounts(detection, burns, dust)?;
                match replaces {
                    None => Ok(vec![intended()]),
                    Some(given) => {
                        Err(RedemptionError::UnknownAttempt { given })
                    }
                }
            }
            Self::Burning {
                detection,
                burn,
                superseded,
                ..
            } => {
                if burn.tx.hash == tx.hash {
                    return Ok(Vec::new());
                }
                let Some(given) = replaces else {
                    return Err(invalid("IntendBurn", self));
                };
                if given != burn.tx.hash {
                    return Err(RedemptionError::NotCurrentAttempt {
                        given,
                        current: burn.tx.hash,
                    });
                }
                let used = u32::try_from(superseded.len()).unwrap_or(u32::MAX);
                if used >= MAX_BURN_REPLACEMENTS {
                    return Err(RedemptionError::ReplacementBudgetExhausted {
                        used,
                    });
                }
                check_burn_amounts(detection, burns, dust)?;
                Ok(vec![intended()])
            }
            other => Err(invalid("IntendBurn", other)),
        }
    }

    fn record_burn_completed(
        &self,
        burn_tx_hash: TxHash,
        block: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        match self {
            Self::NotDetected => Err(RedemptionError::NotDetected),
            Self::Burning {
                detection,
                burn,
                superseded,
                ..
            } => {
                let ours = burn.tx.hash == burn_tx_hash
                    || superseded.iter().any(|tx| tx.hash == burn_tx_hash);
                if !ours {
                    return Err(RedemptionError::UnknownAttempt {
                        given: burn_tx_hash,
                    });
                }
                Ok(vec![RedemptionEvent::Completed {
                    vault: detection.transfer.vault,
                    burn_tx_hash,
                    burns: burn.burns.clone(),
                    block,
                    completed_at: now,
                }])
            }
            Self::Completed {
                burn_tx_hash: recorded,
                ..
            } if *recorded == burn_tx_hash => Ok(Vec::new()),
            other => Err(invalid("RecordBurnCompleted", other)),
        }
    }

    fn record_burn_failed(
        &self,
        failure: BurnFailure,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        let failed = move |resolves| {
            Ok(vec![RedemptionEvent::Failed {
                reason: FailureReason::BurnFailed { failure },
                resolves,
                failed_at: now,
            }])
        };
        match self {
            Self::NotDetected => Err(RedemptionError::NotDetected),
            Self::JournalCompleted { .. } => failed(None),
            Self::Burning { burn, .. } => failed(Some(burn.tx.hash)),
            Self::Failed {
                reason: FailureReason::BurnFailed { .. },
                ..
            } => Ok(Vec::new()),
            other => Err(invalid("RecordBurnFailed", other)),
        }
    }

    fn evolve(self, event: RedemptionEvent) -> Self {
        match (self, event) {
            // The operator's note; `Detected` follows.
            (state @ Self::NotDetected, RedemptionEvent::Attributed { .. }) => {
                state
            }
            (Self::NotDetected, RedemptionEvent::Detected { detection }) => {
                Self::Detected { detection }
            }
            (
                Self::Detected { detection },
                RedemptionEvent::AlpacaCalled {
                    tokenization_request_id,
                    called_at,
                },
            ) => Self::AlpacaCalled {
                detection,
                alpaca: AlpacaCall {
                    tokenization_request_id,
                    called_at,
                    polling_since: None,
                },
            },
            (
                Self::AlpacaCalled { detection, alpaca },
                RedemptionEvent::AlpacaJournalCompleted { completed_at },
            ) => Self::JournalCompleted {
                detection,
                alpaca,
                journal_completed_at: completed_at,
            },
            (
                Self::JournalCompleted {
                    detection,
                    alpaca,
                    journal_completed_at,
                },
                RedemptionEvent::BurnIntended {
                    tx,
                    burns,
                    dust,
                    intended_at,
                    ..
                },
            ) => Self::Burning {
                detection,
                alpaca,
                journal_completed_at,
                burn: BurnAttempt {
                    tx,
                    burns,
                    dust,
                    intended_at,
                },
                superseded: Vec::new(),
            },
            (
                Self::Burning {
                    detection,
                    alpaca,
                    journal_completed_at,
                    burn,
                    mut superseded,
                },
                RedemptionEvent::BurnIntended {
                    tx,
                    burns,
                    dust,
                    intended_at,
                    ..
                },
            ) => {
                superseded.push(burn.tx);
                Self::Burning {
                    detection,
                    alpaca,
                    journal_completed_at,
                    burn: BurnAttempt {
                        tx,
                        burns,
                        dust,
                        intended_at,
                    },
                    superseded,
                }
            }
            (
                Self::Burning {
                    detection, alpaca, ..
                },
                RedemptionEvent::Completed {
                    burn_tx_hash,
                    burns,
                    block,
                    completed_at,
                    ..
                },
            )
            | (
                Self::JournalCompleted {
                    detection, alpaca, ..
                }
                | Self::Burning {
                    detection, alpaca, ..
                }
                | Self::Failed {
                    detection,
                    alpaca: Some(alpaca),
                    ..
                },
                RedemptionEvent::BurnRecordedByOperator {
                    burn_tx_hash,
                    burns,
                    block,
                    recorded_at: completed_at,
                    ..
                },
            ) => Self::Completed {
                detection,
                alpaca,
                burns,
                burn_tx_hash,
                block,
                completed_at,
            },
            (
                Self::Failed {
                    detection,
                    alpaca,
                    reason: failure,
                    journal_completed_at,
                    ..
                },
                RedemptionEvent::Retried { retried_at, .. },
            ) => retried(
                detection,
                alpaca,
                &failure,
                journal_completed_at,
                retried_at,
            ),
            (
                state @ (Self::Detected { .. } | Self::Failed { .. }),
                RedemptionEvent::Closed { reason, closed_at },
            ) => closed(state, reason, closed_at),
            (
                state,
                RedemptionEvent::Failed {
                    reason, failed_at, ..
                },
            ) => match state {
                Self::Detected { detection } => Self::Failed {
                    detection,
                    alpaca: None,
                    burn: None,
                    journal_completed_at: None,
                    reason,
                    failed_at,
                },
                Self::AlpacaCalled { detection, alpaca } => Self::Failed {
                    detection,
                    alpaca: Some(alpaca),
                    burn: None,
                    journal_completed_at: None,
                    reason,
                    failed_at,
                },
                Self::JournalCompleted {
                    detection,
                    alpaca,
                    journal_completed_at,
                } => Self::Failed {
                    detection,
                    alpaca: Some(alpaca),
                    burn: None,
                    journal_completed_at: Some(journal_completed_at),
                    reason,
                    failed_at,
                },
                Self::Burning {
                    detection,
                    alpaca,
                    burn,
                    journal_completed_at,
                    ..
                } => Self::Failed {
                    detection,
                    alpaca: Some(alpaca),
                    burn: Some(burn),
                    journal_completed_at: Some(journal_completed_at),
                    reason,
                    failed_at,
                },
                // `decide` emits Failed from no other state.
                other => other,
            },
            // `decide` never emits any other combination.
            (state, event) => state.ignoring(&event),
        }
    }
}

impl Redemption {
    /// A stored event this state cannot follow: kept in the log, ignored
    /// here, reported.
    pub(super) fn ignoring(self, event: &RedemptionEvent) -> Self {
        crate::telemetry::aggregate::impossible_event(
            "redemption",
            self.state_name(),
            &cqrs_es::DomainEvent::event_type(event),
        );
        self
    }
}

/// A closed redemption keeps what it knew (`decide` only closes
/// `Detected` and `Failed`).
fn closed(
    state: Redemption,
    reason: OperatorReason,
    closed_at: DateTime<Utc>,
) -> Redemption {
    let closed_from = state.state_name().to_owned();
    match state {
        Redemption::Detected { detection } => Redemption::Closed {
            detection,
            alpaca: None,
            reason,
            closed_from,
            closed_at,
        },
        Redemption::Failed {
            detection, alpaca, ..
        } => Redemption::Closed {
            detection,
            alpaca,
            reason,
            closed_from,
            closed_at,
        },
        other => other,
    }
}

/// Where a retried redemption resumes (`decide` only emits `Retried` for
/// the failures handled here).
fn retried(
    detection: Detection,
    alpaca: Option<AlpacaCall>,
    failure: &FailureReason,
    journal_completed_at: Option<DateTime<Utc>>,
    retried_at: DateTime<Utc>,
) -> Redemption {
    match (failure, alpaca, journal_completed_at) {
        (FailureReason::PollTimedOut { .. }, Some(alpaca), _) => {
            Redemption::AlpacaCalled {
                detection,
                alpaca: AlpacaCall {
                    polling_since: Some(retried_at),
                    ..alpaca
                },
            }
        }
        (
            FailureReason::BurnFailed { .. },
            Some(alpaca),
            Some(journal_completed_at),
        ) => Redemption::JournalCompleted {
            detection,
            alpaca,
            journal_completed_at,
        },
        // `decide` retries nothing else; a stored stream that did is
        // kept where it was told to go: back to the start of the flow.
        _ => Redemption::Detected { detection },
    }
}

fn check_burn_amounts(
    detection: &Detection,
    burns: &[ReceiptBurn],
    dust: U256,
) -> Result<(), RedemptionError> {
    let burned = burns
        .iter()
        .try_fold(U256::ZERO, |sum, burn| sum.checked_add(burn.shares));
    let expected = detection.burn_shares();
    match burned {
        Some(burned) if burned == expected && dust == detection.dust => Ok(()),
        burned => Err(RedemptionError::BurnMismatch(Box::new(BurnMismatch {
            burned,
            dust,
            expected,
            expected_dust: detection.dust,
        }))),
    }
}
