//! Logging, optional OTLP trace export and Prometheus metrics.
//!
//! Call [`init`] once, before the async runtime starts, and keep the
//! returned guard alive until the end of `main`: dropping it flushes the
//! span exporter.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use rocket::http::ContentType;
use rocket::{Build, Rocket, State};
use tracing::Metadata;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::layer::{Layered, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::shutdown::ShutdownListener;

pub mod aggregate;
mod config;
pub mod flow;
pub mod network;

pub use config::{
    InvalidOtlpEndpoint, InvalidOtlpHeader, LogFormat, MetricsConfig,
    OtlpEndpoint, OtlpHeaders, TelemetryConfig,
};

/// Filter used when `RUST_LOG` is not set. Rocket's own log lines are
/// off: it reports every 404 at ERROR, and the request fairing already
/// logs each request once.
pub const DEFAULT_FILTER: &str = "info,issuance_bot=info,rocket=off";

/// How often histogram buckets are compacted; the exporter has no thread
/// of its own without its HTTP listener.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "invalid RUST_LOG {value:?} ({source}); unset it for the default \
         {DEFAULT_FILTER:?}"
    )]
    Filter {
        value: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("a global tracing subscriber is already installed: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
    #[error("cannot install the Prometheus recorder: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
}

/// Flushes and stops span export when dropped.
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            // The subscriber may be exporting through this very provider.
            eprintln!("failed to flush OTLP spans: {error}");
        }
    }
}

type Filtered = Layered<EnvFilter, Registry>;
type BoxedLayer = Box<dyn Layer<Filtered> + Send + Sync>;

fn env_filter() -> Result<EnvFilter, TelemetryError> {
    // An invalid RUST_LOG is an error, not a silent fallback.
    let directives = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_FILTER.to_owned());
    EnvFilter::try_new(&directives).map_err(|source| TelemetryError::Filter {
        value: directives,
        source,
    })
}

/// Rocket's generated route code logs every failing or forwarding guard
/// again ("Request guard `AlpacaAuth` failed: ..."), at WARN, under the
/// *handler's* module path plus `::_`, which `rocket=off` does not reach.
/// The guards log each failure once themselves (`auth`), so this filter
/// drops those echoes whatever `RUST_LOG` says.
pub fn without_rocket_guard_echoes()
-> FilterFn<impl Fn(&Metadata<'_>) -> bool + Clone> {
    FilterFn::new(|metadata: &Metadata<'_>| !metadata.target().ends_with("::_"))
}

/// Installs the global subscriber: env filter, text or JSON lines on
/// stdout, and OTLP/HTTP span export when `otlp_endpoint` is set.
pub fn init(
    config: &TelemetryConfig,
) -> Result<TelemetryGuard, TelemetryError> {
    let filter = env_filter()?;
    let mut layers: Vec<BoxedLayer> = vec![match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
    }];
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint.as_str())
                .with_headers(config.otlp_headers.expose())
                .build()?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name(config.service_name.clone())
                        .build(),
                )
                .build();
            let tracer = provider.tracer(config.service_name.clone());
            layers.push(
                tracing_opentelemetry::layer().with_tracer(tracer).boxed(),
            );
            Some(provider)
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .with(without_rocket_guard_echoes())
        .try_init()?;
    if let Some(endpoint) = &config.otlp_endpoint {
        tracing::info!(
            target: "startup",
            endpoint = endpoint.as_str(),
            headers = ?config.otlp_headers,
            "exporting spans over OTLP/HTTP"
        );
    }
    Ok(TelemetryGuard { provider })
}

/// The process's Prometheus recorder, once installed.
static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the global Prometheus recorder (histograms with buckets,
/// HELP text on every metric: [`crate::observability`]). Without it,
/// `metrics` calls are no-ops (as in tests). The recorder is the
/// process's: a second service started in the same process (tests, an
/// embedding program) shares the first one's.
pub fn install_metrics_recorder() -> Result<PrometheusHandle, TelemetryError> {
    let mut installed = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle =
        crate::observability::prometheus_builder()?.install_recorder()?;
    crate::observability::describe_metrics();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// Keeps the recorder's histograms compact until shutdown.
pub fn spawn_metrics_upkeep(
    handle: PrometheusHandle,
    mut shutdown: ShutdownListener,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                _ = ticker.tick() => handle.run_upkeep(),
            }
        }
    })
}

#[rocket::get("/metrics")]
fn render_metrics(handle: &State<PrometheusHandle>) -> (ContentType, String) {
    let text = ContentType::new("text", "plain")
        .with_params([("version", "0.0.4"), ("charset", "utf-8")]);
    (text, handle.render())
}

/// The separate metrics listener: `GET /metrics` only, no auth, meant for
/// a private interface.
pub fn metrics_rocket(
    bind: SocketAddr,
    handle: PrometheusHandle,
) -> Rocket<Build> {
    rocket::custom(crate::http::rocket_config(bind))
        .manage(handle)
        .mount("/", rocket::routes![render_metrics])
        .register("/", crate::http::catchers::catchers())
}

#[cfg(test)]
mod tests {
    use rocket::http::Status;
    use rocket::local::asynchronous::Client;

    use super::*;

    #[rocket::async_test]
    async fn metrics_endpoint_renders_prometheus_text() {
        // A local recorder: installing the global one would leak into
        // other tests.
        let recorder = crate::observability::prometheus_builder()
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("http_requests_total", "route" => "/health")
                .increment(3);
        });
        let rocket = metrics_rocket("127.0.0.1:0".parse().unwrap(), handle);
        let client = Client::tracked(rocket).await.unwrap();
        let response = client.get("/metrics").dispatch().await;
        assert_eq!(response.status(), Status::Ok);
        let body = response.into_string().await.unwrap();
        assert!(
            body.contains("http_requests_total{route=\"/health\"} 3"),
            "{body}"
        );
    }

    #[test]
    fn default_filter_parses() {
        assert!(EnvFilter::try_new(DEFAULT_FILTER).is_ok());
    }
}
