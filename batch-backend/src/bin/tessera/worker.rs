//! `tessera worker`: N workers ([`tessera_batch::worker`]) against a shared job store and
//! the bucket named by the edge's `TESSERA_S3_*` variables; `/health` on `--listen`. SIGTERM
//! or Ctrl-C stops claiming, lets the tasks in hand finish, and exits 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use tessera_batch::objects::Objects;
use tessera_batch::store::Store;
use tessera_batch::tasks::{DetectorChoice, Pipeline};
use tessera_batch::worker::{self, WorkerOptions};

use crate::detect::DeviceArg;

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
    /// An ONNX model with its description [default: the shipped tessera-crowns model].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where inference runs; CUDA falls back to the CPU with a warning when unavailable.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// ONNX Runtime's intra-op threads per worker (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Address of `/health`.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: std::net::SocketAddr,
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
            detector: DetectorChoice {
                model: args.model.clone(),
                device: args.device.into(),
                threads: args.threads,
            },
        };
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let health = listener.local_addr()?;
        let options = WorkerOptions::new(usize::try_from(args.workers)?);
        eprintln!(
            "tessera worker: {} worker(s) as {}, health on http://{health}/health",
            options.workers, options.name
        );
        let stop = crate::interrupted()?;
        let serve_health = tessera_edge::native::serve_connections(
            listener,
            tessera_edge::native::ConnectionLimits {
                client_timeout: Duration::from_secs(5),
                max_connections: 16,
            },
            |request: http::Request<hyper::body::Incoming>| async move {
                let found = request.uri().path() == "/health";
                let mut response = http::Response::new(Full::new(Bytes::from_static(if found {
                    b"ok\n"
                } else {
                    b"not found\n"
                })));
                if !found {
                    *response.status_mut() = http::StatusCode::NOT_FOUND;
                }
                Ok::<_, std::convert::Infallible>(response)
            },
            std::future::pending(),
        );
        let health_server = tokio::task::spawn_local(serve_health);
        worker::run(pipeline, options, stop).await;
        health_server.abort();
        tracing::info!("stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
