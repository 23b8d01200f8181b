//! `/sim/...` control endpoints so a devnet user can drive the simulator
//! with curl. No auth: they answer loopback callers only.

use std::collections::BTreeMap;
use std::sync::Arc;

use rocket::request::{FromRequest, Outcome, Request};
use rocket::{Route, State};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::SimError;
use crate::ap::{ApId, ApSpec, ClientIdMode};
use crate::broker::Reply;
use crate::drive::{self, MintSpec};
use crate::fault::{Endpoint, Fault, FaultBoard};
use crate::world::Shared;

pub(crate) fn routes() -> Vec<Route> {
    rocket::routes![
        add_ap,
        list_aps,
        get_ap,
        link_ap,
        mint,
        requests,
        callbacks,
        inject,
        clear,
        hits,
        issuer,
        set_issuer_position,
        tokens,
    ]
}

/// Admits loopback callers only.
struct Local;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Local {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        match req.client_ip() {
            Some(ip) if ip.is_loopback() => Outcome::Success(Self),
            _ => Outcome::Error((rocket::http::Status::Forbidden, ())),
        }
    }
}

fn failure(err: &SimError) -> Reply {
    let status = match err {
        SimError::UnknownAp(_) => 404,
        SimError::IssuerUnreachable { .. }
        | SimError::IssuerRejected { .. }
        | SimError::IssuerBadResponse { .. } => 502,
        _ => 400,
    };
    Reply::json(status, json!({"error": err.to_string()}))
}

fn bad_request(message: impl std::fmt::Display) -> Reply {
    Reply::json(400, json!({"error": message.to_string()}))
}

fn ap_id(raw: &str) -> Result<ApId, Reply> {
    Uuid::parse_str(raw)
        .map(ApId::new)
        .map_err(|_| bad_request("AP id must be a uuid"))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &str) -> Result<T, Reply> {
    serde_json::from_str(body).map_err(bad_request)
}

#[derive(Deserialize)]
struct NewAp {
    email: String,
    account_number: String,
    #[serde(default)]
    positions: BTreeMap<String, Decimal>,
    #[serde(default)]
    id_mode: ClientIdMode,
}

#[rocket::post("/aps", data = "<body>")]
fn add_ap(shared: &State<Arc<Shared>>, _local: Local, body: &str) -> Reply {
    let new: NewAp = match parse(body) {
        Ok(new) => new,
        Err(reply) => return reply,
    };
    let id = shared.world().add_ap(ApSpec {
        email: new.email,
        account_number: new.account_number,
        positions: new.positions.into_iter().collect(),
        id_mode: new.id_mode,
    });
    Reply::ok(json!({"ap_id": id}))
}

#[rocket::get("/aps")]
fn list_aps(shared: &State<Arc<Shared>>, _local: Local) -> Reply {
    let world = shared.world();
    Reply::ok(json!(world.aps.values().collect::<Vec<_>>()))
}

#[rocket::get("/aps/<id>")]
fn get_ap(shared: &State<Arc<Shared>>, _local: Local, id: &str) -> Reply {
    let id = match ap_id(id) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    let world = shared.world();
    match world.aps.get(&id) {
        Some(ap) => Reply::ok(json!(ap)),
        None => failure(&SimError::UnknownAp(id)),
    }
}

#[rocket::post("/aps/<id>/link")]
async fn link_ap(
    shared: &State<Arc<Shared>>,
    _local: Local,
    id: &str,
) -> Reply {
    let id = match ap_id(id) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    match drive::link_ap(shared, id).await {
        Ok(client_id) => Reply::ok(json!({"client_id": client_id})),
        Err(err) => failure(&err),
    }
}

#[rocket::post("/aps/<id>/mint", data = "<body>")]
async fn mint(
    shared: &State<Arc<Shared>>,
    _local: Local,
    id: &str,
    body: &str,
) -> Reply {
    let id = match ap_id(id) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    let spec: MintSpec = match parse(body) {
        Ok(spec) => spec,
        Err(reply) => return reply,
    };
    match drive::request_mint(Arc::clone(shared), id, spec).await {
        Ok(outcome) => Reply::ok(json!(outcome)),
        Err(err) => failure(&err),
    }
}

#[rocket::get("/requests")]
fn requests(shared: &State<Arc<Shared>>, _local: Local) -> Reply {
    let world = shared.world();
    let rows: Vec<Value> = world
        .requests
        .iter()
        .map(|req| req.to_wire(&world.faults.quirks))
        .collect();
    Reply::ok(Value::Array(rows))
}

#[rocket::get("/requests/<id>/callbacks")]
fn callbacks(shared: &State<Arc<Shared>>, _local: Local, id: &str) -> Reply {
    let Ok(id) = Uuid::parse_str(id) else {
        return bad_request("id must be a uuid");
    };
    let world = shared.world();
    Reply::ok(json!({
        "mint_callbacks": world.mint_callbacks.get(&id).cloned().unwrap_or_default(),
        "confirm_deliveries": world.confirm_deliveries.get(&id).cloned().unwrap_or_default(),
    }))
}

#[rocket::post("/faults", data = "<body>")]
fn inject(shared: &State<Arc<Shared>>, _local: Local, body: &str) -> Reply {
    match parse::<Fault>(body) {
        Ok(fault) => {
            tracing::info!(?fault, "fault injected");
            shared.world().faults.inject(fault);
            Reply::ok(json!({"injected": true}))
        }
        Err(reply) => reply,
    }
}

#[rocket::delete("/faults")]
fn clear(shared: &State<Arc<Shared>>, _local: Local) -> Reply {
    shared.world().faults = FaultBoard::default();
    Reply::ok(json!({"cleared": true}))
}

#[rocket::get("/hits")]
fn hits(shared: &State<Arc<Shared>>, _local: Local) -> Reply {
    let world = shared.world();
    let counts: BTreeMap<Endpoint, usize> = Endpoint::ALL
        .into_iter()
        .map(|endpoint| (endpoint, world.hits(endpoint)))
        .collect();
    Reply::ok(json!(counts))
}

#[rocket::get("/issuer")]
fn issuer(shared: &State<Arc<Shared>>, _local: Local) -> Reply {
    let world = shared.world();
    Reply::ok(json!({
        "account_id": shared.cfg.issuer_account_id,
        "positions": world.issuer_positions,
    }))
}

#[derive(Deserialize)]
struct SetQty {
    qty: Decimal,
}

#[rocket::put("/issuer/positions/<symbol>", data = "<body>")]
fn set_issuer_position(
    shared: &State<Arc<Shared>>,
    _local: Local,
    symbol: &str,
    body: &str,
) -> Reply {
    match parse::<SetQty>(body) {
        Ok(set) => {
            shared
                .world()
                .issuer_positions
                .insert(symbol.to_owned(), set.qty);
            Reply::ok(json!({"symbol": symbol, "qty": set.qty}))
        }
        Err(reply) => reply,
    }
}

#[rocket::get("/tokens")]
async fn tokens(shared: &State<Arc<Shared>>, _local: Local) -> Reply {
    match drive::fetch_tokens(shared).await {
        Ok(list) => Reply::ok(json!({"tokens": list})),
        Err(err) => failure(&err),
    }
}
