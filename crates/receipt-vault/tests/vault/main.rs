//! Vault behaviour against a real anvil (receipt-vault spec §7–§10).
#![cfg(test)]

mod custody;
mod flows;
mod reverts;
mod support;
