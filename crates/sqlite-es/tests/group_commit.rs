//! Group commit and view versions: concurrent commands share
//! transactions without sharing failures, and views are rebuilt only when
//! their projection's version changes.

mod common;

use std::sync::Arc;

use common::{
    Account, AccountCommand, AccountView, EmailClaims, count,
    create_email_table, file_pool,
};
use cqrs_es::AggregateError;
use sqlite_es::{
    SqliteEsError, SqliteStore, ViewProjection, claim_conflict,
    create_view_table, execute_retrying, sqlite_cqrs,
};
use tokio::sync::Barrier;

const TASKS: usize = 48;

fn open(email: &str) -> AccountCommand {
    AccountCommand::Open {
        email: email.to_owned(),
    }
}

/// Distinct accounts, accounts racing for one email, and deposits racing
/// on one stream, all at once: only the losers of each race fail, every
/// other command lands with its view, and nothing is half-written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::unwrap_used, clippy::panic)]
async fn one_commands_failure_fails_only_that_command() {
    let (pool, _dir) = file_pool(8).await;
    create_email_table(&pool).await;
    create_view_table(&pool, "account_view").await.unwrap();
    let view = Arc::new(ViewProjection::<AccountView, Account>::new(
        "account_view",
        1,
    ));
    let cqrs = Arc::new(sqlite_cqrs(
        SqliteStore::<Account>::new(pool.clone())
            .with_projection(view.clone())
            .with_projection(Arc::new(EmailClaims)),
        (),
    ));
    cqrs.execute("shared", open("shared@x.io")).await.unwrap();

    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (cqrs, barrier) = (cqrs.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            match task % 3 {
                0 => cqrs
                    .execute(
                        &format!("own-{task}"),
                        open(&format!("{task}@x.io")),
                    )
                    .await
                    .map(|()| "own"),
                1 => cqrs
                    .execute(&format!("race-{task}"), open("race@x.io"))
                    .await
                    .map(|()| "race"),
                _ => execute_retrying(
                    &cqrs,
                    "shared",
                    AccountCommand::Deposit { amount: 1 },
                )
                .await
                .map(|()| "deposit"),
            }
        }));
    }
    let (mut own, mut race_won, mut race_lost, mut deposits) = (0, 0, 0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok("own") => own += 1,
            Ok("race") => race_won += 1,
            Ok(_) => deposits += 1,
            Err(error) if claim_conflict(&error) == Some("account_emails") => {
                race_lost += 1;
            }
            Err(AggregateError::AggregateConflict) => {
                // Retries ran out on the hot stream: allowed, and then it
                // committed nothing.
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(own, TASKS / 3);
    assert_eq!((race_won, race_lost), (1, TASKS / 3 - 1));
    // Events and claims and views moved together, command by command.
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM account_emails").await,
        i64::try_from(2 + own).unwrap()
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM account_view").await,
        i64::try_from(2 + own).unwrap()
    );
    let shared = view.load(&pool, "shared").await.unwrap().unwrap();
    assert_eq!(shared.balance, deposits);
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM events WHERE aggregate_id = 'shared'"
        )
        .await,
        i64::try_from(1 + deposits).unwrap()
    );
}

#[tokio::test]
#[allow(clippy::unwrap_used)]
async fn views_are_rebuilt_only_when_their_version_changes() {
    let (pool, _dir) = file_pool(2).await;
    create_view_table(&pool, "account_view").await.unwrap();
    let v1 = Arc::new(ViewProjection::<AccountView, Account>::new(
        "account_view",
        1,
    ));
    let cqrs = sqlite_cqrs(
        SqliteStore::<Account>::new(pool.clone()).with_projection(v1.clone()),
        (),
    );
    // A database that never recorded a version is rebuilt once.
    assert_eq!(v1.rebuild_if_stale(&pool).await.unwrap(), Some(0));
    assert_eq!(v1.rebuild_if_stale(&pool).await.unwrap(), None);
    for id in ["a", "b", "c"] {
        cqrs.execute(id, open(&format!("{id}@x.io"))).await.unwrap();
        cqrs.execute(id, AccountCommand::Deposit { amount: 3 })
            .await
            .unwrap();
    }
    // Commits kept the view current: no rebuild, same rows as a rebuild.
    assert_eq!(v1.rebuild_if_stale(&pool).await.unwrap(), None);
    let committed = v1.load(&pool, "b").await.unwrap().unwrap();
    assert_eq!((committed.balance, committed.events_seen), (3, 2));

    // A row the stale rule would keep, to see the rebuild happen.
    sqlx::query("UPDATE account_view SET payload = '{}' WHERE view_id = 'b'")
        .execute(&pool)
        .await
        .unwrap();
    let v2 = ViewProjection::<AccountView, Account>::new("account_view", 2);
    assert_eq!(v2.rebuild_if_stale(&pool).await.unwrap(), Some(6));
    assert_eq!(v2.load(&pool, "b").await.unwrap(), Some(committed.clone()));
    assert_eq!(v2.rebuild_if_stale(&pool).await.unwrap(), None);
    let recorded: i64 = sqlx::query_scalar(
        "SELECT version FROM view_versions WHERE view = 'account_view'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(recorded, 2);
    // Going back to an older binary rebuilds too; an explicit rebuild
    // always does.
    assert_eq!(v1.rebuild_if_stale(&pool).await.unwrap(), Some(6));
    assert_eq!(v1.rebuild(&pool).await.unwrap(), 6);
    assert_eq!(v1.load(&pool, "b").await.unwrap(), Some(committed));
}

/// More views than the rebuild holds in memory, with each stream's events
/// spread over the log: evicted views are read back and finished.
#[tokio::test]
#[allow(clippy::unwrap_used)]
async fn rebuild_reads_back_views_it_evicted() {
    const STREAMS: usize = 20_000;
    let (pool, _dir) = file_pool(2).await;
    create_view_table(&pool, "account_view").await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    for round in 1..=2_i64 {
        for stream in 0..STREAMS {
            let payload = if round == 1 {
                format!(r#"{{"Opened":{{"email":"{stream}@x.io"}}}}"#)
            } else {
                r#"{"Deposited":{"amount":2}}"#.to_owned()
            };
            sqlx::query(
                "INSERT INTO events VALUES ('Account', ?, ?, 'e', '1.0', ?, '{}')",
            )
            .bind(format!("s{stream}"))
            .bind(round)
            .bind(payload)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    let view = ViewProjection::<AccountView, Account>::new("account_view", 1);
    assert_eq!(
        view.rebuild(&pool).await.unwrap(),
        u64::try_from(2 * STREAMS).unwrap()
    );
    for stream in [0, STREAMS / 2, STREAMS - 1] {
        let rebuilt = view.load(&pool, &format!("s{stream}")).await.unwrap();
        assert_eq!(
            rebuilt,
            Some(AccountView {
                email: Some(format!("{stream}@x.io")),
                balance: 2,
                events_seen: 2,
                last_sequence: 2,
            })
        );
    }
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM account_view").await,
        i64::try_from(STREAMS).unwrap()
    );
}

/// Errors of the store keep their type through the group commit.
#[tokio::test]
#[allow(clippy::unwrap_used)]
async fn a_claim_conflict_is_still_a_projection_conflict() {
    let (pool, _dir) = file_pool(2).await;
    create_email_table(&pool).await;
    let cqrs = sqlite_cqrs(
        SqliteStore::<Account>::new(pool.clone())
            .with_projection(Arc::new(EmailClaims)),
        (),
    );
    cqrs.execute("a", open("same@x.io")).await.unwrap();
    let error = cqrs.execute("b", open("same@x.io")).await.unwrap_err();
    let AggregateError::UnexpectedError(cause) = &error else {
        unreachable!("{error:?}");
    };
    assert!(matches!(
        cause.downcast_ref::<SqliteEsError>(),
        Some(SqliteEsError::ProjectionConflict { .. })
    ));
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM events WHERE aggregate_id = 'b'"
        )
        .await,
        0
    );
}
