//! Redemptions: an AP sends tokens to the issuer wallet; we tell Alpaca,
//! wait until Alpaca has moved the underlying shares back to the AP, then
//! burn the tokens (and the matching receipts) and return the sub-9-decimal
//! dust to the AP in the same transaction.
//!
//! - [`monitor`]: finds the transfers (chunked `eth_getLogs` from durable
//!   checkpoints) and commits `Detect`;
//! - the aggregate here: the lifecycle, every transition idempotent;
//! - [`flow`]: the only place with side effects (Alpaca calls, burns,
//!   returns), a flow on the shared effect engine;
//! - `api`: internal read endpoints.

mod admin;
mod aggregate;
mod api;
mod cmd;
mod config;
mod event;
pub mod flow;
mod id;
pub mod monitor;
mod returns;
mod service;
mod view;

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod tests;

use aggregate::invalid;

pub use admin::RedemptionAdminApiDoc;
pub use aggregate::{
    AGGREGATE_TYPE, AlpacaCall, BurnAttempt, BurnFailure, BurnMismatch,
    DetectedTransfer, Detection, FailureReason, MAX_BURN_REPLACEMENTS,
    Redemption, RedemptionError, RedemptionServices, Refusal,
};
pub use api::{RedemptionApiDoc, RedemptionResponse, routes};
pub use cmd::RedemptionCommand;
pub use config::RedemptionConfig;
pub use event::RedemptionEvent;
pub use id::{InvalidRedemptionId, RedemptionId};
pub use returns::{ReturnOrder, ReturnTransfer};
pub use service::{RedemptionState, RedemptionTasks, install, start};
pub use view::{
    RedemptionCqrs, RedemptionQueryError, cqrs, find, non_terminal,
    rebuild_stale_views, rebuild_views, stuck_redemption_states,
    stuck_redemptions,
};
