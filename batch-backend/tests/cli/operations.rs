//! The operations routes of the native processes: `/health`, `/ready` (the job store, the
//! edge's metadata store and storage reachable, as each process has them) and `/metrics`, parsed by the Prometheus project's OpenMetrics parser
//! (`tests/python/parse_metrics.py`), whose counters and gauges move as requests are made.

use std::io::{BufRead as _, Write as _};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::up::{credentials, start_up_with, stop};

/// Every sample of a `/metrics` text, parsed by `prometheus_client`'s OpenMetrics parser
/// (which fails on anything the format does not allow).
fn parse(text: &str) -> Vec<Value> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/parse_metrics.py");
    let mut child = Command::new(crate::test_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
        .collect()
}

/// The value of the sample `name` whose labels include `labels`; 0 when there is none.
fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .find(|s| labels.iter().all(|(k, v)| s["labels"][k] == *v))
        .map_or(0.0, |s| s["value"].as_f64().unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn up_is_ready_and_its_metrics_parse_and_move_with_requests_and_jobs() {
    let data = tempfile::tempdir().unwrap();
    // No workers: the job stays queued, its ingest task waiting.
    let up = start_up_with(data.path(), &["--workers", "0"]);
    let base = format!("http://{}", up.page);
    let key = credentials(data.path())["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    runtime().block_on(async {
        let client = reqwest::Client::new();
        let get = |path: &str| client.get(format!("{base}{path}")).send();
        assert_eq!(get("/health").await.unwrap().status(), 200);
        let trace = client
            .request(reqwest::Method::TRACE, format!("{base}/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(trace.status(), 405);
        assert_eq!(trace.headers()["allow"], "GET");
        let ready = get("/ready").await.unwrap();
        assert_eq!(ready.status(), 200);
        let ready: Value = ready.json().await.unwrap();
        assert_eq!(
            ready,
            serde_json::json!({"status": "ready", "database": "ok", "metadata": "ok", "storage": "ok"})
        );
        let scrape = || async {
            let answer = get("/metrics").await.unwrap();
            assert_eq!(answer.status(), 200);
            let content_type = answer.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                content_type.starts_with("application/openmetrics-text"),
                "{content_type}"
            );
            parse(&answer.text().await.unwrap())
        };
        let before = scrape().await;
        for _ in 0..3 {
            let found = client
                .get(format!("{base}/v1/images?project=palms"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(found.status(), 200);
        }
        assert_eq!(get("/v1/images").await.unwrap().status(), 401);
        let photo = std::fs::read(crate::fixtures().join("exif-0.6.0/test1.jpg")).unwrap();
        let form = reqwest::multipart::Form::new()
            .text("project", "palms")
            .part(
                "files",
                reqwest::multipart::Part::bytes(photo).file_name("test1.jpg"),
            );
        let posted = client
            .post(format!("{base}/v1/jobs"))
            .bearer_auth(&key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 201);
        let after = scrape().await;

        let requests = |samples: &[Value], route: &str, status: &str| {
            value(
                samples,
                "tessera_http_requests_total",
                &[("route", route), ("status", status)],
            )
        };
        let moved =
            |route, status| requests(&after, route, status) - requests(&before, route, status);
        assert_eq!(moved("GET /v1/images", "200"), 3.0);
        assert_eq!(moved("GET /v1/images", "401"), 1.0);
        assert_eq!(moved("POST /v1/jobs", "201"), 1.0);
        assert_eq!(value(&after, "tessera_jobs", &[("state", "queued")]), 1.0);
        // A state with nothing in it reads 0 rather than vanishing.
        for (name, state) in [
            ("tessera_jobs", "failed"),
            ("tessera_webhook_deliveries", "pending"),
            ("tessera_uploads", "expired"),
        ] {
            assert!(
                after
                    .iter()
                    .any(|s| s["name"] == name && s["labels"]["state"] == state && s["value"] == 0.0),
                "{name}{{state={state}}} 0 is exported"
            );
        }
        assert_eq!(
            value(
                &after,
                "tessera_tasks",
                &[("stage", "ingest"), ("state", "available")]
            ),
            1.0
        );
        let age = after
            .iter()
            .find(|s| {
                s["name"] == "tessera_oldest_waiting_task_age_seconds"
                    && s["labels"]["stage"] == "ingest"
            })
            .expect("the waiting ingest task's age");
        assert!(age["value"].as_f64().unwrap() >= 0.0);
        assert!(
            after
                .iter()
                .any(|s| s["name"] == "tessera_inference_windows_total"),
            "the windows counter is exported from the start"
        );
    });
    stop(up);
}

/// `tessera worker` is alive but not ready while its storage does not answer, and says which.
#[test]
fn a_worker_whose_storage_is_down_is_not_ready_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::free_port();
    let mut worker = Killed(
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "worker",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database",
            ])
            .arg(format!("sqlite:{}", dir.path().join("b.sqlite").display()))
            // Storage at a closed port.
            .envs(crate::EDGE_ENV)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = std::io::BufReader::new(worker.0.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    // Drained, so that its log lines never meet a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let base = format!("http://127.0.0.1:{port}");
    runtime().block_on(async {
        let client = reqwest::Client::new();
        let health = client.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let ready = client.get(format!("{base}/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        let ready: Value = ready.json().await.unwrap();
        assert_eq!(
            (&ready["status"], &ready["database"]),
            (&"not ready".into(), &"ok".into())
        );
        assert_ne!(ready["storage"], "ok", "{ready}");
        let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
        let samples = parse(&metrics.text().await.unwrap());
        assert_eq!(
            value(
                &samples,
                "tessera_http_requests_total",
                &[("route", "GET /ready"), ("status", "503")]
            ),
            1.0
        );
    });
    let term = Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(worker.0.wait().unwrap().success());
}

/// `tessera edge` answers the operations routes too: ready when its metadata store and
/// storage answer (503 naming storage here, at a closed port), requests and uploads by state
/// in its metrics.
#[test]
fn the_edge_host_reports_readiness_requests_and_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::free_port();
    let key = "edge-operations-key";
    let mut edge = Killed(
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "edge",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database",
            ])
            .arg(dir.path().join("m.sqlite"))
            .envs(crate::EDGE_ENV)
            .env(
                "TESSERA_API_KEY_HASHES",
                tessera_core::access::api_key_hash(key),
            )
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = std::io::BufReader::new(edge.0.stderr.take().unwrap());
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let base = format!("http://127.0.0.1:{port}");
    runtime().block_on(async {
        let client = reqwest::Client::new();
        let mut health = None;
        for _ in 0..100 {
            if let Ok(answer) = client.get(format!("{base}/health")).send().await {
                health = Some(answer.status());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(health, Some(reqwest::StatusCode::OK));
        let ready = client.get(format!("{base}/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        let ready: Value = ready.json().await.unwrap();
        assert_eq!(
            (&ready["status"], &ready["metadata"], ready.get("database")),
            (&"not ready".into(), &"ok".into(), None)
        );
        assert_ne!(ready["storage"], "ok", "{ready}");
        let image = crate::jobs::Image::of(
            "palms",
            "test1.jpg",
            std::fs::read(crate::fixtures().join("exif-0.6.0/test1.jpg")).unwrap(),
        );
        let planned = client
            .post(format!("{base}/v1/uploads"))
            .bearer_auth(key)
            .json(&serde_json::json!({"project": "palms", "files": [image.manifest]}))
            .send()
            .await
            .unwrap();
        assert_eq!(planned.status(), 201);
        let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
        let samples = parse(&metrics.text().await.unwrap());
        assert_eq!(
            value(&samples, "tessera_uploads", &[("state", "planned")]),
            1.0
        );
        assert!(
            samples
                .iter()
                .any(|s| s["name"] == "tessera_uploads" && s["labels"]["state"] == "completed"),
            "every upload state is exported"
        );
        assert_eq!(
            value(
                &samples,
                "tessera_http_requests_total",
                &[("route", "POST /v1/uploads"), ("status", "201")]
            ),
            1.0
        );
    });
}

/// A child process killed when dropped (a failed assertion leaves no server behind).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
