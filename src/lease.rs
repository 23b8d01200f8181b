//! The `service_lease` row: who runs on this database and when it last
//! showed life. It is information for operators, not the guard: the
//! single-writer guarantee is the OS lock in [`crate::instance_lock`],
//! which the kernel frees when its holder dies. A row left behind by a
//! holder that crashed (its heartbeat may be seconds old) therefore never
//! blocks a start: whoever holds the OS lock overwrites it.
//!
//! The heartbeat still detects the one case the OS lock cannot: a second
//! process that got the lock anyway (its lock file was deleted, or it
//! reached the database under another file) takes the row over, and the
//! older holder, finding its row gone, stops.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::SqlitePool;
use sqlx::migrate::{MigrateError, Migrator};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::instance_lock::InstanceLock;
pub use crate::instance_lock::LeaseHolder;
use crate::shutdown::ShutdownListener;

/// How often the holder refreshes its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// The migration creating `service_lease`; run on its own before the
/// row is written, so the rest of the schema is only migrated by the
/// lease holder.
pub const LEASE_MIGRATION_VERSION: i64 = 20_261_128_000_100;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the service lease was taken over by another instance")]
    Lost,
    #[error("the migration creating service_lease is missing")]
    MigrationMissing,
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The held lease.
pub struct Lease {
    pool: SqlitePool,
    holder: LeaseHolder,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Creates `service_lease` through its migration, alone.
async fn migrate_lease_table(
    pool: &SqlitePool,
    migrations: &Migrator,
) -> Result<(), LeaseError> {
    let lease_migration: Vec<_> = migrations
        .iter()
        .filter(|migration| migration.version == LEASE_MIGRATION_VERSION)
        .cloned()
        .collect();
    if lease_migration.is_empty() {
        return Err(LeaseError::MigrationMissing);
    }
    let mut migrator = Migrator::with_migrations(lease_migration);
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}

impl Lease {
    /// Writes `holder` into `service_lease`, replacing whatever row is
    /// there. `_lock` is the proof that we hold the OS lock, the actual
    /// guard: a row of another holder can only be left by a process that
    /// died without deleting it (even seconds ago), so it is logged and
    /// overwritten, never obeyed. `migrations` is the service's migration
    /// set (it must contain the lease table).
    pub async fn acquire(
        pool: SqlitePool,
        migrations: &Migrator,
        clock: Arc<dyn Clock>,
        holder: LeaseHolder,
        _lock: &InstanceLock,
    ) -> Result<Self, LeaseError> {
        migrate_lease_table(&pool, migrations).await?;
        let previous: Option<(String, String)> = sqlx::query_as(
            "SELECT holder, heartbeat_at FROM service_lease WHERE id = 1",
        )
        .fetch_optional(&pool)
        .await?;
        sqlx::query(
            "INSERT INTO service_lease (id, holder, heartbeat_at) \
             VALUES (1, ?1, ?2) \
             ON CONFLICT (id) DO UPDATE \
             SET holder = excluded.holder, \
                 heartbeat_at = excluded.heartbeat_at",
        )
        .bind(holder.as_str())
        .bind(timestamp(clock.now()))
        .execute(&pool)
        .await?;
        if let Some((previous, heartbeat_at)) = previous
            && previous != holder.as_str()
        {
            tracing::warn!(
                target: "startup",
                previous_holder = previous.as_str(),
                previous_heartbeat_at = heartbeat_at.as_str(),
                "the previous instance did not release the service lease \
                 (it crashed or was killed); taking over: the single-writer \
                 lock is ours"
            );
        }
        tracing::info!(
            target: "startup",
            holder = holder.as_str(),
            "service lease acquired"
        );
        Ok(Self {
            pool,
            holder,
            clock,
        })
    }

    #[cfg(test)]
    pub fn holder(&self) -> &LeaseHolder {
        &self.holder
    }

    /// Refreshes the heartbeat; [`LeaseError::Lost`] if another instance
    /// took the lease meanwhile.
    pub async fn heartbeat(&self) -> Result<(), LeaseError> {
        let updated = sqlx::query(
            "UPDATE service_lease SET heartbeat_at = ?1 \
             WHERE id = 1 AND holder = ?2",
        )
        .bind(timestamp(self.clock.now()))
        .bind(self.holder.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 {
            Ok(())
        } else {
            Err(LeaseError::Lost)
        }
    }

    /// Deletes our row: a successor then finds no leftover to report.
    pub async fn release(self) -> Result<(), LeaseError> {
        sqlx::query("DELETE FROM service_lease WHERE id = 1 AND holder = ?1")
            .bind(self.holder.as_str())
            .execute(&self.pool)
            .await?;
        tracing::info!(
            target: "shutdown",
            holder = self.holder.as_str(),
            "service lease released"
        );
        Ok(())
    }

    /// Heartbeats every `interval` until shutdown, then releases the
    /// lease. If the lease is lost, calls `on_lost` (which should stop the
    /// service) and ends without releasing.
    pub fn spawn_heartbeat<F>(
        self,
        interval: Duration,
        mut shutdown: ShutdownListener,
        on_lost: F,
    ) -> JoinHandle<()>
    where
        F: FnOnce() + Send + 'static,
    {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(
                tokio::time::MissedTickBehavior::Delay,
            );
            loop {
                tokio::select! {
                    () = shutdown.wait() => break,
                    _ = ticker.tick() => {}
                }
                match self.heartbeat().await {
                    Ok(()) => {}
                    Err(LeaseError::Lost) => {
                        // Only a process that bypassed the OS lock can have
                        // taken the row: two writers, so stop.
                        tracing::error!(
                            target: "lease",
                            holder = self.holder.as_str(),
                            "service lease lost to another instance; \
                             shutting down"
                        );
                        on_lost();
                        return;
                    }
                    Err(error) => tracing::warn!(
                        target: "lease",
                        %error,
                        "lease heartbeat failed; retrying"
                    ),
                }
            }
            if let Err(error) = self.release().await {
                tracing::warn!(
                    target: "shutdown",
                    %error,
                    "could not delete the service lease row; a successor \
                     overwrites it"
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;
    use crate::clock::{FixedClock, SequentialIds};

    async fn pool() -> SqlitePool {
        sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap()
    }

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
    }

    async fn acquire(
        pool: &SqlitePool,
        clock: &Arc<FixedClock>,
        holder: &LeaseHolder,
    ) -> Result<Lease, LeaseError> {
        // An in-memory database needs no OS lock; the lease row does not
        // care which kind of proof it is handed.
        let lock = InstanceLock::acquire(pool, holder, clock.now())
            .await
            .unwrap();
        Lease::acquire(
            pool.clone(),
            &crate::MIGRATOR,
            clock.clone(),
            holder.clone(),
            &lock,
        )
        .await
    }

    async fn row(pool: &SqlitePool) -> Option<(String, String)> {
        sqlx::query_as("SELECT holder, heartbeat_at FROM service_lease")
            .fetch_optional(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_fresh_row_of_a_dead_holder_never_blocks_the_lock_holder() {
        let pool = pool().await;
        let clock = Arc::new(FixedClock::new(start()));
        let ids = SequentialIds::new();
        let killed = LeaseHolder::generate(&ids);
        let successor = LeaseHolder::generate(&ids);
        // The killed process heartbeated a second ago and never deleted
        // its row.
        let old = acquire(&pool, &clock, &killed).await.unwrap();
        old.heartbeat().await.unwrap();
        clock.advance(TimeDelta::seconds(1)).unwrap();

        let new = acquire(&pool, &clock, &successor).await.unwrap();
        assert_eq!(new.holder(), &successor);
        let (holder, heartbeat_at) = row(&pool).await.unwrap();
        assert_eq!(holder, successor.as_str());
        assert_eq!(heartbeat_at, timestamp(clock.now()));
        new.heartbeat().await.unwrap();
    }

    #[tokio::test]
    async fn a_holder_whose_row_was_taken_over_learns_it() {
        let pool = pool().await;
        let clock = Arc::new(FixedClock::new(start()));
        let ids = SequentialIds::new();
        let first = LeaseHolder::generate(&ids);
        let second = LeaseHolder::generate(&ids);
        let old = acquire(&pool, &clock, &first).await.unwrap();
        acquire(&pool, &clock, &second).await.unwrap();
        assert!(matches!(old.heartbeat().await, Err(LeaseError::Lost)));
    }

    #[tokio::test]
    async fn heartbeat_moves_and_release_deletes_only_our_row() {
        let pool = pool().await;
        let clock = Arc::new(FixedClock::new(start()));
        let ids = SequentialIds::new();
        let first = LeaseHolder::generate(&ids);
        let second = LeaseHolder::generate(&ids);

        let lease = acquire(&pool, &clock, &first).await.unwrap();
        clock.advance(TimeDelta::seconds(10)).unwrap();
        lease.heartbeat().await.unwrap();
        assert_eq!(row(&pool).await.unwrap().1, timestamp(clock.now()));
        // The same holder may write it again (e.g. a retried startup step).
        let lease_again = acquire(&pool, &clock, &first).await.unwrap();
        drop(lease);
        lease_again.release().await.unwrap();
        assert_eq!(row(&pool).await, None);

        // A release by a holder that lost the row leaves the new row.
        let stale = acquire(&pool, &clock, &first).await.unwrap();
        acquire(&pool, &clock, &second).await.unwrap();
        stale.release().await.unwrap();
        assert_eq!(row(&pool).await.unwrap().0, second.as_str());
    }

    #[tokio::test]
    async fn heartbeat_task_releases_on_shutdown() {
        let pool = pool().await;
        let clock = Arc::new(FixedClock::new(start()));
        let ids = SequentialIds::new();
        let first = LeaseHolder::generate(&ids);
        let lease = acquire(&pool, &clock, &first).await.unwrap();
        let (trigger, listener) = crate::shutdown::channel();
        let task =
            lease.spawn_heartbeat(Duration::from_millis(10), listener, || {
                panic!("lease must not be lost")
            });
        tokio::time::sleep(Duration::from_millis(30)).await;
        trigger.trigger();
        task.await.unwrap();
        assert_eq!(row(&pool).await, None);
    }

    #[tokio::test]
    async fn heartbeat_task_reports_a_lost_lease() {
        let pool = pool().await;
        let clock = Arc::new(FixedClock::new(start()));
        let ids = SequentialIds::new();
        let first = LeaseHolder::generate(&ids);
        let second = LeaseHolder::generate(&ids);
        let lease = acquire(&pool, &clock, &first).await.unwrap();
        acquire(&pool, &clock, &second).await.unwrap();

        let (_trigger, listener) = crate::shutdown::channel();
        let (lost_tx, lost_rx) = tokio::sync::oneshot::channel();
        let task = lease.spawn_heartbeat(
            Duration::from_millis(10),
            listener,
            move || {
                let _ = lost_tx.send(());
            },
        );
        tokio::time::timeout(Duration::from_secs(2), lost_rx)
            .await
            .unwrap()
            .unwrap();
        task.await.unwrap();
        assert_eq!(row(&pool).await.unwrap().0, second.as_str());
    }
}
