//! `[server]`: the HTTP listener and its limits.

use std::net::SocketAddr;
use std::num::NonZeroU64;

use serde::Deserialize;

use crate::auth::ClientIpHeader;

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub body_limit: BodyLimit,
    /// Only when set is the client IP taken from this header (set by a
    /// trusted reverse proxy); otherwise the TCP peer is the client.
    pub client_ip_header: Option<ClientIpHeader>,
    /// `[server.connections]`: caps and timeouts of client connections.
    pub connections: crate::http::front::ConnectionLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit: BodyLimit::DEFAULT,
            client_ip_header: None,
            connections: crate::http::front::ConnectionLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("body_limit must be between 1 and {max} bytes, got {bytes}")]
pub struct InvalidBodyLimit {
    pub bytes: u64,
    pub max: u64,
}

/// Maximum accepted request body, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(NonZeroU64);

impl BodyLimit {
    pub const DEFAULT: Self = Self(NonZeroU64::new(64 * 1024).unwrap());
    /// Far above any ITN payload; a larger limit is a typo.
    pub const MAX_BYTES: u64 = 16 * 1024 * 1024;

    pub fn new(bytes: u64) -> Result<Self, InvalidBodyLimit> {
        NonZeroU64::new(bytes)
            .filter(|bytes| bytes.get() <= Self::MAX_BYTES)
            .map(Self)
            .ok_or(InvalidBodyLimit {
                bytes,
                max: Self::MAX_BYTES,
            })
    }

    pub fn bytes(self) -> u64 {
        self.0.get()
    }
}

impl Default for BodyLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl<'de> Deserialize<'de> for BodyLimit {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        Self::new(u64::deserialize(deserializer)?)
            .map_err(serde::de::Error::custom)
    }
}
