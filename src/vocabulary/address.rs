//! EVM addresses the domain names: AP wallets and receipt vaults.

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};

/// Lowercase `0x` hex: the key form of every address column, so lookups
/// ignore EIP-55 checksum casing.
pub fn address_key(address: Address) -> String {
    format!("{address:#x}")
}

/// Parses `0x` + 40 hex digits in any letter case. Shared by every address
/// the issuer accepts over HTTP or in configuration.
pub fn parse_address(raw: &str) -> Result<Address, &'static str> {
    let Some(hex) = raw.strip_prefix("0x").or_else(|| raw.strip_prefix("0X"))
    else {
        return Err("expected a 0x-prefixed address");
    };
    if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("expected 40 hexadecimal digits after 0x");
    }
    hex.parse::<Address>()
        .map_err(|_| "expected 40 hexadecimal digits after 0x")
}

/// `address`, `Display`, `FromStr` (through [`parse_address`]) and serde's
/// `String` round trip for a non-zero address newtype whose
/// `fn new(Address) -> Result<Self, $error>` refuses what it must, and
/// whose error has `value` and `reason` fields.
macro_rules! address_newtype {
    ($name:ident, $error:ident) => {
        impl $name {
            pub const fn address(&self) -> Address {
                self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(
                &self,
                f: &mut ::std::fmt::Formatter<'_>,
            ) -> ::std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(parse_address(s).map_err(|reason| $error {
                    value: s.to_owned(),
                    reason,
                })?)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $error;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                value.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0.to_string()
            }
        }
    };
}

/// A wallet an AP may use: a non-zero EVM address. Parsing requires the
/// `0x` prefix and ignores the EIP-55 checksum (Alpaca sends either case).
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
#[serde(try_from = "String", into = "String")]
#[schema(
    value_type = String,
    pattern = "^0x(?!0{40})[0-9a-fA-F]{40}$",
    example = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
)]
pub struct Wallet(Address);

address_newtype!(Wallet, InvalidWallet);

impl Wallet {
    pub fn new(address: Address) -> Result<Self, InvalidWallet> {
        if address.is_zero() {
            return Err(InvalidWallet {
                value: address.to_string(),
                reason: "the zero address cannot own tokens",
            });
        }
        Ok(Self(address))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid wallet address {value:?}: {reason}")]
pub struct InvalidWallet {
    pub value: String,
    pub reason: &'static str,
}

/// A Rain receipt vault: a non-zero contract address.
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
#[serde(try_from = "String", into = "String")]
#[schema(
    value_type = String,
    pattern = "^0x(?!0{40})[0-9a-fA-F]{40}$",
    example = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
)]
pub struct Vault(Address);

address_newtype!(Vault, InvalidVault);

impl Vault {
    pub fn new(address: Address) -> Result<Self, InvalidVault> {
        if address.is_zero() {
            return Err(InvalidVault {
                value: address.to_string(),
                reason: "the zero address is not a vault",
            });
        }
        Ok(Self(address))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid vault address {value:?}: {reason}")]
pub struct InvalidVault {
    pub value: String,
    pub reason: &'static str,
}
