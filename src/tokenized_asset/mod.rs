//! The tokens this issuer offers: one listing per (underlying, network),
//! each backed by one Rain receipt vault, enabled or disabled for Alpaca.

mod aggregate;
mod api;
mod cmd;
mod custody;
mod event;
mod id;
mod service;
mod view;

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod custody_tests;
#[cfg(test)]
mod tests;

pub use crate::vocabulary::{
    InvalidSymbol, InvalidVault, Network, TokenSymbol, UnderlyingSymbol,
    UnknownNetwork, Vault,
};
pub use aggregate::{
    Freeze, InvalidWindow, Listing, TokenizedAsset, TokenizedAssetError,
    TokenizedAssetServices,
};
pub use api::{TokenizedAssetApiDoc, TokenizedAssetState, routes};
pub use cmd::TokenizedAssetCommand;
pub use custody::{CustodyAccounts, CustodyApiDoc, install_custody_accounts};
pub use event::TokenizedAssetEvent;
pub use id::AssetKey;
pub use service::install;
pub use view::{
    AssetQueryError, AssetView, TokenizedAssetCqrs, cqrs, find, find_by_vault,
    list_all, list_enabled, list_for_underlying, rebuild_stale_views,
    rebuild_views,
};
