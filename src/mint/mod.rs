//! Mints: Alpaca's mint request and journal confirmation (HTTP), then
//! the on-chain deposit and the callback to Alpaca (the flow).
//!
//! The aggregate id is Alpaca's `tokenization_request_id`, so the event
//! store's primary key makes a second mint for one Alpaca request
//! impossible: of two concurrent `Initiate`s exactly one commits.
//! Every side effect lives in the flow (`flow.rs`); the aggregate only
//! records intents and outcomes (see SPEC.md, "Mint").

mod admin;
mod aggregate;
mod api;
mod cmd;
mod event;
mod flow;
mod id;
mod openapi;
mod service;
mod view;

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod tests;

pub use crate::driver::DriverStatus;
pub use crate::tokenized_asset::Vault;
pub use admin::MintAdminApiDoc;
pub use aggregate::{
    FailureClass, JournalOutcome, MAX_TX_ATTEMPTS, Mint, MintError,
    MintFailure, MintOrder, MintRequest, MintServices, MintStatus,
    MintedTokens, OWNER_TYPE, ReplacementCause, TxAttempt,
};
pub use api::{MintApiDoc, MintState, routes};
pub use cmd::MintCommand;
pub use event::MintEvent;
pub use flow::{DriverSettings, MintDriver, MintFlow, engine};
pub use id::{
    InvalidMintId, InvalidTokenizationRequestId, MintId, TokenizationRequestId,
};
pub use service::install;
pub use view::{
    MintCqrs, MintQueryError, MintView, cqrs, find_by_issuer_request_id,
    find_by_tokenization_request_id, rebuild_stale_views, rebuild_views,
    stuck_mint_views, stuck_mints, unfinished_mints,
};
