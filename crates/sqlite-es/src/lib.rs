//! cqrs-es 0.5 persistence on sqlx 0.9 SQLite.
//!
//! One SQLite transaction per command: the events, a due snapshot and
//! every [`TxProjection`] commit together or not at all. See README.md.

mod command;
mod error;
mod event_repository;
mod history;
mod pool;
mod projection;
mod store;
mod view_repository;
mod writer;

pub use command::{CONFLICT_RETRIES, claim_conflict, execute_retrying};
pub use error::{SqliteEsError, is_unique_violation};
pub use event_repository::{STREAM_BUFFER, SqliteEventRepository};
pub use history::{StoredEvent, event_history};
pub use pool::{BUSY_TIMEOUT, MIGRATOR, open_pool, run_migrations};
pub use projection::{ProjectionError, TxProjection, ViewProjection};
pub use store::{SqliteAggregateContext, SqliteStore, sqlite_cqrs};
pub use view_repository::{SqliteViewRepository, create_view_table};
