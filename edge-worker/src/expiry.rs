//! Uploads whose presigned URLs expired before they were completed: the original design's
//! "notifications for failed uploads". [`Edge::expire_uploads`] finds them in the [`Store`]
//! (planned with `POST /v1/uploads`, never completed, URLs expired), announces each through
//! [`Jobs::upload_expired`] (the batch backend records `upload.expired` in its webhook outbox,
//! which signs and delivers it), and only then marks it, so a failure to reach the backend
//! leaves it for the next sweep. The backend records an upload's event once however often it
//! is announced, so each upload is reported once.
//!
//! The native hosts sweep every [`SWEEP_INTERVAL`] (or every URL lifetime, if shorter); on
//! Workers a cron trigger runs the same sweep (`scheduled` in `workers.rs`).

use std::time::{Duration, SystemTime};

use tessera_core::webhook::UploadExpiredEvent;

use crate::jobs::JobsError;
use crate::store::ExpiredUpload;
use crate::{Edge, Jobs, Outbound, Store, StoreError};

/// How often the native hosts look for expired uploads.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Uploads read from the store at once.
pub const SWEEP_BATCH: u32 = 100;

/// Why a sweep stopped; what it had announced stays announced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SweepError {
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The batch backend did not take an announcement; the upload is tried again next sweep.
    #[error("announcing upload {upload_id} expired: {source}")]
    Backend {
        /// The upload.
        upload_id: String,
        /// The backend's failure.
        #[source]
        source: JobsError,
    },
}

/// The `upload.expired` data of `upload`.
#[must_use]
pub fn event(upload: &ExpiredUpload) -> UploadExpiredEvent {
    UploadExpiredEvent {
        upload_id: upload.upload_id.clone(),
        project: upload.project.clone(),
        created_at: upload.created_at_s,
        expired_at: upload.expires_at_s,
        image_ids: upload
            .manifests
            .iter()
            .map(|m| m.image_id.to_string())
            .collect(),
        file_names: upload
            .manifests
            .iter()
            .map(|m| m.file_name.clone())
            .collect(),
    }
}

impl<S: Store, O: Outbound, J: Jobs> Edge<S, O, J> {
    /// Announces every upload whose URLs expired by `now` and that was neither completed nor
    /// announced, in batches of [`SWEEP_BATCH`], oldest expiry first. Returns how many were
    /// announced.
    ///
    /// # Errors
    /// [`SweepError`]: the store's, or the first announcement the backend did not take.
    pub async fn expire_uploads(&self, now: SystemTime) -> Result<usize, SweepError> {
        let now_s = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut announced = 0;
        loop {
            let expired = self.store.expired_uploads(now_s, SWEEP_BATCH).await?;
            let batch = expired.len();
            for upload in expired {
                self.jobs
                    .upload_expired(&event(&upload))
                    .await
                    .map_err(|source| SweepError::Backend {
                        upload_id: upload.upload_id.clone(),
                        source,
                    })?;
                self.store.mark_expired(&upload.upload_id, now_s).await?;
                announced += 1;
            }
            if batch < SWEEP_BATCH as usize {
                return Ok(announced);
            }
        }
    }

    /// Sweeps ([`Edge::expire_uploads`]) every [`Edge::sweep_interval`], for as long as it
    /// is polled: a host runs it beside its server. A failed sweep is logged and tried again
    /// at the next.
    pub async fn sweep_expired_uploads(&self, sleep: impl AsyncFn(Duration)) {
        loop {
            sleep(self.sweep_interval()).await;
            match self.expire_uploads(SystemTime::now()).await {
                Ok(0) => {}
                Ok(announced) => tracing::info!(announced, "upload.expired announced"),
                Err(e) => tracing::warn!(error = %e, "expired uploads: sweep failed"),
            }
        }
    }

    /// How often a host should call [`Edge::expire_uploads`]: [`SWEEP_INTERVAL`], or the
    /// upload URL lifetime when shorter (so a short lifetime is reported about as soon).
    #[must_use]
    pub fn sweep_interval(&self) -> Duration {
        SWEEP_INTERVAL.min(self.config.policy.expires_in)
    }
}
