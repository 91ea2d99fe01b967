//! Originals that arrived by another route ([`crate::arrivals`]), as last settled: which
//! version of a key was looked at, and what came of it. A refusal is settled with its
//! `upload.failed` webhook in one transaction.

use anyhow::Result;
use sqlx::Row as _;
use tessera_core::keys::Project;
use tessera_core::webhook::{UploadFailedEvent, WebhookEvent};

use super::Store;
use super::webhooks::Subject;

/// How an arrival was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledArrival {
    /// Its key.
    pub key: String,
    /// The version looked at: the ETag, else the size in bytes.
    pub version: String,
    /// The project of its folder.
    pub project: String,
    /// The image recorded (`None` when refused).
    pub image_id: Option<String>,
    /// The one-image upload that records it, or the refusal's id.
    pub upload_id: String,
    /// The job of its image (`None` when refused).
    pub job_id: Option<String>,
    /// Why it was refused (`None` when recorded).
    pub reason: Option<String>,
}

impl Store {
    /// The version of `key` last settled, if any.
    ///
    /// # Errors
    /// The database's.
    pub async fn arrival_version(&self, key: &str) -> Result<Option<String>> {
        let row =
            sqlx::query(self.sql("SELECT version FROM object_arrivals WHERE object_key = $1"))
                .bind(key.to_owned())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get("version")).transpose()?)
    }

    /// Records that `arrival` was recorded as an image with its job (replacing what an
    /// earlier version of its key came to).
    ///
    /// # Errors
    /// The database's.
    pub async fn arrival_recorded(&self, arrival: &SettledArrival, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.settle(&mut tx, arrival, "recorded", now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that `arrival` was refused and, unless this version was announced before,
    /// the `upload.failed` webhook `failed` for the project's endpoints, in one transaction.
    /// Returns the deliveries made.
    ///
    /// # Errors
    /// The database's; a project name that is not one.
    pub async fn arrival_refused(
        &self,
        arrival: &SettledArrival,
        failed: &UploadFailedEvent,
        now: i64,
    ) -> Result<u64> {
        let project = Project::new(failed.project.as_str())
            .map_err(|e| anyhow::anyhow!("{}: {e}", failed.key))?;
        let mut tx = self.begin_write().await?;
        let made = self
            .record_event(
                &mut tx,
                WebhookEvent::UploadFailed,
                Subject::Upload {
                    project: &project,
                    upload_id: &failed.upload_id,
                },
                failed,
                now,
            )
            .await?;
        self.settle(&mut tx, arrival, "refused", now).await?;
        tx.commit().await?;
        Ok(made)
    }

    /// Arrivals settled with `outcome` (`recorded` or `refused`), for `/metrics`.
    ///
    /// # Errors
    /// The database's.
    pub async fn arrival_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(self.sql(
            "SELECT outcome, COUNT(*) AS n FROM object_arrivals GROUP BY outcome ORDER BY outcome",
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("outcome")?, r.try_get("n")?)))
            .collect()
    }

    async fn settle(
        &self,
        tx: &mut super::Tx,
        arrival: &SettledArrival,
        outcome: &'static str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(self.sql(
            "INSERT INTO object_arrivals
               (object_key, version, project, outcome, upload_id, image_id, job_id, reason, settled_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (object_key) DO UPDATE SET version = excluded.version,
               project = excluded.project, outcome = excluded.outcome,
               upload_id = excluded.upload_id, image_id = excluded.image_id,
               job_id = excluded.job_id, reason = excluded.reason,
               settled_at = excluded.settled_at",
        ))
        .bind(arrival.key.clone())
        .bind(arrival.version.clone())
        .bind(arrival.project.clone())
        .bind(outcome)
        .bind(arrival.upload_id.clone())
        .bind(arrival.image_id.clone())
        .bind(arrival.job_id.clone())
        .bind(arrival.reason.clone())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
