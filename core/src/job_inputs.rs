//! How a client names a job's inputs: the body of the public `POST /v1/jobs`
//! ([`CreateJob`]), what it selects ([`JobSelection`]) and the limit per job
//! ([`MAX_JOB_INPUTS`]).
//!
//! A job is made of recorded images of one project, named in exactly one way:
//!
//! ```json
//! {"project": "palms", "image_ids": ["0190…", "0190…"]}
//! {"project": "palms", "upload_ids": ["0190…"]}
//! {"project": "palms", "search": {"from": "2026-05-01", "to": "2026-05-31",
//!                                 "bbox": [-82.1, 29.6, -81.9, 29.8]}}
//! ```
//!
//! `search` takes the filters of `GET /v1/images` (dates `YYYY-MM-DD`, inclusive; `bbox`
//! `[minLon, minLat, maxLon, maxLat]` in WGS 84 degrees) and is checked by the same parser
//! ([`parse_image_query`]). The edge resolves the selection against its records and sends the
//! batch backend a [`JobRequest`](crate::job::JobRequest), whose inputs the backend holds to
//! [`JobLimits`].
//!
//! On the native hosts a job's files may also be posted in the request itself, as
//! `multipart/form-data` (RFC 7578): a [`FORM_PROJECT`] field first, then one [`FORM_FILES`]
//! part per file. Each part is checked as it streams to storage ([`PostedFile`]: its type by
//! magic bytes, its size against [`JobLimits::max_input_bytes`]); a refused part is reported
//! ([`RefusedFile`]) and the others make the job ([`JobPosted`]).

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::ErrorCode;
use crate::job::JobStatus;
use crate::keys::Project;
use crate::limits::{ImageFormat, sniff};
use crate::manifest::Sha256Digest;
use crate::search::{ImageQuery, QueryError, parse_image_query};
use crate::webhook::{CreateWebhook, WebhookEndpoint, WebhookEvent, WebhookRequestError};

/// The most inputs one job takes, however they are named.
pub const MAX_JOB_INPUTS: usize = 10_000;

/// What one job input may be, apart from the photo path's limits (10 MiB, 100 megapixels):
/// orthophoto tiles of hundreds of megabytes and gigapixels are ordinary job inputs. The
/// batch backend's ingest refuses an input over either limit (reported on the input, the
/// job goes on); `tessera worker` and `tessera up` take both as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Largest input, bytes: [`JobLimits::DEFAULT_MAX_INPUT_BYTES`] unless configured.
    pub max_input_bytes: u64,
    /// Most pixels a raster input's header may claim (more is a likely decompression bomb):
    /// [`crate::mosaic::DEFAULT_MAX_INPUT_PIXELS`] unless configured.
    pub max_input_pixels: u64,
}

impl JobLimits {
    /// 8 GiB: a large BigTIFF orthophoto tile, and well under a worker's scratch disk.
    pub const DEFAULT_MAX_INPUT_BYTES: u64 = 8 << 30;
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            max_input_bytes: Self::DEFAULT_MAX_INPUT_BYTES,
            max_input_pixels: crate::mosaic::DEFAULT_MAX_INPUT_PIXELS,
        }
    }
}

/// The body of the public `POST /v1/jobs`: a project and exactly one of `image_ids`,
/// `upload_ids` or `search`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// The project whose images the job runs on.
    pub project: String,
    /// These images, in this order (a repeated id counts once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ids: Option<Vec<String>>,
    /// The images of these completed uploads, upload by upload in upload order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_ids: Option<Vec<String>>,
    /// Every recorded image of the project that matches, in (acquisition date, id) order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<JobSearch>,
    /// Where this job's own events are POSTed, signed, beside the project's endpoints:
    /// checked as `POST /v1/webhooks`'s `url` is ([`crate::webhook::check_url`]). The
    /// answer carries the endpoint and its secret, once ([`JobPosted::webhook`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The events `webhook_url` receives, among `job.completed`, `job.failed` and
    /// `job.progress`; [`JOB_WEBHOOK_EVENTS`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_events: Option<Vec<WebhookEvent>>,
}

/// The events a job's own endpoint receives unless its request names others.
pub const JOB_WEBHOOK_EVENTS: [WebhookEvent; 2] =
    [WebhookEvent::JobCompleted, WebhookEvent::JobFailed];

/// The filters of a job's search: those of `GET /v1/images`, the project aside.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSearch {
    /// Acquired on or after, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Acquired on or before, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `[minLon, minLat, maxLon, maxLat]`, WGS 84 degrees; only images with GPS inside
    /// (minLon > maxLon crosses the antimeridian).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
}

/// What a [`CreateJob`] selects, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum JobSelection {
    /// These image ids, repeats removed, first occurrence kept (not checked: the edge
    /// reports those it has no record of).
    Images(Vec<String>),
    /// The images of these uploads, repeats removed.
    Uploads(Vec<String>),
    /// A search of the project's records, read in pages of [`ImageQuery::MAX_LIMIT`].
    Search(ImageQuery),
}

/// Why a [`CreateJob`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JobInputsError {
    /// The project name is not valid.
    #[error("project {0:?} is not a project name ([a-z0-9-], 1 to 64 characters)")]
    Project(String),
    /// None, or more than one, of the three ways of naming inputs.
    #[error("name the job's inputs with exactly one of image_ids, upload_ids or search")]
    Selection,
    /// An empty list.
    #[error("{0} is empty: a job needs at least one input")]
    Empty(&'static str),
    /// More inputs than a job takes.
    #[error("{what}: {count} inputs; a job takes at most {max}")]
    TooMany {
        /// What was counted (`image_ids`, `upload_ids`, `the search`).
        what: &'static str,
        /// How many there were (for a search: at least this many).
        count: usize,
        /// [`MAX_JOB_INPUTS`].
        max: usize,
    },
    /// A search that matches no recorded image of the project.
    #[error("no recorded image of project {0} matches the search")]
    NothingFound(String),
    /// A search filter that `GET /v1/images` would refuse too.
    #[error("search: {0}")]
    Search(QueryError),
}

impl JobInputsError {
    /// The stable code ([`ErrorCode`]).
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Project(_) => ErrorCode::InvalidProject,
            Self::Selection | Self::Empty(_) | Self::TooMany { .. } => ErrorCode::JobInputs,
            Self::NothingFound(_) => ErrorCode::InputsNotFound,
            Self::Search(e) => e.code(),
        }
    }
}

impl CreateJob {
    /// The project and the checked selection.
    ///
    /// # Errors
    /// [`JobInputsError`]: a bad project name, not exactly one selection, an empty list, a
    /// list over `max_inputs` (the edge's configured count, at most [`MAX_JOB_INPUTS`]), or a
    /// search filter `GET /v1/images` refuses.
    pub fn selection(&self, max_inputs: usize) -> Result<(Project, JobSelection), JobInputsError> {
        let project = Project::new(&self.project)
            .map_err(|_| JobInputsError::Project(self.project.clone()))?;
        let selection = match (&self.image_ids, &self.upload_ids, &self.search) {
            (Some(ids), None, None) => {
                JobSelection::Images(checked_list("image_ids", ids, max_inputs)?)
            }
            (None, Some(ids), None) => {
                JobSelection::Uploads(checked_list("upload_ids", ids, max_inputs)?)
            }
            (None, None, Some(search)) => {
                let mut pairs = vec![
                    ("project", project.as_str().to_owned()),
                    ("limit", ImageQuery::MAX_LIMIT.to_string()),
                ];
                let bbox = search.bbox.map(|b| b.map(|v| v.to_string()).join(","));
                for (name, value) in [("from", &search.from), ("to", &search.to), ("bbox", &bbox)] {
                    if let Some(value) = value {
                        pairs.push((name, value.clone()));
                    }
                }
                JobSelection::Search(parse_image_query(pairs).map_err(JobInputsError::Search)?)
            }
            _ => return Err(JobInputsError::Selection),
        };
        Ok((project, selection))
    }

    /// The job's own webhook endpoint, when `webhook_url` is given: for `project`, receiving
    /// `webhook_events` (default [`JOB_WEBHOOK_EVENTS`]), checked by
    /// [`CreateWebhook::checked`] with `allow_local` (the edge passes `true`: the batch
    /// backend, which knows whether local addresses are allowed, checks again and resolves
    /// the host).
    ///
    /// # Errors
    /// [`WebhookRequestError`]: `webhook_events` without `webhook_url`, an event that is not
    /// a job's, no events, or a refused URL.
    pub fn webhook(
        &self,
        project: &Project,
        allow_local: bool,
    ) -> Result<Option<CreateWebhook>, WebhookRequestError> {
        let Some(url) = &self.webhook_url else {
            return match self.webhook_events {
                Some(_) => Err(WebhookRequestError::EventsWithoutUrl),
                None => Ok(None),
            };
        };
        let events = self
            .webhook_events
            .clone()
            .unwrap_or_else(|| JOB_WEBHOOK_EVENTS.to_vec());
        if let Some(event) = events.iter().find(|e| !e.is_job_event()) {
            return Err(WebhookRequestError::NotJobEvent(*event));
        }
        CreateWebhook {
            project: project.as_str().to_owned(),
            url: url.clone(),
            events,
        }
        .checked(allow_local)
        .map(Some)
    }
}

/// The form field naming a posted job's project; it comes before the files.
pub const FORM_PROJECT: &str = "project";

/// The form field of each posted file, with its `filename`.
pub const FORM_FILES: &str = "files";

/// Bytes of a file's start that [`sniff`] needs to recognise every accepted type.
pub const SNIFF_BYTES: usize = 16;

/// One posted file, checked as its bytes arrive ([`PostedFile::push`]): its type from its first
/// [`SNIFF_BYTES`] bytes, its size against the limit at every chunk, its SHA-256 on the way.
/// A caller streams each chunk on to storage once [`PostedFile::format`] is known, and stops
/// (aborting what it stored) at the first refusal.
#[derive(Debug, Clone)]
pub struct PostedFile {
    file_name: String,
    max_bytes: u64,
    head: Vec<u8>,
    format: Option<ImageFormat>,
    size: u64,
    hasher: sha2::Sha256,
}

/// A posted file that passed: what it is, how long, and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedSummary {
    /// The file's name as posted.
    pub file_name: String,
    /// Its type by magic bytes.
    pub format: ImageFormat,
    /// Its length in bytes.
    pub size_bytes: u64,
    /// SHA-256 of its bytes.
    pub sha256: Sha256Digest,
}

impl PostedFile {
    /// A file named `file_name` (its part's `filename`), refused beyond `max_bytes`.
    ///
    /// # Errors
    /// [`RefusedFile`] `file_name` when the name is empty or over 255 characters.
    pub fn new(file_name: &str, max_bytes: u64) -> Result<Self, RefusedFile> {
        if file_name.is_empty() || file_name.chars().count() > 255 {
            return Err(RefusedFile::new(
                file_name,
                ErrorCode::FileName,
                "a posted file needs a filename of 1 to 255 characters",
            ));
        }
        Ok(Self {
            file_name: file_name.to_owned(),
            max_bytes,
            head: Vec::with_capacity(SNIFF_BYTES),
            format: None,
            size: 0,
            hasher: sha2::Sha256::new(),
        })
    }

    /// Takes the next `chunk` of the file.
    ///
    /// # Errors
    /// [`RefusedFile`]: over the size limit, or not a JPEG, PNG or TIFF by its first bytes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), RefusedFile> {
        self.size += chunk.len() as u64;
        if self.size > self.max_bytes {
            return Err(RefusedFile::new(
                &self.file_name,
                ErrorCode::TooLarge,
                format!(
                    "over {} bytes; a job input may have at most {} (--max-input-bytes)",
                    self.max_bytes, self.max_bytes
                ),
            ));
        }
        self.hasher.update(chunk);
        if self.format.is_none() {
            let wanted = SNIFF_BYTES - self.head.len();
            self.head
                .extend_from_slice(&chunk[..wanted.min(chunk.len())]);
            if self.head.len() == SNIFF_BYTES {
                self.sniff()?;
            }
        }
        Ok(())
    }

    /// The file's type, once its first bytes have been seen.
    #[must_use]
    pub const fn format(&self) -> Option<ImageFormat> {
        self.format
    }

    /// The file's name as posted.
    #[must_use]
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// The checked file, after its last chunk.
    ///
    /// # Errors
    /// [`RefusedFile`]: empty, or too short to be an accepted type.
    pub fn finish(mut self) -> Result<PostedSummary, RefusedFile> {
        if self.size == 0 {
            return Err(RefusedFile::new(
                &self.file_name,
                ErrorCode::EmptyImage,
                "the file is empty",
            ));
        }
        let format = match self.format {
            Some(format) => format,
            None => self.sniff()?,
        };
        Ok(PostedSummary {
            file_name: self.file_name,
            format,
            size_bytes: self.size,
            sha256: Sha256Digest::from_bytes(self.hasher.finalize().into()),
        })
    }

    fn sniff(&mut self) -> Result<ImageFormat, RefusedFile> {
        let format = sniff(&self.head)
            .map_err(|e| RefusedFile::new(&self.file_name, e.code(), e.to_string()))?;
        self.format = Some(format);
        Ok(format)
    }
}

/// A posted file left out of its job, and why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{file_name}: {message}")]
pub struct RefusedFile {
    /// The file's name as posted.
    pub file_name: String,
    /// Why, as a stable code.
    pub code: ErrorCode,
    /// Why, in words, with the limit.
    pub message: String,
}

impl RefusedFile {
    /// `file_name` refused with `code` and `message`.
    #[must_use]
    pub fn new(file_name: &str, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            file_name: file_name.to_owned(),
            code,
            message: message.into(),
        }
    }
}

/// The answer to a job posted with its files: the job as `GET /v1/jobs/{id}` reports it, and
/// the files left out of it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPosted {
    /// The job.
    #[serde(flatten)]
    pub job: JobStatus,
    /// Posted files that are not inputs of the job, in posting order. Absent reads as none
    /// (a job status alone parses as a `JobPosted`).
    #[serde(default)]
    pub refused: Vec<RefusedFile>,
    /// The job's own webhook endpoint ([`CreateJob::webhook_url`]), with its secret: the
    /// one time it is answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookEndpoint>,
}

/// `ids` without repeats (first occurrence kept), refused when empty or over `max`.
fn checked_list(
    what: &'static str,
    ids: &[String],
    max: usize,
) -> Result<Vec<String>, JobInputsError> {
    if ids.is_empty() {
        return Err(JobInputsError::Empty(what));
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let unique: Vec<String> = ids.iter().filter(|id| seen.insert(*id)).cloned().collect();
    if unique.len() > max {
        return Err(JobInputsError::TooMany {
            what,
            count: unique.len(),
            max,
        });
    }
    Ok(unique)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> CreateJob {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn exactly_one_selection_is_taken() {
        let (project, selection) = body(r#"{"project":"palms","image_ids":["a","b","a"]}"#)
            .selection(MAX_JOB_INPUTS)
            .unwrap();
        assert_eq!(project.as_str(), "palms");
        let JobSelection::Images(ids) = selection else {
            panic!("{selection:?}")
        };
        assert_eq!(ids, ["a", "b"]);
        for json in [
            r#"{"project":"palms"}"#,
            r#"{"project":"palms","image_ids":["a"],"upload_ids":["u"]}"#,
            r#"{"project":"palms","upload_ids":["u"],"search":{}}"#,
        ] {
            assert_eq!(
                body(json).selection(MAX_JOB_INPUTS),
                Err(JobInputsError::Selection),
                "{json}"
            );
        }
        assert!(serde_json::from_str::<CreateJob>(r#"{"project":"p","images":[]}"#).is_err());
    }

    #[test]
    fn a_jobs_own_webhook_takes_job_events_and_a_checked_url() {
        let palms = Project::new("palms").unwrap();
        let ids = r#""project":"palms","image_ids":["a"]"#;
        assert_eq!(body(&format!("{{{ids}}}")).webhook(&palms, false), Ok(None));
        let hook = body(&format!(
            r#"{{{ids},"webhook_url":"https://hooks.example.com/t"}}"#
        ))
        .webhook(&palms, false)
        .unwrap()
        .unwrap();
        assert_eq!(
            (hook.project.as_str(), hook.url.as_str(), hook.events),
            (
                "palms",
                "https://hooks.example.com/t",
                JOB_WEBHOOK_EVENTS.to_vec()
            )
        );
        let progress = body(&format!(
            r#"{{{ids},"webhook_url":"https://h.example.com","webhook_events":["job.progress","job.progress"]}}"#
        ))
        .webhook(&palms, false)
        .unwrap()
        .unwrap();
        assert_eq!(progress.events, [WebhookEvent::JobProgress]);
        let refused = |json: String| body(&json).webhook(&palms, false).unwrap_err().to_string();
        assert_eq!(
            refused(format!(
                r#"{{{ids},"webhook_url":"https://h.example.com","webhook_events":["upload.completed"]}}"#
            )),
            "a job's webhook receives job events only (job.completed, job.failed, job.progress), not upload.completed"
        );
        assert_eq!(
            refused(format!(r#"{{{ids},"webhook_events":["job.failed"]}}"#)),
            "webhook_events needs webhook_url"
        );
        assert!(
            refused(format!(r#"{{{ids},"webhook_url":"http://127.0.0.1:9/"}}"#))
                .contains("127.0.0.1")
        );
        assert!(
            body(&format!(r#"{{{ids},"webhook_url":"http://127.0.0.1:9/"}}"#))
                .webhook(&palms, true)
                .is_ok()
        );
    }

    #[test]
    fn a_posted_file_is_checked_as_it_arrives() {
        let tiff = b"II*\0\x08\0\0\0 rest of a GeoTIFF";
        let mut file = PostedFile::new("tile.tif", 64).unwrap();
        file.push(&tiff[..5]).unwrap();
        assert_eq!(file.format(), None, "five bytes are not enough to tell");
        file.push(&tiff[5..]).unwrap();
        assert_eq!(file.format(), Some(ImageFormat::Tiff));
        let summary = file.finish().unwrap();
        assert_eq!(
            (summary.format, summary.size_bytes, summary.sha256),
            (ImageFormat::Tiff, tiff.len() as u64, Sha256Digest::of(tiff))
        );
        // A short file is sniffed at its end.
        let png = b"\x89PNG\r\n\x1a\n";
        let mut short = PostedFile::new("dot.png", 64).unwrap();
        short.push(png).unwrap();
        assert_eq!(short.finish().unwrap().format, ImageFormat::Png);

        let mut text = PostedFile::new("notes.tif", 64).unwrap();
        let refused = text.push(b"image_path,xmin,ymin,xmax\n").unwrap_err();
        assert_eq!(
            (refused.file_name.as_str(), refused.code),
            ("notes.tif", ErrorCode::UnsupportedType)
        );
        let mut big = PostedFile::new("big.tif", 20).unwrap();
        big.push(&tiff[..16]).unwrap();
        let refused = big.push(&tiff[16..]).unwrap_err();
        assert_eq!(refused.code, ErrorCode::TooLarge);
        assert_eq!(
            refused.to_string(),
            "big.tif: over 20 bytes; a job input may have at most 20 (--max-input-bytes)"
        );
        let empty = PostedFile::new("empty.tif", 20)
            .unwrap()
            .finish()
            .unwrap_err();
        assert_eq!(empty.code, ErrorCode::EmptyImage);
        assert_eq!(
            PostedFile::new("", 20).unwrap_err().code,
            ErrorCode::FileName
        );
        assert!(PostedFile::new(&"x".repeat(256), 20).is_err());
    }

    #[test]
    fn lists_are_bounded_and_projects_checked() {
        let empty = body(r#"{"project":"palms","upload_ids":[]}"#).selection(MAX_JOB_INPUTS);
        assert_eq!(empty, Err(JobInputsError::Empty("upload_ids")));
        let many = CreateJob {
            project: "palms".into(),
            image_ids: Some((0..=MAX_JOB_INPUTS).map(|n| n.to_string()).collect()),
            ..CreateJob::default()
        };
        let e = many.selection(MAX_JOB_INPUTS).unwrap_err();
        assert_eq!(e.code(), ErrorCode::JobInputs);
        assert_eq!(
            e.to_string(),
            "image_ids: 10001 inputs; a job takes at most 10000"
        );
        let three = body(r#"{"project":"palms","upload_ids":["a","b","c","d"]}"#).selection(3);
        assert_eq!(
            three.unwrap_err().to_string(),
            "upload_ids: 4 inputs; a job takes at most 3"
        );
        let bad = body(r#"{"project":"Palms!","image_ids":["a"]}"#).selection(MAX_JOB_INPUTS);
        assert_eq!(bad.unwrap_err().code(), ErrorCode::InvalidProject);
    }

    #[test]
    fn a_search_is_checked_as_get_v1_images_checks_it() {
        let (_, selection) = body(
            r#"{"project":"palms","search":{"from":"2026-05-01","to":"2026-05-31","bbox":[-82.1,29.6,-81.9,29.8]}}"#,
        )
        .selection(MAX_JOB_INPUTS)
        .unwrap();
        let JobSelection::Search(query) = selection else {
            panic!("{selection:?}")
        };
        assert_eq!(query.project.unwrap().as_str(), "palms");
        assert_eq!(query.from.unwrap().to_string(), "2026-05-01");
        assert_eq!(query.limit, ImageQuery::MAX_LIMIT);
        assert!((query.bbox.unwrap().min_lon + 82.1).abs() < 1e-12);
        let outside =
            body(r#"{"project":"palms","search":{"bbox":[0,0,181,1]}}"#).selection(MAX_JOB_INPUTS);
        assert_eq!(outside.unwrap_err().code(), ErrorCode::InvalidParameter);
        let bad = body(r#"{"project":"palms","search":{"from":"May"}}"#).selection(MAX_JOB_INPUTS);
        let e = bad.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidParameter);
        assert!(
            e.to_string().starts_with("search: from=\"May\" is invalid"),
            "{e}"
        );
        // '); DROP TABLE images; -- is a value like any other: refused by the date parser.
        let injected = body(r#"{"project":"palms","search":{"to":"'); DROP TABLE images; --"}}"#);
        assert_eq!(
            injected.selection(MAX_JOB_INPUTS).unwrap_err().code(),
            ErrorCode::InvalidParameter
        );
    }
}
