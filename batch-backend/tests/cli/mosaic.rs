//! `tessera mosaic` on real GeoTIFFs: the solaris tiles and their parent, NEON's OSBS_029 cut
//! into pieces by `gdal_translate`, a piece warped into the next UTM zone by `gdalwarp`, bad
//! inputs beside good ones, and a large mosaic under a memory ceiling. Inputs and references
//! are made by GDAL's own tools (gdal-bin); outputs are read back with GDAL.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gdal::Dataset;
use serde_json::Value;
use tessera_core::Sha256Digest;

use crate::fixtures;

fn osbs() -> PathBuf {
    fixtures().join("deepforest-2.1.0/OSBS_029.tif")
}

fn mosaic(args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("mosaic")
        .args(args)
        .output()
        .expect("run tessera mosaic")
}

/// Runs a gdal-bin tool and insists that it succeeds.
fn gdal_tool(program: &str, args: &[&OsStr]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}; install gdal-bin (scripts/test.sh does)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `gdal_translate -q -srcwin X Y W H src out` plus `extra` options.
fn cut(src: &Path, window: [usize; 4], out: &Path, extra: &[&str]) {
    let w: Vec<String> = window.iter().map(ToString::to_string).collect();
    let mut args: Vec<&OsStr> = vec!["-q".as_ref(), "-srcwin".as_ref()];
    args.extend(w.iter().map(OsStr::new));
    args.extend(extra.iter().map(OsStr::new));
    args.extend([src.as_os_str(), out.as_os_str()]);
    gdal_tool("gdal_translate", &args);
}

/// Every band's pixels as f64, band after band, and the geotransform.
/// A raster's geotransform and every band's pixels ([`band_pixels`]).
fn pixels(path: &Path) -> ([f64; 6], Vec<f64>) {
    let ds = Dataset::open(path).unwrap();
    (ds.geo_transform().unwrap(), band_pixels(path))
}

/// Every band's pixels of a raster (any format GDAL reads), band after band, row-major.
pub(crate) fn band_pixels(path: &Path) -> Vec<f64> {
    let ds = Dataset::open(path).unwrap();
    let (w, h) = ds.raster_size();
    let mut all = Vec::new();
    for b in 1..=ds.raster_count() {
        let buf = ds
            .rasterband(b)
            .unwrap()
            .read_as::<f64>((0, 0), (w, h), (w, h), None)
            .unwrap();
        all.extend(buf.data());
    }
    all
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The sources named in the COG's provenance, in the order they were laid down.
fn provenance(path: &Path) -> Vec<Value> {
    let ds = Dataset::open(path).unwrap();
    let inputs = gdal::Metadata::metadata_item(&ds, "TESSERA_INPUTS", "").expect("provenance");
    serde_json::from_str::<Value>(&inputs)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn validate_cog(path: &Path) {
    let out = Command::new("/usr/bin/python3")
        .arg("/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_cloud_optimized_geotiff.py")
        .arg(path)
        .output()
        .expect("python3-gdal's COG validator (scripts/test.sh installs python3-gdal)");
    assert!(
        out.status.success(),
        "{}: not a valid COG: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_solaris_tiles_rebuild_their_parent_exactly_as_a_valid_cog() {
    let data = fixtures().join("solaris-0.4.0");
    let tiles = data.join("rastertile_test_expected");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("parent.tif");
    let run = mosaic(&[
        "--project".as_ref(),
        "spacenet".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        tiles.as_os_str(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let summary = String::from_utf8_lossy(&run.stdout);
    assert!(
        summary.contains("900 × 900 px, 1 band(s) UInt16, CRS EPSG:32616"),
        "{summary}"
    );
    assert!(summary.contains("100 input(s) used, 0 warped"), "{summary}");

    let (gt, px) = pixels(&out);
    let (parent_gt, parent_px) = pixels(&data.join("sample_geotiff.tif"));
    assert_eq!(gt, parent_gt);
    assert!(
        px == parent_px,
        "the mosaic's pixels differ from sample_geotiff.tif's"
    );
    validate_cog(&out);

    let ds = Dataset::open(&out).unwrap();
    let band = ds.rasterband(1).unwrap();
    assert_eq!(band.band_type(), gdal::raster::GdalDataType::UInt16);
    assert_eq!(band.no_data_value(), Some(0.0));
    assert_eq!(band.block_size(), (512, 512));
    assert!(band.overview_count().unwrap() >= 1);
    let meta = |key: &str, domain: &str| gdal::Metadata::metadata_item(&ds, key, domain);
    assert_eq!(
        meta("COMPRESSION", "IMAGE_STRUCTURE").as_deref(),
        Some("DEFLATE")
    );
    assert_eq!(meta("TESSERA_PROJECT", "").as_deref(), Some("spacenet"));
    let inputs = provenance(&out);
    assert_eq!(inputs.len(), 100);
    let first = tiles.join("sample_geotiff_733601_3724734.tif");
    let hash = Sha256Digest::of(&std::fs::read(&first).unwrap()).hex;
    assert!(
        inputs
            .iter()
            .any(|i| i["sha256"] == hash.as_str() && i["source"] == first.to_str().unwrap()),
        "{first:?} with its SHA-256 is in the provenance"
    );

    // The 8-bit rendition (RGBA: grey stretched into R, G and B) and the preview.
    let rendition = Dataset::open(dir.path().join("parent.rgba.vrt")).unwrap();
    assert_eq!(rendition.raster_count(), 4);
    assert_eq!(
        rendition.rasterband(4).unwrap().color_interpretation(),
        gdal::raster::ColorInterpretation::AlphaBand
    );
    let preview = Dataset::open(dir.path().join("parent.preview.png")).unwrap();
    assert_eq!(
        (preview.raster_size(), preview.raster_count()),
        ((900, 900), 4)
    );
    let (_, rgba) = pixels(&dir.path().join("parent.preview.png"));
    let red = &rgba[..900 * 900];
    let dark = red.iter().filter(|&&v| v <= 5.0).count() as f64 / red.len() as f64;
    let bright = red.iter().filter(|&&v| v >= 250.0).count() as f64 / red.len() as f64;
    // A 2–98 % stretch clips about 2 % at each end.
    assert!(
        (0.01..0.05).contains(&dark) && (0.01..0.05).contains(&bright),
        "{dark} {bright}"
    );
}

#[test]
fn overlapping_pieces_of_osbs_029_reassemble_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    // Four 250 px pieces overlapping by 100 px, given in an order unlike their placement.
    cut(&osbs(), [150, 150, 250, 250], &p("d.tif"), &[]);
    cut(&osbs(), [0, 0, 250, 250], &p("a.tif"), &[]);
    cut(&osbs(), [0, 150, 250, 250], &p("c.tif"), &[]);
    cut(&osbs(), [150, 0, 250, 250], &p("b.tif"), &[]);
    let out = p("osbs.tif");
    let run = mosaic(&["--out".as_ref(), out.as_os_str(), dir.path().as_os_str()]);
    assert!(run.status.success(), "{}", stderr(&run));
    let (gt, px) = pixels(&out);
    let (source_gt, source_px) = pixels(&osbs());
    assert_eq!(gt, source_gt);
    assert!(
        px == source_px,
        "the reassembled pixels differ from OSBS_029.tif's"
    );
    validate_cog(&out);
}

#[test]
fn two_crss_and_an_offset_grid_agree_with_gdalwarp() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    cut(&osbs(), [0, 0, 250, 250], &p("a.tif"), &[]);
    cut(&osbs(), [150, 0, 250, 250], &p("b.tif"), &[]);
    cut(&osbs(), [0, 150, 250, 250], &p("c.tif"), &[]);
    cut(&osbs(), [150, 150, 250, 250], &p("d17.tif"), &[]);
    // One piece in the neighbouring UTM zone (16N instead of 17N) …
    gdal_tool(
        "gdalwarp",
        &[
            "-q".as_ref(),
            "-t_srs".as_ref(),
            "EPSG:32616".as_ref(),
            "-r".as_ref(),
            "bilinear".as_ref(),
            p("d17.tif").as_os_str(),
            p("d16.tif").as_os_str(),
        ],
    );
    std::fs::remove_file(p("d17.tif")).unwrap();
    // … and one on a grid offset by half a pixel (0.05 m) east and south.
    cut(
        &osbs(),
        [100, 100, 200, 200],
        &p("e.tif"),
        &[
            "-a_ullr",
            "404221.95",
            "3285132.85",
            "404241.95",
            "3285112.85",
        ],
    );
    let out = p("mixed.tif");
    let run = mosaic(&["--out".as_ref(), out.as_os_str(), dir.path().as_os_str()]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("5 input(s) used, 1 warped to EPSG:32617")
    );

    // gdalwarp with the same CRS, grid, resampling and input order makes the reference.
    let ds = Dataset::open(&out).unwrap();
    let (w, h) = ds.raster_size();
    let gt = ds.geo_transform().unwrap();
    let te = [
        gt[0],
        gt[3] + gt[5] * h as f64,
        gt[0] + gt[1] * w as f64,
        gt[3],
    ]
    .map(|v| v.to_string());
    let order: Vec<PathBuf> = provenance(&out)
        .iter()
        .map(|i| PathBuf::from(i["source"].as_str().unwrap()))
        .collect();
    let reference = p("gdalwarp.tif");
    let mut args: Vec<&OsStr> = vec![
        "-q",
        "-overwrite",
        "-t_srs",
        "EPSG:32617",
        "-tr",
        "0.1",
        "0.1",
        "-r",
        "bilinear",
        "-te",
    ]
    .into_iter()
    .map(OsStr::new)
    .collect();
    args.extend(te.iter().map(OsStr::new));
    args.extend(order.iter().map(|p| p.as_os_str()));
    args.push(reference.as_os_str());
    gdal_tool("gdalwarp", &args);

    let (ref_gt, ref_px) = pixels(&reference);
    let (_, px) = pixels(&out);
    for (a, b) in gt.iter().zip(ref_gt) {
        assert!((a - b).abs() < 1e-6, "{gt:?} vs gdalwarp's {ref_gt:?}");
    }
    // The tolerance: GDAL's warper evaluates bilinear weights per chunk, so a warped VRT and
    // gdalwarp's chunked output differ by a few DN at sharp edges (measured: mean 0.21 DN,
    // 97.4 % within 1 DN).
    let diffs: Vec<f64> = px.iter().zip(&ref_px).map(|(a, b)| (a - b).abs()).collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let within = diffs.iter().filter(|&&d| d <= 1.0).count() as f64 / diffs.len() as f64;
    assert!(
        mean < 0.5 && within > 0.95,
        "mean |Δ| {mean} DN, {within} within 1 DN"
    );
}

#[test]
fn bad_inputs_are_named_and_the_good_ones_mosaicked() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    cut(&osbs(), [0, 0, 250, 250], &p("a.tif"), &[]);
    cut(&osbs(), [150, 0, 250, 250], &p("b.tif"), &[]);
    let a = std::fs::read(p("a.tif")).unwrap();
    std::fs::write(p("truncated.tif"), &a[..a.len() / 4]).unwrap();
    std::fs::copy(
        fixtures().join("deepforest-2.1.0/OSBS_029.png"),
        p("png.tif"),
    )
    .unwrap();
    gdal_tool(
        "gdal_translate",
        &[
            "-q".as_ref(),
            fixtures().join("deepforest-2.1.0/OSBS_029.png").as_os_str(),
            p("plain.tif").as_os_str(),
        ],
    );
    cut(&osbs(), [0, 0, 100, 100], &p("one-band.tif"), &["-b", "1"]);
    cut(
        &osbs(),
        [0, 0, 100, 100],
        &p("uint16.tif"),
        &["-ot", "UInt16"],
    );
    // A rotated geotransform, written through a VRT whose GeoTransform is edited.
    cut(
        &osbs(),
        [0, 0, 100, 100],
        &p("rotated.vrt"),
        &["-of", "VRT"],
    );
    let vrt = std::fs::read_to_string(p("rotated.vrt")).unwrap();
    let start = vrt.find("<GeoTransform>").unwrap();
    let end = vrt.find("</GeoTransform>").unwrap();
    let rotated = format!(
        "{}<GeoTransform>404211.9, 0.1, 0.02, 3285142.9, 0.02, -0.1{}",
        &vrt[..start],
        &vrt[end..]
    );
    std::fs::write(p("rotated.vrt"), rotated).unwrap();
    gdal_tool(
        "gdal_translate",
        &[
            "-q".as_ref(),
            p("rotated.vrt").as_os_str(),
            p("rotated.tif").as_os_str(),
        ],
    );
    std::fs::remove_file(p("rotated.vrt")).unwrap();
    std::fs::write(p("bomb.tif"), bomb()).unwrap();

    let names = [
        "a.tif",
        "truncated.tif",
        "png.tif",
        "plain.tif",
        "one-band.tif",
        "uint16.tif",
        "rotated.tif",
        "bomb.tif",
        "missing.tif",
        "b.tif",
    ];
    let mut args: Vec<PathBuf> = vec!["--out".into(), p("out.tif")];
    args.extend(names.iter().map(|n| p(n)));
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let run = mosaic(&args);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let err = stderr(&run);
    let line = |name: &str| {
        err.lines()
            .find(|l| l.contains(&format!("{}:", p(name).display())))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{err}"))
            .to_owned()
    };
    assert!(line("truncated.tif").contains("truncated: its image data runs to byte"));
    assert!(line("png.tif").contains("not a TIFF: image/png"));
    assert!(line("plain.tif").contains("no georeferencing"));
    assert!(line("one-band.tif").contains("1 bands, but the mosaic has 3"));
    assert!(line("uint16.tif").contains("sample type UInt16, but the mosaic's is Byte"));
    assert!(line("rotated.tif").contains("not north-up"));
    assert!(
        line("bomb.tif").contains("1000000 × 1000000 pixels is more than the limit of 50000000000")
    );
    assert!(line("missing.tif").contains("unreadable"));
    assert!(err.contains("8 input(s) refused"), "{err}");
    assert!(!err.contains(&format!("{}:", p("a.tif").display())));

    let sources: Vec<String> = provenance(&p("out.tif"))
        .iter()
        .map(|i| i["source"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sources,
        [p("a.tif"), p("b.tif")].map(|p| p.display().to_string())
    );
    let (_, px) = pixels(&p("out.tif"));
    let (_, osbs_px) = pixels(&osbs());
    // a and b cover the top 250 rows of OSBS_029 exactly.
    assert_eq!(px[..400 * 250], osbs_px[..400 * 250]);
}

#[test]
fn uncovered_areas_are_masked_not_valid_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    // Two diagonal pieces with no nodata value: the other two corners are covered by nothing.
    cut(
        &osbs(),
        [0, 0, 250, 250],
        &p("a.tif"),
        &["-a_nodata", "none"],
    );
    cut(
        &osbs(),
        [150, 150, 250, 250],
        &p("d.tif"),
        &["-a_nodata", "none"],
    );
    let run = mosaic(&[
        "--out".as_ref(),
        p("out.tif").as_os_str(),
        p("a.tif").as_os_str(),
        p("d.tif").as_os_str(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let ds = Dataset::open(p("out.tif")).unwrap();
    assert_eq!(
        ds.raster_count(),
        3,
        "bands as the inputs: the mask is not a band"
    );
    let band = ds.rasterband(1).unwrap();
    assert!(band.mask_flags().unwrap().is_per_dataset());
    let mask = band
        .open_mask_band()
        .unwrap()
        .read_as::<u8>((0, 0), (400, 400), (400, 400), None)
        .unwrap();
    let at = |col: usize, row: usize| mask.data()[row * 400 + col];
    assert_eq!((at(0, 0), at(399, 399)), (255, 255), "covered");
    assert_eq!((at(399, 0), at(0, 399)), (0, 0), "not covered");
    let uncovered = mask.data().iter().filter(|&&m| m == 0).count();
    assert_eq!(uncovered, 2 * 150 * 150);
    validate_cog(&p("out.tif"));
}

#[test]
fn nothing_usable_is_an_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let png = fixtures().join("deepforest-2.1.0/OSBS_029.png");
    let out = dir.path().join("none.tif");
    let run = mosaic(&["--out".as_ref(), out.as_os_str(), png.as_os_str()]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("every input was refused"));
    assert!(!out.exists());
    let usage = mosaic(&[
        "--resolution".as_ref(),
        "sharp".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        png.as_os_str(),
    ]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("expected highest, lowest, average or a pixel size"));
}

/// A 130-byte little-endian TIFF claiming 1,000,000 × 1,000,000 8-bit pixels (10¹² pixels) in
/// one 1-byte strip: a decompression bomb's header.
fn bomb() -> Vec<u8> {
    // (tag, type, count, value): ImageWidth, ImageLength, BitsPerSample, Compression,
    // Photometric, StripOffsets, SamplesPerPixel, RowsPerStrip, StripByteCounts.
    let entries: [(u16, u16, u32, u32); 9] = [
        (256, 4, 1, 1_000_000),
        (257, 4, 1, 1_000_000),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8),
        (277, 3, 1, 1),
        (278, 4, 1, 1_000_000),
        (279, 4, 1, 1),
    ];
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(16u32.to_le_bytes());
    tiff.extend([0u8; 8]);
    tiff.extend(u16::try_from(entries.len()).unwrap().to_le_bytes());
    for (tag, kind, count, value) in entries {
        tiff.extend(tag.to_le_bytes());
        tiff.extend(kind.to_le_bytes());
        tiff.extend(count.to_le_bytes());
        tiff.extend(value.to_le_bytes());
    }
    tiff.extend(0u32.to_le_bytes());
    tiff
}

#[test]
fn a_large_mosaic_stays_under_512_mib() {
    // 64 tiles of 2,000 × 2,000 RGB (a 16,000² mosaic, 768 MB of pixels) from real imagery:
    // OSBS_029 enlarged five times by GDAL, copied and georeferenced side by side.
    let dir = tempfile::tempdir().unwrap();
    let tiles = dir.path().join("tiles");
    std::fs::create_dir(&tiles).unwrap();
    let base = dir.path().join("base.tif");
    gdal_tool(
        "gdal_translate",
        &[
            "-q",
            "-outsize",
            "2000",
            "2000",
            "-r",
            "bilinear",
            "-co",
            "COMPRESS=DEFLATE",
            "-co",
            "TILED=YES",
        ]
        .map(OsStr::new)
        .into_iter()
        .chain([osbs().as_os_str(), base.as_os_str()])
        .collect::<Vec<_>>(),
    );
    for i in 0..8 {
        for j in 0..8 {
            let tile = tiles.join(format!("t{i}{j}.tif"));
            std::fs::copy(&base, &tile).unwrap();
            let (x, y) = (
                404_211.9 + 200.0 * f64::from(i),
                3_285_142.9 - 200.0 * f64::from(j),
            );
            let ullr = [x, y, x + 200.0, y - 200.0].map(|v| format!("{v:.1}"));
            let mut args: Vec<&OsStr> = vec!["-a_ullr".as_ref()];
            args.extend(ullr.iter().map(OsStr::new));
            args.push(tile.as_os_str());
            gdal_tool("gdal_edit.py", &args);
        }
    }
    let out = dir.path().join("large.tif");
    let (status, peak_kib) = run_measured(
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["mosaic", "--out"])
            .arg(&out)
            .arg(&tiles)
            .stdout(std::process::Stdio::null()),
    );
    assert!(status.success());
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.raster_size(), (16_000, 16_000));
    assert!(peak_kib < 512 * 1024, "peak resident memory {peak_kib} KiB");
}

/// Runs `command` and returns its exit status and peak resident set size in KiB (`wait4`'s
/// `ru_maxrss`, for that child alone): std's `Child::wait` does not report it.
#[allow(unsafe_code, clippy::zombie_processes)] // waited for by wait4, not Child::wait
fn run_measured(command: &mut Command) -> (std::process::ExitStatus, i64) {
    use std::os::unix::process::ExitStatusExt;
    let child = command.spawn().expect("spawn");
    let pid = i32::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and wait4 writes only into the two locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; the pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    (std::process::ExitStatus::from_raw(status), usage.ru_maxrss)
}
