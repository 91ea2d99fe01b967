//! `tessera edge`: the edge API on its native host (hyper, SQLite, reqwest), configured by the
//! `TESSERA_*` variables of [`tessera_edge::config`], reaching the batch backend over HTTP.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use tessera_edge::native::{ReqwestOutbound, config_from_env, serve};
use tessera_edge::sqlite::SqliteStore;
use tessera_edge::{Edge, HttpJobs};

#[derive(Args)]
pub(crate) struct EdgeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: std::net::SocketAddr,
    /// SQLite database file; created and migrated if missing.
    #[arg(long, default_value = "tessera-metadata.sqlite")]
    database: PathBuf,
    #[command(flatten)]
    connections: crate::ConnectionArgs,
}

pub(crate) fn run(args: &EdgeArgs) -> anyhow::Result<ExitCode> {
    let (config, backend) = config_from_env()?;
    let store = SqliteStore::open(&args.database)
        .with_context(|| format!("{}", args.database.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&runtime, async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        eprintln!("tessera edge: http://{}", listener.local_addr()?);
        let outbound = ReqwestOutbound::default();
        let jobs = HttpJobs::new(&backend.url, &backend.token, outbound.clone());
        let edge = Edge::new(config, store, outbound, jobs);
        let shutdown = crate::interrupted()?;
        serve(
            listener,
            args.connections.limits(),
            std::rc::Rc::new(edge),
            shutdown,
        )
        .await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
