//! `POST /v1/accounts/{account_id}/tokenization/callback/mint`: the
//! issuer reports the mint transaction; the request becomes `completed`.

use std::sync::Arc;

use chrono::Utc;
use rocket::State;
use uuid::Uuid;

use super::{Incoming, Reply, client_ref, finish, gate, object, require, text};
use crate::fault::Endpoint;
use crate::tokenization::{RequestStatus, RequestType};
use crate::world::{MintProgress, Shared};

#[rocket::post(
    "/v1/accounts/<account_id>/tokenization/callback/mint",
    data = "<body>"
)]
pub(super) async fn mint_callback(
    shared: &State<Arc<Shared>>,
    incoming: Incoming,
    account_id: &str,
    body: String,
) -> Reply {
    let endpoint = Endpoint::MintCallback;
    if let Err(reply) =
        gate(shared, endpoint, &incoming, account_id, &body).await
    {
        return reply;
    }
    let reply = apply(shared, &body).unwrap_or_else(|reply| reply);
    finish(shared, endpoint, reply)
}

fn apply(shared: &Shared, body: &str) -> Result<Reply, Reply> {
    let map = object(body)?;
    require(&map, &["tokenization_request_id", "tx_hash"])?;
    let raw_id = text(&map, "tokenization_request_id")?.unwrap_or_default();
    let tx_hash = text(&map, "tx_hash")?.unwrap_or_default().to_owned();
    let id = Uuid::parse_str(raw_id).map_err(|_| {
        Reply::error(422, "tokenization_request_id must be a valid uuid")
    })?;
    let client = client_ref(&map)?;
    let wallet = text(&map, "wallet_address")?;
    let network = text(&map, "network")?;

    let mut world = shared.world();
    let quirks = world.faults.quirks;
    let progress = world.mint_progress.get(&id).copied();
    let req = world
        .request_mut(id)
        .ok_or_else(|| Reply::error(404, "tokenization request not found"))?;
    if req.request_type != RequestType::Mint {
        return Err(Reply::error(422, "tokenization request is not a mint"));
    }
    if req.client != client {
        return Err(Reply::error(
            422,
            "client id does not match the tokenization request",
        ));
    }
    if wallet.is_some_and(|w| !w.eq_ignore_ascii_case(&req.wallet_address))
        || network.is_some_and(|n| n != req.network)
    {
        return Err(Reply::error(
            422,
            "wallet_address or network does not match the request",
        ));
    }
    // Only a mint Alpaca confirmed as completed may be called back: a
    // callback before the confirmation or after a rejection means the
    // issuer minted without authority.
    match progress {
        Some(MintProgress::Journaled) => {}
        Some(MintProgress::Rejected | MintProgress::Refused) => {
            return Err(Reply::error(422, "tokenization request is rejected"));
        }
        Some(MintProgress::Requested) | None => {
            return Err(Reply::error(
                422,
                "tokenization request is not confirmed",
            ));
        }
    }
    if req.status == RequestStatus::Pending {
        req.status = RequestStatus::Completed;
        req.tx_hash = Some(tx_hash);
        req.updated_at = Some(Utc::now());
    }
    let answer = req.to_wire(&quirks);
    world
        .mint_callbacks
        .entry(id)
        .or_default()
        .push(serde_json::Value::Object(map));
    Ok(Reply::ok(answer))
}
