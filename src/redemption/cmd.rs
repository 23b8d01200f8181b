use alloy::primitives::{TxHash, U256};

use super::{BurnFailure, DetectedTransfer};
use crate::chain::SignedTx;
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
}
