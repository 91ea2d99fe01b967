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
use crate::search::QueryError;

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

/// The body of the batch backend's `POST /v1/jobs`, which the edge sends when an upload
/// completes or a client asks for a job ([`crate::job_inputs::CreateJob`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    /// The completed upload whose job this is (one job per upload); absent for a job a
    /// client asked for by image ids, upload ids or a search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// Its project.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub project: Project,
    /// One entry per image, in order.
    pub inputs: Vec<JobInput>,
    /// The job's own webhook endpoint ([`crate::job_inputs::CreateJob::webhook`]), made with
    /// the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<crate::webhook::CreateWebhook>,
}

impl JobRequest {
    /// The job of a completed upload: one input per manifest, from its original.
    #[must_use]
    pub fn for_upload(upload_id: &str, project: &Project, manifests: &[Manifest]) -> Self {
        Self {
            upload_id: Some(upload_id.to_owned()),
            ..Self::for_images(project, manifests)
        }
    }

    /// A job of recorded images, not tied to an upload: one input per manifest.
    #[must_use]
    pub fn for_images(project: &Project, manifests: &[Manifest]) -> Self {
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
            upload_id: None,
            webhook: None,
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

    /// Parses [`JobStage::as_str`]'s spelling.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|stage| stage.as_str() == name)
    }

    /// The stage after this one; `None` after the last.
    #[must_use]
    pub fn next(self) -> Option<Self> {
        Self::ALL.into_iter().find(|stage| *stage > self)
    }
}

/// How much of a job is done: counts of inputs and windows, and one stage-weighted
/// [`Progress::fraction`] that never goes back ([`stage_fraction`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Inputs finished (succeeded or failed).
    pub done: u64,
    /// Inputs in the job.
    pub total: u64,
    /// Of `done`, inputs that failed (each with its reason in [`JobStatus::inputs`]).
    #[serde(default)]
    pub failed: u64,
    /// Detection windows run so far.
    #[serde(default)]
    pub windows_done: u64,
    /// Detection windows known so far (0 before the detect stage starts).
    #[serde(default)]
    pub windows_total: u64,
    /// The whole job's progress, 0.0–1.0, weighted by stage ([`STAGE_WEIGHTS`]).
    #[serde(default)]
    pub fraction: f64,
    /// Estimated seconds to finish, from the rate measured since a worker first took the job
    /// ([`remaining_seconds`]); absent until something has been measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
}

/// Each running stage's share of a job's progress. Set from where the time goes on the
/// reference job (OSBS tiles, `BENCHMARKS.md`): detection dominates, stitching is GDAL's
/// warp and COG write, ingest is a hash per input, publish a few small PUTs. Sums to 1.
pub const STAGE_WEIGHTS: [(JobStage, f64); 4] = [
    (JobStage::Ingest, 0.15),
    (JobStage::Stitch, 0.25),
    (JobStage::Detect, 0.5),
    (JobStage::Publish, 0.1),
];

/// The job's fraction done when `stage` is `within` (0.0–1.0, clamped) done: the weights of
/// the stages before it plus its own share. A stage missing from [`STAGE_WEIGHTS`] (notify)
/// counts as the end.
#[must_use]
pub fn stage_fraction(stage: JobStage, within: f64) -> f64 {
    let within = if within.is_finite() {
        within.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut before = 0.0;
    for (s, weight) in STAGE_WEIGHTS {
        if s == stage {
            return (before + weight * within).min(1.0);
        }
        before += weight;
    }
    1.0
}

/// Seconds left at the rate measured so far: `elapsed × (1 − fraction) / fraction`, `None`
/// before 1 % is done (too little to extrapolate from). `elapsed_ms` is the time since a
/// worker first took the job.
#[must_use]
pub fn remaining_seconds(fraction: f64, elapsed_ms: u64) -> Option<u64> {
    if !(0.01..=1.0).contains(&fraction) {
        return None;
    }
    let left = elapsed_ms as f64 * (1.0 - fraction) / fraction / 1000.0;
    Some(left.ceil() as u64)
}

/// The stages a job's tasks run, in order; notify (webhooks) is not a task of its own.
pub const PIPELINE: [JobStage; 4] = [
    JobStage::Ingest,
    JobStage::Stitch,
    JobStage::Detect,
    JobStage::Publish,
];

/// The stage whose tasks are enqueued when every task of `stage` has ended; `None` after
/// publish, when the job ends.
#[must_use]
pub fn stage_after(stage: JobStage) -> Option<JobStage> {
    let at = PIPELINE.iter().position(|s| *s == stage)?;
    PIPELINE.get(at + 1).copied()
}

/// How many tasks (shards) `stage` has in a job of `inputs` inputs whose detection is
/// `detect_tasks` tasks (its mosaic's [`detect_shards`] and one per photo): ingest one per
/// input and detect one per shard or photo, so that many workers share a large job or one
/// large mosaic; the others one each (detect too when it has nothing to run).
#[must_use]
pub fn shards(stage: JobStage, inputs: usize, detect_tasks: u32) -> u32 {
    match stage {
        JobStage::Ingest => u32::try_from(inputs).unwrap_or(u32::MAX),
        JobStage::Detect => detect_tasks.max(1),
        _ => 1,
    }
}

/// Mosaic pixels per detect task by default: 64 Mpx is about 1,850 windows of 256 pixels
/// at the default overlap, about a minute of a 2-core CPU worker at the 28 windows/s of
/// BENCHMARKS.md, long enough that downloading the mosaic and loading the model stay a small
/// part of a task.
pub const DEFAULT_DETECT_SHARD_PIXELS: u64 = 64 * 1024 * 1024;

/// The most detect tasks one mosaic is split into.
pub const MAX_DETECT_SHARDS: u32 = 256;

/// How many detect tasks share a `width × height` mosaic: one per `shard_pixels` pixels,
/// rounded up, from 1 to [`MAX_DETECT_SHARDS`]. Each runs an equal part of the mosaic's
/// windows ([`crate::detect::Shard`]).
#[must_use]
pub fn detect_shards(width: usize, height: usize, shard_pixels: u64) -> u32 {
    let pixels = (width as u64).saturating_mul(height as u64);
    let count = pixels.div_ceil(shard_pixels.max(1));
    u32::try_from(count)
        .unwrap_or(u32::MAX)
        .clamp(1, MAX_DETECT_SHARDS)
}

/// How a job ends after its last stage: it succeeded when at least one input could be
/// processed (failed inputs are reported with it), and failed when none could.
#[must_use]
pub const fn end_event(inputs_ok: u64) -> JobEvent {
    if inputs_ok > 0 {
        JobEvent::Succeed
    } else {
        JobEvent::Fail
    }
}

/// What became of one input of a job.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputState {
    /// Not looked at yet.
    Pending,
    /// Verified and used.
    Ok,
    /// Left out, with its reason.
    Failed,
}

impl InputState {
    /// The name in the API and SQL.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }

    /// Parses [`InputState::as_str`]'s spelling.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Pending, Self::Ok, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// One input's outcome, as `GET /v1/jobs/{id}` lists it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputOutcome {
    /// The image.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub image_id: ImageId,
    /// The original's key.
    pub original_key: String,
    /// What became of it.
    pub state: InputState,
    /// Why it failed, naming the problem and the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One result object of a job: its key under `results/{job_id}/`, and a short-lived
/// presigned GET URL when the answer came through the edge.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultObject {
    /// The object's key.
    pub key: String,
    /// A presigned GET URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When `url` expires, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl ResultObject {
    /// The object at `key`, not yet presigned.
    #[must_use]
    pub fn at(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            url: None,
            expires_at: None,
        }
    }
}

/// What a job published under `results/{job_id}/` ([`crate::keys`]' layout); each is absent
/// until written, and a job without georeferenced inputs has no mosaic.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobResults {
    /// The mosaic, a Cloud-Optimized GeoTIFF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mosaic: Option<ResultObject>,
    /// The mosaic's preview PNG with the detections drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<ResultObject>,
    /// Detections as COCO JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coco: Option<ResultObject>,
    /// Detections as GeoJSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geojson: Option<ResultObject>,
    /// The STAC Item describing the mosaic and its assets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stac: Option<ResultObject>,
    /// Each photo's detections (photos are run one by one, upright, in their own pixels), in
    /// input order; their boxes are in the COCO JSON too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub photos: Vec<PhotoResult>,
}

/// The detections of one photo of a job.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoResult {
    /// The photo.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub image_id: ImageId,
    /// How many detections it has.
    pub detections: u64,
    /// The photo upright (EXIF orientation applied), reduced, with its detections drawn.
    pub preview: ResultObject,
}

impl JobResults {
    /// Each present result, mutable (to presign them).
    pub fn objects_mut(&mut self) -> impl Iterator<Item = &mut ResultObject> {
        [
            &mut self.mosaic,
            &mut self.preview,
            &mut self.coco,
            &mut self.geojson,
            &mut self.stac,
        ]
        .into_iter()
        .flatten()
        .chain(self.photos.iter_mut().map(|p| &mut p.preview))
    }
}

/// A job as `GET /v1/jobs/{id}` reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The upload that triggered it; absent for a job asked for by `POST /v1/jobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// Its project.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub project: Project,
    /// When it was recorded, Unix seconds.
    pub created_at: u64,
    /// Each input's outcome, in the request's order (left out of job lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputOutcome>,
    /// What it published so far.
    #[serde(default)]
    pub results: JobResults,
    /// Why a failed job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
                total: request.inputs.len() as u64,
                ..Progress::default()
            },
            upload_id: request.upload_id.clone(),
            project: request.project.clone(),
            created_at,
            inputs: request
                .inputs
                .iter()
                .map(|input| InputOutcome {
                    image_id: input.image_id.clone(),
                    original_key: input.original_key.clone(),
                    state: InputState::Pending,
                    reason: None,
                })
                .collect(),
            results: JobResults::default(),
            error: None,
        }
    }
}

/// `GET /v1/jobs`: jobs newest first, filtered by project and state, one page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQuery {
    /// Only this project's jobs.
    pub project: Option<Project>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Jobs per page, 1 to [`JobQuery::MAX_LIMIT`].
    pub limit: u32,
    /// Where the previous page ended.
    pub cursor: Option<JobCursor>,
}

impl JobQuery {
    /// Page size unless asked.
    pub const DEFAULT_LIMIT: u32 = 20;
    /// Largest page.
    pub const MAX_LIMIT: u32 = 100;
}

/// A keyset position in the job list, newest first: the last job of a page, by when it was
/// created (Unix ms) and its id (ties). Written `{created_at_ms}~{job_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCursor {
    /// When the last listed job was created, Unix milliseconds.
    pub created_at_ms: i64,
    /// Its id.
    pub job_id: JobId,
}

impl JobCursor {
    /// The written form's pattern (for the OpenAPI document).
    pub const PATTERN: &'static str = "^[0-9]{1,15}~[a-z0-9][a-z0-9-]{0,63}$";

    /// `{created_at_ms}~{job_id}`.
    #[must_use]
    pub fn encode(&self) -> String {
        format!("{}~{}", self.created_at_ms, self.job_id.as_str())
    }

    /// Parses [`JobCursor::encode`]'s form; `None` for anything else.
    #[must_use]
    pub fn decode(text: &str) -> Option<Self> {
        let (ms, id) = text.split_once('~')?;
        if ms.is_empty() || ms.len() > 15 || !ms.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            created_at_ms: ms.parse().ok()?,
            job_id: JobId::new(id).ok()?,
        })
    }
}

/// Parses decoded query pairs of `GET /v1/jobs` (`project`, `state`, `limit`, `cursor`).
///
/// # Errors
/// [`QueryError`] naming the parameter, the value and what is expected; nothing a client
/// sends reaches SQL as text.
pub fn parse_job_query<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Result<JobQuery, QueryError> {
    let mut query = JobQuery {
        project: None,
        state: None,
        limit: JobQuery::DEFAULT_LIMIT,
        cursor: None,
    };
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in pairs {
        let (name, value) = (name.as_ref(), value.as_ref());
        let invalid = |parameter, expected| QueryError::Invalid {
            parameter,
            value: value.to_owned(),
            expected,
        };
        if !seen.insert(name.to_owned()) {
            return Err(QueryError::Repeated(name.to_owned()));
        }
        match name {
            "project" => {
                query.project =
                    Some(Project::new(value).map_err(|_| invalid("project", "a project name"))?);
            }
            "state" => {
                query.state = Some(JobState::parse(value).ok_or_else(|| {
                    invalid("state", "queued, running, succeeded, failed or cancelled")
                })?);
            }
            "limit" => {
                query.limit = Some(value)
                    .filter(|v| {
                        !v.is_empty() && v.len() <= 3 && v.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|v| v.parse().ok())
                    .filter(|l| (1..=JobQuery::MAX_LIMIT).contains(l))
                    .ok_or_else(|| invalid("limit", "an integer 1 to 100"))?;
            }
            "cursor" => {
                query.cursor = Some(
                    JobCursor::decode(value)
                        .ok_or_else(|| invalid("cursor", "a cursor from a previous page"))?,
                );
            }
            other => {
                return Err(QueryError::Unknown(
                    other.to_owned(),
                    "project, state, limit, cursor",
                ));
            }
        }
    }
    Ok(query)
}

/// A page of `GET /v1/jobs`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPage {
    /// Jobs, newest first, without their per-input lists.
    pub jobs: Vec<JobStatus>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What a client may ask of a job: `POST /v1/jobs/{id}/cancel` or `…/retry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    /// Stop a queued or running job.
    Cancel,
    /// Queue a failed or cancelled job again; what had failed runs again.
    Retry,
}

impl JobAction {
    /// The path segment.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Retry => "retry",
        }
    }

    /// The [`JobEvent`] it applies.
    #[must_use]
    pub const fn event(self) -> JobEvent {
        match self {
            Self::Cancel => JobEvent::Cancel,
            Self::Retry => JobEvent::Retry,
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
    fn progress_is_weighted_by_stage_and_never_jumps_back_at_a_boundary() {
        let total: f64 = STAGE_WEIGHTS.iter().map(|(_, w)| w).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert!(stage_fraction(JobStage::Ingest, 0.0).abs() < 1e-12);
        assert!((stage_fraction(JobStage::Ingest, 0.5) - 0.075).abs() < 1e-12);
        // The end of a stage is the start of the next.
        for pair in PIPELINE.windows(2) {
            let end = stage_fraction(pair[0], 1.0);
            assert!(
                (end - stage_fraction(pair[1], 0.0)).abs() < 1e-12,
                "{pair:?}"
            );
        }
        assert!((stage_fraction(JobStage::Publish, 1.0) - 1.0).abs() < 1e-12);
        assert!((stage_fraction(JobStage::Detect, 7.0) - 0.9).abs() < 1e-12);
        assert!((stage_fraction(JobStage::Detect, f64::NAN) - 0.4).abs() < 1e-12);
        assert_eq!(stage_fraction(JobStage::Notify, 0.0), 1.0);
    }

    #[test]
    fn job_list_parameters_parse_into_types_and_refuse_the_rest() {
        let q = parse_job_query([
            ("project", "palms"),
            ("state", "running"),
            ("limit", "5"),
            ("cursor", "1780000000123~job-1"),
        ])
        .unwrap();
        assert_eq!(q.project.unwrap().as_str(), "palms");
        assert_eq!(q.state, Some(JobState::Running));
        assert_eq!(q.limit, 5);
        let cursor = q.cursor.unwrap();
        assert_eq!(cursor.created_at_ms, 1_780_000_000_123);
        assert_eq!(JobCursor::decode(&cursor.encode()), Some(cursor));
        let empty: [(&str, &str); 0] = [];
        assert_eq!(
            parse_job_query(empty).unwrap().limit,
            JobQuery::DEFAULT_LIMIT
        );
        for (name, value) in [
            ("state", "done"),
            ("limit", "0"),
            ("limit", "101"),
            ("limit", "+5"),
            ("project", "Bad_Name"),
            ("project", "x' OR '1'='1"),
            ("cursor", "1~Job"),
            ("cursor", "-1~job"),
            ("cursor", "1780000000123"),
            ("cursor", "9999999999999999~job"),
        ] {
            let e = parse_job_query([(name, value)]).unwrap_err();
            assert_eq!(
                e.code(),
                crate::error::ErrorCode::InvalidParameter,
                "{name}={value}"
            );
        }
        assert_eq!(
            parse_job_query([("sort", "x")]).unwrap_err().to_string(),
            "unknown parameter \"sort\"; use project, state, limit, cursor"
        );
        assert!(matches!(
            parse_job_query([("state", "queued"), ("state", "failed")]),
            Err(QueryError::Repeated(_))
        ));
    }

    #[test]
    fn the_estimate_extrapolates_the_measured_rate() {
        assert_eq!(remaining_seconds(0.005, 10_000), None);
        assert_eq!(remaining_seconds(0.25, 30_000), Some(90));
        assert_eq!(remaining_seconds(1.0, 30_000), Some(0));
        assert_eq!(remaining_seconds(f64::NAN, 30_000), None);
    }

    #[test]
    fn the_pipeline_runs_ingest_to_publish_with_one_ingest_task_per_input() {
        assert_eq!(stage_after(JobStage::Ingest), Some(JobStage::Stitch));
        assert_eq!(stage_after(JobStage::Detect), Some(JobStage::Publish));
        assert_eq!(stage_after(JobStage::Publish), None);
        assert_eq!(shards(JobStage::Ingest, 1000, 1), 1000);
        assert_eq!(shards(JobStage::Stitch, 1000, 1), 1);
        assert_eq!(shards(JobStage::Detect, 1000, 1006), 1006);
        assert_eq!(shards(JobStage::Detect, 1, 0), 1);
        assert_eq!(shards(JobStage::Publish, 1000, 6), 1);
    }

    #[test]
    fn a_mosaic_is_split_into_one_detect_task_per_shard_of_pixels() {
        let mpx = 1024 * 1024;
        assert_eq!(detect_shards(0, 0, mpx), 1);
        assert_eq!(detect_shards(1024, 1024, mpx), 1);
        assert_eq!(detect_shards(1025, 1024, mpx), 2);
        assert_eq!(detect_shards(8000, 8000, DEFAULT_DETECT_SHARD_PIXELS), 1);
        assert_eq!(
            detect_shards(20_000, 20_000, DEFAULT_DETECT_SHARD_PIXELS),
            6
        );
        assert_eq!(detect_shards(1 << 20, 1 << 20, 1), MAX_DETECT_SHARDS);
        assert_eq!(
            detect_shards(10, 10, 0),
            100,
            "no pixels per shard counts as one"
        );
    }
}
