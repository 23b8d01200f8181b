//! HTTP endpoints for tokenized assets: listing management (internal) and
//! the token list Alpaca validates mints against (itn-wire.md §4.3).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
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
    UnderlyingSymbol, Vault, cqrs, find, list_enabled, list_for_underlying,
};
use crate::auth::{AlpacaAuth, InternalAuth};
use crate::clock::Clock;
use crate::http::ApiError;
use crate::http::ErrorBody;
use crate::operator::OperatorReason;

/// Everything the tokenized-asset endpoints need, managed by Rocket.
pub struct TokenizedAssetState {
    cqrs: TokenizedAssetCqrs,
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
}

impl TokenizedAssetState {
    pub fn new(pool: SqlitePool, clock: Arc<dyn Clock>) -> Self {
        Self {
            cqrs: cqrs(
                pool.clone(),
                TokenizedAssetServices {
                    clock: clock.clone(),
                },
            ),
            pool,
            clock,
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

    async fn load(&self, key: &AssetKey) -> Result<AssetAnswer, ApiError> {
        let asset = find(&self.pool, &key.underlying, key.network)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("tokenized asset not found"))?;
        Ok(self.answer(asset))
    }

    fn answer(&self, asset: AssetView) -> AssetAnswer {
        AssetAnswer {
            frozen: asset.active_freeze(self.clock.now()).is_some(),
            asset,
        }
    }

    /// The listings a freeze or unfreeze of `underlying` acts on: the one
    /// on `network`, or all of them.
    async fn freeze_targets(
        &self,
        underlying: &str,
        network: Option<Network>,
    ) -> Result<Vec<AssetKey>, ApiError> {
        let underlying = UnderlyingSymbol::new(underlying)
            .map_err(|err| ApiError::unprocessable(err.to_string()))?;
        if let Some(network) = network {
            return Ok(vec![AssetKey::new(underlying, network)]);
        }
        let keys: Vec<AssetKey> = list_for_underlying(&self.pool, &underlying)
            .await
            .map_err(ApiError::internal)?
            .iter()
            .map(AssetView::key)
            .collect();
        if keys.is_empty() {
            return Err(ApiError::not_found("tokenized asset not found"));
        }
        Ok(keys)
    }

    /// Runs `command` on every target, in order; a repeat after a partial
    /// failure finishes the rest (each command is idempotent).
    async fn execute_all(
        &self,
        keys: &[AssetKey],
        command: &TokenizedAssetCommand,
    ) -> Result<FreezeResponse, ApiError> {
        let mut assets = Vec::with_capacity(keys.len());
        for key in keys {
            self.execute(key, command.clone()).await?;
            assets.push(self.load(key).await?);
        }
        Ok(FreezeResponse { assets })
    }
}

/// A listing as the internal endpoints show it: the stored view and
/// whether a freeze holds now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AssetAnswer {
    #[serde(flatten)]
    asset: AssetView,
    /// A freeze is active at this instant (new mints refused, newly
    /// detected redemptions held).
    frozen: bool,
}

pub fn routes() -> Vec<Route> {
    rocket::routes![
        add_asset,
        enable_asset,
        disable_asset,
        freeze_asset,
        unfreeze_asset,
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
        AggregateError::UserError(
            err @ TokenizedAssetError::InvalidWindow(_),
        ) => ApiError::unprocessable(err.to_string()),
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
    asset: AssetAnswer,
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
        Some(before) if before.vault == asset.asset.vault => {
            (AddOutcome::Unchanged, None)
        }
        Some(before) => (AddOutcome::Repointed, Some(before.vault.to_string())),
    };
    tracing::info!(
        target: "tokenized_asset",
        asset = %key,
        vault = %asset.asset.vault,
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
        (status = 200, description = "The listing", body = AssetAnswer),
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
) -> Result<Json<AssetAnswer>, ApiError> {
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
        (status = 200, description = "The listing", body = AssetAnswer),
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
) -> Result<Json<AssetAnswer>, ApiError> {
    let key = parse_key(underlying, network)?;
    state.execute(&key, TokenizedAssetCommand::Disable).await?;
    Ok(Json(state.load(&key).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FreezeRequest {
    reason: OperatorReason,
    /// Only this network's listing; absent = every listing of the
    /// underlying.
    #[serde(default)]
    network: Option<Network>,
    /// Start of the window (RFC 3339); absent = now.
    #[serde(default)]
    from: Option<DateTime<Utc>>,
    /// End of the window (RFC 3339, exclusive); absent = until unfrozen.
    #[serde(default)]
    until: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UnfreezeRequest {
    reason: OperatorReason,
    /// Only this network's listing; absent = every listing of the
    /// underlying.
    #[serde(default)]
    network: Option<Network>,
}

/// The listings a freeze or unfreeze acted on, ordered by network.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct FreezeResponse {
    assets: Vec<AssetAnswer>,
}

/// Freezes an underlying on one network or all its listed networks, now
/// or in a window: new mints get `Asset Frozen: Minting is suspended for
/// this asset`, newly detected redemptions are held. The same freeze
/// again is a no-op; another reason or window replaces it.
#[utoipa::path(
    post,
    path = "/tokenized-assets/{underlying}/freeze",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("underlying" = UnderlyingSymbol, Path, description = "Underlying symbol, e.g. `AAPL`")),
    request_body = FreezeRequest,
    responses(
        (status = 200, description = "The listings, frozen", body = FreezeResponse),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 404, description = "`tokenized asset not found`", body = ErrorBody),
        (status = 409, description = "`the tokenized asset is being changed concurrently; retry`", body = ErrorBody),
        (status = 413, description = "Body above `server.body_limit`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …` (strict; blank reason, unknown network), malformed symbol, or a window that ends before it starts or has already ended", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`", body = ErrorBody),
    )
)]
#[rocket::post("/tokenized-assets/<underlying>/freeze", data = "<body>")]
async fn freeze_asset(
    _auth: InternalAuth,
    state: &State<TokenizedAssetState>,
    underlying: &str,
    body: Result<Json<FreezeRequest>, json::Error<'_>>,
) -> Result<Json<FreezeResponse>, ApiError> {
    let Json(request) = body.map_err(|err| ApiError::from_json_error(&err))?;
    let keys = state.freeze_targets(underlying, request.network).await?;
    let command = TokenizedAssetCommand::Freeze {
        reason: request.reason.clone(),
        from: request.from,
        until: request.until,
    };
    let answer = state.execute_all(&keys, &command).await?;
    tracing::info!(
        target: "tokenized_asset",
        %underlying,
        network = ?request.network,
        from = ?request.from,
        until = ?request.until,
        reason = %request.reason,
        "tokenized asset frozen"
    );
    Ok(Json(answer))
}

/// Lifts the freeze (active or scheduled) of an underlying on one network
/// or all its listed networks; a listing without a freeze is unchanged.
#[utoipa::path(
    post,
    path = "/tokenized-assets/{underlying}/unfreeze",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("underlying" = UnderlyingSymbol, Path, description = "Underlying symbol, e.g. `AAPL`")),
    request_body = UnfreezeRequest,
    responses(
        (status = 200, description = "The listings, unfrozen", body = FreezeResponse),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 404, description = "`tokenized asset not found`", body = ErrorBody),
        (status = 409, description = "`the tokenized asset is being changed concurrently; retry`", body = ErrorBody),
        (status = 413, description = "Body above `server.body_limit`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …` (strict; blank reason, unknown network) or malformed symbol", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`", body = ErrorBody),
    )
)]
#[rocket::post("/tokenized-assets/<underlying>/unfreeze", data = "<body>")]
async fn unfreeze_asset(
    _auth: InternalAuth,
    state: &State<TokenizedAssetState>,
    underlying: &str,
    body: Result<Json<UnfreezeRequest>, json::Error<'_>>,
) -> Result<Json<FreezeResponse>, ApiError> {
    let Json(request) = body.map_err(|err| ApiError::from_json_error(&err))?;
    let keys = state.freeze_targets(underlying, request.network).await?;
    let command = TokenizedAssetCommand::Unfreeze {
        reason: request.reason.clone(),
    };
    let answer = state.execute_all(&keys, &command).await?;
    tracing::info!(
        target: "tokenized_asset",
        %underlying,
        network = ?request.network,
        reason = %request.reason,
        "tokenized asset unfrozen"
    );
    Ok(Json(answer))
}

/// One listing.
#[utoipa::path(
    get,
    path = "/tokenized-assets/{underlying}/{network}",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("underlying" = UnderlyingSymbol, Path, description = "Underlying symbol, e.g. `AAPL`"), ("network" = Network, Path, description = "Alpaca network name")),
    responses(
        (status = 200, description = "The listing", body = AssetAnswer),
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
) -> Result<Json<AssetAnswer>, ApiError> {
    let key = parse_key(underlying, network)?;
    Ok(Json(state.load(&key).await?))
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
struct TokenRow {
    underlying: UnderlyingSymbol,
    token: TokenSymbol,
    networks: Vec<Network>,
    /// Those of `networks` on which minting is suspended now (our
    /// addition to Alpaca's row; absent when none is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    frozen_networks: Vec<Network>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
struct TokenList {
    tokens: Vec<TokenRow>,
}

/// One row per (underlying, token) with the sorted union of its enabled
/// networks, and those of them frozen at `now`.
async fn token_list(
    pool: &SqlitePool,
    now: DateTime<Utc>,
) -> Result<TokenList, ApiError> {
    let enabled = list_enabled(pool).await.map_err(ApiError::internal)?;
    let mut rows: BTreeMap<
        (UnderlyingSymbol, TokenSymbol),
        (BTreeSet<Network>, BTreeSet<Network>),
    > = BTreeMap::new();
    for asset in enabled {
        let frozen = asset.active_freeze(now).is_some();
        let (networks, frozen_networks) =
            rows.entry((asset.underlying, asset.token)).or_default();
        networks.insert(asset.network);
        if frozen {
            frozen_networks.insert(asset.network);
        }
    }
    Ok(TokenList {
        tokens: rows
            .into_iter()
            .map(|((underlying, token), (networks, frozen_networks))| {
                TokenRow {
                    underlying,
                    token,
                    networks: networks.into_iter().collect(),
                    frozen_networks: frozen_networks.into_iter().collect(),
                }
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
        (status = 200, description = "Enabled listings: one row per (underlying, token), its networks sorted; `frozen_networks` when minting is suspended on some", body = TokenList),
    )
)]
#[rocket::get("/tokenized-assets")]
async fn list_tokens_oldest(
    _auth: AlpacaAuth,
    state: &State<TokenizedAssetState>,
) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(token_list(&state.pool, state.clock.now()).await?))
}

/// Alpaca's documented path (middle and current wire).
#[utoipa::path(
    get,
    path = "/tokenization/tokens",
    tag = "alpaca",
    security(("alpaca_api_key" = [])),
    responses(
        (status = 200, description = "Enabled listings: one row per (underlying, token), its networks sorted; `frozen_networks` when minting is suspended on some", body = TokenList),
    )
)]
#[rocket::get("/tokenization/tokens")]
async fn list_tokens(
    _auth: AlpacaAuth,
    state: &State<TokenizedAssetState>,
) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(token_list(&state.pool, state.clock.now()).await?))
}

/// The tokenized-asset routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    add_asset,
    enable_asset,
    disable_asset,
    freeze_asset,
    unfreeze_asset,
    get_asset,
    list_tokens_oldest,
    list_tokens,
))]
pub struct TokenizedAssetApiDoc;
