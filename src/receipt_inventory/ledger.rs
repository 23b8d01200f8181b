//! The inventory's own events: receipts found on chain that no mint of
//! this service recorded (`ReceiptDiscovered`), and balances the chain
//! contradicts (`ReceiptReconciled`). One stream per vault
//! (`ReceiptLedger`, id = the vault's lowercase address); its projection
//! writes `receipt_inventory` in the same commit, so every change of a
//! balance has an event behind it.

use std::collections::BTreeSet;
use std::sync::Arc;

use alloy::primitives::{Address, U256};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, CqrsFramework, DomainEvent, EventEnvelope};
use serde::{Deserialize, Serialize};
use sqlite_es::{ProjectionError, SqliteStore, TxProjection, sqlite_cqrs};
use sqlx::{SqliteConnection, SqlitePool};

use super::{INVENTORY_TABLE, holding, stamp};
use crate::clock::Clock;
use crate::vocabulary::address_key;

/// The aggregate type (its events' `aggregate_type`).
pub const LEDGER_AGGREGATE: &str = "ReceiptLedger";

pub type ReceiptLedgerCqrs =
    CqrsFramework<ReceiptLedger, SqliteStore<ReceiptLedger>>;

/// The ledger's command side, with its projection.
pub fn ledger_cqrs(
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
) -> ReceiptLedgerCqrs {
    let store = SqliteStore::new(pool).with_projection(Arc::new(Inventory));
    sqlite_cqrs(store, LedgerServices { clock })
}

/// A receipt the chain shows in our wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundReceipt {
    pub receipt_id: U256,
    /// `balanceOf(wallet, id)` when it was found.
    pub balance: U256,
}

/// A recorded balance and what the chain shows instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    pub receipt_id: U256,
    pub recorded: U256,
    /// Shares reserved by in-flight burns when it was read.
    pub reserved: U256,
    pub on_chain: U256,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerCommand {
    /// Receipts the inventory has no row for (the caller checked).
    Discover {
        vault: Address,
        found: Vec<FoundReceipt>,
    },
    Reconcile {
        vault: Address,
        correction: Correction,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerEvent {
    /// A receipt of our wallet that no mint of this service recorded
    /// (deposited by hand, by an older deployment, or sent to us).
    ReceiptDiscovered {
        vault: Address,
        receipt_id: U256,
        balance: U256,
        discovered_at: DateTime<Utc>,
    },
    /// The chain contradicted the recorded balance; `on_chain` is
    /// recorded.
    ReceiptReconciled {
        vault: Address,
        correction: Correction,
        reconciled_at: DateTime<Utc>,
    },
}

impl DomainEvent for LedgerEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ReceiptDiscovered { .. } => "LedgerEvent::ReceiptDiscovered",
            Self::ReceiptReconciled { .. } => "LedgerEvent::ReceiptReconciled",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("the correction of receipt {receipt_id} changes nothing")]
    NoChange { receipt_id: U256 },
}

#[derive(Clone)]
pub struct LedgerServices {
    pub clock: Arc<dyn Clock>,
}

/// The receipts this vault's ledger discovered (so two discoveries
/// racing record each receipt once).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptLedger {
    discovered: BTreeSet<U256>,
}

impl Aggregate for ReceiptLedger {
    const TYPE: &'static str = LEDGER_AGGREGATE;
    type Command = LedgerCommand;
    type Event = LedgerEvent;
    type Error = LedgerError;
    type Services = LedgerServices;

    async fn handle(
        &mut self,
        command: LedgerCommand,
        services: &LedgerServices,
        sink: &EventSink<Self>,
    ) -> Result<(), LedgerError> {
        let now = services.clock.now();
        for event in self.decide(command, now)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: LedgerEvent) {
        if let LedgerEvent::ReceiptDiscovered { receipt_id, .. } = event {
            self.discovered.insert(receipt_id);
        }
    }
}

impl ReceiptLedger {
    fn decide(
        &self,
        command: LedgerCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<LedgerEvent>, LedgerError> {
        match command {
            LedgerCommand::Discover { vault, found } => {
                let mut seen = BTreeSet::new();
                Ok(found
                    .into_iter()
                    .filter(|receipt| {
                        !self.discovered.contains(&receipt.receipt_id)
                            && seen.insert(receipt.receipt_id)
                    })
                    .map(|receipt| LedgerEvent::ReceiptDiscovered {
                        vault,
                        receipt_id: receipt.receipt_id,
                        balance: receipt.balance,
                        discovered_at: now,
                    })
                    .collect())
            }
            LedgerCommand::Reconcile { vault, correction } => {
                if correction.recorded == correction.on_chain {
                    return Err(LedgerError::NoChange {
                        receipt_id: correction.receipt_id,
                    });
                }
                Ok(vec![LedgerEvent::ReceiptReconciled {
                    vault,
                    correction,
                    reconciled_at: now,
                }])
            }
        }
    }
}

/// Writes `receipt_inventory` in the commit of each event. A correction
/// whose row moved since it was read (a burn reserved or settled
/// meanwhile) fails the commit: the next reconciliation reads again.
struct Inventory;

#[async_trait]
impl TxProjection<ReceiptLedger> for Inventory {
    async fn project(
        &self,
        conn: &mut SqliteConnection,
        events: &[EventEnvelope<ReceiptLedger>],
    ) -> Result<(), ProjectionError> {
        for event in events {
            match &event.payload {
                LedgerEvent::ReceiptDiscovered {
                    vault,
                    receipt_id,
                    balance,
                    discovered_at,
                } => {
                    let at = stamp(*discovered_at);
                    sqlx::query(
                        "INSERT INTO receipt_inventory \
                         (vault, receipt_id, balance, \
                          source_issuer_request_id, recorded_at, updated_at) \
                         VALUES (?, ?, ?, NULL, ?, ?) \
                         ON CONFLICT (vault, receipt_id) DO NOTHING",
                    )
                    .bind(address_key(*vault))
                    .bind(receipt_id.to_string())
                    .bind(balance.to_string())
                    .bind(&at)
                    .bind(&at)
                    .execute(&mut *conn)
                    .await?;
                }
                LedgerEvent::ReceiptReconciled {
                    vault,
                    correction,
                    reconciled_at,
                } => {
                    let now = holding(conn, *vault, correction.receipt_id)
                        .await
                        .map_err(ProjectionError::from)?;
                    let unchanged = now.is_some_and(|now| {
                        now.balance == correction.recorded
                            && now.reserved == correction.reserved
                    });
                    if !unchanged {
                        return Err(ProjectionError::Conflict {
                            table: INVENTORY_TABLE.to_owned(),
                            key: format!(
                                "{}:{}",
                                address_key(*vault),
                                correction.receipt_id
                            ),
                        });
                    }
                    sqlx::query(
                        "UPDATE receipt_inventory SET balance = ?, \
                         updated_at = ? WHERE vault = ? AND receipt_id = ?",
                    )
                    .bind(correction.on_chain.to_string())
                    .bind(stamp(*reconciled_at))
                    .bind(address_key(*vault))
                    .bind(correction.receipt_id.to_string())
                    .execute(&mut *conn)
                    .await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::address;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::clock::FixedClock;

    const VAULT: Address =
        address!("0x00000000000000000000000000000000000000fa");

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 6, 0, 0).unwrap()
    }

    fn framework() -> TestFramework<ReceiptLedger> {
        TestFramework::with(LedgerServices {
            clock: Arc::new(FixedClock::new(now())),
        })
    }

    fn found(id: u64, balance: u64) -> FoundReceipt {
        FoundReceipt {
            receipt_id: U256::from(id),
            balance: U256::from(balance),
        }
    }

    fn discovered(id: u64, balance: u64) -> LedgerEvent {
        LedgerEvent::ReceiptDiscovered {
            vault: VAULT,
            receipt_id: U256::from(id),
            balance: U256::from(balance),
            discovered_at: now(),
        }
    }

    #[test]
    fn a_receipt_is_discovered_once() {
        framework()
            .given_no_previous_events()
            .when(LedgerCommand::Discover {
                vault: VAULT,
                found: vec![found(3, 10), found(3, 10), found(5, 1)],
            })
            .then_expect_events(vec![discovered(3, 10), discovered(5, 1)]);
        framework()
            .given(vec![discovered(3, 10)])
            .when(LedgerCommand::Discover {
                vault: VAULT,
                found: vec![found(3, 10), found(7, 2)],
            })
            .then_expect_events(vec![discovered(7, 2)]);
    }

    #[test]
    fn a_correction_must_change_the_balance() {
        let correction = Correction {
            receipt_id: U256::from(3),
            recorded: U256::from(10),
            reserved: U256::ZERO,
            on_chain: U256::from(4),
        };
        framework()
            .given_no_previous_events()
            .when(LedgerCommand::Reconcile {
                vault: VAULT,
                correction,
            })
            .then_expect_events(vec![LedgerEvent::ReceiptReconciled {
                vault: VAULT,
                correction,
                reconciled_at: now(),
            }]);
        framework()
            .given_no_previous_events()
            .when(LedgerCommand::Reconcile {
                vault: VAULT,
                correction: Correction {
                    on_chain: U256::from(10),
                    ..correction
                },
            })
            .then_expect_error(LedgerError::NoChange {
                receipt_id: U256::from(3),
            });
    }
}
