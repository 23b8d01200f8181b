//! The `Account` aggregate: decide (`handle`) and evolve (`apply`).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use super::{
    AccountCommand, AccountEvent, AlpacaAccountId, AlpacaAccountNumber,
    ClientId, Email, Wallet,
};
use crate::clock::Clock;

/// What an account knows from registration on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub client_id: ClientId,
    pub email: Email,
    pub registered_at: DateTime<Utc>,
    pub wallets: BTreeSet<Wallet>,
    /// Set by an operator for the affiliated flow; independent of the
    /// handshake link, so it may be recorded in either state.
    #[serde(default)]
    pub alpaca_account_id: Option<AlpacaAccountId>,
}

/// The account lifecycle. Wallets may be allow-listed from `Registered` on:
/// minting checks the link separately, and letting operators prepare
/// wallets before Alpaca's handshake avoids an ordering dependency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Account {
    #[default]
    NotRegistered,
    Registered {
        profile: Profile,
    },
    Linked {
        profile: Profile,
        alpaca_account: AlpacaAccountNumber,
        linked_at: DateTime<Utc>,
    },
}

impl Account {
    fn profile_mut(&mut self) -> Option<&mut Profile> {
        match self {
            Self::NotRegistered => None,
            Self::Registered { profile } | Self::Linked { profile, .. } => {
                Some(profile)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("account {client_id} is already registered")]
    AlreadyRegistered { client_id: ClientId },
    #[error("account is not registered")]
    NotRegistered,
    #[error(
        "account {client_id} is already linked to Alpaca account \
         {alpaca_account}"
    )]
    AlreadyLinked {
        client_id: ClientId,
        alpaca_account: AlpacaAccountNumber,
    },
}

/// What the account aggregate needs from the outside world.
#[derive(Clone)]
pub struct AccountServices {
    pub clock: Arc<dyn Clock>,
}

impl Aggregate for Account {
    const TYPE: &'static str = "Account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = AccountServices;

    async fn handle(
        &mut self,
        command: AccountCommand,
        services: &AccountServices,
        sink: &EventSink<Self>,
    ) -> Result<(), AccountError> {
        let now = services.clock.now();
        let event = match (&*self, command) {
            (
                Self::NotRegistered,
                AccountCommand::Register { client_id, email },
            ) => AccountEvent::Registered {
                client_id,
                email,
                registered_at: now,
            },
            (
                Self::Registered { profile } | Self::Linked { profile, .. },
                AccountCommand::Register { .. },
            ) => {
                return Err(AccountError::AlreadyRegistered {
                    client_id: profile.client_id,
                });
            }
            (Self::NotRegistered, _) => {
                return Err(AccountError::NotRegistered);
            }
            (
                Self::Registered { .. },
                AccountCommand::Link { alpaca_account },
            ) => AccountEvent::Linked {
                alpaca_account,
                linked_at: now,
            },
            (
                Self::Linked {
                    profile,
                    alpaca_account,
                    ..
                },
                AccountCommand::Link { .. },
            ) => {
                return Err(AccountError::AlreadyLinked {
                    client_id: profile.client_id,
                    alpaca_account: alpaca_account.clone(),
                });
            }
            (
                Self::Registered { profile } | Self::Linked { profile, .. },
                AccountCommand::WhitelistWallet { wallet },
            ) => {
                if profile.wallets.contains(&wallet) {
                    return Ok(());
                }
                AccountEvent::WalletWhitelisted {
                    wallet,
                    whitelisted_at: now,
                }
            }
            (
                Self::Registered { profile } | Self::Linked { profile, .. },
                AccountCommand::RecordAlpacaAccountId { alpaca_account_id },
            ) => {
                if profile.alpaca_account_id == Some(alpaca_account_id) {
                    return Ok(());
                }
                AccountEvent::AlpacaAccountIdRecorded {
                    alpaca_account_id,
                    recorded_at: now,
                }
            }
            (
                Self::Registered { profile } | Self::Linked { profile, .. },
                AccountCommand::UnwhitelistWallet { wallet },
            ) => {
                if !profile.wallets.contains(&wallet) {
                    return Ok(());
                }
                AccountEvent::WalletUnwhitelisted {
                    wallet,
                    unwhitelisted_at: now,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::Registered {
                client_id,
                email,
                registered_at,
            } => {
                *self = Self::Registered {
                    profile: Profile {
                        client_id,
                        email,
                        registered_at,
                        wallets: BTreeSet::new(),
                        alpaca_account_id: None,
                    },
                };
            }
            AccountEvent::Linked {
                alpaca_account,
                linked_at,
            } => {
                *self = match std::mem::take(self) {
                    Self::Registered { profile } => Self::Linked {
                        profile,
                        alpaca_account,
                        linked_at,
                    },
                    // `handle` never emits Linked from another state.
                    other => other,
                };
            }
            AccountEvent::WalletWhitelisted { wallet, .. } => {
                if let Some(profile) = self.profile_mut() {
                    profile.wallets.insert(wallet);
                }
            }
            AccountEvent::WalletUnwhitelisted { wallet, .. } => {
                if let Some(profile) = self.profile_mut() {
                    profile.wallets.remove(&wallet);
                }
            }
            AccountEvent::AlpacaAccountIdRecorded {
                alpaca_account_id, ..
            } => {
                if let Some(profile) = self.profile_mut() {
                    profile.alpaca_account_id = Some(alpaca_account_id);
                }
            }
        }
    }
}
