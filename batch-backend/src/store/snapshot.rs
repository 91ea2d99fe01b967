//! The store's counts at one moment, for `/metrics` ([`crate::metrics`]), and the readiness
//! probe.

use anyhow::Result;
use sqlx::Row as _;

use super::Store;

/// Counts read from the store at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Jobs by state.
    pub jobs: Vec<(String, i64)>,
    /// Tasks waiting (`available`, `retryable`) or `running`, by stage and state.
    pub tasks: Vec<(String, String, i64)>,
    /// The age of the oldest waiting task, by stage, in milliseconds.
    pub oldest_waiting_ms: Vec<(String, i64)>,
    /// Webhook deliveries by state.
    pub deliveries: Vec<(String, i64)>,
}

impl Store {
    /// The counts at `now` (Unix ms).
    ///
    /// # Errors
    /// The database's.
    pub async fn snapshot(&self, now: i64) -> Result<Snapshot> {
        let pairs = |rows: Vec<sqlx::any::AnyRow>| -> Result<Vec<(String, i64)>> {
            rows.iter()
                .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
                .collect()
        };
        let jobs = sqlx::query("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")
            .fetch_all(&self.pool)
            .await?;
        let deliveries = sqlx::query(
            "SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        let tasks = sqlx::query(
            "SELECT stage, state, COUNT(*) FROM tasks
             WHERE state IN ('available', 'retryable', 'running')
             GROUP BY stage, state ORDER BY stage, state",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_>>()?;
        let oldest = sqlx::query(self.sql(
            "SELECT stage, $1 - MIN(created_at) FROM tasks
             WHERE state IN ('available', 'retryable') GROUP BY stage ORDER BY stage",
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(Snapshot {
            jobs: pairs(jobs)?,
            tasks,
            oldest_waiting_ms: pairs(oldest)?,
            deliveries: pairs(deliveries)?,
        })
    }

    /// Whether the database answers (`SELECT 1`).
    ///
    /// # Errors
    /// The database's.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
