//! The chain connection for HTTP handlers that need it (an operator's
//! retry looks for evidence on chain before anything is sent). The
//! routes are built before the chain is connected, so the slot is filled
//! at startup once it is; until then (or without `[chain]`) it is empty.

use std::sync::{Arc, OnceLock};

use super::TxPipeline;

#[derive(Clone, Default)]
pub struct ChainSlot(Arc<OnceLock<TxPipeline>>);

impl ChainSlot {
    /// Fills the slot; a second call keeps the first pipeline.
    pub fn fill(&self, pipeline: TxPipeline) {
        // One chain per process: a second fill can only be the same one.
        let _ = self.0.set(pipeline);
    }

    pub fn get(&self) -> Option<&TxPipeline> {
        self.0.get()
    }
}
