//! The transfer monitor: finds ERC-20 `Transfer(from, bot, value)` logs on
//! every enabled vault and turns each into a redemption (or, for an
//! unknown sender, an unattributed-transfer record).
//!
//! The head is polled every `head_poll_interval` (`eth_blockNumber`, one
//! cheap call); a pass runs as soon as it moved, and at least every
//! `poll_interval` regardless ([`pass_due`]). A pass scans with
//! `eth_getLogs`, the source of truth, in chunks of `log_chunk_blocks`, up to
//! `latest - confirmations`, from a durable checkpoint per (network,
//! vault) in `monitor_checkpoints` (never the event store). The checkpoint
//! moves only after everything found in the chunk is committed, so a crash
//! rescans the chunk and re-detection is a no-op (the redemption id is the
//! transfer's (tx hash, log index)). Transfers made while the service was
//! down are found on the next pass after restart.
//!
//! A vault without a checkpoint (a newly listed asset, or the first start)
//! is scanned from the configured `start_block`: set it at or below the
//! block the vault was deployed at. The asset list is re-read on every
//! pass, so new listings are picked up without a restart.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, TxHash, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use alloy::transports::TransportError;
use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::AggregateError;
use receipt_vault::OffchainAssetReceiptVault as Vault;
use serde::{Deserialize, Serialize};
use sqlite_es::execute_retrying;
use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::{
    DetectedTransfer, RedemptionCommand, RedemptionCqrs, RedemptionError,
};
use crate::account::{self, AccountQueryError};
use crate::alpaca::ApRef;
use crate::clock::Clock;
use crate::shutdown::ShutdownListener;
use crate::tokenized_asset::{self, AssetQueryError, AssetView, Network};
use crate::vocabulary::address_key;

/// A full pass at least this often, even when the head did not move.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How often the chain head is polled (`eth_blockNumber`, one cheap
/// call); a pass follows as soon as the head moved.
pub const DEFAULT_HEAD_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Pause after a failed pass.
const RETRY_INTERVAL: Duration = Duration::from_secs(10);
/// Consecutive failed passes before the monitor logs at ERROR.
const FAILURES_BEFORE_ERROR: u32 = 3;
/// The next block range to scan, or `None` when caught up.
///
/// `last_scanned` is the checkpoint (inclusive); without one the scan
/// starts at `start_block`. The range never passes `safe_head` (latest
/// minus confirmations) and spans at most `chunk` blocks (0 counts as 1).
pub fn next_range(
    last_scanned: Option<u64>,
    start_block: u64,
    safe_head: u64,
    chunk: u64,
) -> Option<RangeInclusive<u64>> {
    let from = match last_scanned {
        Some(last) => last.checked_add(1)?.max(start_block),
        None => start_block,
    };
    if from > safe_head {
        return None;
    }
    let span = chunk.max(1) - 1;
    let to = from.saturating_add(span).min(safe_head);
    Some(from..=to)
}

/// Whether the monitor should scan now, given the head `latest` it just
/// polled: when no pass succeeded yet, when the head moved past the one
/// the last pass scanned to (a head that went back, e.g. a lagging node
/// behind a load balancer, waits), or when `full_every` passed since that
/// pass (new listings are scanned without a new block).
pub fn pass_due(
    scanned_head: Option<u64>,
    latest: u64,
    since_pass: Duration,
    full_every: Duration,
) -> bool {
    scanned_head.is_none_or(|scanned| latest > scanned)
        || since_pass >= full_every
}

/// One ERC-20 transfer into the issuer wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundTransfer {
    pub vault: Address,
    pub tx_hash: TxHash,
    pub log_index: u64,
    pub block: u64,
    pub from: Address,
    pub value: U256,
}

/// What a log means for the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogMeaning {
    /// A transfer to redeem (or to record as unattributed).
    Inbound(InboundTransfer),
    /// Not a redemption: our own mint (`from` = 0), a self-transfer, or a
    /// transfer to someone else.
    Ignored,
    /// A log we cannot identify (no tx hash / index / block, or not a
    /// `Transfer`): the chunk must not be checkpointed past it.
    Malformed { reason: &'static str },
}

/// Classifies a log returned by the `Transfer(*, bot)` filter.
pub fn classify_log(log: &Log, bot: Address) -> LogMeaning {
    let Ok(transfer) = Vault::Transfer::decode_log_data(&log.inner.data) else {
        return LogMeaning::Malformed {
            reason: "not an ERC-20 Transfer",
        };
    };
    if transfer.from.is_zero() || transfer.from == bot || transfer.to != bot {
        return LogMeaning::Ignored;
    }
    let (Some(tx_hash), Some(log_index), Some(block)) =
        (log.transaction_hash, log.log_index, log.block_number)
    else {
        return LogMeaning::Malformed {
            reason: "log without transaction hash, index or block",
        };
    };
    LogMeaning::Inbound(InboundTransfer {
        vault: log.inner.address,
        tx_hash,
        log_index,
        block,
        from: transfer.from,
        value: transfer.value,
    })
}

/// A transfer into the issuer wallet from a wallet no account owns.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct UnattributedTransfer {
    pub network: Network,
    #[schema(value_type = String)]
    pub vault: Address,
    #[schema(value_type = String)]
    pub tx_hash: TxHash,
    pub log_index: u64,
    #[schema(value_type = String)]
    pub from_wallet: Address,
    /// Shares, 18 decimals, as a decimal string.
    pub amount: String,
    pub block: u64,
    pub detected_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("RPC {operation} failed: {source}")]
    Rpc {
        operation: &'static str,
        #[source]
        source: Box<TransportError>,
    },
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Assets(#[from] AssetQueryError),
    #[error(transparent)]
    Accounts(#[from] AccountQueryError),
    #[error("recording redemption {id} failed: {source}")]
    Detect {
        id: String,
        #[source]
        source: Box<AggregateError<RedemptionError>>,
    },
    #[error(
        "log in block range {from}..={to} of vault {vault} is malformed: \
         {reason}"
    )]
    MalformedLog {
        vault: Address,
        from: u64,
        to: u64,
        reason: &'static str,
    },
    #[error("block number {value} does not fit the checkpoint table")]
    BlockOutOfRange { value: u64 },
    #[error("stored checkpoint {value} is negative")]
    CorruptCheckpoint { value: i64 },
}

/// The last block scanned for (network, vault), if any.
pub async fn load_checkpoint(
    pool: &SqlitePool,
    network: Network,
    vault: Address,
) -> Result<Option<u64>, MonitorError> {
    let stored: Option<i64> = sqlx::query_scalar(
        "SELECT last_block FROM monitor_checkpoints \
         WHERE network = ? AND vault = ?",
    )
    .bind(network.as_str())
    .bind(address_key(vault))
    .fetch_optional(pool)
    .await?;
    stored
        .map(|value| {
            u64::try_from(value)
                .map_err(|_| MonitorError::CorruptCheckpoint { value })
        })
        .transpose()
}

/// Moves the checkpoint forward to `block` (never backwards).
pub async fn save_checkpoint(
    pool: &SqlitePool,
    network: Network,
    vault: Address,
    block: u64,
    at: DateTime<Utc>,
) -> Result<(), MonitorError> {
    let stored = i64::try_from(block)
        .map_err(|_| MonitorError::BlockOutOfRange { value: block })?;
    sqlx::query(
        "INSERT INTO monitor_checkpoints \
         (network, vault, last_block, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (network, vault) DO UPDATE SET \
         last_block = excluded.last_block, updated_at = excluded.updated_at \
         WHERE excluded.last_block > monitor_checkpoints.last_block",
    )
    .bind(network.as_str())
    .bind(address_key(vault))
    .bind(stored)
    .bind(stamp(at))
    .execute(pool)
    .await?;
    Ok(())
}

/// Records an unattributed transfer; `false` if it was already recorded.
pub async fn record_unattributed(
    pool: &SqlitePool,
    transfer: &UnattributedTransfer,
) -> Result<bool, MonitorError> {
    let to_i64 = |value: u64| {
        i64::try_from(value)
            .map_err(|_| MonitorError::BlockOutOfRange { value })
    };
    let inserted = sqlx::query(
        "INSERT INTO unattributed_transfers \
         (network, vault, tx_hash, log_index, from_wallet, amount, block, \
          detected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (network, tx_hash, log_index) DO NOTHING",
    )
    .bind(transfer.network.as_str())
    .bind(address_key(transfer.vault))
    .bind(format!("{:#x}", transfer.tx_hash))
    .bind(to_i64(transfer.log_index)?)
    .bind(address_key(transfer.from_wallet))
    .bind(&transfer.amount)
    .bind(to_i64(transfer.block)?)
    .bind(&transfer.detected_at)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

type UnattributedRow =
    (String, String, String, i64, String, String, i64, String);

/// Every unattributed transfer, oldest block first.
pub async fn list_unattributed(
    pool: &SqlitePool,
) -> Result<Vec<UnattributedTransfer>, MonitorError> {
    let rows: Vec<UnattributedRow> = sqlx::query_as(
        "SELECT network, vault, tx_hash, log_index, from_wallet, amount, \
         block, detected_at FROM unattributed_transfers \
         ORDER BY block, tx_hash, log_index",
    )
    .fetch_all(pool)
    .await?;
    let corrupt = |what: &str, value: &str| {
        sqlx::Error::Decode(
            format!("unattributed_transfers.{what} = {value:?}").into(),
        )
    };
    rows.into_iter()
        .map(
            |(network, vault, tx_hash, log_index, from, amount, block, at)| {
                Ok(UnattributedTransfer {
                    network: network
                        .parse()
                        .map_err(|_| corrupt("network", &network))?,
                    vault: vault
                        .parse()
                        .map_err(|_| corrupt("vault", &vault))?,
                    tx_hash: tx_hash
                        .parse()
                        .map_err(|_| corrupt("tx_hash", &tx_hash))?,
                    log_index: u64::try_from(log_index)
                        .map_err(|_| corrupt("log_index", "negative"))?,
                    from_wallet: from
                        .parse()
                        .map_err(|_| corrupt("from_wallet", &from))?,
                    amount,
                    block: u64::try_from(block)
                        .map_err(|_| corrupt("block", "negative"))?,
                    detected_at: at,
                })
            },
        )
        .collect::<Result<_, sqlx::Error>>()
        .map_err(MonitorError::from)
}

/// Settings of one monitor (one chain, one issuer wallet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorSettings {
    pub network: Network,
    pub bot: Address,
    pub confirmations: u64,
    pub chunk_blocks: u64,
    pub start_block: u64,
    /// A full pass at least this often.
    pub poll_interval: Duration,
    /// How often the head is polled between passes; a new head starts a
    /// pass at once.
    pub head_poll_interval: Duration,
}

/// What one pass found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub detected: usize,
    pub unattributed: usize,
    pub chunks: usize,
}

/// The polling monitor for one chain.
#[derive(Clone)]
pub struct TransferMonitor {
    pool: SqlitePool,
    provider: RootProvider,
    cqrs: Arc<RedemptionCqrs>,
    clock: Arc<dyn Clock>,
    settings: MonitorSettings,
    /// Woken after new redemptions are recorded (the driver listens).
    detected: Arc<Notify>,
    /// Where the driver finds each redemption's detection span.
    origins: crate::driver::FlowOrigins,
}

impl TransferMonitor {
    pub fn new(
        pool: SqlitePool,
        provider: RootProvider,
        cqrs: Arc<RedemptionCqrs>,
        clock: Arc<dyn Clock>,
        settings: MonitorSettings,
        detected: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            provider,
            cqrs,
            clock,
            settings,
            detected,
            origins: crate::driver::FlowOrigins::default(),
        }
    }

    /// Shares each detection's span with the driver (its steps continue
    /// that trace).
    #[must_use]
    pub fn with_origins(mut self, origins: crate::driver::FlowOrigins) -> Self {
        self.origins = origins;
        self
    }

    /// Polls until shutdown: the head every `head_poll_interval`, and a
    /// pass whenever it moved (or `poll_interval` passed).
    pub fn spawn(
        self,
        mut shutdown: ShutdownListener,
    ) -> tokio::task::JoinHandle<()> {
        // Its metrics, and those of the calls it makes, carry its network.
        let network = self.settings.network.as_str();
        tokio::spawn(crate::telemetry::network::scope(network, async move {
            let settings = self.settings;
            let mut failures: u32 = 0;
            // The head the last successful pass scanned to, and when.
            let mut scanned: Option<(u64, Instant)> = None;
            loop {
                // A call may hang on the RPC; shutdown must not wait for it
                // (a cut pass only rescans its chunk next time).
                let outcome = tokio::select! {
                    () = shutdown.wait() => break,
                    outcome = self.poll(scanned) => outcome,
                };
                let pause = match outcome {
                    Ok(None) => settings.head_poll_interval,
                    Ok(Some((report, head))) => {
                        failures = 0;
                        scanned = Some((head, Instant::now()));
                        if report.detected > 0 || report.unattributed > 0 {
                            tracing::info!(
                                target: "redemption",
                                detected = report.detected,
                                unattributed = report.unattributed,
                                "transfer monitor pass"
                            );
                        }
                        settings.head_poll_interval
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        metrics::counter!(
                            "redemption_monitor_failures_total",
                            "network" => crate::telemetry::network::label()
                        )
                        .increment(1);
                        if failures >= FAILURES_BEFORE_ERROR {
                            tracing::error!(
                                target: "redemption",
                                %error,
                                failures,
                                "transfer monitor keeps failing"
                            );
                        } else {
                            tracing::warn!(
                                target: "redemption",
                                %error,
                                "transfer monitor pass failed"
                            );
                        }
                        RETRY_INTERVAL.min(settings.poll_interval * 2)
                    }
                };
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
            tracing::info!(target: "redemption", "transfer monitor stopped");
        }))
    }

    /// Polls the head and, if [`pass_due`], scans up to it: the pass's
    /// report and the head it scanned to, or `None` when not due.
    async fn poll(
        &self,
        scanned: Option<(u64, Instant)>,
    ) -> Result<Option<(PassReport, u64)>, MonitorError> {
        let latest = self.head().await?;
        let due = pass_due(
            scanned.map(|(head, _)| head),
            latest,
            scanned.map_or(Duration::MAX, |(_, at)| at.elapsed()),
            self.settings.poll_interval,
        );
        if !due {
            return Ok(None);
        }
        Ok(Some((self.pass_to(latest).await?, latest)))
    }

    async fn head(&self) -> Result<u64, MonitorError> {
        self.provider
            .get_block_number()
            .await
            .map_err(rpc("eth_blockNumber"))
    }

    /// Scans every enabled vault of this network up to the safe head.
    pub async fn pass(&self) -> Result<PassReport, MonitorError> {
        let latest = self.head().await?;
        self.pass_to(latest).await
    }

    /// As [`TransferMonitor::pass`], with the head `latest` just polled.
    async fn pass_to(&self, latest: u64) -> Result<PassReport, MonitorError> {
        let safe_head = latest.saturating_sub(self.settings.confirmations);
        let assets: Vec<AssetView> = tokenized_asset::list_enabled(&self.pool)
            .await?
            .into_iter()
            .filter(|asset| asset.network == self.settings.network)
            .collect();
        let mut report = PassReport::default();
        for asset in &assets {
            // A repointed listing keeps redeeming its old vaults' tokens.
            let vaults = std::iter::once(asset.vault)
                .chain(asset.previous_vaults.iter().copied());
            for vault in vaults {
                self.scan_vault(asset, vault, safe_head, &mut report)
                    .await?;
            }
        }
        if report.detected > 0 {
            self.detected.notify_one();
        }
        // Every vault is now scanned up to `safe_head`; a stale value of
        // this gauge (with `redemption_monitor_failures_total` rising) is
        // what shows the monitor falling behind the chain.
        #[expect(
            clippy::cast_precision_loss,
            reason = "a block number far below 2^53 is exact as f64"
        )]
        metrics::gauge!(
            "redemption_monitor_scanned_block",
            "network" => self.settings.network.as_str()
        )
        .set(safe_head as f64);
        Ok(report)
    }

    async fn scan_vault(
        &self,
        asset: &AssetView,
        vault: Address,
        safe_head: u64,
        report: &mut PassReport,
    ) -> Result<(), MonitorError> {
        let settings = self.settings;
        loop {
            let checkpoint =
                load_checkpoint(&self.pool, settings.network, vault).await?;
            let Some(range) = next_range(
                checkpoint,
                settings.start_block,
                safe_head,
                settings.chunk_blocks,
            ) else {
                return Ok(());
            };
            let (from, to) = (*range.start(), *range.end());
            let filter = Filter::new()
                .address(vault)
                .event_signature(Vault::Transfer::SIGNATURE_HASH)
                .topic2(settings.bot.into_word())
                .from_block(from)
                .to_block(to);
            let logs = self
                .provider
                .get_logs(&filter)
                .await
                .map_err(rpc("eth_getLogs"))?;
            for log in &logs {
                match classify_log(log, settings.bot) {
                    LogMeaning::Ignored => {}
                    LogMeaning::Malformed { reason } => {
                        return Err(MonitorError::MalformedLog {
                            vault,
                            from,
                            to,
                            reason,
                        });
                    }
                    LogMeaning::Inbound(transfer) => {
                        self.handle(asset, vault, transfer, report).await?;
                    }
                }
            }
            save_checkpoint(
                &self.pool,
                settings.network,
                vault,
                to,
                self.clock.now(),
            )
            .await?;
            report.chunks = report.chunks.saturating_add(1);
        }
    }

    async fn handle(
        &self,
        asset: &AssetView,
        vault: Address,
        transfer: InboundTransfer,
        report: &mut PassReport,
    ) -> Result<(), MonitorError> {
        let owner =
            account::find_owner_of_wallet(&self.pool, &transfer.from).await?;
        let Some(client_id) = owner else {
            let record = UnattributedTransfer {
                network: self.settings.network,
                vault,
                tx_hash: transfer.tx_hash,
                log_index: transfer.log_index,
                from_wallet: transfer.from,
                amount: transfer.value.to_string(),
                block: transfer.block,
                detected_at: stamp(self.clock.now()),
            };
            if record_unattributed(&self.pool, &record).await? {
                report.unattributed = report.unattributed.saturating_add(1);
                metrics::counter!(
                    "redemption_unattributed_transfers_total",
                    "network" => self.settings.network.as_str()
                )
                .increment(1);
                tracing::warn!(
                    target: "redemption",
                    network = %self.settings.network,
                    vault = %vault,
                    tx_hash = %transfer.tx_hash,
                    log_index = transfer.log_index,
                    from = %transfer.from,
                    amount = %transfer.value,
                    "transfer from a wallet no account owns; recorded as \
                     unattributed"
                );
            }
            return Ok(());
        };
        let ap = ap_ref_for(&self.pool, client_id).await?;
        let detected = DetectedTransfer {
            network: self.settings.network,
            vault,
            underlying: asset.underlying.clone(),
            token: asset.token.clone(),
            tx_hash: transfer.tx_hash,
            log_index: transfer.log_index,
            block: transfer.block,
            from_wallet: transfer.from,
            client_id,
            ap,
            shares: transfer.value,
        };
        let id = detected.issuer_request_id();
        let span = tracing::info_span!(
            target: "trace",
            "redemption.detect",
            flow.kind = "redemption",
            flow.id = %id,
            tx_hash = %transfer.tx_hash,
            log_index = transfer.log_index,
        );
        let command = RedemptionCommand::Detect { transfer: detected };
        let detect = execute_retrying(&self.cqrs, id.as_str(), command)
            .instrument(span.clone())
            .await;
        if detect.is_ok() {
            self.origins.record(id.as_str(), None, &span);
        }
        drop(span);
        match detect {
            Ok(()) => {}
            Err(AggregateError::UserError(
                RedemptionError::DetectedDifferently { .. },
            )) => {
                // Same (tx, log index) with other data: the sender's owner
                // changed since. The first detection stands.
                tracing::warn!(
                    target: "redemption",
                    %id,
                    "transfer already detected with other attribution"
                );
                return Ok(());
            }
            Err(source) => {
                return Err(MonitorError::Detect {
                    id: id.to_string(),
                    source: Box::new(source),
                });
            }
        }
        report.detected = report.detected.saturating_add(1);
        tracing::info!(
            target: "redemption",
            %id,
            from = %transfer.from,
            shares = %transfer.value,
            %client_id,
            "redemption detected"
        );
        Ok(())
    }
}

/// How the redeem call names the AP: by its Alpaca account when the
/// affiliated flow is the only way Alpaca knows it, else by our client id
/// (handshake flow; the Alpaca client picks the field name).
pub(crate) async fn ap_ref_for(
    pool: &SqlitePool,
    client_id: account::ClientId,
) -> Result<ApRef, MonitorError> {
    let view = account::find_by_client_id(pool, &client_id).await?;
    Ok(
        match view
            .as_ref()
            .and_then(account::AccountView::affiliated_only)
        {
            Some(id) => ApRef::Affiliated(*id.as_uuid()),
            None => ApRef::External(client_id.to_string()),
        },
    )
}

fn rpc(operation: &'static str) -> impl FnOnce(TransportError) -> MonitorError {
    move |source| {
        metrics::counter!(
            "chain_rpc_errors_total",
            "operation" => operation,
            "network" => crate::telemetry::network::label()
        )
        .increment(1);
        MonitorError::Rpc {
            operation,
            source: Box::new(source),
        }
    }
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Bytes, LogData, address, b256};

    use super::*;

    const BOT: Address = address!("0x00000000000000000000000000000000000000b0");
    const AP: Address = address!("0x00000000000000000000000000000000000000a1");
    const VAULT: Address =
        address!("0x00000000000000000000000000000000000000fa");

    #[test]
    fn ranges_are_chunked_up_to_the_safe_head() {
        // No checkpoint: start at start_block.
        assert_eq!(next_range(None, 100, 150, 20), Some(100..=119));
        assert_eq!(next_range(Some(119), 100, 150, 20), Some(120..=139));
        assert_eq!(next_range(Some(139), 100, 150, 20), Some(140..=150));
        assert_eq!(next_range(Some(150), 100, 150, 20), None);
        // Caught up, or the chain is behind the start block.
        assert_eq!(next_range(None, 200, 150, 20), None);
        // A checkpoint below a raised start block jumps to it.
        assert_eq!(next_range(Some(5), 100, 150, 1000), Some(100..=150));
        // Chunk 0 behaves like 1; the checkpoint cannot overflow.
        assert_eq!(next_range(Some(9), 0, 20, 0), Some(10..=10));
        assert_eq!(next_range(Some(u64::MAX), 0, u64::MAX, 10), None);
        assert_eq!(
            next_range(Some(u64::MAX - 2), 0, u64::MAX, 10),
            Some(u64::MAX - 1..=u64::MAX)
        );
    }

    #[test]
    fn a_pass_is_due_on_a_new_head_or_after_the_full_interval() {
        let full = Duration::from_secs(5);
        let soon = Duration::from_millis(250);
        // Nothing scanned yet: scan whatever the head.
        assert!(pass_due(None, 0, Duration::ZERO, full));
        // The head moved: scan at once, however recent the last pass.
        assert!(pass_due(Some(10), 11, Duration::ZERO, full));
        // Same head: only the head poll, until the full interval.
        assert!(!pass_due(Some(10), 10, soon, full));
        assert!(pass_due(Some(10), 10, full, full));
        // A head behind the scanned one (a lagging node) waits too.
        assert!(!pass_due(Some(10), 9, soon, full));
    }

    #[test]
    fn walking_the_ranges_covers_every_block_once() {
        let (start, head, chunk) = (7, 1_000, 64);
        let mut checkpoint = None;
        let mut covered = Vec::new();
        while let Some(range) = next_range(checkpoint, start, head, chunk) {
            assert!(range.end() - range.start() < chunk);
            covered.extend(range.clone());
            checkpoint = Some(*range.end());
        }
        assert_eq!(covered, (start..=head).collect::<Vec<_>>());
    }

    fn transfer_log(from: Address, to: Address, value: u64) -> Log {
        let event = Vault::Transfer {
            from,
            to,
            value: U256::from(value),
        };
        let data: LogData = event.encode_log_data();
        Log {
            inner: alloy::primitives::Log {
                address: VAULT,
                data,
            },
            transaction_hash: Some(b256!(
                "0x1111111111111111111111111111111111111111111111111111111111111111"
            )),
            log_index: Some(3),
            block_number: Some(42),
            ..Log::default()
        }
    }

    #[test]
    fn inbound_transfers_are_recognised() {
        let log = transfer_log(AP, BOT, 5);
        assert_eq!(
            classify_log(&log, BOT),
            LogMeaning::Inbound(InboundTransfer {
                vault: VAULT,
                tx_hash: log.transaction_hash.unwrap(),
                log_index: 3,
                block: 42,
                from: AP,
                value: U256::from(5),
            })
        );
    }

    #[test]
    fn mints_self_transfers_and_strangers_are_ignored() {
        assert_eq!(
            classify_log(&transfer_log(Address::ZERO, BOT, 5), BOT),
            LogMeaning::Ignored
        );
        assert_eq!(
            classify_log(&transfer_log(BOT, BOT, 5), BOT),
            LogMeaning::Ignored
        );
        assert_eq!(
            classify_log(&transfer_log(AP, VAULT, 5), BOT),
            LogMeaning::Ignored
        );
    }

    #[test]
    fn logs_without_identity_or_of_another_event_are_malformed() {
        let mut log = transfer_log(AP, BOT, 5);
        log.log_index = None;
        assert!(matches!(
            classify_log(&log, BOT),
            LogMeaning::Malformed { .. }
        ));
        let mut other = transfer_log(AP, BOT, 5);
        other.inner.data =
            LogData::new_unchecked(vec![], Bytes::from_static(&[1, 2]));
        assert!(matches!(
            classify_log(&other, BOT),
            LogMeaning::Malformed { .. }
        ));
    }

    #[tokio::test]
    async fn checkpoints_only_move_forward() {
        let pool = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
        crate::migrate(&pool).await.unwrap();
        let at = Utc::now();
        assert_eq!(
            load_checkpoint(&pool, Network::Base, VAULT).await.unwrap(),
            None
        );
        save_checkpoint(&pool, Network::Base, VAULT, 50, at)
            .await
            .unwrap();
        save_checkpoint(&pool, Network::Base, VAULT, 40, at)
            .await
            .unwrap();
        assert_eq!(
            load_checkpoint(&pool, Network::Base, VAULT).await.unwrap(),
            Some(50)
        );
        // Per (network, vault).
        assert_eq!(
            load_checkpoint(&pool, Network::Ethereum, VAULT)
                .await
                .unwrap(),
            None
        );
        save_checkpoint(&pool, Network::Base, VAULT, 51, at)
            .await
            .unwrap();
        assert_eq!(
            load_checkpoint(&pool, Network::Base, VAULT).await.unwrap(),
            Some(51)
        );
    }

    #[tokio::test]
    async fn unattributed_transfers_are_recorded_once_and_listed() {
        let pool = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
        crate::migrate(&pool).await.unwrap();
        let record = UnattributedTransfer {
            network: Network::Base,
            vault: VAULT,
            tx_hash: TxHash::repeat_byte(0xab),
            log_index: 2,
            from_wallet: AP,
            amount: "1000000000000000000".into(),
            block: 9,
            detected_at: "2026-11-28T12:00:00.000000Z".into(),
        };
        assert!(record_unattributed(&pool, &record).await.unwrap());
        assert!(!record_unattributed(&pool, &record).await.unwrap());
        assert_eq!(list_unattributed(&pool).await.unwrap(), vec![record]);
    }
}

#[cfg(test)]
mod ap_tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;
    use crate::account::{
        AccountCommand, AccountServices, AlpacaAccountId, AlpacaAccountNumber,
        ClientId, Email,
    };
    use crate::clock::SystemClock;

    #[tokio::test]
    async fn only_affiliated_only_accounts_are_named_by_alpaca_account() {
        let pool = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
        crate::migrate(&pool).await.unwrap();
        let accounts = account::cqrs(
            pool.clone(),
            AccountServices {
                clock: Arc::new(SystemClock),
            },
        );
        let client_id = ClientId::new(Uuid::from_u128(7));
        let alpaca_id = AlpacaAccountId::new(Uuid::from_u128(0xA1)).unwrap();
        let run = |command| {
            let accounts = &accounts;
            async move {
                accounts
                    .execute(&client_id.to_string(), command)
                    .await
                    .unwrap();
            }
        };
        run(AccountCommand::Register {
            client_id,
            email: Email::new("ap@example.com").unwrap(),
        })
        .await;
        let handshake = ApRef::External(client_id.to_string());
        assert_eq!(ap_ref_for(&pool, client_id).await.unwrap(), handshake);
        run(AccountCommand::RecordAlpacaAccountId {
            alpaca_account_id: alpaca_id,
        })
        .await;
        assert_eq!(
            ap_ref_for(&pool, client_id).await.unwrap(),
            ApRef::Affiliated(*alpaca_id.as_uuid())
        );
        // Once Alpaca has linked it, the handshake id is the agreed one.
        run(AccountCommand::Link {
            alpaca_account: AlpacaAccountNumber::new("AP0001").unwrap(),
        })
        .await;
        assert_eq!(ap_ref_for(&pool, client_id).await.unwrap(), handshake);
    }
}
