//! SqliteStore through cqrs-es: persistence, concurrency, snapshots and
//! in-commit projections.

mod common;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use common::{
    Account, AccountCommand, AccountEvent, AccountView, EmailClaims, count,
    create_email_table, file_pool,
};
use cqrs_es::persist::{PersistedEventRepository, PersistenceError};
use cqrs_es::{AggregateContext, AggregateError, EventStore};
use sqlite_es::{
    SqliteEsError, SqliteEventRepository, SqliteStore, ViewProjection,
    create_view_table, sqlite_cqrs,
};
use tokio::sync::Barrier;

fn open(email: &str) -> AccountCommand {
    AccountCommand::Open {
        email: email.to_owned(),
    }
}

fn deposit(amount: u64) -> AccountCommand {
    AccountCommand::Deposit { amount }
}

#[tokio::test]
async fn events_and_metadata_persist_and_reload() {
    let (pool, _dir) = file_pool(4).await;
    let cqrs = sqlite_cqrs(SqliteStore::<Account>::new(pool.clone()), ());
    let metadata =
        HashMap::from([("request_id".to_owned(), "req-1".to_owned())]);

    cqrs.execute_with_metadata("acc-1", open("a@x.io"), metadata.clone())
        .await
        .unwrap();
    cqrs.execute("acc-1", deposit(70)).await.unwrap();
    cqrs.execute("acc-1", AccountCommand::Withdraw { amount: 20 })
        .await
        .unwrap();
    // A command that emits nothing commits nothing.
    cqrs.execute("acc-1", AccountCommand::Nothing)
        .await
        .unwrap();

    // A fresh store on the same pool sees exactly what was committed.
    let store = SqliteStore::<Account>::new(pool.clone());
    let events = store.load_events("acc-1").await.unwrap();
    let sequences: Vec<usize> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, vec![1, 2, 3]);
    assert_eq!(
        events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(),
        vec![
            AccountEvent::Opened {
                email: "a@x.io".to_owned()
            },
            AccountEvent::Deposited { amount: 70 },
            AccountEvent::Withdrew { amount: 20 },
        ]
    );
    assert_eq!(events[0].metadata, metadata);
    assert!(events[1].metadata.is_empty());

    let mut context = store.load_aggregate("acc-1").await.unwrap();
    assert_eq!(context.current_sequence(), 3);
    assert_eq!(context.aggregate().balance, 50);

    // Domain errors stay domain errors and persist nothing.
    let err = cqrs
        .execute("acc-1", AccountCommand::Withdraw { amount: 51 })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AggregateError::UserError(common::AccountError::InsufficientFunds)
    ));
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM events").await, 3);

    // Stored columns are what other tools will query.
    let (event_type, event_version, metadata_json): (String, String, String) =
        sqlx::query_as(
            "SELECT event_type, event_version, metadata FROM events \
             WHERE aggregate_id = 'acc-1' AND sequence = 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(event_type, "AccountEvent::Opened");
    assert_eq!(event_version, "1.0");
    assert_eq!(metadata_json, r#"{"request_id":"req-1"}"#);
}

const WRITERS: u32 = 8;

#[tokio::test]
async fn concurrent_writers_on_one_version_exactly_one_wins() {
    let (pool, _dir) = file_pool(WRITERS).await;
    race_writers(pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_a_shared_memory_database_too() {
    let pool = sqlite_es::open_pool("sqlite::memory:", WRITERS)
        .await
        .unwrap();
    sqlite_es::run_migrations(&pool).await.unwrap();
    race_writers(pool).await;
}

/// N tasks load the same version, wait for each other, then all commit.
#[allow(clippy::unwrap_used, clippy::panic)]
async fn race_writers(pool: sqlx::SqlitePool) {
    let store = SqliteStore::<Account>::new(pool.clone());
    sqlite_cqrs(store.clone(), ())
        .execute("acc-1", open("a@x.io"))
        .await
        .unwrap();

    let barrier = Arc::new(Barrier::new(usize::try_from(WRITERS).unwrap()));
    let mut tasks = Vec::new();
    for amount in 1..=u64::from(WRITERS) {
        let store = store.clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let context = store.load_aggregate("acc-1").await.unwrap();
            assert_eq!(context.current_sequence(), 1);
            // Everyone has loaded version 1 before anyone commits.
            barrier.wait().await;
            store
                .commit(
                    vec![AccountEvent::Deposited { amount }],
                    context,
                    HashMap::new(),
                )
                .await
        }));
    }
    let mut won = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(events) => {
                assert_eq!(events.len(), 1);
                assert_eq!(events[0].sequence, 2);
                won += 1;
            }
            Err(AggregateError::AggregateConflict) => conflicts += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((won, conflicts), (1, WRITERS - 1));
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM events").await, 2);
}

#[tokio::test]
async fn snapshots_are_written_used_and_never_go_backwards() {
    let (pool, _dir) = file_pool(4).await;
    let every = NonZeroUsize::new(2).unwrap();
    let store = SqliteStore::<Account>::new(pool.clone()).with_snapshots(every);
    let cqrs = sqlite_cqrs(store.clone(), ());
    cqrs.execute("acc-1", open("a@x.io")).await.unwrap(); // seq 1
    let snapshots = "SELECT COUNT(*) FROM snapshots";
    assert_eq!(count(&pool, snapshots).await, 0);
    cqrs.execute("acc-1", deposit(10)).await.unwrap(); // seq 2
    cqrs.execute("acc-1", deposit(20)).await.unwrap(); // seq 3
    cqrs.execute("acc-1", deposit(30)).await.unwrap(); // seq 4
    cqrs.execute("acc-1", deposit(40)).await.unwrap(); // seq 5

    let (last_sequence, version, payload): (i64, i64, String) = sqlx::query_as(
        "SELECT last_sequence, snapshot_version, payload FROM snapshots \
             WHERE aggregate_type = 'Account' AND aggregate_id = 'acc-1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((last_sequence, version), (4, 2));
    let snapshot: Account = serde_json::from_str(&payload).unwrap();
    assert_eq!(snapshot.balance, 60);

    let mut context = store.load_aggregate("acc-1").await.unwrap();
    assert_eq!(context.current_sequence(), 5);
    assert_eq!(context.aggregate().balance, 100);

    // Prove the load starts from the snapshot: doctor it and the doctored
    // balance shows through, plus the one event after it.
    sqlx::query(
        "UPDATE snapshots SET payload = json_set(payload, '$.balance', 1000)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut context = store.load_aggregate("acc-1").await.unwrap();
    assert_eq!(context.aggregate().balance, 1040);
    // Without snapshots the store replays and ignores it.
    let replaying = SqliteStore::<Account>::new(pool.clone());
    let mut context = replaying.load_aggregate("acc-1").await.unwrap();
    assert_eq!(context.aggregate().balance, 100);

    // An unreadable snapshot falls back to a full replay.
    sqlx::query("UPDATE snapshots SET payload = '{\"nonsense\": true}'")
        .execute(&pool)
        .await
        .unwrap();
    let mut context = store.load_aggregate("acc-1").await.unwrap();
    assert_eq!(context.aggregate().balance, 100);
    assert_eq!(context.current_sequence(), 5);

    // A stale snapshot write (repository API, no new events) loses.
    let repo = SqliteEventRepository::new(pool.clone());
    let stale = serde_json::to_value(Account::default()).unwrap();
    sqlx::query("UPDATE snapshots SET last_sequence = 5")
        .execute(&pool)
        .await
        .unwrap();
    repo.persist::<Account>(&[], Some(("acc-1".to_owned(), stale, 9)))
        .await
        .unwrap();
    let version: i64 =
        sqlx::query_scalar("SELECT snapshot_version FROM snapshots")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(version, 2, "stale snapshot must not overwrite");

    assert_eq!(store.clear_snapshots().await.unwrap(), 1);
    assert_eq!(count(&pool, snapshots).await, 0);
    let mut context = store.load_aggregate("acc-1").await.unwrap();
    assert_eq!(context.aggregate().balance, 100);
}

#[tokio::test]
async fn projection_conflict_rolls_back_the_events_too() {
    let (pool, _dir) = file_pool(4).await;
    create_email_table(&pool).await;
    create_view_table(&pool, "account_view").await.unwrap();
    let view = Arc::new(ViewProjection::<AccountView, Account>::new(
        "account_view",
        1,
    ));
    let store = SqliteStore::<Account>::new(pool.clone())
        .with_projection(view.clone())
        .with_projection(Arc::new(EmailClaims));
    let cqrs = sqlite_cqrs(store, ());

    cqrs.execute("acc-1", open("same@x.io")).await.unwrap();
    let err = cqrs.execute("acc-2", open("same@x.io")).await.unwrap_err();

    let AggregateError::UnexpectedError(cause) = err else {
        panic!("expected UnexpectedError, got {err:?}");
    };
    match cause.downcast_ref::<SqliteEsError>() {
        Some(SqliteEsError::ProjectionConflict { table, key }) => {
            assert_eq!(table, "account_emails");
            assert_eq!(key, "same@x.io");
        }
        other => panic!("expected ProjectionConflict, got {other:?}"),
    }
    let acc2_events =
        "SELECT COUNT(*) FROM events WHERE aggregate_id = 'acc-2'";
    assert_eq!(count(&pool, acc2_events).await, 0);
    // The view projection ran before the claim failed; it rolled back too.
    assert_eq!(view.load(&pool, "acc-2").await.unwrap(), None);
    let claimed_by: String =
        sqlx::query_scalar("SELECT account_id FROM account_emails")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(claimed_by, "acc-1");

    // The losing id is still free to open with another email.
    cqrs.execute("acc-2", open("other@x.io")).await.unwrap();
    assert_eq!(count(&pool, acc2_events).await, 1);
}

#[tokio::test]
async fn view_projection_commits_with_events_and_rebuild_reproduces_it() {
    let (pool, _dir) = file_pool(4).await;
    create_view_table(&pool, "account_view").await.unwrap();
    let view = Arc::new(ViewProjection::<AccountView, Account>::new(
        "account_view",
        1,
    ));
    let cqrs = sqlite_cqrs(
        SqliteStore::<Account>::new(pool.clone()).with_projection(view.clone()),
        (),
    );
    cqrs.execute("acc-1", open("a@x.io")).await.unwrap();
    cqrs.execute("acc-2", open("b@x.io")).await.unwrap();
    cqrs.execute("acc-1", deposit(5)).await.unwrap();
    cqrs.execute("acc-2", deposit(7)).await.unwrap();
    cqrs.execute("acc-1", deposit(11)).await.unwrap();

    let acc1 = view.load(&pool, "acc-1").await.unwrap().unwrap();
    assert_eq!(
        acc1,
        AccountView {
            email: Some("a@x.io".to_owned()),
            balance: 16,
            events_seen: 3,
            last_sequence: 3,
        }
    );
    let acc2 = view.load(&pool, "acc-2").await.unwrap().unwrap();
    assert_eq!((acc2.balance, acc2.events_seen), (7, 2));
    // One version bump per commit.
    let version: i64 = sqlx::query_scalar(
        "SELECT version FROM account_view WHERE view_id = 'acc-1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(version, 3);

    // Damage the table, then rebuild from the log.
    sqlx::query("DELETE FROM account_view WHERE view_id = 'acc-2'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE account_view SET payload = '{}'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO account_view VALUES ('ghost', 1, '{\"balance\": 1}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(view.rebuild(&pool).await.unwrap(), 5);
    assert_eq!(view.load(&pool, "acc-1").await.unwrap(), Some(acc1));
    assert_eq!(view.load(&pool, "acc-2").await.unwrap(), Some(acc2));
    assert_eq!(view.load(&pool, "ghost").await.unwrap(), None);

    // Commits after a rebuild keep updating the rebuilt rows.
    cqrs.execute("acc-2", deposit(1)).await.unwrap();
    let acc2 = view.load(&pool, "acc-2").await.unwrap().unwrap();
    assert_eq!((acc2.balance, acc2.events_seen), (8, 3));
}

#[tokio::test]
async fn duplicate_sequence_via_repository_is_an_optimistic_lock_error() {
    let (pool, _dir) = file_pool(2).await;
    let store = SqliteStore::<Account>::new(pool.clone());
    let events = sqlite_cqrs(store.clone(), ());
    events.execute("acc-1", open("a@x.io")).await.unwrap();
    let repo = SqliteEventRepository::new(pool.clone());
    let stored = repo.get_events::<Account>("acc-1").await.unwrap();
    assert_eq!(stored.len(), 1);
    let err = repo.persist::<Account>(&stored, None).await.unwrap_err();
    assert!(matches!(err, PersistenceError::OptimisticLockError));
    assert!(
        repo.get_last_events::<Account>("acc-1", 1)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn sequence_gap_in_the_log_is_reported_not_skipped() {
    let (pool, _dir) = file_pool(2).await;
    let store = SqliteStore::<Account>::new(pool.clone());
    sqlite_cqrs(store.clone(), ())
        .execute("acc-1", open("a@x.io"))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events VALUES ('Account', 'acc-1', 3, \
         'AccountEvent::Deposited', '1.0', '{\"Deposited\":{\"amount\":1}}', \
         '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let Err(AggregateError::DeserializationError(cause)) =
        store.load_aggregate("acc-1").await
    else {
        panic!("expected a deserialization error");
    };
    assert!(matches!(
        cause.downcast_ref::<SqliteEsError>(),
        Some(SqliteEsError::SequenceGap {
            expected: 2,
            found: 3,
            ..
        })
    ));
}

#[tokio::test]
async fn rebuild_works_on_a_one_connection_memory_pool() {
    let pool = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
    sqlite_es::run_migrations(&pool).await.unwrap();
    create_view_table(&pool, "account_view").await.unwrap();
    let view = Arc::new(ViewProjection::<AccountView, Account>::new(
        "account_view",
        1,
    ));
    let cqrs = sqlite_cqrs(
        SqliteStore::<Account>::new(pool.clone()).with_projection(view.clone()),
        (),
    );
    cqrs.execute("acc-1", open("a@x.io")).await.unwrap();
    cqrs.execute("acc-1", deposit(3)).await.unwrap();
    let before = view.load(&pool, "acc-1").await.unwrap();
    sqlx::query("DELETE FROM account_view")
        .execute(&pool)
        .await
        .unwrap();
    let replayed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        view.rebuild(&pool),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(replayed, 2);
    assert_eq!(view.load(&pool, "acc-1").await.unwrap(), before);
}

/// Fails every commit in a chosen way.
struct Failing(fn() -> sqlite_es::ProjectionError);

#[async_trait::async_trait]
impl sqlite_es::TxProjection<Account> for Failing {
    async fn project(
        &self,
        _conn: &mut sqlx::SqliteConnection,
        _events: &[cqrs_es::EventEnvelope<Account>],
    ) -> Result<(), sqlite_es::ProjectionError> {
        Err((self.0)())
    }
}

#[tokio::test]
async fn other_projection_failures_roll_back_and_keep_their_cause() {
    let (pool, _dir) = file_pool(2).await;
    // Missing table: a database error, reported as such.
    let missing_table = SqliteStore::<Account>::new(pool.clone())
        .with_projection(Arc::new(EmailClaims));
    let err = sqlite_cqrs(missing_table, ())
        .execute("acc-1", open("a@x.io"))
        .await
        .unwrap_err();
    let AggregateError::DatabaseConnectionError(cause) = err else {
        panic!("expected DatabaseConnectionError, got {err:?}");
    };
    assert!(matches!(
        cause.downcast_ref::<SqliteEsError>(),
        Some(SqliteEsError::Sqlx(_))
    ));

    let custom = SqliteStore::<Account>::new(pool.clone()).with_projection(
        Arc::new(Failing(|| {
            sqlite_es::ProjectionError::Other("ledger closed".into())
        })),
    );
    let err = sqlite_cqrs(custom, ())
        .execute("acc-1", open("a@x.io"))
        .await
        .unwrap_err();
    let AggregateError::UnexpectedError(cause) = err else {
        panic!("expected UnexpectedError, got {err:?}");
    };
    match cause.downcast_ref::<SqliteEsError>() {
        Some(SqliteEsError::Projection(inner)) => {
            assert_eq!(inner.to_string(), "ledger closed");
        }
        other => panic!("expected Projection, got {other:?}"),
    }
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM events").await, 0);
}
