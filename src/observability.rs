//! What the service measures, in one place: every metric's HELP text,
//! the histogram buckets, the series registered at zero when the
//! recorder is installed, the flows' end-to-end durations and the
//! periodic gauges (stuck flows, readiness, the wallet's gas balance and
//! the chain head). The metric names are the contract with
//! `deploy/grafana/issuance-bot.json` and `deploy/prometheus/alerts.yml`
//! (tests/e2e/metrics_names.rs checks that every name they use is
//! exported with HELP text).

use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use sqlx::SqlitePool;
use std::sync::Arc;
use tokio::task::JoinHandle;

use crate::chain::ChainClient;
use crate::clock::Clock;
use crate::http::health::Readiness;
use crate::redemption::Redemption;
use crate::shutdown::ShutdownListener;
use crate::tokenized_asset::Network;

/// Request latency buckets, in seconds: the API answers from SQLite, so
/// anything past a second is already a problem worth seeing.
pub const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// End-to-end flow buckets, in seconds: seconds on a fast chain, minutes
/// when Alpaca's journal is slow, up to the redemption poll timeout (1 h)
/// and beyond for flows that waited on an operator.
pub const FLOW_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0, 21600.0,
];

/// How often the stuck-flow and readiness gauges are recomputed.
pub const FLOW_GAUGE_INTERVAL: Duration = Duration::from_secs(15);

/// How often the wallet balance and chain head are read.
pub const CHAIN_GAUGE_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric the service exports, with its HELP text. A metric
/// emitted anywhere must be listed here (the describe test renders each).
const CATALOG: &[(&str, Kind, &str)] = &[
    (
        "http_requests_total",
        Kind::Counter,
        "HTTP responses by method, route template (or unmatched) and status.",
    ),
    (
        "http_request_duration_seconds",
        Kind::Histogram,
        "HTTP request latency in seconds by method and route template.",
    ),
    (
        "http_connections_open",
        Kind::Gauge,
        "Client connections currently open on the public listener.",
    ),
    (
        "http_connections_refused_total",
        Kind::Counter,
        "Connections answered 503 and closed because a cap was reached \
         (cap = total or per_client).",
    ),
    (
        "http_connections_timed_out_total",
        Kind::Counter,
        "Connections closed for slowness (phase = header, body or idle).",
    ),
    (
        "readiness_check_up",
        Kind::Gauge,
        "1 if the readiness check passed at its last run, 0 if it failed \
         (run by GET /ready and every 15 s).",
    ),
    (
        "chain_rpc_errors_total",
        Kind::Counter,
        "Failed JSON-RPC calls by method (client, monitor and gauges).",
    ),
    (
        "chain_foreign_nonce_total",
        Kind::Counter,
        "Nonces of the issuer wallet taken by a transaction the service did \
         not sign: someone else holds the key.",
    ),
    (
        "chain_unseen_landing_stuck_total",
        Kind::Counter,
        "Transactions whose nonce was consumed with no visible landing for \
         chain.unseen_landing_alert_secs, by flow.",
    ),
    (
        "chain_wallet_balance_wei",
        Kind::Gauge,
        "Native (gas) balance of the issuer wallet in wei, by network.",
    ),
    (
        "chain_head_block",
        Kind::Gauge,
        "Latest block number reported by the chain RPC, by network.",
    ),
    (
        "mints_finished_total",
        Kind::Counter,
        "Mints that reached a terminal state, by outcome.",
    ),
    (
        "mints_open",
        Kind::Gauge,
        "Unfinished mints the driver had work for at its last pass, by \
         network.",
    ),
    (
        "mint_step_errors_total",
        Kind::Counter,
        "Failed mint driver steps, by network and whether they are \
         retried soon.",
    ),
    (
        "mint_step_timeouts_total",
        Kind::Counter,
        "Mint driver steps cancelled after chain.step_timeout_ms.",
    ),
    (
        "mint_duration_seconds",
        Kind::Histogram,
        "Seconds from Alpaca's journal confirmation to the mint callback \
         delivered, for completed mints.",
    ),
    (
        "redemptions_finished_total",
        Kind::Counter,
        "Redemptions that reached a terminal state, by outcome.",
    ),
    (
        "redemptions_open",
        Kind::Gauge,
        "Non-terminal redemptions at the driver's last pass, by network.",
    ),
    (
        "redemption_step_errors_total",
        Kind::Counter,
        "Failed redemption driver steps, by network and whether they are \
         retried soon.",
    ),
    (
        "redemption_step_timeouts_total",
        Kind::Counter,
        "Redemption driver steps cancelled after chain.step_timeout_ms.",
    ),
    (
        "redemption_duration_seconds",
        Kind::Histogram,
        "Seconds from the transfer's detection to the burn completed, for \
         completed redemptions.",
    ),
    (
        "redemption_monitor_failures_total",
        Kind::Counter,
        "Failed transfer-monitor passes.",
    ),
    (
        "redemption_monitor_scanned_block",
        Kind::Gauge,
        "Block every enabled vault has been scanned up to (head minus \
         confirmations) after the last successful monitor pass.",
    ),
    (
        "redemption_unattributed_transfers_total",
        Kind::Counter,
        "Transfers to the issuer wallet from senders no account owns.",
    ),
    (
        "alpaca_errors_total",
        Kind::Counter,
        "Alpaca calls that failed after the client's retries, by operation.",
    ),
    (
        "receipt_inventory_mismatches_total",
        Kind::Counter,
        "Receipt balances corrected by reconciliation with the chain.",
    ),
    (
        "aggregate_impossible_events_total",
        Kind::Counter,
        "Stored events an aggregate's state cannot follow (kept in the \
         log, ignored by the state), by aggregate.",
    ),
    (
        "flows_stuck",
        Kind::Gauge,
        "Mints and redemptions needing attention, by flow and reason \
         (overdue = unfinished for longer than metrics.stuck_after_secs; \
         failed = stopped for an operator).",
    ),
];

/// A label name and every value it takes.
type LabelValues = (&'static str, &'static [&'static str]);

/// Counters that can only appear on a rare event, registered at zero
/// with every label value they take: a series that is born at its first
/// event makes `increase()` miss that event, and an absent series makes
/// an alert silently never fire.
const ZERO_COUNTERS: &[(&str, Option<LabelValues>)] = &[
    (
        "mints_finished_total",
        Some((
            "outcome",
            &["completed", "failed", "journal_rejected", "closed"],
        )),
    ),
    (
        "redemptions_finished_total",
        Some((
            "outcome",
            &[
                "completed",
                "alpaca_rejected",
                "poll_timed_out",
                "below_minimum_quantity",
                "unrepresentable_quantity",
                "burn_failed",
                "closed",
                "returned",
            ],
        )),
    ),
    (
        "alpaca_errors_total",
        Some(("operation", &["mint_callback", "redeem"])),
    ),
    ("receipt_inventory_mismatches_total", None),
    (
        "aggregate_impossible_events_total",
        Some(("aggregate", &["mint", "redemption"])),
    ),
    (
        "http_connections_refused_total",
        Some(("cap", &["total", "per_client"])),
    ),
    (
        "http_connections_timed_out_total",
        Some(("phase", &["header", "body", "idle"])),
    ),
];

/// As [`ZERO_COUNTERS`], for the counters of one chain: each also
/// carries its `network` label, so they are registered per chain at
/// startup ([`register_chain_counters`]).
const ZERO_CHAIN_COUNTERS: &[(&str, Option<LabelValues>)] = &[
    // Each chain has its own mint and redemption engines.
    (
        "mint_step_errors_total",
        Some(("retryable", &["true", "false"])),
    ),
    ("mint_step_timeouts_total", None),
    (
        "redemption_step_errors_total",
        Some(("retryable", &["true", "false"])),
    ),
    ("redemption_step_timeouts_total", None),
    ("redemption_monitor_failures_total", None),
    ("redemption_unattributed_transfers_total", None),
    ("chain_foreign_nonce_total", None),
    (
        "chain_unseen_landing_stuck_total",
        Some(("flow", &["mint", "redemption"])),
    ),
    (
        // The methods the service calls; one added later simply appears
        // at its first error.
        "chain_rpc_errors_total",
        Some((
            "operation",
            &[
                "eth_blockNumber",
                "eth_chainId",
                "eth_estimateGas",
                "eth_feeHistory",
                "eth_getBalance",
                "eth_getBlockByNumber",
                "eth_getLogs",
                "eth_getTransactionByHash",
                "eth_getTransactionCount",
                "eth_getTransactionReceipt",
            ],
        )),
    ),
];

/// Registers the rare counters of `network`'s chain at zero (see
/// [`ZERO_COUNTERS`]). Call once per chain after installing the recorder.
pub fn register_chain_counters(network: &'static str) {
    for &(name, labels) in ZERO_CHAIN_COUNTERS {
        match labels {
            None => metrics::counter!(name, "network" => network).increment(0),
            Some((label, values)) => {
                for &value in values {
                    metrics::counter!(name, label => value, "network" => network)
                        .increment(0);
                }
            }
        }
    }
}

/// The recorder's configuration: every histogram is a real Prometheus
/// histogram (summaries cannot be aggregated across instances), with
/// buckets fitted to what it measures.
pub fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets(HTTP_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("mint_duration_seconds".to_owned()),
            FLOW_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("redemption_duration_seconds".to_owned()),
            FLOW_BUCKETS,
        )
}

/// Gives every metric its HELP text and registers the rare counters at
/// zero. Call right after installing the recorder (descriptions go to the
/// recorder installed at the time of the call).
pub fn describe_metrics() {
    for &(name, kind, help) in CATALOG {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
    for &(name, labels) in ZERO_COUNTERS {
        match labels {
            None => metrics::counter!(name).increment(0),
            Some((label, values)) => {
                for &value in values {
                    metrics::counter!(name, label => value).increment(0);
                }
            }
        }
    }
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    // Persisted wall-clock times: a clock step backwards must not record
    // a negative duration.
    let millis = (to - from).num_milliseconds().max(0);
    // Exact for any realistic duration (below 2^53 ms).
    #[expect(
        clippy::cast_precision_loss,
        reason = "durations stay far below 2^53 ms"
    )]
    let seconds = millis as f64 / 1000.0;
    seconds
}

/// `mint_duration_seconds` for a mint whose callback was just delivered:
/// from the journal confirmation to the delivery, both as persisted (so a
/// mint that spanned a restart is measured from its real confirmation).
pub fn record_mint_duration(
    confirmed_at: DateTime<Utc>,
    delivered_at: DateTime<Utc>,
) {
    metrics::histogram!("mint_duration_seconds")
        .record(seconds_between(confirmed_at, delivered_at));
}

/// `redemption_duration_seconds` for a redemption that just finished;
/// only completed ones are measured (a failure waits for an operator, and
/// its time says nothing about the pipeline).
pub fn record_redemption_duration(state: &Redemption) {
    if let Redemption::Completed {
        detection,
        completed_at,
        ..
    } = state
    {
        metrics::histogram!("redemption_duration_seconds")
            .record(seconds_between(detection.detected_at, *completed_at));
    }
}

/// Unfinished flows older than the threshold and failed ones, as the
/// `flows_stuck` gauge reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StuckFlows {
    pub overdue: u64,
    pub failed: u64,
}

impl StuckFlows {
    fn publish(self, flow: &'static str) {
        metrics::gauge!("flows_stuck", "flow" => flow, "reason" => "overdue")
            .set(as_gauge(self.overdue));
        metrics::gauge!("flows_stuck", "flow" => flow, "reason" => "failed")
            .set(as_gauge(self.failed));
    }
}

fn as_gauge(count: u64) -> f64 {
    f64::from(u32::try_from(count).unwrap_or(u32::MAX))
}

/// What the periodic flow gauges read.
pub struct FlowGauges {
    pub pool: SqlitePool,
    pub clock: Arc<dyn Clock>,
    pub readiness: Option<Readiness>,
    /// `metrics.stuck_after_secs`.
    pub stuck_after: Duration,
}

impl FlowGauges {
    /// Recomputes `flows_stuck` from the views and reruns the readiness
    /// checks (which set `readiness_check_up`), every
    /// [`FLOW_GAUGE_INTERVAL`] until shutdown.
    pub fn spawn(self, mut shutdown: ShutdownListener) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(FLOW_GAUGE_INTERVAL);
            ticker.set_missed_tick_behavior(
                tokio::time::MissedTickBehavior::Delay,
            );
            loop {
                tokio::select! {
                    () = shutdown.wait() => break,
                    _ = ticker.tick() => self.update().await,
                }
            }
        })
    }

    async fn update(&self) {
        let stuck_after = chrono::Duration::from_std(self.stuck_after)
            .unwrap_or(chrono::Duration::MAX);
        let cutoff = self
            .clock
            .now()
            .checked_sub_signed(stuck_after)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        match crate::mint::stuck_mints(&self.pool, cutoff).await {
            Ok(stuck) => stuck.publish("mint"),
            Err(error) => tracing::warn!(
                target: "mint",
                %error,
                "cannot count stuck mints for metrics"
            ),
        }
        match crate::redemption::stuck_redemptions(&self.pool, cutoff).await {
            Ok(stuck) => stuck.publish("redemption"),
            Err(error) => tracing::warn!(
                target: "redemption",
                %error,
                "cannot count stuck redemptions for metrics"
            ),
        }
        if let Some(readiness) = &self.readiness {
            readiness.report().await;
        }
    }
}

/// Reads the issuer wallet's native balance and the chain head into
/// `chain_wallet_balance_wei` and `chain_head_block`, every
/// [`CHAIN_GAUGE_INTERVAL`] until shutdown. A failed read leaves the
/// gauge at its last value; the error is counted in
/// `chain_rpc_errors_total`.
pub fn spawn_chain_gauges(
    client: ChainClient,
    network: Network,
    mut shutdown: ShutdownListener,
) -> JoinHandle<()> {
    tokio::spawn(crate::telemetry::network::scope(
        network.as_str(),
        async move {
            let mut ticker = tokio::time::interval(CHAIN_GAUGE_INTERVAL);
            ticker.set_missed_tick_behavior(
                tokio::time::MissedTickBehavior::Delay,
            );
            loop {
                tokio::select! {
                    () = shutdown.wait() => break,
                    _ = ticker.tick() => update_chain_gauges(&client, network).await,
                }
            }
        },
    ))
}

async fn update_chain_gauges(client: &ChainClient, network: Network) {
    match client.wallet_balance().await {
        Ok(wei) => {
            metrics::gauge!("chain_wallet_balance_wei", "network" => network.as_str())
                .set(f64::from(wei));
        }
        Err(error) => tracing::debug!(
            target: "chain",
            %error,
            "cannot read the wallet balance for metrics"
        ),
    }
    match client.head_block().await {
        Ok(head) => {
            #[expect(
                clippy::cast_precision_loss,
                reason = "block numbers stay far below 2^53"
            )]
            let head = head as f64;
            metrics::gauge!("chain_head_block", "network" => network.as_str())
                .set(head);
        }
        Err(error) => tracing::debug!(
            target: "chain",
            %error,
            "cannot read the chain head for metrics"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(record: impl FnOnce()) -> String {
        let recorder = prometheus_builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, record);
        handle.render()
    }

    #[test]
    fn histograms_are_histograms_with_their_buckets() {
        let text = render(|| {
            metrics::histogram!("http_request_duration_seconds", "route" => "/x")
                .record(0.2);
            metrics::histogram!("mint_duration_seconds").record(42.0);
            metrics::histogram!("redemption_duration_seconds").record(7.0);
        });
        for name in [
            "http_request_duration_seconds",
            "mint_duration_seconds",
            "redemption_duration_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} histogram")),
                "{text}"
            );
            assert!(text.contains(&format!("{name}_count")), "{text}");
        }
        assert!(!text.contains("quantile"), "{text}");
        assert!(
            text.contains("http_request_duration_seconds_bucket{route=\"/x\",le=\"0.25\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mint_duration_seconds_bucket{le=\"60\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mint_duration_seconds_bucket{le=\"30\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn every_catalogued_metric_renders_with_its_help_text() {
        let text = render(|| {
            describe_metrics();
            for &(name, kind, _) in CATALOG {
                match kind {
                    Kind::Counter => metrics::counter!(name).increment(1),
                    Kind::Gauge => metrics::gauge!(name).set(1.0),
                    Kind::Histogram => metrics::histogram!(name).record(1.0),
                }
            }
        });
        for &(name, _, help) in CATALOG {
            assert!(
                text.contains(&format!("# HELP {name} {help}\n")),
                "{name}: {text}"
            );
        }
    }

    #[test]
    fn rare_counters_exist_at_zero_before_their_first_event() {
        let text = render(|| {
            describe_metrics();
            register_chain_counters("base");
            register_chain_counters("ethereum");
        });
        assert!(
            text.contains("chain_foreign_nonce_total{network=\"base\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "chain_foreign_nonce_total{network=\"ethereum\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("mints_finished_total{outcome=\"failed\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "chain_unseen_landing_stuck_total{flow=\"redemption\",network=\"base\"} 0\n"
            ),
            "{text}"
        );
        for &(name, _) in ZERO_COUNTERS.iter().chain(ZERO_CHAIN_COUNTERS) {
            assert!(
                CATALOG.iter().any(|&(catalogued, kind, _)| {
                    catalogued == name && kind == Kind::Counter
                }),
                "{name} is registered but not catalogued as a counter"
            );
        }
    }

    #[test]
    fn durations_never_go_negative() {
        let later =
            DateTime::<Utc>::from_timestamp(1_000, 500_000_000).unwrap();
        let earlier = DateTime::<Utc>::from_timestamp(990, 0).unwrap();
        assert!((seconds_between(earlier, later) - 10.5).abs() < 1e-9);
        assert!(seconds_between(later, earlier).abs() < f64::EPSILON);
    }
}
