//! Opening the SQLite pool and migrating the event-store schema.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::error::SqliteEsError;

/// How long a writer waits for SQLite's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The event-store schema (`events`, `snapshots`), versions 1, 2, ...
///
/// The service's own migrations are timestamped and sort after these.
/// Both sets share `_sqlx_migrations`, so each must run with
/// `ignore_missing`; [`run_migrations`] does that for this set.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Applies the event-store schema, tolerating migrations from other sets
/// (the service's own) already recorded in `_sqlx_migrations`.
pub async fn run_migrations(pool: &SqlitePool) -> Result<(), SqliteEsError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}

/// Opens a pool on `url`: `sqlite:///abs/path.db`, `sqlite:rel.db`,
/// `sqlite::memory:` or a plain file path.
///
/// Every connection runs in WAL mode with `synchronous=FULL`: once we
/// acknowledge a request (mint accepted, redemption recorded) its commit
/// must survive power loss. `NORMAL` in WAL mode is only crash-safe for
/// the application, and may drop the last commits on an OS crash or power
/// cut. Foreign keys are on and writers wait up to [`BUSY_TIMEOUT`].
///
/// For `:memory:` all connections share one database (shared cache) and
/// the pool keeps one connection open forever, since the database
/// vanishes with its last connection.
pub async fn open_pool(
    url: &str,
    max_connections: u32,
) -> Result<SqlitePool, SqliteEsError> {
    // A bare ":memory:" would give every connection its own database.
    let url = if url == ":memory:" {
        "sqlite::memory:"
    } else {
        url
    };
    let in_memory = is_in_memory(url);
    let options = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url)?
    } else {
        SqliteConnectOptions::new().filename(url)
    }
    .create_if_missing(true)
    .journal_mode(SqliteJournalMode::Wal)
    .synchronous(SqliteSynchronous::Full)
    .busy_timeout(BUSY_TIMEOUT)
    .foreign_keys(true);

    let mut pool_options = SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        // A ping per acquire is a round trip to the connection's
        // thread on every query; a broken file handle shows up as the
        // query's own error anyway.
        .test_before_acquire(false);
    if in_memory {
        pool_options = pool_options
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    }
    Ok(pool_options.connect_with(options).await?)
}

fn is_in_memory(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return false;
    };
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:"
        || params.split('&').any(|param| param == "mode=memory")
}

#[cfg(test)]
mod tests {
    use super::is_in_memory;

    #[test]
    fn recognises_in_memory_urls() {
        assert!(is_in_memory("sqlite::memory:"));
        assert!(is_in_memory("sqlite://:memory:"));
        assert!(is_in_memory("sqlite://?mode=memory"));
        assert!(is_in_memory("sqlite://x?cache=shared&mode=memory"));
        assert!(!is_in_memory("sqlite:data.db"));
        assert!(!is_in_memory("sqlite:///tmp/a.db"));
        assert!(!is_in_memory(":memory:"));
    }
}
