//! Starting and stopping the three running parts: anvil with the vault
//! stack, the ITN simulator playing Alpaca, and the service, started the
//! way `issuance-bot serve` starts it (`start_service` on a config file).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use issuance_bot::config::{Config, ConfigError};
use issuance_bot::{RunningService, StartupError, start_service};
use itn_sim::{SimConfig, SimError, SimHandle, Simulator, Url, WireVersion};
use receipt_vault::deploy::VaultStack;
use receipt_vault::testing::{LocalChain, LocalChainError};
use tempfile::TempDir;

use crate::credentials::Credentials;
use crate::report::{StepLog, Tag};

/// The asset the demo lists, mints and redeems.
pub const UNDERLYING: &str = "AAPL";
pub const TOKEN: &str = "tAAPL";
pub const TOKEN_NAME: &str = "Tokenized Apple Inc.";
pub const NETWORK: &str = "base";
/// The second chain's network: its own anvil and vault, the same asset.
pub const SECOND_NETWORK: &str = "ethereum";
/// Its chain id (the first anvil keeps anvil's default, 31337).
pub const SECOND_CHAIN_ID: u64 = 1;

/// How the devnet is started (from the command line).
#[derive(Debug, Clone)]
pub struct Settings {
    /// 0 picks any free port.
    pub service_port: u16,
    pub sim_port: u16,
    pub wire: WireVersion,
    /// Keep the database and config after exit.
    pub keep_db: bool,
    /// Delay between Alpaca accepting a request and journaling it; long
    /// enough that each state can be seen, short enough not to bore.
    pub journal_delay: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the working directory: {0}")]
    WorkDir(#[source] std::io::Error),
    #[error("cannot write the service config {}: {source}", path.display())]
    WriteConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("anvil and the vault stack: {0}")]
    Chain(#[from] LocalChainError),
    #[error("the ITN simulator: {0}")]
    Sim(#[from] SimError),
    #[error("the service config: {0}")]
    Config(#[from] ConfigError),
    #[error("the service: {0}")]
    Service(#[from] StartupError),
    #[error("the service address {addr} is not a URL: {reason}")]
    ServiceUrl { addr: SocketAddr, reason: String },
}

/// The run's files: a temporary directory, or a kept one (`--keep-db`),
/// kept from the start so that even a crash leaves it behind.
#[derive(Debug)]
pub enum WorkDir {
    Temporary(TempDir),
    Kept(PathBuf),
}

impl WorkDir {
    fn create(keep: bool) -> Result<Self, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("issuance-devnet-")
            .tempdir()
            .map_err(StartError::WorkDir)?;
        Ok(if keep {
            Self::Kept(dir.keep())
        } else {
            Self::Temporary(dir)
        })
    }

    pub fn path(&self) -> &Path {
        match self {
            Self::Temporary(dir) => dir.path(),
            Self::Kept(path) => path,
        }
    }

    pub fn database(&self) -> PathBuf {
        self.path().join("issuance.db")
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("issuance.toml")
    }
}

/// The second chain (ethereum): its anvil and the tAAPL vault on it.
pub struct SecondChain {
    pub chain: LocalChain,
    pub vault: VaultStack,
}

/// Everything the devnet started; [`Devnet::stop`] stops all of it.
pub struct Devnet {
    /// The base chain.
    pub chain: LocalChain,
    /// The tAAPL vault the asset is listed against on base.
    pub vault: VaultStack,
    /// The ethereum chain, with the asset listed there too.
    pub second: SecondChain,
    pub sim: SimHandle,
    service: RunningService,
    pub service_url: Url,
    pub credentials: Credentials,
    pub dir: WorkDir,
}

impl Devnet {
    pub async fn start(
        settings: &Settings,
        log: &StepLog,
    ) -> Result<Self, StartError> {
        let dir = WorkDir::create(settings.keep_db)?;
        let credentials = Credentials::generate();

        let chain = LocalChain::start().await?;
        log.step(
            Tag::Chain,
            format!(
                "anvil {} (pid {}, chain id {})",
                chain.rpc_url,
                chain.anvil.child().id(),
                chain.anvil.chain_id()
            ),
        );
        let vault = chain.add_vault(TOKEN_NAME, TOKEN).await?;
        log.step(
            Tag::Chain,
            format!(
                "vault stack deployed: {TOKEN} vault {} receipt {} authorizer \
                 {} (factory {})",
                vault.vault, vault.receipt, vault.authorizer, vault.factory
            ),
        );
        log.step(
            Tag::Chain,
            format!(
                "bot wallet {} (anvil key 0) holds DEPOSIT and WITHDRAW; \
                 vault certified; AP wallet {} is anvil key 1",
                chain.bot.address(),
                chain.ap.address()
            ),
        );

        let second_chain = LocalChain::start_on(SECOND_CHAIN_ID).await?;
        log.step(
            Tag::Chain,
            format!(
                "anvil {} (pid {}, chain id {}) serves {SECOND_NETWORK}",
                second_chain.rpc_url,
                second_chain.anvil.child().id(),
                second_chain.anvil.chain_id()
            ),
        );
        let second_vault = second_chain.add_vault(TOKEN_NAME, TOKEN).await?;
        log.step(
            Tag::Chain,
            format!(
                "{SECOND_NETWORK} vault stack deployed: {TOKEN} vault {} \
                 (same bot and AP keys)",
                second_vault.vault
            ),
        );
        let second = SecondChain {
            chain: second_chain,
            vault: second_vault,
        };

        let sim = Simulator::spawn(SimConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, settings.sim_port)),
            issuer_api_key: credentials.alpaca.as_str().to_owned(),
            wire: settings.wire,
            broker_key_id: credentials.broker_key_id.as_str().to_owned(),
            broker_secret: credentials.broker_secret.as_str().to_owned(),
            journal_delay: settings.journal_delay,
            redeem_settle_delay: settings.journal_delay,
            ..SimConfig::default()
        })
        .await?;
        log.step(
            Tag::Sim,
            format!(
                "Alpaca ITN simulator at {} (wire {}, issuer account {})",
                sim.base_url(),
                wire_name(settings.wire),
                sim.issuer_account_id()
            ),
        );

        let service = match start_issuer(
            settings,
            &dir,
            &chain,
            &second.chain,
            &sim,
            &credentials,
        )
        .await
        {
            Ok(service) => service,
            Err(error) => {
                sim.shutdown().await;
                return Err(error);
            }
        };
        let addr = service.local_addr();
        let service_url = match Url::parse(&format!("http://{addr}")) {
            Ok(url) => url,
            Err(error) => {
                stop_service(service, log).await;
                sim.shutdown().await;
                return Err(StartError::ServiceUrl {
                    addr,
                    reason: error.to_string(),
                });
            }
        };
        sim.set_issuer_base_url(service_url.clone());
        log.step(
            Tag::Service,
            format!(
                "issuance-bot at {service_url} (database {})",
                dir.database().display()
            ),
        );
        Ok(Self {
            chain,
            vault,
            second,
            sim,
            service,
            service_url,
            credentials,
            dir,
        })
    }

    /// Stops the service (as SIGTERM would), the simulator and anvil, in
    /// that order, and removes the temporary files unless kept.
    pub async fn stop(self, log: &StepLog) {
        let Self {
            chain,
            second,
            sim,
            service,
            dir,
            ..
        } = self;
        stop_service(service, log).await;
        sim.shutdown().await;
        log.step(Tag::Sim, "simulator stopped");
        for chain in [chain, second.chain] {
            let pid = chain.anvil.child().id();
            // Dropping the instance kills anvil and reaps it; that blocks.
            match tokio::task::spawn_blocking(move || drop(chain)).await {
                Ok(()) => {
                    log.step(Tag::Chain, format!("anvil (pid {pid}) stopped"));
                }
                Err(error) => log.step(
                    Tag::Chain,
                    format!("stopping anvil (pid {pid}) failed: {error}"),
                ),
            }
        }
        match dir {
            WorkDir::Temporary(dir) => {
                let path = dir.path().to_owned();
                match dir.close() {
                    Ok(()) => log.step(
                        Tag::Devnet,
                        format!("removed {}", path.display()),
                    ),
                    Err(error) => log.step(
                        Tag::Devnet,
                        format!("could not remove {}: {error}", path.display()),
                    ),
                }
            }
            WorkDir::Kept(path) => log.step(
                Tag::Devnet,
                format!("kept the database and config in {}", path.display()),
            ),
        }
    }
}

const fn wire_name(wire: WireVersion) -> &'static str {
    match wire {
        WireVersion::Oldest => "oldest",
        WireVersion::Middle => "middle",
        WireVersion::Current => "current",
    }
}

async fn start_issuer(
    settings: &Settings,
    dir: &WorkDir,
    chain: &LocalChain,
    second: &LocalChain,
    sim: &SimHandle,
    credentials: &Credentials,
) -> Result<RunningService, StartError> {
    let path = dir.config();
    let toml = service_config(&ServiceConfigInputs {
        port: settings.service_port,
        database: &dir.database(),
        credentials,
        alpaca_url: &sim.base_url(),
        alpaca_account: sim.issuer_account_id(),
        rpc_url: &chain.rpc_url,
        chain_id: chain.anvil.chain_id(),
        second_rpc_url: &second.rpc_url,
        second_chain_id: second.anvil.chain_id(),
        bot_private_key: &chain.bot.to_bytes().to_string(),
    });
    std::fs::write(&path, toml).map_err(|source| StartError::WriteConfig {
        path: path.clone(),
        source,
    })?;
    // The file alone, as `serve --config` would read it; the devnet
    // ignores ISSUANCE_* variables so a stray one cannot change the demo.
    let config = Config::from_sources(Some(&path), Vec::new())?;
    Ok(start_service(config).await?)
}

async fn stop_service(service: RunningService, log: &StepLog) {
    match service.stop().await {
        Ok(()) => log.step(Tag::Service, "service stopped"),
        Err(error) => {
            log.step(Tag::Service, format!("service stopped with: {error}"));
        }
    }
}

/// What the service's config file is rendered from.
pub struct ServiceConfigInputs<'a> {
    pub port: u16,
    pub database: &'a Path,
    pub credentials: &'a Credentials,
    pub alpaca_url: &'a Url,
    pub alpaca_account: uuid::Uuid,
    pub rpc_url: &'a Url,
    pub chain_id: u64,
    /// The second chain (ethereum); the bot signs there with the same key.
    pub second_rpc_url: &'a Url,
    pub second_chain_id: u64,
    pub bot_private_key: &'a str,
}

/// The service's TOML config: loopback-only auth, the simulator as
/// Alpaca, anvil as the chain, and short polling intervals so the demo
/// moves at the speed of a person reading it.
pub fn service_config(inputs: &ServiceConfigInputs<'_>) -> String {
    let ServiceConfigInputs {
        port,
        database,
        credentials,
        alpaca_url,
        alpaca_account,
        rpc_url,
        chain_id,
        second_rpc_url,
        second_chain_id,
        bot_private_key,
    } = inputs;
    format!(
        r#"# Written by the devnet for one run; see docs/config.example.toml.
[server]
bind = "127.0.0.1:{port}"

[database]
url = "sqlite://{database}"
max_connections = 4

[auth]
failures_per_minute = 30

[auth.alpaca]
api_key = "{alpaca_key}"
allowed_cidrs = ["127.0.0.0/8", "::1/128"]

[auth.internal]
api_key = "{internal_key}"
allowed_cidrs = ["127.0.0.0/8", "::1/128"]

[alpaca]
base_url = "{alpaca_url}"
account_id = "{alpaca_account}"
api_key_id = "{broker_key_id}"
api_secret = "{broker_secret}"
retry_min_delay_ms = 100
retry_max_delay_ms = 1000

[chains.{NETWORK}]
rpc_url = "{rpc_url}"
chain_id = {chain_id}
private_key = "{bot_private_key}"
max_fee_per_gas_gwei = 100
max_priority_fee_per_gas_gwei = 1
receipt_poll_interval_ms = 100

[chains.{SECOND_NETWORK}]
rpc_url = "{second_rpc_url}"
chain_id = {second_chain_id}
private_key = "{bot_private_key}"
max_fee_per_gas_gwei = 100
max_priority_fee_per_gas_gwei = 1
receipt_poll_interval_ms = 100

[redemption]
monitor_interval_ms = 250
"#,
        database = database.display(),
        alpaca_key = credentials.alpaca,
        internal_key = credentials.internal,
        broker_key_id = credentials.broker_key_id,
        broker_secret = credentials.broker_secret,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendered_config_is_one_the_service_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = Credentials::generate();
        let alpaca_url = Url::parse("http://127.0.0.1:9100").unwrap();
        let rpc_url = Url::parse("http://127.0.0.1:8545").unwrap();
        let account = uuid::Uuid::new_v4();
        let toml = service_config(&ServiceConfigInputs {
            port: 8080,
            database: &dir.path().join("issuance.db"),
            credentials: &credentials,
            alpaca_url: &alpaca_url,
            alpaca_account: account,
            rpc_url: &rpc_url,
            chain_id: 31337,
            second_rpc_url: &Url::parse("http://127.0.0.1:8546").unwrap(),
            second_chain_id: 1,
            bot_private_key: "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        });
        let path = dir.path().join("issuance.toml");
        std::fs::write(&path, toml).unwrap();

        let config = Config::from_sources(Some(&path), Vec::new()).unwrap();
        assert_eq!(config.server.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.chains.len(), 2);
        let second = config.chains.iter().nth(1).unwrap();
        assert_eq!(second.network.to_string(), SECOND_NETWORK);
        assert_eq!(second.chain_id, 1);
        let chain = config.chains.iter().next().unwrap();
        assert_eq!(chain.chain_id, 31337);
        assert_eq!(chain.network.to_string(), NETWORK);
        assert_eq!(chain.rpc_url.as_str(), "http://127.0.0.1:8545/");
        let alpaca = config.alpaca.unwrap();
        assert_eq!(alpaca.account_id, account);
        assert_eq!(alpaca.api_key_id, credentials.broker_key_id.as_str());
        assert_eq!(config.redemption.monitor_interval_ms.get(), 250);
        assert!(config.database.url.as_str().contains("issuance.db"));
    }

    #[test]
    fn a_kept_work_dir_survives_its_owner() {
        let dir = WorkDir::create(true).unwrap();
        let path = dir.path().to_owned();
        drop(dir);
        assert!(path.is_dir());
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn a_temporary_work_dir_is_removed_with_its_owner() {
        let dir = WorkDir::create(false).unwrap();
        let path = dir.path().to_owned();
        assert!(path.is_dir());
        drop(dir);
        assert!(!path.exists());
    }
}
