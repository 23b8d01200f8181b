//! Reading tokenization requests: the list (bare array, filters with
//! exclusive `after`/`before`), the keyed GET and the lookup by
//! `issuer_request_id`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rocket::State;
use serde_json::Value;
use uuid::Uuid;

use super::{Incoming, Reply, finish, gate};
use crate::fault::Endpoint;
use crate::tokenization::{RequestStatus, RequestType, TokenizationRequest};
use crate::world::Shared;

struct Filters {
    request_type: Option<RequestType>,
    status: Option<RequestStatus>,
    underlying_symbol: Option<String>,
    issuer: Option<String>,
    network: Option<String>,
    after: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
    limit: Option<usize>,
}

fn parse_failed(name: &str) -> Reply {
    Reply::error(422, format!("failed to parse {name}"))
}

fn time(
    incoming: &Incoming,
    name: &str,
) -> Result<Option<DateTime<Utc>>, Reply> {
    incoming
        .query(name)
        .map(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| parse_failed(name))
        })
        .transpose()
}

impl Filters {
    fn parse(incoming: &Incoming) -> Result<Self, Reply> {
        let request_type = incoming
            .query("type")
            .map(|raw| {
                RequestType::parse(raw).ok_or_else(|| parse_failed("type"))
            })
            .transpose()?;
        let status = incoming
            .query("status")
            .map(|raw| {
                RequestStatus::parse(raw).ok_or_else(|| parse_failed("status"))
            })
            .transpose()?;
        let limit = incoming
            .query("limit")
            .map(|raw| raw.parse().map_err(|_| parse_failed("limit")))
            .transpose()?;
        Ok(Self {
            request_type,
            status,
            underlying_symbol: incoming
                .query("underlying_symbol")
                .map(str::to_owned),
            issuer: incoming.query("issuer").map(str::to_owned),
            network: incoming.query("network").map(str::to_owned),
            after: time(incoming, "after")?,
            before: time(incoming, "before")?,
            limit,
        })
    }

    fn admits(&self, req: &TokenizationRequest) -> bool {
        self.request_type.is_none_or(|t| t == req.request_type)
            && self.status.is_none_or(|s| s == req.status)
            && self
                .underlying_symbol
                .as_ref()
                .is_none_or(|s| *s == req.underlying_symbol)
            && self.issuer.as_ref().is_none_or(|i| *i == req.issuer)
            && self.network.as_ref().is_none_or(|n| *n == req.network)
            && self.after.is_none_or(|at| req.created_at > at)
            && self.before.is_none_or(|at| req.created_at < at)
    }
}

/// Settled rows older than the retention window drop out of the list.
fn retained(
    req: &TokenizationRequest,
    retention: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> bool {
    let Some(retention) = retention else {
        return true;
    };
    if req.status == RequestStatus::Pending {
        return true;
    }
    let settled = req.updated_at.unwrap_or(req.created_at);
    chrono::Duration::from_std(retention)
        .ok()
        .and_then(|window| settled.checked_add_signed(window))
        .is_none_or(|expiry| expiry > now)
}

#[rocket::get("/v1/accounts/<account_id>/tokenization/requests")]
pub(super) async fn list(
    shared: &State<Arc<Shared>>,
    incoming: Incoming,
    account_id: &str,
) -> Reply {
    let endpoint = Endpoint::ListRequests;
    if let Err(reply) = gate(shared, endpoint, &incoming, account_id, "").await
    {
        return reply;
    }
    let reply = match Filters::parse(&incoming) {
        Err(reply) => reply,
        Ok(filters) => {
            let world = shared.world();
            let now = Utc::now();
            let rows: Vec<Value> = world
                .requests
                .iter()
                .filter(|req| filters.admits(req))
                .filter(|req| retained(req, shared.cfg.list_retention, now))
                .take(filters.limit.unwrap_or(usize::MAX))
                .map(|req| req.to_wire(&world.faults.quirks))
                .collect();
            Reply::ok(Value::Array(rows))
        }
    };
    finish(shared, endpoint, reply)
}

#[rocket::get("/v1/accounts/<account_id>/tokenization/requests/<id>")]
pub(super) async fn get_by_id(
    shared: &State<Arc<Shared>>,
    incoming: Incoming,
    account_id: &str,
    id: &str,
) -> Reply {
    let endpoint = Endpoint::GetRequest;
    if let Err(reply) = gate(shared, endpoint, &incoming, account_id, "").await
    {
        return reply;
    }
    let reply = match Uuid::parse_str(id) {
        Err(_) => {
            Reply::error(422, "tokenization_request_id must be a valid uuid")
        }
        Ok(id) => {
            let world = shared.world();
            world.request(id).map_or_else(
                || Reply::error(404, "tokenization request not found"),
                |req| Reply::ok(req.to_wire(&world.faults.quirks)),
            )
        }
    };
    finish(shared, endpoint, reply)
}

#[rocket::get(
    "/v1/accounts/<account_id>/tokenization/requests:by_issuer_request_id"
)]
pub(super) async fn get_by_issuer_request_id(
    shared: &State<Arc<Shared>>,
    incoming: Incoming,
    account_id: &str,
) -> Reply {
    let endpoint = Endpoint::GetByIssuerRequestId;
    if let Err(reply) = gate(shared, endpoint, &incoming, account_id, "").await
    {
        return reply;
    }
    let reply = match incoming.query("issuer_request_id") {
        None | Some("") => Reply::error(422, "issuer_request_id is required"),
        Some(wanted) => {
            let world = shared.world();
            world
                .requests
                .iter()
                .rev()
                .find(|req| req.issuer_request_id.as_deref() == Some(wanted))
                .map_or_else(
                    || Reply::error(404, "tokenization request not found"),
                    |req| Reply::ok(req.to_wire(&world.faults.quirks)),
                )
        }
    };
    finish(shared, endpoint, reply)
}
