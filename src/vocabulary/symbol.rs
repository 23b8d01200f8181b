//! Share and token symbols.

use serde::{Deserialize, Serialize};

use super::string_newtype;

/// The symbol of the underlying share, e.g. `AAPL` or `BRK.B`.
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
#[schema(value_type = String, pattern = "^[A-Z0-9.]{1,12}$", example = "AAPL")]
pub struct UnderlyingSymbol(String);

string_newtype!(UnderlyingSymbol, InvalidSymbol);

impl UnderlyingSymbol {
    const MAX_LEN: usize = 12;

    pub fn new(raw: &str) -> Result<Self, InvalidSymbol> {
        let invalid = |reason| InvalidSymbol {
            kind: "underlying symbol",
            value: raw.to_owned(),
            reason,
        };
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(invalid("it must be 1 to 12 characters long"));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '.')
        {
            return Err(invalid("only A-Z, 0-9 and '.' are allowed"));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// The on-chain token's symbol, case preserved (e.g. `tAAPL`).
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
    pattern = "^[A-Za-z0-9.]{1,20}$",
    example = "tAAPL"
)]
pub struct TokenSymbol(String);

string_newtype!(TokenSymbol, InvalidSymbol);

impl TokenSymbol {
    const MAX_LEN: usize = 20;

    pub fn new(raw: &str) -> Result<Self, InvalidSymbol> {
        let invalid = |reason| InvalidSymbol {
            kind: "token symbol",
            value: raw.to_owned(),
            reason,
        };
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(invalid("it must be 1 to 20 characters long"));
        }
        if !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
            return Err(invalid("only letters, digits and '.' are allowed"));
        }
        Ok(Self(raw.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct InvalidSymbol {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}
