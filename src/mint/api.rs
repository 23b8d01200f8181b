//! HTTP endpoints for mints: Alpaca's mint request and journal
//! confirmation in all three wire versions (itn-wire.md §3, §4.5–§4.7),
//! and the operators' `GET /mints/<issuer_request_id>`.
//!
//! No chain or Alpaca call happens here: a confirmation only records the
//! journal outcome and wakes the driver.

use std::sync::Arc;

use cqrs_es::AggregateError;
use rocket::serde::json::Json;
use rocket::{Route, State};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlite_es::{claim_conflict, execute_retrying};
use sqlx::SqlitePool;
use tokio::sync::Notify;
use uuid::Uuid;

use super::view::MINT_IDS;
use super::{
    DriverStatus, JournalOutcome, MintCommand, MintCqrs, MintError, MintId,
    MintOrder, MintRequest, MintServices, MintStatus, MintView,
    TokenizationRequestId, Vault, cqrs, find_by_issuer_request_id,
    find_by_tokenization_request_id,
};
use crate::account::{
    AlpacaAccountId, ClientId, Wallet, find_by_alpaca_account_id,
    find_by_client_id,
};
use crate::alpaca::ApRef;
use crate::auth::{AlpacaAuth, AlpacaJson, InternalAuth};
use crate::clock::{Clock, IdGenerator};
use crate::driver::{self, FlowName, FlowOrigins};
use crate::http::ApiError;
use crate::http::ErrorBody;
use crate::http::body::{BodyError, JsonBody};
use crate::http::request_log::RequestId;
use crate::quantity::AlpacaQuantity;
use crate::tokenized_asset::{self, Network, TokenSymbol, UnderlyingSymbol};

/// Alpaca's documented 400 strings (itn-wire.md §4.5), verbatim.
pub const INVALID_PAYLOAD: &str = "Failed Validation: Invalid data payload";
pub const INVALID_TOKEN: &str =
    "Invalid Token: Token not available on the network";
pub const NOT_ELIGIBLE: &str = "Insufficient Eligibility: Client not eligible";
pub const INVALID_WALLET: &str =
    "Invalid Wallet: Wallet does not belong to client";
/// The reference issuer's answer while an operator froze the listing.
pub const ASSET_FROZEN: &str =
    "Asset Frozen: Minting is suspended for this asset";
pub const DIFFERENT_CONTENT: &str =
    "tokenization_request_id already used with different content";

/// Everything the mint endpoints and the driver share, managed by Rocket.
pub struct MintState {
    cqrs: Arc<MintCqrs>,
    pool: SqlitePool,
    ids: Arc<dyn IdGenerator>,
    clock: Arc<dyn Clock>,
    waker: Arc<Notify>,
    /// The requests that started each mint, for the driver's traces.
    origins: FlowOrigins,
    /// The networks our chains serve; mints for another are refused as
    /// "token not available". Empty (no chain configured) accepts all.
    networks: Vec<Network>,
}

impl MintState {
    pub fn new(
        pool: SqlitePool,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        networks: Vec<Network>,
    ) -> Self {
        Self {
            cqrs: Arc::new(cqrs(
                pool.clone(),
                MintServices {
                    clock: clock.clone(),
                },
            )),
            pool,
            ids,
            clock,
            waker: Arc::new(Notify::new()),
            origins: FlowOrigins::default(),
            networks,
        }
    }

    pub fn cqrs(&self) -> &Arc<MintCqrs> {
        &self.cqrs
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Notified on every accepted `completed` confirmation.
    pub fn waker(&self) -> &Arc<Notify> {
        &self.waker
    }

    /// The requests that initiated and confirmed each mint.
    pub fn origins(&self) -> &FlowOrigins {
        &self.origins
    }

    async fn execute(
        &self,
        id: &TokenizationRequestId,
        command: MintCommand,
    ) -> Result<(), AggregateError<MintError>> {
        execute_retrying(&self.cqrs, id.as_str(), command).await
    }

    async fn find(
        &self,
        id: &TokenizationRequestId,
    ) -> Result<Option<MintView>, ApiError> {
        find_by_tokenization_request_id(&self.pool, id)
            .await
            .map_err(storage_error)
    }
}

pub fn routes() -> Vec<Route> {
    rocket::routes![
        initiate_oldest,
        initiate,
        confirm_oldest,
        confirm,
        get_mint
    ]
}

/// Storage trouble: 503 so that Alpaca retries.
fn storage_error(error: impl std::error::Error) -> ApiError {
    tracing::error!(target: "mint", %error, "mint storage unavailable");
    ApiError::unavailable("storage temporarily unavailable; retry")
}

fn invalid_payload(reason: &str) -> ApiError {
    tracing::warn!(target: "mint", reason, "mint request refused");
    ApiError::bad_request(INVALID_PAYLOAD)
}

/// A body that arrived but is not UTF-8 JSON of the right shape is
/// Alpaca's "invalid data payload" (400); a non-JSON `Content-Type` (415),
/// an oversized body (413) and a transport failure (400 `request body
/// could not be read`) keep their own answers. Not logged here: the
/// caller logs with its own level.
fn body_error(error: &BodyError) -> ApiError {
    if error.is_malformed() {
        ApiError::bad_request(INVALID_PAYLOAD)
    } else {
        ApiError::from_body_error(error)
    }
}

/// Mint request as any wire version sends it; every field optional so
/// that a missing one is our 400, not a schema error. Unknown fields are
/// ignored: Alpaca adds fields without notice.
#[derive(Debug, Deserialize)]
struct RawMintRequest {
    tokenization_request_id: Option<String>,
    /// The middle wire's name for `tokenization_request_id`.
    id: Option<String>,
    /// String or number; kept raw so that it is parsed exactly.
    qty: Option<Box<RawValue>>,
    underlying_symbol: Option<String>,
    token_symbol: Option<String>,
    network: Option<String>,
    client_id: Option<String>,
    client_external_account_id: Option<String>,
    client_account_id: Option<String>,
    wallet_address: Option<String>,
}

/// Exactly one of two names for the same field.
fn one_of(
    field: &'static str,
    first: Option<String>,
    second: Option<String>,
) -> Result<String, String> {
    match (first, second) {
        (Some(value), None) | (None, Some(value)) => Ok(value),
        (None, None) => Err(format!("{field} is missing")),
        (Some(_), Some(_)) => Err(format!("{field} is sent twice")),
    }
}

fn required(
    field: &'static str,
    value: Option<String>,
) -> Result<String, String> {
    value.ok_or_else(|| format!("{field} is missing"))
}

/// `qty` as a decimal string (plain digits only: no sign or exponent) or
/// a JSON number, each parsed exactly from its text. A number's exponent
/// only moves the decimal point (serde_json writes 1e-9 for 0.000000001),
/// so `1.00000000000000000000000000000001e0` is refused for its 32
/// decimals instead of being rounded to 1.
fn parse_qty(raw: Option<&RawValue>) -> Result<AlpacaQuantity, String> {
    let raw = raw.ok_or("qty is missing")?.get();
    let parsed = if raw.starts_with('"') {
        let text = serde_json::from_str::<String>(raw)
            .map_err(|err| err.to_string())?;
        AlpacaQuantity::parse(&text)
    } else {
        // `null`, `true`, objects and arrays are `Malformed` here.
        AlpacaQuantity::parse_json_number(raw)
    };
    parsed.map_err(|err| format!("qty {}: {err}", truncated(raw)))
}

/// At most 64 characters of `text`, for log lines.
fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

fn parse_ap(
    client_id: Option<String>,
    external: Option<String>,
    affiliated: Option<String>,
) -> Result<ApRef, String> {
    let non_empty = |value: String| {
        if value.is_empty() {
            Err("the AP id is empty".to_owned())
        } else {
            Ok(value)
        }
    };
    match (client_id, external, affiliated) {
        (Some(id), None, None) => non_empty(id).map(ApRef::Legacy),
        (None, Some(id), None) => non_empty(id).map(ApRef::External),
        (None, None, Some(id)) => Uuid::parse_str(&id)
            .map(ApRef::Affiliated)
            .map_err(|_| format!("client_account_id {id:?} is not a UUID")),
        _ => Err("exactly one AP id field is required".to_owned()),
    }
}

impl RawMintRequest {
    fn into_order(self) -> Result<MintOrder, String> {
        let id = one_of(
            "tokenization_request_id",
            self.tokenization_request_id,
            self.id,
        )?;
        let tokenization_request_id =
            TokenizationRequestId::new(&id).map_err(|err| err.to_string())?;
        let qty = parse_qty(self.qty.as_deref())?;
        let underlying = UnderlyingSymbol::new(&required(
            "underlying_symbol",
            self.underlying_symbol,
        )?)
        .map_err(|err| err.to_string())?;
        let token =
            TokenSymbol::new(&required("token_symbol", self.token_symbol)?)
                .map_err(|err| err.to_string())?;
        let network: Network = required("network", self.network)?
            .parse()
            .map_err(|err: tokenized_asset::UnknownNetwork| err.to_string())?;
        let ap = parse_ap(
            self.client_id,
            self.client_external_account_id,
            self.client_account_id,
        )?;
        let wallet: Wallet = required("wallet_address", self.wallet_address)?
            .parse()
            .map_err(|err: crate::account::InvalidWallet| err.to_string())?;
        Ok(MintOrder {
            tokenization_request_id,
            qty,
            underlying,
            token,
            network,
            ap,
            wallet,
        })
    }
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct InitiateResponse {
    pub issuer_request_id: MintId,
    #[schema(example = "created")]
    pub status: String,
}

impl InitiateResponse {
    fn created(issuer_request_id: MintId) -> Json<Self> {
        Json(Self {
            issuer_request_id,
            status: "created".to_owned(),
        })
    }
}

fn order_of(view: &MintView) -> MintOrder {
    MintOrder {
        tokenization_request_id: view.tokenization_request_id.clone(),
        qty: view.qty,
        underlying: view.underlying.clone(),
        token: view.token.clone(),
        network: view.network,
        ap: view.ap.clone(),
        wallet: view.wallet,
    }
}

/// Whether two orders ask for the same mint: every field equal, `qty` as
/// a number (`"1.50"` = `1.5`), the wallet as an address (any letter
/// case), and the AP compared by [`ApRef::names_same_ap`], so `client_id`
/// and its alias `client_external_account_id` naming one id are the same
/// AP. The stored order keeps the field name of the first request.
fn same_order(stored: &MintOrder, sent: &MintOrder) -> bool {
    // Destructured so that a new field cannot be forgotten here.
    let MintOrder {
        tokenization_request_id,
        qty,
        underlying,
        token,
        network,
        ap,
        wallet,
    } = sent;
    stored.tokenization_request_id == *tokenization_request_id
        && stored.qty == *qty
        && stored.underlying == *underlying
        && stored.token == *token
        && stored.network == *network
        && stored.ap.names_same_ap(ap)
        && stored.wallet == *wallet
}

/// A repeated `tokenization_request_id`: the same order gets the same
/// answer, a different one a 409.
fn answer_repeat(
    existing: &MintView,
    order: &MintOrder,
) -> Result<Json<InitiateResponse>, ApiError> {
    if same_order(&order_of(existing), order) {
        tracing::info!(
            target: "mint",
            tokenization_request_id = %order.tokenization_request_id,
            issuer_request_id = %existing.issuer_request_id,
            "repeated mint request answered with the existing mint"
        );
        Ok(InitiateResponse::created(existing.issuer_request_id))
    } else {
        tracing::warn!(
            target: "mint",
            tokenization_request_id = %order.tokenization_request_id,
            "tokenization_request_id reused with different content"
        );
        Err(ApiError::conflict(DIFFERENT_CONTENT))
    }
}

fn refuse(message: &'static str, reason: &str) -> ApiError {
    tracing::warn!(target: "mint", reason, message, "mint request refused");
    ApiError::bad_request(message)
}

/// Checks the token, a freeze, the client and the wallet (the reference
/// issuer's order), and resolves the client and the vault.
async fn resolve(
    state: &MintState,
    order: MintOrder,
) -> Result<MintRequest, ApiError> {
    let asset =
        tokenized_asset::find(&state.pool, &order.underlying, order.network)
            .await
            .map_err(storage_error)?;
    let Some(asset) = asset else {
        return Err(refuse(INVALID_TOKEN, "no such listing"));
    };
    if !asset.enabled {
        return Err(refuse(INVALID_TOKEN, "listing disabled"));
    }
    if asset.token != order.token {
        return Err(refuse(INVALID_TOKEN, "token symbol differs"));
    }
    if !state.networks.is_empty() && !state.networks.contains(&order.network) {
        return Err(refuse(INVALID_TOKEN, "no chain serves this network"));
    }
    // Only new requests: a mint already initiated (or repeated, answered
    // above) carries on through a freeze.
    if asset.active_freeze(state.clock.now()).is_some() {
        return Err(refuse(ASSET_FROZEN, "listing frozen"));
    }
    let vault = Vault::new(asset.vault)
        .map_err(|_| refuse(INVALID_TOKEN, "listing has no vault"))?;
    let account = match &order.ap {
        ApRef::Legacy(id) | ApRef::External(id) => {
            let client_id = id
                .parse::<ClientId>()
                .map_err(|_| refuse(NOT_ELIGIBLE, "client id is not ours"))?;
            let account = find_by_client_id(&state.pool, &client_id)
                .await
                .map_err(storage_error)?
                .ok_or_else(|| refuse(NOT_ELIGIBLE, "unknown client"))?;
            if !account.is_linked() {
                return Err(refuse(
                    NOT_ELIGIBLE,
                    "client not linked to Alpaca",
                ));
            }
            account
        }
        // Affiliated flow: Alpaca authorised the AP as a correspondent, so
        // no handshake link is needed, only the operator's record of the
        // AP's Alpaca account.
        ApRef::Affiliated(uuid) => {
            let id = AlpacaAccountId::new(*uuid).map_err(|_| {
                refuse(NOT_ELIGIBLE, "client_account_id is the nil UUID")
            })?;
            find_by_alpaca_account_id(&state.pool, &id)
                .await
                .map_err(storage_error)?
                .ok_or_else(|| {
                    refuse(NOT_ELIGIBLE, "no account has this Alpaca account")
                })?
        }
    };
    if !account.owns_wallet(&order.wallet.address()) {
        return Err(refuse(INVALID_WALLET, "wallet not allow-listed"));
    }
    let client_id = account.client_id;
    Ok(MintRequest {
        order,
        issuer_request_id: MintId::new(state.ids.uuid()),
        client_id,
        vault,
    })
}

async fn handle_initiate(
    state: &MintState,
    body: Result<JsonBody<RawMintRequest>, BodyError>,
    http: &RequestId,
) -> Result<Json<InitiateResponse>, ApiError> {
    let JsonBody(raw) = body.map_err(|err| {
        tracing::warn!(target: "mint", reason = %err, "mint request refused");
        body_error(&err)
    })?;
    let order = raw
        .into_order()
        .map_err(|reason| invalid_payload(&reason))?;
    let id = order.tokenization_request_id.clone();
    if let Some(existing) = state.find(&id).await? {
        return answer_repeat(&existing, &order);
    }
    let request = resolve(state, order.clone()).await?;
    let issuer_request_id = request.issuer_request_id;
    match state.execute(&id, MintCommand::Initiate { request }).await {
        Ok(()) => {
            state.origins.record(
                id.as_str(),
                Some(&http.id.to_string()),
                &http.span,
            );
            tracing::info!(
                target: "mint",
                tokenization_request_id = %id,
                %issuer_request_id,
                qty = %order.qty,
                underlying = %order.underlying,
                network = %order.network,
                "mint initiated"
            );
            Ok(InitiateResponse::created(issuer_request_id))
        }
        // Lost a race with a concurrent request for the same id: answer
        // as if it had arrived second.
        Err(
            AggregateError::AggregateConflict
            | AggregateError::UserError(MintError::AlreadyInitiated { .. }),
        ) => match state.find(&id).await? {
            Some(existing) => answer_repeat(&existing, &order),
            None => Err(ApiError::unavailable(
                "the mint is being created concurrently; retry",
            )),
        },
        Err(error) => Err(command_error(error)),
    }
}

/// `POST /inkind/issuance` (oldest wire).
#[utoipa::path(
    post,
    path = "/inkind/issuance",
    tag = "alpaca",
    security(("alpaca_api_key" = [])),
    request_body = super::openapi::MintRequestBody,
    responses(
        (status = 200, description = "Mint created, or a repeat of the same order (the existing id)", body = InitiateResponse),
        (status = 400, description = "One of Alpaca's strings: `Failed Validation: Invalid data payload` (also a body that is not UTF-8 or not JSON), `Invalid Token: Token not available on the network`, `Insufficient Eligibility: Client not eligible`, `Invalid Wallet: Wallet does not belong to client`, `Asset Frozen: Minting is suspended for this asset` (the listing is frozen); or `request body could not be read`", body = ErrorBody),
        (status = 409, description = "`tokenization_request_id already used with different content`", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`, or a lost race: retry", body = ErrorBody),
    )
)]
#[rocket::post("/inkind/issuance", data = "<body>")]
async fn initiate_oldest(
    _auth: AlpacaAuth,
    state: &State<MintState>,
    body: AlpacaJson<RawMintRequest>,
    request: RequestId,
) -> Result<Json<InitiateResponse>, ApiError> {
    handle_initiate(state, body.into_result(), &request).await
}

/// `POST /tokenization/mint` (middle and current wires).
#[utoipa::path(
    post,
    path = "/tokenization/mint",
    tag = "alpaca",
    security(("alpaca_api_key" = [])),
    request_body = super::openapi::MintRequestBody,
    responses(
        (status = 200, description = "Mint created, or a repeat of the same order (the existing id)", body = InitiateResponse),
        (status = 400, description = "One of Alpaca's strings: `Failed Validation: Invalid data payload` (also a body that is not UTF-8 or not JSON), `Invalid Token: Token not available on the network`, `Insufficient Eligibility: Client not eligible`, `Invalid Wallet: Wallet does not belong to client`, `Asset Frozen: Minting is suspended for this asset` (the listing is frozen); or `request body could not be read`", body = ErrorBody),
        (status = 409, description = "`tokenization_request_id already used with different content`", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`, or a lost race: retry", body = ErrorBody),
    )
)]
#[rocket::post("/tokenization/mint", data = "<body>")]
async fn initiate(
    _auth: AlpacaAuth,
    state: &State<MintState>,
    body: AlpacaJson<RawMintRequest>,
    request: RequestId,
) -> Result<Json<InitiateResponse>, ApiError> {
    handle_initiate(state, body.into_result(), &request).await
}

fn command_error(error: AggregateError<MintError>) -> ApiError {
    match error {
        AggregateError::UserError(MintError::NotInitiated) => {
            ApiError::not_found("mint not found")
        }
        AggregateError::UserError(
            error @ MintError::IssuerRequestIdMismatch { .. },
        ) => {
            tracing::error!(target: "mint", %error, "confirmation refused");
            ApiError::bad_request(
                "issuer_request_id does not match tokenization_request_id",
            )
        }
        AggregateError::UserError(
            error @ MintError::ConflictingConfirmation { .. },
        ) => {
            tracing::error!(
                target: "mint",
                %error,
                "contradictory journal confirmation; operator attention needed"
            );
            ApiError::conflict(error.to_string())
        }
        AggregateError::UserError(error) => {
            ApiError::conflict(error.to_string())
        }
        AggregateError::AggregateConflict => ApiError::unavailable(
            "the mint is being changed concurrently; retry",
        ),
        AggregateError::DatabaseConnectionError(cause) => {
            storage_error(SqliteCause(cause))
        }
        error @ AggregateError::UnexpectedError(_)
            if claim_conflict(&error) == Some(MINT_IDS) =>
        {
            // Only an issuer_request_id collision can get here.
            ApiError::unavailable("issuer_request_id collision; retry")
        }
        other => ApiError::internal(other),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SqliteCause(Box<dyn std::error::Error + Send + Sync>);

/// Confirmation as any wire version sends it.
#[derive(Debug, Deserialize)]
struct RawConfirm {
    tokenization_request_id: Option<String>,
    id: Option<String>,
    issuer_request_id: Option<String>,
    status: Option<String>,
    reason: Option<String>,
    client_id: Option<String>,
    client_external_account_id: Option<String>,
    client_account_id: Option<String>,
}

struct Confirmation {
    tokenization_request_id: TokenizationRequestId,
    /// `None` when the text is not a UUID: it can match no mint.
    issuer_request_id: Option<MintId>,
    outcome: JournalOutcome,
    reason: Option<String>,
    ap: Option<ApRef>,
}

impl RawConfirm {
    fn parse(self) -> Result<Confirmation, String> {
        let id = one_of(
            "tokenization_request_id",
            self.tokenization_request_id,
            self.id,
        )?;
        let tokenization_request_id =
            TokenizationRequestId::new(&id).map_err(|err| err.to_string())?;
        let issuer_request_id =
            required("issuer_request_id", self.issuer_request_id)?
                .parse()
                .ok();
        let outcome = match required("status", self.status)?.as_str() {
            "completed" => JournalOutcome::Completed,
            "rejected" => JournalOutcome::Rejected,
            other => return Err(format!("unknown status {other:?}")),
        };
        let ap = match (
            &self.client_id,
            &self.client_external_account_id,
            &self.client_account_id,
        ) {
            (None, None, None) => None,
            _ => Some(parse_ap(
                self.client_id,
                self.client_external_account_id,
                self.client_account_id,
            )?),
        };
        Ok(Confirmation {
            tokenization_request_id,
            issuer_request_id,
            outcome,
            reason: self.reason,
            ap,
        })
    }
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct ConfirmResponse {
    pub tokenization_request_id: TokenizationRequestId,
    pub issuer_request_id: MintId,
    /// The mint's state right after the journal outcome was recorded
    /// (`journal_confirmed` or `journal_rejected`), so every repeat gets
    /// the same answer as the first.
    pub status: MintStatus,
}

fn confirm_refused(status: ApiError, reason: &str) -> ApiError {
    // Alpaca does not retry 4xx: someone has to look at this.
    tracing::error!(
        target: "mint",
        reason,
        status = status.status().code,
        "mint confirmation refused"
    );
    status
}

async fn handle_confirm(
    state: &MintState,
    body: Result<JsonBody<RawConfirm>, BodyError>,
    http: &RequestId,
) -> Result<Json<ConfirmResponse>, ApiError> {
    let JsonBody(raw) = body
        .map_err(|err| confirm_refused(body_error(&err), &err.to_string()))?;
    let confirmation = raw.parse().map_err(|reason| {
        confirm_refused(ApiError::bad_request(INVALID_PAYLOAD), &reason)
    })?;
    let id = confirmation.tokenization_request_id.clone();
    let Some(view) = state.find(&id).await? else {
        let known_elsewhere = match &confirmation.issuer_request_id {
            Some(issuer_id) => {
                find_by_issuer_request_id(&state.pool, issuer_id)
                    .await
                    .map_err(storage_error)?
                    .is_some()
            }
            None => false,
        };
        return Err(if known_elsewhere {
            confirm_refused(
                ApiError::bad_request(
                    "issuer_request_id does not match tokenization_request_id",
                ),
                "issuer_request_id belongs to another mint",
            )
        } else {
            confirm_refused(
                ApiError::not_found("mint not found"),
                "unknown mint",
            )
        });
    };
    let Some(issuer_request_id) = confirmation
        .issuer_request_id
        .filter(|sent| *sent == view.issuer_request_id)
    else {
        return Err(confirm_refused(
            ApiError::bad_request(
                "issuer_request_id does not match tokenization_request_id",
            ),
            "issuer_request_id mismatch",
        ));
    };
    if let Some(ap) = &confirmation.ap
        && !view.ap.names_same_ap(ap)
    {
        return Err(confirm_refused(
            ApiError::bad_request("client id does not match the mint"),
            "AP id mismatch",
        ));
    }
    let (command, status) = match confirmation.outcome {
        JournalOutcome::Completed => (
            MintCommand::ConfirmJournal { issuer_request_id },
            MintStatus::JournalConfirmed,
        ),
        JournalOutcome::Rejected => (
            MintCommand::RejectJournal {
                issuer_request_id,
                reason: confirmation.reason,
            },
            MintStatus::JournalRejected,
        ),
    };
    state.execute(&id, command).await.map_err(command_error)?;
    tracing::info!(
        target: "mint",
        tokenization_request_id = %id,
        %issuer_request_id,
        outcome = %confirmation.outcome,
        "journal outcome recorded"
    );
    if confirmation.outcome == JournalOutcome::Completed {
        // The driver's steps continue this request's trace.
        state.origins.record(
            id.as_str(),
            Some(&http.id.to_string()),
            &http.span,
        );
        state.waker.notify_one();
    }
    Ok(Json(ConfirmResponse {
        tokenization_request_id: id,
        issuer_request_id,
        status,
    }))
}

/// `POST /inkind/issuance/confirm` (oldest wire).
#[utoipa::path(
    post,
    path = "/inkind/issuance/confirm",
    tag = "alpaca",
    security(("alpaca_api_key" = [])),
    request_body = super::openapi::ConfirmBody,
    responses(
        (status = 200, description = "Journal outcome recorded; a repeat gets the identical answer", body = ConfirmResponse),
        (status = 400, description = "`Failed Validation: Invalid data payload` (also not UTF-8 / not JSON), `issuer_request_id does not match tokenization_request_id`, `client id does not match the mint`, or `request body could not be read`", body = ErrorBody),
        (status = 404, description = "`mint not found`", body = ErrorBody),
        (status = 409, description = "A contradicting outcome, or a mint past confirmation", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`, or a lost race: retry", body = ErrorBody),
    )
)]
#[rocket::post("/inkind/issuance/confirm", data = "<body>")]
async fn confirm_oldest(
    _auth: AlpacaAuth,
    state: &State<MintState>,
    body: AlpacaJson<RawConfirm>,
    request: RequestId,
) -> Result<Json<ConfirmResponse>, ApiError> {
    handle_confirm(state, body.into_result(), &request).await
}

/// `POST /tokenization/mint/confirm` (middle and current wires).
#[utoipa::path(
    post,
    path = "/tokenization/mint/confirm",
    tag = "alpaca",
    security(("alpaca_api_key" = [])),
    request_body = super::openapi::ConfirmBody,
    responses(
        (status = 200, description = "Journal outcome recorded; a repeat gets the identical answer", body = ConfirmResponse),
        (status = 400, description = "`Failed Validation: Invalid data payload` (also not UTF-8 / not JSON), `issuer_request_id does not match tokenization_request_id`, `client id does not match the mint`, or `request body could not be read`", body = ErrorBody),
        (status = 404, description = "`mint not found`", body = ErrorBody),
        (status = 409, description = "A contradicting outcome, or a mint past confirmation", body = ErrorBody),
        (status = 413, description = "`request body exceeds the size limit`", body = ErrorBody),
        (status = 415, description = "`unsupported media type: send application/json`", body = ErrorBody),
        (status = 503, description = "`storage temporarily unavailable; retry`, or a lost race: retry", body = ErrorBody),
    )
)]
#[rocket::post("/tokenization/mint/confirm", data = "<body>")]
async fn confirm(
    _auth: AlpacaAuth,
    state: &State<MintState>,
    body: AlpacaJson<RawConfirm>,
    request: RequestId,
) -> Result<Json<ConfirmResponse>, ApiError> {
    handle_confirm(state, body.into_result(), &request).await
}

/// A mint for operators: the view plus why the driver is waiting.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct MintResponse {
    #[serde(flatten)]
    pub mint: MintView,
    pub last_error: Option<DriverStatus>,
}

/// One mint: the `MintView` plus why the driver is waiting.
#[utoipa::path(
    get,
    path = "/mints/{issuer_request_id}",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("issuer_request_id" = Uuid, Path, description = "Our id from the mint request's answer")),
    responses(
        (status = 200, description = "The mint", body = MintResponse),
        (status = 404, description = "`mint not found`", body = ErrorBody),
        (status = 422, description = "Not a UUID", body = ErrorBody),
    )
)]
#[rocket::get("/mints/<issuer_request_id>")]
async fn get_mint(
    _auth: InternalAuth,
    state: &State<MintState>,
    issuer_request_id: &str,
) -> Result<Json<MintResponse>, ApiError> {
    let issuer_request_id: MintId =
        issuer_request_id
            .parse()
            .map_err(|err: super::InvalidMintId| {
                ApiError::unprocessable(err.to_string())
            })?;
    let mint = find_by_issuer_request_id(&state.pool, &issuer_request_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("mint not found"))?;
    // A finished mint has no pending error, even before the engine has
    // cleared its status row.
    let last_error = if mint.status.needs_driver() {
        driver::status(
            &state.pool,
            FlowName::Mint,
            mint.tokenization_request_id.as_str(),
        )
        .await
        .map_err(ApiError::internal)?
    } else {
        None
    };
    Ok(Json(MintResponse { mint, last_error }))
}

/// The mint routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(initiate_oldest, initiate, confirm_oldest, confirm, get_mint))]
pub struct MintApiDoc;
