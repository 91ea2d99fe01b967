//! The `tessera` command-line tool: the composition root, one file per subcommand.
//!
//! | file | subcommand |
//! |---|---|
//! | `preprocess.rs` | `tessera preprocess`: the core pipeline over files on disk |
//! | `edge.rs` | `tessera edge`: the edge API on its native host |
//! | `up.rs` | `tessera up`: storage, edge, jobs and page in one process |
//! | `detect.rs` | `tessera detect`: crown detection over GeoTIFFs (the detect stage), COCO and GeoJSON |
//! | `mosaic.rs` | `tessera mosaic`: GeoTIFFs → a Cloud-Optimized GeoTIFF mosaic (the stitch stage) |
//! | `worker.rs` | `tessera worker`: workers that run jobs from a shared job store |
//! | `upload.rs` | `tessera upload`: files preprocessed and uploaded through the edge (tessera-client) |
//! | `sync.rs` | `tessera sync`: a folder kept uploaded, watched with `notify`, a state file across restarts |
//! | `records.rs` | `tessera migrate`, `tessera reindex`: the edge's records copied between databases, or rebuilt from the sidecars |
//!
//! The batch backend itself is the `tessera_batch` library.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod detect;
mod edge;
mod mosaic;
mod preprocess;
mod records;
mod storage;
mod sync;
mod up;
mod upload;
mod worker;

/// Tessera: get images into storage and through batch geospatial processing.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// How the servers (`edge`, `up`) write their logs to stderr; RUST_LOG filters them
    /// (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The servers' log lines.
#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check, orient, letterbox (256×256 on white), rotate (90/180/270° counter-clockwise),
    /// encode and hash images, writing the object-key layout and one manifest per image.
    ///
    /// Each image gives six objects under OUT: original-uploads/…, processed/…_256x256.jpg,
    /// augmented-images/{90,180,270,360}-degree/…, and metadata/{project}/{image_id}.json.
    /// Bad files are reported at the end and do not stop the others; the exit code is 1 when
    /// any file failed.
    Preprocess(preprocess::PreprocessArgs),
    /// Serve the edge HTTP API natively (the same router as on Cloudflare Workers), with a
    /// SQLite metadata database. Configured by TESSERA_* environment variables (see README);
    /// stops cleanly on Ctrl-C.
    Edge(edge::EdgeArgs),
    /// The whole upload path on one machine: an S3-compatible endpoint (data in --data), the
    /// edge API with SQLite, the batch job API, and the page. Prints the URL to open; stops
    /// cleanly on Ctrl-C. Build the page's wasm first: `bash scripts/build-web.sh`.
    Up(up::UpArgs),
    /// Stitch georeferenced GeoTIFFs into one Cloud-Optimized GeoTIFF with GDAL: inputs in
    /// other CRSs are warped to the most common one, finer inputs win where inputs overlap,
    /// uncovered areas are nodata or masked. Writes an 8-bit RGBA rendition (VRT) and a
    /// preview PNG beside it. Bad inputs are reported at the end and do not stop the others;
    /// the exit code is 1 when any input was refused.
    Mosaic(mosaic::MosaicArgs),
    /// Detect palm and tree crowns in GeoTIFFs with an ONNX model (the shipped one by
    /// default) through ONNX Runtime (ORT_DYLIB_PATH names its library; `source
    /// scripts/env.sh && ensure_onnxruntime` fetches it). Model-size windows with overlap,
    /// merged by NMS in world coordinates across windows and files; writes COCO JSON and
    /// GeoJSON (WGS 84). Bad files are reported at the end and do not stop the others; the
    /// exit code is 1 when any file failed.
    Detect(detect::DetectArgs),
    /// Run jobs: claim tasks from the job store (--database postgres://… shared by any
    /// number of workers, or sqlite:PATH), run them against the bucket of the TESSERA_S3_*
    /// variables, renew their leases, take up the tasks of workers that died. SIGTERM or
    /// Ctrl-C lets the tasks in hand finish, then exits.
    Worker(worker::WorkerArgs),
    /// Copy every metadata record (uploads and images) from one database to another
    /// (`--from sqlite:PATH --to postgres://…`), then compare both record by record (counts
    /// and per-record SHA-256 checksums). Idempotent: run it again to catch up. The exit code
    /// is 1 when any record differs.
    Migrate(records::MigrateArgs),
    /// Rebuild the metadata records from the sidecars in storage (`metadata/…`, the source of
    /// truth), in the bucket of the TESSERA_S3_* variables: every image not recorded is
    /// recorded again. Sidecars that cannot be read are named at the end, and the exit code is 1.
    Reindex(records::ReindexArgs),
    /// Check and preprocess images as the page does (type, 10 MiB, pixel limits, EXIF
    /// orientation, letterbox, rotations, SHA-256) and upload them through the edge API with
    /// presigned PUTs: batches of 50, four requests in flight, retries, a progress bar and a
    /// summary. Files whose original the project already has are skipped. The API key comes
    /// from TESSERA_API_KEY or the config file. The exit code is 1 when any file was refused
    /// or failed.
    Upload(upload::UploadArgs),
    /// Keep a folder uploaded, as `tessera upload` uploads: everything in DIR, then with
    /// --watch every file created or changed once it stops growing. A state file (DIR/.tessera-sync.json) means a
    /// restarted sync uploads nothing twice. Without --watch the exit code is 1 when any file
    /// was refused or failed.
    Sync(sync::SyncArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Preprocess(args) => preprocess::run(&args),
        Command::Edge(args) => edge::run(&args),
        Command::Up(args) => up::run_command(args),
        Command::Mosaic(args) => mosaic::run(&args),
        Command::Detect(args) => detect::run(&args),
        Command::Worker(args) => worker::run(&args),
        Command::Migrate(args) => records::migrate(&args),
        Command::Reindex(args) => records::reindex(&args),
        Command::Upload(args) => upload::run(&args),
        Command::Sync(args) => sync::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// How the servers (`edge`, `up`) treat slow clients.
#[derive(clap::Args)]
struct ConnectionArgs {
    /// Seconds a server waits for a client's request head or its next byte, or for it to
    /// take the next byte of an answer; also how long an idle keep-alive connection stays.
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    client_timeout: u64,
    /// Connections a server holds at once; more wait to be accepted.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
}

impl ConnectionArgs {
    fn limits(&self) -> tessera_edge::native::ConnectionLimits {
        tessera_edge::native::ConnectionLimits {
            client_timeout: std::time::Duration::from_secs(self.client_timeout),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what container runtimes send). The handlers are
/// installed before this returns, so a signal that arrives once the server has said it is
/// ready is never lost (`tokio::signal::ctrl_c` installs its handler only when first polled).
fn interrupted() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use anyhow::Context as _;
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigint =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut sigterm =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = sigint.recv() => {}
                _ = sigterm.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
