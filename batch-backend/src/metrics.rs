//! What a native process reports at `GET /metrics`, in the OpenMetrics text format
//! (<https://prometheus.io/docs/specs/om/open_metrics_spec/>, which Prometheus scrapes), through
//! the `prometheus-client` crate; and its readiness at `GET /ready`.
//!
//! Counted as things happen, in this process: requests by route and status, task durations by
//! stage and outcome, inference windows, webhook attempts by outcome. Read from the job store
//! at each scrape, so every process reports the whole system: jobs by state, tasks waiting and
//! running by stage, the age of the oldest waiting task by stage, and webhook deliveries by
//! state; and from the edge's metadata store, on the edge hosts: uploads by state. Rates
//! (windows per second, requests per second) are the scraper's `rate()` of the counters.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Result;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use tessera_core::job::JobState;
use tessera_core::webhook::DeliveryState;
use tessera_edge::metadata::MetadataStore;

use crate::objects::Objects;
use crate::store::Store;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A metric's labels, in order.
type Labels = Vec<(&'static str, String)>;

/// This process's metrics ([`metrics`]).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    task_seconds: Family<Labels, Histogram>,
    windows: Counter,
    webhook_attempts: Family<Labels, Counter>,
    jobs: Family<Labels, Gauge>,
    tasks: Family<Labels, Gauge>,
    oldest_waiting: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    deliveries: Family<Labels, Gauge>,
    uploads: Family<Labels, Gauge>,
    arrivals: Family<Labels, Gauge>,
}

/// Task durations from 50 ms to about 14 hours, doubling.
fn task_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 20))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("tessera");
    let requests = Family::<Labels, Counter>::default();
    registry.register(
        "http_requests",
        "HTTP requests answered, by route (its template) and status",
        requests.clone(),
    );
    let task_seconds =
        Family::<Labels, Histogram>::new_with_constructor(task_histogram as fn() -> Histogram);
    registry.register(
        "task_duration_seconds",
        "Task attempts run by this process, by stage and outcome",
        task_seconds.clone(),
    );
    let windows = Counter::default();
    registry.register(
        "inference_windows",
        "Detector windows run by this process (windows per second: its rate)",
        windows.clone(),
    );
    let webhook_attempts = Family::<Labels, Counter>::default();
    registry.register(
        "webhook_attempts",
        "Webhook delivery attempts by this process, by outcome (delivered, retry, dead_letter, disabled)",
        webhook_attempts.clone(),
    );
    let jobs = Family::<Labels, Gauge>::default();
    registry.register("jobs", "Jobs by state (the job store)", jobs.clone());
    let tasks = Family::<Labels, Gauge>::default();
    registry.register(
        "tasks",
        "Tasks waiting (available, retryable) or running, by stage and state (the job store)",
        tasks.clone(),
    );
    let oldest_waiting = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register(
        "oldest_waiting_task_age_seconds",
        "Age of the oldest waiting task, by stage (the job store)",
        oldest_waiting.clone(),
    );
    let deliveries = Family::<Labels, Gauge>::default();
    registry.register(
        "webhook_deliveries",
        "Webhook deliveries by state (pending, delivered, failed; the job store)",
        deliveries.clone(),
    );
    let uploads = Family::<Labels, Gauge>::default();
    registry.register(
        "uploads",
        "Uploads by state (planned, completed, expired; the edge's metadata store)",
        uploads.clone(),
    );
    let arrivals = Family::<Labels, Gauge>::default();
    registry.register(
        "arrivals",
        "Originals put by other routes than the edge, by state (recorded, refused; the job store)",
        arrivals.clone(),
    );
    Metrics {
        uploads,
        arrivals,
        registry,
        requests,
        task_seconds,
        windows,
        webhook_attempts,
        jobs,
        tasks,
        oldest_waiting,
        deliveries,
    }
});

/// The process's metrics.
#[must_use]
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// Counts an answered request: `route` is its template (`GET /v1/jobs/{id}`).
    pub fn request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    /// Records a task attempt of `stage` that ended with `outcome` after `took`, having run
    /// `windows` detector windows.
    pub fn task(&self, stage: &str, outcome: &str, took: Duration, windows: u64) {
        self.task_seconds
            .get_or_create(&vec![
                ("stage", stage.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .observe(took.as_secs_f64());
        self.windows.inc_by(windows);
    }

    /// Counts a webhook attempt's outcome.
    pub fn webhook_attempt(&self, outcome: &str) {
        self.webhook_attempts
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    /// The OpenMetrics text: this process's counters, and the gauges read now from what
    /// `probes` holds (the job store's jobs, tasks and deliveries; the metadata store's
    /// uploads). A state with nothing in it reads 0, so a series never vanishes.
    ///
    /// # Errors
    /// A store's.
    pub async fn render(&self, probes: &Probes<'_>, now: i64) -> Result<String> {
        if let Some(store) = probes.jobs {
            let snapshot = store.snapshot(now).await?;
            set_all(
                &self.jobs,
                JobState::ALL.map(JobState::as_str),
                snapshot.jobs,
            );
            self.tasks.clear();
            for (stage, state, n) in snapshot.tasks {
                self.tasks
                    .get_or_create(&vec![("stage", stage), ("state", state)])
                    .set(n);
            }
            self.oldest_waiting.clear();
            for (stage, age_ms) in snapshot.oldest_waiting_ms {
                #[allow(clippy::cast_precision_loss)] // ages far below 2⁵³ ms
                self.oldest_waiting
                    .get_or_create(&vec![("stage", stage)])
                    .set(age_ms as f64 / 1000.0);
            }
            set_all(
                &self.deliveries,
                DeliveryState::ALL.map(DeliveryState::as_str),
                snapshot.deliveries,
            );
            set_all(
                &self.arrivals,
                ARRIVAL_STATES,
                store.arrival_counts().await?,
            );
        }
        if let Some(metadata) = probes.metadata {
            let counts = metadata.upload_counts().await?;
            set_all(&self.uploads, UPLOAD_STATES, counts);
        }
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The states `tessera_uploads` reports ([`MetadataStore::upload_counts`]).
const UPLOAD_STATES: [&str; 3] = ["planned", "completed", "expired"];

/// The states `tessera_arrivals` reports ([`Store::arrival_counts`]).
const ARRIVAL_STATES: [&str; 2] = ["recorded", "refused"];

/// Sets `family`'s `state` gauges to `counts`, every state of `states` included (0 when it
/// has none).
fn set_all<const N: usize>(
    family: &Family<Labels, Gauge>,
    states: [&'static str; N],
    counts: Vec<(String, i64)>,
) {
    family.clear();
    for state in states {
        family
            .get_or_create(&vec![("state", state.to_owned())])
            .set(0);
    }
    for (state, n) in counts {
        family.get_or_create(&vec![("state", state)]).set(n);
    }
}

/// What a native process checks for readiness and reads its gauges from: the job store (the
/// batch processes: `tessera worker`, `tessera up`), the edge's metadata store (the edge
/// hosts: `tessera edge`, `tessera up`), and storage (every process).
#[derive(Debug, Clone, Copy)]
pub struct Probes<'a> {
    /// The job store, where this process has one.
    pub jobs: Option<&'a Store>,
    /// The edge's metadata store, where this process has one.
    pub metadata: Option<&'a MetadataStore>,
    /// Storage.
    pub objects: &'a Objects,
}

/// How long `/ready` waits for the job store and for storage (a probe that hangs, as an
/// unreachable endpoint's retries do, is not ready).
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// Answers the operations routes of a native process, `None` for another path:
/// `GET /health` (200 while the process serves), `GET /ready` (200 when each of `probes`'
/// stores and storage answer, 503 naming those that do not) and `GET /metrics`; another
/// method is 405 with `Allow: GET`.
pub async fn operations(
    method: &http::Method,
    path: &str,
    probes: &Probes<'_>,
) -> Option<http::Response<Vec<u8>>> {
    let answer = |status: http::StatusCode, content_type: &str, body: String| {
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(body.into_bytes())
            .expect("a valid response")
    };
    let json = "application/json";
    if !matches!(path, "/health" | "/ready" | "/metrics") {
        return None;
    }
    if method != http::Method::GET {
        let body = tessera_core::error::ErrorBody::new(
            tessera_core::error::ErrorCode::MethodNotAllowed,
            format!("{path} answers GET only"),
        );
        let mut answer = answer(
            http::StatusCode::METHOD_NOT_ALLOWED,
            json,
            serde_json::to_string(&body).expect("an error body serialises"),
        );
        answer
            .headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
        return Some(answer);
    }
    Some(match path {
        "/health" => answer(http::StatusCode::OK, json, r#"{"status":"ok"}"#.to_owned()),
        "/ready" => {
            let within = |what: &str| format!("{what} did not answer within {READY_TIMEOUT:?}");
            let mut checks = serde_json::Map::new();
            if let Some(store) = probes.jobs {
                let problem = match tokio::time::timeout(READY_TIMEOUT, store.ping()).await {
                    Ok(answered) => answered.err().map(|e| format!("{e:#}")),
                    Err(_) => Some(within("the job store")),
                };
                checks.insert(
                    "database".into(),
                    problem.unwrap_or_else(|| "ok".into()).into(),
                );
            }
            if let Some(metadata) = probes.metadata {
                let problem = metadata.upload_counts().await.err().map(|e| e.to_string());
                checks.insert(
                    "metadata".into(),
                    problem.unwrap_or_else(|| "ok".into()).into(),
                );
            }
            let storage =
                match tokio::time::timeout(READY_TIMEOUT, probes.objects.reachable()).await {
                    Ok(answered) => answered.err().map(|e| e.to_string()),
                    Err(_) => Some(within("storage")),
                };
            checks.insert(
                "storage".into(),
                storage.unwrap_or_else(|| "ok".into()).into(),
            );
            let ready = checks.values().all(|v| v == "ok");
            let mut body = serde_json::Map::new();
            body.insert(
                "status".into(),
                (if ready { "ready" } else { "not ready" }).into(),
            );
            body.extend(checks);
            let body = serde_json::Value::Object(body);
            let status = if ready {
                http::StatusCode::OK
            } else {
                tracing::warn!(%body, "not ready");
                http::StatusCode::SERVICE_UNAVAILABLE
            };
            answer(status, json, body.to_string())
        }
        "/metrics" => match metrics().render(probes, crate::tasks::now_ms()).await {
            Ok(text) => answer(http::StatusCode::OK, CONTENT_TYPE, text),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "metrics");
                answer(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "a store did not answer\n".to_owned(),
                )
            }
        },
        _ => return None,
    })
}
