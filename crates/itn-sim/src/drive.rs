//! Alpaca -> issuer: account linking, mint request and mint confirmation,
//! with the paths and field names of the configured wire version.

use std::sync::Arc;

use chrono::Utc;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::SimError;
use crate::ap::{ApId, ClientIdMode, Link};
use crate::config::WireVersion;
use crate::fault::Endpoint;
use crate::recording::RecordedRequest;
use crate::signing::SignedBody;
use crate::tokenization::{
    ClientRef, Qty, RequestStatus, RequestType, TokenizationRequest,
    is_known_network,
};
use crate::world::{ConfirmDelivery, DeliveryOutcome, MintProgress, Shared};

/// What an AP asks Alpaca to mint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintSpec {
    pub underlying: String,
    pub token: String,
    pub network: String,
    pub qty: Decimal,
    pub wallet: String,
}

/// The issuer's answer to the mint request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MintOutcome {
    pub tokenization_request_id: Uuid,
    pub issuer_response_status: u16,
    /// The issuer's body as JSON (a JSON string if it was not JSON).
    pub issuer_body: Value,
    pub issuer_request_id: Option<String>,
}

enum Sent {
    Answered { status: u16, body: String },
    Dropped,
    Failed(String),
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

fn as_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| json!(body))
}

/// POSTs `body` to the issuer with Alpaca's credentials, applying
/// latency and drop faults for `endpoint` and recording the call.
async fn send(
    shared: &Shared,
    endpoint: Endpoint,
    path: &str,
    body: &Value,
) -> Result<Sent, SimError> {
    call(shared, endpoint, path, Some(body)).await
}

/// One call to the issuer: POST with a JSON body, or a bodyless GET.
async fn call(
    shared: &Shared,
    endpoint: Endpoint,
    path: &str,
    body: Option<&Value>,
) -> Result<Sent, SimError> {
    let base = shared.issuer_url().ok_or(SimError::NoIssuerUrl)?;
    // Concatenate rather than `Url::join` so a base path prefix survives.
    let raw = format!("{}{path}", base.as_str().trim_end_matches('/'));
    let url =
        reqwest::Url::parse(&raw).map_err(|err| SimError::BadIssuerUrl {
            base: base.to_string(),
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
    let latency = shared.world().faults.take_latency(endpoint);
    if let Some(delay) = latency {
        tokio::time::sleep(delay).await;
    }
    let (method, text) = match body {
        Some(body) => ("POST", body.to_string()),
        None => ("GET", String::new()),
    };
    let content_type = "application/json";
    let mut headers = Vec::new();
    if body.is_some() {
        headers.push(("Content-Type".to_owned(), content_type.to_owned()));
    }
    match &shared.cfg.issuer_signing {
        // Signed afresh on every send: a retry gets a new nonce.
        Some(signing) => headers.extend(signing.sign(
            method,
            &url,
            body.map(|_| SignedBody {
                content_type,
                bytes: text.as_bytes(),
            }),
        )),
        None => headers
            .push(("X-API-KEY".to_owned(), shared.cfg.issuer_api_key.clone())),
    }
    shared.world().record(
        endpoint,
        RecordedRequest {
            method: method.into(),
            path: url.path().to_owned(),
            headers: headers.clone(),
            body: text.clone(),
            at: Utc::now(),
        },
    );
    let mut request = if body.is_some() {
        shared.http.post(url).body(text)
    } else {
        shared.http.get(url)
    };
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let result = request.send().await;
    let response = match result {
        Ok(response) => response,
        Err(err) => return Ok(Sent::Failed(err.to_string())),
    };
    let status = response.status().as_u16();
    let body = match response.text().await {
        Ok(body) => body,
        Err(err) => return Ok(Sent::Failed(err.to_string())),
    };
    tracing::info!(?endpoint, status, %body, "issuer answered");
    if shared.world().faults.take_drop(endpoint) {
        return Ok(Sent::Dropped);
    }
    Ok(Sent::Answered { status, body })
}

fn unreachable(endpoint: Endpoint, sent: Sent) -> SimError {
    let reason = match sent {
        Sent::Failed(reason) => reason,
        Sent::Dropped => "answer dropped by fault".into(),
        Sent::Answered { status, .. } => format!("answered {status}"),
    };
    SimError::IssuerUnreachable { endpoint, reason }
}

/// One row of the issuer's tokenized-asset list (itn-wire.md §4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedToken {
    pub underlying: String,
    pub token: String,
    pub networks: Vec<String>,
}

/// Reads the issuer's token list as Alpaca does before a mint.
pub(crate) async fn fetch_tokens(
    shared: &Shared,
) -> Result<Vec<ListedToken>, SimError> {
    let path = shared.cfg.issuer_paths.tokens(shared.cfg.wire).to_owned();
    let endpoint = Endpoint::IssuerTokens;
    match call(shared, endpoint, &path, None).await? {
        Sent::Answered { status, body } if is_success(status) => {
            #[derive(Deserialize)]
            struct Tokens {
                tokens: Vec<ListedToken>,
            }
            serde_json::from_str::<Tokens>(&body)
                .map(|list| list.tokens)
                .map_err(|_| SimError::IssuerBadResponse {
                    endpoint,
                    field: "tokens",
                    body,
                })
        }
        Sent::Answered { status, body } => Err(SimError::IssuerRejected {
            endpoint,
            status,
            body,
        }),
        other => Err(unreachable(endpoint, other)),
    }
}

pub(crate) async fn link_ap(
    shared: &Shared,
    ap: ApId,
) -> Result<String, SimError> {
    let (email, account) = {
        let world = shared.world();
        let entry = world.aps.get(&ap).ok_or(SimError::UnknownAp(ap))?;
        (entry.email.clone(), entry.account_number.clone())
    };
    let wire = shared.cfg.wire;
    let (body, field) = match wire {
        WireVersion::Oldest | WireVersion::Middle => {
            (json!({"email": email, "account": account}), "client_id")
        }
        WireVersion::Current => (
            json!({"email": email, "client_account_number": account}),
            "client_external_account_id",
        ),
    };
    let path = shared.cfg.issuer_paths.connect(wire).to_owned();
    let endpoint = Endpoint::IssuerConnect;
    match send(shared, endpoint, &path, &body).await? {
        Sent::Answered { status, body } if is_success(status) => {
            let client_id = as_json(&body)
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(SimError::IssuerBadResponse {
                    endpoint,
                    field,
                    body,
                })?;
            let mut world = shared.world();
            let entry =
                world.aps.get_mut(&ap).ok_or(SimError::UnknownAp(ap))?;
            entry.link = Link::Linked {
                client_id: client_id.clone(),
            };
            Ok(client_id)
        }
        Sent::Answered { status, body } => Err(SimError::IssuerRejected {
            endpoint,
            status,
            body,
        }),
        other => Err(unreachable(endpoint, other)),
    }
}

/// Inserts the AP id under the field name of `wire`.
fn put_client(
    body: &mut serde_json::Map<String, Value>,
    wire: WireVersion,
    client: &ClientRef,
) {
    match (wire, client) {
        (
            WireVersion::Oldest | WireVersion::Middle,
            ClientRef::External(id),
        ) => {
            body.insert("client_id".into(), json!(id));
        }
        (WireVersion::Oldest | WireVersion::Middle, ClientRef::Account(id)) => {
            body.insert("client_id".into(), json!(id));
        }
        (WireVersion::Current, ClientRef::External(id)) => {
            body.insert("client_external_account_id".into(), json!(id));
        }
        (WireVersion::Current, ClientRef::Account(id)) => {
            body.insert("client_account_id".into(), json!(id));
        }
    }
}

fn id_field(wire: WireVersion) -> &'static str {
    match wire {
        WireVersion::Middle => "id",
        WireVersion::Oldest | WireVersion::Current => "tokenization_request_id",
    }
}

fn mint_body(
    wire: WireVersion,
    id: Uuid,
    spec: &MintSpec,
    qty: Qty,
    client: &ClientRef,
) -> Value {
    let mut body = serde_json::Map::new();
    body.insert(id_field(wire).into(), json!(id));
    body.insert("qty".into(), json!(qty.to_string()));
    body.insert("underlying_symbol".into(), json!(spec.underlying));
    body.insert("token_symbol".into(), json!(spec.token));
    body.insert("network".into(), json!(spec.network));
    put_client(&mut body, wire, client);
    body.insert("wallet_address".into(), json!(spec.wallet));
    Value::Object(body)
}

fn confirm_body(
    wire: WireVersion,
    id: Uuid,
    issuer_request_id: &str,
    client: &ClientRef,
    status: RequestStatus,
) -> Value {
    let mut body = serde_json::Map::new();
    body.insert(id_field(wire).into(), json!(id));
    body.insert("issuer_request_id".into(), json!(issuer_request_id));
    if wire == WireVersion::Current {
        put_client(&mut body, wire, client);
    }
    body.insert("status".into(), json!(status.as_str()));
    Value::Object(body)
}

/// Checks the AP like Alpaca does and records a pending mint request.
fn open_mint(
    shared: &Shared,
    ap: ApId,
    spec: &MintSpec,
    qty: Qty,
) -> Result<(Uuid, ClientRef, u32), SimError> {
    let mut world = shared.world();
    let entry = world.aps.get(&ap).ok_or(SimError::UnknownAp(ap))?;
    let client = match entry.id_mode {
        ClientIdMode::External => ClientRef::External(
            entry.linked_id().ok_or(SimError::NotLinked(ap))?.to_owned(),
        ),
        ClientIdMode::Affiliated => ClientRef::Account(ap.uuid()),
    };
    let held = entry.position(&spec.underlying);
    if held < qty.value() {
        return Err(SimError::InsufficientPosition {
            ap,
            symbol: spec.underlying.clone(),
            held,
            requested: qty.value(),
        });
    }
    let id = Uuid::new_v4();
    world.requests.push(TokenizationRequest {
        tokenization_request_id: id,
        issuer_request_id: None,
        request_type: RequestType::Mint,
        status: RequestStatus::Pending,
        created_at: Utc::now(),
        updated_at: None,
        underlying_symbol: spec.underlying.clone(),
        token_symbol: spec.token.clone(),
        qty,
        issuer: shared.cfg.issuer_name.clone(),
        network: spec.network.clone(),
        wallet_address: spec.wallet.clone(),
        tx_hash: None,
        fees: Decimal::ZERO,
        client: client.clone(),
        ap,
    });
    world.mint_progress.insert(id, MintProgress::Requested);
    if world.faults.take_reject_mint() {
        world.doomed_mints.insert(id);
    }
    let duplicates = world.faults.take_duplicate_mints();
    Ok((id, client, duplicates))
}

pub(crate) async fn request_mint(
    shared: Arc<Shared>,
    ap: ApId,
    spec: MintSpec,
) -> Result<MintOutcome, SimError> {
    let qty = Qty::new(spec.qty)?;
    if !is_known_network(&spec.network) {
        return Err(SimError::UnknownNetwork(spec.network));
    }
    if shared.cfg.check_token_list {
        let listed = fetch_tokens(&shared).await?.into_iter().any(|row| {
            row.underlying == spec.underlying
                && row.token == spec.token
                && row.networks.contains(&spec.network)
        });
        if !listed {
            return Err(SimError::TokenNotListed {
                underlying: spec.underlying,
                token: spec.token,
                network: spec.network,
            });
        }
    }
    let (id, client, duplicates) = open_mint(&shared, ap, &spec, qty)?;
    let wire = shared.cfg.wire;
    let body = mint_body(wire, id, &spec, qty, &client);
    let path = shared.cfg.issuer_paths.mint(wire).to_owned();
    let endpoint = Endpoint::IssuerMint;

    let mut sent = send(&shared, endpoint, &path, &body).await;
    let mut attempts = 1;
    // A lost answer is re-sent unchanged, as a retrying Alpaca would.
    while matches!(sent, Ok(Sent::Dropped))
        && attempts < shared.cfg.confirm_max_attempts
    {
        attempts += 1;
        sent = send(&shared, endpoint, &path, &body).await;
    }
    for _ in 0..duplicates {
        // Duplicate deliveries: answers are deliberately ignored.
        let _ = send(&shared, endpoint, &path, &body).await;
    }
    let sent = match sent {
        Ok(sent) => sent,
        Err(err) => {
            shared.world().reject_mint(id, MintProgress::Refused);
            return Err(err);
        }
    };
    let Sent::Answered { status, body } = sent else {
        shared.world().reject_mint(id, MintProgress::Refused);
        return Err(unreachable(endpoint, sent));
    };
    let issuer_body = as_json(&body);
    let issuer_request_id = is_success(status)
        .then(|| issuer_body.get("issuer_request_id"))
        .flatten()
        .and_then(Value::as_str)
        .map(str::to_owned);
    match &issuer_request_id {
        Some(issuer_id) => {
            if let Some(req) = shared.world().request_mut(id) {
                req.issuer_request_id = Some(issuer_id.clone());
            }
            tokio::spawn(confirm(
                Arc::clone(&shared),
                id,
                issuer_id.clone(),
                client,
            ));
        }
        None => shared.world().reject_mint(id, MintProgress::Refused),
    }
    Ok(MintOutcome {
        tokenization_request_id: id,
        issuer_response_status: status,
        issuer_body,
        issuer_request_id,
    })
}

/// Mint steps 5-6: journal after `journal_delay`, then deliver the
/// confirmation at least once (retry on 5xx, timeout, connection error;
/// stop on 2xx/4xx) with an identical body every time.
async fn confirm(
    shared: Arc<Shared>,
    id: Uuid,
    issuer_request_id: String,
    client: ClientRef,
) {
    tokio::time::sleep(shared.cfg.journal_delay).await;
    let (status, duplicates) = {
        let mut world = shared.world();
        let status = if world.doomed_mints.remove(&id) {
            world.reject_mint(id, MintProgress::Rejected);
            RequestStatus::Rejected
        } else {
            match world.journal_mint(id) {
                Ok(()) => RequestStatus::Completed,
                Err(error) => {
                    tracing::warn!(%id, %error, "journal failed");
                    world.reject_mint(id, MintProgress::Rejected);
                    RequestStatus::Rejected
                }
            }
        };
        (status, world.faults.take_duplicate_confirms())
    };
    let wire = shared.cfg.wire;
    let body = confirm_body(wire, id, &issuer_request_id, &client, status);
    let path = shared.cfg.issuer_paths.confirm(wire).to_owned();
    let max = shared.cfg.confirm_max_attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = deliver(&shared, &path, &body).await;
        let retry = match outcome {
            DeliveryOutcome::Answered { status } => status >= 500,
            DeliveryOutcome::Dropped | DeliveryOutcome::Failed { .. } => true,
        };
        push_delivery(&shared, id, attempt, status, false, outcome);
        if !retry || attempt >= max {
            break;
        }
        tokio::time::sleep(shared.cfg.confirm_retry_delay).await;
    }
    for _ in 0..duplicates {
        attempt += 1;
        let outcome = deliver(&shared, &path, &body).await;
        push_delivery(&shared, id, attempt, status, true, outcome);
    }
}

async fn deliver(shared: &Shared, path: &str, body: &Value) -> DeliveryOutcome {
    match send(shared, Endpoint::IssuerConfirm, path, body).await {
        Ok(Sent::Answered { status, .. }) => {
            DeliveryOutcome::Answered { status }
        }
        Ok(Sent::Dropped) => DeliveryOutcome::Dropped,
        Ok(Sent::Failed(reason)) => DeliveryOutcome::Failed { reason },
        Err(err) => DeliveryOutcome::Failed {
            reason: err.to_string(),
        },
    }
}

fn push_delivery(
    shared: &Shared,
    id: Uuid,
    attempt: u32,
    status: RequestStatus,
    duplicate: bool,
    outcome: DeliveryOutcome,
) {
    shared
        .world()
        .confirm_deliveries
        .entry(id)
        .or_default()
        .push(ConfirmDelivery {
            attempt,
            status,
            duplicate,
            outcome,
        });
}
