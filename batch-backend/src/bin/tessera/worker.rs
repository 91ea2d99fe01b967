//! `tessera worker`: N workers ([`tessera_batch::worker`]) against a shared job store and
//! the bucket named by the edge's `TESSERA_S3_*` variables; `/health`, `/ready` and `/metrics`
//! on `--listen`, and,
//! when `TESSERA_BACKEND_TOKEN` is set, the service job API that a deployed edge calls
//! ([`tessera_batch::jobs::answer`], `TESSERA_BACKEND_URL` on the edge). SIGTERM or Ctrl-C
//! stops claiming, lets the tasks in hand finish, and exits 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use tessera_batch::arrivals::Arrivals;
use tessera_batch::metrics::{Probes, metrics, operations};
use tessera_batch::objects::Objects;
use tessera_batch::store::Store;
use tessera_batch::tasks::Pipeline;
use tessera_batch::webhook::DeliveryOptions;
use tessera_batch::worker::{self, WorkerOptions};
use tessera_core::job::DEFAULT_DETECT_SHARD_PIXELS;
use tessera_core::job_inputs::JobLimits;
use tessera_core::mosaic::DEFAULT_MAX_INPUT_PIXELS;
use tessera_core::webhook::DeliverySchedule;
use tessera_edge::metadata::MetadataStore;

use crate::detect::DetectorArgs;

#[derive(Args)]
pub(crate) struct WorkerArgs {
    /// The job store: `postgres://…` (shared by every worker of every machine) or
    /// `sqlite:PATH` (one machine).
    #[arg(long)]
    database: String,
    /// Workers in this process, each claiming one task at a time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    workers: u64,
    /// Seconds a claim lasts unless its worker renews it (every third of it). A killed
    /// worker's task is taken up again after this long.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(3..))]
    lease_seconds: u64,
    /// Folder for downloads and outputs while a task runs [default: the system's temporary
    /// folder].
    #[arg(long)]
    scratch: Option<PathBuf>,
    #[command(flatten)]
    detector: DetectorArgs,
    #[command(flatten)]
    job: JobArgs,
    #[command(flatten)]
    webhooks: WebhookArgs,
    /// Address of `/health`, and of the service job API a deployed edge calls when
    /// `TESSERA_BACKEND_TOKEN` is set (the edge's `TESSERA_BACKEND_URL`).
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: std::net::SocketAddr,
    /// The edge's metadata store (`postgres://…` or `sqlite:PATH`, the native edge's
    /// `--database`): originals that
    /// any S3 client puts into `original-uploads/{project}/` are recorded there, announced by
    /// storage events on `POST /v1/events/s3` and found by the periodic reconciliation.
    /// Without it, neither runs.
    #[arg(long)]
    metadata_database: Option<String>,
    /// Seconds between reconciliations (a listing of `original-uploads/` that settles what no
    /// event announced), with --metadata-database; 0: none. Any number of workers may run
    /// it: settling is idempotent.
    #[arg(long, default_value_t = 300)]
    reconcile_seconds: u64,
}

/// Largest service API request body: a job of 10,000 inputs is about 3 MB of JSON.
const MAX_API_BODY: usize = 16 << 20;

/// What `--listen` serves: the operations routes, and the service job API when a token is
/// configured.
struct Service {
    store: Store,
    objects: Objects,
    token: Option<String>,
    allow_local_webhooks: bool,
    arrivals: Option<std::rc::Rc<Arrivals<MetadataStore>>>,
}

/// `/health`, `/ready` and `/metrics` ([`tessera_batch::metrics::operations`]), and the
/// service job API, each request counted by route and status.
async fn answer(
    service: &Service,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let route = tessera_edge::route_template(request.method(), request.uri().path());
    let response = answer_uncounted(service, request).await;
    metrics().request(route, response.status().as_u16());
    response
}

async fn answer_uncounted(
    service: &Service,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let Service {
        store,
        objects,
        token,
        allow_local_webhooks,
        arrivals,
    } = service;
    use http_body_util::BodyExt as _;
    let text = |status: http::StatusCode, body: &'static str| {
        let mut response = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response
    };
    let path = request.uri().path();
    let probes = Probes {
        jobs: Some(store),
        metadata: arrivals.as_ref().map(|a| &a.metadata),
        objects,
    };
    if let Some(answer) = operations(request.method(), path, &probes).await {
        return answer.map(|body| Full::new(Bytes::from(body)));
    }
    let api = ["/v1/jobs", "/v1/webhooks", "/v1/events/"]
        .iter()
        .any(|prefix| path.starts_with(prefix));
    let Some(token) = token.as_deref().filter(|_| api) else {
        return text(http::StatusCode::NOT_FOUND, "not found\n");
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = http_body_util::Limited::new(body, MAX_API_BODY)
        .collect()
        .await
    else {
        return text(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "the body is over 16 MiB or was cut short\n",
        );
    };
    let request = http::Request::from_parts(parts, body.to_bytes().to_vec());
    tessera_batch::jobs::answer(
        store,
        token,
        *allow_local_webhooks,
        arrivals.as_deref(),
        &request,
    )
    .await
    .map(|body| Full::new(Bytes::from(body)))
}

/// How jobs run, for `tessera worker` and `tessera up`: limits on one input ([`JobLimits`])
/// and how many detect tasks share a mosaic.
#[derive(clap::Args)]
pub(crate) struct JobArgs {
    /// Largest job input, in bytes; larger inputs are reported failed and the job goes on
    /// (the photo path's 10 MiB does not apply to jobs).
    #[arg(long, default_value_t = JobLimits::DEFAULT_MAX_INPUT_BYTES)]
    max_input_bytes: u64,
    /// Most pixels a raster input's header may claim (more is refused as a likely
    /// decompression bomb).
    #[arg(long, default_value_t = DEFAULT_MAX_INPUT_PIXELS)]
    max_input_pixels: u64,
    /// Mosaic pixels per detect task: a larger mosaic's windows are split into that many
    /// tasks, which any workers share (at most 256) [default: 64 Mi pixels, 8192²].
    #[arg(long, default_value_t = DEFAULT_DETECT_SHARD_PIXELS, hide_default_value = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    detect_shard_pixels: u64,
}

/// How webhooks are delivered, for `tessera worker` and `tessera up`.
#[derive(clap::Args)]
pub(crate) struct WebhookArgs {
    /// Waits before each retry of a failed delivery (units ms, s, m, h); after the last, the
    /// delivery is dead-lettered [default: the Standard Webhooks schedule,
    /// 5s,5m,30m,2h,5h,10h,10h, each ±10 %].
    #[arg(long, default_value = "5s,5m,30m,2h,5h,10h,10h", hide_default_value = true,
          value_parser = |s: &str| DeliverySchedule::parse(s).map_err(|e| e.to_string()))]
    webhook_schedule: DeliverySchedule,
    /// Seconds one delivery attempt may take.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    webhook_timeout_seconds: u64,
    /// Allow webhook URLs that are plain http or reach loopback, private or link-local
    /// addresses (a local stack or a test; never on a shared network). `tessera up` always
    /// allows them.
    #[arg(long)]
    webhook_allow_local: bool,
}

impl WebhookArgs {
    pub(crate) fn options(&self, allow_local: bool) -> DeliveryOptions {
        DeliveryOptions {
            schedule: self.webhook_schedule.clone(),
            allow_local: allow_local || self.webhook_allow_local,
            timeout: Duration::from_secs(self.webhook_timeout_seconds),
            ..DeliveryOptions::default()
        }
    }
}

impl JobArgs {
    pub(crate) const fn limits(&self) -> JobLimits {
        JobLimits {
            max_input_bytes: self.max_input_bytes,
            max_input_pixels: self.max_input_pixels,
        }
    }

    pub(crate) const fn detect_shard_pixels(&self) -> u64 {
        self.detect_shard_pixels
    }
}

pub(crate) fn run(args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let storage = tessera_edge::config::storage_from_lookup(|name| std::env::var(name).ok())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&runtime, async {
        let store = Store::connect(&args.database)
            .await?
            .with_lease(Duration::from_secs(args.lease_seconds));
        let pipeline = Pipeline {
            store,
            objects: Objects::s3(&storage)?,
            scratch: args
                .scratch
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("tessera-worker")),
            detector: args.detector.choice(),
            limits: args.job.limits(),
            detect_shard_pixels: args.job.detect_shard_pixels(),
        };
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let health = listener.local_addr()?;
        let mut options = WorkerOptions::new(usize::try_from(args.workers)?);
        options.webhooks = args.webhooks.options(false);
        let allow_local = options.webhooks.allow_local;
        eprintln!(
            "tessera worker: {} worker(s) as {}, health on http://{health}/health",
            options.workers, options.name
        );
        let stop = crate::interrupted()?;
        let arrivals = match &args.metadata_database {
            Some(url) => Some(std::rc::Rc::new(Arrivals {
                jobs: pipeline.store.clone(),
                objects: pipeline.objects.clone(),
                metadata: MetadataStore::open(url)
                    .await
                    .with_context(|| format!("--metadata-database {}", crate::edge::redact(url)))?,
                limits: tessera_core::limits::Limits::DEFAULT,
            })),
            None => None,
        };
        let reconciler = match (&arrivals, args.reconcile_seconds) {
            (Some(arrivals), every) if every > 0 => Some(tokio::task::spawn_local(
                reconcile_every(std::rc::Rc::clone(arrivals), Duration::from_secs(every)),
            )),
            _ => None,
        };
        let service = std::rc::Rc::new(Service {
            store: pipeline.store.clone(),
            objects: pipeline.objects.clone(),
            token: std::env::var("TESSERA_BACKEND_TOKEN").ok(),
            allow_local_webhooks: allow_local,
            arrivals,
        });
        let serve_health = tessera_edge::native::serve_connections(
            listener,
            tessera_edge::native::ConnectionLimits {
                client_timeout: Duration::from_secs(15),
                max_connections: 64,
            },
            move |request: http::Request<hyper::body::Incoming>| {
                let service = std::rc::Rc::clone(&service);
                async move { Ok::<_, std::convert::Infallible>(answer(&service, request).await) }
            },
            std::future::pending(),
        );
        let health_server = tokio::task::spawn_local(serve_health);
        worker::run(pipeline, options, stop).await;
        health_server.abort();
        if let Some(reconciler) = reconciler {
            reconciler.abort();
        }
        tracing::info!("stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Reconciles now and then every `every` ([`Arrivals::reconcile`]), logging what it found.
pub(crate) async fn reconcile_every<M: tessera_edge::Store>(
    arrivals: std::rc::Rc<Arrivals<M>>,
    every: Duration,
) {
    loop {
        match arrivals.reconcile().await {
            Ok(found) if found.recorded + found.refused > 0 => tracing::info!(
                listed = found.listed,
                recorded = found.recorded,
                refused = found.refused,
                "reconciled arrivals no event announced"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = format!("{e:#}"), "reconciling arrivals"),
        }
        tokio::time::sleep(every).await;
    }
}
