//! The ERC-1155 receipts the issuer wallet holds, per vault, with the
//! shares promised to in-flight burns.
//!
//! Plain tables (`receipt_inventory`, `receipt_reservations`) written only
//! from inside event commits, so they move atomically with the events that
//! justify them:
//! - a mint's projection calls [`record_deposit`] with its `TokensMinted`;
//! - a redemption's `BurnIntended` calls [`reserve`] (which refuses when
//!   the receipts are no longer available, failing the whole commit),
//!   `Completed` calls [`settle`] and `Failed` calls [`release`].
//!
//! The chain is the source of truth: [`reconcile`] compares every non-zero
//! balance with `balanceOf(bot, id)` at startup and periodically and
//! corrects the row with a `ReceiptReconciled` event (WARN) when it falls
//! outside the band an in-flight burn explains. Emptied receipts are
//! skipped (partial index `receipt_inventory_held`), so selection and
//! reconciliation grow with the receipts held, not with every receipt
//! ever deposited. [`discover`] (an operator's action) scans the logs for
//! receipts no mint of ours recorded and adds them as `ReceiptDiscovered`
//! events ([`ledger`]).

mod api;
mod ledger;
mod select;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use alloy::primitives::{Address, U256};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sqlite_es::{ProjectionError, claim_conflict, execute_retrying};
use sqlx::{SqliteConnection, SqlitePool};

use crate::chain::{VaultError, VaultService};
use crate::clock::SystemClock;
use crate::vocabulary::address_key;

pub use api::{ReceiptApiDoc, routes};
pub use ledger::{
    Correction, FoundReceipt, LEDGER_AGGREGATE, LedgerCommand, LedgerError,
    LedgerEvent, ReceiptLedger, ReceiptLedgerCqrs, ledger_cqrs,
};
pub use select::{InsufficientReceipts, select_burns};

/// Table names, also used as conflict keys.
pub const INVENTORY_TABLE: &str = "receipt_inventory";
pub const RESERVATIONS_TABLE: &str = "receipt_reservations";

/// Shares to burn from one receipt.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct ReceiptBurn {
    pub receipt_id: U256,
    pub shares: U256,
}

/// One receipt held by the issuer wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptHolding {
    pub vault: Address,
    pub receipt_id: U256,
    /// What the wallet holds on chain (as far as we know).
    pub balance: U256,
    /// Promised to in-flight burns.
    pub reserved: U256,
    pub source_issuer_request_id: Option<String>,
    pub updated_at: String,
}

impl ReceiptHolding {
    /// `balance - reserved`. Reservations above the balance (a receipt
    /// drained outside the service, found by [`reconcile`]) leave nothing
    /// available rather than an error: the shortfall is already logged.
    pub fn available(&self) -> U256 {
        self.balance.saturating_sub(self.reserved)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("stored {what} {value:?} in {table} is not a decimal U256")]
    CorruptAmount {
        table: &'static str,
        what: &'static str,
        value: String,
    },
    #[error("stored vault {value:?} is not an address")]
    CorruptVault { value: String },
    #[error("{what} overflows U256")]
    Overflow { what: &'static str },
    /// The receipt cannot cover the burn any more (another burn reserved
    /// it, or it was never recorded). The caller reselects.
    #[error(
        "receipt {receipt_id} of vault {vault} has {available} shares \
         available, {requested} requested"
    )]
    Unavailable {
        vault: Address,
        receipt_id: U256,
        requested: U256,
        available: U256,
    },
    #[error("reading receipt {receipt_id} on chain failed: {source}")]
    Chain {
        receipt_id: U256,
        #[source]
        source: VaultError,
    },
    #[error("searching vault {vault}'s logs for receipts failed: {source}")]
    Scan {
        vault: Address,
        #[source]
        source: VaultError,
    },
    #[error("recording the ledger event failed: {0}")]
    Ledger(Box<cqrs_es::AggregateError<LedgerError>>),
}

impl From<cqrs_es::AggregateError<LedgerError>> for InventoryError {
    fn from(error: cqrs_es::AggregateError<LedgerError>) -> Self {
        Self::Ledger(Box::new(error))
    }
}

impl From<InventoryError> for ProjectionError {
    fn from(error: InventoryError) -> Self {
        match error {
            InventoryError::Sqlx(error) => Self::Sqlx(error),
            InventoryError::Unavailable {
                vault, receipt_id, ..
            } => Self::Conflict {
                table: RESERVATIONS_TABLE.to_owned(),
                key: format!("{}:{receipt_id}", address_key(vault)),
            },
            other => Self::Other(Box::new(other)),
        }
    }
}

/// Records a receipt the issuer wallet received from its own deposit.
///
/// Call it INSIDE the commit of the mint's outcome event. Receipt ids are
/// never reused by the vault (`highwater + 1`), so a second call for the
/// same receipt changes nothing (a replayed projection is harmless).
pub async fn record_deposit(
    conn: &mut SqliteConnection,
    vault: Address,
    receipt_id: U256,
    shares: U256,
    issuer_request_id: &str,
) -> Result<(), InventoryError> {
    let now = stamp(Utc::now());
    let inserted = sqlx::query(
        "INSERT INTO receipt_inventory \
         (vault, receipt_id, balance, source_issuer_request_id, \
          recorded_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (vault, receipt_id) DO NOTHING",
    )
    .bind(address_key(vault))
    .bind(receipt_id.to_string())
    .bind(shares.to_string())
    .bind(issuer_request_id)
    .bind(&now)
    .bind(&now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        tracing::info!(
            target: "receipt_inventory",
            %vault,
            %receipt_id,
            issuer_request_id,
            "deposit already recorded"
        );
    }
    Ok(())
}

/// Every receipt of every vault, emptied ones included, vault then
/// receipt id order (the operators' listing).
pub async fn list(
    pool: &SqlitePool,
) -> Result<Vec<ReceiptHolding>, InventoryError> {
    let mut conn = pool.acquire().await?;
    let rows: Vec<HoldingRow> = sqlx::query_as(
        "SELECT vault, receipt_id, balance, source_issuer_request_id, \
             updated_at FROM receipt_inventory",
    )
    .fetch_all(&mut *conn)
    .await?;
    let reservations: Vec<ReservationRow> = sqlx::query_as(
        "SELECT vault, receipt_id, shares FROM receipt_reservations",
    )
    .fetch_all(&mut *conn)
    .await?;
    assemble(rows, &reservations)
}

/// The receipts of one vault that still hold shares, receipt id order.
///
/// Emptied receipts are never burnable and never refilled (the vault
/// mints a new id per deposit), so they are skipped through the partial
/// index `receipt_inventory_held`: the cost grows with the receipts
/// held, not with every receipt the vault ever issued.
pub async fn holdings(
    conn: &mut SqliteConnection,
    vault: Address,
) -> Result<Vec<ReceiptHolding>, InventoryError> {
    let vault_text = address_key(vault);
    let rows: Vec<HoldingRow> = sqlx::query_as(
        "SELECT vault, receipt_id, balance, source_issuer_request_id, \
         updated_at FROM receipt_inventory INDEXED BY receipt_inventory_held \
         WHERE vault = ? AND balance <> '0'",
    )
    .bind(&vault_text)
    .fetch_all(&mut *conn)
    .await?;
    let reservations: Vec<ReservationRow> = sqlx::query_as(
        "SELECT vault, receipt_id, shares FROM receipt_reservations \
         WHERE vault = ?",
    )
    .bind(&vault_text)
    .fetch_all(&mut *conn)
    .await?;
    assemble(rows, &reservations)
}

/// One receipt, by key (a point lookup, for the receipts a burn names).
async fn holding(
    conn: &mut SqliteConnection,
    vault: Address,
    receipt_id: U256,
) -> Result<Option<ReceiptHolding>, InventoryError> {
    let (vault_text, id_text) = (address_key(vault), receipt_id.to_string());
    let rows: Vec<HoldingRow> = sqlx::query_as(
        "SELECT vault, receipt_id, balance, source_issuer_request_id, \
         updated_at FROM receipt_inventory WHERE vault = ? AND receipt_id = ?",
    )
    .bind(&vault_text)
    .bind(&id_text)
    .fetch_all(&mut *conn)
    .await?;
    let reservations: Vec<ReservationRow> = sqlx::query_as(
        "SELECT vault, receipt_id, shares FROM receipt_reservations \
         WHERE vault = ? AND receipt_id = ?",
    )
    .bind(&vault_text)
    .bind(&id_text)
    .fetch_all(&mut *conn)
    .await?;
    Ok(assemble(rows, &reservations)?.into_iter().next())
}

/// Reserves `burns` for `redemption_id`, replacing any reservation it
/// already holds in this vault (a replacement burn re-reserves). Fails with
/// [`InventoryError::Unavailable`] when a receipt cannot cover its part,
/// which rolls back the caller's commit.
pub async fn reserve(
    conn: &mut SqliteConnection,
    vault: Address,
    redemption_id: &str,
    burns: &[ReceiptBurn],
    at: DateTime<Utc>,
) -> Result<(), InventoryError> {
    let vault_text = address_key(vault);
    sqlx::query(
        "DELETE FROM receipt_reservations \
         WHERE vault = ? AND redemption_id = ?",
    )
    .bind(&vault_text)
    .bind(redemption_id)
    .execute(&mut *conn)
    .await?;
    for burn in burns {
        let available = holding(conn, vault, burn.receipt_id)
            .await?
            .as_ref()
            .map_or(U256::ZERO, ReceiptHolding::available);
        // Two burns of one receipt in the same batch would each pass the
        // check alone; selection never produces that, so refuse it.
        let same_receipt = burns
            .iter()
            .filter(|other| other.receipt_id == burn.receipt_id)
            .try_fold(U256::ZERO, |sum, other| sum.checked_add(other.shares))
            .ok_or(InventoryError::Overflow {
                what: "reserved shares",
            })?;
        if same_receipt > available {
            return Err(InventoryError::Unavailable {
                vault,
                receipt_id: burn.receipt_id,
                requested: same_receipt,
                available,
            });
        }
    }
    for burn in burns {
        sqlx::query(
            "INSERT INTO receipt_reservations \
             (vault, receipt_id, redemption_id, shares, reserved_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&vault_text)
        .bind(burn.receipt_id.to_string())
        .bind(redemption_id)
        .bind(burn.shares.to_string())
        .bind(stamp(at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A confirmed burn: each receipt's balance drops by what was burned and
/// the redemption's reservations go away.
pub async fn settle(
    conn: &mut SqliteConnection,
    vault: Address,
    redemption_id: &str,
    burns: &[ReceiptBurn],
    at: DateTime<Utc>,
) -> Result<(), InventoryError> {
    for burn in burns {
        let balance = holding(conn, vault, burn.receipt_id)
            .await?
            .map_or(U256::ZERO, |holding| holding.balance);
        // The burn happened on chain; refusing to record it would strand
        // the redemption. A short balance means the row was stale:
        // record zero, say so, and let reconciliation re-read the chain.
        let remaining = balance.checked_sub(burn.shares).unwrap_or_else(|| {
            tracing::error!(
                target: "receipt_inventory",
                %vault,
                receipt_id = %burn.receipt_id,
                %balance,
                burned = %burn.shares,
                "burn exceeds the recorded balance; recording zero"
            );
            metrics::counter!("receipt_inventory_mismatches_total")
                .increment(1);
            U256::ZERO
        });
        sqlx::query(
            "UPDATE receipt_inventory SET balance = ?, updated_at = ? \
             WHERE vault = ? AND receipt_id = ?",
        )
        .bind(remaining.to_string())
        .bind(stamp(at))
        .bind(address_key(vault))
        .bind(burn.receipt_id.to_string())
        .execute(&mut *conn)
        .await?;
    }
    release(conn, redemption_id).await
}

/// Drops every reservation of `redemption_id` (its burn definitively
/// failed, or it was settled).
pub async fn release(
    conn: &mut SqliteConnection,
    redemption_id: &str,
) -> Result<(), InventoryError> {
    sqlx::query("DELETE FROM receipt_reservations WHERE redemption_id = ?")
        .bind(redemption_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What [`reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub checked: usize,
    pub corrected: usize,
}

/// The balance to record given the chain's view, or `None` when the row
/// is consistent. Inside `[available, balance]` a burn of reserved shares
/// may have landed without its outcome recorded yet, so that band is left
/// alone; anything else is corrected to the chain's value.
pub fn reconciled_balance(
    holding: &ReceiptHolding,
    on_chain: U256,
) -> Option<U256> {
    let explained =
        on_chain >= holding.available() && on_chain <= holding.balance;
    (!explained).then_some(on_chain)
}

/// Compares every held (non-zero) receipt of `vaults` with the chain and
/// records each row that disagrees with a `ReceiptReconciled` event
/// (WARN and metric). A row changed since it was read (a burn settled or
/// reserved meanwhile) fails that commit and is left for the next pass.
pub async fn reconcile(
    pool: &SqlitePool,
    service: &VaultService,
    vaults: &[Address],
) -> Result<ReconcileReport, InventoryError> {
    let ledger = ledger_cqrs(pool.clone(), Arc::new(SystemClock));
    let bot = service.client().address();
    let mut report = ReconcileReport::default();
    for vault in vaults {
        let held = {
            let mut conn = pool.acquire().await?;
            holdings(&mut conn, *vault).await?
        };
        for holding in held {
            let on_chain = service
                .receipt_balance(*vault, bot, holding.receipt_id)
                .await
                .map_err(|source| InventoryError::Chain {
                    receipt_id: holding.receipt_id,
                    source,
                })?;
            report.checked = report.checked.saturating_add(1);
            if correct(&ledger, &holding, on_chain).await? {
                report.corrected = report.corrected.saturating_add(1);
            }
        }
    }
    Ok(report)
}

/// Records `on_chain` for `holding` if the chain contradicts it; whether
/// it did.
async fn correct(
    ledger: &ReceiptLedgerCqrs,
    holding: &ReceiptHolding,
    on_chain: U256,
) -> Result<bool, InventoryError> {
    if reconciled_balance(holding, on_chain).is_none() {
        return Ok(false);
    }
    let command = LedgerCommand::Reconcile {
        vault: holding.vault,
        correction: Correction {
            receipt_id: holding.receipt_id,
            recorded: holding.balance,
            reserved: holding.reserved,
            on_chain,
        },
    };
    match execute_retrying(ledger, &address_key(holding.vault), command).await {
        Ok(()) => {}
        Err(error) if claim_conflict(&error) == Some(INVENTORY_TABLE) => {
            return Ok(false);
        }
        Err(error) => return Err(error.into()),
    }
    metrics::counter!("receipt_inventory_mismatches_total").increment(1);
    tracing::warn!(
        target: "receipt_inventory",
        vault = %holding.vault,
        receipt_id = %holding.receipt_id,
        recorded = %holding.balance,
        reserved = %holding.reserved,
        %on_chain,
        "receipt balance disagreed with the chain; corrected"
    );
    Ok(true)
}

/// What [`discover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryReport {
    /// Receipt ids the logs show our wallet received.
    pub seen: usize,
    /// Added to the inventory (`ReceiptDiscovered`).
    pub discovered: Vec<(Address, FoundReceipt)>,
    /// Recorded rows the chain contradicted (`ReceiptReconciled`), e.g.
    /// an emptied receipt sent back to the wallet.
    pub corrected: usize,
}

/// Scans `vaults`' logs from `from_block` for receipts our wallet
/// received. Those the inventory has no row for and that still hold
/// shares are added (`ReceiptDiscovered`); recorded ones are reconciled.
/// Running it again adds nothing again.
pub async fn discover(
    pool: &SqlitePool,
    ledger: &ReceiptLedgerCqrs,
    service: &VaultService,
    vaults: &[Address],
    from_block: u64,
) -> Result<DiscoveryReport, InventoryError> {
    let bot = service.client().address();
    let mut report = DiscoveryReport::default();
    for vault in vaults {
        let ids = service
            .receipt_ids_received(*vault, bot, from_block)
            .await
            .map_err(|source| InventoryError::Scan {
                vault: *vault,
                source,
            })?;
        let mut found = Vec::new();
        for receipt_id in ids {
            report.seen = report.seen.saturating_add(1);
            let recorded = {
                let mut conn = pool.acquire().await?;
                holding(&mut conn, *vault, receipt_id).await?
            };
            let on_chain = service
                .receipt_balance(*vault, bot, receipt_id)
                .await
                .map_err(|source| InventoryError::Chain {
                    receipt_id,
                    source,
                })?;
            match recorded {
                Some(holding) => {
                    if correct(ledger, &holding, on_chain).await? {
                        report.corrected = report.corrected.saturating_add(1);
                    }
                }
                None if on_chain.is_zero() => {}
                None => found.push(FoundReceipt {
                    receipt_id,
                    balance: on_chain,
                }),
            }
        }
        if found.is_empty() {
            continue;
        }
        execute_retrying(
            ledger,
            &address_key(*vault),
            LedgerCommand::Discover {
                vault: *vault,
                found: found.clone(),
            },
        )
        .await?;
        for receipt in found {
            tracing::warn!(
                target: "receipt_inventory",
                %vault,
                receipt_id = %receipt.receipt_id,
                balance = %receipt.balance,
                "receipt no mint of ours recorded; added to the inventory"
            );
            report.discovered.push((*vault, receipt));
        }
    }
    Ok(report)
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_amount(
    table: &'static str,
    what: &'static str,
    value: &str,
) -> Result<U256, InventoryError> {
    U256::from_str_radix(value, 10).map_err(|_| InventoryError::CorruptAmount {
        table,
        what,
        value: value.to_owned(),
    })
}

type HoldingRow = (String, String, String, Option<String>, String);
type ReservationRow = (String, String, String);

/// Rows joined with the shares reserved on each, sorted by vault then
/// receipt id.
fn assemble(
    rows: Vec<HoldingRow>,
    reservations: &[ReservationRow],
) -> Result<Vec<ReceiptHolding>, InventoryError> {
    let mut holdings = Vec::with_capacity(rows.len());
    for (vault_text, id_text, balance, source, updated_at) in rows {
        let receipt_id = parse_amount(INVENTORY_TABLE, "receipt id", &id_text)?;
        let mut reserved = U256::ZERO;
        for (_, _, shares) in reservations
            .iter()
            .filter(|(v, id, _)| *v == vault_text && *id == id_text)
        {
            let shares = parse_amount(RESERVATIONS_TABLE, "shares", shares)?;
            reserved = reserved.checked_add(shares).ok_or(
                InventoryError::Overflow {
                    what: "reserved shares",
                },
            )?;
        }
        holdings.push(ReceiptHolding {
            vault: vault_text.parse().map_err(|_| {
                InventoryError::CorruptVault {
                    value: vault_text.clone(),
                }
            })?,
            receipt_id,
            balance: parse_amount(INVENTORY_TABLE, "balance", &balance)?,
            reserved,
            source_issuer_request_id: source,
            updated_at,
        });
    }
    // Text order of decimal ids is not numeric order.
    holdings.sort_by_key(|holding| (holding.vault, holding.receipt_id));
    Ok(holdings)
}

impl fmt::Display for ReceiptBurn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} shares of receipt {}", self.shares, self.receipt_id)
    }
}
