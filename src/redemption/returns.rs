//! Sending an unattributed transfer back to its sender (an operator's
//! `return`). It lives on the redemption aggregate because it owns the
//! same transfer under the same id: a transfer is either attributed
//! (`Detected`, then redeemed) or returned, never both, and the first
//! command to commit decides which.
//!
//! `ReturnRequested` → `ReturnIntended` (the signed transfer, recorded
//! with its `tx_intents` row before it is broadcast, through
//! [`crate::chain::TxPipeline`]) → `Returned` once the chain shows it.

use alloy::primitives::{Address, TxHash, U256};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    MAX_BURN_REPLACEMENTS, Redemption, RedemptionError, RedemptionEvent,
    invalid,
};
use crate::chain::SignedTx;
use crate::operator::OperatorReason;
use crate::tokenized_asset::{Network, TokenSymbol, UnderlyingSymbol};

/// An unattributed transfer, as the operator asked to return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnTransfer {
    pub network: Network,
    pub vault: Address,
    pub underlying: UnderlyingSymbol,
    pub token: TokenSymbol,
    pub tx_hash: TxHash,
    pub log_index: u64,
    pub block: u64,
    /// The sender: the tokens go back here.
    pub from_wallet: Address,
    pub shares: U256,
    /// When the monitor recorded it as unattributed.
    pub detected_at: String,
}

/// The operator's request, as the aggregate keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnOrder {
    pub transfer: ReturnTransfer,
    pub reason: OperatorReason,
    pub requested_at: DateTime<Utc>,
}

impl Redemption {
    /// The return this redemption is, if it is one.
    pub fn return_order(&self) -> Option<&ReturnOrder> {
        match self {
            Self::ReturnRequested { order }
            | Self::Returning { order, .. }
            | Self::Returned { order, .. } => Some(order),
            _ => None,
        }
    }

    /// A repeat of the same request (same transfer, same reason) records
    /// nothing; anything else already recorded here refuses it.
    pub(super) fn request_return(
        &self,
        transfer: ReturnTransfer,
        reason: OperatorReason,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        match self {
            Self::NotDetected => Ok(vec![RedemptionEvent::ReturnRequested {
                transfer,
                reason,
                requested_at: now,
            }]),
            _ => match self.return_order() {
                Some(order)
                    if order.transfer == transfer && order.reason == reason =>
                {
                    Ok(Vec::new())
                }
                _ => Err(invalid("Return", self)),
            },
        }
    }

    /// The first signed return, or a replacement of the current attempt
    /// (proven reverted or dead), within the replacement budget.
    pub(super) fn intend_return(
        &self,
        tx: &SignedTx,
        replaces: Option<TxHash>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        let intended = || RedemptionEvent::ReturnIntended {
            tx: tx.clone(),
            replaces,
            intended_at: now,
        };
        match self {
            Self::ReturnRequested { .. } => match replaces {
                None => Ok(vec![intended()]),
                Some(given) => Err(RedemptionError::UnknownAttempt { given }),
            },
            Self::Returning {
                tx: current,
                superseded,
                ..
            } => {
                if current.hash == tx.hash {
                    return Ok(Vec::new());
                }
                let Some(given) = replaces else {
                    return Err(invalid("IntendReturn", self));
                };
                if given != current.hash {
                    return Err(RedemptionError::NotCurrentAttempt {
                        given,
                        current: current.hash,
                    });
                }
                let used = u32::try_from(superseded.len()).unwrap_or(u32::MAX);
                if used >= MAX_BURN_REPLACEMENTS {
                    return Err(RedemptionError::ReplacementBudgetExhausted {
                        used,
                    });
                }
                Ok(vec![intended()])
            }
            other => Err(invalid("IntendReturn", other)),
        }
    }

    /// The chain shows the return in `tx_hash`.
    pub(super) fn record_returned(
        &self,
        tx_hash: TxHash,
        block: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<RedemptionEvent>, RedemptionError> {
        match self {
            Self::Returning { .. } => Ok(vec![RedemptionEvent::Returned {
                tx_hash,
                block,
                returned_at: now,
            }]),
            Self::Returned {
                tx_hash: recorded, ..
            } if *recorded == tx_hash => Ok(Vec::new()),
            other => Err(invalid("RecordReturned", other)),
        }
    }

    /// The state after one of the return's events.
    pub(super) fn evolve_return(self, event: RedemptionEvent) -> Self {
        match (self, event) {
            (
                Self::NotDetected,
                RedemptionEvent::ReturnRequested {
                    transfer,
                    reason,
                    requested_at,
                },
            ) => Self::ReturnRequested {
                order: ReturnOrder {
                    transfer,
                    reason,
                    requested_at,
                },
            },
            (
                Self::ReturnRequested { order },
                RedemptionEvent::ReturnIntended { tx, .. },
            ) => Self::Returning {
                order,
                tx,
                superseded: Vec::new(),
            },
            (
                Self::Returning {
                    order,
                    tx: old,
                    mut superseded,
                },
                RedemptionEvent::ReturnIntended { tx, .. },
            ) => {
                superseded.push(old);
                Self::Returning {
                    order,
                    tx,
                    superseded,
                }
            }
            (
                Self::Returning { order, .. },
                RedemptionEvent::Returned {
                    tx_hash,
                    block,
                    returned_at,
                },
            ) => Self::Returned {
                order,
                tx_hash,
                block,
                returned_at,
            },
            // `decide` never emits any other combination.
            (state, event) => state.ignoring(&event),
        }
    }
}

impl RedemptionEvent {
    /// One of the return's events (evolved by `evolve_return`).
    pub(super) const fn is_return_step(&self) -> bool {
        matches!(
            self,
            Self::ReturnRequested { .. }
                | Self::ReturnIntended { .. }
                | Self::Returned { .. }
        )
    }
}
