//! Test and benchmark support shared by `tests/pipeline.rs` and `benches/pipeline.rs`
//! (included by path in the bench): fetched fixtures and hand-made decompression bombs.
#![allow(dead_code)]

use std::path::PathBuf;

use image::RgbImage;
use tessera_core::pixels;

/// The fetched-fixtures folder: `$TESSERA_FIXTURES`, default `~/.cache/tessera/fixtures`.
pub(crate) fn fixtures_root() -> PathBuf {
    std::env::var_os("TESSERA_FIXTURES").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/tessera/fixtures"),
        PathBuf::from,
    )
}

/// A fetched fixture, `{package}-{version}/{file}` (see `tests/fetch-fixtures.sh`).
pub(crate) fn fetched(rel: &str) -> Vec<u8> {
    let path = fixtures_root().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `bash tests/fetch-fixtures.sh` first",
            path.display()
        )
    })
}

/// CRC-32/ISO-HDLC as PNG uses (ISO 15948 Annex D), bitwise.
fn png_crc(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real 1×1 PNG whose IHDR then claims `width × height` (CRC fixed), a classic bomb shape.
pub(crate) fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(RgbImage::new(1, 1))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = png_crc(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// A real 8×8 JPEG whose SOF0 then claims `width × height` (JPEG sides are 16-bit, so 65,535
/// is the largest claim possible).
pub(crate) fn jpeg_bomb(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = pixels::encode_jpeg(&RgbImage::new(8, 8), 90).unwrap();
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}
