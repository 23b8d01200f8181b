//! The domain's shared words: networks, symbols, wallet and vault
//! addresses, and how an address is written as a database key. A leaf:
//! it imports nothing of the crate, so infrastructure (`chain`, `alpaca`,
//! `config`) and features can both use it without importing each other.

mod address;
mod network;
mod symbol;

pub use address::{
    InvalidVault, InvalidWallet, Vault, Wallet, address_key, parse_address,
};
pub use network::{Network, UnknownNetwork};
pub use symbol::{InvalidSymbol, TokenSymbol, UnderlyingSymbol};

/// The conversions every validated string newtype has: `as_str`,
/// `Display`, `FromStr` and serde's `String` round trip
/// (`#[serde(try_from = "String", into = "String")]`), all through the
/// type's own `fn new(&str) -> Result<Self, $error>`, so no path skips
/// its validation.
macro_rules! string_newtype {
    ($name:ident, $error:ty) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(
                &self,
                f: &mut ::std::fmt::Formatter<'_>,
            ) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $error;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

pub(crate) use string_newtype;
