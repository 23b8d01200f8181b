//! How a feature plugs into the service: every feature's `install` takes
//! the Rocket being built and one [`Install`], rebuilds its views if their
//! projection changed, manages its state and mounts its routes. The
//! engines later read that same state from Rocket, so it is built once.

use std::sync::Arc;

use sqlx::SqlitePool;

use crate::alpaca::AlpacaConfig;
use crate::clock::{Clock, IdGenerator};
use crate::vocabulary::Network;

/// What the composition root hands every feature.
#[derive(Clone, Copy)]
pub struct Install<'a> {
    pub pool: &'a SqlitePool,
    pub clock: &'a Arc<dyn Clock>,
    pub ids: &'a Arc<dyn IdGenerator>,
    /// The networks with a configured chain; mints for others are refused.
    pub networks: &'a [Network],
    /// `[alpaca]`, when the service talks to Alpaca.
    pub alpaca: Option<&'a AlpacaConfig>,
}
