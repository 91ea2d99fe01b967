//! Originals put into storage by another route than the edge, with a real S3 client (boto3,
//! `tests/python/s3_client.py`): into `tessera up`'s own storage, which announces them itself,
//! and into a separate real server (SeaweedFS `weed mini`, from PyPI) whose notifications are
//! posted to `tessera worker`'s `POST /v1/events/s3` in the three formats a queue consumer
//! forwards, with the reconciliation catching an object no event announced; then the records
//! copied to PostgreSQL by `tessera migrate` and rebuilt from the sidecars by `tessera reindex`.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_core::keys::Project;
use tessera_core::manifest::{Manifest, ObjectKind, Sha256Digest};
use tessera_core::search::ImageQuery;
use tessera_core::{Options, preprocess};
use tessera_edge::Store as _;
use tessera_edge::metadata::MetadataStore;
use tessera_edge::sqlite::SqliteStore;

use crate::up::{credentials, start_up_with, stop};
use crate::webhooks::{Api, Receiver, body, runtime};

/// Runs `tests/python/s3_client.py` against `endpoint` with the key pair `(id, secret)`.
fn s3(endpoint: &str, (id, secret): (&str, &str), args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/s3_client.py");
    let output = Command::new(crate::test_python())
        .arg(script)
        .args([endpoint, "tessera"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "s3_client {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `(key, size)` of every object under `prefix`.
fn listed(endpoint: &str, keys: (&str, &str), prefix: &str) -> Vec<(String, u64)> {
    let out = s3(endpoint, keys, &["list", prefix]);
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    listed
        .iter()
        .map(|o| {
            (
                o["key"].as_str().unwrap().to_owned(),
                o["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn fixture(path: &str) -> std::path::PathBuf {
    crate::fixtures().join(path)
}

/// Holds the manifest to what tessera-core gives for the same bytes and name: the page's
/// derivatives, byte for byte (their SHA-256s), and every object in storage at its size.
fn check_manifest(manifest: &Manifest, bytes: &[u8], in_storage: &[(String, u64)]) {
    let mut options = Options::new(
        manifest.project.clone(),
        manifest.file_name.clone(),
        manifest.date,
    );
    options.image_id = Some(manifest.image_id.clone());
    let expected = preprocess(bytes, &options).unwrap().manifest;
    for kind in ObjectKind::ALL {
        let (got, want) = (
            manifest.object(kind).unwrap(),
            expected.object(kind).unwrap(),
        );
        assert_eq!(
            got.sha256, want.sha256,
            "{kind:?} of {}",
            manifest.file_name
        );
        if kind != ObjectKind::Original {
            assert_eq!(got.key, want.key);
        }
        assert!(
            in_storage.contains(&(got.key.clone(), got.size_bytes)),
            "{} ({} bytes) is not in storage",
            got.key,
            got.size_bytes
        );
    }
    assert!(in_storage.iter().any(|(k, _)| *k == manifest.metadata_key));
}

/// A file that is no image by its bytes, named like one.
fn not_an_image(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("notes.jpg");
    std::fs::write(&path, b"field notes, not a photo\n".repeat(40)).unwrap();
    path
}

#[test]
fn originals_put_by_an_s3_client_into_tessera_up_get_the_browser_s_treatment() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let up = start_up_with(data.path(), &[]);
    let creds = credentials(data.path());
    let keys = (
        creds["access_key_id"].as_str().unwrap(),
        creds["secret_access_key"].as_str().unwrap(),
    );
    let endpoint = format!("http://{}", up.storage);
    let api = Api::of(&up, data.path());
    let receiver = Receiver::start();
    runtime().block_on(async {
        let client = reqwest::Client::new();
        let hook = api
            .endpoint(
                &format!("{}/arrivals", receiver.base),
                &["upload.completed", "upload.failed"],
            )
            .await;
        receiver
            .put(
                &client,
                "/_secret/arrivals",
                hook["secret"].as_str().unwrap(),
            )
            .await;

        // A JPEG named .png, a 6.5 MB photo sent as a multipart upload, a GeoTIFF, a text
        // file named .jpg, and the first photo's bytes again under another key.
        let photo = fixture("exif-0.6.0/test1.jpg");
        let large = fixture("exif-0.6.0/sony-alpha-6000.jpg");
        let geotiff = fixture("deepforest-2.1.0/OSBS_029.tif");
        let notes = not_an_image(files.path());
        let photo_key = "original-uploads/palms/field 1/photo.png";
        s3(
            &endpoint,
            keys,
            &["put", photo_key, photo.to_str().unwrap()],
        );
        s3(
            &endpoint,
            keys,
            &[
                "upload",
                "original-uploads/palms/sony.jpg",
                large.to_str().unwrap(),
            ],
        );
        s3(
            &endpoint,
            keys,
            &[
                "put",
                "original-uploads/palms/OSBS_029.tif",
                geotiff.to_str().unwrap(),
            ],
        );
        s3(
            &endpoint,
            keys,
            &[
                "put",
                "original-uploads/palms/notes.jpg",
                notes.to_str().unwrap(),
            ],
        );

        let deadline = Instant::now() + Duration::from_secs(120);
        let log = loop {
            let log = receiver.log(&client).await;
            let events = |name: &str| log.iter().filter(|e| body(e)["type"] == name).count();
            if events("upload.completed") == 3 && events("upload.failed") == 1 {
                break log;
            }
            assert!(
                Instant::now() < deadline,
                "{log:#?}\n{}",
                up.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(log.iter().all(|e| e["verified"] == true), "{log:#?}");
        let failed: Vec<Value> = log
            .iter()
            .map(body)
            .filter(|b| b["type"] == "upload.failed")
            .collect();
        let failed = &failed[0]["data"];
        assert_eq!(failed["key"], "original-uploads/palms/notes.jpg");
        assert_eq!(failed["file_name"], "notes.jpg");
        assert_eq!(failed["code"], "unsupported_type", "{failed}");
        assert!(
            failed["reason"].as_str().unwrap().contains("notes.jpg"),
            "{failed}"
        );

        let (status, page) = api
            .call(reqwest::Method::GET, "/v1/images?project=palms", None)
            .await;
        assert_eq!(status, 200, "{page}");
        let images = page["images"].as_array().unwrap();
        assert_eq!(images.len(), 3, "{page:#}");
        let in_storage = listed(&endpoint, keys, "");
        let manifest_of = |name: &str| -> Manifest {
            let image = images.iter().find(|i| i["file_name"] == name).unwrap();
            serde_json::from_value(image.clone()).unwrap()
        };
        let png = manifest_of("photo.png");
        assert_eq!(
            png.original().key,
            photo_key,
            "the original stays where it was put"
        );
        assert_eq!(
            png.original().content_type,
            "image/jpeg",
            "the type is the bytes'"
        );
        check_manifest(&png, &std::fs::read(&photo).unwrap(), &in_storage);
        check_manifest(
            &manifest_of("sony.jpg"),
            &std::fs::read(&large).unwrap(),
            &in_storage,
        );
        check_manifest(
            &manifest_of("OSBS_029.tif"),
            &std::fs::read(&geotiff).unwrap(),
            &in_storage,
        );
        // The derivative in storage is the bytes the manifest names.
        let got = files.path().join("processed.jpg");
        let processed = png.object(ObjectKind::Processed).unwrap();
        s3(
            &endpoint,
            keys,
            &["get", &processed.key, got.to_str().unwrap()],
        );
        assert_eq!(
            Sha256Digest::of(&std::fs::read(&got).unwrap()),
            processed.sha256
        );

        // Each recorded image has its job, created with its one-image upload.
        for completed in log
            .iter()
            .map(body)
            .filter(|b| b["type"] == "upload.completed")
        {
            let upload_id = completed["data"]["upload_id"].as_str().unwrap();
            assert!(upload_id.starts_with("s3-"), "{completed}");
            let job_id = completed["data"]["job_id"].as_str().unwrap();
            let (status, job) = api
                .call(reqwest::Method::GET, &format!("/v1/jobs/{job_id}"), None)
                .await;
            assert_eq!(status, 200, "{job}");
            assert_eq!(job["upload_id"], upload_id, "{job}");
            assert_eq!(job["inputs"].as_array().unwrap().len(), 1, "{job}");
        }

        // The same bytes under another key, and the same bad object written again: nothing
        // new is recorded or announced.
        s3(
            &endpoint,
            keys,
            &[
                "put",
                "original-uploads/palms/copy.jpg",
                photo.to_str().unwrap(),
            ],
        );
        s3(
            &endpoint,
            keys,
            &[
                "put",
                "original-uploads/palms/notes.jpg",
                notes.to_str().unwrap(),
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !up.log.lock().unwrap().contains("copy.jpg") {
            assert!(Instant::now() < deadline, "{}", up.log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(receiver.log(&client).await.len(), log.len());
    });
    stop(up);

    // A restart reconciles what is already settled, and announces nothing again.
    let up = start_up_with(data.path(), &[]);
    let api = Api::of(&up, data.path());
    runtime().block_on(async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (_, page) = api
            .call(reqwest::Method::GET, "/v1/images?project=palms", None)
            .await;
        assert_eq!(page["images"].as_array().unwrap().len(), 3, "{page:#}");
        let deliveries = api.deliveries("project=palms").await;
        assert_eq!(deliveries.len(), 4, "{deliveries:#?}");
        let metrics = reqwest::get(format!("http://{}/metrics", up.page))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in [
            r#"tessera_arrivals{state="recorded"} 4"#,
            r#"tessera_arrivals{state="refused"} 1"#,
        ] {
            assert!(metrics.contains(line), "{line} in {metrics}");
        }
    });
    stop(up);
}

/// `weed mini` (SeaweedFS) on free ports with its data in `dir`, killed when dropped.
pub(crate) struct Seaweed {
    child: Child,
    pub(crate) endpoint: String,
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) const SEAWEED_KEYS: (&str, &str) = ("tessera-test", "tessera-test-secret");

impl Seaweed {
    pub(crate) fn start(dir: &Path) -> Self {
        let python = std::path::PathBuf::from(crate::test_python());
        let weed = python.with_file_name("weed");
        let port = crate::free_port();
        let mut command = Command::new(weed);
        command
            .arg("mini")
            .arg(format!("-dir={}", dir.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-bucket=tessera",
                "-admin.ui=false",
            ])
            .arg(format!("-s3.port={port}"))
            .env("AWS_ACCESS_KEY_ID", SEAWEED_KEYS.0)
            .env("AWS_SECRET_ACCESS_KEY", SEAWEED_KEYS.1)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for name in ["master", "volume", "filer", "admin", "webdav"] {
            command.arg(format!("-{name}.port={}", crate::free_port()));
            if name != "webdav" {
                command.arg(format!("-{name}.port.grpc={}", crate::free_port()));
            }
        }
        let child = command.spawn().unwrap();
        let seaweed = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/s3_client.py");
        loop {
            let ready = Command::new(crate::test_python())
                .arg(&script)
                .args([seaweed.endpoint.as_str(), "tessera", "list", "x"])
                .env("AWS_ACCESS_KEY_ID", SEAWEED_KEYS.0)
                .env("AWS_SECRET_ACCESS_KEY", SEAWEED_KEYS.1)
                .output()
                .unwrap();
            if ready.status.success() {
                return seaweed;
            }
            assert!(Instant::now() < deadline, "weed mini did not start");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

#[test]
fn arrivals_in_seaweedfs_are_settled_by_queued_events_and_the_reconciliation_then_migrated_and_reindexed()
 {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("weed")).unwrap();
    let seaweed = Seaweed::start(&dir.path().join("weed"));
    let endpoint = seaweed.endpoint.clone();
    let metadata = dir.path().join("metadata.sqlite");
    let listen = format!("127.0.0.1:{}", crate::free_port());
    // Events first, with no reconciliation to race them.
    let (worker, log) = Worker::start(dir.path(), &endpoint, &listen, 0);
    let files = tempfile::tempdir().unwrap();
    let photo = fixture("exif-0.6.0/test1.jpg");
    let large = fixture("exif-0.6.0/sony-alpha-6000.jpg");
    let unannounced = fixture("scikit-image-0.26.0/retina.jpg");
    let notes = not_an_image(files.path());

    runtime().block_on(async {
        let client = reqwest::Client::new();
        let post = |body: String, token: &'static str| {
            let request = client
                .post(format!("http://{listen}/v1/events/s3"))
                .bearer_auth(token)
                .body(body);
            async move {
                let answer = request.send().await.unwrap();
                (answer.status().as_u16(), answer.json::<Value>().await.unwrap())
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("http://{listen}/health")).send().await.is_err() {
            assert!(Instant::now() < deadline, "{}", log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // S3's own format, as SQS delivers it: the key URL-encoded.
        s3(&endpoint, SEAWEED_KEYS, &["put", "original-uploads/palms/field 1/a photo.jpg", photo.to_str().unwrap()]);
        let s3_event = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "tessera"},
                   "object": {"key": "original-uploads/palms/field+1/a+photo.jpg", "size": 1}}}]})
        .to_string();
        let (status, answer) = post(s3_event.clone(), "wrong-token").await;
        assert_eq!(status, 401, "{answer}");
        let (status, answer) = post(s3_event.clone(), "service-token").await;
        assert_eq!(status, 200, "{answer}\n{}", log.lock().unwrap());
        assert_eq!(answer["objects"][0]["outcome"]["outcome"], "recorded", "{answer}");
        let image_id = answer["objects"][0]["outcome"]["image_id"].as_str().unwrap().to_owned();
        let (status, again) = post(s3_event, "service-token").await;
        assert_eq!(status, 200);
        assert_eq!(again["objects"][0]["outcome"]["outcome"], "already_seen", "{again}");

        // EventBridge's, for a multipart upload; R2's, for a file that is no image.
        s3(&endpoint, SEAWEED_KEYS, &["upload", "original-uploads/palms/sony.jpg", large.to_str().unwrap()]);
        let eventbridge = json!({"version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": "tessera"}, "object": {"key": "original-uploads/palms/sony.jpg"},
                       "reason": "CompleteMultipartUpload"}});
        s3(&endpoint, SEAWEED_KEYS, &["put", "original-uploads/palms/notes.jpg", notes.to_str().unwrap()]);
        let r2 = json!({"account": "a", "action": "PutObject", "bucket": "tessera",
            "object": {"key": "original-uploads/palms/notes.jpg", "size": 1000, "eTag": "x"}});
        let (status, answer) = post(json!([eventbridge, r2]).to_string(), "service-token").await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["objects"][0]["outcome"]["outcome"], "recorded", "{answer}");
        assert_eq!(answer["objects"][1]["outcome"]["outcome"], "refused", "{answer}");
        assert_eq!(answer["objects"][1]["outcome"]["code"], "unsupported_type", "{answer}");

        let (status, answer) = post(r#"{"hello": "world"}"#.into(), "service-token").await;
        assert_eq!(status, 400, "{answer}");

        // No event for this one: the reconciliation of a worker started with it finds it.
        s3(&endpoint, SEAWEED_KEYS, &["put", "original-uploads/palms/unannounced.jpg", unannounced.to_str().unwrap()]);
        drop(worker);
        let (worker, log) = Worker::start(dir.path(), &endpoint, &listen, 2);
        let store = SqliteStore::open(&metadata).unwrap();
        let query = ImageQuery {
            project: Some(Project::new("palms").unwrap()),
            from: None,
            to: None,
            bbox: None,
            limit: ImageQuery::DEFAULT_LIMIT,
            cursor: None,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let found = loop {
            let found = store.search(&query).await.unwrap();
            if found.len() == 3 {
                break found;
            }
            assert!(Instant::now() < deadline, "{found:#?}\n{}", log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let in_storage = listed(&endpoint, SEAWEED_KEYS, "");
        let recorded = store.image(&image_id).await.unwrap().unwrap();
        assert_eq!(recorded.original().key, "original-uploads/palms/field 1/a photo.jpg");
        check_manifest(&recorded, &std::fs::read(&photo).unwrap(), &in_storage);
        let other = found.iter().find(|m| m.file_name == "unannounced.jpg").unwrap();
        check_manifest(other, &std::fs::read(&unannounced).unwrap(), &in_storage);
        assert!(log.lock().unwrap().contains("reconciled arrivals"), "{}", log.lock().unwrap());
        drop(worker);

        // The records move to PostgreSQL, verified record by record; and are rebuilt from
        // the sidecars alone.
        let postgres = crate::store::postgres_database("arrivals_migrated").await;
        let sqlite = format!("sqlite:{}", metadata.display());
        for _ in 0..2 {
            let out = tessera(&["migrate", "--from", &sqlite, "--to", &postgres], &[]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
            assert!(text.contains("and 3 images"), "{text}");
            assert!(text.contains("every checksum equal"), "{text}");
        }
        let migrated = MetadataStore::open(&postgres).await.unwrap();
        assert_eq!(migrated.search(&query).await.unwrap(), found);
        let stray = store.image(&image_id).await.unwrap().unwrap();
        let mut stray = serde_json::to_value(&stray).unwrap();
        stray["image_id"] = json!("stray");
        let stray: Manifest = serde_json::from_value(stray).unwrap();
        migrated.create_upload("stray", "palms", &[stray], 1, 2).await.unwrap();
        migrated.complete_upload("stray", 1).await.unwrap();
        let out = tessera(&["migrate", "--from", &sqlite, "--to", &postgres], &[]);
        let errors = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{errors}");
        assert!(errors.contains("images stray: extra"), "{errors}");
        assert!(errors.contains("uploads stray: extra"), "{errors}");

        s3(&endpoint, SEAWEED_KEYS, &["put", "metadata/palms/broken.json", notes.to_str().unwrap()]);
        let rebuilt = crate::store::postgres_database("arrivals_rebuilt").await;
        let storage_env = [
            ("TESSERA_S3_ENDPOINT", endpoint.as_str()),
            ("TESSERA_S3_BUCKET", "tessera"),
            ("TESSERA_S3_ACCESS_KEY_ID", SEAWEED_KEYS.0),
            ("TESSERA_S3_SECRET_ACCESS_KEY", SEAWEED_KEYS.1),
        ];
        let out = tessera(&["reindex", "--database", &rebuilt], &storage_env);
        let text = String::from_utf8_lossy(&out.stdout);
        let errors = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}{errors}");
        assert!(text.contains("4 sidecars: 3 images recorded, 0 already recorded, 1 unreadable"), "{text}");
        assert!(errors.contains("metadata/palms/broken.json: not a Tessera sidecar"), "{errors}");
        let rebuilt = MetadataStore::open(&rebuilt).await.unwrap();
        assert_eq!(rebuilt.search(&query).await.unwrap(), found);
        let out = tessera(&["reindex", "--database", &sqlite], &storage_env);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("0 images recorded, 3 already recorded"), "{text}");
    });
    drop(seaweed);
}

/// Runs `tessera` with `args` and `env`, waiting for it.
fn tessera(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// `tessera worker` on `listen` over SeaweedFS at `endpoint`, its stores in `dir`, with the
/// service API and arrivals; killed when dropped. `.1` is its log so far.
pub(crate) struct Worker(Child);

impl Worker {
    pub(crate) fn start(
        dir: &Path,
        endpoint: &str,
        listen: &str,
        reconcile_seconds: u32,
    ) -> (Self, std::sync::Arc<std::sync::Mutex<String>>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["worker", "--listen", listen])
            .arg(format!("--reconcile-seconds={reconcile_seconds}"))
            .arg(format!(
                "--database=sqlite:{}",
                dir.join("batch.sqlite").display()
            ))
            .arg(format!(
                "--metadata-database=sqlite:{}",
                dir.join("metadata.sqlite").display()
            ))
            .env("TESSERA_S3_ENDPOINT", endpoint)
            .env("TESSERA_S3_BUCKET", "tessera")
            .env("TESSERA_S3_ACCESS_KEY_ID", SEAWEED_KEYS.0)
            .env("TESSERA_S3_SECRET_ACCESS_KEY", SEAWEED_KEYS.1)
            .env("TESSERA_BACKEND_TOKEN", "service-token")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        (Self(child), log)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
