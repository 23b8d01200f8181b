//! How the tokenized-asset feature plugs into the service.

use std::sync::Arc;

use rocket::{Build, Rocket};
use sqlite_es::SqliteEsError;
use sqlx::SqlitePool;

use super::{TokenizedAssetState, rebuild_stale_views, routes};
use crate::clock::Clock;

/// Rebuilds `tokenized_asset_view` if its projection's version changed
/// (from the event log), then manages [`TokenizedAssetState`] and mounts
/// the routes at `/`.
pub async fn install(
    rocket: Rocket<Build>,
    pool: &SqlitePool,
    clock: Arc<dyn Clock>,
) -> Result<Rocket<Build>, SqliteEsError> {
    if let Some(replayed) = rebuild_stale_views(pool).await? {
        tracing::info!(target: "tokenized_asset", replayed, "tokenized-asset view rebuilt");
    }
    Ok(rocket
        .manage(TokenizedAssetState::new(pool.clone(), clock))
        .mount("/", routes()))
}
