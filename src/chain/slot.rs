//! The chain connections for HTTP handlers that need them (an operator's
//! retry looks for evidence on chain before anything is sent). The
//! routes are built before the chains are connected, so the slot is
//! filled at startup once they are; until then (or without any chain) it
//! is empty.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use super::TxPipeline;
use crate::vocabulary::Network;

#[derive(Clone, Default)]
pub struct ChainSlot(Arc<OnceLock<BTreeMap<Network, TxPipeline>>>);

impl ChainSlot {
    /// Fills the slot with every chain's pipeline; a second call keeps
    /// the first set (the chains are connected once per process).
    pub fn fill(&self, pipelines: BTreeMap<Network, TxPipeline>) {
        let _ = self.0.set(pipelines);
    }

    /// The pipeline of `network`'s chain, once connected.
    pub fn get(&self, network: Network) -> Option<&TxPipeline> {
        self.0.get().and_then(|pipelines| pipelines.get(&network))
    }
}
