use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{AlpacaAccountId, AlpacaAccountNumber, ClientId, Email, Wallet};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    Registered {
        client_id: ClientId,
        email: Email,
        registered_at: DateTime<Utc>,
    },
    Linked {
        alpaca_account: AlpacaAccountNumber,
        linked_at: DateTime<Utc>,
    },
    WalletWhitelisted {
        wallet: Wallet,
        whitelisted_at: DateTime<Utc>,
    },
    WalletUnwhitelisted {
        wallet: Wallet,
        unwhitelisted_at: DateTime<Utc>,
    },
    /// Replaces any earlier id; the claim table moves with it.
    AlpacaAccountIdRecorded {
        alpaca_account_id: AlpacaAccountId,
        recorded_at: DateTime<Utc>,
    },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Registered { .. } => "AccountEvent::Registered",
            Self::Linked { .. } => "AccountEvent::Linked",
            Self::WalletWhitelisted { .. } => "AccountEvent::WalletWhitelisted",
            Self::WalletUnwhitelisted { .. } => {
                "AccountEvent::WalletUnwhitelisted"
            }
            Self::AlpacaAccountIdRecorded { .. } => {
                "AccountEvent::AlpacaAccountIdRecorded"
            }
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
