//! The listing's aggregate id.

use std::fmt;

use super::{Network, UnderlyingSymbol};

/// The aggregate id, `"{UNDERLYING}:{network}"` (e.g. `AAPL:base`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssetKey {
    pub underlying: UnderlyingSymbol,
    pub network: Network,
}

impl AssetKey {
    pub const fn new(underlying: UnderlyingSymbol, network: Network) -> Self {
        Self {
            underlying,
            network,
        }
    }
}

impl fmt::Display for AssetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.underlying, self.network)
    }
}
