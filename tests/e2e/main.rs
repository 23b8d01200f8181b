//! End-to-end tests: one binary, one harness (`harness.rs`) that starts
//! anvil with the vault, the ITN simulator and the whole service.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] fns"
)]

mod admin;
mod affiliated;
mod chains;
mod freeze;
mod harness;
mod metrics_names;
mod mint;
mod redemption;
mod rpc_faults;
mod signatures;
