//! Detection over rasters of any size: the window grid, decoding a model's output, and
//! non-maximum suppression (NMS) within a window and across windows and files in world
//! coordinates. ONNX Runtime runs the model (batch-backend's `inference.rs`); everything it
//! is asked and everything done with its answers is decided here.
//!
//! Boxes are `[x1, y1, x2, y2]`: left, top, right, bottom, in pixels of a window or of a
//! raster (x to the right, y down, pixel corners at integers), or in CRS units in world
//! coordinates (then y up: `y1` is the south edge).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Windows overlap by this fraction of their side: a crown up to a quarter of a window across
/// (100 px, 10 m at 0.1 m GSD for the shipped 400 px model) lies whole in at least one window.
/// DeepForest's `predict_tile` defaults to 0.05 and SAHI to 0.2; crowns are large relative to
/// the window, so more.
pub const DEFAULT_OVERLAP: f64 = 0.25;

/// Candidates scoring below this are dropped before NMS (`model/MODEL.md`, "Decoding").
pub const MIN_CANDIDATE_SCORE: f32 = 0.01;

/// Greedy NMS within a window suppresses a box whose IoU with a better one exceeds this
/// (`model/MODEL.md`; the usual 0.5 of torchvision and Ultralytics).
pub const WINDOW_NMS_IOU: f32 = 0.5;

/// At most this many detections per window survive NMS (`model/MODEL.md`; COCO's maxDets).
pub const MAX_PER_WINDOW: usize = 300;

/// Detections scoring below this are not reported (`model/MODEL.md`; `--score`).
pub const DEFAULT_SCORE: f32 = 0.3;

/// Across windows and files, a box cut by a window edge is suppressed by a better box it
/// overlaps by more than this intersection-over-smaller (SAHI's `postprocess_match_threshold`
/// with its `IOS` metric): the cut part of a crown lies almost inside the whole one, while
/// its IoU with it may be small.
pub const MERGE_IOS: f32 = 0.5;

/// The key of the ONNX metadata entry (`metadata_props`) that may hold a model's description
/// as JSON, when no `.json` file lies beside the model.
pub const DESCRIPTION_METADATA_KEY: &str = "tessera:model";

/// How a detector's outputs are laid out. Both give boxes in the input window's pixels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputLayout {
    /// Ultralytics YOLOv8 exports and the shipped model: the first output, float32
    /// `[batch, 4 + classes, N]`: rows `cx, cy, w, h`, then one score per class, decoded by
    /// [`decode_yolo`]. Input `[batch, 3, size, size]`, batched.
    Yolov8,
    /// torchvision detection models (RetinaNet, Faster R-CNN; DeepForest's RetinaNet) exported
    /// to ONNX: outputs `boxes` float32 `[N, 4]` (`x1, y1, x2, y2`), `scores` float32 `[N]`
    /// and `labels` int64 `[N]` (class indices), after the model's own score threshold and
    /// NMS; decoded by [`decode_boxes`]. One window per run: input `[3, size, size]` or
    /// `[1, 3, size, size]`.
    Torchvision {
        /// The boxes output's name.
        boxes: String,
        /// The scores output's name.
        scores: String,
        /// The labels output's name.
        labels: String,
    },
}

/// What a detector expects and answers: enough to run any model of the accepted
/// [`OutputLayout`]s. Read from a `.json` file beside the model (`model/tessera-crowns.json`
/// is the shipped model's) or from the model's ONNX metadata under
/// [`DESCRIPTION_METADATA_KEY`]; the shipped model's is [`ModelDescription::tessera_crowns`]
/// (`model/MODEL.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDescription {
    /// The input tensor's name (`images`): float32, NCHW, RGB.
    pub input: String,
    /// The window side in pixels.
    pub size: usize,
    /// Per-channel mean subtracted from `pixel / 255` (RGB); zeros for a model that
    /// normalises inside its graph (torchvision's).
    pub mean: [f32; 3],
    /// Per-channel standard deviation dividing it (RGB); ones for such a model.
    pub std: [f32; 3],
    /// Class names, in the model's class order.
    pub classes: Vec<String>,
    /// The ground sampling distance the model was trained at, metres per pixel: the range
    /// `[finest, coarsest]`. Rasters outside it are resampled into it ([`Self::scale_for`]).
    pub gsd_m: (f64, f64),
    /// The output layout.
    pub layout: OutputLayout,
}

/// Why a model description cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DescriptionError(pub String);

impl ModelDescription {
    /// `model/tessera-crowns.onnx`: 400 px windows, ImageNet normalisation, one class
    /// `crown`, trained at 0.05–0.5 m GSD; YOLOv8 layout `[1, 5, 10000]`.
    #[must_use]
    pub fn tessera_crowns() -> Self {
        Self {
            input: "images".into(),
            size: 400,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            classes: vec!["crown".into()],
            gsd_m: (0.05, 0.5),
            layout: OutputLayout::Yolov8,
        }
    }

    /// Parses and checks a description's JSON (the fields of this struct).
    ///
    /// # Errors
    /// [`DescriptionError`] naming the JSON problem or the first field out of range.
    pub fn from_json(json: &[u8]) -> Result<Self, DescriptionError> {
        let description: Self =
            serde_json::from_slice(json).map_err(|e| DescriptionError(e.to_string()))?;
        description.check()?;
        Ok(description)
    }

    /// Checks the fields' ranges: a window of 16 to 4096 px, positive finite standard
    /// deviations, at least one class, and a GSD range with `0 < finest ≤ coarsest`.
    ///
    /// # Errors
    /// [`DescriptionError`] naming the field.
    pub fn check(&self) -> Result<(), DescriptionError> {
        let bad = |m: String| Err(DescriptionError(m));
        if !(16..=4096).contains(&self.size) {
            return bad(format!("size {} is not 16 to 4096 pixels", self.size));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return bad(format!("std {:?} must be positive", self.std));
        }
        if self.classes.is_empty() {
            return bad("classes is empty".into());
        }
        let (finest, coarsest) = self.gsd_m;
        if !(finest > 0.0 && finest <= coarsest && coarsest.is_finite()) {
            return bad(format!(
                "gsd_m {:?} is not a range of positive metres per pixel",
                self.gsd_m
            ));
        }
        Ok(())
    }

    /// Raster pixels per model pixel for a raster of ground sampling distance `gsd_m`
    /// (metres per pixel; `None` when unknown, as for a raster without a CRS). The rule: a
    /// raster inside the model's range is run as it is (1.0); one outside it is resampled to
    /// the nearest end of the range, so crowns are as many pixels across as the model learnt
    /// them. A 0.025 m raster for a 0.05–0.5 m model gives 2.0: windows of 2 × size raster
    /// pixels, averaged down to the model's size.
    #[must_use]
    pub fn scale_for(&self, gsd_m: Option<f64>) -> f64 {
        match gsd_m {
            Some(g) if g.is_finite() && g > 0.0 => g.clamp(self.gsd_m.0, self.gsd_m.1) / g,
            _ => 1.0,
        }
    }

    /// Writes one window's model input: `rgb` is 8-bit RGB, row-major, `size × size × 3`
    /// (HWC); `out` receives `(rgb / 255 − mean) / std` as float32 `3 × size × size` (CHW),
    /// as `model/common.py`'s `normalise`.
    ///
    /// # Panics
    /// When the lengths are not `size² × 3`.
    pub fn normalise(&self, rgb: &[u8], out: &mut [f32]) {
        let plane = self.size * self.size;
        assert!(
            rgb.len() == plane * 3 && out.len() == plane * 3,
            "window buffers"
        );
        for c in 0..3 {
            let (mean, std) = (self.mean[c], self.std[c]);
            let dst = &mut out[c * plane..(c + 1) * plane];
            for (o, px) in dst.iter_mut().zip(rgb.chunks_exact(3)) {
                *o = (f32::from(px[c]) / 255.0 - mean) / std;
            }
        }
    }
}

/// A square window of the raster: top-left corner `(x, y)` and side `size`, in raster pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Column of the left edge.
    pub x: usize,
    /// Row of the top edge.
    pub y: usize,
    /// Side in pixels (the model's input side).
    pub size: usize,
}

/// The windows covering a `width` × `height` raster with windows of side `size` overlapping
/// by `overlap` (a fraction of `size`), row by row. Every window is full size (one static
/// input shape): the last column and row are shifted inward to end at the raster's edge. A
/// raster smaller than a window gets one window at (0, 0), read with padding.
#[must_use]
pub fn window_grid(width: usize, height: usize, size: usize, overlap: f64) -> Vec<Window> {
    let stride = ((size as f64 * (1.0 - overlap)).round() as usize).clamp(1, size);
    let starts = |extent: usize| -> Vec<usize> {
        if extent <= size {
            return vec![0];
        }
        let mut v: Vec<usize> = (0..extent - size).step_by(stride).collect();
        v.push(extent - size);
        v
    };
    let (xs, ys) = (starts(width), starts(height));
    ys.iter()
        .flat_map(|&y| xs.iter().map(move |&x| Window { x, y, size }))
        .collect()
}

/// One of `count` equal parts of a raster's windows, so that several workers share one
/// mosaic: shard `index` runs windows `total·index/count .. total·(index+1)/count` of
/// [`window_grid`]'s row-by-row order, a band of rows. Every window falls in exactly one
/// shard, and each window's detections depend on that window alone, so the shards'
/// candidates together are the whole run's and [`merge`] over them gives the same result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which part, from 0.
    pub index: u32,
    /// How many parts (at least 1).
    pub count: u32,
}

impl Shard {
    /// Every window: one part of one.
    pub const WHOLE: Self = Self { index: 0, count: 1 };

    /// This part's range of indices into a grid of `total` windows; empty when there are
    /// fewer windows than parts.
    #[must_use]
    pub fn windows(self, total: usize) -> std::ops::Range<usize> {
        let count = self.count.max(1) as usize;
        let index = (self.index as usize).min(count);
        let at = |i: usize| total * i / count;
        at(index)..at(index + 1).min(total)
    }
}

/// One detection: a box, its score and class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// `[x1, y1, x2, y2]` (see the module documentation for the frame).
    pub bbox: [f64; 4],
    /// Confidence in `[0, 1]`.
    pub score: f32,
    /// Index into the model's class names.
    pub class: usize,
}

/// Why a model's output cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The output's shape is not `[1, 4 + classes, N]`.
    #[error("output shape {shape:?} is not [1, 4 + {classes}, N] for {classes} class(es)")]
    Shape {
        /// The shape found.
        shape: Vec<usize>,
        /// Classes the model description names.
        classes: usize,
    },
    /// The torchvision layout's outputs disagree in length (`boxes [N, 4]`, `scores [N]`,
    /// `labels [N]`).
    #[error("boxes ({boxes} values), scores ({scores}) and labels ({labels}) disagree")]
    Lengths {
        /// Values in `boxes`.
        boxes: usize,
        /// Values in `scores`.
        scores: usize,
        /// Values in `labels`.
        labels: usize,
    },
    /// A label is not an index into the description's classes.
    #[error("label {label} is not one of the {classes} class(es) the description names")]
    Label {
        /// The label found.
        label: i64,
        /// Classes the model description names.
        classes: usize,
    },
}

/// Decodes a YOLOv8-layout output `[1, 4 + classes, N]` (rows `cx, cy, w, h` in window
/// pixels, then one score per class; column-major candidates) of a window of side `size`, as
/// `model/evaluate.py` does: candidates scoring at least [`MIN_CANDIDATE_SCORE`] (a
/// candidate's class is its best-scoring one), then [`finish`]. Best first.
///
/// # Errors
/// [`DecodeError::Shape`] when `shape` is not `[1, 4 + classes, N]` or `data` is not that
/// long.
pub fn decode_yolo(
    data: &[f32],
    shape: &[usize],
    classes: usize,
    size: usize,
) -> Result<Vec<Detection>, DecodeError> {
    let bad = || DecodeError::Shape {
        shape: shape.to_vec(),
        classes,
    };
    let [1, rows, n] = *shape else {
        return Err(bad());
    };
    if rows != 4 + classes || classes == 0 || data.len() != rows * n {
        return Err(bad());
    }
    let at = |row: usize, i: usize| data[row * n + i];
    let candidates: Vec<Detection> =
        (0..n)
            .filter_map(|i| {
                let (class, score) = (0..classes).map(|c| (c, at(4 + c, i))).fold(
                    (0, f32::NEG_INFINITY),
                    |best, c| if c.1 > best.1 { c } else { best },
                );
                (score >= MIN_CANDIDATE_SCORE).then(|| {
                    let (cx, cy, w, h) = (at(0, i), at(1, i), at(2, i), at(3, i));
                    Detection {
                        bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
                            .map(f64::from),
                        score,
                        class,
                    }
                })
            })
            .collect();
    Ok(finish(&candidates, size))
}

/// Decodes a torchvision-layout output of a window of side `size`: `boxes` `[N, 4]`
/// (`x1, y1, x2, y2` in window pixels), `scores` `[N]`, `labels` `[N]` (indices into the
/// description's `classes`), keeping candidates scoring at least [`MIN_CANDIDATE_SCORE`],
/// then [`finish`]: the model's own NMS is per class, this one class-agnostic. Best first.
///
/// # Errors
/// [`DecodeError::Lengths`] or [`DecodeError::Label`].
pub fn decode_boxes(
    boxes: &[f32],
    scores: &[f32],
    labels: &[i64],
    classes: usize,
    size: usize,
) -> Result<Vec<Detection>, DecodeError> {
    if boxes.len() != 4 * scores.len() || labels.len() != scores.len() {
        return Err(DecodeError::Lengths {
            boxes: boxes.len(),
            scores: scores.len(),
            labels: labels.len(),
        });
    }
    let mut candidates = Vec::with_capacity(scores.len());
    for ((b, &score), &label) in boxes.chunks_exact(4).zip(scores).zip(labels) {
        let class = usize::try_from(label)
            .ok()
            .filter(|&c| c < classes)
            .ok_or(DecodeError::Label { label, classes })?;
        if score >= MIN_CANDIDATE_SCORE {
            candidates.push(Detection {
                bbox: [b[0], b[1], b[2], b[3]].map(f64::from),
                score,
                class,
            });
        }
    }
    Ok(finish(&candidates, size))
}

/// The decoding both layouts share, after `model/common.py`'s `decode`: greedy class-agnostic
/// NMS at [`WINDOW_NMS_IOU`], the best [`MAX_PER_WINDOW`], boxes then clipped to the window
/// `[0, size]`. Best first.
#[must_use]
pub fn finish(candidates: &[Detection], size: usize) -> Vec<Detection> {
    let kept = nms(candidates, |k, i| {
        iou(&candidates[k], &candidates[i]) > f64::from(WINDOW_NMS_IOU)
    });
    let side = size as f64;
    kept.into_iter()
        .take(MAX_PER_WINDOW)
        .map(|i| {
            let mut d = candidates[i];
            d.bbox = d.bbox.map(|v| v.clamp(0.0, side));
            d
        })
        .collect()
}

/// Greedy NMS: indices of the kept detections, best score first (ties keep input order, as a
/// stable sort). Detection `i` is dropped when `suppresses(k, i)` holds for a kept `k`.
pub fn nms(detections: &[Detection], suppresses: impl Fn(usize, usize) -> bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..detections.len()).collect();
    order.sort_by(|&a, &b| detections[b].score.total_cmp(&detections[a].score));
    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        if !kept.iter().any(|&k| suppresses(k, i)) {
            kept.push(i);
        }
    }
    kept
}

fn intersection(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    w * h
}

fn area(a: &[f64; 4]) -> f64 {
    (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0)
}

/// Intersection over union of two boxes; `+ 1e-9` in the denominator as `model/common.py`'s
/// `iou_matrix`, so that empty boxes give 0.
#[must_use]
pub fn iou(a: &Detection, b: &Detection) -> f64 {
    let inter = intersection(&a.bbox, &b.bbox);
    inter / (area(&a.bbox) + area(&b.bbox) - inter + 1e-9)
}

/// Intersection over the smaller box's area (SAHI's IOS).
#[must_use]
pub fn ios(a: &Detection, b: &Detection) -> f64 {
    intersection(&a.bbox, &b.bbox) / (area(&a.bbox).min(area(&b.bbox)) + 1e-9)
}

/// A detection placed in world coordinates, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    /// The box in world coordinates (CRS units) and its score and class.
    pub world: Detection,
    /// The box in its raster's pixels.
    pub pixel: [f64; 4],
    /// Which input it came from (an index into the caller's list).
    pub source: usize,
    /// Whether the box touches an edge of its window that is not the raster's edge: the
    /// crown may continue in the next window.
    pub cut: bool,
}

/// Merges detections from every window of every input, in world coordinates: greedy NMS,
/// class-agnostic, where a better box suppresses another when their IoU exceeds
/// [`WINDOW_NMS_IOU`], or when either was cut by a window edge and their
/// intersection-over-smaller exceeds [`MERGE_IOS`]. A crown on a seam between two windows or
/// two files is reported once; inputs that overlap on the ground give no duplicates.
/// Returns the kept detections, best first: the same as greedy [`nms`] over all of them, but
/// each candidate is compared only with kept boxes that share a cell of a uniform grid (cells
/// as large as the largest box, so boxes that intersect share a cell and boxes that do not
/// cannot suppress each other), so a raster of any size merges in near-linear time.
#[must_use]
pub fn merge(placed: Vec<Placed>) -> Vec<Placed> {
    let suppresses = |k: usize, i: usize| {
        let (a, b) = (&placed[k].world, &placed[i].world);
        iou(a, b) > f64::from(WINDOW_NMS_IOU)
            || ((placed[k].cut || placed[i].cut) && ios(a, b) > f64::from(MERGE_IOS))
    };
    let mut order: Vec<usize> = (0..placed.len()).collect();
    order.sort_by(|&a, &b| placed[b].world.score.total_cmp(&placed[a].world.score));
    let cell = placed
        .iter()
        .map(|p| (p.world.bbox[2] - p.world.bbox[0]).max(p.world.bbox[3] - p.world.bbox[1]))
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let key = |v: f64| (v / cell).floor() as i64;
    let cells = |b: [f64; 4]| {
        (key(b[0])..=key(b[2])).flat_map(move |x| (key(b[1])..=key(b[3])).map(move |y| (x, y)))
    };
    let mut grid: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
    let mut kept = Vec::new();
    for i in order {
        let b = placed[i].world.bbox;
        let suppressed = cells(b).any(|c| {
            grid.get(&c)
                .is_some_and(|ks| ks.iter().any(|&k| suppresses(k, i)))
        });
        if !suppressed {
            kept.push(i);
            for c in cells(b) {
                grid.entry(c).or_default().push(i);
            }
        }
    }
    let mut slots: Vec<Option<Placed>> = placed.into_iter().map(Some).collect();
    kept.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(bbox: [f64; 4], score: f32) -> Detection {
        Detection {
            bbox,
            score,
            class: 0,
        }
    }

    #[test]
    fn windows_cover_the_raster_full_size_with_the_last_shifted_inward() {
        let grid = window_grid(1000, 400, 400, 0.25);
        let xs: Vec<usize> = grid.iter().map(|w| w.x).collect();
        assert_eq!(xs, [0, 300, 600]);
        assert!(grid.iter().all(|w| w.y == 0 && w.size == 400));
        assert_eq!(
            window_grid(250, 90, 400, 0.25),
            [Window {
                x: 0,
                y: 0,
                size: 400
            }]
        );
        let g = window_grid(1001, 1001, 400, 0.25);
        assert_eq!(g.len(), 16);
        assert_eq!(
            g.last().unwrap(),
            &Window {
                x: 601,
                y: 601,
                size: 400
            }
        );
    }

    #[test]
    fn shards_split_the_windows_into_contiguous_parts_that_cover_each_once() {
        for total in [0, 1, 5, 16, 1849] {
            for count in [1, 2, 3, 7, 64] {
                let ranges: Vec<_> = (0..count)
                    .map(|index| Shard { index, count }.windows(total))
                    .collect();
                assert_eq!(ranges[0].start, 0, "{total} {count}");
                assert_eq!(ranges.last().unwrap().end, total, "{total} {count}");
                for pair in ranges.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start, "{total} {count}");
                }
                let sizes: Vec<usize> = ranges.iter().map(ExactSizeIterator::len).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{total} {count}: {sizes:?}");
            }
        }
        assert_eq!(Shard::WHOLE.windows(16), 0..16);
        assert_eq!(Shard { index: 9, count: 3 }.windows(16), 16..16);
    }

    #[test]
    fn decodes_the_yolo_layout_like_the_model_card() {
        // Three candidates: two overlapping (IoU > 0.5), one below the candidate score.
        let (n, classes) = (3, 1);
        #[rustfmt::skip]
        let data = [
            10.0, 12.0, 300.0, // cx
            10.0, 10.0, 300.0, // cy
            8.0, 8.0, 20.0,    // w
            8.0, 8.0, 20.0,    // h
            0.9, 0.8, 0.005,   // score
        ];
        let d = decode_yolo(&data, &[1, 4 + classes, n], classes, 400).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].bbox, [6.0, 6.0, 14.0, 14.0]);
        assert!(matches!(
            decode_yolo(&data, &[1, 6, 3], 1, 400),
            Err(DecodeError::Shape { .. })
        ));
        // Boxes are clipped after NMS.
        let edge = [1.0_f32, 1.0, 4.0, 4.0, 0.5];
        assert_eq!(
            decode_yolo(&edge, &[1, 5, 1], 1, 400).unwrap()[0].bbox,
            [0.0, 0.0, 3.0, 3.0]
        );
    }

    #[test]
    fn decodes_the_torchvision_layout_and_refuses_bad_labels() {
        let boxes = [
            4.0_f32, 4.0, 20.0, 20.0, // kept
            5.0, 4.0, 21.0, 20.0, // IoU 0.89 with the first: suppressed
            390.0, 390.0, 410.0, 410.0, // clipped to the window
            50.0, 50.0, 60.0, 60.0, // below the candidate score
        ];
        let scores = [0.9_f32, 0.8, 0.7, 0.005];
        let d = decode_boxes(&boxes, &scores, &[0, 0, 1, 0], 2, 400).unwrap();
        let got: Vec<([f64; 4], usize)> = d.iter().map(|d| (d.bbox, d.class)).collect();
        assert_eq!(
            got,
            [
                ([4.0, 4.0, 20.0, 20.0], 0),
                ([390.0, 390.0, 400.0, 400.0], 1)
            ]
        );
        assert_eq!(
            decode_boxes(&boxes, &scores, &[0, 0, 2, 0], 2, 400),
            Err(DecodeError::Label {
                label: 2,
                classes: 2
            })
        );
        assert!(matches!(
            decode_boxes(&boxes[..4], &scores, &[0; 4], 2, 400),
            Err(DecodeError::Lengths { .. })
        ));
    }

    #[test]
    fn the_shipped_description_file_is_the_shipped_description() {
        let file = include_bytes!("../../model/tessera-crowns.json");
        assert_eq!(
            ModelDescription::from_json(file).unwrap(),
            ModelDescription::tessera_crowns()
        );
        let torchvision = br#"{"input": "image", "size": 400, "mean": [0, 0, 0],
            "std": [1, 1, 1], "classes": ["tree"], "gsd_m": [0.05, 0.5],
            "layout": {"kind": "torchvision", "boxes": "b", "scores": "s", "labels": "l"}}"#;
        assert!(matches!(
            ModelDescription::from_json(torchvision).unwrap().layout,
            OutputLayout::Torchvision { .. }
        ));
        let refused = |json: &str| ModelDescription::from_json(json.as_bytes()).unwrap_err().0;
        let shipped = String::from_utf8(file.to_vec()).unwrap();
        assert!(refused(&shipped.replace("400", "8")).contains("size 8"));
        assert!(refused(&shipped.replace("\"crown\"", "")).contains("classes"));
        assert!(refused(&shipped.replace("0.229", "0")).contains("std"));
        assert!(refused(&shipped.replace("\"input\"", "\"inputs\"")).contains("unknown field"));
    }

    #[test]
    fn rasters_outside_the_trained_gsd_are_resampled_into_it() {
        let m = ModelDescription::tessera_crowns(); // 0.05–0.5 m
        assert_eq!(m.scale_for(Some(0.1)), 1.0);
        assert_eq!(m.scale_for(None), 1.0);
        assert!((m.scale_for(Some(0.025)) - 2.0).abs() < 1e-12);
        assert!((m.scale_for(Some(1.0)) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn normalises_like_model_common_py() {
        let m = ModelDescription {
            size: 1,
            ..ModelDescription::tessera_crowns()
        };
        let mut out = [0.0; 3];
        m.normalise(&[255, 0, 128], &mut out);
        let expect = [
            (1.0 - 0.485) / 0.229,
            (0.0 - 0.456) / 0.224,
            (128.0 / 255.0 - 0.406) / 0.225,
        ];
        for (a, b) in out.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn nms_keeps_the_best_and_stable_ties() {
        let d = [
            det([0.0, 0.0, 10.0, 10.0], 0.5),
            det([1.0, 0.0, 11.0, 10.0], 0.5),
            det([50.0, 50.0, 60.0, 60.0], 0.9),
        ];
        assert_eq!(nms(&d, |k, i| iou(&d[k], &d[i]) > 0.5), [2, 0]);
    }

    #[test]
    fn the_grid_merge_equals_greedy_nms_over_everything() {
        // 400 boxes of many sizes, scattered and overlapping; the reference compares all pairs.
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as f64 / f64::from(1u32 << 31)
        };
        let placed: Vec<Placed> = (0..400)
            .map(|_| {
                let (x, y, w, h) = (
                    next() * 100.0,
                    next() * 100.0,
                    1.0 + next() * 15.0,
                    1.0 + next() * 15.0,
                );
                let world = det([x, y, x + w, y + h], next() as f32);
                Placed {
                    world,
                    pixel: world.bbox,
                    source: 0,
                    cut: next() < 0.3,
                }
            })
            .collect();
        let reference = nms(
            &placed.iter().map(|p| p.world).collect::<Vec<_>>(),
            |k, i| {
                let (a, b) = (&placed[k].world, &placed[i].world);
                iou(a, b) > f64::from(WINDOW_NMS_IOU)
                    || ((placed[k].cut || placed[i].cut) && ios(a, b) > f64::from(MERGE_IOS))
            },
        );
        let merged = merge(placed.clone());
        let expected: Vec<Placed> = reference.into_iter().map(|i| placed[i].clone()).collect();
        assert!(expected.len() > 50 && expected.len() < 400);
        assert_eq!(merged, expected);
    }

    #[test]
    fn a_crown_cut_by_a_window_edge_is_merged_into_the_whole_one() {
        let whole = det([0.0, 0.0, 10.0, 10.0], 0.8);
        let cut = det([6.0, 0.0, 10.0, 10.0], 0.6); // IoU 0.4, IoS 1.0
        let neighbour = det([6.0, 0.0, 16.0, 10.0], 0.7); // IoU 0.25, IoS 0.4
        let place = |world: Detection, cut: bool| Placed {
            world,
            pixel: world.bbox,
            source: 0,
            cut,
        };
        let merged = merge(vec![
            place(whole, false),
            place(cut, true),
            place(neighbour, false),
        ]);
        let scores: Vec<f32> = merged.iter().map(|p| p.world.score).collect();
        assert_eq!(scores, [0.8, 0.7]);
        // Uncut, the same overlap is two crowns.
        assert_eq!(merge(vec![place(whole, false), place(cut, false)]).len(), 2);
    }
}
