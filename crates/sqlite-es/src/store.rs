//! The cqrs-es [`EventStore`] with one SQLite transaction per command.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, CqrsFramework, EventEnvelope,
    EventStore,
};
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::{SqliteConnection, SqlitePool};

use crate::error::{SqliteEsError, is_unique_violation};
use crate::event_repository::{
    SqliteEventRepository, StoredSnapshot, insert_events, select_events_after,
    select_snapshot, upsert_snapshot,
};
use crate::projection::TxProjection;
use crate::writer::{CommitError, CommitJob, Writer};

/// Event store for aggregate `A`: events, optional snapshot and every
/// [`TxProjection`] of a command are written together or not at all, in
/// one savepoint of the database writer's group commit.
pub struct SqliteStore<A: Aggregate> {
    pool: SqlitePool,
    writer: Arc<Writer>,
    projections: Vec<Arc<dyn TxProjection<A>>>,
    snapshot_every: Option<NonZeroUsize>,
    upcasters: Arc<Vec<Box<dyn EventUpcaster>>>,
}

impl<A: Aggregate> fmt::Debug for SqliteStore<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("aggregate_type", &A::TYPE)
            .field("projections", &self.projections.len())
            .field("snapshot_every", &self.snapshot_every)
            .field("upcasters", &self.upcasters.len())
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> Clone for SqliteStore<A> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            writer: Arc::clone(&self.writer),
            projections: self.projections.clone(),
            snapshot_every: self.snapshot_every,
            upcasters: Arc::clone(&self.upcasters),
        }
    }
}

impl<A: Aggregate> SqliteStore<A> {
    /// A store that replays every event on load (no snapshots).
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            writer: Writer::for_pool(&pool),
            pool,
            projections: Vec::new(),
            snapshot_every: None,
            upcasters: Arc::new(Vec::new()),
        }
    }

    /// Adds a projection run inside every commit, after the events are
    /// appended, in the order added.
    #[must_use]
    pub fn with_projection(
        mut self,
        projection: Arc<dyn TxProjection<A>>,
    ) -> Self {
        self.projections.push(projection);
        self
    }

    /// Snapshots the aggregate whenever a commit crosses a multiple of
    /// `every` events; loads then replay only the events after it.
    #[must_use]
    pub fn with_snapshots(mut self, every: NonZeroUsize) -> Self {
        self.snapshot_every = Some(every);
        self
    }

    /// Rewrites stored event payloads at load time (cqrs-es upcasters).
    #[must_use]
    pub fn with_upcasters(
        mut self,
        upcasters: Vec<Box<dyn EventUpcaster>>,
    ) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Deletes every snapshot of `A` (e.g. at startup after `apply` or
    /// the aggregate's shape changed); loads then replay from the log.
    /// Returns the number of snapshots removed.
    pub async fn clear_snapshots(&self) -> Result<u64, SqliteEsError> {
        let result =
            sqlx::query("DELETE FROM snapshots WHERE aggregate_type = ?")
                .bind(A::TYPE)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected())
    }

    /// The raw cqrs-es repository on the same pool, e.g. for
    /// `QueryReplay` or `stream_all_events`.
    pub fn repository(&self) -> SqliteEventRepository {
        SqliteEventRepository::new(self.pool.clone())
    }

    fn deserialize(
        &self,
        events: Vec<SerializedEvent>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        events
            .into_iter()
            .map(|event| {
                let event = self.upcasters.iter().fold(event, |event, up| {
                    if up.can_upcast(&event.event_type, &event.event_version) {
                        up.upcast(event)
                    } else {
                        event
                    }
                });
                EventEnvelope::<A>::try_from(event)
                    .map_err(AggregateError::from)
            })
            .collect()
    }

    /// Starting point for a load: the snapshot when enabled and readable,
    /// else the default aggregate at sequence 0.
    async fn starting_point(
        &self,
        aggregate_id: &str,
    ) -> Result<Start<A>, SqliteEsError> {
        if self.snapshot_every.is_none() {
            return Ok(Start::default());
        }
        let Some(snapshot) =
            select_snapshot(&self.pool, A::TYPE, aggregate_id).await?
        else {
            return Ok(Start::default());
        };
        match serde_json::from_value::<A>(snapshot.payload) {
            Ok(aggregate) => Ok(Start {
                aggregate,
                sequence: snapshot.last_sequence,
                snapshot_version: Some(snapshot.snapshot_version),
            }),
            Err(err) => {
                // The aggregate's shape changed: replay everything and let
                // the next due snapshot overwrite the unreadable one.
                tracing::warn!(
                    aggregate_type = A::TYPE,
                    aggregate_id,
                    error = %err,
                    "snapshot unreadable; replaying all events"
                );
                Ok(Start {
                    aggregate: A::default(),
                    sequence: 0,
                    snapshot_version: Some(snapshot.snapshot_version),
                })
            }
        }
    }

    /// The snapshot to write with this commit, if one is due.
    fn snapshot_due(
        &self,
        context: &SqliteAggregateContext<A>,
        envelopes: &[EventEnvelope<A>],
        new_sequence: usize,
    ) -> Result<Option<StoredSnapshot>, SqliteEsError> {
        let Some(every) = self.snapshot_every else {
            return Ok(None);
        };
        let Some(base) = &context.base else {
            return Ok(None);
        };
        if context.current_sequence / every.get() == new_sequence / every.get()
        {
            return Ok(None);
        }
        // Rebuild from the state as loaded rather than trusting the
        // handled aggregate, so a snapshot always equals what a replay of
        // the stored events would produce.
        let mut aggregate: A = serde_json::from_value(base.clone())?;
        for envelope in envelopes {
            aggregate.apply(envelope.payload.clone());
        }
        let snapshot_version = context
            .snapshot_version
            .map_or(Some(1), |version| version.checked_add(1))
            .ok_or(SqliteEsError::Overflow {
                what: "snapshot version",
            })?;
        Ok(Some(StoredSnapshot {
            last_sequence: new_sequence,
            snapshot_version,
            payload: serde_json::to_value(&aggregate)?,
        }))
    }
}

/// One command's writes: its events, a due snapshot and every projection,
/// run by the database's [`Writer`] inside the command's savepoint.
struct Commit<A: Aggregate> {
    aggregate_id: String,
    envelopes: Arc<Vec<EventEnvelope<A>>>,
    serialized: Vec<SerializedEvent>,
    snapshot: Option<StoredSnapshot>,
    projections: Vec<Arc<dyn TxProjection<A>>>,
}

impl<A: Aggregate + 'static> CommitJob for Commit<A> {
    fn write(
        self: Box<Self>,
        conn: &mut SqliteConnection,
    ) -> BoxFuture<'_, Result<(), CommitError>> {
        Box::pin(async move {
            insert_events(conn, &self.serialized).await.map_err(
                |err| match err {
                    SqliteEsError::Sqlx(ref sqlx)
                        if is_unique_violation(sqlx) =>
                    {
                        CommitError::Conflict
                    }
                    other => CommitError::Other(other),
                },
            )?;
            if let Some(snapshot) = &self.snapshot {
                let written = upsert_snapshot(
                    conn,
                    A::TYPE,
                    &self.aggregate_id,
                    snapshot,
                )
                .await?;
                if !written {
                    tracing::debug!(
                        aggregate_type = A::TYPE,
                        aggregate_id = self.aggregate_id,
                        "newer snapshot already stored"
                    );
                }
            }
            for projection in &self.projections {
                projection
                    .project(conn, &self.envelopes)
                    .await
                    .map_err(SqliteEsError::from)?;
            }
            Ok(())
        })
    }
}

struct Start<A> {
    aggregate: A,
    sequence: usize,
    snapshot_version: Option<usize>,
}

impl<A: Default> Default for Start<A> {
    fn default() -> Self {
        Self {
            aggregate: A::default(),
            sequence: 0,
            snapshot_version: None,
        }
    }
}

/// A loaded aggregate and where it stands in the event log.
pub struct SqliteAggregateContext<A: Aggregate> {
    aggregate_id: String,
    aggregate: A,
    current_sequence: usize,
    snapshot_version: Option<usize>,
    /// State as loaded, kept only when snapshots are on.
    base: Option<Value>,
}

impl<A: Aggregate> SqliteAggregateContext<A> {
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }

    /// Sequence of the last event applied (0 for a new aggregate).
    pub fn current_sequence(&self) -> usize {
        self.current_sequence
    }

    pub fn state(&self) -> &A {
        &self.aggregate
    }
}

impl<A: Aggregate> AggregateContext<A> for SqliteAggregateContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

impl<A: Aggregate + 'static> EventStore<A> for SqliteStore<A> {
    type AC = SqliteAggregateContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let events = select_events_after(&self.pool, A::TYPE, aggregate_id, 0)
            .await
            .map_err(SqliteEsError::into_aggregate_error)?;
        self.deserialize(events)
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<SqliteAggregateContext<A>, AggregateError<A::Error>> {
        let start = self
            .starting_point(aggregate_id)
            .await
            .map_err(SqliteEsError::into_aggregate_error)?;
        let Start {
            mut aggregate,
            mut sequence,
            snapshot_version,
        } = start;
        let events =
            select_events_after(&self.pool, A::TYPE, aggregate_id, sequence)
                .await
                .map_err(SqliteEsError::into_aggregate_error)?;
        for envelope in self.deserialize(events)? {
            let expected = sequence.checked_add(1).ok_or_else(|| {
                SqliteEsError::Overflow { what: "sequence" }
                    .into_aggregate_error()
            })?;
            if envelope.sequence != expected {
                return Err(SqliteEsError::SequenceGap {
                    aggregate_type: A::TYPE.to_owned(),
                    aggregate_id: aggregate_id.to_owned(),
                    expected,
                    found: envelope.sequence,
                }
                .into_aggregate_error());
            }
            aggregate.apply(envelope.payload);
            sequence = expected;
        }
        let base = match self.snapshot_every {
            Some(_) => {
                Some(serde_json::to_value(&aggregate).map_err(|err| {
                    AggregateError::UnexpectedError(Box::new(
                        SqliteEsError::Json(err),
                    ))
                })?)
            }
            None => None,
        };
        Ok(SqliteAggregateContext {
            aggregate_id: aggregate_id.to_owned(),
            aggregate,
            current_sequence: sequence,
            snapshot_version,
            base,
        })
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: SqliteAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let unexpected =
            |err: SqliteEsError| AggregateError::UnexpectedError(Box::new(err));
        let mut envelopes = Vec::with_capacity(events.len());
        let mut sequence = context.current_sequence;
        for payload in events {
            sequence = sequence.checked_add(1).ok_or_else(|| {
                unexpected(SqliteEsError::Overflow { what: "sequence" })
            })?;
            envelopes.push(EventEnvelope {
                aggregate_id: context.aggregate_id.clone(),
                sequence,
                payload,
                metadata: metadata.clone(),
            });
        }
        let serialized = envelopes
            .iter()
            .map(SerializedEvent::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| unexpected(err.into()))?;
        let snapshot = self
            .snapshot_due(&context, &envelopes, sequence)
            .map_err(unexpected)?;
        let envelopes = Arc::new(envelopes);
        let commit = Commit {
            aggregate_id: context.aggregate_id,
            envelopes: Arc::clone(&envelopes),
            serialized,
            snapshot,
            projections: self.projections.clone(),
        };
        match self.writer.commit(Box::new(commit)).await {
            // The writer has dropped its copy once it answers.
            Ok(()) => Ok(Arc::try_unwrap(envelopes)
                .unwrap_or_else(|shared| shared.as_ref().clone())),
            Err(CommitError::Conflict) => {
                Err(AggregateError::AggregateConflict)
            }
            Err(CommitError::Other(err)) => Err(err.into_aggregate_error()),
        }
    }
}

/// A [`CqrsFramework`] over `store` with no post-commit queries: views
/// belong in the store's [`TxProjection`]s so they commit with the events.
pub fn sqlite_cqrs<A: Aggregate + 'static>(
    store: SqliteStore<A>,
    services: A::Services,
) -> CqrsFramework<A, SqliteStore<A>> {
    CqrsFramework::new(store, Vec::new(), services)
}
