//! The effect engine ([`Engine`]) that runs every flow's side effects, and
//! the persisted status of every item it works on (`flow_status`).
//!
//! A flow (mints, redemptions) implements [`Flow`]: how to list its open
//! work and how to take one step on one item. Scheduling, waking, step
//! deadlines, backoff, error status and shutdown are the engine's.

mod engine;
mod origin;
mod status;
mod wake;

pub use engine::{Engine, EngineSettings, Flow, Retry, Step, StepError};
pub use origin::FlowOrigins;
pub use status::{DriverStatus, FlowName, clear_error, record_error, status};
pub use wake::fan_out;
