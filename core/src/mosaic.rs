//! Mosaic planning: every rule by which georeferenced GeoTIFFs become one Cloud-Optimized
//! GeoTIFF. GDAL does the pixel work (batch-backend's `raster.rs`); this module decides what
//! it is asked to do, so that `tessera mosaic` and the batch backend's stitch stage follow
//! the same rules.
//!
//! The flow, in the order the stitch stage applies it:
//!
//! 1. Each input is probed into a [`RasterProbe`] (header only) and checked by
//!    [`RasterProbe::check`]: georeferenced, north-up, within [`MosaicOptions::max_input_pixels`].
//! 2. [`Frame::choose`] picks the output CRS, band count and sample type by majority;
//!    [`Frame::admits`] refuses the inputs that differ.
//! 3. Each admitted input's footprint in the frame's CRS becomes a [`Placement`];
//!    [`MosaicGrid::plan`] picks the pixel size ([`Resolution`]) and the grid.
//! 4. [`overlap_order`] decides which input wins where inputs overlap.
//! 5. [`Nodata::choose`] decides how uncovered areas are marked; [`cog_creation_options`]
//!    how the COG is written.
//! 6. [`Stretch`] maps UInt16/float data to the 8-bit rendition the detector and the
//!    [`PREVIEW_MAX_SIDE`] preview see.
//!
//! Geotransforms follow GDAL's raster data model
//! (<https://gdal.org/user/raster_data_model.html#affine-geotransform>):
//! `x = gt[0] + col·gt[1] + row·gt[2]`, `y = gt[3] + col·gt[4] + row·gt[5]`, at the pixel's
//! top-left corner.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Default per-input pixel limit: 50 gigapixels (about 223,600 px a side). Orthophotos of
/// several gigapixels are normal; a header claiming more is refused as a decompression bomb
/// before any pixel is read. `tessera mosaic --max-input-pixels` changes it.
pub const DEFAULT_MAX_INPUT_PIXELS: u64 = 50_000_000_000;

/// Tolerance, in pixels, within which two grids count as the same grid and a geotransform's
/// rotation terms count as zero (relative to the pixel size). Coordinates stored as decimal
/// text in GeoTIFF tags differ from exact multiples by about 10⁻¹⁰ m.
pub const GRID_TOLERANCE_PX: f64 = 1e-6;

/// Points added along each edge when an input's footprint is transformed into the mosaic's
/// CRS (GDAL's `OCTTransformBounds`; 21 is its documented recommendation), so that curved
/// edges are enclosed.
pub const FOOTPRINT_DENSIFY_POINTS: u32 = 21;

/// Block (tile) size of the COG, in pixels a side.
pub const COG_BLOCK_SIZE: u32 = 512;

/// GDAL's raster block cache, in MiB (`GDAL_CACHEMAX`). Set explicitly so that memory stays
/// bounded whatever the mosaic's size: GDAL's default is 5 % of physical memory. Writing a
/// 16,000² RGB COG peaks at about 170 MiB plus twice the cache (measured with
/// `gdal_translate -of COG`: 300 MB at 64, 441 MB at 128, 635 MB at 256) and runs no faster
/// with more, so 64 MiB keeps a mosaic of any size well under 512 MiB.
pub const GDAL_CACHE_MIB: u32 = 64;

/// Percentiles of the per-band stretch of UInt16/float data to 8 bits (2–98 %, the usual
/// "percent clip" of GIS viewers: QGIS's cumulative cut, `rio color`'s examples).
pub const STRETCH_PERCENTILES: (f64, f64) = (2.0, 98.0);

/// Longest side, in pixels, of the overview the stretch statistics are computed from: the
/// smallest overview with at least this many pixels a side, or the full resolution.
pub const STRETCH_SAMPLE_SIDE: usize = 1024;

/// Longest side of the preview PNG, in pixels.
pub const PREVIEW_MAX_SIDE: usize = 1024;

/// The Cloud-Optimized GeoTIFF's creation options for GDAL's COG driver
/// (<https://gdal.org/drivers/raster/cog.html>): DEFLATE with a predictor (horizontal
/// differencing for integers, floating-point for floats), [`COG_BLOCK_SIZE`] blocks,
/// overviews by averaging, BigTIFF when the output may exceed 4 GiB (`IF_SAFER`), and
/// compression on every core. Bands and data type are the inputs'.
#[must_use]
pub fn cog_creation_options() -> Vec<String> {
    [
        "COMPRESS=DEFLATE".to_owned(),
        "PREDICTOR=YES".to_owned(),
        format!("BLOCKSIZE={COG_BLOCK_SIZE}"),
        "OVERVIEW_RESAMPLING=AVERAGE".to_owned(),
        "BIGTIFF=IF_SAFER".to_owned(),
        "NUM_THREADS=ALL_CPUS".to_owned(),
    ]
    .into()
}

/// A GDAL affine geotransform, in GDAL's order (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoTransform(pub [f64; 6]);

impl GeoTransform {
    /// A north-up geotransform: origin at the top-left corner, square or rectangular pixels.
    #[must_use]
    pub const fn north_up(min_x: f64, max_y: f64, pixel_width: f64, pixel_height: f64) -> Self {
        Self([min_x, pixel_width, 0.0, max_y, 0.0, -pixel_height])
    }

    /// The CRS coordinates of pixel position `(col, row)` (pixel corners at integers), rotation
    /// terms included.
    #[must_use]
    pub fn apply(&self, col: f64, row: f64) -> (f64, f64) {
        let [x0, a, b, y0, d, e] = self.0;
        (x0 + col * a + row * b, y0 + col * d + row * e)
    }

    /// Pixel width and height in CRS units, both positive for a north-up raster.
    #[must_use]
    pub const fn pixel_size(&self) -> (f64, f64) {
        (self.0[1], -self.0[5])
    }

    /// Whether rows run south and columns east with no rotation or shear terms
    /// (within [`GRID_TOLERANCE_PX`] of a pixel).
    #[must_use]
    pub fn is_north_up(&self) -> bool {
        let [_, w, r1, _, r2, h] = self.0;
        let scale = w.abs().min(h.abs());
        w > 0.0
            && h < 0.0
            && r1.abs() <= GRID_TOLERANCE_PX * scale
            && r2.abs() <= GRID_TOLERANCE_PX * scale
    }

    /// The area a north-up raster of `width` × `height` pixels covers.
    #[must_use]
    pub fn bounds(&self, width: usize, height: usize) -> Bounds {
        let (w, h) = self.pixel_size();
        Bounds {
            min_x: self.0[0],
            max_y: self.0[3],
            max_x: self.0[0] + w * width as f64,
            min_y: self.0[3] - h * height as f64,
        }
    }
}

/// An axis-aligned rectangle in CRS units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// West edge.
    pub min_x: f64,
    /// South edge.
    pub min_y: f64,
    /// East edge.
    pub max_x: f64,
    /// North edge.
    pub max_y: f64,
}

impl Bounds {
    /// The smallest rectangle holding both.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self {
            min_x: self.min_x.min(other.min_x),
            min_y: self.min_y.min(other.min_y),
            max_x: self.max_x.max(other.max_x),
            max_y: self.max_y.max(other.max_y),
        }
    }
}

/// A coordinate reference system as the raster adapter identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Crs {
    /// `AUTHORITY:CODE` (`EPSG:32617`) when the CRS has one, else its WKT2. Two inputs are
    /// in the same CRS when their ids are equal.
    pub id: String,
    /// A human-readable name (`WGS 84 / UTM zone 17N`).
    pub name: String,
}

/// Metres per pixel of a north-up raster with pixel size `pixel_size` (CRS units, positive)
/// whose centre lies at latitude `latitude_deg`: `(x · y)^½` in metres. For a projected CRS,
/// units times `metres_per_unit`; for a geographic one (degrees), the length of a degree on
/// the WGS 84 ellipsoid at that latitude (the series of Osborne, "The Mercator Projections",
/// 2013, §5.6, as Wikipedia's "Length of a degree" gives: latitude 111 132.92 − 559.82 cos 2φ
/// + 1.175 cos 4φ − 0.0023 cos 6φ m; longitude 111 412.84 cos φ − 93.5 cos 3φ + 0.118 cos 5φ m).
#[must_use]
pub fn ground_sampling_distance(pixel_size: (f64, f64), units: CrsUnits, latitude_deg: f64) -> f64 {
    let (x, y) = pixel_size;
    match units {
        CrsUnits::Linear { metres_per_unit } => (x * y).sqrt() * metres_per_unit,
        CrsUnits::Degrees => {
            let phi = latitude_deg.to_radians();
            let per_lat = 111_132.92 - 559.82 * (2.0 * phi).cos() + 1.175 * (4.0 * phi).cos()
                - 0.0023 * (6.0 * phi).cos();
            let per_lon =
                111_412.84 * phi.cos() - 93.5 * (3.0 * phi).cos() + 0.118 * (5.0 * phi).cos();
            (x * per_lon * y * per_lat).sqrt()
        }
    }
}

/// A CRS's horizontal units, as the raster adapter reads them from its definition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CrsUnits {
    /// A projected CRS: metres per unit (1 for metres, 0.3048 for international feet).
    Linear {
        /// Metres per CRS unit.
        metres_per_unit: f64,
    },
    /// A geographic CRS in degrees.
    Degrees,
}

/// A band's sample type, in GDAL's names. Complex types are not imagery and are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SampleType {
    /// 8-bit unsigned (GDAL `Byte`).
    Byte,
    /// 8-bit signed.
    Int8,
    /// 16-bit unsigned, common for satellite scenes.
    UInt16,
    /// 16-bit signed.
    Int16,
    /// 32-bit unsigned.
    UInt32,
    /// 32-bit signed.
    Int32,
    /// 64-bit unsigned.
    UInt64,
    /// 64-bit signed.
    Int64,
    /// IEEE 754 single precision.
    Float32,
    /// IEEE 754 double precision.
    Float64,
}

impl SampleType {
    /// GDAL's name (`Byte`, `UInt16`, …).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Byte => "Byte",
            Self::Int8 => "Int8",
            Self::UInt16 => "UInt16",
            Self::Int16 => "Int16",
            Self::UInt32 => "UInt32",
            Self::Int32 => "Int32",
            Self::UInt64 => "UInt64",
            Self::Int64 => "Int64",
            Self::Float32 => "Float32",
            Self::Float64 => "Float64",
        }
    }
}

impl fmt::Display for SampleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the header of one input says, read without reading any pixel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RasterProbe {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Colour bands, an alpha band not counted.
    pub bands: usize,
    /// Whether the last band is an alpha band (RGBA orthophotos); it marks uncovered pixels.
    pub has_alpha: bool,
    /// The first band's sample type.
    pub sample_type: SampleType,
    /// The first band's nodata value, if declared.
    pub nodata: Option<f64>,
    /// The CRS; `None` when the file has none.
    pub crs: Option<Crs>,
    /// The geotransform; `None` when the file has none (GDAL's default `[0,1,0,0,0,1]`).
    pub geotransform: Option<GeoTransform>,
}

impl RasterProbe {
    /// Pixels the header claims.
    #[must_use]
    pub const fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }

    /// The checks of one input on its own: the pixel limit first (a decompression bomb is
    /// refused before anything else is looked at), then georeferencing, then a north-up
    /// geotransform.
    ///
    /// # Errors
    /// [`InputProblem::TooManyPixels`], [`InputProblem::NoGeoreference`] or
    /// [`InputProblem::Rotated`].
    pub fn check(&self, max_pixels: u64) -> Result<(&Crs, GeoTransform), InputProblem> {
        if self.pixels() > max_pixels {
            return Err(InputProblem::TooManyPixels {
                width: self.width,
                height: self.height,
                max_pixels,
            });
        }
        let (Some(crs), Some(geotransform)) = (&self.crs, self.geotransform) else {
            return Err(InputProblem::NoGeoreference);
        };
        if !geotransform.is_north_up() {
            return Err(InputProblem::Rotated {
                geotransform: geotransform.0,
            });
        }
        Ok((crs, geotransform))
    }
}

/// Why one input is left out of a mosaic or a detection run. The stage names the file beside
/// it; the other inputs still run.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum InputProblem {
    /// The file does not start with a TIFF or BigTIFF signature.
    #[error("not a TIFF: {detected}; only GeoTIFFs are read")]
    NotTiff {
        /// What the first bytes look like.
        detected: String,
    },
    /// GDAL could not open or read the file.
    #[error("unreadable: {reason}")]
    Unreadable {
        /// GDAL's message.
        reason: String,
    },
    /// The file ends before the image data its header points at.
    #[error(
        "truncated: its image data runs to byte {needed_bytes} but the file has {file_bytes} bytes"
    )]
    Truncated {
        /// End of the farthest strip or tile the header declares.
        needed_bytes: u64,
        /// The file's size.
        file_bytes: u64,
    },
    /// The header claims more pixels than the per-input limit.
    #[error(
        "{width} × {height} pixels is more than the limit of {max_pixels} pixels per input \
         (a possible decompression bomb; raise --max-input-pixels for a genuine raster)"
    )]
    TooManyPixels {
        /// Claimed width.
        width: usize,
        /// Claimed height.
        height: usize,
        /// The limit.
        max_pixels: u64,
    },
    /// No CRS or no geotransform: a raw photo, not a georeferenced raster. Stitching raw
    /// photos by their features is photogrammetry (OpenDroneMap's job), not a mosaic.
    #[error(
        "no georeferencing (no CRS or geotransform): a mosaic needs georeferenced rasters; \
         process raw photos with photogrammetry software (OpenDroneMap) first"
    )]
    NoGeoreference,
    /// A geotransform with rotation or shear terms, or rows running north.
    #[error(
        "not north-up: geotransform {geotransform:?} has rotation terms or rows running north; warp it first (gdalwarp)"
    )]
    Rotated {
        /// The geotransform.
        geotransform: [f64; 6],
    },
    /// Another band count than the mosaic's.
    #[error("{bands} bands, but the mosaic has {mosaic_bands} (the majority of the inputs)")]
    BandsDiffer {
        /// This input's bands (alpha not counted).
        bands: usize,
        /// The mosaic's.
        mosaic_bands: usize,
    },
    /// Another sample type than the mosaic's.
    #[error(
        "sample type {sample_type}, but the mosaic's is {mosaic_type} (the majority of the inputs)"
    )]
    SampleTypeDiffers {
        /// This input's.
        sample_type: SampleType,
        /// The mosaic's.
        mosaic_type: SampleType,
    },
    /// A sample type that is not imagery (complex numbers) or unknown to Tessera.
    #[error("sample type {name} is not supported (complex or unknown)")]
    UnsupportedSampleType {
        /// GDAL's name for it.
        name: String,
    },
    /// The footprint could not be transformed into the mosaic's CRS.
    #[error("cannot be placed in the mosaic's CRS {crs}: {reason}")]
    Unplaceable {
        /// The mosaic's CRS id.
        crs: String,
        /// Why.
        reason: String,
    },
}

/// The output's CRS, band count and sample type, each decided by majority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The output CRS: the one most inputs are in; ties go to the CRS of the larger total
    /// pixel count, then to the one met first. Inputs in other CRSs are warped into it.
    pub crs: Crs,
    /// The band count most inputs have (ties: the one met first).
    pub bands: usize,
    /// The sample type most inputs have (ties: the one met first).
    pub sample_type: SampleType,
}

impl Frame {
    /// Chooses the frame from the inputs that passed [`RasterProbe::check`]; `None` when
    /// there are none.
    #[must_use]
    pub fn choose(inputs: &[&RasterProbe]) -> Option<Self> {
        let crs = majority(
            inputs
                .iter()
                .filter_map(|p| p.crs.as_ref().map(|crs| (crs.clone(), p.pixels()))),
        )?;
        let bands = majority(inputs.iter().map(|p| (p.bands, 0)))?;
        let sample_type = majority(inputs.iter().map(|p| (p.sample_type, 0)))?;
        Some(Self {
            crs,
            bands,
            sample_type,
        })
    }

    /// Whether an input's bands and sample type are the frame's (a CRS that differs is
    /// warped, not refused).
    ///
    /// # Errors
    /// [`InputProblem::BandsDiffer`] or [`InputProblem::SampleTypeDiffers`].
    pub fn admits(&self, probe: &RasterProbe) -> Result<(), InputProblem> {
        if probe.bands != self.bands {
            return Err(InputProblem::BandsDiffer {
                bands: probe.bands,
                mosaic_bands: self.bands,
            });
        }
        if probe.sample_type != self.sample_type {
            return Err(InputProblem::SampleTypeDiffers {
                sample_type: probe.sample_type,
                mosaic_type: self.sample_type,
            });
        }
        Ok(())
    }
}

/// The most frequent key; ties go to the larger summed weight, then to the first met.
fn majority<K: Eq + std::hash::Hash + Clone>(items: impl Iterator<Item = (K, u64)>) -> Option<K> {
    let mut tally: HashMap<K, (usize, u64, usize)> = HashMap::new();
    for (order, (key, weight)) in items.enumerate() {
        let entry = tally.entry(key).or_insert((0, 0, order));
        entry.0 += 1;
        entry.1 += weight;
    }
    tally
        .into_iter()
        .max_by(|(_, a), (_, b)| (a.0, a.1).cmp(&(b.0, b.1)).then(b.2.cmp(&a.2)))
        .map(|(key, _)| key)
}

/// How the output pixel size is chosen (`--resolution`), as `gdalbuildvrt -resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum Resolution {
    /// The finest input pixel size: nothing is lost (the default).
    #[default]
    Highest,
    /// The coarsest input pixel size.
    Lowest,
    /// The mean of the inputs' pixel sizes.
    Average,
    /// A given pixel size in CRS units (metres for projected CRSs).
    Metres(f64),
}

impl FromStr for Resolution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "highest" => Ok(Self::Highest),
            "lowest" => Ok(Self::Lowest),
            "average" => Ok(Self::Average),
            other => match other.parse::<f64>() {
                Ok(m) if m.is_finite() && m > 0.0 => Ok(Self::Metres(m)),
                _ => Err(format!(
                    "resolution {other:?}: expected highest, lowest, average or a pixel size in metres > 0"
                )),
            },
        }
    }
}

/// How pixels are resampled where an input's grid is not the mosaic's, as GDAL's `-r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Resampling {
    /// Nearest neighbour: exact values, for classes and masks.
    Nearest,
    /// Bilinear: the default, for continuous imagery.
    #[default]
    Bilinear,
    /// Cubic convolution.
    Cubic,
    /// Average of the contributing pixels, for downsampling.
    Average,
}

impl Resampling {
    /// GDAL's name for `-r`.
    #[must_use]
    pub const fn gdal_name(self) -> &'static str {
        match self {
            Self::Nearest => "near",
            Self::Bilinear => "bilinear",
            Self::Cubic => "cubic",
            Self::Average => "average",
        }
    }
}

impl FromStr for Resampling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nearest" => Ok(Self::Nearest),
            "bilinear" => Ok(Self::Bilinear),
            "cubic" => Ok(Self::Cubic),
            "average" => Ok(Self::Average),
            other => Err(format!(
                "resampling {other:?}: expected nearest, bilinear, cubic or average"
            )),
        }
    }
}

/// The options of one mosaic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MosaicOptions {
    /// Output pixel size.
    pub resolution: Resolution,
    /// Resampling where grids differ.
    pub resampling: Resampling,
    /// Per-input pixel limit ([`DEFAULT_MAX_INPUT_PIXELS`]).
    pub max_input_pixels: u64,
}

impl Default for MosaicOptions {
    fn default() -> Self {
        Self {
            resolution: Resolution::default(),
            resampling: Resampling::default(),
            max_input_pixels: DEFAULT_MAX_INPUT_PIXELS,
        }
    }
}

/// One admitted input as placed in the frame's CRS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Its footprint in the frame's CRS (for a warped input, the transformed bounds).
    pub footprint: Bounds,
    /// Its pixel size in the frame's CRS: native, or footprint size over pixel count.
    pub pixel_size: (f64, f64),
    /// Its own geotransform when it is already in the frame's CRS (`None`: warped).
    pub native: Option<GeoTransform>,
}

/// The output raster's grid: north-up, `width` × `height` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MosaicGrid {
    /// The output geotransform.
    pub geotransform: GeoTransform,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl MosaicGrid {
    /// The grid of a mosaic of `placements` (at least one).
    ///
    /// Pixel size: from `resolution`, per axis over the inputs as `gdalbuildvrt`.
    /// Alignment: when every input is already in the frame's CRS at exactly that pixel size
    /// and their origins lie on one common grid (within [`GRID_TOLERANCE_PX`]), that grid is
    /// kept, so nothing is resampled and the inputs' pixels are copied as they are. Otherwise
    /// pixels are target-aligned (GDAL's `-tap`): edges at multiples of the pixel size. The
    /// extent is the union of the footprints, grown outward to whole pixels.
    #[must_use]
    pub fn plan(placements: &[Placement], resolution: Resolution) -> Self {
        let n = placements.len() as f64;
        let sizes = placements.iter().map(|p| p.pixel_size);
        let (pw, ph) = match resolution {
            Resolution::Highest => sizes.fold((f64::INFINITY, f64::INFINITY), |a, s| {
                (a.0.min(s.0), a.1.min(s.1))
            }),
            Resolution::Lowest => {
                sizes.fold((0.0_f64, 0.0_f64), |a, s| (a.0.max(s.0), a.1.max(s.1)))
            }
            Resolution::Average => {
                let sum = sizes.fold((0.0, 0.0), |a, s| (a.0 + s.0, a.1 + s.1));
                (sum.0 / n, sum.1 / n)
            }
            Resolution::Metres(m) => (m, m),
        };
        let extent = placements
            .iter()
            .map(|p| p.footprint)
            .reduce(Bounds::union)
            .expect("a mosaic has at least one input");
        let anchor = common_grid(placements, (pw, ph)).unwrap_or((0.0, 0.0));
        Self::covering(extent, anchor, (pw, ph))
    }

    /// The grid with pixel size `(pw, ph)` and a pixel corner at `anchor` that covers
    /// `extent`, grown outward to whole pixels.
    fn covering(extent: Bounds, anchor: (f64, f64), (pw, ph): (f64, f64)) -> Self {
        let snap_down = |v: f64, a: f64, s: f64| a + ((v - a) / s + GRID_TOLERANCE_PX).floor() * s;
        let snap_up = |v: f64, a: f64, s: f64| a + ((v - a) / s - GRID_TOLERANCE_PX).ceil() * s;
        let min_x = snap_down(extent.min_x, anchor.0, pw);
        let max_x = snap_up(extent.max_x, anchor.0, pw);
        let min_y = snap_down(extent.min_y, anchor.1, ph);
        let max_y = snap_up(extent.max_y, anchor.1, ph);
        Self {
            geotransform: GeoTransform::north_up(min_x, max_y, pw, ph),
            width: ((max_x - min_x) / pw).round().max(1.0) as usize,
            height: ((max_y - min_y) / ph).round().max(1.0) as usize,
        }
    }

    /// The sub-grid of this grid that covers `footprint` (clipped to the mosaic): the
    /// window a warped input is warped into, so that it lands on the mosaic's pixels and is
    /// resampled once.
    #[must_use]
    pub fn window(&self, footprint: Bounds) -> Self {
        let gt = self.geotransform.0;
        let (pw, ph) = self.geotransform.pixel_size();
        let all = self.geotransform.bounds(self.width, self.height);
        let clipped = Bounds {
            min_x: footprint.min_x.max(all.min_x),
            min_y: footprint.min_y.max(all.min_y),
            max_x: footprint.max_x.min(all.max_x),
            max_y: footprint.max_y.min(all.max_y),
        };
        Self::covering(clipped, (gt[0], gt[3]), (pw, ph))
    }

    /// The grid's bounds.
    #[must_use]
    pub fn bounds(&self) -> Bounds {
        self.geotransform.bounds(self.width, self.height)
    }
}

/// The top-left corner of the grid all `placements` share at pixel size `size`, if they do.
fn common_grid(placements: &[Placement], (pw, ph): (f64, f64)) -> Option<(f64, f64)> {
    let on_grid = |v: f64, a: f64, s: f64| {
        let k = (v - a) / s;
        (k - k.round()).abs() <= GRID_TOLERANCE_PX
    };
    let same = |a: f64, b: f64| (a - b).abs() <= GRID_TOLERANCE_PX * b.abs();
    let first = placements.first()?.native?.0;
    placements
        .iter()
        .all(|p| {
            p.native.is_some_and(|gt| {
                let (w, h) = gt.pixel_size();
                same(w, pw)
                    && same(h, ph)
                    && on_grid(gt.0[0], first[0], pw)
                    && on_grid(gt.0[3], first[3], ph)
            })
        })
        .then_some((first[0], first[3]))
}

/// The order inputs are laid down in; where they overlap, the one laid down last wins
/// (GDAL's VRT "last wins"). Coarser inputs go first and finer ones last, so where inputs
/// overlap the sharpest pixels win; equal pixel sizes keep the given order (walked
/// directories are sorted by path), so the result never depends on the file system.
///
/// Returns indices into `pixel_sizes` (each input's pixel area in the frame's CRS).
#[must_use]
pub fn overlap_order(pixel_areas: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..pixel_areas.len()).collect();
    order.sort_by(|&a, &b| pixel_areas[b].total_cmp(&pixel_areas[a]));
    order
}

/// How the mosaic marks the pixels no input covers: never as valid zeros.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Nodata {
    /// A nodata value: the one most inputs declare. Each input's own nodata pixels are
    /// transparent where inputs overlap.
    Value(f64),
    /// No input declares nodata: the COG gets an internal per-dataset mask (GDAL's
    /// `GMF_PER_DATASET`, TIFF `TRANSPARENCY_MASK`), and the bands stay as the inputs'.
    Mask,
}

impl Nodata {
    /// The rule above over the admitted inputs' declared nodata values.
    #[must_use]
    pub fn choose(declared: impl Iterator<Item = Option<f64>>) -> Self {
        majority(declared.flatten().map(|v| (v.to_bits(), 0)))
            .map_or(Self::Mask, |bits| Self::Value(f64::from_bits(bits)))
    }
}

/// How a raster is shown as 8-bit RGB (the mosaic's rendition and preview, and what the
/// detector sees): the bands taken as red, green and blue, each with its [`Stretch`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rendition {
    /// 1-based bands shown as red, green and blue: 1, 2, 3, or a grey raster's band 1 three
    /// times ([`Rendition::bands_for`]).
    pub bands: [usize; 3],
    /// Each shown band's stretch; [`Stretch::IDENTITY`] for Byte data.
    pub stretches: [Stretch; 3],
}

impl Rendition {
    /// The bands shown for a raster of `bands` colour bands: the first three, or band 1 as grey.
    #[must_use]
    pub const fn bands_for(bands: usize) -> [usize; 3] {
        if bands >= 3 { [1, 2, 3] } else { [1, 1, 1] }
    }
}

/// A linear map of one band's values to 0–255 for the 8-bit rendition: `lo` → 0, `hi` → 255,
/// clamped. Byte data is shown as it is ([`Stretch::IDENTITY`]); other types are stretched
/// between the [`STRETCH_PERCENTILES`] of their valid samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stretch {
    /// The value shown as 0.
    pub lo: f64,
    /// The value shown as 255.
    pub hi: f64,
}

impl Stretch {
    /// 0 → 0, 255 → 255: Byte data.
    pub const IDENTITY: Self = Self { lo: 0.0, hi: 255.0 };

    /// The percentile stretch of `samples` (valid pixels only: nodata and masked pixels
    /// already removed). Percentiles by the nearest-rank method. `None` when there are no
    /// samples. A constant band maps its value to 0 … `lo + 1`.
    #[must_use]
    pub fn from_samples(mut samples: Vec<f64>) -> Option<Self> {
        samples.retain(|v| v.is_finite());
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable_by(f64::total_cmp);
        let rank = |p: f64| {
            let r = (p / 100.0 * samples.len() as f64).ceil() as usize;
            samples[r.clamp(1, samples.len()) - 1]
        };
        let lo = rank(STRETCH_PERCENTILES.0);
        let hi = rank(STRETCH_PERCENTILES.1);
        Some(Self {
            lo,
            hi: if hi > lo { hi } else { lo + 1.0 },
        })
    }

    /// The 8-bit value of `v`.
    #[must_use]
    pub fn apply(&self, v: f64) -> u8 {
        ((v - self.lo) / (self.hi - self.lo) * 255.0)
            .round()
            .clamp(0.0, 255.0) as u8
    }
}

/// Where a mosaic came from, written into the COG as GDAL metadata (the TIFF
/// `GDAL_METADATA` tag; `gdalinfo` lists it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The project the inputs belong to, if known.
    pub project: Option<String>,
    /// The inputs used, in the order they were laid down.
    pub inputs: Vec<ProvenanceInput>,
    /// The options the mosaic was made with.
    pub options: MosaicOptions,
    /// The software and version, `tessera 0.1.0`.
    pub software: String,
}

/// One input of a mosaic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceInput {
    /// Its object key, or its path as given.
    pub source: String,
    /// SHA-256 of its bytes, 64 hex digits.
    pub sha256: String,
    /// When it was acquired, from its TIFF `DateTime` tag, where present and plausible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acquired: Option<chrono::NaiveDateTime>,
}

impl Provenance {
    /// The metadata items: `TESSERA_PROJECT` (when known), `TESSERA_SOFTWARE`,
    /// `TESSERA_OPTIONS` and `TESSERA_INPUTS` (JSON), and TIFF's `TIFFTAG_SOFTWARE`.
    #[must_use]
    pub fn metadata_items(&self) -> Vec<(&'static str, String)> {
        let mut items = vec![
            ("TESSERA_SOFTWARE", self.software.clone()),
            ("TIFFTAG_SOFTWARE", self.software.clone()),
            ("TESSERA_OPTIONS", json(&self.options)),
            ("TESSERA_INPUTS", json(&self.inputs)),
        ];
        if let Some(project) = &self.project {
            items.insert(0, ("TESSERA_PROJECT", project.clone()));
        }
        items
    }
}

/// JSON text of plain data (no maps with non-string keys, so it always serialises).
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

/// `width` × `height` scaled to fit `max_side` keeping the aspect ratio (never enlarged), at
/// least 1 px a side: the preview's size ([`PREVIEW_MAX_SIDE`]) and the stretch sample's
/// ([`STRETCH_SAMPLE_SIDE`]).
#[must_use]
pub fn fit_within(width: usize, height: usize, max_side: usize) -> (usize, usize) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = max_side as f64 / longest as f64;
    let side = |v: usize| ((v as f64 * scale).round() as usize).clamp(1, max_side);
    (side(width), side(height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_sampling_distance_in_metres_for_linear_and_angular_units() {
        // UTM metres; feet; degrees at the equator and at 60° (a degree of longitude halves).
        let metres = CrsUnits::Linear {
            metres_per_unit: 1.0,
        };
        assert_eq!(ground_sampling_distance((0.1, 0.1), metres, 0.0), 0.1);
        let feet = CrsUnits::Linear {
            metres_per_unit: 0.3048,
        };
        assert!((ground_sampling_distance((1.0, 1.0), feet, 0.0) - 0.3048).abs() < 1e-12);
        let equator = ground_sampling_distance((1e-6, 1e-6), CrsUnits::Degrees, 0.0);
        assert!((equator - 0.1107).abs() < 1e-3, "{equator}");
        let sixty = ground_sampling_distance((1e-6, 1e-6), CrsUnits::Degrees, 60.0);
        let expect = (55_800e-6_f64 * 111_412e-6).sqrt(); // lon 55.80 km, lat 111.41 km
        assert!((sixty - expect).abs() < 1e-3, "{sixty} {expect}");
    }

    fn probe(crs: &str, gt: [f64; 6], w: usize, h: usize) -> RasterProbe {
        RasterProbe {
            width: w,
            height: h,
            bands: 3,
            has_alpha: false,
            sample_type: SampleType::Byte,
            nodata: None,
            crs: Some(Crs {
                id: crs.into(),
                name: crs.into(),
            }),
            geotransform: Some(GeoTransform(gt)),
        }
    }

    fn placed(gt: [f64; 6], w: usize, h: usize) -> Placement {
        let gt = GeoTransform(gt);
        Placement {
            footprint: gt.bounds(w, h),
            pixel_size: gt.pixel_size(),
            native: Some(gt),
        }
    }

    #[test]
    fn checks_pixels_before_georeferencing_and_rotation() {
        let mut bomb = probe(
            "EPSG:1",
            [0.0, 1.0, 0.0, 0.0, 0.0, -1.0],
            1_000_000,
            1_000_000,
        );
        bomb.crs = None;
        assert!(matches!(
            bomb.check(DEFAULT_MAX_INPUT_PIXELS),
            Err(InputProblem::TooManyPixels {
                max_pixels: DEFAULT_MAX_INPUT_PIXELS,
                ..
            })
        ));
        bomb.width = 10;
        assert_eq!(
            bomb.check(DEFAULT_MAX_INPUT_PIXELS),
            Err(InputProblem::NoGeoreference)
        );
        let rotated = probe("EPSG:1", [0.0, 1.0, 0.1, 0.0, 0.1, -1.0], 10, 10);
        assert!(matches!(
            rotated.check(100),
            Err(InputProblem::Rotated { .. })
        ));
        let south_up = probe("EPSG:1", [0.0, 1.0, 0.0, 0.0, 0.0, 1.0], 10, 10);
        assert!(matches!(
            south_up.check(100),
            Err(InputProblem::Rotated { .. })
        ));
        assert!(
            probe("EPSG:1", [0.0, 1.0, 1e-12, 0.0, 0.0, -1.0], 10, 10)
                .check(100)
                .is_ok()
        );
    }

    #[test]
    fn frame_follows_the_majority_and_ties_go_to_more_pixels() {
        let a = probe("EPSG:32616", [0.0; 6], 10, 10);
        let b = probe("EPSG:32617", [0.0; 6], 100, 100);
        let c = probe("EPSG:32617", [0.0; 6], 1, 1);
        assert_eq!(Frame::choose(&[&a, &b, &c]).unwrap().crs.id, "EPSG:32617");
        assert_eq!(Frame::choose(&[&a, &c]).unwrap().crs.id, "EPSG:32616");
        let mut grey = a.clone();
        grey.bands = 1;
        grey.sample_type = SampleType::UInt16;
        let frame = Frame::choose(&[&grey, &a, &b]).unwrap();
        assert_eq!((frame.bands, frame.sample_type), (3, SampleType::Byte));
        assert_eq!(
            frame.admits(&grey),
            Err(InputProblem::BandsDiffer {
                bands: 1,
                mosaic_bands: 3
            })
        );
        grey.bands = 3;
        assert!(matches!(
            frame.admits(&grey),
            Err(InputProblem::SampleTypeDiffers { .. })
        ));
        assert!(Frame::choose(&[]).is_none());
    }

    #[test]
    fn abutting_tiles_keep_their_grid() {
        // 90 px tiles at 0.5 m, 45 m apart, on a grid a quarter metre off the multiples of
        // 0.5 m: target-aligned pixels would shift (and resample) every tile.
        let tiles: Vec<Placement> = (0..3)
            .flat_map(|i| (0..2).map(move |j| (i, j)))
            .map(|(i, j)| {
                placed(
                    [
                        100.25 + 45.0 * f64::from(i),
                        0.5,
                        0.0,
                        200.25 - 45.0 * f64::from(j),
                        0.0,
                        -0.5,
                    ],
                    90,
                    90,
                )
            })
            .collect();
        let grid = MosaicGrid::plan(&tiles, Resolution::Highest);
        assert_eq!(grid.geotransform.0, [100.25, 0.5, 0.0, 200.25, 0.0, -0.5]);
        assert_eq!((grid.width, grid.height), (270, 180));
    }

    #[test]
    fn offset_grids_are_target_aligned() {
        let a = placed([100.0, 0.5, 0.0, 200.0, 0.0, -0.5], 10, 10);
        let b = placed([104.25, 0.5, 0.0, 199.75, 0.0, -0.5], 10, 10);
        let grid = MosaicGrid::plan(&[a, b], Resolution::Highest);
        assert_eq!(grid.geotransform.0, [100.0, 0.5, 0.0, 200.0, 0.0, -0.5]);
        // 100 … 109.25 → 100 … 109.5; 194.75 … 200 → 194.5 … 200.
        assert_eq!((grid.width, grid.height), (19, 11));
        let coarse = placed([100.0, 2.0, 0.0, 200.0, 0.0, -2.0], 5, 5);
        assert_eq!(
            MosaicGrid::plan(&[a, coarse], Resolution::Lowest)
                .geotransform
                .pixel_size(),
            (2.0, 2.0)
        );
        assert_eq!(
            MosaicGrid::plan(&[a, coarse], Resolution::Average)
                .geotransform
                .pixel_size(),
            (1.25, 1.25)
        );
        let metres = MosaicGrid::plan(&[a, coarse], Resolution::Metres(1.0));
        assert_eq!((metres.width, metres.height), (10, 10));
    }

    #[test]
    fn a_window_lands_on_the_mosaic_grid() {
        let grid = MosaicGrid::plan(
            &[placed([0.0, 1.0, 0.0, 100.0, 0.0, -1.0], 100, 100)],
            Resolution::Highest,
        );
        let w = grid.window(Bounds {
            min_x: 10.4,
            min_y: -5.0,
            max_x: 20.2,
            max_y: 50.5,
        });
        assert_eq!(w.geotransform.0, [10.0, 1.0, 0.0, 51.0, 0.0, -1.0]);
        assert_eq!((w.width, w.height), (11, 51));
    }

    #[test]
    fn finer_inputs_are_laid_down_last() {
        assert_eq!(overlap_order(&[0.25, 1.0, 0.25, 4.0]), vec![3, 1, 0, 2]);
    }

    #[test]
    fn nodata_is_the_common_declared_value_or_a_mask() {
        assert_eq!(Nodata::choose([None, None].into_iter()), Nodata::Mask);
        assert_eq!(
            Nodata::choose([Some(0.0), None, Some(255.0), Some(255.0)].into_iter()),
            Nodata::Value(255.0)
        );
    }

    #[test]
    fn stretch_clips_two_percent_each_side() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        samples.push(f64::NAN);
        let s = Stretch::from_samples(samples).unwrap();
        assert_eq!((s.lo, s.hi), (2.0, 98.0));
        assert_eq!(
            (s.apply(0.0), s.apply(50.0), s.apply(1000.0)),
            (0, 128, 255)
        );
        assert_eq!(
            Stretch::from_samples(vec![7.0, 7.0]).unwrap(),
            Stretch { lo: 7.0, hi: 8.0 }
        );
        assert!(Stretch::from_samples(vec![f64::NAN]).is_none());
    }

    #[test]
    fn preview_fits_the_longest_side() {
        assert_eq!(fit_within(900, 900, PREVIEW_MAX_SIDE), (900, 900));
        assert_eq!(fit_within(4000, 2000, PREVIEW_MAX_SIDE), (1024, 512));
        assert_eq!(fit_within(100_000, 10, 1024), (1024, 1));
    }

    #[test]
    fn parses_the_cli_words() {
        assert_eq!("0.3".parse::<Resolution>(), Ok(Resolution::Metres(0.3)));
        assert!("-1".parse::<Resolution>().is_err());
        assert_eq!("nearest".parse::<Resampling>().unwrap().gdal_name(), "near");
    }
}
