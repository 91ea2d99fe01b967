//! # tessera-edge
//!
//! Tessera's public HTTP API, one router for two hosts: the Cloudflare Workers runtime and the
//! native tokio host of the local stack ([`native`]). [`Edge::handle`] takes an
//! `http::Request` and returns an `http::Response`; everything the router needs from its host
//! (the metadata [`Store`], [`Outbound`] HTTP, the batch backend's [`Jobs`], the clock and ids)
//! is passed in, and every rule comes from [`tessera_core`].
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | liveness, no auth |
//! | `GET /v1/openapi.json` | this API's OpenAPI 3.1 document ([`openapi::document`]), no auth |
//! | `POST /v1/uploads` | validate manifests, decide keys, presign one PUT per object |
//! | `POST /v1/uploads/{id}/complete` | HEAD-verify every object, write sidecars, record, trigger a job; idempotent |
//! | `GET /v1/images?project=&from=&to=&bbox=&limit=&cursor=` | search by date and place, keyset-paginated |
//! | `GET /v1/images/{id}` | one record with short-lived presigned GET URLs |
//! | `GET /v1/jobs/{id}` | the batch job's status ([`tessera_core::job::JobStatus`]) |
//!
//! Errors are JSON `{code, message}`: 4xx with a stable `code` for the client's mistakes, 5xx
//! logged with details and answered without them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method as HttpMethod, Request, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tessera_core::Manifest;
use tessera_core::access::{TokenBucket, api_key_hash};
use tessera_core::job::JobRequest;
use tessera_core::keys::{ImageId, JobId, Project};
use tessera_core::presign::{Addressing, Method, PresignedRequest, StorageTarget};
use tessera_core::search::{ImageQuery, SearchCursor, parse_image_query};
use tessera_core::upload::{UploadPolicy, UploadRequest, plan_upload};
use utoipa::ToSchema;

pub use crate::jobs::{HttpJobs, Jobs, JobsError};

pub mod jobs;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod openapi;
#[cfg(not(target_arch = "wasm32"))]
pub mod sqlite;
#[cfg(target_arch = "wasm32")]
mod workers;

/// The SQL migrations, in order: applied to D1 by wrangler and to SQLite by [`sqlite`].
pub const MIGRATIONS: &[(&str, &str)] =
    &[("0001_init.sql", include_str!("../migrations/0001_init.sql"))];

/// The SQL both stores run (D1 and SQLite), with `?N` parameters only.
pub(crate) mod sql {
    pub(crate) const INSERT_UPLOAD: &str =
        "INSERT INTO uploads (upload_id, project, manifests, created_at) VALUES (?1, ?2, ?3, ?4)";
    pub(crate) const UPLOAD: &str = "SELECT project, manifests, completed_at IS NOT NULL AS completed, job_id \
         FROM uploads WHERE upload_id = ?1";
    pub(crate) const MARK_COMPLETED: &str =
        "UPDATE uploads SET completed_at = ?2 WHERE upload_id = ?1 AND completed_at IS NULL";
    /// Idempotent: an image already recorded is left as it is.
    pub(crate) const INSERT_IMAGE: &str = "INSERT OR IGNORE INTO images \
         (image_id, project, upload_id, acquired_on, latitude, longitude, manifest) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    pub(crate) const SET_JOB: &str =
        "UPDATE uploads SET job_id = ?2 WHERE upload_id = ?1 AND job_id IS NULL";
    pub(crate) const IMAGE: &str = "SELECT manifest FROM images WHERE image_id = ?1";
    /// Images, keyset-paginated on (acquired_on, image_id). A NULL parameter disables its
    /// filter. ?4..?7 is the bounding box; min_lon > max_lon crosses the antimeridian.
    pub(crate) const SEARCH: &str = "
SELECT manifest FROM images
WHERE (?1 IS NULL OR project = ?1)
  AND (?2 IS NULL OR acquired_on >= ?2)
  AND (?3 IS NULL OR acquired_on <= ?3)
  AND (?4 IS NULL OR (
        latitude BETWEEN ?5 AND ?7
        AND CASE WHEN ?4 <= ?6 THEN longitude BETWEEN ?4 AND ?6
                 ELSE (longitude >= ?4 OR longitude <= ?6) END))
  AND (?8 IS NULL OR acquired_on > ?8 OR (acquired_on = ?8 AND image_id > ?9))
ORDER BY acquired_on, image_id
LIMIT ?10";
}

/// Everything the edge is configured with. See the README for the environment variables.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where objects live and the credentials to presign for them.
    pub storage: StorageTarget,
    /// Upload limits and URL validity.
    pub policy: UploadPolicy,
    /// Validity of the GET URLs in `GET /v1/images/{id}`.
    pub get_expires_in: Duration,
    /// SHA-256 hex of each accepted API key ([`api_key_hash`]).
    pub api_key_hashes: Vec<String>,
    /// Origins allowed by CORS, e.g. `http://127.0.0.1:8080`; `*` allows any.
    pub cors_origins: Vec<String>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Per-key burst size.
    pub rate_burst: f64,
    /// Per-key sustained requests per second.
    pub rate_per_second: f64,
}

/// Where a deployed edge finds the batch backend's job API ([`HttpJobs`]).
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Jobs are created with `POST {url}/v1/jobs` and read with `GET {url}/v1/jobs/{id}`.
    pub url: String,
    /// Sent as `Authorization: Bearer {token}`.
    pub token: String,
}

impl BackendConfig {
    /// Reads `TESSERA_BACKEND_URL` and `TESSERA_BACKEND_TOKEN` through `lookup`.
    ///
    /// # Errors
    /// Names the missing variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| lookup(name).ok_or_else(|| format!("{name} is not set"));
        Ok(Self {
            url: var("TESSERA_BACKEND_URL")?,
            token: var("TESSERA_BACKEND_TOKEN")?,
        })
    }
}

impl Config {
    /// Reads the configuration through `lookup` (environment variables natively, vars and
    /// secrets on Workers): `TESSERA_S3_ENDPOINT`, `TESSERA_S3_BUCKET`, `TESSERA_S3_REGION`
    /// (default `us-east-1`), `TESSERA_S3_ADDRESSING` (`path` or `virtual-host`, default
    /// `path`), `TESSERA_S3_ACCESS_KEY_ID`, `TESSERA_S3_SECRET_ACCESS_KEY`,
    /// `TESSERA_API_KEY_HASHES` (comma-separated SHA-256 hex), `TESSERA_CORS_ORIGINS`
    /// (comma-separated), and optional
    /// `TESSERA_MAX_BODY_BYTES` (default 1 MiB), `TESSERA_RATE_BURST` (60),
    /// `TESSERA_RATE_PER_SECOND` (10).
    ///
    /// # Errors
    /// Names the missing or malformed variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| lookup(name).ok_or_else(|| format!("{name} is not set"));
        let or = |name: &str, default: &str| lookup(name).unwrap_or_else(|| default.to_owned());
        let number = |name: &str, default: &str| {
            or(name, default)
                .parse::<f64>()
                .map_err(|_| format!("{name} must be a number"))
        };
        let list = |name: &str| -> Vec<String> {
            or(name, "")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let addressing = match or("TESSERA_S3_ADDRESSING", "path").as_str() {
            "path" => Addressing::Path,
            "virtual-host" => Addressing::VirtualHost,
            other => {
                return Err(format!(
                    "TESSERA_S3_ADDRESSING is {other:?}; use path or virtual-host"
                ));
            }
        };
        let max_body_bytes = number("TESSERA_MAX_BODY_BYTES", "1048576")?;
        Ok(Self {
            storage: StorageTarget {
                endpoint: var("TESSERA_S3_ENDPOINT")?,
                bucket: var("TESSERA_S3_BUCKET")?,
                region: or("TESSERA_S3_REGION", "us-east-1"),
                addressing,
                access_key_id: var("TESSERA_S3_ACCESS_KEY_ID")?,
                secret_access_key: var("TESSERA_S3_SECRET_ACCESS_KEY")?,
            },
            policy: UploadPolicy::default(),
            get_expires_in: Duration::from_secs(300),
            api_key_hashes: list("TESSERA_API_KEY_HASHES"),
            cors_origins: list("TESSERA_CORS_ORIGINS"),
            // A byte count: truncation of a fractional or huge value is harmless.
            max_body_bytes: max_body_bytes as usize,
            rate_burst: number("TESSERA_RATE_BURST", "60")?,
            rate_per_second: number("TESSERA_RATE_PER_SECOND", "10")?,
        })
    }
}

/// A failure of the host's storage layer; logged, answered as 500.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

/// One stored upload.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRow {
    /// The project.
    pub project: String,
    /// The planned manifests.
    pub manifests: Vec<Manifest>,
    /// Whether `complete` has recorded it.
    pub completed: bool,
    /// The triggered job, once there is one.
    pub job_id: Option<String>,
}

/// The metadata store: D1 on Workers, SQLite natively, same SQL ([`MIGRATIONS`]).
pub trait Store {
    /// Records a planned upload.
    fn create_upload(
        &self,
        upload_id: &str,
        project: &str,
        manifests: &[Manifest],
        now_s: u64,
    ) -> impl Future<Output = Result<(), HostError>>;
    /// One upload, if it exists.
    fn upload(&self, upload_id: &str)
    -> impl Future<Output = Result<Option<UploadRow>, HostError>>;
    /// Inserts the images and marks the upload completed, atomically. `Ok(false)` when it was
    /// already completed (nothing is written twice).
    fn complete_upload(
        &self,
        upload_id: &str,
        now_s: u64,
    ) -> impl Future<Output = Result<bool, HostError>>;
    /// Sets the job of a completed upload if it has none; `Ok(false)` if it had one.
    fn set_job(
        &self,
        upload_id: &str,
        job_id: &str,
    ) -> impl Future<Output = Result<bool, HostError>>;
    /// Images matching the query, ordered by (date, id), at most `query.limit + 1`.
    fn search(&self, query: &ImageQuery) -> impl Future<Output = Result<Vec<Manifest>, HostError>>;
    /// One image's record.
    fn image(&self, image_id: &str) -> impl Future<Output = Result<Option<Manifest>, HostError>>;
}

/// Outgoing HTTP: `fetch` on Workers, reqwest natively.
pub trait Outbound {
    /// Sends a request and returns the whole response; `Err` only for transport failures.
    fn send(
        &self,
        request: Request<Vec<u8>>,
    ) -> impl Future<Output = Result<Response<Vec<u8>>, HostError>>;
}

/// The router with its host's parts. One per process (natively) or isolate (Workers); the rate
/// limiter's buckets live here, so on Workers the limit is per isolate.
pub struct Edge<S, O, J> {
    config: Config,
    store: S,
    outbound: O,
    jobs: J,
    buckets: RefCell<HashMap<String, TokenBucket>>,
}

/// An API error: status, stable code, human message.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Vec<ObjectProblem>>,
    retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after_s: None,
        }
    }

    fn body_too_large(max_body_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body is over the limit of {max_body_bytes} bytes"),
        )
    }

    fn into_response(self) -> Response<Bytes> {
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
            objects: self.details,
        };
        let mut response = json_response(self.status, &body);
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        log_error(context, error);
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        Self::internal("store", &e)
    }
}

type ApiResult = Result<Response<Bytes>, ApiError>;

/// Logs a failure whose details never reach the client.
fn log_error(context: &str, error: &dyn std::fmt::Display) {
    eprintln!("tessera-edge: {context}: {error}");
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Bytes> {
    let body = serde_json::to_vec(body).expect("API bodies serialise");
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn unix_s(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One object to upload, in the answer to `POST /v1/uploads`: PUT the bytes to `url` with
/// exactly `headers`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadTarget {
    /// The image the object belongs to.
    pub image_id: String,
    /// Which object.
    pub kind: tessera_core::ObjectKind,
    /// Its key in storage.
    pub key: String,
    /// The presigned PUT.
    #[serde(flatten)]
    pub request: PresignedRequest,
}

/// `201` answer to `POST /v1/uploads`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadCreated {
    /// Pass to `POST /v1/uploads/{id}/complete` once every object is stored.
    pub upload_id: String,
    /// Six per image: original, processed, augmented 90/180/270/360.
    pub objects: Vec<UploadTarget>,
}

/// `200` answer to `POST /v1/uploads/{id}/complete` (the same every time it is called).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadCompleted {
    /// The upload.
    pub upload_id: String,
    /// The batch job it triggered; poll `GET /v1/jobs/{job_id}`.
    pub job_id: String,
    /// The recorded images.
    pub images: Vec<String>,
}

/// `200` answer to `GET /v1/images`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchPage {
    /// Records in (date, id) order.
    pub images: Vec<Manifest>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A presigned download.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Download {
    /// The presigned GET URL.
    pub url: String,
    /// Unix seconds after which the URL is refused.
    pub expires_at: u64,
}

/// `200` answer to `GET /v1/images/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageAnswer {
    /// The record (the metadata sidecar).
    pub image: Manifest,
    /// A presigned GET per object key.
    pub downloads: std::collections::BTreeMap<String, Download>,
}

/// A problem with one stored object, in a `409` from complete.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ObjectProblem {
    /// The object's key.
    pub key: String,
    /// `missing`, or what differs (size, sha256).
    pub problem: String,
}

/// Every error: a stable code and a human message; complete's `409` also lists the objects.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unauthorized`, `content_type`, `rate_limited`.
    pub code: String,
    /// What went wrong, in plain words.
    pub message: String,
    /// For `objects_not_uploaded`: each missing or differing object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<Vec<ObjectProblem>>,
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
        }
    }

    /// The answer to a request whose body is over `max_body_bytes`, for hosts that stop
    /// reading such a body before it reaches [`Edge::handle`].
    #[must_use]
    pub fn body_too_large(&self) -> Response<Bytes> {
        ApiError::body_too_large(self.config.max_body_bytes).into_response()
    }

    /// Answers one request at `now`; `new_id` makes upload and image ids (a UUID, natively).
    pub async fn handle(
        &self,
        request: Request<Bytes>,
        now: SystemTime,
        new_id: &mut dyn FnMut() -> String,
    ) -> Response<Bytes> {
        let origin = request.headers().get(header::ORIGIN).cloned();
        let mut response = if request.method() == HttpMethod::OPTIONS {
            let mut r = Response::new(Bytes::new());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        } else {
            match self.route(request, now, new_id).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        };
        self.cors(origin, response.headers_mut());
        response
    }

    fn cors(&self, origin: Option<HeaderValue>, headers: &mut HeaderMap) {
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
            HeaderValue::from_static("600"),
        );
    }

    async fn route(
        &self,
        request: Request<Bytes>,
        now: SystemTime,
        new_id: &mut dyn FnMut() -> String,
    ) -> ApiResult {
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = request.method().clone();
        if method == HttpMethod::GET {
            match segments.as_slice() {
                ["health"] => return Ok(json_response(StatusCode::OK, &json!({ "status": "ok" }))),
                ["v1", "openapi.json"] => {
                    return Ok(json_response(StatusCode::OK, &openapi::document()));
                }
                _ => {}
            }
        }
        self.authorize(request.headers(), now)?;
        if request.body().len() > self.config.max_body_bytes {
            return Err(ApiError::body_too_large(self.config.max_body_bytes));
        }
        match (method, segments.as_slice()) {
            (HttpMethod::POST, ["v1", "uploads"]) => {
                self.create_upload(request.body(), now, new_id).await
            }
            (HttpMethod::POST, ["v1", "uploads", id, "complete"]) => {
                self.complete_upload(id, now).await
            }
            (HttpMethod::GET, ["v1", "images"]) => {
                self.search(request.uri().query().unwrap_or_default()).await
            }
            (HttpMethod::GET, ["v1", "images", id]) => self.image(id, now).await,
            (HttpMethod::GET, ["v1", "jobs", id]) => self.job(id).await,
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route for {path}"),
            )),
        }
    }

    /// Bearer API key, compared by SHA-256; then the key's token bucket.
    fn authorize(&self, headers: &HeaderMap, now: SystemTime) -> Result<(), ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send `Authorization: Bearer <API key>`",
                )
            })?;
        let hash = api_key_hash(token.trim());
        if !self.config.api_key_hashes.contains(&hash) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown API key",
            ));
        }
        let now_s = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut buckets = self.buckets.borrow_mut();
        let bucket = buckets.entry(hash).or_insert_with(|| {
            TokenBucket::new(self.config.rate_burst, self.config.rate_per_second, now_s)
        });
        bucket.try_take(now_s).map_err(|wait_s| ApiError {
            retry_after_s: Some(wait_s.ceil() as u64),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry in {wait_s:.1} s"),
            )
        })
    }

    fn presign(
        &self,
        method: Method,
        key: &str,
        headers: &[(&str, &str)],
        expires_in: Duration,
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
        now: SystemTime,
        new_id: &mut dyn FnMut() -> String,
    ) -> ApiResult {
        let request: UploadRequest = serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("request body: {e}"),
            )
        })?;
        let today = chrono::DateTime::<chrono::Utc>::from(now).date_naive();
        let mut image_id = || ImageId::new(new_id()).expect("hosts make ids in [a-z0-9-]");
        let manifests = plan_upload(&request, &self.config.policy, &mut image_id, today)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
        let upload_id = new_id();
        self.store
            .create_upload(&upload_id, &request.project, &manifests, unix_s(now))
            .await?;
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

    async fn complete_upload(&self, upload_id: &str, now: SystemTime) -> ApiResult {
        let upload = self.store.upload(upload_id).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "upload_not_found",
                format!("no upload {upload_id}"),
            )
        })?;
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
        let images = upload
            .manifests
            .iter()
            .map(|m| m.image_id.to_string())
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &UploadCompleted {
                upload_id: upload_id.to_owned(),
                job_id,
                images,
            },
        ))
    }

    /// Signed HEAD of every object: present, the declared size, the declared SHA-256.
    async fn verify_objects(
        &self,
        manifests: &[Manifest],
        now: SystemTime,
    ) -> Result<(), ApiError> {
        let mut problems = Vec::new();
        for object in manifests.iter().flat_map(|m| &m.objects) {
            let head =
                self.presign(Method::Head, &object.key, &[], Duration::from_secs(60), now)?;
            let request = Request::builder()
                .method(HttpMethod::HEAD)
                .uri(&head.url)
                .header("x-amz-checksum-mode", "ENABLED")
                .body(Vec::new())
                .expect("valid request");
            let response = self.outbound.send(request).await?;
            let problem = match response.status() {
                StatusCode::NOT_FOUND => Some("missing".to_owned()),
                s if !s.is_success() => {
                    return Err(ApiError::internal(
                        "HEAD",
                        &format!("{} answered {s}", object.key),
                    ));
                }
                _ => {
                    let header =
                        |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
                    let size = header("content-length").and_then(|v| v.parse::<u64>().ok());
                    let checksum = header("x-amz-checksum-sha256");
                    if size != Some(object.size_bytes) {
                        Some(format!(
                            "size {} instead of {}",
                            size.map_or("unknown".into(), |s| s.to_string()),
                            object.size_bytes
                        ))
                    } else if checksum != Some(object.sha256.base64.as_str()) {
                        Some(format!(
                            "sha256 {} instead of {}",
                            checksum.unwrap_or("unknown"),
                            object.sha256.base64
                        ))
                    } else {
                        None
                    }
                }
            };
            if let Some(problem) = problem {
                problems.push(ObjectProblem {
                    key: object.key.clone(),
                    problem,
                });
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let mut error = ApiError::new(
            StatusCode::CONFLICT,
            "objects_not_uploaded",
            format!(
                "{} objects are missing or differ from what was declared",
                problems.len()
            ),
        );
        error.details = Some(problems);
        Err(error)
    }

    async fn put_sidecar(&self, manifest: &Manifest, now: SystemTime) -> Result<(), ApiError> {
        let body = serde_json::to_vec_pretty(manifest).expect("manifests serialise");
        let put = self.presign(
            Method::Put,
            &manifest.metadata_key,
            &[("content-type", "application/json")],
            Duration::from_secs(60),
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
            Ok(job) => Ok(job.job_id.to_string()),
            Err(e) => {
                log_error("job trigger", &e);
                Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "job_trigger_failed",
                    "the batch backend did not accept the job; complete again to retry",
                ))
            }
        }
    }

    async fn search(&self, query: &str) -> ApiResult {
        let query = parse_image_query(form_urlencoded::parse(query.as_bytes()))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
        let mut images = self.store.search(&query).await?;
        let next_cursor = if images.len() > query.limit as usize {
            images.truncate(query.limit as usize);
            images.last().map(|m| {
                SearchCursor {
                    date: m.date,
                    image_id: m.image_id.clone(),
                }
                .encode()
            })
        } else {
            None
        };
        Ok(json_response(
            StatusCode::OK,
            &SearchPage {
                images,
                next_cursor,
            },
        ))
    }

    async fn image(&self, image_id: &str, now: SystemTime) -> ApiResult {
        let manifest = self.store.image(image_id).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "image_not_found",
                format!("no image {image_id}"),
            )
        })?;
        let mut downloads = std::collections::BTreeMap::new();
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

    async fn job(&self, job_id: &str) -> ApiResult {
        let not_found = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "job_not_found",
                format!("no job {job_id}"),
            )
        };
        let job_id = JobId::new(job_id).map_err(|_| not_found())?;
        match self.jobs.status(&job_id).await {
            Ok(Some(job)) => Ok(json_response(StatusCode::OK, &job)),
            Ok(None) => Err(not_found()),
            Err(e) => {
                log_error("job status", &e);
                Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "job_status_unavailable",
                    "the batch backend did not report the job; try again",
                ))
            }
        }
    }
}
