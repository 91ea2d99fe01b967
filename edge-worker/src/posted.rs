//! A job posted with its files, on the native hosts: `POST /v1/jobs` as `multipart/form-data`
//! (RFC 7578), a `project` field, then one `files` part per file, each streamed to storage as
//! it arrives (never held whole: [`FileSink`] writes chunk by chunk) and checked on the way by
//! [`PostedFile`] (type by magic bytes, size against [`JobLimits::max_input_bytes`]). A
//! refused part is dropped from storage and reported; the others become the job's inputs.
//!
//! Each stored file gets the usual keys ([`ObjectNaming`], dated the day it was posted: a
//! GeoTIFF's acquisition date is the batch backend's to read) and a sidecar naming what was
//! posted, which the job's publish stage adds its results to. The multipart parsing is
//! `multer`'s (the parser behind axum's `Multipart`).

use std::future::Future;

use bytes::Bytes;
use chrono::NaiveDate;
use futures_util::Stream;
use serde_json::json;
use tessera_core::access::{KeyScope, ScopeError};
use tessera_core::error::ErrorCode;
use tessera_core::job::{JobInput, JobRequest};
use tessera_core::job_inputs::{
    FORM_FILES, FORM_PROJECT, JobLimits, PostedFile, PostedSummary, RefusedFile,
};
use tessera_core::keys::{ImageId, ObjectNaming, Project, Slug};
use tessera_core::limits::ImageFormat;

/// Where a host stores posted files: an S3 client's streaming writes.
pub trait FileSink {
    /// One object being written.
    type Writer: FileWriter;

    /// Starts writing the object `key`; nothing is stored until [`FileWriter::finish`].
    fn create(&self, key: &str) -> Self::Writer;

    /// Writes a small object whole (a sidecar).
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), String>>;
}

/// An object being written chunk by chunk ([`FileSink::create`]).
pub trait FileWriter {
    /// Sends `chunk` on.
    fn write(&mut self, chunk: &[u8]) -> impl Future<Output = Result<(), String>>;

    /// Stores the object.
    fn finish(self) -> impl Future<Output = Result<(), String>>;

    /// Drops what was sent; nothing is stored.
    fn abort(self) -> impl Future<Output = ()>;
}

/// What was wrong with the form as a whole (the files' own refusals are [`RefusedFile`]s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FormError {
    /// The stable code.
    pub code: ErrorCode,
    /// In words.
    pub message: String,
}

impl FormError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What a posted form is held to.
#[derive(Debug, Clone, Copy)]
pub struct FormRules<'a> {
    /// Each file's limits.
    pub limits: JobLimits,
    /// Most files taken into the job; later ones are refused.
    pub max_inputs: usize,
    /// The projects the request's API key reaches.
    pub scope: &'a KeyScope,
}

/// Reads a posted job's form from `body` (`content_type` carries its boundary), streaming
/// each file to `sink`: the job's request (files in posting order, at most
/// `rules.max_inputs`) and the files left out. `rules.scope` is the API key's: a project it
/// does not reach is refused
/// before any file is stored. `today` dates the keys; `new_id` makes image ids.
///
/// # Errors
/// [`FormError`]: no boundary, a form that does not parse or was cut short, a field other than
/// `project` and `files`, or files before a valid project.
pub async fn read_form<F, S, E>(
    sink: &F,
    content_type: &str,
    body: S,
    rules: FormRules<'_>,
    today: NaiveDate,
    new_id: &mut dyn FnMut() -> String,
) -> Result<(JobRequest, Vec<RefusedFile>), FormError>
where
    F: FileSink,
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let boundary = multer::parse_boundary(content_type).map_err(|e| {
        FormError::new(
            ErrorCode::ContentType,
            format!("Content-Type {content_type:?}: {e}"),
        )
    })?;
    // The project field is read whole into memory: a project name is at most 64 characters.
    let constraints = multer::Constraints::new()
        .allowed_fields(vec![FORM_PROJECT, FORM_FILES])
        .size_limit(multer::SizeLimit::new().for_field(FORM_PROJECT, 256));
    let mut form = multer::Multipart::with_constraints(body, boundary, constraints);
    let unreadable =
        |e: multer::Error| FormError::new(ErrorCode::JobInputs, format!("the form: {e}"));
    let mut project: Option<Project> = None;
    let (mut inputs, mut refused) = (Vec::new(), Vec::new());
    while let Some(mut field) = form.next_field().await.map_err(unreadable)? {
        if field.name() == Some(FORM_PROJECT) {
            let text = field.text().await.map_err(unreadable)?;
            let named = Project::new(text.trim()).map_err(|_| {
                FormError::new(
                    ErrorCode::InvalidProject,
                    format!(
                        "project {text:?} is not a project name ([a-z0-9-], 1 to 64 characters)"
                    ),
                )
            })?;
            if !rules.scope.allows(&named) {
                return Err(FormError::new(
                    ErrorCode::Forbidden,
                    ScopeError::Forbidden(named).to_string(),
                ));
            }
            project = Some(named);
            continue;
        }
        let Some(project) = &project else {
            return Err(FormError::new(
                ErrorCode::JobInputs,
                format!("the {FORM_PROJECT} field comes before the {FORM_FILES} parts"),
            ));
        };
        let file_name = field.file_name().unwrap_or_default().to_owned();
        if inputs.len() >= rules.max_inputs {
            refused.push(RefusedFile::new(
                &file_name,
                ErrorCode::JobInputs,
                format!("a job takes at most {} files", rules.max_inputs),
            ));
            continue;
        }
        let naming = |format| -> Result<(ObjectNaming, String), RefusedFile> {
            let image_id = ImageId::new(new_id()).map_err(|e| {
                RefusedFile::new(&file_name, ErrorCode::Internal, format!("image id: {e}"))
            })?;
            let naming = ObjectNaming {
                project: project.clone(),
                image_id,
                slug: Slug::from_file_name(&file_name),
                date: today,
            };
            let key = naming.original_key(format);
            Ok((naming, key))
        };
        let stored = store_file(
            sink,
            &file_name,
            rules.limits.max_input_bytes,
            naming,
            &mut field,
        );
        let (naming, summary) = match stored.await {
            Ok(done) => done,
            Err(Refusal::File(refusal)) => {
                refused.push(refusal);
                continue;
            }
            Err(Refusal::Form(e)) => return Err(unreadable(e)),
        };
        let original_key = naming.original_key(summary.format);
        let metadata_key = naming.metadata_key();
        let sidecar = json!({
            "project": naming.project,
            "image_id": naming.image_id,
            "file_name": summary.file_name,
            "format": summary.format,
            "posted_on": today,
            "original": {
                "key": original_key,
                "content_type": summary.format.content_type(),
                "size_bytes": summary.size_bytes,
                "sha256": summary.sha256,
            },
        });
        let body = serde_json::to_vec_pretty(&sidecar).unwrap_or_default();
        if let Err(e) = sink.put(&metadata_key, body).await {
            refused.push(storage_refusal(&summary.file_name, &e));
            continue;
        }
        inputs.push(JobInput {
            image_id: naming.image_id,
            original_key,
            metadata_key,
            media_type: summary.format.content_type().to_owned(),
            sha256: summary.sha256,
        });
    }
    let Some(project) = project else {
        return Err(FormError::new(
            ErrorCode::JobInputs,
            format!("the form has no {FORM_PROJECT} field"),
        ));
    };
    Ok((
        JobRequest {
            upload_id: None,
            project,
            inputs,
            webhook: None,
        },
        refused,
    ))
}

/// Why a file was not stored: its own refusal, or a form that broke off in its part.
enum Refusal {
    File(RefusedFile),
    Form(multer::Error),
}

/// Names the object of a file once its type is known: its keys and its original's key.
type Naming<'a> = dyn FnMut(ImageFormat) -> Result<(ObjectNaming, String), RefusedFile> + 'a;

/// Streams one `files` part to `sink`, checked by [`PostedFile`]: the object is created once
/// the first bytes show the type (`naming` gives its key), and aborted at a refusal.
async fn store_file<F: FileSink>(
    sink: &F,
    file_name: &str,
    max_bytes: u64,
    mut naming: impl FnMut(ImageFormat) -> Result<(ObjectNaming, String), RefusedFile>,
    field: &mut multer::Field<'static>,
) -> Result<(ObjectNaming, PostedSummary), Refusal> {
    let mut file = PostedFile::new(file_name, max_bytes).map_err(Refusal::File)?;
    // The first bytes wait here until the type is known; then the object is opened.
    let mut pending: Vec<u8> = Vec::new();
    let mut opened: Option<(ObjectNaming, F::Writer)> = None;
    let outcome = loop {
        let chunk = match field.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break Ok(()),
            Err(e) => break Err(Refusal::Form(e)),
        };
        if let Err(refusal) = file.push(&chunk) {
            break Err(Refusal::File(refusal));
        }
        match (&mut opened, file.format()) {
            (Some((_, writer)), _) => {
                if let Err(e) = writer.write(&chunk).await {
                    break Err(Refusal::File(storage_refusal(file_name, &e)));
                }
            }
            (None, format) => {
                pending.extend_from_slice(&chunk);
                if let Some(format) = format {
                    match open(sink, file_name, &mut naming, format, &pending).await {
                        Ok(o) => opened = Some(o),
                        Err(e) => break Err(Refusal::File(e)),
                    }
                    pending = Vec::new();
                }
            }
        }
    };
    let summary = outcome.and_then(|()| file.finish().map_err(Refusal::File));
    let summary = match summary {
        Ok(summary) => summary,
        Err(refusal) => {
            if let Some((_, writer)) = opened {
                writer.abort().await;
            }
            return Err(refusal);
        }
    };
    let (naming, writer) = match opened {
        Some(o) => o,
        // A file shorter than the sniffed prefix: its type is known only now.
        None => open(sink, file_name, &mut naming, summary.format, &pending)
            .await
            .map_err(Refusal::File)?,
    };
    writer
        .finish()
        .await
        .map_err(|e| Refusal::File(storage_refusal(file_name, &e)))?;
    Ok((naming, summary))
}

/// Opens the object of a file of `format` and writes its first bytes.
async fn open<F: FileSink>(
    sink: &F,
    file_name: &str,
    naming: &mut Naming<'_>,
    format: ImageFormat,
    first: &[u8],
) -> Result<(ObjectNaming, F::Writer), RefusedFile> {
    let (naming, key) = naming(format)?;
    let mut writer = sink.create(&key);
    if let Err(e) = writer.write(first).await {
        writer.abort().await;
        return Err(storage_refusal(file_name, &e));
    }
    Ok((naming, writer))
}

fn storage_refusal(file_name: &str, error: &str) -> RefusedFile {
    tracing::error!(file = file_name, error, "storing a posted file");
    RefusedFile::new(
        file_name,
        ErrorCode::Internal,
        "storage did not take the file; post it again",
    )
}
