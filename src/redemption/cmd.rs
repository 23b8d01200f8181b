use alloy::primitives::{TxHash, U256};

use super::{BurnFailure, DetectedTransfer};
use crate::chain::SignedTx;
use crate::operator::OperatorReason;
use crate::receipt_inventory::ReceiptBurn;

/// Every command is idempotent: repeating one whose effect is already
/// recorded succeeds without new events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedemptionCommand {
    Detect {
        transfer: DetectedTransfer,
    },
    RecordAlpacaCall {
        tokenization_request_id: String,
    },
    RecordJournalCompleted,
    /// Alpaca answered `rejected` (or refused the redeem call for good).
    RecordAlpacaRejected {
        refusal: Option<super::Refusal>,
    },
    /// Polling gave up after the configured timeout.
    RecordPollTimeout {
        waited_secs: u64,
    },
    /// First burn after the journal completed, or a replacement of a burn
    /// proven reverted or dead (`replaces` = its hash).
    IntendBurn {
        tx: SignedTx,
        burns: Vec<ReceiptBurn>,
        dust: U256,
        replaces: Option<TxHash>,
    },
    RecordBurnCompleted {
        burn_tx_hash: TxHash,
        block: u64,
    },
    RecordBurnFailed {
        failure: BurnFailure,
    },
    /// Operator: run a failed redemption again (poll again, call Alpaca
    /// again, or burn again). The caller has searched the chain for a
    /// burn of it first and found none.
    Retry {
        reason: OperatorReason,
    },
    /// Operator: the chain shows this redemption's burn (found by a
    /// retry's search, or done by hand and checked on chain).
    RecordBurnByOperator {
        reason: OperatorReason,
        burn_tx_hash: TxHash,
        burns: Vec<ReceiptBurn>,
        block: u64,
    },
    /// Operator: an unattributed transfer belongs to this account after
    /// all; it is detected as if its sender had been allow-listed.
    Attribute {
        transfer: DetectedTransfer,
        reason: OperatorReason,
    },
    /// Operator: send an unattributed transfer back to its sender.
    RequestReturn {
        transfer: super::ReturnTransfer,
        reason: OperatorReason,
    },
    /// The signed return transfer, recorded before it is broadcast;
    /// `replaces` = the attempt it supersedes (proven reverted or dead).
    IntendReturn {
        tx: SignedTx,
        replaces: Option<TxHash>,
    },
    RecordReturned {
        tx_hash: TxHash,
        block: u64,
    },
    /// Operator: stop for good; `tx_hash` echoes the burn, if any.
    Close {
        reason: OperatorReason,
        tx_hash: Option<TxHash>,
    },
}

impl RedemptionCommand {
    /// Its name in traces.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Detect { .. } => "detect",
            Self::RecordAlpacaCall { .. } => "record_alpaca_call",
            Self::RecordJournalCompleted => "record_journal_completed",
            Self::RecordAlpacaRejected { .. } => "record_alpaca_rejected",
            Self::RecordPollTimeout { .. } => "record_poll_timeout",
            Self::IntendBurn { .. } => "intend_burn",
            Self::RecordBurnCompleted { .. } => "record_burn_completed",
            Self::RecordBurnFailed { .. } => "record_burn_failed",
            Self::Retry { .. } => "retry",
            Self::RecordBurnByOperator { .. } => "record_burn_by_operator",
            Self::Close { .. } => "close",
            Self::Attribute { .. } => "attribute",
            Self::RequestReturn { .. } => "request_return",
            Self::IntendReturn { .. } => "intend_return",
            Self::RecordReturned { .. } => "record_returned",
        }
    }
}
