//! Authorized participants as Alpaca knows them: an Alpaca account, the
//! issuer-side id learnt at linking, and a position per symbol.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An AP's Alpaca account UUID; it doubles as the simulator's handle and
/// as `client_account_id` in the affiliated flow.
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
)]
#[serde(transparent)]
pub struct ApId(Uuid);

impl ApId {
    pub fn new(id: Uuid) -> Self {
        Self(id)
    }

    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for ApId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which id Alpaca sends for this AP (fixed per AP-issuer pair).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ClientIdMode {
    /// Handshake flow: the issuer-side id from linking
    /// (`client_external_account_id`, or `client_id` on older wires).
    #[default]
    External,
    /// Correspondent-authorized flow: the AP's account UUID
    /// (`client_account_id`).
    Affiliated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApSpec {
    pub email: String,
    pub account_number: String,
    #[serde(default)]
    pub positions: Vec<(String, Decimal)>,
    #[serde(default)]
    pub id_mode: ClientIdMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum Link {
    NotLinked,
    Linked { client_id: String },
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Ap {
    pub(crate) id: ApId,
    pub(crate) email: String,
    pub(crate) account_number: String,
    pub(crate) id_mode: ClientIdMode,
    pub(crate) positions: BTreeMap<String, Decimal>,
    pub(crate) link: Link,
}

impl Ap {
    pub(crate) fn new(id: ApId, spec: ApSpec) -> Self {
        let mut positions = BTreeMap::new();
        for (symbol, qty) in spec.positions {
            positions.insert(symbol, qty);
        }
        Self {
            id,
            email: spec.email,
            account_number: spec.account_number,
            id_mode: spec.id_mode,
            positions,
            link: Link::NotLinked,
        }
    }

    pub(crate) fn position(&self, symbol: &str) -> Decimal {
        self.positions.get(symbol).copied().unwrap_or_default()
    }

    pub(crate) fn linked_id(&self) -> Option<&str> {
        match &self.link {
            Link::NotLinked => None,
            Link::Linked { client_id } => Some(client_id),
        }
    }
}
