//! Read side of tokenized assets: `tokenized_asset_view` and the
//! `tokenized_asset_vaults` claim table (a vault backs one listing), both
//! written inside the commit that appends the events.

use std::sync::{Arc, LazyLock};

use alloy::primitives::Address;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::{CqrsFramework, EventEnvelope, View};
use serde::{Deserialize, Serialize};
use sqlite_es::{
    ProjectionError, SqliteEsError, SqliteStore, TxProjection, ViewProjection,
    sqlite_cqrs,
};
use sqlx::{SqliteConnection, SqlitePool};

use crate::vocabulary::address_key;

use super::{
    AssetKey, Freeze, Network, TokenSymbol, TokenizedAsset,
    TokenizedAssetEvent, TokenizedAssetServices, UnderlyingSymbol,
};

pub type TokenizedAssetCqrs =
    CqrsFramework<TokenizedAsset, SqliteStore<TokenizedAsset>>;

pub(super) const VAULT_CLAIMS: &str = "tokenized_asset_vaults";

/// The projection's version: bump it whenever `update` or the table
/// changes (a migration included), and startup rebuilds the table.
const VIEW_VERSION: u32 = 2;

static VIEW: LazyLock<ViewProjection<StoredAssetView, TokenizedAsset>> =
    LazyLock::new(|| ViewProjection::new("tokenized_asset_view", VIEW_VERSION));

/// The tokenized-asset command framework with its projections.
pub fn cqrs(
    pool: SqlitePool,
    services: TokenizedAssetServices,
) -> TokenizedAssetCqrs {
    let store = SqliteStore::new(pool)
        .with_projection(Arc::new(ViewProjection::<
            StoredAssetView,
            TokenizedAsset,
        >::new(VIEW.table(), VIEW_VERSION)))
        .with_projection(Arc::new(VaultClaims));
    sqlite_cqrs(store, services)
}

/// Rewrites `tokenized_asset_view` from the event log (an operator's rebuild).
pub async fn rebuild_views(pool: &SqlitePool) -> Result<u64, SqliteEsError> {
    VIEW.rebuild(pool).await
}

/// Rebuilds `tokenized_asset_view` only if its projection's version changed; the
/// events replayed, if it did.
pub async fn rebuild_stale_views(
    pool: &SqlitePool,
) -> Result<Option<u64>, SqliteEsError> {
    VIEW.rebuild_if_stale(pool).await
}

/// A listing as the mint and redemption flows see it.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct AssetView {
    pub underlying: UnderlyingSymbol,
    pub token: TokenSymbol,
    pub network: Network,
    #[serde(serialize_with = "checksummed")]
    #[schema(value_type = String)]
    pub vault: Address,
    pub enabled: bool,
    pub added_at: DateTime<Utc>,
    /// Vaults this listing pointed at before, oldest first.
    #[serde(serialize_with = "all_checksummed")]
    #[schema(value_type = Vec<String>)]
    pub previous_vaults: Vec<Address>,
    /// The operator's freeze, active or scheduled (or past its `until`).
    pub freeze: Option<Freeze>,
}

/// EIP-55 text, like every other address we show (alloy's own serde
/// writes lowercase); reading accepts either case.
fn checksummed<S: serde::Serializer>(
    address: &Address,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(address)
}

fn all_checksummed<S: serde::Serializer>(
    addresses: &[Address],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(addresses.iter().map(ToString::to_string))
}

impl AssetView {
    pub fn key(&self) -> AssetKey {
        AssetKey::new(self.underlying.clone(), self.network)
    }

    /// The freeze in force at `now`, if any.
    pub fn active_freeze(&self, now: DateTime<Utc>) -> Option<&Freeze> {
        self.freeze.as_ref().filter(|freeze| freeze.is_active(now))
    }
}

/// The stored payload: `null` until the asset is added.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct StoredAssetView(Option<AssetView>);

impl View<TokenizedAsset> for StoredAssetView {
    fn update(&mut self, event: &EventEnvelope<TokenizedAsset>) {
        match &event.payload {
            TokenizedAssetEvent::Added {
                underlying,
                token,
                network,
                vault,
                added_at,
            } => {
                self.0 = Some(AssetView {
                    underlying: underlying.clone(),
                    token: token.clone(),
                    network: *network,
                    vault: vault.address(),
                    enabled: true,
                    added_at: *added_at,
                    previous_vaults: Vec::new(),
                    freeze: None,
                });
            }
            TokenizedAssetEvent::VaultRepointed {
                previous_vault,
                vault,
                ..
            } => {
                if let Some(view) = &mut self.0 {
                    view.previous_vaults.push(previous_vault.address());
                    view.vault = vault.address();
                }
            }
            TokenizedAssetEvent::Enabled { .. } => {
                if let Some(view) = &mut self.0 {
                    view.enabled = true;
                }
            }
            TokenizedAssetEvent::Disabled { .. } => {
                if let Some(view) = &mut self.0 {
                    view.enabled = false;
                }
            }
            TokenizedAssetEvent::Frozen {
                reason,
                from,
                until,
                frozen_at,
            } => {
                if let Some(view) = &mut self.0 {
                    view.freeze = Some(Freeze {
                        reason: reason.clone(),
                        from: *from,
                        until: *until,
                        frozen_at: *frozen_at,
                    });
                }
            }
            TokenizedAssetEvent::Unfrozen { .. } => {
                if let Some(view) = &mut self.0 {
                    view.freeze = None;
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AssetQueryError {
    #[error(transparent)]
    Store(#[from] SqliteEsError),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("JSON error in tokenized_asset_view: {0}")]
    Json(#[from] serde_json::Error),
}

pub async fn find(
    pool: &SqlitePool,
    underlying: &UnderlyingSymbol,
    network: Network,
) -> Result<Option<AssetView>, AssetQueryError> {
    let key = AssetKey::new(underlying.clone(), network);
    load(pool, &key.to_string()).await
}

async fn load(
    pool: &SqlitePool,
    key: &str,
) -> Result<Option<AssetView>, AssetQueryError> {
    Ok(VIEW.load(pool, key).await?.and_then(|stored| stored.0))
}

/// Every listing, ordered by key.
pub async fn list_all(
    pool: &SqlitePool,
) -> Result<Vec<AssetView>, AssetQueryError> {
    let payloads: Vec<String> = sqlx::query_scalar(
        "SELECT payload FROM tokenized_asset_view ORDER BY view_id",
    )
    .fetch_all(pool)
    .await?;
    let mut all = Vec::new();
    for payload in payloads {
        let StoredAssetView(view) = serde_json::from_str(&payload)?;
        all.extend(view);
    }
    Ok(all)
}

/// Enabled listings, ordered by key.
pub async fn list_enabled(
    pool: &SqlitePool,
) -> Result<Vec<AssetView>, AssetQueryError> {
    let mut all = list_all(pool).await?;
    all.retain(|view| view.enabled);
    Ok(all)
}

/// The listings of `underlying` on every network, enabled or not,
/// ordered by network.
pub async fn list_for_underlying(
    pool: &SqlitePool,
    underlying: &UnderlyingSymbol,
) -> Result<Vec<AssetView>, AssetQueryError> {
    let mut all = list_all(pool).await?;
    all.retain(|view| view.underlying == *underlying);
    Ok(all)
}

/// The listing currently backed by `vault`, enabled or not.
pub async fn find_by_vault(
    pool: &SqlitePool,
    vault: Address,
) -> Result<Option<AssetView>, AssetQueryError> {
    let key: Option<String> = sqlx::query_scalar(
        "SELECT asset_key FROM tokenized_asset_vaults WHERE vault = ?",
    )
    .bind(address_key(vault))
    .fetch_optional(pool)
    .await?;
    match key {
        Some(key) => load(pool, &key).await,
        None => Ok(None),
    }
}

/// Claims the vault on `Added`, moves the claim on `VaultRepointed`.
struct VaultClaims;

impl VaultClaims {
    async fn claim(
        conn: &mut SqliteConnection,
        vault: Address,
        asset_key: &str,
    ) -> Result<(), ProjectionError> {
        let key = address_key(vault);
        sqlx::query(
            "INSERT INTO tokenized_asset_vaults (vault, asset_key) \
             VALUES (?, ?)",
        )
        .bind(&key)
        .bind(asset_key)
        .execute(&mut *conn)
        .await
        .map_err(|err| ProjectionError::from_sqlx(err, VAULT_CLAIMS, key))?;
        Ok(())
    }
}

#[async_trait]
impl TxProjection<TokenizedAsset> for VaultClaims {
    async fn project(
        &self,
        conn: &mut SqliteConnection,
        events: &[EventEnvelope<TokenizedAsset>],
    ) -> Result<(), ProjectionError> {
        for event in events {
            match &event.payload {
                TokenizedAssetEvent::Added { vault, .. } => {
                    Self::claim(conn, vault.address(), &event.aggregate_id)
                        .await?;
                }
                TokenizedAssetEvent::VaultRepointed {
                    previous_vault,
                    vault,
                    ..
                } => {
                    sqlx::query(
                        "DELETE FROM tokenized_asset_vaults \
                         WHERE vault = ? AND asset_key = ?",
                    )
                    .bind(address_key(previous_vault.address()))
                    .bind(&event.aggregate_id)
                    .execute(&mut *conn)
                    .await?;
                    Self::claim(conn, vault.address(), &event.aggregate_id)
                        .await?;
                }
                TokenizedAssetEvent::Enabled { .. }
                | TokenizedAssetEvent::Disabled { .. }
                | TokenizedAssetEvent::Frozen { .. }
                | TokenizedAssetEvent::Unfrozen { .. } => {}
            }
        }
        Ok(())
    }
}
