//! The batch backend's job API over the [`Store`]: `POST /v1/jobs` records a job and
//! enqueues its first tasks, `GET /v1/jobs/{id}` reports it, in the contract of
//! [`tessera_core::job`]. The edge reaches it through its [`Jobs`] trait: in-process in the
//! local stack ([`LocalJobs`], used by `tessera up`), over HTTP with a service token when
//! deployed ([`answer`] is that API over `http` types). Workers ([`crate::worker`]) run
//! the jobs.

use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tessera_core::error::{ErrorBody, ErrorCode};
use tessera_core::job::{JobAction, JobPage, JobQuery, JobRequest, JobStatus, parse_job_query};
use tessera_core::job_inputs::{JobPosted, MAX_JOB_INPUTS};
use tessera_core::keys::JobId;
use tessera_core::webhook::{
    CreateWebhook, DeliveryPage, DeliveryQuery, UploadExpiredEvent, WebhookDelivery,
    parse_delivery_query,
};
use tessera_edge::{Acted, Created, Jobs, JobsError, Registered};

use crate::arrivals::Arrivals;
use crate::store::Store;
use crate::tasks::now_ms;

/// A fresh job id (a UUID v4).
fn new_job_id() -> JobId {
    JobId::new(uuid::Uuid::new_v4().to_string()).expect("a UUID is a job id")
}

/// Cancels or retries `job_id` ([`Store::cancel_job`], [`Store::retry_job`]).
async fn act(store: &Store, job_id: &JobId, action: JobAction) -> anyhow::Result<Acted> {
    if store.job(job_id, now_ms()).await?.is_none() {
        return Ok(Acted::NotFound);
    }
    let changed = match action {
        JobAction::Cancel => store.cancel_job(job_id, now_ms()).await?,
        JobAction::Retry => store.retry_job(job_id, now_ms()).await?,
    };
    Ok(match changed {
        Err(refused) => Acted::Conflict(refused.to_string()),
        Ok(_) => match store.job(job_id, now_ms()).await? {
            Some(job) => Acted::Done(Box::new(job)),
            None => Acted::NotFound,
        },
    })
}

/// One page of jobs.
async fn list(store: &Store, query: &JobQuery) -> anyhow::Result<JobPage> {
    let (jobs, cursor) = store.list_jobs(query, now_ms()).await?;
    Ok(JobPage {
        jobs,
        next_cursor: cursor.map(|c| c.encode()),
    })
}

/// The job API over `http` types: `POST /v1/jobs` (201 with the [`JobPosted`]: the job and
/// its own webhook endpoint with its secret when it names one; 200 with the upload's
/// existing job; 400 `webhook` when its webhook is refused), `GET /v1/jobs` (a [`JobPage`]), `GET /v1/jobs/{id}` (200, or
/// 404) and `POST /v1/jobs/{id}/{cancel,retry}` (200, 404, or 409 when the job's state does
/// not allow it); and the webhook API: `POST /v1/webhooks` (201 with the endpoint and its
/// secret, or 400 `webhook`; [`crate::webhook::register`] with `allow_local_webhooks`),
/// `GET /v1/webhooks/deliveries` (a [`DeliveryPage`]), `GET /v1/webhooks/deliveries/{id}`
/// (200, or 404) and
/// `POST /v1/webhooks/deliveries/{id}/replay` (200, or 404); and
/// `POST /v1/events/upload-expired` (an [`UploadExpiredEvent`] from the edge's sweep,
/// [`tessera_edge::expiry`]; 200, recorded once per upload); and `POST /v1/events/s3`
/// (storage event notifications of originals put by any S3 client: [`Arrivals::answer`];
/// 404 when this backend was given no metadata store to record them in). Every request must
/// carry `Authorization: Bearer {token}`. Errors are `{code, message}` like the edge's.
pub async fn answer<M: tessera_edge::Store>(
    store: &Store,
    token: &str,
    allow_local_webhooks: bool,
    arrivals: Option<&Arrivals<M>>,
    request: &Request<Vec<u8>>,
) -> Response<Vec<u8>> {
    let authorized = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(token);
    let path = request.uri().path();
    let (status, body) = if !authorized {
        error(ErrorCode::Unauthorized, "a service token is required")
    } else if request.method() == Method::POST && path == "/v1/jobs" {
        match serde_json::from_slice::<JobRequest>(request.body()) {
            Err(e) => error(ErrorCode::InvalidJson, &format!("request body: {e}")),
            Ok(job) if job.inputs.is_empty() || job.inputs.len() > MAX_JOB_INPUTS => error(
                ErrorCode::JobInputs,
                &format!(
                    "{} inputs; a job takes 1 to {MAX_JOB_INPUTS}",
                    job.inputs.len()
                ),
            ),
            Ok(job) => {
                match crate::webhook::create_job(store, &new_job_id(), &job, allow_local_webhooks)
                    .await
                {
                    Ok(Ok((job, created, webhook))) => {
                        let status = if created {
                            StatusCode::CREATED
                        } else {
                            StatusCode::OK
                        };
                        let posted = JobPosted {
                            job,
                            refused: Vec::new(),
                            webhook,
                        };
                        (status, json!(posted))
                    }
                    Ok(Err(refused)) => error(ErrorCode::Webhook, &refused.to_string()),
                    Err(e) => internal(&e),
                }
            }
        }
    } else if request.method() == Method::POST && path == "/v1/events/s3" {
        match arrivals {
            Some(arrivals) => arrivals.answer(request.body()).await,
            None => error(
                ErrorCode::NotFound,
                "this backend records no arrivals: start it with --metadata-database, the edge's metadata store",
            ),
        }
    } else if request.method() == Method::POST && path == "/v1/events/upload-expired" {
        match serde_json::from_slice::<UploadExpiredEvent>(request.body()) {
            Err(e) => error(ErrorCode::InvalidJson, &format!("request body: {e}")),
            Ok(expired) => match store.upload_expired(&expired, now_ms()).await {
                Ok(deliveries) => (StatusCode::OK, json!({ "deliveries": deliveries })),
                Err(e) => internal(&e),
            },
        }
    } else if request.method() == Method::GET && path == "/v1/jobs" {
        let query = request.uri().query().unwrap_or_default();
        match parse_job_query(form_urlencoded::parse(query.as_bytes())) {
            Err(e) => error(e.code(), &e.to_string()),
            Ok(query) => match list(store, &query).await {
                Ok(page) => (StatusCode::OK, json!(page)),
                Err(e) => internal(&e),
            },
        }
    } else if let (&Method::POST, Some((id, action))) = (
        request.method(),
        path.strip_prefix("/v1/jobs/")
            .and_then(|rest| rest.split_once('/')),
    ) {
        let action = match action {
            "cancel" => Some(JobAction::Cancel),
            "retry" => Some(JobAction::Retry),
            _ => None,
        };
        match (JobId::new(id), action) {
            (Ok(job_id), Some(action)) => match act(store, &job_id, action).await {
                Ok(Acted::Done(job)) => (StatusCode::OK, json!(job)),
                Ok(Acted::NotFound) => error(ErrorCode::JobNotFound, &format!("no job {id}")),
                Ok(Acted::Conflict(message)) => error(ErrorCode::JobStateConflict, &message),
                Err(e) => internal(&e),
            },
            _ => error(ErrorCode::NotFound, &format!("no route for {path}")),
        }
    } else if let (&Method::GET, Some(id)) = (request.method(), path.strip_prefix("/v1/jobs/")) {
        match JobId::new(id) {
            Err(_) => error(ErrorCode::JobNotFound, &format!("no job {id}")),
            Ok(job_id) => match store.job(&job_id, now_ms()).await {
                Ok(Some(job)) => (StatusCode::OK, json!(job)),
                Ok(None) => error(ErrorCode::JobNotFound, &format!("no job {id}")),
                Err(e) => internal(&e),
            },
        }
    } else if path == "/v1/webhooks" || path.starts_with("/v1/webhooks/") {
        webhooks(store, allow_local_webhooks, request).await
    } else {
        error(ErrorCode::NotFound, &format!("no route for {path}"))
    };
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string().into_bytes())
        .expect("valid response")
}

/// The webhook routes of [`answer`].
async fn webhooks(
    store: &Store,
    allow_local: bool,
    request: &Request<Vec<u8>>,
) -> (StatusCode, Value) {
    let path = request.uri().path();
    let replay = path
        .strip_prefix("/v1/webhooks/deliveries/")
        .and_then(|rest| rest.strip_suffix("/replay"));
    match (request.method(), path, replay) {
        (&Method::POST, "/v1/webhooks", _) => {
            match serde_json::from_slice::<CreateWebhook>(request.body()) {
                Err(e) => error(ErrorCode::InvalidJson, &format!("request body: {e}")),
                Ok(hook) => match crate::webhook::register(store, &hook, allow_local).await {
                    Ok(Ok(endpoint)) => (StatusCode::CREATED, json!(endpoint)),
                    Ok(Err(refused)) => error(ErrorCode::Webhook, &refused.to_string()),
                    Err(e) => internal(&e),
                },
            }
        }
        (&Method::GET, "/v1/webhooks/deliveries", _) => {
            let query = request.uri().query().unwrap_or_default();
            match parse_delivery_query(form_urlencoded::parse(query.as_bytes())) {
                Err(e) => error(ErrorCode::Webhook, &e.to_string()),
                Ok(query) => match store.deliveries(&query).await {
                    Ok(deliveries) => (StatusCode::OK, json!(DeliveryPage { deliveries })),
                    Err(e) => internal(&e),
                },
            }
        }
        (&Method::GET, _, None) if path.starts_with("/v1/webhooks/deliveries/") => {
            let id = &path["/v1/webhooks/deliveries/".len()..];
            match store.delivery(id).await {
                Ok(Some(delivery)) => (StatusCode::OK, json!(delivery)),
                Ok(None) => error(
                    ErrorCode::DeliveryNotFound,
                    &format!("no webhook delivery {id}"),
                ),
                Err(e) => internal(&e),
            }
        }
        (&Method::POST, _, Some(id)) => match store.replay_delivery(id, now_ms()).await {
            Ok(Some(delivery)) => (StatusCode::OK, json!(delivery)),
            Ok(None) => error(
                ErrorCode::DeliveryNotFound,
                &format!("no webhook delivery {id}"),
            ),
            Err(e) => internal(&e),
        },
        _ => error(ErrorCode::NotFound, &format!("no route for {path}")),
    }
}

/// The edge's [`Jobs`] answered in-process by the job store (the local stack).
#[derive(Debug, Clone)]
pub struct LocalJobs {
    /// The job store.
    pub store: Store,
    /// Whether webhook endpoints may be `http` and local addresses
    /// ([`crate::webhook::register`]).
    pub allow_local_webhooks: bool,
}

impl Jobs for LocalJobs {
    async fn create(&self, request: &JobRequest) -> Result<Created, JobsError> {
        let job_id = new_job_id();
        match crate::webhook::create_job(&self.store, &job_id, request, self.allow_local_webhooks)
            .await
        {
            Ok(Ok((job, _created, webhook))) => Ok(Created::Done {
                job: Box::new(job),
                webhook,
            }),
            Ok(Err(refused)) => Ok(Created::WebhookRefused(refused.to_string())),
            Err(e) => Err(JobsError::Backend(e.into())),
        }
    }

    async fn status(&self, job_id: &JobId) -> Result<Option<JobStatus>, JobsError> {
        self.store
            .job(job_id, now_ms())
            .await
            .map_err(|e| JobsError::Backend(e.into()))
    }

    async fn list(&self, query: &JobQuery) -> Result<JobPage, JobsError> {
        list(&self.store, query)
            .await
            .map_err(|e| JobsError::Backend(e.into()))
    }

    async fn act(&self, job_id: &JobId, action: JobAction) -> Result<Acted, JobsError> {
        act(&self.store, job_id, action)
            .await
            .map_err(|e| JobsError::Backend(e.into()))
    }

    async fn create_webhook(&self, request: &CreateWebhook) -> Result<Registered, JobsError> {
        match crate::webhook::register(&self.store, request, self.allow_local_webhooks).await {
            Ok(Ok(endpoint)) => Ok(Registered::Done(endpoint)),
            Ok(Err(refused)) => Ok(Registered::Refused(refused.to_string())),
            Err(e) => Err(JobsError::Backend(e.into())),
        }
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<DeliveryPage, JobsError> {
        self.store
            .deliveries(query)
            .await
            .map(|deliveries| DeliveryPage { deliveries })
            .map_err(|e| JobsError::Backend(e.into()))
    }

    async fn delivery(&self, delivery_id: &str) -> Result<Option<WebhookDelivery>, JobsError> {
        self.store
            .delivery(delivery_id)
            .await
            .map_err(|e| JobsError::Backend(e.into()))
    }

    async fn replay(&self, delivery_id: &str) -> Result<Option<WebhookDelivery>, JobsError> {
        self.store
            .replay_delivery(delivery_id, now_ms())
            .await
            .map_err(|e| JobsError::Backend(e.into()))
    }

    async fn upload_expired(&self, event: &UploadExpiredEvent) -> Result<(), JobsError> {
        self.store
            .upload_expired(event, now_ms())
            .await
            .map(drop)
            .map_err(|e| JobsError::Backend(e.into()))
    }
}

/// An error answer in the API's one vocabulary ([`ErrorBody`]).
fn error(code: ErrorCode, message: &str) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(code.http_status()).expect("a valid status");
    (status, json!(ErrorBody::new(code, message)))
}

fn internal(e: &anyhow::Error) -> (StatusCode, Value) {
    tracing::error!(error = %format!("{e:#}"), "job store");
    error(ErrorCode::Internal, "internal error; it has been logged")
}
