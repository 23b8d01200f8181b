//! Service configuration: an optional TOML file overlaid by `ISSUANCE_*`
//! environment variables (`__` separates sections, e.g.
//! `ISSUANCE_AUTH__ALPACA__API_KEY`), validated once into an immutable
//! [`Config`]. Unknown keys are rejected in both sources.
//!
//! To add a section: add a field to [`Config`] (with `#[serde(default)]`
//! if it is optional) whose type derives `Deserialize` with
//! `#[serde(deny_unknown_fields)]`, and a value in [`Config::for_tests`].

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rocket::figment::providers::{Format, Serialized, Toml};
use rocket::figment::value::{Dict, Map, Value};
use rocket::figment::{self, Figment, Metadata, Profile, Provider};
use serde::Deserialize;

// Each section lives with its module and is re-exported below; this file
// only composes them and reads the sources.
pub use crate::auth::{
    AlpacaAuthConfig, AlpacaCredentials, AlpacaScheme, AudienceConfig,
    AuthConfig, AuthConfigError,
};

/// Prefix of the environment variables read into the configuration.
pub const ENV_PREFIX: &str = "ISSUANCE_";
/// Environment variable naming the TOML file (also `--config`).
pub const CONFIG_PATH_ENV: &str = "ISSUANCE_CONFIG";
/// Separator between section names in environment variable names.
const ENV_SECTION_SEPARATOR: &str = "__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable {name:?} is not valid UTF-8")]
    NonUnicodeEnv { name: OsString },
    #[error(
        "environment variable {name} has an empty section name (check the \
         `__` separators)"
    )]
    EmptyEnvSegment { name: String },
    #[error("invalid configuration: {}", describe_figment_error(.0))]
    Invalid(Box<figment::Error>),
    #[error(
        "both {key} ({key_source}) and {file_key} ({file_source}) are set; \
         keep only one"
    )]
    SecretTwice {
        key: String,
        key_source: String,
        file_key: String,
        file_source: String,
    },
    #[error("{file_key} ({source_name}) must be a file path")]
    SecretFilePath {
        file_key: String,
        source_name: String,
    },
    #[error("{key} ({source_name}) must be a table of header name = file path")]
    SecretFileTable { key: String, source_name: String },
    #[error("cannot read {file_key} {}: {source}", path.display())]
    SecretFileUnreadable {
        file_key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the example's placeholder values are still set:\n  {}",
        list_placeholders(.0)
    )]
    Placeholders(Vec<secrets::Placeholder>),
    #[error(
        "metrics.bind {addr} is also server.bind; metrics need their own \
         listener"
    )]
    MetricsBindClash { addr: SocketAddr },
    #[error(transparent)]
    Chains(#[from] crate::chain::ChainConfigError),
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        Self::Invalid(Box::new(error))
    }
}

/// The whole, validated configuration. `Debug` redacts every secret, so
/// it is safe to print (`validate-config` does).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[alpaca]` Broker API client; absent = no Alpaca calls.
    #[serde(default)]
    pub alpaca: Option<crate::alpaca::AlpacaConfig>,
    /// `[chains.<network>]`: RPC, issuer wallet and fee limits of each
    /// chain; none = no chain. The older `[chain]` is folded in on load.
    #[serde(default)]
    pub chains: crate::chain::Chains,
    /// The older single `[chain]` section, read into `chains` on load
    /// (then always `None`).
    #[serde(default, rename = "chain")]
    legacy_chain: Option<crate::chain::ChainConfig>,
    /// `[redemption]` polling and reconciliation cadence.
    #[serde(default)]
    pub redemption: crate::redemption::RedemptionConfig,
}

impl Config {
    /// Loads the TOML file at `path` (if any), overlays the process
    /// environment and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_sources(path, std::env::vars_os())
    }

    /// As [`Config::load`], with the environment given explicitly.
    pub fn from_sources<I>(
        path: Option<&Path>,
        env: I,
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        let figment = Self::sources(path, env)?;
        let config: Self = figment.extract()?;
        config.validated()
    }

    /// What `issuance-bot admin` needs to call the running service, read
    /// from the same sources as `serve` (the whole configuration must be
    /// valid): where it listens and the internal key in clear (the loaded
    /// [`Config`] keeps only the key's digest).
    pub fn operator_access(
        path: Option<&Path>,
    ) -> Result<OperatorAccess, ConfigError> {
        let figment = Self::sources(path, std::env::vars_os())?;
        let config: Self = figment.extract()?;
        let config = config.validated()?;
        let internal_key: String =
            figment.extract_inner("auth.internal.api_key")?;
        Ok(OperatorAccess {
            bind: config.server.bind,
            internal_key,
        })
    }

    /// Every source layered, secrets read from their files, placeholders
    /// refused.
    fn sources<I>(path: Option<&Path>, env: I) -> Result<Figment, ConfigError>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        if let Some(path) = path {
            // figment treats a missing file as empty; a named file that
            // cannot be read is an operator error.
            std::fs::File::open(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
        }
        let env = prefixed_env(env)?;
        let sources = layered(path, &env, &secrets::Resolved::default());
        // Secrets named by `_file` keys are read first, then every source
        // is layered again without those keys and with the secrets.
        let resolved = secrets::resolve(&sources)?;
        let figment = if resolved.files.is_empty() {
            sources
        } else {
            layered(path, &env, &resolved)
        };
        let placeholders = secrets::placeholders(&figment);
        if !placeholders.is_empty() {
            return Err(ConfigError::Placeholders(placeholders));
        }
        Ok(figment)
    }

    /// Checks what spans sections, and folds `[chain]` into `chains`.
    fn validated(mut self) -> Result<Self, ConfigError> {
        match self.metrics.bind {
            // Port 0 asks the OS for a free port per listener: never a
            // clash (tests start both that way).
            Some(addr) if addr == self.server.bind && addr.port() != 0 => {
                return Err(ConfigError::MetricsBindClash { addr });
            }
            _ => {}
        }
        self.chains = std::mem::take(&mut self.chains)
            .with_legacy(self.legacy_chain.take())?;
        Ok(self)
    }
}

/// See [`Config::operator_access`].
pub struct OperatorAccess {
    pub bind: SocketAddr,
    pub internal_key: String,
}

impl std::fmt::Debug for OperatorAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorAccess")
            .field("bind", &self.bind)
            .field("internal_key", &"[REDACTED]")
            .finish()
    }
}

/// The TOML file (if any), then each variable, then the secrets read
/// from files; the consumed `_file` keys are left out.
fn layered(
    path: Option<&Path>,
    env: &[EnvVar],
    resolved: &secrets::Resolved,
) -> Figment {
    let without = |inner| secrets::Without {
        inner,
        keys: resolved.consumed.clone(),
    };
    let mut figment = Figment::new();
    if let Some(path) = path {
        figment = figment.merge(without(Source::Toml(Toml::file_exact(path))));
    }
    for var in env {
        figment = figment.merge(without(Source::Env(var.clone())));
    }
    for file in &resolved.files {
        figment = figment.merge(file.clone());
    }
    figment
}

/// A configuration source: the file or one variable.
enum Source {
    Toml(figment::providers::Data<Toml>),
    Env(EnvVar),
}

impl Provider for Source {
    fn metadata(&self) -> Metadata {
        match self {
            Self::Toml(toml) => toml.metadata(),
            Self::Env(var) => var.metadata(),
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        match self {
            Self::Toml(toml) => toml.data(),
            Self::Env(var) => var.data(),
        }
    }

    fn profile(&self) -> Option<Profile> {
        match self {
            Self::Toml(toml) => toml.profile(),
            Self::Env(var) => var.profile(),
        }
    }
}

/// The environment variable that sets `key` (`auth.alpaca.api_key` →
/// `ISSUANCE_AUTH__ALPACA__API_KEY`).
pub fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.to_ascii_uppercase().replace('.', ENV_SECTION_SEPARATOR)
    )
}

/// How to set a missing `key`: its variable, and its file for a secret.
fn how_to_set(key: &str) -> String {
    let env = env_var_name(key);
    if secrets::is_secret(key) {
        format!("{key} (or {env}, or {key}{})", secrets::FILE_SUFFIX)
    } else {
        format!("{key} (or {env})")
    }
}

/// figment's errors without its `default.` profile prefix, each naming
/// the key, the variable that would set a missing one, and the source of
/// a wrong one.
fn describe_figment_error(error: &figment::Error) -> String {
    let lines: Vec<String> = error
        .clone()
        .into_iter()
        .map(|error| {
            let path = error.path.join(".");
            let key = |name: &str| {
                if path.is_empty() {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                }
            };
            let source = error
                .metadata
                .as_ref()
                .map(secrets::describe_source)
                .map(|source| format!(" ({source})"))
                .unwrap_or_default();
            match &error.kind {
                figment::error::Kind::MissingField(name) => missing(&key(name)),
                // The path already ends with the unknown key.
                figment::error::Kind::UnknownField(_, expected) => format!(
                    "unknown key {path}{source}; expected {}",
                    figment::error::OneOf(expected)
                ),
                kind if path.is_empty() => format!("{kind}{source}"),
                kind => format!("{path}: {kind}{source}"),
            }
        })
        .collect();
    lines.join("\n  ")
}

/// A missing key, or a missing section with the secrets it needs.
fn missing(key: &str) -> String {
    let section = format!("{key}.");
    let needed: Vec<String> = secrets::SECRET_KEYS
        .iter()
        .filter(|secret| secret.starts_with(&section))
        .filter(|secret| REQUIRED_SECRETS.contains(secret))
        .map(|secret| how_to_set(secret))
        .collect();
    if needed.is_empty() {
        format!("missing {}", how_to_set(key))
    } else {
        format!("missing [{key}]: set {}", needed.join(" and "))
    }
}

/// Secrets without which no configuration is valid (the default
/// `auth.alpaca.scheme` needs Alpaca's key).
const REQUIRED_SECRETS: &[&str] =
    &["auth.alpaca.api_key", "auth.internal.api_key"];

fn list_placeholders(placeholders: &[secrets::Placeholder]) -> String {
    placeholders
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// One `ISSUANCE_*` variable as a figment provider, so that errors name
/// the variable.
#[derive(Clone)]
struct EnvVar {
    name: String,
    key: String,
    value: Value,
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::default(&self.key, &self.value).data()
    }
}

fn prefixed_env<I>(env: I) -> Result<Vec<EnvVar>, ConfigError>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let prefix = ENV_PREFIX.as_bytes();
    let mut vars = Vec::new();
    for (name, value) in env {
        let is_ours = name
            .as_encoded_bytes()
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix));
        if !is_ours {
            continue;
        }
        let (Some(name_str), Some(value)) = (name.to_str(), value.to_str())
        else {
            return Err(ConfigError::NonUnicodeEnv { name });
        };
        if name_str.eq_ignore_ascii_case(CONFIG_PATH_ENV) {
            continue;
        }
        let rest = name_str.get(ENV_PREFIX.len()..).unwrap_or_default();
        let segments: Vec<String> = rest
            .split(ENV_SECTION_SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect();
        if segments.iter().any(String::is_empty) {
            return Err(ConfigError::EmptyEnvSegment {
                name: name_str.to_owned(),
            });
        }
        vars.push(EnvVar {
            name: name_str.to_owned(),
            key: segments.join("."),
            // Same leniency as figment's own Env provider: numbers,
            // booleans and arrays are parsed, anything else is a string.
            value: Value::from_str(value)
                .unwrap_or_else(|never| match never {}),
        });
    }
    Ok(vars)
}

/// Alpaca's API key in [`Config::for_tests`].
#[cfg(any(test, feature = "test-support"))]
pub const TEST_ALPACA_KEY: &str = "test-alpaca-key-000000000000000000000001";
/// The internal API key in [`Config::for_tests`].
#[cfg(any(test, feature = "test-support"))]
pub const TEST_INTERNAL_KEY: &str = "test-internal-key-00000000000000000000002";

#[cfg(any(test, feature = "test-support"))]
impl Config {
    /// A valid configuration for tests: the `TEST_*_KEY` keys, Alpaca open
    /// to any address, internal limited to loopback, no telemetry export.
    #[allow(
        clippy::expect_used,
        reason = "constant test keys and ranges are valid"
    )]
    pub fn for_tests(db_url: &str) -> Self {
        use crate::auth::config::default_internal_cidrs;
        use crate::auth::{AllowList, ApiKey};
        let auth = AuthConfig::new(
            AlpacaAuthConfig {
                credentials: AlpacaCredentials::ApiKey(
                    ApiKey::new(TEST_ALPACA_KEY).expect("valid test key"),
                ),
                allowed_cidrs: AllowList::any(),
                requests_per_minute: None,
            },
            AudienceConfig {
                api_key: ApiKey::new(TEST_INTERNAL_KEY)
                    .expect("valid test key"),
                allowed_cidrs: default_internal_cidrs(),
                requests_per_minute: None,
            },
            AuthConfig::DEFAULT_FAILURES_PER_MINUTE,
        )
        .expect("valid test auth config");
        Self {
            server: ServerConfig::default(),
            database: DatabaseConfig {
                url: DatabaseUrl::new(db_url).expect("sqlite test url"),
                ..DatabaseConfig::default()
            },
            auth,
            telemetry: TelemetryConfig::default(),
            metrics: MetricsConfig::default(),
            alpaca: None,
            chains: crate::chain::Chains::default(),
            legacy_chain: None,
            redemption: crate::redemption::RedemptionConfig::default(),
        }
    }
}

mod database;
mod print;
mod secrets;

pub use crate::http::{BodyLimit, InvalidBodyLimit, ServerConfig};
pub use crate::telemetry::{
    InvalidOtlpEndpoint, InvalidOtlpHeader, LogFormat, MetricsConfig,
    OtlpEndpoint, OtlpHeaders, TelemetryConfig,
};
pub use database::{DatabaseConfig, DatabaseUrl, InvalidDatabaseUrl};
pub use secrets::{
    FILE_SUFFIX, PLACEHOLDER_PREFIX, SECRET_KEYS, SECRET_TABLES,
    read_secret_file,
};

#[cfg(test)]
mod tests;
