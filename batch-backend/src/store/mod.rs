//! The task queue's store: the only module that speaks SQL for it, on SQLite (the local
//! default) and Postgres (scale-out), one schema per dialect (`migrations/{sqlite,postgres}`),
//! through `sqlx`'s `Any` driver. Every state change follows [`tessera_core::queue`]: claims
//! are leases (Postgres: `FOR UPDATE SKIP LOCKED`; SQLite: inside `BEGIN IMMEDIATE`, its one
//! writer), renewed by [`Store::heartbeat`]; [`Store::rescue`] returns expired leases;
//! an attempt ends through [`tessera_core::queue::after_attempt`]. Each claim is recorded in
//! `task_attempts`, so who held a task when can be checked afterwards. Webhook endpoints
//! and the delivery outbox live here too (`webhooks`), and the ledger of originals that
//! arrived by other routes (`arrivals`).
//!
//! Times are Unix milliseconds, passed in (the caller's clock), so tests can move time.

mod arrivals;
mod jobs;
mod snapshot;
mod webhooks;

pub use arrivals::SettledArrival;
pub use jobs::{Advanced, DetectTasks, InputKind, InputRecord};
pub use snapshot::Snapshot;
pub use webhooks::{DELIVERY_LEASE_MS, DueDelivery};

use anyhow::{Context as _, Result, bail};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row as _};
use tessera_core::queue::{Attempt, LEASE, TaskKey, TaskState, after_attempt};

/// Which database a store speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: a file, one writer at a time.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A task as a worker holds it after a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The task's row id.
    pub id: i64,
    /// `{job_id}/{stage}/{shard}` ([`TaskKey`]'s display).
    pub key: String,
    /// This claim's attempt number, from 1.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Failed attempts before this one.
    pub errors: u32,
}

/// A task as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task's row id.
    pub id: i64,
    /// `{job_id}/{stage}/{shard}`.
    pub key: String,
    /// Its state.
    pub state: TaskState,
    /// Claims so far.
    pub attempt: u32,
    /// Failed attempts so far.
    pub errors: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// When it may next be claimed (Unix ms).
    pub run_at: i64,
}

/// One claim of a task: who held it, from when, and how it ended (`None` while running).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The attempt number.
    pub attempt: u32,
    /// The worker that claimed it.
    pub worker: String,
    /// When it was claimed (Unix ms).
    pub started_at: i64,
    /// When it ended (Unix ms).
    pub ended_at: Option<i64>,
    /// `completed`, `failed`, `lease_expired`, or `None` while running.
    pub outcome: Option<String>,
}

/// The task queue in SQLite or Postgres.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// Lease length in milliseconds ([`LEASE`] unless [`Store::with_lease`]).
    lease_ms: i64,
}

/// A transaction on the store.
type Tx = sqlx::Transaction<'static, sqlx::Any>;

fn state_of(name: &str) -> Result<TaskState> {
    TaskState::ALL
        .into_iter()
        .find(|s| s.as_str() == name)
        .with_context(|| format!("unknown task state {name:?}"))
}

fn task_of(row: &AnyRow) -> Result<TaskRecord> {
    Ok(TaskRecord {
        id: row.try_get("id")?,
        key: row.try_get("unique_key")?,
        state: state_of(&row.try_get::<String, _>("state")?)?,
        attempt: u32_of(row, "attempt")?,
        errors: u32_of(row, "errors")?,
        last_error: row.try_get("last_error")?,
        run_at: row.try_get("run_at")?,
    })
}

fn u32_of(row: &AnyRow, column: &str) -> Result<u32> {
    let v: i64 = row.try_get(column)?;
    u32::try_from(v).with_context(|| format!("{column} {v} out of range"))
}

impl Store {
    /// Connects to `url` (`sqlite:PATH`, created if missing, or `postgres://…`) and applies
    /// the dialect's migrations.
    ///
    /// # Errors
    /// When the URL is neither, the database cannot be reached, or a migration fails.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (dialect, url) = if let Some(path) = url.strip_prefix("sqlite:") {
            (Dialect::Sqlite, format!("sqlite:{path}?mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Dialect::Postgres, url.to_owned())
        } else {
            bail!("{url}: not a sqlite: or postgres:// URL");
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if dialect == Dialect::Sqlite { 4 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // One writer at a time: wait for it rather than fail (TOOLCHAIN.md).
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        match dialect {
            Dialect::Sqlite => sqlx::migrate!("migrations/sqlite").run(&pool).await,
            Dialect::Postgres => sqlx::migrate!("migrations/postgres").run(&pool).await,
        }
        .context("migrating the task store")?;
        Ok(Self {
            pool,
            dialect,
            lease_ms: i64::try_from(LEASE.as_millis()).expect("a lease of minutes"),
        })
    }

    /// This store with leases of `lease` instead of [`LEASE`] (tests and drills that kill
    /// workers and want the rescue within seconds; heartbeats must come well within it).
    #[must_use]
    pub fn with_lease(mut self, lease: std::time::Duration) -> Self {
        self.lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// The lease a claim or heartbeat grants.
    #[must_use]
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(self.lease_ms).unwrap_or(0))
    }

    /// The dialect spoken.
    #[must_use]
    pub const fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// `sql` with `$N` placeholders, as this dialect writes them (`?N` for SQLite).
    fn sql(&self, sql: &'static str) -> AssertSqlSafe<String> {
        AssertSqlSafe(match self.dialect {
            Dialect::Sqlite => sql.replace('$', "?"),
            Dialect::Postgres => sql.to_owned(),
        })
    }

    /// `sql` built at run time from fixed text (row counts of a multi-row `INSERT`), `$N`
    /// written as this dialect writes it.
    fn dynamic_sql(&self, sql: String) -> AssertSqlSafe<String> {
        AssertSqlSafe(match self.dialect {
            Dialect::Sqlite => sql.replace('$', "?"),
            Dialect::Postgres => sql,
        })
    }

    /// A transaction that will write: SQLite takes its one writer's lock at the start
    /// (`BEGIN IMMEDIATE`), so two writers never deadlock upgrading read locks.
    async fn begin_write(&self) -> Result<Tx> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    /// Adds the task `key`, available from `now`, unless a task with that key exists (then
    /// nothing changes). Returns whether it was added.
    ///
    /// # Errors
    /// The database's.
    pub async fn enqueue(&self, key: &TaskKey, max_attempts: u32, now: i64) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "INSERT INTO tasks (unique_key, job_id, stage, shard, state, max_attempts, run_at, created_at)
             VALUES ($1, $2, $3, $4, 'available', $5, $6, $6)
             ON CONFLICT (unique_key) DO NOTHING",
        ))
        .bind(key.to_string())
        .bind(key.job_id.as_str().to_owned())
        .bind(key.stage.as_str())
        .bind(i64::from(key.shard))
        .bind(i64::from(max_attempts))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims the claimable task whose `run_at` came first (ties by id) for `worker`, under a
    /// lease of [`LEASE`] from `now`, and records the attempt. `None` when none is due.
    ///
    /// # Errors
    /// The database's.
    pub async fn claim(&self, worker: &str, now: i64) -> Result<Option<Claimed>> {
        let mut tx = self.begin_write().await?;
        let pick = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE tasks SET state = 'running', attempt = attempt + 1, leased_by = $1, lease_until = $2
             WHERE id = (SELECT id FROM tasks
                         WHERE state IN ('available', 'retryable') AND run_at <= $3
                         ORDER BY run_at, id LIMIT 1{pick})
             RETURNING id, unique_key, attempt, max_attempts, errors"
        );
        let row = sqlx::query(self.dynamic_sql(sql))
            .bind(worker.to_owned())
            .bind(now + self.lease_ms)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let claimed = Claimed {
            id: row.try_get("id")?,
            key: row.try_get("unique_key")?,
            attempt: u32_of(&row, "attempt")?,
            max_attempts: u32_of(&row, "max_attempts")?,
            errors: u32_of(&row, "errors")?,
        };
        sqlx::query(self.sql(
            "INSERT INTO task_attempts (task_id, attempt, worker, started_at) VALUES ($1, $2, $3, $4)",
        ))
        .bind(claimed.id)
        .bind(i64::from(claimed.attempt))
        .bind(worker.to_owned())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(claimed))
    }

    /// Renews `worker`'s lease on `task` to [`LEASE`] from `now`. `false` when the worker no
    /// longer holds it (the lease ran out and the task was rescued or claimed again): the
    /// worker must stop.
    ///
    /// # Errors
    /// The database's.
    pub async fn heartbeat(&self, task: &Claimed, worker: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "UPDATE tasks SET lease_until = $1
             WHERE id = $2 AND state = 'running' AND leased_by = $3 AND attempt = $4",
        ))
        .bind(now + self.lease_ms)
        .bind(task.id)
        .bind(worker.to_owned())
        .bind(i64::from(task.attempt))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends `worker`'s attempt on `task` with `outcome` ([`after_attempt`], `unit_random` for
    /// the backoff's jitter). `None` when the worker no longer holds the task (nothing is
    /// changed); else the task's new state.
    ///
    /// # Errors
    /// The database's.
    pub async fn finish(
        &self,
        task: &Claimed,
        worker: &str,
        outcome: &Attempt,
        now: i64,
        unit_random: f64,
    ) -> Result<Option<TaskState>> {
        let next = after_attempt(
            task.attempt,
            task.max_attempts,
            task.errors,
            outcome,
            unit_random,
        );
        debug_assert!(TaskState::Running.can_become(next.state));
        let (error, label) = match outcome {
            Attempt::Completed => (None, "completed"),
            Attempt::Failed { error, .. } => (Some(error.clone()), "failed"),
            Attempt::LeaseExpired => (Some("lease expired".to_owned()), "lease_expired"),
        };
        let run_at = next.run_after.map_or(now, |d| {
            now + i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        });
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(self.sql(
            "UPDATE tasks SET state = $1, run_at = $2, leased_by = NULL, lease_until = NULL,
                 errors = errors + $3, last_error = COALESCE($4, last_error),
                 finished_at = CASE WHEN $1 IN ('completed', 'discarded') THEN $5 ELSE NULL END
             WHERE id = $6 AND state = 'running' AND leased_by = $7 AND attempt = $8",
        ))
        .bind(next.state.as_str())
        .bind(run_at)
        .bind(i64::from(error.is_some()))
        .bind(error)
        .bind(now)
        .bind(task.id)
        .bind(worker.to_owned())
        .bind(i64::from(task.attempt))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(self.sql(
            "UPDATE task_attempts SET ended_at = $1, outcome = $2 WHERE task_id = $3 AND attempt = $4",
        ))
        .bind(now)
        .bind(label)
        .bind(task.id)
        .bind(i64::from(task.attempt))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(next.state))
    }

    /// Returns every running task whose lease ran out before `now` to the queue (retryable
    /// after its backoff, or discarded when its attempts are spent), as an attempt that ended
    /// with [`Attempt::LeaseExpired`]. Returns each rescued task's key and new state.
    ///
    /// # Errors
    /// The database's.
    pub async fn rescue(&self, now: i64, unit_random: f64) -> Result<Vec<(String, TaskState)>> {
        let rows = sqlx::query(self.sql(
            "SELECT id, unique_key, attempt, max_attempts, errors, leased_by FROM tasks
             WHERE state = 'running' AND lease_until < $1",
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut rescued = Vec::new();
        for row in rows {
            let task = Claimed {
                id: row.try_get("id")?,
                key: row.try_get("unique_key")?,
                attempt: u32_of(&row, "attempt")?,
                max_attempts: u32_of(&row, "max_attempts")?,
                errors: u32_of(&row, "errors")?,
            };
            let worker: String = row.try_get("leased_by")?;
            let ended = self
                .finish(&task, &worker, &Attempt::LeaseExpired, now, unit_random)
                .await?;
            rescued.extend(ended.map(|state| (task.key, state)));
        }
        Ok(rescued)
    }

    /// The task with row id `id`.
    ///
    /// # Errors
    /// The database's.
    pub async fn task(&self, id: i64) -> Result<Option<TaskRecord>> {
        let row = sqlx::query(self.sql(
            "SELECT id, unique_key, state, attempt, errors, last_error, run_at FROM tasks WHERE id = $1",
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(task_of).transpose()
    }

    /// Every task of `job_id`, in the order they were enqueued.
    ///
    /// # Errors
    /// The database's.
    pub async fn tasks(&self, job_id: &tessera_core::keys::JobId) -> Result<Vec<TaskRecord>> {
        let rows = sqlx::query(self.sql(
            "SELECT id, unique_key, state, attempt, errors, last_error, run_at FROM tasks
             WHERE job_id = $1 ORDER BY id",
        ))
        .bind(job_id.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_of).collect()
    }

    /// Every claim of task `id`, in attempt order.
    ///
    /// # Errors
    /// The database's.
    pub async fn attempts(&self, id: i64) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query(self.sql(
            "SELECT attempt, worker, started_at, ended_at, outcome FROM task_attempts
             WHERE task_id = $1 ORDER BY attempt",
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AttemptRecord {
                    attempt: u32_of(row, "attempt")?,
                    worker: row.try_get("worker")?,
                    started_at: row.try_get("started_at")?,
                    ended_at: row.try_get("ended_at")?,
                    outcome: row.try_get("outcome")?,
                })
            })
            .collect()
    }
}
