//! Readiness: the chain's RPC answers and serves the configured chain id.

use crate::http::health::{ProbeError, ReadinessProbe};
use crate::vocabulary::Network;

use super::client::ChainClient;

pub struct ChainProbe {
    client: ChainClient,
    name: String,
}

impl ChainProbe {
    pub fn new(client: ChainClient, network: Network) -> Self {
        Self {
            client,
            name: format!("chain:{network}"),
        }
    }
}

#[async_trait::async_trait]
impl ReadinessProbe for ChainProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<(), ProbeError> {
        self.client
            .check_chain_id()
            .await
            .map_err(|error| Box::new(error) as ProbeError)
    }
}
