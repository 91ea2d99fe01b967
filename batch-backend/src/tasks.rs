//! What each task of a job does, between the store, object storage and the stages: fetch
//! its inputs, run the stage's code (the same as its CLI subcommand), write its outputs
//! under deterministic keys, record what it found. Orchestration only: every rule is the
//! core's, every pixel GDAL's, every inference ONNX Runtime's.
//!
//! | task | shards | does |
//! |---|---|---|
//! | ingest | one per input | download the original (SHA-256 while streaming) and compare it with the upload's; sniff its type; a georeferenced GeoTIFF is a raster for stitching; for an upload with derivatives, re-derive them with [`tessera_core::preprocess()`] and compare their SHA-256s with the sidecar's |
//! | stitch | 1 | download the rasters, [`stitch`] them into a COG → `results/{job}/mosaic.tif` and its preview → `results/{job}/stitch/preview.png`; record the detect tasks: the mosaic's shards ([`detect_shards`]) and the accepted photos |
//! | detect | one per [`Shard`] of the mosaic, then one per photo ([`DetectTasks`]) | a shard: download the mosaic, [`run_windows`] over the shard's windows → its candidates, `results/{job}/detect/shard-{i}-of-{n}.json`; a photo: download it, run it upright and whole → `results/{job}/photos/{image_id}.json` and `.png` (its preview with boxes) |
//! | publish | 1 | [`combine`] (merge across shards) → COCO (mosaic and photos), GeoJSON, the mosaic's preview with boxes, STAC Item, each photo's count; `results/{job}/job.json` (inputs and results); the job's keys added to each input's sidecar |
//!
//! Outputs are written before the task is marked done, under keys that depend only on the
//! job, so a task that runs twice (a worker killed after writing) writes the same objects.
//! A bad input is recorded with its reason and never fails the task; a task fails only on
//! trouble another attempt may fix (storage, network), or when its own output cannot be made.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use tessera_core::detect::{ModelDescription, Shard};
use tessera_core::job::{
    InputState, JobResults, JobStage, PhotoResult, ResultObject, detect_shards,
};
use tessera_core::job_inputs::JobLimits;
use tessera_core::keys::JobId;
use tessera_core::limits::Limits;
use tessera_core::limits::{ImageFormat, sniff};
use tessera_core::manifest::{Manifest, ObjectKind};
use tessera_core::mosaic::MosaicOptions;
use tessera_core::preprocess::{Options, preprocess};
use tessera_core::queue::TaskKey;
use tokio::sync::watch;

use crate::inference::{Detector, Device, ModelSource};
use crate::objects::{ObjectError, Objects};
use crate::raster::{GdalRaster, Raster as _};
use crate::stages::detect::{
    DetectInput, DetectOptions, DetectProgress, DetectReport, Preview, combine, detect,
    run_windows, write_outputs, write_preview,
};
use crate::stages::stitch::{StitchError, StitchInput, StitchProgress, stitch};
use crate::store::{DetectTasks, InputKind, InputRecord, Store};

/// A task's progress within its stage, for the job's progress: the fraction of the stage
/// done (0.0–1.0) and, in detect, windows done and known.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TaskProgress {
    /// The stage's fraction done.
    pub within: f64,
    /// Windows done and known.
    pub windows: Option<(u64, u64)>,
}

impl TaskProgress {
    /// A detect task's progress from its windows: 95 % at the last window (writing remains).
    fn of_windows(p: DetectProgress) -> Self {
        Self {
            within: 0.95 * p.done as f64 / p.total.max(1) as f64,
            windows: Some((p.done as u64, p.total as u64)),
        }
    }
}

/// Why a task failed: its message, kept on the task, and whether another attempt may help.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    /// What went wrong.
    pub message: String,
    /// Whether running it again could succeed.
    pub retryable: bool,
}

impl TaskError {
    fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

impl From<ObjectError> for TaskError {
    fn from(e: ObjectError) -> Self {
        Self {
            retryable: e.is_retryable(),
            message: e.to_string(),
        }
    }
}

impl From<anyhow::Error> for TaskError {
    /// The store's and the file system's errors: may pass.
    fn from(e: anyhow::Error) -> Self {
        Self {
            message: format!("{e:#}"),
            retryable: true,
        }
    }
}

/// The detector a worker runs, and where.
#[derive(Debug, Clone, Default)]
pub struct DetectorChoice {
    /// An ONNX model with its description beside it; `None` for the shipped model.
    pub model: Option<PathBuf>,
    /// Where inference runs.
    pub device: Device,
    /// ONNX Runtime's intra-op threads (0: one per core).
    pub threads: usize,
}

impl DetectorChoice {
    /// Loads the model and checks it against its description.
    ///
    /// # Errors
    /// [`crate::inference::InferenceError`]: no ONNX Runtime, or a model that does not load
    /// or does not match its description.
    pub fn open(&self) -> Result<Detector, crate::inference::InferenceError> {
        match &self.model {
            Some(path) => Detector::open(ModelSource::File(path), None, self.device, self.threads),
            None => Detector::open(
                ModelSource::SHIPPED,
                Some(tessera_core::detect::ModelDescription::tessera_crowns()),
                self.device,
                self.threads,
            ),
        }
    }
}

/// What a worker needs to run tasks: the store, the bucket, a scratch folder, the detector.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The job store.
    pub store: Store,
    /// The bucket of originals, sidecars and results.
    pub objects: Objects,
    /// Where tasks download and write (one temporary folder per task, removed after it).
    pub scratch: PathBuf,
    /// The detector.
    pub detector: DetectorChoice,
    /// What one input may be (bytes, pixels).
    pub limits: JobLimits,
    /// Mosaic pixels per detect task ([`detect_shards`]).
    pub detect_shard_pixels: u64,
}

/// Object transfers a task keeps in flight at once (stitch's downloads, publish's sidecars).
const TRANSFERS_IN_FLIGHT: usize = 8;

/// The job's mosaic, under its results.
const MOSAIC: &str = "mosaic.tif";

/// The mosaic's preview with the detections drawn, under the job's results.
const PREVIEW: &str = "preview.png";

/// The stitch stage's preview of the mosaic (without detections), under the job's results.
const STITCH_PREVIEW: &str = "stitch/preview.png";

/// What the detect stage asks: the default score and overlap, and `shard` of the windows.
fn detect_options(shard: Shard) -> DetectOptions {
    DetectOptions {
        score: tessera_core::detect::DEFAULT_SCORE,
        overlap: tessera_core::detect::DEFAULT_OVERLAP,
        // The job's own mosaic, stitched from inputs within the limits; photos are decoded
        // within tessera-core's limits first.
        max_input_pixels: u64::MAX,
        shard,
    }
}

/// Runs the detector over the photo at `original` upright: decoded and oriented by
/// tessera-core, written as `upright.tif` in `dir`, run whole ([`detect`]), its preview with
/// the boxes drawn written as `preview.png`. `Err` is why the photo cannot be run.
fn detect_upright(
    original: &Path,
    source: String,
    dir: &Path,
    detector: &mut Detector,
    progress: &watch::Sender<TaskProgress>,
) -> Result<DetectReport, String> {
    let bytes = std::fs::read(original).map_err(|e| format!("cannot read the download: {e}"))?;
    // The photo path's side and pixel limits: a photo is decoded whole.
    let limits = Limits {
        max_bytes: u64::MAX,
        ..Limits::DEFAULT
    };
    let upright = tessera_core::preprocess::upright(&bytes, &limits).map_err(|e| e.to_string())?;
    let path = dir.join("upright.tif");
    let (width, height) = (upright.width() as usize, upright.height() as usize);
    crate::raster::write_tiff(upright.as_raw(), width, height, &path)
        .map_err(|e| format!("{e:#}"))?;
    drop(upright);
    let report = detect(
        &[DetectInput { path, source }],
        detector,
        &detect_options(Shard::WHOLE),
        &mut |p| {
            progress.send_replace(TaskProgress::of_windows(p));
        },
    );
    if let Some((_, reason)) = report.failed.first() {
        return Err(reason.clone());
    }
    write_preview(&report, 0, &dir.join("preview.png")).map_err(|e| format!("{e:#}"))?;
    Ok(report)
}

/// What a detect task stores for publish: its shard's candidates ([`run_windows`]) and the
/// description of the model that found them (class names for COCO and GeoJSON).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ShardResult {
    model: ModelDescription,
    report: DetectReport,
}

/// Where a detect task stores its [`ShardResult`]: `results/{job}/detect/shard-{i}-of-{n}.json`.
fn shard_key(job_id: &JobId, shard: Shard) -> String {
    result_key(
        job_id,
        &format!("detect/shard-{}-of-{}.json", shard.index, shard.count),
    )
}

/// The key of a job's result `name`: `results/{job_id}/{name}` (ARCHITECTURE.md's layout).
#[must_use]
pub fn result_key(job_id: &JobId, name: &str) -> String {
    format!("results/{}/{name}", job_id.as_str())
}

impl Pipeline {
    /// Runs the task `key`. `detector` is the worker's, opened on its first detect task and
    /// kept; `progress` receives the task's progress within its stage.
    ///
    /// # Errors
    /// [`TaskError`]: the task's failure (bad inputs are recorded, not errors).
    pub async fn run(
        &self,
        key: &TaskKey,
        detector: &mut Option<Detector>,
        progress: &watch::Sender<TaskProgress>,
    ) -> Result<(), TaskError> {
        std::fs::create_dir_all(&self.scratch)
            .with_context(|| format!("creating {}", self.scratch.display()))?;
        let dir = tempfile::tempdir_in(&self.scratch)
            .with_context(|| format!("a folder in {}", self.scratch.display()))?;
        match key.stage {
            JobStage::Ingest => self.ingest(&key.job_id, key.shard, dir.path()).await,
            JobStage::Stitch => self.stitch(&key.job_id, dir.path(), progress).await,
            JobStage::Detect => self.detect(key, dir.path(), detector, progress).await,
            JobStage::Publish => self.publish(&key.job_id, dir.path()).await,
            JobStage::Notify => Err(TaskError::fatal("notify is not a task")),
        }
    }

    async fn ingest(&self, job_id: &JobId, index: u32, dir: &Path) -> Result<(), TaskError> {
        let Some(record) = self.store.input(job_id, index).await? else {
            return Ok(()); // A job without inputs has one ingest task and nothing to do.
        };
        let input = &record.input;
        let path = dir.join("original");
        let limits = self.limits;
        let download = self
            .objects
            .download(&input.original_key, &path, limits.max_input_bytes)
            .await;
        let verdict = match download {
            Err(ObjectError::NotFound { .. }) => Err("the original is not in storage".to_owned()),
            Err(ObjectError::TooLarge { size, max, .. }) => Err(format!(
                "{size} bytes; a job input may have at most {max} (--max-input-bytes)"
            )),
            Err(e) => return Err(e.into()),
            Ok(sha256) if sha256 != input.sha256 => Err(format!(
                "its SHA-256 is {}, not the {} recorded when it was uploaded",
                sha256.hex, input.sha256.hex
            )),
            Ok(_) => {
                let manifest = match self.objects.get(&input.metadata_key).await {
                    Ok(body) => serde_json::from_slice::<Manifest>(&body).ok(),
                    Err(ObjectError::NotFound { .. }) => None,
                    Err(e) => return Err(e.into()),
                };
                tokio::task::spawn_blocking(move || examine(&path, manifest.as_ref(), &limits))
                    .await
                    .context("the ingest thread")?
            }
        };
        let (state, kind, reason) = match &verdict {
            Ok(kind) => (InputState::Ok, Some(*kind), None),
            Err(reason) => (InputState::Failed, None, Some(reason.as_str())),
        };
        if let Some(reason) = reason {
            // Flagged on the image's record too: a derivative that is not its original's, a
            // changed original, a file that is not what it claims.
            annotate_sidecar(
                self.objects.clone(),
                input.metadata_key.clone(),
                "refused",
                job_id.clone(),
                serde_json::json!({"stage": "ingest", "reason": reason}),
            )
            .await?;
        }
        self.store
            .record_input(job_id, index, state, kind, reason)
            .await?;
        let (settled, total) = self.store.inputs_settled(job_id).await?;
        self.store
            .progress(
                job_id,
                JobStage::Ingest,
                settled as f64 / total.max(1) as f64,
                None,
                now_ms(),
            )
            .await?;
        Ok(())
    }

    /// Stitches the job's rasters, then records its detect tasks: the mosaic's shards and one
    /// per accepted photo.
    async fn stitch(
        &self,
        job_id: &JobId,
        dir: &Path,
        progress: &watch::Sender<TaskProgress>,
    ) -> Result<(), TaskError> {
        let inputs = self.store.inputs(job_id).await?;
        let accepted = |kind| {
            inputs
                .iter()
                .filter(move |i| i.state == InputState::Ok && i.kind == Some(kind))
        };
        let rasters: Vec<_> = accepted(InputKind::Raster).cloned().collect();
        let photos = u32::try_from(accepted(InputKind::Photo).count()).unwrap_or(u32::MAX);
        let mosaic = if rasters.is_empty() {
            None
        } else {
            self.stitch_rasters(job_id, &rasters, dir, progress).await?
        };
        let mosaic_shards = mosaic.map_or(0, |(width, height)| {
            detect_shards(width, height, self.detect_shard_pixels)
        });
        self.store
            .set_detect_tasks(
                job_id,
                DetectTasks {
                    mosaic_shards,
                    photos,
                },
            )
            .await?;
        Ok(())
    }

    /// Stitches `rasters` into the job's mosaic and its preview; the mosaic's width and
    /// height, `None` when every raster was refused.
    async fn stitch_rasters(
        &self,
        job_id: &JobId,
        rasters: &[InputRecord],
        dir: &Path,
        progress: &watch::Sender<TaskProgress>,
    ) -> Result<Option<(usize, usize)>, TaskError> {
        // Several downloads in flight: a job of many small tiles waits on round trips, not
        // bandwidth. The inputs keep their job order (later inputs win where they overlap).
        let transfers: Vec<_> = rasters
            .iter()
            .map(|record| {
                let (objects, max_bytes) = (self.objects.clone(), self.limits.max_input_bytes);
                let path = dir.join(format!("{:06}.tif", record.index));
                let key = record.input.original_key.clone();
                async move {
                    objects.download(&key, &path, max_bytes).await?;
                    Ok::<_, ObjectError>(StitchInput { path, source: key })
                }
            })
            .collect();
        let mut downloads = futures_util::stream::iter(transfers).buffered(TRANSFERS_IN_FLIGHT);
        let mut inputs = Vec::with_capacity(rasters.len());
        while let Some(input) = downloads.next().await {
            inputs.push(input?);
            progress.send_replace(TaskProgress {
                within: 0.3 * inputs.len() as f64 / rasters.len() as f64,
                windows: None,
            });
        }
        drop(downloads);
        let project = self
            .store
            .job(job_id, now_ms())
            .await?
            .context("the job vanished")?
            .project;
        let out = dir.join("mosaic.tif");
        let report = {
            let (out, progress) = (out.clone(), progress.clone());
            tokio::task::spawn_blocking(move || {
                stitch(
                    &inputs,
                    &MosaicOptions::default(),
                    Some(project.as_str()),
                    &out,
                    &|p| {
                        if let StitchProgress::Writing(f) = p {
                            progress.send_replace(TaskProgress {
                                within: 0.3 + 0.6 * f,
                                windows: None,
                            });
                        }
                    },
                )
            })
            .await
            .context("the stitch thread")?
        };
        let refused = match &report {
            Ok(report) => report.refused.clone(),
            Err(StitchError::NoInputs { refused }) => refused.clone(),
            Err(e @ StitchError::Write(_)) => return Err(TaskError::fatal(e.to_string())),
        };
        for refusal in refused {
            if let Some(record) = rasters
                .iter()
                .find(|r| r.input.original_key == refusal.input)
            {
                let reason = refusal.problem.to_string();
                self.store
                    .record_input(
                        job_id,
                        record.index,
                        InputState::Failed,
                        Some(InputKind::Raster),
                        Some(&reason),
                    )
                    .await?;
            }
        }
        let Ok(report) = &report else {
            return Ok(None);
        };
        let key = result_key(job_id, MOSAIC);
        self.objects.upload(&out, &key).await?;
        self.objects
            .upload(&report.preview, &result_key(job_id, STITCH_PREVIEW))
            .await?;
        self.update_results(job_id, |r| r.mosaic = Some(ResultObject::at(key)))
            .await?;
        Ok(Some((report.grid.width, report.grid.height)))
    }

    /// Runs detect task `key.shard` ([`DetectTasks`]): a shard of the mosaic, or a photo.
    async fn detect(
        &self,
        key: &TaskKey,
        dir: &Path,
        detector: &mut Option<Detector>,
        progress: &watch::Sender<TaskProgress>,
    ) -> Result<(), TaskError> {
        let job_id = &key.job_id;
        let tasks = self.store.detect_tasks(job_id).await?;
        if key.shard < tasks.mosaic_shards {
            let shard = Shard {
                index: key.shard,
                count: tasks.mosaic_shards,
            };
            return self
                .detect_mosaic(job_id, shard, dir, detector, progress)
                .await;
        }
        match self
            .store
            .nth_photo(job_id, key.shard - tasks.mosaic_shards)
            .await?
        {
            Some(photo) => {
                self.detect_photo(job_id, &photo, dir, detector, progress)
                    .await
            }
            None => Ok(()),
        }
    }

    /// The worker's detector, opened on its first detect task.
    fn detector(&self, detector: &mut Option<Detector>) -> Result<Detector, TaskError> {
        match detector.take() {
            Some(d) => Ok(d),
            // A model that cannot load will not load on the next attempt either.
            None => self
                .detector
                .open()
                .map_err(|e| TaskError::fatal(format!("the detector: {e}"))),
        }
    }

    /// Runs `shard` of the mosaic's windows and stores its candidates, unmerged, with the
    /// model that found them ([`ShardResult`]); publish merges the shards.
    async fn detect_mosaic(
        &self,
        job_id: &JobId,
        shard: Shard,
        dir: &Path,
        detector: &mut Option<Detector>,
        progress: &watch::Sender<TaskProgress>,
    ) -> Result<(), TaskError> {
        let path = dir.join(MOSAIC);
        let source = result_key(job_id, MOSAIC);
        // The job's own mosaic: no input limit applies to it.
        self.objects.download(&source, &path, u64::MAX).await?;
        let mut running = self.detector(detector)?;
        let progress = progress.clone();
        let (running, found) = tokio::task::spawn_blocking(move || {
            let report = run_windows(
                &[DetectInput { path, source }],
                &mut running,
                &detect_options(shard),
                &mut |p| {
                    progress.send_replace(TaskProgress::of_windows(p));
                },
            );
            let model = running.description().clone();
            (running, ShardResult { model, report })
        })
        .await
        .context("the detect thread")?;
        *detector = Some(running);
        if let Some((source, reason)) = found.report.failed.first() {
            return Err(TaskError::fatal(format!("{source}: {reason}")));
        }
        let body = serde_json::to_vec(&found).context("a shard's detections")?;
        self.objects.put(&shard_key(job_id, shard), body).await?;
        Ok(())
    }

    /// Runs the detector over one photo, upright ([`tessera_core::preprocess::upright`]), and
    /// stores its detections ([`ShardResult`]) and its preview with the boxes drawn. A photo
    /// the detector cannot read is stored as a failure, for publish to report.
    async fn detect_photo(
        &self,
        job_id: &JobId,
        photo: &InputRecord,
        dir: &Path,
        detector: &mut Option<Detector>,
        progress: &watch::Sender<TaskProgress>,
    ) -> Result<(), TaskError> {
        let original = dir.join("original");
        let source = photo.input.original_key.clone();
        self.objects
            .download(&source, &original, self.limits.max_input_bytes)
            .await?;
        let mut running = self.detector(detector)?;
        let (progress, scratch) = (progress.clone(), dir.to_owned());
        let (running, found) = tokio::task::spawn_blocking(move || {
            let found =
                detect_upright(&original, source.clone(), &scratch, &mut running, &progress);
            let model = running.description().clone();
            let report = found.unwrap_or_else(|reason| DetectReport {
                failed: vec![(source, reason)],
                ..DetectReport::default()
            });
            (running, ShardResult { model, report })
        })
        .await
        .context("the detect thread")?;
        *detector = Some(running);
        let image_id = photo.input.image_id.as_str();
        if found.report.failed.is_empty() {
            let preview = result_key(job_id, &format!("photos/{image_id}.png"));
            self.objects
                .upload(&dir.join("preview.png"), &preview)
                .await?;
        }
        let body = serde_json::to_vec(&found).context("a photo's detections")?;
        let key = result_key(job_id, &format!("photos/{image_id}.json"));
        self.objects.put(&key, body).await?;
        Ok(())
    }

    /// Merges the detect tasks' results (the mosaic's shards, then each photo) and writes the
    /// detections (COCO, GeoJSON, the stitch preview with the boxes drawn, STAC Item, each
    /// photo's count and preview), then the job's summary, then each input's sidecar.
    async fn publish(&self, job_id: &JobId, dir: &Path) -> Result<(), TaskError> {
        self.publish_detections(job_id, dir).await?;
        let job = self
            .store
            .job(job_id, now_ms())
            .await?
            .context("the job vanished")?;
        let summary = serde_json::json!({
            "job_id": job.job_id,
            "project": job.project,
            "upload_id": job.upload_id,
            "inputs": job.inputs,
            "results": job.results,
        });
        let summary_key = result_key(job_id, "job.json");
        self.objects
            .put(
                &summary_key,
                serde_json::to_vec_pretty(&summary).context("job.json")?,
            )
            .await?;
        let entry = serde_json::json!({"summary": summary_key, "results": job.results});
        let updates: Vec<_> = self
            .store
            .inputs(job_id)
            .await?
            .into_iter()
            .filter(|r| r.state == InputState::Ok)
            .map(|record| {
                annotate_sidecar(
                    self.objects.clone(),
                    record.input.metadata_key,
                    "results",
                    job_id.clone(),
                    entry.clone(),
                )
            })
            .collect();
        futures_util::stream::iter(updates)
            .buffer_unordered(TRANSFERS_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    async fn publish_detections(&self, job_id: &JobId, dir: &Path) -> Result<(), TaskError> {
        let tasks = self.store.detect_tasks(job_id).await?;
        let photos: Vec<InputRecord> = self
            .store
            .inputs(job_id)
            .await?
            .into_iter()
            .filter(|i| i.state == InputState::Ok && i.kind == Some(InputKind::Photo))
            .collect();
        if tasks.mosaic_shards == 0 && photos.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<String> = (0..tasks.mosaic_shards)
            .map(|index| {
                let count = tasks.mosaic_shards;
                shard_key(job_id, Shard { index, count })
            })
            .collect();
        keys.extend(photos.iter().map(|p| {
            let image_id = p.input.image_id.as_str();
            result_key(job_id, &format!("photos/{image_id}.json"))
        }));
        let fetches: Vec<_> = keys
            .into_iter()
            .map(|key| {
                let objects = self.objects.clone();
                async move {
                    let body = objects.get(&key).await?;
                    serde_json::from_slice::<ShardResult>(&body)
                        .with_context(|| format!("{key} is not a detect task's result"))
                        .map_err(TaskError::from)
                }
            })
            .collect();
        let found: Vec<ShardResult> = futures_util::stream::iter(fetches)
            .buffered(TRANSFERS_IN_FLIGHT)
            .try_collect()
            .await?;
        let model = found
            .first()
            .map(|s| s.model.clone())
            .context("no detect result")?;
        // A photo the detector could not read is reported on its input.
        let mut reports = Vec::with_capacity(found.len());
        let mut ran_photos = Vec::new();
        for (n, result) in found.into_iter().enumerate() {
            let photo = n
                .checked_sub(tasks.mosaic_shards as usize)
                .map(|p| &photos[p]);
            match (photo, result.report.failed.first()) {
                (Some(photo), Some((_, reason))) => {
                    let reason = format!("detection: {reason}");
                    self.store
                        .record_input(
                            job_id,
                            photo.index,
                            InputState::Failed,
                            Some(InputKind::Photo),
                            Some(&reason),
                        )
                        .await?;
                }
                (photo, _) => {
                    ran_photos.extend(photo);
                    reports.push(result.report);
                }
            }
        }
        let stitched = dir.join("stitch-preview.png");
        if tasks.mosaic_shards > 0 {
            self.objects
                .download(&result_key(job_id, STITCH_PREVIEW), &stitched, u64::MAX)
                .await?;
        }
        let out = dir.join("out");
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let created = self
            .store
            .job(job_id, now_ms())
            .await?
            .context("the job vanished")?
            .created_at;
        let created = chrono::DateTime::from_timestamp(i64::try_from(created).unwrap_or(0), 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (item_id, written_out) = (format!("tessera-{}", job_id.as_str()), out.clone());
        let with_mosaic = tasks.mosaic_shards > 0;
        let whole = tokio::task::spawn_blocking(move || -> anyhow::Result<DetectReport> {
            let mut whole = combine(reports).context("no detect result")?;
            let mut previews = Vec::new();
            if with_mosaic {
                // The mosaic is the first file and group: its shards came first.
                let (rgb, width, height) = crate::raster::read_rgb(&stitched)?;
                let raster = (whole.files[0].width, whole.files[0].height);
                whole.previews = vec![Preview::of_image(&rgb, width, height, raster)];
                previews.push((0, PREVIEW.to_owned()));
            }
            write_outputs(&whole, &model, &written_out, &item_id, &created, &previews)?;
            Ok(whole)
        })
        .await
        .context("the publish thread")?
        .map_err(|e| TaskError::fatal(format!("{e:#}")))?;
        let mut results = JobResults::default();
        for (name, slot) in [
            ("detections.coco.json", &mut results.coco),
            ("detections.geojson", &mut results.geojson),
            ("item.json", &mut results.stac),
        ] {
            let key = result_key(job_id, name);
            self.objects.upload(&out.join(name), &key).await?;
            *slot = Some(ResultObject::at(key));
        }
        if with_mosaic {
            let key = result_key(job_id, PREVIEW);
            self.objects.upload(&out.join(PREVIEW), &key).await?;
            results.preview = Some(ResultObject::at(key));
        }
        results.photos = ran_photos
            .iter()
            .map(|photo| {
                let source = &photo.input.original_key;
                let file = whole.files.iter().position(|f| &f.source == source);
                let image_id = photo.input.image_id.clone();
                PhotoResult {
                    detections: whole
                        .detections
                        .iter()
                        .filter(|d| Some(d.source) == file)
                        .count() as u64,
                    preview: ResultObject::at(result_key(
                        job_id,
                        &format!("photos/{}.png", image_id.as_str()),
                    )),
                    image_id,
                }
            })
            .collect();
        self.update_results(job_id, |r| {
            r.coco = results.coco;
            r.geojson = results.geojson;
            r.stac = results.stac;
            r.preview = results.preview;
            r.photos = results.photos;
        })
        .await
    }

    async fn update_results(
        &self,
        job_id: &JobId,
        change: impl FnOnce(&mut JobResults),
    ) -> Result<(), TaskError> {
        let mut results = self
            .store
            .job(job_id, now_ms())
            .await?
            .context("the job vanished")?
            .results;
        change(&mut results);
        self.store.set_results(job_id, &results).await?;
        Ok(())
    }
}

/// Sets `sidecar[field][job_id] = value` in the sidecar at `key` (keyed by job, so that a
/// task run twice writes the same sidecar). A missing or non-object sidecar is left alone:
/// the image record is the edge's, not the job's.
async fn annotate_sidecar(
    objects: Objects,
    key: String,
    field: &'static str,
    job_id: JobId,
    value: serde_json::Value,
) -> Result<(), TaskError> {
    let mut sidecar: serde_json::Value = match objects.get(&key).await {
        Ok(body) => serde_json::from_slice(&body).with_context(|| format!("{key} is not JSON"))?,
        Err(ObjectError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let Some(fields) = sidecar.as_object_mut() else {
        return Ok(());
    };
    let entries = fields.entry(field).or_insert_with(|| serde_json::json!({}));
    if let Some(entries) = entries.as_object_mut() {
        entries.insert(job_id.as_str().to_owned(), value);
    }
    objects
        .put(
            &key,
            serde_json::to_vec_pretty(&sidecar).context("a sidecar")?,
        )
        .await?;
    Ok(())
}

/// What an original that matched its checksum is: a georeferenced GeoTIFF is a raster;
/// anything else a photo. Where the sidecar lists derivatives, they are re-derived from the
/// original and must match the uploaded ones: no client can plant a derivative that is not
/// its original's. `Err` is the reason the input is left out.
fn examine(
    path: &Path,
    manifest: Option<&Manifest>,
    limits: &JobLimits,
) -> Result<InputKind, String> {
    let mut head = [0u8; 16];
    let read = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|e| format!("cannot read the download: {e}"))?;
    let format = sniff(&head[..read]).map_err(|e| e.to_string())?;
    let mut kind = InputKind::Photo;
    if format == ImageFormat::Tiff {
        let raster = GdalRaster::open(path, limits.max_input_pixels).map_err(|p| p.to_string())?;
        let probe = raster.probe();
        if probe.crs.is_some() && probe.geotransform.is_some() {
            kind = InputKind::Raster;
        }
    }
    let Some(manifest) = manifest.filter(|m| m.objects.len() > 1) else {
        return Ok(kind);
    };
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the download: {e}"))?;
    let mut options = Options::new(
        manifest.project.clone(),
        manifest.file_name.clone(),
        manifest.date,
    );
    options.image_id = Some(manifest.image_id.clone());
    let derived = preprocess(&bytes, &options).map_err(|e| e.to_string())?;
    for (object, _) in derived.derivatives() {
        let uploaded = manifest.object(object.kind);
        if uploaded.map(|u| &u.sha256) != Some(&object.sha256) {
            return Err(format!(
                "its {} derivative ({}) is not the one its original gives: uploaded SHA-256 {}, re-derived {}",
                kind_name(object.kind),
                object.key,
                uploaded.map_or("none", |u| u.sha256.hex.as_str()),
                object.sha256.hex
            ));
        }
    }
    Ok(kind)
}

fn kind_name(kind: ObjectKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}"))
}

/// Unix milliseconds now.
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
