//! `[database]`: where the event store and views live.

use std::num::NonZeroU32;

use serde::Deserialize;

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub max_connections: NonZeroU32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl("sqlite://issuance.db".to_owned()),
            max_connections: NonZeroU32::new(8).unwrap_or(NonZeroU32::MIN),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database url {url:?} must start with `sqlite:`")]
pub struct InvalidDatabaseUrl {
    pub url: String,
}

/// An SQLite connection URL (`sqlite://path`, `sqlite::memory:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: &str) -> Result<Self, InvalidDatabaseUrl> {
        if url.starts_with("sqlite:") {
            Ok(Self(url.to_owned()))
        } else {
            Err(InvalidDatabaseUrl {
                url: url.to_owned(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        Self::new(&String::deserialize(deserializer)?)
            .map_err(serde::de::Error::custom)
    }
}
