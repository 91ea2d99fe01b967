//! Workers: claim a task → run it ([`Pipeline::run`]) while renewing its lease → record how
//! it ended → move the job on. The same loop runs in `tessera worker` (any number of
//! processes on one Postgres) and inside `tessera up` (on SQLite).
//!
//! - A claim is a lease ([`Store::lease`]); a heartbeat every third of it renews it. A worker
//!   that loses its lease (it stalled, or the database was unreachable) drops the task's
//!   result: another worker has it.
//! - Every worker also rescues: expired leases return to the queue, so a worker killed with
//!   `kill -9` loses nothing but time.
//! - Stopping (SIGTERM, Ctrl-C): no new claims; tasks in hand run to their end and are
//!   recorded, then the workers return.
//! - A task whose attempts are spent is discarded with its last error, and fails its job.
//! - Each process also delivers webhooks from the outbox ([`crate::webhook`]).

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use tessera_core::job::JobEvent;
use tessera_core::queue::{Attempt, TaskKey, TaskState};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::inference::Detector;
use crate::metrics::metrics;
use crate::store::{Claimed, Store};
use crate::tasks::{Pipeline, TaskProgress, now_ms};
use crate::webhook::DeliveryOptions;

/// How often a job's progress is written while a task runs.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How a set of workers runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Prefix of the workers' names (`{name}-{n}`), recorded with each claim; make it unique
    /// per process (host and pid).
    pub name: String,
    /// Workers in this process.
    pub workers: usize,
    /// Wait between claims when the queue is empty.
    pub poll: Duration,
    /// How this process delivers webhooks ([`crate::webhook::run`], beside the workers).
    pub webhooks: DeliveryOptions,
}

impl WorkerOptions {
    /// `workers` workers named after this host and process, polling every 250 ms.
    #[must_use]
    pub fn new(workers: usize) -> Self {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "worker".to_owned());
        Self {
            name: format!("{host}-{}", std::process::id()),
            workers,
            poll: Duration::from_millis(250),
            webhooks: DeliveryOptions::default(),
        }
    }
}

/// Runs `options.workers` workers over `pipeline`, and the process's webhook deliveries,
/// until `stop` resolves, then lets the tasks and deliveries in hand finish and returns.
///
/// A task's failure is recorded on the task; the store's errors are logged and the claim is
/// tried again after a poll interval.
pub async fn run(pipeline: Pipeline, options: WorkerOptions, stop: impl Future<Output = ()>) {
    let (stopping, stopped) = watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..options.workers {
        let (pipeline, stopped, poll) = (pipeline.clone(), stopped.clone(), options.poll);
        let name = format!("{}-{n}", options.name);
        workers.spawn(async move { work(&pipeline, &name, poll, stopped).await });
    }
    workers.spawn(crate::webhook::run(
        pipeline.store.clone(),
        options.name.clone(),
        options.webhooks.clone(),
        stopped,
    ));
    stop.await;
    tracing::info!("stopping: tasks in hand run to their end");
    let _ = stopping.send(true);
    while workers.join_next().await.is_some() {}
}

async fn work(pipeline: &Pipeline, name: &str, poll: Duration, mut stopped: watch::Receiver<bool>) {
    let mut detector: Option<Detector> = None;
    let mut last_rescue = 0;
    while !*stopped.borrow() {
        let now = now_ms();
        let rescue_every = i64::try_from(pipeline.store.lease().as_millis() / 4).unwrap_or(1000);
        if now - last_rescue >= rescue_every {
            last_rescue = now;
            if let Err(e) = rescue(&pipeline.store, now).await {
                tracing::warn!(error = %format!("{e:#}"), "rescuing expired leases");
            }
        }
        let claimed = match pipeline.store.claim(name, now).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "claiming a task");
                None
            }
        };
        match claimed {
            Some(task) => {
                if let Err(e) = run_task(pipeline, name, &task, &mut detector).await {
                    tracing::warn!(task = %task.key, error = %format!("{e:#}"), "recording a task");
                }
            }
            None => {
                tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    _ = stopped.changed() => {}
                }
            }
        }
    }
}

/// Returns expired leases to the queue, failing the jobs of tasks discarded by it.
async fn rescue(store: &Store, now: i64) -> Result<()> {
    for (key, state) in store.rescue(now, rand_unit()).await? {
        tracing::warn!(task = %key, state = %state, "a lease expired");
        if state == TaskState::Discarded
            && let Some(key) = TaskKey::parse(&key)
        {
            let error = format!("{key} lost its worker on every attempt");
            store.fail_job(&key.job_id, &error, now).await?;
        }
    }
    Ok(())
}

async fn run_task(
    pipeline: &Pipeline,
    worker: &str,
    task: &Claimed,
    detector: &mut Option<Detector>,
) -> Result<()> {
    let store = &pipeline.store;
    let Some(key) = TaskKey::parse(&task.key) else {
        let outcome = Attempt::Failed {
            error: format!("{:?} is not a task key", task.key),
            retryable: false,
        };
        store
            .finish(task, worker, &outcome, now_ms(), rand_unit())
            .await?;
        return Ok(());
    };
    let span = tracing::info_span!("task", task = %task.key, attempt = task.attempt);
    run_claimed(pipeline, worker, task, &key, detector)
        .instrument(span)
        .await
}

/// Runs the claimed `task` (its key parsed) to its recorded end, moving its job on.
async fn run_claimed(
    pipeline: &Pipeline,
    worker: &str,
    task: &Claimed,
    key: &TaskKey,
    detector: &mut Option<Detector>,
) -> Result<()> {
    let store = &pipeline.store;
    // The job's first claim starts it; a job that was cancelled or has failed runs nothing.
    let _ = store
        .change_state(&key.job_id, JobEvent::Claim, None, now_ms())
        .await?;
    let running = store.job_state(&key.job_id).await? == Some(tessera_core::job::JobState::Running);
    let started = std::time::Instant::now();
    let outcome = if running {
        match run_leased(pipeline, worker, task, key, detector).await? {
            Some((outcome, windows)) => {
                let label = match outcome {
                    Attempt::Completed => "completed",
                    _ => "failed",
                };
                metrics().task(key.stage.as_str(), label, started.elapsed(), windows);
                outcome
            }
            None => {
                tracing::warn!("the lease was lost; another worker has the task");
                return Ok(());
            }
        }
    } else {
        Attempt::Failed {
            error: "the job was cancelled or has ended".to_owned(),
            retryable: false,
        }
    };
    let error = match &outcome {
        Attempt::Failed { error, .. } => Some(error.clone()),
        _ => None,
    };
    let now = now_ms();
    match store
        .finish(task, worker, &outcome, now, rand_unit())
        .await?
    {
        Some(TaskState::Completed) => {
            tracing::info!("done");
            store.advance(&key.job_id, key.stage, now).await?;
        }
        Some(TaskState::Discarded) if running => {
            let error = error.unwrap_or_default();
            tracing::error!(error = %error, "failed for good");
            store
                .fail_job(&key.job_id, &format!("{key}: {error}"), now)
                .await?;
        }
        Some(state) => tracing::warn!(state = %state, error = ?error, "attempt failed"),
        None => tracing::warn!("the lease was lost before the end was recorded"),
    }
    Ok(())
}

/// Runs the task while renewing its lease and writing its progress: how it ended, and the
/// detector windows it ran. `None` when the lease was lost (the task's result is dropped).
async fn run_leased(
    pipeline: &Pipeline,
    worker: &str,
    task: &Claimed,
    key: &TaskKey,
    detector: &mut Option<Detector>,
) -> Result<Option<(Attempt, u64)>> {
    let store = &pipeline.store;
    let (progress, mut reported) = watch::channel(TaskProgress::default());
    let work = pipeline.run(key, detector, &progress);
    tokio::pin!(work);
    let mut heartbeat = tokio::time::interval(store.lease() / 3);
    heartbeat.tick().await;
    let mut report = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tokio::select! {
            result = &mut work => {
                // The last progress, which the next tick would have written.
                if reported.has_changed().unwrap_or(false) {
                    let p = *reported.borrow_and_update();
                    store.task_progress(key, p.within, p.windows, now_ms()).await?;
                }
                let windows = reported.borrow().windows.map_or(0, |(done, _)| done);
                let outcome = match result {
                    Ok(()) => Attempt::Completed,
                    Err(e) => Attempt::Failed { error: e.message, retryable: e.retryable },
                };
                return Ok(Some((outcome, windows)));
            }
            _ = heartbeat.tick() => {
                if !store.heartbeat(task, worker, now_ms()).await? {
                    return Ok(None);
                }
            }
            _ = report.tick() => {
                if reported.has_changed().unwrap_or(false) {
                    let p = *reported.borrow_and_update();
                    store.task_progress(key, p.within, p.windows, now_ms()).await?;
                }
            }
        }
    }
}

/// A uniform number in [0, 1) for the backoff's jitter, from the standard library's
/// randomly keyed hasher (no generator needed for ±10 %).
/// A uniform draw from `[0, 1)` for jitter (not for secrets).
pub(crate) fn rand_unit() -> f64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i64(now_ms());
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}
