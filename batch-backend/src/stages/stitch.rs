//! The stitch stage: georeferenced GeoTIFFs → one Cloud-Optimized GeoTIFF mosaic, its 8-bit
//! RGBA rendition and a preview PNG. Orchestration only: every rule is
//! [`tessera_core::mosaic`]'s, every pixel is GDAL's ([`crate::raster`]).
//!
//! A bad input never fails the others: it is refused with its reason and the rest are
//! mosaicked. The stage fails only when no input is left, or when GDAL fails to write.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tessera_core::Sha256Digest;
use tessera_core::exif::parse_exif_datetime;
use tessera_core::mosaic::{
    Crs, Frame, InputProblem, MosaicGrid, MosaicOptions, Nodata, PREVIEW_MAX_SIDE, Placement,
    Provenance, ProvenanceInput, RasterProbe, SampleType, fit_within, overlap_order,
};

use crate::raster::{self, GdalRaster, MosaicInput, MosaicRequest, Raster};

/// One input: where to read it and how to name it in reports and provenance.
#[derive(Debug, Clone)]
pub struct StitchInput {
    /// The file on disk.
    pub path: PathBuf,
    /// Its object key, or the path as the user gave it.
    pub source: String,
}

/// An input left out, with its reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{input}: {problem}")]
pub struct Refused {
    /// The input's name ([`StitchInput::source`]).
    pub input: String,
    /// Why.
    pub problem: InputProblem,
}

/// The outputs of a stitch and what went into them.
#[derive(Debug, Clone)]
pub struct StitchReport {
    /// The COG.
    pub mosaic: PathBuf,
    /// The 8-bit RGBA rendition (a VRT over the COG).
    pub rendition: PathBuf,
    /// The preview PNG.
    pub preview: PathBuf,
    /// The output CRS.
    pub crs: Crs,
    /// The output grid (size, geotransform).
    pub grid: MosaicGrid,
    /// How uncovered pixels are marked.
    pub nodata: Nodata,
    /// Bands and sample type of the mosaic.
    pub bands: usize,
    /// The mosaic's sample type.
    pub sample_type: SampleType,
    /// Inputs used, in overlap order (last wins), and whether each was warped.
    pub used: Vec<(String, bool)>,
    /// Inputs refused.
    pub refused: Vec<Refused>,
}

/// Why a stitch produced nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StitchError {
    /// Every input was refused.
    #[error("no input can be mosaicked ({} refused)", refused.len())]
    NoInputs {
        /// Each input's reason.
        refused: Vec<Refused>,
    },
    /// GDAL failed to write an output.
    #[error("writing the mosaic failed: {0:#}")]
    Write(anyhow::Error),
}

/// Where the stitch is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StitchProgress {
    /// Inputs probed and hashed so far, of all.
    Probed(usize, usize),
    /// Fraction of the COG written, 0.0–1.0.
    Writing(f64),
    /// Computing the stretch and writing the rendition and preview.
    Rendering,
}

/// Stitches `inputs` into a COG at `out`, with `{stem}.rgba.vrt` and `{stem}.preview.png`
/// beside it. `project` and the inputs' names and SHA-256 go into the COG's metadata.
///
/// # Errors
/// [`StitchError::NoInputs`] when every input is refused; [`StitchError::Write`] when GDAL
/// cannot write (a partial COG is removed).
pub fn stitch(
    inputs: &[StitchInput],
    options: &MosaicOptions,
    project: Option<&str>,
    out: &Path,
    progress: &(dyn Fn(StitchProgress) + Sync),
) -> Result<StitchReport, StitchError> {
    raster::configure();
    let total = inputs.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    // Probed in parallel and closed again: a job of 10,000 inputs never holds 10,000 files.
    let probed: Vec<Result<(RasterProbe, ProvenanceInput), InputProblem>> = inputs
        .par_iter()
        .map(|input| {
            let result = probe(input, options.max_input_pixels);
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(StitchProgress::Probed(n, total));
            result
        })
        .collect();

    // Refusals keep the index of their input, to be reported in the order given.
    let mut refused: Vec<(usize, Refused)> = Vec::new();
    let mut checked = Vec::new();
    for (index, (input, result)) in inputs.iter().zip(probed).enumerate() {
        match result {
            Ok(ok) => checked.push((index, input, ok)),
            Err(problem) => refused.push((index, refused_input(input, problem))),
        }
    }
    let probes: Vec<&RasterProbe> = checked.iter().map(|(_, _, (p, _))| p).collect();
    let Some(frame) = Frame::choose(&probes) else {
        return Err(StitchError::NoInputs {
            refused: in_order(refused),
        });
    };

    let mut admitted = Vec::new();
    for (index, input, (probe, provenance)) in &checked {
        let placed = frame.admits(probe).and_then(|()| place(probe, &frame.crs));
        match placed {
            Ok(placement) => admitted.push((*input, provenance, placement, probe.nodata)),
            Err(problem) => refused.push((*index, refused_input(input, problem))),
        }
    }
    let refused = in_order(refused);
    if admitted.is_empty() {
        return Err(StitchError::NoInputs { refused });
    }
    let placements: Vec<Placement> = admitted.iter().map(|a| a.2).collect();
    let grid = MosaicGrid::plan(&placements, options.resolution);
    let areas: Vec<f64> = placements
        .iter()
        .map(|p| p.pixel_size.0 * p.pixel_size.1)
        .collect();
    let order = overlap_order(&areas);
    let nodata = Nodata::choose(admitted.iter().map(|a| a.3));

    let provenance = Provenance {
        project: project.map(str::to_owned),
        inputs: order.iter().map(|&i| admitted[i].1.clone()).collect(),
        options: *options,
        software: format!(
            "tessera {} (GDAL {})",
            env!("CARGO_PKG_VERSION"),
            raster::gdal_version()
        ),
    };
    let request = MosaicRequest {
        inputs: order
            .iter()
            .map(|&i| MosaicInput {
                path: &admitted[i].0.path,
                warp_into: admitted[i]
                    .2
                    .native
                    .is_none()
                    .then(|| grid.window(admitted[i].2.footprint)),
            })
            .collect(),
        crs: &frame.crs,
        grid,
        nodata,
        resampling: options.resampling,
        metadata: provenance.metadata_items(),
    };
    let partial = out.with_extension("partial.tif");
    let written = raster::write_mosaic(&request, &partial, &mut |f| {
        progress(StitchProgress::Writing(f));
    })
    .and_then(|()| std::fs::rename(&partial, out).map_err(anyhow::Error::from));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(StitchError::Write(e));
    }

    progress(StitchProgress::Rendering);
    let rendition = sibling(out, "rgba.vrt");
    let preview = sibling(out, "preview.png");
    render(out, &rendition, &preview, &grid).map_err(StitchError::Write)?;

    Ok(StitchReport {
        mosaic: out.to_owned(),
        rendition,
        preview,
        crs: frame.crs.clone(),
        grid,
        nodata,
        bands: frame.bands,
        sample_type: frame.sample_type,
        used: order
            .iter()
            .map(|&i| (admitted[i].0.source.clone(), admitted[i].2.native.is_none()))
            .collect(),
        refused,
    })
}

fn in_order(mut refused: Vec<(usize, Refused)>) -> Vec<Refused> {
    refused.sort_by_key(|(index, _)| *index);
    refused.into_iter().map(|(_, r)| r).collect()
}

fn refused_input(input: &StitchInput, problem: InputProblem) -> Refused {
    Refused {
        input: input.source.clone(),
        problem,
    }
}

/// Probes, checks and hashes one input (the file is closed again).
fn probe(
    input: &StitchInput,
    max_pixels: u64,
) -> Result<(RasterProbe, ProvenanceInput), InputProblem> {
    let raster = GdalRaster::open(&input.path, max_pixels)?;
    raster.probe().check(max_pixels)?;
    let sha256 = std::fs::File::open(&input.path)
        .and_then(Sha256Digest::of_reader)
        .map_err(|e| InputProblem::Unreadable {
            reason: e.to_string(),
        })?;
    let acquired = raster
        .tiff_datetime()
        .and_then(|t| parse_exif_datetime(t.as_bytes()));
    let provenance = ProvenanceInput {
        source: input.source.clone(),
        sha256: sha256.hex,
        acquired,
    };
    Ok((raster.probe().clone(), provenance))
}

/// Where an admitted input lies in the frame's CRS.
fn place(probe: &RasterProbe, crs: &Crs) -> Result<Placement, InputProblem> {
    let (own_crs, gt) = probe.check(u64::MAX)?;
    if own_crs == crs {
        return Ok(Placement {
            footprint: gt.bounds(probe.width, probe.height),
            pixel_size: gt.pixel_size(),
            native: Some(gt),
        });
    }
    let footprint = raster::transform_bounds(gt.bounds(probe.width, probe.height), own_crs, crs)
        .map_err(|e| InputProblem::Unplaceable {
            crs: crs.id.clone(),
            reason: format!("{e:#}"),
        })?;
    Ok(Placement {
        footprint,
        pixel_size: (
            (footprint.max_x - footprint.min_x) / probe.width as f64,
            (footprint.max_y - footprint.min_y) / probe.height as f64,
        ),
        native: None,
    })
}

/// `{dir}/{stem}.{suffix}` for `out` = `{dir}/{stem}.tif`.
fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}.{suffix}"))
}

/// The stretch of each displayed band (from an overview), the rendition and the preview.
fn render(
    mosaic: &Path,
    rendition: &Path,
    preview: &Path,
    grid: &MosaicGrid,
) -> anyhow::Result<()> {
    let shown = raster::rendition(&raster::open_output(mosaic)?)?;
    raster::write_rendition(mosaic, &shown, rendition)?;
    raster::write_preview(
        rendition,
        fit_within(grid.width, grid.height, PREVIEW_MAX_SIDE),
        preview,
    )
}
