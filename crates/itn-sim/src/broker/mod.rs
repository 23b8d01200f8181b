//! The Broker API endpoints the issuer calls (itn-wire.md §5), with
//! Alpaca's auth, `{code, message}` envelope, rate limiting and faults.

mod auth;
mod callback;
mod query;
mod redeem;

use std::time::Duration;

use chrono::Utc;
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder};
use rocket::serde::json::Json;
use rocket::{Catcher, Route};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::fault::Endpoint;
use crate::recording::RecordedRequest;
use crate::tokenization::ClientRef;
use crate::world::Shared;

pub(crate) fn routes() -> Vec<Route> {
    rocket::routes![
        callback::mint_callback,
        redeem::redeem_legacy,
        redeem::redeem_callback,
        query::list,
        query::get_by_id,
        query::get_by_issuer_request_id,
    ]
}

pub(crate) fn catchers() -> Vec<Catcher> {
    rocket::catchers![default_catcher]
}

#[rocket::catch(default)]
fn default_catcher(status: Status, _req: &Request<'_>) -> Reply {
    Reply::error(status.code, status.reason_lossy())
}

/// Everything about an incoming request that the handlers and the
/// recordings need; never fails.
pub(crate) struct Incoming {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

impl Incoming {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Incoming {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let headers = req
            .headers()
            .iter()
            .map(|h| (h.name().as_str().to_owned(), h.value().to_owned()))
            .collect();
        let query = req
            .uri()
            .query()
            .map(|q| {
                q.segments()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Outcome::Success(Self {
            method: req.method().as_str().to_owned(),
            path: req.uri().to_string(),
            headers,
            query,
        })
    }
}

/// A JSON answer with a status and extra headers.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    status: Status,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

/// Alpaca's error codes: status * 100000 + 10000, except the 422 family
/// whose documented examples all carry 42210001.
fn error_code(status: u16) -> u64 {
    if status == 422 {
        42_210_001
    } else {
        u64::from(status) * 100_000 + 10_000
    }
}

impl Reply {
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self {
            status: Status::new(status),
            body,
            headers: Vec::new(),
        }
    }

    pub(crate) fn ok(body: Value) -> Self {
        Self::json(200, body)
    }

    pub(crate) fn error(status: u16, message: impl Into<String>) -> Self {
        let message: String = message.into();
        Self::json(
            status,
            json!({"code": error_code(status), "message": message}),
        )
    }

    pub(crate) fn with_header(
        mut self,
        name: &'static str,
        value: impl Into<String>,
    ) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn status(&self) -> u16 {
        self.status.code
    }

    pub(crate) fn body(&self) -> &Value {
        &self.body
    }
}

impl<'r> Responder<'r, 'static> for Reply {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let mut response = Json(self.body).respond_to(req)?;
        response.set_status(self.status);
        for (name, value) in self.headers {
            response.set_raw_header(name, value);
        }
        Ok(response)
    }
}

/// Common entry of every Broker endpoint: record the hit, then auth,
/// account scope, rate limit, injected status and latency, in that order.
pub(crate) async fn gate(
    shared: &Shared,
    endpoint: Endpoint,
    incoming: &Incoming,
    account_id: &str,
    body: &str,
) -> Result<(), Reply> {
    let (rate_limited, forced_status, latency) = {
        let mut world = shared.world();
        world.record(
            endpoint,
            RecordedRequest {
                method: incoming.method.clone(),
                path: incoming.path.clone(),
                headers: incoming.headers.clone(),
                body: body.to_owned(),
                at: Utc::now(),
            },
        );
        auth::check(&shared.cfg, incoming)?;
        if Uuid::parse_str(account_id).ok()
            != Some(shared.cfg.issuer_account_id)
        {
            // 403, not 404: a wrong account id is a configuration error
            // the issuer must not mistake for "request not there yet".
            return Err(Reply::error(403, "forbidden"));
        }
        let faults = &mut world.faults;
        (
            faults.take_rate_limit(),
            faults.take_status(endpoint),
            faults.take_latency(endpoint),
        )
    };
    if let Some(retry_after) = rate_limited {
        return Err(too_many_requests(retry_after));
    }
    if let Some(status) = forced_status {
        return Err(Reply::error(status, "injected fault"));
    }
    if let Some(delay) = latency {
        tokio::time::sleep(delay).await;
    }
    Ok(())
}

fn too_many_requests(retry_after: Duration) -> Reply {
    let reset = Utc::now()
        .timestamp()
        .saturating_add(i64::try_from(retry_after.as_secs()).unwrap_or(0));
    Reply::error(429, "rate limit exceeded")
        .with_header("Retry-After", retry_after.as_secs().to_string())
        .with_header("X-RateLimit-Limit", "1000")
        .with_header("X-RateLimit-Remaining", "0")
        .with_header("X-RateLimit-Reset", reset.to_string())
}

/// Common exit: a DropResponse fault turns an applied answer into 504.
pub(crate) fn finish(
    shared: &Shared,
    endpoint: Endpoint,
    reply: Reply,
) -> Reply {
    if shared.world().faults.take_drop(endpoint) {
        Reply::error(504, "gateway timeout")
    } else {
        reply
    }
}

pub(crate) fn decode_error() -> Reply {
    Reply::error(400, "failed to decode request body")
}

/// Parses a JSON object body.
pub(crate) fn object(body: &str) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_str(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(decode_error()),
    }
}

/// A string field; absent, null and "" count as missing, any other JSON
/// type is undecodable.
pub(crate) fn text<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, Reply> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(decode_error()),
    }
}

/// 422 listing every missing field, Alpaca style.
pub(crate) fn require(
    body: &Map<String, Value>,
    fields: &[&str],
) -> Result<(), Reply> {
    let mut missing = Vec::new();
    for field in fields {
        if text(body, field)?.is_none() {
            missing.push(format!("{field} is required"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Reply::error(422, missing.join(", ")))
    }
}

/// Exactly one AP id: `client_external_account_id` (alias `client_id`)
/// or `client_account_id`.
pub(crate) fn client_ref(
    body: &Map<String, Value>,
) -> Result<ClientRef, Reply> {
    let external = text(body, "client_external_account_id")?;
    let alias = text(body, "client_id")?;
    let account = text(body, "client_account_id")?;
    let external = match (external, alias) {
        (Some(a), Some(b)) if a != b => {
            return Err(Reply::error(
                422,
                "client_id and client_external_account_id differ",
            ));
        }
        (a, b) => a.or(b),
    };
    match (external, account) {
        (Some(id), None) => Ok(ClientRef::External(id.to_owned())),
        (None, Some(id)) => Uuid::parse_str(id)
            .map(ClientRef::Account)
            .map_err(|_| Reply::error(422, "client_account_id must be a uuid")),
        (Some(_), Some(_)) => Err(Reply::error(
            422,
            "only one of client_external_account_id and \
             client_account_id may be set",
        )),
        (None, None) => Err(Reply::error(
            422,
            "client_external_account_id or client_account_id is required",
        )),
    }
}
