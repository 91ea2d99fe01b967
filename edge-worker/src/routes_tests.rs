//! The router in-process: an in-memory SQLite store, storage and the batch backend scripted in
//! memory, the clock and ids passed in. No sockets, no fixtures; the whole file runs in
//! milliseconds. The real parts (s3s-fs with SigV4, SQLite on disk, hyper, workerd) are
//! exercised by `tests/edge/`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tessera_core::access::api_key_hash;
use tessera_core::job::{JobAction, JobPage, JobQuery, JobRequest, JobStatus};
use tessera_core::keys::JobId;
use tessera_core::presign::{Addressing, StorageTarget};
use tessera_core::upload::{DeclaredImage, DeclaredObject, UploadPolicy, UploadRequest};
use tessera_core::webhook::{
    CreateWebhook, DeliveryPage, DeliveryQuery, UploadExpiredEvent, WebhookDelivery,
    WebhookEndpoint,
};
use tessera_core::{ObjectKind, Sha256Digest};

use crate::sqlite::SqliteStore;
use crate::{
    Acted, Admission, ClientAddr, Config, Created, Edge, Jobs, JobsError, Outbound, OutboundError,
    Registered,
};

const KEY: &str = "router-test-key";
const ORIGIN: &str = "http://app.example";

/// Storage in memory: objects by key as (content-length, base64 SHA-256). Presigned HEADs are
/// answered from it, presigned PUTs (the sidecars) are stored in it.
#[derive(Debug, Default)]
struct ScriptedStorage {
    objects: RefCell<HashMap<String, (u64, String)>>,
    bodies: RefCell<HashMap<String, Vec<u8>>>,
}

impl ScriptedStorage {
    fn key(request: &Request<Vec<u8>>) -> String {
        // Path-style URLs of the test bucket: /bucket/{key}.
        // The test's keys have no character that needs percent-encoding.
        let path = request.uri().path();
        path.strip_prefix("/bucket/")
            .expect("a key in the bucket")
            .to_owned()
    }

    fn store(&self, key: &str, size_bytes: u64, sha256_base64: &str) {
        self.objects
            .borrow_mut()
            .insert(key.to_owned(), (size_bytes, sha256_base64.to_owned()));
    }
}

impl Outbound for &ScriptedStorage {
    async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, OutboundError> {
        // Presigned (PUTs) or signed in headers (the HEADs of `complete`, which sign the
        // checksum mode too).
        let presigned = request
            .uri()
            .query()
            .is_some_and(|q| q.contains("X-Amz-Signature="));
        let authorization = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            presigned || authorization.starts_with("AWS4-HMAC-SHA256 "),
            "every storage request is signed"
        );
        if request.method() == Method::HEAD {
            assert!(
                authorization.contains(";x-amz-checksum-mode;"),
                "a HEAD signs its checksum mode: {authorization}"
            );
        }
        let key = ScriptedStorage::key(&request);
        let answer = Response::builder();
        let answer = match *request.method() {
            Method::HEAD => match self.objects.borrow().get(&key) {
                Some((size, sha256)) => answer
                    .header("content-length", size.to_string())
                    .header("x-amz-checksum-sha256", sha256),
                None => answer.status(404),
            },
            Method::PUT => {
                let body = request.body().clone();
                let sha256 = Sha256Digest::of(&body).base64;
                self.store(&key, body.len() as u64, &sha256);
                self.bodies.borrow_mut().insert(key, body);
                answer
            }
            ref other => panic!("unexpected {other}"),
        };
        Ok(answer.body(Vec::new()).unwrap())
    }
}

/// The batch backend in memory: records job requests as job-1, job-2, …; refuses while
/// `down` is set.
#[derive(Debug, Default)]
struct ScriptedJobs {
    requests: RefCell<Vec<JobRequest>>,
    down: Cell<bool>,
    /// Jobs cancelled through the API (by number).
    cancelled: RefCell<Vec<usize>>,
    /// `upload.expired` announcements.
    expired: RefCell<Vec<UploadExpiredEvent>>,
}

impl ScriptedJobs {
    fn queued(n: usize, request: &JobRequest) -> JobStatus {
        JobStatus::queued(JobId::new(format!("job-{n}")).unwrap(), request, 0)
    }
}

impl Jobs for &ScriptedJobs {
    /// A job's webhook is registered as `create_webhook` does, with the job's id.
    async fn create(&self, request: &JobRequest) -> Result<Created, JobsError> {
        if self.down.get() {
            return Err(JobsError::Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: "down for maintenance".into(),
            });
        }
        let webhook = match &request.webhook {
            None => None,
            Some(hook) => match self.create_webhook(hook).await? {
                Registered::Done(endpoint) => Some(endpoint),
                Registered::Refused(message) => return Ok(Created::WebhookRefused(message)),
            },
        };
        let mut requests = self.requests.borrow_mut();
        requests.push(request.clone());
        let job = ScriptedJobs::queued(requests.len(), request);
        let webhook = webhook.map(|endpoint| WebhookEndpoint {
            job_id: Some(job.job_id.to_string()),
            ..endpoint
        });
        Ok(Created::Done {
            job: Box::new(job),
            webhook,
        })
    }

    async fn status(&self, job_id: &JobId) -> Result<Option<JobStatus>, JobsError> {
        let requests = self.requests.borrow();
        let n = job_id
            .as_str()
            .strip_prefix("job-")
            .and_then(|n| n.parse::<usize>().ok());
        Ok(n.filter(|n| (1..=requests.len()).contains(n)).map(|n| {
            let mut job = ScriptedJobs::queued(n, &requests[n - 1]);
            if self.cancelled.borrow().contains(&n) {
                job.state = tessera_core::job::JobState::Cancelled;
            }
            job
        }))
    }

    async fn list(&self, query: &JobQuery) -> Result<JobPage, JobsError> {
        let requests = self.requests.borrow();
        let jobs = (1..=requests.len())
            .rev()
            .map(|n| ScriptedJobs::queued(n, &requests[n - 1]))
            .filter(|job| query.project.as_ref().is_none_or(|p| *p == job.project))
            .take(query.limit as usize)
            .collect();
        Ok(JobPage {
            jobs,
            next_cursor: None,
        })
    }

    /// As `transition` decides: a queued job can be cancelled, a cancelled one retried.
    async fn act(&self, job_id: &JobId, action: JobAction) -> Result<Acted, JobsError> {
        let Some(mut job) = self.status(job_id).await? else {
            return Ok(Acted::NotFound);
        };
        match tessera_core::job::transition(job.state, action.event()) {
            Ok(state) => {
                job.state = state;
                let n: usize = job_id.as_str()["job-".len()..].parse().unwrap();
                match action {
                    JobAction::Cancel => self.cancelled.borrow_mut().push(n),
                    JobAction::Retry => self.cancelled.borrow_mut().retain(|&c| c != n),
                }
                Ok(Acted::Done(Box::new(job)))
            }
            Err(e) => Ok(Acted::Conflict(e.to_string())),
        }
    }

    /// Refuses as the backend does without local webhooks; registers with a fixed secret.
    async fn create_webhook(&self, request: &CreateWebhook) -> Result<Registered, JobsError> {
        Ok(match request.checked(false) {
            Err(e) => Registered::Refused(e.to_string()),
            Ok(request) => Registered::Done(WebhookEndpoint {
                endpoint_id: "ep_1".into(),
                project: request.project,
                url: request.url,
                events: request.events,
                secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
                job_id: None,
                disabled: false,
                created_at: 0,
            }),
        })
    }

    async fn deliveries(&self, _query: &DeliveryQuery) -> Result<DeliveryPage, JobsError> {
        Ok(DeliveryPage {
            deliveries: Vec::new(),
        })
    }

    async fn delivery(&self, _delivery_id: &str) -> Result<Option<WebhookDelivery>, JobsError> {
        Ok(None)
    }

    async fn replay(&self, _delivery_id: &str) -> Result<Option<WebhookDelivery>, JobsError> {
        Ok(None)
    }

    async fn upload_expired(&self, event: &UploadExpiredEvent) -> Result<(), JobsError> {
        if self.down.get() {
            return Err(JobsError::Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: "down for maintenance".into(),
            });
        }
        self.expired.borrow_mut().push(event.clone());
        Ok(())
    }
}

fn config() -> Config {
    Config {
        storage: StorageTarget {
            endpoint: "http://storage.test".into(),
            bucket: "bucket".into(),
            region: "us-east-1".into(),
            addressing: Addressing::Path,
            access_key_id: "AKTEST".into(),
            secret_access_key: "secret".into(),
        },
        policy: UploadPolicy::default(),
        get_expires_in: Duration::from_secs(300),
        api_keys: vec![api_key_hash(KEY).parse().expect("a hash")],
        cors_origins: vec![ORIGIN.into()],
        max_body_bytes: 64 * 1024,
        max_job_inputs: 3,
        rate_burst: 1000.0,
        rate_per_second: 1000.0,
    }
}

/// The router over an in-memory store and the scripted parts, with a settable clock.
struct Harness<'a> {
    edge: Edge<SqliteStore, &'a ScriptedStorage, &'a ScriptedJobs>,
    now: Cell<SystemTime>,
    ids: Cell<u32>,
}

impl<'a> Harness<'a> {
    fn new(storage: &'a ScriptedStorage, jobs: &'a ScriptedJobs, config: Config) -> Self {
        Self {
            edge: Edge::new(config, SqliteStore::in_memory().unwrap(), storage, jobs),
            now: Cell::new(UNIX_EPOCH + Duration::from_secs(1_790_000_000)),
            ids: Cell::new(0),
        }
    }

    fn call(&self, request: http::request::Builder, body: &[u8]) -> (Response<Bytes>, Value) {
        let request = request.body(Bytes::copy_from_slice(body)).unwrap();
        let mut new_id = || {
            self.ids.set(self.ids.get() + 1);
            format!("id-{}", self.ids.get())
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let response = runtime.block_on(self.edge.handle(request, self.now.get(), &mut new_id));
        let json = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        (response, json)
    }

    fn api(&self, method: Method, path: &str, body: &Value) -> (StatusCode, Value) {
        self.api_as(KEY, method, path, body)
    }

    /// [`Harness::api`] with another API key.
    fn api_as(&self, key: &str, method: Method, path: &str, body: &Value) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"));
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let (response, json) = self.call(request, &body);
        (response.status(), json)
    }
}

/// An upload request for `names`: six objects each, with made-up sizes and checksums.
fn upload_request(names: &[&str]) -> Value {
    let files = names
        .iter()
        .map(|name| DeclaredImage {
            file_name: (*name).to_owned(),
            exif: tessera_core::exif::ExifMetadata::default(),
            objects: ObjectKind::ALL
                .iter()
                .map(|&kind| DeclaredObject {
                    kind,
                    content_type: "image/jpeg".into(),
                    size_bytes: 1000 + kind as u64,
                    sha256: Sha256Digest::of(format!("{name}/{kind:?}").as_bytes()).into(),
                    width: 256,
                    height: 256,
                })
                .collect(),
        })
        .collect();
    serde_json::to_value(UploadRequest {
        project: "palms".into(),
        files,
    })
    .unwrap()
}

/// Stores what `POST /v1/uploads` planned, as its presigned PUTs would have.
fn put_everything(storage: &ScriptedStorage, planned: &Value, request: &Value) {
    for target in planned["objects"].as_array().unwrap() {
        let kind: ObjectKind = serde_json::from_value(target["kind"].clone()).unwrap();
        let image = planned["objects"]
            .as_array()
            .unwrap()
            .iter()
            .position(|t| t["image_id"] == target["image_id"])
            .unwrap()
            / ObjectKind::ALL.len();
        let declared = &request["files"][image]["objects"][kind as usize];
        storage.store(
            target["key"].as_str().unwrap(),
            declared["size_bytes"].as_u64().unwrap(),
            &Sha256Digest::from_hex(declared["sha256"]["hex"].as_str().unwrap())
                .unwrap()
                .base64,
        );
    }
}

#[test]
fn upload_complete_is_verified_recorded_and_triggers_one_job() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let edge = Harness::new(&storage, &jobs, config());
    let request = upload_request(&["a.jpg", "b.jpg"]);
    let (status, planned) = edge.api(Method::POST, "/v1/uploads", &request);
    assert_eq!(status, StatusCode::CREATED, "{planned}");
    assert_eq!(planned["objects"].as_array().unwrap().len(), 12);
    let upload_id = planned["upload_id"].as_str().unwrap();
    let complete = format!("/v1/uploads/{upload_id}/complete");

    // Nothing stored yet: every object is named missing.
    let (status, refused) = edge.api(Method::POST, &complete, &Value::Null);
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused["code"], "objects_not_uploaded");
    assert_eq!(refused["objects"].as_array().unwrap().len(), 12);
    assert_eq!(refused["objects"][0]["problem"], "missing");

    // One object with other bytes than declared: only it is named.
    put_everything(&storage, &planned, &request);
    let tampered = planned["objects"][3]["key"].as_str().unwrap();
    let other = Sha256Digest::of(b"other").base64;
    storage.store(tampered, 1003, &other);
    let (status, refused) = edge.api(Method::POST, &complete, &Value::Null);
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        refused["objects"],
        json!([{"key": tampered, "problem": format!("sha256 {other} instead of {}",
            Sha256Digest::from_hex(request["files"][0]["objects"][3]["sha256"]["hex"].as_str().unwrap()).unwrap().base64)}])
    );
    assert!(
        jobs.requests.borrow().is_empty(),
        "no job before every object is right"
    );

    put_everything(&storage, &planned, &request);
    let (status, done) = edge.api(Method::POST, &complete, &Value::Null);
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["job_id"], "job-1");
    let image_ids: Vec<&str> = done["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(image_ids.len(), 2);
    // The sidecars were written through presigned PUTs, one per image.
    for id in &image_ids {
        let sidecar = storage.bodies.borrow()[&format!("metadata/palms/{id}.json")].clone();
        let sidecar: Value = serde_json::from_slice(&sidecar).unwrap();
        assert_eq!(sidecar["image_id"], *id);
    }
    // The job request names every input with its keys and checksum.
    let job = jobs.requests.borrow()[0].clone();
    assert_eq!(
        (job.upload_id.as_deref(), job.inputs.len()),
        (Some(upload_id), 2)
    );
    assert_eq!(job.inputs[0].original_key, planned["objects"][0]["key"]);

    // Idempotent: the same answer, one job, one record per image.
    let (status, again) = edge.api(Method::POST, &complete, &Value::Null);
    assert_eq!((status, &again), (StatusCode::OK, &done));
    assert_eq!(jobs.requests.borrow().len(), 1);
    let (_, found) = edge.api(Method::GET, "/v1/images?project=palms", &Value::Null);
    assert_eq!(found["images"].as_array().unwrap().len(), 2);

    // The job's status passes through; an unknown or malformed id is 404.
    let (status, job) = edge.api(Method::GET, "/v1/jobs/job-1", &Value::Null);
    assert_eq!((status, &job["state"]), (StatusCode::OK, &json!("queued")));
    for id in ["job-9", "Job..1"] {
        let (status, missing) = edge.api(Method::GET, &format!("/v1/jobs/{id}"), &Value::Null);
        assert_eq!(
            (status, &missing["code"]),
            (StatusCode::NOT_FOUND, &json!("job_not_found"))
        );
    }
    let (status, missing) = edge.api(Method::POST, "/v1/uploads/nope/complete", &Value::Null);
    assert_eq!(
        (status, &missing["code"]),
        (StatusCode::NOT_FOUND, &json!("upload_not_found"))
    );

    // The job list, and cancel and retry as the backend decides them.
    let (status, page) = edge.api(Method::GET, "/v1/jobs?project=palms&limit=5", &Value::Null);
    assert_eq!(
        (status, &page["jobs"][0]["job_id"]),
        (StatusCode::OK, &json!("job-1"))
    );
    let (status, bad) = edge.api(Method::GET, "/v1/jobs?state=done", &Value::Null);
    assert_eq!(
        (status, &bad["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_parameter"))
    );
    let (status, cancelled) = edge.api(Method::POST, "/v1/jobs/job-1/cancel", &Value::Null);
    assert_eq!(
        (status, &cancelled["state"]),
        (StatusCode::OK, &json!("cancelled"))
    );
    let (status, retried) = edge.api(Method::POST, "/v1/jobs/job-1/retry", &Value::Null);
    assert_eq!(
        (status, &retried["state"]),
        (StatusCode::OK, &json!("queued"))
    );
    let (status, refused) = edge.api(Method::POST, "/v1/jobs/job-1/retry", &Value::Null);
    assert_eq!(
        (status, &refused["code"], &refused["message"]),
        (
            StatusCode::CONFLICT,
            &json!("job_state_conflict"),
            &json!("a queued job cannot retry")
        )
    );
    let (status, missing) = edge.api(Method::POST, "/v1/jobs/job-9/cancel", &Value::Null);
    assert_eq!(
        (status, &missing["code"]),
        (StatusCode::NOT_FOUND, &json!("job_not_found"))
    );
}

#[test]
fn a_failing_job_trigger_is_retried_by_completing_again() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let edge = Harness::new(&storage, &jobs, config());
    let request = upload_request(&["a.jpg"]);
    let (_, planned) = edge.api(Method::POST, "/v1/uploads", &request);
    put_everything(&storage, &planned, &request);
    let complete = format!(
        "/v1/uploads/{}/complete",
        planned["upload_id"].as_str().unwrap()
    );

    jobs.down.set(true);
    let (status, failed) = edge.api(Method::POST, &complete, &Value::Null);
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(failed["code"], "job_trigger_failed");
    assert!(
        !failed["message"].as_str().unwrap().contains("maintenance"),
        "details stay in the log"
    );
    // The images are recorded already; only the trigger is missing.
    let (_, found) = edge.api(Method::GET, "/v1/images", &Value::Null);
    assert_eq!(found["images"].as_array().unwrap().len(), 1);

    jobs.down.set(false);
    let (status, done) = edge.api(Method::POST, &complete, &Value::Null);
    assert_eq!((status, &done["job_id"]), (StatusCode::OK, &json!("job-1")));
    assert_eq!(jobs.requests.borrow().len(), 1);
}

#[test]
fn keys_are_required_and_rate_limited_per_key() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let mut config = config();
    config.rate_burst = 3.0;
    config.rate_per_second = 0.5;
    let edge = Harness::new(&storage, &jobs, config);

    // Health and the OpenAPI document need no key.
    let (r, body) = edge.call(Request::get("/health"), b"");
    assert_eq!(
        (r.status(), &body["status"]),
        (StatusCode::OK, &json!("ok"))
    );
    let (r, body) = edge.call(Request::get("/v1/openapi.json"), b"");
    assert_eq!(
        (r.status(), &body["openapi"]),
        (StatusCode::OK, &json!("3.1.0"))
    );

    for authorization in [None, Some("Bearer wrong"), Some(KEY)] {
        let mut request = Request::get("/v1/images");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let (r, body) = edge.call(request, b"");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(body["code"], "unauthorized");
    }

    // A burst of 3, then 429 with the wait until the next token; refilled as time passes.
    for _ in 0..3 {
        assert_eq!(
            edge.api(Method::GET, "/v1/images", &Value::Null).0,
            StatusCode::OK
        );
    }
    let (r, body) = edge.call(
        Request::get("/v1/images").header("authorization", format!("Bearer {KEY}")),
        b"",
    );
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(r.headers()["retry-after"], "2", "one token at 0.5/s");
    edge.now.set(edge.now.get() + Duration::from_secs(2));
    assert_eq!(
        edge.api(Method::GET, "/v1/images", &Value::Null).0,
        StatusCode::OK
    );

    // Unknown routes are 404; known routes with another method 405 with `Allow`.
    edge.now.set(edge.now.get() + Duration::from_secs(60));
    let (status, body) = edge.api(Method::GET, "/v1/nothing", &Value::Null);
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
    for (method, path, allow) in [
        (Method::DELETE, "/v1/images", "GET"),
        (Method::GET, "/v1/uploads", "POST"),
        (Method::PUT, "/v1/jobs/j", "GET"),
        (Method::GET, "/v1/jobs/j/cancel", "POST"),
        (Method::DELETE, "/v1/jobs", "GET, POST"),
        (Method::POST, "/v1/jobs/j/events", "GET"),
        (Method::POST, "/health", "GET"),
    ] {
        let (r, body) = edge.call(Request::builder().method(method).uri(path), b"");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(r.headers()["allow"], allow, "{path}");
        assert_eq!(body["code"], "method_not_allowed");
    }
}

#[test]
fn failed_authentications_are_limited_per_client_address() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let edge = Harness::new(&storage, &jobs, config());
    let from = |client: [u8; 4], key: &str| {
        let mut request = Request::get("/v1/images")
            .header("authorization", format!("Bearer {key}"))
            .body(Bytes::new())
            .unwrap();
        request
            .extensions_mut()
            .insert(ClientAddr(std::net::IpAddr::from(client)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(edge.edge.handle(request, edge.now.get(), &mut String::new))
            .status()
    };
    let guesser = [203, 0, 113, 7];
    for _ in 0..20 {
        assert_eq!(from(guesser, "guess"), StatusCode::UNAUTHORIZED);
    }
    // The burst is spent: refused whatever the key, while another address is not.
    assert_eq!(from(guesser, "guess"), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(from(guesser, KEY), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(from([198, 51, 100, 1], KEY), StatusCode::OK);
    // One failure more per second.
    edge.now.set(edge.now.get() + Duration::from_secs(1));
    assert_eq!(from(guesser, KEY), StatusCode::OK);
}

#[test]
fn cors_answers_listed_origins_only() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let edge = Harness::new(&storage, &jobs, config());
    let preflight = |origin: &str| {
        edge.call(
            Request::builder()
                .method(Method::OPTIONS)
                .uri("/v1/uploads")
                .header("origin", origin),
            b"",
        )
        .0
    };
    let allowed = preflight(ORIGIN);
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    let header = |name: &str| allowed.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("access-control-allow-origin"), ORIGIN);
    assert_eq!(header("access-control-max-age"), "600");
    assert_eq!(header("vary"), "Origin");
    assert!(header("access-control-allow-headers").contains("authorization"));
    let refused = preflight("http://evil.example");
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    // Errors carry CORS headers too, so the page can read them.
    let (r, _) = edge.call(Request::get("/v1/images").header("origin", ORIGIN), b"");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
}

#[test]
fn bad_requests_name_the_problem_and_leave_the_data_alone() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let edge = Harness::new(&storage, &jobs, config());
    let mut request = upload_request(&["a.jpg"]);
    request["files"][0]["objects"][0]["content_type"] = "application/pdf".into();
    let (status, body) = edge.api(Method::POST, "/v1/uploads", &request);
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("content_type"))
    );
    assert!(body["message"].as_str().unwrap().contains("file 0"));
    let (status, body) = edge.api(Method::POST, "/v1/uploads", &json!({"project": "palms"}));
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_json"))
    );
    let huge = json!({"project": "palms", "files": [], "pad": "x".repeat(70 * 1024)});
    let (status, body) = edge.api(Method::POST, "/v1/uploads", &huge);
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &json!("body_too_large"))
    );

    // SQL injection in every search parameter is refused by parsing.
    for query in [
        "project=x'%20OR%20'1'='1",
        "from=2024-01-01'%20OR%201=1--",
        "to=2024-01-01;DROP%20TABLE%20images",
        "bbox=0,0,1,1)%20OR%201=1--",
        "limit=1%20OR%201=1",
        "cursor=MjAyNC0wMS0wMS8nIE9SIDE9MS0t",
        "sort=date",
    ] {
        let (status, body) = edge.api(Method::GET, &format!("/v1/images?{query}"), &Value::Null);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
    }
    let (status, _) = edge.api(Method::GET, "/v1/images/x'%20OR%20'1'='1", &Value::Null);
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The tables are intact and answer.
    let (status, body) = edge.api(Method::GET, "/v1/images", &Value::Null);
    assert_eq!((status, &body["images"]), (StatusCode::OK, &json!([])));
}

/// Completes an upload of `names` in `project`; its upload id and image ids.
fn completed_upload(
    edge: &Harness<'_>,
    storage: &ScriptedStorage,
    project: &str,
    names: &[&str],
) -> (String, Vec<String>) {
    let mut request = upload_request(names);
    request["project"] = json!(project);
    let (status, planned) = edge.api(Method::POST, "/v1/uploads", &request);
    assert_eq!(status, StatusCode::CREATED, "{planned}");
    put_everything(storage, &planned, &request);
    let upload_id = planned["upload_id"].as_str().unwrap().to_owned();
    let (status, done) = edge.api(
        Method::POST,
        &format!("/v1/uploads/{upload_id}/complete"),
        &Value::Null,
    );
    assert_eq!(status, StatusCode::OK, "{done}");
    let ids = done["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    (upload_id, ids)
}

#[test]
fn jobs_are_created_from_image_ids_uploads_and_searches_of_one_project() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let edge = Harness::new(&storage, &jobs, config());
    let (upload, ids) = completed_upload(&edge, &storage, "palms", &["a.jpg", "b.jpg", "c.jpg"]);
    let (_, other) = completed_upload(&edge, &storage, "oaks", &["d.jpg"]);
    let created = |body: Value| {
        let (status, job) = edge.api(Method::POST, "/v1/jobs", &body);
        (status, job, jobs.requests.borrow().last().cloned())
    };

    // By image ids: in the order given, a repeat once, no upload.
    let (status, job, sent) =
        created(json!({"project": "palms", "image_ids": [ids[2], ids[0], ids[2]]}));
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(
        (&job["state"], &job["refused"]),
        (&json!("queued"), &json!([]))
    );
    let sent = sent.unwrap();
    assert_eq!(sent.upload_id, None);
    let inputs: Vec<&str> = sent.inputs.iter().map(|i| i.image_id.as_str()).collect();
    assert_eq!(inputs, [ids[2].as_str(), ids[0].as_str()]);
    assert!(
        sent.inputs[0]
            .original_key
            .starts_with("original-uploads/palms/")
    );

    // By upload: its images in upload order.
    let (status, _, sent) = created(json!({"project": "palms", "upload_ids": [upload]}));
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(sent.unwrap().inputs.len(), 3);

    // By search: every image of the project (these have no date but the upload's and no GPS).
    let (status, _, sent) = created(json!({"project": "palms", "search": {}}));
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(sent.unwrap().inputs.len(), 3);
    let requests = jobs.requests.borrow().len();

    // Unknown ids, and another project's image, are named; nothing is created.
    let (status, refused, _) =
        created(json!({"project": "palms", "image_ids": [ids[0], "no-such-image", other[0]]}));
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
    assert_eq!(refused["code"], "inputs_not_found");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("2 of the named inputs have no record in project palms: no-such-image, "),
        "{message}"
    );
    let (status, refused, _) = created(json!({"project": "oaks", "upload_ids": [upload]}));
    assert_eq!(
        (status, &refused["code"]),
        (StatusCode::NOT_FOUND, &json!("inputs_not_found"))
    );
    let (status, refused, _) = created(json!({"project": "palms",
        "search": {"bbox": [-82.1, 29.6, -81.9, 29.8]}}));
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
    assert_eq!(
        refused["message"],
        "no recorded image of project palms matches the search"
    );
    assert_eq!(jobs.requests.borrow().len(), requests);

    // Bad bodies get the API's vocabulary.
    for (body, code) in [
        (json!({"project": "palms"}), "job_inputs"),
        (json!({"project": "palms", "image_ids": [], }), "job_inputs"),
        (
            json!({"project": "palms", "image_ids": ["a"], "search": {}}),
            "job_inputs",
        ),
        (
            json!({"project": "Palms", "image_ids": ["a"]}),
            "invalid_project",
        ),
        (
            json!({"project": "palms", "search": {"from": "2026-13-01"}}),
            "invalid_parameter",
        ),
        (json!({"project": "palms", "images": ["a"]}), "invalid_json"),
        // Over the configured count (3 here).
        (
            json!({"project": "palms", "image_ids": ["a", "b", "c", "d"]}),
            "job_inputs",
        ),
    ] {
        let (status, refused, _) = created(body.clone());
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {refused}");
        assert_eq!(refused["code"], code, "{body}");
    }

    // The backend down: 502, and the client may try again.
    jobs.down.set(true);
    let (status, refused, _) = created(json!({"project": "palms", "upload_ids": [upload]}));
    assert_eq!(
        (status, &refused["code"]),
        (StatusCode::BAD_GATEWAY, &json!("job_trigger_failed"))
    );
    jobs.down.set(false);

    // PUT is not a method of /v1/jobs: 405 with both it has.
    let (response, _) = edge.call(
        Request::builder()
            .method(Method::PUT)
            .uri("/v1/jobs")
            .header("authorization", format!("Bearer {KEY}")),
        b"",
    );
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET, POST");
}

#[test]
fn job_events_open_with_the_status_and_a_retry() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let edge = Harness::new(&storage, &jobs, config());
    let (_, ids) = completed_upload(&edge, &storage, "palms", &["a.jpg"]);
    assert_eq!(ids.len(), 1);
    let get = |path: &str| {
        edge.call(
            Request::builder()
                .uri(path)
                .header("authorization", format!("Bearer {KEY}"))
                .header("origin", ORIGIN),
            b"",
        )
    };
    let (response, _) = get("/v1/jobs/job-1/events");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["access-control-allow-origin"], ORIGIN);
    let body = std::str::from_utf8(response.body()).unwrap();
    let lines: Vec<&str> = body.split('\n').collect();
    assert_eq!(
        lines[..3],
        ["retry: 1000", "id: 1", "event: progress"],
        "{body}"
    );
    let job: Value = serde_json::from_str(lines[3].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(
        (job["job_id"].as_str(), job["state"].as_str()),
        (Some("job-1"), Some("queued"))
    );
    assert!(
        job.get("inputs").is_none(),
        "progress frames leave the inputs out: {job}"
    );
    assert!(body.ends_with("\n\n"));

    let (response, answer) = get("/v1/jobs/job-9/events");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(answer["code"], "job_not_found");
    let (response, _) = edge.call(Request::builder().uri("/v1/jobs/job-1/events"), b"");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn job_events_send_changes_keep_alives_and_one_end() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let edge = Harness::new(&storage, &jobs, config());
    completed_upload(&edge, &storage, "palms", &["a.jpg"]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let request = Request::builder()
        .uri("/v1/jobs/job-1/events")
        .header("authorization", format!("Bearer {KEY}"))
        .body(())
        .unwrap();
    let (parts, ()) = request.into_parts();
    let Admission::Events(mut events) = edge.edge.admit(&parts, edge.now.get()) else {
        panic!("GET /v1/jobs/{{id}}/events is a stream")
    };
    let now = edge.now.get();
    let (head, first) = runtime
        .block_on(edge.edge.open_events(&mut events, now))
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(
        std::str::from_utf8(&first)
            .unwrap()
            .contains("event: progress")
    );
    // Nothing changes: silence, then a keep-alive comment on the 15th poll.
    for poll in 1..crate::events::KEEP_ALIVE_POLLS {
        let frame = runtime.block_on(edge.edge.next_event(&mut events, now));
        assert_eq!(frame, None, "poll {poll}");
    }
    let frame = runtime.block_on(edge.edge.next_event(&mut events, now));
    assert_eq!(frame.as_deref(), Some(&b": keep-alive\n\n"[..]));
    // Cancelled: one `end` frame with the full status, then the stream is over.
    let (status, _) = edge.api(Method::POST, "/v1/jobs/job-1/cancel", &Value::Null);
    assert_eq!(status, StatusCode::OK);
    let end = runtime
        .block_on(edge.edge.next_event(&mut events, now))
        .unwrap();
    let end = std::str::from_utf8(&end).unwrap();
    assert!(end.starts_with("id: 2\nevent: end\ndata: "), "{end}");
    let job: Value =
        serde_json::from_str(end.lines().nth(2).unwrap()["data: ".len()..].trim()).unwrap();
    assert_eq!(job["state"], "cancelled");
    assert_eq!(
        job["inputs"].as_array().map(Vec::len),
        Some(1),
        "the end carries the inputs"
    );
    assert!(events.ended());
    assert_eq!(
        runtime.block_on(edge.edge.next_event(&mut events, now)),
        None
    );
}

#[test]
fn webhook_routes_relay_the_backend_s_answers_and_check_their_input() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let edge = Harness::new(&storage, &jobs, config());
    let hook = |url: &str| json!({"project": "palms", "url": url, "events": ["job.completed"]});
    let (status, endpoint) = edge.api(
        Method::POST,
        "/v1/webhooks",
        &hook("https://hooks.example.com/t"),
    );
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    assert!(endpoint["secret"].as_str().unwrap().starts_with("whsec_"));
    for (url, says) in [
        ("http://hooks.example.com/", "must be https"),
        ("https://169.254.169.254/", "link-local"),
    ] {
        let (status, refused) = edge.api(Method::POST, "/v1/webhooks", &hook(url));
        assert_eq!(
            (status, &refused["code"]),
            (StatusCode::BAD_REQUEST, &json!("webhook"))
        );
        assert!(
            refused["message"].as_str().unwrap().contains(says),
            "{refused}"
        );
    }
    let (status, refused) = edge.api(
        Method::POST,
        "/v1/webhooks",
        &json!({"project": "palms", "url": "https://x.example/", "events": ["job.done"]}),
    );
    assert_eq!(
        (status, &refused["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_json"))
    );
    let (status, page) = edge.api(
        Method::GET,
        "/v1/webhooks/deliveries?state=failed",
        &Value::Null,
    );
    assert_eq!((status, page), (StatusCode::OK, json!({"deliveries": []})));
    let (status, refused) = edge.api(
        Method::GET,
        "/v1/webhooks/deliveries?state=lost",
        &Value::Null,
    );
    assert_eq!(
        (status, &refused["code"]),
        (StatusCode::BAD_REQUEST, &json!("webhook"))
    );
    let (status, missing) = edge.api(
        Method::POST,
        "/v1/webhooks/deliveries/dlv_x/replay",
        &Value::Null,
    );
    assert_eq!(
        (status, &missing["code"]),
        (StatusCode::NOT_FOUND, &json!("delivery_not_found"))
    );
    let (status, _) = edge.api(Method::GET, "/v1/webhooks", &Value::Null);
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn a_job_s_own_webhook_is_made_with_it_and_its_secret_answered_once() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let edge = Harness::new(&storage, &jobs, config());
    let (_, ids) = completed_upload(&edge, &storage, "palms", &["a.jpg"]);
    let job = |extra: Value| {
        let mut body = json!({"project": "palms", "image_ids": [ids[0]]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        edge.api(Method::POST, "/v1/jobs", &body)
    };
    let (status, made) = job(json!({"webhook_url": "https://hooks.example.com/job"}));
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(
        (
            &made["webhook"]["url"],
            &made["webhook"]["events"],
            &made["webhook"]["job_id"]
        ),
        (
            &json!("https://hooks.example.com/job"),
            &json!(["job.completed", "job.failed"]),
            &made["job_id"]
        )
    );
    assert!(
        made["webhook"]["secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    let sent = jobs
        .requests
        .borrow()
        .last()
        .unwrap()
        .webhook
        .clone()
        .unwrap();
    assert_eq!(sent.project, "palms");
    let (status, listed) = edge.api(
        Method::GET,
        &format!("/v1/jobs/{}", made["job_id"].as_str().unwrap()),
        &Value::Null,
    );
    assert_eq!(status, StatusCode::OK);
    assert!(
        listed.get("webhook").is_none(),
        "the secret is answered once: {listed}"
    );

    let before = jobs.requests.borrow().len();
    for (extra, says) in [
        (
            json!({"webhook_url": "https://h.example.com", "webhook_events": ["upload.completed"]}),
            "job events only",
        ),
        (
            json!({"webhook_events": ["job.failed"]}),
            "needs webhook_url",
        ),
        (json!({"webhook_url": "ftp://h.example.com/"}), "https"),
        // Refused by the backend (its host checks), after the edge's check of the form.
        (json!({"webhook_url": "https://10.0.0.1/"}), "private"),
    ] {
        let (status, refused) = job(extra.clone());
        assert_eq!(
            (status, &refused["code"]),
            (StatusCode::BAD_REQUEST, &json!("webhook")),
            "{extra}: {refused}"
        );
        assert!(
            refused["message"].as_str().unwrap().contains(says),
            "{extra}: {refused}"
        );
    }
    assert_eq!(
        jobs.requests.borrow().len(),
        before,
        "no refused job was made"
    );
}

#[test]
fn uploads_whose_urls_expired_uncompleted_are_announced_once() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let edge = Harness::new(&storage, &jobs, config());
    let lifetime = config().policy.expires_in;
    let (status, abandoned) = edge.api(
        Method::POST,
        "/v1/uploads",
        &upload_request(&["left.jpg", "behind.jpg"]),
    );
    assert_eq!(status, StatusCode::CREATED);
    let abandoned_id = abandoned["upload_id"].as_str().unwrap().to_owned();
    let (completed, _) = completed_upload(&edge, &storage, "palms", &["done.jpg"]);
    let sweep = |at: SystemTime| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(edge.edge.expire_uploads(at))
    };
    let planned_at = edge.now.get();
    assert_eq!(
        sweep(planned_at + lifetime - Duration::from_secs(1)).unwrap(),
        0
    );
    // The backend is down: nothing is marked, the next sweep announces it.
    jobs.down.set(true);
    let failed = sweep(planned_at + lifetime).unwrap_err();
    assert!(failed.to_string().contains(&abandoned_id), "{failed}");
    jobs.down.set(false);
    assert_eq!(sweep(planned_at + lifetime).unwrap(), 1);
    assert_eq!(
        sweep(planned_at + lifetime * 2).unwrap(),
        0,
        "announced once"
    );
    let expired = jobs.expired.borrow();
    assert_eq!(expired.len(), 1);
    let event = &expired[0];
    let planned_s = planned_at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(
        (
            event.upload_id.as_str(),
            event.project.as_str(),
            event.created_at,
            event.expired_at,
            event.file_names.clone(),
            event.image_ids.len()
        ),
        (
            abandoned_id.as_str(),
            "palms",
            planned_s,
            planned_s + lifetime.as_secs(),
            vec!["left.jpg".to_owned(), "behind.jpg".to_owned()],
            2
        )
    );
    assert_ne!(
        event.upload_id, completed,
        "a completed upload is not expired"
    );
}

/// A key granted only the project `oaks`, and one granted `oaks` and `pines`.
const OAKS_KEY: &str = "oaks-only-key";
const TWO_KEY: &str = "oaks-and-pines-key";

#[test]
fn a_key_of_other_projects_is_refused_on_every_route_and_lists_only_its_own() {
    let (storage, jobs) = (ScriptedStorage::default(), ScriptedJobs::default());
    let mut config = config();
    config
        .api_keys
        .push(format!("{}=oaks", api_key_hash(OAKS_KEY)).parse().unwrap());
    config.api_keys.push(
        format!("{}=oaks+pines", api_key_hash(TWO_KEY))
            .parse()
            .unwrap(),
    );
    let edge = Harness::new(&storage, &jobs, config);

    // The operator key records a palms upload and its job.
    let request = upload_request(&["a.jpg"]);
    let (_, planned) = edge.api(Method::POST, "/v1/uploads", &request);
    put_everything(&storage, &planned, &request);
    let upload_id = planned["upload_id"].as_str().unwrap().to_owned();
    let (status, done) = edge.api(
        Method::POST,
        &format!("/v1/uploads/{upload_id}/complete"),
        &Value::Null,
    );
    assert_eq!(status, StatusCode::OK, "{done}");
    let image_id = done["images"][0].as_str().unwrap().to_owned();

    let palms_hook =
        json!({"project": "palms", "url": "https://h.example/", "events": ["job.failed"]});
    let palms_job = json!({"project": "palms", "image_ids": [image_id]});
    let mut oaks_upload = request.clone();
    oaks_upload["project"] = json!("oaks");
    for (method, path, body) in [
        (Method::POST, "/v1/uploads".to_owned(), request.clone()),
        (
            Method::POST,
            format!("/v1/uploads/{upload_id}/complete"),
            Value::Null,
        ),
        (
            Method::GET,
            "/v1/images?project=palms".to_owned(),
            Value::Null,
        ),
        (Method::GET, format!("/v1/images/{image_id}"), Value::Null),
        (
            Method::GET,
            "/v1/jobs?project=palms".to_owned(),
            Value::Null,
        ),
        (Method::POST, "/v1/jobs".to_owned(), palms_job.clone()),
        (Method::GET, "/v1/jobs/job-1".to_owned(), Value::Null),
        (Method::GET, "/v1/jobs/job-1/events".to_owned(), Value::Null),
        (
            Method::POST,
            "/v1/jobs/job-1/cancel".to_owned(),
            Value::Null,
        ),
        (Method::POST, "/v1/webhooks".to_owned(), palms_hook.clone()),
        (
            Method::GET,
            "/v1/webhooks/deliveries?project=palms".to_owned(),
            Value::Null,
        ),
    ] {
        let (status, refused) = edge.api_as(OAKS_KEY, method.clone(), &path, &body);
        assert_eq!(
            (status, &refused["code"]),
            (StatusCode::FORBIDDEN, &json!("forbidden")),
            "{method} {path}: {refused}"
        );
        assert!(
            refused["message"].as_str().unwrap().contains("palms"),
            "{refused}"
        );
    }
    assert_eq!(
        jobs.requests.borrow().len(),
        1,
        "no job was made by the refused key"
    );

    // Its own project works; a list without a project is limited to it.
    let (status, planned) = edge.api_as(OAKS_KEY, Method::POST, "/v1/uploads", &oaks_upload);
    assert_eq!(status, StatusCode::CREATED, "{planned}");
    let (status, found) = edge.api_as(OAKS_KEY, Method::GET, "/v1/images", &Value::Null);
    assert_eq!(
        (status, found["images"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let (status, page) = edge.api_as(OAKS_KEY, Method::GET, "/v1/jobs", &Value::Null);
    assert_eq!(
        (status, page["jobs"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    // A key of two projects searches both without naming one, page by page, and nothing
    // else; its job list names one.
    let (_, oaks) = completed_upload(&edge, &storage, "oaks", &["o1.jpg", "o2.jpg"]);
    let (_, pines) = completed_upload(&edge, &storage, "pines", &["p1.jpg", "p2.jpg"]);
    let mut found = Vec::new();
    let mut path = "/v1/images?limit=3".to_owned();
    loop {
        let (status, page) = edge.api_as(TWO_KEY, Method::GET, &path, &Value::Null);
        assert_eq!(status, StatusCode::OK, "{page}");
        let images = page["images"].as_array().unwrap();
        assert!(images.len() <= 3);
        found.extend(
            images
                .iter()
                .map(|i| i["image_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/images?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = oaks.into_iter().chain(pines).collect();
    expected.sort();
    found.sort();
    assert_eq!(
        found, expected,
        "the key's two projects, each image once, no palms"
    );
    let (status, refused) = edge.api_as(TWO_KEY, Method::GET, "/v1/jobs", &Value::Null);
    assert_eq!(
        (status, &refused["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_parameter"))
    );
    let (status, _) = edge.api_as(
        TWO_KEY,
        Method::GET,
        "/v1/images?project=pines",
        &Value::Null,
    );
    assert_eq!(status, StatusCode::OK);

    // The operator key reaches everything.
    let (status, found) = edge.api(Method::GET, "/v1/images", &Value::Null);
    assert_eq!(
        (status, found["images"].as_array().unwrap().len()),
        (StatusCode::OK, 5)
    );
    let (status, _) = edge.api(Method::GET, "/v1/jobs/job-1", &Value::Null);
    assert_eq!(status, StatusCode::OK);
}
