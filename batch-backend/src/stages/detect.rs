//! The detect stage: crown detection over GeoTIFFs of any size. Orchestration only: windows,
//! decoding and merging are [`tessera_core::detect`]'s, pixels are GDAL's
//! ([`crate::raster`]), inference is ONNX Runtime's ([`crate::inference`]).
//!
//! Each file is read window by window (8-bit RGB: Byte data as it is, other types stretched
//! as the mosaic's rendition) on a reader thread that fills batches of normalised windows
//! into a bounded queue, while this thread runs them through the model: reading overlaps
//! inference and memory holds at most [`QUEUED_BATCHES`] batches, whatever the raster's size.
//! Detections of every window and file are merged in world coordinates. A bad file is
//! reported and never stops the others. A raster whose ground sampling distance lies outside
//! the model's range is read at the range's nearest end ([`ModelDescription::scale_for`]):
//! windows of `scale × size` raster pixels, resampled by GDAL to the model's size.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tessera_core::detect::{
    Detection, ModelDescription, Placed, Shard, Window, merge, window_grid,
};
use tessera_core::mosaic::{
    Crs, GRID_TOLERANCE_PX, GeoTransform, MosaicGrid, PREVIEW_MAX_SIDE, Placement, RasterProbe,
    Rendition, Resolution, SampleType, fit_within,
};
use tessera_core::results::{
    CocoDetection, CocoImage, GeoFeature, StacRaster, coco, draw_boxes, geojson, stac_item,
};

use crate::inference::Detector;
use crate::raster::{self, GdalRaster, Raster};

/// Batches the reader may have ready ahead of inference.
pub const QUEUED_BATCHES: usize = 2;

/// One input file.
#[derive(Debug, Clone)]
pub struct DetectInput {
    /// The file on disk.
    pub path: PathBuf,
    /// Its object key, or the path as given.
    pub source: String,
}

/// What the stage is asked.
#[derive(Debug, Clone, Copy)]
pub struct DetectOptions {
    /// Detections scoring below this are not reported.
    pub score: f32,
    /// Window overlap, a fraction of the window side.
    pub overlap: f64,
    /// Per-input pixel limit.
    pub max_input_pixels: u64,
    /// The part of each raster's windows to run ([`Shard::WHOLE`]: all of them).
    pub shard: Shard,
}

/// A file that was run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetectedFile {
    /// Its name ([`DetectInput::source`]).
    pub source: String,
    /// The file on disk.
    pub path: PathBuf,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Its CRS, when georeferenced.
    pub crs: Option<Crs>,
    /// Its geotransform, when georeferenced.
    pub geotransform: Option<GeoTransform>,
    /// Its band count and sample type.
    pub kind: (usize, SampleType),
    /// Its ground sampling distance in metres per pixel, when georeferenced
    /// ([`raster::gsd_m`]).
    pub gsd_m: Option<f64>,
    /// Raster pixels per model pixel: 1 unless its GSD lies outside the model's range
    /// ([`ModelDescription::scale_for`]).
    pub scale: f64,
}

/// The stage's result. A shard's report ([`run_windows`]) is written as JSON for the task
/// that combines the shards ([`combine`]); previews and times stay with the process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DetectReport {
    /// Files run, in the order given; [`Placed::source`] indexes this list.
    pub files: Vec<DetectedFile>,
    /// Merged detections scoring at least the threshold, best first (before
    /// [`merge_detections`]: every window's candidates at least the threshold). North-up
    /// georeferenced files' boxes are in their CRS; rotated and non-georeferenced files' in
    /// their pixels (y down), merged only within the file.
    pub detections: Vec<Placed>,
    /// Files that failed: name and reason.
    pub failed: Vec<(String, String)>,
    /// The files run together (indices into `files`): one virtual mosaic per group.
    pub groups: Vec<Vec<usize>>,
    /// Each group's preview, without the detections drawn ([`write_preview`] draws them).
    #[serde(skip)]
    pub previews: Vec<Preview>,
    /// Windows run.
    pub windows: usize,
    /// Where the time went.
    #[serde(skip)]
    pub times: StageTimes,
}

/// Time per stage of a run, summed over windows. Reading and normalising run on the reader
/// thread, overlapped with inference and decoding on the caller's: their sum exceeds the wall
/// time when the overlap works.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// GDAL reads of windows (and the stretch's sample) to 8-bit RGB, and the preview's
    /// averaging of them.
    pub read: Duration,
    /// 8-bit RGB to the model's float input.
    pub normalise: Duration,
    /// ONNX Runtime's `run`.
    pub infer: Duration,
    /// Decoding and per-window NMS, and placing boxes in raster and world coordinates.
    pub decode: Duration,
    /// The world-coordinate merge across windows and files.
    pub merge: Duration,
}

/// Progress: windows done so far, of all windows of the files opened so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectProgress {
    /// Windows run.
    pub done: usize,
    /// Windows known.
    pub total: usize,
}

/// Runs `detector` over every input. Georeferenced files that share a CRS, a pixel size, a
/// band count and a sample type are run as one virtual mosaic (a VRT over the files), so
/// windows cross the seams between files and a crown on a seam is seen whole; every other
/// file is run alone. [`run_windows`], then [`merge_detections`].
pub fn detect(
    inputs: &[DetectInput],
    detector: &mut Detector,
    options: &DetectOptions,
    progress: &mut dyn FnMut(DetectProgress),
) -> DetectReport {
    let mut report = run_windows(inputs, detector, options, progress);
    merge_detections(&mut report);
    report
}

/// Runs `options.shard`'s part of every input's windows: the report's detections are every
/// such window's candidates scoring at least `options.score`, not yet merged. Shards of one
/// run go together through [`combine`]; the whole run through [`merge_detections`].
pub fn run_windows(
    inputs: &[DetectInput],
    detector: &mut Detector,
    options: &DetectOptions,
    progress: &mut dyn FnMut(DetectProgress),
) -> DetectReport {
    let mut report = DetectReport::default();
    for input in inputs {
        let opened = GdalRaster::open(&input.path, options.max_input_pixels)
            .map_err(|p| p.to_string())
            .and_then(|raster| {
                let probe = raster.probe();
                let gsd_m = raster::gsd_m(probe).map_err(|e| format!("{e:#}"))?;
                Ok(DetectedFile {
                    source: input.source.clone(),
                    path: input.path.clone(),
                    width: probe.width,
                    height: probe.height,
                    crs: probe.crs.clone(),
                    geotransform: probe.geotransform,
                    kind: (probe.bands, probe.sample_type),
                    gsd_m,
                    scale: detector.description().scale_for(gsd_m),
                })
            });
        match opened {
            Ok(file) => report.files.push(file),
            Err(problem) => report.failed.push((input.source.clone(), problem)),
        }
    }
    let mut counts = DetectProgress { done: 0, total: 0 };
    for group in groups(&report.files) {
        let run = run_group(
            &group,
            &report.files,
            detector,
            options,
            &mut counts,
            &mut report.times,
            progress,
        );
        match run {
            Ok((found, preview)) => {
                report.previews.push(preview);
                // Below the threshold nothing is reported or suppresses anything (as SAHI
                // and DeepForest filter before merging).
                let kept = found.into_iter().filter(|p| p.world.score >= options.score);
                report.detections.extend(kept);
            }
            Err(e) => {
                for &i in &group {
                    report
                        .failed
                        .push((report.files[i].source.clone(), format!("{e:#}")));
                }
                continue;
            }
        }
        report.groups.push(group);
    }
    report.windows = counts.total;
    report
}

/// Merges the report's candidates ([`run_windows`]) within each frame (one CRS, or one
/// non-georeferenced or rotated file's pixels) with [`merge`], best first.
pub fn merge_detections(report: &mut DetectReport) {
    let merging = Instant::now();
    let frame = |p: &Placed| {
        let file = &report.files[p.source];
        match (&file.crs, file.geotransform) {
            (Some(crs), Some(gt)) if gt.is_north_up() => crs.id.clone(),
            _ => format!("pixels of {}", file.source),
        }
    };
    let mut candidates: Vec<(String, Placed)> = std::mem::take(&mut report.detections)
        .into_iter()
        .map(|p| (frame(&p), p))
        .collect();
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged = Vec::new();
    let mut rest = candidates.as_slice();
    while let Some((frame, _)) = rest.first() {
        let n = rest.iter().take_while(|(f, _)| f == frame).count();
        merged.extend(merge(rest[..n].iter().map(|(_, p)| p.clone()).collect()));
        rest = &rest[n..];
    }
    merged.sort_by(|a, b| b.world.score.total_cmp(&a.world.score));
    report.detections = merged;
    report.times.merge += merging.elapsed();
}

/// One report of several runs' reports ([`run_windows`] or [`detect`]): the shards of one
/// mosaic, and photos run one by one. Files are taken once by their source (the shards of a
/// mosaic name the same file), each report's detections and groups pointed at them, windows
/// summed, failures kept once, and every candidate merged again ([`merge_detections`]; an
/// already merged set merges to itself), so the shards of a run give the same detections as
/// one run of every window. `None` without reports. Previews are not carried: set them after.
#[must_use]
pub fn combine(reports: Vec<DetectReport>) -> Option<DetectReport> {
    let mut reports = reports.into_iter();
    let mut whole = reports.next()?;
    for report in reports {
        let index: Vec<usize> = report
            .files
            .into_iter()
            .map(|file| {
                whole
                    .files
                    .iter()
                    .position(|f| f.source == file.source)
                    .unwrap_or_else(|| {
                        whole.files.push(file);
                        whole.files.len() - 1
                    })
            })
            .collect();
        for group in report.groups {
            let group: Vec<usize> = group.into_iter().map(|i| index[i]).collect();
            if !whole.groups.contains(&group) {
                whole.groups.push(group);
            }
        }
        whole
            .detections
            .extend(report.detections.into_iter().map(|mut p| {
                p.source = index[p.source];
                p
            }));
        whole.windows += report.windows;
        for failure in report.failed {
            if !whole.failed.contains(&failure) {
                whole.failed.push(failure);
            }
        }
    }
    merge_detections(&mut whole);
    Some(whole)
}

/// Files that run together: georeferenced north-up files with the same CRS, pixel size (to
/// [`GRID_TOLERANCE_PX`] of a pixel), bands and sample type form one group, in the order
/// given; any other file is a group of its own.
fn groups(files: &[DetectedFile]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let joins = |g: &Vec<usize>| {
            let first = &files[g[0]];
            match (
                f.crs.as_ref(),
                f.geotransform,
                first.crs.as_ref(),
                first.geotransform,
            ) {
                (Some(a), Some(ga), Some(b), Some(gb)) if ga.is_north_up() && gb.is_north_up() => {
                    let (wa, ha) = ga.pixel_size();
                    let (wb, hb) = gb.pixel_size();
                    a == b
                        && (wa - wb).abs() <= GRID_TOLERANCE_PX * wb
                        && (ha - hb).abs() <= GRID_TOLERANCE_PX * hb
                        && f.kind == first.kind
                }
                _ => false,
            }
        };
        match groups.iter_mut().find(|g| joins(g)) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// One batch of normalised windows, ready for the model, and the time the reader took.
struct Batch {
    windows: Vec<Window>,
    pixels: Vec<f32>,
    read: Duration,
    normalise: Duration,
}

/// Runs one group: the file itself, or the group's virtual mosaic. Each detection is given
/// to the file it lies in (the last of the group containing its box's centre, as the VRT's
/// "last wins") with its box in that file's pixels.
fn run_group(
    group: &[usize],
    files: &[DetectedFile],
    detector: &mut Detector,
    options: &DetectOptions,
    counts: &mut DetectProgress,
    times: &mut StageTimes,
    progress: &mut dyn FnMut(DetectProgress),
) -> anyhow::Result<(Vec<Placed>, Preview)> {
    let raster = open_group(group, files, options.max_input_pixels)?;
    let probe = raster.probe().clone();
    let scale = files[group[0]].scale;
    let (found, preview) = run_raster(raster, scale, detector, options, counts, times, progress)?;
    let found = found
        .into_iter()
        .map(|d| assign(d, &probe, group, files))
        .collect();
    Ok((found, preview))
}

/// A group's raster: the file itself, or a virtual mosaic of the group's files on the grid
/// they share.
fn open_group(
    group: &[usize],
    files: &[DetectedFile],
    max_input_pixels: u64,
) -> anyhow::Result<GdalRaster> {
    Ok(if let [only] = group {
        GdalRaster::open(&files[*only].path, max_input_pixels)
            .map_err(|p| anyhow::anyhow!("{p}"))?
    } else {
        let placements: Vec<Placement> = group
            .iter()
            .map(|&i| {
                let gt = files[i]
                    .geotransform
                    .expect("grouped files are georeferenced");
                Placement {
                    footprint: gt.bounds(files[i].width, files[i].height),
                    pixel_size: gt.pixel_size(),
                    native: Some(gt),
                }
            })
            .collect();
        let grid = MosaicGrid::plan(&placements, Resolution::Highest);
        let group_paths: Vec<PathBuf> = group.iter().map(|&i| files[i].path.clone()).collect();
        GdalRaster::virtual_mosaic(&group_paths, &grid)?
    })
}

/// A group's raster as the detector saw it (8-bit RGB per its [`Rendition`]), averaged down to fit
/// [`PREVIEW_MAX_SIDE`] from the windows as they were read (no second read of the raster).
#[derive(Debug, Clone)]
pub struct Preview {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The group raster's width and height in pixels.
    raster: (usize, usize),
    /// Per cell: the sums of R, G and B, then the count of raster samples.
    sums: Vec<[u32; 4]>,
}

impl Preview {
    /// The preview of a `raster` (width, height) that is already drawn: `rgb`, 8-bit RGB,
    /// `width × height × 3` (HWC), as the stitch stage writes it.
    ///
    /// # Panics
    /// When `rgb` is not `width × height × 3` bytes.
    #[must_use]
    pub fn of_image(rgb: &[u8], width: usize, height: usize, raster: (usize, usize)) -> Self {
        assert_eq!(
            rgb.len(),
            width * height * 3,
            "an RGB image of {width} × {height}"
        );
        Self {
            width,
            height,
            raster,
            sums: rgb
                .chunks_exact(3)
                .map(|px| [px[0].into(), px[1].into(), px[2].into(), 1])
                .collect(),
        }
    }

    fn new(raster_width: usize, raster_height: usize) -> Self {
        let (width, height) = fit_within(raster_width, raster_height, PREVIEW_MAX_SIDE);
        Self {
            width,
            height,
            raster: (raster_width, raster_height),
            sums: vec![[0; 4]; width * height],
        }
    }

    /// Adds the top-left `valid` pixels of a model window `rgb` (`size × size × 3`, HWC) read
    /// from raster `window`: each sample goes to the preview cell holding its centre (a box
    /// filter; pixels under overlapping windows count once per window).
    fn add(&mut self, window: &Window, size: usize, rgb: &[u8], valid: (usize, usize)) {
        let k = window.size as f64 / size as f64;
        let cells = |n: usize, origin: usize, extent: usize, cells: usize| -> Vec<usize> {
            let s = cells as f64 / extent as f64;
            (0..n)
                .map(|i| {
                    let centre = origin as f64 + (i as f64 + 0.5) * k;
                    ((centre * s) as usize).min(cells - 1)
                })
                .collect()
        };
        let cols = cells(valid.0, window.x, self.raster.0, self.width);
        let rows = cells(valid.1, window.y, self.raster.1, self.height);
        for (r, &row) in rows.iter().enumerate() {
            for (c, &col) in cols.iter().enumerate() {
                let px = &rgb[(r * size + c) * 3..][..3];
                let cell = &mut self.sums[row * self.width + col];
                cell[0] += u32::from(px[0]);
                cell[1] += u32::from(px[1]);
                cell[2] += u32::from(px[2]);
                cell[3] += 1;
            }
        }
    }

    /// 8-bit RGB, `width × height × 3` (HWC): each cell's mean.
    fn rgb(&self) -> Vec<u8> {
        self.sums
            .iter()
            .flat_map(|&[r, g, b, n]| {
                let n = n.max(1);
                [r, g, b].map(|v| u8::try_from((v + n / 2) / n).unwrap_or(u8::MAX))
            })
            .collect()
    }
}

/// Writes the preview of `report`'s group `g` to `out` as a PNG: [`Preview`] with the
/// reported detections outlined ([`draw_boxes`]).
///
/// # Errors
/// GDAL's, writing the PNG.
pub fn write_preview(report: &DetectReport, g: usize, out: &Path) -> anyhow::Result<()> {
    let (group, preview) = (&report.groups[g], &report.previews[g]);
    let first = &report.files[group[0]];
    let (sx, sy) = (
        preview.width as f64 / preview.raster.0 as f64,
        preview.height as f64 / preview.raster.1 as f64,
    );
    // The group raster's geotransform: the files' shared north-up grid, from its bounds.
    let grid_origin = (group.len() > 1).then(|| {
        let gt = first.geotransform.expect("grouped files are georeferenced");
        let (west, north) = group
            .iter()
            .map(|&i| {
                let b = report.files[i]
                    .geotransform
                    .expect("georeferenced")
                    .bounds(report.files[i].width, report.files[i].height);
                (b.min_x, b.max_y)
            })
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(w, n), (x, y)| {
                (w.min(x), n.max(y))
            });
        (west, north, gt.pixel_size())
    });
    let boxes: Vec<[f64; 4]> = report
        .detections
        .iter()
        .filter(|p| group.contains(&p.source))
        .map(|p| {
            // In the group raster's pixels: the file's own for a group of one (rotated
            // rasters included), else from world coordinates on the shared north-up grid.
            let [x1, y1, x2, y2] = match grid_origin {
                None => p.pixel,
                Some((west, north, (pw, ph))) => {
                    let [a, b, c, d] = p.world.bbox;
                    [
                        (a - west) / pw,
                        (north - d) / ph,
                        (c - west) / pw,
                        (north - b) / ph,
                    ]
                }
            };
            [x1 * sx, y1 * sy, x2 * sx, y2 * sy]
        })
        .collect();
    let mut rgb = preview.rgb();
    // Two pixels wide, one when the preview is reduced more than twofold (small crowns).
    let thickness = if sx >= 0.5 { 2 } else { 1 };
    draw_boxes(&mut rgb, preview.width, preview.height, &boxes, thickness);
    raster::write_png(&rgb, preview.width, preview.height, out)
}

/// Runs every window of `raster`, each `scale` × the model's size in raster pixels, read at the
/// model's size; detections in its pixels (`pixel`) and world coordinates, and its preview.
fn run_raster(
    raster: GdalRaster,
    scale: f64,
    detector: &mut Detector,
    options: &DetectOptions,
    counts: &mut DetectProgress,
    times: &mut StageTimes,
    progress: &mut dyn FnMut(DetectProgress),
) -> anyhow::Result<(Vec<Placed>, Preview)> {
    let probe = raster.probe().clone();
    let description = detector.description().clone();
    let size = description.size;
    let side = ((size as f64 * scale).round() as usize).max(1);
    let mut grid = window_grid(probe.width, probe.height, side, options.overlap);
    let part = options.shard.windows(grid.len());
    grid.truncate(part.end);
    grid.drain(..part.start);
    counts.total += grid.len();
    let batch_size = detector.batch();
    let (send, receive) = mpsc::sync_channel::<anyhow::Result<Batch>>(QUEUED_BATCHES);
    let mut found = Vec::new();
    let extent = (probe.width, probe.height);
    let preview = std::thread::scope(|scope| -> anyhow::Result<Preview> {
        // The reader owns the dataset (GDAL handles are not shared between threads): GDAL
        // reads and normalisation, at most QUEUED_BATCHES ahead of the model. Dropping
        // `receive` stops it.
        let reader = scope.spawn(move || {
            let plane = 3 * size * size;
            let started = Instant::now();
            let mut preview = Preview::new(extent.0, extent.1);
            let rgb = match RgbReader::new(&raster, &description) {
                Ok(rgb) => rgb,
                Err(e) => {
                    drop(send.send(Err(e)));
                    return preview;
                }
            };
            let mut read_time = started.elapsed();
            let mut window_rgb = vec![0u8; size * size * 3];
            for chunk in grid.chunks(batch_size) {
                let mut pixels = vec![0.0f32; batch_size * plane];
                let mut read = Ok(());
                let mut normalise_time = Duration::ZERO;
                for (i, window) in chunk.iter().enumerate() {
                    let started = Instant::now();
                    read = rgb.read(window, size, &mut window_rgb).map(|valid| {
                        preview.add(window, size, &window_rgb, valid);
                    });
                    read_time += started.elapsed();
                    if read.is_err() {
                        break;
                    }
                    let started = Instant::now();
                    description.normalise(&window_rgb, &mut pixels[i * plane..(i + 1) * plane]);
                    normalise_time += started.elapsed();
                }
                let failed = read.is_err();
                let batch = read.map(|()| Batch {
                    windows: chunk.to_vec(),
                    pixels,
                    read: std::mem::take(&mut read_time),
                    normalise: normalise_time,
                });
                if send.send(batch).is_err() || failed {
                    return preview;
                }
            }
            preview
        });
        for batch in receive {
            let batch = batch?;
            times.read += batch.read;
            times.normalise += batch.normalise;
            let (started, inferred) = (Instant::now(), detector.infer_time());
            let per_window = detector.run(&batch.pixels, batch.windows.len())?;
            for (window, detections) in batch.windows.iter().zip(per_window) {
                found.extend(
                    detections
                        .into_iter()
                        .map(|d| place(d, *window, size, &probe)),
                );
            }
            let infer = detector.infer_time() - inferred;
            times.infer += infer;
            times.decode += started.elapsed().saturating_sub(infer);
            counts.done += batch.windows.len();
            progress(*counts);
        }
        Ok(reader.join().expect("the reader thread does not panic"))
    })?;
    Ok((found, preview))
}

/// Gives a detection of a group's raster to one of the group's files.
fn assign(mut p: Placed, probe: &RasterProbe, group: &[usize], files: &[DetectedFile]) -> Placed {
    let (Some(_), Some(gt)) = (&probe.crs, probe.geotransform) else {
        p.source = group[0];
        return p;
    };
    let [x1, y1, x2, y2] = p.world.bbox;
    let centre = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    let owner = group
        .iter()
        .rev()
        .copied()
        .find(|&i| {
            let b = files[i]
                .geotransform
                .expect("georeferenced")
                .bounds(files[i].width, files[i].height);
            (b.min_x..=b.max_x).contains(&centre.0) && (b.min_y..=b.max_y).contains(&centre.1)
        })
        .unwrap_or(group[0]);
    p.source = owner;
    if group.len() > 1 {
        // From the group raster's pixels to the owner's: both north-up on one CRS.
        let own = files[owner].geotransform.expect("georeferenced");
        let (pw, ph) = own.pixel_size();
        let (ox, oy) = gt.apply(0.0, 0.0);
        let dx = (ox - own.0[0]) / pw;
        let dy = (own.0[3] - oy) / ph;
        let (gw, gh) = gt.pixel_size();
        let (sx, sy) = (gw / pw, gh / ph);
        let [a, b, c, d] = p.pixel;
        p.pixel = [a * sx + dx, b * sy + dy, c * sx + dx, d * sy + dy];
    }
    p
}

/// A window's detection (in the model's `size` pixels) placed in the raster's pixels and in
/// world coordinates (its corners through a north-up geotransform; a rotated or
/// non-georeferenced raster's pixels).
fn place(d: Detection, window: Window, size: usize, probe: &RasterProbe) -> Placed {
    let (ox, oy) = (window.x as f64, window.y as f64);
    let k = window.size as f64 / size as f64;
    let pixel = [
        d.bbox[0] * k + ox,
        d.bbox[1] * k + oy,
        d.bbox[2] * k + ox,
        d.bbox[3] * k + oy,
    ];
    // Cut: touching a window edge that is not the raster's edge (within half a model pixel).
    let model_side = size as f64;
    let side = window.size as f64;
    let near = |a: f64, b: f64| (a - b).abs() <= 0.5;
    let (w, h) = (probe.width as f64, probe.height as f64);
    let cut = (near(d.bbox[0], 0.0) && window.x > 0)
        || (near(d.bbox[1], 0.0) && window.y > 0)
        || (near(d.bbox[2], model_side) && ox + side < w)
        || (near(d.bbox[3], model_side) && oy + side < h);
    // North-up: the box's corners through the geotransform. A rotated raster's boxes would
    // grow into their axis-aligned bounds there, and overlap more than the crowns do, so
    // they stay in its pixels and are merged within the file.
    let world = match (&probe.crs, probe.geotransform) {
        (Some(_), Some(gt)) if gt.is_north_up() => {
            let (x1, y1) = gt.apply(pixel[0], pixel[3]);
            let (x2, y2) = gt.apply(pixel[2], pixel[1]);
            [x1, y1, x2, y2]
        }
        _ => pixel,
    };
    Placed {
        world: Detection {
            bbox: world,
            score: d.score,
            class: d.class,
        },
        pixel,
        source: 0,
        cut,
    }
}

/// Reads windows of a raster as 8-bit RGB per its [`Rendition`] ([`raster::rendition`]: the
/// mosaic rendition's rule; Byte data as it is, other sample types stretched per band).
/// Pixels outside the raster (a raster smaller than a window) are the model's mean colour,
/// which normalises to 0.
struct RgbReader<'a> {
    raster: &'a GdalRaster,
    rendition: Rendition,
    /// The model's mean colour, 8-bit: padding outside the raster.
    mean: [u8; 3],
}

impl<'a> RgbReader<'a> {
    fn new(raster: &'a GdalRaster, description: &ModelDescription) -> anyhow::Result<Self> {
        Ok(Self {
            raster,
            rendition: raster::rendition(raster)?,
            mean: description.mean.map(|m| (m * 255.0).round() as u8),
        })
    }

    /// Fills `rgb` (`size × size × 3`, HWC, the model's window) with `window` of the raster,
    /// resampled from its side to `size`; returns the width and height filled from the raster
    /// (less than `size` only where the raster is smaller than a window).
    fn read(&self, window: &Window, size: usize, rgb: &mut [u8]) -> anyhow::Result<(usize, usize)> {
        let probe = self.raster.probe();
        let k = window.size as f64 / size as f64;
        let w = window.size.min(probe.width - window.x);
        let h = window.size.min(probe.height - window.y);
        let read = raster::Window {
            x: window.x,
            y: window.y,
            width: w,
            height: h,
        };
        // A raster smaller than a window fills only part of it.
        let to_model = |n: usize| ((n as f64 / k).round() as usize).clamp(1, size);
        let (ow, oh) = (to_model(w), to_model(h));
        if ow < size || oh < size {
            for px in rgb.chunks_exact_mut(3) {
                px.copy_from_slice(&self.mean);
            }
        }
        self.read_region(read, (ow, oh), rgb, size)?;
        Ok((ow, oh))
    }

    /// Writes `region` of the raster, resampled to `out` pixels (GDAL: averaging when
    /// reducing, bilinear when enlarging), into the top-left `out.0 × out.1` pixels of `rgb`,
    /// an 8-bit RGB image (HWC) `row_pixels` wide.
    fn read_region(
        &self,
        region: raster::Window,
        out: (usize, usize),
        rgb: &mut [u8],
        row_pixels: usize,
    ) -> anyhow::Result<()> {
        let (ow, oh) = out;
        let byte = self.raster.probe().sample_type == SampleType::Byte;
        let (mut bytes, mut values) = (Vec::new(), Vec::new());
        let shown = self.rendition.bands.iter().zip(&self.rendition.stretches);
        for (c, (&band, stretch)) in shown.enumerate() {
            if byte {
                // Byte data as it is: no conversion through f64.
                bytes.resize(ow * oh, 0u8);
                self.raster.read_window(band, region, out, &mut bytes)?;
            } else {
                values.resize(ow * oh, 0.0f64);
                self.raster.read_window(band, region, out, &mut values)?;
                bytes.clear();
                bytes.extend(values.iter().map(|&v| stretch.apply(v)));
            }
            for (row, src) in bytes.chunks_exact(ow).enumerate() {
                let dst = &mut rgb[row * row_pixels * 3..][..ow * 3];
                for (px, &v) in dst.chunks_exact_mut(3).zip(src) {
                    px[c] = v;
                }
            }
        }
        Ok(())
    }
}

/// The names [`write_outputs`] gives each group's preview: `preview.png`, or `preview-N.png`
/// when there are several groups; as `(group, name)`.
#[must_use]
pub fn preview_names(report: &DetectReport) -> Vec<(usize, String)> {
    (0..report.groups.len())
        .map(|g| {
            let name = if report.groups.len() == 1 {
                "preview.png".to_owned()
            } else {
                format!("preview-{}.png", g + 1)
            };
            (g, name)
        })
        .collect()
}

/// `detections.coco.json`, `detections.geojson` (georeferenced files only), the preview PNG
/// of each `(group, name)` in `previews` ([`preview_names`] for all of them) and `item.json`
/// (a STAC Item of the georeferenced rasters with the others as assets, named `id` and dated
/// `datetime`, RFC 3339) in `out`. The files depend only on their arguments, so a rerun writes
/// the same bytes.
///
/// # Errors
/// When a file cannot be written or a footprint cannot be projected to WGS 84.
pub fn write_outputs(
    report: &DetectReport,
    model: &ModelDescription,
    out: &Path,
    id: &str,
    datetime: &str,
    previews: &[(usize, String)],
) -> anyhow::Result<()> {
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
    for (g, name) in previews {
        write_preview(report, *g, &out.join(name))?;
    }
    let names: Vec<String> = previews.iter().map(|(_, name)| name.clone()).collect();
    let item = stac_item(
        id,
        datetime,
        &rasters,
        "detections.coco.json",
        "detections.geojson",
        &names,
    );
    std::fs::write(out.join("item.json"), serde_json::to_vec_pretty(&item)?)?;
    Ok(())
}
