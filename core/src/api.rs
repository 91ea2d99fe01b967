//! The edge API's rules: what an upload request may declare, which keys it gets, and how an
//! image search parses. Hosts (`tessera-edge` on Workers and natively) only move bytes.
//!
//! An upload request carries, per file, the [`Manifest`] that [`crate::preprocess`] made in the
//! browser. The server trusts none of its names: it validates every declared object, assigns
//! a fresh [`ImageId`], and derives every key from the layout in [`crate::keys`]. The result is
//! again a `Manifest`, which becomes the metadata record and the sidecar.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::exif::ExifMetadata;
use crate::keys::{ImageId, KeyError, ObjectNaming, Project, Slug};
use crate::limits::{ImageFormat, Limits};
use crate::pixels::Rotation;
use crate::{DateSource, Manifest, ManifestObject, ObjectKind, Sha256Digest};

/// Limits on one `POST /v1/uploads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadPolicy {
    /// Files per request. Default 50.
    pub max_files: usize,
    /// Largest original, in bytes. Default 10 MiB, as [`Limits::DEFAULT`].
    pub max_original_bytes: u64,
    /// Largest derivative (a 256×256 JPEG), in bytes. Default 1 MiB.
    pub max_derivative_bytes: u64,
    /// Validity of each presigned URL. Default 15 minutes.
    pub expires_in: Duration,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        Self {
            max_files: 50,
            max_original_bytes: Limits::DEFAULT.max_bytes,
            max_derivative_bytes: 1024 * 1024,
            expires_in: Duration::from_secs(15 * 60),
        }
    }
}

/// `POST /v1/uploads` body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct UploadRequest {
    /// The project, see [`Project`].
    pub project: String,
    /// One entry per image: the manifest the client's `preprocess` produced. Its ids and keys
    /// are ignored.
    pub files: Vec<DeclaredImage>,
}

/// What a client declares about one image (the fields of its [`Manifest`] the server uses).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct DeclaredImage {
    /// The file's name, for the slug.
    pub file_name: String,
    /// EXIF read in the browser.
    #[serde(default)]
    pub exif: ExifMetadata,
    /// The six objects: original, processed, augmented 90/180/270/360.
    pub objects: Vec<DeclaredObject>,
}

/// One declared object.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DeclaredObject {
    /// Which object.
    pub kind: ObjectKind,
    /// Its media type.
    pub content_type: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Its SHA-256.
    pub sha256: Sha256Digest,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// A refused upload request. Every variant names the file (by position) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The project name is invalid.
    #[error(transparent)]
    Project(#[from] KeyError),
    /// No files, or more than the policy allows.
    #[error("{count} files in one request; send 1 to {max_files}")]
    FileCount {
        /// Files sent.
        count: usize,
        /// The limit.
        max_files: usize,
    },
    /// A file's object list is not exactly one of each kind.
    #[error(
        "file {file}: objects must be original, processed, augmented-90, -180, -270 and -360, once each"
    )]
    ObjectSet {
        /// Position of the file in the request.
        file: usize,
    },
    /// The original is not image/jpeg, image/png or image/tiff, or a derivative not image/jpeg.
    #[error("file {file}: {kind:?} has content type {content_type:?}; allowed: {allowed}")]
    ContentType {
        /// Position of the file.
        file: usize,
        /// The object.
        kind: ObjectKind,
        /// What was declared.
        content_type: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// An object is empty or larger than the policy allows.
    #[error("file {file}: {kind:?} is {size_bytes} bytes; allowed 1 to {max_bytes}")]
    Size {
        /// Position of the file.
        file: usize,
        /// The object.
        kind: ObjectKind,
        /// Declared size.
        size_bytes: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// A checksum is not 32 bytes, or its hex and base64 spellings disagree.
    #[error(
        "file {file}: {kind:?} has an invalid SHA-256 (64 hex digits and the same 32 bytes in base64 expected)"
    )]
    Checksum {
        /// Position of the file.
        file: usize,
        /// The object.
        kind: ObjectKind,
    },
    /// The file name is empty or longer than 255 bytes.
    #[error("file {file}: the name must be 1 to 255 bytes")]
    FileName {
        /// Position of the file.
        file: usize,
    },
}

impl UploadError {
    /// A stable machine-readable code.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Project(_) => "invalid_project",
            Self::FileCount { .. } => "file_count",
            Self::ObjectSet { .. } => "object_set",
            Self::ContentType { .. } => "content_type",
            Self::Size { .. } => "object_size",
            Self::Checksum { .. } => "checksum",
            Self::FileName { .. } => "file_name",
        }
    }
}

const OBJECT_ORDER: [ObjectKind; 6] = [
    ObjectKind::Original,
    ObjectKind::Processed,
    ObjectKind::Augmented90,
    ObjectKind::Augmented180,
    ObjectKind::Augmented270,
    ObjectKind::Augmented360,
];

fn valid_digest(d: &Sha256Digest) -> bool {
    let from_hex = hex::decode(&d.hex)
        .ok()
        .filter(|b| b.len() == 32 && d.hex.len() == 64);
    let from_b64 = base64::engine::general_purpose::STANDARD
        .decode(&d.base64)
        .ok();
    from_hex.is_some() && from_hex == from_b64 && d.hex.bytes().all(|b| !b.is_ascii_uppercase())
}

/// Validates an upload request and decides every key: one [`Manifest`] per file, with a new
/// id from `new_id`, objects in [`Manifest::objects`] order, and the date from EXIF
/// `DateTimeOriginal` else `upload_date`.
///
/// # Errors
/// The first [`UploadError`] found; nothing is planned for a request with any error, so a
/// client fixes the request and sends it again.
pub fn plan_upload(
    request: &UploadRequest,
    policy: &UploadPolicy,
    mut new_id: impl FnMut() -> ImageId,
    upload_date: NaiveDate,
) -> Result<Vec<Manifest>, UploadError> {
    let project = Project::new(request.project.clone())?;
    if request.files.is_empty() || request.files.len() > policy.max_files {
        return Err(UploadError::FileCount {
            count: request.files.len(),
            max_files: policy.max_files,
        });
    }
    request
        .files
        .iter()
        .enumerate()
        .map(|(file, declared)| plan_image(file, declared, &project, policy, new_id(), upload_date))
        .collect()
}

fn plan_image(
    file: usize,
    declared: &DeclaredImage,
    project: &Project,
    policy: &UploadPolicy,
    image_id: ImageId,
    upload_date: NaiveDate,
) -> Result<Manifest, UploadError> {
    if declared.file_name.is_empty() || declared.file_name.len() > 255 {
        return Err(UploadError::FileName { file });
    }
    let kinds: BTreeSet<_> = declared.objects.iter().map(|o| o.kind as u8).collect();
    if declared.objects.len() != OBJECT_ORDER.len() || kinds.len() != OBJECT_ORDER.len() {
        return Err(UploadError::ObjectSet { file });
    }
    let by_kind = |kind| {
        declared
            .objects
            .iter()
            .find(|o| o.kind == kind)
            .expect("all six kinds")
    };

    let original = by_kind(ObjectKind::Original);
    let format = match original.content_type.as_str() {
        "image/jpeg" => ImageFormat::Jpeg,
        "image/png" => ImageFormat::Png,
        "image/tiff" => ImageFormat::Tiff,
        other => {
            return Err(UploadError::ContentType {
                file,
                kind: ObjectKind::Original,
                content_type: other.to_owned(),
                allowed: "image/jpeg, image/png, image/tiff",
            });
        }
    };
    let (date, date_source) = match declared.exif.acquisition_date() {
        Some(date) => (date, DateSource::Exif),
        None => (upload_date, DateSource::Upload),
    };
    let naming = ObjectNaming {
        project: project.clone(),
        image_id,
        slug: Slug::from_file_name(&declared.file_name),
        date,
    };
    let mut objects = Vec::with_capacity(OBJECT_ORDER.len());
    for kind in OBJECT_ORDER {
        let object = by_kind(kind);
        let (key, max_bytes) = match kind {
            ObjectKind::Original => (naming.original_key(format), policy.max_original_bytes),
            ObjectKind::Processed => (naming.processed_key(), policy.max_derivative_bytes),
            ObjectKind::Augmented90 => (
                naming.augmented_key(Rotation::Ccw90),
                policy.max_derivative_bytes,
            ),
            ObjectKind::Augmented180 => (
                naming.augmented_key(Rotation::Ccw180),
                policy.max_derivative_bytes,
            ),
            ObjectKind::Augmented270 => (
                naming.augmented_key(Rotation::Ccw270),
                policy.max_derivative_bytes,
            ),
            ObjectKind::Augmented360 => (
                naming.augmented_key(Rotation::Ccw360),
                policy.max_derivative_bytes,
            ),
        };
        if kind != ObjectKind::Original && object.content_type != "image/jpeg" {
            return Err(UploadError::ContentType {
                file,
                kind,
                content_type: object.content_type.clone(),
                allowed: "image/jpeg",
            });
        }
        if object.size_bytes == 0 || object.size_bytes > max_bytes {
            return Err(UploadError::Size {
                file,
                kind,
                size_bytes: object.size_bytes,
                max_bytes,
            });
        }
        if !valid_digest(&object.sha256) {
            return Err(UploadError::Checksum { file, kind });
        }
        objects.push(ManifestObject {
            kind,
            key,
            content_type: object.content_type.clone(),
            size_bytes: object.size_bytes,
            sha256: object.sha256.clone(),
            width: object.width,
            height: object.height,
        });
    }
    Ok(Manifest {
        metadata_key: naming.metadata_key(),
        project: naming.project,
        image_id: naming.image_id,
        file_name: declared.file_name.clone(),
        format,
        date,
        date_source,
        exif: declared.exif.clone(),
        objects,
    })
}

impl ManifestObject {
    /// The headers a presigned PUT of this object signs, so that storage refuses any other
    /// file: `content-type`, `content-length` and `x-amz-checksum-sha256` (base64).
    #[must_use]
    pub fn put_headers(&self) -> [(&'static str, String); 3] {
        [
            ("content-type", self.content_type.clone()),
            ("content-length", self.size_bytes.to_string()),
            ("x-amz-checksum-sha256", self.sha256.base64.clone()),
        ]
    }
}

/// A WGS 84 longitude/latitude box, degrees, edges inclusive. `min_lon > max_lon` is a box
/// that crosses the antimeridian (e.g. 170,−10,−170,10).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    /// West edge, −180 to 180.
    pub min_lon: f64,
    /// South edge, −90 to 90.
    pub min_lat: f64,
    /// East edge, −180 to 180.
    pub max_lon: f64,
    /// North edge, −90 to 90, at least `min_lat`.
    pub max_lat: f64,
}

impl BoundingBox {
    /// Whether the box holds the point.
    #[must_use]
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        let in_lon = if self.min_lon <= self.max_lon {
            (self.min_lon..=self.max_lon).contains(&lon)
        } else {
            lon >= self.min_lon || lon <= self.max_lon
        };
        in_lon && (self.min_lat..=self.max_lat).contains(&lat)
    }
}

/// Where the previous page of a search ended: records sort by (date, image id), ascending.
/// Sent to clients as opaque URL-safe base64 of `YYYY-MM-DD/{image_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchCursor {
    /// The last record's acquisition date.
    pub date: NaiveDate,
    /// The last record's id.
    pub image_id: ImageId,
}

impl SearchCursor {
    /// The opaque form.
    #[must_use]
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}/{}", self.date, self.image_id))
    }

    /// Parses the opaque form; `None` for anything this function did not make.
    #[must_use]
    pub fn decode(text: &str) -> Option<Self> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let (date, id) = std::str::from_utf8(&raw).ok()?.split_once('/')?;
        Some(Self {
            date: date.parse().ok()?,
            image_id: ImageId::new(id).ok()?,
        })
    }
}

/// `GET /v1/images` parameters, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageQuery {
    /// Only this project's images.
    pub project: Option<Project>,
    /// Acquisition date on or after.
    pub from: Option<NaiveDate>,
    /// Acquisition date on or before.
    pub to: Option<NaiveDate>,
    /// Only images with GPS inside.
    pub bbox: Option<BoundingBox>,
    /// Page size, 1 to [`ImageQuery::MAX_LIMIT`]; default [`ImageQuery::DEFAULT_LIMIT`].
    pub limit: u32,
    /// Continue after this record.
    pub cursor: Option<SearchCursor>,
}

impl ImageQuery {
    /// Page size when none is given.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// Largest page.
    pub const MAX_LIMIT: u32 = 200;
}

/// A refused search parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A parameter this API does not have.
    #[error("unknown parameter {0:?}; use project, from, to, bbox, limit, cursor")]
    Unknown(String),
    /// A parameter given twice.
    #[error("parameter {0:?} given more than once")]
    Repeated(String),
    /// A value that does not parse or is out of range.
    #[error("{parameter}={value:?} is invalid: expected {expected}")]
    Invalid {
        /// The parameter.
        parameter: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}

impl QueryError {
    /// A stable machine-readable code.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "unknown_parameter",
            Self::Repeated(_) => "repeated_parameter",
            Self::Invalid { .. } => "invalid_parameter",
        }
    }
}

/// Parses decoded query pairs (e.g. from `form_urlencoded::parse`) into an [`ImageQuery`].
///
/// # Errors
/// [`QueryError`] naming the parameter, the value and what is expected. Values are parsed
/// into typed fields here, so nothing a client sends reaches SQL as text.
pub fn parse_image_query<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Result<ImageQuery, QueryError> {
    let mut query = ImageQuery {
        project: None,
        from: None,
        to: None,
        bbox: None,
        limit: ImageQuery::DEFAULT_LIMIT,
        cursor: None,
    };
    let mut seen = BTreeSet::new();
    for (name, value) in pairs {
        let (name, value) = (name.as_ref(), value.as_ref());
        let invalid = |parameter, expected| QueryError::Invalid {
            parameter,
            value: value.to_owned(),
            expected,
        };
        if !seen.insert(name.to_owned()) {
            return Err(QueryError::Repeated(name.to_owned()));
        }
        let date = |p| {
            NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .map_err(|_| invalid(p, "a date YYYY-MM-DD"))
        };
        match name {
            "project" => {
                query.project =
                    Some(Project::new(value).map_err(|_| invalid("project", "a project name"))?);
            }
            "from" => query.from = Some(date("from")?),
            "to" => query.to = Some(date("to")?),
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=ImageQuery::MAX_LIMIT).contains(l))
                    .ok_or_else(|| invalid("limit", "an integer 1 to 200"))?;
            }
            "cursor" => {
                query.cursor = Some(
                    SearchCursor::decode(value)
                        .ok_or_else(|| invalid("cursor", "a cursor from a previous page"))?,
                );
            }
            "bbox" => {
                let expected = "minLon,minLat,maxLon,maxLat in degrees, longitudes −180 to 180, latitudes −90 to 90, minLat ≤ maxLat";
                let v: Vec<f64> = value
                    .split(',')
                    .map(|p| p.trim().parse::<f64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| invalid("bbox", expected))?;
                let [min_lon, min_lat, max_lon, max_lat] = v[..] else {
                    return Err(invalid("bbox", expected));
                };
                let lon_ok = |x: f64| (-180.0..=180.0).contains(&x);
                let lat_ok = |y: f64| (-90.0..=90.0).contains(&y);
                if !(lon_ok(min_lon)
                    && lon_ok(max_lon)
                    && lat_ok(min_lat)
                    && lat_ok(max_lat)
                    && min_lat <= max_lat)
                {
                    return Err(invalid("bbox", expected));
                }
                query.bbox = Some(BoundingBox {
                    min_lon,
                    min_lat,
                    max_lon,
                    max_lat,
                });
            }
            other => return Err(QueryError::Unknown(other.to_owned())),
        }
    }
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from > to
    {
        return Err(QueryError::Invalid {
            parameter: "from",
            value: from.to_string(),
            expected: "a date on or before `to`",
        });
    }
    Ok(query)
}

/// The stored form of an API key: lower-case hex SHA-256 of the bearer token's bytes. Keys are
/// configured and compared only in this form, so a leaked configuration reveals no key.
#[must_use]
pub fn api_key_hash(token: &str) -> String {
    Sha256Digest::of(token.as_bytes()).hex
}

/// A token bucket (the classic rate limiter: `capacity` requests at once, refilled at
/// `refill_per_second`), one per API key. Time is passed in, in seconds since any fixed origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    /// Largest burst.
    pub capacity: f64,
    /// Sustained requests per second.
    pub refill_per_second: f64,
    tokens: f64,
    last_s: f64,
}

impl TokenBucket {
    /// A full bucket at time `now_s`.
    #[must_use]
    pub fn new(capacity: f64, refill_per_second: f64, now_s: f64) -> Self {
        Self {
            capacity,
            refill_per_second,
            tokens: capacity,
            last_s: now_s,
        }
    }

    /// Takes one token at `now_s`. `Err(retry_after_s)` says how long until one is available.
    ///
    /// # Errors
    /// The wait in seconds when the bucket is empty.
    pub fn try_take(&mut self, now_s: f64) -> Result<(), f64> {
        let elapsed = (now_s - self.last_s).max(0.0);
        self.tokens = (self.tokens + elapsed * self.refill_per_second).min(self.capacity);
        self.last_s = now_s.max(self.last_s);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - self.tokens) / self.refill_per_second)
        }
    }
}

/// How clients retry a failed request: full-jitter exponential backoff (AWS Architecture Blog,
/// "Exponential Backoff And Jitter", 2015): attempt `n` (0-based) waits a uniform random time in
/// `[0, min(max_delay, base · 2ⁿ))`. Only transient failures are retried ([`Self::retryable`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Tries after the first. Default 6.
    pub max_retries: u32,
    /// The first backoff ceiling, in milliseconds. Default 500.
    pub base_delay_ms: f64,
    /// The largest backoff ceiling, in milliseconds. Default 30 000.
    pub max_delay_ms: f64,
    /// Requests in flight at once per client. Default 4.
    pub max_in_flight: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 6,
            base_delay_ms: 500.0,
            max_delay_ms: 30_000.0,
            max_in_flight: 4,
        }
    }
}

impl RetryPolicy {
    /// Whether an HTTP status is worth retrying: `0` (no answer: network down, CORS or
    /// connection reset), 408, 425, 429 and every 5xx. Any other 4xx will fail the same way
    /// again, so it is never retried.
    #[must_use]
    pub const fn retryable(status: u16) -> bool {
        matches!(status, 0 | 408 | 425 | 429 | 500..=599)
    }

    /// The wait before retry `attempt` (0-based), in milliseconds, for `unit_random` drawn
    /// uniformly from `[0, 1)`; `None` once `max_retries` is spent. A server's `Retry-After`
    /// (seconds) is a floor when given.
    #[must_use]
    pub fn delay_ms(
        &self,
        attempt: u32,
        unit_random: f64,
        retry_after_s: Option<f64>,
    ) -> Option<f64> {
        if attempt >= self.max_retries {
            return None;
        }
        let ceiling =
            (self.base_delay_ms * 2f64.powi(attempt.min(62) as i32)).min(self.max_delay_ms);
        let jittered = ceiling * unit_random.clamp(0.0, 1.0);
        Some(retry_after_s.map_or(jittered, |s| jittered.max(s * 1000.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exif::GpsPosition;

    fn digest(seed: u8) -> Sha256Digest {
        Sha256Digest::of(&[seed])
    }

    fn declared(name: &str) -> DeclaredImage {
        DeclaredImage {
            file_name: name.into(),
            exif: ExifMetadata {
                taken_at: NaiveDate::from_ymd_opt(2024, 3, 9)
                    .unwrap()
                    .and_hms_opt(10, 0, 0),
                gps: Some(GpsPosition {
                    latitude: 5.5,
                    longitude: -0.2,
                    altitude_m: None,
                }),
                ..ExifMetadata::default()
            },
            objects: OBJECT_ORDER
                .iter()
                .enumerate()
                .map(|(i, &kind)| DeclaredObject {
                    kind,
                    content_type: "image/jpeg".into(),
                    size_bytes: 1000 + i as u64,
                    sha256: digest(i as u8),
                    width: 256,
                    height: 256,
                })
                .collect(),
        }
    }

    fn ids() -> impl FnMut() -> ImageId {
        let mut n = 0;
        move || {
            n += 1;
            ImageId::new(format!("id{n}")).unwrap()
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
    }

    #[test]
    fn retry_policy_backs_off_with_full_jitter_and_gives_up() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay_ms(0, 0.999_999, None).map(f64::round),
            Some(500.0)
        );
        assert_eq!(policy.delay_ms(3, 0.5, None), Some(2000.0));
        assert_eq!(policy.delay_ms(5, 1.0, None), Some(16_000.0));
        assert_eq!(policy.delay_ms(2, 0.0, None), Some(0.0));
        assert_eq!(policy.delay_ms(2, 0.0, Some(3.0)), Some(3000.0));
        assert_eq!(policy.delay_ms(6, 0.5, None), None);
        let long = RetryPolicy {
            max_retries: 100,
            ..policy
        };
        assert_eq!(long.delay_ms(99, 1.0, None), Some(30_000.0));
        for status in [0, 408, 425, 429, 500, 502, 503, 504] {
            assert!(RetryPolicy::retryable(status), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 409, 413, 422] {
            assert!(!RetryPolicy::retryable(status), "{status}");
        }
    }

    #[test]
    fn keys_are_decided_by_the_server() {
        let mut evil = declared("../../other-project/x.jpg");
        evil.objects.reverse(); // order does not matter
        let request = UploadRequest {
            project: "palms".into(),
            files: vec![declared("IMG_1.JPG"), evil],
        };
        let plan = plan_upload(&request, &UploadPolicy::default(), ids(), today()).unwrap();
        assert_eq!(
            plan[0].objects[0].key,
            "original-uploads/palms/id1/palms_img-1_20240309.jpg"
        );
        assert_eq!(
            plan[1].objects[0].key,
            "original-uploads/palms/id2/palms_x_20240309.jpg"
        );
        assert_eq!(
            plan[1].objects[2].key,
            "augmented-images/90-degree/palms/id2/palms_x_20240309_90.jpg"
        );
        assert_eq!(plan[1].objects[2].sha256, digest(2));
        assert_eq!(plan[0].metadata_key, "metadata/palms/id1.json");
        assert!(
            plan.iter()
                .flat_map(|m| &m.objects)
                .all(|o| !o.key.contains(".."))
        );
    }

    #[test]
    fn refuses_what_policy_forbids() {
        let policy = UploadPolicy::default();
        let plan = |request: &UploadRequest| plan_upload(request, &policy, ids(), today());
        let mut request = UploadRequest {
            project: "palms".into(),
            files: vec![declared("a.jpg")],
        };
        assert!(plan(&request).is_ok());

        let bad = |f: &dyn Fn(&mut UploadRequest)| {
            let mut r = request.clone();
            f(&mut r);
            plan(&r).unwrap_err().code()
        };
        assert_eq!(bad(&|r| r.project = "Palms!".into()), "invalid_project");
        assert_eq!(bad(&|r| r.files.clear()), "file_count");
        assert_eq!(
            bad(&|r| r.files = vec![declared("a.jpg"); 51]),
            "file_count"
        );
        assert_eq!(
            bad(&|r| r.files[0].objects.pop().map(drop).unwrap()),
            "object_set"
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[1].kind = ObjectKind::Original),
            "object_set"
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[0].content_type = "image/gif".into()),
            "content_type"
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[3].content_type = "image/png".into()),
            "content_type"
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[0].size_bytes = 10 * 1024 * 1024 + 1),
            "object_size"
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[2].size_bytes = 0),
            "object_size"
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[2].sha256.base64 = digest(9).base64),
            "checksum"
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[2].sha256.hex = "zz".into()),
            "checksum"
        );
        assert_eq!(bad(&|r| r.files[0].file_name = String::new()), "file_name");

        // The message names the file and the limit.
        request.files[0].objects[0].size_bytes = 20_000_000;
        assert_eq!(
            plan(&request).unwrap_err().to_string(),
            "file 0: Original is 20000000 bytes; allowed 1 to 10485760"
        );
    }

    #[test]
    fn search_parameters_parse_into_types() {
        let q = parse_image_query([
            ("project", "palms"),
            ("from", "2024-01-01"),
            ("to", "2024-12-31"),
            ("bbox", "-1,5,0.5,6"),
            ("limit", "10"),
        ])
        .unwrap();
        assert_eq!(q.project.unwrap().as_str(), "palms");
        assert_eq!(q.limit, 10);
        assert!(q.bbox.unwrap().contains(-0.2, 5.5));
        assert!(!q.bbox.unwrap().contains(1.0, 5.5));
        let default = parse_image_query(std::iter::empty::<(&str, &str)>()).unwrap();
        assert_eq!(default.limit, ImageQuery::DEFAULT_LIMIT);

        let code =
            |pairs: &[(&str, &str)]| parse_image_query(pairs.iter().copied()).unwrap_err().code();
        assert_eq!(
            code(&[("from", "2024-01-01' OR 1=1 --")]),
            "invalid_parameter"
        );
        assert_eq!(
            code(&[("project", "x'; DROP TABLE images; --")]),
            "invalid_parameter"
        );
        assert_eq!(code(&[("bbox", "1,2,3")]), "invalid_parameter");
        assert_eq!(code(&[("bbox", "0,10,1,5")]), "invalid_parameter");
        assert_eq!(code(&[("bbox", "0,0,181,1")]), "invalid_parameter");
        assert_eq!(code(&[("bbox", "NaN,0,1,1")]), "invalid_parameter");
        assert_eq!(code(&[("limit", "0")]), "invalid_parameter");
        assert_eq!(code(&[("limit", "201")]), "invalid_parameter");
        assert_eq!(code(&[("cursor", "bm90LWEtY3Vyc29y")]), "invalid_parameter");
        assert_eq!(
            code(&[("from", "2024-02-01"), ("to", "2024-01-01")]),
            "invalid_parameter"
        );
        assert_eq!(
            code(&[("limit", "1"), ("limit", "2")]),
            "repeated_parameter"
        );
        assert_eq!(code(&[("sort", "date")]), "unknown_parameter");
    }

    #[test]
    fn antimeridian_boxes_wrap() {
        let b = BoundingBox {
            min_lon: 170.0,
            min_lat: -10.0,
            max_lon: -170.0,
            max_lat: 10.0,
        };
        assert!(b.contains(175.0, 0.0) && b.contains(-175.0, 0.0));
        assert!(!b.contains(0.0, 0.0));
    }

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let c = SearchCursor {
            date: today(),
            image_id: ImageId::new("abc").unwrap(),
        };
        assert_eq!(SearchCursor::decode(&c.encode()), Some(c));
        assert_eq!(SearchCursor::decode("!!"), None);
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("2024-01-01/../x");
        assert_eq!(SearchCursor::decode(&forged), None);
    }

    #[test]
    fn token_bucket_allows_bursts_then_the_refill_rate() {
        let mut bucket = TokenBucket::new(3.0, 2.0, 100.0);
        assert!((0..3).all(|_| bucket.try_take(100.0).is_ok()));
        let wait = bucket.try_take(100.0).unwrap_err();
        assert!((wait - 0.5).abs() < 1e-9, "{wait}");
        assert!(bucket.try_take(100.5).is_ok());
        assert!(bucket.try_take(100.5).is_err());
        assert!(
            (0..3).all(|_| bucket.try_take(200.0).is_ok()),
            "refills to capacity only"
        );
        assert!(bucket.try_take(200.0).is_err());
    }

    #[test]
    fn api_keys_are_stored_as_sha256_hex() {
        assert_eq!(
            api_key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn put_headers_bind_type_length_and_checksum() {
        let plan = plan_upload(
            &UploadRequest {
                project: "p".into(),
                files: vec![declared("a.jpg")],
            },
            &UploadPolicy::default(),
            ids(),
            today(),
        )
        .unwrap();
        let headers = plan[0].objects[1].put_headers();
        assert_eq!(headers[0], ("content-type", "image/jpeg".to_owned()));
        assert_eq!(headers[1], ("content-length", "1001".to_owned()));
        assert_eq!(headers[2], ("x-amz-checksum-sha256", digest(1).base64));
    }
}
