//! The batch backend's task queue: what a task is, which state changes are allowed, how long a
//! lease lasts, when a failed task runs again, and when it is given up. After River's and Oban's
//! design (<https://riverqueue.com/docs/job-lifecycle>, <https://hexdocs.pm/oban>): a task is
//! `available` until a worker claims it, `running` under a lease that the worker renews by
//! heartbeat, then `completed`, or `retryable` with a time to run again, or `discarded` with its
//! last error once its attempts are spent (the dead-letter list, retryable by hand), or
//! `cancelled`.
//!
//! Stores (SQLite and Postgres) keep these rules and speak SQL; they change a task's state only
//! through [`TaskState::can_become`] and [`after_attempt`]. Everything here is pure: time and
//! randomness come in as arguments.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::job::JobStage;
use crate::keys::JobId;

/// Attempts before a task is discarded. River defaults to 25 and Oban to 20, spread over
/// weeks, for jobs that wait on other systems; a batch stage either succeeds again within
/// minutes (a worker was lost, storage hiccuped) or fails the same way every time (a file GDAL
/// cannot read), so five: retries after about 1 s, 16 s, 81 s and 256 s ([`backoff`]).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// How long a claim holds without a heartbeat. A worker renews it every [`HEARTBEAT`]; a lease
/// that runs out (the worker died, or lost the database) is returned to the queue by the
/// rescuer, and the task's attempt counts.
pub const LEASE: Duration = Duration::from_secs(60);

/// How often a running task's lease is renewed: a third of [`LEASE`], so two heartbeats may
/// be missed before another worker can claim the task.
pub const HEARTBEAT: Duration = Duration::from_secs(20);

/// A task's state (`snake_case` in the API and in SQL).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting to be claimed (from its `run_at` on).
    Available,
    /// Claimed by a worker whose lease has not run out.
    Running,
    /// Failed; runs again from its `run_at`.
    Retryable,
    /// Done; its outputs are written.
    Completed,
    /// Given up: its attempts are spent or its error will not change by retrying. Kept with
    /// its last error (the dead-letter list).
    Discarded,
    /// Cancelled with its job.
    Cancelled,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Available,
        Self::Running,
        Self::Retryable,
        Self::Completed,
        Self::Discarded,
        Self::Cancelled,
    ];

    /// The state's name in the API and in SQL.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Running => "running",
            Self::Retryable => "retryable",
            Self::Completed => "completed",
            Self::Discarded => "discarded",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more happens to the task unless a person retries it.
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Discarded | Self::Cancelled)
    }

    /// Whether a worker may claim the task (once its `run_at` has come).
    #[must_use]
    pub const fn is_claimable(self) -> bool {
        matches!(self, Self::Available | Self::Retryable)
    }

    /// The allowed changes: a claim (available or retryable → running); an attempt's end
    /// (running → completed, retryable or discarded, see [`after_attempt`]); a lease that ran
    /// out (running → retryable or discarded, the rescuer); cancelling anything not final;
    /// and retrying by hand what was discarded or cancelled (→ available).
    #[must_use]
    pub const fn can_become(self, to: Self) -> bool {
        use TaskState::{Available, Cancelled, Completed, Discarded, Retryable, Running};
        matches!(
            (self, to),
            (Available | Retryable, Running)
                | (Running, Completed | Retryable | Discarded)
                | (Available | Running | Retryable, Cancelled)
                | (Discarded | Cancelled, Available)
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task's identity: one stage of one job, on one shard of its work (a detect stage over a
/// large mosaic is split into shards of windows). Enqueuing the same key twice yields one task,
/// so a job resumed after a crash never runs a stage twice over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskKey {
    /// The job.
    pub job_id: JobId,
    /// The stage.
    pub stage: JobStage,
    /// The shard, 0 for a stage that is not split.
    pub shard: u32,
}

impl TaskKey {
    /// Parses [`TaskKey`]'s display, `{job_id}/{stage}/{shard}`; `None` for anything else.
    #[must_use]
    pub fn parse(key: &str) -> Option<Self> {
        let mut parts = key.rsplitn(3, '/');
        let shard = parts.next()?.parse().ok()?;
        let stage = JobStage::parse(parts.next()?)?;
        let job_id = JobId::new(parts.next()?).ok()?;
        Some(Self {
            job_id,
            stage,
            shard,
        })
    }
}

impl fmt::Display for TaskKey {
    /// `{job_id}/{stage}/{shard}`: the unique key stores index.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.job_id.as_str(),
            self.stage.as_str(),
            self.shard
        )
    }
}

/// The wait before a failed task's next attempt, after its `errors`-th failure (1 for the
/// first): `errors⁴` seconds, ±10 % jitter from `unit_random` in `[0, 1)` (River's
/// `DefaultClientRetryPolicy`: 1 s, 16 s, 81 s, 256 s, 625 s, …).
#[must_use]
pub fn backoff(errors: u32, unit_random: f64) -> Duration {
    let base = f64::from(errors.max(1)).powi(4);
    let jitter = base * (unit_random.clamp(0.0, 1.0) * 0.2 - 0.1);
    Duration::from_secs_f64(base + jitter)
}

/// How an attempt ended, as the worker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The stage finished and its outputs are written.
    Completed,
    /// The stage failed. `retryable` is the error type's verdict: storage or network trouble
    /// may pass, a file GDAL cannot read will not.
    Failed {
        /// What went wrong, kept on the task.
        error: String,
        /// Whether running it again could succeed.
        retryable: bool,
    },
    /// The lease ran out: the worker died or lost the database (the rescuer's verdict).
    LeaseExpired,
}

/// What becomes of a task after an attempt: its next state and, for `retryable`, the wait
/// before it may be claimed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    /// The task's new state.
    pub state: TaskState,
    /// For [`TaskState::Retryable`], how long from now until it may run.
    pub run_after: Option<Duration>,
}

/// The end of attempt number `attempt` (1 for the first claim) of a task allowed
/// `max_attempts`, with `errors` earlier failures: completed; retryable after [`backoff`] while
/// attempts remain and the failure may pass; else discarded. An expired lease counts as a
/// retryable failure.
#[must_use]
pub fn after_attempt(
    attempt: u32,
    max_attempts: u32,
    errors: u32,
    outcome: &Attempt,
    unit_random: f64,
) -> Next {
    let retryable = match outcome {
        Attempt::Completed => {
            return Next {
                state: TaskState::Completed,
                run_after: None,
            };
        }
        Attempt::Failed { retryable, .. } => *retryable,
        Attempt::LeaseExpired => true,
    };
    if retryable && attempt < max_attempts {
        Next {
            state: TaskState::Retryable,
            run_after: Some(backoff(errors + 1, unit_random)),
        }
    } else {
        Next {
            state: TaskState::Discarded,
            run_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_allows_claims_ends_rescues_cancels_and_manual_retries_only() {
        use TaskState::{Available, Cancelled, Completed, Discarded, Retryable, Running};
        let allowed: Vec<(TaskState, TaskState)> = TaskState::ALL
            .iter()
            .flat_map(|&a| TaskState::ALL.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| a.can_become(b))
            .collect();
        assert_eq!(
            allowed,
            [
                (Available, Running),
                (Available, Cancelled),
                (Running, Retryable),
                (Running, Completed),
                (Running, Discarded),
                (Running, Cancelled),
                (Retryable, Running),
                (Retryable, Cancelled),
                (Discarded, Available),
                (Cancelled, Available),
            ]
        );
        // Nothing leaves `completed`; final states are never claimed.
        assert!(TaskState::ALL.iter().all(|&s| !Completed.can_become(s)));
        assert!(
            TaskState::ALL
                .iter()
                .all(|&s| !(s.is_final() && s.is_claimable()))
        );
    }

    #[test]
    fn backoff_is_the_fourth_power_of_the_error_count_within_ten_percent() {
        let secs = |errors, r| backoff(errors, r).as_secs_f64();
        assert_eq!(secs(1, 0.5), 1.0);
        assert_eq!(secs(2, 0.5), 16.0);
        assert_eq!(secs(3, 0.5), 81.0);
        assert!((secs(4, 0.0) - 256.0 * 0.9).abs() < 1e-9);
        assert!((secs(4, 1.0) - 256.0 * 1.1).abs() < 1e-9);
        // Out-of-range randomness is clamped, and error counts start at 1.
        assert!((secs(0, 7.0) - 1.1).abs() < 1e-9);
    }

    #[test]
    fn failures_retry_while_attempts_remain_and_may_pass_then_are_discarded() {
        let failed = |retryable| Attempt::Failed {
            error: "storage timed out".into(),
            retryable,
        };
        assert_eq!(
            after_attempt(1, 5, 0, &Attempt::Completed, 0.5),
            Next {
                state: TaskState::Completed,
                run_after: None
            }
        );
        assert_eq!(
            after_attempt(2, 5, 1, &failed(true), 0.5),
            Next {
                state: TaskState::Retryable,
                run_after: Some(Duration::from_secs(16))
            }
        );
        assert_eq!(
            after_attempt(1, 5, 0, &Attempt::LeaseExpired, 0.5).state,
            TaskState::Retryable
        );
        assert_eq!(
            after_attempt(5, 5, 4, &failed(true), 0.5).state,
            TaskState::Discarded
        );
        assert_eq!(
            after_attempt(1, 5, 0, &failed(false), 0.5).state,
            TaskState::Discarded
        );
        // Leases outlive two missed heartbeats.
        assert!(LEASE > HEARTBEAT * 2);
    }

    #[test]
    fn task_keys_name_job_stage_and_shard() {
        let key = TaskKey {
            job_id: JobId::new("0190b6c4-1a2b-7c3d-8e4f-001122334455").unwrap(),
            stage: JobStage::Detect,
            shard: 3,
        };
        assert_eq!(
            key.to_string(),
            "0190b6c4-1a2b-7c3d-8e4f-001122334455/detect/3"
        );
        assert_eq!(
            serde_json::to_string(&TaskState::Retryable).unwrap(),
            "\"retryable\""
        );
    }

    #[test]
    fn task_keys_read_back_what_they_display() {
        let key = TaskKey {
            job_id: JobId::new("job-1").unwrap(),
            stage: JobStage::Ingest,
            shard: 41,
        };
        assert_eq!(key.to_string(), "job-1/ingest/41");
        assert_eq!(TaskKey::parse("job-1/ingest/41"), Some(key));
        for bad in [
            "job-1/ingest",
            "job-1/weave/0",
            "job-1/ingest/-1",
            "/ingest/0",
            "a/b/ingest/0",
        ] {
            assert_eq!(TaskKey::parse(bad), None, "{bad}");
        }
    }
}
