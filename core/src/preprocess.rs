//! The whole browser-side job for one file: [`preprocess()`] checks, orients, letterboxes,
//! rotates, encodes and hashes it, and names every object (see the crate docs for the steps).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::exif;
use crate::keys::{ImageId, ObjectNaming, Project, Slug};
use crate::limits::{self, ImageFormat, Limits};
use crate::manifest::{DateSource, Manifest, ManifestObject, ObjectKind, Sha256Digest};
use crate::pixels::{self, LETTERBOX_SIZE, RgbImage, Rotation};

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
    #[error("only JPEG, PNG and TIFF images are accepted (found {detected})")]
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
    /// The stable code for APIs and UIs ([`ErrorCode`]).
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::UnsupportedType { .. } => ErrorCode::UnsupportedType,
            Self::SideTooLong { .. } => ErrorCode::SideTooLong,
            Self::TooManyPixels { .. } => ErrorCode::TooManyPixels,
            Self::EmptyImage { .. } => ErrorCode::EmptyImage,
            Self::Corrupt { .. } => ErrorCode::Corrupt,
            Self::Unsupported { .. } => ErrorCode::UnsupportedFeature,
            Self::Encode(_) => ErrorCode::EncodeFailed,
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn megapixels(width: u32, height: u32) -> String {
    format!("{:.1}", f64::from(width) * f64::from(height) / 1e6)
}

/// How [`preprocess()`] names and limits one file.
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

/// The result of [`preprocess()`]: the manifest and the derivative bodies.
#[derive(Debug, Clone)]
pub struct Derivatives {
    /// Keys, checksums and metadata of the original and every derivative.
    pub manifest: Manifest,
    /// The five derivatives' JPEG bodies, each with its kind, in [`ObjectKind::ALL`] order
    /// (processed, augmented 90, 180, 270, 360). The original's bytes are the caller's input
    /// and are not copied.
    pub bodies: Vec<(ObjectKind, Vec<u8>)>,
}

impl Derivatives {
    /// The body of a derivative; `None` for the original.
    #[must_use]
    pub fn body(&self, kind: ObjectKind) -> Option<&[u8]> {
        self.bodies
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, body)| body.as_slice())
    }

    /// Each derivative's manifest entry with its body.
    pub fn derivatives(&self) -> impl Iterator<Item = (&ManifestObject, &[u8])> {
        self.bodies.iter().map(|(kind, body)| {
            let object = self
                .manifest
                .object(*kind)
                .expect("preprocess lists every body's object");
            (object, body.as_slice())
        })
    }
}

/// A photo upright at full size: checked against `limits` ([`limits::probe`]: type, size,
/// pixels), decoded to 8-bit RGB ([`pixels::decode_rgb8`]) and turned by its EXIF orientation,
/// as [`preprocess`] sees it before the letterbox. For detection on photos.
///
/// # Errors
/// [`PreprocessError`], as [`preprocess`].
pub fn upright(bytes: &[u8], limits: &Limits) -> Result<RgbImage, PreprocessError> {
    let probe = limits::probe(bytes, limits)?;
    let orientation = exif::read_exif(bytes).orientation.unwrap_or_default();
    Ok(orientation.apply(pixels::decode_rgb8(bytes, &probe, None)?))
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
    let mut objects = vec![ManifestObject {
        kind: ObjectKind::Original,
        key: naming.key(ObjectKind::Original, probe.format),
        content_type: probe.format.content_type().to_owned(),
        size_bytes: bytes.len() as u64,
        sha256: original_sha256,
        width: probe.width,
        height: probe.height,
    }];
    let mut bodies = Vec::with_capacity(ObjectKind::ALL.len() - 1);
    for kind in ObjectKind::ALL {
        let body = match kind.rotation() {
            _ if kind == ObjectKind::Original => continue,
            None | Some(Rotation::Ccw360) => letterbox_jpeg.clone(),
            Some(turn) => pixels::encode_jpeg(&turn.apply(&letterbox), options.quality)?,
        };
        objects.push(jpeg_object(kind, naming.key(kind, probe.format), &body));
        bodies.push((kind, body));
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
