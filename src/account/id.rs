//! The account's identifiers and validated fields.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::vocabulary::string_newtype;

/// The issuer's identifier for an AP (our side of the handshake).
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
pub struct ClientId(Uuid);

impl ClientId {
    pub const fn new(id: Uuid) -> Self {
        Self(id)
    }

    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ClientId {
    type Err = InvalidClientId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self).map_err(|_| InvalidClientId {
            value: s.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid client id {value:?}: expected a UUID")]
pub struct InvalidClientId {
    pub value: String,
}

/// An AP's email, normalised (trimmed, lowercased) so that uniqueness does
/// not depend on how an operator or Alpaca spelled it.
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
#[schema(value_type = String, format = Email)]
pub struct Email(String);

string_newtype!(Email, InvalidEmail);

impl Email {
    const MAX_LEN: usize = 254;

    pub fn new(raw: &str) -> Result<Self, InvalidEmail> {
        let normalized = raw.trim().to_lowercase();
        let invalid = |reason| InvalidEmail {
            value: raw.to_owned(),
            reason,
        };
        if normalized.is_empty() {
            return Err(invalid(EmailDefect::Empty));
        }
        if normalized.chars().count() > Self::MAX_LEN {
            return Err(invalid(EmailDefect::TooLong));
        }
        if normalized
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(EmailDefect::Whitespace));
        }
        let mut parts = normalized.split('@');
        let (Some(local), Some(domain), None) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(EmailDefect::AtSign));
        };
        if local.is_empty() || domain.is_empty() {
            return Err(invalid(EmailDefect::EmptyPart));
        }
        if domain.split('.').count() < 2 || domain.split('.').any(str::is_empty)
        {
            return Err(invalid(EmailDefect::Domain));
        }
        Ok(Self(normalized))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailDefect {
    Empty,
    TooLong,
    Whitespace,
    AtSign,
    EmptyPart,
    Domain,
}

impl fmt::Display for EmailDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "it is empty",
            Self::TooLong => "it is longer than 254 characters",
            Self::Whitespace => "it contains whitespace or control characters",
            Self::AtSign => "it must contain exactly one '@'",
            Self::EmptyPart => "both sides of '@' must be non-empty",
            Self::Domain => {
                "the domain must contain a dot between non-empty labels"
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid email {value:?}: {reason}")]
pub struct InvalidEmail {
    pub value: String,
    pub reason: EmailDefect,
}

/// The AP's Alpaca account number as Alpaca sends it in the handshake.
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
#[schema(value_type = String, pattern = "^[!-~]{1,64}$", example = "AP-0001")]
pub struct AlpacaAccountNumber(String);

string_newtype!(AlpacaAccountNumber, InvalidAlpacaAccountNumber);

impl AlpacaAccountNumber {
    const MAX_LEN: usize = 64;

    pub fn new(raw: &str) -> Result<Self, InvalidAlpacaAccountNumber> {
        let invalid = |reason| InvalidAlpacaAccountNumber {
            value: raw.to_owned(),
            reason,
        };
        if raw.is_empty() {
            return Err(invalid("it is empty"));
        }
        if raw.chars().count() > Self::MAX_LEN {
            return Err(invalid("it is longer than 64 characters"));
        }
        if !raw.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid("it must be printable ASCII without spaces"));
        }
        Ok(Self(raw.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Alpaca account number {value:?}: {reason}")]
pub struct InvalidAlpacaAccountNumber {
    pub value: String,
    pub reason: &'static str,
}

/// The AP's Alpaca account UUID: how Alpaca names the AP on the affiliated
/// ("correspondent-authorized") flow (`client_account_id`). Never nil.
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
#[serde(try_from = "Uuid", into = "Uuid")]
pub struct AlpacaAccountId(Uuid);

impl AlpacaAccountId {
    pub fn new(id: Uuid) -> Result<Self, InvalidAlpacaAccountId> {
        if id.is_nil() {
            return Err(InvalidAlpacaAccountId {
                value: id.to_string(),
                reason: "the nil UUID names no account",
            });
        }
        Ok(Self(id))
    }

    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for AlpacaAccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AlpacaAccountId {
    type Err = InvalidAlpacaAccountId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = Uuid::parse_str(s).map_err(|_| InvalidAlpacaAccountId {
            value: s.to_owned(),
            reason: "expected a UUID",
        })?;
        Self::new(id)
    }
}

impl TryFrom<Uuid> for AlpacaAccountId {
    type Error = InvalidAlpacaAccountId;

    fn try_from(value: Uuid) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<AlpacaAccountId> for Uuid {
    fn from(value: AlpacaAccountId) -> Self {
        value.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Alpaca account id {value:?}: {reason}")]
pub struct InvalidAlpacaAccountId {
    pub value: String,
    pub reason: &'static str,
}
