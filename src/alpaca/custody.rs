//! `[alpaca] custody_accounts`: which of the issuer's Alpaca accounts holds
//! a symbol's shares when it is not the designated one (itn-wire.md §4.4).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use crate::vocabulary::UnderlyingSymbol;

/// `[alpaca] custody_accounts = { AAPL = "<uuid>" }`: symbols whose shares
/// sit in another issuer account than the designated one. Keys are read
/// case-insensitively (environment variable names arrive lowercased).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustodyOverrides(BTreeMap<UnderlyingSymbol, Uuid>);

impl CustodyOverrides {
    pub fn new(
        raw: BTreeMap<String, Uuid>,
    ) -> Result<Self, InvalidCustodyOverride> {
        let mut overrides = BTreeMap::new();
        for (key, account) in raw {
            let invalid = |reason: String| InvalidCustodyOverride {
                symbol: key.clone(),
                reason,
            };
            let symbol = UnderlyingSymbol::new(&key.to_ascii_uppercase())
                .map_err(|err| invalid(err.to_string()))?;
            if account.is_nil() {
                return Err(invalid("the nil UUID names no account".into()));
            }
            if overrides.insert(symbol, account).is_some() {
                return Err(invalid(
                    "the symbol is listed twice (keys ignore case)".into(),
                ));
            }
        }
        Ok(Self(overrides))
    }

    pub fn get(&self, symbol: &UnderlyingSymbol) -> Option<Uuid> {
        self.0.get(symbol).copied()
    }

    /// Every override, by symbol.
    pub fn iter(&self) -> impl Iterator<Item = (&UnderlyingSymbol, Uuid)> {
        self.0.iter().map(|(symbol, account)| (symbol, *account))
    }
}

impl<'de> Deserialize<'de> for CustodyOverrides {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(BTreeMap::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid custody_accounts entry {symbol:?}: {reason}")]
pub struct InvalidCustodyOverride {
    pub symbol: String,
    pub reason: String,
}
