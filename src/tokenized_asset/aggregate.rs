//! The `TokenizedAsset` aggregate (one listing per underlying and
//! network): decide (`handle`) and evolve (`apply`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use super::{
    AssetKey, Network, TokenSymbol, TokenizedAssetCommand, TokenizedAssetEvent,
    UnderlyingSymbol, Vault,
};
use crate::clock::Clock;
use crate::operator::OperatorReason;

/// A listed asset's facts: the vault may be repointed, a freeze set or
/// lifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub underlying: UnderlyingSymbol,
    pub token: TokenSymbol,
    pub network: Network,
    pub vault: Vault,
    pub added_at: DateTime<Utc>,
    #[serde(default)]
    pub freeze: Option<Freeze>,
}

/// An operator's freeze of one listing: new mints are refused and newly
/// detected redemptions held while it is active. Stored with its window
/// so that a scheduled freeze starts and ends by itself (also across a
/// restart): whether it is active is decided with the clock.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct Freeze {
    pub reason: OperatorReason,
    /// Active from this instant; null = from `frozen_at`.
    pub from: Option<DateTime<Utc>>,
    /// Active until this instant (exclusive); null = until unfrozen.
    pub until: Option<DateTime<Utc>>,
    pub frozen_at: DateTime<Utc>,
}

impl Freeze {
    /// Whether the freeze holds at `now`: inside `[from, until)`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| from <= now)
            && self.until.is_none_or(|until| now < until)
    }

    /// A freeze command that would change nothing: same window, same reason.
    fn is_same(
        &self,
        reason: &OperatorReason,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> bool {
        self.reason == *reason && self.from == from && self.until == until
    }
}

/// A freeze window that cannot hold at any future instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidWindow {
    #[error("the freeze window ends ({until}) before it starts ({from})")]
    EndsBeforeStart {
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    #[error("the freeze window has already ended ({until})")]
    AlreadyEnded { until: DateTime<Utc> },
}

fn check_window(
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), InvalidWindow> {
    let Some(until) = until else {
        return Ok(());
    };
    if let Some(from) = from
        && until <= from
    {
        return Err(InvalidWindow::EndsBeforeStart { from, until });
    }
    if until <= now {
        return Err(InvalidWindow::AlreadyEnded { until });
    }
    Ok(())
}

/// The listing lifecycle. A newly added asset is enabled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenizedAsset {
    #[default]
    NotAdded,
    Enabled {
        listing: Listing,
    },
    Disabled {
        listing: Listing,
    },
}

impl TokenizedAsset {
    fn listing_mut(&mut self) -> Option<&mut Listing> {
        match self {
            Self::NotAdded => None,
            Self::Enabled { listing } | Self::Disabled { listing } => {
                Some(listing)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizedAssetError {
    #[error("tokenized asset is not listed")]
    NotAdded,
    #[error(
        "{underlying} on {network} is already listed as token {listed}, \
         not {requested}"
    )]
    TokenMismatch {
        underlying: UnderlyingSymbol,
        network: Network,
        listed: TokenSymbol,
        requested: TokenSymbol,
    },
    #[error("this stream holds {listed}, not {requested}")]
    KeyMismatch { listed: String, requested: String },
    #[error(transparent)]
    InvalidWindow(#[from] InvalidWindow),
}

/// What the tokenized-asset aggregate needs from the outside world.
#[derive(Clone)]
pub struct TokenizedAssetServices {
    pub clock: Arc<dyn Clock>,
}

impl Aggregate for TokenizedAsset {
    const TYPE: &'static str = "TokenizedAsset";
    type Command = TokenizedAssetCommand;
    type Event = TokenizedAssetEvent;
    type Error = TokenizedAssetError;
    type Services = TokenizedAssetServices;

    async fn handle(
        &mut self,
        command: TokenizedAssetCommand,
        services: &TokenizedAssetServices,
        sink: &EventSink<Self>,
    ) -> Result<(), TokenizedAssetError> {
        let now = services.clock.now();
        let event = match (&*self, command) {
            (
                Self::NotAdded,
                TokenizedAssetCommand::Add {
                    underlying,
                    token,
                    network,
                    vault,
                },
            ) => TokenizedAssetEvent::Added {
                underlying,
                token,
                network,
                vault,
                added_at: now,
            },
            (
                Self::Enabled { listing } | Self::Disabled { listing },
                TokenizedAssetCommand::Add {
                    underlying,
                    token,
                    network,
                    vault,
                },
            ) => {
                if listing.underlying != underlying
                    || listing.network != network
                {
                    return Err(TokenizedAssetError::KeyMismatch {
                        listed: AssetKey::new(
                            listing.underlying.clone(),
                            listing.network,
                        )
                        .to_string(),
                        requested: AssetKey::new(underlying, network)
                            .to_string(),
                    });
                }
                if listing.token != token {
                    return Err(TokenizedAssetError::TokenMismatch {
                        underlying,
                        network,
                        listed: listing.token.clone(),
                        requested: token,
                    });
                }
                if listing.vault == vault {
                    return Ok(());
                }
                TokenizedAssetEvent::VaultRepointed {
                    previous_vault: listing.vault,
                    vault,
                    repointed_at: now,
                }
            }
            (Self::NotAdded, _) => return Err(TokenizedAssetError::NotAdded),
            (
                Self::Enabled { listing } | Self::Disabled { listing },
                TokenizedAssetCommand::Freeze {
                    reason,
                    from,
                    until,
                },
            ) => {
                if listing
                    .freeze
                    .as_ref()
                    .is_some_and(|freeze| freeze.is_same(&reason, from, until))
                {
                    return Ok(());
                }
                check_window(from, until, now)?;
                TokenizedAssetEvent::Frozen {
                    reason,
                    from,
                    until,
                    frozen_at: now,
                }
            }
            (
                Self::Enabled { listing } | Self::Disabled { listing },
                TokenizedAssetCommand::Unfreeze { reason },
            ) => {
                if listing.freeze.is_none() {
                    return Ok(());
                }
                TokenizedAssetEvent::Unfrozen {
                    reason,
                    unfrozen_at: now,
                }
            }
            (Self::Enabled { .. }, TokenizedAssetCommand::Enable)
            | (Self::Disabled { .. }, TokenizedAssetCommand::Disable) => {
                return Ok(());
            }
            (Self::Disabled { .. }, TokenizedAssetCommand::Enable) => {
                TokenizedAssetEvent::Enabled { enabled_at: now }
            }
            (Self::Enabled { .. }, TokenizedAssetCommand::Disable) => {
                TokenizedAssetEvent::Disabled { disabled_at: now }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: TokenizedAssetEvent) {
        match event {
            TokenizedAssetEvent::Added {
                underlying,
                token,
                network,
                vault,
                added_at,
            } => {
                *self = Self::Enabled {
                    listing: Listing {
                        underlying,
                        token,
                        network,
                        vault,
                        added_at,
                        freeze: None,
                    },
                };
            }
            TokenizedAssetEvent::Frozen {
                reason,
                from,
                until,
                frozen_at,
            } => {
                if let Some(listing) = self.listing_mut() {
                    listing.freeze = Some(Freeze {
                        reason,
                        from,
                        until,
                        frozen_at,
                    });
                }
            }
            TokenizedAssetEvent::Unfrozen { .. } => {
                if let Some(listing) = self.listing_mut() {
                    listing.freeze = None;
                }
            }
            TokenizedAssetEvent::VaultRepointed { vault, .. } => {
                if let Some(listing) = self.listing_mut() {
                    listing.vault = vault;
                }
            }
            TokenizedAssetEvent::Enabled { .. } => {
                *self = match std::mem::take(self) {
                    Self::Disabled { listing } => Self::Enabled { listing },
                    other => other,
                };
            }
            TokenizedAssetEvent::Disabled { .. } => {
                *self = match std::mem::take(self) {
                    Self::Enabled { listing } => Self::Disabled { listing },
                    other => other,
                };
            }
        }
    }
}
