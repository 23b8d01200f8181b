//! Rain-compatible receipt vault: contract bindings, deployment and a local
//! anvil harness.
//!
//! The Solidity sources live in `contracts/`; their compiled artifacts in
//! `artifacts/` are committed, so building this crate never needs node.
//! Regenerate them with `scripts/compile-contracts`.

pub mod anvil;
mod contracts;
pub mod deploy;
pub mod errors;
pub mod roles;
#[cfg(feature = "test-support")]
pub mod testing;

pub use contracts::{
    CloneFactory, OffchainAssetReceiptVault,
    OffchainAssetReceiptVaultAuthorizerV1, Receipt,
};
