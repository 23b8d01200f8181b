//! HTTP endpoints for accounts: operator registration, wallet
//! allow-listing and the Alpaca account id of the affiliated flow
//! (internal), and Alpaca's account-linking handshake in all three wire
//! versions (see itn-wire.md §1, §3, §4.2).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use rocket::serde::json::{self, Json};
use rocket::{Route, State};
use serde::{Deserialize, Serialize};
use sqlite_es::{claim_conflict, execute_retrying};
use sqlx::SqlitePool;

use super::view::{ALPACA_ID_CLAIMS, EMAIL_CLAIMS, WALLET_CLAIMS};
use super::{
    AccountCommand, AccountCqrs, AccountError, AccountServices, AccountView,
    AlpacaAccountId, AlpacaAccountNumber, ClientId, Email, Wallet, cqrs,
    find_by_client_id, find_by_email,
};
use crate::auth::{AlpacaAuth, AlpacaJson, InternalAuth};
use crate::clock::{Clock, IdGenerator};
use crate::http::ApiError;
use crate::http::ErrorBody;
use crate::http::body::{BodyError, JsonBody};

/// Everything the account endpoints need, managed by Rocket.
pub struct AccountState {
    cqrs: AccountCqrs,
    pool: SqlitePool,
    ids: Arc<dyn IdGenerator>,
}

impl AccountState {
    pub fn new(
        pool: SqlitePool,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self {
            cqrs: cqrs(pool.clone(), AccountServices { clock }),
            pool,
            ids,
        }
    }

    pub fn cqrs(&self) -> &AccountCqrs {
        &self.cqrs
    }

    async fn execute(
        &self,
        client_id: ClientId,
        command: AccountCommand,
    ) -> Result<(), ApiError> {
        self.try_execute(client_id, command)
            .await
            .map_err(command_error)
    }

    /// [`Self::execute`] with the domain error left for the caller.
    async fn try_execute(
        &self,
        client_id: ClientId,
        command: AccountCommand,
    ) -> Result<(), AggregateError<AccountError>> {
        execute_retrying(&self.cqrs, &client_id.to_string(), command).await
    }
}

pub fn routes() -> Vec<Route> {
    rocket::routes![
        register,
        connect_oldest,
        connect,
        whitelist_wallet,
        unwhitelist_wallet,
        record_alpaca_account_id,
        get_account,
    ]
}

fn command_error(error: AggregateError<AccountError>) -> ApiError {
    match error {
        AggregateError::UserError(AccountError::NotRegistered) => {
            ApiError::not_found("account not found")
        }
        AggregateError::UserError(AccountError::AlreadyLinked { .. }) => {
            ApiError::conflict("account already linked")
        }
        AggregateError::UserError(AccountError::AlreadyRegistered {
            ..
        }) => ApiError::conflict("account already registered"),
        AggregateError::AggregateConflict => ApiError::conflict(
            "the account is being changed concurrently; retry",
        ),
        error @ AggregateError::UnexpectedError(_) => {
            match claim_conflict(&error) {
                Some(EMAIL_CLAIMS) => {
                    ApiError::conflict("email already registered")
                }
                Some(WALLET_CLAIMS) => {
                    ApiError::conflict("wallet belongs to another account")
                }
                Some(ALPACA_ID_CLAIMS) => ApiError::conflict(
                    "Alpaca account id belongs to another account",
                ),
                _ => ApiError::internal(error),
            }
        }
        AggregateError::DatabaseConnectionError(cause) => {
            tracing::error!(
                target: "account",
                error = %cause,
                "account store unavailable"
            );
            ApiError::unavailable("storage temporarily unavailable; retry")
        }
        other @ AggregateError::DeserializationError(_) => {
            ApiError::internal(other)
        }
    }
}

fn parse_client_id(raw: &str) -> Result<ClientId, ApiError> {
    raw.parse().map_err(|err: super::InvalidClientId| {
        ApiError::unprocessable(err.to_string())
    })
}

async fn load_account(
    pool: &SqlitePool,
    client_id: &ClientId,
) -> Result<AccountView, ApiError> {
    find_by_client_id(pool, client_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("account not found"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    email: Email,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ClientIdResponse {
    client_id: ClientId,
}

/// Registers an AP under a fresh client id. The email is claimed in the
/// same commit, so of two concurrent registrations exactly one wins.
#[utoipa::path(
    post,
    path = "/accounts",
    tag = "internal",
    security(("internal_api_key" = [])),
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered under a fresh client id", body = ClientIdResponse),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 409, description = "`email already registered`", body = ErrorBody),
        (status = 413, description = "Body above `server.body_limit`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …` (strict: unknown fields are refused)", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`", body = ErrorBody),
    )
)]
#[rocket::post("/accounts", data = "<body>")]
async fn register(
    _auth: InternalAuth,
    state: &State<AccountState>,
    body: Result<Json<RegisterRequest>, json::Error<'_>>,
) -> Result<Json<ClientIdResponse>, ApiError> {
    let Json(request) = body.map_err(|err| ApiError::from_json_error(&err))?;
    let client_id = ClientId::new(state.ids.uuid());
    state
        .execute(
            client_id,
            AccountCommand::Register {
                client_id,
                email: request.email,
            },
        )
        .await?;
    tracing::info!(target: "account", %client_id, "account registered");
    Ok(Json(ClientIdResponse { client_id }))
}

/// Links the account registered under `email` to Alpaca's account number.
///
/// A repeat of a link that already happened (same email, same account
/// number: Alpaca retrying after losing our answer) gets the same
/// `client_id` and writes nothing; an account linked to another number
/// stays 409 `account already linked`. The aggregate refuses every second
/// `Link`; the repeat is recognised here from the number it reports, so
/// the answer is race-free (of two concurrent identical links one
/// commits, the other reloads and is answered as a repeat).
async fn link(
    state: &AccountState,
    email: &Email,
    alpaca_account: AlpacaAccountNumber,
) -> Result<ClientId, ApiError> {
    let account = find_by_email(&state.pool, email)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("email not found"))?;
    let client_id = account.client_id;
    let command = AccountCommand::Link {
        alpaca_account: alpaca_account.clone(),
    };
    match state.try_execute(client_id, command).await {
        Ok(()) => {
            tracing::info!(
                target: "account",
                %client_id,
                "account linked to Alpaca"
            );
        }
        Err(AggregateError::UserError(AccountError::AlreadyLinked {
            alpaca_account: linked,
            ..
        })) if linked == alpaca_account => {
            tracing::info!(
                target: "account",
                %client_id,
                "repeated link answered with the existing client id"
            );
        }
        Err(error) => {
            if let AggregateError::UserError(AccountError::AlreadyLinked {
                ..
            }) = &error
            {
                tracing::warn!(
                    target: "account",
                    %client_id,
                    "link refused: already linked to another Alpaca account"
                );
            }
            return Err(command_error(error));
        }
    }
    Ok(client_id)
}

/// The link endpoints' body errors: 415 for a non-JSON `Content-Type`,
/// 413, 400 unreadable, 422 for a body that is not UTF-8 JSON of the
/// expected shape (see [`crate::http::body`]).
fn link_body_error(error: &BodyError) -> ApiError {
    tracing::warn!(target: "account", reason = %error, "link request refused");
    ApiError::from_body_error(error)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ConnectOldestRequest {
    email: Email,
    account: AlpacaAccountNumber,
}

/// The oldest wire (reference issuer): `{email, account}` → `{client_id}`.
#[utoipa::path(
    post,
    path = "/accounts/connect",
    tag = "alpaca",
    security(("alpaca_api_key" = [])),
    request_body = ConnectOldestRequest,
    responses(
        (status = 200, description = "Linked, or a repeat of the same link", body = ClientIdResponse),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 404, description = "`email not found`", body = ErrorBody),
        (status = 409, description = "`account already linked` (to another account number)", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …`", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`", body = ErrorBody),
    )
)]
#[rocket::post("/accounts/connect", data = "<body>")]
async fn connect_oldest(
    _auth: AlpacaAuth,
    state: &State<AccountState>,
    body: AlpacaJson<ConnectOldestRequest>,
) -> Result<Json<ClientIdResponse>, ApiError> {
    let JsonBody(request) =
        body.into_result().map_err(|err| link_body_error(&err))?;
    let client_id = link(state, &request.email, request.account).await?;
    Ok(Json(ClientIdResponse { client_id }))
}

/// Middle wire `{email, account}` or current wire
/// `{email, client_account_number}`; exactly one of the two names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectRequest {
    email: Email,
    #[serde(default)]
    account: Option<AlpacaAccountNumber>,
    #[serde(default)]
    client_account_number: Option<AlpacaAccountNumber>,
}

/// Answers in the shape of the request: the current wire names our id
/// `client_external_account_id`, the middle wire `client_id`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum ConnectResponse {
    Current {
        client_external_account_id: ClientId,
    },
    Middle {
        client_id: ClientId,
    },
}

/// Links the account registered under `email`: the middle wire sends
/// `account` and gets `client_id`, the current wire sends
/// `client_account_number` and gets `client_external_account_id`.
#[utoipa::path(
    post,
    path = "/tokenization/accounts/connect",
    tag = "alpaca",
    security(("alpaca_api_key" = [])),
    request_body = super::openapi::ConnectBody,
    responses(
        (status = 200, description = "Linked, or a repeat of the same link; in the shape of the request", body = ConnectResponse),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 404, description = "`email not found`", body = ErrorBody),
        (status = 409, description = "`account already linked` (to another account number)", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 422, description = "`invalid request body: …`, also both or neither of `account` and `client_account_number`", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`", body = ErrorBody),
    )
)]
#[rocket::post("/tokenization/accounts/connect", data = "<body>")]
async fn connect(
    _auth: AlpacaAuth,
    state: &State<AccountState>,
    body: AlpacaJson<ConnectRequest>,
) -> Result<Json<ConnectResponse>, ApiError> {
    let JsonBody(request) =
        body.into_result().map_err(|err| link_body_error(&err))?;
    match (request.client_account_number, request.account) {
        (Some(number), None) => {
            let client_id = link(state, &request.email, number).await?;
            Ok(Json(ConnectResponse::Current {
                client_external_account_id: client_id,
            }))
        }
        (None, Some(account)) => {
            let client_id = link(state, &request.email, account).await?;
            Ok(Json(ConnectResponse::Middle { client_id }))
        }
        (Some(_), Some(_)) | (None, None) => Err(ApiError::unprocessable(
            "invalid request body: exactly one of `client_account_number` \
             or `account` is required",
        )),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WhitelistRequest {
    wallet: Wallet,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct WalletResponse {
    client_id: ClientId,
    wallet: Wallet,
    whitelisted: bool,
}

/// Allow-lists a wallet (idempotent). Allowed for registered accounts that
/// are not linked yet: the mint path checks the link on its own, and
/// operators can then prepare wallets before Alpaca's handshake.
#[utoipa::path(
    post,
    path = "/accounts/{client_id}/wallets",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("client_id" = Uuid, Path, description = "Our client id")),
    request_body = WhitelistRequest,
    responses(
        (status = 200, description = "The wallet is allow-listed (idempotent)", body = WalletResponse),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 404, description = "`account not found`", body = ErrorBody),
        (status = 409, description = "`wallet belongs to another account`", body = ErrorBody),
        (status = 413, description = "Body above `server.body_limit`", body = ErrorBody),
        (status = 422, description = "Client id not a UUID, or `invalid request body: …` (strict)", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`", body = ErrorBody),
    )
)]
#[rocket::post("/accounts/<client_id>/wallets", data = "<body>")]
async fn whitelist_wallet(
    _auth: InternalAuth,
    state: &State<AccountState>,
    client_id: &str,
    body: Result<Json<WhitelistRequest>, json::Error<'_>>,
) -> Result<Json<WalletResponse>, ApiError> {
    let client_id = parse_client_id(client_id)?;
    let Json(request) = body.map_err(|err| ApiError::from_json_error(&err))?;
    state
        .execute(
            client_id,
            AccountCommand::WhitelistWallet {
                wallet: request.wallet,
            },
        )
        .await?;
    Ok(Json(WalletResponse {
        client_id,
        wallet: request.wallet,
        whitelisted: true,
    }))
}

/// Removes a wallet from the allow-list (idempotent).
#[utoipa::path(
    delete,
    path = "/accounts/{client_id}/wallets/{wallet}",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("client_id" = Uuid, Path, description = "Our client id"), ("wallet" = Wallet, Path, description = "EVM address, `0x` + 40 hex digits, any case")),
    responses(
        (status = 200, description = "The wallet is no longer allow-listed (idempotent)", body = WalletResponse),
        (status = 404, description = "`account not found`", body = ErrorBody),
        (status = 409, description = "`the account is being changed concurrently; retry`", body = ErrorBody),
        (status = 422, description = "Client id not a UUID, or not a wallet address", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`", body = ErrorBody),
    )
)]
#[rocket::delete("/accounts/<client_id>/wallets/<wallet>")]
async fn unwhitelist_wallet(
    _auth: InternalAuth,
    state: &State<AccountState>,
    client_id: &str,
    wallet: &str,
) -> Result<Json<WalletResponse>, ApiError> {
    let client_id = parse_client_id(client_id)?;
    let wallet: Wallet =
        wallet.parse().map_err(|err: super::InvalidWallet| {
            ApiError::unprocessable(err.to_string())
        })?;
    state
        .execute(client_id, AccountCommand::UnwhitelistWallet { wallet })
        .await?;
    Ok(Json(WalletResponse {
        client_id,
        wallet,
        whitelisted: false,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AlpacaAccountIdRequest {
    alpaca_account_id: AlpacaAccountId,
}

/// Records the AP's Alpaca account UUID, which makes the account eligible
/// for mints Alpaca names by `client_account_id` (affiliated flow; no
/// handshake needed). Idempotent; replaces an earlier id of this account;
/// 409 if another account holds the id (claimed in the same commit).
#[utoipa::path(
    put,
    path = "/accounts/{client_id}/alpaca-account-id",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("client_id" = Uuid, Path, description = "Our client id")),
    request_body = AlpacaAccountIdRequest,
    responses(
        (status = 200, description = "The account, as `GET /accounts/{client_id}`", body = AccountResponse),
        (status = 400, description = "`request body could not be read`", body = ErrorBody),
        (status = 404, description = "`account not found`", body = ErrorBody),
        (status = 409, description = "`Alpaca account id belongs to another account`", body = ErrorBody),
        (status = 413, description = "Body above `server.body_limit`", body = ErrorBody),
        (status = 422, description = "Client id not a UUID, or `invalid request body: …` (strict; the nil UUID is refused)", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`", body = ErrorBody),
    )
)]
#[rocket::put("/accounts/<client_id>/alpaca-account-id", data = "<body>")]
async fn record_alpaca_account_id(
    _auth: InternalAuth,
    state: &State<AccountState>,
    client_id: &str,
    body: Result<Json<AlpacaAccountIdRequest>, json::Error<'_>>,
) -> Result<Json<AccountResponse>, ApiError> {
    let client_id = parse_client_id(client_id)?;
    let Json(request) = body.map_err(|err| ApiError::from_json_error(&err))?;
    state
        .execute(
            client_id,
            AccountCommand::RecordAlpacaAccountId {
                alpaca_account_id: request.alpaca_account_id,
            },
        )
        .await?;
    tracing::info!(
        target: "account",
        %client_id,
        alpaca_account_id = %request.alpaca_account_id,
        "Alpaca account id recorded"
    );
    let view = load_account(&state.pool, &client_id).await?;
    Ok(Json(view.into()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum AccountStatus {
    Registered,
    Linked,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AccountResponse {
    client_id: ClientId,
    email: Email,
    status: AccountStatus,
    registered_at: DateTime<Utc>,
    /// The account number Alpaca sent at linking (handshake flow).
    alpaca_account: Option<AlpacaAccountNumber>,
    linked_at: Option<DateTime<Utc>>,
    /// The Alpaca account UUID an operator recorded (affiliated flow).
    alpaca_account_id: Option<AlpacaAccountId>,
    wallets: BTreeSet<Wallet>,
}

impl From<AccountView> for AccountResponse {
    fn from(view: AccountView) -> Self {
        let (status, alpaca_account, linked_at) = match view.link {
            Some(link) => (
                AccountStatus::Linked,
                Some(link.alpaca_account),
                Some(link.linked_at),
            ),
            None => (AccountStatus::Registered, None, None),
        };
        Self {
            client_id: view.client_id,
            email: view.email,
            status,
            registered_at: view.registered_at,
            alpaca_account,
            linked_at,
            alpaca_account_id: view.alpaca_account_id,
            wallets: view.wallets,
        }
    }
}

/// One account: its link, its Alpaca account id and its wallets.
#[utoipa::path(
    get,
    path = "/accounts/{client_id}",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("client_id" = Uuid, Path, description = "Our client id")),
    responses(
        (status = 200, description = "The account", body = AccountResponse),
        (status = 404, description = "`account not found`", body = ErrorBody),
        (status = 422, description = "Client id not a UUID", body = ErrorBody),
    )
)]
#[rocket::get("/accounts/<client_id>")]
async fn get_account(
    _auth: InternalAuth,
    state: &State<AccountState>,
    client_id: &str,
) -> Result<Json<AccountResponse>, ApiError> {
    let client_id = parse_client_id(client_id)?;
    let view = load_account(&state.pool, &client_id).await?;
    Ok(Json(view.into()))
}

/// The account routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    register,
    connect_oldest,
    connect,
    whitelist_wallet,
    unwhitelist_wallet,
    record_alpaca_account_id,
    get_account,
))]
pub struct AccountApiDoc;
