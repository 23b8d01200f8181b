//! Signed transactions, their observed status, and the pure decision of
//! what to do next — the core of "never twice".
//!
//! Lifecycle (shared by mints and burns):
//! 1. [`ChainClient::sign`](super::ChainClient::sign) builds and signs; it
//!    does not broadcast.
//! 2. The owning aggregate persists the [`SignedTx`] in its intent event
//!    and calls [`record_intent`](super::record_intent) in the same commit.
//! 3. Only then is it broadcast; re-broadcasts send the identical bytes.
//! 4. [`ChainClient::classify`](super::ChainClient::classify) observes the
//!    chain and [`TxLifecycle::decide`] turns that into one [`TxAction`].
//!    A missing receipt or an RPC error is never a failure; only a revert
//!    or a nonce provably taken by a transaction that is not ours allows a
//!    replacement.
//! 5. A consumed nonce without a visible receipt means one of *our*
//!    transactions landed (nobody else signs for this wallet): the owner
//!    looks for the landed attempt's evidence in the vault's logs
//!    ([`VaultService::find_landing`](super::VaultService::find_landing))
//!    and never sends another transaction for it.

use alloy::consensus::{Transaction as _, TxEnvelope};
use alloy::eips::eip2718::Decodable2718;
use alloy::primitives::{Address, B256, Bytes, Log, TxHash};
use chrono::{DateTime, Utc};
use receipt_vault::errors::VaultRevert;
use serde::{Deserialize, Serialize};

/// A fully signed EIP-1559 transaction, ready to broadcast any number of
/// times. Stored verbatim inside the owner's intent event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    /// EIP-2718 encoding, exactly what `eth_sendRawTransaction` receives.
    pub raw: Bytes,
    pub hash: TxHash,
    pub nonce: u64,
    pub chain_id: u64,
    pub from: Address,
    pub to: Address,
    pub gas_limit: u64,
    #[serde(with = "u128_decimal")]
    pub max_fee_per_gas: u128,
    #[serde(with = "u128_decimal")]
    pub max_priority_fee_per_gas: u128,
    pub signed_at: DateTime<Utc>,
    /// The chain head seen just before signing: the transaction cannot be
    /// in an earlier block, so evidence searches start here. Absent in
    /// intents recorded before it existed (searches then start at the
    /// configured `start_block`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_at_signing: Option<u64>,
}

/// u128 as a decimal string: cqrs-es round-trips events through
/// `serde_json::Value`, whose numbers cannot hold values above u64::MAX.
mod u128_decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &u128,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<u128, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored transaction {hash} does not decode as EIP-2718")]
pub struct UndecodableTx {
    pub hash: TxHash,
}

impl SignedTx {
    /// The calldata, decoded from the raw bytes (used to replay a revert
    /// and to build a replacement with the same effect).
    pub fn calldata(&self) -> Result<Bytes, UndecodableTx> {
        TxEnvelope::decode_2718(&mut self.raw.as_ref())
            .map(|envelope| envelope.input().clone())
            .map_err(|_| UndecodableTx { hash: self.hash })
    }
}

/// What a mined receipt tells us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptSummary {
    pub block_number: u64,
    pub block_hash: B256,
    /// `None` when the landing was proven from the vault's logs because
    /// the node would not return the receipt itself.
    pub gas_used: Option<u64>,
    pub logs: Vec<Log>,
}

/// Why an observation is inconclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uncertainty {
    /// An RPC call failed; nothing can be concluded.
    Rpc {
        operation: &'static str,
        message: String,
    },
    /// The nonce has moved past this transaction but the node still knows
    /// it: contradictory, so wait.
    KnownWithoutReceipt,
    /// A receipt without a block number (a node bug or a pending receipt).
    ReceiptWithoutBlock,
}

/// The classification of a persisted transaction (lessons §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    /// Receipt with status 1, at least `confirmations` deep.
    Mined { receipt: ReceiptSummary },
    /// Receipt with status 0, at least `confirmations` deep. `revert` is
    /// the revert replayed with `eth_call` at that block, when it
    /// reproduced with data.
    Reverted {
        receipt: ReceiptSummary,
        revert: Option<VaultRevert>,
    },
    /// Receipt found but not yet buried under enough blocks.
    Unconfirmed { block_number: u64 },
    /// No receipt and the wallet's settled nonce has not passed ours: it
    /// can still be mined. Only the identical bytes may be rebroadcast.
    Pending,
    /// No receipt, the settled nonce has passed ours, and neither a second
    /// receipt lookup nor `eth_getTransactionByHash` finds it. Nobody but
    /// our signer uses this wallet, so a transaction of ours took the
    /// nonce: missing evidence from one (lagging or lying) backend is not
    /// evidence of absence. Never replaced; the owner looks for the
    /// landed attempt instead.
    NonceConsumed,
    /// The nonce was taken by `consumed_by`, a transaction that is not one
    /// of ours (someone else signed with this key): ours can never be
    /// mined.
    Dead { consumed_by: TxHash },
    /// Contradictory observations or RPC errors.
    Uncertain { reason: Uncertainty },
}

/// Whether the transaction is the owner's latest attempt or one it has
/// already replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptRole {
    Current,
    /// A replacement was signed after this attempt was proven reverted or
    /// dead.
    Superseded,
}

/// Why an owner should stop trying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxFailure {
    /// The contract refused on purpose; resending cannot help.
    DeterministicRevert(VaultRevert),
    ReplacementBudgetExhausted {
        used: u32,
    },
}

/// The next step for an owner driving a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxAction {
    RecordSuccess,
    /// Send the identical bytes again.
    Rebroadcast,
    Wait,
    /// Sign the same call again with a fresh nonce, gas and fees.
    Replace,
    Fail {
        reason: TxFailure,
    },
    /// The nonce is consumed but the node shows no receipt: find which of
    /// our attempts landed (logs, then the consuming block). Never send.
    FindLanding,
    /// A superseded attempt that is reverted or dead: nothing to do.
    NothingToDo,
    /// A superseded attempt was mined after all. Both attempts may have
    /// landed: stop and alert an operator to reconcile.
    SupersededAttemptMined,
}

/// The owner's replacement budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLifecycle {
    pub replacements_used: u32,
    pub max_replacements: u32,
}

impl TxLifecycle {
    pub const DEFAULT_MAX_REPLACEMENTS: u32 = 4;

    pub const fn new(replacements_used: u32) -> Self {
        Self {
            replacements_used,
            max_replacements: Self::DEFAULT_MAX_REPLACEMENTS,
        }
    }

    pub fn decide(&self, role: AttemptRole, status: &TxStatus) -> TxAction {
        match (role, status) {
            (AttemptRole::Superseded, TxStatus::Mined { .. }) => {
                TxAction::SupersededAttemptMined
            }
            // Never revive a replaced attempt, whatever the node says now.
            (AttemptRole::Superseded, _) => TxAction::NothingToDo,
            (AttemptRole::Current, TxStatus::Mined { .. }) => {
                TxAction::RecordSuccess
            }
            (
                AttemptRole::Current,
                TxStatus::Reverted {
                    revert: Some(revert),
                    ..
                },
            ) if revert.is_deterministic() => TxAction::Fail {
                reason: TxFailure::DeterministicRevert(revert.clone()),
            },
            (
                AttemptRole::Current,
                TxStatus::Reverted { .. } | TxStatus::Dead { .. },
            ) => {
                if self.replacements_used < self.max_replacements {
                    TxAction::Replace
                } else {
                    TxAction::Fail {
                        reason: TxFailure::ReplacementBudgetExhausted {
                            used: self.replacements_used,
                        },
                    }
                }
            }
            (AttemptRole::Current, TxStatus::Pending) => TxAction::Rebroadcast,
            (AttemptRole::Current, TxStatus::NonceConsumed) => {
                TxAction::FindLanding
            }
            (
                AttemptRole::Current,
                TxStatus::Unconfirmed { .. } | TxStatus::Uncertain { .. },
            ) => TxAction::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;

    fn receipt() -> ReceiptSummary {
        ReceiptSummary {
            block_number: 10,
            block_hash: B256::repeat_byte(1),
            gas_used: Some(21_000),
            logs: vec![],
        }
    }

    fn dead() -> TxStatus {
        TxStatus::Dead {
            consumed_by: TxHash::repeat_byte(9),
        }
    }

    fn reverted(revert: Option<VaultRevert>) -> TxStatus {
        TxStatus::Reverted {
            receipt: receipt(),
            revert,
        }
    }

    #[test]
    fn decision_table_for_the_current_attempt() {
        let fresh = TxLifecycle::new(0);
        let expired = VaultRevert::CertificationExpired {
            from: address!("0x0000000000000000000000000000000000000001"),
            to: address!("0x0000000000000000000000000000000000000002"),
        };
        let cases = [
            (
                TxStatus::Mined { receipt: receipt() },
                TxAction::RecordSuccess,
            ),
            (
                reverted(Some(expired.clone())),
                TxAction::Fail {
                    reason: TxFailure::DeterministicRevert(expired),
                },
            ),
            (reverted(Some(VaultRevert::Empty)), TxAction::Replace),
            (
                reverted(Some(VaultRevert::Unknown(Bytes::from_static(&[1])))),
                TxAction::Replace,
            ),
            (reverted(None), TxAction::Replace),
            (dead(), TxAction::Replace),
            (TxStatus::NonceConsumed, TxAction::FindLanding),
            (TxStatus::Pending, TxAction::Rebroadcast),
            (TxStatus::Unconfirmed { block_number: 9 }, TxAction::Wait),
            (
                TxStatus::Uncertain {
                    reason: Uncertainty::KnownWithoutReceipt,
                },
                TxAction::Wait,
            ),
            (
                TxStatus::Uncertain {
                    reason: Uncertainty::Rpc {
                        operation: "eth_getTransactionReceipt",
                        message: "timeout".into(),
                    },
                },
                TxAction::Wait,
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(
                fresh.decide(AttemptRole::Current, &status),
                expected,
                "{status:?}"
            );
        }
    }

    #[test]
    fn replacement_budget_is_enforced() {
        let spent = TxLifecycle {
            replacements_used: 2,
            max_replacements: 2,
        };
        let exhausted = TxAction::Fail {
            reason: TxFailure::ReplacementBudgetExhausted { used: 2 },
        };
        assert_eq!(spent.decide(AttemptRole::Current, &dead()), exhausted);
        assert_eq!(
            spent.decide(AttemptRole::Current, &reverted(None)),
            exhausted
        );
        // The budget does not affect success or waiting.
        assert_eq!(
            spent.decide(AttemptRole::Current, &TxStatus::Pending),
            TxAction::Rebroadcast
        );
        let one_left = TxLifecycle {
            replacements_used: 1,
            max_replacements: 2,
        };
        assert_eq!(
            one_left.decide(AttemptRole::Current, &dead()),
            TxAction::Replace
        );
    }

    #[test]
    fn superseded_attempts_are_never_revived() {
        let lifecycle = TxLifecycle::new(1);
        for status in [
            dead(),
            TxStatus::NonceConsumed,
            TxStatus::Pending,
            reverted(None),
            TxStatus::Unconfirmed { block_number: 1 },
            TxStatus::Uncertain {
                reason: Uncertainty::ReceiptWithoutBlock,
            },
        ] {
            assert_eq!(
                lifecycle.decide(AttemptRole::Superseded, &status),
                TxAction::NothingToDo,
                "{status:?}"
            );
        }
        assert_eq!(
            lifecycle.decide(
                AttemptRole::Superseded,
                &TxStatus::Mined { receipt: receipt() }
            ),
            TxAction::SupersededAttemptMined
        );
    }

    #[test]
    fn signed_tx_serde_round_trip_and_bad_raw() {
        let tx = SignedTx {
            raw: Bytes::from_static(&[0x02, 0xc0]),
            hash: TxHash::repeat_byte(7),
            nonce: 3,
            chain_id: 8453,
            from: Address::repeat_byte(1),
            to: Address::repeat_byte(2),
            gas_limit: 250_000,
            max_fee_per_gas: u128::from(u64::MAX) + 1,
            max_priority_fee_per_gas: 1,
            signed_at: DateTime::parse_from_rfc3339("2026-11-28T05:31:00Z")
                .unwrap()
                .with_timezone(&Utc),
            head_at_signing: Some(41),
        };
        let json = serde_json::to_string(&tx).unwrap();
        assert!(json.contains("\"max_fee_per_gas\":\"18446744073709551616\""));
        assert_eq!(serde_json::from_str::<SignedTx>(&json).unwrap(), tx);
        // Events pass through serde_json::Value in cqrs-es.
        let value = serde_json::to_value(&tx).unwrap();
        assert_eq!(serde_json::from_value::<SignedTx>(value).unwrap(), tx);
        let summary = ReceiptSummary {
            gas_used: None,
            ..receipt()
        };
        let value = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            serde_json::from_value::<ReceiptSummary>(value).unwrap(),
            summary
        );
        assert_eq!(tx.calldata(), Err(UndecodableTx { hash: tx.hash }));
        // Intents recorded before `head_at_signing` existed still load.
        let mut legacy = serde_json::to_value(&tx).unwrap();
        legacy.as_object_mut().unwrap().remove("head_at_signing");
        let legacy: SignedTx = serde_json::from_value(legacy).unwrap();
        assert_eq!(legacy.head_at_signing, None);
    }
}
