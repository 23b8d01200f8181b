//! A mint's identifiers: Alpaca's request id (the aggregate id) and ours.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::vocabulary::string_newtype;

/// Alpaca's id for a tokenization request: 1–128 printable ASCII
/// characters without whitespace (a UUID in practice, but documentation
/// examples are not, so the format is not assumed).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(
    value_type = String,
    pattern = "^[!-~]{1,128}$",
    example = "12345678-0000-4000-8000-000000000001"
)]
pub struct TokenizationRequestId(String);

string_newtype!(TokenizationRequestId, InvalidTokenizationRequestId);

impl TokenizationRequestId {
    pub const MAX_LEN: usize = 128;

    pub fn new(raw: &str) -> Result<Self, InvalidTokenizationRequestId> {
        let invalid = |reason| InvalidTokenizationRequestId {
            value: raw.chars().take(Self::MAX_LEN).collect(),
            reason,
        };
        if raw.is_empty() {
            return Err(invalid("it is empty"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(invalid("it is longer than 128 characters"));
        }
        if !raw.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid("it must be printable ASCII without spaces"));
        }
        Ok(Self(raw.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tokenization_request_id {value:?}: {reason}")]
pub struct InvalidTokenizationRequestId {
    pub value: String,
    pub reason: &'static str,
}

/// Our id for a mint, drawn (UUID v4) from the injected id generator.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct MintId(Uuid);

impl MintId {
    pub const fn new(id: Uuid) -> Self {
        Self(id)
    }

    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for MintId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for MintId {
    type Err = InvalidMintId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self).map_err(|_| InvalidMintId {
            value: s.chars().take(64).collect(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid issuer_request_id {value:?}: expected a UUID")]
pub struct InvalidMintId {
    pub value: String,
}
