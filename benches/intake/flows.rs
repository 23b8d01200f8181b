//! Flow latency (issue 11): the whole system on one machine, as the e2e
//! tests run it: anvil with the vault stack (`LocalChain`, automine), the
//! ITN simulator playing Alpaca, and the service started as `serve` starts
//! it, with its default engine and monitor settings.
//!
//! - **confirm → callback**: mints one at a time; from the simulator
//!   sending Alpaca's confirmation to it receiving the mint callback (both
//!   stamped by the simulator, in this process);
//! - **burst**: `burst` mints requested at once, Alpaca confirming each
//!   `JOURNAL_DELAY` after its request (requests 32 at a time, below the
//!   service's per-client connection limit); from the first confirmation sent to
//!   the last callback received (the confirmations' own spread counts
//!   against the figure), on automine, then again with 1 s blocks (many
//!   transactions in one block);
//! - **transfer → redeem call**: the AP sends tokens to the issuer wallet,
//!   one transfer at a time, each after a pause spread over 0..1 s (so
//!   they meet the monitor's head poll at every phase); from just before
//!   the transfer is sent
//!   (automine: mined on arrival) to the simulator receiving the redeem
//!   call for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use anyhow::{Context as _, anyhow, bail, ensure};
use chrono::{DateTime, Utc};
use issuance_bot::config::Config;
use issuance_bot::start_service;
use itn_sim::{
    ApId, ApSpec, ClientIdMode, Endpoint, MintSpec, SimConfig, SimHandle,
    Simulator, WireVersion,
};
use receipt_vault::testing::LocalChain;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::{ALPACA_KEY, INTERNAL_KEY};

/// Alpaca's journal time: the burst's confirmations all arrive about
/// this long after their requests, i.e. together.
const JOURNAL_DELAY: Duration = Duration::from_secs(1);
/// Waiting longer than this for one figure fails the run.
const PATIENCE: Duration = Duration::from_mins(2);
const EMAIL: &str = "desk@ap.example.com";
/// Mint requests of a burst in flight at once.
const REQUESTS_AT_ONCE: usize = 32;

/// How many of each.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub sequential_mints: usize,
    pub burst: usize,
    pub redemptions: usize,
}

/// What the flows measured.
pub struct Flows {
    /// Confirm → callback, one mint at a time, sorted.
    pub callback: Vec<Duration>,
    pub burst: usize,
    /// First confirmation sent → last callback received, and the spread
    /// of the confirmations themselves.
    pub burst_automine: Burst,
    pub burst_blocks: Burst,
    /// Transfer sent → redeem call received, sorted.
    pub redeem: Vec<Duration>,
}

#[derive(Debug, Clone, Copy)]
pub struct Burst {
    pub all_called_back: Duration,
    pub confirm_spread: Duration,
}

struct Env {
    chain: LocalChain,
    sim: SimHandle,
    service: issuance_bot::RunningService,
    http: reqwest::Client,
    base_url: String,
    ap: ApId,
    ap_wallet: Address,
}

pub async fn run(
    dir: &std::path::Path,
    counts: Counts,
) -> anyhow::Result<Flows> {
    let mut env = Env::start(dir).await?;
    let callback = env.sequential_mints(counts.sequential_mints).await?;
    eprintln!(
        "confirm → callback, {} mints one at a time: p50 {}",
        callback.len(),
        super::millis(super::percentile(&callback, 50))
    );
    let burst_automine = env.burst(counts.burst).await?;
    eprintln!("burst of {} on automine: {burst_automine:?}", counts.burst);
    let redeem = env.redemptions(counts.redemptions).await?;
    eprintln!(
        "transfer → redeem call, {} transfers: p50 {}",
        redeem.len(),
        super::millis(super::percentile(&redeem, 50))
    );
    // From here on anvil mines a block every second, with every
    // transaction that arrived in it.
    let _: Value = env
        .chain
        .provider()
        .raw_request("evm_setIntervalMining".into(), (1,))
        .await
        .context("evm_setIntervalMining")?;
    let burst_blocks = env.burst(counts.burst).await?;
    eprintln!(
        "burst of {} with 1 s blocks: {burst_blocks:?}",
        counts.burst
    );
    env.service.stop().await?;
    env.sim.shutdown().await;
    Ok(Flows {
        callback,
        burst: counts.burst,
        burst_automine,
        burst_blocks,
        redeem,
    })
}

fn config_toml(
    dir: &std::path::Path,
    chain: &LocalChain,
    sim: &SimHandle,
) -> String {
    let sim_config = sim.config();
    // Engine, monitor and Alpaca client at their defaults.
    format!(
        r#"
[server]
bind = "127.0.0.1:0"

[database]
url = "sqlite://{db}"

[auth.alpaca]
api_key = "{ALPACA_KEY}"

[auth.internal]
api_key = "{INTERNAL_KEY}"

[alpaca]
base_url = "{alpaca_url}"
account_id = "{account_id}"
api_key_id = "{key_id}"
api_secret = "{secret}"

[chain]
rpc_url = "{rpc_url}"
chain_id = 31337
network = "base"
private_key = "{private_key}"
max_fee_per_gas_gwei = 100
max_priority_fee_per_gas_gwei = 1
"#,
        db = dir.join("flows.db").display(),
        alpaca_url = sim.base_url(),
        account_id = sim.issuer_account_id(),
        key_id = sim_config.broker_key_id,
        secret = sim_config.broker_secret,
        rpc_url = chain.rpc_url,
        private_key = chain.bot.to_bytes(),
    )
}

impl Env {
    async fn start(dir: &std::path::Path) -> anyhow::Result<Self> {
        let chain = LocalChain::start().await?;
        let sim = Simulator::spawn(SimConfig {
            wire: WireVersion::Oldest,
            issuer_api_key: ALPACA_KEY.into(),
            journal_delay: JOURNAL_DELAY,
            confirm_retry_delay: Duration::from_millis(10),
            ..SimConfig::default()
        })
        .await?;
        let path = dir.join("flows.toml");
        std::fs::write(&path, config_toml(dir, &chain, &sim))?;
        let config = Config::from_sources(Some(&path), Vec::new())?;
        let service = Box::pin(start_service(config)).await?;
        let base_url = format!("http://{}", service.local_addr());
        sim.set_issuer_base_url(base_url.parse()?);
        let ap = sim.add_ap(ApSpec {
            email: EMAIL.into(),
            account_number: "AP-0001".into(),
            positions: vec![("AAPL".into(), Decimal::from(1_000_000))],
            id_mode: ClientIdMode::External,
        });
        let env = Self {
            ap_wallet: chain.ap.address(),
            chain,
            sim,
            service,
            http: reqwest::Client::new(),
            base_url,
            ap,
        };
        env.set_up().await?;
        Ok(env)
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("X-API-KEY", INTERNAL_KEY)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status == reqwest::StatusCode::OK, "{path}: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// AAPL listed on the test vault; the AP registered, its wallet
    /// allow-listed, linked by Alpaca.
    async fn set_up(&self) -> anyhow::Result<()> {
        self.post(
            "/tokenized-assets",
            &json!({
                "underlying": "AAPL",
                "token": "tAAPL",
                "network": "base",
                "vault": self.chain.stack.vault.to_string(),
            }),
        )
        .await?;
        let registered =
            self.post("/accounts", &json!({ "email": EMAIL })).await?;
        let client_id = registered["client_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no client_id in {registered}"))?
            .to_owned();
        self.post(
            &format!("/accounts/{client_id}/wallets"),
            &json!({ "wallet": self.ap_wallet.to_string() }),
        )
        .await?;
        let linked = self.sim.link_ap(self.ap).await?;
        ensure!(linked == client_id, "linked as {linked}, not {client_id}");
        Ok(())
    }

    fn spec(&self) -> MintSpec {
        MintSpec {
            underlying: "AAPL".into(),
            token: "tAAPL".into(),
            network: "base".into(),
            qty: Decimal::ONE,
            wallet: self.ap_wallet.to_string(),
        }
    }

    /// Requests one mint through Alpaca; returns its tokenization id.
    async fn request_mint(
        sim: SimHandle,
        ap: ApId,
        spec: MintSpec,
    ) -> anyhow::Result<String> {
        let outcome = sim.request_mint(ap, spec).await?;
        ensure!(
            outcome.issuer_response_status == 200,
            "mint request refused: {outcome:?}"
        );
        Ok(outcome.tokenization_request_id.to_string())
    }

    /// Waits until every mint in `ids` was called back; returns, per id,
    /// when Alpaca sent its confirmation and when the callback arrived.
    async fn called_back(
        &self,
        ids: &[String],
    ) -> anyhow::Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let confirms = stamps(&self.sim, Endpoint::IssuerConfirm);
            let callbacks = stamps(&self.sim, Endpoint::MintCallback);
            let found: Option<Vec<_>> = ids
                .iter()
                .map(|id| Some((*confirms.get(id)?, *callbacks.get(id)?)))
                .collect();
            if let Some(found) = found {
                return Ok(found);
            }
            if Instant::now() > deadline {
                let missing = ids
                    .iter()
                    .filter(|id| !callbacks.contains_key(*id))
                    .count();
                bail!("{missing} of {} mints never called back", ids.len());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn sequential_mints(
        &mut self,
        count: usize,
    ) -> anyhow::Result<Vec<Duration>> {
        let mut latencies = Vec::with_capacity(count);
        for _ in 0..count {
            let id = Self::request_mint(self.sim.clone(), self.ap, self.spec())
                .await?;
            for (confirmed, called_back) in self.called_back(&[id]).await? {
                latencies.push((called_back - confirmed).to_std()?);
            }
        }
        latencies.sort_unstable();
        Ok(latencies)
    }

    async fn burst(&mut self, count: usize) -> anyhow::Result<Burst> {
        // Below the service's 64 connections per client: the requests are
        // not what is measured.
        let open = Arc::new(Semaphore::new(REQUESTS_AT_ONCE));
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..count {
            let (sim, ap, spec, open) =
                (self.sim.clone(), self.ap, self.spec(), Arc::clone(&open));
            requests.spawn(async move {
                let _permit = open.acquire_owned().await?;
                Self::request_mint(sim, ap, spec).await
            });
        }
        let mut ids = Vec::with_capacity(count);
        while let Some(id) = requests.join_next().await {
            ids.push(id??);
        }
        let stamps = self.called_back(&ids).await?;
        let first_confirm = stamps.iter().map(|(c, _)| *c).min();
        let last_confirm = stamps.iter().map(|(c, _)| *c).max();
        let last_callback = stamps.iter().map(|(_, b)| *b).max();
        let (Some(first), Some(last), Some(done)) =
            (first_confirm, last_confirm, last_callback)
        else {
            bail!("an empty burst");
        };
        Ok(Burst {
            all_called_back: (done - first).to_std()?,
            confirm_spread: (last - first).to_std()?,
        })
    }

    async fn redemptions(&self, count: usize) -> anyhow::Result<Vec<Duration>> {
        let bot = self.chain.bot.address();
        // A thousandth of a share each: the AP holds one share per mint.
        let amount = U256::from(10_u64.pow(15));
        let vault = self.chain.vault_as(&self.chain.ap);
        let mut latencies = Vec::with_capacity(count);
        for k in 0..count {
            // Sent right after the last redeem call, each transfer would
            // land at the same phase of the monitor's head poll (just
            // after a poll: the worst case). A pause spread over 0..1 s
            // puts them at every phase, as real transfers arrive.
            let spread = u64::try_from(k)?.saturating_mul(97) % 1000;
            tokio::time::sleep(Duration::from_millis(spread)).await;
            let sent = Utc::now();
            let receipt = vault
                .transfer(bot, amount)
                .send()
                .await?
                .get_receipt()
                .await?;
            ensure!(receipt.status(), "the AP's transfer reverted");
            let id = format!("{:#x}-", receipt.transaction_hash);
            let deadline = Instant::now() + PATIENCE;
            let called = loop {
                let found = self.sim.redeem_calls().into_iter().find(|call| {
                    call.json().is_some_and(|body| {
                        body["issuer_request_id"]
                            .as_str()
                            .is_some_and(|got| got.starts_with(&id))
                    })
                });
                if let Some(call) = found {
                    break call.at;
                }
                ensure!(
                    Instant::now() < deadline,
                    "no redeem call for the transfer {id}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            latencies.push((called - sent).to_std()?);
        }
        latencies.sort_unstable();
        Ok(latencies)
    }
}

/// When the simulator recorded each request to `endpoint` (the first per
/// tokenization request id).
fn stamps(
    sim: &SimHandle,
    endpoint: Endpoint,
) -> HashMap<String, DateTime<Utc>> {
    let mut stamps = HashMap::new();
    for request in sim.requests_to(endpoint) {
        let Some(body) = request.json() else { continue };
        if let Some(id) = body["tokenization_request_id"].as_str() {
            stamps.entry(id.to_owned()).or_insert(request.at);
        }
    }
    stamps
}
