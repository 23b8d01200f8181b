//! `POST /v1/accounts/{account_id}/tokenization/callback/redeem` (and the
//! older `.../tokenization/redeem`): the issuer asks Alpaca to move
//! shares back to the AP after receiving tokens on-chain.

use std::sync::Arc;

use chrono::Utc;
use rocket::State;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    Incoming, Reply, client_ref, decode_error, finish, gate, object, require,
    text,
};
use crate::ap::{ApId, ClientIdMode};
use crate::fault::{Endpoint, InitialRedeemStatus};
use crate::tokenization::{
    ClientRef, Qty, QtyError, RequestStatus, RequestType, TokenizationRequest,
    is_known_network,
};
use crate::world::{IdempotentAnswer, RedeemFate, Shared, World};

const REQUIRED: [&str; 7] = [
    "issuer_request_id",
    "underlying_symbol",
    "token_symbol",
    "qty",
    "network",
    "wallet_address",
    "tx_hash",
];

#[rocket::post(
    "/v1/accounts/<account_id>/tokenization/redeem",
    data = "<body>"
)]
pub(super) async fn redeem_legacy(
    shared: &State<Arc<Shared>>,
    incoming: Incoming,
    account_id: &str,
    body: String,
) -> Reply {
    redeem(shared, &incoming, account_id, &body).await
}

#[rocket::post(
    "/v1/accounts/<account_id>/tokenization/callback/redeem",
    data = "<body>"
)]
pub(super) async fn redeem_callback(
    shared: &State<Arc<Shared>>,
    incoming: Incoming,
    account_id: &str,
    body: String,
) -> Reply {
    redeem(shared, &incoming, account_id, &body).await
}

/// 1-128 printable ASCII characters, no spaces after trimming.
fn valid_key(raw: &str) -> Option<String> {
    let key = raw.trim();
    let ok = !key.is_empty()
        && key.len() <= 128
        && key.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| key.to_owned())
}

async fn redeem(
    shared: &Arc<Shared>,
    incoming: &Incoming,
    account_id: &str,
    body: &str,
) -> Reply {
    let endpoint = Endpoint::Redeem;
    if let Err(reply) = gate(shared, endpoint, incoming, account_id, body).await
    {
        return reply;
    }
    let key = match incoming.header("idempotency-key").map(valid_key) {
        None => None,
        Some(Some(key)) => Some(key),
        Some(None) => {
            return finish(
                shared,
                endpoint,
                Reply::error(400, "invalid Idempotency-Key header"),
            );
        }
    };
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let (reply, pending) = {
        let mut world = shared.world();
        if let Some(replay) = replay(&world, key.as_deref(), parsed.as_ref()) {
            (replay, None)
        } else {
            apply_and_remember(&mut world, shared, body, key, parsed)
        }
    };
    if let Some(id) = pending {
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            tokio::time::sleep(shared.cfg.redeem_settle_delay).await;
            shared.world().settle_redeem(id);
        });
    }
    finish(shared, endpoint, reply)
}

/// Applies a redeem and stores its answer under the Idempotency-Key.
fn apply_and_remember(
    world: &mut World,
    shared: &Shared,
    body: &str,
    key: Option<String>,
    parsed: Option<Value>,
) -> (Reply, Option<Uuid>) {
    let (reply, pending) = match apply(world, shared, body) {
        Ok((reply, pending)) => (reply, pending),
        Err(reply) => (reply, None),
    };
    if let (Some(key), Some(parsed)) = (key, parsed) {
        world.idempotency.insert(
            key,
            IdempotentAnswer {
                body: parsed,
                status: reply.status(),
                response: reply.body().clone(),
            },
        );
    }
    (reply, pending)
}

/// Same key + same body replays (a rejection replays as 400); same key +
/// different body is 422.
fn replay(
    world: &World,
    key: Option<&str>,
    parsed: Option<&Value>,
) -> Option<Reply> {
    let answer = world.idempotency.get(key?)?;
    let reply = if parsed != Some(&answer.body) {
        Reply::error(422, "Idempotency-Key was used with a different body")
    } else if (200..300).contains(&answer.status) {
        Reply::json(answer.status, answer.response.clone())
            .with_header("Idempotent-Replayed", "true")
    } else {
        Reply::json(400, answer.response.clone())
            .with_header("Idempotent-Replayed", "true")
    };
    Some(reply)
}

fn field<'a>(
    map: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, Reply> {
    text(map, name)?.ok_or_else(decode_error)
}

/// Finds the AP by the id the issuer named, enforcing the id kind agreed
/// for that AP.
fn find_ap(world: &World, client: &ClientRef) -> Option<ApId> {
    world
        .aps
        .values()
        .find(|ap| match client {
            ClientRef::External(id) => {
                ap.id_mode == ClientIdMode::External
                    && ap.linked_id() == Some(id.as_str())
            }
            ClientRef::Account(uuid) => {
                ap.id_mode == ClientIdMode::Affiliated && ap.id.uuid() == *uuid
            }
        })
        .map(|ap| ap.id)
}

fn qty_error(err: &QtyError) -> Reply {
    match err {
        QtyError::TooManyDecimals { .. } => {
            Reply::error(400, "qty must have at most 9 decimal places")
        }
        QtyError::NotPositive(_) => Reply::error(400, "qty must be positive"),
        QtyError::NotDecimal(_) => decode_error(),
    }
}

/// Validates and records a redeem; returns the answer and, when it is
/// still pending, the id to settle later.
fn apply(
    world: &mut World,
    shared: &Shared,
    body: &str,
) -> Result<(Reply, Option<Uuid>), Reply> {
    let map = object(body)?;
    require(&map, &REQUIRED)?;
    let issuer_request_id = field(&map, "issuer_request_id")?;
    let underlying = field(&map, "underlying_symbol")?;
    let qty = Qty::parse(field(&map, "qty")?).map_err(|e| qty_error(&e))?;
    let network = field(&map, "network")?;
    if !is_known_network(network) {
        return Err(Reply::error(422, format!("invalid network {network}")));
    }
    let client = client_ref(&map)?;
    let ap = find_ap(world, &client).ok_or_else(|| {
        Reply::error(400, "account is not authorized to redeem")
    })?;
    if world
        .requests
        .iter()
        .any(|req| req.issuer_request_id.as_deref() == Some(issuer_request_id))
    {
        return Err(Reply::error(422, "issuer_request_id already exists"));
    }
    let available = world
        .issuer_available(underlying)
        .map_err(|_| Reply::error(400, "insufficient quantity"))?;
    if available < qty.value() {
        return Err(Reply::error(400, "insufficient quantity"));
    }
    let id = Uuid::new_v4();
    world.requests.push(TokenizationRequest {
        tokenization_request_id: id,
        issuer_request_id: Some(issuer_request_id.to_owned()),
        request_type: RequestType::Redeem,
        status: RequestStatus::Pending,
        created_at: Utc::now(),
        updated_at: None,
        underlying_symbol: underlying.to_owned(),
        token_symbol: field(&map, "token_symbol")?.to_owned(),
        qty,
        issuer: shared.cfg.issuer_name.clone(),
        network: network.to_owned(),
        wallet_address: field(&map, "wallet_address")?.to_owned(),
        tx_hash: Some(field(&map, "tx_hash")?.to_owned()),
        fees: Decimal::ZERO,
        client,
        ap,
    });
    let fate = if world.faults.take_reject_redeem() {
        RedeemFate::Reject
    } else {
        RedeemFate::Complete
    };
    world.redeem_fates.insert(id, fate);
    if world.faults.redeem_status == InitialRedeemStatus::Completed {
        world.settle_redeem(id);
    }
    let quirks = world.faults.quirks;
    let req = world
        .request(id)
        .ok_or_else(|| Reply::error(500, "redeem vanished"))?;
    let pending = (req.status == RequestStatus::Pending).then_some(id);
    Ok((Reply::ok(req.to_wire(&quirks)), pending))
}
