use alloy::primitives::{TxHash, U256};
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{FailureClass, MintRequest, ReplacementCause, Vault};
use crate::chain::SignedTx;
use crate::operator::OperatorReason;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MintEvent {
    Initiated {
        request: MintRequest,
        initiated_at: DateTime<Utc>,
    },
    JournalConfirmed {
        confirmed_at: DateTime<Utc>,
    },
    JournalRejected {
        reason: Option<String>,
        rejected_at: DateTime<Utc>,
    },
    /// Attempt 1, signed and persisted; not necessarily broadcast yet.
    MintTxIntended {
        tx: SignedTx,
        intended_at: DateTime<Utc>,
    },
    /// Attempt `attempt` (≥ 2) replacing `replaced`, which is proven
    /// `cause` and so can never be mined any more.
    MintReplacementIntended {
        replaced: TxHash,
        cause: ReplacementCause,
        tx: SignedTx,
        attempt: u32,
        intended_at: DateTime<Utc>,
    },
    TokensMinted {
        tx_hash: TxHash,
        vault: Vault,
        receipt_id: U256,
        shares: U256,
        block: u64,
        /// `None` when the landing was proven from the vault's logs
        /// because the node would not return the receipt.
        #[serde(default)]
        gas_used: Option<u64>,
        minted_at: DateTime<Utc>,
    },
    MintFailed {
        classification: FailureClass,
        reason: String,
        tx_hash: Option<TxHash>,
        failed_at: DateTime<Utc>,
    },
    CallbackDelivered {
        delivered_at: DateTime<Utc>,
    },
    /// An operator ran a failed mint again (no deposit was on chain).
    MintRetried {
        reason: OperatorReason,
        retried_at: DateTime<Utc>,
    },
    /// An operator found the failed mint's deposit on chain.
    MintRecovered {
        reason: OperatorReason,
        tx_hash: TxHash,
        vault: Vault,
        receipt_id: U256,
        shares: U256,
        block: u64,
        gas_used: Option<u64>,
        recovered_at: DateTime<Utc>,
    },
    /// An operator closed the mint.
    MintClosed {
        reason: OperatorReason,
        closed_at: DateTime<Utc>,
    },
}

impl DomainEvent for MintEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Initiated { .. } => "MintEvent::Initiated",
            Self::JournalConfirmed { .. } => "MintEvent::JournalConfirmed",
            Self::JournalRejected { .. } => "MintEvent::JournalRejected",
            Self::MintTxIntended { .. } => "MintEvent::MintTxIntended",
            Self::MintReplacementIntended { .. } => {
                "MintEvent::MintReplacementIntended"
            }
            Self::TokensMinted { .. } => "MintEvent::TokensMinted",
            Self::MintFailed { .. } => "MintEvent::MintFailed",
            Self::CallbackDelivered { .. } => "MintEvent::CallbackDelivered",
            Self::MintRetried { .. } => "MintEvent::MintRetried",
            Self::MintRecovered { .. } => "MintEvent::MintRecovered",
            Self::MintClosed { .. } => "MintEvent::MintClosed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
