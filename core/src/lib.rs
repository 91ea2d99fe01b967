//! # tessera-core
//!
//! Everything in Tessera that decides: limits and type sniffing, EXIF, orientation, the
//! 256×256 letterbox and its rotations, encoding, checksums, the object-key layout and the
//! manifest. Pure: no I/O, no clocks, no threads; it builds for native targets and for
//! `wasm32-unknown-unknown`, and the same input and [`Options`] give byte-identical output
//! everywhere.
//!
//! The whole browser-side job is [`preprocess`]:
//!
//! 1. [`limits::probe`]: size ≤ 10 MiB, type by magic bytes (JPEG, PNG, TIFF), width, height
//!    and pixel count from the header alone (12,000 px a side, 100 megapixels).
//! 2. [`exif::read_exif`]: date taken, GPS, camera, orientation; bad EXIF is just absent.
//! 3. [`pixels::decode_rgb8`]: 8-bit RGB, alpha on white; JPEGs decoded straight at the
//!    smallest DCT scale that keeps twice the letterbox resolution.
//! 4. [`exif::Orientation::apply`] turns the pixels upright.
//! 5. [`pixels::letterbox`]: 256×256 on white, Lanczos3.
//! 6. [`pixels::Rotation`]: 90°, 180°, 270° counter-clockwise.
//! 7. [`pixels::encode_jpeg`]: baseline JPEG, quality 90.
//! 8. [`Sha256Digest`] of the original and each derivative.
//! 9. [`Manifest`]: keys from [`keys::ObjectNaming`], sizes, checksums, EXIF.

pub mod api;
pub mod exif;
pub mod keys;
pub mod limits;
pub mod pixels;
pub mod presign;

use base64::Engine as _;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exif::ExifMetadata;
use crate::keys::{ImageId, ObjectNaming, Project, Slug};
use crate::limits::{ImageFormat, Limits};
use crate::pixels::{LETTERBOX_SIZE, Rotation};

/// Why one file could not be preprocessed. Each variant carries the bad value and the limit;
/// adapters add the file's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PreprocessError {
    /// The file is larger than [`Limits::max_bytes`].
    #[error("file is {} ({size_bytes} bytes); the limit is {} ({max_bytes} bytes)", mib(*size_bytes), mib(*max_bytes))]
    TooLarge {
        /// The file's size in bytes.
        size_bytes: u64,
        /// The limit in bytes.
        max_bytes: u64,
    },
    /// The magic bytes are not JPEG, PNG or TIFF.
    #[error("not a JPEG, PNG or TIFF image: found {detected}")]
    UnsupportedType {
        /// What the first bytes look like instead.
        detected: String,
    },
    /// A side is longer than [`Limits::max_side_px`].
    #[error("image is {width}×{height} px; the limit is {max_side_px} px a side")]
    SideTooLong {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The limit.
        max_side_px: u32,
    },
    /// Width × height exceeds [`Limits::max_pixels`] (a likely decompression bomb).
    #[error("image is {width}×{height} px ({} megapixels); the limit is {} megapixels", megapixels(*width, *height), *max_pixels as f64 / 1e6)]
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The limit, in pixels.
        max_pixels: u64,
    },
    /// The header claims a zero width or height.
    #[error("image header claims {width}×{height} px")]
    EmptyImage {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
    },
    /// Truncated or damaged data.
    #[error("damaged {} file: {reason}", format.name())]
    Corrupt {
        /// The sniffed container.
        format: ImageFormat,
        /// What the codec reported.
        reason: String,
    },
    /// A valid file using a feature the codecs do not support (e.g. 12-bit JPEG).
    #[error("unsupported {} feature: {feature}", format.name())]
    Unsupported {
        /// The sniffed container.
        format: ImageFormat,
        /// The feature.
        feature: String,
    },
    /// JPEG encoding failed (not expected for valid pixels).
    #[error("could not encode a derivative: {0}")]
    Encode(String),
}

impl PreprocessError {
    /// A stable machine-readable code for APIs and UIs: `too_large`, `unsupported_type`,
    /// `side_too_long`, `too_many_pixels`, `empty_image`, `corrupt`, `unsupported_feature`,
    /// `encode_failed`.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::UnsupportedType { .. } => "unsupported_type",
            Self::SideTooLong { .. } => "side_too_long",
            Self::TooManyPixels { .. } => "too_many_pixels",
            Self::EmptyImage { .. } => "empty_image",
            Self::Corrupt { .. } => "corrupt",
            Self::Unsupported { .. } => "unsupported_feature",
            Self::Encode(_) => "encode_failed",
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn megapixels(width: u32, height: u32) -> String {
    format!("{:.1}", f64::from(width) * f64::from(height) / 1e6)
}

/// How [`preprocess`] names and limits one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Checked before decoding. Default [`Limits::DEFAULT`].
    pub limits: Limits,
    /// JPEG quality of the derivatives, 1–100. Default 90.
    pub quality: u8,
    /// The project the image belongs to.
    pub project: Project,
    /// The image's id; `None` derives it from the original's SHA-256
    /// ([`ImageId::from_sha256_hex`]).
    pub image_id: Option<ImageId>,
    /// The uploaded file's name, for the slug. Never used to decide the type.
    pub file_name: String,
    /// The date used in names when the file has no EXIF `DateTimeOriginal`: the upload date,
    /// given by the caller (the core has no clock).
    pub fallback_date: NaiveDate,
}

impl Options {
    /// Default limits and quality for `file_name` in `project`, dated `fallback_date` unless
    /// EXIF says otherwise.
    #[must_use]
    pub fn new(project: Project, file_name: impl Into<String>, fallback_date: NaiveDate) -> Self {
        Self {
            limits: Limits::DEFAULT,
            quality: 90,
            project,
            image_id: None,
            file_name: file_name.into(),
            fallback_date,
        }
    }
}

/// A SHA-256 digest (FIPS 180-4) in the two spellings storage needs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sha256Digest {
    /// 64 lower-case hex digits.
    pub hex: String,
    /// Standard base64 with padding (RFC 4648 §4), 44 characters: the value of S3's
    /// `x-amz-checksum-sha256` header.
    pub base64: String,
}

impl Sha256Digest {
    /// Hashes `bytes`.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        Self {
            hex: hex::encode(digest),
            base64: base64::engine::general_purpose::STANDARD.encode(digest),
        }
    }
}

/// Which object of an image an entry describes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    /// The file as uploaded, byte for byte.
    Original,
    /// The 256×256 letterbox under `processed/`.
    Processed,
    /// The letterbox turned 90° counter-clockwise.
    #[serde(rename = "augmented-90")]
    Augmented90,
    /// The letterbox turned 180°.
    #[serde(rename = "augmented-180")]
    Augmented180,
    /// The letterbox turned 270° counter-clockwise.
    #[serde(rename = "augmented-270")]
    Augmented270,
    /// The unrotated letterbox under `augmented-images/360-degree/`.
    #[serde(rename = "augmented-360")]
    Augmented360,
}

impl From<Rotation> for ObjectKind {
    fn from(rotation: Rotation) -> Self {
        match rotation {
            Rotation::Ccw90 => Self::Augmented90,
            Rotation::Ccw180 => Self::Augmented180,
            Rotation::Ccw270 => Self::Augmented270,
            Rotation::Ccw360 => Self::Augmented360,
        }
    }
}

/// One stored object of an image.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    /// What it is.
    pub kind: ObjectKind,
    /// Its key under the layout of [`keys`].
    pub key: String,
    /// Its media type, e.g. `image/jpeg`.
    pub content_type: String,
    /// Its length in bytes.
    pub size_bytes: u64,
    /// SHA-256 of its bytes.
    pub sha256: Sha256Digest,
    /// Width in pixels (stored orientation for the original, upright for derivatives).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Where the date in the names came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateSource {
    /// EXIF `DateTimeOriginal`.
    Exif,
    /// The caller's fallback (upload) date.
    Upload,
}

/// Everything known about one preprocessed image; serialised as the metadata sidecar
/// (`metadata/{project}/{image_id}.json`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The project.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub project: Project,
    /// The image's id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub image_id: ImageId,
    /// The uploaded file's name, as given (informational only).
    pub file_name: String,
    /// The sniffed type of the original.
    pub format: ImageFormat,
    /// The date in the names: acquisition date, else upload date.
    pub date: NaiveDate,
    /// Where `date` came from.
    pub date_source: DateSource,
    /// The EXIF fields read from the original.
    pub exif: ExifMetadata,
    /// The key of this manifest's sidecar.
    pub metadata_key: String,
    /// The original first, then `processed`, then augmented 90, 180, 270, 360.
    pub objects: Vec<ManifestObject>,
}

/// The result of [`preprocess`]: the manifest and the derivative bodies.
#[derive(Debug, Clone)]
pub struct Derivatives {
    /// Keys, checksums and metadata of the original and every derivative.
    pub manifest: Manifest,
    /// JPEG bodies: `bodies[i]` belongs to `manifest.objects[i + 1]` (the original's bytes
    /// are the caller's input and are not copied).
    pub bodies: Vec<Vec<u8>>,
}

impl Derivatives {
    /// Each derivative's manifest entry with its body, in manifest order.
    pub fn derivatives(&self) -> impl Iterator<Item = (&ManifestObject, &[u8])> {
        self.manifest.objects[1..]
            .iter()
            .zip(self.bodies.iter().map(Vec::as_slice))
    }
}

/// Checks, orients, letterboxes, rotates, encodes and hashes one image.
///
/// `bytes` is the whole file. See the crate docs for the steps. Deterministic: the same
/// `bytes` and `options` give byte-identical bodies and manifest on every platform.
///
/// # Errors
/// Any [`PreprocessError`]; limits are checked from the header before pixels are decoded.
pub fn preprocess(bytes: &[u8], options: &Options) -> Result<Derivatives, PreprocessError> {
    let probe = limits::probe(bytes, &options.limits)?;
    let exif = exif::read_exif(bytes);
    let orientation = exif.orientation.unwrap_or_default();

    // The letterbox geometry is the same for stored and upright axes (fit is symmetric), so
    // decode at the smallest size keeping twice the target resolution (Pillow's reducing gap).
    let target = pixels::letterbox_geometry(probe.width, probe.height, LETTERBOX_SIZE);
    let min_size = (2 * target.scaled_width, 2 * target.scaled_height);
    let stored = pixels::decode_rgb8(bytes, &probe, Some(min_size))?;
    let upright = orientation.apply(stored);
    let letterbox = pixels::letterbox(&upright, LETTERBOX_SIZE);

    let original_sha256 = Sha256Digest::of(bytes);
    let (date, date_source) = match exif.acquisition_date() {
        Some(date) => (date, DateSource::Exif),
        None => (options.fallback_date, DateSource::Upload),
    };
    let naming = ObjectNaming {
        project: options.project.clone(),
        image_id: options
            .image_id
            .clone()
            .unwrap_or_else(|| ImageId::from_sha256_hex(&original_sha256.hex)),
        slug: Slug::from_file_name(&options.file_name),
        date,
    };

    let jpeg_object = |kind: ObjectKind, key: String, body: &[u8]| ManifestObject {
        kind,
        key,
        content_type: ImageFormat::Jpeg.content_type().to_owned(),
        size_bytes: body.len() as u64,
        sha256: Sha256Digest::of(body),
        width: LETTERBOX_SIZE,
        height: LETTERBOX_SIZE,
    };
    let letterbox_jpeg = pixels::encode_jpeg(&letterbox, options.quality)?;
    let mut objects = vec![
        ManifestObject {
            kind: ObjectKind::Original,
            key: naming.original_key(probe.format),
            content_type: probe.format.content_type().to_owned(),
            size_bytes: bytes.len() as u64,
            sha256: original_sha256,
            width: probe.width,
            height: probe.height,
        },
        jpeg_object(
            ObjectKind::Processed,
            naming.processed_key(),
            &letterbox_jpeg,
        ),
    ];
    let mut bodies = vec![letterbox_jpeg.clone()];
    for rotation in Rotation::ALL {
        let body = match rotation {
            Rotation::Ccw360 => letterbox_jpeg.clone(),
            turn => pixels::encode_jpeg(&turn.apply(&letterbox), options.quality)?,
        };
        objects.push(jpeg_object(
            rotation.into(),
            naming.augmented_key(rotation),
            &body,
        ));
        bodies.push(body);
    }

    Ok(Derivatives {
        manifest: Manifest {
            metadata_key: naming.metadata_key(),
            project: naming.project,
            image_id: naming.image_id,
            file_name: options.file_name.clone(),
            format: probe.format,
            date,
            date_source,
            exif,
            objects,
        },
        bodies,
    })
}
