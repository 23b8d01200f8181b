//! Evidence that one of our transactions landed, for when the node will
//! not say so itself (a lagging or lying backend answers `null` for a
//! mined transaction).
//!
//! The rule it serves: missing evidence is not evidence of absence. A
//! flow that already has an intent never sends another transaction until
//! either the vault's logs show its effect (then that attempt is recorded)
//! or the chain shows its nonce taken by a transaction that is not ours.

use alloy::primitives::{Address, TxHash, U256};
use alloy::providers::Provider as _;
use alloy::rpc::types::{Filter, Log as RpcLog};
use alloy::sol_types::SolEvent;
use receipt_vault::OffchainAssetReceiptVault as Vault;

use super::client::{ChainError, NonceConsumer};
use super::receipt_info::{ReceiptInformation, ReceiptOp};
use super::tx::{ReceiptSummary, SignedTx};
use super::vault::VaultService;

/// The on-chain effect a flow's transactions have, as the vault logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect<'a> {
    /// A `Deposit` to our wallet whose receiptInformation is a mint record
    /// for this Alpaca tokenization request.
    Mint { tokenization_request_id: &'a str },
    /// A `Withdraw` from our wallet whose receiptInformation is a redeem
    /// record naming this redemption (our issuer_request_id).
    Burn { issuer_request_id: &'a str },
    /// A share `Transfer` from our wallet to `to` of exactly `shares`
    /// (tokens sent back). A transfer carries no id, so any such transfer
    /// after the first attempt counts: at worst a coincidence stops a
    /// second send, never causes one.
    Return { to: Address, shares: U256 },
}

impl Effect<'_> {
    fn topic(self) -> alloy::primitives::B256 {
        match self {
            Self::Mint { .. } => Vault::Deposit::SIGNATURE_HASH,
            Self::Burn { .. } => Vault::Withdraw::SIGNATURE_HASH,
            Self::Return { .. } => Vault::Transfer::SIGNATURE_HASH,
        }
    }

    /// Whether `log` is this effect, done by `wallet`.
    fn matches(self, log: &alloy::primitives::Log, wallet: Address) -> bool {
        let record = |owner: Address, info: &alloy::primitives::Bytes| {
            if owner == wallet {
                ReceiptInformation::decode(info).ok()
            } else {
                None
            }
        };
        match self {
            Self::Mint {
                tokenization_request_id,
            } => Vault::Deposit::decode_log_data(&log.data)
                .ok()
                .and_then(|deposit| {
                    record(deposit.owner, &deposit.receiptInformation)
                })
                .is_some_and(|info| {
                    info.op() == ReceiptOp::Mint
                        && info.tokenization_request_id()
                            == tokenization_request_id
                }),
            Self::Burn { issuer_request_id } => {
                Vault::Withdraw::decode_log_data(&log.data)
                    .ok()
                    .and_then(|withdraw| {
                        record(withdraw.owner, &withdraw.receiptInformation)
                    })
                    .is_some_and(|info| {
                        info.op() == ReceiptOp::Redeem
                            && info.issuer_request_id() == issuer_request_id
                    })
            }
            Self::Return { to, shares } => Vault::Transfer::decode_log_data(
                &log.data,
            )
            .is_ok_and(|transfer| {
                transfer.from == wallet
                    && transfer.to == to
                    && transfer.value == shares
            }),
        }
    }
}

/// A transaction of ours proven landed, with what the chain shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    pub tx_hash: TxHash,
    /// The real receipt when the node returns it; otherwise built from the
    /// vault's logs of that transaction (`gas_used` is then `None`).
    pub receipt: ReceiptSummary,
}

/// What the chain shows about a transaction whose nonce is consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// The effect is in the vault's logs, done by `Landed::tx_hash`.
    Landed(Landed),
    /// The nonce was taken by another transaction, with no effect of ours
    /// in the logs: our transaction can never land.
    NonceTakenBy { tx_hash: TxHash, block: u64 },
    /// Our transaction is in `block`, but its logs are not visible yet.
    InBlockLogsUnseen { block: u64 },
    /// Nothing visible yet either way; look again later, never send.
    NotVisible,
}

impl VaultService {
    /// Searches `vault`'s logs from `from_block` to the settled head, in
    /// chunks of `log_chunk_blocks`, for `effect` done by our wallet. The
    /// first match wins (a flow has at most one effect unless something is
    /// already badly wrong, which the caller then sees in the tx hash).
    pub async fn find_effect(
        &self,
        vault: Address,
        effect: Effect<'_>,
        from_block: u64,
    ) -> Result<Option<Landed>, ChainError> {
        let client = self.client();
        let settled = client.settled_head().await?;
        let chunk = client.policy().log_chunk_blocks.max(1);
        let wallet = client.address();
        let mut start = from_block;
        while start <= settled {
            let end = start.saturating_add(chunk - 1).min(settled);
            let filter = Filter::new()
                .address(vault)
                .event_signature(effect.topic())
                .from_block(start)
                .to_block(end);
            let logs = client
                .provider()
                .get_logs(&filter)
                .await
                .map_err(ChainError::rpc("eth_getLogs"))?;
            if let Some(found) =
                logs.iter().find(|log| effect.matches(&log.inner, wallet))
            {
                return self.landed(found, &logs).await.map(Some);
            }
            start = end.saturating_add(1);
        }
        Ok(None)
    }

    /// For a transaction classified
    /// [`NonceConsumed`](super::TxStatus::NonceConsumed): the landed
    /// attempt if the logs show the effect, otherwise who took the nonce.
    pub async fn find_landing(
        &self,
        vault: Address,
        effect: Effect<'_>,
        tx: &SignedTx,
        from_block: u64,
    ) -> Result<Landing, ChainError> {
        if let Some(landed) =
            self.find_effect(vault, effect, from_block).await?
        {
            return Ok(Landing::Landed(landed));
        }
        Ok(match self.client().nonce_consumer(tx, from_block).await? {
            NonceConsumer::Ours { block, .. } => {
                Landing::InBlockLogsUnseen { block }
            }
            NonceConsumer::Other { tx_hash, block } => {
                Landing::NonceTakenBy { tx_hash, block }
            }
            NonceConsumer::NotFound => Landing::NotVisible,
        })
    }

    async fn landed(
        &self,
        found: &RpcLog,
        logs: &[RpcLog],
    ) -> Result<Landed, ChainError> {
        let (Some(tx_hash), Some(block_number), Some(block_hash)) =
            (found.transaction_hash, found.block_number, found.block_hash)
        else {
            return Err(ChainError::IncompleteLog);
        };
        // Prefer the full receipt; a node that lies about it still has to
        // serve the logs, which are the proof.
        let receipt = match self.client().settled_receipt(tx_hash).await {
            Ok(Some(receipt)) if receipt.block_hash == block_hash => receipt,
            Ok(_) | Err(_) => ReceiptSummary {
                block_number,
                block_hash,
                gas_used: None,
                logs: logs
                    .iter()
                    .filter(|log| log.transaction_hash == Some(tx_hash))
                    .map(|log| log.inner.clone())
                    .collect(),
            },
        };
        Ok(Landed { tx_hash, receipt })
    }
}
