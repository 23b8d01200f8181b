//! Authorized-participant accounts: registration by the issuer's operators,
//! linking to an Alpaca account (the ITN handshake) and the allow-list of
//! wallets that may receive mints and send redemptions.

mod api;
mod cmd;
mod event;
mod openapi;
mod view;

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use rocket::{Build, Rocket};
use serde::{Deserialize, Serialize};
use sqlite_es::SqliteEsError;
use sqlx::SqlitePool;
use uuid::Uuid;

use crate::clock::{Clock, IdGenerator};
use crate::vocabulary::string_newtype;

pub use crate::vocabulary::{InvalidWallet, Wallet};
pub use api::{AccountApiDoc, AccountState, routes};
pub use cmd::AccountCommand;
pub use event::AccountEvent;
pub use view::{
    AccountCqrs, AccountLink, AccountQueryError, AccountView, cqrs,
    find_by_alpaca_account_id, find_by_client_id, find_by_email,
    find_owner_of_wallet, rebuild_stale_views, rebuild_views,
};

/// Rebuilds `account_view` if its projection's version changed (from the
/// event log), then manages [`AccountState`] and mounts the account routes
/// at `/`.
pub async fn install(
    rocket: Rocket<Build>,
    pool: &SqlitePool,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
) -> Result<Rocket<Build>, SqliteEsError> {
    if let Some(replayed) = rebuild_stale_views(pool).await? {
        tracing::info!(target: "account", replayed, "account view rebuilt");
    }
    Ok(rocket
        .manage(AccountState::new(pool.clone(), clock, ids))
        .mount("/", routes()))
}

/// The issuer's identifier for an AP (our side of the handshake).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct ClientId(Uuid);

impl ClientId {
    pub const fn new(id: Uuid) -> Self {
        Self(id)
    }

    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ClientId {
    type Err = InvalidClientId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self).map_err(|_| InvalidClientId {
            value: s.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid client id {value:?}: expected a UUID")]
pub struct InvalidClientId {
    pub value: String,
}

/// An AP's email, normalised (trimmed, lowercased) so that uniqueness does
/// not depend on how an operator or Alpaca spelled it.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = Email)]
pub struct Email(String);

string_newtype!(Email, InvalidEmail);

impl Email {
    const MAX_LEN: usize = 254;

    pub fn new(raw: &str) -> Result<Self, InvalidEmail> {
        let normalized = raw.trim().to_lowercase();
        let invalid = |reason| InvalidEmail {
            value: raw.to_owned(),
            reason,
        };
        if normalized.is_empty() {
            return Err(invalid(EmailDefect::Empty));
        }
        if normalized.chars().count() > Self::MAX_LEN {
            return Err(invalid(EmailDefect::TooLong));
        }
        if normalized
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(EmailDefect::Whitespace));
        }
        let mut parts = normalized.split('@');
        let (Some(local), Some(domain), None) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(EmailDefect::AtSign));
        };
        if local.is_empty() || domain.is_empty() {
            return Err(invalid(EmailDefect::EmptyPart));
        }
        if domain.split('.').count() < 2 || domain.split('.').any(str::is_empty)
        {
            return Err(invalid(EmailDefect::Domain));
        }
        Ok(Self(normalized))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailDefect {
    Empty,
    TooLong,
    Whitespace,
    AtSign,
    EmptyPart,
    Domain,
}

impl fmt::Display for EmailDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "it is empty",
            Self::TooLong => "it is longer than 254 characters",
            Self::Whitespace => "it contains whitespace or control characters",
            Self::AtSign => "it must contain exactly one '@'",
            Self::EmptyPart => "both sides of '@' must be non-empty",
            Self::Domain => {
                "the domain must contain a dot between non-empty labels"
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid email {value:?}: {reason}")]
pub struct InvalidEmail {
    pub value: String,
    pub reason: EmailDefect,
}

/// The AP's Alpaca account number as Alpaca sends it in the handshake.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[!-~]{1,64}$", example = "AP-0001")]
pub struct AlpacaAccountNumber(String);

string_newtype!(AlpacaAccountNumber, InvalidAlpacaAccountNumber);

impl AlpacaAccountNumber {
    const MAX_LEN: usize = 64;

    pub fn new(raw: &str) -> Result<Self, InvalidAlpacaAccountNumber> {
        let invalid = |reason| InvalidAlpacaAccountNumber {
            value: raw.to_owned(),
            reason,
        };
        if raw.is_empty() {
            return Err(invalid("it is empty"));
        }
        if raw.chars().count() > Self::MAX_LEN {
            return Err(invalid("it is longer than 64 characters"));
        }
        if !raw.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid("it must be printable ASCII without spaces"));
        }
        Ok(Self(raw.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Alpaca account number {value:?}: {reason}")]
pub struct InvalidAlpacaAccountNumber {
    pub value: String,
    pub reason: &'static str,
}

/// The AP's Alpaca account UUID: how Alpaca names the AP on the affiliated
/// ("correspondent-authorized") flow (`client_account_id`). Never nil.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(try_from = "Uuid", into = "Uuid")]
pub struct AlpacaAccountId(Uuid);

impl AlpacaAccountId {
    pub fn new(id: Uuid) -> Result<Self, InvalidAlpacaAccountId> {
        if id.is_nil() {
            return Err(InvalidAlpacaAccountId {
                value: id.to_string(),
                reason: "the nil UUID names no account",
            });
        }
        Ok(Self(id))
    }

    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for AlpacaAccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AlpacaAccountId {
    type Err = InvalidAlpacaAccountId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = Uuid::parse_str(s).map_err(|_| InvalidAlpacaAccountId {
            value: s.to_owned(),
            reason: "expected a UUID",
        })?;
        Self::new(id)
    }
}

impl TryFrom<Uuid> for AlpacaAccountId {
    type Error = InvalidAlpacaAccountId;

    fn try_from(value: Uuid) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<AlpacaAccountId> for Uuid {
    fn from(value: AlpacaAccountId) -> Self {
        value.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Alpaca account id {value:?}: {reason}")]
pub struct InvalidAlpacaAccountId {
    pub value: String,
    pub reason: &'static str,
}

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
