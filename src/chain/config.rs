//! `[chains.<network>]` configuration: RPC endpoint, signer source, fee
//! ceilings and polling cadence, one table per chain (each with its issuer
//! wallet). The older single `[chain]` section is read as one chain whose
//! network is its `network` key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use crate::vocabulary::Network;

const WEI_PER_GWEI: u128 = 1_000_000_000;

/// A per-gas price in wei, configured in (possibly fractional) gwei.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WeiPerGas(u128);

impl WeiPerGas {
    pub const fn from_wei(wei: u128) -> Self {
        Self(wei)
    }

    pub const fn wei(self) -> u128 {
        self.0
    }

    /// Parses a gwei amount exactly; more than 9 decimals would be a
    /// fraction of a wei and is rejected rather than rounded.
    pub fn from_gwei(gwei: &str) -> Result<Self, ChainConfigError> {
        let invalid = || ChainConfigError::InvalidGwei {
            value: gwei.to_owned(),
        };
        let value = Decimal::from_str_exact(gwei).map_err(|_| invalid())?;
        if value.is_sign_negative() || value.is_zero() {
            return Err(invalid());
        }
        let wei = value
            .checked_mul(Decimal::from(WEI_PER_GWEI))
            .ok_or_else(invalid)?
            .normalize();
        if wei.scale() != 0 {
            return Err(invalid());
        }
        u128::try_from(wei.mantissa())
            .map(Self)
            .map_err(|_| invalid())
    }
}

impl WeiPerGas {
    /// The amount in gwei, as configured (`"0.01"`); exact.
    pub fn gwei(self) -> String {
        i128::try_from(self.0)
            .ok()
            .and_then(|wei| Decimal::try_from_i128_with_scale(wei, 9).ok())
            .map_or_else(
                || format!("{} wei", self.0),
                |gwei| gwei.normalize().to_string(),
            )
    }
}

impl fmt::Display for WeiPerGas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} wei", self.0)
    }
}

impl<'de> Deserialize<'de> for WeiPerGas {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// TOML integers are accepted for convenience; fractions must be
        /// strings so no float ever touches a fee.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(value) => value.to_string(),
            Raw::Text(text) => text,
        };
        Self::from_gwei(&text).map_err(serde::de::Error::custom)
    }
}

/// Where the keystore password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    File(PathBuf),
    Env(String),
}

/// How the issuer wallet's key is obtained. Exactly one source.
impl ChainConfig {
    /// `rpc_url` with its path and query (where providers put their API
    /// key) redacted.
    pub fn redacted_rpc_url(&self) -> String {
        let origin = self.rpc_url.origin().ascii_serialization();
        if self.rpc_url.path() == "/" && self.rpc_url.query().is_none() {
            origin
        } else {
            format!("{origin}/[REDACTED]")
        }
    }
}

impl fmt::Debug for ChainConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainConfig")
            .field("rpc_url", &self.redacted_rpc_url())
            .field("chain_id", &self.chain_id)
            .field("network", &self.network)
            .field("signer", &self.signer)
            .field("max_fee_per_gas", &self.max_fee_per_gas)
            .field("max_priority_fee_per_gas", &self.max_priority_fee_per_gas)
            .field("receipt_poll_interval", &self.receipt_poll_interval)
            .field("rpc_timeout", &self.rpc_timeout)
            .field("step_timeout", &self.step_timeout)
            .field("unseen_landing_alert", &self.unseen_landing_alert)
            .field("confirmations", &self.confirmations)
            .field("log_chunk_blocks", &self.log_chunk_blocks)
            .field("start_block", &self.start_block)
            .field("gas_limit_margin_percent", &self.gas_limit_margin_percent)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub enum SignerSource {
    /// Raw hex key; for development and tests only.
    PrivateKey(SecretString),
    /// Encrypted JSON keystore (Web3 Secret Storage).
    Keystore {
        path: PathBuf,
        password: PasswordSource,
    },
}

#[derive(Clone)]
pub struct ChainConfig {
    /// May carry a provider API key in its path or query, so Debug shows
    /// only scheme, host and port.
    pub rpc_url: reqwest::Url,
    pub chain_id: u64,
    /// The Alpaca network this chain serves.
    pub network: Network,
    pub signer: SignerSource,
    pub max_fee_per_gas: WeiPerGas,
    pub max_priority_fee_per_gas: WeiPerGas,
    pub receipt_poll_interval: Duration,
    /// Bound on every JSON-RPC call; a hung node becomes an error that the
    /// drivers retry instead of a stalled task.
    pub rpc_timeout: Duration,
    /// Bound on one driver step (all its RPC and Alpaca calls); a step
    /// that takes longer is cancelled, reported and retried.
    pub step_timeout: Duration,
    /// How long a transaction whose nonce is consumed may stay without
    /// visible evidence before it is reported as stuck (it is never
    /// replaced for that).
    pub unseen_landing_alert: Duration,
    /// Blocks a receipt (or a competing nonce) must be buried under before
    /// it counts as final. 0 trusts the latest block (anvil).
    pub confirmations: u64,
    pub log_chunk_blocks: u64,
    pub start_block: u64,
    /// Extra gas on top of the node's estimate, in percent.
    pub gas_limit_margin_percent: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainConfigError {
    #[error("invalid rpc_url {value:?}")]
    InvalidRpcUrl { value: String },
    #[error("rpc_url must use http or https, got {scheme:?}")]
    UnsupportedScheme { scheme: String },
    #[error("set exactly one of private_key or keystore")]
    SignerSourceCount,
    #[error("keystore needs exactly one of password_file or password_env")]
    PasswordSourceCount,
    #[error("invalid gwei amount {value:?}")]
    InvalidGwei { value: String },
    #[error("{field} must be greater than zero")]
    Zero { field: &'static str },
    #[error("{field} is no longer a setting, remove it: {instead}")]
    Removed {
        field: &'static str,
        instead: &'static str,
    },
    #[error(
        "max_priority_fee_per_gas ({priority}) exceeds max_fee_per_gas \
         ({max})"
    )]
    PriorityAboveMax { priority: WeiPerGas, max: WeiPerGas },
    #[error("[chain] needs its network key (or use [chains.<network>])")]
    MissingNetwork,
    #[error(
        "chains.{table}.network is {network:?}: leave it out (the table \
         name is the network) or make it match"
    )]
    NetworkMismatch { table: Network, network: Network },
    #[error(
        "chains.{first} and chains.{second} both have chain_id {chain_id}; \
         each chain needs its own"
    )]
    DuplicateChainId {
        first: Network,
        second: Network,
        chain_id: u64,
    },
    #[error(
        "both [chain] and [chains.*] are set: move [chain] to \
         [chains.{network}] (without its network key)"
    )]
    ChainAndChains { network: Network },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeystore {
    path: PathBuf,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChainConfig {
    rpc_url: String,
    chain_id: u64,
    /// Required in `[chain]`; in `[chains.<network>]` the table name.
    network: Option<Network>,
    private_key: Option<SecretString>,
    keystore: Option<RawKeystore>,
    max_fee_per_gas_gwei: WeiPerGas,
    max_priority_fee_per_gas_gwei: WeiPerGas,
    #[serde(default = "default_poll_ms")]
    receipt_poll_interval_ms: u64,
    /// Removed: only read to refuse it with a message.
    receipt_timeout_secs: Option<u64>,
    #[serde(default = "default_rpc_timeout_ms")]
    rpc_timeout_ms: u64,
    #[serde(default = "default_step_timeout_ms")]
    step_timeout_ms: u64,
    #[serde(default = "default_unseen_landing_alert_secs")]
    unseen_landing_alert_secs: u64,
    #[serde(default)]
    confirmations: u64,
    #[serde(default = "default_chunk")]
    log_chunk_blocks: u64,
    #[serde(default)]
    start_block: u64,
    #[serde(default = "default_margin")]
    gas_limit_margin_percent: u64,
}

const fn default_poll_ms() -> u64 {
    500
}

const fn default_rpc_timeout_ms() -> u64 {
    10_000
}

const fn default_step_timeout_ms() -> u64 {
    120_000
}

const fn default_unseen_landing_alert_secs() -> u64 {
    600
}

const fn default_chunk() -> u64 {
    2000
}

const fn default_margin() -> u64 {
    20
}

impl ChainConfig {
    fn from_raw(
        raw: RawChainConfig,
        network: Network,
    ) -> Result<Self, ChainConfigError> {
        let rpc_url = reqwest::Url::parse(&raw.rpc_url).map_err(|_| {
            ChainConfigError::InvalidRpcUrl {
                value: raw.rpc_url.clone(),
            }
        })?;
        if !matches!(rpc_url.scheme(), "http" | "https") {
            return Err(ChainConfigError::UnsupportedScheme {
                scheme: rpc_url.scheme().to_owned(),
            });
        }
        let signer = match (raw.private_key, raw.keystore) {
            (Some(key), None) => SignerSource::PrivateKey(key),
            (None, Some(keystore)) => {
                let password =
                    match (keystore.password_file, keystore.password_env) {
                        (Some(file), None) => PasswordSource::File(file),
                        (None, Some(var)) => PasswordSource::Env(var),
                        _ => return Err(ChainConfigError::PasswordSourceCount),
                    };
                SignerSource::Keystore {
                    path: keystore.path,
                    password,
                }
            }
            _ => return Err(ChainConfigError::SignerSourceCount),
        };
        let nonzero = |value: u64, field| {
            if value == 0 {
                Err(ChainConfigError::Zero { field })
            } else {
                Ok(value)
            }
        };
        nonzero(raw.chain_id, "chain_id")?;
        let poll =
            nonzero(raw.receipt_poll_interval_ms, "receipt_poll_interval_ms")?;
        if raw.receipt_timeout_secs.is_some() {
            return Err(ChainConfigError::Removed {
                field: "receipt_timeout_secs",
                instead: "a transaction is followed until it lands or is \
                          proven dead; each step is bounded by \
                          step_timeout_ms and each RPC call by rpc_timeout_ms",
            });
        }
        let chunk = nonzero(raw.log_chunk_blocks, "log_chunk_blocks")?;
        let rpc_timeout = nonzero(raw.rpc_timeout_ms, "rpc_timeout_ms")?;
        let step_timeout = nonzero(raw.step_timeout_ms, "step_timeout_ms")?;
        let unseen = nonzero(
            raw.unseen_landing_alert_secs,
            "unseen_landing_alert_secs",
        )?;
        if raw.max_priority_fee_per_gas_gwei > raw.max_fee_per_gas_gwei {
            return Err(ChainConfigError::PriorityAboveMax {
                priority: raw.max_priority_fee_per_gas_gwei,
                max: raw.max_fee_per_gas_gwei,
            });
        }
        Ok(Self {
            rpc_url,
            chain_id: raw.chain_id,
            network,
            signer,
            max_fee_per_gas: raw.max_fee_per_gas_gwei,
            max_priority_fee_per_gas: raw.max_priority_fee_per_gas_gwei,
            receipt_poll_interval: Duration::from_millis(poll),
            rpc_timeout: Duration::from_millis(rpc_timeout),
            step_timeout: Duration::from_millis(step_timeout),
            unseen_landing_alert: Duration::from_secs(unseen),
            confirmations: raw.confirmations,
            log_chunk_blocks: chunk,
            start_block: raw.start_block,
            gas_limit_margin_percent: raw.gas_limit_margin_percent,
        })
    }
}

/// The older single `[chain]` section: its `network` key says which.
impl<'de> Deserialize<'de> for ChainConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawChainConfig::deserialize(d)?;
        let network = raw
            .network
            .ok_or(ChainConfigError::MissingNetwork)
            .map_err(serde::de::Error::custom)?;
        Self::from_raw(raw, network).map_err(serde::de::Error::custom)
    }
}

/// Every configured chain, one per network, no two with the same
/// `chain_id`. Empty: no chain, no drivers.
#[derive(Debug, Clone, Default)]
pub struct Chains(BTreeMap<Network, ChainConfig>);

impl Chains {
    /// Refuses two chains with the same `chain_id`, naming both.
    pub fn new(
        chains: BTreeMap<Network, ChainConfig>,
    ) -> Result<Self, ChainConfigError> {
        let mut seen: BTreeMap<u64, Network> = BTreeMap::new();
        for (network, chain) in &chains {
            if let Some(first) = seen.insert(chain.chain_id, *network) {
                return Err(ChainConfigError::DuplicateChainId {
                    first,
                    second: *network,
                    chain_id: chain.chain_id,
                });
            }
        }
        Ok(Self(chains))
    }

    /// The older `[chain]` section folded in: refused next to
    /// `[chains.*]`, so a chain is never configured twice.
    pub fn with_legacy(
        self,
        legacy: Option<ChainConfig>,
    ) -> Result<Self, ChainConfigError> {
        let Some(chain) = legacy else {
            return Ok(self);
        };
        if !self.0.is_empty() {
            return Err(ChainConfigError::ChainAndChains {
                network: chain.network,
            });
        }
        Ok(Self(BTreeMap::from([(chain.network, chain)])))
    }

    pub fn get(&self, network: Network) -> Option<&ChainConfig> {
        self.0.get(&network)
    }

    /// In network order.
    pub fn iter(&self) -> impl Iterator<Item = &ChainConfig> {
        self.0.values()
    }

    pub fn networks(&self) -> Vec<Network> {
        self.0.keys().copied().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<'de> Deserialize<'de> for Chains {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let tables = BTreeMap::<Network, RawChainConfig>::deserialize(d)?;
        let mut chains = BTreeMap::new();
        for (table, raw) in tables {
            if let Some(network) = raw.network.filter(|named| *named != table) {
                return Err(serde::de::Error::custom(
                    ChainConfigError::NetworkMismatch { table, network },
                ));
            }
            let chain = ChainConfig::from_raw(raw, table)
                .map_err(serde::de::Error::custom)?;
            chains.insert(table, chain);
        }
        Self::new(chains).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const BASE: &str = r#"
        rpc_url = "http://127.0.0.1:8545"
        chain_id = 31337
        network = "base"
        max_fee_per_gas_gwei = "0.5"
        max_priority_fee_per_gas_gwei = 1
    "#;

    fn parse(extra: &str) -> Result<ChainConfig, toml::de::Error> {
        toml::from_str(&format!("{BASE}\n{extra}"))
    }

    #[test]
    fn the_removed_receipt_timeout_is_refused_with_what_replaced_it() {
        let message =
            parse("private_key = \"0xabc\"\nreceipt_timeout_secs = 120")
                .unwrap_err()
                .to_string();
        assert!(
            message.contains("receipt_timeout_secs is no longer a setting"),
            "{message}"
        );
        assert!(message.contains("step_timeout_ms"), "{message}");
    }

    #[test]
    fn debug_hides_the_rpc_path_and_the_key() {
        let config: ChainConfig = toml::from_str(
            r#"
            rpc_url = "https://base-mainnet.example/v2/s3cr3t-provider-key"
            chain_id = 8453
            network = "base"
            private_key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
            max_fee_per_gas_gwei = "2.5"
            max_priority_fee_per_gas_gwei = "0.001"
            "#,
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr3t-provider-key"), "{debug}");
        assert!(!debug.contains("59c6995e"), "{debug}");
        assert!(
            debug.contains("https://base-mainnet.example/[REDACTED]"),
            "{debug}"
        );
        assert!(debug.contains("chain_id: 8453"), "{debug}");
    }

    #[test]
    fn parses_private_key_with_defaults() {
        let config = parse(r#"private_key = "0xabc""#);
        // priority (1 gwei) > max (0.5 gwei) is rejected.
        let message = config.unwrap_err().to_string();
        assert!(message.contains("exceeds max_fee_per_gas"), "{message}");

        let config: ChainConfig = toml::from_str(
            r#"
            rpc_url = "https://rpc.example/v1"
            chain_id = 8453
            network = "base"
            private_key = "0xabc"
            max_fee_per_gas_gwei = "2.5"
            max_priority_fee_per_gas_gwei = "0.001"
            "#,
        )
        .unwrap();
        assert_eq!(config.network, Network::Base);
        assert_eq!(config.max_fee_per_gas.wei(), 2_500_000_000);
        assert_eq!(config.max_priority_fee_per_gas.wei(), 1_000_000);
        assert_eq!(config.receipt_poll_interval, Duration::from_millis(500));
        assert_eq!(config.confirmations, 0);
        assert_eq!(config.log_chunk_blocks, 2000);
        assert_eq!(config.gas_limit_margin_percent, 20);
        match config.signer {
            SignerSource::PrivateKey(key) => {
                assert_eq!(key.expose_secret(), "0xabc");
            }
            SignerSource::Keystore { .. } => panic!("expected private key"),
        }
    }

    #[test]
    fn parses_keystore_source() {
        let config: ChainConfig = toml::from_str(
            r#"
            rpc_url = "http://localhost:8545"
            chain_id = 1
            network = "ethereum"
            max_fee_per_gas_gwei = 100
            max_priority_fee_per_gas_gwei = 2
            keystore = { path = "/keys/bot.json", password_env = "BOT_PW" }
            "#,
        )
        .unwrap();
        match config.signer {
            SignerSource::Keystore { path, password } => {
                assert_eq!(path, PathBuf::from("/keys/bot.json"));
                assert_eq!(password, PasswordSource::Env("BOT_PW".into()));
            }
            SignerSource::PrivateKey(_) => panic!("expected keystore"),
        }
    }

    #[test]
    fn rejects_bad_signer_combinations() {
        let cases = [
            ("", "exactly one of private_key or keystore"),
            (
                "private_key = \"0x1\"\nkeystore = { path = \"k\", password_env = \"X\" }",
                "exactly one of private_key or keystore",
            ),
            (
                "keystore = { path = \"k\" }",
                "exactly one of password_file or password_env",
            ),
            (
                "keystore = { path = \"k\", password_env = \"X\", password_file = \"f\" }",
                "exactly one of password_file or password_env",
            ),
        ];
        let base = BASE.replace("= 1\n", "= \"0.1\"\n");
        for (extra, expected) in cases {
            let result: Result<ChainConfig, _> =
                toml::from_str(&format!("{base}\n{extra}"));
            let message = result.unwrap_err().to_string();
            assert!(message.contains(expected), "{extra}: {message}");
        }
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        let base = BASE.replace("= 1\n", "= \"0.1\"\n");
        let cases = [
            ("private_key = \"0x1\"\nmystery = 1", "unknown field"),
            (
                "private_key = \"0x1\"\nreceipt_poll_interval_ms = 0",
                "greater than zero",
            ),
        ];
        for (extra, expected) in cases {
            let result: Result<ChainConfig, _> =
                toml::from_str(&format!("{base}\n{extra}"));
            let message = result.unwrap_err().to_string();
            assert!(message.contains(expected), "{extra}: {message}");
        }
        let ws = base.replace("http://127.0.0.1:8545", "ws://127.0.0.1:8545");
        let result: Result<ChainConfig, _> =
            toml::from_str(&format!("{ws}\nprivate_key = \"0x1\""));
        assert!(result.unwrap_err().to_string().contains("http or https"));
    }

    #[test]
    fn gwei_parsing_is_exact() {
        assert_eq!(WeiPerGas::from_gwei("1").unwrap().wei(), 1_000_000_000);
        assert_eq!(WeiPerGas::from_gwei("0.000000001").unwrap().wei(), 1);
        for bad in ["0.0000000001", "-1", "0", "abc", "1e3"] {
            assert_eq!(
                WeiPerGas::from_gwei(bad),
                Err(ChainConfigError::InvalidGwei { value: bad.into() }),
                "{bad}"
            );
        }
    }
}
