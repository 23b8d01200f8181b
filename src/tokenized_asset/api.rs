//! HTTP endpoints for tokenized assets: listing management (internal) and
//! the token list Alpaca validates mints against (itn-wire.md §4.3).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cqrs_es::AggregateError;
use rocket::serde::json::{self, Json};
use rocket::{Route, State};
use serde::{Deserialize, Serialize};
use sqlite_es::{claim_conflict, execute_retrying};
use sqlx::SqlitePool;

use super::view::VAULT_CLAIMS;
use super::{
    AssetKey, AssetView, Network, TokenSymbol, TokenizedAssetCommand,
    TokenizedAssetCqrs, TokenizedAssetError, TokenizedAssetServices,
    UnderlyingSymbol, Vault, cqrs, find, list_enabled,
};
use crate::auth::{AlpacaAuth, InternalAuth};
use crate::clock::Clock;
use crate::http::ApiError;
use crate::http::ErrorBody;

/// Everything the tokenized-asset endpoints need, managed by Rocket.
pub struct TokenizedAssetState {
    cqrs: TokenizedAssetCqrs,
    pool: SqlitePool,
}

impl TokenizedAssetState {
    pub fn new(pool: SqlitePool, clock: Arc<dyn Clock>) -> Self {
        Self {
            cqrs: cqrs(pool.clone(), TokenizedAssetServices { clock }),
            pool,
        }
    }

    pub fn cqrs(&self) -> &TokenizedAssetCqrs {
        &self.cqrs
    }

    async fn execute(
        &self,
        key: &AssetKey,
        command: TokenizedAssetCommand,
    ) -> Result<(), ApiError> {
        execute_retrying(&self.cqrs, &key.to_string(), command)
            .await
            .map_err(command_error)
    }

    async fn load(&self, key: &AssetKey) -> Result<AssetView, ApiError> {
        find(&self.pool, &key.underlying, key.network)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("tokenized asset not found"))
    }
}

pub fn routes() -> Vec<Route> {
    rocket::routes![
        add_asset,
        enable_asset,
        disable_asset,
        get_asset,
        list_tokens_oldest,
        list_tokens,
    ]
}

fn command_error(error: AggregateError<TokenizedAssetError>) -> ApiError {
    match error {
        AggregateError::UserError(TokenizedAssetError::NotAdded) => {
            ApiError::not_found("tokenized asset not found")
        }
        AggregateError::UserError(
            err @ (TokenizedAssetError::TokenMismatch { .. }
            | TokenizedAssetError::KeyMismatch { .. }),
        ) => ApiError::conflict(err.to_string()),
        AggregateError::AggregateConflict => ApiError::conflict(
            "the tokenized asset is being changed concurrently; retry",
        ),
        error @ AggregateError::UnexpectedError(_) => {
            if claim_conflict(&error) == Some(VAULT_CLAIMS) {
                ApiError::conflict(
                    "vault already backs another tokenized asset",
                )
            } else {
                ApiError::internal(error)
            }
        }
        AggregateError::DatabaseConnectionError(cause) => {
            tracing::error!(
                target: "tokenized_asset",
                error = %cause,
                "tokenized-asset store unavailable"
            );
            ApiError::unavailable("storage temporarily unavailable; retry")
        }
        other @ AggregateError::DeserializationError(_) => {
            ApiError::internal(other)
        }
    }
}

fn parse_key(underlying: &str, network: &str) -> Result<AssetKey, ApiError> {
    let underlying = UnderlyingSymbol::new(underlying)
        .map_err(|err| ApiError::unprocessable(err.to_string()))?;
    let network: Network =
        network.parse().map_err(|err: super::UnknownNetwork| {
            ApiError::unprocessable(err.to_string())
        })?;
    Ok(AssetKey::new(underlying, network))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    underlying: UnderlyingSymbol,
    token: TokenSymbol,
    network: Network,
    vault: Vault,
}

/// What `POST /tokenized-assets` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum AddOutcome {
    Created,
    Repointed,
    Unchanged,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AddResponse {
    outcome: AddOutcome,
    /// The vault replaced by this call (EIP-55), when it repointed.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_vault: Option<String>,
    #[serde(flatten)]
    asset: AssetView,
}

/// Lists an asset, or repoints its vault. Same token and vault again is a
/// no-op; another token for the same (underlying, network) is a 409.
#[utoipa::path(
    post,
    path = "/tokenized-assets",
    tag = "internal",
    security(("internal_api_key" = [])),
    request_body = AddRequest,
    responses(
        (status = 200, description = "Created, repointed or unchanged", body = AddResponse),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 409, description = "Another token for the (underlying, network), `vault already backs another tokenized asset`, or a concurrent change", body = ErrorBody),
        (status = 413, description = "Body above `server.body_limit`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …` (strict)", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`", body = ErrorBody),
    )
)]
#[rocket::post("/tokenized-assets", data = "<body>")]
async fn add_asset(
    _auth: InternalAuth,
    state: &State<TokenizedAssetState>,
    body: Result<Json<AddRequest>, json::Error<'_>>,
) -> Result<Json<AddResponse>, ApiError> {
    let Json(request) = body.map_err(|err| ApiError::from_json_error(&err))?;
    let key = AssetKey::new(request.underlying.clone(), request.network);
    let before = find(&state.pool, &key.underlying, key.network)
        .await
        .map_err(ApiError::internal)?;
    state
        .execute(
            &key,
            TokenizedAssetCommand::Add {
                underlying: request.underlying,
                token: request.token,
                network: request.network,
                vault: request.vault,
            },
        )
        .await?;
    let asset = state.load(&key).await?;
    // Derived from the state before the command; only a concurrent change
    // of the same listing could make this description stale.
    let (outcome, previous_vault) = match before {
        None => (AddOutcome::Created, None),
        Some(before) if before.vault == asset.vault => {
            (AddOutcome::Unchanged, None)
        }
        Some(before) => (AddOutcome::Repointed, Some(before.vault.to_string())),
    };
    tracing::info!(
        target: "tokenized_asset",
        asset = %key,
        vault = %asset.vault,
        ?outcome,
        "tokenized asset added"
    );
    Ok(Json(AddResponse {
        outcome,
        previous_vault,
        asset,
    }))
}

/// Enables the listing (idempotent).
#[utoipa::path(
    post,
    path = "/tokenized-assets/{underlying}/{network}/enable",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("underlying" = UnderlyingSymbol, Path, description = "Underlying symbol, e.g. `AAPL`"), ("network" = Network, Path, description = "Alpaca network name")),
    responses(
        (status = 200, description = "The listing", body = AssetView),
        (status = 404, description = "`tokenized asset not found`", body = ErrorBody),
        (status = 409, description = "`the tokenized asset is being changed concurrently; retry`", body = ErrorBody),
        (status = 422, description = "Malformed symbol or unknown network", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`", body = ErrorBody),
    )
)]
#[rocket::post("/tokenized-assets/<underlying>/<network>/enable")]
async fn enable_asset(
    _auth: InternalAuth,
    state: &State<TokenizedAssetState>,
    underlying: &str,
    network: &str,
) -> Result<Json<AssetView>, ApiError> {
    let key = parse_key(underlying, network)?;
    state.execute(&key, TokenizedAssetCommand::Enable).await?;
    Ok(Json(state.load(&key).await?))
}

/// Disables the listing (idempotent).
#[utoipa::path(
    post,
    path = "/tokenized-assets/{underlying}/{network}/disable",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("underlying" = UnderlyingSymbol, Path, description = "Underlying symbol, e.g. `AAPL`"), ("network" = Network, Path, description = "Alpaca network name")),
    responses(
        (status = 200, description = "The listing", body = AssetView),
        (status = 404, description = "`tokenized asset not found`", body = ErrorBody),
        (status = 409, description = "`the tokenized asset is being changed concurrently; retry`", body = ErrorBody),
        (status = 422, description = "Malformed symbol or unknown network", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`", body = ErrorBody),
    )
)]
#[rocket::post("/tokenized-assets/<underlying>/<network>/disable")]
async fn disable_asset(
    _auth: InternalAuth,
    state: &State<TokenizedAssetState>,
    underlying: &str,
    network: &str,
) -> Result<Json<AssetView>, ApiError> {
    let key = parse_key(underlying, network)?;
    state.execute(&key, TokenizedAssetCommand::Disable).await?;
    Ok(Json(state.load(&key).await?))
}

/// One listing.
#[utoipa::path(
    get,
    path = "/tokenized-assets/{underlying}/{network}",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("underlying" = UnderlyingSymbol, Path, description = "Underlying symbol, e.g. `AAPL`"), ("network" = Network, Path, description = "Alpaca network name")),
    responses(
        (status = 200, description = "The listing", body = AssetView),
        (status = 404, description = "`tokenized asset not found`", body = ErrorBody),
        (status = 422, description = "Malformed symbol or unknown network", body = ErrorBody),
    )
)]
#[rocket::get("/tokenized-assets/<underlying>/<network>")]
async fn get_asset(
    _auth: InternalAuth,
    state: &State<TokenizedAssetState>,
    underlying: &str,
    network: &str,
) -> Result<Json<AssetView>, ApiError> {
    let key = parse_key(underlying, network)?;
    Ok(Json(state.load(&key).await?))
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
struct TokenRow {
    underlying: UnderlyingSymbol,
    token: TokenSymbol,
    networks: Vec<Network>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
struct TokenList {
    tokens: Vec<TokenRow>,
}

/// One row per (underlying, token) with the sorted union of its enabled
/// networks.
async fn token_list(pool: &SqlitePool) -> Result<TokenList, ApiError> {
    let enabled = list_enabled(pool).await.map_err(ApiError::internal)?;
    let mut rows: BTreeMap<(UnderlyingSymbol, TokenSymbol), BTreeSet<Network>> =
        BTreeMap::new();
    for asset in enabled {
        rows.entry((asset.underlying, asset.token))
            .or_default()
            .insert(asset.network);
    }
    Ok(TokenList {
        tokens: rows
            .into_iter()
            .map(|((underlying, token), networks)| TokenRow {
                underlying,
                token,
                networks: networks.into_iter().collect(),
            })
            .collect(),
    })
}

/// The reference issuer's path for the token list.
#[utoipa::path(
    get,
    path = "/tokenized-assets",
    tag = "alpaca",
    security(("alpaca_api_key" = [])),
    responses(
        (status = 200, description = "Enabled listings: one row per (underlying, token), its networks sorted", body = TokenList),
    )
)]
#[rocket::get("/tokenized-assets")]
async fn list_tokens_oldest(
    _auth: AlpacaAuth,
    state: &State<TokenizedAssetState>,
) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(token_list(&state.pool).await?))
}

/// Alpaca's documented path (middle and current wire).
#[utoipa::path(
    get,
    path = "/tokenization/tokens",
    tag = "alpaca",
    security(("alpaca_api_key" = [])),
    responses(
        (status = 200, description = "Enabled listings: one row per (underlying, token), its networks sorted", body = TokenList),
    )
)]
#[rocket::get("/tokenization/tokens")]
async fn list_tokens(
    _auth: AlpacaAuth,
    state: &State<TokenizedAssetState>,
) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(token_list(&state.pool).await?))
}

/// The tokenized-asset routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    add_asset,
    enable_asset,
    disable_asset,
    get_asset,
    list_tokens_oldest,
    list_tokens,
))]
pub struct TokenizedAssetApiDoc;
