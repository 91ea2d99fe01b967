//! Raster I/O with GDAL: the only module that imports `gdal` (ARCHITECTURE.md's house rule).
//!
//! The rest of the backend sees [`Raster`] (a probed input: size, geotransform, CRS, bands,
//! sample type, nodata; windows read into the caller's buffer) and three operations that are
//! GDAL's work, asked for with tessera-core's decisions: [`write_mosaic`] (warped VRTs, a
//! `-strict` VRT mosaic, the COG), [`write_rendition`] (the 8-bit RGBA VRT) and
//! [`write_preview`] (a PNG). GDAL 3.6 through the `gdal` crate 0.19; the utilities the crate
//! does not wrap (`GDALTranslate`, `GDALWarp`) through `gdal_sys`: the only `unsafe` code of
//! the backend, each block with the reason it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::ptr::null_mut;
use std::sync::Once;

use anyhow::{Context, Result, anyhow, bail};
use gdal::raster::{ColorInterpretation, GdalDataType, ResampleAlg};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::{Dataset, DatasetOptions, GdalOpenFlags, Metadata};
use tessera_core::limits;
use tessera_core::mosaic::{
    Bounds, Crs, CrsUnits, FOOTPRINT_DENSIFY_POINTS, GDAL_CACHE_MIB, GeoTransform, InputProblem,
    MosaicGrid, Nodata, RasterProbe, Rendition, Resampling, STRETCH_SAMPLE_SIDE, SampleType,
    Stretch, cog_creation_options, fit_within, ground_sampling_distance,
};

/// A rectangle of pixels: column and row of the top-left pixel, width and height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Column of the first pixel.
    pub x: usize,
    /// Row of the first pixel.
    pub y: usize,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// A sample type windows are read as: `f64` for any data, `u8` for Byte data without
/// conversion.
pub trait Sample: gdal::raster::GdalType + Copy {}
impl Sample for u8 {}
impl Sample for f64 {}

/// A raster as the rest of the backend sees it.
pub trait Raster {
    /// What its header says.
    fn probe(&self) -> &RasterProbe;

    /// Reads `window` of band `band` (1-based), resampled to `out.0 × out.1` pixels (GDAL
    /// reads from the overview nearest that size), into `buf` row-major as `T` (GDAL converts,
    /// saturating); averaging when reducing, bilinear when enlarging.
    ///
    /// # Errors
    /// `buf.len() != out.0 * out.1`, or GDAL's read error.
    fn read_window<T: Sample>(
        &self,
        band: usize,
        window: Window,
        out: (usize, usize),
        buf: &mut [T],
    ) -> Result<()>;

    /// Reads which pixels of `window` hold data (GDAL's mask of band 1: nodata, alpha or an
    /// internal mask; 0 = no data, 255 = data), resampled to `out` like
    /// [`Raster::read_window`].
    ///
    /// # Errors
    /// As [`Raster::read_window`].
    fn read_valid(&self, window: Window, out: (usize, usize), buf: &mut [u8]) -> Result<()>;
}

/// A GeoTIFF opened with GDAL and probed.
pub struct GdalRaster {
    dataset: Dataset,
    probe: RasterProbe,
}

impl std::fmt::Debug for GdalRaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GdalRaster")
            .field("path", &self.dataset.description().unwrap_or_default())
            .field("probe", &self.probe)
            .finish()
    }
}

/// Sets GDAL up once per process: the block cache ([`GDAL_CACHE_MIB`]) and GDAL's messages
/// routed to `tracing` instead of stderr.
pub fn configure() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gdal::config::set_error_handler(|class, number, message| {
            tracing::debug!(target: "gdal", ?class, number, "{message}");
        });
        let cache = GDAL_CACHE_MIB.to_string();
        gdal::config::set_config_option("GDAL_CACHEMAX", &cache)
            .expect("GDAL_CACHEMAX is a valid option");
    });
}

impl GdalRaster {
    /// Opens and probes a GeoTIFF, reading its header only: the signature, then the pixel
    /// count against `max_pixels`, then that every strip or tile the header points at lies
    /// inside the file.
    ///
    /// # Errors
    /// [`InputProblem::NotTiff`], [`InputProblem::Unreadable`],
    /// [`InputProblem::TooManyPixels`], [`InputProblem::Truncated`] or
    /// [`InputProblem::UnsupportedSampleType`]. Georeferencing is checked by the caller
    /// ([`RasterProbe::check`]).
    pub fn open(path: &Path, max_pixels: u64) -> Result<Self, InputProblem> {
        configure();
        let unreadable = |e: &dyn std::fmt::Display| InputProblem::Unreadable {
            reason: e.to_string(),
        };
        let mut head = [0u8; 16];
        let file_bytes = {
            use std::io::Read;
            let mut file = std::fs::File::open(path).map_err(|e| unreadable(&e))?;
            let n = file.read(&mut head).map_err(|e| unreadable(&e))?;
            if let Err(e) = limits::sniff(&head[..n])
                .map_err(|e| e.to_string())
                .and_then(|f| match f {
                    limits::ImageFormat::Tiff => Ok(()),
                    other => Err(format!("{} image", other.content_type())),
                })
            {
                return Err(InputProblem::NotTiff { detected: e });
            }
            file.metadata().map_err(|e| unreadable(&e))?.len()
        };
        let dataset = Dataset::open_ex(
            path,
            DatasetOptions {
                open_flags: GdalOpenFlags::GDAL_OF_RASTER | GdalOpenFlags::GDAL_OF_READONLY,
                allowed_drivers: Some(&["GTiff"]),
                ..DatasetOptions::default()
            },
        )
        .map_err(|e| unreadable(&e))?;
        let probe = probe(&dataset).map_err(|e| unreadable(&e))?;
        let probe = probe?;
        if probe.pixels() > max_pixels {
            return Err(InputProblem::TooManyPixels {
                width: probe.width,
                height: probe.height,
                max_pixels,
            });
        }
        let needed_bytes = data_end(&dataset).map_err(|e| unreadable(&e))?;
        if needed_bytes > file_bytes {
            return Err(InputProblem::Truncated {
                needed_bytes,
                file_bytes,
            });
        }
        Ok(Self { dataset, probe })
    }

    /// The GeoTIFFs at `paths` (already probed: one CRS, one band count and sample type) as
    /// one virtual raster on `grid` (GDALBuildVRT with `-strict`; later files win where they
    /// overlap), so that windows run across the seams between files.
    ///
    /// # Errors
    /// GDAL's.
    pub fn virtual_mosaic(paths: &[PathBuf], grid: &MosaicGrid) -> Result<Self> {
        configure();
        let dataset = build_vrt(paths, grid, &[]).context("building the virtual mosaic")?;
        let probe = probe(&dataset)?.map_err(|p| anyhow!("{p}"))?;
        Ok(Self { dataset, probe })
    }

    /// The path it was opened from.
    #[must_use]
    pub fn path(&self) -> String {
        self.dataset.description().unwrap_or_default()
    }

    /// The TIFF `DateTime` tag (`YYYY:MM:DD HH:MM:SS`), if any.
    #[must_use]
    pub fn tiff_datetime(&self) -> Option<String> {
        self.dataset.metadata_item("TIFFTAG_DATETIME", "")
    }
}

impl Raster for GdalRaster {
    fn probe(&self) -> &RasterProbe {
        &self.probe
    }

    fn read_window<T: Sample>(
        &self,
        band: usize,
        window: Window,
        out: (usize, usize),
        buf: &mut [T],
    ) -> Result<()> {
        self.dataset
            .rasterband(band)?
            .read_into_slice(
                (window.x as isize, window.y as isize),
                (window.width, window.height),
                out,
                buf,
                // Averaging when reducing; bilinear when enlarging (a raster coarser than
                // its model's range, `ModelDescription::scale_for`).
                Some(if out.0 > window.width || out.1 > window.height {
                    ResampleAlg::Bilinear
                } else {
                    ResampleAlg::Average
                }),
            )
            .with_context(|| format!("reading band {band} of {}", self.path()))
    }

    fn read_valid(&self, window: Window, out: (usize, usize), buf: &mut [u8]) -> Result<()> {
        self.dataset
            .rasterband(1)?
            .open_mask_band()?
            .read_into_slice(
                (window.x as isize, window.y as isize),
                (window.width, window.height),
                out,
                buf,
                Some(ResampleAlg::NearestNeighbour),
            )
            .with_context(|| format!("reading the mask of {}", self.path()))
    }
}

/// The probe of an open dataset; the inner error is a refusal, the outer one GDAL's.
fn probe(dataset: &Dataset) -> gdal::errors::Result<Result<RasterProbe, InputProblem>> {
    let (width, height) = dataset.raster_size();
    let count = dataset.raster_count();
    if count == 0 {
        return Ok(Err(InputProblem::Unreadable {
            reason: "no raster bands".into(),
        }));
    }
    let first = dataset.rasterband(1)?;
    let has_alpha = count > 1
        && dataset.rasterband(count)?.color_interpretation() == ColorInterpretation::AlphaBand;
    let sample_type = match sample_type(dataset, first.band_type()) {
        Ok(t) => t,
        Err(problem) => return Ok(Err(problem)),
    };
    let crs = dataset.spatial_ref().ok().map(|srs| crs_of(&srs));
    // GDAL answers the identity [0,1,0,0,0,1] with an error when there is none.
    let geotransform = dataset.geo_transform().ok().map(GeoTransform);
    Ok(Ok(RasterProbe {
        width,
        height,
        bands: count - usize::from(has_alpha),
        has_alpha,
        sample_type,
        nodata: first.no_data_value(),
        crs,
        geotransform,
    }))
}

fn sample_type(dataset: &Dataset, t: GdalDataType) -> Result<SampleType, InputProblem> {
    Ok(match t {
        // GDAL 3.6 has no Int8: signed bytes are Byte with PIXELTYPE=SIGNEDBYTE.
        GdalDataType::UInt8
            if dataset
                .rasterband(1)
                .ok()
                .and_then(|b| b.metadata_item("PIXELTYPE", "IMAGE_STRUCTURE"))
                .as_deref()
                == Some("SIGNEDBYTE") =>
        {
            SampleType::Int8
        }
        GdalDataType::UInt8 => SampleType::Byte,
        GdalDataType::UInt16 => SampleType::UInt16,
        GdalDataType::Int16 => SampleType::Int16,
        GdalDataType::UInt32 => SampleType::UInt32,
        GdalDataType::Int32 => SampleType::Int32,
        GdalDataType::UInt64 => SampleType::UInt64,
        GdalDataType::Int64 => SampleType::Int64,
        GdalDataType::Float32 => SampleType::Float32,
        GdalDataType::Float64 => SampleType::Float64,
        GdalDataType::Unknown => {
            return Err(InputProblem::UnsupportedSampleType { name: t.name() });
        }
    })
}

/// `AUTHORITY:CODE` when the CRS has one (after GDAL's EPSG identification), else its WKT.
fn crs_of(srs: &SpatialRef) -> Crs {
    let mut srs = srs.clone();
    if srs.auth_code().is_err() {
        let _ = srs.auto_identify_epsg();
    }
    let id = match (srs.auth_name(), srs.auth_code()) {
        (Some(name), Ok(code)) => format!("{name}:{code}"),
        _ => srs.to_wkt().unwrap_or_default(),
    };
    Crs {
        name: srs.name().unwrap_or_else(|| id.clone()),
        id,
    }
}

fn spatial_ref(crs: &Crs) -> Result<SpatialRef> {
    let mut srs = SpatialRef::from_definition(&crs.id)?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(srs)
}

/// `bounds` in CRS `from` transformed into CRS `to` (edges densified with
/// [`FOOTPRINT_DENSIFY_POINTS`] points each, GDAL's `OCTTransformBounds`), in the traditional
/// x = easting/longitude order.
///
/// # Errors
/// GDAL's, when a CRS cannot be parsed or the bounds cannot be transformed.
pub fn transform_bounds(bounds: Bounds, from: &Crs, to: &Crs) -> Result<Bounds> {
    let source = spatial_ref(from)?;
    let target = spatial_ref(to)?;
    let densify = i32::try_from(FOOTPRINT_DENSIFY_POINTS).expect("a small count");
    let [min_x, min_y, max_x, max_y] = CoordTransform::new(&source, &target)?.transform_bounds(
        &[bounds.min_x, bounds.min_y, bounds.max_x, bounds.max_y],
        densify,
    )?;
    Ok(Bounds {
        min_x,
        min_y,
        max_x,
        max_y,
    })
}

/// A georeferenced raster's ground sampling distance in metres per pixel
/// ([`ground_sampling_distance`], with the CRS's units from OSR and the latitude of the
/// raster's centre); `None` without a CRS and geotransform, or when the CRS's units are
/// neither linear nor degrees.
///
/// # Errors
/// GDAL's, when the CRS cannot be parsed or the centre cannot be transformed.
pub fn gsd_m(probe: &RasterProbe) -> Result<Option<f64>> {
    let (Some(crs), Some(gt)) = (&probe.crs, probe.geotransform) else {
        return Ok(None);
    };
    let srs = spatial_ref(crs)?;
    let units = if srs.is_projected() {
        CrsUnits::Linear {
            metres_per_unit: srs.linear_units(),
        }
    } else if srs.is_geographic() && (srs.angular_units() - 1f64.to_radians()).abs() < 1e-12 {
        CrsUnits::Degrees
    } else {
        return Ok(None);
    };
    let centre = gt.apply(probe.width as f64 / 2.0, probe.height as f64 / 2.0);
    let latitude = to_wgs84(&[centre], crs)?[0].1;
    let [_, a, b, _, d, e] = gt.0;
    let pixel = (a.hypot(d), b.hypot(e));
    Ok(Some(ground_sampling_distance(pixel, units, latitude)))
}

/// `points` (x, y in CRS `from`) as WGS 84 longitude and latitude in degrees (EPSG:4326 in
/// the traditional longitude-first order, as GeoJSON wants; GDAL's OSR/PROJ).
///
/// # Errors
/// GDAL's, when the CRS cannot be parsed or a point cannot be transformed.
pub fn to_wgs84(points: &[(f64, f64)], from: &Crs) -> Result<Vec<(f64, f64)>> {
    let source = spatial_ref(from)?;
    let mut wgs84 = SpatialRef::from_epsg(4326)?;
    wgs84.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    let mut ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    let mut zs = vec![0.0; points.len()];
    CoordTransform::new(&source, &wgs84)?.transform_coords(&mut xs, &mut ys, &mut zs)?;
    Ok(xs.into_iter().zip(ys).collect())
}

/// The end of the farthest strip or tile any band's header points at (GDAL's `TIFF`
/// metadata domain, `BLOCK_OFFSET_x_y` and `BLOCK_SIZE_x_y`), in bytes from the file's start.
fn data_end(dataset: &Dataset) -> Result<u64> {
    let separate = dataset
        .metadata_item("INTERLEAVE", "IMAGE_STRUCTURE")
        .as_deref()
        == Some("BAND");
    let bands = if separate { dataset.raster_count() } else { 1 };
    let mut end = 0u64;
    for b in 1..=bands {
        let band = dataset.rasterband(b)?;
        let (bw, bh) = band.block_size();
        let (w, h) = band.size();
        for y in 0..h.div_ceil(bh.max(1)) {
            for x in 0..w.div_ceil(bw.max(1)) {
                let item = |name: &str| {
                    band.metadata_item(&format!("{name}_{x}_{y}"), "TIFF")
                        .and_then(|v| v.parse::<u64>().ok())
                };
                // A sparse block (offset 0) reads as nodata and needs no bytes.
                if let (Some(offset), Some(size)) = (item("BLOCK_OFFSET"), item("BLOCK_SIZE")) {
                    end = end.max(offset + size);
                }
            }
        }
    }
    Ok(end)
}

/// One input of [`write_mosaic`], in overlap order (last wins).
#[derive(Debug)]
pub struct MosaicInput<'a> {
    /// The GeoTIFF.
    pub path: &'a Path,
    /// `Some(window)`: warp it into this window of the mosaic grid (it is in another CRS);
    /// `None`: place it as it is.
    pub warp_into: Option<MosaicGrid>,
}

/// What [`write_mosaic`] is asked to make.
#[derive(Debug)]
pub struct MosaicRequest<'a> {
    /// The inputs, in overlap order.
    pub inputs: Vec<MosaicInput<'a>>,
    /// The output CRS.
    pub crs: &'a Crs,
    /// The output grid.
    pub grid: MosaicGrid,
    /// How uncovered pixels are marked.
    pub nodata: Nodata,
    /// Resampling where grids differ.
    pub resampling: Resampling,
    /// Metadata items written into the COG.
    pub metadata: Vec<(&'static str, String)>,
}

/// Writes the mosaic as a Cloud-Optimized GeoTIFF at `out`: inputs in another CRS warped
/// (GDALWarp into VRT files on the mosaic's grid, in a temporary folder beside `out`), one
/// VRT over all inputs by file name (GDALBuildVRT with `-strict`: nothing is silently
/// skipped; GDAL keeps at most its dataset pool, 100 files, open however many inputs there
/// are), then GDALTranslate to the COG driver with [`cog_creation_options`]. Only GDAL's
/// block cache holds pixels. `progress` is called with the fraction done, 0.0–1.0.
///
/// # Errors
/// GDAL's, with its message.
pub fn write_mosaic(
    request: &MosaicRequest<'_>,
    out: &Path,
    progress: &mut dyn FnMut(f64),
) -> Result<()> {
    configure();
    let scratch = tempfile::Builder::new()
        .prefix(".tessera-warp-")
        .tempdir_in(
            out.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .context("creating a folder for warped inputs")?;
    let wkt = spatial_ref(request.crs)?.to_wkt()?;
    let mut sources = Vec::with_capacity(request.inputs.len());
    for (i, input) in request.inputs.iter().enumerate() {
        match input.warp_into {
            None => sources.push(input.path.to_owned()),
            Some(window) => {
                let vrt = scratch.path().join(format!("{i}.vrt"));
                warp(input.path, &wkt, &window, request, &vrt)?;
                sources.push(vrt);
            }
        }
    }
    let grid = request.grid;
    let mut args: Vec<String> = vec!["-r".into(), request.resampling.gdal_name().into()];
    match request.nodata {
        Nodata::Value(v) => args.extend(["-vrtnodata".into(), v.to_string()]),
        Nodata::Mask => args.push("-addalpha".into()),
    }
    let mut vrt = build_vrt(&sources, &grid, &args).context("building the VRT mosaic")?;
    if vrt.raster_size() != (grid.width, grid.height) {
        bail!(
            "GDAL laid the VRT out as {:?} pixels, not the planned {} × {}",
            vrt.raster_size(),
            grid.width,
            grid.height
        );
    }
    for (key, value) in &request.metadata {
        vrt.set_metadata_item(key, value, "")?;
    }
    let mut translate: Vec<String> = vec!["-of".into(), "COG".into()];
    for option in cog_creation_options() {
        translate.extend(["-co".into(), option]);
    }
    if request.nodata == Nodata::Mask {
        let bands = vrt.raster_count() - 1;
        for b in 1..=bands {
            translate.extend(["-b".into(), b.to_string()]);
        }
        translate.extend(["-mask".into(), (bands + 1).to_string()]);
    }
    let cog = gdal_translate(&vrt, out, &translate, progress)
        .with_context(|| format!("writing the COG {}", out.display()))?;
    cog.close()?;
    Ok(())
}

/// `GDALBuildVRT` over files by name into an in-memory VRT on `grid` (`-strict -te -tr`:
/// nothing silently skipped, the grid's extent and pixel size), with `extra` arguments.
fn build_vrt(sources: &[PathBuf], grid: &MosaicGrid, extra: &[String]) -> Result<Dataset> {
    let b = grid.bounds();
    let (pw, ph) = grid.geotransform.pixel_size();
    let mut args: Vec<String> = vec!["-strict".into(), "-te".into()];
    args.extend([b.min_x, b.min_y, b.max_x, b.max_y].map(|v| v.to_string()));
    args.push("-tr".into());
    args.extend([pw, ph].map(|v| v.to_string()));
    args.extend_from_slice(extra);
    let names = sources
        .iter()
        .map(|p| {
            Ok(CString::new(
                p.to_str().context("input path is not UTF-8")?,
            )?)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let options = Args::new(&args)?;
    let count = c_int::try_from(names.len()).context("too many inputs for GDAL")?;
    let empty = CString::default();
    // SAFETY: the names, options and output name live until GDALBuildVRT returns; it returns
    // a new dataset handle (or null) that `Dataset` then owns and closes.
    unsafe {
        let opts = gdal_sys::GDALBuildVRTOptionsNew(options.as_ptr(), null_mut());
        if opts.is_null() {
            bail!("gdalbuildvrt options refused: {}", last_error());
        }
        let mut usage_error: c_int = 0;
        let handle = gdal_sys::GDALBuildVRT(
            empty.as_ptr(),
            count,
            null_mut(),
            name_ptrs.as_mut_ptr(),
            opts,
            &raw mut usage_error,
        );
        gdal_sys::GDALBuildVRTOptionsFree(opts);
        if handle.is_null() {
            bail!("{}", last_error());
        }
        Ok(Dataset::from_c_dataset(handle))
    }
}

/// Warps one input into `window` of the mosaic grid as a VRT file at `out` (gdalwarp
/// `-of VRT -t_srs -te -ts -r`), its uncovered pixels nodata or alpha as the mosaic's.
fn warp(
    path: &Path,
    wkt: &str,
    window: &MosaicGrid,
    request: &MosaicRequest<'_>,
    out: &Path,
) -> Result<()> {
    let source = Dataset::open(path)?;
    let b = window.bounds();
    let mut args: Vec<String> = vec![
        "-of".into(),
        "VRT".into(),
        "-t_srs".into(),
        wkt.into(),
        "-te".into(),
        b.min_x.to_string(),
        b.min_y.to_string(),
        b.max_x.to_string(),
        b.max_y.to_string(),
        "-ts".into(),
        window.width.to_string(),
        window.height.to_string(),
        "-r".into(),
        request.resampling.gdal_name().into(),
    ];
    match request.nodata {
        Nodata::Value(v) => args.extend(["-dstnodata".into(), v.to_string()]),
        Nodata::Mask => args.push("-dstalpha".into()),
    }
    let options = Args::new(&args)?;
    let out_c = CString::new(out.to_str().context("path is not UTF-8")?)?;
    // SAFETY: the options, output name and source handle outlive the call; GDALWarp returns a
    // new dataset handle (or null) that `Dataset` then owns and closes (writing the VRT).
    unsafe {
        let opts = gdal_sys::GDALWarpAppOptionsNew(options.as_ptr(), null_mut());
        if opts.is_null() {
            bail!("gdalwarp options refused: {}", last_error());
        }
        let mut handle = source.c_dataset();
        let mut usage_error: c_int = 0;
        let warped = gdal_sys::GDALWarp(
            out_c.as_ptr(),
            null_mut(),
            1,
            &raw mut handle,
            opts,
            &raw mut usage_error,
        );
        gdal_sys::GDALWarpAppOptionsFree(opts);
        if warped.is_null() {
            bail!("warping {}: {}", path.display(), last_error());
        }
        Dataset::from_c_dataset(warped).close()?;
    }
    Ok(())
}

/// `GDALTranslate(out, source, args)` with a progress callback.
fn gdal_translate(
    source: &Dataset,
    out: &Path,
    args: &[String],
    progress: &mut dyn FnMut(f64),
) -> Result<Dataset> {
    let options = Args::new(args)?;
    let out_c = CString::new(out.to_str().context("output path is not UTF-8")?)?;
    let mut progress: &mut dyn FnMut(f64) = progress;
    // SAFETY: every pointer passed lives until GDALTranslate returns; the callback's user
    // data is `progress`, a `&mut &mut dyn FnMut(f64)` on this stack frame.
    unsafe {
        let opts = gdal_sys::GDALTranslateOptionsNew(options.as_ptr(), null_mut());
        if opts.is_null() {
            bail!("gdal_translate options refused: {}", last_error());
        }
        gdal_sys::GDALTranslateOptionsSetProgress(
            opts,
            Some(report_progress),
            (&raw mut progress).cast::<c_void>(),
        );
        let mut usage_error: c_int = 0;
        let handle = gdal_sys::GDALTranslate(
            out_c.as_ptr(),
            source.c_dataset(),
            opts,
            &raw mut usage_error,
        );
        gdal_sys::GDALTranslateOptionsFree(opts);
        if handle.is_null() {
            bail!("{}", last_error());
        }
        Ok(Dataset::from_c_dataset(handle))
    }
}

unsafe extern "C" fn report_progress(
    complete: f64,
    _message: *const c_char,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `data` is the `&mut &mut dyn FnMut(f64)` gdal_translate passed.
    let progress = unsafe { &mut *data.cast::<&mut dyn FnMut(f64)>() };
    progress(complete);
    1
}

/// GDAL's last error message.
fn last_error() -> String {
    // SAFETY: CPLGetLastErrorMsg returns a pointer to a thread-local, NUL-terminated string.
    let message = unsafe { CStr::from_ptr(gdal_sys::CPLGetLastErrorMsg()) };
    let message = message.to_string_lossy();
    if message.is_empty() {
        "GDAL gave no reason".into()
    } else {
        message.into_owned()
    }
}

/// A NULL-terminated `char**` argument list for GDAL's utility functions.
struct Args {
    _strings: Vec<CString>,
    pointers: Vec<*mut c_char>,
}

impl Args {
    fn new(args: &[String]) -> Result<Self> {
        let strings = args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let pointers = strings
            .iter()
            .map(|s| s.as_ptr().cast_mut())
            .chain(std::iter::once(null_mut()))
            .collect();
        Ok(Self {
            _strings: strings,
            pointers,
        })
    }

    fn as_ptr(&self) -> *mut *mut c_char {
        self.pointers.as_ptr().cast_mut()
    }
}

/// `raster`'s [`Rendition`]: its shown bands, and for other sample types than Byte each one's
/// [`Stretch::from_samples`] over the valid pixels of a [`STRETCH_SAMPLE_SIDE`] overview.
///
/// # Errors
/// GDAL's, reading the sample.
pub fn rendition(raster: &impl Raster) -> Result<Rendition> {
    let probe = raster.probe();
    let bands = Rendition::bands_for(probe.bands);
    if probe.sample_type == SampleType::Byte {
        return Ok(Rendition {
            bands,
            stretches: [Stretch::IDENTITY; 3],
        });
    }
    let sample = fit_within(probe.width, probe.height, STRETCH_SAMPLE_SIDE);
    let all = Window {
        x: 0,
        y: 0,
        width: probe.width,
        height: probe.height,
    };
    let mut valid = vec![0u8; sample.0 * sample.1];
    raster.read_valid(all, sample, &mut valid)?;
    let mut values = vec![0.0; valid.len()];
    let mut stretch = |band: usize| -> Result<Stretch> {
        raster.read_window(band, all, sample, &mut values)?;
        let samples = values
            .iter()
            .zip(&valid)
            .filter(|&(_, &v)| v != 0)
            .map(|(&x, _)| x)
            .collect();
        Ok(Stretch::from_samples(samples).unwrap_or(Stretch::IDENTITY))
    };
    Ok(Rendition {
        bands,
        stretches: [stretch(bands[0])?, stretch(bands[1])?, stretch(bands[2])?],
    })
}

/// Writes the 8-bit RGBA rendition of `mosaic` as a VRT beside it (`gdal_translate -of VRT
/// -ot Byte -scale_N`): red, green and blue per `rendition`, and alpha from the mosaic's mask
/// (0 where no input covers). The VRT refers to the mosaic by a path relative to itself.
///
/// # Errors
/// GDAL's.
pub fn write_rendition(mosaic: &Path, rendition: &Rendition, out: &Path) -> Result<()> {
    configure();
    let source = Dataset::open(mosaic)?;
    let mut args: Vec<String> = vec!["-of".into(), "VRT".into(), "-ot".into(), "Byte".into()];
    for band in rendition.bands {
        args.extend(["-b".into(), band.to_string()]);
    }
    args.extend([
        "-b".into(),
        "mask".into(),
        "-colorinterp".into(),
        "red,green,blue,alpha".into(),
    ]);
    for (i, s) in rendition.stretches.iter().enumerate() {
        args.extend([
            format!("-scale_{}", i + 1),
            s.lo.to_string(),
            s.hi.to_string(),
            "0".into(),
            "255".into(),
        ]);
    }
    // The mask band is already 0/255; `-a_nodata none` keeps GDAL from carrying the
    // mosaic's nodata value over to 8-bit values it does not mean.
    args.extend(["-a_nodata".into(), "none".into()]);
    let written = gdal_translate(&source, out, &args, &mut |_| {})?;
    // GDAL 3.6 leaves a `-b mask` band Undefined whatever `-colorinterp` says.
    written
        .rasterband(4)?
        .set_color_interpretation(ColorInterpretation::AlphaBand)?;
    written.close()?;
    Ok(())
}

/// Writes `rendition` as a PNG of `size` pixels (averaging, from the overviews).
///
/// # Errors
/// GDAL's.
pub fn write_preview(rendition: &Path, size: (usize, usize), out: &Path) -> Result<()> {
    configure();
    let source = Dataset::open(rendition)?;
    // zlib level 1: the preview is for eyes, and level 6 takes twice as long for 3 % less.
    let mut args: Vec<String> = vec!["-of".into(), "PNG".into(), "-co".into(), "ZLEVEL=1".into()];
    if source.raster_size() != size {
        args.extend([
            "-outsize".into(),
            size.0.to_string(),
            size.1.to_string(),
            "-r".into(),
            "average".into(),
        ]);
    }
    gdal_translate(&source, out, &args, &mut |_| {})?.close()?;
    Ok(())
}

/// Writes `rgb` (8-bit RGB, row-major, `width × height × 3`, HWC) as a PNG through GDAL's MEM
/// and PNG drivers (zlib level 1, as [`write_preview`]).
///
/// # Errors
/// GDAL's, or `rgb` of the wrong length.
pub fn write_png(rgb: &[u8], width: usize, height: usize, out: &Path) -> Result<()> {
    write_rgb(rgb, (width, height), out, "PNG", &["ZLEVEL=1"])
}

/// Writes `rgb` (as [`write_png`]) as an uncompressed, tiled TIFF without georeferencing: a
/// photo, upright, for the detector (which reads TIFFs only).
///
/// # Errors
/// GDAL's, or `rgb` of the wrong length.
pub fn write_tiff(rgb: &[u8], width: usize, height: usize, out: &Path) -> Result<()> {
    write_rgb(rgb, (width, height), out, "GTiff", &["TILED=YES"])
}

fn write_rgb(
    rgb: &[u8],
    (width, height): (usize, usize),
    out: &Path,
    driver: &str,
    options: &[&str],
) -> Result<()> {
    configure();
    if rgb.len() != width * height * 3 {
        bail!("{} bytes for a {width} × {height} RGB image", rgb.len());
    }
    let mem = gdal::DriverManager::get_driver_by_name("MEM")?;
    let image = mem.create_with_band_type::<u8, _>("", width, height, 3)?;
    for band in 0..3 {
        let plane: Vec<u8> = rgb.iter().skip(band).step_by(3).copied().collect();
        let mut buffer = gdal::raster::Buffer::new((width, height), plane);
        image
            .rasterband(band + 1)?
            .write((0, 0), (width, height), &mut buffer)?;
    }
    let format = gdal::DriverManager::get_driver_by_name(driver)?;
    let options = gdal::cpl::CslStringList::from_iter(options.iter().copied());
    image
        .create_copy(&format, out, &options)
        .with_context(|| format!("writing {}", out.display()))?
        .close()?;
    Ok(())
}

/// Reads an 8-bit image whole (a preview PNG, [`write_preview`]) as RGB, `width × height × 3`
/// (HWC): its first three bands (an alpha band is left out), or a single band as grey.
/// Returns the pixels, the width and the height.
///
/// # Errors
/// GDAL's: not an image it reads.
pub fn read_rgb(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    configure();
    let dataset = Dataset::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (width, height) = dataset.raster_size();
    let bands = dataset.raster_count();
    let mut rgb = vec![0u8; width * height * 3];
    for c in 0..3 {
        let band = if bands >= 3 { c + 1 } else { 1 };
        let plane = dataset.rasterband(band)?.read_as::<u8>(
            (0, 0),
            (width, height),
            (width, height),
            None,
        )?;
        for (px, &v) in rgb.chunks_exact_mut(3).zip(plane.data()) {
            px[c] = v;
        }
    }
    Ok((rgb, width, height))
}

/// The version of the GDAL library in use (`3.6.2`).
#[must_use]
pub fn gdal_version() -> String {
    gdal::version::version_info("RELEASE_NAME")
}

/// Checks that `path` opens as a raster (for callers that report on outputs).
///
/// # Errors
/// GDAL's.
pub fn open_output(path: &Path) -> Result<GdalRaster> {
    GdalRaster::open(path, u64::MAX).map_err(|p| anyhow!("{}: {p}", path.display()))
}
