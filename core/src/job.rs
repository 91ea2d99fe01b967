//! The batch job contract, shared by the edge (which triggers and reads jobs), the batch
//! backend (which stores and runs them) and the page (which shows them).
//!
//! - [`JobRequest`]: what the edge sends when an upload completes: the upload, its project,
//!   and per input the image id, the original's and the sidecar's keys, the original's media
//!   type and SHA-256 ([`JobRequest::for_upload`] builds it from the recorded manifests).
//! - [`JobStatus`]: what `GET /v1/jobs/{id}` answers: the [`JobState`], the [`JobStage`] a
//!   running job is in, and [`Progress`] in inputs.
//! - [`transition`]: the one function that decides which state changes are allowed; stores
//!   change a job's state only through it.
//!
//! States and stages serialise in `snake_case`, the spelling of the API, SQL and the page.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Sha256Digest;
use crate::keys::{ImageId, JobId, Project};
use crate::manifest::Manifest;

/// One input of a job: an uploaded original and its metadata sidecar.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInput {
    /// The image.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub image_id: ImageId,
    /// The original's key, under `original-uploads/`.
    pub original_key: String,
    /// The sidecar's key, `metadata/{project}/{image_id}.json`.
    pub metadata_key: String,
    /// The original's media type: `image/jpeg`, `image/png` or `image/tiff`.
    pub media_type: String,
    /// The original's SHA-256, as verified by the edge when the upload completed.
    pub sha256: Sha256Digest,
}

/// The body of `POST /v1/jobs` that the edge sends when an upload completes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    /// The completed upload.
    pub upload_id: String,
    /// Its project.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub project: Project,
    /// One entry per image, in the upload's order.
    pub inputs: Vec<JobInput>,
}

impl JobRequest {
    /// The job of a completed upload: one input per manifest, from its original.
    #[must_use]
    pub fn for_upload(upload_id: &str, project: &Project, manifests: &[Manifest]) -> Self {
        let inputs = manifests
            .iter()
            .map(|manifest| {
                let original = manifest.original();
                JobInput {
                    image_id: manifest.image_id.clone(),
                    original_key: original.key.clone(),
                    metadata_key: manifest.metadata_key.clone(),
                    media_type: original.content_type.clone(),
                    sha256: original.sha256.clone(),
                }
            })
            .collect();
        Self {
            upload_id: upload_id.to_owned(),
            project: project.clone(),
            inputs,
        }
    }
}

/// Where a job is in its life. `queued` → `running` → `succeeded` or `failed`; `cancelled` on
/// request; a failed or cancelled job can be queued again.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker holds it.
    Running,
    /// Every stage finished.
    Succeeded,
    /// A stage failed for good.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The `snake_case` name used by the API and SQL.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses [`JobState::as_str`]'s spelling.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// Whether no worker will touch the job again unless it is retried.
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pipeline's stages, in the order a job runs them (ARCHITECTURE.md, "The flow").
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStage {
    /// Verify what arrived and re-derive what is missing.
    Ingest,
    /// Mosaic the GeoTIFFs into a Cloud-Optimized GeoTIFF.
    Stitch,
    /// Run the crown detector over the mosaic.
    Detect,
    /// Write COCO JSON, GeoJSON and the STAC Item under `results/{job_id}/`.
    Publish,
    /// Send the webhooks.
    Notify,
}

impl JobStage {
    /// Every stage, in running order.
    pub const ALL: [Self; 5] = [
        Self::Ingest,
        Self::Stitch,
        Self::Detect,
        Self::Publish,
        Self::Notify,
    ];

    /// The stage's name in the API and in SQL.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Stitch => "stitch",
            Self::Detect => "detect",
            Self::Publish => "publish",
            Self::Notify => "notify",
        }
    }

    /// The stage after this one; `None` after the last.
    #[must_use]
    pub fn next(self) -> Option<Self> {
        Self::ALL.into_iter().find(|stage| *stage > self)
    }
}

/// How much of a job is done, counted in inputs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Inputs finished (succeeded or failed).
    pub done: u64,
    /// Inputs in the job.
    pub total: u64,
}

impl Progress {
    /// `done / total` in `[0, 1]`; 1 for a job with no inputs.
    #[must_use]
    pub fn fraction(self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            (self.done.min(self.total) as f64) / (self.total as f64)
        }
    }
}

/// A job as `GET /v1/jobs/{id}` reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job's id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub job_id: JobId,
    /// Where it is in its life.
    pub state: JobState,
    /// The stage a running job is in; absent before a worker first takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<JobStage>,
    /// Inputs done out of inputs in the job.
    pub progress: Progress,
    /// The upload that triggered it.
    pub upload_id: String,
    /// Its project.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub project: Project,
    /// When it was recorded, Unix seconds.
    pub created_at: u64,
}

impl JobStatus {
    /// A job just recorded for `request`: queued, no stage, none of its inputs done.
    #[must_use]
    pub fn queued(job_id: JobId, request: &JobRequest, created_at: u64) -> Self {
        Self {
            job_id,
            state: JobState::Queued,
            stage: None,
            progress: Progress {
                done: 0,
                total: request.inputs.len() as u64,
            },
            upload_id: request.upload_id.clone(),
            project: request.project.clone(),
            created_at,
        }
    }
}

/// What happens to a job; [`transition`] says which state it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobEvent {
    /// A worker claims a queued job.
    Claim,
    /// The worker's claim lapsed or it gave the job back for a retry: queued again.
    Release,
    /// The last stage finished.
    Succeed,
    /// A stage failed with an error a retry cannot help.
    Fail,
    /// Someone asked to stop it.
    Cancel,
    /// Someone asked to run a failed or cancelled job again.
    Retry,
}

impl fmt::Display for JobEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Claim => "claim",
            Self::Release => "release",
            Self::Succeed => "succeed",
            Self::Fail => "fail",
            Self::Cancel => "cancel",
            Self::Retry => "retry",
        })
    }
}

/// A state change [`transition`] does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} job cannot {event}")]
pub struct TransitionError {
    /// The job's state.
    pub from: JobState,
    /// What was attempted.
    pub event: JobEvent,
}

/// The job's state after `event`, the only place that decides which changes are allowed:
///
/// | from | event | to |
/// |---|---|---|
/// | queued | claim | running |
/// | running | release | queued |
/// | running | succeed | succeeded |
/// | running | fail | failed |
/// | queued, running | cancel | cancelled |
/// | failed, cancelled | retry | queued |
///
/// # Errors
/// [`TransitionError`] for every other pair; a succeeded job never changes again.
pub const fn transition(from: JobState, event: JobEvent) -> Result<JobState, TransitionError> {
    use JobEvent as E;
    use JobState as S;
    match (from, event) {
        (S::Queued, E::Claim) => Ok(S::Running),
        (S::Running, E::Release) | (S::Failed | S::Cancelled, E::Retry) => Ok(S::Queued),
        (S::Running, E::Succeed) => Ok(S::Succeeded),
        (S::Running, E::Fail) => Ok(S::Failed),
        (S::Queued | S::Running, E::Cancel) => Ok(S::Cancelled),
        _ => Err(TransitionError { from, event }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_the_table_and_nothing_else() {
        use JobEvent as E;
        use JobState as S;
        let allowed = [
            (S::Queued, E::Claim, S::Running),
            (S::Running, E::Release, S::Queued),
            (S::Running, E::Succeed, S::Succeeded),
            (S::Running, E::Fail, S::Failed),
            (S::Queued, E::Cancel, S::Cancelled),
            (S::Running, E::Cancel, S::Cancelled),
            (S::Failed, E::Retry, S::Queued),
            (S::Cancelled, E::Retry, S::Queued),
        ];
        let events = [
            E::Claim,
            E::Release,
            E::Succeed,
            E::Fail,
            E::Cancel,
            E::Retry,
        ];
        for from in S::ALL {
            for event in events {
                let expected = allowed
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match (transition(from, event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} + {event}"),
                    (Err(e), None) => assert_eq!(e, TransitionError { from, event }),
                    (got, want) => panic!("{from} + {event}: {got:?}, expected {want:?}"),
                }
            }
        }
        assert_eq!(
            transition(S::Succeeded, E::Retry).unwrap_err().to_string(),
            "a succeeded job cannot retry"
        );
    }

    #[test]
    fn states_and_stages_are_snake_case_on_the_wire() {
        for state in JobState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(JobState::parse(state.as_str()), Some(state));
        }
        assert_eq!(JobState::parse("done"), None);
        assert_eq!(
            serde_json::to_string(&JobStage::Ingest).unwrap(),
            "\"ingest\""
        );
        assert_eq!(JobStage::Ingest.next(), Some(JobStage::Stitch));
        assert_eq!(JobStage::Notify.next(), None);
        assert!(JobState::Cancelled.is_terminal() && !JobState::Running.is_terminal());
    }

    #[test]
    fn progress_is_a_fraction_of_the_inputs() {
        assert!((Progress { done: 1, total: 4 }.fraction() - 0.25).abs() < 1e-12);
        assert!((Progress { done: 9, total: 4 }.fraction() - 1.0).abs() < 1e-12);
        assert!((Progress::default().fraction() - 1.0).abs() < 1e-12);
    }
}
