//! The whole preprocessing pipeline on real photos, each stage alone, and the naive peer
//! (the `image` crate alone: full decode, `imageops::resize`, `rotate90`…, encode).
//!
//! Run through `python3 core/benches/compare.py`, which adds the Pillow peer in the same run
//! and writes BENCHMARKS.md. Photos come from `tests/fetch-fixtures.sh`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use chrono::NaiveDate;
use criterion::{Criterion, criterion_group, criterion_main};
use image::{DynamicImage, ImageDecoder, ImageEncoder, RgbImage, imageops};
use support::{fetched, jpeg_bomb, png_bomb};
use tessera_core::keys::Project;
use tessera_core::limits::{self, Limits};
use tessera_core::pixels::{self, LETTERBOX_SIZE, Rotation};
use tessera_core::{Options, Sha256Digest, exif, preprocess};

const PHOTOS: [(&str, &str); 2] = [
    ("sony-6000x4000", "exif-0.6.0/sony-alpha-6000.jpg"),
    ("xiaomi-4208x3120", "exif-0.6.0/short-ascii-II.jpg"),
];

fn options() -> Options {
    Options::new(
        Project::new("bench").unwrap(),
        "photo.jpg",
        NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(),
    )
}

/// The same job with the `image` crate alone, as a first implementation would write it.
fn naive_image_crate(bytes: &[u8]) -> Vec<String> {
    let mut decoder = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .unwrap()
        .into_decoder()
        .unwrap();
    let orientation = decoder.orientation().unwrap();
    let mut img = DynamicImage::from_decoder(decoder).unwrap();
    img.apply_orientation(orientation);
    let rgb = img.into_rgb8();
    let g = pixels::letterbox_geometry(rgb.width(), rgb.height(), LETTERBOX_SIZE);
    let scaled = imageops::resize(
        &rgb,
        g.scaled_width,
        g.scaled_height,
        imageops::FilterType::Lanczos3,
    );
    let mut canvas = RgbImage::from_pixel(LETTERBOX_SIZE, LETTERBOX_SIZE, image::Rgb([255; 3]));
    imageops::overlay(
        &mut canvas,
        &scaled,
        i64::from(g.offset_x),
        i64::from(g.offset_y),
    );
    let turns = [
        canvas.clone(),
        imageops::rotate270(&canvas),
        imageops::rotate180(&canvas),
        imageops::rotate90(&canvas),
    ];
    let mut digests = vec![Sha256Digest::of(bytes).hex];
    for turn in &turns {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .write_image(
                turn.as_raw(),
                turn.width(),
                turn.height(),
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        digests.push(Sha256Digest::of(&jpeg).hex);
    }
    digests
}

fn whole_pipeline(c: &mut Criterion) {
    let options = options();
    for (name, rel) in PHOTOS {
        let bytes = fetched(rel);
        let mut group = c.benchmark_group(format!("pipeline/{name}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(8));
        group.bench_function("tessera", |b| {
            b.iter(|| preprocess(black_box(&bytes), &options).unwrap());
        });
        group.bench_function("naive-image-crate", |b| {
            b.iter(|| naive_image_crate(black_box(&bytes)));
        });
        group.finish();
    }
}

/// Each stage of `preprocess` alone, on the inputs the previous stage produced.
fn stages(c: &mut Criterion) {
    for (name, rel) in PHOTOS {
        let bytes = fetched(rel);
        let probe = limits::probe(&bytes, &Limits::DEFAULT).unwrap();
        let orientation = exif::read_exif(&bytes).orientation.unwrap_or_default();
        let target = pixels::letterbox_geometry(probe.width, probe.height, LETTERBOX_SIZE);
        let min_size = Some((2 * target.scaled_width, 2 * target.scaled_height));
        let stored = pixels::decode_rgb8(&bytes, &probe, min_size).unwrap();
        let upright = orientation.apply(stored.clone());
        let letterbox = pixels::letterbox(&upright, LETTERBOX_SIZE);
        let turned: Vec<RgbImage> = Rotation::ALL[..3]
            .iter()
            .map(|r| r.apply(&letterbox))
            .collect();
        let bodies: Vec<Vec<u8>> = std::iter::once(&letterbox)
            .chain(&turned)
            .map(|img| pixels::encode_jpeg(img, 90).unwrap())
            .collect();

        let mut group = c.benchmark_group(format!("stage/{name}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(3));
        group.bench_function("1-probe", |b| {
            b.iter(|| limits::probe(black_box(&bytes), &Limits::DEFAULT));
        });
        group.bench_function("2-exif", |b| b.iter(|| exif::read_exif(black_box(&bytes))));
        group.bench_function("3-decode", |b| {
            b.iter(|| pixels::decode_rgb8(black_box(&bytes), &probe, min_size).unwrap());
        });
        group.bench_function("4-orient", |b| {
            b.iter(|| orientation.apply(black_box(stored.clone())));
        });
        group.bench_function("5-letterbox", |b| {
            b.iter(|| pixels::letterbox(black_box(&upright), LETTERBOX_SIZE));
        });
        group.bench_function("6-rotate", |b| {
            b.iter(|| {
                Rotation::ALL[..3]
                    .iter()
                    .map(|r| r.apply(black_box(&letterbox)))
                    .collect::<Vec<_>>()
            });
        });
        group.bench_function("7-encode", |b| {
            b.iter(|| {
                std::iter::once(&letterbox)
                    .chain(&turned)
                    .map(|img| pixels::encode_jpeg(black_box(img), 90).unwrap().len())
                    .sum::<usize>()
            });
        });
        group.bench_function("8-sha256", |b| {
            b.iter(|| {
                // The original, the four distinct bodies, and the letterbox again: processed/
                // and 360-degree share its bytes but are hashed as separate objects.
                std::iter::once(black_box(&bytes))
                    .chain(&bodies)
                    .chain(std::iter::once(&bodies[0]))
                    .map(|body| Sha256Digest::of(body))
                    .collect::<Vec<_>>()
            });
        });
        group.finish();
    }
}

/// How long a decompression bomb takes to refuse (header only).
fn bomb_refusal(c: &mut Criterion) {
    let png = png_bomb(100_000, 100_000);
    let jpeg = jpeg_bomb(65_535, 65_535);
    let options = options();
    let mut group = c.benchmark_group("bomb");
    group.bench_function("png-100000x100000", |b| {
        b.iter(|| preprocess(black_box(&png), &options).unwrap_err());
    });
    group.bench_function("jpeg-65535x65535", |b| {
        b.iter(|| preprocess(black_box(&jpeg), &options).unwrap_err());
    });
    group.finish();
}

/// Standard Webhooks signatures of a job's payload (about 2 KB) and their verification.
fn webhook_signatures(c: &mut Criterion) {
    use tessera_core::webhook::{WebhookSecret, sign, verify};
    let secret = WebhookSecret::from_bytes(&[7; 32]).unwrap();
    let body = vec![b'x'; 2048];
    let header = sign(std::slice::from_ref(&secret), "msg_1", 1_700_000_000, &body);
    let mut group = c.benchmark_group("webhook");
    group.bench_function("sign 2 KB", |b| {
        b.iter(|| sign(std::slice::from_ref(&secret), "msg_1", 1_700_000_000, &body));
    });
    group.bench_function("verify 2 KB", |b| {
        b.iter(|| {
            verify(
                std::slice::from_ref(&secret),
                "msg_1",
                "1700000000",
                &header,
                &body,
                1_700_000_000,
            )
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    whole_pipeline,
    stages,
    bomb_refusal,
    webhook_signatures
);
criterion_main!(benches);
