//! Internal read endpoints: one redemption, and the unattributed inbound
//! transfers operators must resolve by hand.

use crate::driver::{self, DriverStatus, FlowName};
use rocket::serde::json::Json;
use rocket::{Route, State};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use super::monitor::{UnattributedTransfer, list_unattributed};
use super::{Redemption, RedemptionId, ReturnOrder, find};
use crate::auth::InternalAuth;
use crate::http::ApiError;
use crate::http::ErrorBody;
use crate::receipt_inventory::ReceiptBurn;

pub fn routes() -> Vec<Route> {
    rocket::routes![get_redemption, unattributed]
}

/// One burn, amounts as decimal strings (18-decimal share units).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct BurnRow {
    pub receipt_id: String,
    pub shares: String,
}

impl From<&ReceiptBurn> for BurnRow {
    fn from(burn: &ReceiptBurn) -> Self {
        Self {
            receipt_id: burn.receipt_id.to_string(),
            shares: burn.shares.to_string(),
        }
    }
}

/// `GET /redemptions/<issuer_request_id>`. Share amounts are decimal
/// strings of 18-decimal units; `alpaca_qty` is the 9-decimal quantity
/// sent to Alpaca.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct RedemptionResponse {
    pub issuer_request_id: String,
    pub state: String,
    pub network: String,
    pub vault: String,
    pub underlying: String,
    pub token: String,
    /// The AP's transfer into the issuer wallet.
    pub tx_hash: String,
    pub log_index: u64,
    pub block: u64,
    pub from_wallet: String,
    /// The account the transfer was attributed to; `null` for an
    /// unattributed transfer being returned.
    pub client_id: Option<String>,
    pub shares: String,
    pub alpaca_qty: Option<String>,
    pub dust: String,
    pub detected_at: String,
    pub tokenization_request_id: Option<String>,
    pub alpaca_called_at: Option<String>,
    /// The latest signed burn (pending or landed).
    pub burn_tx_hash: Option<String>,
    /// Earlier burn attempts replaced after a revert or drop.
    pub superseded_burn_tx_hashes: Vec<String>,
    pub burns: Vec<BurnRow>,
    pub burn_block: Option<u64>,
    pub completed_at: Option<String>,
    pub failure_reason: Option<String>,
    pub failed_at: Option<String>,
    /// Why the driver is still waiting on this redemption, if its last
    /// steps failed (RPC down, Alpaca unavailable, a landing no node shows
    /// yet, ...); cleared when it makes progress.
    #[serde(default)]
    pub last_error: Option<DriverStatus>,
    /// Set when an operator closed the redemption.
    #[serde(default)]
    pub close_reason: Option<String>,
    #[serde(default)]
    pub closed_at: Option<String>,
    /// Set when an operator sends an unattributed transfer back.
    #[serde(default)]
    pub return_reason: Option<String>,
    /// The latest signed return transfer (pending or landed).
    #[serde(default)]
    pub return_tx_hash: Option<String>,
    #[serde(default)]
    pub return_block: Option<u64>,
    #[serde(default)]
    pub returned_at: Option<String>,
}

impl RedemptionResponse {
    /// `None` for [`Redemption::NotDetected`].
    pub fn from_state(id: &RedemptionId, state: &Redemption) -> Option<Self> {
        let Some(detection) = state.detection() else {
            return state
                .return_order()
                .map(|order| Self::for_return(id, state, order));
        };
        let transfer = &detection.transfer;
        let alpaca = state.alpaca();
        let mut response = Self {
            issuer_request_id: id.to_string(),
            state: state.state_name().to_owned(),
            network: transfer.network.to_string(),
            vault: transfer.vault.to_string(),
            underlying: transfer.underlying.to_string(),
            token: transfer.token.to_string(),
            tx_hash: transfer.tx_hash.to_string(),
            log_index: transfer.log_index,
            block: transfer.block,
            from_wallet: transfer.from_wallet.to_string(),
            client_id: Some(transfer.client_id.to_string()),
            shares: transfer.shares.to_string(),
            alpaca_qty: detection.alpaca_qty.map(|qty| qty.to_string()),
            dust: detection.dust.to_string(),
            detected_at: detection.detected_at.to_rfc3339(),
            tokenization_request_id: alpaca
                .map(|call| call.tokenization_request_id.clone()),
            alpaca_called_at: alpaca.map(|call| call.called_at.to_rfc3339()),
            burn_tx_hash: None,
            superseded_burn_tx_hashes: Vec::new(),
            burns: Vec::new(),
            burn_block: None,
            completed_at: None,
            failure_reason: None,
            failed_at: None,
            last_error: None,
            close_reason: None,
            closed_at: None,
            return_reason: None,
            return_tx_hash: None,
            return_block: None,
            returned_at: None,
        };
        match state {
            Redemption::Burning {
                burn, superseded, ..
            } => {
                response.burn_tx_hash = Some(burn.tx.hash.to_string());
                response.superseded_burn_tx_hashes =
                    superseded.iter().map(|tx| tx.hash.to_string()).collect();
                response.burns = burn.burns.iter().map(BurnRow::from).collect();
            }
            Redemption::Completed {
                burns,
                burn_tx_hash,
                block,
                completed_at,
                ..
            } => {
                response.burn_tx_hash = Some(burn_tx_hash.to_string());
                response.burns = burns.iter().map(BurnRow::from).collect();
                response.burn_block = Some(*block);
                response.completed_at = Some(completed_at.to_rfc3339());
            }
            Redemption::Failed {
                burn,
                reason,
                failed_at,
                ..
            } => {
                if let Some(burn) = burn {
                    response.burn_tx_hash = Some(burn.tx.hash.to_string());
                    response.burns =
                        burn.burns.iter().map(BurnRow::from).collect();
                }
                response.failure_reason = Some(reason.to_string());
                response.failed_at = Some(failed_at.to_rfc3339());
            }
            Redemption::Closed {
                reason, closed_at, ..
            } => {
                response.close_reason = Some(reason.to_string());
                response.closed_at = Some(closed_at.to_rfc3339());
            }
            Redemption::NotDetected
            | Redemption::Detected { .. }
            | Redemption::AlpacaCalled { .. }
            | Redemption::JournalCompleted { .. }
            | Redemption::ReturnRequested { .. }
            | Redemption::Returning { .. }
            | Redemption::Returned { .. } => {}
        }
        Some(response)
    }

    /// An unattributed transfer an operator is sending back: no account,
    /// no Alpaca call, no burn.
    fn for_return(
        id: &RedemptionId,
        state: &Redemption,
        order: &ReturnOrder,
    ) -> Self {
        let transfer = &order.transfer;
        let (return_tx_hash, return_block, returned_at) = match state {
            Redemption::Returning { tx, .. } => {
                (Some(tx.hash.to_string()), None, None)
            }
            Redemption::Returned {
                tx_hash,
                block,
                returned_at,
                ..
            } => (
                Some(tx_hash.to_string()),
                Some(*block),
                Some(returned_at.to_rfc3339()),
            ),
            _ => (None, None, None),
        };
        Self {
            issuer_request_id: id.to_string(),
            state: state.state_name().to_owned(),
            network: transfer.network.to_string(),
            vault: transfer.vault.to_string(),
            underlying: transfer.underlying.to_string(),
            token: transfer.token.to_string(),
            tx_hash: transfer.tx_hash.to_string(),
            log_index: transfer.log_index,
            block: transfer.block,
            from_wallet: transfer.from_wallet.to_string(),
            client_id: None,
            shares: transfer.shares.to_string(),
            alpaca_qty: None,
            dust: "0".to_owned(),
            detected_at: transfer.detected_at.clone(),
            tokenization_request_id: None,
            alpaca_called_at: None,
            burn_tx_hash: None,
            superseded_burn_tx_hashes: Vec::new(),
            burns: Vec::new(),
            burn_block: None,
            completed_at: None,
            failure_reason: None,
            failed_at: None,
            last_error: None,
            close_reason: None,
            closed_at: None,
            return_reason: Some(order.reason.to_string()),
            return_tx_hash,
            return_block,
            returned_at,
        }
    }
}

/// One redemption: its state, amounts, Alpaca call and burns.
#[utoipa::path(
    get,
    path = "/redemptions/{issuer_request_id}",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("issuer_request_id" = String, Path, pattern = "^0x[0-9a-f]{64}-(0|[1-9][0-9]{0,18})$", description = "`<tx_hash>-<log_index>`: the AP transfer's `0x` + 64 lowercase hex digits, a dash, its log index")),
    responses(
        (status = 200, description = "The redemption", body = RedemptionResponse),
        (status = 404, description = "`redemption not found`", body = ErrorBody),
        (status = 422, description = "Malformed id", body = ErrorBody),
    )
)]
#[rocket::get("/redemptions/<issuer_request_id>")]
async fn get_redemption(
    _auth: InternalAuth,
    pool: &State<SqlitePool>,
    issuer_request_id: &str,
) -> Result<Json<RedemptionResponse>, ApiError> {
    let id: RedemptionId = issuer_request_id.parse().map_err(
        |err: super::InvalidRedemptionId| {
            ApiError::unprocessable(err.to_string())
        },
    )?;
    let state = find(pool, &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("redemption not found"))?;
    let mut response = RedemptionResponse::from_state(&id, &state)
        .ok_or_else(|| ApiError::not_found("redemption not found"))?;
    if !state.is_terminal() {
        response.last_error =
            driver::status(pool, FlowName::Redemption, id.as_str())
                .await
                .map_err(ApiError::internal)?;
    }
    Ok(Json(response))
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct UnattributedList {
    pub transfers: Vec<UnattributedTransfer>,
}

/// Inbound transfers from wallets no account owns, for operators to
/// resolve by hand.
#[utoipa::path(
    get,
    path = "/redemptions/unattributed",
    tag = "internal",
    security(("internal_api_key" = [])),
    responses(
        (status = 200, description = "The unattributed transfers", body = UnattributedList),
    )
)]
#[rocket::get("/redemptions/unattributed")]
async fn unattributed(
    _auth: InternalAuth,
    pool: &State<SqlitePool>,
) -> Result<Json<UnattributedList>, ApiError> {
    let transfers =
        list_unattributed(pool).await.map_err(ApiError::internal)?;
    Ok(Json(UnattributedList { transfers }))
}

/// The redemption routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_redemption, unattributed))]
pub struct RedemptionApiDoc;
