//! `tessera detect`: crown detection over GeoTIFFs with the batch backend's detect stage
//! ([`tessera_batch::stages::detect`]), writing COCO JSON and GeoJSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tessera_batch::inference::Device;
use tessera_batch::stages::detect::{
    DetectInput, DetectOptions, detect, preview_names, write_outputs,
};
use tessera_batch::tasks::DetectorChoice;
use tessera_core::detect::{DEFAULT_OVERLAP, DEFAULT_SCORE};
use tessera_core::mosaic::DEFAULT_MAX_INPUT_PIXELS;

use crate::preprocess::collect_inputs;

#[derive(Args)]
pub(crate) struct DetectArgs {
    /// Folder for detections.coco.json, detections.geojson, preview.png (detections drawn)
    /// and item.json (STAC); created if missing.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    detector: DetectorArgs,
    /// Report detections scoring at least this.
    #[arg(long, default_value_t = DEFAULT_SCORE)]
    score: f32,
    /// Window overlap, a fraction of the window side.
    #[arg(long, default_value_t = DEFAULT_OVERLAP)]
    overlap: f64,
    /// GeoTIFF files and folders (searched recursively, hidden entries skipped).
    #[arg(required = true, value_name = "FILES_OR_DIRS")]
    inputs: Vec<PathBuf>,
}

/// The detector's flags, shared by `tessera detect` and `tessera worker`.
#[derive(Args)]
pub(crate) struct DetectorArgs {
    /// An ONNX model, YOLOv8 or torchvision layout, described by a JSON file beside it
    /// (MODEL.onnx → MODEL.json; `model/tessera-crowns.json` is an example) or by its ONNX
    /// metadata key `tessera:model` [default: the shipped tessera-crowns model].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where inference runs; CUDA falls back to the CPU with a warning when unavailable.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// ONNX Runtime's intra-op threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

impl DetectorArgs {
    /// The detector these flags choose.
    pub(crate) fn choice(&self) -> DetectorChoice {
        DetectorChoice {
            model: self.model.clone(),
            device: self.device.into(),
            threads: self.threads,
        }
    }
}

/// `--device`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum DeviceArg {
    Cpu,
    Cuda,
}

impl From<DeviceArg> for Device {
    fn from(device: DeviceArg) -> Self {
        match device {
            DeviceArg::Cpu => Self::Cpu,
            DeviceArg::Cuda => Self::Cuda,
        }
    }
}

/// Runs `tessera detect`: progress in windows per second, then a summary; exit code 1 when
/// any file failed.
pub(crate) fn run(args: &DetectArgs) -> anyhow::Result<ExitCode> {
    // The model is loaded and checked against its description before any input is read.
    let mut detector = args.detector.choice().open()?;
    let inputs: Vec<DetectInput> = collect_inputs(&args.inputs)
        .into_iter()
        .map(|path| DetectInput {
            source: path.display().to_string(),
            path,
        })
        .collect();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let options = DetectOptions {
        score: args.score,
        overlap: args.overlap,
        max_input_pixels: DEFAULT_MAX_INPUT_PIXELS,
        shard: tessera_core::detect::Shard::WHOLE,
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} windows, {per_sec}",
        )
        .expect("valid template"),
    );
    let report = detect(&inputs, &mut detector, &options, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    });
    bar.finish_and_clear();
    let writing = std::time::Instant::now();
    let now = chrono::Utc::now();
    let previews = preview_names(&report);
    write_outputs(
        &report,
        detector.description(),
        &args.out,
        &format!("tessera-detect-{}", now.format("%Y%m%dT%H%M%SZ")),
        &now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        &previews,
    )?;
    let write = writing.elapsed();

    let windows = report.windows;
    println!(
        "{} detection(s) scoring ≥ {} in {} file(s), {windows} window(s), on {:?}",
        report.detections.len(),
        args.score,
        report.files.len(),
        detector.device
    );
    println!("  {}", args.out.join("detections.coco.json").display());
    println!("  {}", args.out.join("detections.geojson").display());
    println!("  {}", args.out.join("item.json").display());
    for (_, preview) in &previews {
        println!("  {}", args.out.join(preview).display());
    }
    let t = report.times;
    let secs = |d: std::time::Duration| format!("{:.2} s", d.as_secs_f64());
    println!(
        "time: read {}, normalise {} (on the reader thread, overlapping inference), infer {}, \
         decode {}, merge {}, write {}",
        secs(t.read),
        secs(t.normalise),
        secs(t.infer),
        secs(t.decode),
        secs(t.merge),
        secs(write)
    );
    if report.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{} file(s) failed:", report.failed.len());
    for (source, reason) in &report.failed {
        eprintln!("  {source}: {reason}");
    }
    Ok(ExitCode::FAILURE)
}
