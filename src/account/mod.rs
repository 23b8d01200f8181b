//! Authorized-participant accounts: registration by the issuer's operators,
//! linking to an Alpaca account (the ITN handshake) and the allow-list of
//! wallets that may receive mints and send redemptions.

mod aggregate;
mod api;
mod cmd;
mod event;
mod id;
mod openapi;
mod service;
mod view;

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod tests;

pub use crate::vocabulary::{InvalidWallet, Wallet};
pub use aggregate::{Account, AccountError, AccountServices, Profile};
pub use api::{AccountApiDoc, AccountState, routes};
pub use cmd::AccountCommand;
pub use event::AccountEvent;
pub use id::{
    AlpacaAccountId, AlpacaAccountNumber, ClientId, Email, EmailDefect,
    InvalidAlpacaAccountId, InvalidAlpacaAccountNumber, InvalidClientId,
    InvalidEmail,
};
pub use service::install;
pub use view::{
    AccountCqrs, AccountLink, AccountQueryError, AccountView, cqrs,
    find_by_alpaca_account_id, find_by_client_id, find_by_email,
    find_owner_of_wallet, rebuild_stale_views, rebuild_views,
};
