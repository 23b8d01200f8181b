use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{Network, TokenSymbol, UnderlyingSymbol, Vault};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenizedAssetEvent {
    Added {
        underlying: UnderlyingSymbol,
        token: TokenSymbol,
        network: Network,
        vault: Vault,
        added_at: DateTime<Utc>,
    },
    VaultRepointed {
        previous_vault: Vault,
        vault: Vault,
        repointed_at: DateTime<Utc>,
    },
    Enabled {
        enabled_at: DateTime<Utc>,
    },
    Disabled {
        disabled_at: DateTime<Utc>,
    },
}

impl DomainEvent for TokenizedAssetEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Added { .. } => "TokenizedAssetEvent::Added",
            Self::VaultRepointed { .. } => {
                "TokenizedAssetEvent::VaultRepointed"
            }
            Self::Enabled { .. } => "TokenizedAssetEvent::Enabled",
            Self::Disabled { .. } => "TokenizedAssetEvent::Disabled",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
