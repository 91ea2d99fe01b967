//! `tessera edge`: the edge API on its native host (hyper, SQLite, reqwest), configured by the
//! `TESSERA_*` variables of [`tessera_edge::config`], reaching the batch backend over HTTP.

use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt as _, Full};
use tessera_batch::metrics::{Probes, metrics, operations};
use tessera_batch::objects::Objects;
use tessera_core::job_inputs::JobLimits;
use tessera_edge::metadata::MetadataStore;
use tessera_edge::native::{
    PostedFiles, ReqwestOutbound, answer_with_files, config_from_env, serve_connections,
};
use tessera_edge::{Edge, HttpJobs};

#[derive(Args)]
pub(crate) struct EdgeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: std::net::SocketAddr,
    /// The metadata database: a SQLite file (`PATH` or `sqlite:PATH`), created if missing, or
    /// `postgres://…`, which several edge instances can share; migrated on start.
    #[arg(long, default_value = "tessera-metadata.sqlite")]
    database: String,
    #[command(flatten)]
    connections: crate::ConnectionArgs,
    /// Largest file of a job posted with its files (`multipart/form-data`), in bytes; a
    /// larger one is refused and the others make the job.
    #[arg(long, default_value_t = JobLimits::DEFAULT_MAX_INPUT_BYTES)]
    max_input_bytes: u64,
}

pub(crate) fn run(args: &EdgeArgs) -> anyhow::Result<ExitCode> {
    let (config, backend) = config_from_env()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&runtime, async {
        let store = MetadataStore::open(&args.database)
            .await
            .with_context(|| format!("--database {}", redact(&args.database)))?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        eprintln!("tessera edge: http://{}", listener.local_addr()?);
        let outbound = ReqwestOutbound::default();
        let jobs = HttpJobs::new(&backend.url, &backend.token, outbound.clone());
        let files = std::rc::Rc::new(PostedFiles {
            sink: Objects::s3(&config.storage)?,
            limits: JobLimits {
                max_input_bytes: args.max_input_bytes,
                ..JobLimits::default()
            },
        });
        let edge = std::rc::Rc::new(Edge::new(config, store, outbound, jobs));
        let shutdown = crate::interrupted()?;
        let sweeper = std::rc::Rc::clone(&edge);
        let service = move |request: http::Request<hyper::body::Incoming>| {
            let (edge, files) = (std::rc::Rc::clone(&edge), std::rc::Rc::clone(&files));
            async move { Ok::<_, std::convert::Infallible>(answer(&edge, &files, request).await) }
        };
        tokio::select! {
            () = serve_connections(listener, args.connections.limits(), service, shutdown) => {}
            () = sweeper.sweep_expired_uploads(async |every| tokio::time::sleep(every).await) => {}
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

type NativeEdge = Edge<MetadataStore, ReqwestOutbound, HttpJobs<ReqwestOutbound>>;

/// The operations routes (`/health`, `/ready`: the metadata store and storage; `/metrics`:
/// requests and uploads by state; [`operations`]), then the API, each API request counted by
/// route and status.
async fn answer(
    edge: &std::rc::Rc<NativeEdge>,
    files: &PostedFiles<Objects>,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<crate::up::Body> {
    let path = request.uri().path();
    let probes = Probes {
        jobs: None,
        metadata: Some(edge.store()),
        objects: &files.sink,
    };
    if let Some(answer) = operations(request.method(), path, &probes).await {
        return answer.map(|body| {
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync()
        });
    }
    let route = tessera_edge::route_template(request.method(), path);
    let answer = answer_with_files(edge, request, files).await;
    metrics().request(route, answer.status().as_u16());
    answer.map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

/// `url` without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
