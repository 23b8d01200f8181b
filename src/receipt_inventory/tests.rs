//! Receipt selection (unit + property) and the inventory tables on an
//! in-memory database with the real migrations.

use alloy::primitives::{Address, U256, address};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use sqlx::SqlitePool;

use super::*;

const VAULT: Address = address!("0x00000000000000000000000000000000000000aa");
const OTHER_VAULT: Address =
    address!("0x00000000000000000000000000000000000000bb");

fn holding(id: u64, balance: u64, reserved: u64) -> ReceiptHolding {
    ReceiptHolding {
        vault: VAULT,
        receipt_id: U256::from(id),
        balance: U256::from(balance),
        reserved: U256::from(reserved),
        source_issuer_request_id: None,
        updated_at: String::new(),
    }
}

fn burn(id: u64, shares: u64) -> ReceiptBurn {
    ReceiptBurn {
        receipt_id: U256::from(id),
        shares: U256::from(shares),
    }
}

async fn pool() -> SqlitePool {
    let pool = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
    crate::migrate(&pool).await.unwrap();
    pool
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

#[test]
fn selection_prefers_the_largest_available_and_splits_the_last() {
    let held = [holding(1, 30, 0), holding(2, 100, 50), holding(3, 80, 0)];
    // Available: 1 -> 30, 2 -> 50, 3 -> 80.
    let burns = select_burns(&held, U256::from(100)).unwrap();
    assert_eq!(burns, vec![burn(3, 80), burn(2, 20)]);
    let exact = select_burns(&held, U256::from(80)).unwrap();
    assert_eq!(exact, vec![burn(3, 80)]);
    assert_eq!(select_burns(&held, U256::ZERO).unwrap(), vec![]);
}

#[test]
fn selection_reports_the_shortfall() {
    let held = [holding(1, 30, 10), holding(2, 5, 5)];
    assert_eq!(
        select_burns(&held, U256::from(25)),
        Err(InsufficientReceipts {
            requested: U256::from(25),
            available: U256::from(20),
            shortfall: U256::from(5),
        })
    );
}

#[test]
fn selection_breaks_ties_by_receipt_id() {
    let held = [holding(9, 10, 0), holding(4, 10, 0)];
    let burns = select_burns(&held, U256::from(15)).unwrap();
    assert_eq!(burns, vec![burn(4, 10), burn(9, 5)]);
}

proptest! {
    #[test]
    fn selection_sums_to_the_request_within_availability(
        receipts in prop::collection::vec((0u64..1_000, 0u64..1_000), 0..8),
        amount in 0u64..4_000,
    ) {
        let held: Vec<ReceiptHolding> = receipts
            .iter()
            .enumerate()
            .map(|(i, (balance, reserved))| {
                holding(i as u64 + 1, *balance, *reserved)
            })
            .collect();
        let total: u64 = held
            .iter()
            .map(|h| u64::try_from(h.available()).unwrap())
            .sum();
        match select_burns(&held, U256::from(amount)) {
            Ok(burns) => {
                prop_assert!(amount <= total);
                let sum = burns
                    .iter()
                    .fold(U256::ZERO, |sum, burn| sum + burn.shares);
                prop_assert_eq!(sum, U256::from(amount));
                for burn in &burns {
                    let source = held
                        .iter()
                        .find(|h| h.receipt_id == burn.receipt_id)
                        .unwrap();
                    prop_assert!(!burn.shares.is_zero());
                    prop_assert!(burn.shares <= source.available());
                }
                let mut ids: Vec<_> =
                    burns.iter().map(|burn| burn.receipt_id).collect();
                ids.dedup();
                prop_assert_eq!(ids.len(), burns.len());
            }
            Err(short) => {
                prop_assert!(amount > total);
                prop_assert_eq!(short.available, U256::from(total));
                prop_assert_eq!(
                    short.shortfall,
                    U256::from(amount - total)
                );
            }
        }
    }
}

#[test]
fn reconciliation_leaves_the_in_flight_band_alone() {
    let row = holding(1, 100, 30);
    // A reserved burn may have landed: anything in [70, 100] is explained.
    assert_eq!(reconciled_balance(&row, U256::from(100)), None);
    assert_eq!(reconciled_balance(&row, U256::from(70)), None);
    assert_eq!(reconciled_balance(&row, U256::from(85)), None);
    assert_eq!(
        reconciled_balance(&row, U256::from(60)),
        Some(U256::from(60))
    );
    assert_eq!(
        reconciled_balance(&row, U256::from(120)),
        Some(U256::from(120))
    );
    assert_eq!(
        reconciled_balance(&holding(2, 5, 0), U256::ZERO),
        Some(U256::ZERO)
    );
}

#[tokio::test]
async fn deposits_are_recorded_once() {
    let pool = pool().await;
    let mut conn = pool.acquire().await.unwrap();
    record_deposit(&mut conn, VAULT, U256::from(7), U256::from(500), "mint-a")
        .await
        .unwrap();
    // A replayed projection must not add the shares again.
    record_deposit(&mut conn, VAULT, U256::from(7), U256::from(500), "mint-a")
        .await
        .unwrap();
    record_deposit(
        &mut conn,
        OTHER_VAULT,
        U256::from(7),
        U256::from(1),
        "mint-b",
    )
    .await
    .unwrap();
    drop(conn);
    let all = list(&pool).await.unwrap();
    assert_eq!(all.len(), 2);
    let first = &all[0];
    assert_eq!(first.vault, VAULT);
    assert_eq!(first.balance, U256::from(500));
    assert_eq!(first.available(), U256::from(500));
    assert_eq!(first.source_issuer_request_id.as_deref(), Some("mint-a"));
}

#[tokio::test]
async fn reserve_settle_and_release_move_availability() {
    let pool = pool().await;
    let mut conn = pool.acquire().await.unwrap();
    for (id, shares) in [(1, 100), (2, 40)] {
        record_deposit(
            &mut conn,
            VAULT,
            U256::from(id),
            U256::from(shares),
            "m",
        )
        .await
        .unwrap();
    }
    reserve(&mut conn, VAULT, "red-1", &[burn(1, 60)], at())
        .await
        .unwrap();
    let held = holdings(&mut conn, VAULT).await.unwrap();
    assert_eq!(held[0].reserved, U256::from(60));
    assert_eq!(held[0].available(), U256::from(40));

    // Another redemption cannot take what is promised.
    let taken = reserve(&mut conn, VAULT, "red-2", &[burn(1, 50)], at()).await;
    assert!(matches!(
        taken,
        Err(InventoryError::Unavailable { available, .. })
            if available == U256::from(40)
    ));
    // An unknown receipt has nothing available.
    assert!(matches!(
        reserve(&mut conn, VAULT, "red-2", &[burn(9, 1)], at()).await,
        Err(InventoryError::Unavailable { .. })
    ));
    // A replacement burn re-reserves for the same redemption.
    reserve(&mut conn, VAULT, "red-1", &[burn(1, 70)], at())
        .await
        .unwrap();
    assert_eq!(
        holdings(&mut conn, VAULT).await.unwrap()[0].reserved,
        U256::from(70)
    );

    settle(&mut conn, VAULT, "red-1", &[burn(1, 70)], at())
        .await
        .unwrap();
    let held = holdings(&mut conn, VAULT).await.unwrap();
    assert_eq!(held[0].balance, U256::from(30));
    assert_eq!(held[0].reserved, U256::ZERO);

    reserve(&mut conn, VAULT, "red-2", &[burn(2, 40)], at())
        .await
        .unwrap();
    release(&mut conn, "red-2").await.unwrap();
    let held = holdings(&mut conn, VAULT).await.unwrap();
    assert_eq!(held[1].balance, U256::from(40));
    assert_eq!(held[1].available(), U256::from(40));
}

#[tokio::test]
async fn a_reservation_conflict_maps_to_a_projection_conflict() {
    let error = ProjectionError::from(InventoryError::Unavailable {
        vault: VAULT,
        receipt_id: U256::from(3),
        requested: U256::from(2),
        available: U256::from(1),
    });
    assert!(matches!(
        error,
        ProjectionError::Conflict { ref table, .. } if table == RESERVATIONS_TABLE
    ));
}

#[tokio::test]
async fn duplicate_receipts_in_one_batch_are_checked_together() {
    let pool = pool().await;
    let mut conn = pool.acquire().await.unwrap();
    record_deposit(&mut conn, VAULT, U256::from(1), U256::from(10), "m")
        .await
        .unwrap();
    assert!(matches!(
        reserve(&mut conn, VAULT, "r", &[burn(1, 6), burn(1, 6)], at()).await,
        Err(InventoryError::Unavailable { requested, .. })
            if requested == U256::from(12)
    ));
}

#[tokio::test]
async fn emptied_receipts_leave_the_burnable_set_but_stay_listed() {
    let pool = pool().await;
    let mut conn = pool.acquire().await.unwrap();
    for id in 1..=3 {
        record_deposit(&mut conn, VAULT, U256::from(id), U256::from(10), "m")
            .await
            .unwrap();
    }
    reserve(&mut conn, VAULT, "red-1", &[burn(2, 10)], at())
        .await
        .unwrap();
    settle(&mut conn, VAULT, "red-1", &[burn(2, 10)], at())
        .await
        .unwrap();
    // Read through the partial index (INDEXED BY fails if it cannot be).
    let held = holdings(&mut conn, VAULT).await.unwrap();
    let ids: Vec<U256> = held.iter().map(|h| h.receipt_id).collect();
    assert_eq!(ids, vec![U256::from(1), U256::from(3)]);
    // An emptied receipt cannot be reserved again.
    assert!(matches!(
        reserve(&mut conn, VAULT, "red-2", &[burn(2, 1)], at()).await,
        Err(InventoryError::Unavailable { available, .. })
            if available == U256::ZERO
    ));
    drop(conn);
    let listed = list(&pool).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[1].balance, U256::ZERO);
}
