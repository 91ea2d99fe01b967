//! Type sniffing by magic bytes and the limits checked before any pixel is decoded.
//!
//! Order of checks in [`probe`]: byte size, then magic bytes, then the header's width and
//! height. Nothing here allocates in proportion to the pixel count, so a decompression bomb
//! (a few hundred bytes claiming gigapixels) is refused after reading its header only.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::PreprocessError;

/// An image container Tessera accepts, decided from the file's first bytes only.
///
/// File-name extensions and client-declared content types are never trusted.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// JPEG / JFIF / EXIF (ITU-T T.81), magic `FF D8 FF`.
    Jpeg,
    /// PNG (ISO/IEC 15948), magic `89 50 4E 47 0D 0A 1A 0A`.
    Png,
    /// TIFF 6.0 or BigTIFF, GeoTIFF included: `II*\0`, `MM\0*`, `II+\0`, `MM\0+`.
    Tiff,
}

impl ImageFormat {
    /// The media type stored with the object, e.g. `image/jpeg`.
    #[must_use]
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Tiff => "image/tiff",
        }
    }

    /// The file extension used in object keys (`jpg`, `png`, `tif`).
    #[must_use]
    pub const fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Tiff => "tif",
        }
    }

    /// A human name for messages.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::Tiff => "TIFF",
        }
    }
}

/// Identifies the container from its magic bytes.
///
/// # Errors
/// [`PreprocessError::UnsupportedType`] naming what was detected instead (GIF, WebP, PDF, …,
/// or the first bytes in hex when nothing is recognised).
pub fn sniff(bytes: &[u8]) -> Result<ImageFormat, PreprocessError> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageFormat::Png);
    }
    if starts(b"II*\0") || starts(b"MM\0*") || starts(b"II+\0") || starts(b"MM\0+") {
        return Ok(ImageFormat::Tiff);
    }
    Err(PreprocessError::UnsupportedType {
        detected: describe_unsupported(bytes),
    })
}

/// Names common containers that are not accepted, for the error message.
fn describe_unsupported(bytes: &[u8]) -> String {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    let ftyp_brand = (bytes.len() >= 12 && &bytes[4..8] == b"ftyp").then(|| &bytes[8..12]);
    let known = if bytes.is_empty() {
        "an empty file"
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        "a GIF image"
    } else if starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        "a WebP image"
    } else if starts(b"BM") {
        "a BMP image"
    } else if matches!(ftyp_brand, Some(b"heic" | b"heix" | b"mif1" | b"msf1")) {
        "a HEIF/HEIC image"
    } else if matches!(ftyp_brand, Some(b"avif" | b"avis")) {
        "an AVIF image"
    } else if ftyp_brand.is_some() {
        "an ISO media file (MP4/MOV)"
    } else if starts(b"%PDF") {
        "a PDF document"
    } else if starts(b"PK\x03\x04") {
        "a ZIP archive"
    } else if starts(&[0x1F, 0x8B]) {
        "a gzip archive"
    } else if starts(&[0xFF, 0xD8]) {
        "a damaged JPEG header"
    } else if let Some(text) = as_text(bytes) {
        match text.trim_start().as_bytes().first() {
            Some(b'<') => "an XML, SVG or HTML document",
            Some(b'{' | b'[') => "a JSON document",
            _ => "a text file",
        }
    } else {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return format!("unrecognised data starting with {}", head.join(" "));
    };
    known.to_owned()
}

/// The first 512 bytes as text, when they are UTF-8 without control characters other than
/// tab, CR and LF (a multi-byte character cut at the window's end is allowed).
fn as_text(bytes: &[u8]) -> Option<&str> {
    let head = &bytes[..bytes.len().min(512)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
        Err(_) => return None,
    };
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\r' | '\n'))
        .then_some(text)
}

/// The limits checked before decoding. All are inclusive maxima.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted original, in bytes. Default 10 MiB (10 × 1024 × 1024).
    pub max_bytes: u64,
    /// Largest accepted width or height, in pixels. Default 12,000.
    pub max_side_px: u32,
    /// Largest accepted width × height, in pixels. Default 100,000,000 (100 megapixels).
    pub max_pixels: u64,
}

impl Limits {
    /// 10 MiB, 12,000 px a side, 100 megapixels.
    pub const DEFAULT: Self = Self {
        max_bytes: 10 * 1024 * 1024,
        max_side_px: 12_000,
        max_pixels: 100_000_000,
    };

    /// Checks the byte size.
    ///
    /// # Errors
    /// [`PreprocessError::TooLarge`] with the size and the limit.
    pub fn check_size(&self, size_bytes: u64) -> Result<(), PreprocessError> {
        if size_bytes > self.max_bytes {
            return Err(PreprocessError::TooLarge {
                size_bytes,
                max_bytes: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Checks the dimensions read from a header.
    ///
    /// # Errors
    /// [`PreprocessError::EmptyImage`] for a zero side, [`PreprocessError::SideTooLong`] when
    /// a side exceeds `max_side_px`, [`PreprocessError::TooManyPixels`] when
    /// `width × height > max_pixels`.
    pub fn check_dimensions(&self, width: u32, height: u32) -> Result<(), PreprocessError> {
        if width == 0 || height == 0 {
            return Err(PreprocessError::EmptyImage { width, height });
        }
        if width > self.max_side_px || height > self.max_side_px {
            return Err(PreprocessError::SideTooLong {
                width,
                height,
                max_side_px: self.max_side_px,
            });
        }
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(PreprocessError::TooManyPixels {
                width,
                height,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What [`probe`] learns from the header: container and stored pixel size (before EXIF
/// orientation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The sniffed container.
    pub format: ImageFormat,
    /// Stored width in pixels.
    pub width: u32,
    /// Stored height in pixels.
    pub height: u32,
}

/// Checks size, type and dimensions from the header alone, without decoding pixels.
///
/// JPEG headers are read up to the first scan (SOF gives the size), PNG up to the first IDAT
/// (IHDR), TIFF the first IFD. Cost is independent of the claimed pixel count.
///
/// # Errors
/// [`PreprocessError::TooLarge`], [`PreprocessError::UnsupportedType`],
/// [`PreprocessError::Corrupt`] when the header itself cannot be read, and the dimension
/// errors of [`Limits::check_dimensions`].
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<Probe, PreprocessError> {
    limits.check_size(bytes.len() as u64)?;
    let format = sniff(bytes)?;
    let (width, height) = header_dimensions(bytes, format)?;
    limits.check_dimensions(width, height)?;
    Ok(Probe {
        format,
        width,
        height,
    })
}

fn header_dimensions(bytes: &[u8], format: ImageFormat) -> Result<(u32, u32), PreprocessError> {
    let corrupt = |reason: String| PreprocessError::Corrupt { format, reason };
    match format {
        ImageFormat::Jpeg => {
            let mut decoder = jpeg_decoder::Decoder::new(bytes);
            decoder.read_info().map_err(|e| corrupt(e.to_string()))?;
            let info = decoder
                .info()
                .ok_or_else(|| corrupt("no frame header (SOF) before the first scan".into()))?;
            Ok((u32::from(info.width), u32::from(info.height)))
        }
        // PNG (ISO/IEC 15948 §5.2–5.3, §11.2.2): the signature, then IHDR first: length,
        // "IHDR", width and height as big-endian u32. Read directly: the `png` crate sizes
        // buffers in `usize` while reading the header and refuses huge claims on wasm32 as
        // "memory limit exceeded", which would hide the bomb behind `Corrupt`.
        ImageFormat::Png => match bytes.get(12..24) {
            Some(chunk) if &chunk[..4] == b"IHDR" => Ok((
                u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
                u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
            )),
            _ => Err(corrupt("the first chunk is not IHDR".into())),
        },
        ImageFormat::Tiff => {
            let mut reader =
                image::ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Tiff);
            reader.no_limits();
            reader.into_dimensions().map_err(|e| corrupt(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_accepted_containers_from_magic_bytes() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest").unwrap(), ImageFormat::Jpeg);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest").unwrap(), ImageFormat::Png);
        assert_eq!(sniff(b"II*\0rest").unwrap(), ImageFormat::Tiff);
        assert_eq!(sniff(b"MM\0*rest").unwrap(), ImageFormat::Tiff);
        assert_eq!(sniff(b"II+\0rest").unwrap(), ImageFormat::Tiff);
    }

    #[test]
    fn names_what_it_refuses() {
        let detected = |bytes: &[u8]| match sniff(bytes) {
            Err(PreprocessError::UnsupportedType { detected }) => detected,
            other => panic!("expected UnsupportedType, got {other:?}"),
        };
        assert_eq!(detected(b"GIF89a...."), "a GIF image");
        assert_eq!(detected(b"RIFF\0\0\0\0WEBPVP8 "), "a WebP image");
        assert_eq!(detected(b"\0\0\0\x18ftypheic\0\0"), "a HEIF/HEIC image");
        assert_eq!(detected(b"%PDF-1.7"), "a PDF document");
        assert_eq!(detected(b""), "an empty file");
        assert_eq!(detected(b"image_path,xmin,ymin\n"), "a text file");
        assert_eq!(detected(b"  {\"image\": 1}"), "a JSON document");
        assert_eq!(detected(b"<annotation>"), "an XML, SVG or HTML document");
        assert_eq!(
            detected(b"\x00\x01\x02\x03\x04\x05\x06\x07\x08"),
            "unrecognised data starting with 00 01 02 03 04 05 06 07"
        );
    }

    #[test]
    fn limits_are_inclusive_and_name_the_limit() {
        let limits = Limits::DEFAULT;
        assert!(limits.check_size(10 * 1024 * 1024).is_ok());
        assert!(matches!(
            limits.check_size(10 * 1024 * 1024 + 1),
            Err(PreprocessError::TooLarge {
                max_bytes: 10_485_760,
                ..
            })
        ));
        assert!(limits.check_dimensions(12_000, 8_333).is_ok());
        assert!(matches!(
            limits.check_dimensions(12_001, 10),
            Err(PreprocessError::SideTooLong {
                max_side_px: 12_000,
                ..
            })
        ));
        assert!(matches!(
            limits.check_dimensions(10_001, 10_000),
            Err(PreprocessError::TooManyPixels {
                max_pixels: 100_000_000,
                ..
            })
        ));
        assert!(matches!(
            limits.check_dimensions(0, 10),
            Err(PreprocessError::EmptyImage { .. })
        ));
    }
}
