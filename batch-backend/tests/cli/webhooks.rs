//! Webhooks end to end: endpoints registered through `tessera up`'s edge, jobs that end,
//! deliveries from the outbox to a receiver (`tests/python/webhook_receiver.py`) that verifies each
//! with the `standardwebhooks` package from PyPI ([`crate::test_python`]), retries, 410, the dead-letter list and replay, a restart with
//! deliveries pending, and the URL checks against server-side request forgery.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_batch::store::Store;
use tessera_batch::webhook::{Deliverer, DeliveryOptions, register};
use tessera_core::webhook::{CreateWebhook, WebhookEvent, WebhookRequestError};

use crate::up::{Up, credentials, start_up_with, stop};

/// The receiver, killed when dropped.
pub(crate) struct Receiver {
    child: Child,
    pub(crate) base: String,
}

impl Receiver {
    pub(crate) fn start() -> Self {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/webhook_receiver.py");
        let mut child = Command::new(crate::test_python())
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        Self {
            child,
            base: format!("http://127.0.0.1:{}", port.trim()),
        }
    }

    pub(crate) async fn put(&self, client: &reqwest::Client, path: &str, body: &str) {
        let answer = client
            .put(format!("{}{path}", self.base))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 204);
    }

    /// Every delivery so far.
    pub(crate) async fn log(&self, client: &reqwest::Client) -> Vec<Value> {
        let answer = client.get(format!("{}/_log", self.base)).send().await;
        answer.unwrap().json().await.unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The edge API of a running `tessera up`.
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    pub(crate) fn of(up: &Up, data: &Path) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: format!("http://{}", up.page),
            key: credentials(data)["api_key"].as_str().unwrap().to_owned(),
        }
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.unwrap();
        (answer.status().as_u16(), answer.json().await.unwrap())
    }

    /// Registers `url` for `events`; answers the endpoint.
    pub(crate) async fn endpoint(&self, url: &str, events: &[&str]) -> Value {
        let body = json!({"project": "palms", "url": url, "events": events});
        let (status, endpoint) = self
            .call(reqwest::Method::POST, "/v1/webhooks", Some(body))
            .await;
        assert_eq!(status, 201, "{endpoint}");
        endpoint
    }

    /// Posts a job of one file and waits until it ends; answers its status.
    async fn job(&self, name: &str, bytes: Vec<u8>) -> Value {
        let form = reqwest::multipart::Form::new()
            .text("project", "palms")
            .part(
                "files",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
            );
        let answer = self
            .client
            .post(format!("{}/v1/jobs", self.base))
            .bearer_auth(&self.key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 201);
        let job_id = answer.json::<Value>().await.unwrap()["job_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (_, job) = self
                .call(reqwest::Method::GET, &format!("/v1/jobs/{job_id}"), None)
                .await;
            if ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap()) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} did not end: {job:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) async fn deliveries(&self, query: &str) -> Vec<Value> {
        let (status, page) = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/webhooks/deliveries?{query}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        page["deliveries"].as_array().unwrap().clone()
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A photo the detector reads, and a file that is a JPEG by its magic bytes only (ingest
/// refuses it, so its job fails).
fn photo() -> Vec<u8> {
    std::fs::read(crate::fixtures().join("exif-0.6.0/test1.jpg")).unwrap()
}

pub(crate) fn broken_jpeg() -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.resize(4096, 0x5A);
    bytes
}

/// The receiver's log entries for `path`, grouped by webhook-id in arrival order.
pub(crate) fn by_id<'a>(log: &'a [Value], path: &str) -> Vec<(String, Vec<&'a Value>)> {
    let mut groups: Vec<(String, Vec<&Value>)> = Vec::new();
    for entry in log.iter().filter(|e| e["path"] == path) {
        let id = entry["webhook_id"].as_str().unwrap().to_owned();
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, entries)) => entries.push(entry),
            None => groups.push((id, vec![entry])),
        }
    }
    groups
}

fn statuses(entries: &[&Value]) -> Vec<Value> {
    entries.iter().map(|e| e["status"].clone()).collect()
}

pub(crate) fn body(entry: &Value) -> Value {
    serde_json::from_str(entry["body"].as_str().unwrap()).unwrap()
}

/// Waits until `done` holds for the deliveries of project `palms`.
async fn wait_for(api: &Api, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let deliveries = api.deliveries("project=palms").await;
        if done(&deliveries) {
            return deliveries;
        }
        assert!(Instant::now() < deadline, "{what}: {deliveries:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn deliveries_are_signed_retried_disabled_dead_lettered_and_replayed() {
    let data = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let up = start_up_with(
        data.path(),
        &[
            "--webhook-schedule",
            "300ms,300ms",
            "--webhook-timeout-seconds",
            "2",
        ],
    );
    let api = Api::of(&up, data.path());
    let c = reqwest::Client::new();
    runtime().block_on(async {
        let mut endpoints = std::collections::HashMap::new();
        for (name, events) in [
            ("flaky", &["job.completed", "job.failed"][..]),
            ("gone", &["job.completed"][..]),
            ("silent", &["job.completed"][..]),
        ] {
            let endpoint = api
                .endpoint(&format!("{}/{name}", receiver.base), events)
                .await;
            let secret = endpoint["secret"].as_str().unwrap();
            assert!(secret.starts_with("whsec_"), "{endpoint}");
            receiver.put(&c, &format!("/_secret/{name}"), secret).await;
            receiver.put(&c, &format!("/_mode/{name}"), name).await;
            endpoints.insert(name, endpoint["endpoint_id"].as_str().unwrap().to_owned());
        }

        let succeeded = api.job("test1.jpg", photo()).await;
        assert_eq!(succeeded["state"], "succeeded", "{succeeded:#}");
        let failed = api.job("broken.jpg", broken_jpeg()).await;
        assert_eq!(failed["state"], "failed", "{failed:#}");

        let settled = wait_for(&api, "every delivery settles", |d| {
            d.len() == 4 && d.iter().all(|d| d["state"] != "pending")
        })
        .await;
        let log = receiver.log(&c).await;
        assert!(
            log.iter().all(|e| e["verified"] == true),
            "a delivery failed verification: {log:#?}"
        );

        // flaky: one logical event per webhook-id, three attempts each, the same body each
        // time; job.completed for the good job, job.failed for the broken one.
        let flaky = by_id(&log, "flaky");
        assert_eq!(flaky.len(), 2, "{log:#?}");
        for (_, attempts) in &flaky {
            assert_eq!(statuses(attempts), [json!(503), json!(503), json!(204)]);
            assert!(attempts.iter().all(|a| a["body"] == attempts[0]["body"]));
        }
        let events: Vec<(Value, Value)> = flaky
            .iter()
            .map(|(_, a)| {
                let b = body(a[0]);
                (b["type"].clone(), b["data"]["job_id"].clone())
            })
            .collect();
        assert!(events.contains(&(json!("job.completed"), succeeded["job_id"].clone())));
        assert!(events.contains(&(json!("job.failed"), failed["job_id"].clone())));
        let completed_id = flaky
            .iter()
            .find(|(_, a)| body(a[0])["type"] == "job.completed")
            .unwrap()
            .0
            .clone();

        // gone: one attempt, 410, and the endpoint is disabled; silent: three attempts that
        // time out, then the dead-letter list. One event has one webhook-id everywhere.
        let gone = by_id(&log, "gone");
        assert_eq!(gone.len(), 1);
        assert_eq!(statuses(&gone[0].1), [json!(410)]);
        let silent = by_id(&log, "silent");
        assert_eq!(silent.len(), 1);
        assert_eq!(silent[0].1.len(), 3);
        assert_eq!(gone[0].0, completed_id);
        assert_eq!(silent[0].0, completed_id);

        let dead = api.deliveries("project=palms&state=failed").await;
        let dead_endpoints: Vec<&str> = dead
            .iter()
            .map(|d| d["endpoint_id"].as_str().unwrap())
            .collect();
        assert_eq!(dead.len(), 2, "{dead:#?}");
        assert!(dead_endpoints.contains(&endpoints["gone"].as_str()));
        assert!(dead_endpoints.contains(&endpoints["silent"].as_str()));
        let gone_row = dead
            .iter()
            .find(|d| d["endpoint_id"] == endpoints["gone"])
            .unwrap();
        assert_eq!(gone_row["last_status"], 410);
        let silent_row = dead
            .iter()
            .find(|d| d["endpoint_id"] == endpoints["silent"])
            .unwrap();
        assert_eq!(silent_row["attempts"], 3);
        assert!(
            silent_row["last_error"]
                .as_str()
                .unwrap()
                .contains("timed out"),
            "{silent_row}"
        );
        assert_eq!(
            settled.iter().filter(|d| d["state"] == "delivered").count(),
            2
        );

        // Replay: silent answers now; the same webhook-id and body arrive once more.
        receiver.put(&c, "/_mode/silent", "ok").await;
        let delivery_id = silent_row["delivery_id"].as_str().unwrap();
        let (status, replayed) = api
            .call(
                reqwest::Method::POST,
                &format!("/v1/webhooks/deliveries/{delivery_id}/replay"),
                None,
            )
            .await;
        assert_eq!(
            (status, &replayed["state"]),
            (200, &json!("pending")),
            "{replayed}"
        );
        let (status, missing) = api
            .call(
                reqwest::Method::POST,
                "/v1/webhooks/deliveries/dlv_none/replay",
                None,
            )
            .await;
        assert_eq!(
            (status, &missing["code"]),
            (404, &json!("delivery_not_found"))
        );

        // A later job: nothing for the disabled endpoint.
        let later = api.job("test1.jpg", photo()).await;
        assert_eq!(later["state"], "succeeded");
        let settled = wait_for(&api, "the replay and the later job's deliveries", |d| {
            d.len() == 6 && d.iter().all(|d| d["state"] != "pending")
        })
        .await;
        assert!(
            settled
                .iter()
                .filter(|d| d["endpoint_id"] == endpoints["gone"])
                .count()
                == 1,
            "the disabled endpoint got another delivery: {settled:#?}"
        );
        let log = receiver.log(&c).await;
        assert!(log.iter().all(|e| e["verified"] == true), "{log:#?}");
        let silent = by_id(&log, "silent");
        assert_eq!(
            statuses(&silent[0].1),
            [json!(null), json!(null), json!(null), json!(204)]
        );
        assert!(
            silent[0]
                .1
                .iter()
                .all(|a| a["body"] == silent[0].1[0]["body"])
        );
        assert_eq!(silent.len(), 2, "the later job reached silent once");
        assert_eq!(by_id(&log, "gone").len(), 1);
    });
    stop(up);
}

/// An upload's completion and its job's progress by tenths arrive, in order, each verified.
#[test]
fn an_upload_s_completion_and_its_job_s_progress_are_announced() {
    let data = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let up = start_up_with(data.path(), &[]);
    let api = Api::of(&up, data.path());
    let c = reqwest::Client::new();
    runtime().block_on(async {
        let events = ["upload.completed", "job.progress", "job.completed"];
        let endpoint = api
            .endpoint(&format!("{}/all", receiver.base), &events)
            .await;
        receiver
            .put(&c, "/_secret/all", endpoint["secret"].as_str().unwrap())
            .await;
        let image = crate::jobs::Image::of("palms", "test1.jpg", photo());
        let job_id = crate::jobs::upload(&c, &api.base, &api.key, "palms", &[image]).await;
        wait_for(&api, "the job's events are delivered", |d| {
            d.iter()
                .any(|d| d["event"] == "job.completed" && d["state"] == "delivered")
                && d.iter().all(|d| d["state"] == "delivered")
        })
        .await;
        let log = receiver.log(&c).await;
        assert!(log.iter().all(|e| e["verified"] == true), "{log:#?}");
        let bodies: Vec<Value> = log.iter().map(body).collect();
        let types: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
        let once = |event: &str| {
            let found: Vec<&Value> = bodies.iter().filter(|b| b["type"] == event).collect();
            assert_eq!(found.len(), 1, "{event}: {types:?}");
            found[0].clone()
        };
        let completed = once("upload.completed");
        assert_eq!(completed["data"]["job_id"], job_id.as_str());
        assert_eq!(completed["data"]["image_ids"].as_array().unwrap().len(), 1);
        assert_eq!(once("job.completed")["data"]["state"], "succeeded");
        // Progress: at least one tenth, each tenth once (deliveries run concurrently, so
        // their arrival order is not the events' order).
        let mut tenths: Vec<i64> = bodies
            .iter()
            .filter(|b| b["type"] == "job.progress")
            .map(|b| {
                assert_eq!(b["data"]["job_id"], job_id.as_str());
                (b["data"]["progress"]["fraction"].as_f64().unwrap() * 10.0).floor() as i64
            })
            .collect();
        assert!(!tenths.is_empty(), "{types:?}");
        let announced = tenths.len();
        tenths.sort_unstable();
        tenths.dedup();
        assert_eq!(
            tenths.len(),
            announced,
            "a tenth announced twice: {tenths:?}"
        );
        assert!(tenths.iter().all(|t| (1..10).contains(t)), "{tenths:?}");
    });
    stop(up);
}

#[test]
fn deliveries_pending_when_the_process_is_killed_arrive_after_a_restart_with_their_ids() {
    let data = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let args = ["--webhook-schedule", &["1s"; 30].join(",")];
    let mut up = start_up_with(data.path(), &args);
    let api = Api::of(&up, data.path());
    let c = reqwest::Client::new();
    let rt = runtime();
    let job = rt.block_on(async {
        let endpoint = api
            .endpoint(&format!("{}/closed", receiver.base), &["job.completed"])
            .await;
        receiver
            .put(&c, "/_secret/closed", endpoint["secret"].as_str().unwrap())
            .await;
        receiver.put(&c, "/_mode/closed", "closed").await;
        let job = api.job("test1.jpg", photo()).await;
        assert_eq!(job["state"], "succeeded");
        let deadline = Instant::now() + Duration::from_secs(60);
        while receiver.log(&c).await.len() < 2 {
            assert!(Instant::now() < deadline, "no attempts arrived");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        job
    });
    up.child.kill().unwrap();
    up.child.wait().unwrap();
    let before = rt.block_on(receiver.log(&c));
    rt.block_on(receiver.put(&c, "/_mode/closed", "ok"));

    let up = start_up_with(data.path(), &args);
    let api = Api::of(&up, data.path());
    rt.block_on(async {
        let delivered = wait_for(
            &api,
            "the pending delivery arrives after the restart",
            |d| d.len() == 1 && d[0]["state"] == "delivered",
        )
        .await;
        let log = receiver.log(&c).await;
        assert!(
            log.len() > before.len(),
            "nothing arrived after the restart"
        );
        assert!(log.iter().all(|e| e["verified"] == true), "{log:#?}");
        let groups = by_id(&log, "closed");
        assert_eq!(groups.len(), 1, "one event, one webhook-id: {log:#?}");
        let attempts = &groups[0].1;
        assert!(attempts.iter().all(|a| a["body"] == attempts[0]["body"]));
        assert_eq!(
            attempts.iter().filter(|a| a["status"] == 204).count(),
            1,
            "{log:#?}"
        );
        assert_eq!(attempts.last().unwrap()["status"], 204);
        assert_eq!(body(attempts[0])["data"]["job_id"], job["job_id"]);
        assert_eq!(
            delivered[0]["message_id"].as_str(),
            Some(groups[0].0.as_str())
        );
    });
    stop(up);
}

#[test]
fn webhook_urls_to_loopback_private_and_link_local_addresses_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let url = format!("sqlite:{}", dir.path().join("jobs.sqlite").display());
        let store = Store::connect(&url).await.unwrap();
        let request = |url: &str| CreateWebhook {
            project: "palms".into(),
            url: url.into(),
            events: vec![WebhookEvent::JobCompleted],
        };
        for (url, kind) in [
            ("https://127.0.0.1/hook", "loopback"),
            ("https://10.0.0.1/hook", "private"),
            ("https://169.254.169.254/latest/meta-data/", "link-local"),
            // A name: refused by what it resolves to.
            ("https://localhost/hook", "loopback"),
        ] {
            let refused = register(&store, &request(url), false).await.unwrap();
            match refused {
                Err(WebhookRequestError::Url(e)) => {
                    assert!(e.to_string().contains(kind), "{url}: {e}");
                }
                other => panic!("{url}: {other:?}"),
            }
            let allowed = register(&store, &request(url), true).await.unwrap();
            assert!(
                allowed.is_ok(),
                "{url} with local webhooks allowed: {allowed:?}"
            );
        }
        let plain = register(&store, &request("http://hooks.example.com/"), false).await;
        assert!(matches!(plain.unwrap(), Err(WebhookRequestError::Url(_))));

        // At delivery time, the resolver refuses a name whose addresses are loopback (a name
        // registered while it was public that now resolves to this machine).
        let deliverer = Deliverer::new(&DeliveryOptions::default()).unwrap();
        let secret = tessera_core::webhook::WebhookSecret::from_bytes(&[1; 32]).unwrap();
        let due = tessera_batch::store::DueDelivery {
            delivery_id: "dlv_1".into(),
            message_id: "msg_1".into(),
            url: "https://localhost:9/hook".into(),
            secret,
            payload: "{}".into(),
            event: WebhookEvent::JobCompleted,
            attempt: 1,
        };
        let answered = deliverer.attempt(&due, 0).await;
        assert_eq!(answered.status, None);
        let error = answered.error.unwrap();
        assert!(error.contains("loopback"), "{error}");
        let literal = tessera_batch::store::DueDelivery {
            url: "https://169.254.169.254/".into(),
            ..due
        };
        let error = deliverer.attempt(&literal, 0).await.error.unwrap();
        assert!(error.contains("link-local"), "{error}");
    });
}

/// A job's own endpoint (`webhook_url` on `POST /v1/jobs`) gets that job's events and no
/// other's, signed with the secret its creation answered; an upload planned and left
/// uncompleted past its URLs' lifetime is announced as `upload.expired`, once.
#[test]
fn a_job_s_own_webhook_and_an_abandoned_upload_are_announced() {
    let data = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let up = start_up_with(data.path(), &["--upload-url-seconds", "4"]);
    let api = Api::of(&up, data.path());
    let c = reqwest::Client::new();
    runtime().block_on(async {
        let project = api
            .endpoint(
                &format!("{}/project", receiver.base),
                &["upload.expired", "job.completed"],
            )
            .await;
        receiver
            .put(&c, "/_secret/project", project["secret"].as_str().unwrap())
            .await;

        // Planned, never PUT nor completed.
        let left = crate::jobs::Image::of("palms", "left-behind.jpg", photo());
        let (status, abandoned) = api
            .call(
                reqwest::Method::POST,
                "/v1/uploads",
                Some(json!({"project": "palms", "files": [left.manifest]})),
            )
            .await;
        assert_eq!(status, 201, "{abandoned}");
        let abandoned_id = abandoned["upload_id"].as_str().unwrap();

        let image = crate::jobs::Image::of("palms", "test1.jpg", photo());
        let upload_job = crate::jobs::upload(&c, &api.base, &api.key, "palms", &[image]).await;
        let (status, made) = api
            .call(
                reqwest::Method::POST,
                "/v1/jobs",
                Some(json!({
                    "project": "palms",
                    "search": {},
                    "webhook_url": format!("{}/job", receiver.base),
                })),
            )
            .await;
        assert_eq!(status, 201, "{made}");
        let job_id = made["job_id"].as_str().unwrap().to_owned();
        assert_eq!(made["webhook"]["job_id"], job_id.as_str());
        receiver
            .put(&c, "/_secret/job", made["webhook"]["secret"].as_str().unwrap())
            .await;
        // A refused webhook makes no job.
        let (status, refused) = api
            .call(
                reqwest::Method::POST,
                "/v1/jobs",
                Some(json!({"project": "palms", "search": {}, "webhook_url": "https://user:pw@example.com/"})),
            )
            .await;
        assert_eq!((status, &refused["code"]), (400, &json!("webhook")), "{refused}");
        let (_, listed) = api
            .call(reqwest::Method::GET, "/v1/jobs?project=palms", None)
            .await;
        assert_eq!(listed["jobs"].as_array().unwrap().len(), 2, "{listed}");

        wait_for(&api, "job.completed twice and upload.expired, delivered", |d| {
            d.len() == 4 && d.iter().all(|d| d["state"] == "delivered")
        })
        .await;
        let log = receiver.log(&c).await;
        assert!(log.iter().all(|e| e["verified"] == true), "{log:#?}");
        let events = |path: &str| -> Vec<(Value, Value)> {
            by_id(&log, path)
                .iter()
                .map(|(_, attempts)| {
                    let b = body(attempts[0]);
                    let subject = if b["type"] == "upload.expired" {
                        b["data"]["upload_id"].clone()
                    } else {
                        b["data"]["job_id"].clone()
                    };
                    (b["type"].clone(), subject)
                })
                .collect()
        };
        assert_eq!(
            events("job"),
            [(json!("job.completed"), json!(job_id))],
            "the job's endpoint hears of its job only"
        );
        let mut heard = events("project");
        heard.sort_by_key(|(t, s)| format!("{t}{s}"));
        let mut expected = vec![
            (json!("job.completed"), json!(job_id)),
            (json!("job.completed"), json!(upload_job)),
            (json!("upload.expired"), json!(abandoned_id)),
        ];
        expected.sort_by_key(|(t, s)| format!("{t}{s}"));
        assert_eq!(heard, expected);
        let expired = log
            .iter()
            .map(body)
            .find(|b| b["type"] == "upload.expired")
            .unwrap();
        assert_eq!(expired["data"]["file_names"], json!(["left-behind.jpg"]));
        assert_eq!(
            expired["data"]["expired_at"].as_u64().unwrap()
                - expired["data"]["created_at"].as_u64().unwrap(),
            4
        );
        // Announced once: a later sweep adds nothing.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(api.deliveries("project=palms").await.len(), 4);
    });
    stop(up);
}
