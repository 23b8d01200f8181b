//! The operator's actions on one mint, behind the internal key (SPEC.md
//! "Operator actions"):
//!
//! - `POST /admin/mints/<issuer_request_id>/retry {reason}`: a failed mint
//!   runs again. The chain is searched first for a `Deposit` whose
//!   receiptInformation names this mint; if there is one it is recorded
//!   (`MintRecovered`) and only the callback follows. Otherwise
//!   `MintRetried`: the mint follows its last transaction again (with a
//!   fresh replacement budget), so bytes that may still land are only
//!   rebroadcast, and a new transaction is signed only once that one is
//!   proven dead or reverted.
//! - `POST /admin/mints/<issuer_request_id>/close {reason, tx_hash?}`:
//!   stop for good; a mint with a transaction is closed only by someone
//!   who echoes its hash.
//!
//! Each action is a command whose event keeps the reason and the time; a
//! repeat of an action already done gets the same answer and changes
//! nothing.

use cqrs_es::{Aggregate as _, AggregateError, EventStore as _};
use rocket::serde::json::Json;
use rocket::{Route, State};
use serde::Serialize;
use sqlite_es::{SqliteStore, event_history, execute_retrying};

use super::{
    Mint, MintCommand, MintError, MintState, MintView, MintedTokens,
    TokenizationRequestId, find_by_issuer_request_id,
};
use crate::auth::InternalAuth;
use crate::chain::{ChainSlot, Effect, VaultService};
use crate::http::body::{BodyError, JsonBody};
use crate::http::{ApiError, ErrorBody};
use crate::operator::{
    CloseRequest, OperatorReason, RetryRequest, last_action,
};

pub fn routes() -> Vec<Route> {
    rocket::routes![retry, close]
}

/// The mint operator routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(retry, close))]
pub struct MintAdminApiDoc;

/// What an operator action did, and the mint afterwards.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActionAnswer {
    /// `retried`, `recovered` (the deposit was found on chain) or `closed`.
    pub action: &'static str,
    pub mint: MintView,
}

#[utoipa::path(
    post,
    path = "/admin/mints/{issuer_request_id}/retry",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("issuer_request_id" = String, Path, description = "The mint's issuer_request_id (a UUID)")),
    request_body = RetryRequest,
    responses(
        (status = 200, description = "`retried`, or `recovered` when the chain shows the mint's deposit (also the answer to a repeat)", body = ActionAnswer),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …` (a reason is required; unknown fields are refused)", body = ErrorBody),
        (status = 404, description = "`mint not found`", body = ErrorBody),
        (status = 409, description = "`Retry is not allowed in state <state>` (only a failed mint), or the deposit found does not match the mint", body = ErrorBody),
        (status = 503, description = "The chain is not connected or cannot be searched; retry", body = ErrorBody),
    )
)]
#[rocket::post("/admin/mints/<issuer_request_id>/retry", data = "<body>")]
async fn retry(
    _auth: InternalAuth,
    state: &State<MintState>,
    chain: &State<ChainSlot>,
    issuer_request_id: &str,
    body: Result<JsonBody<RetryRequest>, BodyError>,
) -> Result<Json<ActionAnswer>, ApiError> {
    let JsonBody(RetryRequest { reason }) =
        body.map_err(|err| ApiError::from_body_error(&err))?;
    let id = resolve(state, issuer_request_id).await?;
    let mint = load(state, &id).await?;
    let Mint::Failed {
        request,
        last_attempt,
        ..
    } = &mint
    else {
        return repeated_retry(state, &id, &reason, &mint).await;
    };
    // Nothing of ours can have landed without an attempt.
    let evidence = match last_attempt {
        Some(attempt) => {
            let pipeline =
                chain.get(request.order.network).ok_or_else(|| {
                    ApiError::unavailable(
                        "the mint's chain is not connected: a retry must look \
                     for the mint's deposit first",
                    )
                })?;
            find_deposit(
                pipeline.vault(),
                request,
                attempt.since_block.unwrap_or(0),
            )
            .await?
        }
        None => None,
    };
    let (command, action) = match evidence {
        Some(minted) => (
            MintCommand::Recover {
                reason: reason.clone(),
                minted,
            },
            "recovered",
        ),
        None => (
            MintCommand::Retry {
                reason: reason.clone(),
            },
            "retried",
        ),
    };
    match execute_retrying(state.cqrs(), id.as_str(), command).await {
        Ok(()) => {}
        // Another operator's identical retry won the race.
        Err(AggregateError::UserError(MintError::InvalidState { .. })) => {
            let mint = load(state, &id).await?;
            return repeated_retry(state, &id, &reason, &mint).await;
        }
        Err(error) => return Err(command_error(error)),
    }
    tracing::warn!(
        target: "mint",
        tokenization_request_id = %id,
        action,
        %reason,
        "operator action on a failed mint"
    );
    state.waker().notify_one();
    answer(state, &id, action).await
}

#[utoipa::path(
    post,
    path = "/admin/mints/{issuer_request_id}/close",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("issuer_request_id" = String, Path, description = "The mint's issuer_request_id (a UUID)")),
    request_body = CloseRequest,
    responses(
        (status = 200, description = "`closed` (also the answer to a repeat)", body = ActionAnswer),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …` (a reason is required; unknown fields are refused)", body = ErrorBody),
        (status = 404, description = "`mint not found`", body = ErrorBody),
        (status = 409, description = "`Close is not allowed in state <state>` (a transaction that may still land), or the mint's transaction was not echoed (`tx_hash`)", body = ErrorBody),
    )
)]
#[rocket::post("/admin/mints/<issuer_request_id>/close", data = "<body>")]
async fn close(
    _auth: InternalAuth,
    state: &State<MintState>,
    issuer_request_id: &str,
    body: Result<JsonBody<CloseRequest>, BodyError>,
) -> Result<Json<ActionAnswer>, ApiError> {
    let JsonBody(CloseRequest { reason, tx_hash }) =
        body.map_err(|err| ApiError::from_body_error(&err))?;
    let id = resolve(state, issuer_request_id).await?;
    execute_retrying(
        state.cqrs(),
        id.as_str(),
        MintCommand::Close {
            reason: reason.clone(),
            tx_hash,
        },
    )
    .await
    .map_err(command_error)?;
    tracing::warn!(
        target: "mint",
        tokenization_request_id = %id,
        %reason,
        "operator closed a mint"
    );
    answer(state, &id, "closed").await
}

/// The deposit for this mint, if the vault's logs show one.
async fn find_deposit(
    vault: &VaultService,
    request: &super::MintRequest,
    from_block: u64,
) -> Result<Option<MintedTokens>, ApiError> {
    let address = request.vault.address();
    let effect = Effect::Mint {
        tokenization_request_id: request.order.tokenization_request_id.as_str(),
    };
    let landed = vault
        .find_effect(address, effect, from_block)
        .await
        .map_err(|error| {
            ApiError::unavailable(format!(
                "cannot search the chain for the mint's deposit: {error}"
            ))
        })?;
    let Some(landed) = landed else {
        return Ok(None);
    };
    let deposit = VaultService::parse_mint(&landed.receipt, address).map_err(
        |error| {
            ApiError::unavailable(format!(
                "the deposit in {} cannot be read: {error}",
                landed.tx_hash
            ))
        },
    )?;
    Ok(Some(MintedTokens {
        tx_hash: landed.tx_hash,
        vault: request.vault,
        receipt_id: deposit.receipt_id,
        shares: deposit.shares,
        block: deposit.block,
        gas_used: deposit.gas_used,
    }))
}

/// A retry of a mint that is no longer failed: the same answer if this
/// very retry (same reason) is what moved it on, 409 otherwise.
async fn repeated_retry(
    state: &MintState,
    id: &TokenizationRequestId,
    reason: &OperatorReason,
    mint: &Mint,
) -> Result<Json<ActionAnswer>, ApiError> {
    let history = event_history(state.pool(), Mint::TYPE, id.as_str())
        .await
        .map_err(ApiError::internal)?;
    let actions = [
        ("MintEvent::MintRetried", "retried"),
        ("MintEvent::MintRecovered", "recovered"),
    ];
    match last_action(&history, &actions, reason) {
        Some((action, true)) => answer(state, id, action).await,
        _ => Err(ApiError::conflict(
            MintError::InvalidState {
                command: "Retry",
                state: mint.status(),
            }
            .to_string(),
        )),
    }
}

async fn resolve(
    state: &MintState,
    issuer_request_id: &str,
) -> Result<TokenizationRequestId, ApiError> {
    let id = issuer_request_id
        .parse()
        .map_err(|_| ApiError::not_found("mint not found"))?;
    find_by_issuer_request_id(state.pool(), &id)
        .await
        .map_err(ApiError::internal)?
        .map(|view| view.tokenization_request_id)
        .ok_or_else(|| ApiError::not_found("mint not found"))
}

async fn load(
    state: &MintState,
    id: &TokenizationRequestId,
) -> Result<Mint, ApiError> {
    let context = SqliteStore::<Mint>::new(state.pool().clone())
        .load_aggregate(id.as_str())
        .await
        .map_err(command_error)?;
    Ok(context.state().clone())
}

async fn answer(
    state: &MintState,
    id: &TokenizationRequestId,
    action: &'static str,
) -> Result<Json<ActionAnswer>, ApiError> {
    let mint = super::find_by_tokenization_request_id(state.pool(), id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("mint not found"))?;
    Ok(Json(ActionAnswer { action, mint }))
}

fn command_error(error: AggregateError<MintError>) -> ApiError {
    match error {
        AggregateError::UserError(MintError::NotInitiated) => {
            ApiError::not_found("mint not found")
        }
        AggregateError::UserError(error) => {
            ApiError::conflict(error.to_string())
        }
        AggregateError::AggregateConflict => ApiError::unavailable(
            "the mint is being changed concurrently; retry",
        ),
        error => ApiError::internal(error),
    }
}
