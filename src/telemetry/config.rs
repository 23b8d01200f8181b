//! `[telemetry]` (logs and trace export) and `[metrics]`.

use std::net::SocketAddr;
use std::num::NonZeroU64;

use serde::Deserialize;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[telemetry]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// OTLP/HTTP traces endpoint, e.g. `http://collector:4318/v1/traces`.
    pub otlp_endpoint: Option<OtlpEndpoint>,
    /// Headers sent with every export (e.g. HyperDX's `authorization`);
    /// secrets: each may come from `otlp_headers_file.<name>`.
    pub otlp_headers: OtlpHeaders,
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            otlp_headers: OtlpHeaders::default(),
            service_name: "issuance-bot".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "otlp_headers.{name} is not a valid HTTP header (name: letters, digits \
     and !#$%&'*+-.^_`|~; value: visible ASCII and spaces)"
)]
pub struct InvalidOtlpHeader {
    pub name: String,
}

/// `telemetry.otlp_headers`: header name (lowercase) → value. The values
/// are credentials, so `Debug` shows only the names.
#[derive(Clone, Default)]
pub struct OtlpHeaders(
    std::collections::BTreeMap<String, secrecy::SecretString>,
);

impl OtlpHeaders {
    pub fn new<I>(headers: I) -> Result<Self, InvalidOtlpHeader>
    where
        I: IntoIterator<Item = (String, secrecy::SecretString)>,
    {
        let mut checked = std::collections::BTreeMap::new();
        for (name, value) in headers {
            let valid =
                reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .is_ok()
                    && reqwest::header::HeaderValue::from_str(
                        secrecy::ExposeSecret::expose_secret(&value),
                    )
                    .is_ok();
            if !valid {
                return Err(InvalidOtlpHeader { name });
            }
            checked.insert(name.to_ascii_lowercase(), value);
        }
        Ok(Self(checked))
    }

    /// The header names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Name → value, for the exporter.
    pub fn expose(&self) -> std::collections::HashMap<String, String> {
        self.0
            .iter()
            .map(|(name, value)| {
                (
                    name.clone(),
                    secrecy::ExposeSecret::expose_secret(value).to_owned(),
                )
            })
            .collect()
    }
}

impl std::fmt::Debug for OtlpHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.names().map(|name| (name, "[REDACTED]")))
            .finish()
    }
}

impl<'de> Deserialize<'de> for OtlpHeaders {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        let raw = std::collections::BTreeMap::<String, secrecy::SecretString>::deserialize(
            deserializer,
        )?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("otlp_endpoint {url:?} must be an http:// or https:// URL")]
pub struct InvalidOtlpEndpoint {
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint(reqwest::Url);

impl OtlpEndpoint {
    pub fn new(url: &str) -> Result<Self, InvalidOtlpEndpoint> {
        reqwest::Url::parse(url)
            .ok()
            .filter(|parsed| matches!(parsed.scheme(), "http" | "https"))
            .map(Self)
            .ok_or_else(|| InvalidOtlpEndpoint {
                url: url.to_owned(),
            })
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl<'de> Deserialize<'de> for OtlpEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        Self::new(&String::deserialize(deserializer)?)
            .map_err(serde::de::Error::custom)
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Separate, non-public listener for `GET /metrics`; off when unset.
    pub bind: Option<SocketAddr>,
    /// An unfinished mint or redemption older than this counts in the
    /// `flows_stuck` gauge. The default exceeds the longest legitimate
    /// wait (the redemption poll timeout, 1 h) so a healthy flow never
    /// pages.
    pub stuck_after_secs: NonZeroU64,
}

impl MetricsConfig {
    pub const DEFAULT_STUCK_AFTER_SECS: NonZeroU64 =
        NonZeroU64::new(2 * 60 * 60).unwrap();
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            bind: None,
            stuck_after_secs: Self::DEFAULT_STUCK_AFTER_SECS,
        }
    }
}
