//! # tessera-wasm
//!
//! [`tessera_core`]'s preprocessing pipeline for browsers, built with wasm-bindgen
//! (`--target web`) and run in a module Web Worker (`web/worker.js`) so the page never freezes.
//! Every rule is the core's: the same file and options give byte-identical objects here and in
//! `tessera preprocess`.
//!
//! JavaScript sees:
//! - [`preprocess`]`(bytes, options)` → `{ manifest, bodies: { processed, "augmented-90", … } }`,
//!   or throws a [`PreprocessFailure`]
//!   (`{ code, message }`, `code` from [`tessera_core::PreprocessError::code`]).
//! - [`check_size`]`(bytes)`: the size limit, checked before a file is read.
//! - [`start_upload_worker`]`(early)`: turns the Web Worker it runs in into the upload worker
//!   (`web/upload-worker.js`), which owns the IndexedDB queue and uploads with
//!   [`tessera_client`] over `fetch` and `XMLHttpRequest`; its messages are in
//!   [`upload_worker`]'s documentation.
//! - [`letterbox_rgba`]: the letterbox step alone, for the resize benchmark.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tessera_core::error::ErrorCode;
use tessera_core::keys::Project;
use tessera_core::limits::Limits;
use tessera_core::pixels::{LETTERBOX_SIZE, letterbox};
use tessera_core::{Options, PreprocessError};
use wasm_bindgen::prelude::*;

mod queue;
mod transport;
pub mod upload_worker;

pub use upload_worker::start_upload_worker;

/// Options from JavaScript: `{ project, fileName, fallbackDate: "YYYY-MM-DD", quality? }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsOptions {
    project: String,
    file_name: String,
    fallback_date: NaiveDate,
    #[serde(default)]
    quality: Option<u8>,
}

/// Why a file was refused, as JavaScript sees it: `code` is stable (`too_large`,
/// `unsupported_type`, `side_too_long`, `too_many_pixels`, `empty_image`, `corrupt`,
/// `unsupported_feature`, `encode_failed`, or `bad_options` for the caller's mistakes),
/// `message` is plain words with the value and the limit.
#[wasm_bindgen(getter_with_clone)]
#[derive(Debug, Clone, Serialize)]
pub struct PreprocessFailure {
    /// Stable machine-readable code.
    pub code: String,
    /// What is wrong, with the value and the limit.
    pub message: String,
}

impl From<PreprocessError> for PreprocessFailure {
    fn from(error: PreprocessError) -> Self {
        Self {
            code: error.code().as_str().to_owned(),
            message: error.to_string(),
        }
    }
}

fn bad_options(message: impl std::fmt::Display) -> PreprocessFailure {
    PreprocessFailure {
        code: ErrorCode::BadOptions.as_str().to_owned(),
        message: message.to_string(),
    }
}

/// The result of [`preprocess`] in JavaScript.
#[derive(Serialize)]
struct JsDerivatives {
    /// The core's [`tessera_core::Manifest`] as a plain object.
    manifest: tessera_core::Manifest,
}

/// Checks, orients, letterboxes (256×256 on white), rotates (90°, 180°, 270°
/// counter-clockwise), encodes and hashes one file: [`tessera_core::preprocess()`].
///
/// `bytes` is the whole file; `options` is `{ project, fileName, fallbackDate, quality? }`.
/// Returns `{ manifest, bodies }`: `manifest` is the core's `Manifest` as a plain object (keys,
/// SHA-256s, sizes, EXIF date and GPS), and `bodies` an object of five `Uint8Array` JPEGs keyed
/// by object kind as `manifest.objects[].kind` spells it (`processed`, `augmented-90`,
/// `augmented-180`, `augmented-270`, `augmented-360`), each on its own `ArrayBuffer` so it can
/// be transferred with `postMessage` instead of copied.
///
/// # Errors
/// A [`PreprocessFailure`] for a refused or damaged file, or `bad_options`.
#[wasm_bindgen]
pub fn preprocess(bytes: &[u8], options: JsValue) -> Result<JsValue, PreprocessFailure> {
    let options: JsOptions = serde_wasm_bindgen::from_value(options).map_err(bad_options)?;
    let project = Project::new(options.project).map_err(bad_options)?;
    let mut core_options = Options::new(project, options.file_name, options.fallback_date);
    if let Some(quality) = options.quality {
        core_options.quality = quality;
    }
    let derivatives = tessera_core::preprocess(bytes, &core_options)?;
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    let result = JsDerivatives {
        manifest: derivatives.manifest,
    }
    .serialize(&serializer)
    .map_err(bad_options)?;
    let bodies = js_sys::Object::new();
    for (kind, body) in &derivatives.bodies {
        let kind = kind
            .serialize(&serializer)
            .map_err(|_| bad_options("kind"))?;
        let body = js_sys::Uint8Array::from(body.as_slice());
        js_sys::Reflect::set(&bodies, &kind, &body).map_err(|_| bad_options("bodies"))?;
    }
    js_sys::Reflect::set(&result, &"bodies".into(), &bodies).map_err(|_| bad_options("bodies"))?;
    Ok(result)
}

/// The size limit alone, so a caller can refuse a file before reading it.
///
/// # Errors
/// `too_large`, naming the size and the limit (10 MiB).
#[wasm_bindgen]
pub fn check_size(size_bytes: f64) -> Result<(), PreprocessFailure> {
    // File sizes from JavaScript are integral doubles below 2^53.
    Limits::DEFAULT
        .check_size(size_bytes as u64)
        .map_err(Into::into)
}

/// The letterbox step alone, for benchmarks: `rgba` is `width × height` pixels, 4 bytes each
/// (canvas `ImageData` layout, alpha ignored); returns the 256×256 RGB letterbox
/// (3 bytes a pixel, row-major) that [`tessera_core::pixels::letterbox`] makes, Lanczos3.
///
/// # Errors
/// `bad_options` when `rgba` is not `width × height × 4` bytes.
#[wasm_bindgen]
pub fn letterbox_rgba(rgba: &[u8], width: u32, height: u32) -> Result<Vec<u8>, PreprocessFailure> {
    let pixels = width as usize * height as usize;
    if rgba.len() != pixels * 4 {
        return Err(bad_options(format!(
            "rgba is {} bytes; {width}×{height} needs {}",
            rgba.len(),
            pixels * 4
        )));
    }
    let rgb: Vec<u8> = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let image = tessera_core::pixels::RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| bad_options("pixel buffer"))?;
    Ok(letterbox(&image, LETTERBOX_SIZE).into_raw())
}
