//! One aggregate's stored events, as operators read them.

use serde_json::Value;
use sqlx::SqlitePool;

use crate::SqliteEsError;

/// An event as stored: its place in the stream, its type and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
}

/// Every event of one aggregate, oldest first (empty if it has none).
pub async fn event_history(
    pool: &SqlitePool,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>, SqliteEsError> {
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT sequence, event_type, event_version, payload FROM events \
         WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(sequence, event_type, event_version, payload)| {
            Ok(StoredEvent {
                sequence: u64::try_from(sequence)?,
                event_type,
                event_version,
                payload: serde_json::from_str(&payload)?,
            })
        })
        .collect()
}
