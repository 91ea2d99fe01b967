//! Pixels: decoding to 8-bit RGB, the 256×256 letterbox, quarter-turn rotations, JPEG encoding.
//!
//! Every buffer here is an [`RgbImage`]: row-major, top row first, 3 bytes per pixel (R, G, B),
//! no padding between rows (`stride_bytes = 3 × width`).

use std::io::Cursor;

use fast_image_resize as fir;
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageEncoder, RgbImage, imageops};

use crate::PreprocessError;
use crate::limits::{ImageFormat, Probe};

/// Side of the square letterbox, in pixels.
pub const LETTERBOX_SIZE: u32 = 256;

/// Padding colour of the letterbox bars: white, `#FFFFFF`.
pub const LETTERBOX_FILL: [u8; 3] = [0xFF, 0xFF, 0xFF];

/// Where a `width × height` image lands inside a `size × size` letterbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LetterboxGeometry {
    /// Width of the scaled image, in pixels, `1..=size`.
    pub scaled_width: u32,
    /// Height of the scaled image, in pixels, `1..=size`.
    pub scaled_height: u32,
    /// Columns of white to the left of the image; the right bar has
    /// `size − scaled_width − offset_x` (equal, or one more when the difference is odd).
    pub offset_x: u32,
    /// Rows of white above the image; the bottom bar is equal or one row taller.
    pub offset_y: u32,
}

/// Fits `width × height` into a `size × size` square keeping the aspect ratio.
///
/// The longer side becomes `size`; the shorter one is `round(short × size / long)` (at least
/// 1), so the aspect ratio is kept within half a pixel. Images smaller than `size` are scaled
/// up. The scaled image is centred; an odd leftover pixel goes to the right or bottom bar.
/// Integer arithmetic only, so every platform gets the same answer.
///
/// # Panics
/// When `width`, `height` or `size` is zero.
#[must_use]
pub fn letterbox_geometry(width: u32, height: u32, size: u32) -> LetterboxGeometry {
    assert!(
        width > 0 && height > 0 && size > 0,
        "empty image or letterbox"
    );
    // round(short × size / long) = floor((2 × short × size + long) / (2 × long))
    let fit = |short: u32, long: u32| {
        let scaled =
            (2 * u64::from(short) * u64::from(size) + u64::from(long)) / (2 * u64::from(long));
        u32::try_from(scaled).unwrap_or(size).clamp(1, size)
    };
    let (scaled_width, scaled_height) = if width >= height {
        (size, fit(height, width))
    } else {
        (fit(width, height), size)
    };
    LetterboxGeometry {
        scaled_width,
        scaled_height,
        offset_x: (size - scaled_width) / 2,
        offset_y: (size - scaled_height) / 2,
    }
}

/// Decodes to upright-agnostic 8-bit RGB in the stored orientation, compositing any alpha
/// channel on white.
///
/// `min_size`: when set, a JPEG is decoded at the smallest DCT scale (1/1, 1/2, 1/4 or 1/8,
/// ITU-T T.81 scaled IDCT, as libjpeg's `scale_denom` and Pillow's `draft`) whose width and
/// height are both at least `min_size`; other formats always decode at full size. Grey,
/// palette, 16-bit and CMYK sources are converted to RGB (16-bit by `v / 257` rounded; CMYK by
/// `R = (255 − C)(255 − K) / 255`, Adobe-inverted data as written by Photoshop). Alpha is
/// composited as `c′ = (c·a + 255·(255 − a) + 127) / 255`.
///
/// # Errors
/// [`PreprocessError::Corrupt`] for truncated or damaged data (a JPEG that ends before its
/// last scan is an error, never a half-grey image) and [`PreprocessError::Unsupported`] for
/// layouts the codecs do not handle (e.g. 12-bit JPEG, exotic TIFF sample formats).
pub fn decode_rgb8(
    bytes: &[u8],
    probe: &Probe,
    min_size: Option<(u32, u32)>,
) -> Result<RgbImage, PreprocessError> {
    match probe.format {
        ImageFormat::Jpeg => decode_jpeg(bytes, probe, min_size),
        ImageFormat::Png | ImageFormat::Tiff => decode_with_image(bytes, probe),
    }
}

fn decode_jpeg(
    bytes: &[u8],
    probe: &Probe,
    min_size: Option<(u32, u32)>,
) -> Result<RgbImage, PreprocessError> {
    use jpeg_decoder::{Decoder, Error, PixelFormat};
    let format = ImageFormat::Jpeg;
    let corrupt = |reason: String| PreprocessError::Corrupt { format, reason };
    let mut decoder = Decoder::new(bytes);
    decoder.read_info().map_err(|e| corrupt(e.to_string()))?;
    if let Some((min_width, min_height)) = min_size {
        // Output size at scale s/8 is ceil(len × s / 8) (jpeg-decoder, as libjpeg).
        let scaled = |len: u32, s: u32| (len * s).div_ceil(8);
        let s = [1, 2, 4, 8]
            .into_iter()
            .find(|&s| scaled(probe.width, s) >= min_width && scaled(probe.height, s) >= min_height)
            .unwrap_or(8);
        let (w, h) = (scaled(probe.width, s), scaled(probe.height, s));
        // `scale` picks the smallest scale reaching either requested side; ask for exactly ours.
        decoder
            .scale(
                u16::try_from(w).unwrap_or(u16::MAX),
                u16::try_from(h).unwrap_or(u16::MAX),
            )
            .map_err(|e| corrupt(e.to_string()))?;
    }
    let data = decoder.decode().map_err(|e| match e {
        Error::Unsupported(feature) => PreprocessError::Unsupported {
            format,
            feature: format!("{feature:?}"),
        },
        Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            corrupt("the file ends before the image data does (truncated)".into())
        }
        other => corrupt(other.to_string()),
    })?;
    let info = decoder
        .info()
        .ok_or_else(|| corrupt("no frame header".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let pixels = width as usize * height as usize;
    if data.len() != pixels * info.pixel_format.pixel_bytes() {
        return Err(corrupt("decoded data does not match the frame size".into()));
    }
    let rgb: Vec<u8> = match info.pixel_format {
        PixelFormat::RGB24 => data,
        PixelFormat::L8 => data.iter().flat_map(|&l| [l, l, l]).collect(),
        // Big-endian samples (jpeg-decoder); keep the rounded high byte.
        PixelFormat::L16 => data
            .chunks_exact(2)
            .flat_map(|s| {
                let l = u16_to_u8(u16::from_be_bytes([s[0], s[1]]));
                [l, l, l]
            })
            .collect(),
        PixelFormat::CMYK32 => data
            .chunks_exact(4)
            .flat_map(|p| {
                let k = 255 - u32::from(p[3]);
                let ink = |c: u8| ((255 - u32::from(c)) * k + 127) / 255;
                // ink() ≤ 255 by construction.
                [ink(p[0]) as u8, ink(p[1]) as u8, ink(p[2]) as u8]
            })
            .collect(),
    };
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| corrupt("decoded buffer size".into()))
}

/// `round(v × 255 / 65535)`, the conversion `image` uses for 16-bit to 8-bit.
fn u16_to_u8(v: u16) -> u8 {
    // ≤ 255 by construction.
    ((u32::from(v) + 128) / 257) as u8
}

fn decode_with_image(bytes: &[u8], probe: &Probe) -> Result<RgbImage, PreprocessError> {
    let format = probe.format;
    let image_format = match format {
        ImageFormat::Png => image::ImageFormat::Png,
        _ => image::ImageFormat::Tiff,
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    // The probe checked the header against Tessera's limits; bound the codec's allocations to
    // what that size can need (RGBA, 32-bit float samples) so a lying stream cannot ask more.
    let mut limits = image::Limits::no_limits();
    limits.max_image_width = Some(probe.width);
    limits.max_image_height = Some(probe.height);
    limits.max_alloc = Some(u64::from(probe.width) * u64::from(probe.height) * 16 + (1 << 20));
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| match e {
        image::ImageError::Unsupported(u) => PreprocessError::Unsupported {
            format,
            feature: u.to_string(),
        },
        other => PreprocessError::Corrupt {
            format,
            reason: other.to_string(),
        },
    })?;
    Ok(flatten_on_white(decoded))
}

/// Converts any decoded image to RGB8, compositing alpha on white.
fn flatten_on_white(decoded: DynamicImage) -> RgbImage {
    if !decoded.color().has_alpha() {
        return decoded.into_rgb8();
    }
    let rgba = decoded.into_rgba8();
    let (width, height) = rgba.dimensions();
    let rgb = rgba
        .into_raw()
        .chunks_exact(4)
        .flat_map(|p| {
            let a = u32::from(p[3]);
            // ≤ 255 by construction.
            let over_white = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
            [over_white(p[0]), over_white(p[1]), over_white(p[2])]
        })
        .collect();
    RgbImage::from_raw(width, height, rgb).expect("3 bytes per pixel of a valid RGBA image")
}

/// Scales an upright image into a `size × size` white square, keeping its aspect ratio.
///
/// Geometry from [`letterbox_geometry`]; resampling by `fast_image_resize` with a Lanczos3
/// kernel (a = 3, support widened by the scale factor when shrinking), in the sRGB-encoded
/// values (no linearisation, as Pillow). Output is `size × size` RGB8.
#[must_use]
pub fn letterbox(upright: &RgbImage, size: u32) -> RgbImage {
    let (width, height) = upright.dimensions();
    let geometry = letterbox_geometry(width, height, size);
    let mut canvas = RgbImage::from_pixel(size, size, image::Rgb(LETTERBOX_FILL));
    let scaled = if (geometry.scaled_width, geometry.scaled_height) == (width, height) {
        upright.clone()
    } else {
        let src = fir::images::ImageRef::new(width, height, upright.as_raw(), fir::PixelType::U8x3)
            .expect("an RgbImage holds width × height × 3 bytes");
        let mut dst = fir::images::Image::new(
            geometry.scaled_width,
            geometry.scaled_height,
            fir::PixelType::U8x3,
        );
        let options = fir::ResizeOptions::new()
            .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3));
        fir::Resizer::new()
            .resize(&src, &mut dst, &options)
            .expect("source and destination are both U8x3");
        RgbImage::from_raw(
            geometry.scaled_width,
            geometry.scaled_height,
            dst.into_vec(),
        )
        .expect("fir allocates width × height × 3 bytes")
    };
    imageops::replace(
        &mut canvas,
        &scaled,
        i64::from(geometry.offset_x),
        i64::from(geometry.offset_y),
    );
    canvas
}

/// A quarter-turn derivative of the letterbox. Angles are counter-clockwise (the mathematical
/// positive sense, as Pillow's `Image.rotate(angle)` of the original design): `Ccw90` turns
/// the top edge to the left. `Ccw360` is the unrotated letterbox ("360-degree").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rotation {
    /// 90° counter-clockwise.
    Ccw90,
    /// 180°.
    Ccw180,
    /// 270° counter-clockwise (90° clockwise).
    Ccw270,
    /// 360°: the letterbox as it is.
    Ccw360,
}

impl Rotation {
    /// The four augmentation angles, in key order.
    pub const ALL: [Self; 4] = [Self::Ccw90, Self::Ccw180, Self::Ccw270, Self::Ccw360];

    /// The angle in degrees: 90, 180, 270 or 360.
    #[must_use]
    pub const fn degrees(self) -> u16 {
        match self {
            Self::Ccw90 => 90,
            Self::Ccw180 => 180,
            Self::Ccw270 => 270,
            Self::Ccw360 => 360,
        }
    }

    /// Rotates the image by this angle, counter-clockwise. A `w × h` image becomes `h × w`
    /// for 90 and 270.
    #[must_use]
    pub fn apply(self, image: &RgbImage) -> RgbImage {
        match self {
            Self::Ccw90 => imageops::rotate270(image),
            Self::Ccw180 => imageops::rotate180(image),
            Self::Ccw270 => imageops::rotate90(image),
            Self::Ccw360 => image.clone(),
        }
    }
}

/// Encodes RGB8 as a baseline (sequential, Huffman) JPEG with 4:2:0 chroma subsampling at
/// `quality` 1–100 (IJG quality scaling of the Annex K tables). Deterministic: the same pixels
/// and quality give the same bytes on every platform.
///
/// # Errors
/// [`PreprocessError::Encode`] if the encoder fails (it does not for valid RGB8 input).
pub fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, PreprocessError> {
    let mut out = Vec::with_capacity(32 * 1024);
    JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| PreprocessError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn geometry_of_common_shapes() {
        let g = letterbox_geometry(6000, 4000, 256);
        assert_eq!(
            (g.scaled_width, g.scaled_height, g.offset_x, g.offset_y),
            (256, 171, 0, 42)
        );
        let g = letterbox_geometry(4000, 6000, 256);
        assert_eq!(
            (g.scaled_width, g.scaled_height, g.offset_x, g.offset_y),
            (171, 256, 42, 0)
        );
        let g = letterbox_geometry(10, 10, 256);
        assert_eq!(
            (g.scaled_width, g.scaled_height, g.offset_x, g.offset_y),
            (256, 256, 0, 0)
        );
        let g = letterbox_geometry(100_000, 1, 256);
        assert_eq!(
            (g.scaled_width, g.scaled_height, g.offset_x, g.offset_y),
            (256, 1, 0, 127)
        );
    }

    fn random_image(width: u32, height: u32, seed: u64) -> RgbImage {
        // A deterministic pattern that never contains pure white, so bars are unambiguous.
        RgbImage::from_fn(width, height, |x, y| {
            let v = (u64::from(x) * 31 + u64::from(y) * 17 + seed) % 200;
            image::Rgb([v as u8, (v * 3 % 200) as u8, (v * 7 % 200) as u8])
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn letterbox_is_always_256_with_white_bars_where_the_geometry_says(
            width in 1u32..1200, height in 1u32..1200, seed in 0u64..1000,
        ) {
            let g = letterbox_geometry(width, height, LETTERBOX_SIZE);
            // The long side fills the square; the short one is within half a pixel of exact.
            let (long, short, scaled_short) = if width >= height {
                (width, height, g.scaled_height)
            } else {
                (height, width, g.scaled_width)
            };
            let exact = f64::from(short) * f64::from(LETTERBOX_SIZE) / f64::from(long);
            prop_assert!((f64::from(scaled_short) - exact).abs() <= 0.5 || scaled_short == 1);
            prop_assert!(g.scaled_width == LETTERBOX_SIZE || g.scaled_height == LETTERBOX_SIZE);

            let boxed = letterbox(&random_image(width, height, seed), LETTERBOX_SIZE);
            prop_assert_eq!(boxed.dimensions(), (LETTERBOX_SIZE, LETTERBOX_SIZE));
            for (x, y, p) in boxed.enumerate_pixels() {
                let inside = (g.offset_x..g.offset_x + g.scaled_width).contains(&x)
                    && (g.offset_y..g.offset_y + g.scaled_height).contains(&y);
                if !inside {
                    prop_assert_eq!(p.0, LETTERBOX_FILL, "bar pixel at ({}, {})", x, y);
                }
            }
            // Every row and column of the image area holds picture, not a bar: Lanczos
            // overshoot aside, the pattern's maximum is 199, far from white.
            let centre_row = g.offset_y + g.scaled_height / 2;
            for x in g.offset_x..g.offset_x + g.scaled_width {
                prop_assert_ne!(boxed.get_pixel(x, centre_row).0, LETTERBOX_FILL);
            }
        }

        #[test]
        fn four_quarter_turns_are_the_identity(width in 1u32..64, height in 1u32..64, seed in 0u64..1000) {
            let original = random_image(width, height, seed);
            let mut turned = original.clone();
            for _ in 0..4 {
                turned = Rotation::Ccw90.apply(&turned);
            }
            prop_assert_eq!(&turned, &original);
            prop_assert_eq!(Rotation::Ccw90.apply(&Rotation::Ccw270.apply(&original)), original.clone());
            prop_assert_eq!(Rotation::Ccw180.apply(&Rotation::Ccw180.apply(&original)), original);
        }
    }

    #[test]
    fn ccw90_moves_the_top_edge_to_the_left() {
        // 2×1: red on the left, blue on the right. 90° CCW: blue on top, red below.
        let img = RgbImage::from_raw(2, 1, vec![255, 0, 0, 0, 0, 255]).unwrap();
        let turned = Rotation::Ccw90.apply(&img);
        assert_eq!(turned.dimensions(), (1, 2));
        assert_eq!(turned.get_pixel(0, 0).0, [0, 0, 255]);
        assert_eq!(turned.get_pixel(0, 1).0, [255, 0, 0]);
    }

    #[test]
    fn alpha_is_composited_on_white() {
        let rgba =
            image::RgbaImage::from_raw(3, 1, vec![0, 0, 0, 0, 0, 0, 0, 255, 100, 50, 0, 128])
                .unwrap();
        let flat = flatten_on_white(DynamicImage::ImageRgba8(rgba));
        assert_eq!(flat.as_raw(), &[255, 255, 255, 0, 0, 0, 177, 152, 127]);
    }
}
