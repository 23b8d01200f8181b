//! Alpaca's optional per-symbol custody-account lookup (itn-wire.md §4.4):
//! which of the issuer's Alpaca accounts holds a listed symbol's shares.
//! Every listed symbol resolves to the designated account
//! (`[alpaca] account_id`) unless `[alpaca] custody_accounts` names
//! another one for it.

use rocket::serde::json::Json;
use rocket::{Build, Rocket, State};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use uuid::Uuid;

use super::{UnderlyingSymbol, list_enabled};
use crate::alpaca::CustodyOverrides;
use crate::auth::AlpacaAuth;
use crate::http::ApiError;
use crate::http::ErrorBody;

/// Where the shares of each symbol are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyAccounts {
    designated: Uuid,
    overrides: CustodyOverrides,
}

impl CustodyAccounts {
    pub fn new(designated: Uuid, overrides: CustodyOverrides) -> Self {
        Self {
            designated,
            overrides,
        }
    }

    pub fn account_for(&self, symbol: &UnderlyingSymbol) -> Uuid {
        self.overrides.get(symbol).unwrap_or(self.designated)
    }
}

/// Managed by Rocket; `accounts` is `None` without an `[alpaca]` section.
struct CustodyState {
    pool: SqlitePool,
    accounts: Option<CustodyAccounts>,
}

/// Manages the lookup's state and mounts its route at `/`.
pub fn install_custody_accounts(
    rocket: Rocket<Build>,
    pool: &SqlitePool,
    accounts: Option<CustodyAccounts>,
) -> Rocket<Build> {
    rocket
        .manage(CustodyState {
            pool: pool.clone(),
            accounts,
        })
        .mount("/", rocket::routes![custody_account])
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
struct CustodyAccountResponse {
    account_id: Uuid,
    underlying_symbol: String,
}

/// 200 for a symbol the token list returns (an enabled listing on any
/// network), echoing the symbol exactly as in the URL; 404 otherwise
/// (symbols are case-sensitive, as in the token list). Without `[alpaca]`
/// there is no account to name: 503, since the service is misconfigured
/// rather than the symbol unknown, and Alpaca caches only successes.
#[utoipa::path(
    get,
    path = "/tokenization/custody-accounts/{underlying_symbol}",
    tag = "alpaca",
    security(("alpaca_api_key" = [])),
    params(("underlying_symbol" = String, Path, description = "As in the token list (case-sensitive)")),
    responses(
        (status = 200, description = "The issuer account holding the symbol's shares", body = CustodyAccountResponse),
        (status = 404, description = "`underlying symbol not listed`", body = ErrorBody),
        (status = 503, description = "No `[alpaca]` section configured", body = ErrorBody),
    )
)]
#[rocket::get("/tokenization/custody-accounts/<underlying_symbol>")]
async fn custody_account(
    _auth: AlpacaAuth,
    state: &State<CustodyState>,
    underlying_symbol: &str,
) -> Result<Json<CustodyAccountResponse>, ApiError> {
    let Some(accounts) = &state.accounts else {
        tracing::error!(
            target: "tokenized_asset",
            underlying_symbol,
            "custody-account lookup without an [alpaca] section"
        );
        return Err(ApiError::unavailable(
            "custody accounts unavailable: the [alpaca] section is not \
             configured",
        ));
    };
    let not_listed = || {
        tracing::warn!(
            target: "tokenized_asset",
            underlying_symbol,
            "custody-account lookup for a symbol that is not listed"
        );
        ApiError::not_found("underlying symbol not listed")
    };
    let symbol =
        UnderlyingSymbol::new(underlying_symbol).map_err(|_| not_listed())?;
    let listed = list_enabled(&state.pool)
        .await
        .map_err(ApiError::internal)?
        .iter()
        .any(|asset| asset.underlying == symbol);
    if !listed {
        return Err(not_listed());
    }
    Ok(Json(CustodyAccountResponse {
        account_id: accounts.account_for(&symbol),
        underlying_symbol: underlying_symbol.to_owned(),
    }))
}

/// The custody-account lookup in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(custody_account))]
pub struct CustodyApiDoc;
