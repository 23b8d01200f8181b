//! A redemption's id, derived from the transfer that started it.

use alloy::primitives::TxHash;
use serde::{Deserialize, Serialize};

use crate::vocabulary::string_newtype;

/// Our id for a redemption, sent to Alpaca as `issuer_request_id`:
/// `0x<transfer tx hash>-<log index>`. Derived from the transfer alone, so
/// detecting it again is a no-op, and two transfers in one transaction are
/// two redemptions.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct RedemptionId(String);

string_newtype!(RedemptionId, InvalidRedemptionId);

impl RedemptionId {
    pub fn for_transfer(tx_hash: TxHash, log_index: u64) -> Self {
        Self(format!("{tx_hash:#x}-{log_index}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid issuer request id {value:?}: expected 0x<64 hex>-<log index>")]
pub struct InvalidRedemptionId {
    pub value: String,
}

impl RedemptionId {
    /// Parses `0x<64 lowercase hex>-<log index>`, the only form
    /// [`Self::for_transfer`] writes.
    pub fn new(s: &str) -> Result<Self, InvalidRedemptionId> {
        let invalid = || InvalidRedemptionId {
            value: s.chars().take(200).collect(),
        };
        let (hash, index) = s.split_once('-').ok_or_else(invalid)?;
        let hex_ok = hash.len() == 66
            && hash.starts_with("0x")
            && hash
                .bytes()
                .skip(2)
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let index_ok = !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && (index == "0" || !index.starts_with('0'));
        if !hex_ok || !index_ok {
            return Err(invalid());
        }
        let hash: TxHash = hash.parse().map_err(|_| invalid())?;
        let index: u64 = index.parse().map_err(|_| invalid())?;
        Ok(Self::for_transfer(hash, index))
    }
}
