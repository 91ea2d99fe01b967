//! ONNX Runtime through `ort`: the only module that imports it (ARCHITECTURE.md's house rule).
//!
//! The library is loaded at run time from `ORT_DYLIB_PATH` (`ort`'s `load-dynamic`): the
//! onnxruntime 1.31.1 wheel's `libonnxruntime.so.1.31.1`, which `scripts/env.sh`'s
//! `ensure_onnxruntime` fetches from PyPI and checks by SHA-256. A missing or wrong library is
//! an [`InferenceError::Runtime`] that says what to run.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider as _};
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};
use tessera_core::detect::{
    DESCRIPTION_METADATA_KEY, Detection, ModelDescription, OutputLayout, decode_boxes, decode_yolo,
};

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
    /// The shipped detector, built into the binary (`model/tessera-crowns.onnx`, its card
    /// `model/MODEL.md`), described by [`ModelDescription::tessera_crowns`].
    pub const SHIPPED: ModelSource<'static> = ModelSource::Bytes {
        name: "the shipped model (tessera-crowns.onnx)",
        bytes: include_bytes!("../../model/tessera-crowns.onnx"),
    };

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
    /// Windows per run: the model's batch dimension when fixed, else [`Detector::MAX_BATCH`];
    /// 1 for the torchvision layout.
    batch: usize,
    /// The input's shape for `n` windows: `[n, 3, size, size]`, or `[3, size, size]` for a
    /// torchvision model taking one image.
    input_rank: usize,
    /// Whether the model's batch dimension is fixed (every run is exactly `batch` windows).
    fixed_batch: bool,
    /// Time spent inside ONNX Runtime's `run`, summed over every run.
    infer_time: Duration,
    /// The device it actually runs on.
    pub device: Device,
}

/// An input's or output's dimensions (`-1` for a dynamic one) and element type.
fn signature(outlet: &ort::value::Outlet) -> (Vec<i64>, Option<TensorElementType>) {
    let dtype = outlet.dtype();
    (
        dtype
            .tensor_shape()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default(),
        dtype.tensor_type(),
    )
}

impl Detector {
    /// Windows per ONNX Runtime call when the model's batch dimension is dynamic.
    pub const MAX_BATCH: usize = 8;

    /// Loads `model` on `device` with `threads` intra-op threads (0: ONNX Runtime's choice)
    /// and checks it against its description before anything else is read: `description`
    /// when given (the shipped model's), else the `.json` file beside a model file (the
    /// model's path with the extension `json`), else the model's ONNX metadata under
    /// [`DESCRIPTION_METADATA_KEY`]. Checked: the input `description.input` is float32
    /// `[batch, 3, size, size]` (or `[3, size, size]` for the torchvision layout; dynamic
    /// dimensions accepted), and the outputs are the layout's ([`OutputLayout`]).
    ///
    /// # Errors
    /// [`InferenceError::Runtime`], [`InferenceError::Model`] (not ONNX, or no usable
    /// description) or [`InferenceError::Mismatch`].
    pub fn open(
        model: ModelSource<'_>,
        description: Option<ModelDescription>,
        device: Device,
        threads: usize,
    ) -> Result<Self, InferenceError> {
        let env = environment()?;
        let path = model.name();
        let failed = |e: &dyn std::fmt::Display| InferenceError::Model {
            path: path.clone(),
            reason: e.to_string(),
        };
        let beside = match (&description, model) {
            (None, ModelSource::File(file)) => {
                let json = file.with_extension("json");
                match std::fs::read(&json) {
                    Ok(bytes) => Some(ModelDescription::from_json(&bytes).map_err(|e| {
                        failed(&format!("its description {}: {e}", json.display()))
                    })?),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(failed(&format!("reading {}: {e}", json.display()))),
                }
            }
            _ => None,
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
        let description = match description.or(beside) {
            Some(d) => d,
            None => {
                let json = session
                    .metadata()
                    .ok()
                    .and_then(|m| m.custom(DESCRIPTION_METADATA_KEY))
                    .ok_or_else(|| {
                        let beside = match model {
                            ModelSource::File(file) => file.with_extension("json"),
                            ModelSource::Bytes { .. } => "a .json file".into(),
                        };
                        failed(&format!(
                            "no model description: write one to {} (model/tessera-crowns.json \
                             is an example) or into the ONNX metadata under {DESCRIPTION_METADATA_KEY:?}",
                            beside.display()
                        ))
                    })?;
                ModelDescription::from_json(json.as_bytes()).map_err(|e| {
                    failed(&format!(
                        "its description in the ONNX metadata ({DESCRIPTION_METADATA_KEY}): {e}"
                    ))
                })?
            }
        };
        description.check().map_err(|e| failed(&e))?;
        let mismatch = |problem: String| InferenceError::Mismatch {
            path: path.clone(),
            problem,
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
        let (input_shape, input_type) = signature(input);
        let size = i64::try_from(description.size).unwrap_or(-2);
        let side = |d: i64| d == size || d == -1;
        let torchvision = matches!(description.layout, OutputLayout::Torchvision { .. });
        // The batch dimension: -1 when dynamic; 1 for a torchvision model's `[3, size, size]`.
        let batch_dim = match input_shape.as_slice() {
            [b, 3, h, w] if side(*h) && side(*w) && (*b == -1 || *b >= 1) => Some(*b),
            [3, h, w] if torchvision && side(*h) && side(*w) => Some(1),
            _ => None,
        };
        let batch_dim = match batch_dim {
            Some(b) if input_type == Some(TensorElementType::Float32) => b,
            _ => {
                let expected = if torchvision {
                    format!("float32 [3, {size}, {size}] or [1, 3, {size}, {size}]")
                } else {
                    format!("float32 [batch, 3, {size}, {size}]")
                };
                return Err(mismatch(format!(
                    "input {:?} is {input_type:?} {input_shape:?}, not {expected}",
                    description.input
                )));
            }
        };
        let classes = description.classes.len();
        let output = |name: &str| {
            session
                .outputs()
                .iter()
                .find(|o| o.name() == name)
                .map(signature)
                .ok_or_else(|| {
                    let names: Vec<&str> = session
                        .outputs()
                        .iter()
                        .map(ort::value::Outlet::name)
                        .collect();
                    mismatch(format!("no output {name:?} (it has {names:?})"))
                })
        };
        let (batch, fixed_batch) = match &description.layout {
            OutputLayout::Yolov8 => {
                let first = session
                    .outputs()
                    .first()
                    .ok_or_else(|| mismatch("no output".into()))?;
                let rows = i64::try_from(4 + classes).unwrap_or(-2);
                match signature(first) {
                    (shape, Some(TensorElementType::Float32)) if matches!(shape.as_slice(), [_, r, n] if *r == rows && *n != 0) =>
                        {}
                    (shape, ty) => {
                        return Err(mismatch(format!(
                            "output {:?} is {ty:?} {shape:?}, not float32 [batch, {rows}, N] \
                             (YOLOv8 layout for {classes} class(es))",
                            first.name()
                        )));
                    }
                }
                match usize::try_from(batch_dim) {
                    Ok(b) => (b, true),
                    Err(_) => (Self::MAX_BATCH, false),
                }
            }
            OutputLayout::Torchvision {
                boxes,
                scores,
                labels,
            } => {
                let expect = |name: &str,
                              want: TensorElementType,
                              rank: usize,
                              last: Option<i64>|
                 -> Result<(), InferenceError> {
                    let (shape, ty) = output(name)?;
                    let fits = ty == Some(want)
                        && shape.len() == rank
                        && last.is_none_or(|l| shape.last() == Some(&l));
                    if fits {
                        Ok(())
                    } else {
                        let dims = if rank == 2 { "[N, 4]" } else { "[N]" };
                        Err(mismatch(format!(
                            "output {name:?} is {ty:?} {shape:?}, not {want:?} {dims} \
                             (torchvision layout)"
                        )))
                    }
                };
                expect(boxes, TensorElementType::Float32, 2, Some(4))?;
                expect(scores, TensorElementType::Float32, 1, None)?;
                expect(labels, TensorElementType::Int64, 1, None)?;
                if batch_dim > 1 {
                    return Err(mismatch(format!(
                        "input {:?} is {input_shape:?}: the torchvision layout takes one image",
                        description.input
                    )));
                }
                (1, true)
            }
        };
        Ok(Self {
            session,
            description,
            batch,
            input_rank: input_shape.len(),
            fixed_batch,
            infer_time: Duration::ZERO,
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

    /// Time spent inside ONNX Runtime so far (the rest of [`Detector::run`] is decoding).
    #[must_use]
    pub const fn infer_time(&self) -> Duration {
        self.infer_time
    }

    /// Runs the first `count` (at most [`Detector::batch`]) normalised windows laid out back
    /// to back in `inputs` (float32 `batch × 3 × size × size`,
    /// [`ModelDescription::normalise`]; a model with a fixed batch dimension runs the whole
    /// buffer, the rest padding) and decodes each window's detections in window pixels
    /// ([`decode_yolo`] or [`decode_boxes`], per the layout).
    ///
    /// # Errors
    /// [`InferenceError::Run`].
    pub fn run(
        &mut self,
        inputs: &[f32],
        count: usize,
    ) -> Result<Vec<Vec<Detection>>, InferenceError> {
        let size = self.description.size;
        let classes = self.description.classes.len();
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
        let tensor = if self.input_rank == 3 {
            TensorRef::from_array_view(([3, size, size], inputs))
        } else {
            TensorRef::from_array_view(([runs, 3, size, size], inputs))
        }
        .map_err(|e| run(&e))?;
        let started = Instant::now();
        let outputs = self
            .session
            .run(ort::inputs![self.description.input.as_str() => tensor])
            .map_err(|e| run(&e))?;
        self.infer_time += started.elapsed();
        match &self.description.layout {
            OutputLayout::Yolov8 => {
                let (shape, data) = outputs[0]
                    .try_extract_tensor::<f32>()
                    .map_err(|e| run(&e))?;
                let rows = 4 + classes;
                let candidates = shape
                    .get(2)
                    .and_then(|&n| usize::try_from(n).ok())
                    .unwrap_or(0);
                let per_window = rows * candidates;
                if per_window == 0 || data.len() != runs * per_window {
                    return Err(InferenceError::Run(format!(
                        "output shape {shape:?} for {runs} window(s), expected [{runs}, {rows}, N]"
                    )));
                }
                data.chunks_exact(per_window)
                    .take(count)
                    .map(|window| {
                        decode_yolo(window, &[1, rows, candidates], classes, size)
                            .map_err(|e| run(&e))
                    })
                    .collect()
            }
            OutputLayout::Torchvision {
                boxes,
                scores,
                labels,
            } => {
                let tensor = |name: &str| {
                    outputs
                        .get(name)
                        .ok_or_else(|| InferenceError::Run(format!("no output {name:?}")))
                };
                let (_, b) = tensor(boxes)?
                    .try_extract_tensor::<f32>()
                    .map_err(|e| run(&e))?;
                let (_, s) = tensor(scores)?
                    .try_extract_tensor::<f32>()
                    .map_err(|e| run(&e))?;
                let (_, l) = tensor(labels)?
                    .try_extract_tensor::<i64>()
                    .map_err(|e| run(&e))?;
                Ok(vec![
                    decode_boxes(b, s, l, classes, size).map_err(|e| run(&e))?,
                ])
            }
        }
    }
}
