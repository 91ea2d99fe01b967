//! `tessera preprocess`: preprocess files from disk and write their objects under a folder.
//!
//! The folder mirrors the object store: each object at `{out}/{key}` and the manifest at
//! `{out}/metadata/{project}/{image_id}.json`, so it can be synced to a bucket as it is.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tessera_core::{Derivatives, Options, PreprocessError};

/// Why one input file failed. One file's failure never stops the others.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
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

/// Expands the command line's files and folders into the files to process, in a stable order.
///
/// Files named directly are always taken. Folders are walked recursively, in name order,
/// taking every regular file except hidden ones (`.DS_Store`, `.git/…`): the type is decided by
/// content later, so a photo named `.dat` is still processed and a stray PDF is reported.
/// A path that does not exist or cannot be listed is returned as it is, so that it fails alone
/// in [`process_file`] with the operating system's reason, and the rest of the batch goes on.
#[must_use]
pub fn collect_inputs(paths: &[PathBuf]) -> Vec<PathBuf> {
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
/// The size limit is checked from the file's metadata before it is read, so a huge file is
/// refused without loading it.
///
/// # Errors
/// [`FileError`] naming what went wrong; nothing is written for a refused file.
pub fn process_file(path: &Path, out: &Path, options: &Options) -> Result<Derivatives, FileError> {
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
    write_objects(out, &bytes, &derived).map_err(FileError::Write)?;
    Ok(derived)
}

/// Writes the original, every derivative and the manifest under `out` at their keys.
///
/// # Errors
/// Any I/O error, with the path.
pub fn write_objects(out: &Path, original: &[u8], derived: &Derivatives) -> anyhow::Result<()> {
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
