//! Read side of mints, all written inside the commit that appends the
//! events: `mint_view` (one row per mint), the `mint_ids` claim table
//! (issuer_request_id → tokenization_request_id), the chain's
//! `tx_intents` rows and the receipt inventory row of a finished deposit.
//! The driver's last error per mint lives in the shared `flow_status`
//! table ([`crate::driver`]).

use std::sync::{Arc, LazyLock};

use alloy::primitives::TxHash;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::{CqrsFramework, EventEnvelope, Query, View};
use serde::{Deserialize, Serialize};
use sqlite_es::{
    ProjectionError, SqliteEsError, SqliteStore, TxProjection, ViewProjection,
};
use sqlx::{SqliteConnection, SqlitePool};

use super::{
    Mint, MintEvent, MintFailure, MintId, MintServices, MintStatus, OWNER_TYPE,
    TokenizationRequestId, Vault,
};
use crate::account::{ClientId, Wallet};
use crate::alpaca::ApRef;
use crate::chain::{mark_intent_resolved, record_intent};
use crate::observability::StuckFlows;
use crate::quantity::AlpacaQuantity;
use crate::receipt_inventory::record_deposit;
use crate::tokenized_asset::{Network, TokenSymbol, UnderlyingSymbol};

pub type MintCqrs = CqrsFramework<Mint, SqliteStore<Mint>>;

pub(super) const MINT_IDS: &str = "mint_ids";
const TX_INTENTS: &str = "tx_intents";

/// The projection's version: bump it whenever `update` or the table
/// changes (a migration included), and startup rebuilds the table.
/// 2: operator events (retried, recovered, closed).
const VIEW_VERSION: u32 = 2;

static VIEW: LazyLock<ViewProjection<StoredMintView, Mint>> =
    LazyLock::new(|| ViewProjection::new("mint_view", VIEW_VERSION));

/// The mint command framework with its in-commit projections.
pub fn cqrs(pool: SqlitePool, services: MintServices) -> MintCqrs {
    let store = SqliteStore::new(pool.clone())
        .with_projection(Arc::new(ViewProjection::<StoredMintView, Mint>::new(
            VIEW.table(),
            VIEW_VERSION,
        )))
        .with_projection(Arc::new(MintIds))
        .with_projection(Arc::new(MintTxIntents))
        .with_projection(Arc::new(ReceiptDeposits));
    CqrsFramework::new(store, vec![Box::new(Outcomes { pool })], services)
}

/// `mints_finished_total{outcome}`, counted from the terminal events as
/// they commit, whoever commits them (a driver step, an HTTP handler), so
/// no outcome is missed or counted twice (a repeat commits nothing); and
/// `mint_duration_seconds` of each completed mint.
struct Outcomes {
    pool: SqlitePool,
}

impl Outcomes {
    /// The confirmation time is in the committed view (the event that
    /// completes the mint carries only its own time).
    async fn record_duration(&self, id: &str, delivered_at: DateTime<Utc>) {
        match VIEW.load(&self.pool, id).await {
            Ok(Some(StoredMintView(Some(view)))) => {
                if let Some(confirmed_at) = view.journal_confirmed_at {
                    crate::observability::record_mint_duration(
                        confirmed_at,
                        delivered_at,
                    );
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(
                target: "mint",
                tokenization_request_id = id,
                %error,
                "cannot read the mint to record its duration"
            ),
        }
    }
}

#[async_trait]
impl Query<Mint> for Outcomes {
    async fn dispatch(&self, id: &str, events: &[EventEnvelope<Mint>]) {
        for envelope in events {
            let outcome = match envelope.payload {
                MintEvent::CallbackDelivered { delivered_at } => {
                    self.record_duration(id, delivered_at).await;
                    "completed"
                }
                MintEvent::MintFailed { .. } => "failed",
                MintEvent::JournalRejected { .. } => "journal_rejected",
                MintEvent::MintClosed { .. } => "closed",
                _ => continue,
            };
            metrics::counter!("mints_finished_total", "outcome" => outcome)
                .increment(1);
        }
    }
}

/// Rewrites `mint_view` from the event log (an operator's rebuild).
pub async fn rebuild_views(pool: &SqlitePool) -> Result<u64, SqliteEsError> {
    VIEW.rebuild(pool).await
}

/// Rebuilds `mint_view` only if its projection's version changed; the
/// events replayed, if it did.
pub async fn rebuild_stale_views(
    pool: &SqlitePool,
) -> Result<Option<u64>, SqliteEsError> {
    VIEW.rebuild_if_stale(pool).await
}

/// A mint as operators and the HTTP handlers see it. Amounts are decimal
/// strings of 18-decimal share units; receipt ids are decimal.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct MintView {
    pub tokenization_request_id: TokenizationRequestId,
    pub issuer_request_id: MintId,
    pub status: MintStatus,
    pub qty: AlpacaQuantity,
    pub underlying: UnderlyingSymbol,
    pub token: TokenSymbol,
    pub network: Network,
    pub client_id: ClientId,
    pub ap: ApRef,
    pub wallet: Wallet,
    pub vault: Vault,
    /// The current (or the minting) transaction.
    #[schema(value_type = Option<String>)]
    pub tx_hash: Option<TxHash>,
    pub tx_attempt: Option<u32>,
    pub tx_nonce: Option<u64>,
    /// Replaced attempts, each proven dead or reverted.
    #[schema(value_type = Vec<String>)]
    pub superseded_tx_hashes: Vec<TxHash>,
    pub receipt_id: Option<String>,
    pub shares: Option<String>,
    pub block: Option<u64>,
    pub rejection_reason: Option<String>,
    pub failure: Option<MintFailure>,
    pub initiated_at: DateTime<Utc>,
    pub journal_confirmed_at: Option<DateTime<Utc>>,
    pub journal_rejected_at: Option<DateTime<Utc>>,
    pub tx_intended_at: Option<DateTime<Utc>>,
    pub minted_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    /// Set when an operator closed the mint.
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub close_reason: Option<String>,
}

/// The stored payload: `null` until the mint is initiated.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct StoredMintView(Option<MintView>);

impl View<Mint> for StoredMintView {
    fn update(&mut self, event: &EventEnvelope<Mint>) {
        if let MintEvent::Initiated {
            request,
            initiated_at,
        } = &event.payload
        {
            let order = &request.order;
            self.0 = Some(MintView {
                tokenization_request_id: order.tokenization_request_id.clone(),
                issuer_request_id: request.issuer_request_id,
                status: MintStatus::Initiated,
                qty: order.qty,
                underlying: order.underlying.clone(),
                token: order.token.clone(),
                network: order.network,
                client_id: request.client_id,
                ap: order.ap.clone(),
                wallet: order.wallet,
                vault: request.vault,
                tx_hash: None,
                tx_attempt: None,
                tx_nonce: None,
                superseded_tx_hashes: Vec::new(),
                receipt_id: None,
                shares: None,
                block: None,
                rejection_reason: None,
                failure: None,
                initiated_at: *initiated_at,
                journal_confirmed_at: None,
                journal_rejected_at: None,
                tx_intended_at: None,
                minted_at: None,
                completed_at: None,
                failed_at: None,
                closed_at: None,
                close_reason: None,
            });
            return;
        }
        let Some(view) = &mut self.0 else {
            return;
        };
        view.apply(&event.payload);
    }
}

impl MintView {
    fn apply(&mut self, event: &MintEvent) {
        match event {
            MintEvent::Initiated { .. } => {}
            MintEvent::JournalConfirmed { confirmed_at } => {
                self.status = MintStatus::JournalConfirmed;
                self.journal_confirmed_at = Some(*confirmed_at);
            }
            MintEvent::JournalRejected {
                reason,
                rejected_at,
            } => {
                self.status = MintStatus::JournalRejected;
                self.rejection_reason.clone_from(reason);
                self.journal_rejected_at = Some(*rejected_at);
            }
            MintEvent::MintTxIntended { tx, intended_at } => {
                self.status = MintStatus::MintIntended;
                self.tx_hash = Some(tx.hash);
                self.tx_attempt = Some(1);
                self.tx_nonce = Some(tx.nonce);
                self.tx_intended_at = Some(*intended_at);
            }
            MintEvent::MintReplacementIntended {
                replaced,
                tx,
                attempt,
                intended_at,
                ..
            } => {
                self.superseded_tx_hashes.push(*replaced);
                self.tx_hash = Some(tx.hash);
                self.tx_attempt = Some(*attempt);
                self.tx_nonce = Some(tx.nonce);
                self.tx_intended_at = Some(*intended_at);
            }
            MintEvent::TokensMinted {
                tx_hash,
                receipt_id,
                shares,
                block,
                minted_at,
                ..
            } => {
                self.status = MintStatus::Minted;
                self.tx_hash = Some(*tx_hash);
                self.receipt_id = Some(receipt_id.to_string());
                self.shares = Some(shares.to_string());
                self.block = Some(*block);
                self.minted_at = Some(*minted_at);
            }
            MintEvent::MintFailed {
                classification,
                reason,
                tx_hash,
                failed_at,
            } => {
                self.status = MintStatus::Failed;
                self.failure = Some(MintFailure {
                    classification: *classification,
                    reason: reason.clone(),
                    tx_hash: *tx_hash,
                });
                self.failed_at = Some(*failed_at);
            }
            MintEvent::CallbackDelivered { delivered_at } => {
                self.status = MintStatus::Completed;
                self.completed_at = Some(*delivered_at);
            }
            MintEvent::MintRetried { .. } => {
                // The aggregate follows its last transaction again, or
                // signs anew when it never had one.
                self.status = if self.tx_hash.is_some() {
                    MintStatus::MintIntended
                } else {
                    MintStatus::JournalConfirmed
                };
                self.tx_attempt = self.tx_hash.map(|_| 1);
                self.failure = None;
                self.failed_at = None;
            }
            MintEvent::MintRecovered {
                tx_hash,
                receipt_id,
                shares,
                block,
                recovered_at,
                ..
            } => {
                self.status = MintStatus::Minted;
                self.tx_hash = Some(*tx_hash);
                self.receipt_id = Some(receipt_id.to_string());
                self.shares = Some(shares.to_string());
                self.block = Some(*block);
                self.minted_at = Some(*recovered_at);
                self.failure = None;
                self.failed_at = None;
            }
            MintEvent::MintClosed { reason, closed_at } => {
                self.status = MintStatus::Closed;
                self.closed_at = Some(*closed_at);
                self.close_reason = Some(reason.to_string());
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MintQueryError {
    #[error(transparent)]
    Store(#[from] SqliteEsError),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("stored tokenization_request_id {value:?} in {table} is invalid")]
    CorruptId { table: &'static str, value: String },
    #[error("stored timestamp {value:?} in mint_view is invalid")]
    CorruptTimestamp { value: String },
}

pub async fn find_by_tokenization_request_id(
    pool: &SqlitePool,
    id: &TokenizationRequestId,
) -> Result<Option<MintView>, MintQueryError> {
    Ok(VIEW
        .load(pool, id.as_str())
        .await?
        .and_then(|stored| stored.0))
}

pub async fn find_by_issuer_request_id(
    pool: &SqlitePool,
    id: &MintId,
) -> Result<Option<MintView>, MintQueryError> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT tokenization_request_id FROM mint_ids \
         WHERE issuer_request_id = ?",
    )
    .bind(id.to_string())
    .fetch_optional(pool)
    .await?;
    let Some(owner) = owner else {
        return Ok(None);
    };
    let id = TokenizationRequestId::new(&owner).map_err(|_| {
        MintQueryError::CorruptId {
            table: MINT_IDS,
            value: owner,
        }
    })?;
    find_by_tokenization_request_id(pool, &id).await
}

/// Mints the driver has work for (on `network`, or on all), oldest first.
pub async fn unfinished_mints(
    pool: &SqlitePool,
    network: Option<Network>,
) -> Result<Vec<TokenizationRequestId>, MintQueryError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT view_id FROM mint_view \
         WHERE json_extract(payload, '$.status') \
               IN ('journal_confirmed', 'mint_intended', 'minted') \
           AND (?1 IS NULL OR json_extract(payload, '$.network') = ?1) \
         ORDER BY json_extract(payload, '$.initiated_at'), view_id",
    )
    .bind(network.map(Network::as_str))
    .fetch_all(pool)
    .await?;
    ids.into_iter()
        .map(|raw| {
            TokenizationRequestId::new(&raw).map_err(|_| {
                MintQueryError::CorruptId {
                    table: "mint_view",
                    value: raw,
                }
            })
        })
        .collect()
}

/// Mints needing attention: unfinished (including those still waiting
/// for Alpaca's journal) and initiated before `cutoff`, and failed ones
/// whatever their age; oldest first.
pub async fn stuck_mint_views(
    pool: &SqlitePool,
    cutoff: DateTime<Utc>,
) -> Result<Vec<MintView>, MintQueryError> {
    // Only the unfinished and failed rows are read: terminal mints, the
    // bulk of the table, stay in SQLite.
    let payloads: Vec<String> = sqlx::query_scalar(
        "SELECT payload FROM mint_view \
         WHERE json_extract(payload, '$.status') IN \
               ('initiated', 'journal_confirmed', 'mint_intended', \
                'minted', 'failed') \
         ORDER BY json_extract(payload, '$.initiated_at'), view_id",
    )
    .fetch_all(pool)
    .await?;
    let mut stuck = Vec::new();
    for payload in payloads {
        let StoredMintView(view) =
            serde_json::from_str(&payload).map_err(SqliteEsError::from)?;
        if let Some(view) = view
            && (view.status == MintStatus::Failed || view.initiated_at < cutoff)
        {
            stuck.push(view);
        }
    }
    Ok(stuck)
}

/// The `flows_stuck` gauge's counts of [`stuck_mint_views`].
pub async fn stuck_mints(
    pool: &SqlitePool,
    cutoff: DateTime<Utc>,
) -> Result<StuckFlows, MintQueryError> {
    let mut stuck = StuckFlows::default();
    for view in stuck_mint_views(pool, cutoff).await? {
        if view.status == MintStatus::Failed {
            stuck.failed += 1;
        } else {
            stuck.overdue += 1;
        }
    }
    Ok(stuck)
}

/// Claims the issuer_request_id on `Initiated`.
struct MintIds;

#[async_trait]
impl TxProjection<Mint> for MintIds {
    async fn project(
        &self,
        conn: &mut SqliteConnection,
        events: &[EventEnvelope<Mint>],
    ) -> Result<(), ProjectionError> {
        for event in events {
            if let MintEvent::Initiated { request, .. } = &event.payload {
                let key = request.issuer_request_id.to_string();
                sqlx::query(
                    "INSERT INTO mint_ids \
                     (issuer_request_id, tokenization_request_id) \
                     VALUES (?, ?)",
                )
                .bind(&key)
                .bind(&event.aggregate_id)
                .execute(&mut *conn)
                .await
                .map_err(|err| {
                    ProjectionError::from_sqlx(err, MINT_IDS, key)
                })?;
            }
        }
        Ok(())
    }
}

/// Keeps `tx_intents` in step: an intent row with every signed attempt
/// (so no other transaction can take its nonce), resolved with the event
/// that proves its outcome.
struct MintTxIntents;

#[async_trait]
impl TxProjection<Mint> for MintTxIntents {
    async fn project(
        &self,
        conn: &mut SqliteConnection,
        events: &[EventEnvelope<Mint>],
    ) -> Result<(), ProjectionError> {
        for event in events {
            let owner = &event.aggregate_id;
            match &event.payload {
                MintEvent::MintTxIntended { tx, .. } => {
                    record_intent(conn, OWNER_TYPE, owner, tx).await.map_err(
                        |err| {
                            ProjectionError::from_sqlx(
                                err,
                                TX_INTENTS,
                                format!("{:#x}", tx.hash),
                            )
                        },
                    )?;
                }
                MintEvent::MintReplacementIntended { replaced, tx, .. } => {
                    mark_intent_resolved(conn, *replaced).await?;
                    record_intent(conn, OWNER_TYPE, owner, tx).await.map_err(
                        |err| {
                            ProjectionError::from_sqlx(
                                err,
                                TX_INTENTS,
                                format!("{:#x}", tx.hash),
                            )
                        },
                    )?;
                }
                MintEvent::TokensMinted { tx_hash, .. }
                | MintEvent::MintRecovered { tx_hash, .. }
                | MintEvent::MintFailed {
                    tx_hash: Some(tx_hash),
                    ..
                } => {
                    mark_intent_resolved(conn, *tx_hash).await?;
                }
                MintEvent::Initiated { .. }
                | MintEvent::JournalConfirmed { .. }
                | MintEvent::JournalRejected { .. }
                | MintEvent::MintFailed { tx_hash: None, .. }
                | MintEvent::CallbackDelivered { .. }
                | MintEvent::MintRetried { .. }
                | MintEvent::MintClosed { .. } => {}
            }
        }
        Ok(())
    }
}

/// Records the receipt a deposit gave the issuer wallet.
struct ReceiptDeposits;

#[async_trait]
impl TxProjection<Mint> for ReceiptDeposits {
    async fn project(
        &self,
        conn: &mut SqliteConnection,
        events: &[EventEnvelope<Mint>],
    ) -> Result<(), ProjectionError> {
        for event in events {
            if let MintEvent::TokensMinted {
                vault,
                receipt_id,
                shares,
                ..
            }
            | MintEvent::MintRecovered {
                vault,
                receipt_id,
                shares,
                ..
            } = &event.payload
            {
                let issuer_request_id: String = sqlx::query_scalar(
                    "SELECT issuer_request_id FROM mint_ids \
                     WHERE tokenization_request_id = ?",
                )
                .bind(&event.aggregate_id)
                .fetch_one(&mut *conn)
                .await?;
                record_deposit(
                    conn,
                    vault.address(),
                    *receipt_id,
                    *shares,
                    &issuer_request_id,
                )
                .await?;
            }
        }
        Ok(())
    }
}
