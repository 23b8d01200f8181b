//! issuance-bot library.
pub mod quantity;
