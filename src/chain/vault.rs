//! Calls into the Rain receipt vault: the mint and burn batches, parsing
//! their logs, and the pre-flight reads.
//!
//! Mint = one `multicall([deposit(shares, bot, 1e18, info), transfer(ap,
//! shares)])` from the issuer wallet: the receipt stays with the bot, the
//! shares go to the AP atomically. Burn = one `multicall` of
//! `redeem(shares, ap, bot, id, info)` per receipt plus an optional
//! trailing `transfer(ap, dust)` returning the sub-9-decimal remainder.

use alloy::primitives::{Address, B256, Bytes, Log, U256};
use alloy::sol_types::{SolCall, SolEvent};
use receipt_vault::{
    OffchainAssetReceiptVault as Vault,
    OffchainAssetReceiptVaultAuthorizerV1 as Authorizer, Receipt,
};

use super::client::{ChainClient, ChainError};
use super::receipt_info::ReceiptInformation;
use super::tx::{ReceiptSummary, SignedTx};

/// The vault's fixed 1:1 share ratio, passed as the minimum ratio.
pub const SHARE_RATIO: U256 =
    U256::from_limbs([1_000_000_000_000_000_000, 0, 0, 0]);

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault call {operation} failed")]
    Call {
        operation: &'static str,
        #[source]
        source: Box<alloy::contract::Error>,
    },
    #[error("no Deposit log from vault {vault} in the mint receipt")]
    MissingDeposit { vault: Address },
    #[error("Deposit log from vault {vault} does not decode")]
    UndecodableDeposit { vault: Address },
    #[error("a burn needs at least one receipt or a dust transfer")]
    EmptyBurn,
    #[error("burn of receipt {receipt_id} has zero shares")]
    ZeroBurn { receipt_id: U256 },
    #[error(transparent)]
    Chain(#[from] ChainError),
}

fn call_error(
    operation: &'static str,
) -> impl FnOnce(alloy::contract::Error) -> VaultError {
    move |source| VaultError::Call {
        operation,
        source: Box::new(source),
    }
}

/// A completed deposit, from the first `Deposit` log of the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintOnChain {
    pub receipt_id: U256,
    pub shares: U256,
    pub block: u64,
    /// `None` when only the logs were visible (see [`ReceiptSummary`]).
    pub gas_used: Option<u64>,
    /// The receiptInformation bytes recorded with the deposit.
    pub receipt_information: Bytes,
}

/// One receipt to burn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burn {
    pub receipt_id: U256,
    pub shares: U256,
    /// The receiptInformation passed to `redeem` (the redemption driver
    /// sends its own `op: redeem` record, so the burn names the redemption).
    pub receipt_information: Bytes,
}

/// A burn observed in a `Withdraw` log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurnOnChain {
    pub receipt_id: U256,
    pub shares: U256,
}

/// The vault operations of one issuer wallet.
#[derive(Debug, Clone)]
pub struct VaultService {
    client: ChainClient,
}

impl VaultService {
    pub fn new(client: ChainClient) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &ChainClient {
        &self.client
    }

    /// `multicall([deposit(shares, bot, 1e18, info), transfer(ap, shares)])`.
    pub fn mint_calldata(
        &self,
        shares: U256,
        ap_wallet: Address,
        info: &ReceiptInformation,
    ) -> Bytes {
        let deposit = Vault::depositCall {
            assets: shares,
            receiver: self.client.address(),
            depositMinShareRatio: SHARE_RATIO,
            receiptInformation: info.encode(),
        };
        let transfer = Vault::transferCall {
            to: ap_wallet,
            value: shares,
        };
        multicall(vec![deposit.abi_encode(), transfer.abi_encode()])
    }

    /// Redeems each burn (receiver = the AP, owner = the bot), then returns
    /// `dust` (if any) to the AP.
    pub fn burn_calldata(
        &self,
        burns: &[Burn],
        ap_wallet: Address,
        dust: Option<U256>,
    ) -> Result<Bytes, VaultError> {
        let dust = dust.filter(|amount| !amount.is_zero());
        if burns.is_empty() && dust.is_none() {
            return Err(VaultError::EmptyBurn);
        }
        let bot = self.client.address();
        let mut calls = Vec::with_capacity(burns.len() + 1);
        for burn in burns {
            if burn.shares.is_zero() {
                return Err(VaultError::ZeroBurn {
                    receipt_id: burn.receipt_id,
                });
            }
            calls.push(
                Vault::redeemCall {
                    shares: burn.shares,
                    receiver: ap_wallet,
                    owner: bot,
                    id: burn.receipt_id,
                    receiptInformation: burn.receipt_information.clone(),
                }
                .abi_encode(),
            );
        }
        if let Some(dust) = dust {
            calls.push(
                Vault::transferCall {
                    to: ap_wallet,
                    value: dust,
                }
                .abi_encode(),
            );
        }
        Ok(multicall(calls))
    }

    /// `transfer(to, shares)`: tokens sent back from our wallet.
    pub fn return_calldata(to: Address, shares: U256) -> Bytes {
        Vault::transferCall { to, value: shares }
            .abi_encode()
            .into()
    }

    /// Signs (does not send) the mint batch.
    pub async fn sign_mint(
        &self,
        vault: Address,
        shares: U256,
        ap_wallet: Address,
        info: &ReceiptInformation,
    ) -> Result<SignedTx, ChainError> {
        let calldata = self.mint_calldata(shares, ap_wallet, info);
        self.client.sign(vault, calldata).await
    }

    /// Signs (does not send) the burn batch.
    pub async fn sign_burn(
        &self,
        vault: Address,
        burns: &[Burn],
        ap_wallet: Address,
        dust: Option<U256>,
    ) -> Result<SignedTx, VaultError> {
        let calldata = self.burn_calldata(burns, ap_wallet, dust)?;
        Ok(self.client.sign(vault, calldata).await?)
    }

    /// The first `Deposit` emitted by `vault` in a mint receipt.
    pub fn parse_mint(
        receipt: &ReceiptSummary,
        vault: Address,
    ) -> Result<MintOnChain, VaultError> {
        let log = receipt
            .logs
            .iter()
            .find(|log| {
                log.address == vault
                    && log.topics().first()
                        == Some(&Vault::Deposit::SIGNATURE_HASH)
            })
            .ok_or(VaultError::MissingDeposit { vault })?;
        let deposit = Vault::Deposit::decode_log_data(&log.data)
            .map_err(|_| VaultError::UndecodableDeposit { vault })?;
        Ok(MintOnChain {
            receipt_id: deposit.id,
            shares: deposit.shares,
            block: receipt.block_number,
            gas_used: receipt.gas_used,
            receipt_information: deposit.receiptInformation,
        })
    }

    /// The `Withdraw`s of `owner`'s receipts emitted by `vault`, in log
    /// order.
    pub fn parse_burn_by(
        logs: &[Log],
        vault: Address,
        owner: Address,
    ) -> Vec<BurnOnChain> {
        logs.iter()
            .filter(|log| {
                log.address == vault
                    && log.topics().first()
                        == Some(&Vault::Withdraw::SIGNATURE_HASH)
            })
            .filter_map(|log| Vault::Withdraw::decode_log_data(&log.data).ok())
            .filter(|withdraw| withdraw.owner == owner)
            .map(|withdraw| BurnOnChain {
                receipt_id: withdraw.id,
                shares: withdraw.shares,
            })
            .collect()
    }

    /// Every `Withdraw` emitted by `vault`, in log order.
    pub fn parse_burn(logs: &[Log], vault: Address) -> Vec<BurnOnChain> {
        logs.iter()
            .filter(|log| {
                log.address == vault
                    && log.topics().first()
                        == Some(&Vault::Withdraw::SIGNATURE_HASH)
            })
            .filter_map(|log| Vault::Withdraw::decode_log_data(&log.data).ok())
            .map(|withdraw| BurnOnChain {
                receipt_id: withdraw.id,
                shares: withdraw.shares,
            })
            .collect()
    }

    /// ERC-20 share balance of `owner`.
    pub async fn share_balance(
        &self,
        vault: Address,
        owner: Address,
    ) -> Result<U256, VaultError> {
        Vault::new(vault, self.client.provider())
            .balanceOf(owner)
            .call()
            .await
            .map_err(call_error("balanceOf"))
    }

    /// ERC-1155 balance of receipt `id` held by `owner`.
    pub async fn receipt_balance(
        &self,
        vault: Address,
        owner: Address,
        id: U256,
    ) -> Result<U256, VaultError> {
        let provider = self.client.provider();
        let receipt = Vault::new(vault, provider)
            .receipt()
            .call()
            .await
            .map_err(call_error("receipt"))?;
        Receipt::new(receipt, provider)
            .balanceOf(owner, id)
            .call()
            .await
            .map_err(call_error("Receipt.balanceOf"))
    }

    /// Every receipt id `owner` may hold in `vault`, as the logs from
    /// `from_block` to the settled head show: the ids of `Deposit`s to
    /// `owner`, and of the vault's ERC-1155 receipts transferred to
    /// `owner` (`TransferSingle`, `TransferBatch`). Searched in chunks of
    /// `log_chunk_blocks`; the caller reads each balance.
    pub async fn receipt_ids_received(
        &self,
        vault: Address,
        owner: Address,
        from_block: u64,
    ) -> Result<std::collections::BTreeSet<U256>, VaultError> {
        use alloy::providers::Provider as _;
        use alloy::rpc::types::Filter;

        let provider = self.client.provider();
        let receipt = Vault::new(vault, provider)
            .receipt()
            .call()
            .await
            .map_err(call_error("receipt"))?;
        let settled = self.client.settled_head().await?;
        let chunk = self.client.policy().log_chunk_blocks.max(1);
        let mut ids = std::collections::BTreeSet::new();
        let mut start = from_block;
        while start <= settled {
            let end = start.saturating_add(chunk - 1).min(settled);
            let deposits = Filter::new()
                .address(vault)
                .event_signature(Vault::Deposit::SIGNATURE_HASH)
                .from_block(start)
                .to_block(end);
            let transfers = Filter::new()
                .address(receipt)
                .event_signature(vec![
                    Receipt::TransferSingle::SIGNATURE_HASH,
                    Receipt::TransferBatch::SIGNATURE_HASH,
                ])
                .topic3(owner.into_word())
                .from_block(start)
                .to_block(end);
            for filter in [deposits, transfers] {
                let logs = provider
                    .get_logs(&filter)
                    .await
                    .map_err(ChainError::rpc("eth_getLogs"))?;
                for log in &logs {
                    ids.extend(received_ids(&log.inner, owner));
                }
            }
            start = end.saturating_add(1);
        }
        Ok(ids)
    }

    /// True when transfers to APs would revert `CertificationExpired`.
    pub async fn is_certification_expired(
        &self,
        vault: Address,
    ) -> Result<bool, VaultError> {
        Vault::new(vault, self.client.provider())
            .isCertificationExpired()
            .call()
            .await
            .map_err(call_error("isCertificationExpired"))
    }

    /// Whether `wallet` holds `role` on the vault's authorizer.
    pub async fn has_role(
        &self,
        vault: Address,
        role: B256,
        wallet: Address,
    ) -> Result<bool, VaultError> {
        let provider = self.client.provider();
        let authorizer = Vault::new(vault, provider)
            .authorizer()
            .call()
            .await
            .map_err(call_error("authorizer"))?;
        Authorizer::new(authorizer, provider)
            .hasRole(role, wallet)
            .call()
            .await
            .map_err(call_error("hasRole"))
    }
}

/// The receipt ids `log` gives `owner` (a deposit to it, or a receipt
/// transfer to it); none for any other log.
fn received_ids(log: &Log, owner: Address) -> Vec<U256> {
    match log.topics().first() {
        Some(&Vault::Deposit::SIGNATURE_HASH) => {
            Vault::Deposit::decode_log_data(&log.data)
                .ok()
                .filter(|deposit| deposit.owner == owner)
                .map(|deposit| vec![deposit.id])
                .unwrap_or_default()
        }
        Some(&Receipt::TransferSingle::SIGNATURE_HASH) => {
            Receipt::TransferSingle::decode_log_data(&log.data)
                .ok()
                .filter(|transfer| transfer.to == owner)
                .map(|transfer| vec![transfer.id])
                .unwrap_or_default()
        }
        Some(&Receipt::TransferBatch::SIGNATURE_HASH) => {
            Receipt::TransferBatch::decode_log_data(&log.data)
                .ok()
                .filter(|transfer| transfer.to == owner)
                .map(|transfer| transfer.ids)
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

fn multicall(calls: Vec<Vec<u8>>) -> Bytes {
    Vault::multicallCall {
        data: calls.into_iter().map(Bytes::from).collect(),
    }
    .abi_encode()
    .into()
}
