//! How the tokenized-asset feature plugs into the service.

use rocket::{Build, Rocket};
use sqlite_es::SqliteEsError;

use super::{
    CustodyAccounts, TokenizedAssetState, install_custody_accounts,
    rebuild_stale_views, routes,
};
use crate::feature::Install;

/// Rebuilds `tokenized_asset_view` if its projection's version changed
/// (from the event log), then manages [`TokenizedAssetState`] and mounts
/// the routes at `/`, with Alpaca's custody-account lookup beside them.
pub async fn install(
    rocket: Rocket<Build>,
    with: Install<'_>,
) -> Result<Rocket<Build>, SqliteEsError> {
    if let Some(replayed) = rebuild_stale_views(with.pool).await? {
        tracing::info!(target: "tokenized_asset", replayed, "tokenized-asset view rebuilt");
    }
    let custody = with.alpaca.map(|alpaca| {
        CustodyAccounts::new(alpaca.account_id, alpaca.custody_accounts.clone())
    });
    let rocket = rocket
        .manage(TokenizedAssetState::new(
            with.pool.clone(),
            with.clock.clone(),
        ))
        .mount("/", routes());
    Ok(install_custody_accounts(rocket, with.pool, custody))
}
