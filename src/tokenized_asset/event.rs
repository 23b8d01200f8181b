use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{Network, TokenSymbol, UnderlyingSymbol, Vault};
use crate::operator::OperatorReason;

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
    /// A freeze (replacing any earlier one): active from `from` (or at
    /// once) until `until` (or an `Unfrozen`).
    Frozen {
        reason: OperatorReason,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        frozen_at: DateTime<Utc>,
    },
    Unfrozen {
        reason: OperatorReason,
        unfrozen_at: DateTime<Utc>,
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
            Self::Frozen { .. } => "TokenizedAssetEvent::Frozen",
            Self::Unfrozen { .. } => "TokenizedAssetEvent::Unfrozen",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
