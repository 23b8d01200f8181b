use alloy::primitives::{Address, TxHash, U256};
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{Detection, FailureReason};
use crate::chain::SignedTx;
use crate::operator::OperatorReason;
use crate::receipt_inventory::ReceiptBurn;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedemptionEvent {
    /// A transfer into the issuer wallet, attributed to its sender's
    /// account at detection time.
    Detected { detection: Detection },
    /// Alpaca accepted the redeem call.
    AlpacaCalled {
        tokenization_request_id: String,
        called_at: DateTime<Utc>,
    },
    /// Alpaca moved the shares back to the AP: the tokens may be burned.
    AlpacaJournalCompleted { completed_at: DateTime<Utc> },
    /// A signed burn, persisted before it is broadcast. `replaces` names
    /// the attempt it supersedes (proven reverted or dead).
    BurnIntended {
        tx: SignedTx,
        burns: Vec<ReceiptBurn>,
        dust: U256,
        replaces: Option<TxHash>,
        intended_at: DateTime<Utc>,
    },
    Completed {
        vault: Address,
        burn_tx_hash: TxHash,
        burns: Vec<ReceiptBurn>,
        block: u64,
        completed_at: DateTime<Utc>,
    },
    /// Terminal. `resolves` is the burn attempt this failure settles, if
    /// one was signed.
    Failed {
        reason: FailureReason,
        resolves: Option<TxHash>,
        failed_at: DateTime<Utc>,
    },
    /// An operator ran the failed redemption again.
    Retried {
        reason: OperatorReason,
        retried_at: DateTime<Utc>,
    },
    /// An operator recorded a burn the chain shows (never burned again).
    BurnRecordedByOperator {
        reason: OperatorReason,
        vault: Address,
        burn_tx_hash: TxHash,
        burns: Vec<ReceiptBurn>,
        block: u64,
        recorded_at: DateTime<Utc>,
    },
    /// An operator attributed an unattributed transfer to an account;
    /// `Detected` follows in the same commit.
    Attributed {
        reason: OperatorReason,
        attributed_at: DateTime<Utc>,
    },
    /// An operator asked to send an unattributed transfer back to its
    /// sender; its row leaves the unattributed list in this commit.
    ReturnRequested {
        transfer: super::ReturnTransfer,
        reason: OperatorReason,
        requested_at: DateTime<Utc>,
    },
    /// The signed return transfer, persisted (with its `tx_intents` row)
    /// before it is broadcast. `replaces` names the attempt it supersedes.
    ReturnIntended {
        tx: SignedTx,
        replaces: Option<TxHash>,
        intended_at: DateTime<Utc>,
    },
    /// The chain shows the tokens sent back in `tx_hash`.
    Returned {
        tx_hash: TxHash,
        block: u64,
        returned_at: DateTime<Utc>,
    },
    /// An operator closed the redemption.
    Closed {
        reason: OperatorReason,
        closed_at: DateTime<Utc>,
    },
}

impl DomainEvent for RedemptionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Detected { .. } => "RedemptionEvent::Detected",
            Self::AlpacaCalled { .. } => "RedemptionEvent::AlpacaCalled",
            Self::AlpacaJournalCompleted { .. } => {
                "RedemptionEvent::AlpacaJournalCompleted"
            }
            Self::BurnIntended { .. } => "RedemptionEvent::BurnIntended",
            Self::Completed { .. } => "RedemptionEvent::Completed",
            Self::Failed { .. } => "RedemptionEvent::Failed",
            Self::Retried { .. } => "RedemptionEvent::Retried",
            Self::BurnRecordedByOperator { .. } => {
                "RedemptionEvent::BurnRecordedByOperator"
            }
            Self::Closed { .. } => "RedemptionEvent::Closed",
            Self::Attributed { .. } => "RedemptionEvent::Attributed",
            Self::ReturnRequested { .. } => "RedemptionEvent::ReturnRequested",
            Self::ReturnIntended { .. } => "RedemptionEvent::ReturnIntended",
            Self::Returned { .. } => "RedemptionEvent::Returned",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
