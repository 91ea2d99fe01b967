//! The `tessera` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use tessera_batch::preprocess::{FileError, collect_inputs, process_file};
use tessera_core::Options;
use tessera_core::keys::Project;
use tessera_core::limits::Limits;

/// Tessera: get images into storage and through batch geospatial processing.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    Preprocess(PreprocessArgs),
    /// Serve the edge HTTP API natively (the same router as on Cloudflare Workers), with a
    /// SQLite metadata database. Configured by TESSERA_* environment variables (see README);
    /// stops cleanly on Ctrl-C.
    Edge(EdgeArgs),
    /// The whole upload path on one machine: an S3-compatible endpoint (data in --data), the
    /// edge API with SQLite, the batch job API, and the page. Prints the URL to open; stops
    /// cleanly on Ctrl-C. Build the page's wasm first: `bash scripts/build-web.sh`.
    Up(UpArgs),
}

#[derive(Args)]
struct UpArgs {
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
}

#[derive(Args)]
struct EdgeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: std::net::SocketAddr,
    /// SQLite database file; created and migrated if missing.
    #[arg(long, default_value = "tessera-metadata.sqlite")]
    database: PathBuf,
}

#[derive(Args)]
struct PreprocessArgs {
    /// Project name: 1–63 characters a-z, 0-9 and '-'.
    #[arg(long)]
    project: String,
    /// Output folder; created if missing.
    #[arg(long)]
    out: PathBuf,
    /// Date for images without EXIF DateTimeOriginal, as YYYY-MM-DD [default: today, UTC].
    #[arg(long)]
    date: Option<NaiveDate>,
    /// JPEG quality of the derivatives, 1–100.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Largest accepted file, in bytes.
    #[arg(long, default_value_t = Limits::DEFAULT.max_bytes)]
    max_bytes: u64,
    /// Largest accepted width or height, in pixels.
    #[arg(long, default_value_t = Limits::DEFAULT.max_side_px)]
    max_side_px: u32,
    /// Largest accepted width × height, in pixels.
    #[arg(long, default_value_t = Limits::DEFAULT.max_pixels)]
    max_pixels: u64,
    /// Files and folders; folders are searched recursively (hidden entries skipped), and every
    /// file's type is decided by its content, not its name.
    #[arg(required = true, value_name = "FILES_OR_DIRS")]
    inputs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Preprocess(args) => preprocess(&args),
        Command::Edge(args) => edge(&args),
        Command::Up(args) => up(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn edge(args: &EdgeArgs) -> anyhow::Result<ExitCode> {
    use tessera_edge::native::{ReqwestOutbound, config_from_env, serve};
    let (config, backend) = config_from_env().map_err(anyhow::Error::msg)?;
    let store = tessera_edge::sqlite::SqliteStore::open(&args.database)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.database.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&runtime, async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        eprintln!("tessera edge: http://{}", listener.local_addr()?);
        let outbound = ReqwestOutbound::default();
        let jobs = tessera_edge::HttpJobs::new(&backend.url, &backend.token, outbound.clone());
        let edge = tessera_edge::Edge::new(config, store, outbound, jobs);
        let shutdown = interrupted()?;
        serve(listener, std::rc::Rc::new(edge), shutdown).await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGINT (Ctrl-C). The handler is installed before this returns, so a signal
/// that arrives once the server has said it is ready is never lost (`tokio::signal::ctrl_c`
/// installs its handler only when first polled).
fn interrupted() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigint =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(async move {
            sigint.recv().await;
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let options = tessera_batch::up::UpOptions {
        listen: args.listen,
        s3_listen: args.s3_listen,
        data: args.data,
        web: args.web,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&runtime, async {
        let ready = |url: &str, storage: std::net::SocketAddr| {
            println!("Tessera is up: open {url}");
            eprintln!(
                "storage: http://{storage} (bucket {}), data in {}; Ctrl-C stops",
                tessera_batch::up::BUCKET,
                options.data.display()
            );
        };
        let shutdown = interrupted()?;
        tessera_batch::up::run(&options, ready, shutdown).await?;
        eprintln!("tessera up: stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

fn preprocess(args: &PreprocessArgs) -> anyhow::Result<ExitCode> {
    let project = Project::new(args.project.clone())?;
    let mut options = Options::new(
        project,
        String::new(),
        args.date.unwrap_or_else(|| Utc::now().date_naive()),
    );
    options.quality = args.quality;
    options.limits = Limits {
        max_bytes: args.max_bytes,
        max_side_px: args.max_side_px,
        max_pixels: args.max_pixels,
    };
    let files = collect_inputs(&args.inputs);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let bar = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    let results: Vec<(PathBuf, Result<(), FileError>)> = files
        .par_iter()
        .map(|path| {
            let result = process_file(path, &args.out, &options).map(drop);
            bar.inc(1);
            (path.clone(), result)
        })
        .collect();
    bar.finish_and_clear();

    let failures: Vec<_> = results
        .iter()
        .filter_map(|(path, r)| r.as_ref().err().map(|e| (path, e)))
        .collect();
    let done = results.len() - failures.len();
    println!(
        "{done} of {} files preprocessed into {}",
        results.len(),
        args.out.display()
    );
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{} failed:", failures.len());
    for (path, error) in failures {
        eprintln!("  {}: {error}", path.display());
    }
    Ok(ExitCode::FAILURE)
}
