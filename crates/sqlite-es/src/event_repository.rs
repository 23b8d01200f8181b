//! The `events` and `snapshots` tables behind cqrs-es's
//! [`PersistedEventRepository`].

use cqrs_es::Aggregate;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use futures::StreamExt;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::error::SqliteEsError;

/// Rows buffered between the database task and a [`ReplayStream`]
/// consumer. The producer waits once this many are in flight.
pub const STREAM_BUFFER: usize = 256;

const SELECT_EVENTS_AFTER: &str = "SELECT aggregate_type, aggregate_id, \
     sequence, event_type, event_version, payload, metadata FROM events \
     WHERE aggregate_type = ? AND aggregate_id = ? AND sequence > ? \
     ORDER BY sequence";

const SELECT_ALL_IN_COMMIT_ORDER: &str = "SELECT aggregate_type, \
     aggregate_id, sequence, event_type, event_version, payload, metadata \
     FROM events INDEXED BY events_by_type_in_commit_order \
     WHERE aggregate_type = ? ORDER BY rowid";

const INSERT_EVENT: &str = "INSERT INTO events (aggregate_type, \
     aggregate_id, sequence, event_type, event_version, payload, metadata) \
     VALUES (?, ?, ?, ?, ?, ?, ?)";

const SELECT_SNAPSHOT: &str = "SELECT last_sequence, snapshot_version, \
     payload FROM snapshots WHERE aggregate_type = ? AND aggregate_id = ?";

// The WHERE on the upsert makes a snapshot older than the stored one a
// no-op, so a slow writer can never roll a snapshot backwards.
const UPSERT_SNAPSHOT: &str = "INSERT INTO snapshots (aggregate_type, \
     aggregate_id, last_sequence, snapshot_version, payload) \
     VALUES (?, ?, ?, ?, ?) \
     ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET \
     last_sequence = excluded.last_sequence, \
     snapshot_version = excluded.snapshot_version, \
     payload = excluded.payload \
     WHERE excluded.last_sequence > snapshots.last_sequence";

const SELECT_LAST_SEQUENCE: &str = "SELECT MAX(sequence) FROM events \
     WHERE aggregate_type = ? AND aggregate_id = ?";

/// cqrs-es event repository over the `events` / `snapshots` tables.
#[derive(Debug, Clone)]
pub struct SqliteEventRepository {
    pool: SqlitePool,
}

impl SqliteEventRepository {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Stored snapshot of one aggregate instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredSnapshot {
    pub(crate) last_sequence: usize,
    pub(crate) snapshot_version: usize,
    pub(crate) payload: Value,
}

/// Events of one aggregate with `sequence > after`, in sequence order.
pub(crate) async fn select_events_after(
    pool: &SqlitePool,
    aggregate_type: &str,
    aggregate_id: &str,
    after: usize,
) -> Result<Vec<SerializedEvent>, SqliteEsError> {
    let rows = sqlx::query(SELECT_EVENTS_AFTER)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(i64::try_from(after)?)
        .fetch_all(pool)
        .await?;
    rows.iter().map(decode_event).collect()
}

pub(crate) async fn select_snapshot(
    pool: &SqlitePool,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<StoredSnapshot>, SqliteEsError> {
    let Some(row) = sqlx::query(SELECT_SNAPSHOT)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let last_sequence: i64 = row.try_get("last_sequence")?;
    let snapshot_version: i64 = row.try_get("snapshot_version")?;
    let payload: String = row.try_get("payload")?;
    Ok(Some(StoredSnapshot {
        last_sequence: usize::try_from(last_sequence)?,
        snapshot_version: usize::try_from(snapshot_version)?,
        payload: serde_json::from_str(&payload)?,
    }))
}

/// Appends events; a primary-key violation means another writer already
/// committed one of these sequences (see [`crate::is_unique_violation`]).
pub(crate) async fn insert_events(
    conn: &mut SqliteConnection,
    events: &[SerializedEvent],
) -> Result<(), SqliteEsError> {
    for event in events {
        sqlx::query(INSERT_EVENT)
            .bind(&event.aggregate_type)
            .bind(&event.aggregate_id)
            .bind(i64::try_from(event.sequence)?)
            .bind(&event.event_type)
            .bind(&event.event_version)
            .bind(serde_json::to_string(&event.payload)?)
            .bind(serde_json::to_string(&event.metadata)?)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Writes a snapshot unless the stored one is at least as recent.
/// Returns whether the snapshot was written.
pub(crate) async fn upsert_snapshot(
    conn: &mut SqliteConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    snapshot: &StoredSnapshot,
) -> Result<bool, SqliteEsError> {
    let result = sqlx::query(UPSERT_SNAPSHOT)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(i64::try_from(snapshot.last_sequence)?)
        .bind(i64::try_from(snapshot.snapshot_version)?)
        .bind(serde_json::to_string(&snapshot.payload)?)
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected() > 0)
}

fn decode_event(row: &SqliteRow) -> Result<SerializedEvent, SqliteEsError> {
    let sequence: i64 = row.try_get("sequence")?;
    let payload: String = row.try_get("payload")?;
    let metadata: String = row.try_get("metadata")?;
    Ok(SerializedEvent::new(
        row.try_get("aggregate_id")?,
        usize::try_from(sequence)?,
        row.try_get("aggregate_type")?,
        row.try_get("event_type")?,
        row.try_get("event_version")?,
        serde_json::from_str(&payload)?,
        serde_json::from_str(&metadata)?,
    ))
}

/// Feeds rows from sqlx's row stream into a bounded [`ReplayStream`].
///
/// The task owns its own pool connection and waits whenever the channel is
/// full, so memory stays at `STREAM_BUFFER` rows however large the table.
/// Errors go down the channel; the task stops when the consumer hangs up.
fn spawn_stream(
    pool: SqlitePool,
    sql: &'static str,
    aggregate_type: String,
    aggregate_id: Option<String>,
) -> ReplayStream {
    let (mut feed, stream) = ReplayStream::new(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut conn = match pool.acquire().await {
            Ok(conn) => conn,
            Err(err) => {
                let err = SqliteEsError::from(err).into_persistence_error();
                // The consumer may already be gone; nothing left to do.
                let _ = feed.push(Err(err)).await;
                return;
            }
        };
        let mut query = sqlx::query(sql).bind(aggregate_type);
        if let Some(aggregate_id) = aggregate_id {
            query = query.bind(aggregate_id);
        }
        let mut rows = query.fetch(&mut *conn);
        while let Some(row) = rows.next().await {
            let item = row
                .map_err(SqliteEsError::from)
                .and_then(|row| decode_event(&row))
                .map_err(SqliteEsError::into_persistence_error);
            if feed.push(item).await.is_err() {
                tracing::debug!("replay consumer dropped; stopping stream");
                return;
            }
        }
    });
    stream
}

impl PersistedEventRepository for SqliteEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        select_events_after(&self.pool, A::TYPE, aggregate_id, 0)
            .await
            .map_err(SqliteEsError::into_persistence_error)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        select_events_after(&self.pool, A::TYPE, aggregate_id, last_sequence)
            .await
            .map_err(SqliteEsError::into_persistence_error)
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let snapshot = select_snapshot(&self.pool, A::TYPE, aggregate_id)
            .await
            .map_err(SqliteEsError::into_persistence_error)?;
        Ok(snapshot.map(|snapshot| SerializedSnapshot {
            aggregate_id: aggregate_id.to_owned(),
            aggregate: snapshot.payload,
            current_sequence: snapshot.last_sequence,
            current_snapshot: snapshot.snapshot_version,
        }))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        persist_in_one_transaction(&self.pool, A::TYPE, events, snapshot_update)
            .await
            .map_err(SqliteEsError::into_persistence_error)
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        Ok(spawn_stream(
            self.pool.clone(),
            SELECT_ONE_AGGREGATE,
            A::TYPE.to_owned(),
            Some(aggregate_id.to_owned()),
        ))
    }

    async fn stream_all_events<A: Aggregate>(
        &self,
    ) -> Result<ReplayStream, PersistenceError> {
        Ok(spawn_stream(
            self.pool.clone(),
            SELECT_ALL_IN_COMMIT_ORDER,
            A::TYPE.to_owned(),
            None,
        ))
    }
}

const SELECT_ONE_AGGREGATE: &str = "SELECT aggregate_type, aggregate_id, \
     sequence, event_type, event_version, payload, metadata FROM events \
     WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY sequence";

async fn persist_in_one_transaction(
    pool: &SqlitePool,
    aggregate_type: &str,
    events: &[SerializedEvent],
    snapshot_update: Option<(String, Value, usize)>,
) -> Result<(), SqliteEsError> {
    // IMMEDIATE takes the write lock up front (waiting up to the busy
    // timeout) so the transaction never has to upgrade a stale read.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    insert_events(&mut tx, events).await?;
    if let Some((aggregate_id, payload, snapshot_version)) = snapshot_update {
        let last_sequence =
            if let Some(sequence) = events.iter().map(|e| e.sequence).max() {
                Some(sequence)
            } else {
                let max: Option<i64> = sqlx::query_scalar(SELECT_LAST_SEQUENCE)
                    .bind(aggregate_type)
                    .bind(&aggregate_id)
                    .fetch_one(&mut *tx)
                    .await?;
                max.map(usize::try_from).transpose()?
            };
        // No events at all means nothing to snapshot.
        if let Some(last_sequence) = last_sequence {
            let snapshot = StoredSnapshot {
                last_sequence,
                snapshot_version,
                payload,
            };
            upsert_snapshot(&mut tx, aggregate_type, &aggregate_id, &snapshot)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{StoredSnapshot, select_snapshot, upsert_snapshot};
    use crate::{open_pool, run_migrations};

    fn snapshot(last_sequence: usize, version: usize) -> StoredSnapshot {
        StoredSnapshot {
            last_sequence,
            snapshot_version: version,
            payload: json!({ "at": last_sequence }),
        }
    }

    #[tokio::test]
    async fn snapshot_writes_only_move_forward() {
        let pool = open_pool("sqlite::memory:", 1).await.unwrap();
        run_migrations(&pool).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();

        assert!(
            upsert_snapshot(&mut conn, "T", "a", &snapshot(5, 1))
                .await
                .unwrap()
        );
        // Older and equal sequences lose without touching the row.
        assert!(
            !upsert_snapshot(&mut conn, "T", "a", &snapshot(3, 9))
                .await
                .unwrap()
        );
        assert!(
            !upsert_snapshot(&mut conn, "T", "a", &snapshot(5, 9))
                .await
                .unwrap()
        );
        drop(conn);
        let stored = select_snapshot(&pool, "T", "a").await.unwrap();
        assert_eq!(stored, Some(snapshot(5, 1)));

        let mut conn = pool.acquire().await.unwrap();
        assert!(
            upsert_snapshot(&mut conn, "T", "a", &snapshot(7, 2))
                .await
                .unwrap()
        );
        // Other aggregate types and ids are independent rows.
        assert!(
            upsert_snapshot(&mut conn, "U", "a", &snapshot(1, 1))
                .await
                .unwrap()
        );
        drop(conn);
        let stored = select_snapshot(&pool, "T", "a").await.unwrap();
        assert_eq!(stored, Some(snapshot(7, 2)));
        assert_eq!(select_snapshot(&pool, "T", "b").await.unwrap(), None);
    }
}
