//! `[auth]`: the credentials, allowed networks and request budgets of
//! each audience, parsed and checked here so the configuration module
//! only composes sections.

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};

use serde::Deserialize;

use super::{AllowList, ApiKey, PublicBaseUrl, SignatureConfig, SignatureKey};

/// The credentials, allowed networks and request budget of one audience.
#[derive(Debug, Clone)]
pub struct AudienceConfig {
    pub api_key: ApiKey,
    /// Empty admits any address.
    pub allowed_cidrs: AllowList,
    /// Cap on authenticated requests per minute for the whole audience
    /// (beyond it: 429 with `Retry-After`); unlimited when unset.
    pub requests_per_minute: Option<NonZeroU32>,
}

/// How Alpaca authenticates (itn-wire.md §4.1); chosen at onboarding,
/// the same on every Alpaca endpoint.
#[derive(Debug, Clone)]
pub enum AlpacaCredentials {
    /// `scheme = "api_key"` (default): the shared key in `X-API-KEY`.
    ApiKey(ApiKey),
    /// `scheme = "signature"`: RFC 9421 Ed25519 signatures; X-API-KEY
    /// is not accepted.
    Signature(SignatureConfig),
}

/// `[auth.alpaca]`: Alpaca's credentials, networks and request budget.
#[derive(Debug, Clone)]
pub struct AlpacaAuthConfig {
    pub credentials: AlpacaCredentials,
    /// Empty admits any address.
    pub allowed_cidrs: AllowList,
    /// As in [`AudienceConfig`].
    pub requests_per_minute: Option<NonZeroU32>,
}

impl AlpacaAuthConfig {
    /// Alpaca's API key, when that is its scheme.
    pub fn api_key(&self) -> Option<&ApiKey> {
        match &self.credentials {
            AlpacaCredentials::ApiKey(key) => Some(key),
            AlpacaCredentials::Signature(_) => None,
        }
    }

    /// Alpaca's signature settings, when that is its scheme.
    pub fn signature(&self) -> Option<&SignatureConfig> {
        match &self.credentials {
            AlpacaCredentials::Signature(signature) => Some(signature),
            AlpacaCredentials::ApiKey(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("auth.internal.api_key must differ from auth.alpaca.api_key")]
    SharedKey,
    #[error("auth.internal.allowed_cidrs must not be empty")]
    InternalOpenToAll,
    #[error("auth.internal.allowed_cidrs must not contain a /0 range")]
    InternalCatchAllRange,
    #[error(
        "auth.alpaca.api_key is required with scheme = \"api_key\" (set \
         ISSUANCE_AUTH__ALPACA__API_KEY, or auth.alpaca.api_key_file)"
    )]
    MissingAlpacaKey,
    #[error(
        "auth.alpaca.{key} does not apply to scheme = \"{scheme}\"; remove \
         it"
    )]
    NotForScheme {
        key: &'static str,
        scheme: &'static str,
    },
    #[error(transparent)]
    Signature(#[from] crate::auth::SignatureConfigError),
}

/// `[auth]`: credentials and allow-list per audience.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawAuthConfig")]
pub struct AuthConfig {
    pub(crate) alpaca: AlpacaAuthConfig,
    pub(crate) internal: AudienceConfig,
    pub(crate) failures_per_minute: NonZeroU32,
}

impl AuthConfig {
    pub const DEFAULT_FAILURES_PER_MINUTE: NonZeroU32 =
        NonZeroU32::new(10).unwrap();

    pub fn new(
        alpaca: AlpacaAuthConfig,
        internal: AudienceConfig,
        failures_per_minute: NonZeroU32,
    ) -> Result<Self, AuthConfigError> {
        if alpaca
            .api_key()
            .is_some_and(|key| internal.api_key.same_key_as(key))
        {
            return Err(AuthConfigError::SharedKey);
        }
        if internal.allowed_cidrs.admits_any() {
            return Err(AuthConfigError::InternalOpenToAll);
        }
        if internal.allowed_cidrs.has_catch_all_range() {
            return Err(AuthConfigError::InternalCatchAllRange);
        }
        Ok(Self {
            alpaca,
            internal,
            failures_per_minute,
        })
    }

    pub fn alpaca(&self) -> &AlpacaAuthConfig {
        &self.alpaca
    }

    pub fn internal(&self) -> &AudienceConfig {
        &self.internal
    }

    pub fn failures_per_minute(&self) -> NonZeroU32 {
        self.failures_per_minute
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthConfig {
    alpaca: RawAlpacaAuth,
    internal: RawInternalAuth,
    #[serde(default = "default_failures_per_minute")]
    failures_per_minute: NonZeroU32,
}

/// `auth.alpaca.scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlpacaScheme {
    #[default]
    ApiKey,
    Signature,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlpacaAuth {
    #[serde(default)]
    scheme: AlpacaScheme,
    #[serde(default)]
    api_key: Option<ApiKey>,
    #[serde(default)]
    allowed_cidrs: AllowList,
    #[serde(default)]
    requests_per_minute: Option<NonZeroU32>,
    // scheme = "signature" only:
    #[serde(default)]
    signature_keys: Vec<SignatureKey>,
    #[serde(default)]
    max_skew_secs: Option<NonZeroU64>,
    #[serde(default)]
    nonce_cache_capacity: Option<NonZeroUsize>,
    #[serde(default)]
    public_base_url: Option<PublicBaseUrl>,
}

impl RawAlpacaAuth {
    fn credentials(self) -> Result<AlpacaCredentials, AuthConfigError> {
        let not_for =
            |key, scheme| AuthConfigError::NotForScheme { key, scheme };
        match self.scheme {
            AlpacaScheme::ApiKey => {
                let signature_only = [
                    ("signature_keys", !self.signature_keys.is_empty()),
                    ("max_skew_secs", self.max_skew_secs.is_some()),
                    (
                        "nonce_cache_capacity",
                        self.nonce_cache_capacity.is_some(),
                    ),
                    ("public_base_url", self.public_base_url.is_some()),
                ];
                if let Some((key, _)) =
                    signature_only.iter().find(|(_, set)| *set)
                {
                    return Err(not_for(key, "api_key"));
                }
                self.api_key
                    .map(AlpacaCredentials::ApiKey)
                    .ok_or(AuthConfigError::MissingAlpacaKey)
            }
            AlpacaScheme::Signature => {
                // Alpaca's X-API-KEY is refused in this mode; a key left
                // here would suggest otherwise.
                if self.api_key.is_some() {
                    return Err(not_for("api_key", "signature"));
                }
                Ok(AlpacaCredentials::Signature(SignatureConfig::new(
                    self.signature_keys,
                    self.max_skew_secs
                        .unwrap_or(SignatureConfig::DEFAULT_MAX_SKEW_SECS),
                    self.nonce_cache_capacity.unwrap_or(
                        SignatureConfig::DEFAULT_NONCE_CACHE_CAPACITY,
                    ),
                    self.public_base_url,
                )?))
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInternalAuth {
    api_key: ApiKey,
    #[serde(default = "default_internal_cidrs")]
    allowed_cidrs: AllowList,
    #[serde(default)]
    requests_per_minute: Option<NonZeroU32>,
}

fn default_failures_per_minute() -> NonZeroU32 {
    AuthConfig::DEFAULT_FAILURES_PER_MINUTE
}

pub(crate) fn default_internal_cidrs() -> AllowList {
    AllowList::parse(["127.0.0.0/8", "::1/128"]).unwrap_or_default()
}

impl TryFrom<RawAuthConfig> for AuthConfig {
    type Error = AuthConfigError;

    fn try_from(raw: RawAuthConfig) -> Result<Self, Self::Error> {
        let allowed_cidrs = raw.alpaca.allowed_cidrs.clone();
        let requests_per_minute = raw.alpaca.requests_per_minute;
        Self::new(
            AlpacaAuthConfig {
                credentials: raw.alpaca.credentials()?,
                allowed_cidrs,
                requests_per_minute,
            },
            AudienceConfig {
                api_key: raw.internal.api_key,
                allowed_cidrs: raw.internal.allowed_cidrs,
                requests_per_minute: raw.internal.requests_per_minute,
            },
            raw.failures_per_minute,
        )
    }
}
