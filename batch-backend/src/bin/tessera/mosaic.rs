//! `tessera mosaic`: stitch georeferenced GeoTIFFs into a Cloud-Optimized GeoTIFF, with the
//! batch backend's stitch stage ([`tessera_batch::stages::stitch`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tessera_batch::stages::stitch::{StitchError, StitchInput, StitchProgress, stitch};
use tessera_core::mosaic::{
    DEFAULT_MAX_INPUT_PIXELS, MosaicOptions, Nodata, Resampling, Resolution,
};

use crate::preprocess::collect_inputs;

#[derive(Args)]
pub(crate) struct MosaicArgs {
    /// The COG to write; `{stem}.rgba.vrt` (8-bit rendition) and `{stem}.preview.png` are
    /// written beside it.
    #[arg(long)]
    out: PathBuf,
    /// Output pixel size: highest, lowest or average of the inputs', or metres (CRS units).
    #[arg(long, default_value = "highest")]
    resolution: Resolution,
    /// Resampling where an input's grid is not the mosaic's: nearest, bilinear, cubic, average.
    #[arg(long, default_value = "bilinear")]
    resampling: Resampling,
    /// Largest width × height accepted per input, in pixels (a header claiming more is a
    /// possible decompression bomb and is refused before any pixel is read).
    #[arg(long, default_value_t = DEFAULT_MAX_INPUT_PIXELS)]
    max_input_pixels: u64,
    /// Project recorded in the COG's provenance metadata.
    #[arg(long)]
    project: Option<String>,
    /// GeoTIFF files and folders; folders are searched recursively (hidden entries skipped),
    /// and every file's type is decided by its content, not its name.
    #[arg(required = true, value_name = "FILES_OR_DIRS")]
    inputs: Vec<PathBuf>,
}

/// Runs `tessera mosaic`: a progress bar, then a summary. Exit code 0 when every input was
/// used, 1 when any was refused or nothing could be written.
pub(crate) fn run(args: &MosaicArgs) -> anyhow::Result<ExitCode> {
    let inputs: Vec<StitchInput> = collect_inputs(&args.inputs)
        .into_iter()
        .map(|path| StitchInput {
            source: path.display().to_string(),
            path,
        })
        .collect();
    let options = MosaicOptions {
        resolution: args.resolution,
        resampling: args.resampling,
        max_input_pixels: args.max_input_pixels,
    };
    let bar = ProgressBar::new(inputs.len() as u64).with_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    let report = stitch(
        &inputs,
        &options,
        args.project.as_deref(),
        &args.out,
        &|step| match step {
            StitchProgress::Probed(n, total) => {
                bar.set_length(total as u64);
                bar.set_position(n as u64);
                bar.set_message("probing inputs");
            }
            StitchProgress::Writing(f) => {
                bar.set_length(1000);
                bar.set_position((f * 1000.0) as u64);
                bar.set_message("writing the COG");
            }
            StitchProgress::Rendering => bar.set_message("rendition and preview"),
        },
    );
    bar.finish_and_clear();
    let report = match report {
        Ok(report) => report,
        Err(StitchError::NoInputs { refused }) => {
            eprintln!("no mosaic: every input was refused");
            for r in refused {
                eprintln!("  {r}");
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };

    let g = report.grid;
    let b = g.bounds();
    let (pw, ph) = g.geotransform.pixel_size();
    let warped = report.used.iter().filter(|(_, w)| *w).count();
    println!("{}", report.mosaic.display());
    println!(
        "  {} × {} px, {} band(s) {}, CRS {} ({})",
        g.width, g.height, report.bands, report.sample_type, report.crs.id, report.crs.name
    );
    println!(
        "  pixel size {pw} × {ph}, bounds x {} … {}, y {} … {}",
        b.min_x, b.max_x, b.min_y, b.max_y
    );
    match report.nodata {
        Nodata::Value(v) => println!("  uncovered pixels: nodata {v}"),
        Nodata::Mask => println!("  uncovered pixels: internal mask"),
    }
    println!(
        "  {} input(s) used, {warped} warped to {}",
        report.used.len(),
        report.crs.id
    );
    println!(
        "  rendition {}, preview {}",
        report.rendition.display(),
        report.preview.display()
    );
    if report.refused.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{} input(s) refused:", report.refused.len());
    for r in &report.refused {
        eprintln!("  {r}");
    }
    Ok(ExitCode::FAILURE)
}
