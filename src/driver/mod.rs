//! What the background drivers share: the persisted status of every item
//! they are working on, one table for every flow.

mod status;

pub use status::{DriverStatus, Flow, clear_error, record_error, status};
