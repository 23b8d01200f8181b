//! Per-request telemetry: a request id, one INFO line per request (method,
//! route template, status, latency) and Prometheus counters keyed by the
//! route template (never the raw path, which would explode cardinality).

use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::request::{FromRequest, Outcome};
use rocket::{Data, Request, Response};
use tracing::field::Empty;
use uuid::Uuid;

/// Response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";

#[derive(Debug)]
struct RequestStart {
    id: Uuid,
    at: Instant,
    /// Lives as long as the request: its duration is the request's.
    span: tracing::Span,
}

impl RequestStart {
    fn now() -> Self {
        let id = Uuid::new_v4();
        Self {
            id,
            at: Instant::now(),
            span: tracing::info_span!(
                target: "http",
                "request",
                otel.name = Empty,
                otel.kind = "server",
                request_id = %id,
                method = Empty,
                route = Empty,
                status = Empty,
            ),
        }
    }
}

/// The id of the current request, also sent back as `X-Request-Id`, and
/// its span; a guard for handlers that start work outliving the request
/// (a flow's traces continue the request's, see
/// [`crate::driver::FlowOrigins`]).
#[derive(Debug, Clone)]
pub struct RequestId {
    pub id: Uuid,
    pub span: tracing::Span,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for RequestId {
    type Error = std::convert::Infallible;

    async fn from_request(
        request: &'r Request<'_>,
    ) -> Outcome<Self, Self::Error> {
        let start = request.local_cache(RequestStart::now);
        // Named now, not only at the response: the handler may hand the
        // span's context on (which fixes the exported name), and guards
        // run after routing.
        if let Some(route) = request.route() {
            start.span.record("route", route.uri.as_str()).record(
                "otel.name",
                format!("{} {}", request.method().as_str(), route.uri),
            );
        }
        Outcome::Success(Self {
            id: start.id,
            span: start.span.clone(),
        })
    }
}

/// The fairing that logs and counts requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestTelemetry;

#[rocket::async_trait]
impl Fairing for RequestTelemetry {
    fn info(&self) -> Info {
        Info {
            name: "request telemetry",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        let start = request.local_cache(RequestStart::now);
        start.span.record("method", request.method().as_str());
    }

    async fn on_response<'r>(
        &self,
        request: &'r Request<'_>,
        response: &mut Response<'r>,
    ) {
        let start = request.local_cache(RequestStart::now);
        let latency = start.at.elapsed();
        let route = request
            .route()
            .map_or("unmatched", |route| route.uri.as_str());
        let status = response.status().code;
        let method = request.method().as_str();
        let span = &start.span;
        span.record("route", route)
            .record("status", status)
            .record("otel.name", format!("{method} {route}"));
        span.in_scope(|| {
            tracing::info!(
                target: "http",
                status,
                latency_ms = latency.as_secs_f64() * 1000.0,
                "request completed"
            );
        });
        let labels = [
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        metrics::counter!("http_requests_total", &labels).increment(1);
        metrics::histogram!("http_request_duration_seconds", &labels[..2])
            .record(latency.as_secs_f64());
        response.set_raw_header(REQUEST_ID_HEADER, start.id.to_string());
    }
}
