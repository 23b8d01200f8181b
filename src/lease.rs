//! Single-writer lease: one running instance per database, so two
//! processes never drive the same aggregates or spend the same nonces
//! (the reference issuer collided on nonces during rollouts).
//!
//! A row in `service_lease` names the holder and its last heartbeat. A new
//! instance takes the lease only if it is free, its own, or stale (no
//! heartbeat for [`LEASE_TTL`]); otherwise it refuses to start.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use sqlx::SqlitePool;
use sqlx::migrate::{MigrateError, Migrator};
use tokio::task::JoinHandle;

use crate::clock::{Clock, IdGenerator};
use crate::shutdown::ShutdownListener;

/// A holder whose heartbeat is older than this is considered gone.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often the holder refreshes its heartbeat (well inside the TTL).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// The migration creating `service_lease`; run on its own before the
/// lease is taken, so the rest of the schema is only migrated by the
/// lease holder.
pub const LEASE_MIGRATION_VERSION: i64 = 20_261_128_000_100;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "another instance ({holder}) holds the service lease (last \
         heartbeat {heartbeat_at}); stop it or wait {ttl_secs} s after it \
         stopped"
    )]
    Held {
        holder: String,
        heartbeat_at: String,
        ttl_secs: u64,
    },
    #[error("the service lease was taken over by another instance")]
    Lost,
    #[error("lease TTL {ttl:?} is out of range")]
    TtlOutOfRange { ttl: Duration },
    #[error("the migration creating service_lease is missing")]
    MigrationMissing,
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Identifies one running instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder(String);

impl LeaseHolder {
    /// Process id plus a fresh uuid: unique even across restarts that
    /// reuse a pid.
    pub fn generate(ids: &dyn IdGenerator) -> Self {
        Self(format!("pid{}-{}", std::process::id(), ids.uuid()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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
    /// Takes the lease or fails with [`LeaseError::Held`]. `migrations`
    /// is the service's migration set (it must contain the lease table).
    pub async fn acquire(
        pool: SqlitePool,
        migrations: &Migrator,
        clock: Arc<dyn Clock>,
        holder: LeaseHolder,
        ttl: Duration,
    ) -> Result<Self, LeaseError> {
        migrate_lease_table(&pool, migrations).await?;
        let ttl_delta = TimeDelta::from_std(ttl)
            .map_err(|_| LeaseError::TtlOutOfRange { ttl })?;
        let now = clock.now();
        let stale_before = now
            .checked_sub_signed(ttl_delta)
            .ok_or(LeaseError::TtlOutOfRange { ttl })?;
        // One statement, so two instances starting together cannot both
        // win: SQLite serialises the writes.
        let taken = sqlx::query(
            "INSERT INTO service_lease (id, holder, heartbeat_at) \
             VALUES (1, ?1, ?2) \
             ON CONFLICT (id) DO UPDATE \
             SET holder = excluded.holder, \
                 heartbeat_at = excluded.heartbeat_at \
             WHERE service_lease.holder = excluded.holder \
                OR service_lease.heartbeat_at < ?3",
        )
        .bind(holder.as_str())
        .bind(timestamp(now))
        .bind(timestamp(stale_before))
        .execute(&pool)
        .await?
        .rows_affected();
        if taken == 1 {
            tracing::info!(
                target: "startup",
                holder = holder.as_str(),
                "service lease acquired"
            );
            return Ok(Self {
                pool,
                holder,
                clock,
            });
        }
        let (current, heartbeat_at): (String, String) = sqlx::query_as(
            "SELECT holder, heartbeat_at FROM service_lease WHERE id = 1",
        )
        .fetch_one(&pool)
        .await?;
        Err(LeaseError::Held {
            holder: current,
            heartbeat_at,
            ttl_secs: ttl.as_secs(),
        })
    }

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

    /// Frees the lease so a successor can start at once.
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
                    "could not release the service lease; a successor \
                     must wait for it to go stale"
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

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
        Lease::acquire(
            pool.clone(),
            &crate::MIGRATOR,
            clock.clone(),
            holder.clone(),
            LEASE_TTL,
        )
        .await
    }

    #[tokio::test]
    async fn second_holder_is_refused_while_heartbeat_is_fresh() {
        let pool = pool().await;
        let clock = Arc::new(FixedClock::new(start()));
        let ids = SequentialIds::new();
        let first = LeaseHolder::generate(&ids);
        let second = LeaseHolder::generate(&ids);
        let lease = acquire(&pool, &clock, &first).await.unwrap();

        clock.advance(TimeDelta::seconds(29)).unwrap();
        let error = acquire(&pool, &clock, &second).await.unwrap_err();
        match error {
            LeaseError::Held { holder, .. } => {
                assert_eq!(holder, first.as_str());
            }
            other => panic!("expected Held, got {other:?}"),
        }

        // A heartbeat keeps it fresh past the original TTL.
        lease.heartbeat().await.unwrap();
        clock.advance(TimeDelta::seconds(29)).unwrap();
        assert!(matches!(
            acquire(&pool, &clock, &second).await,
            Err(LeaseError::Held { .. })
        ));
    }

    #[tokio::test]
    async fn stale_lease_is_taken_over_and_old_holder_learns_it() {
        let pool = pool().await;
        let clock = Arc::new(FixedClock::new(start()));
        let ids = SequentialIds::new();
        let first = LeaseHolder::generate(&ids);
        let second = LeaseHolder::generate(&ids);
        let old = acquire(&pool, &clock, &first).await.unwrap();

        clock.advance(TimeDelta::seconds(31)).unwrap();
        let new = acquire(&pool, &clock, &second).await.unwrap();
        assert_eq!(new.holder(), &second);
        assert!(matches!(old.heartbeat().await, Err(LeaseError::Lost)));
        new.heartbeat().await.unwrap();
    }

    #[tokio::test]
    async fn released_lease_is_free_and_reacquire_by_holder_is_allowed() {
        let pool = pool().await;
        let clock = Arc::new(FixedClock::new(start()));
        let ids = SequentialIds::new();
        let first = LeaseHolder::generate(&ids);
        let second = LeaseHolder::generate(&ids);

        let lease = acquire(&pool, &clock, &first).await.unwrap();
        // The same holder may re-acquire (e.g. a retried startup step).
        let lease_again = acquire(&pool, &clock, &first).await.unwrap();
        drop(lease);
        lease_again.release().await.unwrap();

        acquire(&pool, &clock, &second).await.unwrap();
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
        let rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM service_lease")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(rows, 0);
    }

    #[tokio::test]
    async fn heartbeat_task_reports_a_lost_lease() {
        let pool = pool().await;
        let clock = Arc::new(FixedClock::new(start()));
        let ids = SequentialIds::new();
        let first = LeaseHolder::generate(&ids);
        let second = LeaseHolder::generate(&ids);
        let lease = acquire(&pool, &clock, &first).await.unwrap();
        clock.advance(TimeDelta::seconds(60)).unwrap();
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
        let holder: String =
            sqlx::query_scalar("SELECT holder FROM service_lease")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(holder, second.as_str());
    }
}
