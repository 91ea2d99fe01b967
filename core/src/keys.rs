//! The object-key layout and naming convention (ARCHITECTURE.md, "Object-key layout").
//!
//! ```text
//! original-uploads/{project}/{image_id}/{project}_{slug}_{YYYYMMDD}.{ext}
//! processed/{project}/{image_id}/{project}_{slug}_{YYYYMMDD}_256x256.jpg
//! augmented-images/{angle}-degree/{project}/{image_id}/{project}_{slug}_{YYYYMMDD}_{angle}.jpg
//! metadata/{project}/{image_id}.json
//! results/{job_id}/…
//! ```
//!
//! Every component is validated or derived here, so a key can never contain `..`, a leading
//! `/`, or another image's folder: keys are built only from [`Project`], [`ImageId`] and
//! [`Slug`], whose character sets exclude `/` and `.` (the extension aside).

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::limits::ImageFormat;
use crate::manifest::ObjectKind;
use crate::pixels::{LETTERBOX_SIZE, Rotation};

/// A rejected key component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A project name outside `[a-z0-9-]`, `1..=63` characters, starting alphanumeric.
    #[error(
        "project name {value:?} is invalid: use 1 to {max_len} characters a-z, 0-9 and '-', starting with a letter or digit"
    )]
    InvalidProject {
        /// The rejected value.
        value: String,
        /// The longest accepted name.
        max_len: usize,
    },
    /// An image id outside `[a-z0-9-]`, `1..=64` characters.
    #[error("image id {value:?} is invalid: use 1 to {max_len} characters a-z, 0-9 and '-'")]
    InvalidImageId {
        /// The rejected value.
        value: String,
        /// The longest accepted id.
        max_len: usize,
    },
    /// A job id outside `[a-z0-9-]`, `1..=64` characters.
    #[error("job id {value:?} is invalid: use 1 to {max_len} characters a-z, 0-9 and '-'")]
    InvalidJobId {
        /// The rejected value.
        value: String,
        /// The longest accepted id.
        max_len: usize,
    },
}

fn is_key_safe(value: &str, max_len: usize) -> bool {
    (1..=max_len).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
}

/// Defines a validated key component: a `String` newtype accepted by [`is_key_safe`] up to
/// `MAX_LEN` bytes, refused with the named [`KeyError`] variant, serialised as its string and
/// displayed as it is.
macro_rules! key_component {
    ($(#[$doc:meta])* $name:ident, max_len: $max_len:expr, error: $variant:ident, what: $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("The longest accepted ", $what, ", in bytes.")]
            pub const MAX_LEN: usize = $max_len;

            #[doc = concat!("Every accepted ", $what, " as a regular expression (for the OpenAPI document).")]
            #[must_use]
            pub fn pattern() -> String {
                format!("^[a-z0-9][a-z0-9-]{{0,{}}}$", Self::MAX_LEN - 1)
            }

            #[doc = concat!("Validates a ", $what, ".")]
            ///
            /// # Errors
            #[doc = concat!("[`KeyError::", stringify!($variant), "`] naming the value and the rule.")]
            pub fn new(value: impl Into<String>) -> Result<Self, KeyError> {
                let value = value.into();
                if is_key_safe(&value, Self::MAX_LEN) {
                    Ok(Self(value))
                } else {
                    Err(KeyError::$variant {
                        value,
                        max_len: Self::MAX_LEN,
                    })
                }
            }

            #[doc = concat!("The ", $what, ".")]
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = KeyError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

key_component!(
    /// A project name: `[a-z0-9][a-z0-9-]{0,62}`. No `_`, which separates the parts of a file
    /// name.
    Project, max_len: 63, error: InvalidProject, what: "project name"
);

key_component!(
    /// An image's id: `[a-z0-9][a-z0-9-]{0,63}`, e.g. a UUID or a hex digest prefix. Decided by
    /// the service (or the CLI), never by an uploading client.
    ImageId, max_len: 64, error: InvalidImageId, what: "image id"
);

impl ImageId {
    /// A content-derived id: the first 16 bytes of the original's SHA-256, as 32 hex digits.
    /// The same file gets the same id, so re-running an import overwrites rather than doubles.
    #[must_use]
    pub fn from_sha256_hex(sha256_hex: &str) -> Self {
        Self(
            sha256_hex
                .chars()
                .take(32)
                .collect::<String>()
                .to_ascii_lowercase(),
        )
    }
}

key_component!(
    /// A batch job's id: `[a-z0-9][a-z0-9-]{0,63}`, a UUID in practice. Its results live under
    /// `results/{job_id}/`.
    JobId, max_len: 64, error: InvalidJobId, what: "job id"
);

/// The file-name part of a key, derived from the uploaded file's name: its stem lower-cased,
/// every run of characters outside `[a-z0-9]` replaced by one `-`, trimmed of `-`, at most
/// 48 bytes; `image` when nothing is left. `IMG 0042 (copy).JPG` → `img-0042-copy`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    /// The longest slug, in bytes.
    pub const MAX_LEN: usize = 48;

    /// Derives a slug from a file name or path (directories and the extension are dropped).
    #[must_use]
    pub fn from_file_name(file_name: &str) -> Self {
        let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
        let stem = match base.rfind('.') {
            Some(dot) if dot > 0 => &base[..dot],
            _ => base,
        };
        let mut slug = String::with_capacity(stem.len());
        for c in stem.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                slug.push(c);
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        slug.truncate(Self::MAX_LEN);
        let slug = slug.trim_end_matches('-');
        Self(if slug.is_empty() {
            "image".to_owned()
        } else {
            slug.to_owned()
        })
    }

    /// The slug.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything a key is built from: `{project}_{slug}_{YYYYMMDD}` under the image's folders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectNaming {
    /// The project.
    pub project: Project,
    /// The image's id.
    pub image_id: ImageId,
    /// From the uploaded file's name.
    pub slug: Slug,
    /// The acquisition date (EXIF `DateTimeOriginal`), else the upload date.
    pub date: NaiveDate,
}

impl ObjectNaming {
    fn base_name(&self) -> String {
        format!(
            "{}_{}_{}",
            self.project,
            self.slug.as_str(),
            self.date.format("%Y%m%d")
        )
    }

    /// The key of an object of `kind`: the one place that maps kinds to the layout. `format`
    /// is the original's sniffed type; only the original's extension depends on it.
    #[must_use]
    pub fn key(&self, kind: ObjectKind, format: ImageFormat) -> String {
        match (kind, kind.rotation()) {
            (ObjectKind::Original, _) => self.original_key(format),
            (_, Some(rotation)) => self.augmented_key(rotation),
            (_, None) => self.processed_key(),
        }
    }

    /// `original-uploads/{project}/{image_id}/{base}.{ext}`, the extension from the sniffed type.
    #[must_use]
    pub fn original_key(&self, format: ImageFormat) -> String {
        format!(
            "original-uploads/{}/{}/{}.{}",
            self.project,
            self.image_id,
            self.base_name(),
            format.extension()
        )
    }

    /// `processed/{project}/{image_id}/{base}_256x256.jpg`: the unrotated letterbox.
    #[must_use]
    pub fn processed_key(&self) -> String {
        format!(
            "processed/{}/{}/{}_{LETTERBOX_SIZE}x{LETTERBOX_SIZE}.jpg",
            self.project,
            self.image_id,
            self.base_name()
        )
    }

    /// `augmented-images/{angle}-degree/{project}/{image_id}/{base}_{angle}.jpg`.
    #[must_use]
    pub fn augmented_key(&self, rotation: Rotation) -> String {
        let angle = rotation.degrees();
        format!(
            "augmented-images/{angle}-degree/{}/{}/{}_{angle}.jpg",
            self.project,
            self.image_id,
            self.base_name()
        )
    }

    /// `metadata/{project}/{image_id}.json`: the sidecar, the source of truth for the record.
    #[must_use]
    pub fn metadata_key(&self) -> String {
        format!("metadata/{}/{}.json", self.project, self.image_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_key_safe() {
        let slug = |name| Slug::from_file_name(name).as_str().to_owned();
        assert_eq!(slug("IMG 0042 (copy).JPG"), "img-0042-copy");
        assert_eq!(slug("../../etc/passwd"), "passwd");
        assert_eq!(slug("C:\\photos\\Été_à_Paris.jpeg"), "t-paris");
        assert_eq!(slug(".hidden"), "hidden");
        assert_eq!(slug("..."), "image");
        assert_eq!(slug(""), "image");
        assert_eq!(slug(&"a".repeat(100)).len(), Slug::MAX_LEN);
    }

    #[test]
    fn project_and_id_reject_path_tricks() {
        for bad in ["", "..", "a/b", "A", "a_b", "-a", "a.b", &"a".repeat(64)] {
            assert!(Project::new(bad).is_err(), "{bad:?}");
        }
        assert!(Project::new("palm-survey-2026").is_ok());
        let pattern = regex::Regex::new(&Project::pattern()).unwrap();
        for name in [
            "",
            "..",
            "a/b",
            "A",
            "a_b",
            "-a",
            "a.b",
            "a-",
            "0",
            "palm-survey-2026",
            &"a".repeat(63),
            &"a".repeat(64),
            "a\n",
        ] {
            assert_eq!(
                pattern.is_match(name),
                Project::new(name).is_ok(),
                "{name:?}"
            );
        }
        assert!(ImageId::new("0190b6c4-1a2b-7c3d-8e4f-001122334455").is_ok());
        assert!(ImageId::new("../x").is_err());
        assert!(JobId::new("0190b6c4-1a2b-7c3d-8e4f-001122334455").is_ok());
        assert!(JobId::new("../x").is_err() && JobId::new("").is_err());
        assert_eq!(
            ImageId::from_sha256_hex(&"AB".repeat(32)).as_str(),
            "abababababababababababababababab"
        );
    }

    #[test]
    fn keys_follow_the_layout() {
        let naming = ObjectNaming {
            project: Project::new("palms").unwrap(),
            image_id: ImageId::new("abc123").unwrap(),
            slug: Slug::from_file_name("DSC00042.JPG"),
            date: NaiveDate::from_ymd_opt(2014, 4, 18).unwrap(),
        };
        assert_eq!(
            naming.original_key(ImageFormat::Jpeg),
            "original-uploads/palms/abc123/palms_dsc00042_20140418.jpg"
        );
        assert_eq!(
            naming.processed_key(),
            "processed/palms/abc123/palms_dsc00042_20140418_256x256.jpg"
        );
        assert_eq!(
            naming.augmented_key(Rotation::Ccw90),
            "augmented-images/90-degree/palms/abc123/palms_dsc00042_20140418_90.jpg"
        );
        assert_eq!(
            naming.augmented_key(Rotation::Ccw360),
            "augmented-images/360-degree/palms/abc123/palms_dsc00042_20140418_360.jpg"
        );
        assert_eq!(naming.metadata_key(), "metadata/palms/abc123.json");
        for kind in ObjectKind::ALL {
            let key = naming.key(kind, ImageFormat::Png);
            match kind.rotation() {
                Some(rotation) => assert_eq!(key, naming.augmented_key(rotation)),
                None if kind == ObjectKind::Original => {
                    assert_eq!(key, naming.original_key(ImageFormat::Png));
                }
                None => assert_eq!(key, naming.processed_key()),
            }
        }
    }
}
