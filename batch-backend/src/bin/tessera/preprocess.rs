//! `tessera preprocess`: preprocess files from disk and write their objects under a folder.
//!
//! The folder mirrors the object store: each object at `{out}/{key}` and the manifest at
//! `{out}/metadata/{project}/{image_id}.json`, so it can be synced to a bucket as it is.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{NaiveDate, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use tessera_core::error::ErrorCode;
use tessera_core::keys::Project;
use tessera_core::limits::Limits;
use tessera_core::{Derivatives, Options, PreprocessError};

#[derive(Args)]
pub(crate) struct PreprocessArgs {
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

/// Runs `tessera preprocess`: every file in parallel, a progress bar, then a summary with one
/// line per failed file (`path: problem [code]`, the code from [`ErrorCode`]).
pub(crate) fn run(args: &PreprocessArgs) -> anyhow::Result<ExitCode> {
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
        eprintln!("  {}: {error} [{}]", path.display(), error.code());
    }
    Ok(ExitCode::FAILURE)
}

/// Why one input file failed. One file's failure never stops the others.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FileError {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(io::Error),
    /// The core refused the file.
    #[error(transparent)]
    Preprocess(PreprocessError),
    /// An output could not be written.
    #[error("cannot write outputs: {0:#}")]
    Write(anyhow::Error),
}

impl FileError {
    /// The stable code, in the vocabulary of every Tessera surface.
    pub(crate) const fn code(&self) -> ErrorCode {
        match self {
            Self::Read(_) => ErrorCode::Unreadable,
            Self::Preprocess(e) => e.code(),
            Self::Write(_) => ErrorCode::Unwritable,
        }
    }
}

/// Expands the command line's files and folders into the files to process, in a stable order.
///
/// Files named directly are always taken. Folders are walked recursively, in name order,
/// taking every regular file except hidden ones (`.DS_Store`, `.git/…`): the type is decided by
/// content later, so a photo named `.dat` is still processed and a stray PDF is reported.
/// A path that does not exist or cannot be listed is returned as it is, so that it fails alone
/// in [`process_file`] with the operating system's reason, and the rest of the batch goes on.
#[must_use]
pub(crate) fn collect_inputs(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let walker = walkdir::WalkDir::new(path)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walker {
            match entry {
                Ok(entry) if entry.file_type().is_file() => files.push(entry.into_path()),
                Ok(_) => {}
                Err(e) => files.extend(e.path().map(Path::to_path_buf)),
            }
        }
    }
    files
}

/// Reads, preprocesses and writes one file. `options.file_name` is replaced by the file's name.
///
/// # Errors
/// [`FileError`] naming what went wrong; nothing is written for a refused file.
pub(crate) fn process_file(
    path: &Path,
    out: &Path,
    options: &Options,
) -> Result<Derivatives, FileError> {
    let (bytes, derived) = derive_file(path, options)?;
    write_objects(out, &bytes, &derived).map_err(FileError::Write)?;
    Ok(derived)
}

/// Reads and preprocesses one file, as the page does: `options.file_name` is replaced by the
/// file's name. Returns the original's bytes and the derivatives.
///
/// The size limit is checked from the file's metadata before it is read, so a huge file is
/// refused without loading it.
///
/// # Errors
/// [`FileError::Read`] or [`FileError::Preprocess`].
pub(crate) fn derive_file(
    path: &Path,
    options: &Options,
) -> Result<(Vec<u8>, Derivatives), FileError> {
    let size = fs::metadata(path).map_err(FileError::Read)?.len();
    options
        .limits
        .check_size(size)
        .map_err(FileError::Preprocess)?;
    let bytes = fs::read(path).map_err(FileError::Read)?;
    let options = Options {
        file_name: path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        ..options.clone()
    };
    let derived = tessera_core::preprocess(&bytes, &options).map_err(FileError::Preprocess)?;
    Ok((bytes, derived))
}

/// Writes the original, every derivative and the manifest under `out` at their keys.
///
/// # Errors
/// Any I/O error, with the path.
fn write_objects(out: &Path, original: &[u8], derived: &Derivatives) -> anyhow::Result<()> {
    let manifest = &derived.manifest;
    let objects = std::iter::once((manifest.original(), original)).chain(derived.derivatives());
    for (object, body) in objects {
        write(&out.join(&object.key), body)?;
    }
    let json = serde_json::to_vec_pretty(manifest).context("serialising the manifest")?;
    write(&out.join(&manifest.metadata_key), &json)
}

/// Writes `body` at `path` atomically (a temporary file in the same folder, then a rename), so
/// a crash or a concurrent writer of the same key never leaves a half-written object. Keys come
/// from tessera-core's validated components, so joining them cannot leave `out`.
fn write(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    let parent = path.parent().context("object path has no folder")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    file.write_all(body)
        .with_context(|| format!("writing {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
