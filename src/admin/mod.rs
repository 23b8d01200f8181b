//! The operator's read and upkeep endpoints across features, behind the
//! internal key: what is stuck, one aggregate's full history, and a view
//! rebuild on demand. Actions on one flow (retry, close, ...) live with
//! their feature (`mint::admin`, `redemption::admin`).

mod api;
mod client;

use rocket::{Build, Rocket};

pub use api::{
    AdminApiDoc, HistoryAnswer, HistoryEvent, RebuildAnswer, RebuiltView,
    StuckAnswer, StuckMint, StuckRedemption, rebuild_each_view, routes,
};
pub use client::{AdminAction, AdminClient, AdminClientError};

/// Default age past which an unfinished flow is listed as stuck.
pub const DEFAULT_STUCK_AFTER_SECS: u64 = 600;

/// Mounts the admin routes at `/`.
pub fn install(rocket: Rocket<Build>) -> Rocket<Build> {
    rocket.mount("/", routes())
}
