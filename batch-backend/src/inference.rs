//! ONNX Runtime through `ort`: the only module that imports it (ARCHITECTURE.md's house rule).
//!
//! The library is loaded at run time from `ORT_DYLIB_PATH` (`ort`'s `load-dynamic`): the
//! onnxruntime 1.31.1 wheel's `libonnxruntime.so.1.31.1`, which `scripts/env.sh`'s
//! `ensure_onnxruntime` fetches from PyPI and checks by SHA-256. A missing or wrong library is
//! an [`InferenceError::Runtime`] that says what to run.

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider as _};
use ort::session::Session;
use ort::value::TensorRef;
use tessera_core::detect::{Detection, ModelDescription, decode_yolo};

/// The variable naming the ONNX Runtime shared library.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// Where a model comes from.
#[derive(Debug, Clone, Copy)]
pub enum ModelSource<'a> {
    /// An ONNX file.
    File(&'a Path),
    /// ONNX bytes in memory (the shipped model, built into the binary), with a name for
    /// messages.
    Bytes {
        /// Shown in errors.
        name: &'a str,
        /// The ONNX model.
        bytes: &'a [u8],
    },
}

impl ModelSource<'_> {
    fn name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Bytes { name, .. } => (*name).to_owned(),
        }
    }
}

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU execution provider (the default).
    #[default]
    Cpu,
    /// CUDA's execution provider; falls back to the CPU with a warning when it cannot start.
    Cuda,
}

/// Why a detector cannot be made or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferenceError {
    /// ONNX Runtime could not be loaded.
    #[error(
        "ONNX Runtime is not available ({reason}); run `source scripts/env.sh && \
         ensure_onnxruntime`, which fetches onnxruntime 1.31.1 from PyPI and sets {ORT_DYLIB_ENV}"
    )]
    Runtime {
        /// Why.
        reason: String,
    },
    /// The model file could not be loaded as an ONNX model.
    #[error("{path}: not a usable ONNX model: {reason}")]
    Model {
        /// The model's path.
        path: String,
        /// ONNX Runtime's reason.
        reason: String,
    },
    /// The model's inputs or outputs are not what its description says.
    #[error("{path}: the model does not match its description: {problem}")]
    Mismatch {
        /// The model's path.
        path: String,
        /// What differs.
        problem: String,
    },
    /// A run failed.
    #[error("inference failed: {0}")]
    Run(String),
}

/// The process's ONNX Runtime environment, loaded once.
fn environment() -> Result<&'static Environment, InferenceError> {
    static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| {
            let path = std::env::var_os(ORT_DYLIB_ENV)
                .ok_or_else(|| format!("{ORT_DYLIB_ENV} is not set"))?;
            if !Path::new(&path).is_file() {
                return Err(format!(
                    "{ORT_DYLIB_ENV}={} is not a file",
                    path.to_string_lossy()
                ));
            }
            ort::init_from(&path)
                .map_err(|e| format!("{}: {e}", path.to_string_lossy()))?
                .with_name("tessera")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|reason| InferenceError::Runtime {
            reason: reason.clone(),
        })
}

/// A model loaded into ONNX Runtime and checked against its description.
#[derive(Debug)]
pub struct Detector {
    session: Session,
    description: ModelDescription,
    /// Windows per run: the model's batch dimension when fixed, else [`Detector::MAX_BATCH`].
    batch: usize,
    /// Whether the model's batch dimension is fixed (every run is exactly `batch` windows).
    fixed_batch: bool,
    /// The output's candidate count `N` of `[batch, 4 + classes, N]`.
    candidates: usize,
    /// The device it actually runs on.
    pub device: Device,
}

impl Detector {
    /// Windows per ONNX Runtime call when the model's batch dimension is dynamic.
    pub const MAX_BATCH: usize = 8;

    /// Loads `model` on `device` with `threads` intra-op threads (0: ONNX Runtime's choice)
    /// and checks it: input `description.input` float32 `[B, 3, size, size]`, first output
    /// float32 `[B, 4 + classes, N]` (YOLOv8 layout).
    ///
    /// # Errors
    /// [`InferenceError::Runtime`], [`InferenceError::Model`] or
    /// [`InferenceError::Mismatch`].
    pub fn open(
        model: ModelSource<'_>,
        description: ModelDescription,
        device: Device,
        threads: usize,
    ) -> Result<Self, InferenceError> {
        let env = environment()?;
        let path = model.name();
        let failed = |e: &dyn std::fmt::Display| InferenceError::Model {
            path: path.clone(),
            reason: e.to_string(),
        };
        let mut builder = Session::builder(env).map_err(|e| failed(&e))?;
        if threads > 0 {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|e| failed(&e))?;
        }
        let mut used = Device::Cpu;
        if device == Device::Cuda {
            match ep::CUDA::default().register(&mut builder) {
                Ok(()) => used = Device::Cuda,
                Err(e) => tracing::warn!("CUDA is not available ({e}); running on the CPU"),
            }
        }
        let session = match model {
            ModelSource::File(file) => builder.commit_from_file(file),
            ModelSource::Bytes { bytes, .. } => builder.commit_from_memory(bytes),
        }
        .map_err(|e| failed(&e))?;
        let mismatch = |problem: String| InferenceError::Mismatch {
            path: path.clone(),
            problem,
        };
        let dims = |shape: Option<&ort::value::Shape>| -> Vec<i64> {
            shape
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default()
        };
        let input = session
            .inputs()
            .iter()
            .find(|i| i.name() == description.input)
            .ok_or_else(|| {
                let names: Vec<&str> = session
                    .inputs()
                    .iter()
                    .map(ort::value::Outlet::name)
                    .collect();
                mismatch(format!(
                    "no input {:?} (it has {names:?})",
                    description.input
                ))
            })?;
        let input_shape = dims(input.dtype().tensor_shape());
        let size = i64::try_from(description.size).unwrap_or(-2);
        match input_shape.as_slice() {
            [b, 3, h, w] if *h == size && *w == size && (*b == -1 || *b >= 1) => {}
            other => {
                return Err(mismatch(format!(
                    "input {:?} is {other:?}, not [batch, 3, {size}, {size}]",
                    description.input
                )));
            }
        }
        let output = session
            .outputs()
            .first()
            .ok_or_else(|| mismatch("no output".into()))?;
        let output_shape = dims(output.dtype().tensor_shape());
        let rows = 4 + description.classes.len();
        let candidates = match output_shape.as_slice() {
            [_, r, n] if usize::try_from(*r).ok() == Some(rows) && *n > 0 => {
                usize::try_from(*n).expect("positive")
            }
            other => {
                return Err(mismatch(format!(
                    "output {:?} is {other:?}, not [batch, {rows}, N] (YOLOv8 layout for {} class(es))",
                    output.name(),
                    description.classes.len()
                )));
            }
        };
        let fixed_batch = input_shape[0] > 0;
        let batch = if fixed_batch {
            usize::try_from(input_shape[0]).expect("positive")
        } else {
            Self::MAX_BATCH
        };
        Ok(Self {
            session,
            description,
            batch,
            fixed_batch,
            candidates,
            device: used,
        })
    }

    /// The model's description.
    #[must_use]
    pub const fn description(&self) -> &ModelDescription {
        &self.description
    }

    /// Windows per ONNX Runtime call.
    #[must_use]
    pub const fn batch(&self) -> usize {
        self.batch
    }

    /// Runs the first `count` (at most [`Detector::batch`]) normalised windows laid out back
    /// to back in `inputs` (float32 `batch × 3 × size × size`,
    /// [`ModelDescription::normalise`]; a model with a fixed batch dimension runs the whole
    /// buffer, the rest padding) and decodes each window's detections in window pixels
    /// ([`decode_yolo`]).
    ///
    /// # Errors
    /// [`InferenceError::Run`].
    pub fn run(
        &mut self,
        inputs: &[f32],
        count: usize,
    ) -> Result<Vec<Vec<Detection>>, InferenceError> {
        let size = self.description.size;
        let run = |e: &dyn std::fmt::Display| InferenceError::Run(e.to_string());
        let plane = 3 * size * size;
        if count > self.batch || inputs.len() < self.batch * plane {
            return Err(InferenceError::Run(format!(
                "{count} window(s) in a buffer of {} values for batches of {}",
                inputs.len(),
                self.batch
            )));
        }
        let runs = if self.fixed_batch { self.batch } else { count };
        let inputs = &inputs[..runs * plane];
        let tensor =
            TensorRef::from_array_view(([runs, 3, size, size], inputs)).map_err(|e| run(&e))?;
        let outputs = self
            .session
            .run(ort::inputs![self.description.input.as_str() => tensor])
            .map_err(|e| run(&e))?;
        let (shape, data) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| run(&e))?;
        let rows = 4 + self.description.classes.len();
        let per_window = rows * self.candidates;
        if data.len() != runs * per_window {
            return Err(InferenceError::Run(format!(
                "output shape {shape:?} for {runs} window(s), expected [{runs}, {rows}, {}]",
                self.candidates
            )));
        }
        data.chunks_exact(per_window)
            .take(count)
            .map(|window| {
                decode_yolo(
                    window,
                    &[1, rows, self.candidates],
                    self.description.classes.len(),
                    size,
                )
                .map_err(|e| run(&e))
            })
            .collect()
    }
}
