//! Nonce allocation and the `tx_intents` table.
//!
//! Rule: a transaction is broadcast only after its intent (raw bytes, hash,
//! nonce) is committed. So a nonce that is neither on chain, nor recorded
//! in `tx_intents`, nor reserved in this process was never broadcast by us
//! and is free to use. Everything here follows from that.

use std::collections::BTreeSet;

use alloy::primitives::{Address, TxHash};
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::Mutex;

use crate::vocabulary::address_key;

use super::tx::SignedTx;

fn hash_key(hash: TxHash) -> String {
    format!("{hash:#x}")
}

fn to_i64(value: u64) -> Result<i64, sqlx::Error> {
    i64::try_from(value).map_err(|error| sqlx::Error::Encode(Box::new(error)))
}

/// Records that `owner` committed to `tx`.
///
/// Call this INSIDE the database transaction that commits the owner's
/// intent event (e.g. `MintTxIntended`), never on its own: the primary key
/// on (chain_id, wallet, nonce) then makes a second intent for the same
/// nonce fail the whole commit, so two aggregates can never both own one
/// nonce, and an intent event never exists without its nonce reservation
/// (which the [`NonceManager`] relies on after a crash).
pub async fn record_intent(
    conn: &mut SqliteConnection,
    owner_type: &str,
    owner_id: &str,
    tx: &SignedTx,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tx_intents \
         (chain_id, wallet, nonce, tx_hash, owner_type, owner_id, \
          recorded_at) \
         VALUES (?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    )
    .bind(to_i64(tx.chain_id)?)
    .bind(address_key(tx.from))
    .bind(to_i64(tx.nonce)?)
    .bind(hash_key(tx.hash))
    .bind(owner_type)
    .bind(owner_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks the intent for `tx_hash` as resolved (mined, reverted, or proven
/// dead and replaced). Call it in the same transaction as the outcome
/// event. Returns whether a row was updated.
pub async fn mark_intent_resolved(
    conn: &mut SqliteConnection,
    tx_hash: TxHash,
) -> Result<bool, sqlx::Error> {
    let result =
        sqlx::query("UPDATE tx_intents SET resolved = 1 WHERE tx_hash = ?")
            .bind(hash_key(tx_hash))
            .execute(&mut *conn)
            .await?;
    Ok(result.rows_affected() > 0)
}

/// An intent row, for recovery and operator views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedIntent {
    pub nonce: u64,
    pub tx_hash: TxHash,
    pub owner_type: String,
    pub owner_id: String,
}

/// Unresolved intents of one wallet, lowest nonce first.
pub async fn unresolved_intents(
    pool: &SqlitePool,
    chain_id: u64,
    wallet: Address,
) -> Result<Vec<RecordedIntent>, sqlx::Error> {
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT nonce, tx_hash, owner_type, owner_id FROM tx_intents \
         WHERE chain_id = ? AND wallet = ? AND resolved = 0 ORDER BY nonce",
    )
    .bind(to_i64(chain_id)?)
    .bind(address_key(wallet))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(nonce, hash, owner_type, owner_id)| {
            Ok(RecordedIntent {
                nonce: u64::try_from(nonce)
                    .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
                tx_hash: hash
                    .parse()
                    .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
                owner_type,
                owner_id,
            })
        })
        .collect()
}

/// Hands out nonces for one (chain, wallet), several in flight at once.
///
/// A nonce is chosen as the lowest value at or above the chain's pending
/// nonce that is neither recorded in `tx_intents` (persisted, possibly
/// never broadcast before a crash) nor reserved in this process (signed,
/// intent not yet committed). That is at least the brief's floor of
/// `max(pending, 1 + highest recorded)` whenever nonces are used in order,
/// and it also refills a hole left by an intent whose commit failed, which
/// would otherwise block every later transaction.
#[derive(Debug)]
pub struct NonceManager {
    chain_id: u64,
    wallet: Address,
    pool: SqlitePool,
    reserved: Mutex<BTreeSet<u64>>,
}

impl NonceManager {
    pub fn new(chain_id: u64, wallet: Address, pool: SqlitePool) -> Self {
        Self {
            chain_id,
            wallet,
            pool,
            reserved: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn wallet(&self) -> Address {
        self.wallet
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Allocates a nonce given the chain's pending nonce for the wallet.
    /// The reservation lasts until the nonce is recorded or mined, or
    /// [`NonceManager::release`] is called.
    pub async fn allocate(&self, chain_next: u64) -> Result<u64, sqlx::Error> {
        let mut reserved = self.reserved.lock().await;
        let recorded: BTreeSet<u64> = sqlx::query_scalar::<_, i64>(
            "SELECT nonce FROM tx_intents \
             WHERE chain_id = ? AND wallet = ? AND nonce >= ?",
        )
        .bind(to_i64(self.chain_id)?)
        .bind(address_key(self.wallet))
        .bind(to_i64(chain_next)?)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(u64::try_from)
        .collect::<Result<_, _>>()
        .map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
        // Reservations that are now on chain or recorded need no tracking.
        reserved.retain(|n| *n >= chain_next && !recorded.contains(n));
        let mut nonce = chain_next;
        while recorded.contains(&nonce) || reserved.contains(&nonce) {
            nonce = nonce.checked_add(1).ok_or_else(|| {
                sqlx::Error::Protocol("nonce space exhausted".into())
            })?;
        }
        reserved.insert(nonce);
        Ok(nonce)
    }

    /// Gives back a nonce whose transaction was signed but whose intent was
    /// NOT committed (so it was never broadcast). Never call it for a
    /// transaction that may have been sent.
    pub async fn release(&self, nonce: u64) {
        self.reserved.lock().await.remove(&nonce);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Bytes, address, b256};
    use chrono::Utc;
    use sqlx::sqlite::SqlitePoolOptions;

    const MIGRATION: &str =
        include_str!("../../migrations/20261128000300_tx_intents.sql");

    /// A private in-memory database with the tx_intents table.
    async fn pool() -> SqlitePool {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::raw_sql(MIGRATION).execute(&pool).await.unwrap();
        pool
    }

    const WALLET: Address =
        address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

    fn tx(nonce: u64, hash_byte: u8) -> SignedTx {
        SignedTx {
            raw: Bytes::from_static(&[0x02]),
            hash: TxHash::repeat_byte(hash_byte),
            nonce,
            chain_id: 31337,
            from: WALLET,
            to: address!("0x5FbDB2315678afecb367f032d93F642f64180aa3"),
            gas_limit: 100_000,
            max_fee_per_gas: 2,
            max_priority_fee_per_gas: 1,
            signed_at: Utc::now(),
            head_at_signing: None,
        }
    }

    async fn record(pool: &SqlitePool, tx: &SignedTx) {
        let mut conn = pool.acquire().await.unwrap();
        record_intent(&mut conn, "mint", "m-1", tx).await.unwrap();
    }

    #[tokio::test]
    async fn consecutive_allocations_pipeline() {
        let manager = NonceManager::new(31337, WALLET, pool().await);
        assert_eq!(manager.allocate(7).await.unwrap(), 7);
        assert_eq!(manager.allocate(7).await.unwrap(), 8);
        assert_eq!(manager.allocate(7).await.unwrap(), 9);
        // The chain catching up prunes reservations but never reuses.
        assert_eq!(manager.allocate(9).await.unwrap(), 10);
    }

    #[tokio::test]
    async fn recorded_intents_are_never_reused_after_restart() {
        let pool = pool().await;
        record(&pool, &tx(3, 0xaa)).await;
        record(&pool, &tx(4, 0xbb)).await;
        // A fresh manager (restart): chain still says 3.
        let manager = NonceManager::new(31337, WALLET, pool.clone());
        assert_eq!(manager.allocate(3).await.unwrap(), 5);
        // Another wallet or chain is unaffected.
        let other = NonceManager::new(1, WALLET, pool);
        assert_eq!(other.allocate(3).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn released_nonce_is_refilled() {
        let pool = pool().await;
        let manager = NonceManager::new(31337, WALLET, pool.clone());
        let first = manager.allocate(0).await.unwrap();
        let second = manager.allocate(0).await.unwrap();
        record(&pool, &tx(second, 0x02)).await;
        // The first intent's commit failed: give it back.
        manager.release(first).await;
        assert_eq!(manager.allocate(0).await.unwrap(), first);
        assert_eq!(manager.allocate(0).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn duplicate_nonce_fails_the_commit() {
        let pool = pool().await;
        record(&pool, &tx(1, 0x01)).await;
        let mut conn = pool.acquire().await.unwrap();
        let error = record_intent(&mut conn, "redemption", "r-1", &tx(1, 0x09))
            .await
            .unwrap_err();
        assert!(
            error
                .as_database_error()
                .is_some_and(sqlx::error::DatabaseError::is_unique_violation),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn resolution_and_listing() {
        let pool = pool().await;
        record(&pool, &tx(1, 0x01)).await;
        record(&pool, &tx(2, 0x02)).await;
        let mut conn = pool.acquire().await.unwrap();
        assert!(
            mark_intent_resolved(&mut conn, TxHash::repeat_byte(0x01))
                .await
                .unwrap()
        );
        assert!(
            !mark_intent_resolved(&mut conn, TxHash::repeat_byte(0x77))
                .await
                .unwrap()
        );
        drop(conn);
        let open = unresolved_intents(&pool, 31337, WALLET).await.unwrap();
        assert_eq!(
            open,
            vec![RecordedIntent {
                nonce: 2,
                tx_hash: b256!(
                    "0x0202020202020202020202020202020202020202020202020202020202020202"
                ),
                owner_type: "mint".into(),
                owner_id: "m-1".into(),
            }]
        );
        // Resolved intents still hold their nonce.
        let manager = NonceManager::new(31337, WALLET, pool);
        assert_eq!(manager.allocate(1).await.unwrap(), 3);
    }
}
