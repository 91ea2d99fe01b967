//! Upload planning: what one `POST /v1/uploads` may declare and which keys it gets.
//!
//! A request carries, per file, the [`Manifest`] that [`crate::preprocess()`] made in the
//! browser. The server trusts none of its names: [`plan_upload`] validates every declared
//! object, assigns a fresh [`ImageId`], and derives every key from the layout in
//! [`crate::keys`]. The result is again a `Manifest`, which becomes the metadata record and the
//! sidecar.

use std::ops::RangeInclusive;
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::exif::{ExifMetadata, MetadataProblem};
use crate::keys::{ImageId, KeyError, ObjectNaming, Project, Slug};
use crate::limits::{ImageFormat, Limits};
use crate::manifest::{DateSource, Manifest, ManifestObject, ObjectKind, Sha256Digest};
use crate::presign::PresignedRequest;

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

/// The formats an original may declare, by content type: those [`crate::limits::probe`]
/// accepts.
pub const ORIGINAL_FORMATS: [ImageFormat; 3] =
    [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Tiff];

/// The content type of every derivative: they are baseline JPEGs.
pub const DERIVATIVE_CONTENT_TYPE: &str = "image/jpeg";

/// How long a declared file name may be, in characters (Unicode scalar values, as JSON
/// Schema's `maxLength` counts them).
pub const FILE_NAME_CHARS: RangeInclusive<usize> = 1..=255;

/// Lifetime of the URLs the edge signs for its own immediate use while completing an upload:
/// the `HEAD` that checks each object and the `PUT` of each metadata sidecar. They are used
/// within the same request, so 60 s is ample.
pub const VERIFY_URL_LIFETIME: Duration = Duration::from_secs(60);

/// `POST /v1/uploads` body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct UploadRequest {
    /// The project: 1 to 63 characters `a-z`, `0-9` and `-`, starting with a letter or digit.
    pub project: String,
    /// One entry per image: the manifest the client's `preprocess` produced. Its ids and keys
    /// are ignored.
    pub files: Vec<DeclaredImage>,
}

/// What a client declares about one image: the fields of its manifest that the server uses.
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
    #[serde(deserialize_with = "crate::json_integer::integer")]
    pub size_bytes: u64,
    /// Its SHA-256.
    pub sha256: DeclaredSha256,
    /// Width in pixels.
    #[serde(deserialize_with = "crate::json_integer::integer")]
    pub width: u32,
    /// Height in pixels.
    #[serde(deserialize_with = "crate::json_integer::integer")]
    pub height: u32,
}

impl From<&Manifest> for DeclaredImage {
    /// What a client declares for an image it preprocessed: the file name, the EXIF and the
    /// six objects with their sizes, checksums and pixel sizes.
    fn from(manifest: &Manifest) -> Self {
        Self {
            file_name: manifest.file_name.clone(),
            exif: manifest.exif.clone(),
            objects: manifest
                .objects
                .iter()
                .map(|object| DeclaredObject {
                    kind: object.kind,
                    content_type: object.content_type.clone(),
                    size_bytes: object.size_bytes,
                    sha256: object.sha256.clone().into(),
                    width: object.width,
                    height: object.height,
                })
                .collect(),
        }
    }
}

/// A declared SHA-256: 64 lower-case hex digits. Any other spelling a client sends (the
/// manifest's `base64`) is ignored; the server derives the base64 that storage checks from
/// these digits, so the two can never disagree.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DeclaredSha256 {
    /// 64 lower-case hex digits.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub hex: String,
}

impl From<Sha256Digest> for DeclaredSha256 {
    fn from(digest: Sha256Digest) -> Self {
        Self { hex: digest.hex }
    }
}

/// One object to upload, in the answer to `POST /v1/uploads`: PUT the bytes to `url` with
/// exactly `headers`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadTarget {
    /// The image the object belongs to.
    pub image_id: String,
    /// Which object.
    pub kind: ObjectKind,
    /// Its key in storage.
    pub key: String,
    /// The presigned PUT.
    #[serde(flatten)]
    pub request: PresignedRequest,
}

/// `201` answer to `POST /v1/uploads`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadCreated {
    /// Pass to `POST /v1/uploads/{id}/complete` once every object is stored.
    pub upload_id: String,
    /// Six per image: original, processed, augmented 90/180/270/360.
    pub objects: Vec<UploadTarget>,
}

/// `200` answer to `POST /v1/uploads/{id}/complete` (the same every time it is called).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadCompleted {
    /// The upload.
    pub upload_id: String,
    /// The batch job it triggered; poll `GET /v1/jobs/{job_id}`.
    pub job_id: String,
    /// The recorded images.
    pub images: Vec<String>,
}

/// A refused upload request. Every variant names the file (by position) and the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
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
    /// A file's object list is not exactly one of each kind, in [`ObjectKind::ALL`] order.
    #[error(
        "file {file}: objects must be original, processed, augmented-90, -180, -270 and -360, once each and in that order"
    )]
    ObjectSet {
        /// Position of the file in the request.
        file: usize,
    },
    /// The original is not image/jpeg, image/png or image/tiff, or a derivative not image/jpeg.
    #[error("file {file}: {kind:?} has content type {content_type:?}; allowed: {}", allowed.join(", "))]
    ContentType {
        /// Position of the file.
        file: usize,
        /// The object.
        kind: ObjectKind,
        /// What was declared.
        content_type: String,
        /// What is allowed.
        allowed: Vec<&'static str>,
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
    /// A checksum is not 64 lower-case hex digits.
    #[error("file {file}: {kind:?} has an invalid SHA-256 (64 lower-case hex digits expected)")]
    Checksum {
        /// Position of the file.
        file: usize,
        /// The object.
        kind: ObjectKind,
    },
    /// The file name is empty or longer than 255 characters.
    #[error("file {file}: the name must be 1 to 255 characters")]
    FileName {
        /// Position of the file.
        file: usize,
    },
    /// A declared EXIF field is outside what a camera records ([`ExifMetadata::check`]).
    #[error("file {file}: {problem}")]
    Metadata {
        /// Position of the file.
        file: usize,
        /// The field and its range.
        problem: MetadataProblem,
    },
}

impl UploadError {
    /// The stable code ([`ErrorCode`]).
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Project(_) => ErrorCode::InvalidProject,
            Self::FileCount { .. } => ErrorCode::FileCount,
            Self::ObjectSet { .. } => ErrorCode::ObjectSet,
            Self::ContentType { .. } => ErrorCode::ContentType,
            Self::Size { .. } => ErrorCode::ObjectSize,
            Self::Checksum { .. } => ErrorCode::Checksum,
            Self::FileName { .. } => ErrorCode::FileName,
            Self::Metadata { .. } => ErrorCode::InvalidMetadata,
        }
    }
}

/// What a signed `HEAD` with `x-amz-checksum-mode: ENABLED` reports for one stored object:
/// `Content-Length` and `x-amz-checksum-sha256`, each absent when the header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredObject<'a> {
    /// `Content-Length`, in bytes.
    pub size_bytes: Option<u64>,
    /// `x-amz-checksum-sha256`: base64 of the 32-byte digest.
    pub sha256_base64: Option<&'a str>,
}

/// Why a stored object fails `complete`'s check; its `Display` is the `problem` of an
/// [`ObjectProblem`](crate::error::ObjectProblem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoredProblem {
    /// Storage answered 404.
    #[error("missing")]
    Missing,
    /// Another size than declared (or none reported).
    #[error("size {} instead of {declared}", stored.map_or_else(|| "unknown".to_owned(), |s| s.to_string()))]
    Size {
        /// The stored size.
        stored: Option<u64>,
        /// The declared size.
        declared: u64,
    },
    /// Another SHA-256 than declared (or none reported).
    #[error("sha256 {} instead of {declared}", stored.as_deref().unwrap_or("unknown"))]
    Checksum {
        /// The stored checksum, base64.
        stored: Option<String>,
        /// The declared checksum, base64.
        declared: String,
    },
}

/// `complete`'s check of one declared object against what storage holds (`None`: storage
/// answered 404). An object passes only with exactly the declared size and SHA-256. The
/// presigned PUT already binds both, so a mismatch means the object was never uploaded, or
/// was uploaded by other means than its URL.
///
/// # Errors
/// The first [`StoredProblem`]: missing, then size, then checksum.
pub fn check_stored(
    object: &ManifestObject,
    stored: Option<StoredObject<'_>>,
) -> Result<(), StoredProblem> {
    let stored = stored.ok_or(StoredProblem::Missing)?;
    if stored.size_bytes != Some(object.size_bytes) {
        return Err(StoredProblem::Size {
            stored: stored.size_bytes,
            declared: object.size_bytes,
        });
    }
    if stored.sha256_base64 != Some(object.sha256.base64.as_str()) {
        return Err(StoredProblem::Checksum {
            stored: stored.sha256_base64.map(str::to_owned),
            declared: object.sha256.base64.clone(),
        });
    }
    Ok(())
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
    if !FILE_NAME_CHARS.contains(&declared.file_name.chars().count()) {
        return Err(UploadError::FileName { file });
    }
    declared
        .exif
        .check()
        .map_err(|problem| UploadError::Metadata { file, problem })?;
    if !declared.objects.iter().map(|o| o.kind).eq(ObjectKind::ALL) {
        return Err(UploadError::ObjectSet { file });
    }
    // In ObjectKind::ALL order from here: the original first.
    let original = &declared.objects[0];
    let format = ORIGINAL_FORMATS
        .into_iter()
        .find(|f| f.content_type() == original.content_type)
        .ok_or_else(|| UploadError::ContentType {
            file,
            kind: ObjectKind::Original,
            content_type: original.content_type.clone(),
            allowed: ORIGINAL_FORMATS.map(ImageFormat::content_type).to_vec(),
        })?;
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
    let mut objects = Vec::with_capacity(ObjectKind::ALL.len());
    for object in &declared.objects {
        let kind = object.kind;
        let key = naming.key(kind, format);
        let max_bytes = if kind == ObjectKind::Original {
            policy.max_original_bytes
        } else {
            policy.max_derivative_bytes
        };
        if kind != ObjectKind::Original && object.content_type != DERIVATIVE_CONTENT_TYPE {
            return Err(UploadError::ContentType {
                file,
                kind,
                content_type: object.content_type.clone(),
                allowed: vec![DERIVATIVE_CONTENT_TYPE],
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
        let sha256 = Sha256Digest::from_hex(&object.sha256.hex)
            .ok_or(UploadError::Checksum { file, kind })?;
        objects.push(ManifestObject {
            kind,
            key,
            content_type: object.content_type.clone(),
            size_bytes: object.size_bytes,
            sha256,
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
            objects: ObjectKind::ALL
                .iter()
                .enumerate()
                .map(|(i, &kind)| DeclaredObject {
                    kind,
                    content_type: "image/jpeg".into(),
                    size_bytes: 1000 + i as u64,
                    sha256: digest(i as u8).into(),
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

    /// The plan of one declared file, `a.jpg`, in project `p`.
    fn plan_one() -> Vec<Manifest> {
        let request = UploadRequest {
            project: "p".into(),
            files: vec![declared("a.jpg")],
        };
        plan_upload(&request, &UploadPolicy::default(), ids(), today()).unwrap()
    }

    #[test]
    fn keys_are_decided_by_the_server() {
        let evil = declared("../../other-project/x.jpg");
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
        assert_eq!(
            bad(&|r| r.project = "Palms!".into()),
            ErrorCode::InvalidProject
        );
        assert_eq!(bad(&|r| r.files.clear()), ErrorCode::FileCount);
        assert_eq!(
            bad(&|r| r.files = vec![declared("a.jpg"); 51]),
            ErrorCode::FileCount
        );
        assert_eq!(
            bad(&|r| r.files[0].objects.pop().map(drop).unwrap()),
            ErrorCode::ObjectSet
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[1].kind = ObjectKind::Original),
            ErrorCode::ObjectSet
        );
        assert_eq!(
            bad(&|r| r.files[0].objects.swap(2, 3)),
            ErrorCode::ObjectSet,
            "one of each kind, in order"
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[0].content_type = "image/gif".into()),
            ErrorCode::ContentType
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[3].content_type = "image/png".into()),
            ErrorCode::ContentType
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[0].size_bytes = 10 * 1024 * 1024 + 1),
            ErrorCode::ObjectSize
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[2].size_bytes = 0),
            ErrorCode::ObjectSize
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[2].sha256.hex = digest(9).hex.to_uppercase()),
            ErrorCode::Checksum
        );
        assert_eq!(
            bad(&|r| r.files[0].objects[2].sha256.hex = "zz".into()),
            ErrorCode::Checksum
        );
        assert_eq!(
            bad(&|r| r.files[0].file_name = String::new()),
            ErrorCode::FileName
        );
        assert_eq!(
            bad(&|r| r.files[0].file_name = "é".repeat(256)),
            ErrorCode::FileName
        );
        let mut long = request.clone();
        long.files[0].file_name = "é".repeat(255);
        assert!(
            plan(&long).is_ok(),
            "255 characters (510 bytes) are allowed"
        );
        assert_eq!(
            bad(
                &|r| r.files[0].exif.taken_at = NaiveDate::from_ymd_opt(10_000, 1, 1)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
            ),
            ErrorCode::InvalidMetadata
        );
        assert_eq!(
            bad(&|r| r.files[0].exif.gps.as_mut().unwrap().latitude = 1000.0),
            ErrorCode::InvalidMetadata
        );

        // The message names the file and the limit.
        request.files[0].objects[0].size_bytes = 20_000_000;
        assert_eq!(
            plan(&request).unwrap_err().to_string(),
            "file 0: Original is 20000000 bytes; allowed 1 to 10485760"
        );
    }

    #[test]
    fn put_headers_bind_type_length_and_checksum() {
        let plan = plan_one();
        let headers = plan[0].objects[1].put_headers();
        assert_eq!(headers[0], ("content-type", "image/jpeg".to_owned()));
        assert_eq!(headers[1], ("content-length", "1001".to_owned()));
        assert_eq!(headers[2], ("x-amz-checksum-sha256", digest(1).base64));
    }

    #[test]
    fn stored_objects_pass_only_with_the_declared_size_and_checksum() {
        let plan = plan_one();
        let object = plan[0].original();
        let right = digest(0).base64;
        let stored = |size_bytes, sha256_base64| {
            Some(StoredObject {
                size_bytes,
                sha256_base64,
            })
        };
        assert_eq!(
            check_stored(object, stored(Some(1000), Some(&right))),
            Ok(())
        );
        assert_eq!(check_stored(object, None), Err(StoredProblem::Missing));
        let short = check_stored(object, stored(Some(999), Some(&right))).unwrap_err();
        assert_eq!(short.to_string(), "size 999 instead of 1000");
        let other = digest(7).base64;
        let changed = check_stored(object, stored(Some(1000), Some(&other))).unwrap_err();
        assert_eq!(
            changed.to_string(),
            format!("sha256 {other} instead of {right}")
        );
        // Storage that reports no checksum (checksum mode unsupported) never passes.
        let silent = check_stored(object, stored(Some(1000), None)).unwrap_err();
        assert_eq!(
            silent.to_string(),
            format!("sha256 unknown instead of {right}")
        );
        assert_eq!(
            check_stored(object, stored(None, Some(&right)))
                .unwrap_err()
                .to_string(),
            "size unknown instead of 1000"
        );
    }
}
