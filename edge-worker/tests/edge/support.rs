//! The test stack shared by `native.rs` (native host) and `workerd.rs` (wrangler dev): a real
//! S3-compatible server (s3s + s3s-fs, SigV4 enforced), a small HTTP server standing in for the
//! batch backend's job API (recording each job request), and the edge itself.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use tessera_core::ObjectKind;
use tessera_core::access::api_key_hash;
use tessera_core::exif::GpsPosition;
use tessera_core::keys::Project;
use tessera_core::presign::{Addressing, StorageTarget};
use tessera_core::upload::UploadPolicy;
use tessera_core::{Derivatives, Options, preprocess};
use tessera_edge::native::{ConnectionLimits, ReqwestOutbound, serve};
use tessera_edge::sqlite::SqliteStore;
use tessera_edge::{BackendConfig, Config, Edge, HttpJobs};

const API_KEY: &str = "test-key-0123456789";
pub const BUCKET: &str = "tessera";

pub fn fetched(rel: &str) -> Vec<u8> {
    let root = std::env::var_os("TESSERA_FIXTURES").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/tessera/fixtures"),
        PathBuf::from,
    );
    std::fs::read(root.join(rel)).expect("run `bash tests/fetch-fixtures.sh` first")
}

/// Runs `future` on its own thread with a current-thread runtime (and a LocalSet).
pub fn spawn_server<F: std::future::Future<Output = ()> + 'static>(
    make: impl FnOnce() -> F + Send + 'static,
) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, make());
    });
}

/// `GET /health` answered 200, over a plain socket (no runtime needed).
fn health_ok(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut answer = String::new();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

pub fn listener() -> (std::net::TcpListener, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

pub struct Stack {
    pub edge: String,
    pub storage: StorageTarget,
    pub jobs: Arc<Mutex<Vec<Value>>>,
    /// The `upload.expired` announcements the backend received.
    pub expired: Arc<Mutex<Vec<Value>>>,
    pub store_path: PathBuf,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    /// `wrangler dev`, when the edge runs under workerd; its process group is killed on drop.
    pub workerd: Option<std::process::Child>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(child) = &mut self.workerd {
            // wrangler runs node, which runs workerd (which ignores SIGTERM): kill the group.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Stack {
    /// The stack with the edge on its native host.
    pub fn start(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_with(configure, None)
    }

    /// The stack with the edge under `wrangler dev`: `TESSERA_TEST_WORKERD` names wrangler.
    pub fn start_workerd(configure: impl FnOnce(&mut Config)) -> Self {
        let wrangler = std::env::var_os("TESSERA_TEST_WORKERD").expect(
            "TESSERA_TEST_WORKERD must name the wrangler binary; `bash scripts/test.sh` installs it",
        );
        assert!(
            std::path::Path::new(&wrangler).exists(),
            "{wrangler:?} does not exist"
        );
        Self::start_with(configure, Some(PathBuf::from(wrangler)))
    }

    fn start_with(configure: impl FnOnce(&mut Config), wrangler: Option<PathBuf>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("s3").join(BUCKET)).unwrap();

        // Storage: s3s-fs behind SigV4 with one key pair.
        let (s3_listener, s3_addr) = listener();
        let s3_root = dir.path().join("s3");
        spawn_server(move || async move {
            let fs = s3s_fs::FileSystem::new(&s3_root).unwrap();
            let mut builder = s3s::service::S3ServiceBuilder::new(fs);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(
                "AKTESSERA",
                "secret-tessera",
            ));
            let service = builder.build();
            let listener = tokio::net::TcpListener::from_std(s3_listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let service = service.clone();
                tokio::task::spawn_local(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });

        // The batch backend's job endpoint: records POST /v1/jobs (job-1, job-2, …) and answers
        // GET /v1/jobs/{id} with a queued job, in tessera-core's JobStatus shape; records
        // POST /v1/events/upload-expired.
        let jobs = Arc::new(Mutex::new(Vec::new()));
        let expired = Arc::new(Mutex::new(Vec::new()));
        let (backend_listener, backend_addr) = listener();
        let recorded = Arc::clone(&jobs);
        let recorded_expired = Arc::clone(&expired);
        spawn_server(move || async move {
            let listener = tokio::net::TcpListener::from_std(backend_listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let recorded = Arc::clone(&recorded);
                let recorded_expired = Arc::clone(&recorded_expired);
                tokio::task::spawn_local(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let recorded = Arc::clone(&recorded);
                            let recorded_expired = Arc::clone(&recorded_expired);
                            async move {
                                let authorized = request
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    == Some("Bearer service-token");
                                let path = request.uri().path().to_owned();
                                let body = request.into_body().collect().await.unwrap().to_bytes();
                                let mut jobs = recorded.lock().unwrap();
                                let (status, answer) = if !authorized {
                                    (401, json!({"code": "unauthorized"}))
                                } else if path == "/v1/events/upload-expired" {
                                    let event = serde_json::from_slice::<Value>(&body).unwrap();
                                    recorded_expired.lock().unwrap().push(event);
                                    (200, json!({"deliveries": 0}))
                                } else if path == "/v1/jobs" {
                                    jobs.push(serde_json::from_slice::<Value>(&body).unwrap());
                                    (201, queued_job(jobs.len(), &jobs[jobs.len() - 1]))
                                } else {
                                    let n = path
                                        .strip_prefix("/v1/jobs/job-")
                                        .and_then(|n| n.parse::<usize>().ok())
                                        .filter(|n| (1..=jobs.len()).contains(n));
                                    match n {
                                        Some(n) => (200, queued_job(n, &jobs[n - 1])),
                                        None => (404, json!({"code": "job_not_found"})),
                                    }
                                };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(answer.to_string())))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });

        let storage = StorageTarget {
            endpoint: format!("http://{s3_addr}"),
            bucket: BUCKET.into(),
            region: "us-east-1".into(),
            addressing: Addressing::Path,
            access_key_id: "AKTESSERA".into(),
            secret_access_key: "secret-tessera".into(),
        };
        let mut config = Config {
            storage: storage.clone(),
            policy: UploadPolicy::default(),
            get_expires_in: Duration::from_secs(300),
            api_keys: vec![api_key_hash(API_KEY).parse().expect("a hash")],
            cors_origins: vec!["http://app.example".into()],
            max_body_bytes: 1024 * 1024,
            max_job_inputs: tessera_core::job_inputs::MAX_JOB_INPUTS,
            rate_burst: 1000.0,
            rate_per_second: 1000.0,
        };
        configure(&mut config);
        let backend = BackendConfig {
            url: format!("http://{backend_addr}"),
            token: "service-token".into(),
        };
        if let Some(wrangler) = wrangler {
            return Self::with_workerd(&wrangler, &config, &backend, dir, storage, [jobs, expired]);
        }
        let store_path = dir.path().join("metadata.sqlite");
        let (edge_listener, edge_addr) = listener();
        let path = store_path.clone();
        spawn_server(move || async move {
            let jobs = HttpJobs::new(&backend.url, &backend.token, ReqwestOutbound::default());
            let edge = Edge::new(
                config,
                SqliteStore::open(&path).unwrap(),
                ReqwestOutbound::default(),
                jobs,
            );
            let listener = tokio::net::TcpListener::from_std(edge_listener).unwrap();
            serve(
                listener,
                ConnectionLimits::default(),
                Rc::new(edge),
                std::future::pending(),
            )
            .await;
        });
        Self {
            edge: format!("http://{edge_addr}"),
            storage,
            jobs,
            expired,
            store_path,
            dir,
            client: reqwest::Client::new(),
            workerd: None,
        }
    }

    /// Runs the edge under `wrangler dev` (workerd, local D1 with the migrations applied)
    /// with `config` passed as vars, instead of the native host.
    fn with_workerd(
        wrangler: &std::path::Path,
        config: &Config,
        backend: &BackendConfig,
        dir: tempfile::TempDir,
        storage: StorageTarget,
        [jobs, expired]: [Arc<Mutex<Vec<Value>>>; 2],
    ) -> Self {
        let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let persist = dir.path().join("wrangler-state");
        let status = std::process::Command::new(wrangler)
            .args([
                "d1",
                "migrations",
                "apply",
                "DB",
                "--local",
                "--env",
                "test",
            ])
            .arg("--persist-to")
            .arg(&persist)
            .current_dir(&crate_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run wrangler");
        assert!(status.success(), "wrangler d1 migrations apply failed");
        let (port_listener, addr) = listener();
        let (inspector_listener, inspector) = listener();
        drop((port_listener, inspector_listener));
        let vars = config.to_vars().into_iter().chain(backend.to_vars());
        let mut command = std::process::Command::new(wrangler);
        command
            .args([
                "dev",
                "--env",
                "test",
                "--ip",
                "127.0.0.1",
                "--port",
                &addr.port().to_string(),
            ])
            .args(["--inspector-port", &inspector.port().to_string()])
            // /__scheduled runs the cron trigger (the upload.expired sweep) on request.
            .args([
                "--test-scheduled",
                "--show-interactive-dev-session=false",
                "--persist-to",
            ])
            .arg(&persist)
            .current_dir(&crate_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (name, value) in vars {
            command.args(["--var", &format!("{name}:{value}")]);
        }
        // Its own process group, so that drop stops wrangler's node and workerd children too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("start wrangler dev");
        let stack = Self {
            edge: format!("http://{addr}"),
            storage,
            jobs,
            expired,
            store_path: PathBuf::new(),
            dir,
            client: reqwest::Client::new(),
            workerd: Some(child),
        };
        // The first start builds the worker; wait for /health.
        for _ in 0..600 {
            if health_ok(addr) {
                return stack;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("wrangler dev did not answer /health within 5 minutes");
    }

    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.edge))
            .bearer_auth(API_KEY)
    }

    pub async fn post_uploads(&self, body: &Value) -> (u16, Value) {
        let r = self
            .api(reqwest::Method::POST, "/v1/uploads")
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    pub async fn complete(&self, upload_id: &str) -> (u16, Value) {
        let r = self
            .api(
                reqwest::Method::POST,
                &format!("/v1/uploads/{upload_id}/complete"),
            )
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    pub async fn search(&self, query: &str) -> (u16, Value) {
        let r = self
            .api(reqwest::Method::GET, &format!("/v1/images?{query}"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// `GET /v1/images/{image_id}`, then the bytes of its object of `kind` through the
    /// presigned download URL the record carries.
    pub async fn download(&self, image_id: &str, kind: ObjectKind) -> Vec<u8> {
        let r = self
            .api(reqwest::Method::GET, &format!("/v1/images/{image_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let record: Value = r.json().await.unwrap();
        let kind = serde_json::to_value(kind).unwrap();
        let objects = record["image"]["objects"].as_array().unwrap();
        let object = objects.iter().find(|o| o["kind"] == kind).unwrap();
        let key = object["key"].as_str().unwrap();
        let url = record["downloads"][key]["url"].as_str().unwrap();
        let r = self.client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "download of {key}");
        r.bytes().await.unwrap().to_vec()
    }

    /// PUTs each object of an upload answer with its presigned URL and headers.
    pub async fn put_all(&self, answer: &Value, bodies: &dyn Fn(&str, &str) -> Vec<u8>) {
        for object in answer["objects"].as_array().unwrap() {
            let body = bodies(
                object["image_id"].as_str().unwrap(),
                object["kind"].as_str().unwrap(),
            );
            let status = self.put(object, body).await;
            assert_eq!(status, 200, "PUT {}", object["key"]);
        }
    }

    pub async fn put(&self, object: &Value, body: Vec<u8>) -> u16 {
        let mut request = self.client.put(object["url"].as_str().unwrap()).body(body);
        for pair in object["headers"].as_array().unwrap() {
            let (name, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            if name != "content-length" {
                request = request.header(name, value);
            }
        }
        request.send().await.unwrap().status().as_u16()
    }
}

/// A photo's derivatives with the EXIF date and position overridden, as a client would send.
pub struct Photo {
    pub bytes: Vec<u8>,
    pub derived: Derivatives,
}

pub fn photo(rel: &str, date: Option<NaiveDate>, gps: Option<(f64, f64)>) -> Photo {
    let bytes = fetched(rel);
    let mut derived = preprocess(
        &bytes,
        &Options::new(
            Project::new("client-side").unwrap(),
            rel.rsplit('/').next().unwrap(),
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        ),
    )
    .unwrap();
    derived.manifest.exif.taken_at = date.map(|d| d.and_hms_opt(12, 0, 0).unwrap());
    derived.manifest.exif.gps = gps.map(|(lat, lon)| GpsPosition {
        latitude: lat,
        longitude: lon,
        altitude_m: None,
    });
    Photo { bytes, derived }
}

impl Photo {
    /// The body of the object of `kind`, spelled as on the wire (`original`, `augmented-90`).
    pub fn body(&self, kind: &str) -> Vec<u8> {
        let kind: ObjectKind = serde_json::from_value(json!(kind)).unwrap();
        match self.derived.body(kind) {
            Some(body) => body.to_vec(),
            None => self.bytes.clone(),
        }
    }
}

/// What the stand-in backend answers for job `n` created by `request`.
fn queued_job(n: usize, request: &Value) -> Value {
    json!({
        "job_id": format!("job-{n}"),
        "state": "queued",
        "progress": {"done": 0, "total": request["inputs"].as_array().map_or(0, Vec::len)},
        "upload_id": request["upload_id"],
        "project": request["project"],
        "created_at": 0,
    })
}

pub fn upload_body(project: &str, photos: &[&Photo]) -> Value {
    json!({ "project": project, "files": photos.iter().map(|p| &p.derived.manifest).collect::<Vec<_>>() })
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
