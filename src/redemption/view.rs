//! Read side of redemptions: `redemption_view` (the aggregate's state per
//! issuer_request_id) and the in-commit bookkeeping of burns: receipt
//! reservations and `tx_intents` rows move with the events that justify
//! them, or not at all.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::{CqrsFramework, EventEnvelope, Query, View};
use serde::{Deserialize, Serialize};
use sqlite_es::{
    ProjectionError, SqliteEsError, SqliteStore, TxProjection, ViewProjection,
};
use sqlx::{SqliteConnection, SqlitePool};

use super::{
    AGGREGATE_TYPE, Redemption, RedemptionEvent, RedemptionId,
    RedemptionServices,
};
use crate::chain::{mark_intent_resolved, record_intent};
use crate::observability::StuckFlows;
use crate::receipt_inventory;

pub type RedemptionCqrs = CqrsFramework<Redemption, SqliteStore<Redemption>>;

const VIEW_TABLE: &str = "redemption_view";

/// The projection's version: bump it whenever `update` or the table
/// changes (a migration included), and startup rebuilds the table.
/// 2: the aggregate state changed: Completed keeps its burns, Failed its
/// journal time, and Closed is new.
/// 3: the return states (ReturnRequested, Returning, Returned).
const VIEW_VERSION: u32 = 3;

static VIEW: LazyLock<ViewProjection<RedemptionView, Redemption>> =
    LazyLock::new(|| ViewProjection::new(VIEW_TABLE, VIEW_VERSION));

/// The redemption command framework with its projections.
pub fn cqrs(pool: SqlitePool, services: RedemptionServices) -> RedemptionCqrs {
    let store = SqliteStore::new(pool.clone())
        .with_projection(Arc::new(
            ViewProjection::<RedemptionView, Redemption>::new(
                VIEW_TABLE,
                VIEW_VERSION,
            ),
        ))
        .with_projection(Arc::new(BurnBookkeeping));
    CqrsFramework::new(store, vec![Box::new(Outcomes { pool })], services)
}

/// `redemptions_finished_total{outcome}`, counted from the terminal events
/// as they commit (including a detection that fails at once, e.g. below
/// Alpaca's minimum quantity), so no outcome is missed; and
/// `redemption_duration_seconds` of each completed redemption.
struct Outcomes {
    pool: SqlitePool,
}

impl Outcomes {
    /// From the committed state: the detection time is not in the event
    /// that completes the redemption.
    async fn record_duration(&self, id: &str) {
        match VIEW.load(&self.pool, id).await {
            Ok(Some(RedemptionView(state))) => {
                crate::observability::record_redemption_duration(&state);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(
                target: "redemption",
                id,
                %error,
                "cannot read the redemption to record its duration"
            ),
        }
    }
}

#[async_trait]
impl Query<Redemption> for Outcomes {
    async fn dispatch(&self, id: &str, events: &[EventEnvelope<Redemption>]) {
        for envelope in events {
            let outcome = match &envelope.payload {
                RedemptionEvent::Completed { .. }
                | RedemptionEvent::BurnRecordedByOperator { .. } => {
                    self.record_duration(id).await;
                    "completed"
                }
                RedemptionEvent::Closed { .. } => "closed",
                RedemptionEvent::Returned { .. } => "returned",
                RedemptionEvent::Failed { reason, .. } => match reason {
                    super::FailureReason::AlpacaRejected { .. } => {
                        "alpaca_rejected"
                    }
                    super::FailureReason::PollTimedOut { .. } => {
                        "poll_timed_out"
                    }
                    super::FailureReason::BelowMinimumQuantity { .. } => {
                        "below_minimum_quantity"
                    }
                    super::FailureReason::UnrepresentableQuantity {
                        ..
                    } => "unrepresentable_quantity",
                    super::FailureReason::BurnFailed { .. } => "burn_failed",
                },
                _ => continue,
            };
            metrics::counter!("redemptions_finished_total", "outcome" => outcome)
                .increment(1);
        }
    }
}

/// Rewrites `redemption_view` from the event log (an operator's rebuild).
pub async fn rebuild_views(pool: &SqlitePool) -> Result<u64, SqliteEsError> {
    VIEW.rebuild(pool).await
}

/// Rebuilds `redemption_view` only if its projection's version changed; the
/// events replayed, if it did.
pub async fn rebuild_stale_views(
    pool: &SqlitePool,
) -> Result<Option<u64>, SqliteEsError> {
    VIEW.rebuild_if_stale(pool).await
}

/// The stored view: the aggregate state itself, replayed by `apply`, so
/// the view can never disagree with what the aggregate would load.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct RedemptionView(Redemption);

impl View<Redemption> for RedemptionView {
    fn update(&mut self, event: &EventEnvelope<Redemption>) {
        cqrs_es::Aggregate::apply(&mut self.0, event.payload.clone());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedemptionQueryError {
    #[error(transparent)]
    Store(#[from] SqliteEsError),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("JSON error in redemption_view: {0}")]
    Json(#[from] serde_json::Error),
}

/// The committed state of one redemption.
pub async fn find(
    pool: &SqlitePool,
    id: &RedemptionId,
) -> Result<Option<Redemption>, RedemptionQueryError> {
    Ok(VIEW
        .load(pool, id.as_str())
        .await?
        .map(|view| view.0)
        .filter(|state| *state != Redemption::NotDetected))
}

/// Every redemption not yet completed or failed, by id. Rows whose id no
/// longer parses are skipped with an ERROR (they cannot be driven).
pub async fn non_terminal(
    pool: &SqlitePool,
) -> Result<Vec<(RedemptionId, Redemption)>, RedemptionQueryError> {
    // Served by the `redemption_view_by_state` index: only open rows are
    // read and parsed.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT view_id, payload FROM redemption_view \
         WHERE state IN ('detected', 'alpaca_called', 'journal_completed', \
         'burning', 'return_requested', 'returning') ORDER BY view_id",
    )
    .fetch_all(pool)
    .await?;
    let mut open = Vec::new();
    for (view_id, payload) in rows {
        let RedemptionView(state) = serde_json::from_str(&payload)?;
        if state.is_terminal() || state == Redemption::NotDetected {
            tracing::error!(
                target: "redemption",
                %view_id,
                "redemption_view state column disagrees with its payload"
            );
            continue;
        }
        match view_id.parse::<RedemptionId>() {
            Ok(id) => open.push((id, state)),
            Err(error) => tracing::error!(
                target: "redemption",
                %error,
                "redemption_view row with an unparseable id"
            ),
        }
    }
    Ok(open)
}

/// Redemptions needing attention: unfinished and detected before
/// `cutoff`, and failed ones whatever their age; by id.
pub async fn stuck_redemption_states(
    pool: &SqlitePool,
    cutoff: DateTime<Utc>,
) -> Result<Vec<(String, Redemption)>, RedemptionQueryError> {
    // Served by the `redemption_view_by_state` index: completed ones, the
    // bulk of the table, are never read.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT view_id, payload FROM redemption_view \
         WHERE state IN ('detected', 'alpaca_called', 'journal_completed', \
         'burning', 'failed', 'return_requested', 'returning') \
         ORDER BY view_id",
    )
    .fetch_all(pool)
    .await?;
    let mut stuck = Vec::new();
    for (view_id, payload) in rows {
        let RedemptionView(state) = serde_json::from_str(&payload)?;
        let started = state
            .detection()
            .map(|detection| detection.detected_at)
            .or_else(|| state.return_order().map(|order| order.requested_at));
        let overdue =
            !state.is_terminal() && started.is_some_and(|at| at < cutoff);
        if matches!(state, Redemption::Failed { .. }) || overdue {
            stuck.push((view_id, state));
        }
    }
    Ok(stuck)
}

/// The `flows_stuck` gauge's counts of [`stuck_redemption_states`].
pub async fn stuck_redemptions(
    pool: &SqlitePool,
    cutoff: DateTime<Utc>,
) -> Result<StuckFlows, RedemptionQueryError> {
    let mut stuck = StuckFlows::default();
    for (_, state) in stuck_redemption_states(pool, cutoff).await? {
        if matches!(state, Redemption::Failed { .. }) {
            stuck.failed += 1;
        } else {
            stuck.overdue += 1;
        }
    }
    Ok(stuck)
}

/// Reserves receipts and records the nonce with `BurnIntended`; settles
/// with `Completed`; releases with `Failed`. A reservation that no longer
/// fits fails the commit (the driver then reselects).
struct BurnBookkeeping;

#[async_trait]
impl TxProjection<Redemption> for BurnBookkeeping {
    async fn project(
        &self,
        conn: &mut SqliteConnection,
        events: &[EventEnvelope<Redemption>],
    ) -> Result<(), ProjectionError> {
        for event in events {
            let id = event.aggregate_id.as_str();
            match &event.payload {
                RedemptionEvent::BurnIntended {
                    tx,
                    burns,
                    replaces,
                    intended_at,
                    ..
                } => {
                    if let Some(old) = replaces {
                        mark_intent_resolved(conn, *old).await?;
                    }
                    receipt_inventory::reserve(
                        conn,
                        tx.to,
                        id,
                        burns,
                        *intended_at,
                    )
                    .await?;
                    record_intent(conn, AGGREGATE_TYPE, id, tx).await.map_err(
                        |err| {
                            ProjectionError::from_sqlx(
                                err,
                                "tx_intents",
                                format!("{}:{}", tx.from, tx.nonce),
                            )
                        },
                    )?;
                }
                RedemptionEvent::Completed {
                    vault,
                    burn_tx_hash,
                    burns,
                    completed_at,
                    ..
                } => {
                    receipt_inventory::settle(
                        conn,
                        *vault,
                        id,
                        burns,
                        *completed_at,
                    )
                    .await?;
                    mark_intent_resolved(conn, *burn_tx_hash).await?;
                }
                RedemptionEvent::BurnRecordedByOperator {
                    vault,
                    burns,
                    recorded_at,
                    ..
                } => {
                    // Settles like a burn of ours; no intent of ours is
                    // resolved by it (a failed one already was).
                    receipt_inventory::settle(
                        conn,
                        *vault,
                        id,
                        burns,
                        *recorded_at,
                    )
                    .await?;
                }
                RedemptionEvent::Failed { resolves, .. } => {
                    receipt_inventory::release(conn, id).await?;
                    if let Some(hash) = resolves {
                        mark_intent_resolved(conn, *hash).await?;
                    }
                }
                // An attributed or returned transfer leaves the
                // unattributed list in the commit that decides its fate.
                RedemptionEvent::Detected { detection } => {
                    resolve_unattributed(
                        conn,
                        detection.transfer.tx_hash,
                        detection.transfer.log_index,
                    )
                    .await?;
                }
                RedemptionEvent::ReturnRequested { transfer, .. } => {
                    resolve_unattributed(
                        conn,
                        transfer.tx_hash,
                        transfer.log_index,
                    )
                    .await?;
                }
                RedemptionEvent::ReturnIntended { tx, replaces, .. } => {
                    if let Some(old) = replaces {
                        mark_intent_resolved(conn, *old).await?;
                    }
                    record_intent(conn, AGGREGATE_TYPE, id, tx).await.map_err(
                        |err| {
                            ProjectionError::from_sqlx(
                                err,
                                "tx_intents",
                                format!("{}:{}", tx.from, tx.nonce),
                            )
                        },
                    )?;
                }
                RedemptionEvent::Returned { tx_hash, .. } => {
                    mark_intent_resolved(conn, *tx_hash).await?;
                }
                RedemptionEvent::Attributed { .. }
                | RedemptionEvent::AlpacaCalled { .. }
                | RedemptionEvent::AlpacaJournalCompleted { .. }
                | RedemptionEvent::Retried { .. }
                | RedemptionEvent::Closed { .. } => {}
            }
        }
        Ok(())
    }
}

async fn resolve_unattributed(
    conn: &mut SqliteConnection,
    tx_hash: alloy::primitives::TxHash,
    log_index: u64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "DELETE FROM unattributed_transfers \
         WHERE tx_hash = ? AND log_index = ?",
    )
    .bind(format!("{tx_hash:#x}"))
    .bind(i64::try_from(log_index).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
