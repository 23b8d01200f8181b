//! Projections that run inside the commit transaction.
//!
//! cqrs-es `Query`s run after the events are committed, so a crash or an
//! error in between leaves views (and uniqueness claims) behind the event
//! log. A [`TxProjection`] instead runs on the same SQLite transaction that
//! appends the events: either both land or neither does.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;

use async_trait::async_trait;
use cqrs_es::{Aggregate, EventEnvelope, View};
use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool};

use crate::error::{SqliteEsError, is_unique_violation};
use crate::view_repository::ViewTable;

/// Events read per page while rebuilding a view table.
const REBUILD_PAGE: i64 = 4096;

/// Views held in memory while rebuilding before they are written out.
const REBUILD_CACHE: usize = 16_384;

/// A projection applied atomically with the events it projects.
#[async_trait]
pub trait TxProjection<A: Aggregate>: Send + Sync {
    /// Runs inside the same SQLite transaction that appends `events`.
    ///
    /// Returning an error rolls back the whole commit, events included.
    async fn project(
        &self,
        conn: &mut SqliteConnection,
        events: &[EventEnvelope<A>],
    ) -> Result<(), ProjectionError>;
}

/// Why a [`TxProjection`] refused a commit.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// A uniqueness claim (e.g. an email or wallet) is held by another
    /// aggregate. Surfaces as [`SqliteEsError::ProjectionConflict`].
    #[error("conflict in table {table} for key {key}")]
    Conflict { table: String, key: String },
    /// The view row moved on between load and write.
    #[error(
        "view {view_id} in table {table} is no longer at version \
         {expected_version}"
    )]
    ViewVersionConflict {
        table: String,
        view_id: String,
        expected_version: i64,
    },
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("view version overflowed")]
    Overflow,
    /// Anything else a custom projection needs to report.
    #[error("{0}")]
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl ProjectionError {
    /// Classifies a sqlx error from writing `key` into `table`: a UNIQUE
    /// violation becomes [`Self::Conflict`], anything else [`Self::Sqlx`].
    pub fn from_sqlx(
        err: sqlx::Error,
        table: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        if is_unique_violation(&err) {
            Self::Conflict {
                table: table.into(),
                key: key.into(),
            }
        } else {
            Self::Sqlx(err)
        }
    }
}

impl From<SqliteEsError> for ProjectionError {
    fn from(err: SqliteEsError) -> Self {
        match err {
            SqliteEsError::Sqlx(err) => Self::Sqlx(err),
            SqliteEsError::Json(err) => Self::Json(err),
            SqliteEsError::ProjectionConflict { table, key } => {
                Self::Conflict { table, key }
            }
            SqliteEsError::ViewVersionConflict {
                table,
                view_id,
                expected_version,
            } => Self::ViewVersionConflict {
                table,
                view_id,
                expected_version,
            },
            SqliteEsError::Overflow { .. } => Self::Overflow,
            other => Self::Other(Box::new(other)),
        }
    }
}

impl From<ProjectionError> for SqliteEsError {
    fn from(err: ProjectionError) -> Self {
        match err {
            ProjectionError::Conflict { table, key } => {
                Self::ProjectionConflict { table, key }
            }
            ProjectionError::ViewVersionConflict {
                table,
                view_id,
                expected_version,
            } => Self::ViewVersionConflict {
                table,
                view_id,
                expected_version,
            },
            ProjectionError::Sqlx(err) => Self::Sqlx(err),
            ProjectionError::Json(err) => Self::Json(err),
            ProjectionError::Overflow => Self::Overflow {
                what: "view version",
            },
            ProjectionError::Other(err) => Self::Projection(err),
        }
    }
}

/// A cqrs-es [`View`] kept in a `(view_id, version, payload)` table,
/// keyed by aggregate id and updated inside the commit.
///
/// Every projection declares a version. The table is rebuilt from the log
/// only when the version recorded in `view_versions` differs (see
/// [`Self::rebuild_if_stale`]): bump it whenever `View::update` or the
/// table's shape changes, including in a migration.
#[derive(Debug)]
pub struct ViewProjection<V, A> {
    table: ViewTable,
    version: u32,
    _types: PhantomData<fn() -> (V, A)>,
}

impl<V, A> ViewProjection<V, A>
where
    V: View<A>,
    A: Aggregate,
{
    pub fn new(table: &'static str, version: u32) -> Self {
        Self {
            table: ViewTable::new(table),
            version,
            _types: PhantomData,
        }
    }

    pub fn table(&self) -> &'static str {
        self.table.name()
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The committed view for `view_id` (an aggregate id), if any.
    pub async fn load(
        &self,
        pool: &SqlitePool,
        view_id: &str,
    ) -> Result<Option<V>, SqliteEsError> {
        let mut conn = pool.acquire().await?;
        Ok(self
            .table
            .load::<V>(&mut conn, view_id)
            .await?
            .map(|(view, _)| view))
    }

    /// Rebuilds the table when `view_versions` records another version
    /// than [`Self::version`] (or none); returns the events replayed, or
    /// `None` when the table was current.
    ///
    /// Skipping is sound because the table is only ever written inside
    /// the commits that append its events: it cannot lag the log.
    pub async fn rebuild_if_stale(
        &self,
        pool: &SqlitePool,
    ) -> Result<Option<u64>, SqliteEsError> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let stored: Option<i64> = sqlx::query_scalar(SELECT_VIEW_VERSION)
            .bind(self.table.name())
            .fetch_optional(&mut *tx)
            .await?;
        if stored == Some(i64::from(self.version)) {
            tx.commit().await?;
            return Ok(None);
        }
        tracing::info!(
            table = self.table.name(),
            stored,
            version = self.version,
            "view version changed; rebuilding"
        );
        let replayed = self.rebuild_in(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(replayed))
    }

    /// Rewrites the whole table from the event log and records its
    /// version; returns the number of events replayed (an operator's
    /// explicit rebuild).
    ///
    /// Runs in one `BEGIN IMMEDIATE` transaction, so no command commits
    /// while the table is rebuilt and the replay sees every committed
    /// event. Works on a one-connection pool.
    pub async fn rebuild(
        &self,
        pool: &SqlitePool,
    ) -> Result<u64, SqliteEsError> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let replayed = self.rebuild_in(&mut tx).await?;
        tx.commit().await?;
        Ok(replayed)
    }

    /// Streams the aggregate type's events in commit (rowid) order, in
    /// pages on this connection, parses each payload once, straight into
    /// the event type (no upcasters), and writes the views in multi-row
    /// batches. About [`REBUILD_CACHE`] views are held; evicted views that
    /// see another event are read back from the table, a page at a time.
    async fn rebuild_in(
        &self,
        conn: &mut SqliteConnection,
    ) -> Result<u64, SqliteEsError> {
        // The rebuild dirties far more pages than the default 2 MiB cache
        // holds; SQLite would spill them to the WAL mid-transaction and
        // read them back. A larger cache for the rebuild only.
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&mut *conn)
            .await?;
        sqlx::query(REBUILD_CACHE_SIZE).execute(&mut *conn).await?;
        let replayed = self.replay(conn).await;
        sqlx::query(AssertSqlSafe(format!("PRAGMA cache_size = {cache}")))
            .execute(&mut *conn)
            .await?;
        replayed
    }

    async fn replay(
        &self,
        conn: &mut SqliteConnection,
    ) -> Result<u64, SqliteEsError> {
        self.table.delete_all(conn).await?;
        let mut replayed: u64 = 0;
        let mut dirty: HashMap<String, V> = HashMap::new();
        let mut after_rowid: i64 = 0;
        loop {
            let page: Vec<RawEvent> = sqlx::query_as(SELECT_REBUILD_PAGE)
                .bind(A::TYPE)
                .bind(after_rowid)
                .bind(REBUILD_PAGE)
                .fetch_all(&mut *conn)
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after_rowid = last.0;
            // Views not held whose stream started earlier were flushed:
            // read them back in one query per page, not one per view.
            let evicted: HashSet<&str> = page
                .iter()
                .filter(|(_, id, sequence, _, _)| {
                    *sequence > 1 && !dirty.contains_key(id.as_str())
                })
                .map(|(_, id, _, _, _)| id.as_str())
                .collect();
            let evicted: Vec<&str> = evicted.into_iter().collect();
            for (view_id, view) in
                self.table.load_many::<V>(conn, &evicted).await?
            {
                dirty.insert(view_id, view);
            }
            for (_, aggregate_id, sequence, payload, metadata) in page {
                let event = EventEnvelope::<A> {
                    sequence: usize::try_from(sequence)?,
                    payload: serde_json::from_str(&payload)?,
                    metadata: serde_json::from_str(&metadata)?,
                    aggregate_id,
                };
                replayed =
                    replayed.checked_add(1).ok_or(SqliteEsError::Overflow {
                        what: "replay count",
                    })?;
                if let Some(view) = dirty.get_mut(&event.aggregate_id) {
                    view.update(&event);
                    continue;
                }
                // A new stream, or (after a gap the log should not have)
                // a view that was never written.
                let mut view = V::default();
                view.update(&event);
                dirty.insert(event.aggregate_id, view);
            }
            if dirty.len() >= REBUILD_CACHE {
                self.table.upsert_batch(conn, dirty.drain()).await?;
            }
        }
        self.table.upsert_batch(conn, dirty.drain()).await?;
        sqlx::query(UPSERT_VIEW_VERSION)
            .bind(self.table.name())
            .bind(i64::from(self.version))
            .execute(&mut *conn)
            .await?;
        Ok(replayed)
    }
}

/// SQLite's page cache while rebuilding (negative: KiB), 32 MiB: more
/// than the default 2 MiB, within the replay's memory bound.
const REBUILD_CACHE_SIZE: &str = "PRAGMA cache_size = -32768";

/// `(rowid, aggregate_id, sequence, payload, metadata)`.
type RawEvent = (i64, String, i64, String, String);

const SELECT_REBUILD_PAGE: &str = "SELECT rowid, aggregate_id, sequence, \
     payload, metadata FROM events INDEXED BY events_by_type_in_commit_order \
     WHERE aggregate_type = ? AND rowid > ? ORDER BY rowid LIMIT ?";

const SELECT_VIEW_VERSION: &str =
    "SELECT version FROM view_versions WHERE view = ?";

const UPSERT_VIEW_VERSION: &str = "INSERT INTO view_versions (view, version) \
     VALUES (?, ?) ON CONFLICT (view) DO UPDATE SET version = excluded.version";

#[async_trait]
impl<V, A> TxProjection<A> for ViewProjection<V, A>
where
    V: View<A>,
    A: Aggregate,
{
    async fn project(
        &self,
        conn: &mut SqliteConnection,
        events: &[EventEnvelope<A>],
    ) -> Result<(), ProjectionError> {
        for batch in events.chunk_by(|a, b| a.aggregate_id == b.aggregate_id) {
            let Some(first) = batch.first() else {
                continue;
            };
            let view_id = first.aggregate_id.as_str();
            let (mut view, version) = self
                .table
                .load::<V>(conn, view_id)
                .await?
                .unwrap_or_else(|| (V::default(), 0));
            for event in batch {
                view.update(event);
            }
            self.table.write(conn, view_id, &view, version).await?;
        }
        Ok(())
    }
}
