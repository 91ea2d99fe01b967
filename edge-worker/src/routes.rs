//! The router: [`Edge::handle`] answers one `http::Request` with CORS, authentication and the
//! rate limit around the routes of the crate's table. Every decision it applies comes from
//! tessera-core; the store, outbound HTTP and the batch backend are its host's.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method as HttpMethod, Request, Response, StatusCode, header};
use serde_json::json;
use tessera_core::Manifest;
use tessera_core::access::{
    AUTH_FAILURE_BURST, AUTH_FAILURES_PER_SECOND, CORS_MAX_AGE, KeyScope, ScopeError, TokenBucket,
    api_key_hash,
};
use tessera_core::error::{ErrorCode, ObjectProblem};
use tessera_core::job::{JobAction, JobRequest, JobStatus, parse_job_query};
use tessera_core::job_inputs::{
    CreateJob, FORM_FILES, JobInputsError, JobPosted, JobSelection, RefusedFile,
};
use tessera_core::keys::{ImageId, JobId, Project};
use tessera_core::presign::{Method, PresignedRequest};
use tessera_core::search::{cut_page, merge_pages, parse_image_query};
use tessera_core::upload::{
    StoredObject, UploadRequest, VERIFY_URL_LIFETIME, check_stored, plan_upload,
};
use tessera_core::webhook::{CreateWebhook, parse_delivery_query};

use crate::error::{ApiError, ApiResult, json_response, log_error};
use crate::events::JobEvents;
use crate::jobs::{Acted, Created, JobsError, Registered};
use crate::store::IMAGES_PER_CALL;
use crate::wire::{
    Download, ImageAnswer, SearchPage, UploadCompleted, UploadCreated, UploadTarget,
};
use crate::{Config, Jobs, Outbound, Store, UploadRow, openapi};

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;

/// The router with its host's parts. One per process (natively) or isolate (Workers); the rate
/// limiter's buckets live here, so on Workers the limit is per isolate.
pub struct Edge<S, O, J> {
    pub(crate) config: Config,
    pub(crate) store: S,
    outbound: O,
    pub(crate) jobs: J,
    buckets: RefCell<HashMap<String, TokenBucket>>,
    auth_failures: RefCell<HashMap<Option<IpAddr>, TokenBucket>>,
}

/// Client addresses whose failed authentications are remembered at most; beyond it, those
/// whose buckets have refilled are forgotten.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The client's network address, put in a request's extensions by its host: the TCP peer
/// natively, `CF-Connecting-IP` on Workers. Failed authentications are limited per address
/// ([`AUTH_FAILURE_BURST`], [`AUTH_FAILURES_PER_SECOND`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

/// What [`Edge::admit`] decided from a request's head.
#[derive(Debug)]
pub enum Admission {
    /// The complete answer: the CORS preflight, `/health`, the OpenAPI document, or a
    /// refusal.
    Answered(Response<Bytes>),
    /// The body is wanted: read it and pass both to [`Edge::respond`].
    Admitted(Admitted),
    /// A job's server-sent events: open them with [`Edge::open_events`] (the request has
    /// no body to read).
    Events(JobEvents),
    /// A job posted with its files (`POST /v1/jobs` as `multipart/form-data`): a host that
    /// stores files reads the form and answers with [`Edge::create_posted_job`]; others
    /// with [`Edge::files_not_taken`]. The body is not bound by the JSON limit.
    Files(PostedJob),
}

/// A job posted with its files, admitted (key and rate checked) before its form is read.
#[derive(Debug)]
pub struct PostedJob {
    content_type: String,
    origin: Option<HeaderValue>,
    scope: KeyScope,
}

impl PostedJob {
    /// The request's `Content-Type`, `multipart/form-data` with its boundary.
    #[must_use]
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The projects the request's API key reaches: the form's project must be one of them.
    #[must_use]
    pub fn scope(&self) -> &KeyScope {
        &self.scope
    }
}

/// Whether `headers` declare a `multipart/form-data` body (RFC 7578), by the media type's
/// essence, case-insensitively.
fn is_form_data(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"))
}

/// A request whose head [`Edge::admit`] accepted: a known route and method, a valid API key
/// within its rate, a declared length within the limit. Only the router makes one.
#[derive(Debug)]
pub struct Admitted {
    route: Route,
    query: String,
    origin: Option<HeaderValue>,
    scope: KeyScope,
}

/// The routes that need an API key, parsed from method and path.
#[derive(Debug)]
enum Route {
    CreateUpload,
    CompleteUpload(String),
    Search,
    Image(String),
    Jobs,
    CreateJob,
    Job(String),
    JobAction(String, JobAction),
    JobEvents(String),
    CreateWebhook,
    Deliveries,
    Replay(String),
}

/// What a path and method name, before any key is checked.
enum Matched {
    Health,
    OpenApi,
    Authorized(Route),
}

/// A request's route, and the scope of its API key when the route needs one.
enum Decided {
    Health,
    OpenApi,
    Authorized(Route, KeyScope),
}

/// The route a request names, as a template for logs and metrics (`GET /v1/jobs/{id}`), with
/// ids left out so that the set of values stays small; `other` for a path the API does not
/// have, and the operations routes as they are.
#[must_use]
pub fn route_template(method: &HttpMethod, path: &str) -> &'static str {
    let Ok(matched) = match_route(method, path) else {
        return match path {
            "/ready" => "GET /ready",
            "/metrics" => "GET /metrics",
            _ => "other",
        };
    };
    match matched {
        Matched::Health => "GET /health",
        Matched::OpenApi => "GET /v1/openapi.json",
        Matched::Authorized(route) => match route {
            Route::CreateUpload => "POST /v1/uploads",
            Route::CompleteUpload(_) => "POST /v1/uploads/{id}/complete",
            Route::Search => "GET /v1/images",
            Route::Image(_) => "GET /v1/images/{id}",
            Route::Jobs => "GET /v1/jobs",
            Route::CreateJob => "POST /v1/jobs",
            Route::Job(_) => "GET /v1/jobs/{id}",
            Route::JobAction(_, JobAction::Cancel) => "POST /v1/jobs/{id}/cancel",
            Route::JobAction(_, JobAction::Retry) => "POST /v1/jobs/{id}/retry",
            Route::JobEvents(_) => "GET /v1/jobs/{id}/events",
            Route::CreateWebhook => "POST /v1/webhooks",
            Route::Deliveries => "GET /v1/webhooks/deliveries",
            Route::Replay(_) => "POST /v1/webhooks/deliveries/{id}/replay",
        },
    }
}

/// Matches `method` and `path` against the route table.
///
/// # Errors
/// `not_found` for an unknown path; `method_not_allowed` (405, with `Allow`) for a known path
/// and another method.
fn match_route(method: &HttpMethod, path: &str) -> Result<Matched, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (allowed, matched) = match segments.as_slice() {
        ["health"] => ("GET", Matched::Health),
        ["v1", "openapi.json"] => ("GET", Matched::OpenApi),
        ["v1", "uploads"] => ("POST", Matched::Authorized(Route::CreateUpload)),
        ["v1", "uploads", id, "complete"] => (
            "POST",
            Matched::Authorized(Route::CompleteUpload((*id).to_owned())),
        ),
        ["v1", "images"] => ("GET", Matched::Authorized(Route::Search)),
        ["v1", "images", id] => ("GET", Matched::Authorized(Route::Image((*id).to_owned()))),
        ["v1", "jobs"] => (
            "GET, POST",
            Matched::Authorized(if *method == HttpMethod::POST {
                Route::CreateJob
            } else {
                Route::Jobs
            }),
        ),
        ["v1", "jobs", id] => ("GET", Matched::Authorized(Route::Job((*id).to_owned()))),
        ["v1", "jobs", id, "events"] => (
            "GET",
            Matched::Authorized(Route::JobEvents((*id).to_owned())),
        ),
        ["v1", "jobs", id, action @ ("cancel" | "retry")] => {
            let action = if *action == "cancel" {
                JobAction::Cancel
            } else {
                JobAction::Retry
            };
            (
                "POST",
                Matched::Authorized(Route::JobAction((*id).to_owned(), action)),
            )
        }
        ["v1", "webhooks"] => ("POST", Matched::Authorized(Route::CreateWebhook)),
        ["v1", "webhooks", "deliveries"] => ("GET", Matched::Authorized(Route::Deliveries)),
        ["v1", "webhooks", "deliveries", id, "replay"] => {
            ("POST", Matched::Authorized(Route::Replay((*id).to_owned())))
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no route for {path}"),
            ));
        }
    };
    if !allowed.split(", ").any(|m| m == method.as_str()) {
        return Err(ApiError::method_not_allowed(method, path, allowed));
    }
    Ok(matched)
}

impl<S, O, J> std::fmt::Debug for Edge<S, O, J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the storage secret: never printed.
        f.debug_struct("Edge").finish_non_exhaustive()
    }
}

impl<S: Store, O: Outbound, J: Jobs> Edge<S, O, J> {
    /// The router over its store, outbound HTTP and the batch backend.
    pub fn new(config: Config, store: S, outbound: O, jobs: J) -> Self {
        Self {
            config,
            store,
            outbound,
            jobs,
            buckets: RefCell::new(HashMap::new()),
            auth_failures: RefCell::new(HashMap::new()),
        }
    }

    /// The metadata store (for a host's readiness and metrics).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The answer to a request whose body is over `max_body_bytes`, for hosts that stop
    /// reading such a body before it reaches [`Edge::respond`].
    #[must_use]
    pub fn body_too_large(&self) -> Response<Bytes> {
        ApiError::body_too_large(self.config.max_body_bytes).into_response()
    }

    /// The answer to a request whose body did not arrive within the host's time limit.
    #[must_use]
    pub fn body_timed_out(&self) -> Response<Bytes> {
        ApiError::new(
            ErrorCode::RequestTimeout,
            "the request body did not arrive in time",
        )
        .into_response()
    }

    /// Answers one request at `now`: [`Edge::admit`] on its head, then [`Edge::respond`]; for
    /// hosts that have the body already. Job events are answered with their first frame only
    /// (the client reconnects for the next, as on Workers). `new_id` makes upload and image ids (a UUID,
    /// natively).
    pub async fn handle(
        &self,
        request: Request<Bytes>,
        now: SystemTime,
        new_id: &mut dyn FnMut() -> String,
    ) -> Response<Bytes> {
        let (parts, body) = request.into_parts();
        match self.admit(&parts, now) {
            Admission::Admitted(admitted) => self.respond(admitted, body, now, new_id).await,
            Admission::Answered(answer) => answer,
            Admission::Files(posted) => self.files_not_taken(posted),
            Admission::Events(mut events) => match self.open_events(&mut events, now).await {
                // One frame: its `retry:` has the client reconnect for the next.
                Ok((head, first)) => head.map(|_| first),
                Err(answer) => answer,
            },
        }
    }

    /// Decides all that a request's head decides, before its body is read: the CORS preflight,
    /// `/health` and the OpenAPI document (answered here), unknown routes (404) and methods
    /// (405 with `Allow`), the client address's limit on failed authentications (429), the API
    /// key (401), the key's rate limit (429) and a declared `Content-Length` over the limit
    /// (413; a job posted with its files has no such limit).
    pub fn admit(&self, parts: &http::request::Parts, now: SystemTime) -> Admission {
        let origin = parts.headers.get(header::ORIGIN).cloned();
        let form = parts.method == HttpMethod::POST && is_form_data(&parts.headers);
        let decided = if parts.method == HttpMethod::OPTIONS {
            let mut preflight = Response::new(Bytes::new());
            *preflight.status_mut() = StatusCode::NO_CONTENT;
            Err(preflight)
        } else {
            match self.admit_route(parts, form, now) {
                Ok(Decided::Health) => {
                    Err(json_response(StatusCode::OK, &json!({ "status": "ok" })))
                }
                Ok(Decided::OpenApi) => Err(json_response(StatusCode::OK, &openapi::document())),
                Ok(Decided::Authorized(route, scope)) => Ok((route, scope)),
                Err(e) => Err(e.into_response()),
            }
        };
        match decided {
            Ok((Route::JobEvents(job_id), scope)) => {
                Admission::Events(JobEvents::new(job_id, origin, scope))
            }
            Ok((Route::CreateJob, scope)) if form => Admission::Files(PostedJob {
                content_type: parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                origin,
                scope,
            }),
            Ok((route, scope)) => Admission::Admitted(Admitted {
                route,
                query: parts.uri.query().unwrap_or_default().to_owned(),
                origin,
                scope,
            }),
            Err(mut answer) => {
                self.cors(origin, answer.headers_mut());
                Admission::Answered(answer)
            }
        }
    }

    /// `form`: a `multipart/form-data` POST, whose length a job posted with its files may
    /// exceed the JSON limit by.
    fn admit_route(
        &self,
        parts: &http::request::Parts,
        form: bool,
        now: SystemTime,
    ) -> Result<Decided, ApiError> {
        let route = match match_route(&parts.method, parts.uri.path())? {
            Matched::Health => return Ok(Decided::Health),
            Matched::OpenApi => return Ok(Decided::OpenApi),
            Matched::Authorized(route) => route,
        };
        let posted_files = form && matches!(route, Route::CreateJob);
        let client = parts.extensions.get::<ClientAddr>().map(|c| c.0);
        let scope = self.authorize(&parts.headers, client, now)?;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if !posted_files && declared.is_some_and(|length| length > self.config.max_body_bytes) {
            return Err(ApiError::body_too_large(self.config.max_body_bytes));
        }
        Ok(Decided::Authorized(route, scope))
    }

    /// Answers an admitted request with its body.
    pub async fn respond(
        &self,
        admitted: Admitted,
        body: Bytes,
        now: SystemTime,
        new_id: &mut dyn FnMut() -> String,
    ) -> Response<Bytes> {
        let Admitted {
            route,
            query,
            origin,
            scope,
        } = admitted;
        let scope = &scope;
        let answered = if body.len() > self.config.max_body_bytes {
            Err(ApiError::body_too_large(self.config.max_body_bytes))
        } else {
            match route {
                Route::CreateUpload => self.create_upload(&body, scope, now, new_id).await,
                Route::CompleteUpload(id) => self.complete_upload(&id, scope, now).await,
                Route::Search => self.search(&query, scope).await,
                Route::Image(id) => self.image(&id, scope, now).await,
                Route::Jobs => self.jobs(&query, scope).await,
                Route::CreateJob => self.create_job(&body, scope).await,
                Route::Job(id) => self.job(&id, scope, now).await,
                Route::JobAction(id, action) => self.job_action(&id, action, scope).await,
                // admit hands these out as Admission::Events.
                Route::JobEvents(id) => self.job(&id, scope, now).await,
                Route::CreateWebhook => self.create_webhook(&body, scope).await,
                Route::Deliveries => self.deliveries(&query, scope).await,
                Route::Replay(id) => self.replay(&id, scope).await,
            }
        };
        let mut response = answered.unwrap_or_else(ApiError::into_response);
        self.cors(origin, response.headers_mut());
        response
    }

    pub(crate) fn cors(&self, origin: Option<HeaderValue>, headers: &mut HeaderMap) {
        let Some(origin) = origin else { return };
        let allowed = self
            .config
            .cors_origins
            .iter()
            .any(|o| o == "*" || origin.to_str().is_ok_and(|v| v.eq_ignore_ascii_case(o)));
        if !allowed {
            return;
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(CORS_MAX_AGE.as_secs()),
        );
    }

    /// Bearer API key, compared by SHA-256; then the key's token bucket. A client address
    /// whose failed authentications spent its bucket is refused (429) whatever key it sends.
    /// Answers the projects the key reaches.
    fn authorize(
        &self,
        headers: &HeaderMap,
        client: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<KeyScope, ApiError> {
        let now_s = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // A request without a key guesses nothing: it is told so, and spends no failure.
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "send `Authorization: Bearer <API key>`",
            ));
        };
        let mut failures = self.auth_failures.borrow_mut();
        if let Some(bucket) = failures.get(&client)
            && let Err(wait_s) = bucket.peek(now_s)
        {
            return Err(ApiError::rate_limited(wait_s));
        }
        let hash = api_key_hash(token.trim());
        let Some(grant) = self.config.api_keys.iter().find(|grant| grant.hash == hash) else {
            if failures.len() >= MAX_TRACKED_CLIENTS {
                failures.retain(|_, bucket| !bucket.is_full(now_s));
            }
            // The failure spends a token; once none is left, the next attempt is refused.
            let bucket = failures.entry(client).or_insert_with(|| {
                TokenBucket::new(AUTH_FAILURE_BURST, AUTH_FAILURES_PER_SECOND, now_s)
            });
            let _spent = bucket.try_take(now_s);
            return Err(ApiError::new(ErrorCode::Unauthorized, "unknown API key"));
        };
        drop(failures);
        let mut buckets = self.buckets.borrow_mut();
        let bucket = buckets.entry(grant.hash.clone()).or_insert_with(|| {
            TokenBucket::new(self.config.rate_burst, self.config.rate_per_second, now_s)
        });
        bucket.try_take(now_s).map_err(ApiError::rate_limited)?;
        Ok(grant.scope.clone())
    }

    fn presign(
        &self,
        method: Method,
        key: &str,
        headers: &[(&str, &str)],
        expires_in: std::time::Duration,
        now: SystemTime,
    ) -> Result<PresignedRequest, ApiError> {
        self.config
            .storage
            .presign(method, key, headers, expires_in, now)
            .map_err(|e| ApiError::internal("presign", &e))
    }

    async fn create_upload(
        &self,
        body: &[u8],
        scope: &KeyScope,
        now: SystemTime,
        new_id: &mut dyn FnMut() -> String,
    ) -> ApiResult {
        let request: UploadRequest = serde_json::from_slice(body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("request body: {e}")))?;
        if let Ok(project) = Project::new(&request.project) {
            reach(scope, &project)?;
        }
        let today = chrono::DateTime::<chrono::Utc>::from(now).date_naive();
        let mut image_id = || ImageId::new(new_id()).expect("hosts make ids in [a-z0-9-]");
        let manifests = plan_upload(&request, &self.config.policy, &mut image_id, today)
            .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
        let upload_id = new_id();
        let expires_at = unix_s(now + self.config.policy.expires_in);
        self.store
            .create_upload(
                &upload_id,
                &request.project,
                &manifests,
                unix_s(now),
                expires_at,
            )
            .await?;
        tracing::info!(
            upload_id,
            project = request.project,
            images = manifests.len(),
            "upload planned"
        );
        let mut objects = Vec::new();
        for manifest in &manifests {
            for object in &manifest.objects {
                let headers = object.put_headers();
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let request = self.presign(
                    Method::Put,
                    &object.key,
                    &headers,
                    self.config.policy.expires_in,
                    now,
                )?;
                objects.push(UploadTarget {
                    image_id: manifest.image_id.to_string(),
                    kind: object.kind,
                    key: object.key.clone(),
                    request,
                });
            }
        }
        Ok(json_response(
            StatusCode::CREATED,
            &UploadCreated { upload_id, objects },
        ))
    }

    async fn complete_upload(
        &self,
        upload_id: &str,
        scope: &KeyScope,
        now: SystemTime,
    ) -> ApiResult {
        let upload = self.store.upload(upload_id).await?.ok_or_else(|| {
            ApiError::new(ErrorCode::UploadNotFound, format!("no upload {upload_id}"))
        })?;
        reach_name(scope, &upload.project)?;
        if !upload.completed {
            self.verify_objects(&upload.manifests, now).await?;
            for manifest in &upload.manifests {
                self.put_sidecar(manifest, now).await?;
            }
            self.store.complete_upload(upload_id, unix_s(now)).await?;
        }
        let job_id = match upload.job_id {
            Some(job_id) => job_id,
            None => {
                let job_id = self.trigger_job(upload_id, &upload).await?;
                if !self.store.set_job(upload_id, &job_id).await? {
                    // A concurrent completion triggered first; report the recorded job.
                    let row = self.store.upload(upload_id).await?;
                    row.and_then(|r| r.job_id).unwrap_or(job_id)
                } else {
                    job_id
                }
            }
        };
        let images: Vec<String> = upload
            .manifests
            .iter()
            .map(|m| m.image_id.to_string())
            .collect();
        tracing::info!(
            upload_id,
            job_id,
            project = upload.project,
            images = images.len(),
            "upload completed"
        );
        Ok(json_response(
            StatusCode::OK,
            &UploadCompleted {
                upload_id: upload_id.to_owned(),
                job_id,
                images,
            },
        ))
    }

    /// Signed HEAD of every object, judged by [`check_stored`].
    async fn verify_objects(
        &self,
        manifests: &[Manifest],
        now: SystemTime,
    ) -> Result<(), ApiError> {
        let mut problems = Vec::new();
        for object in manifests.iter().flat_map(|m| &m.objects) {
            // Signed in headers, so that `x-amz-checksum-mode` is signed too (a presigned URL
            // leaves it out, which SeaweedFS refuses).
            let head = self
                .config
                .storage
                .sign(
                    Method::Head,
                    &object.key,
                    &[("x-amz-checksum-mode", "ENABLED")],
                    now,
                )
                .map_err(|e| ApiError::internal("sign", &e))?;
            let mut request = Request::builder().method(HttpMethod::HEAD).uri(&head.url);
            for (name, value) in &head.headers {
                request = request.header(name, value);
            }
            let request = request.body(Vec::new()).expect("valid request");
            let response = self.outbound.send(request).await?;
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
            let stored = match response.status() {
                StatusCode::NOT_FOUND => None,
                s if s.is_success() => Some(StoredObject {
                    size_bytes: header("content-length").and_then(|v| v.parse().ok()),
                    sha256_base64: header("x-amz-checksum-sha256"),
                }),
                s => {
                    return Err(ApiError::internal(
                        "HEAD",
                        &format!("{} answered {s}", object.key),
                    ));
                }
            };
            if let Err(problem) = check_stored(object, stored) {
                problems.push(ObjectProblem {
                    key: object.key.clone(),
                    problem: problem.to_string(),
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ApiError::objects_not_uploaded(problems))
        }
    }

    async fn put_sidecar(&self, manifest: &Manifest, now: SystemTime) -> Result<(), ApiError> {
        let body = serde_json::to_vec_pretty(manifest).expect("manifests serialise");
        let put = self.presign(
            Method::Put,
            &manifest.metadata_key,
            &[("content-type", "application/json")],
            VERIFY_URL_LIFETIME,
            now,
        )?;
        let request = Request::builder()
            .method(HttpMethod::PUT)
            .uri(&put.url)
            .header("content-type", "application/json")
            .body(body)
            .expect("valid request");
        let response = self.outbound.send(request).await?;
        if !response.status().is_success() {
            return Err(ApiError::internal(
                "sidecar PUT",
                &format!("{} answered {}", manifest.metadata_key, response.status()),
            ));
        }
        Ok(())
    }

    async fn trigger_job(&self, upload_id: &str, upload: &UploadRow) -> Result<String, ApiError> {
        let project = Project::new(upload.project.as_str())
            .map_err(|e| ApiError::internal("stored upload", &e))?;
        let request = JobRequest::for_upload(upload_id, &project, &upload.manifests);
        match self.jobs.create(&request).await {
            Ok(Created::Done { job, .. }) => Ok(job.job_id.to_string()),
            Ok(Created::WebhookRefused(message)) => Err(ApiError::internal(
                "job trigger",
                &format!("an upload's job has no webhook, yet one was refused: {message}"),
            )),
            Err(e) => {
                log_error("job trigger", &e);
                Err(ApiError::new(
                    ErrorCode::JobTriggerFailed,
                    "the batch backend did not accept the job; complete again to retry",
                ))
            }
        }
    }

    async fn search(&self, query: &str, scope: &KeyScope) -> ApiResult {
        let mut query = parse_image_query(form_urlencoded::parse(query.as_bytes()))
            .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
        let projects = scope
            .search_projects(query.project.as_ref())
            .map_err(|e| ApiError::new(ErrorCode::Forbidden, e.to_string()))?;
        let rows = match projects {
            None => self.store.search(&query).await?,
            Some(projects) => {
                let mut pages = Vec::with_capacity(projects.len());
                for project in projects {
                    query.project = Some(project);
                    pages.push(self.store.search(&query).await?);
                }
                merge_pages(pages, query.limit)
            }
        };
        let (images, cursor) = cut_page(rows, query.limit);
        let next_cursor = cursor.map(|c| c.encode());
        Ok(json_response(
            StatusCode::OK,
            &SearchPage {
                images,
                next_cursor,
            },
        ))
    }

    async fn image(&self, image_id: &str, scope: &KeyScope, now: SystemTime) -> ApiResult {
        let manifest = self.store.image(image_id).await?.ok_or_else(|| {
            ApiError::new(ErrorCode::ImageNotFound, format!("no image {image_id}"))
        })?;
        reach(scope, &manifest.project)?;
        let mut downloads = BTreeMap::new();
        for object in &manifest.objects {
            let get = self.presign(
                Method::Get,
                &object.key,
                &[],
                self.config.get_expires_in,
                now,
            )?;
            downloads.insert(
                object.key.clone(),
                Download {
                    url: get.url,
                    expires_at: unix_s(get.expires_at),
                },
            );
        }
        Ok(json_response(
            StatusCode::OK,
            &ImageAnswer {
                image: manifest,
                downloads,
            },
        ))
    }

    /// One page of jobs.
    async fn jobs(&self, query: &str, scope: &KeyScope) -> ApiResult {
        let mut query = parse_job_query(form_urlencoded::parse(query.as_bytes()))
            .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
        query.project = list_project(scope, query.project.as_ref())?;
        match self.jobs.list(&query).await {
            Ok(page) => Ok(json_response(StatusCode::OK, &page)),
            Err(e) => {
                log_error("job list", &e);
                Err(ApiError::new(
                    ErrorCode::JobStatusUnavailable,
                    "the batch backend did not list the jobs; try again",
                ))
            }
        }
    }

    /// `POST /v1/jobs`: a job of recorded images named by id, by upload or by a search
    /// ([`CreateJob`]), created on the batch backend; 201 with its status.
    /// The answer to a job posted with its files on a host that does not store them (Workers):
    /// 400 `content_type`, naming the ways that work there.
    #[must_use]
    pub fn files_not_taken(&self, posted: PostedJob) -> Response<Bytes> {
        self.posted_job_refused(
            posted,
            ErrorCode::ContentType,
            "this host does not take a job's files in the request: upload them \
             (POST /v1/uploads) and name them in a JSON body (image_ids, upload_ids or \
             search), or post them to a native host (tessera edge, tessera up)",
        )
    }

    /// Refuses a posted job whose form itself is wrong (no project, a malformed body), with
    /// `code` and `message`.
    #[must_use]
    pub fn posted_job_refused(
        &self,
        posted: PostedJob,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Response<Bytes> {
        let mut answer = ApiError::new(code, message).into_response();
        self.cors(posted.origin, answer.headers_mut());
        answer
    }

    /// Creates the job of a posted form's stored files (`request`), reporting the files left
    /// out: 201 [`JobPosted`]; 400 `job_inputs` naming each refusal when no file could be an
    /// input; 502 `job_trigger_failed` when the batch backend did not accept the job.
    pub async fn create_posted_job(
        &self,
        posted: PostedJob,
        request: &JobRequest,
        refused: Vec<RefusedFile>,
    ) -> Response<Bytes> {
        if request.inputs.is_empty() {
            let reasons: Vec<String> = refused.iter().map(ToString::to_string).collect();
            let message = if reasons.is_empty() {
                format!("the form has no {FORM_FILES} part: a job needs at least one file")
            } else {
                format!("no posted file can be a job input: {}", reasons.join("; "))
            };
            return self.posted_job_refused(posted, ErrorCode::JobInputs, message);
        }
        let mut answer = match self.jobs.create(request).await {
            Ok(Created::Done { job, webhook }) => json_response(
                StatusCode::CREATED,
                &JobPosted {
                    job: *job,
                    refused,
                    webhook,
                },
            ),
            Ok(Created::WebhookRefused(message)) => {
                ApiError::new(ErrorCode::Webhook, message).into_response()
            }
            Err(e) => {
                log_error("job creation", &e);
                ApiError::new(
                    ErrorCode::JobTriggerFailed,
                    "the batch backend did not accept the job; post it again",
                )
                .into_response()
            }
        };
        self.cors(posted.origin, answer.headers_mut());
        answer
    }

    async fn create_job(&self, body: &[u8], scope: &KeyScope) -> ApiResult {
        let request: CreateJob = serde_json::from_slice(body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("request body: {e}")))?;
        let refused = |e: JobInputsError| ApiError::new(e.code(), e.to_string());
        let (project, selection) = request
            .selection(self.config.max_job_inputs)
            .map_err(refused)?;
        reach(scope, &project)?;
        // The URL's form is checked here; the batch backend checks it again, knowing whether
        // local addresses are allowed, and resolves its host.
        let webhook = request
            .webhook(&project, true)
            .map_err(|e| ApiError::new(ErrorCode::Webhook, e.to_string()))?;
        let manifests = self.job_inputs(&project, selection).await?;
        let job = JobRequest {
            webhook,
            ..JobRequest::for_images(&project, &manifests)
        };
        match self.jobs.create(&job).await {
            Ok(Created::Done { job, webhook }) => Ok(json_response(
                StatusCode::CREATED,
                &JobPosted {
                    job: *job,
                    refused: Vec::new(),
                    webhook,
                },
            )),
            Ok(Created::WebhookRefused(message)) => Err(ApiError::new(ErrorCode::Webhook, message)),
            Err(e) => {
                log_error("job creation", &e);
                Err(ApiError::new(
                    ErrorCode::JobTriggerFailed,
                    "the batch backend did not accept the job; try again",
                ))
            }
        }
    }

    /// The records `selection` names in `project`, in its order.
    ///
    /// # Errors
    /// `inputs_not_found` (404) listing ids with no record in the project (an image of
    /// another project is not found either) or uploads not completed; `job_inputs` (400) for
    /// more images than the configured count ([`Config::max_job_inputs`]).
    async fn job_inputs(
        &self,
        project: &Project,
        selection: JobSelection,
    ) -> Result<Vec<Manifest>, ApiError> {
        let max = self.config.max_job_inputs;
        let too_many = |what, count| {
            let e = JobInputsError::TooMany { what, count, max };
            ApiError::new(e.code(), e.to_string())
        };
        let mut missing = Vec::new();
        let mut manifests = Vec::new();
        match selection {
            JobSelection::Images(ids) => {
                let mut found = HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(IMAGES_PER_CALL) {
                    for manifest in self.store.images(chunk).await? {
                        found.insert(manifest.image_id.as_str().to_owned(), manifest);
                    }
                }
                for id in ids {
                    match found.remove(&id) {
                        Some(m) if m.project == *project => manifests.push(m),
                        _ => missing.push(id),
                    }
                }
            }
            JobSelection::Uploads(ids) => {
                for id in ids {
                    match self.store.upload(&id).await? {
                        Some(u) if u.project == project.as_str() && u.completed => {
                            manifests.extend(u.manifests);
                        }
                        Some(u) if u.project == project.as_str() => {
                            missing.push(format!("{id} (not completed)"));
                        }
                        _ => missing.push(id),
                    }
                    if manifests.len() > max {
                        return Err(too_many("upload_ids", manifests.len()));
                    }
                }
            }
            JobSelection::Search(mut query) => loop {
                let rows = self.store.search(&query).await?;
                let (page, cursor) = cut_page(rows, query.limit);
                manifests.extend(page);
                if manifests.len() > max {
                    return Err(too_many("the search", manifests.len()));
                }
                match cursor {
                    Some(cursor) => query.cursor = Some(cursor),
                    None if manifests.is_empty() => {
                        let e = JobInputsError::NothingFound(project.to_string());
                        return Err(ApiError::new(e.code(), e.to_string()));
                    }
                    None => break,
                }
            },
        }
        if !missing.is_empty() {
            const LISTED: usize = 20;
            let mut listed = missing[..missing.len().min(LISTED)].join(", ");
            if missing.len() > LISTED {
                listed.push_str(&format!(" and {} more", missing.len() - LISTED));
            }
            return Err(ApiError::new(
                ErrorCode::InputsNotFound,
                format!(
                    "{} of the named inputs have no record in project {project}: {listed}",
                    missing.len()
                ),
            ));
        }
        Ok(manifests)
    }

    /// `POST /v1/webhooks`: 201 with the endpoint and its secret, or 400 `webhook`.
    async fn create_webhook(&self, body: &[u8], scope: &KeyScope) -> ApiResult {
        let request: CreateWebhook = serde_json::from_slice(body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("request body: {e}")))?;
        if let Ok(project) = Project::new(&request.project) {
            reach(scope, &project)?;
        }
        match self.jobs.create_webhook(&request).await {
            Ok(Registered::Done(endpoint)) => Ok(json_response(StatusCode::CREATED, &endpoint)),
            Ok(Registered::Refused(message)) => Err(ApiError::new(ErrorCode::Webhook, message)),
            Err(e) => Err(backend_failed("webhook registration", &e)),
        }
    }

    /// `GET /v1/webhooks/deliveries?project=&state=&limit=`.
    async fn deliveries(&self, query: &str, scope: &KeyScope) -> ApiResult {
        let mut query = parse_delivery_query(form_urlencoded::parse(query.as_bytes()))
            .map_err(|e| ApiError::new(ErrorCode::Webhook, e.to_string()))?;
        query.project = list_project(scope, query.project.as_ref())?;
        match self.jobs.deliveries(&query).await {
            Ok(page) => Ok(json_response(StatusCode::OK, &page)),
            Err(e) => Err(backend_failed("webhook deliveries", &e)),
        }
    }

    /// `POST /v1/webhooks/deliveries/{id}/replay`: 200 with the delivery, pending again.
    async fn replay(&self, delivery_id: &str, scope: &KeyScope) -> ApiResult {
        let not_found = || {
            ApiError::new(
                ErrorCode::DeliveryNotFound,
                format!("no webhook delivery {delivery_id}"),
            )
        };
        match self.jobs.delivery(delivery_id).await {
            Ok(Some(delivery)) => reach_name(scope, &delivery.project)?,
            Ok(None) => return Err(not_found()),
            Err(e) => return Err(backend_failed("webhook delivery", &e)),
        }
        match self.jobs.replay(delivery_id).await {
            Ok(Some(delivery)) => Ok(json_response(StatusCode::OK, &delivery)),
            Ok(None) => Err(ApiError::new(
                ErrorCode::DeliveryNotFound,
                format!("no webhook delivery {delivery_id}"),
            )),
            Err(e) => Err(backend_failed("webhook replay", &e)),
        }
    }

    /// Cancels or retries a job.
    async fn job_action(&self, job_id: &str, action: JobAction, scope: &KeyScope) -> ApiResult {
        let not_found = || ApiError::new(ErrorCode::JobNotFound, format!("no job {job_id}"));
        reach(scope, &self.job_status(job_id).await?.project)?;
        let job_id = JobId::new(job_id).map_err(|_| not_found())?;
        match self.jobs.act(&job_id, action).await {
            Ok(Acted::Done(job)) => Ok(json_response(StatusCode::OK, &job)),
            Ok(Acted::NotFound) => Err(not_found()),
            Ok(Acted::Conflict(message)) => {
                Err(ApiError::new(ErrorCode::JobStateConflict, message))
            }
            Err(e) => {
                log_error("job action", &e);
                Err(ApiError::new(
                    ErrorCode::JobStatusUnavailable,
                    "the batch backend did not answer; try again",
                ))
            }
        }
    }

    /// The job, its results as presigned GET URLs valid for the configured GET lifetime.
    async fn job(&self, job_id: &str, scope: &KeyScope, now: SystemTime) -> ApiResult {
        let mut job = self.job_status(job_id).await?;
        reach(scope, &job.project)?;
        self.presign_results(&mut job, now)?;
        Ok(json_response(StatusCode::OK, &job))
    }

    /// The backend's status of `job_id`.
    ///
    /// # Errors
    /// `job_not_found` (404); `job_status_unavailable` (502) when the backend did not answer.
    pub(crate) async fn job_status(&self, job_id: &str) -> Result<JobStatus, ApiError> {
        let not_found = || ApiError::new(ErrorCode::JobNotFound, format!("no job {job_id}"));
        let job_id = JobId::new(job_id).map_err(|_| not_found())?;
        match self.jobs.status(&job_id).await {
            Ok(Some(job)) => Ok(job),
            Ok(None) => Err(not_found()),
            Err(e) => {
                log_error("job status", &e);
                Err(ApiError::new(
                    ErrorCode::JobStatusUnavailable,
                    "the batch backend did not report the job; try again",
                ))
            }
        }
    }

    /// Fills in a presigned GET URL, valid for the configured GET lifetime, for each result.
    pub(crate) fn presign_results(
        &self,
        job: &mut JobStatus,
        now: SystemTime,
    ) -> Result<(), ApiError> {
        for result in job.results.objects_mut() {
            let get = self.presign(
                Method::Get,
                &result.key,
                &[],
                self.config.get_expires_in,
                now,
            )?;
            result.url = Some(get.url);
            result.expires_at = Some(unix_s(get.expires_at));
        }
        Ok(())
    }
}

/// Unix seconds of `t` (0 before 1970).
/// 403 `forbidden` unless the key reaches `project`.
pub(crate) fn reach(scope: &KeyScope, project: &Project) -> Result<(), ApiError> {
    if scope.allows(project) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            ScopeError::Forbidden(project.clone()).to_string(),
        ))
    }
}

/// [`reach`] for a project name as a record stores it.
fn reach_name(scope: &KeyScope, project: &str) -> Result<(), ApiError> {
    match Project::new(project) {
        Ok(project) => reach(scope, &project),
        // A stored name is always valid; an invalid one is nobody's.
        Err(_) => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this API key does not reach project {project:?}"),
        )),
    }
}

/// The project a list is limited to ([`KeyScope::list_project`]): 403 for a project the key
/// does not reach, 400 `invalid_parameter` when a key of several projects names none.
fn list_project(scope: &KeyScope, named: Option<&Project>) -> Result<Option<Project>, ApiError> {
    scope.list_project(named).map_err(|e| {
        let code = match e {
            ScopeError::Forbidden(_) => ErrorCode::Forbidden,
            ScopeError::NameAProject => ErrorCode::InvalidParameter,
        };
        ApiError::new(code, e.to_string())
    })
}

/// The answer when the batch backend failed a webhook request: 502, logged.
fn backend_failed(context: &str, error: &JobsError) -> ApiError {
    log_error(context, error);
    ApiError::new(
        ErrorCode::JobStatusUnavailable,
        "the batch backend did not answer; try again",
    )
}

fn unix_s(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
