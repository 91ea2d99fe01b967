//! `tessera up`: the whole upload path on one machine, in one process.
//!
//! - Storage: an S3-compatible endpoint (s3s + s3s-fs) on `s3_listen`, SigV4 enforced with a
//!   local key pair, CORS for the page's origin, objects under `{data}/s3/{bucket}/`. Keys with
//!   `.` or `..` segments are refused before s3s-fs sees them (it would resolve them outside
//!   the bucket folder).
//! - The page and the edge API on `listen`: `/v1/…` goes to the edge router on its native host
//!   with SQLite (`{data}/metadata.sqlite`); `/health`, `/ready` and `/metrics` are the
//!   process's ([`tessera_batch::metrics::operations`]); `/config.json` tells the page its API
//!   key and project; everything else is the static page from `web`.
//! - Jobs: the edge triggers and reads them in-process ([`LocalJobs`] over the job store,
//!   `{data}/batch.sqlite`, or `--database postgres://…`); `--workers` in-process workers
//!   ([`tessera_batch::worker`]) run them against the storage endpoint, as `tessera worker`
//!   processes would.
//!
//! - Arrivals: originals that any S3 client writes into `original-uploads/{project}/` are
//!   announced by the storage and get the browser's treatment ([`tessera_batch::arrivals`]);
//!   a reconciliation at start and every `--reconcile-seconds` settles those it missed.
//!
//! Everything runs on one current-thread tokio runtime (the edge router is `!Send`, as in an
//! isolate). Data and the generated credentials (`{data}/local.json`) survive restarts.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tessera_core::access::{api_key_hash, host_allowed};
use tessera_core::job_inputs::{JobLimits, MAX_JOB_INPUTS};
use tessera_core::presign::{Addressing, StorageTarget};
use tessera_core::upload::UploadPolicy;
use tessera_edge::metadata::MetadataStore;
use tessera_edge::native::{
    ConnectionLimits, PostedFiles, ReqwestOutbound, answer_with_files, serve_connections,
};
use tessera_edge::sqlite::SqliteStore;
use tessera_edge::{Config, Edge};
use tower::Service as _;

use tessera_batch::arrivals::Arrivals;
use tessera_batch::jobs::LocalJobs;
use tessera_batch::metrics::{Probes, metrics, operations};
use tessera_batch::objects::Objects;
use tessera_batch::store::Store;
use tessera_batch::tasks::{DetectorChoice, Pipeline};
use tessera_batch::worker::{self, WorkerOptions};

#[derive(Args)]
pub(crate) struct UpArgs {
    /// Address of the page and the edge API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Address of the S3-compatible endpoint.
    #[arg(long, default_value = "127.0.0.1:9000")]
    s3_listen: std::net::SocketAddr,
    /// Folder for objects, databases and the generated local credentials; kept across runs.
    #[arg(long, default_value = "tessera-data")]
    data: PathBuf,
    /// The page's folder (with pkg/ built by scripts/build-web.sh).
    #[arg(long, default_value = "web")]
    web: PathBuf,
    /// Allow a --listen address that is not loopback. The page hands its API key to whoever
    /// loads /config.json, so everyone who can reach that address can use the API.
    #[arg(long)]
    expose: bool,
    /// The job store [default: sqlite:{data}/batch.sqlite]; `postgres://…` to share it with
    /// `tessera worker` processes.
    #[arg(long)]
    database: Option<String>,
    /// Workers run in this process (0: only `tessera worker` processes run jobs).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Lifetime of an upload's presigned PUT URLs, seconds (1 to 604800); an upload not
    /// completed by then is announced by the `upload.expired` webhook.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    upload_url_seconds: u64,
    /// Seconds between reconciliations: a listing of `original-uploads/` that settles the
    /// originals written while the stack was down (the storage announces the rest as they
    /// are written); 0: only the one at start.
    #[arg(long, default_value_t = 300)]
    reconcile_seconds: u64,
    #[command(flatten)]
    connections: crate::ConnectionArgs,
    #[command(flatten)]
    job: crate::worker::JobArgs,
    #[command(flatten)]
    webhooks: crate::worker::WebhookArgs,
}

/// Runs `tessera up` until Ctrl-C.
pub(crate) fn run_command(args: UpArgs) -> anyhow::Result<ExitCode> {
    let options = UpOptions {
        listen: args.listen,
        s3_listen: args.s3_listen,
        data: args.data,
        web: args.web,
        expose: args.expose,
        limits: args.connections.limits(),
        database: args.database,
        workers: args.workers,
        upload_url_lifetime: Duration::from_secs(args.upload_url_seconds),
        reconcile_every: Duration::from_secs(args.reconcile_seconds),
        job_limits: args.job.limits(),
        detect_shard_pixels: args.job.detect_shard_pixels(),
        webhooks: args.webhooks.options(true),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&runtime, async {
        let ready = |url: &str, storage: std::net::SocketAddr| {
            println!("Tessera is up: open {url}");
            eprintln!(
                "storage: http://{storage} (bucket {}), data in {}; Ctrl-C stops",
                BUCKET,
                options.data.display()
            );
        };
        let shutdown = crate::interrupted()?;
        run(&options, ready, shutdown).await?;
        tracing::info!("stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// The bucket of the local stack.
pub(crate) const BUCKET: &str = "tessera";
/// The project the page uploads into unless told otherwise.
pub(crate) const DEFAULT_PROJECT: &str = "local";

/// Where `tessera up` listens and keeps its data.
#[derive(Debug, Clone)]
pub(crate) struct UpOptions {
    /// The page and the edge API.
    pub listen: SocketAddr,
    /// The S3-compatible endpoint.
    pub s3_listen: SocketAddr,
    /// Objects, databases and credentials; created if missing, kept across restarts.
    pub data: PathBuf,
    /// The static page (`web/`, with `web/pkg/` built by `scripts/build-web.sh`).
    pub web: PathBuf,
    /// How webhooks are delivered (local addresses allowed: this is the local stack).
    pub webhooks: tessera_batch::webhook::DeliveryOptions,
    /// Whether a non-loopback `listen` is allowed (`--expose`).
    pub expose: bool,
    /// Timeouts and the connection cap of both ports.
    pub limits: ConnectionLimits,
    /// The job store's URL; `None` for `sqlite:{data}/batch.sqlite`.
    pub database: Option<String>,
    /// In-process workers.
    pub workers: usize,
    /// Lifetime of an upload's presigned PUT URLs.
    pub upload_url_lifetime: Duration,
    /// Time between reconciliations of arrivals (zero: only at start).
    pub reconcile_every: Duration,
    /// What one job input may be.
    pub job_limits: JobLimits,
    /// Mosaic pixels per detect task.
    pub detect_shard_pixels: u64,
}

/// The local stack's secrets, generated on first start into `{data}/local.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LocalCredentials {
    /// The S3 access key id.
    pub access_key_id: String,
    /// The S3 secret access key.
    pub secret_access_key: String,
    /// The edge API key the page uses.
    pub api_key: String,
}

impl LocalCredentials {
    /// Reads `path`, or generates new secrets and writes them there. The file is readable by
    /// its owner only (mode 0600 on Unix); one found with wider permissions is narrowed.
    fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                restrict_to_owner(path)?;
                return serde_json::from_str(&text).with_context(|| format!("{}", path.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        let random = || uuid::Uuid::new_v4().simple().to_string();
        let credentials = Self {
            access_key_id: format!("TESSERA{}", &random()[..13].to_uppercase()),
            secret_access_key: random() + &random(),
            api_key: random(),
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        std::io::Write::write_all(&mut file, &serde_json::to_vec_pretty(&credentials)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(credentials)
    }
}

/// Narrows `path` to mode 0600 when group or others may read it (Unix; elsewhere a no-op).
fn restrict_to_owner(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the local secrets were readable by others; narrowed to 0600"
            );
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("narrowing {}", path.display()))?;
        }
    }
    Ok(())
}

type LocalEdge = Edge<MetadataStore, ReqwestOutbound, LocalJobs>;
/// The body of every answer `tessera up` gives.
pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Runs the stack until `shutdown` resolves. Call inside a `tokio::task::LocalSet` on a
/// current-thread runtime. `ready` is called with the page's URL and the storage endpoint's
/// address once both ports listen.
///
/// # Errors
/// When a port cannot be bound or the data folder cannot be prepared.
pub(crate) async fn run(
    options: &UpOptions,
    ready: impl FnOnce(&str, SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    if !options.listen.ip().is_loopback() {
        anyhow::ensure!(
            options.expose,
            "--listen {} is not a loopback address: the page hands its API key to whoever loads \
             /config.json, so anyone who can reach it could use the API. Listen on 127.0.0.1 or \
             [::1], or pass --expose to accept that",
            options.listen
        );
        tracing::warn!(
            listen = %options.listen,
            "--expose: the API key is served to anyone who can reach this address"
        );
    }
    let bucket_dir = options.data.join("s3").join(BUCKET);
    std::fs::create_dir_all(&bucket_dir)
        .with_context(|| format!("creating {}", bucket_dir.display()))?;
    anyhow::ensure!(
        options.web.join("index.html").is_file(),
        "{} has no index.html; pass --web with the page's folder",
        options.web.display()
    );
    if !options
        .web
        .join("pkg")
        .join("tessera_wasm_bg.wasm")
        .is_file()
    {
        tracing::warn!(
            missing = %options.web.join("pkg/tessera_wasm_bg.wasm").display(),
            "the page's wasm is not built; run `bash scripts/build-web.sh`"
        );
    }
    let credentials = LocalCredentials::load_or_create(&options.data.join("local.json"))?;

    let page_listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let s3_listener = tokio::net::TcpListener::bind(options.s3_listen)
        .await
        .with_context(|| format!("listening on {}", options.s3_listen))?;
    let page_addr = page_listener.local_addr()?;
    let s3_addr = s3_listener.local_addr()?;
    let origins = page_origins(page_addr);

    let (created, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let s3 =
        crate::storage::storage_service(&options.data.join("s3"), &credentials, &origins, created)?;
    let database = options
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", options.data.join("batch.sqlite").display()));
    let jobs = Store::connect(&database).await?;
    let open_metadata = || {
        let path = options.data.join("metadata.sqlite");
        SqliteStore::open(&path)
            .map(MetadataStore::Sqlite)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    };
    let store = open_metadata()?;
    let config = Config {
        storage: StorageTarget {
            endpoint: format!("http://{s3_addr}"),
            bucket: BUCKET.into(),
            region: "us-east-1".into(),
            addressing: Addressing::Path,
            access_key_id: credentials.access_key_id.clone(),
            secret_access_key: credentials.secret_access_key.clone(),
        },
        policy: UploadPolicy {
            expires_in: options.upload_url_lifetime,
            ..UploadPolicy::default()
        },
        get_expires_in: Duration::from_secs(15 * 60),
        api_keys: vec![api_key_hash(&credentials.api_key).parse().expect("a hash")],
        cors_origins: origins.clone(),
        max_body_bytes: 1024 * 1024,
        max_job_inputs: MAX_JOB_INPUTS,
        // One person's browser: generous, but still limited.
        rate_burst: 1000.0,
        rate_per_second: 200.0,
    };
    let pipeline = Pipeline {
        store: jobs.clone(),
        objects: Objects::s3(&config.storage)?,
        scratch: options.data.join("scratch"),
        detector: DetectorChoice::default(),
        limits: options.job_limits,
        detect_shard_pixels: options.detect_shard_pixels,
    };
    // Originals that S3 clients write: settled as the storage announces them, and by the
    // reconciliation (at start, then every `reconcile_every`).
    let arrivals = Rc::new(Arrivals {
        jobs: jobs.clone(),
        objects: pipeline.objects.clone(),
        metadata: open_metadata()?,
        limits: tessera_core::limits::Limits::DEFAULT,
    });
    let settle_arrivals = {
        let arrivals = Rc::clone(&arrivals);
        async move {
            while let Some(key) = arrived.recv().await {
                if let Err(e) = arrivals.notice(&key).await {
                    tracing::error!(
                        key,
                        error = format!("{e:#}"),
                        "arrival; reconciliation will retry"
                    );
                }
            }
        }
    };
    let reconcile = async {
        if options.reconcile_every.is_zero() {
            if let Err(e) = arrivals.reconcile().await {
                tracing::error!(error = format!("{e:#}"), "reconciling arrivals");
            }
            std::future::pending::<()>().await;
        }
        crate::worker::reconcile_every(Rc::clone(&arrivals), options.reconcile_every).await;
    };
    // Jobs posted with their files go to the bucket as they arrive.
    let files = Rc::new(PostedFiles {
        sink: pipeline.objects.clone(),
        limits: options.job_limits,
    });
    let edge = Rc::new(Edge::new(
        config,
        store,
        ReqwestOutbound::default(),
        LocalJobs {
            store: jobs.clone(),
            allow_local_webhooks: options.webhooks.allow_local,
        },
    ));
    let page_config = Bytes::from(serde_json::to_vec(&serde_json::json!({
        "api_base": "",
        "api_key": credentials.api_key,
        "project": DEFAULT_PROJECT,
    }))?);
    let web = tower_http::services::ServeDir::new(&options.web);

    ready(&origins[0], s3_addr);
    let job_store = jobs.clone();
    let sweeper = Rc::clone(&edge);
    let page = move |request: Request<Incoming>| {
        let (edge, web, page_config) = (Rc::clone(&edge), web.clone(), page_config.clone());
        let (files, jobs) = (Rc::clone(&files), job_store.clone());
        async move {
            Ok::<_, Infallible>(page_or_api(&edge, &files, &jobs, web, &page_config, request).await)
        }
    };
    let storage = move |request: Request<Incoming>| {
        let mut s3 = s3.clone();
        async move { s3.call(request).await }
    };
    let (stop_workers, workers_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut worker_options = WorkerOptions::new(options.workers);
    worker_options.webhooks = options.webhooks.clone();
    let workers = tokio::spawn(worker::run(pipeline, worker_options, async move {
        let _ = workers_stopped.await;
    }));
    tokio::select! {
        () = sweeper.sweep_expired_uploads(async |every| tokio::time::sleep(every).await) => {}
        () = settle_arrivals => {}
        () = reconcile => {}
        () = serve_connections(page_listener, options.limits, for_host(page_addr, page), std::future::pending()) => {}
        () = serve_connections(s3_listener, options.limits, for_host(s3_addr, storage), std::future::pending()) => {}
        () = shutdown => {}
    }
    let _ = stop_workers.send(());
    let _ = workers.await;
    Ok(())
}

/// A boxed answer of `tessera up`'s services.
type Answer<E> = std::pin::Pin<Box<dyn Future<Output = Result<Response<Body>, E>>>>;

/// `service`, answering only requests whose `Host` names `listen`
/// ([`tessera_core::access::host_allowed`]): others get 421 Misdirected Request, so a page
/// that rebinds its DNS name to this machine cannot read the API key, the records or the
/// objects.
fn for_host<F, R, E: 'static>(
    listen: SocketAddr,
    service: F,
) -> impl Fn(Request<Incoming>) -> Answer<E> + Clone
where
    F: Fn(Request<Incoming>) -> R + Clone + 'static,
    R: Future<Output = Result<Response<Body>, E>> + 'static,
{
    move |request: Request<Incoming>| {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        if host_allowed(host, listen) {
            return Box::pin(service(request));
        }
        let message = format!(
            "this server answers only for Host {listen} (or localhost:{}); DNS rebinding is refused\n",
            listen.port()
        );
        let mut refused = Response::new(
            Full::new(Bytes::from(message))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *refused.status_mut() = StatusCode::MISDIRECTED_REQUEST;
        Box::pin(std::future::ready(Ok(refused)))
    }
}

/// The page's origins: the listen address, and `localhost` for a loopback one.
fn page_origins(addr: SocketAddr) -> Vec<String> {
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() {
        origins.push(format!("http://localhost:{}", addr.port()));
    }
    origins
}

async fn page_or_api(
    edge: &Rc<LocalEdge>,
    files: &PostedFiles<Objects>,
    jobs: &tessera_batch::store::Store,
    mut web: tower_http::services::ServeDir,
    page_config: &Bytes,
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path();
    let whole = |body: Vec<u8>| {
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync()
    };
    let probes = Probes {
        jobs: Some(jobs),
        metadata: Some(edge.store()),
        objects: &files.sink,
    };
    if let Some(answer) = operations(request.method(), path, &probes).await {
        return answer.map(whole);
    }
    if path.starts_with("/v1/") {
        let route = tessera_edge::route_template(request.method(), path);
        let answer = answer_with_files(edge, request, files).await;
        metrics().request(route, answer.status().as_u16());
        return answer.map(|body| body.map_err(|never| match never {}).boxed_unsync());
    }
    let mut response = if path == "/config.json" {
        let mut response = Response::new(
            Full::new(page_config.clone())
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    } else {
        match web.try_call(request).await {
            Ok(response) => response.map(http_body_util::BodyExt::boxed_unsync),
            Err(e) => {
                tracing::error!(error = %e, "static file");
                let mut response = Response::new(
                    Full::new(Bytes::from_static(b"internal error"))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                );
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response
            }
        }
    };
    // The service worker decides what is cached; the browser's HTTP cache always revalidates.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
