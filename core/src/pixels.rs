//! Pixels: decoding to 8-bit RGB, the 256×256 letterbox, quarter-turn rotations, JPEG encoding.
//!
//! Every buffer here is an [`RgbImage`]: row-major, top row first, 3 bytes per pixel (R, G, B),
//! no padding between rows (`stride_bytes = 3 × width`).

use std::io::Cursor;

use fast_image_resize as fir;
/// The pixel buffer every step here takes and returns (the `image` crate's).
pub use image::RgbImage;
use image::{DynamicImage, imageops};

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

/// Decodes to 8-bit RGB in the stored orientation (EXIF orientation not yet applied),
/// compositing any alpha channel on white.
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
    // jpeg-decoder converts YCbCr with SIMD code on some targets and scalar code on others,
    // and the two round differently (1 level in 1.45% of inputs). Take the raw samples and
    // convert them here, the same way everywhere. (The `RGB` transform interleaves the three
    // components untouched; `None` is broken in jpeg-decoder 0.3.2: it writes planes.)
    let raw_ycbcr = jpeg_samples_are_ycbcr(bytes);
    if raw_ycbcr {
        decoder.set_color_transform(jpeg_decoder::ColorTransform::RGB);
    }
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
        PixelFormat::RGB24 if raw_ycbcr => {
            let mut data = data;
            data.chunks_exact_mut(3).for_each(ycbcr_to_rgb);
            data
        }
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

/// Whether a 3-component JPEG frame holds YCbCr samples (else RGB), decided from the header
/// as libjpeg and jpeg-decoder do (entropymine.wordpress.com, "How is a JPEG image's color type
/// determined?", 2018): component ids 1, 2, 3 → YCbCr; `R`, `G`, `B` → RGB; other ids with a
/// JFIF APP0 → YCbCr; else an Adobe APP14 transform flag 0 → RGB, 1 → YCbCr; else YCbCr.
/// Grey, CMYK and YCCK frames, and unparseable headers, return `false` (left to the decoder).
fn jpeg_samples_are_ycbcr(bytes: &[u8]) -> bool {
    let (mut jfif, mut adobe_transform, mut ids) = (false, None, None);
    let mut i = 2;
    while i + 4 <= bytes.len() && ids.is_none() {
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF || marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            i += if marker == 0xFF { 1 } else { 2 };
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        let Some(payload) = bytes.get(i + 4..i + 2 + len) else {
            return false;
        };
        match marker {
            0xE0 => jfif |= payload.starts_with(b"JFIF\0"),
            0xEE if payload.len() >= 12 && payload.starts_with(b"Adobe\0") => {
                adobe_transform = Some(payload[11]);
            }
            // SOF0–SOF15 except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if payload.len() < 6 + 3 * 3 || payload[5] != 3 {
                    return false;
                }
                ids = Some([payload[6], payload[9], payload[12]]);
            }
            0xDA => return false,
            _ => {}
        }
        i += 2 + len;
    }
    match ids {
        Some([1, 2, 3]) => true,
        Some([b'R', b'G', b'B']) => false,
        Some(_) if jfif => true,
        Some(_) => adobe_transform != Some(0),
        None => false,
    }
}

/// YCbCr to RGB in place, JFIF (ITU-T T.871 §7) equations in libjpeg's 16-bit fixed point
/// (jdcolor.c): `R = Y + 1.402 Cr′`, `G = Y − 0.34414 Cb′ − 0.71414 Cr′`, `B = Y + 1.772 Cb′`,
/// with `C′ = C − 128`, each product rounded half up, the sum clamped to 0–255.
fn ycbcr_to_rgb(pixel: &mut [u8]) {
    const ONE_HALF: i32 = 1 << 15;
    let y = i32::from(pixel[0]);
    let cb = i32::from(pixel[1]) - 128;
    let cr = i32::from(pixel[2]) - 128;
    // FIX(x) = round(x × 2^16): 1.402 → 91881, 0.34414 → 22554, 0.71414 → 46802, 1.772 → 116130.
    let r = y + ((91_881 * cr + ONE_HALF) >> 16);
    let g = y + ((-22_554 * cb - 46_802 * cr + ONE_HALF) >> 16);
    let b = y + ((116_130 * cb + ONE_HALF) >> 16);
    // Clamped to 0–255, so the casts are exact.
    pixel.copy_from_slice(&[
        r.clamp(0, 255) as u8,
        g.clamp(0, 255) as u8,
        b.clamp(0, 255) as u8,
    ]);
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
        resize_lanczos3(
            &mut fir::Resizer::new(),
            upright,
            geometry.scaled_width,
            geometry.scaled_height,
        )
    };
    imageops::replace(
        &mut canvas,
        &scaled,
        i64::from(geometry.offset_x),
        i64::from(geometry.offset_y),
    );
    canvas
}

fn resize_lanczos3(
    resizer: &mut fir::Resizer,
    src: &RgbImage,
    width: u32,
    height: u32,
) -> RgbImage {
    let src = fir::images::ImageRef::new(
        src.width(),
        src.height(),
        src.as_raw(),
        fir::PixelType::U8x3,
    )
    .expect("an RgbImage holds width × height × 3 bytes");
    let mut dst = fir::images::Image::new(width, height, fir::PixelType::U8x3);
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3));
    resizer
        .resize(&src, &mut dst, &options)
        .expect("source and destination are both U8x3");
    RgbImage::from_raw(width, height, dst.into_vec())
        .expect("fir allocates width × height × 3 bytes")
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

/// Encodes RGB8 as a baseline (sequential, Huffman) JPEG with 4:2:0 chroma subsampling, the
/// standard Annex K Huffman tables and the Annex K quantisation tables scaled by IJG quality
/// `quality` 1–100, using `jpeg-encoder` without its SIMD feature: integer code only, so the
/// same pixels and quality give the same bytes on every platform.
///
/// # Errors
/// [`PreprocessError::Encode`] if the encoder fails (it does not for images up to 65,535 px a
/// side).
pub fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, PreprocessError> {
    let side =
        |v: u32| u16::try_from(v).map_err(|_| PreprocessError::Encode(format!("{v} px side")));
    let mut out = Vec::with_capacity(32 * 1024);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder
        .encode(
            image.as_raw(),
            side(image.width())?,
            side(image.height())?,
            jpeg_encoder::ColorType::Rgb,
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
        // (width, height) → (scaled_width, scaled_height, offset_x, offset_y)
        for (size, want) in [
            ((6000, 4000), (256, 171, 0, 42)),
            ((4000, 6000), (171, 256, 42, 0)),
            ((10, 10), (256, 256, 0, 0)),
            ((100_000, 1), (256, 1, 0, 127)),
        ] {
            let g = letterbox_geometry(size.0, size.1, 256);
            let got = (g.scaled_width, g.scaled_height, g.offset_x, g.offset_y);
            assert_eq!(got, want, "{size:?}");
        }
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

    /// fast_image_resize picks SIMD code at run time; every path must give the same bytes, or
    /// derivatives would differ between machines.
    #[test]
    #[allow(unsafe_code)]
    fn resize_is_identical_on_every_simd_path() {
        let src = random_image(1013, 677, 7);
        let mut extensions = vec![fir::CpuExtensions::None];
        #[cfg(target_arch = "x86_64")]
        extensions.extend([fir::CpuExtensions::Sse4_1, fir::CpuExtensions::Avx2]);
        let outputs: Vec<RgbImage> = extensions
            .into_iter()
            .filter(fir::CpuExtensions::is_supported)
            .map(|ext| {
                let mut resizer = fir::Resizer::new();
                // SAFETY: only extensions the CPU supports are set.
                unsafe { resizer.set_cpu_extensions(ext) };
                resize_lanczos3(&mut resizer, &src, 256, 171)
            })
            .collect();
        assert!(outputs.len() > 1 || !cfg!(target_arch = "x86_64"));
        for other in &outputs[1..] {
            assert!(other == &outputs[0], "SIMD and scalar resizes differ");
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
    fn ycbcr_conversion_matches_the_jfif_equations() {
        for (ycc, rgb) in [
            ([128, 128, 128], [128, 128, 128]),
            ([255, 128, 128], [255, 255, 255]),
            ([0, 128, 128], [0, 0, 0]),
            ([76, 85, 255], [254, 0, 0]),  // ≈ pure red
            ([29, 255, 107], [0, 0, 255]), // ≈ pure blue
        ] {
            let mut pixel = ycc;
            ycbcr_to_rgb(&mut pixel);
            for c in 0..3 {
                assert!(
                    pixel[c].abs_diff(rgb[c]) <= 1,
                    "{ycc:?} → {pixel:?}, want {rgb:?}"
                );
            }
        }
    }

    #[test]
    fn jpeg_colour_type_follows_the_header() {
        let frame = |ids: [u8; 3]| {
            let mut sof = vec![0xFF, 0xC0, 0, 17, 8, 0, 8, 0, 8, 3];
            for id in ids {
                sof.extend_from_slice(&[id, 0x11, 0]);
            }
            sof
        };
        let file = |segments: &[&[u8]], ids| {
            let mut out = vec![0xFF, 0xD8];
            segments.iter().for_each(|s| out.extend_from_slice(s));
            out.extend(frame(ids));
            out.extend_from_slice(&[0xFF, 0xDA, 0, 2]);
            out
        };
        let jfif: &[u8] = b"\xFF\xE0\0\x10JFIF\0\x01\x02\0\0\x01\0\x01\0\0";
        let adobe = |t: u8| {
            let mut seg = b"\xFF\xEE\0\x0EAdobe\0\x64\0\0\0\0".to_vec();
            seg.push(t);
            seg
        };
        assert!(jpeg_samples_are_ycbcr(&file(&[], [1, 2, 3])));
        assert!(!jpeg_samples_are_ycbcr(&file(&[jfif], *b"RGB")));
        assert!(jpeg_samples_are_ycbcr(&file(&[jfif], [0, 1, 2])));
        assert!(!jpeg_samples_are_ycbcr(&file(&[&adobe(0)], [0, 1, 2])));
        assert!(jpeg_samples_are_ycbcr(&file(&[&adobe(1)], [0, 1, 2])));
        assert!(jpeg_samples_are_ycbcr(&file(&[], [0, 1, 2])));
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
