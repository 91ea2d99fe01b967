//! Jobs and their inputs in the store: created with their first stage's tasks in one
//! transaction, read back as the API's [`JobStatus`], moved between states only through
//! [`tessera_core::job::transition`], and advanced from stage to stage by
//! [`Store::advance`] when a stage's last task ends. A job that ends records its webhook
//! deliveries in the same transaction (`job.completed`, `job.failed`).

use anyhow::{Context as _, Result};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use tessera_core::Sha256Digest;
use tessera_core::job::{
    InputOutcome, InputState, JobCursor, JobEvent, JobInput, JobQuery, JobRequest, JobResults,
    JobStage, JobState, JobStatus, Progress, TransitionError, end_event, remaining_seconds, shards,
    stage_after, stage_fraction, transition,
};
use tessera_core::keys::{ImageId, JobId, Project};
use tessera_core::queue::{DEFAULT_MAX_ATTEMPTS, TaskKey};
use tessera_core::webhook::{UploadCompletedEvent, WebhookEndpoint, WebhookEvent, WebhookSecret};

use super::webhooks::Subject;
use super::{Store, Tx};

/// Rows per multi-row `INSERT` of a job's inputs and tasks (SQLite allows 32,766 bound
/// parameters; 100 rows × 8 stays far below it).
const INSERT_CHUNK: usize = 100;

/// What an ingested input turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A georeferenced GeoTIFF: stitched and run through the detector.
    Raster,
    /// A photo (or a TIFF without georeferencing): run through the detector alone, upright.
    Photo,
}

impl InputKind {
    /// The name in SQL.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Raster => "raster",
            Self::Photo => "photo",
        }
    }
}

/// One input of a job as a worker needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// Its position in the job's request, from 0 (the ingest task's shard).
    pub index: u32,
    /// What the request said of it.
    pub input: JobInput,
    /// What became of it.
    pub state: InputState,
    /// What ingest found it to be.
    pub kind: Option<InputKind>,
    /// Why it failed.
    pub reason: Option<String>,
}

/// What [`Store::advance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advanced {
    /// Tasks of the stage are still open.
    Waiting,
    /// The next stage's tasks were enqueued.
    Next(JobStage),
    /// The job ended in this state.
    Ended(JobState),
    /// The job is cancelled or already ended: nothing was enqueued.
    Stopped,
}

/// A job's detect tasks: shards of its mosaic first (task `i` runs shard `i` of
/// `mosaic_shards`), then one per accepted photo (task `mosaic_shards + p` runs photo `p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectTasks {
    /// Shards of the mosaic (0 without one).
    pub mosaic_shards: u32,
    /// Photos.
    pub photos: u32,
}

impl DetectTasks {
    /// How many tasks in all.
    #[must_use]
    pub const fn count(self) -> u32 {
        self.mosaic_shards.saturating_add(self.photos)
    }
}

fn unsigned(row: &AnyRow, column: &str) -> Result<u64> {
    let v: i64 = row.try_get(column)?;
    u64::try_from(v).with_context(|| format!("{column} {v} is negative"))
}

/// The webhook a job's arrival in `state` sends, if any.
const fn job_webhook_event(state: JobState) -> Option<WebhookEvent> {
    match state {
        JobState::Succeeded => Some(WebhookEvent::JobCompleted),
        JobState::Failed => Some(WebhookEvent::JobFailed),
        _ => None,
    }
}

fn job_state(name: &str) -> Result<JobState> {
    JobState::parse(name).with_context(|| format!("unknown job state {name:?}"))
}

fn stage_of(name: &str) -> Result<JobStage> {
    JobStage::parse(name).with_context(|| format!("unknown stage {name:?}"))
}

impl Store {
    /// Records the job `job_id` of `request`'s upload with its inputs and its first stage's
    /// tasks, in one transaction, unless that upload has a job: one job per upload, enforced
    /// by a unique column, so concurrent completions all get the same job. `.1` is whether
    /// this call created it. An upload's job records the `upload.completed` webhook with it.
    ///
    /// # Errors
    /// The database's.
    pub async fn create_job(
        &self,
        job_id: &JobId,
        request: &JobRequest,
        now: i64,
    ) -> Result<(JobStatus, bool)> {
        let (job, created, _) = self
            .create_job_with_webhook(job_id, request, None, now)
            .await?;
        Ok((job, created))
    }

    /// [`Store::create_job`], and, when `request` names a webhook (checked, its host
    /// resolved: [`crate::webhook::create_job`]), the job's own endpoint with
    /// `webhook_secret`, in the same transaction; `.2` is that endpoint, with its secret.
    ///
    /// # Errors
    /// The database's; a webhook without a secret.
    pub async fn create_job_with_webhook(
        &self,
        job_id: &JobId,
        request: &JobRequest,
        webhook_secret: Option<&WebhookSecret>,
        now: i64,
    ) -> Result<(JobStatus, bool, Option<WebhookEndpoint>)> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(self.sql(
            "INSERT INTO jobs (job_id, upload_id, project, state, inputs_total, created_at, updated_at)
             VALUES ($1, $2, $3, 'queued', $4, $5, $5)
             ON CONFLICT (upload_id) DO NOTHING",
        ))
        .bind(job_id.as_str().to_owned())
        .bind(request.upload_id.clone())
        .bind(request.project.as_str().to_owned())
        .bind(i64::try_from(request.inputs.len())?)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            tx.rollback().await?;
            let existing: String =
                sqlx::query(self.sql("SELECT job_id FROM jobs WHERE upload_id = $1"))
                    .bind(request.upload_id.clone())
                    .fetch_one(&self.pool)
                    .await?
                    .try_get("job_id")?;
            let existing = JobId::new(existing.as_str())
                .map_err(|e| anyhow::anyhow!("job id {existing:?} in jobs: {e}"))?;
            let job = self
                .job(&existing, now)
                .await?
                .context("the upload's job vanished")?;
            return Ok((job, false, None));
        }
        for (chunk_at, chunk) in request.inputs.chunks(INSERT_CHUNK).enumerate() {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = i * 7;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5,
                        p + 6,
                        p + 7
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO job_inputs (job_id, idx, image_id, original_key, metadata_key, media_type, sha256) VALUES {}",
                values.join(", ")
            );
            let mut query = sqlx::query(self.dynamic_sql(sql));
            for (i, input) in chunk.iter().enumerate() {
                query = query
                    .bind(job_id.as_str().to_owned())
                    .bind(i64::try_from(chunk_at * INSERT_CHUNK + i)?)
                    .bind(input.image_id.as_str().to_owned())
                    .bind(input.original_key.clone())
                    .bind(input.metadata_key.clone())
                    .bind(input.media_type.clone())
                    .bind(input.sha256.hex.clone());
            }
            query.execute(&mut *tx).await?;
        }
        if let Some(upload_id) = &request.upload_id {
            let completed = UploadCompletedEvent {
                upload_id: upload_id.clone(),
                project: request.project.as_str().to_owned(),
                job_id: job_id.as_str().to_owned(),
                image_ids: request
                    .inputs
                    .iter()
                    .map(|i| i.image_id.to_string())
                    .collect(),
            };
            self.record_event(
                &mut tx,
                WebhookEvent::UploadCompleted,
                Subject::Upload {
                    project: &request.project,
                    upload_id,
                },
                &completed,
                now,
            )
            .await?;
        }
        let webhook = match (&request.webhook, webhook_secret) {
            (Some(hook), Some(secret)) => Some(
                self.insert_endpoint(&mut tx, hook, secret, Some(job_id), now)
                    .await?,
            ),
            (Some(_), None) => anyhow::bail!("a job's webhook needs its secret"),
            (None, _) => None,
        };
        let first = tessera_core::job::PIPELINE[0];
        self.enqueue_stage(&mut tx, job_id, first, now).await?;
        sqlx::query(self.sql("UPDATE jobs SET stage = $1 WHERE job_id = $2"))
            .bind(first.as_str())
            .bind(job_id.as_str().to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let job = self
            .job(job_id, now)
            .await?
            .context("a job just created is missing")?;
        Ok((job, true, webhook))
    }

    /// Enqueues `stage`'s tasks for the job ([`shards`]: from its input count and its
    /// mosaic's detect shards), each once.
    async fn enqueue_stage(
        &self,
        tx: &mut Tx,
        job_id: &JobId,
        stage: JobStage,
        now: i64,
    ) -> Result<()> {
        let row =
            sqlx::query(self.sql(
                "SELECT inputs_total, detect_shards, detect_photos FROM jobs WHERE job_id = $1",
            ))
            .bind(job_id.as_str().to_owned())
            .fetch_one(&mut **tx)
            .await?;
        let inputs = usize::try_from(unsigned(&row, "inputs_total")?)?;
        let detect = DetectTasks {
            mosaic_shards: u32::try_from(unsigned(&row, "detect_shards")?)?,
            photos: u32::try_from(unsigned(&row, "detect_photos")?)?,
        };
        let count = shards(stage, inputs, detect.count());
        let keys: Vec<TaskKey> = (0..count)
            .map(|shard| TaskKey {
                job_id: job_id.clone(),
                stage,
                shard,
            })
            .collect();
        for chunk in keys.chunks(INSERT_CHUNK) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = i * 4;
                    format!(
                        "(${}, ${}, ${}, ${}, 'available', {}, {now}, {now})",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        DEFAULT_MAX_ATTEMPTS
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO tasks (unique_key, job_id, stage, shard, state, max_attempts, run_at, created_at)
                 VALUES {} ON CONFLICT (unique_key) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(self.dynamic_sql(sql));
            for key in chunk {
                query = query
                    .bind(key.to_string())
                    .bind(key.job_id.as_str().to_owned())
                    .bind(key.stage.as_str())
                    .bind(i64::from(key.shard));
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The job `job_id` as the API reports it at `now` (for the estimate), with every input's
    /// outcome.
    ///
    /// # Errors
    /// The database's, or a row that does not parse.
    pub async fn job(&self, job_id: &JobId, now: i64) -> Result<Option<JobStatus>> {
        let mut conn = self.pool.acquire().await?;
        self.job_on(&mut conn, job_id, now).await
    }

    /// [`Store::job`] on `conn` (a transaction's, to see its own changes).
    pub(super) async fn job_on(
        &self,
        conn: &mut sqlx::AnyConnection,
        job_id: &JobId,
        now: i64,
    ) -> Result<Option<JobStatus>> {
        let row = sqlx::query(self.sql(
            "SELECT job_id, upload_id, project, state, stage, inputs_total, windows_done,
                    windows_total, fraction, error, results, created_at, started_at
             FROM jobs WHERE job_id = $1",
        ))
        .bind(job_id.as_str().to_owned())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut job = job_of(&row, now)?;
        let inputs = self.inputs_on(conn, job_id).await?;
        job.progress.done = inputs
            .iter()
            .filter(|i| i.state != InputState::Pending)
            .count() as u64;
        job.progress.failed = inputs
            .iter()
            .filter(|i| i.state == InputState::Failed)
            .count() as u64;
        job.inputs = inputs
            .into_iter()
            .map(|i| InputOutcome {
                image_id: i.input.image_id,
                original_key: i.input.original_key,
                state: i.state,
                reason: i.reason,
            })
            .collect();
        Ok(Some(job))
    }

    /// One page of jobs for `query`, newest first (keyset on creation time and id), without
    /// their input lists; the cursor after the page's last job when another page follows.
    ///
    /// # Errors
    /// The database's, or a row that does not parse.
    pub async fn list_jobs(
        &self,
        query: &JobQuery,
        now: i64,
    ) -> Result<(Vec<JobStatus>, Option<JobCursor>)> {
        // Every filter is bound; absent ones compare a NULL parameter and pass.
        let rows = sqlx::query(self.sql(
            "SELECT j.job_id, j.upload_id, j.project, j.state, j.stage, j.inputs_total, j.windows_done,
                    j.windows_total, j.fraction, j.error, j.results, j.created_at, j.started_at,
                    (SELECT COUNT(*) FROM job_inputs i WHERE i.job_id = j.job_id AND i.state <> 'pending') AS settled,
                    (SELECT COUNT(*) FROM job_inputs i WHERE i.job_id = j.job_id AND i.state = 'failed') AS failed
             FROM jobs j
             WHERE ($1 IS NULL OR j.project = $1)
               AND ($2 IS NULL OR j.state = $2)
               AND ($3 IS NULL OR j.created_at < $3 OR (j.created_at = $3 AND j.job_id < $4))
             ORDER BY j.created_at DESC, j.job_id DESC
             LIMIT $5",
        ))
        .bind(query.project.as_ref().map(|p| p.as_str().to_owned()))
        .bind(query.state.map(JobState::as_str))
        .bind(query.cursor.as_ref().map(|c| c.created_at_ms))
        .bind(query.cursor.as_ref().map(|c| c.job_id.as_str().to_owned()))
        .bind(i64::from(query.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        let mut created = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut job = job_of(row, now)?;
            job.progress.done = unsigned(row, "settled")?;
            job.progress.failed = unsigned(row, "failed")?;
            created.push(row.try_get::<i64, _>("created_at")?);
            jobs.push(job);
        }
        let limit = usize::try_from(query.limit)?;
        let cursor = (jobs.len() > limit).then(|| JobCursor {
            created_at_ms: created[limit - 1],
            job_id: jobs[limit - 1].job_id.clone(),
        });
        jobs.truncate(limit);
        Ok((jobs, cursor))
    }

    /// Every input of `job_id`, in the request's order.
    ///
    /// # Errors
    /// The database's, or a row that does not parse.
    pub async fn inputs(&self, job_id: &JobId) -> Result<Vec<InputRecord>> {
        let mut conn = self.pool.acquire().await?;
        self.inputs_on(&mut conn, job_id).await
    }

    async fn inputs_on(
        &self,
        conn: &mut sqlx::AnyConnection,
        job_id: &JobId,
    ) -> Result<Vec<InputRecord>> {
        let rows = sqlx::query(self.sql(
            "SELECT idx, image_id, original_key, metadata_key, media_type, sha256, state, kind, reason
             FROM job_inputs WHERE job_id = $1 ORDER BY idx",
        ))
        .bind(job_id.as_str().to_owned())
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(input_of).collect()
    }

    /// Input `index` of `job_id`.
    ///
    /// # Errors
    /// The database's, or a row that does not parse.
    pub async fn input(&self, job_id: &JobId, index: u32) -> Result<Option<InputRecord>> {
        let row = sqlx::query(self.sql(
            "SELECT idx, image_id, original_key, metadata_key, media_type, sha256, state, kind, reason
             FROM job_inputs WHERE job_id = $1 AND idx = $2",
        ))
        .bind(job_id.as_str().to_owned())
        .bind(i64::from(index))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(input_of).transpose()
    }

    /// Inputs of `job_id` that ingest has settled (ok or failed), and all of them.
    ///
    /// # Errors
    /// The database's.
    pub async fn inputs_settled(&self, job_id: &JobId) -> Result<(u64, u64)> {
        let row = sqlx::query(self.sql(
            "SELECT COUNT(*) AS total, CAST(COALESCE(SUM(CASE WHEN state = 'pending' THEN 0 ELSE 1 END), 0) AS BIGINT) AS settled
             FROM job_inputs WHERE job_id = $1",
        ))
        .bind(job_id.as_str().to_owned())
        .fetch_one(&self.pool)
        .await?;
        Ok((unsigned(&row, "settled")?, unsigned(&row, "total")?))
    }

    /// Records what ingest found of input `index` of `job_id`.
    ///
    /// # Errors
    /// The database's.
    pub async fn record_input(
        &self,
        job_id: &JobId,
        index: u32,
        state: InputState,
        kind: Option<InputKind>,
        reason: Option<&str>,
    ) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE job_inputs SET state = $1, kind = $2, reason = $3 WHERE job_id = $4 AND idx = $5",
        ))
        .bind(state.as_str())
        .bind(kind.map(InputKind::as_str))
        .bind(reason.map(str::to_owned))
        .bind(job_id.as_str().to_owned())
        .bind(i64::from(index))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Raises the job's progress to `stage` being `within` done ([`stage_fraction`]); a
    /// lower value than the recorded one changes nothing, so progress never goes back.
    /// `windows` (done, known) replaces the window counts when given.
    ///
    /// # Errors
    /// The database's.
    pub async fn progress(
        &self,
        job_id: &JobId,
        stage: JobStage,
        within: f64,
        windows: Option<(u64, u64)>,
        now: i64,
    ) -> Result<()> {
        let fraction = stage_fraction(stage, within);
        let (done, total) = windows.map_or((-1, -1), |(d, t)| {
            (
                i64::try_from(d).unwrap_or(i64::MAX),
                i64::try_from(t).unwrap_or(i64::MAX),
            )
        });
        sqlx::query(self.sql(
            "UPDATE jobs SET fraction = CASE WHEN fraction < $1 THEN $1 ELSE fraction END,
                 windows_done = CASE WHEN $2 < 0 THEN windows_done ELSE $2 END,
                 windows_total = CASE WHEN $3 < 0 THEN windows_total ELSE $3 END,
                 updated_at = $4
             WHERE job_id = $5",
        ))
        .bind(fraction)
        .bind(done)
        .bind(total)
        .bind(now)
        .bind(job_id.as_str().to_owned())
        .execute(&self.pool)
        .await?;
        self.announce_progress(job_id, fraction, now).await
    }

    /// Records a `job.progress` webhook when `fraction` reaches a tenth (10 % to 90 %) not
    /// announced before: one per tenth per job, whichever update gets there first (the
    /// conditional update of `progress_step` decides), so the event is throttled to at most
    /// nine per job; 100 % is `job.completed`.
    async fn announce_progress(&self, job_id: &JobId, fraction: f64, now: i64) -> Result<()> {
        // A fraction in [0, 1]: its tenth is 0 to 10.
        #[allow(clippy::cast_possible_truncation)]
        let step = (fraction * 10.0).floor() as i64;
        if !(1..10).contains(&step) {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(self.sql(
            "UPDATE jobs SET progress_step = $1
             WHERE job_id = $2 AND progress_step < $1 AND state = 'running'",
        ))
        .bind(step)
        .bind(job_id.as_str().to_owned())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if claimed && let Some(mut job) = self.job_on(&mut tx, job_id, now).await? {
            // The status without its per-input list, as job lists give it.
            job.inputs.clear();
            let project = job.project.clone();
            let subject = Subject::Job {
                project: &project,
                job: job_id,
            };
            self.record_event(&mut tx, WebhookEvent::JobProgress, subject, &job, now)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a task's own progress (`within` its work, 0.0–1.0, and its windows done and
    /// known), then raises the job's ([`Store::progress`]) to its stage's share: the mean of
    /// its tasks' progress (a completed task counts as done, one not started as nothing), and
    /// the windows summed over them. Several detect tasks sharing a mosaic add up this way.
    ///
    /// # Errors
    /// The database's.
    pub async fn task_progress(
        &self,
        key: &TaskKey,
        within: f64,
        windows: Option<(u64, u64)>,
        now: i64,
    ) -> Result<()> {
        let (done, total) = windows.unwrap_or((0, 0));
        sqlx::query(self.sql(
            "UPDATE tasks SET progress = $1, windows_done = $2, windows_total = $3
             WHERE unique_key = $4",
        ))
        .bind(if within.is_finite() {
            within.clamp(0.0, 1.0)
        } else {
            0.0
        })
        .bind(i64::try_from(done)?)
        .bind(i64::try_from(total)?)
        .bind(key.to_string())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(self.sql(
            "SELECT CAST(SUM(CASE WHEN state = 'completed' THEN 1.0 ELSE progress END)
                         AS DOUBLE PRECISION) AS within,
                    COUNT(*) AS tasks,
                    CAST(SUM(windows_done) AS BIGINT) AS done,
                    CAST(SUM(windows_total) AS BIGINT) AS total
             FROM tasks WHERE job_id = $1 AND stage = $2",
        ))
        .bind(key.job_id.as_str().to_owned())
        .bind(key.stage.as_str())
        .fetch_one(&self.pool)
        .await?;
        let tasks = unsigned(&row, "tasks")?.max(1);
        let within: f64 = row.try_get::<Option<f64>, _>("within")?.unwrap_or(0.0);
        let windows = match windows {
            Some(_) => Some((unsigned(&row, "done")?, unsigned(&row, "total")?)),
            None => None,
        };
        self.progress(&key.job_id, key.stage, within / tasks as f64, windows, now)
            .await
    }

    /// Records the job's detect tasks; the stitch task sets them before detect is enqueued.
    ///
    /// # Errors
    /// The database's.
    pub async fn set_detect_tasks(&self, job_id: &JobId, tasks: DetectTasks) -> Result<()> {
        sqlx::query(
            self.sql("UPDATE jobs SET detect_shards = $1, detect_photos = $2 WHERE job_id = $3"),
        )
        .bind(i64::from(tasks.mosaic_shards))
        .bind(i64::from(tasks.photos))
        .bind(job_id.as_str().to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The job's detect tasks (one mosaic shard and no photo until stitch has said).
    ///
    /// # Errors
    /// The database's; a missing job.
    pub async fn detect_tasks(&self, job_id: &JobId) -> Result<DetectTasks> {
        let row = sqlx::query(
            self.sql("SELECT detect_shards, detect_photos FROM jobs WHERE job_id = $1"),
        )
        .bind(job_id.as_str().to_owned())
        .fetch_optional(&self.pool)
        .await?
        .with_context(|| format!("no job {job_id}"))?;
        Ok(DetectTasks {
            mosaic_shards: u32::try_from(unsigned(&row, "detect_shards")?)?,
            photos: u32::try_from(unsigned(&row, "detect_photos")?)?,
        })
    }

    /// The job's `n`-th photo that ingest accepted (from 0, in input order).
    ///
    /// # Errors
    /// The database's, or a row that does not parse.
    pub async fn nth_photo(&self, job_id: &JobId, n: u32) -> Result<Option<InputRecord>> {
        let row = sqlx::query(self.sql(
            "SELECT idx, image_id, original_key, metadata_key, media_type, sha256, state, kind, reason
             FROM job_inputs WHERE job_id = $1 AND state = 'ok' AND kind = 'photo'
             ORDER BY idx LIMIT 1 OFFSET $2",
        ))
        .bind(job_id.as_str().to_owned())
        .bind(i64::from(n))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(input_of).transpose()
    }

    /// Replaces the job's published results (keys only).
    ///
    /// # Errors
    /// The database's.
    pub async fn set_results(&self, job_id: &JobId, results: &JobResults) -> Result<()> {
        sqlx::query(self.sql("UPDATE jobs SET results = $1 WHERE job_id = $2"))
            .bind(serde_json::to_string(results)?)
            .bind(job_id.as_str().to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Applies `event` to the job through [`transition`], recording `error` with a failure.
    /// The inner `Err` is a change the job's state does not allow (nothing changes). A
    /// concurrent change is retried against the new state.
    ///
    /// # Errors
    /// The database's; a missing job.
    pub async fn change_state(
        &self,
        job_id: &JobId,
        event: JobEvent,
        error: Option<&str>,
        now: i64,
    ) -> Result<Result<JobState, TransitionError>> {
        loop {
            let from: String = sqlx::query(self.sql("SELECT state FROM jobs WHERE job_id = $1"))
                .bind(job_id.as_str().to_owned())
                .fetch_optional(&self.pool)
                .await?
                .with_context(|| format!("no job {job_id}"))?
                .try_get("state")?;
            let from = job_state(&from)?;
            let to = match transition(from, event) {
                Ok(to) => to,
                Err(e) => return Ok(Err(e)),
            };
            let mut tx = self.begin_write().await?;
            let changed = sqlx::query(self.sql(
                "UPDATE jobs SET state = $1, updated_at = $2,
                     started_at = CASE WHEN $1 = 'running' AND started_at IS NULL THEN $2 ELSE started_at END,
                     error = CASE WHEN $1 = 'failed' THEN $3 WHEN $1 = 'queued' THEN NULL ELSE error END,
                     fraction = CASE WHEN $1 = 'succeeded' THEN 1.0 ELSE fraction END
                 WHERE job_id = $4 AND state = $5",
            ))
            .bind(to.as_str())
            .bind(now)
            .bind(error.map(str::to_owned))
            .bind(job_id.as_str().to_owned())
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
            if changed.rows_affected() != 1 {
                tx.rollback().await?;
                continue;
            }
            if let Some(webhook) = job_webhook_event(to) {
                let job = self
                    .job_on(&mut tx, job_id, now)
                    .await?
                    .context("a job just changed is missing")?;
                let subject = Subject::Job {
                    project: &job.project,
                    job: job_id,
                };
                self.record_event(&mut tx, webhook, subject, &job, now)
                    .await?;
            }
            tx.commit().await?;
            return Ok(Ok(to));
        }
    }

    /// Moves the job on once every task of `stage` has ended: enqueues the next stage's
    /// tasks ([`stage_after`]), or ends the job after the last ([`end_event`]). Several
    /// workers may call it for one stage at once; task keys make the enqueue happen once and
    /// [`transition`] the end. Call it after the task's end is committed.
    ///
    /// # Errors
    /// The database's.
    pub async fn advance(&self, job_id: &JobId, stage: JobStage, now: i64) -> Result<Advanced> {
        let open: i64 = sqlx::query(self.sql(
            "SELECT COUNT(*) AS open FROM tasks
             WHERE job_id = $1 AND stage = $2 AND state NOT IN ('completed', 'discarded', 'cancelled')",
        ))
        .bind(job_id.as_str().to_owned())
        .bind(stage.as_str())
        .fetch_one(&self.pool)
        .await?
        .try_get("open")?;
        if open > 0 {
            return Ok(Advanced::Waiting);
        }
        let row = sqlx::query(self.sql(
            "SELECT state,
                    (SELECT COUNT(*) FROM job_inputs WHERE job_id = $1 AND state = 'ok') AS ok
             FROM jobs WHERE job_id = $1",
        ))
        .bind(job_id.as_str().to_owned())
        .fetch_one(&self.pool)
        .await?;
        let state = job_state(&row.try_get::<String, _>("state")?)?;
        if state != JobState::Running {
            return Ok(Advanced::Stopped);
        }
        match stage_after(stage) {
            Some(next) => {
                let mut tx = self.begin_write().await?;
                self.enqueue_stage(&mut tx, job_id, next, now).await?;
                sqlx::query(self.sql(
                    "UPDATE jobs SET stage = $1, updated_at = $2 WHERE job_id = $3 AND state = 'running'",
                ))
                .bind(next.as_str())
                .bind(now)
                .bind(job_id.as_str().to_owned())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                self.progress(job_id, next, 0.0, None, now).await?;
                Ok(Advanced::Next(next))
            }
            None => {
                let event = end_event(unsigned(&row, "ok")?);
                let error = (event == JobEvent::Fail).then_some("no input could be processed");
                Ok(match self.change_state(job_id, event, error, now).await? {
                    Ok(state) => Advanced::Ended(state),
                    Err(_) => Advanced::Stopped,
                })
            }
        }
    }

    /// Fails the job with `error` (a task discarded, or a lease lost on every attempt) and
    /// cancels its tasks that no worker holds.
    ///
    /// # Errors
    /// The database's.
    pub async fn fail_job(&self, job_id: &JobId, error: &str, now: i64) -> Result<()> {
        let _ = self
            .change_state(job_id, JobEvent::Fail, Some(error), now)
            .await?;
        self.cancel_open_tasks(job_id).await
    }

    /// Cancels the job (queued or running) and its tasks that no worker holds; a worker
    /// holding one finds the job cancelled when it ends and enqueues nothing after it.
    ///
    /// # Errors
    /// The database's.
    pub async fn cancel_job(
        &self,
        job_id: &JobId,
        now: i64,
    ) -> Result<Result<JobState, TransitionError>> {
        let changed = self
            .change_state(job_id, JobEvent::Cancel, None, now)
            .await?;
        if changed.is_ok() {
            self.cancel_open_tasks(job_id).await?;
        }
        Ok(changed)
    }

    async fn cancel_open_tasks(&self, job_id: &JobId) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE tasks SET state = 'cancelled' WHERE job_id = $1 AND state IN ('available', 'retryable')",
        ))
        .bind(job_id.as_str().to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Queues a failed or cancelled job again: its discarded and cancelled tasks get a fresh
    /// set of attempts; a job cancelled after its stage's last task ended, before the next
    /// stage was enqueued, gets the next stage's tasks.
    ///
    /// # Errors
    /// The database's.
    pub async fn retry_job(
        &self,
        job_id: &JobId,
        now: i64,
    ) -> Result<Result<JobState, TransitionError>> {
        let changed = self
            .change_state(job_id, JobEvent::Retry, None, now)
            .await?;
        if changed.is_err() {
            return Ok(changed);
        }
        sqlx::query(self.sql(
            "UPDATE tasks SET state = 'available', run_at = $1, max_attempts = attempt + $2
             WHERE job_id = $3 AND state IN ('discarded', 'cancelled')",
        ))
        .bind(now)
        .bind(i64::from(DEFAULT_MAX_ATTEMPTS))
        .bind(job_id.as_str().to_owned())
        .execute(&self.pool)
        .await?;
        let open: i64 = sqlx::query(self.sql(
            "SELECT COUNT(*) AS open FROM tasks
             WHERE job_id = $1 AND state NOT IN ('completed', 'discarded', 'cancelled')",
        ))
        .bind(job_id.as_str().to_owned())
        .fetch_one(&self.pool)
        .await?
        .try_get("open")?;
        let next = self.job_stage(job_id).await?.and_then(stage_after);
        if let (0, Some(next)) = (open, next) {
            let mut tx = self.begin_write().await?;
            self.enqueue_stage(&mut tx, job_id, next, now).await?;
            sqlx::query(self.sql("UPDATE jobs SET stage = $1 WHERE job_id = $2"))
                .bind(next.as_str())
                .bind(job_id.as_str().to_owned())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(changed)
    }

    /// The job's state alone (a worker asks before each task; [`Store::job`] would read
    /// every input too).
    ///
    /// # Errors
    /// The database's.
    pub async fn job_state(&self, job_id: &JobId) -> Result<Option<JobState>> {
        let state: Option<String> =
            sqlx::query(self.sql("SELECT state FROM jobs WHERE job_id = $1"))
                .bind(job_id.as_str().to_owned())
                .fetch_optional(&self.pool)
                .await?
                .map(|row| row.try_get("state"))
                .transpose()?;
        state.as_deref().map(job_state).transpose()
    }

    /// The job's recorded stage, if a worker has reached one.
    ///
    /// # Errors
    /// The database's.
    pub async fn job_stage(&self, job_id: &JobId) -> Result<Option<JobStage>> {
        let stage: Option<String> =
            sqlx::query(self.sql("SELECT stage FROM jobs WHERE job_id = $1"))
                .bind(job_id.as_str().to_owned())
                .fetch_optional(&self.pool)
                .await?
                .map(|row| row.try_get("stage"))
                .transpose()?
                .flatten();
        stage.as_deref().map(stage_of).transpose()
    }
}

fn job_of(row: &AnyRow, now: i64) -> Result<JobStatus> {
    let text = |c: &str| row.try_get::<String, _>(c);
    let job_id = text("job_id")?;
    let project = text("project")?;
    let stage: Option<String> = row.try_get("stage")?;
    let state = job_state(&text("state")?)?;
    let fraction: f64 = row.try_get("fraction")?;
    let started_at: Option<i64> = row.try_get("started_at")?;
    let eta_seconds = match (state, started_at) {
        (JobState::Running, Some(started)) => {
            remaining_seconds(fraction, u64::try_from(now - started).unwrap_or(0))
        }
        _ => None,
    };
    let results: JobResults = serde_json::from_str(&text("results")?).context("results in jobs")?;
    Ok(JobStatus {
        job_id: JobId::new(job_id.as_str()).map_err(|e| anyhow::anyhow!("{job_id:?}: {e}"))?,
        state,
        stage: stage.as_deref().map(stage_of).transpose()?,
        progress: Progress {
            done: 0,
            total: unsigned(row, "inputs_total")?,
            failed: 0,
            windows_done: unsigned(row, "windows_done")?,
            windows_total: unsigned(row, "windows_total")?,
            fraction,
            eta_seconds,
        },
        upload_id: row.try_get("upload_id")?,
        project: Project::new(project.as_str()).map_err(|e| anyhow::anyhow!("{project:?}: {e}"))?,
        created_at: unsigned(row, "created_at")? / 1000,
        inputs: Vec::new(),
        results,
        error: row.try_get("error")?,
    })
}

fn input_of(row: &AnyRow) -> Result<InputRecord> {
    let text = |c: &str| row.try_get::<String, _>(c);
    let image_id = text("image_id")?;
    let sha256 = text("sha256")?;
    let state = text("state")?;
    let kind: Option<String> = row.try_get("kind")?;
    Ok(InputRecord {
        index: u32::try_from(unsigned(row, "idx")?)?,
        input: JobInput {
            image_id: ImageId::new(image_id.as_str())
                .map_err(|e| anyhow::anyhow!("{image_id:?}: {e}"))?,
            original_key: text("original_key")?,
            metadata_key: text("metadata_key")?,
            media_type: text("media_type")?,
            sha256: Sha256Digest::from_hex(&sha256)
                .with_context(|| format!("sha256 {sha256:?} in job_inputs"))?,
        },
        state: InputState::parse(&state).with_context(|| format!("input state {state:?}"))?,
        kind: match kind.as_deref() {
            None => None,
            Some("raster") => Some(InputKind::Raster),
            Some("photo") => Some(InputKind::Photo),
            Some(other) => anyhow::bail!("input kind {other:?}"),
        },
        reason: row.try_get("reason")?,
    })
}
