use alloy::primitives::{TxHash, U256};

use super::{
    FailureClass, MintId, MintRequest, MintedTokens, ReplacementCause, Vault,
};
use crate::chain::SignedTx;
use crate::operator::OperatorReason;

/// Commands carry already-validated values: parsing happens at the edge
/// (HTTP handlers) or in the driver (chain observations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MintCommand {
    /// Alpaca's mint request, validated and resolved (client, vault).
    Initiate { request: MintRequest },
    /// Alpaca journaled the shares to us (`status: completed`).
    ConfirmJournal { issuer_request_id: MintId },
    /// Alpaca did not journal the shares (`status: rejected`).
    RejectJournal {
        issuer_request_id: MintId,
        reason: Option<String>,
    },
    /// The first mint transaction is signed; persist it before sending.
    RecordTxIntent { tx: SignedTx },
    /// The current transaction is proven dead or reverted (not
    /// deterministically); persist its replacement before sending.
    RecordReplacement {
        replaced: TxHash,
        cause: ReplacementCause,
        tx: SignedTx,
    },
    /// The current transaction was mined and deposited `shares`.
    RecordMinted {
        tx_hash: TxHash,
        vault: Vault,
        receipt_id: U256,
        shares: U256,
        block: u64,
        gas_used: Option<u64>,
    },
    /// Stop: an operator must look at this mint.
    RecordFailure {
        classification: FailureClass,
        reason: String,
        tx_hash: Option<TxHash>,
    },
    /// Alpaca answered 200 to the mint callback.
    RecordCallbackDelivered,
    /// Operator: a failed mint runs again. The caller has searched the
    /// chain for its deposit first and found none.
    Retry { reason: OperatorReason },
    /// Operator: the chain shows this failed mint's deposit.
    Recover {
        reason: OperatorReason,
        minted: MintedTokens,
    },
    /// Operator: stop this mint for good. `tx_hash` echoes the mint's
    /// transaction, if it has one.
    Close {
        reason: OperatorReason,
        tx_hash: Option<TxHash>,
    },
}

impl MintCommand {
    /// Its name in traces.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Initiate { .. } => "initiate",
            Self::ConfirmJournal { .. } => "confirm_journal",
            Self::RejectJournal { .. } => "reject_journal",
            Self::RecordTxIntent { .. } => "record_tx_intent",
            Self::RecordReplacement { .. } => "record_replacement",
            Self::RecordMinted { .. } => "record_minted",
            Self::RecordFailure { .. } => "record_failure",
            Self::RecordCallbackDelivered => "record_callback_delivered",
            Self::Retry { .. } => "retry",
            Self::Recover { .. } => "recover",
            Self::Close { .. } => "close",
        }
    }
}
