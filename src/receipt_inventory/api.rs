//! Internal `GET /receipts`: what the issuer wallet holds, per receipt.

use rocket::serde::json::Json;
use rocket::{Route, State};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use super::{ReceiptHolding, list};
use crate::auth::InternalAuth;
use crate::http::ApiError;

pub fn routes() -> Vec<Route> {
    rocket::routes![list_receipts]
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
#[openapi(paths(list_receipts))]
pub struct ReceiptApiDoc;
