//! Replaying 100k events streams them: memory stays bounded and the
//! producer waits for the consumer. Its own test binary so no other test
//! shares the process's peak-RSS counter.

mod common;

use std::time::{Duration, Instant};

use common::{Account, AccountView};
use cqrs_es::persist::PersistedEventRepository;
use sqlite_es::{
    SqliteEventRepository, ViewProjection, create_view_table, open_pool,
    run_migrations,
};

const EVENTS: i64 = 100_000;
const AGGREGATES: i64 = 1_000;

/// Reads a `/proc/self/status` field in KiB.
#[allow(clippy::unwrap_used)]
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_100k_events_is_streamed_with_bounded_memory() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("big.db").display());
    // One connection: whoever streams holds it, which makes the
    // producer's progress observable below.
    let pool = open_pool(&url, 1).await.unwrap();
    run_migrations(&pool).await.unwrap();

    // ~1 KiB per event, ~100 MiB in total: far more than the memory bound
    // if anything buffered the whole result set.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
         event_type, event_version, payload, metadata) \
         WITH RECURSIVE n(i) AS \
         (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         SELECT 'Account', 'acc-' || (i % ?), i / ? + 1, \
         'AccountEvent::Deposited', '1.0', \
         json_object('Deposited', \
           json_object('amount', i, 'memo', hex(zeroblob(500)))), \
         '{}' FROM n",
    )
    .bind(EVENTS)
    .bind(AGGREGATES)
    .bind(AGGREGATES)
    .execute(&pool)
    .await
    .unwrap();

    let rss_before = status_kib("VmRSS:");
    let repo = SqliteEventRepository::new(pool.clone());
    let mut stream = repo.stream_all_events::<Account>().await.unwrap();

    // Unconsumed, the producer fills the channel and then waits, still
    // holding the pool's only connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pool.try_acquire().is_none(),
        "producer ran ahead instead of waiting for the consumer"
    );

    let mut count: i64 = 0;
    let mut amount_sum: i64 = 0;
    while let Some(event) = stream.next::<Account>(&[]).await {
        let event = event.unwrap();
        count += 1;
        if let common::AccountEvent::Deposited { amount } = event.payload {
            // Commit (rowid) order is insertion order here.
            assert_eq!(i64::try_from(amount).unwrap(), count);
            amount_sum += count;
        }
    }
    assert_eq!(count, EVENTS);
    assert_eq!(amount_sum, EVENTS * (EVENTS + 1) / 2);
    // The producer hands its connection back once the rows run out.
    let conn = tokio::time::timeout(Duration::from_secs(5), pool.acquire());
    drop(conn.await.unwrap().unwrap());

    let peak_growth_kib = status_kib("VmHWM:").saturating_sub(rss_before);
    assert!(
        peak_growth_kib < 64 * 1024,
        "peak RSS grew by {peak_growth_kib} KiB while streaming"
    );

    // A full view rebuild over the same log, on a one-connection pool.
    let pool = open_pool(&url, 1).await.unwrap();
    create_view_table(&pool, "account_view").await.unwrap();
    let view = ViewProjection::<AccountView, Account>::new("account_view", 1);
    let replayed = view.rebuild(&pool).await.unwrap();
    assert_eq!(replayed, u64::try_from(EVENTS).unwrap());
    let views: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM account_view")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(views, AGGREGATES);
    // acc-1 got i = 1, 1001, ..., 99001.
    let acc1 = view.load(&pool, "acc-1").await.unwrap().unwrap();
    assert_eq!(acc1.events_seen, 100);
    assert_eq!(acc1.last_sequence, 100);
    assert_eq!(acc1.balance, 100 + 1000 * (99 * 100 / 2));
    let peak_growth_kib = status_kib("VmHWM:").saturating_sub(rss_before);
    assert!(
        peak_growth_kib < 64 * 1024,
        "peak RSS grew by {peak_growth_kib} KiB during rebuild"
    );
    eprintln!(
        "replay test took {:?}, peak growth {peak_growth_kib} KiB",
        started.elapsed()
    );
}
