//! `tessera detect`: crown detection over GeoTIFFs with the batch backend's detect stage
//! ([`tessera_batch::stages::detect`]), writing COCO JSON and GeoJSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tessera_batch::inference::{Detector, Device, ModelSource};
use tessera_batch::raster;
use tessera_batch::stages::detect::{
    DetectInput, DetectOptions, DetectReport, detect, write_preview,
};
use tessera_core::detect::{DEFAULT_OVERLAP, DEFAULT_SCORE, ModelDescription};
use tessera_core::mosaic::DEFAULT_MAX_INPUT_PIXELS;
use tessera_core::results::{
    CocoDetection, CocoImage, GeoFeature, StacRaster, coco, geojson, stac_item,
};

use crate::preprocess::collect_inputs;

/// The shipped detector, built into the binary (`model/tessera-crowns.onnx`, its card
/// `model/MODEL.md`).
const SHIPPED_MODEL: &[u8] = include_bytes!("../../../../model/tessera-crowns.onnx");

#[derive(Args)]
pub(crate) struct DetectArgs {
    /// Folder for detections.coco.json, detections.geojson, preview.png (detections drawn)
    /// and item.json (STAC); created if missing.
    #[arg(long)]
    out: PathBuf,
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

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
}

/// Runs `tessera detect`: progress in windows per second, then a summary; exit code 1 when
/// any file failed.
pub(crate) fn run(args: &DetectArgs) -> anyhow::Result<ExitCode> {
    let device = match args.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => Device::Cuda,
    };
    let (source, description) = match &args.model {
        Some(path) => (ModelSource::File(path), None),
        None => (
            ModelSource::Bytes {
                name: "the shipped model (tessera-crowns.onnx)",
                bytes: SHIPPED_MODEL,
            },
            Some(ModelDescription::tessera_crowns()),
        ),
    };
    // The model is loaded and checked against its description before any input is read.
    let mut detector = Detector::open(source, description, device, args.threads)?;
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
    let previews = write_outputs(&report, detector.description(), &args.out)?;
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
    for preview in &previews {
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

/// `detections.coco.json`, `detections.geojson` (georeferenced files only), a preview PNG
/// per group of files run together (`preview.png`, or `preview-N.png` when there are
/// several) and `item.json` (a STAC Item of the georeferenced rasters with the others as
/// assets) in `out`. Returns the previews' names.
fn write_outputs(
    report: &DetectReport,
    model: &ModelDescription,
    out: &std::path::Path,
) -> anyhow::Result<Vec<String>> {
    let images: Vec<CocoImage> = report
        .files
        .iter()
        .map(|f| CocoImage {
            file_name: f.source.clone(),
            width: f.width,
            height: f.height,
            crs: f.crs.as_ref().map(|c| c.id.clone()),
            geotransform: f.geotransform,
        })
        .collect();
    let detections: Vec<CocoDetection> = report
        .detections
        .iter()
        .map(|p| CocoDetection {
            image: p.source,
            bbox: p.pixel,
            score: p.world.score,
            class: p.world.class,
        })
        .collect();
    let coco_json = coco(&images, &detections, &model.classes);
    std::fs::write(
        out.join("detections.coco.json"),
        serde_json::to_vec(&coco_json)?,
    )?;

    let mut features = Vec::new();
    for p in &report.detections {
        let file = &report.files[p.source];
        let (Some(crs), Some(gt)) = (&file.crs, file.geotransform) else {
            continue;
        };
        let [x1, y1, x2, y2] = p.pixel;
        let corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)].map(|(c, r)| gt.apply(c, r));
        let lonlat = raster::to_wgs84(&corners, crs)?;
        features.push(GeoFeature {
            corners: [lonlat[0], lonlat[1], lonlat[2], lonlat[3]],
            score: p.world.score,
            class: model.classes[p.world.class].clone(),
            source: file.source.clone(),
            pixel_bbox: p.pixel,
        });
    }
    std::fs::write(
        out.join("detections.geojson"),
        serde_json::to_vec(&geojson(&features))?,
    )?;

    let mut rasters = Vec::new();
    for f in &report.files {
        let (Some(crs), Some(gt)) = (&f.crs, f.geotransform) else {
            continue;
        };
        let (w, h) = (f.width as f64, f.height as f64);
        let corners = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)].map(|(c, r)| gt.apply(c, r));
        let lonlat = raster::to_wgs84(&corners, crs)?;
        rasters.push(StacRaster {
            href: f.source.clone(),
            crs: crs.id.clone(),
            size: (f.width, f.height),
            geotransform: gt,
            footprint: [lonlat[0], lonlat[1], lonlat[2], lonlat[3]],
        });
    }
    let previews: Vec<String> = (0..report.groups.len())
        .map(|g| {
            if report.groups.len() == 1 {
                "preview.png".to_owned()
            } else {
                format!("preview-{}.png", g + 1)
            }
        })
        .collect();
    for (g, name) in previews.iter().enumerate() {
        write_preview(report, g, &out.join(name))?;
    }
    let now = chrono::Utc::now();
    let id = format!("tessera-detect-{}", now.format("%Y%m%dT%H%M%SZ"));
    let item = stac_item(
        &id,
        &now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        &rasters,
        "detections.coco.json",
        "detections.geojson",
        &previews,
    );
    std::fs::write(out.join("item.json"), serde_json::to_vec_pretty(&item)?)?;
    Ok(previews)
}
