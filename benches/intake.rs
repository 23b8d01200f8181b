//! Speed benchmark (issue 11): one run prints every figure with its target.
//!
//! 1. **raw limit**: single-row durable commits (WAL, `synchronous=FULL`)
//!    in a loop through rusqlite, bypassing sqlx, on the same disk and the
//!    same bundled SQLite;
//! 2. **intake**: Alpaca's mint requests over HTTP at concurrency 1, 16
//!    and 64, each answer checked, with its ratio to the raw limit;
//! 3. **flows** ([`flows`]): confirm → callback, a burst of confirmations
//!    on automine and with 1 s blocks, AP transfer → redeem call, on anvil
//!    with the ITN simulator;
//! 4. **scale**: the service's own database grown to `BENCH_EVENTS`
//!    events (default 1,000,000) by copying the real mint events of step
//!    2 under new ids, then the release binary started on it: time to
//!    `/ready` and idle RSS; then an explicit rebuild of every view
//!    (`issuance_bot::rebuild_views`) and its events/s.
//!
//! `scripts/bench` (= `cargo bench --bench intake`) runs the full load;
//! `BENCH_REQUESTS` sets the count per intake scenario. Built and run by
//! `cargo test --all-targets` (no `--bench` argument), it runs a small
//! smoke load instead, and fails if any answer was wrong. It asserts no
//! timing: targets are printed, never enforced.
//!
//! Intake runs in one process on one runtime: the service, started as
//! `serve` starts it (`start_service`, real TCP port, temp-file
//! database), and its reqwest client, so the client's CPU counts against
//! the service's.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use issuance_bot::config::Config;
use issuance_bot::start_service;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[path = "intake/flows.rs"]
mod flows;

const ALPACA_KEY: &str = "bench-alpaca-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const INTERNAL_KEY: &str = "bench-internal-key-bbbbbbbbbbbbbbbbbbbbbbbbbb";
const WALLET: &str = "0x1111111111111111111111111111111111111111";
const VAULT: &str = "0x3333333333333333333333333333333333333333";
const EMAIL: &str = "desk@ap.example.com";
/// As in the example config.
const DB_CONNECTIONS: u32 = 8;
/// Per intake scenario.
const FULL_REQUESTS: u32 = 5000;
/// Per scenario under `cargo test`: enough to exercise every path.
const SMOKE_REQUESTS: u32 = 16;
const CONCURRENCY: [u32; 3] = [1, 16, 64];
/// Events in the scale database under `--bench`.
const FULL_EVENTS: u64 = 1_000_000;
/// Under `cargo test`: enough to exercise the copy, start and rebuild.
const SMOKE_EVENTS: u64 = 2_000;
const BIN: &str = env!("CARGO_BIN_EXE_issuance-bot");
/// About the size of a stored mint event.
const RAW_PAYLOAD: &str = concat!(
    r#"{"Initiated":{"request":{"order":{"#,
    r#""tokenization_request_id":"7f1c0c8e-5a9b-4d7e-9a0b-1c2d3e4f5a6b","#,
    r#""qty":"1.5","underlying":"AAPL","token":"tAAPL","network":"base","#,
    r#""ap":{"client_id":"00000000-0000-0000-0000-000000000001"},"#,
    r#""wallet":"0x1111111111111111111111111111111111111111"},"#,
    r#""issuer_request_id":"00000000-0000-0000-0000-000000000002","#,
    r#""client_id":"00000000-0000-0000-0000-000000000001","#,
    r#""vault":"0x3333333333333333333333333333333333333333"},"#,
    r#""at":"2026-11-28T12:00:00Z"}}"#,
);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|arg| arg == "--bench");
    let requests = env_count(
        "BENCH_REQUESTS",
        full,
        FULL_REQUESTS.into(),
        SMOKE_REQUESTS.into(),
    )?;
    let requests = u32::try_from(requests)?;
    let events = env_count("BENCH_EVENTS", full, FULL_EVENTS, SMOKE_EVENTS)?;
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")),
    }
    .context("cannot create the temp directory")?;
    let _logs = install_logging(dir.path())?;

    // Other work on the machine skews every number: show how much.
    let load_before = load_average();
    let mut rows = vec![raw_limit(dir.path(), requests).await?];
    service(dir.path(), requests, &mut rows).await?;
    let flows = flows::run(dir.path(), flow_counts(full)?).await?;
    let scale = scale(dir.path(), events).await?;

    println!();
    println!(
        "{} requests per scenario; temp databases in {}",
        requests,
        dir.path().display()
    );
    println!();
    let raw = rows.first().map_or(0.0, Row::rate);
    print_table(&rows, raw);
    println!();
    print_flows(&flows);
    println!();
    print_targets(&rows, raw, &flows, &scale);
    println!();
    println!(
        "scale database: {} events ({} MiB), built in {:.1} s",
        scale.events,
        scale.bytes / (1024 * 1024),
        scale.built.as_secs_f64()
    );
    println!(
        "peak RSS of the bench process (VmHWM): {}",
        rss_text(peak_rss_kib())
    );
    println!(
        "load average (1/5/15 min) before: {load_before}, after: {}",
        load_average()
    );
    let failed: u32 = rows.iter().map(|row| row.errors).sum();
    if failed > 0 {
        let first = rows.iter().find_map(|row| row.first_error.as_deref());
        bail!("{failed} wrong answers; first: {}", first.unwrap_or("?"));
    }
    Ok(())
}

/// Mints one at a time, the burst, transfers one at a time:
/// `BENCH_FLOW_MINTS`, `BENCH_BURST`, `BENCH_REDEMPTIONS`.
fn flow_counts(full: bool) -> anyhow::Result<flows::Counts> {
    let count = |name, full_default, smoke| {
        env_count(name, full, full_default, smoke)
            .and_then(|count| Ok(usize::try_from(count)?))
    };
    Ok(flows::Counts {
        sequential_mints: count("BENCH_FLOW_MINTS", 30, 2)?,
        burst: count("BENCH_BURST", 100, 4)?,
        redemptions: count("BENCH_REDEMPTIONS", 20, 2)?,
    })
}

/// `name` from the environment (> 0), else the full or smoke default.
fn env_count(
    name: &str,
    full: bool,
    full_default: u64,
    smoke: u64,
) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .parse::<u64>()
            .ok()
            .filter(|count| *count > 0)
            .ok_or_else(|| anyhow!("{name}={value:?}: want > 0")),
        Err(_) if full => Ok(full_default),
        Err(_) => Ok(smoke),
    }
}

/// Logs as the service logs in production (text, `info`), into a file in
/// the temp directory, so that their cost is included.
fn install_logging(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("service.log");
    let file = std::fs::File::create(&path)?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init()
        .map_err(|err| anyhow!("cannot install logging: {err}"))?;
    Ok(path)
}

/// One line of the table.
struct Row {
    scenario: &'static str,
    concurrency: u32,
    requests: u32,
    elapsed: Duration,
    /// Sorted ascending.
    latencies: Vec<Duration>,
    /// Process CPU time (service and client) over the scenario.
    cpu: Option<Duration>,
    errors: u32,
    first_error: Option<String>,
    peak_rss_kib: Option<u64>,
}

/// What the workers of one scenario collected.
#[derive(Default)]
struct Collected {
    latencies: Vec<Duration>,
    errors: u32,
    first_error: Option<String>,
}

/// Runs `op(0..requests)` from `concurrency` tasks, each taking the next
/// index when done with its last, and times every call.
async fn run<F, Fut>(
    scenario: &'static str,
    concurrency: u32,
    requests: u32,
    op: F,
) -> anyhow::Result<Row>
where
    F: Fn(u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU32::new(0));
    let collected = Arc::new(Mutex::new(Collected::default()));
    let cpu_before = cpu_time();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (op, next, collected) =
            (op.clone(), next.clone(), collected.clone());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            let mut errors = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= requests {
                    break;
                }
                let sent = Instant::now();
                let result = op(index).await;
                mine.push(sent.elapsed());
                if let Err(error) = result {
                    errors.push(format!("{error:#}"));
                }
            }
            let mut collected = collected.lock().await;
            collected.latencies.append(&mut mine);
            collected.errors = collected.errors.saturating_add(
                u32::try_from(errors.len()).unwrap_or(u32::MAX),
            );
            if collected.first_error.is_none() {
                collected.first_error = errors.into_iter().next();
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("benchmark task failed")?;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time()
        .zip(cpu_before)
        .and_then(|(after, before)| after.checked_sub(before));
    let mut collected = std::mem::take(&mut *collected.lock().await);
    collected.latencies.sort_unstable();
    let row = Row {
        scenario,
        concurrency,
        requests,
        elapsed,
        latencies: collected.latencies,
        errors: collected.errors,
        first_error: collected.first_error,
        cpu,
        peak_rss_kib: peak_rss_kib(),
    };
    eprintln!("{}", row_text(&row, 0.0));
    Ok(row)
}

/// The physical limit: single-row commits one after another, each
/// `BEGIN IMMEDIATE`, one ~500-byte `INSERT`, `COMMIT` (an fsync), in WAL
/// mode with `synchronous=FULL` as the service runs, through rusqlite on
/// the same bundled SQLite, with no pool, thread hop or async in between.
async fn raw_limit(dir: &Path, requests: u32) -> anyhow::Result<Row> {
    let path = dir.join("raw.db");
    tokio::task::spawn_blocking(move || raw_loop(&path, requests))
        .await
        .context("raw loop panicked")?
}

fn raw_loop(path: &Path, requests: u32) -> anyhow::Result<Row> {
    let conn = rusqlite::Connection::open(path)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| {
            row.get(0)
        })?;
    ensure!(mode.eq_ignore_ascii_case("wal"), "journal_mode is {mode}");
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE commits (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)",
    )?;
    let mut insert =
        conn.prepare("INSERT INTO commits (payload) VALUES (?1)")?;
    let mut latencies = Vec::with_capacity(usize::try_from(requests)?);
    let cpu_before = cpu_time();
    let started = Instant::now();
    for _ in 0..requests {
        let sent = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        insert.execute([RAW_PAYLOAD])?;
        conn.execute_batch("COMMIT")?;
        latencies.push(sent.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let row = Row {
        scenario: "raw commit (rusqlite)",
        concurrency: 1,
        requests,
        elapsed,
        latencies,
        cpu: cpu_time()
            .zip(cpu_before)
            .and_then(|(after, before)| after.checked_sub(before)),
        errors: 0,
        first_error: None,
        peak_rss_kib: peak_rss_kib(),
    };
    eprintln!("{}", row_text(&row, 0.0));
    Ok(row)
}

fn service_config(dir: &Path, port: u16) -> String {
    format!(
        r#"
[server]
bind = "127.0.0.1:{port}"

[database]
url = "sqlite://{db}"
max_connections = {DB_CONNECTIONS}

[auth.alpaca]
api_key = "{ALPACA_KEY}"

[auth.internal]
api_key = "{INTERNAL_KEY}"
"#,
        db = dir.join("service.db").display(),
    )
}

/// The service as Alpaca and its operators see it, over HTTP.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base_url: Arc<str>,
}

impl Api {
    async fn post(
        &self,
        path: &str,
        key: &str,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("X-API-KEY", key)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status == reqwest::StatusCode::OK, "{path}: {status} {text}");
        serde_json::from_str(&text)
            .with_context(|| format!("{path}: non-JSON answer {text:?}"))
    }

    /// One linked AP with an allow-listed wallet; AAPL listed on base.
    async fn set_up(&self) -> anyhow::Result<String> {
        self.post(
            "/tokenized-assets",
            INTERNAL_KEY,
            &json!({
                "underlying": "AAPL",
                "token": "tAAPL",
                "network": "base",
                "vault": VAULT,
            }),
        )
        .await?;
        let registered = self
            .post("/accounts", INTERNAL_KEY, &json!({ "email": EMAIL }))
            .await?;
        let client_id = registered["client_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no client_id in {registered}"))?
            .to_owned();
        self.post(
            &format!("/accounts/{client_id}/wallets"),
            INTERNAL_KEY,
            &json!({ "wallet": WALLET }),
        )
        .await?;
        self.post(
            "/accounts/connect",
            ALPACA_KEY,
            &json!({ "email": EMAIL, "account": "AP-0001" }),
        )
        .await?;
        Ok(client_id)
    }

    /// Sends a mint request and returns the issuer_request_id it got.
    async fn mint(
        &self,
        client_id: &str,
        tokenization_request_id: &str,
    ) -> anyhow::Result<String> {
        let answer = self
            .post(
                "/inkind/issuance",
                ALPACA_KEY,
                &json!({
                    "tokenization_request_id": tokenization_request_id,
                    "qty": "1.5",
                    "underlying_symbol": "AAPL",
                    "token_symbol": "tAAPL",
                    "network": "base",
                    "client_id": client_id,
                    "wallet_address": WALLET,
                }),
            )
            .await?;
        ensure!(answer["status"] == "created", "not created: {answer}");
        answer["issuer_request_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no issuer_request_id in {answer}"))
    }

    async fn reject(
        &self,
        tokenization_request_id: &str,
        issuer_request_id: &str,
    ) -> anyhow::Result<()> {
        let answer = self
            .post(
                "/inkind/issuance/confirm",
                ALPACA_KEY,
                &json!({
                    "tokenization_request_id": tokenization_request_id,
                    "issuer_request_id": issuer_request_id,
                    "status": "rejected",
                }),
            )
            .await?;
        ensure!(
            answer["status"] == "journal_rejected",
            "not rejected: {answer}"
        );
        Ok(())
    }
}

/// Mints accepted so far: tokenization_request_id → issuer_request_id.
type Accepted = Arc<Mutex<Vec<Option<String>>>>;

fn mint_id(concurrency: u32, index: u32) -> String {
    format!("bench-c{concurrency}-{index}")
}

async fn service(
    dir: &Path,
    requests: u32,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let config_path = dir.join("issuance.toml");
    std::fs::write(&config_path, service_config(dir, 0))?;
    let config = Config::from_sources(Some(&config_path), Vec::new())?;
    let running = start_service(config).await?;
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        base_url: format!("http://{}", running.local_addr()).into(),
    };
    let client_id: Arc<str> = api.set_up().await?.into();
    let slots = usize::try_from(requests)?;

    let mut accepted = Vec::new();
    for concurrency in CONCURRENCY {
        let ids: Accepted = Arc::new(Mutex::new(vec![None; slots]));
        let (api, client_id, recorded) =
            (api.clone(), client_id.clone(), ids.clone());
        let row = run("mint request", concurrency, requests, move |index| {
            let (api, client_id, recorded) =
                (api.clone(), client_id.clone(), recorded.clone());
            async move {
                let tokenization_request_id = mint_id(concurrency, index);
                let issuer_request_id =
                    api.mint(&client_id, &tokenization_request_id).await?;
                let mut recorded = recorded.lock().await;
                let slot = recorded
                    .get_mut(usize::try_from(index)?)
                    .ok_or_else(|| anyhow!("index {index} out of range"))?;
                *slot = Some(issuer_request_id);
                Ok(())
            }
        })
        .await?;
        rows.push(row);
        accepted.push((concurrency, ids));
    }

    // Repeats and confirmations go to the mints of the concurrency-16 run.
    let (first_run, ids) = accepted
        .get(1)
        .ok_or_else(|| anyhow!("no accepted mints"))?
        .clone();
    let issued = Arc::new(ids.lock().await.clone());
    for (scenario, kind) in [
        ("repeated mint request", Follow::Repeat),
        ("confirm (rejected)", Follow::Reject),
    ] {
        let (api, client_id, issued) =
            (api.clone(), client_id.clone(), issued.clone());
        let row = run(scenario, 16, requests, move |index| {
            let (api, client_id, issued) =
                (api.clone(), client_id.clone(), issued.clone());
            async move {
                let tokenization_request_id = mint_id(first_run, index);
                let expected = issued
                    .get(usize::try_from(index)?)
                    .cloned()
                    .flatten()
                    .ok_or_else(|| anyhow!("mint {index} was not accepted"))?;
                match kind {
                    Follow::Repeat => {
                        let got = api
                            .mint(&client_id, &tokenization_request_id)
                            .await?;
                        ensure!(
                            got == expected,
                            "repeat answered {got}, first {expected}"
                        );
                    }
                    Follow::Reject => {
                        api.reject(&tokenization_request_id, &expected).await?;
                    }
                }
                Ok(())
            }
        })
        .await?;
        rows.push(row);
    }
    running.stop().await?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Follow {
    Repeat,
    Reject,
}

/// The `percent` percentile of sorted latencies, nearest rank.
fn percentile(sorted: &[Duration], percent: usize) -> Option<Duration> {
    let rank = sorted.len().checked_mul(percent)?.div_ceil(100);
    sorted.get(rank.saturating_sub(1)).copied()
}

fn millis(latency: Option<Duration>) -> String {
    latency.map_or_else(
        || "-".to_owned(),
        |latency| format!("{:.2}", latency.as_secs_f64() * 1000.0),
    )
}

/// User plus system time of the whole process so far.
fn cpu_time() -> Option<Duration> {
    /// USER_HZ, the unit of /proc times: 100 on every Linux ABI.
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may contain spaces: state is
    // field 3, utime 14, stime 15.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let millis = user.checked_add(system)?.checked_mul(1000)?;
    Some(Duration::from_millis(millis / TICKS_PER_SECOND))
}

/// CPU time over wall time; 100 % is one core busy.
fn cpu_text(cpu: Option<Duration>, elapsed: Duration) -> String {
    let wall = elapsed.as_secs_f64();
    match cpu {
        Some(cpu) if wall > 0.0 => {
            format!("{:.0}", cpu.as_secs_f64() / wall * 100.0)
        }
        _ => "-".to_owned(),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "-".to_owned(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

fn peak_rss_kib() -> Option<u64> {
    status_kib(std::process::id(), "VmHWM:")
}

fn rss_text(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "-".to_owned(),
        |kib| format!("{}.{} MiB", kib / 1024, kib % 1024 * 10 / 1024),
    )
}

const HEADER: &str = "| scenario | concurrency | requests | seconds | req/s \
                      | × raw | p50 ms | p99 ms | max ms | CPU % | errors \
                      | peak RSS |";
const RULE: &str = "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|";

impl Row {
    fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            f64::from(self.requests) / seconds
        } else {
            0.0
        }
    }
}

fn row_text(row: &Row, raw: f64) -> String {
    let ratio = if raw > 0.0 {
        format!("{:.2}", row.rate() / raw)
    } else {
        "-".to_owned()
    };
    format!(
        "| {} | {} | {} | {:.2} | {:.0} | {ratio} | {} | {} | {} | {} | {} | {} |",
        row.scenario,
        row.concurrency,
        row.requests,
        row.elapsed.as_secs_f64(),
        row.rate(),
        millis(percentile(&row.latencies, 50)),
        millis(percentile(&row.latencies, 99)),
        millis(row.latencies.last().copied()),
        cpu_text(row.cpu, row.elapsed),
        row.errors,
        rss_text(row.peak_rss_kib),
    )
}

fn print_table(rows: &[Row], raw: f64) {
    println!("{HEADER}");
    println!("{RULE}");
    for row in rows {
        println!("{}", row_text(row, raw));
    }
}

fn print_flows(flows: &flows::Flows) {
    println!("| flow | count | p50 ms | p99 ms | max ms |");
    println!("|---|--:|--:|--:|--:|");
    for (flow, latencies) in [
        ("confirm → callback, one at a time", &flows.callback),
        ("AP transfer → redeem call, one at a time", &flows.redeem),
    ] {
        println!(
            "| {flow} | {} | {} | {} | {} |",
            latencies.len(),
            millis(percentile(latencies, 50)),
            millis(percentile(latencies, 99)),
            millis(latencies.last().copied()),
        );
    }
    println!();
    println!(
        "| burst | mints | first confirm → last callback s | confirmations spread over s |"
    );
    println!("|---|--:|--:|--:|");
    for (blocks, burst) in [
        ("automine", flows.burst_automine),
        ("1 s blocks", flows.burst_blocks),
    ] {
        println!(
            "| {blocks} | {} | {:.2} | {:.2} |",
            flows.burst,
            burst.all_called_back.as_secs_f64(),
            burst.confirm_spread.as_secs_f64(),
        );
    }
}

/// One figure against its target. `higher` says which way is better.
struct Target {
    figure: String,
    measured: f64,
    unit: &'static str,
    goal: f64,
    higher: bool,
}

/// The issue's targets, each with the measured value, the ratio
/// measured / target and whether it is met.
fn print_targets(rows: &[Row], raw: f64, flows: &flows::Flows, scale: &Scale) {
    let mut targets = Vec::new();
    let intake = |concurrency| {
        rows.iter().find(|row| {
            row.scenario == "mint request" && row.concurrency == concurrency
        })
    };
    if let Some(row) = intake(64) {
        targets.push(Target {
            figure: format!("intake c=64 (raw limit {raw:.0}/s)"),
            measured: row.rate(),
            unit: "req/s",
            goal: raw,
            higher: true,
        });
    }
    for concurrency in [16, 64] {
        let Some(row) = intake(concurrency) else {
            continue;
        };
        for (what, latency, limit) in [
            ("p99", percentile(&row.latencies, 99), 50.0),
            ("max", row.latencies.last().copied(), 200.0),
        ] {
            targets.push(Target {
                figure: format!("intake c={concurrency} {what}"),
                measured: latency.map_or(f64::NAN, |l| l.as_secs_f64() * 1e3),
                unit: "ms",
                goal: limit,
                higher: false,
            });
        }
    }
    let ms = |latency: Option<Duration>| {
        latency.map_or(f64::NAN, |latency| latency.as_secs_f64() * 1e3)
    };
    targets.push(Target {
        figure: "confirm → callback p50 (automine)".to_owned(),
        measured: ms(percentile(&flows.callback, 50)),
        unit: "ms",
        goal: 100.0,
        higher: false,
    });
    for (blocks, burst, limit) in [
        ("automine", flows.burst_automine, 3.0),
        ("1 s blocks", flows.burst_blocks, 5.0),
    ] {
        targets.push(Target {
            figure: format!(
                "{} confirmations all called back ({blocks})",
                flows.burst
            ),
            measured: burst.all_called_back.as_secs_f64(),
            unit: "s",
            goal: limit,
            higher: false,
        });
    }
    targets.push(Target {
        figure: "AP transfer → redeem call p50 (automine)".to_owned(),
        measured: ms(percentile(&flows.redeem, 50)),
        unit: "ms",
        goal: 500.0,
        higher: false,
    });
    targets.push(Target {
        figure: format!("startup to /ready, {} events", scale.events),
        measured: scale.ready.as_secs_f64(),
        unit: "s",
        goal: 2.0,
        higher: false,
    });
    targets.push(Target {
        figure: "view rebuild".to_owned(),
        measured: scale.rebuild_rate(),
        unit: "events/s",
        goal: 200_000.0,
        higher: true,
    });
    targets.push(Target {
        figure: "idle RSS of the service".to_owned(),
        measured: scale.idle_rss_kib.map_or(f64::NAN, |kib| {
            // kB as the kernel counts, to MB (10^6) as the target is set.
            f64::from(u32::try_from(kib).unwrap_or(u32::MAX)) * 1024.0 / 1e6
        }),
        unit: "MB",
        goal: 60.0,
        higher: false,
    });
    println!("| figure | measured | target | measured / target | met |");
    println!("|---|--:|--:|--:|---|");
    for target in targets {
        let ratio = target.measured / target.goal;
        let met = if target.higher {
            target.measured >= target.goal
        } else {
            target.measured < target.goal
        };
        let sign = if target.higher { "≥" } else { "<" };
        println!(
            "| {} | {} {} | {sign} {} {} | {ratio:.2} | {} |",
            target.figure,
            figure_text(target.measured),
            target.unit,
            figure_text(target.goal),
            target.unit,
            if met { "yes" } else { "**no**" },
        );
    }
}

fn figure_text(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// What the scale step measured.
struct Scale {
    events: u64,
    bytes: u64,
    built: Duration,
    ready: Duration,
    idle_rss_kib: Option<u64>,
    rebuilt: u64,
    rebuild: Duration,
}

impl Scale {
    fn rebuild_rate(&self) -> f64 {
        let seconds = self.rebuild.as_secs_f64();
        if seconds > 0.0 {
            // Exact below 2^53 events.
            #[allow(clippy::cast_precision_loss)]
            let events = self.rebuilt as f64;
            events / seconds
        } else {
            0.0
        }
    }
}

/// Grows the intake run's database to `target` events, starts the
/// release binary on it (time to `/ready`, idle RSS), stops it, then
/// rebuilds every view explicitly.
async fn scale(dir: &Path, target: u64) -> anyhow::Result<Scale> {
    let db = dir.join("service.db");
    let started = Instant::now();
    let path = db.clone();
    let events = tokio::task::spawn_blocking(move || grow(&path, target))
        .await
        .context("growing the database panicked")??;
    let built = started.elapsed();
    let bytes = std::fs::metadata(&db)?.len();
    eprintln!(
        "scale database: {events} events, {} MiB, built in {built:?}",
        bytes / (1024 * 1024)
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.join("scale.toml");
    std::fs::write(&config, service_config(dir, port))?;
    let log = std::fs::File::create(dir.join("scale-service.log"))?;
    let mut command = std::process::Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ISSUANCE_") {
            command.env_remove(name);
        }
    }
    let started = Instant::now();
    let mut child = command
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(log)
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start the service binary")?;
    let ready = wait_ready(port, &mut child).await;
    let ready = ready.map(|()| started.elapsed());
    // Idle: nothing asked of it for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss_kib = status_kib(child.id(), "VmRSS:");
    terminate(&mut child).await?;
    let ready = ready?;
    eprintln!(
        "/ready after {ready:?}; idle RSS {}",
        rss_text(idle_rss_kib)
    );

    let url = format!("sqlite://{}", db.display());
    let pool = sqlite_es::open_pool(&url, 1).await?;
    let started = Instant::now();
    let replayed = issuance_bot::rebuild_views(&pool).await?;
    let rebuild = started.elapsed();
    pool.close().await;
    eprintln!("rebuilt every view from {replayed} events in {rebuild:?}");
    Ok(Scale {
        events,
        bytes,
        built,
        ready,
        idle_rss_kib,
        rebuilt: replayed,
        rebuild,
    })
}

/// Copies the finished (rejected) mints' events and views under new ids
/// until the log holds `target` events: real events of the real
/// aggregate, in their original commit order within each copy. Bulk
/// loading only (synchronous off); the service never runs this way.
fn grow(path: &Path, target: u64) -> anyhow::Result<u64> {
    const FINISHED: &str = "SELECT aggregate_id FROM events \
         WHERE aggregate_type = 'Mint' AND event_type = 'MintEvent::JournalRejected'";
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    let have: i64 =
        conn.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
    let have = u64::try_from(have)?;
    let tx = conn.transaction()?;
    tx.execute_batch(&format!(
        "CREATE TEMP TABLE base_events AS SELECT aggregate_type, aggregate_id, \
         sequence, event_type, event_version, payload, metadata FROM events \
         WHERE aggregate_type = 'Mint' AND aggregate_id IN ({FINISHED}) \
         ORDER BY rowid; \
         CREATE TEMP TABLE base_views AS SELECT view_id, version, payload \
         FROM mint_view WHERE view_id IN ({FINISHED}); \
         CREATE TEMP TABLE copies (n INTEGER PRIMARY KEY);"
    ))?;
    let base: i64 =
        tx.query_row("SELECT COUNT(*) FROM base_events", [], |row| row.get(0))?;
    let base = u64::try_from(base)?;
    ensure!(base > 0, "no finished mints to copy");
    let copies = target.saturating_sub(have).div_ceil(base);
    tx.execute(
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c \
         WHERE n < ?1) INSERT INTO copies SELECT n FROM c",
        [i64::try_from(copies)?],
    )?;
    tx.execute_batch(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
         event_type, event_version, payload, metadata) \
         SELECT e.aggregate_type, e.aggregate_id || '~' || k.n, e.sequence, \
         e.event_type, e.event_version, e.payload, e.metadata \
         FROM copies AS k CROSS JOIN base_events AS e; \
         INSERT INTO mint_view (view_id, version, payload) \
         SELECT v.view_id || '~' || k.n, v.version, v.payload \
         FROM copies AS k CROSS JOIN base_views AS v;",
    )?;
    tx.commit()?;
    let _: (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    let events: i64 =
        conn.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
    Ok(u64::try_from(events)?)
}

/// Polls `/ready` every 10 ms until it answers 200 (or the child exits).
async fn wait_ready(
    port: u16,
    child: &mut std::process::Child,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_mins(5);
    loop {
        let answer = http
            .get(format!("http://127.0.0.1:{port}/ready"))
            .send()
            .await;
        if answer.is_ok_and(|answer| answer.status() == reqwest::StatusCode::OK)
        {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the service exited before it was ready: {status}");
        }
        ensure!(Instant::now() < deadline, "the service never became ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn terminate(child: &mut std::process::Child) -> anyhow::Result<()> {
    if child.try_wait()?.is_none() {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        ensure!(sent.success(), "kill -TERM failed");
    }
    let deadline = Instant::now() + Duration::from_mins(1);
    while child.try_wait()?.is_none() {
        ensure!(Instant::now() < deadline, "the service ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
