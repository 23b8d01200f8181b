//! The whole system on one machine: anvil with the vault stack
//! (`LocalChain`), the ITN simulator playing Alpaca, and the service
//! started exactly as `serve` starts it (`start_service`) on a real port.
//! Tests talk to the service over HTTP and observe the chain and the
//! simulator; nothing reaches into the service's database.

use std::future::Future;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use issuance_bot::config::Config;
use issuance_bot::{RunningService, start_service};
use itn_sim::{
    ApId, ApSpec, ClientIdMode, IssuerSigning, MintOutcome, MintSpec,
    SignedBody, SimConfig, SimHandle, Simulator, WireVersion,
};
use receipt_vault::OffchainAssetReceiptVault;
use receipt_vault::testing::LocalChain;
use rpc_fault_proxy::RpcFaultProxy;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tempfile::TempDir;

pub const ALPACA_KEY: &str = "e2e-alpaca-key-aaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const INTERNAL_KEY: &str = "e2e-internal-key-bbbbbbbbbbbbbbbbbbbbbbbb";
/// The `keyid` of Alpaca's signing key with [`Options::signatures`].
pub const ALPACA_KEYID: &str = "alpaca-issuer-e2e-01";
pub const UNDERLYING: &str = "AAPL";
pub const TOKEN: &str = "tAAPL";
pub const NETWORK: &str = "base";
/// The second chain's network with [`Options::second_chain`].
pub const SECOND_NETWORK: &str = "ethereum";
/// Its chain id (anvil's default, base's here, is 31337).
pub const SECOND_CHAIN_ID: u64 = 1;
/// Generous: a mint is a few RPC round trips on an instant-mining chain.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `predicate` every 25 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut predicate: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if predicate().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An AP that Alpaca names by `client_account_id` (affiliated flow).
pub struct AffiliatedAp {
    pub ap: ApId,
    /// Our id for it (never sent to Alpaca on this flow).
    pub client_id: String,
    /// Its allow-listed wallet.
    pub wallet: PrivateKeySigner,
}

/// How to start an [`Env`].
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent switches, each off by default"
)]
pub struct Options {
    pub wire: WireVersion,
    /// Put a fault-injecting JSON-RPC proxy between the service and anvil
    /// ([`Env::proxy`]); tests use it to make the node lie, lag or hang.
    pub rpc_proxy: bool,
    /// Extra `[chain]` lines (timeouts, ...).
    pub chain_toml: &'static str,
    /// Adjusts the simulator's configuration before it starts.
    pub tune_sim: fn(&mut SimConfig),
    /// Alpaca authenticates by RFC 9421 signature (`scheme =
    /// "signature"`, its public key read from a file) instead of
    /// X-API-KEY: the simulator signs every call, and so do the tests'
    /// own calls as Alpaca ([`Env::post_alpaca`], [`Env::get_alpaca`]).
    pub signatures: bool,
    /// Serve `/metrics` on a port of its own ([`Env::metrics_url`]). This
    /// installs the process-wide recorder, which can happen once per
    /// process: such an `Env` cannot be restarted.
    pub metrics: bool,
    /// A second chain, ethereum ([`Env::second`]): its own anvil (chain
    /// id 1, same keys, so the issuer wallet is the same address) behind
    /// its own fault proxy, with AAPL listed on it. The config then
    /// uses `[chains.base]` and `[chains.ethereum]`.
    pub second_chain: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            wire: WireVersion::Oldest,
            rpc_proxy: false,
            chain_toml: "",
            tune_sim: |_| {},
            signatures: false,
            metrics: false,
            second_chain: false,
        }
    }
}

/// The second chain of [`Options::second_chain`].
pub struct SecondChain {
    /// The tests' own view, direct.
    pub chain: LocalChain,
    /// The service's view: stop it with `faults().set_unreachable(true)`.
    pub proxy: RpcFaultProxy,
    pub vault: Address,
}

/// Who a test request claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// Alpaca, with whatever credentials the service expects from it.
    Alpaca,
    Internal,
}

pub struct Env {
    pub chain: LocalChain,
    /// The service's view of the chain when started with
    /// [`Options::rpc_proxy`]; the tests' own view is `chain`, direct.
    pub proxy: Option<RpcFaultProxy>,
    pub sim: SimHandle,
    service: Option<RunningService>,
    pub base_url: String,
    http: reqwest::Client,
    pub ap: ApId,
    /// Our id for the AP (from registration; Alpaca learnt it at linking).
    pub client_id: String,
    pub ap_wallet: Address,
    pub vault: Address,
    /// With [`Options::second_chain`].
    pub second: Option<SecondChain>,
    config_path: std::path::PathBuf,
    _dir: TempDir,
}

/// `[auth.alpaca]`: the API key, or Alpaca's public key in a file.
fn alpaca_auth_toml(dir: &TempDir, sim: &SimHandle) -> String {
    let Some(signing) = &sim.config().issuer_signing else {
        return format!("api_key = \"{ALPACA_KEY}\"");
    };
    let pem = dir.path().join("alpaca-signing.pem");
    std::fs::write(&pem, signing.public_key_pem()).unwrap();
    format!(
        "scheme = \"signature\"\n\
         [[auth.alpaca.signature_keys]]\n\
         keyid = \"{}\"\n\
         public_key_file = \"{}\"",
        signing.keyid(),
        pem.display()
    )
}

/// The chain sections: the older `[chain]` for one chain, or one
/// `[chains.<network>]` table each with a second one.
fn chains_toml(
    chain: &LocalChain,
    rpc_url: &str,
    chain_toml: &str,
    second: Option<&SecondChain>,
) -> String {
    let private_key = chain.bot.to_bytes();
    let common = "max_fee_per_gas_gwei = 100\n\
                  max_priority_fee_per_gas_gwei = 1\n\
                  receipt_poll_interval_ms = 50";
    let Some(second) = second else {
        return format!(
            "[chain]\nrpc_url = \"{rpc_url}\"\nchain_id = 31337\n\
             network = \"{NETWORK}\"\nprivate_key = \"{private_key}\"\n\
             {common}\n{chain_toml}\n"
        );
    };
    format!(
        "[chains.{NETWORK}]\nrpc_url = \"{rpc_url}\"\nchain_id = 31337\n\
         private_key = \"{private_key}\"\n{common}\n{chain_toml}\n\n\
         [chains.{SECOND_NETWORK}]\nrpc_url = \"{}\"\n\
         chain_id = {SECOND_CHAIN_ID}\nprivate_key = \"{}\"\n{common}\n\
         rpc_timeout_ms = 500\nstep_timeout_ms = 2000\n",
        second.proxy.url(),
        second.chain.bot.to_bytes(),
    )
}

fn config_toml(
    dir: &TempDir,
    chains: &str,
    sim: &SimHandle,
    metrics: bool,
) -> String {
    let metrics_toml = if metrics {
        "[metrics]\nbind = \"127.0.0.1:0\"\n"
    } else {
        ""
    };
    let sim_config = sim.config();
    format!(
        r#"
[server]
bind = "127.0.0.1:0"

[database]
url = "sqlite://{db}"
max_connections = 4

[auth]
failures_per_minute = 1000

[auth.alpaca]
{alpaca_auth}

[auth.internal]
api_key = "{INTERNAL_KEY}"

[alpaca]
base_url = "{alpaca_url}"
account_id = "{account_id}"
api_key_id = "{key_id}"
api_secret = "{secret}"
max_retries = 5
retry_min_delay_ms = 10
retry_max_delay_ms = 50

{chains}
[redemption]
monitor_interval_ms = 100

{metrics_toml}
"#,
        db = dir.path().join("bot.db").display(),
        alpaca_auth = alpaca_auth_toml(dir, sim),
        alpaca_url = sim.base_url(),
        account_id = sim.issuer_account_id(),
        key_id = sim_config.broker_key_id,
        secret = sim_config.broker_secret,
    )
}

impl Env {
    /// Chain, simulator and service up; AAPL listed as tAAPL on base
    /// against the test vault; one AP registered, linked by Alpaca and
    /// with anvil key 1 allow-listed; the AP holds 1000 AAPL at Alpaca.
    /// Alpaca speaks the oldest wire.
    pub async fn start() -> Self {
        Self::start_with(WireVersion::Oldest).await
    }

    /// As [`Env::start`], with Alpaca speaking `wire`.
    pub async fn start_with(wire: WireVersion) -> Self {
        Self::start_opts(Options {
            wire,
            ..Options::default()
        })
        .await
    }

    /// As [`Env::start`], as `options` say.
    pub async fn start_opts(options: Options) -> Self {
        let Options {
            wire,
            rpc_proxy,
            chain_toml,
            tune_sim,
            signatures,
            metrics,
            second_chain,
        } = options;
        let chain = LocalChain::start().await.unwrap();
        let second = if second_chain {
            let chain = LocalChain::start_on(SECOND_CHAIN_ID).await.unwrap();
            let proxy =
                RpcFaultProxy::start(chain.rpc_url.as_ref()).await.unwrap();
            let vault = chain.stack.vault;
            Some(SecondChain {
                chain,
                proxy,
                vault,
            })
        } else {
            None
        };
        let proxy = if rpc_proxy {
            Some(RpcFaultProxy::start(chain.rpc_url.as_ref()).await.unwrap())
        } else {
            None
        };
        let rpc_url = proxy
            .as_ref()
            .map_or_else(|| chain.rpc_url.to_string(), RpcFaultProxy::url);
        let mut sim_config = SimConfig {
            wire,
            issuer_api_key: ALPACA_KEY.into(),
            issuer_signing: signatures
                .then(|| IssuerSigning::generate(ALPACA_KEYID)),
            journal_delay: Duration::from_millis(10),
            confirm_retry_delay: Duration::from_millis(10),
            ..SimConfig::default()
        };
        tune_sim(&mut sim_config);
        let sim = Simulator::spawn(sim_config).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issuance.toml");
        std::fs::write(
            &path,
            config_toml(
                &dir,
                &chains_toml(&chain, &rpc_url, chain_toml, second.as_ref()),
                &sim,
                metrics,
            ),
        )
        .unwrap();
        let service = Self::launch(&path).await;
        let base_url = format!("http://{}", service.local_addr());
        sim.set_issuer_base_url(base_url.parse().unwrap());
        let ap_wallet = chain.ap.address();
        let vault = chain.stack.vault;
        let mut env = Self {
            ap: sim.add_ap(ApSpec {
                email: "desk@ap.example.com".into(),
                account_number: "AP-0001".into(),
                positions: vec![(UNDERLYING.into(), Decimal::from(1000))],
                id_mode: itn_sim::ClientIdMode::External,
            }),
            chain,
            proxy,
            sim,
            service: Some(service),
            base_url,
            http: reqwest::Client::new(),
            client_id: String::new(),
            ap_wallet,
            vault,
            second,
            config_path: path,
            _dir: dir,
        };
        env.set_up_issuer().await;
        env
    }

    /// `GET /metrics` of the running service, when started with
    /// [`Options::metrics`].
    #[allow(dead_code, reason = "not every test binary scrapes metrics")]
    pub fn metrics_url(&self) -> Option<String> {
        self.service
            .as_ref()
            .and_then(RunningService::metrics_addr)
            .map(|addr| format!("http://{addr}/metrics"))
    }

    /// The service's configuration file (to start it another way).
    #[allow(dead_code, reason = "used by the crash campaign target")]
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    async fn launch(config_path: &std::path::Path) -> RunningService {
        let config =
            Config::from_sources(Some(config_path), Vec::new()).unwrap();
        // Boxed: the service future is large, and every test awaits it.
        Box::pin(start_service(config)).await.unwrap()
    }

    /// Stops the service as SIGTERM would and starts a new one on the
    /// same database (and a new port, which Alpaca is told).
    pub async fn restart(&mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await.unwrap();
        }
        let service = Self::launch(&self.config_path).await;
        self.base_url = format!("http://{}", service.local_addr());
        self.sim.set_issuer_base_url(self.base_url.parse().unwrap());
        self.service = Some(service);
    }

    /// Stops the service as SIGTERM would, leaving it down until
    /// [`Env::resume`] (chain and simulator keep running).
    pub async fn pause(&mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await.unwrap();
        }
    }

    /// Starts the service again on the same database after [`Env::pause`].
    pub async fn resume(&mut self) {
        assert!(self.service.is_none(), "the service is still running");
        self.restart().await;
    }

    async fn set_up_issuer(&mut self) {
        let (status, body) = self
            .post_internal(
                "/tokenized-assets",
                &json!({
                    "underlying": UNDERLYING,
                    "token": TOKEN,
                    "network": NETWORK,
                    "vault": self.vault.to_string(),
                }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        if let Some(second) = &self.second {
            let (status, body) = self
                .post_internal(
                    "/tokenized-assets",
                    &json!({
                        "underlying": UNDERLYING,
                        "token": TOKEN,
                        "network": SECOND_NETWORK,
                        "vault": second.vault.to_string(),
                    }),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
        let (status, body) = self
            .post_internal(
                "/accounts",
                &json!({ "email": "desk@ap.example.com" }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["client_id"]
            .as_str()
            .unwrap()
            .clone_into(&mut self.client_id);
        let (status, body) = self
            .post_internal(
                &format!("/accounts/{}/wallets", self.client_id),
                &json!({ "wallet": self.ap_wallet.to_string() }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let linked = self.sim.link_ap(self.ap).await.unwrap();
        assert_eq!(linked, self.client_id);
    }

    /// A second AP on the affiliated flow: Alpaca names it by its Alpaca
    /// account UUID; we registered it, recorded that UUID and allow-listed
    /// anvil key `key_index`; it was never linked. It holds 1000 AAPL.
    pub async fn add_affiliated_ap(&self, key_index: usize) -> AffiliatedAp {
        let wallet = self.chain.signer(key_index).unwrap();
        let ap = self.sim.add_ap(ApSpec {
            email: "corr@ap.example.com".into(),
            account_number: "AP-0002".into(),
            positions: vec![(UNDERLYING.into(), Decimal::from(1000))],
            id_mode: ClientIdMode::Affiliated,
        });
        let (status, body) = self
            .post_internal(
                "/accounts",
                &json!({ "email": "corr@ap.example.com" }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let client_id = body["client_id"].as_str().unwrap().to_owned();
        let (status, body) = self
            .send(
                reqwest::Method::PUT,
                &format!("/accounts/{client_id}/alpaca-account-id"),
                Caller::Internal,
                Some(json!({ "alpaca_account_id": ap.uuid() }).to_string()),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = self
            .post_internal(
                &format!("/accounts/{client_id}/wallets"),
                &json!({ "wallet": wallet.address().to_string() }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        AffiliatedAp {
            ap,
            client_id,
            wallet,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        caller: Caller,
        body: Option<String>,
    ) -> (u16, Value) {
        let url: reqwest::Url =
            format!("{}{path}", self.base_url).parse().unwrap();
        let mut request = self.http.request(method.clone(), url.clone());
        match (caller, &self.sim.config().issuer_signing) {
            (Caller::Alpaca, Some(signing)) => {
                let signed = body.as_ref().map(|body| SignedBody {
                    content_type: "application/json",
                    bytes: body.as_bytes(),
                });
                for (name, value) in signing.sign(method.as_str(), &url, signed)
                {
                    request = request.header(name, value);
                }
            }
            (Caller::Alpaca, None) => {
                request = request.header("X-API-KEY", ALPACA_KEY);
            }
            (Caller::Internal, _) => {
                request = request.header("X-API-KEY", INTERNAL_KEY);
            }
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON answer {status}: {text:?}"));
        (status, value)
    }

    pub async fn post_alpaca(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_alpaca_raw(path, body.to_string()).await
    }

    /// POSTs `body` as Alpaca: with its API key, or signed.
    pub async fn post_alpaca_raw(
        &self,
        path: &str,
        body: String,
    ) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Caller::Alpaca, Some(body))
            .await
    }

    pub async fn post_internal(
        &self,
        path: &str,
        body: &Value,
    ) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Caller::Internal,
            Some(body.to_string()),
        )
        .await
    }

    pub async fn get_alpaca(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, Caller::Alpaca, None)
            .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, Caller::Internal, None)
            .await
    }

    pub async fn get_mint(&self, issuer_request_id: &str) -> (u16, Value) {
        self.send(
            reqwest::Method::GET,
            &format!("/mints/{issuer_request_id}"),
            Caller::Internal,
            None,
        )
        .await
    }

    /// What an AP asks Alpaca for: `qty` AAPL to the allow-listed wallet.
    pub fn mint_spec(&self, qty: &str) -> MintSpec {
        MintSpec {
            underlying: UNDERLYING.into(),
            token: TOKEN.into(),
            network: NETWORK.into(),
            qty: qty.parse().unwrap(),
            wallet: self.ap_wallet.to_string(),
        }
    }

    /// The AP asks Alpaca to mint; Alpaca sends us the request, then
    /// journals and confirms in the background.
    pub async fn request_mint(&self, qty: &str) -> MintOutcome {
        self.request_mint_on(NETWORK, qty).await
    }

    /// As [`Env::request_mint`], on `network`.
    pub async fn request_mint_on(
        &self,
        network: &str,
        qty: &str,
    ) -> MintOutcome {
        let spec = MintSpec {
            network: network.into(),
            ..self.mint_spec(qty)
        };
        let outcome = self.sim.request_mint(self.ap, spec).await.unwrap();
        assert_eq!(outcome.issuer_response_status, 200, "{outcome:?}");
        outcome
    }

    /// Waits until `GET /mints` shows `status`, then returns the mint.
    pub async fn wait_for_status(
        &self,
        issuer_request_id: &str,
        status: &str,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let (_, mint) = self.get_mint(issuer_request_id).await;
            if mint["status"] == status {
                return mint;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mint never reached {status}; last seen {mint}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn share_balance(&self, owner: Address) -> U256 {
        self.chain.share_balance(owner).await.unwrap()
    }

    pub async fn receipt_balance(&self, owner: Address, id: u64) -> U256 {
        self.chain
            .receipt_balance(owner, U256::from(id))
            .await
            .unwrap()
    }

    /// The last receipt id the vault handed out (0 before any deposit).
    pub async fn highwater(&self) -> U256 {
        self.chain
            .vault_as(&self.chain.bot)
            .highwaterId()
            .call()
            .await
            .unwrap()
    }

    /// Every `Deposit` event the vault ever emitted.
    pub async fn deposit_logs(&self) -> usize {
        let filter = Filter::new()
            .address(self.vault)
            .event_signature(OffchainAssetReceiptVault::Deposit::SIGNATURE_HASH)
            .from_block(0);
        self.chain.provider().get_logs(&filter).await.unwrap().len()
    }

    /// The fault proxy's rules (the env must have been started with
    /// [`Options::rpc_proxy`]).
    pub fn faults(&self) -> rpc_fault_proxy::Faults {
        self.proxy
            .as_ref()
            .expect("started without the RPC proxy")
            .faults()
    }

    /// Every `Deposit` event the vault ever emitted, with its transaction.
    pub async fn deposit_tx_hashes(&self) -> Vec<alloy::primitives::TxHash> {
        let filter = Filter::new()
            .address(self.vault)
            .event_signature(OffchainAssetReceiptVault::Deposit::SIGNATURE_HASH)
            .from_block(0);
        self.chain
            .provider()
            .get_logs(&filter)
            .await
            .unwrap()
            .iter()
            .map(|log| log.transaction_hash.unwrap())
            .collect()
    }

    /// Every `Withdraw` event the vault ever emitted, with its transaction.
    pub async fn withdraw_tx_hashes(&self) -> Vec<alloy::primitives::TxHash> {
        let filter = Filter::new()
            .address(self.vault)
            .event_signature(
                OffchainAssetReceiptVault::Withdraw::SIGNATURE_HASH,
            )
            .from_block(0);
        self.chain
            .provider()
            .get_logs(&filter)
            .await
            .unwrap()
            .iter()
            .map(|log| log.transaction_hash.unwrap())
            .collect()
    }

    /// Every share `Transfer` from the issuer wallet to `to`, with its
    /// transaction.
    pub async fn transfers_from_bot_to(
        &self,
        to: Address,
    ) -> Vec<alloy::primitives::TxHash> {
        let filter = Filter::new()
            .address(self.vault)
            .event_signature(
                OffchainAssetReceiptVault::Transfer::SIGNATURE_HASH,
            )
            .topic1(self.chain.bot.address().into_word())
            .topic2(to.into_word())
            .from_block(0);
        self.chain
            .provider()
            .get_logs(&filter)
            .await
            .unwrap()
            .iter()
            .map(|log| log.transaction_hash.unwrap())
            .collect()
    }

    /// Transactions the issuer wallet has ever sent (its nonce).
    pub async fn bot_nonce(&self) -> u64 {
        self.chain
            .provider()
            .get_transaction_count(self.chain.bot.address())
            .await
            .unwrap()
    }

    /// Stops the service (as SIGTERM would) and the simulator.
    pub async fn stop(mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await.unwrap();
        }
        self.sim.clone().shutdown().await;
        if let Some(proxy) = self.proxy.take() {
            proxy.shutdown().await;
        }
        if let Some(second) = self.second.take() {
            second.proxy.shutdown().await;
        }
    }
}
