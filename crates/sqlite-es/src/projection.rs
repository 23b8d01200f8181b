//! Projections that run inside the commit transaction.
//!
//! cqrs-es `Query`s run after the events are committed, so a crash or an
//! error in between leaves views (and uniqueness claims) behind the event
//! log. A [`TxProjection`] instead runs on the same SQLite transaction that
//! appends the events: either both land or neither does.

use std::marker::PhantomData;

use async_trait::async_trait;
use cqrs_es::{Aggregate, EventEnvelope, View};
use sqlx::{SqliteConnection, SqlitePool};

use crate::error::{SqliteEsError, is_unique_violation};
use crate::event_repository::select_page_by_aggregate;
use crate::view_repository::ViewTable;

/// Events read per page while rebuilding a view table.
const REBUILD_PAGE: u32 = 512;

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
#[derive(Debug)]
pub struct ViewProjection<V, A> {
    table: ViewTable,
    _types: PhantomData<fn() -> (V, A)>,
}

impl<V, A> ViewProjection<V, A>
where
    V: View<A>,
    A: Aggregate,
{
    pub fn new(table: &'static str) -> Self {
        Self {
            table: ViewTable::new(table),
            _types: PhantomData,
        }
    }

    pub fn table(&self) -> &'static str {
        self.table.name()
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

    /// Rewrites the whole table from the event log; returns the number of
    /// events replayed.
    ///
    /// Runs in one `BEGIN IMMEDIATE` transaction, so no command commits
    /// while the table is rebuilt and the replay sees every committed
    /// event. Events are paged along the primary key on that same
    /// connection (works on a one-connection pool), grouped by aggregate,
    /// so memory holds one page and one view.
    pub async fn rebuild(
        &self,
        pool: &SqlitePool,
    ) -> Result<u64, SqliteEsError> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        self.table.delete_all(&mut tx).await?;
        let mut replayed: u64 = 0;
        let mut current: Option<(String, V)> = None;
        let mut cursor = (String::new(), 0_usize);
        loop {
            let page = select_page_by_aggregate(
                &mut tx,
                A::TYPE,
                (&cursor.0, cursor.1),
                REBUILD_PAGE,
            )
            .await?;
            let Some(last) = page.last() else {
                break;
            };
            cursor = (last.aggregate_id.clone(), last.sequence);
            for event in page {
                let event = EventEnvelope::<A>::try_from(event)?;
                replayed =
                    replayed.checked_add(1).ok_or(SqliteEsError::Overflow {
                        what: "replay count",
                    })?;
                match &mut current {
                    Some((view_id, view)) if *view_id == event.aggregate_id => {
                        view.update(&event);
                    }
                    _ => {
                        if let Some((view_id, view)) = current.take() {
                            self.table
                                .write(&mut tx, &view_id, &view, 0)
                                .await?;
                        }
                        let mut view = V::default();
                        view.update(&event);
                        current = Some((event.aggregate_id, view));
                    }
                }
            }
        }
        if let Some((view_id, view)) = current {
            self.table.write(&mut tx, &view_id, &view, 0).await?;
        }
        tx.commit().await?;
        Ok(replayed)
    }
}

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
