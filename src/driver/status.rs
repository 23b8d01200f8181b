//! `flow_status`: why a driver is still waiting on an item (operators see
//! it as `last_error` in the item's GET endpoint). Written by the drivers
//! only, outside the event store: it is advice, not history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

/// The flows whose items have a status row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowName {
    Mint,
    Redemption,
}

impl FlowName {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mint => "mint",
            Self::Redemption => "redemption",
        }
    }
}

/// Why the driver is still waiting on an item, if it has hit errors.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct DriverStatus {
    /// Consecutive failed steps since the last progress.
    pub failures: u32,
    pub last_error: String,
    pub last_error_at: DateTime<Utc>,
}

pub async fn record_error(
    pool: &SqlitePool,
    flow: FlowName,
    id: &str,
    error: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO flow_status (flow, id, failures, last_error, \
         last_error_at) VALUES (?, ?, 1, ?, ?) \
         ON CONFLICT (flow, id) DO UPDATE SET \
         failures = failures + 1, last_error = excluded.last_error, \
         last_error_at = excluded.last_error_at",
    )
    .bind(flow.as_str())
    .bind(id)
    .bind(error)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn clear_error(
    pool: &SqlitePool,
    flow: FlowName,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM flow_status WHERE flow = ? AND id = ?")
        .bind(flow.as_str())
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn status(
    pool: &SqlitePool,
    flow: FlowName,
    id: &str,
) -> Result<Option<DriverStatus>, sqlx::Error> {
    let row: Option<(i64, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT failures, last_error, last_error_at FROM flow_status \
         WHERE flow = ? AND id = ?",
    )
    .bind(flow.as_str())
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(|(failures, last_error, last_error_at)| {
        Ok(DriverStatus {
            failures: u32::try_from(failures)
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?,
            last_error,
            last_error_at,
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    async fn pool() -> SqlitePool {
        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        crate::startup::MIGRATOR.run(&pool).await.unwrap();
        pool
    }

    #[tokio::test]
    async fn errors_count_up_per_flow_and_clear_on_progress() {
        let pool = pool().await;
        let t1 = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 5).unwrap();
        assert_eq!(status(&pool, FlowName::Mint, "a").await.unwrap(), None);
        record_error(&pool, FlowName::Mint, "a", "rpc down", t1)
            .await
            .unwrap();
        record_error(&pool, FlowName::Mint, "a", "rpc hung", t2)
            .await
            .unwrap();
        // Same id, other flow: a separate row.
        record_error(&pool, FlowName::Redemption, "a", "alpaca 503", t1)
            .await
            .unwrap();
        assert_eq!(
            status(&pool, FlowName::Mint, "a").await.unwrap(),
            Some(DriverStatus {
                failures: 2,
                last_error: "rpc hung".into(),
                last_error_at: t2,
            })
        );
        clear_error(&pool, FlowName::Mint, "a").await.unwrap();
        assert_eq!(status(&pool, FlowName::Mint, "a").await.unwrap(), None);
        let other = status(&pool, FlowName::Redemption, "a").await.unwrap();
        assert_eq!(other.map(|s| s.failures), Some(1));
    }
}
