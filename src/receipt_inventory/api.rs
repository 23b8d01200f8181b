//! Internal `GET /receipts`: what the issuer wallet holds, per receipt;
//! and the operator's `POST /admin/receipts/discover`.

use rocket::serde::json::Json;
use rocket::{Route, State};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use std::collections::BTreeMap;
use std::sync::Arc;

use alloy::primitives::Address;

use super::{InventoryError, ReceiptHolding, discover, ledger_cqrs, list};
use crate::auth::InternalAuth;
use crate::chain::ChainSlot;
use crate::clock::SystemClock;
use crate::http::body::{BodyError, JsonBody};
use crate::http::{ApiError, ErrorBody};
use crate::tokenized_asset::Network;

pub fn routes() -> Vec<Route> {
    rocket::routes![list_receipts, discover_receipts]
}

/// Amounts as decimal strings of 18-decimal share units.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct ReceiptRow {
    pub vault: String,
    pub receipt_id: String,
    pub balance: String,
    pub reserved: String,
    pub available: String,
    pub source_issuer_request_id: Option<String>,
    pub updated_at: String,
}

impl From<ReceiptHolding> for ReceiptRow {
    fn from(holding: ReceiptHolding) -> Self {
        Self {
            vault: holding.vault.to_string(),
            receipt_id: holding.receipt_id.to_string(),
            balance: holding.balance.to_string(),
            reserved: holding.reserved.to_string(),
            available: holding.available().to_string(),
            source_issuer_request_id: holding.source_issuer_request_id,
            updated_at: holding.updated_at,
        }
    }
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct ReceiptList {
    pub receipts: Vec<ReceiptRow>,
}

/// What the issuer wallet holds, per receipt.
#[utoipa::path(
    get,
    path = "/receipts",
    tag = "internal",
    security(("internal_api_key" = [])),
    responses(
        (status = 200, description = "Every receipt held", body = ReceiptList),
    )
)]
#[rocket::get("/receipts")]
async fn list_receipts(
    _auth: InternalAuth,
    pool: &State<SqlitePool>,
) -> Result<Json<ReceiptList>, ApiError> {
    let receipts = list(pool).await.map_err(ApiError::internal)?;
    Ok(Json(ReceiptList {
        receipts: receipts.into_iter().map(ReceiptRow::from).collect(),
    }))
}

/// The receipt route in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_receipts, discover_receipts))]
pub struct ReceiptApiDoc;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoverRequest {
    /// First block to scan on every chain; each chain's `start_block`
    /// when absent.
    #[serde(default)]
    pub from_block: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DiscoveredReceipt {
    pub vault: String,
    pub receipt_id: String,
    /// Shares on chain when it was found (18-decimal units).
    pub balance: String,
}

/// One chain's scan.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScannedChain {
    pub network: String,
    pub from_block: u64,
}

/// What a discovery found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DiscoveryAnswer {
    /// The connected chains scanned (listings on other networks are
    /// left for when their chain is connected).
    pub scanned: Vec<ScannedChain>,
    /// Receipt ids the logs show our wallet received.
    pub seen: usize,
    /// Added to the inventory now (`ReceiptDiscovered`); empty on a
    /// repeat.
    pub discovered: Vec<DiscoveredReceipt>,
    /// Recorded balances the chain contradicted (`ReceiptReconciled`).
    pub corrected: usize,
}

/// Scans the logs of every listing's vaults (current and previous), on
/// each connected chain, for receipts our wallet received that the
/// inventory lacks.
#[utoipa::path(
    post,
    path = "/admin/receipts/discover",
    tag = "internal",
    security(("internal_api_key" = [])),
    request_body = DiscoverRequest,
    responses(
        (status = 200, description = "What was found; a repeat adds nothing", body = DiscoveryAnswer),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …`", body = ErrorBody),
        (status = 503, description = "No chain is connected, or a chain cannot be read; retry", body = ErrorBody),
    )
)]
#[rocket::post("/admin/receipts/discover", data = "<body>")]
async fn discover_receipts(
    _auth: InternalAuth,
    pool: &State<SqlitePool>,
    chain: &State<ChainSlot>,
    body: Result<JsonBody<DiscoverRequest>, BodyError>,
) -> Result<Json<DiscoveryAnswer>, ApiError> {
    let JsonBody(DiscoverRequest { from_block }) =
        body.map_err(|err| ApiError::from_body_error(&err))?;
    let mut vaults: BTreeMap<Network, Vec<Address>> = BTreeMap::new();
    for asset in crate::tokenized_asset::list_all(pool)
        .await
        .map_err(ApiError::internal)?
    {
        vaults
            .entry(asset.network)
            .or_default()
            .extend(std::iter::once(asset.vault).chain(asset.previous_vaults));
    }
    let ledger = ledger_cqrs(pool.inner().clone(), Arc::new(SystemClock));
    let mut answer = DiscoveryAnswer {
        scanned: Vec::new(),
        seen: 0,
        discovered: Vec::new(),
        corrected: 0,
    };
    for (network, vaults) in vaults {
        let Some(pipeline) = chain.get(network) else {
            continue;
        };
        let from_block = from_block
            .unwrap_or_else(|| pipeline.client().policy().start_block);
        let report =
            discover(pool, &ledger, pipeline.vault(), &vaults, from_block)
                .await
                .map_err(|error| match error {
                    InventoryError::Chain { .. }
                    | InventoryError::Scan { .. } => {
                        ApiError::unavailable(error.to_string())
                    }
                    other => ApiError::internal(other),
                })?;
        answer.scanned.push(ScannedChain {
            network: network.to_string(),
            from_block,
        });
        answer.seen = answer.seen.saturating_add(report.seen);
        answer.corrected = answer.corrected.saturating_add(report.corrected);
        answer.discovered.extend(report.discovered.into_iter().map(
            |(vault, receipt)| DiscoveredReceipt {
                vault: vault.to_string(),
                receipt_id: receipt.receipt_id.to_string(),
                balance: receipt.balance.to_string(),
            },
        ));
    }
    if answer.scanned.is_empty() {
        return Err(ApiError::unavailable(
            "no chain is connected: discovery reads the chain",
        ));
    }
    Ok(Json(answer))
}
