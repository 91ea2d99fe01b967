//! The manifest: everything known about one image and its six stored objects, serialised as
//! the metadata sidecar (`metadata/{project}/{image_id}.json`) and the metadata record.

use base64::Engine as _;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exif::ExifMetadata;
use crate::keys::{ImageId, Project};
use crate::limits::ImageFormat;
use crate::pixels::Rotation;

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
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        Self::from_bytes(digest)
    }

    /// Hashes everything `reader` yields, 64 KiB at a time (files too large to hold).
    ///
    /// # Errors
    /// The reader's.
    pub fn of_reader(mut reader: impl std::io::Read) -> std::io::Result<Self> {
        let mut hasher = Sha256::new();
        let mut chunk = vec![0; 64 * 1024];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => return Ok(Self::from_bytes(hasher.finalize().into())),
                Ok(n) => hasher.update(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The digest whose 64 lower-case hex digits are `hex`; `None` for anything else.
    #[must_use]
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let bytes: [u8; 32] = hex::decode(hex).ok()?.try_into().ok()?;
        Some(Self::from_bytes(bytes))
    }

    /// The digest whose raw 32 bytes are `digest` (from a streaming SHA-256).
    #[must_use]
    pub fn from_bytes(digest: [u8; 32]) -> Self {
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

impl ObjectKind {
    /// Every kind, in [`Manifest::objects`] order.
    pub const ALL: [Self; 6] = [
        Self::Original,
        Self::Processed,
        Self::Augmented90,
        Self::Augmented180,
        Self::Augmented270,
        Self::Augmented360,
    ];

    /// The turn of the letterbox an augmented kind holds; `None` for the original and
    /// `processed`.
    #[must_use]
    pub const fn rotation(self) -> Option<Rotation> {
        match self {
            Self::Original | Self::Processed => None,
            Self::Augmented90 => Some(Rotation::Ccw90),
            Self::Augmented180 => Some(Rotation::Ccw180),
            Self::Augmented270 => Some(Rotation::Ccw270),
            Self::Augmented360 => Some(Rotation::Ccw360),
        }
    }
}

impl ObjectKind {
    /// The kind as the API spells it (`original`, `processed`, `augmented-90`, …).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Original => "original",
            Self::Processed => "processed",
            Self::Augmented90 => "augmented-90",
            Self::Augmented180 => "augmented-180",
            Self::Augmented270 => "augmented-270",
            Self::Augmented360 => "augmented-360",
        }
    }
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
    /// Its key in storage, under Tessera's object-key layout.
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

impl Manifest {
    /// The object of `kind`, if the manifest has it (every manifest that [`crate::preprocess()`]
    /// or [`crate::upload::plan_upload`] makes has all six).
    #[must_use]
    pub fn object(&self, kind: ObjectKind) -> Option<&ManifestObject> {
        self.objects.iter().find(|object| object.kind == kind)
    }

    /// The original: the file as uploaded.
    ///
    /// # Panics
    /// On a manifest without an original, which neither [`crate::preprocess()`] nor
    /// [`crate::upload::plan_upload`] makes.
    #[must_use]
    pub fn original(&self) -> &ManifestObject {
        self.object(ObjectKind::Original)
            .expect("every manifest has its original")
    }
}

#[cfg(test)]
mod tests {
    use super::Sha256Digest;

    #[test]
    fn streaming_hash_equals_the_one_shot_hash() {
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let streamed = Sha256Digest::of_reader(std::io::Cursor::new(&bytes)).unwrap();
        assert_eq!(streamed, Sha256Digest::of(&bytes));
        // FIPS 180-4 example "abc".
        assert_eq!(
            Sha256Digest::of_reader(&b"abc"[..]).unwrap().hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
