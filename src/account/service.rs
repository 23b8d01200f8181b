//! How the account feature plugs into the service.

use std::sync::Arc;

use rocket::{Build, Rocket};
use sqlite_es::SqliteEsError;
use sqlx::SqlitePool;

use super::{AccountState, rebuild_stale_views, routes};
use crate::clock::{Clock, IdGenerator};

/// Rebuilds `account_view` if its projection's version changed (from the
/// event log), then manages [`AccountState`] and mounts the account routes
/// at `/`.
pub async fn install(
    rocket: Rocket<Build>,
    pool: &SqlitePool,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
) -> Result<Rocket<Build>, SqliteEsError> {
    if let Some(replayed) = rebuild_stale_views(pool).await? {
        tracing::info!(target: "account", replayed, "account view rebuilt");
    }
    Ok(rocket
        .manage(AccountState::new(pool.clone(), clock, ids))
        .mount("/", routes()))
}
