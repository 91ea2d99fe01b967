//! The bindings in headless Chromium (wasm-bindgen-test; `CHROMEDRIVER=/usr/bin/chromedriver
//! cargo test -p tessera-wasm --target wasm32-unknown-unknown`, as `scripts/test.sh` runs it).
#![cfg(target_arch = "wasm32")]

use serde::Deserialize as _;
use tessera_core::{Manifest, ObjectKind, Sha256Digest};
use tessera_wasm::{PreprocessFailure, check_size, preprocess};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// A progressive JPEG made by `tests/fixtures/make.py` (rocket from scikit-image, CC0).
const ROCKET: &[u8] = include_bytes!("../../tests/fixtures/rocket-progressive.jpg");

/// SHA-256 of rocket-progressive.jpg's five derivatives from the native build
/// (`tessera preprocess`), in manifest order: processed, augmented 90, 180, 270, 360.
const NATIVE_SHA256: [&str; 5] = [
    "a739062054c0a6edde2fe0e2b30f411b70fdabd6cfb88739b2f91fa01e23b790",
    "1eef1209ea7bc910342f991f222cc7ea0ebb2ee2761492614e72d86409ac4207",
    "0bb1f425a42d2e0b0abe8ed9655b342ed98b67ababe729b3b890caa3f73c550b",
    "e42a38b964ab3347a80f6cd8dc322fd07c49f0657b02a2a642bcdb94f40b61db",
    "a739062054c0a6edde2fe0e2b30f411b70fdabd6cfb88739b2f91fa01e23b790",
];

/// A small PNG made by `tests/fixtures/make.py`.
const UPRIGHT_PNG: &[u8] = include_bytes!("../../tests/fixtures/right.jpg.upright.png");

/// CRC-32 as PNG chunks use it (ISO 3309, reflected 0xEDB88320).
fn png_crc(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn options(file_name: &str, date: &str) -> JsValue {
    let options = js_sys::Object::new();
    for (key, value) in [
        ("project", "browser-test"),
        ("fileName", file_name),
        ("fallbackDate", date),
    ] {
        js_sys::Reflect::set(&options, &key.into(), &value.into()).unwrap();
    }
    options.into()
}

fn get(object: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(object, &key.into()).unwrap()
}

#[wasm_bindgen_test]
fn preprocess_gives_the_native_bytes_and_transferable_bodies() {
    let result = preprocess(ROCKET, options("rocket.jpg", "2026-01-02")).unwrap();
    let manifest = Manifest::deserialize(serde_wasm_bindgen::Deserializer::from(get(
        &result, "manifest",
    )))
    .unwrap();
    assert_eq!(manifest.objects.len(), 6);
    assert_eq!(manifest.objects[0].kind, ObjectKind::Original);
    assert_eq!(manifest.objects[0].sha256, Sha256Digest::of(ROCKET));
    assert_eq!(manifest.file_name, "rocket.jpg");
    assert_eq!(manifest.date.to_string(), "2026-01-02");

    let bodies = get(&result, "bodies");
    assert_eq!(
        js_sys::Object::keys(bodies.unchecked_ref::<js_sys::Object>()).length(),
        5
    );
    for (i, object) in manifest.objects[1..].iter().enumerate() {
        // Keyed by the kind as the manifest spells it: `processed`, `augmented-90`, …
        let kind = serde_wasm_bindgen::to_value(&object.kind).unwrap();
        let body: js_sys::Uint8Array = js_sys::Reflect::get(&bodies, &kind)
            .unwrap()
            .dyn_into()
            .unwrap();
        // Each body owns its whole buffer, so postMessage can transfer it.
        assert_eq!(body.buffer().byte_length(), body.byte_length());
        let bytes = body.to_vec();
        assert_eq!(bytes.len() as u64, object.size_bytes);
        assert_eq!(Sha256Digest::of(&bytes), object.sha256);
        assert_eq!(object.sha256.hex, NATIVE_SHA256[i], "{:?}", object.kind);
    }
}

fn failure(result: Result<impl Sized, PreprocessFailure>) -> PreprocessFailure {
    match result {
        Ok(_) => panic!("expected a failure"),
        Err(failure) => failure,
    }
}

#[wasm_bindgen_test]
fn refusals_carry_a_stable_code_and_plain_words() {
    let csv = failure(preprocess(
        b"name,lat,lon\nx,1,2\n",
        options("data.jpg", "2026-01-02"),
    ));
    assert_eq!(csv.code, "unsupported_type");
    assert!(
        csv.message
            .contains("only JPEG, PNG and TIFF images are accepted"),
        "{}",
        csv.message
    );

    // A real JPEG whose SOF0 claims 65,535 × 65,535 pixels: refused from the header.
    let mut bomb = ROCKET.to_vec();
    let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC2]).unwrap();
    bomb[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    let bomb = failure(preprocess(&bomb, options("bomb.jpg", "2026-01-02")));
    assert_eq!(bomb.code, "side_too_long", "{}", bomb.message);
    assert!(bomb.message.contains("65535×65535"), "{}", bomb.message);

    // A real PNG whose IHDR (CRC fixed up) claims 100,000 × 100,000 pixels. On wasm32 the
    // `png` crate cannot even size such a header; the core reads IHDR itself.
    let mut bomb = UPRIGHT_PNG.to_vec();
    bomb[16..24].copy_from_slice(&[0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0]);
    let crc = png_crc(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let bomb = failure(preprocess(&bomb, options("bomb.png", "2026-01-02")));
    assert_eq!(bomb.code, "side_too_long", "{}", bomb.message);
    assert!(bomb.message.contains("100000×100000"), "{}", bomb.message);

    let truncated = failure(preprocess(
        &ROCKET[..ROCKET.len() / 2],
        options("cut.jpg", "2026-01-02"),
    ));
    assert_eq!(truncated.code, "corrupt");

    let large = failure(check_size(11.0 * 1024.0 * 1024.0));
    assert_eq!(large.code, "too_large");
    assert!(
        large.message.contains("the limit is 10.0 MiB"),
        "{}",
        large.message
    );
    assert!(check_size(10.0 * 1024.0 * 1024.0).is_ok());

    let bad = failure(preprocess(ROCKET, options("rocket.jpg", "2026-13-45")));
    assert_eq!(bad.code, "bad_options");
    let bad = failure(preprocess(
        ROCKET,
        options("rocket.jpg", "2026-01-02").tap_project("Bad Name"),
    ));
    assert_eq!(bad.code, "bad_options");
}

trait TapProject {
    fn tap_project(self, project: &str) -> JsValue;
}

impl TapProject for JsValue {
    fn tap_project(self, project: &str) -> JsValue {
        js_sys::Reflect::set(&self, &"project".into(), &project.into()).unwrap();
        self
    }
}
