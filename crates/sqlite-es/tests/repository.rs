//! Pool settings, the view repository and event streaming.

mod common;

use std::sync::Arc;

use common::{Account, AccountCommand, AccountView, file_pool};
use cqrs_es::persist::{
    GenericQuery, PersistedEventRepository, PersistenceError, ViewContext,
    ViewRepository,
};
use cqrs_es::{EventEnvelope, Query};
use sqlite_es::{
    SqliteEventRepository, SqliteStore, SqliteViewRepository,
    create_view_table, open_pool, run_migrations, sqlite_cqrs,
};

#[tokio::test]
async fn file_pool_runs_wal_with_full_sync() {
    let (pool, _dir) = file_pool(3).await;
    // Ask several distinct connections: the settings are per connection.
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut conn = pool.acquire().await.unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        assert_eq!(synchronous, 2, "2 = FULL");
        assert_eq!(foreign_keys, 1);
        assert_eq!(busy, 5000);
        conns.push(conn);
    }
}

#[tokio::test]
async fn plain_path_is_accepted_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    let pool = open_pool(path.to_str().unwrap(), 2).await.unwrap();
    run_migrations(&pool).await.unwrap();
    run_migrations(&pool).await.unwrap();
    // A later migration set (the service's) does not upset ours.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, \
         checksum, execution_time) VALUES (20990101000000, 'svc', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    run_migrations(&pool).await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn in_memory_pool_connections_share_one_database() {
    let pool = open_pool("sqlite::memory:", 4).await.unwrap();
    run_migrations(&pool).await.unwrap();
    let cqrs = sqlite_cqrs(SqliteStore::<Account>::new(pool.clone()), ());
    cqrs.execute(
        "acc-1",
        AccountCommand::Open {
            email: "m@x.io".to_owned(),
        },
    )
    .await
    .unwrap();
    let mut conns = Vec::new();
    for _ in 0..4 {
        let mut conn = pool.acquire().await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(n, 1);
        conns.push(conn);
    }
    // Two separately opened memory pools do not see each other.
    let other = open_pool(":memory:", 2).await.unwrap();
    run_migrations(&other).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&other)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn view_repository_checks_versions() {
    let (pool, _dir) = file_pool(2).await;
    create_view_table(&pool, "account_view").await.unwrap();
    let repo =
        SqliteViewRepository::<AccountView, Account>::new(pool, "account_view");
    assert!(repo.load("v-1").await.unwrap().is_none());

    let first = AccountView {
        balance: 1,
        ..AccountView::default()
    };
    repo.update_view(first.clone(), ViewContext::new("v-1".to_owned(), 0))
        .await
        .unwrap();
    // A second "new" insert for the same id conflicts.
    let err = repo
        .update_view(first.clone(), ViewContext::new("v-1".to_owned(), 0))
        .await
        .unwrap_err();
    assert!(matches!(err, PersistenceError::OptimisticLockError));

    let (loaded, context) =
        repo.load_with_context("v-1").await.unwrap().unwrap();
    assert_eq!((loaded, context.version), (first, 1));

    let second = AccountView {
        balance: 2,
        ..AccountView::default()
    };
    repo.update_view(second.clone(), ViewContext::new("v-1".to_owned(), 1))
        .await
        .unwrap();
    // A writer still holding version 1 loses and changes nothing.
    let err = repo
        .update_view(
            AccountView::default(),
            ViewContext::new("v-1".to_owned(), 1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PersistenceError::OptimisticLockError));
    let (loaded, context) =
        repo.load_with_context("v-1").await.unwrap().unwrap();
    assert_eq!((loaded, context.version), (second, 2));
}

#[tokio::test]
async fn view_repository_works_behind_generic_query() {
    let (pool, _dir) = file_pool(2).await;
    create_view_table(&pool, "odd \"name\"").await.unwrap();
    let repo = Arc::new(SqliteViewRepository::<AccountView, Account>::new(
        pool.clone(),
        "odd \"name\"",
    ));
    let query = GenericQuery::new(Arc::clone(&repo));
    let event = |sequence, amount| EventEnvelope::<Account> {
        aggregate_id: "acc-9".to_owned(),
        sequence,
        payload: common::AccountEvent::Deposited { amount },
        metadata: std::collections::HashMap::new(),
    };
    query.dispatch("acc-9", &[event(1, 3), event(2, 4)]).await;
    query.dispatch("acc-9", &[event(3, 5)]).await;
    let view = repo.load("acc-9").await.unwrap().unwrap();
    assert_eq!(
        (view.balance, view.events_seen, view.last_sequence),
        (12, 3, 3)
    );
}

#[allow(clippy::unwrap_used)]
async fn seed_interleaved(pool: &sqlx::SqlitePool) {
    let cqrs = sqlite_cqrs(SqliteStore::<Account>::new(pool.clone()), ());
    for (id, email) in [("b", "b@x.io"), ("a", "a@x.io")] {
        cqrs.execute(
            id,
            AccountCommand::Open {
                email: email.to_owned(),
            },
        )
        .await
        .unwrap();
    }
    cqrs.execute("b", AccountCommand::Deposit { amount: 1 })
        .await
        .unwrap();
    cqrs.execute("a", AccountCommand::Deposit { amount: 2 })
        .await
        .unwrap();
}

#[tokio::test]
async fn stream_all_events_yields_commit_order() {
    let (pool, _dir) = file_pool(2).await;
    seed_interleaved(&pool).await;
    let repo = SqliteEventRepository::new(pool.clone());
    let mut stream = repo.stream_all_events::<Account>().await.unwrap();
    let mut seen = Vec::new();
    while let Some(event) = stream.next::<Account>(&[]).await {
        let event = event.unwrap();
        seen.push((event.aggregate_id, event.sequence));
    }
    let expected = [("b", 1), ("a", 1), ("b", 2), ("a", 2)]
        .map(|(id, seq)| (id.to_owned(), seq));
    assert_eq!(seen, expected);

    let mut stream = repo.stream_events::<Account>("a").await.unwrap();
    let mut seen = Vec::new();
    while let Some(event) = stream.next::<Account>(&[]).await {
        seen.push(event.unwrap().sequence);
    }
    assert_eq!(seen, vec![1, 2]);

    // The commit-order query walks the index: no sort of the whole table.
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT * FROM events INDEXED BY \
         events_by_type_in_commit_order WHERE aggregate_type = 'Account' \
         ORDER BY rowid",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        plan.iter()
            .all(|(_, _, _, detail)| !detail.contains("TEMP B-TREE")),
        "{plan:?}"
    );
}

#[tokio::test]
async fn bad_rows_reach_the_consumer_as_errors_and_the_stream_goes_on() {
    let (pool, _dir) = file_pool(2).await;
    seed_interleaved(&pool).await;
    // Valid JSON, but not an AccountEvent.
    sqlx::query(
        "INSERT INTO events VALUES ('Account', 'a', 3, 'Unknown', '9.9', \
         '{\"Exploded\":{}}', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO events VALUES ('Account', 'b', 3, \
         'AccountEvent::Deposited', '1.0', '{\"Deposited\":{\"amount\":9}}', \
         '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let repo = SqliteEventRepository::new(pool);
    let mut stream = repo.stream_all_events::<Account>().await.unwrap();
    let mut ok = 0;
    let mut errors = Vec::new();
    while let Some(event) = stream.next::<Account>(&[]).await {
        match event {
            Ok(_) => ok += 1,
            Err(err) => errors.push(err),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(errors.len(), 1);
    assert!(matches!(
        errors[0],
        PersistenceError::DeserializationError(_)
    ));
}

#[tokio::test]
async fn dropping_the_stream_early_stops_the_producer() {
    let (pool, _dir) = file_pool(1).await;
    let cqrs = sqlite_cqrs(SqliteStore::<Account>::new(pool.clone()), ());
    cqrs.execute(
        "a",
        AccountCommand::Open {
            email: "a@x.io".to_owned(),
        },
    )
    .await
    .unwrap();
    for _ in 0..(sqlite_es::STREAM_BUFFER * 2) {
        cqrs.execute("a", AccountCommand::Deposit { amount: 1 })
            .await
            .unwrap();
    }
    let repo = SqliteEventRepository::new(pool.clone());
    let mut stream = repo.stream_all_events::<Account>().await.unwrap();
    assert!(stream.next::<Account>(&[]).await.unwrap().is_ok());
    drop(stream);
    // With a one-connection pool this only succeeds once the producer
    // noticed the hang-up and returned its connection.
    let n: i64 = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&pool),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        usize::try_from(n).unwrap(),
        sqlite_es::STREAM_BUFFER * 2 + 1
    );
}
