//! tessera-core on real files: the packages of ../shared/DATA.md, fetched by
//! `tests/fetch-fixtures.sh`, plus the small committed fixtures in `tests/fixtures/`.

mod support;

use std::path::PathBuf;

use chrono::NaiveDate;
use image::RgbImage;
use serde_json::Value;
use support::{fetched, jpeg_bomb, png_bomb};
use tessera_core::error::ErrorCode;
use tessera_core::exif::{Orientation, read_exif};
use tessera_core::keys::Project;
use tessera_core::limits::{self, ImageFormat, Limits};
use tessera_core::pixels::{self, LETTERBOX_FILL, LETTERBOX_SIZE};
use tessera_core::{DateSource, ObjectKind, Options, PreprocessError, preprocess};

/// A committed fixture from `tests/fixtures/`.
fn committed(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn options(file_name: &str) -> Options {
    Options::new(
        Project::new("test").unwrap(),
        file_name,
        NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(),
    )
}

/// Full-resolution upright RGB, as the pipeline sees it before the letterbox.
fn decode_upright(bytes: &[u8]) -> RgbImage {
    let probe = limits::probe(bytes, &Limits::DEFAULT).unwrap();
    let stored = pixels::decode_rgb8(bytes, &probe, None).unwrap();
    read_exif(bytes)
        .orientation
        .unwrap_or_default()
        .apply(stored)
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

fn png_rgb(bytes: &[u8]) -> RgbImage {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .unwrap()
        .into_rgb8()
}

// ---------------------------------------------------------------- EXIF

#[test]
fn exif_equals_the_exif_packages_own_expected_values() {
    let photos = [
        "down-mirrored",
        "evil1",
        "lens_info",
        "right",
        "short-ascii-II",
        "short-ascii-MM",
        "sony-alpha-6000",
        "test1",
        "test2",
        "test3",
    ];
    let mut compared_dates = 0;
    let mut compared_gps = 0;
    for name in photos {
        let ours = read_exif(&fetched(&format!("exif-0.6.0/{name}.jpg")));
        let expected: Value =
            serde_json::from_slice(&fetched(&format!("exif-0.6.0/{name}.jpg.json"))).unwrap();
        let text = |v: &Value| {
            v.as_str()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };

        let date = expected["exif"]["DateTimeOriginal"].as_str();
        assert_eq!(
            ours.taken_at
                .map(|t| t.format("%Y:%m:%d %H:%M:%S").to_string())
                .as_deref(),
            date,
            "{name}: DateTimeOriginal"
        );
        compared_dates += usize::from(date.is_some());
        assert_eq!(
            ours.camera_make,
            text(&expected["image"]["Make"]),
            "{name}: Make"
        );
        assert_eq!(
            ours.camera_model,
            text(&expected["image"]["Model"]),
            "{name}: Model"
        );
        assert_eq!(
            ours.orientation.map(u16::from),
            expected["image"]["Orientation"].as_u64().map(|o| o as u16),
            "{name}: Orientation"
        );

        let gps = &expected["gps"];
        match (ours.gps, gps["GPSLatitude"].as_array()) {
            (None, None) => {}
            (Some(pos), Some(lat)) => {
                let dms = |v: &Value| {
                    let v: Vec<f64> = v
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect();
                    v[0] + v[1] / 60.0 + v[2] / 3600.0
                };
                let sign = |r: &Value, neg: &str| if r.as_str() == Some(neg) { -1.0 } else { 1.0 };
                let lat = dms(&Value::Array(lat.clone())) * sign(&gps["GPSLatitudeRef"], "S");
                let lon = dms(&gps["GPSLongitude"]) * sign(&gps["GPSLongitudeRef"], "W");
                assert!(
                    (pos.latitude - lat).abs() < 1e-9,
                    "{name}: latitude {} vs {lat}",
                    pos.latitude
                );
                assert!(
                    (pos.longitude - lon).abs() < 1e-9,
                    "{name}: longitude {} vs {lon}",
                    pos.longitude
                );
                let alt = gps["GPSAltitude"].as_f64().unwrap()
                    * if gps["GPSAltitudeRef"].as_u64() == Some(1) {
                        -1.0
                    } else {
                        1.0
                    };
                assert!(
                    (pos.altitude_m.unwrap() - alt).abs() < 1e-9,
                    "{name}: altitude"
                );
                compared_gps += 1;
            }
            (ours, theirs) => panic!("{name}: GPS ours {ours:?}, expected {theirs:?}"),
        }
    }
    assert_eq!(
        (compared_dates, compared_gps),
        (7, 3),
        "the fixture set lost its dated/GPS photos"
    );
}

#[test]
fn drone_photo_has_gps_with_altitude() {
    // DJI_0005 from deepforest ships no expected-values file; these are Pillow 13's readings of
    // the same tags: N 45° 2′ 16.77″, W 94° 20′ 55.53″, 422.551 m, taken 2020:06:04 22:10:30.
    let exif = read_exif(&fetched(
        "deepforest-2.1.0/AWPE Pigeon Lake 2020 DJI_0005.JPG",
    ));
    let gps = exif.gps.expect("DJI photo has GPS");
    assert!(
        (gps.latitude - (45.0 + 2.0 / 60.0 + 16.77 / 3600.0)).abs() < 1e-9,
        "{gps:?}"
    );
    assert!(
        (gps.longitude + (94.0 + 20.0 / 60.0 + 55.53 / 3600.0)).abs() < 1e-9,
        "{gps:?}"
    );
    assert_eq!(gps.altitude_m, Some(422.551));
    assert_eq!(exif.camera_make.as_deref(), Some("DJI"));
    assert_eq!(exif.taken_at.unwrap().to_string(), "2020-06-04 22:10:30");
}

// ---------------------------------------------------------------- orientation

#[test]
fn orientation_tagged_photos_come_out_upright() {
    // References: Pillow's ImageOps.exif_transpose of the same files (tests/fixtures/make.py).
    // Different JPEG decoders differ by a level or two, so compare the mean difference.
    for name in ["right.jpg", "down-mirrored.jpg"] {
        let bytes = fetched(&format!("exif-0.6.0/{name}"));
        let ours = decode_upright(&bytes);
        let reference = png_rgb(&committed(&format!("{name}.upright.png")));
        let diff = mean_abs_diff(&ours, &reference);
        assert!(
            diff < 1.0,
            "{name}: mean difference from upright reference {diff}"
        );
    }
    // The check can fail: the stored (unoriented) mirrored photo is far from upright.
    let bytes = fetched("exif-0.6.0/down-mirrored.jpg");
    let probe = limits::probe(&bytes, &Limits::DEFAULT).unwrap();
    let stored = pixels::decode_rgb8(&bytes, &probe, None).unwrap();
    let reference = png_rgb(&committed("down-mirrored.jpg.upright.png"));
    assert!(mean_abs_diff(&stored, &reference) > 5.0);
}

/// PNG with an `eXIf` chunk holding only IFD0 Orientation = `orientation` (big-endian TIFF).
fn png_with_orientation(image: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut exif = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.width(), image.height());
    encoder.set_color(png::ColorType::Rgb);
    let mut writer = encoder.write_header().unwrap();
    writer
        .write_chunk(png::chunk::ChunkType(*b"eXIf"), &exif)
        .unwrap();
    writer.write_image_data(image.as_raw()).unwrap();
    writer.finish().unwrap();
    out
}

/// The stored image that a camera writes with `orientation` for this upright view, built from
/// the TIFF 6.0 table ("the 0th row represents the visual …, the 0th column the visual …").
fn stored_for(upright: &RgbImage, orientation: u16) -> RgbImage {
    #[derive(Clone, Copy)]
    enum Edge {
        Top,
        Bottom,
        Left,
        Right,
    }
    use Edge::{Bottom, Left, Right, Top};
    let (row0, col0) = match orientation {
        1 => (Top, Left),
        2 => (Top, Right),
        3 => (Bottom, Right),
        4 => (Bottom, Left),
        5 => (Left, Top),
        6 => (Right, Top),
        7 => (Right, Bottom),
        8 => (Left, Bottom),
        _ => unreachable!(),
    };
    let (wu, hu) = upright.dimensions();
    let (ws, hs) = if orientation >= 5 { (hu, wu) } else { (wu, hu) };
    RgbImage::from_fn(ws, hs, |c, r| {
        let (mut x, mut y) = (0, 0);
        match row0 {
            Top => y = r,
            Bottom => y = hu - 1 - r,
            Left => x = r,
            Right => x = wu - 1 - r,
        }
        match col0 {
            Left => x = c,
            Right => x = wu - 1 - c,
            Top => y = c,
            Bottom => y = hu - 1 - c,
        }
        *upright.get_pixel(x, y)
    })
}

#[test]
fn all_eight_orientations_give_the_exact_upright_pixels() {
    let chelsea = fetched("scikit-image-0.26.0/chelsea.png"); // 451×300, not square
    let upright = png_rgb(&chelsea);
    let plain = preprocess(&png_with_orientation(&upright, 1), &options("chelsea.png")).unwrap();
    for orientation in 1..=8 {
        let file = png_with_orientation(&stored_for(&upright, orientation), orientation);
        assert_eq!(
            read_exif(&file).orientation,
            Orientation::from_exif(orientation),
            "orientation {orientation} read back"
        );
        assert_eq!(decode_upright(&file), upright, "orientation {orientation}");
        // And through the whole pipeline: the same derivatives as the upright file.
        let derived = preprocess(&file, &options("chelsea.png")).unwrap();
        assert_eq!(
            derived.bodies, plain.bodies,
            "orientation {orientation} derivatives"
        );
    }
}

// ---------------------------------------------------------------- limits

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let png = png_bomb(100_000, 100_000);
    assert!(png.len() < 100);
    assert_eq!(
        preprocess(&png, &options("bomb.png")).unwrap_err(),
        PreprocessError::SideTooLong {
            width: 100_000,
            height: 100_000,
            max_side_px: 12_000
        }
    );
    let jpeg = jpeg_bomb(65_535, 65_535);
    assert!(jpeg.len() < 1000);
    assert_eq!(
        preprocess(&jpeg, &options("bomb.jpg")).unwrap_err(),
        PreprocessError::SideTooLong {
            width: 65_535,
            height: 65_535,
            max_side_px: 12_000
        }
    );
    // Within the side limit but over the pixel budget.
    let mut wide = options("bomb.png");
    wide.limits.max_side_px = 200_000;
    assert_eq!(
        preprocess(&png_bomb(100_000, 100_000), &wide).unwrap_err(),
        PreprocessError::TooManyPixels {
            width: 100_000,
            height: 100_000,
            max_pixels: 100_000_000
        }
    );
    assert_eq!(
        preprocess(&jpeg_bomb(11_000, 10_000), &options("bomb.jpg"))
            .unwrap_err()
            .code(),
        ErrorCode::TooManyPixels
    );
}

#[test]
fn limits_are_configurable_and_checked_first() {
    let sony = fetched("exif-0.6.0/sony-alpha-6000.jpg"); // 6.3 MiB, 6000×4000
    let mut small = options("sony.jpg");
    small.limits.max_bytes = 1024 * 1024;
    let err = preprocess(&sony, &small).unwrap_err();
    assert_eq!(
        err,
        PreprocessError::TooLarge {
            size_bytes: 6_586_368,
            max_bytes: 1_048_576
        }
    );
    assert_eq!(
        err.to_string(),
        "file is 6.3 MiB (6586368 bytes); the limit is 1.0 MiB (1048576 bytes)"
    );
    let mut few_pixels = options("sony.jpg");
    few_pixels.limits.max_pixels = 20_000_000;
    assert_eq!(
        preprocess(&sony, &few_pixels).unwrap_err().code(),
        ErrorCode::TooManyPixels
    );
    // A file over the default 10 MiB: the 15 MB NEON crop from deepforest.
    let big = fetched("deepforest-2.1.0/2019_YELL_2_528000_4978000_image_crop2.png");
    assert_eq!(
        preprocess(&big, &options("crop2.png")).unwrap_err().code(),
        ErrorCode::TooLarge
    );
}

#[test]
fn other_types_are_refused_by_content_not_name() {
    let err = preprocess(b"GIF89a\x01\0\x01\0\0\0\0;", &options("photo.jpg")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "only JPEG, PNG and TIFF images are accepted (found a GIF image)"
    );
    let csv = fetched("deepforest-2.1.0/OSBS_029.csv");
    assert_eq!(
        preprocess(&csv, &options("OSBS_029.jpg"))
            .unwrap_err()
            .code(),
        ErrorCode::UnsupportedType
    );
    // A PNG named .jpg is processed as the PNG it is.
    let chelsea = fetched("scikit-image-0.26.0/chelsea.png");
    let derived = preprocess(&chelsea, &options("chelsea.jpg")).unwrap();
    assert_eq!(derived.manifest.format, ImageFormat::Png);
    assert!(derived.manifest.original().key.ends_with(".png"));
}

/// Offset just past the primary image's EOI, found by walking the JPEG markers (T.81 B.1.1):
/// later bytes (an MPF preview, a trailer) are not part of the image.
fn jpeg_primary_end(bytes: &[u8]) -> usize {
    let mut i = 2;
    loop {
        assert_eq!(bytes[i], 0xFF, "marker expected at {i}");
        let marker = bytes[i + 1];
        match marker {
            0xD9 => return i + 2,
            0xD0..=0xD7 | 0x01 | 0xFF => i += if marker == 0xFF { 1 } else { 2 },
            _ => {
                i += 2 + usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
                if marker == 0xDA {
                    // Entropy-coded data runs to the next marker that is not FF00 or RSTn.
                    while !(bytes[i] == 0xFF
                        && bytes[i + 1] != 0
                        && !(0xD0..=0xD7).contains(&bytes[i + 1]))
                    {
                        i += 1;
                    }
                }
            }
        }
    }
}

#[test]
fn truncated_and_damaged_files_are_errors() {
    let cases = [
        ("exif-0.6.0/sony-alpha-6000.jpg", ImageFormat::Jpeg),
        ("exif-0.6.0/test1.jpg", ImageFormat::Jpeg),
        (
            "deepforest-2.1.0/AWPE Pigeon Lake 2020 DJI_0005.JPG",
            ImageFormat::Jpeg,
        ),
        ("scikit-image-0.26.0/chelsea.png", ImageFormat::Png),
        ("deepforest-2.1.0/OSBS_029.tif", ImageFormat::Tiff),
    ];
    for (rel, format) in cases {
        let whole = fetched(rel);
        let end = match format {
            ImageFormat::Jpeg => jpeg_primary_end(&whole),
            _ => whole.len(),
        };
        // Cut inside the image data; for JPEG also just before EOI: a stream that stops
        // early is refused, never completed with grey. (PNG's last 12 bytes are IEND, which
        // carries no image data.)
        let mut cuts = vec![end / 2, end * 9 / 10, end - 100];
        if format == ImageFormat::Jpeg {
            cuts.push(end - 2);
        }
        for keep in cuts {
            match preprocess(&whole[..keep], &options(rel)) {
                Err(PreprocessError::Corrupt { format: f, .. }) => assert_eq!(f, format, "{rel}"),
                Err(other) => panic!("{rel} cut to {keep} bytes: expected Corrupt, got {other:?}"),
                Ok(_) => panic!("{rel} cut to {keep} of {end} bytes: decoded without an error"),
            }
        }
    }
    // A flipped byte inside PNG image data fails its CRC.
    let mut png = fetched("scikit-image-0.26.0/chelsea.png");
    let mid = png.len() / 2;
    png[mid] ^= 0x55;
    assert_eq!(
        preprocess(&png, &options("chelsea.png"))
            .unwrap_err()
            .code(),
        ErrorCode::Corrupt
    );
    // A JPEG whose frame header is destroyed (DJI_0005 has no EXIF thumbnail, so its first
    // SOF0 is the primary image's).
    let mut jpeg = fetched("deepforest-2.1.0/AWPE Pigeon Lake 2020 DJI_0005.JPG");
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 9] = 0; // zero components
    assert_eq!(
        preprocess(&jpeg, &options("DJI_0005.JPG"))
            .unwrap_err()
            .code(),
        ErrorCode::Corrupt
    );
}

// ---------------------------------------------------------------- codecs

#[test]
fn progressive_and_cmyk_jpegs_decode_like_pillow() {
    for name in ["rocket-progressive.jpg", "chelsea-cmyk.jpg"] {
        let ours = decode_upright(&committed(name));
        let reference = png_rgb(&committed(&format!("{name}.pillow.png")));
        let diff = mean_abs_diff(&ours, &reference);
        assert!(diff < 1.5, "{name}: mean difference from Pillow {diff}");
    }
}

#[test]
fn geotiff_decodes_to_the_same_pixels_as_its_png() {
    // deepforest ships OSBS_029 as an LZW GeoTIFF and as a PNG of identical pixels.
    let tif = decode_upright(&fetched("deepforest-2.1.0/OSBS_029.tif"));
    let png = decode_upright(&fetched("deepforest-2.1.0/OSBS_029.png"));
    assert_eq!(tif.dimensions(), (400, 400));
    assert_eq!(tif, png);
}

#[test]
fn grey_sixteen_bit_and_alpha_pngs_become_rgb_on_white() {
    // camera.png: 8-bit grey.
    let camera = decode_upright(&fetched("scikit-image-0.26.0/camera.png"));
    assert!(camera.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    // chessboard_RGB.png: 16-bit RGB, squares of pure black and white.
    let board = decode_upright(&fetched("scikit-image-0.26.0/chessboard_RGB.png"));
    assert_eq!(board.dimensions(), (200, 200));
    assert!(board.pixels().any(|p| p.0 == [255, 255, 255]));
    assert!(board.pixels().any(|p| p.0 == [0, 0, 0]));
    // horse.png: RGBA with a transparent background, which must come out white.
    let horse = decode_upright(&fetched("scikit-image-0.26.0/horse.png"));
    assert_eq!(horse.get_pixel(0, 0).0, LETTERBOX_FILL);
    assert!(horse.pixels().any(|p| p.0 != LETTERBOX_FILL));
}

#[test]
fn palette_png_with_transparency_becomes_rgb_on_white() {
    // 4×1 indexed PNG: red, green, a half-transparent blue, and a fully transparent entry.
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, 4, 1);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]);
    encoder.set_trns(vec![255, 255, 128, 0]);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&[0, 1, 2, 3]).unwrap();
    writer.finish().unwrap();
    let rgb = decode_upright(&bytes);
    assert_eq!(
        rgb.as_raw(),
        &[255, 0, 0, 0, 255, 0, 127, 127, 255, 255, 255, 255]
    );
}

#[test]
fn malformed_exif_never_fails_the_image() {
    // test1.jpg with its EXIF IFD0 offset pointed past the end of the segment.
    let mut bytes = fetched("exif-0.6.0/test1.jpg");
    let tiff = bytes.windows(6).position(|w| w == b"Exif\0\0").unwrap() + 6;
    let big_endian = &bytes[tiff..tiff + 2] == b"MM";
    let offset = if big_endian {
        0x7FFF_FFF0u32.to_be_bytes()
    } else {
        0x7FFF_FFF0u32.to_le_bytes()
    };
    bytes[tiff + 4..tiff + 8].copy_from_slice(&offset);
    assert_eq!(
        read_exif(&bytes),
        tessera_core::exif::ExifMetadata::default()
    );
    let derived = preprocess(&bytes, &options("test1.jpg")).unwrap();
    assert_eq!(derived.manifest.date_source, DateSource::Upload);
    // The pixels are untouched: the same derivatives as the intact file.
    let intact = preprocess(&fetched("exif-0.6.0/test1.jpg"), &options("test1.jpg")).unwrap();
    assert_eq!(derived.bodies, intact.bodies);
    // And the exif package's own "evil" sample is read without failing.
    assert!(preprocess(&fetched("exif-0.6.0/evil1.jpg"), &options("evil1.jpg")).is_ok());
}

// ---------------------------------------------------------------- derivatives

fn sha(bytes: &[u8]) -> String {
    tessera_core::Sha256Digest::of(bytes).hex
}

/// Golden SHA-256s of the five JPEG derivatives (processed, 90, 180, 270, 360) of real photos.
/// Changing a codec, filter or quality changes these on purpose; look at the images, then
/// update them.
#[test]
fn golden_derivatives_of_real_photos() {
    let golden: [(&str, [&str; 4]); 3] = [
        (
            "exif-0.6.0/sony-alpha-6000.jpg",
            [
                "eea868b815e3d0723de5c9d918b429a6d94781379b0b5ce72914f8d7f4c54df4",
                "4a0c9b100809e7d99c43c8dadce88520c6c1cfe3a92ea843ab1fbf98497429ad",
                "6fc3cc3a8a8dc1dce87daa7d40ec9888b2c53f217f6b5a8464d62d59ef5086cd",
                "51a347e3e6bb801404e7bc649b1e925243c295881db11f04821afd9c1f99b905",
            ],
        ),
        (
            "exif-0.6.0/short-ascii-II.jpg",
            [
                "74be19fb0c329fa0609365240db444dc1eb6d764bb77f7f4949ecba5d2412b28",
                "c196a89d39ed8c55bca33c03c883609b0efe49103b53c4c12e1674be8360d5e4",
                "c8d6e04105c912cfef4ed33f97727be11181add7728cdeea6b096771e3b19a26",
                "e9ccd751a0a1c712dec5710f331fd0d5eba537f7754788e7bb245c6062d3668f",
            ],
        ),
        (
            "deepforest-2.1.0/AWPE Pigeon Lake 2020 DJI_0005.JPG",
            [
                "27de4acbef6f9600a040b858461a4a72046399a5a6770f0859cdded976f4e2c4",
                "9f170ac336ca5f14aeb3cd9aef1a5067a11f478dc85b8bc012ac173eacb1689c",
                "e7ee3d2c8a71775104e8a8b9cd42d92fe6d10c2b037d58789e6441e7dbd01306",
                "ddc894fc779ffb38a3bcab2efe87598da14ec3acca3aeb4130011942fa80140a",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (rel, [processed, r90, r180, r270]) in golden {
        let bytes = fetched(rel);
        let derived = preprocess(&bytes, &options(rel)).unwrap();
        let got: Vec<String> = derived.bodies.iter().map(|(_, b)| sha(b)).collect();
        assert_eq!(
            got[0], got[4],
            "processed and 360-degree are the same letterbox"
        );
        let want = [processed, r90, r180, r270, processed];
        if got != want {
            failures.push(format!("{rel}: {:#?}", &got[..4]));
        }
    }
    assert!(
        failures.is_empty(),
        "golden checksums changed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn manifest_describes_every_object() {
    let bytes = fetched("exif-0.6.0/sony-alpha-6000.jpg");
    let derived = preprocess(&bytes, &options("DSC00042.JPG")).unwrap();
    let m = &derived.manifest;
    assert_eq!(m.date, NaiveDate::from_ymd_opt(2014, 4, 18).unwrap());
    assert_eq!(m.date_source, DateSource::Exif);
    let id = &sha(&bytes)[..32];
    assert_eq!(m.image_id.as_str(), id);
    let kinds: Vec<ObjectKind> = m.objects.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        [
            ObjectKind::Original,
            ObjectKind::Processed,
            ObjectKind::Augmented90,
            ObjectKind::Augmented180,
            ObjectKind::Augmented270,
            ObjectKind::Augmented360
        ]
    );
    let original = m.original();
    assert_eq!(
        original.key,
        format!("original-uploads/test/{id}/test_dsc00042_20140418.jpg")
    );
    assert_eq!(
        (original.width, original.height, original.size_bytes),
        (6000, 4000, 6_586_368)
    );
    assert_eq!(original.sha256.hex, sha(&bytes));
    assert_eq!(
        m.object(ObjectKind::Augmented90).unwrap().key,
        format!("augmented-images/90-degree/test/{id}/test_dsc00042_20140418_90.jpg")
    );
    assert_eq!(m.metadata_key, format!("metadata/test/{id}.json"));
    for (object, body) in derived.derivatives() {
        assert_eq!(object.size_bytes, body.len() as u64);
        assert_eq!(object.sha256, tessera_core::Sha256Digest::of(body));
        assert_eq!(object.content_type, "image/jpeg");
        assert_eq!(
            (object.width, object.height),
            (LETTERBOX_SIZE, LETTERBOX_SIZE)
        );
        // Baseline JPEG: SOF0, no progressive SOF2.
        assert!(body.windows(2).any(|w| w == [0xFF, 0xC0]));
        assert!(!body.windows(2).any(|w| w == [0xFF, 0xC2]));
        let decoded = image::load_from_memory(body).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (256, 256));
    }
    // The sidecar round-trips through JSON.
    let json = serde_json::to_string(m).unwrap();
    let back: tessera_core::Manifest = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, m);
    // base64 of the digest is what S3's x-amz-checksum-sha256 takes: 44 characters.
    assert_eq!(original.sha256.base64.len(), 44);

    // Without an EXIF date, the caller's date names the objects.
    let chelsea = preprocess(
        &fetched("scikit-image-0.26.0/chelsea.png"),
        &options("c.png"),
    )
    .unwrap();
    assert_eq!(chelsea.manifest.date_source, DateSource::Upload);
    assert!(chelsea.manifest.original().key.ends_with("_c_20261121.png"));
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    let bytes = fetched("exif-0.6.0/test1.jpg");
    let a = preprocess(&bytes, &options("test1.jpg")).unwrap();
    let b = preprocess(&bytes, &options("test1.jpg")).unwrap();
    assert_eq!(a.bodies, b.bodies);
    assert_eq!(a.manifest, b.manifest);
}
