//! Version-checked view tables `(view_id, version, payload)`.

use std::marker::PhantomData;
use std::sync::Arc;

use cqrs_es::persist::{PersistenceError, ViewContext, ViewRepository};
use cqrs_es::{Aggregate, View};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool};

use crate::error::SqliteEsError;

/// SQL for one view table, built once from its (quoted) name.
#[derive(Debug, Clone)]
pub(crate) struct ViewTable {
    table: &'static str,
    select: Arc<str>,
    insert: Arc<str>,
    update: Arc<str>,
    delete_all: Arc<str>,
    upsert_full: Arc<str>,
    quoted: Arc<str>,
}

/// Rows per multi-row upsert while rebuilding (2 parameters each).
const UPSERT_ROWS: usize = 256;

fn upsert_sql(quoted: &str, rows: usize) -> String {
    let values = vec!["(?, 1, ?)"; rows].join(", ");
    format!(
        "INSERT INTO {quoted} (view_id, version, payload) VALUES {values} \
         ON CONFLICT (view_id) DO UPDATE SET version = version + 1, \
         payload = excluded.payload"
    )
}

impl ViewTable {
    pub(crate) fn new(table: &'static str) -> Self {
        // Quoting makes any name a single identifier, so the format!
        // below cannot inject SQL.
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        Self {
            table,
            select: format!(
                "SELECT version, payload FROM {quoted} WHERE view_id = ?"
            )
            .into(),
            insert: format!(
                "INSERT INTO {quoted} (view_id, version, payload) \
                 VALUES (?, ?, ?)"
            )
            .into(),
            update: format!(
                "UPDATE {quoted} SET version = ?, payload = ? \
                 WHERE view_id = ? AND version = ?"
            )
            .into(),
            delete_all: format!("DELETE FROM {quoted}").into(),
            upsert_full: upsert_sql(&quoted, UPSERT_ROWS).into(),
            quoted: quoted.into(),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        self.table
    }

    /// The view and its version, if the row exists.
    pub(crate) async fn load<V: DeserializeOwned>(
        &self,
        conn: &mut SqliteConnection,
        view_id: &str,
    ) -> Result<Option<(V, i64)>, SqliteEsError> {
        let row: Option<(i64, String)> =
            sqlx::query_as(AssertSqlSafe(Arc::clone(&self.select)))
                .bind(view_id)
                .fetch_optional(&mut *conn)
                .await?;
        row.map(|(version, payload)| {
            Ok((serde_json::from_str(&payload)?, version))
        })
        .transpose()
    }

    /// The views among `view_ids` that exist, in chunks of
    /// [`UPSERT_ROWS`] ids per query.
    pub(crate) async fn load_many<V: DeserializeOwned>(
        &self,
        conn: &mut SqliteConnection,
        view_ids: &[&str],
    ) -> Result<Vec<(String, V)>, SqliteEsError> {
        let mut views = Vec::with_capacity(view_ids.len());
        for chunk in view_ids.chunks(UPSERT_ROWS) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT view_id, payload FROM {} WHERE view_id IN ({marks})",
                self.quoted
            );
            let mut query = sqlx::query_as(AssertSqlSafe(sql));
            for view_id in chunk {
                query = query.bind(*view_id);
            }
            let rows: Vec<(String, String)> =
                query.fetch_all(&mut *conn).await?;
            for (view_id, payload) in rows {
                views.push((view_id, serde_json::from_str(&payload)?));
            }
        }
        Ok(views)
    }

    /// Inserts when `loaded_version` is 0, else updates only if the row is
    /// still at `loaded_version`. Zero rows touched is a conflict.
    pub(crate) async fn write<V: Serialize>(
        &self,
        conn: &mut SqliteConnection,
        view_id: &str,
        view: &V,
        loaded_version: i64,
    ) -> Result<(), SqliteEsError> {
        let payload = serde_json::to_string(view)?;
        let next_version =
            loaded_version
                .checked_add(1)
                .ok_or(SqliteEsError::Overflow {
                    what: "view version",
                })?;
        let conflict = || SqliteEsError::ViewVersionConflict {
            table: self.table.to_owned(),
            view_id: view_id.to_owned(),
            expected_version: loaded_version,
        };
        if loaded_version == 0 {
            let inserted = sqlx::query(AssertSqlSafe(Arc::clone(&self.insert)))
                .bind(view_id)
                .bind(next_version)
                .bind(payload)
                .execute(&mut *conn)
                .await;
            return match inserted {
                Ok(_) => Ok(()),
                Err(err) if crate::error::is_unique_violation(&err) => {
                    Err(conflict())
                }
                Err(err) => Err(err.into()),
            };
        }
        let updated = sqlx::query(AssertSqlSafe(Arc::clone(&self.update)))
            .bind(next_version)
            .bind(payload)
            .bind(view_id)
            .bind(loaded_version)
            .execute(&mut *conn)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(conflict());
        }
        Ok(())
    }

    /// Writes `views` (each id at most once) in multi-row statements:
    /// new rows at version 1, existing ones one version up.
    pub(crate) async fn upsert_batch<V: Serialize>(
        &self,
        conn: &mut SqliteConnection,
        views: impl Iterator<Item = (String, V)>,
    ) -> Result<(), SqliteEsError> {
        let mut batch = Vec::with_capacity(UPSERT_ROWS);
        for (view_id, view) in views {
            batch.push((view_id, serde_json::to_string(&view)?));
            if batch.len() == UPSERT_ROWS {
                self.upsert_rows(conn, &batch).await?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.upsert_rows(conn, &batch).await?;
        }
        Ok(())
    }

    async fn upsert_rows(
        &self,
        conn: &mut SqliteConnection,
        rows: &[(String, String)],
    ) -> Result<(), SqliteEsError> {
        let sql = if rows.len() == UPSERT_ROWS {
            Arc::clone(&self.upsert_full)
        } else {
            upsert_sql(&self.quoted, rows.len()).into()
        };
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (view_id, payload) in rows {
            query = query.bind(view_id.as_str()).bind(payload.as_str());
        }
        query.execute(&mut *conn).await?;
        Ok(())
    }

    pub(crate) async fn delete_all(
        &self,
        conn: &mut SqliteConnection,
    ) -> Result<u64, SqliteEsError> {
        let result = sqlx::query(AssertSqlSafe(Arc::clone(&self.delete_all)))
            .execute(&mut *conn)
            .await?;
        Ok(result.rows_affected())
    }
}

/// Creates a view table of the expected shape if it does not exist yet.
///
/// Services normally create view tables in their own migrations; this is
/// for tests and tools.
pub async fn create_view_table(
    pool: &SqlitePool,
    table: &str,
) -> Result<(), SqliteEsError> {
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {quoted} (\
         view_id TEXT PRIMARY KEY, \
         version INTEGER NOT NULL CHECK (version >= 1), \
         payload TEXT NOT NULL CHECK (json_valid(payload))) STRICT"
    );
    sqlx::query(AssertSqlSafe(sql)).execute(pool).await?;
    Ok(())
}

/// cqrs-es [`ViewRepository`] over one view table, for views updated
/// after commit through `GenericQuery`. Prefer
/// [`crate::ViewProjection`], which updates the view in the commit itself.
#[derive(Debug)]
pub struct SqliteViewRepository<V, A> {
    pool: SqlitePool,
    table: ViewTable,
    _types: PhantomData<fn() -> (V, A)>,
}

impl<V, A> SqliteViewRepository<V, A> {
    pub fn new(pool: SqlitePool, table: &'static str) -> Self {
        Self {
            pool,
            table: ViewTable::new(table),
            _types: PhantomData,
        }
    }

    pub fn table(&self) -> &'static str {
        self.table.name()
    }
}

impl<V, A> ViewRepository<V, A> for SqliteViewRepository<V, A>
where
    V: View<A>,
    A: Aggregate,
{
    async fn load(&self, view_id: &str) -> Result<Option<V>, PersistenceError> {
        Ok(self.load_with_context(view_id).await?.map(|(view, _)| view))
    }

    async fn load_with_context(
        &self,
        view_id: &str,
    ) -> Result<Option<(V, ViewContext)>, PersistenceError> {
        let mut conn =
            self.pool.acquire().await.map_err(|err| {
                SqliteEsError::from(err).into_persistence_error()
            })?;
        let loaded = self
            .table
            .load::<V>(&mut conn, view_id)
            .await
            .map_err(SqliteEsError::into_persistence_error)?;
        Ok(loaded.map(|(view, version)| {
            (view, ViewContext::new(view_id.to_owned(), version))
        }))
    }

    async fn update_view(
        &self,
        view: V,
        context: ViewContext,
    ) -> Result<(), PersistenceError> {
        let mut conn =
            self.pool.acquire().await.map_err(|err| {
                SqliteEsError::from(err).into_persistence_error()
            })?;
        match self
            .table
            .write(&mut conn, &context.view_instance_id, &view, context.version)
            .await
        {
            Ok(()) => Ok(()),
            Err(SqliteEsError::ViewVersionConflict { .. }) => {
                Err(PersistenceError::OptimisticLockError)
            }
            Err(err) => Err(err.into_persistence_error()),
        }
    }
}
