//! The HTTP side: accepting connections, dropping them while unreachable,
//! and forwarding (possibly rewritten) JSON-RPC calls upstream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::control;
use crate::faults::{Applied, Fault, Faults};
use crate::rpc;

use crate::response::{Body, empty, json_response, text};

/// How long `shutdown` lets open connections finish their current call.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Shared {
    pub faults: Faults,
    /// The upstream URL exactly as configured.
    pub upstream: String,
    pub client: reqwest::Client,
    /// Whether `/_proxy/...` paths are the control API.
    pub control: bool,
}

/// Returned by the service to make hyper close the connection without
/// writing an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped: the proxy is unreachable")]
struct Dropped;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // With the control API on the same port, a connection
                    // may carry control calls: drop per request instead.
                    if !shared.control && shared.faults.is_unreachable() {
                        reset(&stream);
                        drop(stream);
                        continue;
                    }
                    connections.spawn(serve_connection(
                        stream,
                        Arc::clone(&shared),
                        shutdown.clone(),
                    ));
                }
                Err(error) => {
                    tracing::warn!(
                        target: "rpc_fault_proxy",
                        %error,
                        "accept failed"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            target: "rpc_fault_proxy",
            left = connections.len(),
            "aborting connections still open after shutdown"
        );
    }
    // Dropping the set aborts whatever is left.
}

/// Resolves once the proxy stops (or its handle is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn reset(stream: &TcpStream) {
    // SO_LINGER 0: the close sends a TCP reset, like a dead node would.
    if let Err(error) = stream.set_zero_linger() {
        tracing::debug!(target: "rpc_fault_proxy", %error, "SO_LINGER failed");
    }
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let drop_with_reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(ResettableStream {
        stream,
        reset: Arc::clone(&drop_with_reset),
    });
    let service = service_fn(move |request| {
        handle(Arc::clone(&shared), Arc::clone(&drop_with_reset), request)
    });
    let connection = http1::Builder::new().serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => log_connection_end(result),
        () = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            log_connection_end(connection.await);
        }
    }
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        tracing::trace!(target: "rpc_fault_proxy", %error, "connection ended");
    }
}

async fn handle(
    shared: Arc<Shared>,
    drop_with_reset: Arc<AtomicBool>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let path = request.uri().path();
    if shared.control
        && (path == control::PREFIX
            || path.starts_with(&format!("{}/", control::PREFIX)))
    {
        return Ok(control::handle(&shared.faults, request).await);
    }
    let dropped = || {
        tracing::debug!(
            target: "rpc_fault_proxy",
            "unreachable: closing the connection without an answer"
        );
        drop_with_reset.store(true, Ordering::SeqCst);
        Err(Dropped)
    };
    if shared.faults.is_unreachable() {
        return dropped();
    }
    tokio::select! {
        response = proxy(&shared, request) => Ok(response),
        () = shared.faults.until_unreachable() => dropped(),
    }
}

async fn proxy(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("reading the request body: {error}"),
            );
        }
    };
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(calls)) => {
            proxy_calls(shared, &parts, calls, None).await
        }
        Ok(call @ Value::Object(_)) => {
            proxy_calls(shared, &parts, vec![call], Some(body)).await
        }
        _ => match forward(shared, &parts, body).await {
            Ok(upstream) => upstream.into_response(),
            Err(error) => bad_gateway(&error),
        },
    }
}

/// What happens to one call of a (possibly one-element) batch.
enum Plan {
    /// Answered by the proxy (`None`: a notification, no answer).
    Local(Option<Value>),
    Forward {
        call: Value,
        /// eth_blockNumber under `LagBlocks(n)`: subtract n from the answer.
        lag_answer: Option<u64>,
        /// `LagBlocks(n)` on "latest" params: rewrite before forwarding.
        lag_params: Option<u64>,
    },
}

/// `original` is the raw body of a single (non-batch) call, forwarded as
/// is when nothing needs rewriting; `None` for a batch.
async fn proxy_calls(
    shared: &Shared,
    parts: &Parts,
    calls: Vec<Value>,
    original: Option<Bytes>,
) -> Response<Body> {
    let mut plans = Vec::with_capacity(calls.len());
    let mut hangs = Vec::new();
    let mut http_503 = false;
    for call in calls {
        let applied = rpc::method(&call).and_then(|method| {
            let params = call.get("params");
            let lag_ok = method == rpc::BLOCK_NUMBER
                || params.is_some_and(rpc::contains_latest);
            let applied = shared.faults.apply(method, params, lag_ok)?;
            tracing::debug!(
                target: "rpc_fault_proxy",
                method,
                rule = %applied.id,
                fault = ?applied.fault,
                "fault applied"
            );
            Some(applied)
        });
        let forward = |lag_answer, lag_params| Plan::Forward {
            call: call.clone(),
            lag_answer,
            lag_params,
        };
        let plan = match applied {
            None => forward(None, None),
            Some(Applied { id, fault }) => match fault {
                Fault::NullResult => {
                    Plan::Local(rpc::answer(&call, "result", Value::Null))
                }
                Fault::Error { code, message } => Plan::Local(rpc::answer(
                    &call,
                    "error",
                    json!({ "code": code, "message": message }),
                )),
                Fault::Http503 => {
                    http_503 = true;
                    forward(None, None)
                }
                Fault::Hang => {
                    hangs.push(id);
                    forward(None, None)
                }
                Fault::LagBlocks(n)
                    if rpc::method(&call) == Some(rpc::BLOCK_NUMBER) =>
                {
                    forward(Some(n), None)
                }
                Fault::LagBlocks(n) => forward(None, Some(n)),
            },
        };
        plans.push(plan);
    }

    for id in hangs {
        shared.faults.released(id).await;
        tracing::debug!(
            target: "rpc_fault_proxy",
            rule = %id,
            "hung call released, forwarding"
        );
    }
    if http_503 {
        return empty(StatusCode::SERVICE_UNAVAILABLE);
    }
    match execute(shared, parts, plans, original).await {
        Ok(response) => response,
        Err(error) => bad_gateway(&error),
    }
}

async fn execute(
    shared: &Shared,
    parts: &Parts,
    mut plans: Vec<Plan>,
    original: Option<Bytes>,
) -> Result<Response<Body>, reqwest::Error> {
    let needs_head = plans.iter().any(|plan| {
        matches!(
            plan,
            Plan::Forward {
                lag_params: Some(_),
                ..
            }
        )
    });
    if needs_head {
        let head = block_number(shared).await?;
        for plan in &mut plans {
            if let Plan::Forward {
                call,
                lag_params: Some(n),
                ..
            } = plan
            {
                let block = format!("{:#x}", head.saturating_sub(*n));
                if let Some(params) = call.get_mut("params") {
                    rpc::replace_latest(params, &block);
                }
            }
        }
    }

    let is_batch = original.is_none();
    let forwarded: Vec<Value> = plans
        .iter()
        .filter_map(|plan| match plan {
            Plan::Forward { call, .. } => Some(call.clone()),
            Plan::Local(_) => None,
        })
        .collect();
    if forwarded.is_empty() {
        let answers: Vec<Value> = plans
            .into_iter()
            .filter_map(|plan| match plan {
                Plan::Local(answer) => answer,
                Plan::Forward { .. } => None,
            })
            .collect();
        return Ok(if is_batch {
            json_response(&Value::Array(answers))
        } else {
            answers
                .first()
                .map_or_else(|| empty(StatusCode::OK), json_response)
        });
    }

    let untouched = plans.iter().all(|plan| {
        matches!(
            plan,
            Plan::Forward {
                lag_answer: None,
                lag_params: None,
                ..
            }
        )
    });
    let body = match (original, untouched) {
        (Some(raw), true) => raw,
        (Some(_), false) => Bytes::from(
            forwarded.into_iter().next().unwrap_or_default().to_string(),
        ),
        (None, _) => Bytes::from(Value::Array(forwarded).to_string()),
    };
    let upstream = forward(shared, parts, body).await?;
    if untouched && !is_batch {
        return Ok(upstream.into_response());
    }
    let Some(answers) = upstream.json() else {
        // An HTTP or parse error upstream: pass it through unchanged.
        return Ok(upstream.into_response());
    };
    let merged = if is_batch {
        let Value::Array(answers) = answers else {
            return Ok(upstream.into_response());
        };
        Value::Array(rpc::merge(
            plans.into_iter().map(rpc::Slot::from).collect(),
            answers,
        ))
    } else {
        let mut answer = answers;
        if let Some(Plan::Forward {
            lag_answer: Some(n),
            ..
        }) = plans.first()
        {
            rpc::lag_block_number(&mut answer, *n);
        }
        answer
    };
    Ok(upstream.with_body(Bytes::from(merged.to_string())))
}

impl From<Plan> for rpc::Slot {
    fn from(plan: Plan) -> Self {
        match plan {
            Plan::Local(answer) => Self::Local(answer),
            Plan::Forward {
                call, lag_answer, ..
            } => Self::Forwarded {
                id: call.get("id").cloned(),
                lag_answer,
            },
        }
    }
}

/// The upstream head, asked directly (not counted as a call).
async fn block_number(shared: &Shared) -> Result<u64, reqwest::Error> {
    let answer: Value = shared
        .client
        .post(&shared.upstream)
        .json(&json!({
            "jsonrpc": "2.0",
            "id": "rpc-fault-proxy-head",
            "method": rpc::BLOCK_NUMBER,
            "params": [],
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer
        .get("result")
        .and_then(Value::as_str)
        .and_then(rpc::parse_quantity)
        .unwrap_or_else(|| {
            tracing::warn!(
                target: "rpc_fault_proxy",
                %answer,
                "upstream eth_blockNumber unusable; lagging from 0"
            );
            0
        }))
}

struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Upstream {
    fn json(&self) -> Option<Value> {
        if !self.status.is_success() {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }

    fn with_body(self, body: Bytes) -> Response<Body> {
        Self { body, ..self }.into_response()
    }

    fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        for (name, value) in &self.headers {
            if !is_hop_by_hop(name) {
                response.headers_mut().append(name, value.clone());
            }
        }
        response
    }
}

fn is_hop_by_hop(name: &header::HeaderName) -> bool {
    [
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::HOST,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

async fn forward(
    shared: &Shared,
    parts: &Parts,
    body: Bytes,
) -> Result<Upstream, reqwest::Error> {
    let url = match parts
        .uri
        .path_and_query()
        .map(hyper::http::uri::PathAndQuery::as_str)
    {
        None | Some("/") => shared.upstream.clone(),
        Some(path) => {
            format!("{}{path}", shared.upstream.trim_end_matches('/'))
        }
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            headers.append(name, value.clone());
        }
    }
    let response = shared
        .client
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok(Upstream {
        status,
        headers,
        body,
    })
}

fn bad_gateway(error: &reqwest::Error) -> Response<Body> {
    tracing::debug!(target: "rpc_fault_proxy", %error, "upstream failed");
    text(
        StatusCode::BAD_GATEWAY,
        &format!("upstream failed: {error}"),
    )
}

/// A TCP stream that, once flagged, is closed with a reset (SO_LINGER 0)
/// instead of an orderly FIN when hyper drops it.
struct ResettableStream {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            reset(&self.stream);
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
