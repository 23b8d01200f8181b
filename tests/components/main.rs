//! Component tests against real parts (anvil, the ITN simulator, SQLite):
//! the chain client and transaction pipeline, the Alpaca client, and each
//! flow on the effect engine, below the HTTP API. Kept out of the
//! library's unit-test binary so that `cargo test --lib` stays fast and
//! hermetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] fns"
)]

mod alpaca_sim;
mod chain;
mod mint_flow;
mod redemption_flow;
