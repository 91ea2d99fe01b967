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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
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
