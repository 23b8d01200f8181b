//! How the mint feature plugs into the service.

use rocket::{Build, Rocket};
use sqlite_es::SqliteEsError;

use super::{MintState, rebuild_stale_views, routes};
use crate::feature::Install;

/// Rebuilds `mint_view` if its projection's version changed (from the event
/// log), then manages [`MintState`] and mounts the mint routes at `/`.
pub async fn install(
    rocket: Rocket<Build>,
    with: Install<'_>,
) -> Result<Rocket<Build>, SqliteEsError> {
    if let Some(replayed) = rebuild_stale_views(with.pool).await? {
        tracing::info!(target: "mint", replayed, "mint view rebuilt");
    }
    Ok(rocket
        .manage(MintState::new(
            with.pool.clone(),
            with.clock.clone(),
            with.ids.clone(),
            with.networks.to_vec(),
        ))
        .mount("/", routes())
        .mount("/", super::admin::routes()))
}
