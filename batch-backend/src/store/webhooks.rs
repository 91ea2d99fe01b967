//! Webhook endpoints and the delivery outbox in the store ([`tessera_core::webhook`]).
//!
//! An event becomes one `pending` delivery per endpoint of its project that receives it,
//! written in the transaction of the change that causes it ([`Store::record_event`]), with a
//! `webhook-id` shared by those deliveries and kept on every attempt. A delivering process
//! claims a due delivery under a lease ([`Store::claim_delivery`]), so a killed one's
//! delivery is taken again once the lease ends, with the same id and body. What an attempt
//! came to is [`tessera_core::webhook::after_attempt`]'s decision, recorded by
//! [`Store::finish_delivery`]. Dead-lettered deliveries (`failed`) are listed and replayed
//! through the API.

use anyhow::{Context as _, Result};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use tessera_core::keys::{JobId, Project};
use tessera_core::webhook::{
    AfterAttempt, CreateWebhook, DeliveryQuery, DeliveryState, Payload, UploadExpiredEvent,
    WebhookDelivery, WebhookEndpoint, WebhookEvent, WebhookSecret,
};

use super::{Store, Tx};

/// How long a process holds a delivery it is attempting: twice an attempt's time limit
/// ([`tessera_core::webhook::ATTEMPT_TIMEOUT_MS`]), so a live attempt never loses it.
pub const DELIVERY_LEASE_MS: i64 = 2 * 15_000;

/// What an event is about: which endpoints receive it, and how its `webhook-id` is made.
#[derive(Debug, Clone, Copy)]
pub(super) enum Subject<'a> {
    /// A job's event: its project's endpoints and its own; a fresh id.
    Job {
        /// The job's project.
        project: &'a Project,
        /// The job.
        job: &'a JobId,
    },
    /// An upload's event: its project's endpoints; the id its upload and event name make.
    Upload {
        /// The upload's project.
        project: &'a Project,
        /// The upload.
        upload_id: &'a str,
    },
}

/// A delivery claimed for one attempt: everything needed to send it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// `dlv_…`.
    pub delivery_id: String,
    /// The `webhook-id`.
    pub message_id: String,
    /// Where to POST.
    pub url: String,
    /// The endpoint's secret.
    pub secret: WebhookSecret,
    /// The body, exactly as recorded.
    pub payload: String,
    /// The event, for logs and metrics.
    pub event: WebhookEvent,
    /// This attempt's number, from 1.
    pub attempt: u32,
}

/// ` job.completed job.failed `: the `events` column, spaces around each name so that a
/// `LIKE '% name %'` finds exactly it.
fn events_column(events: &[WebhookEvent]) -> String {
    let names: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
    format!(" {} ", names.join(" "))
}

fn events_of(column: &str) -> Result<Vec<WebhookEvent>> {
    column
        .split_whitespace()
        .map(|name| WebhookEvent::parse(name).with_context(|| format!("unknown event {name:?}")))
        .collect()
}

fn event_of(name: &str) -> Result<WebhookEvent> {
    WebhookEvent::parse(name).with_context(|| format!("unknown event {name:?}"))
}

fn seconds(ms: i64) -> u64 {
    u64::try_from(ms / 1000).unwrap_or(0)
}

/// An id: `prefix` and a UUID v4's 32 hex digits.
fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// The columns [`delivery_of`] reads, of a delivery and its endpoint.
const SELECT_DELIVERIES: &str =
    "SELECT d.delivery_id, d.message_id, d.endpoint_id, d.project, e.url,
        d.event, d.state, d.attempts, d.next_at, d.last_status, d.last_error, d.created_at
     FROM webhook_deliveries d JOIN webhook_endpoints e ON e.endpoint_id = d.endpoint_id";

fn delivery_of(row: &AnyRow) -> Result<WebhookDelivery> {
    let state: String = row.try_get("state")?;
    let state = DeliveryState::parse(&state).with_context(|| format!("state {state:?}"))?;
    let next_at: i64 = row.try_get("next_at")?;
    Ok(WebhookDelivery {
        delivery_id: row.try_get("delivery_id")?,
        message_id: row.try_get("message_id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        project: row.try_get("project")?,
        url: row.try_get("url")?,
        event: event_of(&row.try_get::<String, _>("event")?)?,
        state,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?)?,
        next_attempt_at: (state == DeliveryState::Pending).then(|| seconds(next_at)),
        last_status: row
            .try_get::<Option<i64>, _>("last_status")?
            .map(u16::try_from)
            .transpose()?,
        last_error: row.try_get("last_error")?,
        created_at: seconds(row.try_get("created_at")?),
    })
}

impl Store {
    /// Registers an endpoint for a checked request ([`CreateWebhook::checked`]) with its
    /// secret; the answer carries the secret, this once.
    ///
    /// # Errors
    /// The database's.
    pub async fn create_endpoint(
        &self,
        request: &CreateWebhook,
        secret: &WebhookSecret,
        now: i64,
    ) -> Result<WebhookEndpoint> {
        let mut tx = self.begin_write().await?;
        let endpoint = self
            .insert_endpoint(&mut tx, request, secret, None, now)
            .await?;
        tx.commit().await?;
        Ok(endpoint)
    }

    /// Inserts an endpoint in `tx`: a project's, or with `job` one that receives that job's
    /// events only (made with the job, [`Store::create_job`]).
    pub(super) async fn insert_endpoint(
        &self,
        tx: &mut Tx,
        request: &CreateWebhook,
        secret: &WebhookSecret,
        job: Option<&JobId>,
        now: i64,
    ) -> Result<WebhookEndpoint> {
        let endpoint_id = new_id("ep_");
        let job_id = job.map(|j| j.as_str().to_owned());
        sqlx::query(self.sql(
            "INSERT INTO webhook_endpoints (endpoint_id, project, url, events, secret, created_at, job_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        ))
        .bind(endpoint_id.clone())
        .bind(request.project.clone())
        .bind(request.url.clone())
        .bind(events_column(&request.events))
        .bind(secret.to_string())
        .bind(now)
        .bind(job_id.clone())
        .execute(&mut **tx)
        .await?;
        Ok(WebhookEndpoint {
            endpoint_id,
            project: request.project.clone(),
            url: request.url.clone(),
            events: request.events.clone(),
            secret: Some(secret.to_string()),
            job_id,
            disabled: false,
            created_at: seconds(now),
        })
    }

    /// The endpoints of `project` (secrets left out), oldest first.
    ///
    /// # Errors
    /// The database's.
    pub async fn endpoints(&self, project: &Project) -> Result<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(self.sql(
            "SELECT endpoint_id, project, url, events, job_id, disabled_at, created_at
             FROM webhook_endpoints WHERE project = $1 ORDER BY created_at, endpoint_id",
        ))
        .bind(project.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WebhookEndpoint {
                    endpoint_id: row.try_get("endpoint_id")?,
                    project: row.try_get("project")?,
                    url: row.try_get("url")?,
                    events: events_of(&row.try_get::<String, _>("events")?)?,
                    secret: None,
                    job_id: row.try_get("job_id")?,
                    disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
                    created_at: seconds(row.try_get("created_at")?),
                })
            })
            .collect()
    }

    /// Records `event` about `data` for every enabled endpoint of `project` that receives
    /// it (a job's own endpoint only for its job's events), in `tx` (the change that causes
    /// it): one `webhook-id` for all, the body `{type, timestamp, data}` as it will be signed
    /// and sent. An upload's event has the one `webhook-id` its upload and event name make,
    /// so recording it again adds nothing. Returns the deliveries made.
    ///
    /// # Errors
    /// The database's.
    pub(super) async fn record_event<T: serde::Serialize>(
        &self,
        tx: &mut Tx,
        event: WebhookEvent,
        subject: Subject<'_>,
        data: &T,
        now: i64,
    ) -> Result<u64> {
        let timestamp = chrono::DateTime::from_timestamp_millis(now)
            .context("a time in range")?
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let payload = serde_json::to_string(&Payload {
            event,
            timestamp,
            data,
        })?;
        let (project, job, message_id) = match subject {
            Subject::Job { project, job } => (project, Some(job.as_str()), new_id("msg_")),
            Subject::Upload { project, upload_id } => {
                let name = format!("{} {upload_id}", event.as_str());
                let digest = tessera_core::Sha256Digest::of(name.as_bytes());
                (project, None, format!("msg_{}", &digest.hex[..32]))
            }
        };
        let endpoints: Vec<String> = sqlx::query(self.sql(
            "SELECT endpoint_id FROM webhook_endpoints
             WHERE project = $1 AND disabled_at IS NULL AND events LIKE $2
               AND (job_id IS NULL OR job_id = $3)
             ORDER BY endpoint_id",
        ))
        .bind(project.as_str().to_owned())
        .bind(format!("% {} %", event.as_str()))
        .bind(job.map(str::to_owned))
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.try_get("endpoint_id"))
        .collect::<Result<_, _>>()?;
        let mut made = 0;
        for endpoint_id in &endpoints {
            made += sqlx::query(self.sql(
                "INSERT INTO webhook_deliveries
                   (delivery_id, message_id, endpoint_id, project, event, payload, state, next_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7, $7)
                 ON CONFLICT (message_id, endpoint_id) DO NOTHING",
            ))
            .bind(new_id("dlv_"))
            .bind(message_id.clone())
            .bind(endpoint_id.clone())
            .bind(project.as_str().to_owned())
            .bind(event.as_str())
            .bind(payload.clone())
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        }
        Ok(made)
    }

    /// Records `upload.expired` for `expired` in the outbox, for the project's endpoints that
    /// receive it: once per upload (its `webhook-id` is made from the upload's id), however
    /// often the edge reports it.
    ///
    /// # Errors
    /// The database's, or a bad project name.
    pub async fn upload_expired(&self, expired: &UploadExpiredEvent, now: i64) -> Result<u64> {
        let project = Project::new(expired.project.as_str())
            .map_err(|e| anyhow::anyhow!("upload {}: {e}", expired.upload_id))?;
        let mut tx = self.begin_write().await?;
        let made = self
            .record_event(
                &mut tx,
                WebhookEvent::UploadExpired,
                Subject::Upload {
                    project: &project,
                    upload_id: &expired.upload_id,
                },
                expired,
                now,
            )
            .await?;
        tx.commit().await?;
        Ok(made)
    }

    /// Claims the delivery due first for `worker`, under a lease of [`DELIVERY_LEASE_MS`],
    /// counting the attempt. `None` when none is due.
    ///
    /// # Errors
    /// The database's, or a row that does not parse.
    pub async fn claim_delivery(&self, worker: &str, now: i64) -> Result<Option<DueDelivery>> {
        let mut tx = self.begin_write().await?;
        let pick = match self.dialect {
            super::Dialect::Sqlite => "",
            super::Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, leased_by = $1, lease_until = $2
             WHERE delivery_id = (SELECT delivery_id FROM webhook_deliveries
                                  WHERE state = 'pending' AND next_at <= $3
                                    AND (lease_until IS NULL OR lease_until <= $3)
                                  ORDER BY next_at, delivery_id LIMIT 1{pick})
               AND (lease_until IS NULL OR lease_until <= $3)
             RETURNING delivery_id, message_id, endpoint_id, event, payload, attempts"
        );
        let row = sqlx::query(self.dynamic_sql(sql))
            .bind(worker.to_owned())
            .bind(now + DELIVERY_LEASE_MS)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let endpoint_id: String = row.try_get("endpoint_id")?;
        let endpoint = sqlx::query(
            self.sql("SELECT url, secret FROM webhook_endpoints WHERE endpoint_id = $1"),
        )
        .bind(endpoint_id.clone())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let secret: String = endpoint.try_get("secret")?;
        Ok(Some(DueDelivery {
            delivery_id: row.try_get("delivery_id")?,
            message_id: row.try_get("message_id")?,
            url: endpoint.try_get("url")?,
            secret: WebhookSecret::parse(&secret)
                .with_context(|| format!("endpoint {endpoint_id}'s secret"))?,
            payload: row.try_get("payload")?,
            event: event_of(&row.try_get::<String, _>("event")?)?,
            attempt: u32::try_from(row.try_get::<i64, _>("attempts")?)?,
        }))
    }

    /// Records what `worker`'s attempt on `due` came to: delivered; retried at `now` +
    /// the wait; dead-lettered; or, for a 410, dead-lettered with its endpoint disabled and
    /// the endpoint's other pending deliveries dead-lettered too. `status` and `error` are
    /// kept for the dead-letter list. Nothing changes when the lease was lost (another
    /// process took the delivery); the answer says whether it was recorded.
    ///
    /// # Errors
    /// The database's.
    pub async fn finish_delivery(
        &self,
        due: &DueDelivery,
        worker: &str,
        outcome: AfterAttempt,
        status: Option<u16>,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let (state, next_at) = match outcome {
            AfterAttempt::Delivered => (DeliveryState::Delivered, now),
            AfterAttempt::Retry(wait) => (
                DeliveryState::Pending,
                now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)),
            ),
            AfterAttempt::DeadLetter | AfterAttempt::Disable => (DeliveryState::Failed, now),
        };
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(self.sql(
            "UPDATE webhook_deliveries
             SET state = $1, next_at = $2, leased_by = NULL, lease_until = NULL,
                 last_status = $3, last_error = $4, updated_at = $5
             WHERE delivery_id = $6 AND leased_by = $7 AND attempts = $8",
        ))
        .bind(state.as_str())
        .bind(next_at)
        .bind(status.map(i64::from))
        .bind(error.map(str::to_owned))
        .bind(now)
        .bind(due.delivery_id.clone())
        .bind(worker.to_owned())
        .bind(i64::from(due.attempt))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if outcome == AfterAttempt::Disable {
            let endpoint: String = sqlx::query(
                self.sql("SELECT endpoint_id FROM webhook_deliveries WHERE delivery_id = $1"),
            )
            .bind(due.delivery_id.clone())
            .fetch_one(&mut *tx)
            .await?
            .try_get("endpoint_id")?;
            sqlx::query(
                self.sql("UPDATE webhook_endpoints SET disabled_at = $1 WHERE endpoint_id = $2"),
            )
            .bind(now)
            .bind(endpoint.clone())
            .execute(&mut *tx)
            .await?;
            sqlx::query(self.sql(
                "UPDATE webhook_deliveries
                 SET state = 'failed', last_error = 'the endpoint answered 410 Gone and was disabled', updated_at = $1
                 WHERE endpoint_id = $2 AND state = 'pending' AND leased_by IS NULL",
            ))
            .bind(now)
            .bind(endpoint)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deliveries for `query`, newest first.
    ///
    /// # Errors
    /// The database's, or a row that does not parse.
    pub async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<WebhookDelivery>> {
        let rows = sqlx::query(self.dynamic_sql(format!(
            "{SELECT_DELIVERIES}
             WHERE ($1 IS NULL OR d.project = $1) AND ($2 IS NULL OR d.state = $2)
             ORDER BY d.created_at DESC, d.delivery_id DESC
             LIMIT $3"
        )))
        .bind(query.project.as_ref().map(|p| p.as_str().to_owned()))
        .bind(query.state.map(DeliveryState::as_str))
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_of).collect()
    }

    /// One delivery; `None` when there is none with this id.
    ///
    /// # Errors
    /// The database's, or a row that does not parse.
    pub async fn delivery(&self, delivery_id: &str) -> Result<Option<WebhookDelivery>> {
        let row =
            sqlx::query(self.dynamic_sql(format!("{SELECT_DELIVERIES} WHERE d.delivery_id = $1")))
                .bind(delivery_id.to_owned())
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(delivery_of).transpose()
    }

    /// Sends a delivery again from `now`, with the same `webhook-id` and body and a fresh
    /// schedule; a pending one is left as it is. `None` when there is no such delivery.
    ///
    /// # Errors
    /// The database's.
    pub async fn replay_delivery(
        &self,
        delivery_id: &str,
        now: i64,
    ) -> Result<Option<WebhookDelivery>> {
        sqlx::query(self.sql(
            "UPDATE webhook_deliveries
             SET state = 'pending', attempts = 0, next_at = $1, leased_by = NULL, lease_until = NULL, updated_at = $1
             WHERE delivery_id = $2 AND state <> 'pending'",
        ))
        .bind(now)
        .bind(delivery_id.to_owned())
        .execute(&self.pool)
        .await?;
        self.delivery(delivery_id).await
    }
}
