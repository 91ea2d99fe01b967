//! `tessera detect` with the real ONNX Runtime (`ORT_DYLIB_PATH`, set by `scripts/test.sh`
//! through `ensure_onnxruntime`) on real GeoTIFFs: the shipped model's detections on
//! OSBS_029 against the project's Python decoding and MODEL.md, GeoJSON vertices against
//! `gdaltransform`, the STAC Item, seams between files, and each bad input's message.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tessera_core::results::PREVIEW_BOX_RGB;

use crate::fixtures;
use crate::mosaic::band_pixels;

fn osbs() -> PathBuf {
    fixtures().join("deepforest-2.1.0/OSBS_029.tif")
}

fn detect(args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("detect")
        .args(args)
        .output()
        .expect("run tessera detect")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn osbs_029_detections_equal_the_python_reference_and_the_model_card() {
    let dir = tempfile::tempdir().unwrap();
    let run = detect(&[
        "--score".as_ref(),
        "0.01".as_ref(),
        "--out".as_ref(),
        dir.path().as_os_str(),
        osbs().as_os_str(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    compare_with_python(&dir.path().join("detections.coco.json"), None);
}

/// Holds a COCO file from `tessera detect` on OSBS_029 to `model/compare_rust.py`, run by the
/// evaluation venv's Python (`TESSERA_EVAL_PYTHON`, set by scripts/test.sh): ONNX Runtime's
/// Python API and the project's decoding, and for the shipped model pycocotools' AP.
fn compare_with_python(coco: &Path, model: Option<&Path>) {
    let python = std::env::var_os("TESSERA_EVAL_PYTHON")
        .expect("TESSERA_EVAL_PYTHON: the evaluation venv's python (scripts/test.sh sets it)");
    let mut check = Command::new(python);
    check
        .arg(model_dir().join("compare_rust.py"))
        .arg(coco)
        .current_dir(model_dir());
    if let Some(model) = model {
        check.arg("--model").arg(model);
    }
    let check = check.output().unwrap();
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn the_preview_shows_the_tile_with_each_detection_outlined() {
    let dir = tempfile::tempdir().unwrap();
    let run = detect(&["--out".as_ref(), dir.path().as_os_str(), osbs().as_os_str()]);
    assert!(run.status.success(), "{}", text(&run));
    let preview = band_pixels(&dir.path().join("preview.png"));
    assert_eq!(preview.len(), 3 * 400 * 400);
    let plane = 400 * 400;
    let rgb_at = |x: usize, y: usize| {
        (0..3)
            .map(|b| preview[b * plane + y * 400 + x] as u8)
            .collect::<Vec<_>>()
    };
    let coco = read_json(&dir.path().join("detections.coco.json"));
    let annotations = coco["annotations"].as_array().unwrap();
    assert_eq!(annotations.len(), 23);
    for a in annotations {
        let b: Vec<f64> = a["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let (x, y) = (b[0].floor() as usize, b[1].floor() as usize);
        assert_eq!(
            rgb_at(x.min(399), y.min(399)),
            PREVIEW_BOX_RGB,
            "corner of {b:?}"
        );
    }
    // Away from every box, the tile's own pixels (OSBS_029.tif's, 8-bit RGB as they are).
    let tile = band_pixels(&osbs());
    let outside = (0..400 * 400).filter(|&i| {
        let (x, y) = ((i % 400) as f64, (i / 400) as f64);
        annotations.iter().all(|a| {
            let b: Vec<f64> = a["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            x + 1.0 < b[0] || x > b[0] + b[2] + 1.0 || y + 1.0 < b[1] || y > b[1] + b[3] + 1.0
        })
    });
    assert!(outside.clone().count() > 100_000);
    assert!(
        outside
            .clone()
            .all(|i| (0..3).all(|b| preview[b * plane + i] == tile[b * plane + i]))
    );
}

#[test]
fn geojson_vertices_are_the_pixel_corners_through_the_geotransform_and_proj() {
    let dir = tempfile::tempdir().unwrap();
    let run = detect(&["--out".as_ref(), dir.path().as_os_str(), osbs().as_os_str()]);
    assert!(run.status.success(), "{}", text(&run));
    let coco = read_json(&dir.path().join("detections.coco.json"));
    let gt: Vec<f64> = coco["images"][0]["tessera:geo_transform"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(coco["images"][0]["tessera:crs"], "EPSG:32617");
    let geojson = read_json(&dir.path().join("detections.geojson"));
    let features = geojson["features"].as_array().unwrap();
    assert!(!features.is_empty());
    assert_eq!(
        features.len(),
        coco["annotations"].as_array().unwrap().len()
    );

    // Every corner of every box, through the geotransform, then gdaltransform to WGS 84.
    let mut input = String::new();
    for f in features {
        let b: Vec<f64> = f["properties"]["pixel_bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (c, r) in [(b[0], b[1]), (b[2], b[1]), (b[2], b[3]), (b[0], b[3])] {
            let x = gt[0] + c * gt[1] + r * gt[2];
            let y = gt[3] + c * gt[4] + r * gt[5];
            input.push_str(&format!("{x:.10} {y:.10}\n"));
        }
    }
    let mut child = Command::new("gdaltransform")
        .args(["-s_srs", "EPSG:32617", "-t_srs", "EPSG:4326", "-output_xy"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gdaltransform (gdal-bin)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    // gdaltransform answers in the traditional GIS order, longitude first.
    let expected: Vec<(f64, f64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Vec<f64> = l.split_whitespace().map(|t| t.parse().unwrap()).collect();
            (v[0], v[1])
        })
        .collect();
    let mut worst = 0.0f64;
    for (f, corners) in features.iter().zip(expected.chunks(4)) {
        let ring = f["geometry"]["coordinates"][0].as_array().unwrap();
        assert_eq!(ring.len(), 5);
        assert_eq!(ring[0], ring[4], "closed ring");
        for &(lon, lat) in corners {
            let nearest = ring[..4]
                .iter()
                .map(|p| {
                    let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
                    (x - lon).abs().max((y - lat).abs())
                })
                .fold(f64::INFINITY, f64::min);
            worst = worst.max(nearest);
        }
    }
    assert!(worst < 1e-7, "a vertex is {worst}° from gdaltransform's");

    // The STAC Item: the tile with its projection, and both files as assets.
    let item = read_json(&dir.path().join("item.json"));
    assert_eq!(item["stac_version"], "1.1.0");
    let raster = &item["assets"]["raster-1"];
    assert_eq!(raster["proj:code"], "EPSG:32617");
    assert_eq!(raster["proj:shape"], serde_json::json!([400, 400]));
    assert_eq!(
        raster["proj:transform"],
        serde_json::json!([gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]])
    );
    assert_eq!(item["assets"]["coco"]["href"], "detections.coco.json");
    let bbox: Vec<f64> = item["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for f in features {
        for p in f["geometry"]["coordinates"][0].as_array().unwrap() {
            let (lon, lat) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
            assert!(lon >= bbox[0] && lat >= bbox[1] && lon <= bbox[2] && lat <= bbox[3]);
        }
    }
}

#[test]
fn bad_models_and_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    // A file that is not ONNX.
    std::fs::write(p("notes.onnx"), "not a model").unwrap();
    let run = detect(&[
        "--model".as_ref(),
        p("notes.onnx").as_os_str(),
        "--out".as_ref(),
        p("out").as_os_str(),
        osbs().as_os_str(),
    ]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(
        text(&run).contains("notes.onnx: not a usable ONNX model"),
        "{}",
        text(&run)
    );
    assert!(
        !p("out").exists(),
        "refused before any file is read or written"
    );

    // Inputs: a PNG, a truncated GeoTIFF, a TIFF without georeferencing (run in pixel space:
    // in COCO without `tessera:crs`, absent from the GeoJSON) and a good one.
    let png = fixtures().join("deepforest-2.1.0/OSBS_029.png");
    std::fs::copy(&png, p("photo.png")).unwrap();
    let plain = Command::new("gdal_translate")
        .args(["-q".as_ref(), png.as_os_str(), p("plain.tif").as_os_str()])
        .status()
        .expect("gdal_translate (gdal-bin)");
    assert!(plain.success());
    let tif = std::fs::read(osbs()).unwrap();
    std::fs::write(p("cut.tif"), &tif[..tif.len() / 3]).unwrap();
    let run = detect(&[
        "--out".as_ref(),
        p("out").as_os_str(),
        p("photo.png").as_os_str(),
        p("cut.tif").as_os_str(),
        p("plain.tif").as_os_str(),
        osbs().as_os_str(),
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("photo.png: not a TIFF: image/png"), "{err}");
    assert!(err.contains("cut.tif: truncated"), "{err}");
    let coco = read_json(&p("out/detections.coco.json"));
    let images = coco["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert!(
        images[0]["file_name"]
            .as_str()
            .unwrap()
            .ends_with("plain.tif")
    );
    assert!(images[0].get("tessera:crs").is_none());
    assert_eq!(images[1]["tessera:crs"], "EPSG:32617");
    let per_image = |id: u64| {
        coco["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["image_id"] == id)
            .count()
    };
    // The same pixels give the same detections, georeferenced or not.
    assert!(per_image(1) > 0);
    assert_eq!(per_image(1), per_image(2));
    let geojson = read_json(&p("out/detections.geojson"));
    assert_eq!(geojson["features"].as_array().unwrap().len(), per_image(2));
}

#[test]
fn a_missing_onnx_runtime_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["detect", "--out"])
        .arg(dir.path())
        .arg(osbs())
        .env("ORT_DYLIB_PATH", dir.path().join("missing.so"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(text(&run).contains("ensure_onnxruntime"), "{}", text(&run));
}

/// The world boxes and scores of a run, best first, rounded to a micrometre.
fn world_detections(dir: &Path) -> Vec<(Vec<i64>, String)> {
    let coco = read_json(&dir.join("detections.coco.json"));
    let images = coco["images"].as_array().unwrap();
    let mut out: Vec<(Vec<i64>, String)> = coco["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let image = &images[usize::try_from(a["image_id"].as_u64().unwrap() - 1).unwrap()];
            let gt: Vec<f64> = image["tessera:geo_transform"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let b: Vec<f64> = a["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let world = [
                gt[0] + b[0] * gt[1],
                gt[3] + (b[1] + b[3]) * gt[5],
                gt[0] + (b[0] + b[2]) * gt[1],
                gt[3] + b[1] * gt[5],
            ];
            (
                world.iter().map(|v| (v * 1e6).round() as i64).collect(),
                format!("{:.6}", a["score"].as_f64().unwrap()),
            )
        })
        .collect();
    out.sort();
    out
}

fn run_ok(dir: &Path, inputs: &[PathBuf]) {
    let mut args: Vec<&OsStr> = vec![
        "--score".as_ref(),
        "0.01".as_ref(),
        "--out".as_ref(),
        dir.as_os_str(),
    ];
    args.extend(inputs.iter().map(|p| p.as_os_str()));
    let run = detect(&args);
    assert!(run.status.success(), "{}", text(&run));
}

#[test]
fn tiles_of_one_grid_give_the_detections_of_their_mosaic() {
    // The 100 solaris tiles run as one virtual mosaic: the same world boxes and scores as
    // their parent, to a micrometre (they hold the same pixels on the same grid), each box
    // given to the tile holding its centre, in that tile's pixels.
    let data = fixtures().join("solaris-0.4.0");
    let (tiles, parent) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_ok(tiles.path(), &[data.join("rastertile_test_expected")]);
    run_ok(parent.path(), &[data.join("sample_geotiff.tif")]);
    let from_tiles = world_detections(tiles.path());
    assert!(!from_tiles.is_empty());
    assert_eq!(from_tiles, world_detections(parent.path()));
    // One preview of the whole group, the same as the parent's.
    let preview = |dir: &Path| std::fs::read(dir.join("preview.png")).unwrap();
    assert!(preview(tiles.path()) == preview(parent.path()));
    assert!(!tiles.path().join("preview-2.png").exists());
    let coco = read_json(&tiles.path().join("detections.coco.json"));
    assert_eq!(coco["images"].as_array().unwrap().len(), 100);
    for a in coco["annotations"].as_array().unwrap() {
        let b: Vec<f64> = a["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let (cx, cy) = (b[0] + b[2] / 2.0, b[1] + b[3] / 2.0);
        assert!(
            (0.0..=90.0).contains(&cx) && (0.0..=90.0).contains(&cy),
            "centre in its tile: {b:?}"
        );
    }
}

#[test]
fn a_rotated_raster_gives_the_detections_of_its_pixels_as_rotated_polygons() {
    // OSBS_029 with its geotransform turned 30°: the same pixels give the same boxes (merged in
    // the file's pixels, not as the larger axis-aligned bounds of rotated boxes), and each
    // GeoJSON polygon is the box's corners through the rotated geotransform.
    let dir = tempfile::tempdir().unwrap();
    let rotated = dir.path().join("rotated.tif");
    std::fs::copy(osbs(), &rotated).unwrap();
    let (angle, pixel): (f64, f64) = (30f64.to_radians(), 0.1);
    let (x0, y0) = (404_211.9, 3_285_142.9);
    // The geotransform [x0, a, b, y0, d, e] given by three corners (GDAL 3.6's gdal_edit has
    // no -a_gt): upper left, upper right (400 columns on), lower left (400 rows on).
    let (a, b, d, e) = (
        pixel * angle.cos(),
        pixel * angle.sin(),
        pixel * angle.sin(),
        -pixel * angle.cos(),
    );
    let corners = [
        x0,
        y0,
        x0 + 400.0 * a,
        y0 + 400.0 * d,
        x0 + 400.0 * b,
        y0 + 400.0 * e,
    ];
    let ok = Command::new("gdal_edit.py")
        .arg("-a_ulurll")
        .args(corners.map(|v| v.to_string()))
        .arg(&rotated)
        .status()
        .unwrap();
    assert!(ok.success());
    let (plain_out, rotated_out) = (dir.path().join("plain"), dir.path().join("rotated"));
    run_ok(&plain_out, &[osbs()]);
    run_ok(&rotated_out, &[rotated]);
    let boxes = |dir: &Path| -> Vec<Value> {
        read_json(&dir.join("detections.coco.json"))["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["bbox"].clone())
            .collect()
    };
    assert_eq!(boxes(&rotated_out), boxes(&plain_out));
    let geojson = read_json(&rotated_out.join("detections.geojson"));
    let features = geojson["features"].as_array().unwrap();
    assert_eq!(features.len(), boxes(&plain_out).len());
    for f in features {
        let ring = f["geometry"]["coordinates"][0].as_array().unwrap();
        let lon = |i: usize| ring[i][0].as_f64().unwrap();
        // Two corners of one box edge share neither longitude nor latitude.
        assert!((lon(0) - lon(1)).abs() > 1e-7 && (lon(1) - lon(2)).abs() > 1e-7);
    }
}

#[test]
fn a_crown_across_a_file_seam_is_reported_once() {
    // OSBS_029 cut into two abutting files at column 200: the crowns on the seam are seen
    // whole, once, exactly as in the uncut tile.
    let dir = tempfile::tempdir().unwrap();
    let half = |x: &str, name: &str| {
        let out = dir.path().join(name);
        let ok = Command::new("gdal_translate")
            .args(["-q", "-srcwin", x, "0", "200", "400"])
            .arg(osbs())
            .arg(&out)
            .status()
            .unwrap();
        assert!(ok.success());
        out
    };
    let (west, east) = (half("0", "west.tif"), half("200", "east.tif"));
    let (split, whole) = (dir.path().join("split"), dir.path().join("whole"));
    run_ok(&split, &[west, east]);
    run_ok(&whole, &[osbs()]);
    let from_halves = world_detections(&split);
    assert_eq!(from_halves, world_detections(&whole));
    // x = 404211.9 + 20 m is the seam; some boxes cross it.
    let seam = ((404_211.9 + 20.0) * 1e6) as i64;
    assert!(from_halves.iter().any(|(b, _)| b[0] < seam && b[2] > seam));
}

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model")
}

#[test]
fn a_torchvision_retinanet_decodes_as_python_decodes_it() {
    // model/retinanet-tiny.onnx: torchvision's RetinaNet exported to ONNX (boxes / scores /
    // labels), described by its ONNX metadata (no .json beside it).
    let model = model_dir().join("retinanet-tiny.onnx");
    assert!(!model.with_extension("json").exists());
    let dir = tempfile::tempdir().unwrap();
    let run = detect(&[
        "--score".as_ref(),
        "0.01".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--out".as_ref(),
        dir.path().as_os_str(),
        osbs().as_os_str(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let coco = read_json(&dir.path().join("detections.coco.json"));
    assert_eq!(coco["categories"][0]["name"], "tree");
    assert!(coco["annotations"].as_array().unwrap().len() > 100);
    compare_with_python(&dir.path().join("detections.coco.json"), Some(&model));
}

#[test]
fn a_model_is_checked_against_its_description_before_any_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("crowns.onnx");
    std::fs::copy(model_dir().join("tessera-crowns.onnx"), &model).unwrap();
    let shipped = std::fs::read_to_string(model_dir().join("tessera-crowns.json")).unwrap();
    let missing = dir.path().join("never-read.tif");
    let run_with = |description: Option<String>| {
        match description {
            Some(json) => std::fs::write(model.with_extension("json"), json).unwrap(),
            None => drop(std::fs::remove_file(model.with_extension("json"))),
        }
        detect(&[
            "--model".as_ref(),
            model.as_os_str(),
            "--out".as_ref(),
            dir.path().join("out").as_os_str(),
            osbs().as_os_str(),
            missing.as_os_str(),
        ])
    };
    let refused = |description: Option<String>, expect: &str| {
        let run = run_with(description);
        let said = text(&run);
        assert_eq!(run.status.code(), Some(2), "{said}");
        assert!(
            said.contains("crowns.onnx") && said.contains(expect),
            "{said}"
        );
        assert!(!said.contains("never-read"), "an input was read: {said}");
    };
    refused(None, "no model description: write one to");
    refused(
        Some(shipped.replace("400", "512")),
        "input \"images\" is Some(Float32) [1, 3, 400, 400], not float32 [batch, 3, 512, 512]",
    );
    refused(
        Some(shipped.replace("[\"crown\"]", "[\"crown\", \"palm\"]")),
        "not float32 [batch, 6, N] (YOLOv8 layout for 2 class(es))",
    );
    refused(
        Some(shipped.replace(
            "{\"kind\": \"yolov8\"}",
            r#"{"kind": "torchvision", "boxes": "boxes", "scores": "scores", "labels": "labels"}"#,
        )),
        "no output \"boxes\"",
    );
    refused(
        Some(shipped.replace("\"mean\"", "\"average\"")),
        "crowns.json: unknown field `average`",
    );
    // The shipped description beside a copy of the shipped model: its detections.
    let run = run_with(Some(shipped));
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(text(&run).contains("never-read.tif: "), "{}", text(&run));
    let shipped_out = tempfile::tempdir().unwrap();
    let run = detect(&[
        "--out".as_ref(),
        shipped_out.path().as_os_str(),
        osbs().as_os_str(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(
        world_detections(&dir.path().join("out")),
        world_detections(shipped_out.path())
    );
}

/// Boxes of a `detections.geojson`, as `[min lon, min lat, max lon, max lat]`.
fn geojson_boxes(dir: &Path) -> Vec<[f64; 4]> {
    read_json(&dir.join("detections.geojson"))["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let ring = f["geometry"]["coordinates"][0].as_array().unwrap();
            let xs: Vec<f64> = ring.iter().map(|p| p[0].as_f64().unwrap()).collect();
            let ys: Vec<f64> = ring.iter().map(|p| p[1].as_f64().unwrap()).collect();
            let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            [min(&xs), min(&ys), max(&xs), max(&ys)]
        })
        .collect()
}

#[test]
fn a_raster_finer_than_the_model_s_range_is_read_at_the_model_s_gsd() {
    // OSBS_029 (0.1 m) enlarged 4× to 0.025 m. With the shipped description (0.05–0.5 m) it is
    // read at 0.05 m: windows of 800 raster pixels, 3 × 3 over 1,600². Described as trained
    // at 0.01–0.5 m it is read as it is (5 × 5 windows of 400), and at exactly 0.1 m, as the
    // original (one window of 1,600). The share of the original tile's detections (score ≥
    // 0.1, IoU ≥ 0.5 in WGS 84) found again rises as the model sees crowns at its own GSD:
    // 27 %, 55 % and 83 % when measured.
    let dir = tempfile::tempdir().unwrap();
    let fine = dir.path().join("osbs-0.025m.tif");
    let ok = Command::new("gdal_translate")
        .args(["-q", "-r", "bilinear", "-outsize", "400%", "400%"])
        .arg(osbs())
        .arg(&fine)
        .status()
        .unwrap();
    assert!(ok.success());
    let shipped = std::fs::read_to_string(model_dir().join("tessera-crowns.json")).unwrap();
    let run = |name: &str, gsd_m: &str, input: &Path, windows: usize| -> Vec<[f64; 4]> {
        let model = dir.path().join(format!("{name}.onnx"));
        std::fs::copy(model_dir().join("tessera-crowns.onnx"), &model).unwrap();
        std::fs::write(
            model.with_extension("json"),
            shipped.replace("[0.05, 0.5]", gsd_m),
        )
        .unwrap();
        let out = dir.path().join(name);
        let run = detect(&[
            "--score".as_ref(),
            "0.1".as_ref(),
            "--model".as_ref(),
            model.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            input.as_os_str(),
        ]);
        assert!(run.status.success(), "{}", text(&run));
        let said = format!(", {windows} window(s)");
        assert!(text(&run).contains(&said), "{name}: {}", text(&run));
        geojson_boxes(&out)
    };
    let original = run("original", "[0.05, 0.5]", &osbs(), 1);
    let iou = |a: &[f64; 4], b: &[f64; 4]| {
        let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
        let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
        let area = |r: &[f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
        w * h / (area(a) + area(b) - w * h)
    };
    let recall = |found: &[[f64; 4]]| {
        let matched = original
            .iter()
            .filter(|o| found.iter().any(|f| iou(o, f) >= 0.5))
            .count();
        matched as f64 / original.len() as f64
    };
    let as_is = recall(&run("as-is", "[0.01, 0.5]", &fine, 25));
    let at_range = recall(&run("at-range", "[0.05, 0.5]", &fine, 9));
    let at_site = recall(&run("at-site", "[0.1, 0.1]", &fine, 1));
    eprintln!("recall: as it is {as_is:.2}, at 0.05 m {at_range:.2}, at 0.1 m {at_site:.2}");
    assert!(original.len() > 100);
    assert!(as_is < 0.4 && at_range > 0.45 && at_site > 0.75);
}
