//! [`ChainClient`]: signs, broadcasts and classifies the issuer wallet's
//! transactions on one chain.

use std::sync::Arc;
use std::time::Duration;

use alloy::consensus::Transaction as _;
use alloy::consensus::{SignableTransaction as _, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718 as _;
use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::network::{TransactionResponse as _, TxSignerSync as _};
use alloy::primitives::{Address, Bytes, TxHash, TxKind, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{
    TransactionInput, TransactionReceipt, TransactionRequest,
};
use alloy::transports::TransportError;
use alloy::transports::http::Http;
use receipt_vault::errors::VaultRevert;
use sqlx::SqlitePool;
use tokio::time::Instant;

use crate::clock::Clock;

use super::config::{ChainConfig, WeiPerGas};
use super::nonce::NonceManager;
use super::signer::BotSigner;
use super::tx::{
    ReceiptSummary, SignedTx, TxStatus, Uncertainty, UndecodableTx,
};

/// Rebroadcast a pending transaction at most this often while waiting.
const REBROADCAST_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("RPC {operation} failed")]
    Rpc {
        operation: &'static str,
        #[source]
        source: Box<TransportError>,
    },
    #[error("node serves chain {actual}, configured {expected}")]
    WrongChain { expected: u64, actual: u64 },
    /// Retryable: nothing was signed or sent.
    #[error(
        "estimated max fee {estimated} wei/gas exceeds the ceiling {ceiling}"
    )]
    FeeAboveCeiling { estimated: u128, ceiling: u128 },
    /// Gas estimation hit a revert: the call would fail if sent now.
    #[error("the call would revert: {revert}")]
    WouldRevert { revert: Box<VaultRevert> },
    #[error("gas limit overflows for estimate {estimate}")]
    GasOverflow { estimate: u64 },
    #[error("signing failed")]
    Sign(#[from] alloy::signers::Error),
    #[error("nonce bookkeeping failed")]
    Database(#[from] sqlx::Error),
    #[error("the node returned a log without its transaction or block")]
    IncompleteLog,
    #[error("cannot build the RPC HTTP client")]
    HttpClient(#[source] Box<alloy::transports::http::reqwest::Error>),
    #[error("broadcast of {hash} rejected: {message}")]
    BroadcastRejected { hash: TxHash, message: String },
    #[error("node returned hash {returned} for {expected}")]
    HashMismatch { expected: TxHash, returned: TxHash },
    #[error(transparent)]
    Undecodable(#[from] UndecodableTx),
    #[error(
        "transaction {hash} is for chain {chain_id} wallet {from}, not this \
         client"
    )]
    ForeignTx {
        hash: TxHash,
        chain_id: u64,
        from: Address,
    },
}

impl ChainError {
    pub(crate) fn rpc(
        operation: &'static str,
    ) -> impl FnOnce(TransportError) -> Self {
        move |source| {
            count_rpc_error(operation);
            Self::Rpc {
                operation,
                source: Box::new(source),
            }
        }
    }

    /// Whether trying the same thing later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Rpc { .. }
            | Self::FeeAboveCeiling { .. }
            | Self::Database(_)
            | Self::IncompleteLog
            | Self::BroadcastRejected { .. } => true,
            Self::WouldRevert { revert } => !revert.is_deterministic(),
            Self::WrongChain { .. }
            | Self::GasOverflow { .. }
            | Self::Sign(_)
            | Self::HttpClient(_)
            | Self::HashMismatch { .. }
            | Self::Undecodable(_)
            | Self::ForeignTx { .. } => false,
        }
    }
}

/// Limits and cadence for this client's transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxPolicy {
    pub max_fee_per_gas: WeiPerGas,
    pub max_priority_fee_per_gas: WeiPerGas,
    pub gas_limit_margin_percent: u64,
    pub receipt_poll_interval: Duration,
    pub confirmations: u64,
    /// `eth_getLogs` span when searching for a landed transaction.
    pub log_chunk_blocks: u64,
    /// Where searches start for intents that predate `head_at_signing`.
    pub start_block: u64,
}

impl TxPolicy {
    pub fn from_config(config: &ChainConfig) -> Self {
        Self {
            max_fee_per_gas: config.max_fee_per_gas,
            max_priority_fee_per_gas: config.max_priority_fee_per_gas,
            gas_limit_margin_percent: config.gas_limit_margin_percent,
            receipt_poll_interval: config.receipt_poll_interval,
            confirmations: config.confirmations,
            log_chunk_blocks: config.log_chunk_blocks,
            start_block: config.start_block,
        }
    }
}

/// One per (chain, wallet); clones share the provider and nonce manager.
/// Build it once per wallet and clone it: two independent clients for the
/// same wallet would only be kept apart by the `tx_intents` primary key.
#[derive(Debug, Clone)]
pub struct ChainClient {
    inner: Arc<Inner>,
}

struct Inner {
    provider: RootProvider,
    signer: BotSigner,
    chain_id: u64,
    policy: TxPolicy,
    nonces: NonceManager,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClient")
            .field("chain_id", &self.chain_id)
            .field("signer", &self.signer)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ChainClient {
    /// Connects and checks that the node serves `config.chain_id`.
    pub async fn connect(
        config: &ChainConfig,
        signer: BotSigner,
        pool: SqlitePool,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ChainError> {
        let provider = http_provider(config)?;
        let client = Self::from_parts(
            provider,
            signer,
            config.chain_id,
            TxPolicy::from_config(config),
            pool,
            clock,
        );
        client.check_chain_id().await?;
        Ok(client)
    }

    pub fn from_parts(
        provider: RootProvider,
        signer: BotSigner,
        chain_id: u64,
        policy: TxPolicy,
        pool: SqlitePool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let nonces = NonceManager::new(chain_id, signer.address(), pool);
        Self {
            inner: Arc::new(Inner {
                provider,
                signer,
                chain_id,
                policy,
                nonces,
                clock,
            }),
        }
    }

    pub fn address(&self) -> Address {
        self.inner.signer.address()
    }

    pub fn chain_id(&self) -> u64 {
        self.inner.chain_id
    }

    pub fn policy(&self) -> TxPolicy {
        self.inner.policy
    }

    pub fn provider(&self) -> &RootProvider {
        &self.inner.provider
    }

    /// Fails unless `eth_chainId` equals the configured chain id.
    pub async fn check_chain_id(&self) -> Result<(), ChainError> {
        let actual = self
            .provider()
            .get_chain_id()
            .await
            .map_err(ChainError::rpc("eth_chainId"))?;
        if actual == self.inner.chain_id {
            Ok(())
        } else {
            Err(ChainError::WrongChain {
                expected: self.inner.chain_id,
                actual,
            })
        }
    }

    /// Builds and signs a call from the issuer wallet. Does NOT broadcast.
    ///
    /// Gas is the node's estimate plus the configured margin. The fee cap
    /// is the configured ceiling (we never fee-bump, so we bid the most we
    /// are willing to pay; the network charges only base fee + tip), and
    /// the tip is the node's suggestion capped by its own ceiling. If the
    /// node's suggested max fee is already above the ceiling, nothing is
    /// signed and [`ChainError::FeeAboveCeiling`] is returned.
    ///
    /// The nonce stays reserved until the intent is recorded; if the caller
    /// cannot commit the intent it must call [`ChainClient::release`].
    pub async fn sign(
        &self,
        to: Address,
        calldata: Bytes,
    ) -> Result<SignedTx, ChainError> {
        let from = self.address();
        let policy = self.inner.policy;
        let request = TransactionRequest {
            from: Some(from),
            to: Some(TxKind::Call(to)),
            input: TransactionInput::new(calldata.clone()),
            ..TransactionRequest::default()
        };
        let estimate =
            self.provider()
                .estimate_gas(request)
                .await
                .map_err(|error| match revert_of(&error) {
                    Some(revert) => ChainError::WouldRevert {
                        revert: Box::new(revert),
                    },
                    None => ChainError::rpc("eth_estimateGas")(error),
                })?;
        let gas_limit = with_margin(estimate, policy.gas_limit_margin_percent)?;
        let fees = self
            .provider()
            .estimate_eip1559_fees()
            .await
            .map_err(ChainError::rpc("eth_feeHistory"))?;
        let ceiling = policy.max_fee_per_gas.wei();
        if fees.max_fee_per_gas > ceiling {
            return Err(ChainError::FeeAboveCeiling {
                estimated: fees.max_fee_per_gas,
                ceiling,
            });
        }
        let max_priority_fee_per_gas = fees
            .max_priority_fee_per_gas
            .min(policy.max_priority_fee_per_gas.wei());

        let head = self
            .provider()
            .get_block_number()
            .await
            .map_err(ChainError::rpc("eth_blockNumber"))?;
        let chain_next = self
            .provider()
            .get_transaction_count(from)
            .pending()
            .await
            .map_err(ChainError::rpc("eth_getTransactionCount"))?;
        let nonce = self.inner.nonces.allocate(chain_next).await?;
        let mut tx = TxEip1559 {
            chain_id: self.inner.chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas: ceiling,
            max_priority_fee_per_gas,
            to: TxKind::Call(to),
            value: U256::ZERO,
            access_list: alloy::eips::eip2930::AccessList::default(),
            input: calldata,
        };
        let signature =
            match self.inner.signer.inner().sign_transaction_sync(&mut tx) {
                Ok(signature) => signature,
                Err(error) => {
                    self.inner.nonces.release(nonce).await;
                    return Err(error.into());
                }
            };
        let envelope = TxEnvelope::from(tx.into_signed(signature));
        let signed = SignedTx {
            raw: Bytes::from(envelope.encoded_2718()),
            hash: *envelope.tx_hash(),
            nonce,
            chain_id: self.inner.chain_id,
            from,
            to,
            gas_limit,
            max_fee_per_gas: ceiling,
            max_priority_fee_per_gas,
            signed_at: self.inner.clock.now(),
            head_at_signing: Some(head),
        };
        tracing::info!(
            target: "chain",
            tx_hash = %signed.hash,
            nonce,
            %to,
            gas_limit,
            "signed transaction"
        );
        Ok(signed)
    }

    /// Signs a replacement for `old` (proven reverted or dead): the same
    /// call with a fresh nonce, gas estimate and fees.
    pub async fn replacement_for(
        &self,
        old: &SignedTx,
    ) -> Result<SignedTx, ChainError> {
        self.check_ownership(old)?;
        self.sign(old.to, old.calldata()?).await
    }

    /// Returns the nonce of a transaction whose intent was never committed
    /// (and so never broadcast). Never call it for a recorded intent.
    pub async fn release(&self, tx: &SignedTx) {
        self.inner.nonces.release(tx.nonce).await;
    }

    fn check_ownership(&self, tx: &SignedTx) -> Result<(), ChainError> {
        if tx.chain_id == self.inner.chain_id && tx.from == self.address() {
            Ok(())
        } else {
            Err(ChainError::ForeignTx {
                hash: tx.hash,
                chain_id: tx.chain_id,
                from: tx.from,
            })
        }
    }

    /// Sends the stored bytes. A node that already knows the transaction
    /// (in its pool or mined) counts as sent.
    pub async fn broadcast(&self, tx: &SignedTx) -> Result<(), ChainError> {
        self.check_ownership(tx)?;
        match self.provider().send_raw_transaction(&tx.raw).await {
            Ok(pending) => {
                let returned = *pending.tx_hash();
                if returned == tx.hash {
                    tracing::info!(
                        target: "chain",
                        tx_hash = %tx.hash,
                        nonce = tx.nonce,
                        "broadcast transaction"
                    );
                    Ok(())
                } else {
                    Err(ChainError::HashMismatch {
                        expected: tx.hash,
                        returned,
                    })
                }
            }
            Err(error) => {
                let message = error.to_string();
                let lower = message.to_lowercase();
                if lower.contains("already known")
                    || lower.contains("known transaction")
                    || lower.contains("already imported")
                {
                    return Ok(());
                }
                // "nonce too low" and friends: fine if it is OUR bytes that
                // the node has (mined or pooled).
                let known = self
                    .provider()
                    .get_transaction_by_hash(tx.hash)
                    .await
                    .map_err(ChainError::rpc("eth_getTransactionByHash"))?;
                if known.is_some() {
                    Ok(())
                } else {
                    Err(ChainError::BroadcastRejected {
                        hash: tx.hash,
                        message,
                    })
                }
            }
        }
    }

    /// Classifies a persisted transaction (lessons §4.3). RPC failures are
    /// reported as [`TxStatus::Uncertain`], never as a failure.
    pub async fn classify(
        &self,
        tx: &SignedTx,
    ) -> Result<TxStatus, ChainError> {
        self.check_ownership(tx)?;
        Ok(self
            .observe(tx)
            .await
            .unwrap_or_else(|reason| TxStatus::Uncertain { reason }))
    }

    async fn observe(&self, tx: &SignedTx) -> Result<TxStatus, Uncertainty> {
        let provider = self.provider();
        let head = provider
            .get_block_number()
            .await
            .map_err(uncertain("eth_blockNumber"))?;
        let settled = head.saturating_sub(self.inner.policy.confirmations);
        let receipt = provider
            .get_transaction_receipt(tx.hash)
            .await
            .map_err(uncertain("eth_getTransactionReceipt"))?;
        if let Some(receipt) = receipt {
            return self.status_from_receipt(tx, &receipt, settled).await;
        }
        let settled_nonce = provider
            .get_transaction_count(tx.from)
            .block_id(BlockId::number(settled))
            .await
            .map_err(uncertain("eth_getTransactionCount"))?;
        if settled_nonce <= tx.nonce {
            return Ok(TxStatus::Pending);
        }
        // The nonce is used. By us (mined between the calls) or by another
        // transaction? Look again before declaring it dead.
        let receipt = provider
            .get_transaction_receipt(tx.hash)
            .await
            .map_err(uncertain("eth_getTransactionReceipt"))?;
        if let Some(receipt) = receipt {
            return self.status_from_receipt(tx, &receipt, settled).await;
        }
        let known = provider
            .get_transaction_by_hash(tx.hash)
            .await
            .map_err(uncertain("eth_getTransactionByHash"))?;
        if known.is_some() {
            return Err(Uncertainty::KnownWithoutReceipt);
        }
        // Only our signer uses this wallet: whoever took the nonce is most
        // likely ours, and this node just does not show it (yet).
        Ok(TxStatus::NonceConsumed)
    }

    /// The issuer wallet's native (gas) balance at the latest block.
    pub async fn wallet_balance(&self) -> Result<U256, ChainError> {
        self.provider()
            .get_balance(self.address())
            .await
            .map_err(ChainError::rpc("eth_getBalance"))
    }

    /// The latest block number the node reports.
    pub async fn head_block(&self) -> Result<u64, ChainError> {
        self.provider()
            .get_block_number()
            .await
            .map_err(ChainError::rpc("eth_blockNumber"))
    }

    /// The settled head: the newest block deep enough to count as final.
    pub async fn settled_head(&self) -> Result<u64, ChainError> {
        let head = self
            .provider()
            .get_block_number()
            .await
            .map_err(ChainError::rpc("eth_blockNumber"))?;
        Ok(head.saturating_sub(self.inner.policy.confirmations))
    }

    /// Who took `tx`'s nonce, for a transaction classified
    /// [`TxStatus::NonceConsumed`]: the first settled block at or after
    /// `from_block` where the wallet's nonce has passed ours is found by
    /// bisection, and its transactions are searched for the one from our
    /// wallet with that nonce. Needs state at those blocks (recent ones on
    /// a pruned node); an RPC error is returned, never a guess.
    pub async fn nonce_consumer(
        &self,
        tx: &SignedTx,
        from_block: u64,
    ) -> Result<NonceConsumer, ChainError> {
        self.check_ownership(tx)?;
        let provider = self.provider();
        let nonce_at = |block: u64| async move {
            provider
                .get_transaction_count(tx.from)
                .block_id(BlockId::number(block))
                .await
                .map_err(ChainError::rpc("eth_getTransactionCount"))
        };
        let mut high = self.settled_head().await?;
        if nonce_at(high).await? <= tx.nonce {
            return Ok(NonceConsumer::NotFound);
        }
        let mut low = from_block.min(high);
        if nonce_at(low).await? > tx.nonce {
            if low == 0 {
                return Ok(NonceConsumer::NotFound);
            }
            low = 0;
        }
        // Invariant: nonce at `low` is ours or below, at `high` past it.
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if nonce_at(mid).await? > tx.nonce {
                high = mid;
            } else {
                low = mid;
            }
        }
        let block = provider
            .get_block_by_number(BlockNumberOrTag::Number(high))
            .full()
            .await
            .map_err(ChainError::rpc("eth_getBlockByNumber"))?;
        let Some(block) = block else {
            return Ok(NonceConsumer::NotFound);
        };
        let mut consumer = None;
        for candidate in block.transactions.txns() {
            if candidate.from() == tx.from && candidate.nonce() == tx.nonce {
                consumer = Some(candidate.tx_hash());
                break;
            }
        }
        Ok(match consumer {
            None => NonceConsumer::NotFound,
            Some(found) if found == tx.hash => NonceConsumer::Ours {
                tx_hash: tx.hash,
                block: high,
            },
            Some(found) => NonceConsumer::Other {
                tx_hash: found,
                block: high,
            },
        })
    }

    /// A fresh receipt lookup for a hash seen in the logs: the summary if
    /// the node returns a mined, settled receipt.
    pub async fn settled_receipt(
        &self,
        hash: TxHash,
    ) -> Result<Option<ReceiptSummary>, ChainError> {
        let settled = self.settled_head().await?;
        let receipt = self
            .provider()
            .get_transaction_receipt(hash)
            .await
            .map_err(ChainError::rpc("eth_getTransactionReceipt"))?;
        Ok(receipt.and_then(|receipt| {
            let block_number = receipt.block_number?;
            let block_hash = receipt.block_hash?;
            (receipt.status() && block_number <= settled)
                .then(|| summarize(&receipt, block_number, block_hash))
        }))
    }

    async fn status_from_receipt(
        &self,
        tx: &SignedTx,
        receipt: &TransactionReceipt,
        settled: u64,
    ) -> Result<TxStatus, Uncertainty> {
        let Some(block_number) = receipt.block_number else {
            return Err(Uncertainty::ReceiptWithoutBlock);
        };
        let Some(block_hash) = receipt.block_hash else {
            return Err(Uncertainty::ReceiptWithoutBlock);
        };
        if block_number > settled {
            return Ok(TxStatus::Unconfirmed { block_number });
        }
        let summary = summarize(receipt, block_number, block_hash);
        if receipt.status() {
            return Ok(TxStatus::Mined { receipt: summary });
        }
        let revert = self.replay_revert(tx, block_number).await;
        Ok(TxStatus::Reverted {
            receipt: summary,
            revert,
        })
    }

    /// Re-runs the call with `eth_call` at the block it reverted in, to
    /// recover the revert data the receipt does not carry. `None` when the
    /// call does not revert again or the node returns no data.
    async fn replay_revert(
        &self,
        tx: &SignedTx,
        block_number: u64,
    ) -> Option<VaultRevert> {
        let calldata = tx.calldata().ok()?;
        let request = TransactionRequest {
            from: Some(tx.from),
            to: Some(TxKind::Call(tx.to)),
            input: TransactionInput::new(calldata),
            gas: Some(tx.gas_limit),
            ..TransactionRequest::default()
        };
        match self
            .provider()
            .call(request)
            .block(BlockId::number(block_number))
            .await
        {
            Ok(_) => None,
            Err(error) => revert_of(&error),
        }
    }

    /// Polls until the transaction is mined, reverted or dead, or until
    /// `timeout`; then returns the last classification. Pending
    /// transactions are rebroadcast (identical bytes) every few seconds.
    pub async fn wait_for_outcome(
        &self,
        tx: &SignedTx,
        timeout: Duration,
    ) -> Result<TxStatus, ChainError> {
        let deadline = Instant::now() + timeout;
        let mut last_broadcast: Option<Instant> = None;
        loop {
            let status = self.classify(tx).await?;
            match status {
                TxStatus::Mined { .. }
                | TxStatus::Reverted { .. }
                | TxStatus::NonceConsumed
                | TxStatus::Dead { .. } => return Ok(status),
                TxStatus::Pending => {
                    let due = last_broadcast
                        .is_none_or(|at| at.elapsed() >= REBROADCAST_EVERY);
                    if due {
                        last_broadcast = Some(Instant::now());
                        if let Err(error) = self.broadcast(tx).await {
                            tracing::warn!(
                                target: "chain",
                                tx_hash = %tx.hash,
                                %error,
                                "rebroadcast failed"
                            );
                        }
                    }
                }
                TxStatus::Unconfirmed { .. } | TxStatus::Uncertain { .. } => {}
            }
            if Instant::now() >= deadline {
                return Ok(status);
            }
            tokio::time::sleep(self.inner.policy.receipt_poll_interval).await;
        }
    }
}

/// Who took a nonce (see [`ChainClient::nonce_consumer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceConsumer {
    /// Our transaction is in `block`: it landed.
    Ours { tx_hash: TxHash, block: u64 },
    /// Another transaction from our wallet took the nonce: ours can never
    /// land. Unless `tx_hash` is one of the owner's own attempts, someone
    /// else signs with our key.
    Other { tx_hash: TxHash, block: u64 },
    /// The node does not show the consuming transaction (yet).
    NotFound,
}

/// An HTTP JSON-RPC provider whose every request is bounded by
/// `rpc_timeout`: a hung node answers with an error, never with silence.
pub fn http_provider(config: &ChainConfig) -> Result<RootProvider, ChainError> {
    let http = alloy::transports::http::reqwest::Client::builder()
        .timeout(config.rpc_timeout)
        .connect_timeout(config.rpc_timeout)
        .build()
        .map_err(|error| ChainError::HttpClient(Box::new(error)))?;
    let transport = Http::with_client(http, config.rpc_url.clone());
    let is_local = config
        .rpc_url
        .host_str()
        .is_some_and(|host| host == "127.0.0.1" || host == "localhost");
    Ok(RootProvider::new(RpcClient::new(transport, is_local)))
}

fn summarize(
    receipt: &TransactionReceipt,
    block_number: u64,
    block_hash: alloy::primitives::B256,
) -> ReceiptSummary {
    ReceiptSummary {
        block_number,
        block_hash,
        gas_used: Some(receipt.gas_used),
        logs: receipt
            .inner
            .logs()
            .iter()
            .map(|log| log.inner.clone())
            .collect(),
    }
}

fn uncertain(
    operation: &'static str,
) -> impl FnOnce(TransportError) -> Uncertainty {
    move |error| {
        count_rpc_error(operation);
        Uncertainty::Rpc {
            operation,
            message: error.to_string(),
        }
    }
}

fn count_rpc_error(operation: &'static str) {
    metrics::counter!(
        "chain_rpc_errors_total",
        "operation" => operation,
        "network" => crate::telemetry::network::label()
    )
    .increment(1);
}

/// The revert carried by a JSON-RPC error response, if any.
#[expect(
    clippy::redundant_closure_for_method_calls,
    reason = "ErrorPayload's crate is not re-exported by alloy here"
)]
fn revert_of(error: &TransportError) -> Option<VaultRevert> {
    error
        .as_error_resp()
        .and_then(|payload| payload.as_revert_data())
        .map(|data| VaultRevert::decode(&data))
}

fn with_margin(estimate: u64, percent: u64) -> Result<u64, ChainError> {
    let overflow = || ChainError::GasOverflow { estimate };
    let extra = estimate
        .checked_mul(percent)
        .ok_or_else(overflow)?
        .div_ceil(100);
    estimate.checked_add(extra).ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_margin_rounds_up_and_checks_overflow() {
        assert_eq!(with_margin(100_000, 20).unwrap(), 120_000);
        assert_eq!(with_margin(21_001, 20).unwrap(), 25_202);
        assert_eq!(with_margin(7, 0).unwrap(), 7);
        assert!(matches!(
            with_margin(u64::MAX, 20),
            Err(ChainError::GasOverflow { estimate: u64::MAX })
        ));
    }
}
