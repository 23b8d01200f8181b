//! Alpaca Broker API client for the issuer side of ITN (`itn-wire.md` §5).
//!
//! Every call goes to the issuer's own tokenization account
//! (`/v1/accounts/{account_id}/...`), carries HTTP Basic auth *and* the
//! `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers, and is retried with
//! exponential backoff and jitter on 5xx, 429 and transport failures only.
//!
//! Caller contract worth knowing:
//! - [`AlpacaClient::send_mint_callback`]: a final `400` means something
//!   failed *inside* Alpaca while applying the callback, so it may have been
//!   applied anyway (`itn-wire.md` §5.3). Treat it as "possibly applied":
//!   check the request with [`AlpacaClient::get_request`] before escalating,
//!   never re-mint because of it.
//! - [`AlpacaClient::redeem`] is safe to call again after any failure: every
//!   attempt carries `Idempotency-Key = UUIDv5(namespace, issuer_request_id)`
//!   so a repeat is answered by replay, and a `422` for an already-used
//!   `issuer_request_id` is resolved by looking the request up.
//! - Response records are parsed tolerantly (open enums, empty `tx_hash`,
//!   optional `fees`, deprecated aliases); compare only fields that are
//!   present (`lessons.md` §9 item 19).

mod client;
mod custody;
mod wire;

use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

pub use client::AlpacaClient;
pub use custody::{CustodyOverrides, InvalidCustodyOverride};
pub use wire::{
    ApRef, FieldMismatch, HandshakeIdField, ListFilter, MintCallback,
    RedeemRequest, RequestStatus, RequestType, TokenizationRequest,
};

/// Namespace for redeem `Idempotency-Key`s when the config names none.
/// Changing it would turn in-flight retries into new keys, so it is fixed.
pub const DEFAULT_IDEMPOTENCY_NAMESPACE: Uuid =
    Uuid::from_u128(0x6c1f_3a52_9d0e_4b7a_8e21_5f4c_d9a7_b0e3);

/// Broker API settings (TOML table `[alpaca]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlpacaConfig {
    /// e.g. `https://broker-api.alpaca.markets`; a path prefix is kept.
    #[serde(deserialize_with = "deserialize_url")]
    pub base_url: Url,
    /// The issuer's own designated tokenization account, not an AP's.
    pub account_id: Uuid,
    pub api_key_id: String,
    pub api_secret: SecretString,
    #[serde(default)]
    pub redeem_path: RedeemPath,
    /// Non-zero: a zero timeout would fail every call.
    #[serde(
        default = "default_connect_timeout_secs",
        deserialize_with = "deserialize_nonzero"
    )]
    pub connect_timeout_secs: u64,
    #[serde(
        default = "default_request_timeout_secs",
        deserialize_with = "deserialize_nonzero"
    )]
    pub request_timeout_secs: u64,
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    #[serde(default = "default_retry_min_delay_ms")]
    pub retry_min_delay_ms: u64,
    #[serde(default = "default_retry_max_delay_ms")]
    pub retry_max_delay_ms: u64,
    /// Defaults to [`DEFAULT_IDEMPOTENCY_NAMESPACE`].
    #[serde(default)]
    pub idempotency_namespace: Option<Uuid>,
    /// Name handshake-flow APs `client_id` (the deprecated alias) instead
    /// of `client_external_account_id` on the mint callback and redeem.
    #[serde(default)]
    pub send_legacy_client_id: bool,
    /// Per-symbol custody accounts for Alpaca's lookup; symbols not named
    /// here are kept in `account_id`.
    #[serde(default)]
    pub custody_accounts: CustodyOverrides,
}

impl AlpacaConfig {
    /// A config with the documented defaults for everything optional.
    pub fn new(
        base_url: Url,
        account_id: Uuid,
        api_key_id: String,
        api_secret: SecretString,
    ) -> Self {
        Self {
            base_url,
            account_id,
            api_key_id,
            api_secret,
            redeem_path: RedeemPath::default(),
            connect_timeout_secs: default_connect_timeout_secs(),
            request_timeout_secs: default_request_timeout_secs(),
            max_retries: default_max_retries(),
            retry_min_delay_ms: default_retry_min_delay_ms(),
            retry_max_delay_ms: default_retry_max_delay_ms(),
            idempotency_namespace: None,
            send_legacy_client_id: false,
            custody_accounts: CustodyOverrides::default(),
        }
    }

    /// The AP id field for handshake-flow APs on calls we make.
    pub fn handshake_id_field(&self) -> HandshakeIdField {
        if self.send_legacy_client_id {
            HandshakeIdField::Legacy
        } else {
            HandshakeIdField::External
        }
    }
}

/// Which redeem path Alpaca serves for this issuer (`itn-wire.md` §3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedeemPath {
    /// `/tokenization/redeem`, the original specification.
    #[default]
    Seed,
    /// `/tokenization/callback/redeem`, the current documentation.
    Callback,
}

impl RedeemPath {
    /// The config value (`"seed"`, `"callback"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Seed => "seed",
            Self::Callback => "callback",
        }
    }

    fn segments(self) -> &'static [&'static str] {
        match self {
            Self::Seed => &["redeem"],
            Self::Callback => &["callback", "redeem"],
        }
    }
}

/// Which Broker API call failed; used in errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    MintCallback,
    Redeem,
    GetRequest,
    FindByIssuerRequestId,
    ListRequests,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MintCallback => "mint_callback",
            Self::Redeem => "redeem",
            Self::GetRequest => "get_request",
            Self::FindByIssuerRequestId => "find_by_issuer_request_id",
            Self::ListRequests => "list_requests",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlpacaError {
    /// A final or retryable non-2xx answer other than 429.
    #[error("Alpaca answered HTTP {status} (code {code:?}): {message}")]
    Http {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    /// 429; `retry_after` from `Retry-After` or `X-RateLimit-Reset`.
    #[error("Alpaca rate limited the request (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// Connection, timeout or body-read failure.
    #[error("transport error talking to Alpaca: {0}")]
    Transport(#[from] reqwest::Error),
    /// A 2xx whose body is not the expected JSON. Final: retrying would
    /// get the same body.
    #[error(
        "cannot decode Alpaca {operation} response (HTTP {status}): {source}"
    )]
    Decode {
        operation: Operation,
        status: u16,
        source: serde_json::Error,
    },
    #[error("cannot encode Alpaca {operation} request: {source}")]
    Encode {
        operation: Operation,
        source: serde_json::Error,
    },
    #[error("invalid Alpaca base URL {url}: {reason}")]
    InvalidBaseUrl { url: Url, reason: &'static str },
    #[error("Alpaca credentials cannot be sent as HTTP headers")]
    InvalidCredentials,
    #[error("cannot build the HTTP client: {0}")]
    ClientBuild(reqwest::Error),
    /// Redeem answered 422 and Alpaca holds no request under this id, so
    /// the 422 was about the body, not a duplicate.
    #[error(
        "redeem {issuer_request_id} refused with 422 (code {code:?}: \
         {message}) and no request with that id exists"
    )]
    RedeemUnprocessable {
        issuer_request_id: String,
        code: Option<i64>,
        message: String,
    },
    /// Alpaca's record disagrees with what we asked for or sent.
    #[error(
        "Alpaca {operation} record for {id} has {field} = {found:?}, \
         expected {expected:?}"
    )]
    RecordMismatch {
        operation: Operation,
        id: String,
        field: &'static str,
        expected: String,
        found: String,
    },
}

impl AlpacaError {
    /// 5xx, 429 and transport failures (except body decoding) are worth
    /// retrying; any other 4xx, a bad body or a mismatch is final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Http { status, .. } => *status >= 500,
            Self::RateLimited { .. } => true,
            Self::Transport(source) => {
                !source.is_decode() && !source.is_builder()
            }
            Self::Decode { .. }
            | Self::Encode { .. }
            | Self::InvalidBaseUrl { .. }
            | Self::InvalidCredentials
            | Self::ClientBuild(_)
            | Self::RedeemUnprocessable { .. }
            | Self::RecordMismatch { .. } => false,
        }
    }

    /// The HTTP status when Alpaca answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } | Self::Decode { status, .. } => {
                Some(*status)
            }
            Self::RateLimited { .. } => Some(429),
            Self::RedeemUnprocessable { .. } => Some(422),
            Self::Transport(source) => {
                source.status().map(|status| status.as_u16())
            }
            Self::Encode { .. }
            | Self::InvalidBaseUrl { .. }
            | Self::InvalidCredentials
            | Self::ClientBuild(_)
            | Self::RecordMismatch { .. } => None,
        }
    }
}

fn deserialize_url<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Url, D::Error> {
    let raw = String::deserialize(deserializer)?;
    Url::parse(&raw).map_err(serde::de::Error::custom)
}

fn deserialize_nonzero<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<u64, D::Error> {
    match u64::deserialize(deserializer)? {
        0 => Err(serde::de::Error::custom("must be greater than 0")),
        value => Ok(value),
    }
}

const fn default_connect_timeout_secs() -> u64 {
    10
}

const fn default_request_timeout_secs() -> u64 {
    30
}

const fn default_max_retries() -> usize {
    5
}

const fn default_retry_min_delay_ms() -> u64 {
    1_000
}

const fn default_retry_max_delay_ms() -> u64 {
    60_000
}

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod log_tests;
