//! How the admin endpoints plug into the service.

use rocket::{Build, Rocket};
use sqlite_es::SqliteEsError;

use super::routes;
use crate::feature::Install;

/// Mounts the admin routes at `/`; they read the other features' state
/// and views, so there is nothing of their own to build.
#[allow(
    clippy::unused_async,
    reason = "the one install signature every feature has"
)]
pub async fn install(
    rocket: Rocket<Build>,
    _with: Install<'_>,
) -> Result<Rocket<Build>, SqliteEsError> {
    Ok(rocket.mount("/", routes()))
}
