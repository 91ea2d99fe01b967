//! Originals that arrive by another route than the edge: a file put into
//! `original-uploads/{project}/…` by any S3 client gets what a browser upload gets, from the
//! same tessera-core code, here on the server: checked (type, size, pixels), oriented,
//! letterboxed, rotated, encoded and hashed ([`tessera_core::preprocess()`]); derivatives and
//! sidecar written under the usual keys (the original stays at its key); recorded in the
//! edge's metadata store as a one-image upload; its job created.
//!
//! How they are noticed ([`Arrivals::notice`]): a storage event notification
//! ([`tessera_core::arrival::parse_notifications`]) posted to the service API's
//! `POST /v1/events/s3` ([`Arrivals::answer`]); the local storage of `tessera up`, after every
//! write of an original; and [`Arrivals::reconcile`], which lists the prefix and catches what
//! no event announced.
//!
//! Idempotent: the ids come from the project and the bytes' SHA-256
//! ([`ArrivalIds`]), the objects' keys and bodies from them, and the job store makes one job
//! per upload id; the ledger ([`Store::arrival_version`]) remembers which version of each key
//! was settled, so a key noticed again is not even downloaded. A refused file is recorded with
//! its reason and announced once by `upload.failed`; it never holds up another.

use std::time::SystemTime;

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use tessera_core::arrival::{
    ArrivalIds, ArrivalKey, NotificationError, ORIGINALS_PREFIX, RECORD_EXPIRES_IN, classify,
    failure_id, object_version, parse_notifications,
};
use tessera_core::error::ErrorCode;
use tessera_core::job::JobRequest;
use tessera_core::keys::{JobId, Project};
use tessera_core::limits::Limits;
use tessera_core::manifest::{Manifest, ObjectKind, Sha256Digest};
use tessera_core::preprocess::{Options, PreprocessError, preprocess};
use tessera_core::webhook::UploadFailedEvent;

use crate::objects::{ObjectError, ObjectInfo, Objects};
use crate::store::{SettledArrival, Store};
use crate::tasks::now_ms;

/// Everything an arrival touches: the job store (ledger, jobs, webhooks), the bucket, and the
/// edge's metadata store `M` (SQLite in `tessera up`, the native edge's database for
/// `tessera worker`).
#[derive(Debug)]
pub struct Arrivals<M> {
    /// The job store.
    pub jobs: Store,
    /// The bucket.
    pub objects: Objects,
    /// The edge's metadata store, where the image is recorded.
    pub metadata: M,
    /// What an original may be: the browser's limits ([`Limits::DEFAULT`]).
    pub limits: Limits,
}

/// What came of one noticed object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Processed: the image recorded, its job created.
    Recorded {
        /// The image.
        image_id: String,
        /// Its job.
        job_id: String,
    },
    /// This version of the key was settled before, or the same bytes are already recorded
    /// in the project under another key: nothing done.
    AlreadySeen,
    /// Refused, recorded and announced (`upload.failed`).
    Refused {
        /// The stable code.
        code: ErrorCode,
        /// Why, naming the limit.
        reason: String,
    },
    /// Not an arrival: outside `original-uploads/{project}/`, part of an upload planned at the
    /// edge, gone, or in a folder that is not a project.
    Ignored {
        /// Why.
        reason: String,
    },
}

/// What one reconciliation found, for its log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reconciled {
    /// Objects listed under `original-uploads/`.
    pub listed: u64,
    /// Arrivals recorded now (their events had not come).
    pub recorded: u64,
    /// Arrivals refused now.
    pub refused: u64,
}

impl<M: tessera_edge::Store> Arrivals<M> {
    /// Looks at the object `key` that storage says was created: a HEAD for its version, then
    /// [`Arrivals::settle`].
    ///
    /// # Errors
    /// Storage, the job store or the metadata store failed: noticing it again may succeed.
    pub async fn notice(&self, key: &str) -> anyhow::Result<Outcome> {
        if let Err(ignored) = arrival_of(key) {
            return Ok(ignored);
        }
        match self.objects.head(key).await {
            Ok(info) => self.settle(&info).await,
            Err(ObjectError::NotFound { .. }) => Ok(Outcome::Ignored {
                reason: "no longer in storage".into(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Lists `original-uploads/` and settles every arrival whose current version was not
    /// settled: the events that never came.
    ///
    /// # Errors
    /// Listing failed, or settling one object did (those before it are settled).
    pub async fn reconcile(&self) -> anyhow::Result<Reconciled> {
        let mut report = Reconciled::default();
        let mut listing = std::pin::pin!(self.objects.list(ORIGINALS_PREFIX));
        while let Some(info) = listing.try_next().await? {
            report.listed += 1;
            if arrival_of(&info.key).is_err() {
                continue;
            }
            // A listing without ETags (s3s-fs): HEAD for the version an event's notice sees.
            let info = match info.etag {
                Some(_) => info,
                None => match self.objects.head(&info.key).await {
                    Ok(head) => head,
                    Err(ObjectError::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                },
            };
            match self.settle(&info).await? {
                Outcome::Recorded { .. } => report.recorded += 1,
                Outcome::Refused { .. } => report.refused += 1,
                Outcome::AlreadySeen | Outcome::Ignored { .. } => {}
            }
        }
        Ok(report)
    }

    /// Processes the arrival `info` unless its version was settled: download, preprocess,
    /// write derivatives and sidecar, record, create its job; or refuse it.
    ///
    /// # Errors
    /// As [`Arrivals::notice`].
    pub async fn settle(&self, info: &ObjectInfo) -> anyhow::Result<Outcome> {
        let (project, file_name) = match arrival_of(&info.key) {
            Ok(arrival) => arrival,
            Err(ignored) => return Ok(ignored),
        };
        let version = object_version(info.etag.as_deref(), info.size_bytes);
        if self.jobs.arrival_version(&info.key).await?.as_deref() == Some(version.as_str()) {
            tracing::debug!(key = info.key, version, "arrival settled before");
            return Ok(Outcome::AlreadySeen);
        }
        let arrival = Arrival {
            info,
            project: &project,
            file_name: &file_name,
            version,
        };
        if let Err(refused) = self.limits.check_size(info.size_bytes) {
            return self.refuse(&arrival, &refused).await;
        }
        let bytes = self.objects.get(&info.key).await?;
        let sha256 = Sha256Digest::of(&bytes);
        let ids = ArrivalIds::of(&project, &sha256);
        if let Some(row) = self.metadata.upload(&ids.upload_id).await?
            && row.completed
            && let Some(job_id) = row.job_id
        {
            // The same bytes, recorded from another key or before the ledger was written.
            self.record(&arrival, &ids, &JobId::new(job_id)?).await?;
            tracing::info!(
                key = info.key,
                image_id = ids.image_id.as_str(),
                "arrival already recorded (the same bytes)"
            );
            return Ok(Outcome::AlreadySeen);
        }
        let mut options = Options::new(
            project.clone(),
            file_name.clone(),
            info.last_modified.date_naive(),
        );
        options.limits = self.limits;
        options.image_id = Some(ids.image_id.clone());
        let derived = tokio::task::spawn_blocking(move || preprocess(&bytes, &options))
            .await
            .context("the preprocessing thread")?;
        let mut derived = match derived {
            Ok(derived) => derived,
            Err(refused) => return self.refuse(&arrival, &refused).await,
        };
        // The original stays where its client put it; the manifest says where that is.
        if let Some(original) = derived
            .manifest
            .objects
            .iter_mut()
            .find(|o| o.kind == ObjectKind::Original)
        {
            original.key.clone_from(&info.key);
        }
        for (object, body) in derived.derivatives() {
            self.objects
                .put_typed(&object.key, body.to_vec(), &object.content_type)
                .await?;
        }
        let manifest = derived.manifest;
        let sidecar = serde_json::to_vec_pretty(&manifest).context("a manifest")?;
        self.objects
            .put_typed(&manifest.metadata_key, sidecar, "application/json")
            .await?;

        record_image(&self.metadata, &ids.upload_id, &manifest).await?;
        let request = JobRequest::for_upload(&ids.upload_id, &project, &[manifest]);
        let job_id = JobId::new(uuid::Uuid::new_v4().to_string())?;
        // One job per upload id: a second notice gets the first's.
        let (job, _created) = self.jobs.create_job(&job_id, &request, now_ms()).await?;
        self.metadata
            .set_job(&ids.upload_id, job.job_id.as_str())
            .await?;
        self.record(&arrival, &ids, &job.job_id).await?;
        tracing::info!(
            key = info.key,
            project = project.as_str(),
            image_id = ids.image_id.as_str(),
            job_id = job.job_id.as_str(),
            "arrival recorded"
        );
        Ok(Outcome::Recorded {
            image_id: ids.image_id.to_string(),
            job_id: job.job_id.to_string(),
        })
    }

    async fn record(
        &self,
        arrival: &Arrival<'_>,
        ids: &ArrivalIds,
        job_id: &JobId,
    ) -> anyhow::Result<()> {
        let settled = SettledArrival {
            key: arrival.info.key.clone(),
            version: arrival.version.clone(),
            project: arrival.project.to_string(),
            image_id: Some(ids.image_id.to_string()),
            upload_id: ids.upload_id.clone(),
            job_id: Some(job_id.to_string()),
            reason: None,
        };
        self.jobs.arrival_recorded(&settled, now_ms()).await
    }

    async fn refuse(
        &self,
        arrival: &Arrival<'_>,
        refused: &PreprocessError,
    ) -> anyhow::Result<Outcome> {
        let key = &arrival.info.key;
        let reason = format!("{key}: {refused}");
        let failed = UploadFailedEvent {
            upload_id: failure_id(key, &arrival.version),
            project: arrival.project.to_string(),
            key: key.clone(),
            file_name: arrival.file_name.to_owned(),
            size_bytes: arrival.info.size_bytes,
            code: refused.code(),
            reason: reason.clone(),
        };
        let settled = SettledArrival {
            key: key.clone(),
            version: arrival.version.clone(),
            project: arrival.project.to_string(),
            image_id: None,
            upload_id: failed.upload_id.clone(),
            job_id: None,
            reason: Some(reason.clone()),
        };
        self.jobs
            .arrival_refused(&settled, &failed, now_ms())
            .await?;
        tracing::warn!(
            key,
            project = arrival.project.as_str(),
            reason,
            "arrival refused"
        );
        Ok(Outcome::Refused {
            code: refused.code(),
            reason,
        })
    }

    /// `POST /v1/events/s3` of the service API: `body` is one or more storage event
    /// notifications ([`parse_notifications`]); every object they name is noticed in turn.
    /// 200 with `{"objects": [{"key", "outcome", …}]}` once all are settled (refusals
    /// included: they are the sender's files' fault, not the delivery's); 400 for a body of no
    /// known format; 503 when storage or a database failed, so that the queue delivers the
    /// message again (what was settled stays settled).
    pub async fn answer(&self, body: &[u8]) -> (StatusCode, Value) {
        let objects = match parse_notifications(body) {
            Ok(objects) => objects,
            Err(e) => {
                let code = match e {
                    NotificationError::InvalidJson(_) => ErrorCode::InvalidJson,
                    _ => ErrorCode::InvalidParameter,
                };
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"code": code, "message": e.to_string()}),
                );
            }
        };
        let mut settled = Vec::with_capacity(objects.len());
        for object in objects {
            match self.notice(&object.key).await {
                Ok(outcome) => settled.push(json!({"key": object.key, "outcome": outcome})),
                Err(e) => {
                    tracing::error!(key = object.key, error = format!("{e:#}"), "arrival");
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"code": ErrorCode::Internal,
                               "message": format!("{}: storage or a database failed; deliver the notification again", object.key)}),
                    );
                }
            }
        }
        (StatusCode::OK, json!({ "objects": settled }))
    }
}

/// An arrival being settled.
struct Arrival<'a> {
    info: &'a ObjectInfo,
    project: &'a Project,
    file_name: &'a str,
    version: String,
}

/// The project and file name of the arrival at `key`, or why it is none ([`classify`]).
fn arrival_of(key: &str) -> Result<(Project, String), Outcome> {
    let reason = match classify(key) {
        ArrivalKey::Arrival { project, file_name } => return Ok((project, file_name)),
        ArrivalKey::Planned => "part of an upload planned at the edge".to_owned(),
        ArrivalKey::Ignored => format!("not an original under {ORIGINALS_PREFIX}{{project}}/"),
        ArrivalKey::BadProject { folder, reason } => {
            tracing::warn!(key, folder, reason, "an original outside any project");
            format!("its folder {folder:?} is not a project: {reason}")
        }
    };
    Err(Outcome::Ignored { reason })
}

/// Records `manifest` in `metadata` as the completed one-image upload `upload_id` (planned
/// with [`RECORD_EXPIRES_IN`] unless it already is, then completed): what an arrival and a
/// reindexed sidecar are recorded as. Idempotent, and safe against a concurrent call for the
/// same upload.
///
/// # Errors
/// The metadata store's.
pub(crate) async fn record_image<M: tessera_edge::Store>(
    metadata: &M,
    upload_id: &str,
    manifest: &Manifest,
) -> Result<(), tessera_edge::StoreError> {
    let now_s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if metadata.upload(upload_id).await?.is_none() {
        let created = metadata
            .create_upload(
                upload_id,
                manifest.project.as_str(),
                std::slice::from_ref(manifest),
                now_s,
                now_s + RECORD_EXPIRES_IN.as_secs(),
            )
            .await;
        // A concurrent call may have planned it first.
        if let Err(e) = created
            && metadata.upload(upload_id).await?.is_none()
        {
            return Err(e);
        }
    }
    metadata.complete_upload(upload_id, now_s).await?;
    Ok(())
}
