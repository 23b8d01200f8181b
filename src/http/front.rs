//! The front door: the public listener, in front of Rocket.
//!
//! Rocket 0.5 reads request headers without a deadline, keeps idle
//! connections forever and accepts any number of them (a campaign held 368
//! half-sent requests open for 150 s and starved `/health`). Its listener
//! cannot be replaced, so Rocket listens on a loopback port only and every
//! public connection comes through here, where:
//!
//! - connections are capped in total and per client address (over the cap:
//!   `503` and close, before any request is read);
//! - a request's headers must arrive within `header_read_timeout_ms`, its
//!   body within `body_read_timeout_ms` (else `408` and close);
//! - a connection with no request in flight and no traffic for
//!   `idle_timeout_ms` is closed (idle after connecting, or kept alive).
//!
//! Requests are forwarded over a pooled loopback HTTP/1.1 client. The TCP
//! peer travels in [`PEER_HEADER`], vouched for by a per-process secret in
//! [`SECRET_HEADER`]; both are stripped from what clients send, so only
//! this process can set them (see [`peer_ip`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

use crate::shutdown::ShutdownListener;

/// The client's address as the front door saw it.
pub const PEER_HEADER: &str = "x-issuance-peer";
/// Proves [`PEER_HEADER`] was set by this process.
pub const SECRET_HEADER: &str = "x-issuance-front";

/// How long connections still open at shutdown may finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `[server.connections]`: limits on client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, try_from = "RawLimits")]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_client: 64,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    header_read_timeout_ms: u64,
    body_read_timeout_ms: u64,
    idle_timeout_ms: u64,
    max_connections: usize,
    max_connections_per_client: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        let limits = ConnectionLimits::default();
        Self {
            header_read_timeout_ms: millis(limits.header_read_timeout),
            body_read_timeout_ms: millis(limits.body_read_timeout),
            idle_timeout_ms: millis(limits.idle_timeout),
            max_connections: limits.max_connections,
            max_connections_per_client: limits.max_connections_per_client,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server.connections.{field} must be greater than zero")]
pub struct ZeroLimit {
    pub field: &'static str,
}

impl TryFrom<RawLimits> for ConnectionLimits {
    type Error = ZeroLimit;

    fn try_from(raw: RawLimits) -> Result<Self, ZeroLimit> {
        let nonzero = |value: u64, field| {
            if value == 0 {
                Err(ZeroLimit { field })
            } else {
                Ok(Duration::from_millis(value))
            }
        };
        let count = |value: usize, field| {
            if value == 0 {
                Err(ZeroLimit { field })
            } else {
                Ok(value)
            }
        };
        Ok(Self {
            header_read_timeout: nonzero(
                raw.header_read_timeout_ms,
                "header_read_timeout_ms",
            )?,
            body_read_timeout: nonzero(
                raw.body_read_timeout_ms,
                "body_read_timeout_ms",
            )?,
            idle_timeout: nonzero(raw.idle_timeout_ms, "idle_timeout_ms")?,
            max_connections: count(raw.max_connections, "max_connections")?,
            max_connections_per_client: count(
                raw.max_connections_per_client,
                "max_connections_per_client",
            )?,
        })
    }
}

/// Per-process proof that [`PEER_HEADER`] comes from the front door;
/// managed in Rocket's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontSecret(String);

impl FrontSecret {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    fn value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.0)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

/// The client address of a request that came through the front door, or
/// `None` when it did not (local tests, or a forged header).
pub fn peer_ip(request: &rocket::Request<'_>) -> Option<IpAddr> {
    let secret = request.rocket().state::<FrontSecret>()?;
    let headers = request.headers();
    let vouched = headers.get_one(SECRET_HEADER)? == secret.0;
    if !vouched {
        return None;
    }
    headers
        .get_one(PEER_HEADER)?
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

struct Shared {
    limits: ConnectionLimits,
    upstream: SocketAddr,
    secret: FrontSecret,
    client: Client<HttpConnector, TimedBody>,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// Serves `listener` until `shutdown`, forwarding to Rocket at
/// `upstream`.
pub fn spawn(
    listener: TcpListener,
    upstream: SocketAddr,
    limits: ConnectionLimits,
    secret: FrontSecret,
    mut shutdown: ShutdownListener,
) -> JoinHandle<()> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let shared = Arc::new(Shared {
        limits,
        upstream,
        secret,
        client,
        open: AtomicUsize::new(0),
        per_client: Mutex::new(HashMap::new()),
    });
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.wait() => break,
                accepted = listener.accept() => accepted,
            };
            while connections.try_join_next().is_some() {}
            match accepted {
                Ok((stream, peer)) => {
                    // Admitted here, in accept order, so the caps count
                    // connections exactly as they arrived.
                    let peer = peer.ip().to_canonical();
                    let admitted = shared.admit(peer);
                    let shared = Arc::clone(&shared);
                    let shutdown = shutdown.clone();
                    connections.spawn(async move {
                        match admitted {
                            Ok(slot) => {
                                shared.serve(stream, slot, shutdown).await;
                            }
                            Err(cap) => refuse(stream, peer, cap).await,
                        }
                    });
                }
                // Out of file descriptors and the like: keep serving the
                // connections we have, and try again shortly.
                Err(error) => {
                    tracing::warn!(target: "http", %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop(listener);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.shutdown().await;
        }
    })
}

/// Releases a connection's place in the caps when it ends, however.
struct Slot {
    shared: Arc<Shared>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
        let mut per_client = self
            .shared
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_client.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_client.remove(&self.peer);
            }
        }
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}

impl Shared {
    /// A place for one more connection from `peer`, within both caps.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, &'static str> {
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mine = per_client.get(&peer).copied().unwrap_or(0);
        if mine >= self.limits.max_connections_per_client {
            return Err("per_client");
        }
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        if open >= self.limits.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err("total");
        }
        per_client.insert(peer, mine + 1);
        metrics::gauge!("http_connections_open").increment(1.0);
        Ok(Slot {
            shared: Arc::clone(self),
            peer,
        })
    }

    async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        slot: Slot,
        mut shutdown: ShutdownListener,
    ) {
        let peer = slot.peer;
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: Arc::clone(&activity),
        });
        let service = {
            let shared = Arc::clone(&self);
            let activity = Arc::clone(&activity);
            service_fn(move |request| {
                let shared = Arc::clone(&shared);
                let activity = Arc::clone(&activity);
                async move {
                    activity.in_flight.fetch_add(1, Ordering::AcqRel);
                    let response = shared.forward(request, peer).await;
                    activity.in_flight.fetch_sub(1, Ordering::AcqRel);
                    activity.touch();
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .keep_alive(true);
        let connection = builder.serve_connection(io, service).with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    let kind = if error.is_timeout() { "header" } else { "protocol" };
                    if error.is_timeout() {
                        metrics::counter!("http_connections_timed_out_total", "phase" => kind).increment(1);
                    }
                    tracing::debug!(target: "http", %peer, %error, "connection ended");
                }
            }
            () = idle(&activity, self.limits.idle_timeout) => {
                metrics::counter!("http_connections_timed_out_total", "phase" => "idle").increment(1);
                tracing::debug!(target: "http", %peer, "idle connection closed");
            }
            () = shutdown.wait() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
            }
        }
        drop(slot);
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        peer: IpAddr,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(PEER_HEADER);
        parts.headers.remove(SECRET_HEADER);
        if let Ok(value) = HeaderValue::from_str(&peer.to_string()) {
            parts
                .headers
                .insert(HeaderName::from_static(PEER_HEADER), value);
        }
        parts.headers.insert(
            HeaderName::from_static(SECRET_HEADER),
            self.secret.value(),
        );
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", hyper::http::uri::PathAndQuery::as_str);
        let Ok(uri) = format!("http://{}{path}", self.upstream).parse() else {
            return answer(StatusCode::BAD_REQUEST, "invalid request target");
        };
        parts.uri = uri;
        parts.version = hyper::Version::HTTP_11;
        let timed_out = Arc::new(AtomicBool::new(false));
        let body = TimedBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(
                self.limits.body_read_timeout,
            )),
            timed_out: Arc::clone(&timed_out),
        };
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Err(_) if timed_out.load(Ordering::Acquire) => {
                metrics::counter!("http_connections_timed_out_total", "phase" => "body").increment(1);
                let mut response = answer(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time",
                );
                response.headers_mut().insert(
                    header::CONNECTION,
                    HeaderValue::from_static("close"),
                );
                response
            }
            Err(error) => {
                tracing::warn!(target: "http", %error, "forwarding to the service failed");
                answer(StatusCode::SERVICE_UNAVAILABLE, "service unavailable")
            }
        }
    }
}

/// A JSON error answer `{"error": message}`.
fn answer(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(
        http_body_util::Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

const REFUSED_BODY: &str = "{\"error\":\"too many connections\"}";

/// Over the caps: a fixed 503, then close. The request is never read.
async fn refuse(mut stream: TcpStream, peer: IpAddr, cap: &'static str) {
    metrics::counter!("http_connections_refused_total", "cap" => cap)
        .increment(1);
    tracing::warn!(
        target: "http",
        %peer,
        cap,
        "connection refused: too many connections"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{REFUSED_BODY}",
        REFUSED_BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

/// When a connection last moved a byte, and whether a request is open.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(millis(self.started.elapsed()), Ordering::Release);
    }

    fn last(&self) -> Instant {
        self.started
            + Duration::from_millis(self.last_ms.load(Ordering::Acquire))
    }
}

/// Resolves once the connection has had no request in flight and no
/// traffic for `limit`.
async fn idle(activity: &Activity, limit: Duration) {
    loop {
        let due = activity.last() + limit;
        if Instant::now() >= due
            && activity.in_flight.load(Ordering::Acquire) == 0
        {
            return;
        }
        tokio::time::sleep_until(due.max(Instant::now() + limit / 4)).await;
    }
}

/// A socket that records its activity.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("request body not received in time")]
    TimedOut,
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// A request body that must arrive completely before a deadline.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                Poll::Ready(frame.map(|frame| frame.map_err(BodyError::from)))
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.timed_out.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(BodyError::TimedOut)))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
