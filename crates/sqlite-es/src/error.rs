//! The crate's error type and its mapping onto cqrs-es errors.

use std::num::TryFromIntError;
use std::sync::Arc;

use cqrs_es::AggregateError;
use cqrs_es::persist::PersistenceError;
use sqlx::migrate::MigrateError;

/// Everything that can go wrong in the SQLite event store.
///
/// Commit failures that are not optimistic-lock conflicts reach callers
/// boxed inside an [`AggregateError`]; `downcast_ref::<SqliteEsError>()`
/// recovers this type (e.g. to answer 409 on a [`Self::ProjectionConflict`]).
#[derive(Debug, thiserror::Error)]
pub enum SqliteEsError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("integer out of range: {0}")]
    IntConversion(#[from] TryFromIntError),
    #[error("migration failed: {0}")]
    Migrate(#[from] MigrateError),
    #[error("event persistence failed: {0}")]
    Persistence(#[from] PersistenceError),
    /// A projection's uniqueness claim was already held by another key.
    #[error("projection conflict in table {table} for key {key}")]
    ProjectionConflict { table: String, key: String },
    /// A view row changed between load and write.
    #[error(
        "view {view_id} in table {table} is no longer at version \
         {expected_version}"
    )]
    ViewVersionConflict {
        table: String,
        view_id: String,
        expected_version: i64,
    },
    /// Stored sequences for an aggregate are not contiguous.
    #[error(
        "aggregate {aggregate_type}/{aggregate_id}: expected sequence \
         {expected}, found {found}"
    )]
    SequenceGap {
        aggregate_type: String,
        aggregate_id: String,
        expected: usize,
        found: usize,
    },
    /// A counter (sequence, snapshot or view version) would overflow.
    #[error("{what} overflowed")]
    Overflow { what: &'static str },
    /// The batch this commit was written in did not commit (nothing of it
    /// was written).
    #[error("group commit failed: {0}")]
    GroupCommit(Arc<sqlx::Error>),
    /// The database's writer task is gone (its runtime is shutting down).
    #[error("the database writer has stopped")]
    WriterStopped,
    /// A custom projection failed for its own reasons.
    #[error("projection failed: {0}")]
    Projection(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// True when `err` is a UNIQUE / PRIMARY KEY constraint violation.
///
/// Falls back to SQLite's message text in case the extended result code
/// was not reported.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

impl SqliteEsError {
    /// Maps to the cqrs-es error a command caller sees, keeping the cause.
    pub(crate) fn into_aggregate_error<E: std::error::Error>(
        self,
    ) -> AggregateError<E> {
        match self {
            Self::Sqlx(_) | Self::GroupCommit(_) | Self::WriterStopped => {
                AggregateError::DatabaseConnectionError(Box::new(self))
            }
            Self::Persistence(err) => err.into(),
            Self::Json(_) | Self::SequenceGap { .. } => {
                AggregateError::DeserializationError(Box::new(self))
            }
            Self::IntConversion(_)
            | Self::Migrate(_)
            | Self::ProjectionConflict { .. }
            | Self::ViewVersionConflict { .. }
            | Self::Overflow { .. }
            | Self::Projection(_) => {
                AggregateError::UnexpectedError(Box::new(self))
            }
        }
    }

    /// Maps to the cqrs-es persistence error used by repository traits.
    pub(crate) fn into_persistence_error(self) -> PersistenceError {
        match self {
            Self::Sqlx(ref err) if is_unique_violation(err) => {
                PersistenceError::OptimisticLockError
            }
            Self::Sqlx(_) | Self::GroupCommit(_) | Self::WriterStopped => {
                PersistenceError::ConnectionError(Box::new(self))
            }
            Self::Persistence(err) => err,
            Self::Json(_) | Self::SequenceGap { .. } => {
                PersistenceError::DeserializationError(Box::new(self))
            }
            Self::IntConversion(_)
            | Self::Migrate(_)
            | Self::ProjectionConflict { .. }
            | Self::ViewVersionConflict { .. }
            | Self::Overflow { .. }
            | Self::Projection(_) => {
                PersistenceError::UnknownError(Box::new(self))
            }
        }
    }
}
