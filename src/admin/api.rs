//! `GET /admin/stuck`, `GET /admin/history/<aggregate>/<id>` and
//! `POST /admin/views/rebuild`.

use std::sync::Arc;

use alloy::primitives::TxHash;
use chrono::{DateTime, Utc};
use rocket::serde::json::Json;
use rocket::{Route, State};
use serde::Serialize;
use serde_json::Value;
use sqlite_es::event_history;
use sqlx::SqlitePool;

use super::DEFAULT_STUCK_AFTER_SECS;
use crate::auth::InternalAuth;
use crate::clock::Clock;
use crate::driver::{self, DriverStatus, FlowName};
use crate::http::{ApiError, ErrorBody};
use crate::mint::{MintState, MintView};
use crate::redemption::RedemptionResponse;

pub fn routes() -> Vec<Route> {
    rocket::routes![stuck, history, rebuild_views]
}

/// The admin routes in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(stuck, history, rebuild_views))]
pub struct AdminApiDoc;

/// A mint needing attention.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StuckMint {
    pub issuer_request_id: String,
    pub tokenization_request_id: String,
    pub state: String,
    pub age_secs: i64,
    /// Consecutive failed steps of the driver (0 when none).
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Every transaction the mint signed, oldest first.
    #[schema(value_type = Vec<String>)]
    pub tx_hashes: Vec<TxHash>,
    pub failure: Option<String>,
}

/// A redemption needing attention.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StuckRedemption {
    pub issuer_request_id: String,
    pub state: String,
    pub age_secs: i64,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The AP's transfer, then every burn transaction, oldest first.
    pub tx_hashes: Vec<String>,
    pub failure: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StuckAnswer {
    pub older_than_secs: u64,
    pub mints: Vec<StuckMint>,
    pub redemptions: Vec<StuckRedemption>,
}

/// Unfinished flows older than `older_than_secs` (default 600), and every
/// failed one.
#[utoipa::path(
    get,
    path = "/admin/stuck",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(("older_than_secs" = Option<u64>, Query, description = "Age past which an unfinished flow is listed (default 600)")),
    responses(
        (status = 200, description = "Stuck and failed mints and redemptions", body = StuckAnswer),
        (status = 422, description = "`older_than_secs` is not a non-negative integer", body = ErrorBody),
    )
)]
#[rocket::get("/admin/stuck?<older_than_secs>")]
async fn stuck(
    _auth: InternalAuth,
    pool: &State<SqlitePool>,
    mints: &State<MintState>,
    older_than_secs: Option<u64>,
) -> Result<Json<StuckAnswer>, ApiError> {
    let older_than_secs = older_than_secs.unwrap_or(DEFAULT_STUCK_AFTER_SECS);
    let clock: &Arc<dyn Clock> = mints.clock();
    let now = clock.now();
    // Any age beyond what a timestamp can hold lists every open flow.
    let cutoff = i64::try_from(older_than_secs)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .and_then(|age| now.checked_sub_signed(age))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut answer = StuckAnswer {
        older_than_secs,
        mints: Vec::new(),
        redemptions: Vec::new(),
    };
    for view in crate::mint::stuck_mint_views(pool, cutoff)
        .await
        .map_err(ApiError::internal)?
    {
        let status = flow_status(
            pool,
            FlowName::Mint,
            view.tokenization_request_id.as_str(),
        )
        .await?;
        answer.mints.push(stuck_mint(view, status, now));
    }
    for (id, state) in crate::redemption::stuck_redemption_states(pool, cutoff)
        .await
        .map_err(ApiError::internal)?
    {
        let Ok(parsed) = id.parse() else {
            continue;
        };
        let Some(response) = RedemptionResponse::from_state(&parsed, &state)
        else {
            continue;
        };
        let status = flow_status(pool, FlowName::Redemption, &id).await?;
        answer
            .redemptions
            .push(stuck_redemption(response, status, now));
    }
    Ok(Json(answer))
}

async fn flow_status(
    pool: &SqlitePool,
    flow: FlowName,
    id: &str,
) -> Result<Option<DriverStatus>, ApiError> {
    driver::status(pool, flow, id)
        .await
        .map_err(ApiError::internal)
}

fn stuck_mint(
    view: MintView,
    status: Option<DriverStatus>,
    now: DateTime<Utc>,
) -> StuckMint {
    let mut tx_hashes = view.superseded_tx_hashes.clone();
    tx_hashes.extend(view.tx_hash);
    StuckMint {
        issuer_request_id: view.issuer_request_id.to_string(),
        tokenization_request_id: view.tokenization_request_id.to_string(),
        state: view.status.to_string(),
        age_secs: (now - view.initiated_at).num_seconds(),
        attempts: status.as_ref().map_or(0, |status| status.failures),
        last_error: status.map(|status| status.last_error),
        tx_hashes,
        failure: view.failure.map(|failure| {
            format!("{}: {}", failure.classification, failure.reason)
        }),
    }
}

fn stuck_redemption(
    response: RedemptionResponse,
    status: Option<DriverStatus>,
    now: DateTime<Utc>,
) -> StuckRedemption {
    let detected_at = DateTime::parse_from_rfc3339(&response.detected_at)
        .map_or(now, |at| at.with_timezone(&Utc));
    let mut tx_hashes = vec![response.tx_hash.clone()];
    tx_hashes.extend(response.superseded_burn_tx_hashes.iter().cloned());
    tx_hashes.extend(response.burn_tx_hash.iter().cloned());
    StuckRedemption {
        issuer_request_id: response.issuer_request_id,
        state: response.state,
        age_secs: (now - detected_at).num_seconds(),
        attempts: status.as_ref().map_or(0, |status| status.failures),
        last_error: status.map(|status| status.last_error),
        tx_hashes,
        failure: response.failure_reason,
    }
}

/// One stored event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryEvent {
    pub sequence: u64,
    pub event_type: String,
    /// The event's own time (its `…_at` field), when it has one.
    pub time: Option<String>,
    #[schema(value_type = Object)]
    pub payload: Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryAnswer {
    pub aggregate: String,
    pub id: String,
    pub events: Vec<HistoryEvent>,
}

/// Every event of one aggregate. `<aggregate>`: `account`,
/// `tokenized-asset`, `mint` (by tokenization_request_id or
/// issuer_request_id), `redemption` or `receipts` (a vault's receipt
/// ledger, by vault address).
#[utoipa::path(
    get,
    path = "/admin/history/{aggregate}/{id}",
    tag = "internal",
    security(("internal_api_key" = [])),
    params(
        ("aggregate" = String, Path, description = "`account`, `tokenized-asset`, `mint`, `redemption` or `receipts`"),
        ("id" = String, Path, description = "The aggregate id (a mint also by its issuer_request_id)"),
    ),
    responses(
        (status = 200, description = "Every event, oldest first", body = HistoryAnswer),
        (status = 404, description = "Unknown aggregate kind, or no events for that id", body = ErrorBody),
    )
)]
#[rocket::get("/admin/history/<aggregate>/<id>")]
async fn history(
    _auth: InternalAuth,
    pool: &State<SqlitePool>,
    aggregate: &str,
    id: &str,
) -> Result<Json<HistoryAnswer>, ApiError> {
    let aggregate_type = match aggregate {
        "account" => "Account",
        "tokenized-asset" => "TokenizedAsset",
        "mint" => "Mint",
        "redemption" => crate::redemption::AGGREGATE_TYPE,
        "receipts" => crate::receipt_inventory::LEDGER_AGGREGATE,
        other => {
            return Err(ApiError::not_found(format!(
                "unknown aggregate {other:?}: one of account, \
                 tokenized-asset, mint, redemption, receipts"
            )));
        }
    };
    let mut stream_id = id.to_owned();
    // A vault's ledger is keyed by its lowercase address.
    if aggregate == "receipts"
        && let Ok(vault) = id.parse()
    {
        stream_id = crate::vocabulary::address_key(vault);
    }
    if aggregate == "mint"
        && let Ok(issuer_request_id) = id.parse()
        && let Some(view) =
            crate::mint::find_by_issuer_request_id(pool, &issuer_request_id)
                .await
                .map_err(ApiError::internal)?
    {
        stream_id = view.tokenization_request_id.to_string();
    }
    let events = event_history(pool, aggregate_type, &stream_id)
        .await
        .map_err(ApiError::internal)?;
    if events.is_empty() {
        return Err(ApiError::not_found(format!("no {aggregate} {id}")));
    }
    Ok(Json(HistoryAnswer {
        aggregate: aggregate.to_owned(),
        id: stream_id,
        events: events
            .into_iter()
            .map(|event| HistoryEvent {
                sequence: event.sequence,
                time: event_time(&event.payload),
                event_type: event.event_type,
                payload: event.payload,
            })
            .collect(),
    }))
}

/// The first `…_at` timestamp inside an externally tagged event.
fn event_time(payload: &Value) -> Option<String> {
    let fields = payload.as_object()?.values().next()?.as_object()?;
    fields.iter().find_map(|(name, value)| {
        name.ends_with("_at")
            .then(|| value.as_str().map(str::to_owned))
            .flatten()
    })
}

/// One view rebuilt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RebuiltView {
    pub view: &'static str,
    /// Events replayed into it.
    pub events: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RebuildAnswer {
    pub replayed: Vec<RebuiltView>,
}

/// Rebuilds every view from the event log, each in one transaction (so a
/// reader sees the old or the new view, never a half-built one).
#[utoipa::path(
    post,
    path = "/admin/views/rebuild",
    tag = "internal",
    security(("internal_api_key" = [])),
    responses(
        (status = 200, description = "Every view rebuilt from the event log", body = RebuildAnswer),
    )
)]
#[rocket::post("/admin/views/rebuild")]
async fn rebuild_views(
    _auth: InternalAuth,
    pool: &State<SqlitePool>,
) -> Result<Json<RebuildAnswer>, ApiError> {
    let replayed = rebuild_each_view(pool).await.map_err(ApiError::internal)?;
    tracing::warn!(target: "admin", ?replayed, "views rebuilt by an operator");
    Ok(Json(RebuildAnswer { replayed }))
}

/// Rebuilds every view table from the event log whatever version it
/// records, each in one write transaction (commands wait meanwhile); the
/// events replayed per view. The one list of the service's views.
pub async fn rebuild_each_view(
    pool: &SqlitePool,
) -> Result<Vec<RebuiltView>, sqlite_es::SqliteEsError> {
    Ok(vec![
        RebuiltView {
            view: "account",
            events: crate::account::rebuild_views(pool).await?,
        },
        RebuiltView {
            view: "tokenized_asset",
            events: crate::tokenized_asset::rebuild_views(pool).await?,
        },
        RebuiltView {
            view: "mint",
            events: crate::mint::rebuild_views(pool).await?,
        },
        RebuiltView {
            view: "redemption",
            events: crate::redemption::rebuild_views(pool).await?,
        },
    ])
}
