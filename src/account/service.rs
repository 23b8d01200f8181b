//! How the account feature plugs into the service.

use rocket::{Build, Rocket};
use sqlite_es::SqliteEsError;

use super::{AccountState, rebuild_stale_views, routes};
use crate::feature::Install;

/// Rebuilds `account_view` if its projection's version changed (from the
/// event log), then manages [`AccountState`] and mounts the account routes
/// at `/`.
pub async fn install(
    rocket: Rocket<Build>,
    with: Install<'_>,
) -> Result<Rocket<Build>, SqliteEsError> {
    if let Some(replayed) = rebuild_stale_views(with.pool).await? {
        tracing::info!(target: "account", replayed, "account view rebuilt");
    }
    Ok(rocket
        .manage(AccountState::new(
            with.pool.clone(),
            with.clock.clone(),
            with.ids.clone(),
        ))
        .mount("/", routes()))
}
