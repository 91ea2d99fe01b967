//! How the edge reaches the batch backend: the [`Jobs`] trait, with [`HttpJobs`] calling the
//! backend's job API with a service token (deployed: `TESSERA_BACKEND_URL`,
//! `TESSERA_BACKEND_TOKEN`). The local stack (`tessera up`) implements it in-process over the
//! job store, so its calls never leave the process.
//!
//! The contract (the request, the status, the states) is [`tessera_core::job`]'s.

use std::future::Future;

use http::{Method, Request, StatusCode};
use tessera_core::job::{JobAction, JobPage, JobQuery, JobRequest, JobStatus};
use tessera_core::job_inputs::JobPosted;
use tessera_core::keys::JobId;
use tessera_core::webhook::{
    CreateWebhook, DeliveryPage, DeliveryQuery, UploadExpiredEvent, WebhookDelivery,
    WebhookEndpoint,
};

use crate::{Outbound, OutboundError};

/// Why the batch backend could not create or report a job. Every variant is worth a retry
/// later: the edge answers 502 and the client completes again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobsError {
    /// No answer: the backend is down or unreachable.
    #[error("the batch backend could not be reached: {0}")]
    Unreachable(#[from] OutboundError),
    /// An answer that is not a success.
    #[error("the batch backend answered {status}: {body}")]
    Refused {
        /// Its HTTP status.
        status: StatusCode,
        /// The start of its body, for the log.
        body: String,
    },
    /// A success whose body is not a [`JobStatus`].
    #[error("the batch backend's answer is not a job status: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The in-process backend's own failure (its store).
    #[error("the batch backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What a cancel or retry came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Acted {
    /// Done: the job's status after it.
    Done(Box<JobStatus>),
    /// No such job.
    NotFound,
    /// The job's state does not allow it; the message says why.
    Conflict(String),
}

/// What creating a job came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The job (or the upload's existing job), and its own webhook endpoint with its secret
    /// when the request named one ([`JobRequest::webhook`]).
    Done {
        /// The job's status.
        job: Box<JobStatus>,
        /// Its endpoint, secret included.
        webhook: Option<WebhookEndpoint>,
    },
    /// Its webhook was refused (400 `webhook`; the message says why): no job was made.
    WebhookRefused(String),
}

/// What registering a webhook endpoint came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Registered {
    /// Registered: the endpoint, with its secret this once.
    Done(WebhookEndpoint),
    /// Refused (400 `webhook`); the message says why.
    Refused(String),
}

/// The batch backend as the edge sees it: jobs, and the webhooks that report them.
pub trait Jobs {
    /// Records a queued job (for a completed upload, or asked for) and returns its status.
    fn create(&self, request: &JobRequest) -> impl Future<Output = Result<Created, JobsError>>;
    /// One job's status; `Ok(None)` when the backend has no such job.
    fn status(&self, job_id: &JobId) -> impl Future<Output = Result<Option<JobStatus>, JobsError>>;
    /// One page of jobs, newest first.
    fn list(&self, query: &JobQuery) -> impl Future<Output = Result<JobPage, JobsError>>;
    /// Cancels or retries a job.
    fn act(
        &self,
        job_id: &JobId,
        action: JobAction,
    ) -> impl Future<Output = Result<Acted, JobsError>>;
    /// Registers a webhook endpoint (the backend checks its URL and makes its secret).
    fn create_webhook(
        &self,
        request: &CreateWebhook,
    ) -> impl Future<Output = Result<Registered, JobsError>>;
    /// Webhook deliveries, newest first.
    fn deliveries(
        &self,
        query: &DeliveryQuery,
    ) -> impl Future<Output = Result<DeliveryPage, JobsError>>;
    /// One delivery; `Ok(None)` when there is no such delivery.
    fn delivery(
        &self,
        delivery_id: &str,
    ) -> impl Future<Output = Result<Option<WebhookDelivery>, JobsError>>;
    /// Sends a delivery again; `Ok(None)` when there is no such delivery.
    fn replay(
        &self,
        delivery_id: &str,
    ) -> impl Future<Output = Result<Option<WebhookDelivery>, JobsError>>;
    /// Announces `upload.expired` ([`crate::expiry`]); idempotent per upload.
    fn upload_expired(
        &self,
        event: &UploadExpiredEvent,
    ) -> impl Future<Output = Result<(), JobsError>>;
}

/// The backend's job API over HTTP: `POST {base_url}/v1/jobs`, `GET {base_url}/v1/jobs`,
/// `GET {base_url}/v1/jobs/{id}`, `POST {base_url}/v1/jobs/{id}/{cancel,retry}`,
/// `POST {base_url}/v1/webhooks`, `GET {base_url}/v1/webhooks/deliveries[/{id}]`,
/// `POST {base_url}/v1/webhooks/deliveries/{id}/replay` and
/// `POST {base_url}/v1/events/upload-expired`, each with
/// `Authorization: Bearer {token}`.
#[derive(Debug, Clone)]
pub struct HttpJobs<O> {
    base_url: String,
    token: String,
    outbound: O,
}

impl<O: Outbound> HttpJobs<O> {
    /// The job API at `base_url` (e.g. `https://jobs.example.com`; a trailing `/` is ignored).
    pub fn new(base_url: &str, token: &str, outbound: O) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            outbound,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<http::Response<Vec<u8>>, JobsError> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.token))
            .body(body)
            .expect("a valid request");
        Ok(self.outbound.send(request).await?)
    }
}

/// A success's body as `T`; `None` for a 404; otherwise [`JobsError::Refused`].
fn found<T: serde::de::DeserializeOwned>(
    response: &http::Response<Vec<u8>>,
) -> Result<Option<T>, JobsError> {
    match response.status() {
        StatusCode::NOT_FOUND => Ok(None),
        s if s.is_success() => Ok(Some(serde_json::from_slice(response.body())?)),
        _ => Err(refused(response)),
    }
}

fn refused(response: &http::Response<Vec<u8>>) -> JobsError {
    let body = String::from_utf8_lossy(response.body());
    JobsError::Refused {
        status: response.status(),
        body: body.chars().take(200).collect(),
    }
}

impl<O: Outbound> Jobs for HttpJobs<O> {
    async fn create(&self, request: &JobRequest) -> Result<Created, JobsError> {
        let body = serde_json::to_vec(request).expect("a job request serialises");
        let response = self.call(Method::POST, "/v1/jobs", body).await?;
        match response.status() {
            StatusCode::BAD_REQUEST if request.webhook.is_some() => {
                let body: tessera_core::error::ErrorBody = serde_json::from_slice(response.body())?;
                match body.code {
                    tessera_core::error::ErrorCode::Webhook => {
                        Ok(Created::WebhookRefused(body.message))
                    }
                    _ => Err(refused(&response)),
                }
            }
            s if s.is_success() => {
                let posted: JobPosted = serde_json::from_slice(response.body())?;
                Ok(Created::Done {
                    job: Box::new(posted.job),
                    webhook: posted.webhook,
                })
            }
            _ => Err(refused(&response)),
        }
    }

    async fn status(&self, job_id: &JobId) -> Result<Option<JobStatus>, JobsError> {
        // A JobId is [a-z0-9-]: safe in a path as it is.
        let path = format!("/v1/jobs/{job_id}");
        let response = self.call(Method::GET, &path, Vec::new()).await?;
        found(&response)
    }

    async fn list(&self, query: &JobQuery) -> Result<JobPage, JobsError> {
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        if let Some(project) = &query.project {
            pairs.append_pair("project", project.as_str());
        }
        if let Some(state) = query.state {
            pairs.append_pair("state", state.as_str());
        }
        pairs.append_pair("limit", &query.limit.to_string());
        if let Some(cursor) = &query.cursor {
            pairs.append_pair("cursor", &cursor.encode());
        }
        let path = format!("/v1/jobs?{}", pairs.finish());
        let response = self.call(Method::GET, &path, Vec::new()).await?;
        if !response.status().is_success() {
            return Err(refused(&response));
        }
        Ok(serde_json::from_slice(response.body())?)
    }

    async fn act(&self, job_id: &JobId, action: JobAction) -> Result<Acted, JobsError> {
        let path = format!("/v1/jobs/{job_id}/{}", action.as_str());
        let response = self.call(Method::POST, &path, Vec::new()).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(Acted::NotFound),
            StatusCode::CONFLICT => {
                let body: tessera_core::error::ErrorBody = serde_json::from_slice(response.body())?;
                Ok(Acted::Conflict(body.message))
            }
            s if s.is_success() => Ok(Acted::Done(Box::new(serde_json::from_slice(
                response.body(),
            )?))),
            _ => Err(refused(&response)),
        }
    }

    async fn create_webhook(&self, request: &CreateWebhook) -> Result<Registered, JobsError> {
        let body = serde_json::to_vec(request).expect("a webhook request serialises");
        let response = self.call(Method::POST, "/v1/webhooks", body).await?;
        match response.status() {
            StatusCode::BAD_REQUEST => {
                let body: tessera_core::error::ErrorBody = serde_json::from_slice(response.body())?;
                Ok(Registered::Refused(body.message))
            }
            s if s.is_success() => Ok(Registered::Done(serde_json::from_slice(response.body())?)),
            _ => Err(refused(&response)),
        }
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<DeliveryPage, JobsError> {
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        if let Some(project) = &query.project {
            pairs.append_pair("project", project.as_str());
        }
        if let Some(state) = query.state {
            pairs.append_pair("state", state.as_str());
        }
        pairs.append_pair("limit", &query.limit.to_string());
        let path = format!("/v1/webhooks/deliveries?{}", pairs.finish());
        let response = self.call(Method::GET, &path, Vec::new()).await?;
        if !response.status().is_success() {
            return Err(refused(&response));
        }
        Ok(serde_json::from_slice(response.body())?)
    }

    async fn delivery(&self, delivery_id: &str) -> Result<Option<WebhookDelivery>, JobsError> {
        let id: String = form_urlencoded::byte_serialize(delivery_id.as_bytes()).collect();
        let path = format!("/v1/webhooks/deliveries/{id}");
        let response = self.call(Method::GET, &path, Vec::new()).await?;
        found(&response)
    }

    async fn replay(&self, delivery_id: &str) -> Result<Option<WebhookDelivery>, JobsError> {
        let id: String = form_urlencoded::byte_serialize(delivery_id.as_bytes()).collect();
        let path = format!("/v1/webhooks/deliveries/{id}/replay");
        let response = self.call(Method::POST, &path, Vec::new()).await?;
        found(&response)
    }

    async fn upload_expired(&self, event: &UploadExpiredEvent) -> Result<(), JobsError> {
        let body = serde_json::to_vec(event).expect("an event serialises");
        let response = self
            .call(Method::POST, "/v1/events/upload-expired", body)
            .await?;
        if !response.status().is_success() {
            return Err(refused(&response));
        }
        Ok(())
    }
}
