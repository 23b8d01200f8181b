//! Alpaca's networks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Alpaca's `TokenizationNetwork` values. Closed on our side: we only list
/// tokens on networks we know. Declared in alphabetical order so that the
/// derived `Ord` sorts like the wire names.
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
#[serde(rename_all = "lowercase")]
pub enum Network {
    Arbitrum,
    Base,
    Binance,
    Cronos,
    Ethereum,
    Hypercore,
    Hyperevm,
    Mantle,
    Robinhood,
    Solana,
    Ton,
    Tron,
}

impl Network {
    pub const ALL: [Self; 12] = [
        Self::Arbitrum,
        Self::Base,
        Self::Binance,
        Self::Cronos,
        Self::Ethereum,
        Self::Hypercore,
        Self::Hyperevm,
        Self::Mantle,
        Self::Robinhood,
        Self::Solana,
        Self::Ton,
        Self::Tron,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Arbitrum => "arbitrum",
            Self::Base => "base",
            Self::Binance => "binance",
            Self::Cronos => "cronos",
            Self::Ethereum => "ethereum",
            Self::Hypercore => "hypercore",
            Self::Hyperevm => "hyperevm",
            Self::Mantle => "mantle",
            Self::Robinhood => "robinhood",
            Self::Solana => "solana",
            Self::Ton => "ton",
            Self::Tron => "tron",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Network {
    type Err = UnknownNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|network| network.as_str() == s)
            .ok_or_else(|| UnknownNetwork {
                value: s.to_owned(),
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {value:?}")]
pub struct UnknownNetwork {
    pub value: String,
}
