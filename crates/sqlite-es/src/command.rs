//! Running commands: the one optimistic-conflict retry, and the one way to
//! tell which claim table refused a commit.

use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventStore};

use crate::error::SqliteEsError;

/// How often a command is decided again after another writer committed to
/// the same stream first.
pub const CONFLICT_RETRIES: u32 = 3;

/// Executes `command` on stream `id`; on an optimistic-concurrency
/// conflict (another commit won the race) it is decided again on the new
/// state, up to [`CONFLICT_RETRIES`] times. Any other outcome is returned
/// as it is.
pub async fn execute_retrying<A, ES>(
    cqrs: &CqrsFramework<A, ES>,
    id: &str,
    command: A::Command,
) -> Result<(), AggregateError<A::Error>>
where
    A: Aggregate,
    A::Command: Clone,
    ES: EventStore<A>,
{
    let mut attempt = 0;
    loop {
        match cqrs.execute(id, command.clone()).await {
            Err(AggregateError::AggregateConflict)
                if attempt < CONFLICT_RETRIES =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The claim table whose uniqueness refused the commit, when that is why
/// `error` happened (a [`SqliteEsError::ProjectionConflict`]).
pub fn claim_conflict<E: std::error::Error>(
    error: &AggregateError<E>,
) -> Option<&str> {
    let AggregateError::UnexpectedError(cause) = error else {
        return None;
    };
    match cause.downcast_ref::<SqliteEsError>() {
        Some(SqliteEsError::ProjectionConflict { table, .. }) => {
            Some(table.as_str())
        }
        _ => None,
    }
}
