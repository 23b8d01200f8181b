//! Simulator configuration: where the issuer lives, which wire version to
//! speak, what credentials the issuer must present, and timing knobs.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The three issuer-side wire generations (itn-wire.md §3).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum WireVersion {
    /// v1.3 / reference issuer: `/accounts/connect`, `/inkind/issuance`.
    #[default]
    Oldest,
    /// IG-mid: `/tokenization/*` paths, `id` and `client_id` fields.
    Middle,
    /// IG-cur (2026-09): `tokenization_request_id`,
    /// `client_external_account_id` XOR `client_account_id`.
    Current,
}

impl WireVersion {
    fn default_connect(self) -> &'static str {
        match self {
            Self::Oldest => "/accounts/connect",
            Self::Middle | Self::Current => "/tokenization/accounts/connect",
        }
    }

    fn default_tokens(self) -> &'static str {
        match self {
            Self::Oldest => "/tokenized-assets",
            Self::Middle | Self::Current => "/tokenization/tokens",
        }
    }

    fn default_mint(self) -> &'static str {
        match self {
            Self::Oldest => "/inkind/issuance",
            Self::Middle | Self::Current => "/tokenization/mint",
        }
    }

    fn default_confirm(self) -> &'static str {
        match self {
            Self::Oldest => "/inkind/issuance/confirm",
            Self::Middle | Self::Current => "/tokenization/mint/confirm",
        }
    }
}

impl std::str::FromStr for WireVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "oldest" => Ok(Self::Oldest),
            "middle" => Ok(Self::Middle),
            "current" => Ok(Self::Current),
            other => Err(format!(
                "unknown wire version {other:?} (oldest|middle|current)"
            )),
        }
    }
}

/// Per-endpoint overrides of the issuer paths. `None` means "the default
/// for the configured wire version" (issuers register their URLs with
/// Alpaca, so any path may differ from the documented examples).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerPaths {
    pub connect: Option<String>,
    pub mint: Option<String>,
    pub confirm: Option<String>,
    /// The tokenized-asset list (GET).
    pub tokens: Option<String>,
}

impl IssuerPaths {
    pub fn connect(&self, wire: WireVersion) -> &str {
        self.connect
            .as_deref()
            .unwrap_or_else(|| wire.default_connect())
    }

    pub fn tokens(&self, wire: WireVersion) -> &str {
        self.tokens
            .as_deref()
            .unwrap_or_else(|| wire.default_tokens())
    }

    pub fn mint(&self, wire: WireVersion) -> &str {
        self.mint.as_deref().unwrap_or_else(|| wire.default_mint())
    }

    pub fn confirm(&self, wire: WireVersion) -> &str {
        self.confirm
            .as_deref()
            .unwrap_or_else(|| wire.default_confirm())
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Port 0 is allowed: the handle reports the real port.
    pub bind: SocketAddr,
    /// The issuer service; settable later through the handle.
    pub issuer_base_url: Option<Url>,
    /// Sent as `X-API-KEY` on every call to the issuer, unless
    /// `issuer_signing` is set.
    pub issuer_api_key: String,
    /// Alpaca's second scheme: sign every call to the issuer (RFC 9421,
    /// Ed25519, `Content-Digest`) instead of sending `X-API-KEY`.
    pub issuer_signing: Option<crate::IssuerSigning>,
    pub wire: WireVersion,
    pub issuer_paths: IssuerPaths,
    /// The issuer's own Alpaca account (`{account_id}` in broker paths).
    pub issuer_account_id: Uuid,
    /// What the issuer must present (Basic and/or APCA headers).
    pub broker_key_id: String,
    pub broker_secret: String,
    /// Accepted as `Authorization: Bearer`; `None` rejects bearer tokens.
    pub broker_bearer_token: Option<String>,
    /// Value of `issuer` on request records (Alpaca's issuer enum).
    pub issuer_name: String,
    /// Delay between an accepted mint request and the confirmation.
    pub journal_delay: Duration,
    /// Delay before a pending redeem settles.
    pub redeem_settle_delay: Duration,
    /// Before each mint, read the issuer's token list and refuse
    /// (like Alpaca) a token/network pair it does not list.
    pub check_token_list: bool,
    /// Timeout of each call to the issuer.
    pub issuer_timeout: Duration,
    /// Total confirmation deliveries tried on 5xx/timeout (>= 1).
    pub confirm_max_attempts: u32,
    /// Pause between confirmation retries.
    pub confirm_retry_delay: Duration,
    /// Completed/rejected rows older than this drop out of the list
    /// endpoint (the keyed GET still finds them), as observed in 2026.
    pub list_retention: Option<Duration>,
    /// Let Rocket stop on Ctrl-C / SIGTERM (the binary wants this, tests
    /// do not).
    pub handle_signals: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            issuer_base_url: None,
            issuer_api_key: "sim-issuer-api-key-0123456789abcdef0123".into(),
            issuer_signing: None,
            wire: WireVersion::Oldest,
            issuer_paths: IssuerPaths::default(),
            issuer_account_id: Uuid::new_v4(),
            broker_key_id: "SIMKEYID".into(),
            broker_secret: "sim-broker-secret".into(),
            broker_bearer_token: None,
            issuer_name: "st0x".into(),
            journal_delay: Duration::from_millis(20),
            redeem_settle_delay: Duration::from_millis(50),
            check_token_list: false,
            issuer_timeout: Duration::from_secs(5),
            confirm_max_attempts: 5,
            confirm_retry_delay: Duration::from_millis(20),
            list_retention: None,
            handle_signals: false,
        }
    }
}
