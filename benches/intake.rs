//! Intake benchmark: how many of Alpaca's mint requests the service
//! accepts per second, next to the raw rate of durable SQLite commits on
//! the same disk (one accepted request is one such commit).
//!
//! `scripts/bench` (= `cargo bench --bench intake`) runs the full load;
//! `BENCH_REQUESTS` sets the count per scenario. Built and run by
//! `cargo test --all-targets` (no `--bench` argument), it runs a small
//! smoke load instead, and fails if any answer was wrong.
//!
//! Everything is in one process on one runtime: the service, started as
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
use sqlx::SqlitePool;
use tokio::sync::Mutex;

const ALPACA_KEY: &str = "bench-alpaca-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const INTERNAL_KEY: &str = "bench-internal-key-bbbbbbbbbbbbbbbbbbbbbbbbbb";
const WALLET: &str = "0x1111111111111111111111111111111111111111";
const VAULT: &str = "0x3333333333333333333333333333333333333333";
const EMAIL: &str = "desk@ap.example.com";
/// As in the example config.
const DB_CONNECTIONS: u32 = 8;
/// Per scenario; a full run takes about a minute on 2 cores.
const FULL_REQUESTS: u32 = 5000;
/// Per scenario under `cargo test`: enough to exercise every path.
const SMOKE_REQUESTS: u32 = 16;
const CONCURRENCY: [u32; 3] = [1, 8, 32];
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
    let requests = match std::env::var("BENCH_REQUESTS") {
        Ok(value) => value
            .parse::<u32>()
            .ok()
            .filter(|count| *count > 0)
            .ok_or_else(|| anyhow!("BENCH_REQUESTS={value:?}: want > 0"))?,
        Err(_) if full => FULL_REQUESTS,
        Err(_) => SMOKE_REQUESTS,
    };
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")),
    }
    .context("cannot create the temp directory")?;
    let _logs = install_logging(dir.path())?;

    // Other work on the machine skews every number: show how much.
    let load_before = load_average();
    let mut rows = Vec::new();
    raw_sqlite(dir.path(), requests, &mut rows).await?;
    service(dir.path(), requests, &mut rows).await?;

    println!();
    println!(
        "{} requests per scenario; temp databases in {}",
        requests,
        dir.path().display()
    );
    println!();
    print_table(&rows);
    println!();
    println!("peak RSS (VmHWM): {}", rss_text(peak_rss_kib()));
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
    eprintln!("{}", row_text(&row));
    Ok(row)
}

/// Sequential and concurrent single-row commits on a pool opened exactly
/// as the service opens its own (WAL, synchronous=FULL, busy timeout),
/// each in `BEGIN IMMEDIATE` as the event store commits.
async fn raw_sqlite(
    dir: &Path,
    requests: u32,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let url = format!("sqlite://{}", dir.join("raw.db").display());
    let pool = sqlite_es::open_pool(&url, DB_CONNECTIONS).await?;
    sqlx::query(
        "CREATE TABLE commits (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    for concurrency in CONCURRENCY {
        let pool = pool.clone();
        rows.push(
            run("sqlite commit", concurrency, requests, move |_| {
                raw_commit(pool.clone())
            })
            .await?,
        );
    }
    // The same writers queued in-process, so that none sleeps in
    // SQLite's busy handler: what the store would get from a write queue.
    for concurrency in [8, 32] {
        let pool = pool.clone();
        let gate = Arc::new(Mutex::new(()));
        rows.push(
            run("sqlite commit, queued", concurrency, requests, move |_| {
                let (pool, gate) = (pool.clone(), gate.clone());
                async move {
                    let _turn = gate.lock().await;
                    raw_commit(pool).await
                }
            })
            .await?,
        );
    }
    pool.close().await;
    Ok(())
}

async fn raw_commit(pool: SqlitePool) -> anyhow::Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("INSERT INTO commits (payload) VALUES (?)")
        .bind(RAW_PAYLOAD)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

fn service_config(dir: &Path) -> String {
    format!(
        r#"
[server]
bind = "127.0.0.1:0"

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
    std::fs::write(&config_path, service_config(dir))?;
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

    // Repeats and confirmations go to the mints of the concurrency-8 run.
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
        let row = run(scenario, 8, requests, move |index| {
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
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn rss_text(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "-".to_owned(),
        |kib| format!("{}.{} MiB", kib / 1024, kib % 1024 * 10 / 1024),
    )
}

const HEADER: &str = "| scenario | concurrency | requests | seconds | req/s \
                      | p50 ms | p99 ms | max ms | CPU % | errors | peak RSS |";
const RULE: &str = "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|";

fn row_text(row: &Row) -> String {
    let seconds = row.elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        f64::from(row.requests) / seconds
    } else {
        0.0
    };
    format!(
        "| {} | {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {} | {} |",
        row.scenario,
        row.concurrency,
        row.requests,
        seconds,
        rate,
        millis(percentile(&row.latencies, 50)),
        millis(percentile(&row.latencies, 99)),
        millis(row.latencies.last().copied()),
        cpu_text(row.cpu, row.elapsed),
        row.errors,
        rss_text(row.peak_rss_kib),
    )
}

fn print_table(rows: &[Row]) {
    println!("{HEADER}");
    println!("{RULE}");
    for row in rows {
        println!("{}", row_text(row));
    }
}
