//! Crash campaign: the service binary is killed with SIGKILL at seeded
//! random moments while mints and redemptions run, with windows in which
//! the RPC is unreachable (the fault proxy) and Alpaca misbehaves (the
//! simulator's faults). Afterwards the money invariants are checked from
//! the chain and the simulator only:
//!
//! - exactly one deposit per accepted mint, and a callback naming it;
//! - exactly one burn transaction per redemption;
//! - share supply = minted − burned;
//! - nothing left unfinished.
//!
//! `cargo test --test crash` runs a small fixed set of seeds; longer runs:
//! `CRASH_SEEDS=1-20 CRASH_STEPS=120 scripts/crash-campaign`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

#[path = "../e2e/harness.rs"]
#[allow(dead_code, reason = "shared with the e2e target; not all used here")]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy::primitives::{Address, TxHash, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use issuance_bot::chain::{ReceiptInformation, ReceiptOp};
use itn_sim::{Endpoint, Fault};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use receipt_vault::OffchainAssetReceiptVault as Vault;
use serde_json::Value;
use tokio::time::Instant;

use harness::{Env, INTERNAL_KEY, Options};

const BIN: &str = env!("CARGO_BIN_EXE_issuance-bot");
/// How long everything may take to settle after the last fault.
const SETTLE: Duration = Duration::from_mins(3);

/// The service as a child process on a fixed port.
struct Service {
    config: PathBuf,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Service {
    fn spawn(&self) -> Child {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(BIN);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ISSUANCE_") {
                command.env_remove(name);
            }
        }
        command
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("ISSUANCE_SERVER__BIND", format!("127.0.0.1:{}", self.port))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Starts the binary and waits until it answers `/health`; a start
    /// refused (e.g. by the single-writer guard) is retried.
    async fn start(&mut self) -> Duration {
        assert!(self.child.is_none(), "already running");
        let started = Instant::now();
        let mut child = self.spawn();
        loop {
            assert!(
                started.elapsed() < Duration::from_mins(2),
                "the service never came back; see {}",
                self.log.display()
            );
            if child.try_wait().unwrap().is_some() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                child = self.spawn();
                continue;
            }
            let health = self
                .http
                .get(format!("http://127.0.0.1:{}/health", self.port))
                .send()
                .await;
            if health.is_ok_and(|answer| answer.status().is_success()) {
                self.child = Some(child);
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let answer = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .header("X-API-KEY", INTERNAL_KEY)
            .send()
            .await
            .ok()?;
        if !answer.status().is_success() {
            return None;
        }
        answer.json().await.ok()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What one seed did and checked.
#[derive(Debug, Default)]
struct Report {
    seed: u64,
    kills: usize,
    rpc_outages: usize,
    alpaca_faults: usize,
    mints_accepted: usize,
    mints_refused: usize,
    redemptions: usize,
    deposits: usize,
    burns: usize,
    worst_restart: Duration,
    invariants: usize,
}

fn table(reports: &[Report]) -> String {
    let mut out = String::from(
        "| seed | kills | RPC outages | Alpaca faults | mints accepted | mint requests refused | redemptions | deposits | burn txs | slowest restart | invariants checked |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ms | {} |",
            r.seed,
            r.kills,
            r.rpc_outages,
            r.alpaca_faults,
            r.mints_accepted,
            r.mints_refused,
            r.redemptions,
            r.deposits,
            r.burns,
            r.worst_restart.as_millis(),
            r.invariants,
        );
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A random quantity of 0.01 to 5.00 shares.
fn random_qty(rng: &mut StdRng) -> String {
    let cents: u32 = rng.random_range(1..=500);
    format!("{}.{:02}", cents / 100, cents % 100)
}

async fn run(seed: u64, steps: usize) -> Report {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = Report {
        seed,
        ..Report::default()
    };
    let mut env = Env::start_opts(Options {
        rpc_proxy: true,
        chain_toml: "rpc_timeout_ms = 2000\nstep_timeout_ms = 20000",
        // Alpaca keeps retrying a confirmation while we are down.
        tune_sim: |sim| {
            sim.confirm_max_attempts = 100_000;
            sim.confirm_retry_delay = Duration::from_millis(50);
            sim.issuer_timeout = Duration::from_secs(5);
        },
        ..Options::default()
    })
    .await;
    // From here on the service runs as a process that can be killed.
    env.pause().await;
    let port = free_port();
    env.sim.set_issuer_base_url(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
    );
    let mut service = Service {
        config: env.config_path().to_owned(),
        port,
        log: env.config_path().with_extension(format!("seed-{seed}.log")),
        child: None,
        http: reqwest::Client::new(),
    };
    report.worst_restart = service.start().await;

    let faults = env.faults();
    let bot = env.chain.bot.address();
    let ap_vault = env.chain.vault_as(&env.chain.ap);
    let mut accepted: Vec<(uuid::Uuid, String)> = Vec::new();
    let mut redemptions: Vec<String> = Vec::new();
    // While down, steps go on: Alpaca's requests are refused and the
    // chain moves without us.
    let mut down_until: Option<usize> = None;
    for step in 0..steps {
        if down_until.is_some_and(|until| step >= until) {
            down_until = None;
            let took = service.start().await;
            report.worst_restart = report.worst_restart.max(took);
        }
        match rng.random_range(0..100) {
            0..35 => {
                let spec = env.mint_spec(&random_qty(&mut rng));
                match env.sim.request_mint(env.ap, spec).await {
                    Ok(outcome) if outcome.issuer_response_status == 200 => {
                        accepted.push((
                            outcome.tokenization_request_id,
                            outcome.issuer_request_id.unwrap(),
                        ));
                    }
                    Ok(_) | Err(_) => report.mints_refused += 1,
                }
            }
            35..55 => {
                // The AP sends part of what it holds back to the issuer.
                let held = env.share_balance(env.ap_wallet).await;
                if held > U256::ZERO {
                    let share = U256::from(rng.random_range(1..=50_u64));
                    let amount =
                        (held * share / U256::from(100)).max(U256::from(1));
                    let receipt = ap_vault
                        .transfer(bot, amount)
                        .send()
                        .await
                        .unwrap()
                        .get_receipt()
                        .await
                        .unwrap();
                    assert!(receipt.status());
                    let index = receipt
                        .inner
                        .logs()
                        .iter()
                        .find(|log| {
                            Vault::Transfer::decode_log_data(&log.inner.data)
                                .is_ok_and(|transfer| transfer.to == bot)
                        })
                        .and_then(|log| log.log_index)
                        .unwrap();
                    redemptions.push(format!(
                        "{:#x}-{index}",
                        receipt.transaction_hash
                    ));
                }
            }
            55..75 if down_until.is_none() => {
                service.kill();
                report.kills += 1;
                down_until = Some(step + rng.random_range(1..4));
            }
            55..75 => {}
            75..85 => {
                faults.set_unreachable(true);
                report.rpc_outages += 1;
                tokio::time::sleep(Duration::from_millis(
                    rng.random_range(200..1500),
                ))
                .await;
                faults.set_unreachable(false);
            }
            _ => {
                let endpoint = [
                    Endpoint::MintCallback,
                    Endpoint::Redeem,
                    Endpoint::GetByIssuerRequestId,
                ][rng.random_range(0..3)];
                env.sim.inject(Fault::BrokerStatus {
                    endpoint,
                    status: [500, 502, 503][rng.random_range(0..3)],
                    times: rng.random_range(1..4),
                });
                report.alpaca_faults += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..300)))
            .await;
    }

    // Calm: no more faults; everything must finish.
    faults.set_unreachable(false);
    env.sim.clear_faults();
    if service.child.is_none() {
        service.start().await;
    }
    let deadline = Instant::now() + SETTLE;
    let mut unfinished: Vec<String> = Vec::new();
    loop {
        unfinished.clear();
        for (_, issuer_request_id) in &accepted {
            let mint =
                service.get(&format!("/mints/{issuer_request_id}")).await;
            let status = mint.as_ref().map(|m| m["status"].clone());
            let done = status
                .as_ref()
                .is_some_and(|s| s == "completed" || s == "journal_rejected");
            if !done {
                unfinished.push(format!("mint {issuer_request_id}: {mint:?}"));
            }
        }
        for id in &redemptions {
            let redemption = service.get(&format!("/redemptions/{id}")).await;
            if redemption
                .as_ref()
                .is_none_or(|r| r["state"] != "completed")
            {
                unfinished.push(format!("redemption {id}: {redemption:?}"));
            }
        }
        if unfinished.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: still unfinished after {SETTLE:?}: {unfinished:#?}; log {}",
            service.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.invariants += 1;
    report.mints_accepted = accepted.len();
    report.redemptions = redemptions.len();

    check_chain(&env, &mut report, &accepted, &redemptions).await;
    service.kill();
    env.stop().await;
    report
}

/// Deposits and withdrawals of the vault, grouped by the flow their
/// receiptInformation names.
async fn check_chain(
    env: &Env,
    report: &mut Report,
    accepted: &[(uuid::Uuid, String)],
    redemptions: &[String],
) {
    let provider = env.chain.provider();
    let logs = |signature| {
        let filter = Filter::new()
            .address(env.vault)
            .event_signature(signature)
            .from_block(0);
        async move { provider.get_logs(&filter).await.unwrap() }
    };
    let mut minted = U256::ZERO;
    let mut deposits: BTreeMap<String, Vec<TxHash>> = BTreeMap::new();
    for log in logs(Vault::Deposit::SIGNATURE_HASH).await {
        let deposit = Vault::Deposit::decode_log_data(&log.inner.data).unwrap();
        minted += deposit.shares;
        let info = ReceiptInformation::decode(&deposit.receiptInformation)
            .expect("every deposit carries our receipt information");
        assert_eq!(info.op(), ReceiptOp::Mint);
        deposits
            .entry(info.tokenization_request_id().to_owned())
            .or_default()
            .push(log.transaction_hash.unwrap());
    }
    let mut burned = U256::ZERO;
    let mut burns: BTreeMap<String, BTreeSet<TxHash>> = BTreeMap::new();
    for log in logs(Vault::Withdraw::SIGNATURE_HASH).await {
        let withdraw =
            Vault::Withdraw::decode_log_data(&log.inner.data).unwrap();
        burned += withdraw.shares;
        let info = ReceiptInformation::decode(&withdraw.receiptInformation)
            .expect("every burn carries our receipt information");
        assert_eq!(info.op(), ReceiptOp::Redeem);
        burns
            .entry(info.issuer_request_id().to_owned())
            .or_default()
            .insert(log.transaction_hash.unwrap());
    }
    report.deposits = deposits.values().map(Vec::len).sum();
    report.burns = burns.values().map(BTreeSet::len).sum();

    // No flow was ever deposited or burned twice.
    for (id, txs) in &deposits {
        assert_eq!(
            txs.len(),
            1,
            "seed {}: mint {id} deposited {txs:?}",
            report.seed
        );
    }
    report.invariants += 1;
    for (id, txs) in &burns {
        assert_eq!(
            txs.len(),
            1,
            "seed {}: redemption {id} burned in {txs:?}",
            report.seed
        );
    }
    report.invariants += 1;
    // Every accepted mint that completed has its deposit and a callback
    // naming exactly that transaction.
    for (tokenization_request_id, issuer_request_id) in accepted {
        let key = tokenization_request_id.to_string();
        let callbacks = env.sim.mint_callbacks(*tokenization_request_id);
        match deposits.get(&key) {
            Some(txs) => {
                assert!(
                    !callbacks.is_empty(),
                    "seed {}: mint {issuer_request_id} has no callback",
                    report.seed
                );
                let landed = format!("{:#x}", txs[0]);
                for callback in &callbacks {
                    assert_eq!(callback["tx_hash"], landed.as_str());
                }
            }
            None => assert!(
                callbacks.is_empty(),
                "seed {}: a callback for mint {issuer_request_id} without a deposit",
                report.seed
            ),
        }
    }
    report.invariants += 1;
    // Every redemption burned exactly once.
    for id in redemptions {
        assert!(
            burns.contains_key(id),
            "seed {}: redemption {id} never burned",
            report.seed
        );
    }
    report.invariants += 1;
    // Supply = minted − burned.
    let supply = env
        .chain
        .vault_as(&env.chain.bot)
        .totalSupply()
        .call()
        .await
        .unwrap();
    assert_eq!(supply, minted - burned, "seed {}: supply", report.seed);
    report.invariants += 1;
    // The bot holds exactly what is redeemed and not yet burned: nothing.
    let bot: Address = env.chain.bot.address();
    let held = env.share_balance(bot).await;
    assert_eq!(
        held,
        U256::ZERO,
        "seed {}: shares left with the issuer",
        report.seed
    );
    report.invariants += 1;
}

/// `"1-3,7"` → 1, 2, 3, 7.
fn parse_seeds(text: &str) -> Vec<u64> {
    text.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((from, to)) => (from.trim().parse::<u64>().unwrap()
                ..=to.trim().parse().unwrap())
                .collect::<Vec<_>>(),
            None => vec![part.trim().parse().unwrap()],
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_invariants_survive_kills_rpc_outages_and_alpaca_faults() {
    let seeds = parse_seeds(
        &std::env::var("CRASH_SEEDS").unwrap_or_else(|_| "1,2".to_owned()),
    );
    let steps = std::env::var("CRASH_STEPS")
        .ok()
        .map_or(30, |steps| steps.parse().unwrap());
    let mut reports = Vec::new();
    for seed in seeds {
        reports.push(Box::pin(run(seed, steps)).await);
    }
    let table = table(&reports);
    println!("{table}");
    if let Ok(path) = std::env::var("CRASH_REPORT") {
        std::fs::write(Path::new(&path), &table).unwrap();
    }
    assert!(reports.iter().all(|r| r.kills > 0), "{table}");
}
