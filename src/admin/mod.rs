//! The operator's read and upkeep endpoints across features, behind the
//! internal key: what is stuck, one aggregate's full history, and a view
//! rebuild on demand. Actions on one flow (retry, close, ...) live with
//! their feature (`mint::admin`, `redemption::admin`).

mod api;
mod client;
mod service;

pub use api::{
    AdminApiDoc, HistoryAnswer, HistoryEvent, RebuildAnswer, RebuiltView,
    StuckAnswer, StuckMint, StuckRedemption, rebuild_each_view, routes,
};
pub use client::{AdminAction, AdminClient, AdminClientError};
pub use service::install;

/// Default age past which an unfinished flow is listed as stuck.
pub const DEFAULT_STUCK_AFTER_SECS: u64 = 600;
