//! The operator's actions on one redemption, behind the internal key
//! (SPEC.md "Operator actions"):
//!
//! - `POST /admin/redemptions/<id>/retry {reason}`: a failed redemption
//!   runs again. After a burn failure the chain is searched first for a
//!   `Withdraw` whose receiptInformation names this redemption; if there
//!   is one it is recorded and nothing is burned again.
//! - `POST /admin/redemptions/<id>/force-complete {reason, burn_tx}`: a
//!   burn done by hand, accepted only once the chain shows that
//!   transaction withdrawing exactly this redemption's shares from our
//!   wallet.
//! - `POST /admin/redemptions/<id>/close {reason, tx_hash?}`: stop for
//!   good (the burn echoed, if there was one); the tokens stay in the
//!   wallet.
//!
//! - `POST /admin/unattributed/<tx_hash>/<log_index>/attribute
//!   {reason, client_id}` and `…/return {reason}`: an unattributed
//!   transfer is redeemed for an account, or sent back to its sender by
//!   the redemption flow (`returns.rs`), exactly once.
//!
//! A repeat of an action already done answers the same and changes
//! nothing.

use alloy::primitives::{Address, TxHash};
use cqrs_es::AggregateError;
use rocket::serde::json::Json;
use rocket::{Route, State};
use serde::{Deserialize, Serialize};
use sqlite_es::{event_history, execute_retrying};

use super::monitor::list_unattributed;
use super::{
    AGGREGATE_TYPE, DetectedTransfer, FailureReason, Redemption,
    RedemptionCommand, RedemptionError, RedemptionId, RedemptionResponse,
    RedemptionState, ReturnTransfer, find,
};
use crate::account::ClientId;
use crate::auth::InternalAuth;
use crate::chain::{ChainSlot, Effect, ReceiptSummary, VaultService};
use crate::http::body::{BodyError, JsonBody};
use crate::http::{ApiError, ErrorBody};
use crate::operator::{
    CloseRequest, OperatorReason, RetryRequest, last_action,
};
use crate::receipt_inventory::ReceiptBurn;

pub fn routes() -> Vec<Route> {
    rocket::routes![retry, force_complete, close, attribute, return_transfer]
}

/// The redemption operator routes in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(retry, force_complete, close, attribute, return_transfer))]
pub struct RedemptionAdminApiDoc;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceCompleteRequest {
    pub reason: OperatorReason,
    /// The burn done by hand.
    #[schema(value_type = String, pattern = "^0x[0-9a-fA-F]{64}$")]
    pub burn_tx: TxHash,
}

/// What an operator action did, and the redemption afterwards.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedemptionActionAnswer {
    /// `retried`, `burn_recorded`, `closed`, `attributed` or
    /// `return_requested`.
    pub action: &'static str,
    pub redemption: RedemptionResponse,
}

#[utoipa::path(
    post,
    path = "/admin/redemptions/{id}/retry",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("id" = String, Path, description = "The redemption's issuer_request_id (`<tx_hash>-<log_index>`)")),
    request_body = RetryRequest,
    responses(
        (status = 200, description = "`retried`, or `burn_recorded` when the chain shows its burn (also the answer to a repeat)", body = RedemptionActionAnswer),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …` (a reason is required; unknown fields are refused)", body = ErrorBody),
        (status = 404, description = "`redemption not found`", body = ErrorBody),
        (status = 409, description = "`Retry is not allowed in state <state>`, or the failure cannot be retried (Alpaca's refusal, dust)", body = ErrorBody),
        (status = 503, description = "The chain is not connected or cannot be searched; retry", body = ErrorBody),
    )
)]
#[rocket::post("/admin/redemptions/<id>/retry", data = "<body>")]
async fn retry(
    _auth: InternalAuth,
    state: &State<RedemptionState>,
    chain: &State<ChainSlot>,
    id: &str,
    body: Result<JsonBody<RetryRequest>, BodyError>,
) -> Result<Json<RedemptionActionAnswer>, ApiError> {
    let JsonBody(RetryRequest { reason }) =
        body.map_err(|err| ApiError::from_body_error(&err))?;
    let (id, redemption) = load(state, id).await?;
    let Redemption::Failed {
        detection,
        burn,
        reason: failure,
        ..
    } = &redemption
    else {
        return repeated(state, &id, &reason, &redemption, "Retry").await;
    };
    // Only a failed burn can have burned anything.
    let evidence = if matches!(failure, FailureReason::BurnFailed { .. }) {
        let pipeline = connected(chain, detection.transfer.network)?;
        let from_block = burn
            .as_ref()
            .and_then(|burn| burn.tx.head_at_signing)
            .unwrap_or(detection.transfer.block);
        find_burn(pipeline.vault(), detection.transfer.vault, &id, from_block)
            .await?
    } else {
        None
    };
    let (command, action) = match evidence {
        Some((burn_tx_hash, block, burns)) => (
            RedemptionCommand::RecordBurnByOperator {
                reason: reason.clone(),
                burn_tx_hash,
                burns,
                block,
            },
            "burn_recorded",
        ),
        None => (
            RedemptionCommand::Retry {
                reason: reason.clone(),
            },
            "retried",
        ),
    };
    execute(state, &id, &reason, command, action).await
}

#[utoipa::path(
    post,
    path = "/admin/redemptions/{id}/force-complete",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("id" = String, Path, description = "The redemption's issuer_request_id (`<tx_hash>-<log_index>`)")),
    request_body = ForceCompleteRequest,
    responses(
        (status = 200, description = "`burn_recorded` (also the answer to a repeat)", body = RedemptionActionAnswer),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …` (a reason is required; unknown fields are refused)", body = ErrorBody),
        (status = 404, description = "`redemption not found`", body = ErrorBody),
        (status = 409, description = "The transaction is not confirmed, withdrew nothing of ours, or not exactly this redemption's shares; or the state does not allow it", body = ErrorBody),
        (status = 503, description = "The chain is not connected or cannot be read; retry", body = ErrorBody),
    )
)]
#[rocket::post("/admin/redemptions/<id>/force-complete", data = "<body>")]
async fn force_complete(
    _auth: InternalAuth,
    state: &State<RedemptionState>,
    chain: &State<ChainSlot>,
    id: &str,
    body: Result<JsonBody<ForceCompleteRequest>, BodyError>,
) -> Result<Json<RedemptionActionAnswer>, ApiError> {
    let JsonBody(ForceCompleteRequest { reason, burn_tx }) =
        body.map_err(|err| ApiError::from_body_error(&err))?;
    let (id, redemption) = load(state, id).await?;
    if let Redemption::Completed { burn_tx_hash, .. } = &redemption
        && *burn_tx_hash == burn_tx
    {
        return answer(state, &id, "burn_recorded").await;
    }
    let detection = redemption
        .detection()
        .ok_or_else(|| ApiError::not_found("redemption not found"))?;
    let pipeline = connected(chain, detection.transfer.network)?;
    let receipt = pipeline
        .client()
        .settled_receipt(burn_tx)
        .await
        .map_err(|error| {
            ApiError::unavailable(format!("cannot read {burn_tx}: {error}"))
        })?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "{burn_tx} is not a confirmed transaction on this chain"
            ))
        })?;
    let burns = withdrawals(
        &receipt,
        detection.transfer.vault,
        pipeline.client().address(),
    );
    if burns.is_empty() {
        return Err(ApiError::conflict(format!(
            "{burn_tx} withdrew nothing from vault {} for our wallet",
            detection.transfer.vault
        )));
    }
    execute(
        state,
        &id,
        &reason,
        RedemptionCommand::RecordBurnByOperator {
            reason: reason.clone(),
            burn_tx_hash: burn_tx,
            burns,
            block: receipt.block_number,
        },
        "burn_recorded",
    )
    .await
}

#[utoipa::path(
    post,
    path = "/admin/redemptions/{id}/close",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("id" = String, Path, description = "The redemption's issuer_request_id (`<tx_hash>-<log_index>`)")),
    request_body = CloseRequest,
    responses(
        (status = 200, description = "`closed` (also the answer to a repeat)", body = RedemptionActionAnswer),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …` (a reason is required; unknown fields are refused)", body = ErrorBody),
        (status = 404, description = "`redemption not found`", body = ErrorBody),
        (status = 409, description = "`Close is not allowed in state <state>` (only detected or failed), or the burn was not echoed (`tx_hash`)", body = ErrorBody),
    )
)]
#[rocket::post("/admin/redemptions/<id>/close", data = "<body>")]
async fn close(
    _auth: InternalAuth,
    state: &State<RedemptionState>,
    id: &str,
    body: Result<JsonBody<CloseRequest>, BodyError>,
) -> Result<Json<RedemptionActionAnswer>, ApiError> {
    let JsonBody(CloseRequest { reason, tx_hash }) =
        body.map_err(|err| ApiError::from_body_error(&err))?;
    let (id, _) = load(state, id).await?;
    execute(
        state,
        &id,
        &reason,
        RedemptionCommand::Close {
            reason: reason.clone(),
            tx_hash,
        },
        "closed",
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeRequest {
    pub reason: OperatorReason,
    /// The account the transfer belongs to.
    #[schema(value_type = String, format = Uuid)]
    pub client_id: ClientId,
}

#[utoipa::path(
    post,
    path = "/admin/unattributed/{tx_hash}/{log_index}/attribute",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(
        ("tx_hash" = String, Path, description = "The transfer's transaction"),
        ("log_index" = u64, Path, description = "The transfer's log index"),
    ),
    request_body = AttributeRequest,
    responses(
        (status = 200, description = "`attributed`: the redemption is detected and runs (also the answer to a repeat)", body = RedemptionActionAnswer),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 404, description = "`unattributed transfer not found`, `account not found`", body = ErrorBody),
        (status = 409, description = "The vault no longer backs a listing, or the transfer was detected for another account", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …` (a reason is required)", body = ErrorBody),
    )
)]
#[rocket::post(
    "/admin/unattributed/<tx_hash>/<log_index>/attribute",
    data = "<body>"
)]
async fn attribute(
    _auth: InternalAuth,
    state: &State<RedemptionState>,
    tx_hash: &str,
    log_index: &str,
    body: Result<JsonBody<AttributeRequest>, BodyError>,
) -> Result<Json<RedemptionActionAnswer>, ApiError> {
    let JsonBody(AttributeRequest { reason, client_id }) =
        body.map_err(|err| ApiError::from_body_error(&err))?;
    let not_found = || ApiError::not_found("unattributed transfer not found");
    let tx_hash: TxHash = tx_hash.parse().map_err(|_| not_found())?;
    let log_index: u64 = log_index.parse().map_err(|_| not_found())?;
    let id = RedemptionId::for_transfer(tx_hash, log_index);
    let unattributed = list_unattributed(&state.pool)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .find(|row| row.tx_hash == tx_hash && row.log_index == log_index);
    let Some(row) = unattributed else {
        // Already attributed (the row goes with the detection): a repeat
        // for the same account gets the same answer.
        return match find(&state.pool, &id).await.map_err(ApiError::internal)? {
            Some(redemption)
                if redemption
                    .detection()
                    .is_some_and(|d| d.transfer.client_id == client_id) =>
            {
                answer(state, &id, "attributed").await
            }
            Some(redemption) if redemption.return_order().is_some() => {
                Err(invalid_state("Attribute", &redemption))
            }
            _ => Err(not_found()),
        };
    };
    crate::account::find_by_client_id(&state.pool, &client_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("account not found"))?;
    let asset = crate::tokenized_asset::find_by_vault(&state.pool, row.vault)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "vault {} no longer backs a listing",
                row.vault
            ))
        })?;
    let shares = row
        .amount
        .parse()
        .map_err(|_| ApiError::internal(InvalidAmount(row.amount.clone())))?;
    let ap = super::monitor::ap_ref_for(&state.pool, client_id)
        .await
        .map_err(ApiError::internal)?;
    let transfer = DetectedTransfer {
        network: row.network,
        vault: row.vault,
        underlying: asset.underlying,
        token: asset.token,
        tx_hash,
        log_index,
        block: row.block,
        from_wallet: row.from_wallet,
        client_id,
        ap,
        shares,
    };
    execute(
        state,
        &id,
        &reason,
        RedemptionCommand::Attribute {
            transfer,
            reason: reason.clone(),
        },
        "attributed",
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnRequest {
    pub reason: OperatorReason,
}

#[utoipa::path(
    post,
    path = "/admin/unattributed/{tx_hash}/{log_index}/return",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(
        ("tx_hash" = String, Path, description = "The transfer's transaction"),
        ("log_index" = u64, Path, description = "The transfer's log index"),
    ),
    request_body = ReturnRequest,
    responses(
        (status = 200, description = "`return_requested`: the tokens are sent back to the sender once; `redemption.state` shows `return_requested`, `returning` or `returned` with `return_tx_hash` (also the answer to a repeat with the same reason)", body = RedemptionActionAnswer),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 404, description = "`unattributed transfer not found`", body = ErrorBody),
        (status = 409, description = "`Return is not allowed in state <state>` (attributed, or returned for another reason), or the vault no longer backs a listing", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …` (a reason is required)", body = ErrorBody),
    )
)]
#[rocket::post(
    "/admin/unattributed/<tx_hash>/<log_index>/return",
    data = "<body>"
)]
async fn return_transfer(
    _auth: InternalAuth,
    state: &State<RedemptionState>,
    tx_hash: &str,
    log_index: &str,
    body: Result<JsonBody<ReturnRequest>, BodyError>,
) -> Result<Json<RedemptionActionAnswer>, ApiError> {
    let JsonBody(ReturnRequest { reason }) =
        body.map_err(|err| ApiError::from_body_error(&err))?;
    let not_found = || ApiError::not_found("unattributed transfer not found");
    let tx_hash: TxHash = tx_hash.parse().map_err(|_| not_found())?;
    let log_index: u64 = log_index.parse().map_err(|_| not_found())?;
    let id = RedemptionId::for_transfer(tx_hash, log_index);
    let transfer = if let Some(existing) =
        find(&state.pool, &id).await.map_err(ApiError::internal)?
    {
        // A repeat: the aggregate answers it (same reason, same answer).
        existing
            .return_order()
            .map(|order| order.transfer.clone())
            .ok_or_else(|| invalid_state("Return", &existing))?
    } else {
        let row = list_unattributed(&state.pool)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .find(|row| row.tx_hash == tx_hash && row.log_index == log_index)
            .ok_or_else(not_found)?;
        return_transfer_of(state, row).await?
    };
    execute(
        state,
        &id,
        &reason,
        RedemptionCommand::RequestReturn {
            transfer,
            reason: reason.clone(),
        },
        "return_requested",
    )
    .await
}

async fn return_transfer_of(
    state: &RedemptionState,
    row: super::monitor::UnattributedTransfer,
) -> Result<ReturnTransfer, ApiError> {
    let asset = crate::tokenized_asset::find_by_vault(&state.pool, row.vault)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "vault {} no longer backs a listing",
                row.vault
            ))
        })?;
    let shares = row
        .amount
        .parse()
        .map_err(|_| ApiError::internal(InvalidAmount(row.amount.clone())))?;
    Ok(ReturnTransfer {
        network: row.network,
        vault: row.vault,
        underlying: asset.underlying,
        token: asset.token,
        tx_hash: row.tx_hash,
        log_index: row.log_index,
        block: row.block,
        from_wallet: row.from_wallet,
        shares,
        detected_at: row.detected_at,
    })
}

fn invalid_state(command: &'static str, redemption: &Redemption) -> ApiError {
    ApiError::conflict(
        RedemptionError::InvalidState {
            command,
            state: redemption.state_name(),
        }
        .to_string(),
    )
}

/// A stored amount that is not a decimal number of shares.
#[derive(Debug, thiserror::Error)]
#[error("unattributed_transfers.amount {0:?} is not a number of shares")]
struct InvalidAmount(String);

/// The chain the redemption was detected on: it is checked there.
fn connected(
    chain: &ChainSlot,
    network: crate::tokenized_asset::Network,
) -> Result<&crate::chain::TxPipeline, ApiError> {
    chain.get(network).ok_or_else(|| {
        ApiError::unavailable(
            "the redemption's chain is not connected: this action checks \
             the chain first",
        )
    })
}

/// This redemption's burn, if the vault's logs show one.
async fn find_burn(
    vault: &VaultService,
    vault_address: Address,
    id: &RedemptionId,
    from_block: u64,
) -> Result<Option<(TxHash, u64, Vec<ReceiptBurn>)>, ApiError> {
    let landed = vault
        .find_effect(
            vault_address,
            Effect::Burn {
                issuer_request_id: id.as_str(),
            },
            from_block,
        )
        .await
        .map_err(|error| {
            ApiError::unavailable(format!(
                "cannot search the chain for the redemption's burn: {error}"
            ))
        })?;
    Ok(landed.map(|landed| {
        let burns = withdrawals(
            &landed.receipt,
            vault_address,
            vault.client().address(),
        );
        (landed.tx_hash, landed.receipt.block_number, burns)
    }))
}

/// The receipts `owner` withdrew from `vault` in one transaction.
fn withdrawals(
    receipt: &ReceiptSummary,
    vault: Address,
    owner: Address,
) -> Vec<ReceiptBurn> {
    VaultService::parse_burn_by(&receipt.logs, vault, owner)
        .into_iter()
        .map(|burn| ReceiptBurn {
            receipt_id: burn.receipt_id,
            shares: burn.shares,
        })
        .collect()
}

async fn execute(
    state: &RedemptionState,
    id: &RedemptionId,
    reason: &OperatorReason,
    command: RedemptionCommand,
    action: &'static str,
) -> Result<Json<RedemptionActionAnswer>, ApiError> {
    let name = match &command {
        RedemptionCommand::Retry { .. } => "Retry",
        RedemptionCommand::Close { .. } => "Close",
        RedemptionCommand::RequestReturn { .. } => "Return",
        _ => "RecordBurnByOperator",
    };
    match execute_retrying(state.cqrs(), id.as_str(), command).await {
        Ok(()) => {}
        // Another operator's identical action won the race.
        Err(AggregateError::UserError(RedemptionError::InvalidState {
            ..
        })) => {
            let (_, redemption) = load(state, id.as_str()).await?;
            return repeated(state, id, reason, &redemption, name).await;
        }
        Err(error) => return Err(command_error(error)),
    }
    tracing::warn!(
        target: "redemption",
        issuer_request_id = %id,
        action,
        %reason,
        "operator action on a redemption"
    );
    state.wake.notify_one();
    answer(state, id, action).await
}

/// An action on a redemption no longer in the state it needs: the same
/// answer if this very action (same reason) is what moved it on, 409
/// naming the state otherwise.
async fn repeated(
    state: &RedemptionState,
    id: &RedemptionId,
    reason: &OperatorReason,
    redemption: &Redemption,
    command: &'static str,
) -> Result<Json<RedemptionActionAnswer>, ApiError> {
    let history = event_history(&state.pool, AGGREGATE_TYPE, id.as_str())
        .await
        .map_err(ApiError::internal)?;
    let actions = [
        ("RedemptionEvent::Retried", "retried"),
        ("RedemptionEvent::BurnRecordedByOperator", "burn_recorded"),
    ];
    match last_action(&history, &actions, reason) {
        Some((action, true)) => answer(state, id, action).await,
        _ => Err(invalid_state(command, redemption)),
    }
}

async fn load(
    state: &RedemptionState,
    raw: &str,
) -> Result<(RedemptionId, Redemption), ApiError> {
    let id: RedemptionId = raw
        .parse()
        .map_err(|_| ApiError::not_found("redemption not found"))?;
    let redemption = find(&state.pool, &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("redemption not found"))?;
    Ok((id, redemption))
}

async fn answer(
    state: &RedemptionState,
    id: &RedemptionId,
    action: &'static str,
) -> Result<Json<RedemptionActionAnswer>, ApiError> {
    let (_, redemption) = load(state, id.as_str()).await?;
    let redemption = RedemptionResponse::from_state(id, &redemption)
        .ok_or_else(|| ApiError::not_found("redemption not found"))?;
    Ok(Json(RedemptionActionAnswer { action, redemption }))
}

fn command_error(error: AggregateError<RedemptionError>) -> ApiError {
    match error {
        AggregateError::UserError(RedemptionError::NotDetected) => {
            ApiError::not_found("redemption not found")
        }
        AggregateError::UserError(error) => {
            ApiError::conflict(error.to_string())
        }
        AggregateError::AggregateConflict => ApiError::unavailable(
            "the redemption is being changed concurrently; retry",
        ),
        error => ApiError::internal(error),
    }
}
