//! `tessera upload`: files preprocessed with tessera-core, as the page preprocesses them, and
//! uploaded through the edge with tessera-client (the page's protocol: batches of 50, four
//! requests in flight, retries, `complete`). Also the parts `tessera sync` shares: the
//! connection, the bodies, the progress view and the summary.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Deserialize;
use tessera_client::native::{Bodies, HttpTransport};
use tessera_client::{Observer, Until};
use tessera_core::keys::Project;
use tessera_core::manifest::ObjectKind;
use tessera_core::upload::{DeclaredImage, UploadTarget};
use tessera_core::uploader::{ImageState, Uploader};
use tessera_core::{Derivatives, Options};

use crate::preprocess::{FileError, collect_inputs, derive_file};

/// Where and as whom to upload: shared by `upload` and `sync`.
#[derive(Args)]
pub(crate) struct ClientArgs {
    /// The edge API's base URL, e.g. `http://127.0.0.1:8080` (what `tessera up` prints)
    /// [default: `endpoint` in the config file]. The API key comes from TESSERA_API_KEY, else
    /// `api_key` in the config file (TESSERA_CONFIG, else
    /// $XDG_CONFIG_HOME/tessera/config.json, else ~/.config/tessera/config.json), never from a
    /// flag.
    #[arg(long, env = "TESSERA_ENDPOINT")]
    endpoint: Option<String>,
    /// Project name: 1–63 characters a-z, 0-9 and '-'.
    #[arg(long)]
    pub(crate) project: String,
    /// Date for images without EXIF DateTimeOriginal, as YYYY-MM-DD [default: today, UTC, as
    /// the page does].
    #[arg(long)]
    date: Option<NaiveDate>,
}

/// The config file: `{"endpoint": "https://…", "api_key": "…"}`, both optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    endpoint: Option<String>,
    api_key: Option<String>,
}

/// The edge and the key to it.
pub(crate) struct Connection {
    pub(crate) endpoint: String,
    pub(crate) api_key: String,
}

impl ClientArgs {
    /// The endpoint and API key from the flag, TESSERA_API_KEY and the config file.
    pub(crate) fn connection(&self) -> anyhow::Result<Connection> {
        let (path, config) = config_file()?;
        let endpoint = self.endpoint.clone().or(config.endpoint).ok_or_else(|| {
            anyhow!(
                "no endpoint: pass --endpoint URL, set TESSERA_ENDPOINT, or put \"endpoint\" in {}",
                path.display()
            )
        })?;
        let api_key = std::env::var("TESSERA_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .or(config.api_key)
            .ok_or_else(|| {
                anyhow!(
                    "no API key: set TESSERA_API_KEY, or put \"api_key\" in {}",
                    path.display()
                )
            })?;
        Ok(Connection { endpoint, api_key })
    }

    /// A runtime, the HTTP transport to the edge, and the SHA-256 of every original the
    /// project already has (so that those files are skipped).
    pub(crate) fn connect(
        &self,
    ) -> anyhow::Result<(
        tokio::runtime::Runtime,
        HttpTransport<FileBodies>,
        BTreeSet<String>,
    )> {
        let connection = self.connection()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?;
        let transport = HttpTransport::new(
            &connection.endpoint,
            connection.api_key,
            FileBodies::default(),
        )
        .context("starting the HTTP client")?;
        let recorded = runtime
            .block_on(transport.recorded_originals(&self.project))
            .map_err(|f| {
                anyhow!(
                    "listing project {}'s images at {}: {} (HTTP {})",
                    self.project,
                    connection.endpoint,
                    f.message,
                    f.status
                )
            })?;
        Ok((runtime, transport, recorded))
    }

    /// Preprocessing options, as the page sets them.
    pub(crate) fn options(&self) -> anyhow::Result<Options> {
        let project = Project::new(self.project.clone())?;
        Ok(Options::new(
            project,
            String::new(),
            self.date.unwrap_or_else(|| Utc::now().date_naive()),
        ))
    }
}

/// The config file's path, and its contents (empty when there is none).
fn config_file() -> anyhow::Result<(PathBuf, ConfigFile)> {
    let path = std::env::var_os("TESSERA_CONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .map(|d| PathBuf::from(d).join("tessera/config.json"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".config/tessera/config.json"))
        })
        .unwrap_or_else(|| PathBuf::from("tessera-config.json"));
    match std::fs::read(&path) {
        Ok(bytes) => {
            let config = serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok((path, config))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((path, ConfigFile::default())),
        Err(e) => Err(anyhow!("reading {}: {e}", path.display())),
    }
}

/// The bytes of each image being uploaded: the original read from its file when its PUT
/// starts, the five derivatives kept in memory (about 100 KB an image).
#[derive(Default)]
pub(crate) struct FileBodies {
    sources: Mutex<HashMap<String, Source>>,
}

struct Source {
    path: PathBuf,
    derivatives: Vec<(ObjectKind, Bytes)>,
}

impl FileBodies {
    /// Remembers where `derived`'s bodies are, under its original's SHA-256.
    pub(crate) fn insert(&self, path: &Path, derived: Derivatives) {
        let sha = derived.manifest.original().sha256.hex.clone();
        let derivatives = derived
            .bodies
            .into_iter()
            .map(|(kind, body)| (kind, Bytes::from(body)))
            .collect();
        self.sources.lock().expect("not poisoned").insert(
            sha,
            Source {
                path: path.to_owned(),
                derivatives,
            },
        );
    }

    /// Forgets an image's bodies (once it is done or failed).
    pub(crate) fn remove(&self, image: &str) {
        self.sources.lock().expect("not poisoned").remove(image);
    }
}

impl Bodies for FileBodies {
    fn body(&self, image: &str, kind: ObjectKind) -> Result<Bytes, String> {
        let sources = self.sources.lock().expect("not poisoned");
        let source = sources
            .get(image)
            .ok_or_else(|| format!("no file for image {image}"))?;
        if kind == ObjectKind::Original {
            let path = source.path.clone();
            drop(sources);
            return std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| format!("cannot read {}: {e}", path.display()));
        }
        source
            .derivatives
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, body)| body.clone())
            .ok_or_else(|| format!("no {} for image {image}", kind.as_str()))
    }
}

/// The progress bar (bytes stored of bytes to store) and a line per image done or failed.
pub(crate) struct Progress<'a> {
    bar: ProgressBar,
    /// Bytes sent so far by each PUT in flight, by object key.
    partial: HashMap<String, u64>,
    /// Each image's file, by original SHA-256.
    names: &'a RefCell<BTreeMap<String, PathBuf>>,
    bodies: &'a FileBodies,
    /// Images whose end was already reported.
    reported: BTreeSet<String>,
    /// Bytes stored at the last change.
    stored: u64,
    /// Called after every change (to save the state).
    on_change: Box<dyn FnMut(&Uploader) + 'a>,
}

impl<'a> Progress<'a> {
    /// The upload's bar, drawn in `multi` (under the bars of [`checking`]).
    pub(crate) fn new(
        multi: &MultiProgress,
        names: &'a RefCell<BTreeMap<String, PathBuf>>,
        bodies: &'a FileBodies,
        on_change: impl FnMut(&Uploader) + 'a,
    ) -> Self {
        let bar = multi.add(ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .expect("valid template"),
        ));
        Self {
            bar,
            partial: HashMap::new(),
            names,
            bodies,
            reported: BTreeSet::new(),
            stored: 0,
            on_change: Box::new(on_change),
        }
    }

    /// Marks images already done or failed as reported (a restored state).
    pub(crate) fn seen(&mut self, uploader: &Uploader) {
        for (key, image) in uploader.images() {
            if matches!(
                image.state,
                ImageState::Done { .. } | ImageState::Failed { .. }
            ) {
                self.reported.insert(key.to_owned());
            }
        }
    }

    fn name(&self, key: &str) -> String {
        self.names
            .borrow()
            .get(key)
            .map_or_else(|| key.to_owned(), |p| p.display().to_string())
    }

    fn redraw(&mut self, uploader: &Uploader) {
        let summary = uploader.summary();
        self.stored = summary.bytes_stored;
        self.bar.set_length(summary.bytes_total);
        let partial: u64 = self.partial.values().sum();
        self.bar
            .set_position((summary.bytes_stored + partial).min(summary.bytes_total));
        self.bar.set_message(format!(
            "{} of {} files uploaded",
            summary.done,
            summary.done + summary.queued + summary.uploading
        ));
    }

    /// A line above the bar, or on stderr when there is no terminal to draw it on.
    fn line(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress<'_> {
    fn changed(&mut self, uploader: &Uploader) {
        let stored: BTreeSet<&str> = uploader
            .uploads()
            .flat_map(|u| u.stored.iter().map(String::as_str))
            .collect();
        let live: BTreeSet<&str> = uploader
            .uploads()
            .flat_map(|u| u.created.objects.iter().map(|t| t.key.as_str()))
            .collect();
        self.partial
            .retain(|key, _| live.contains(key.as_str()) && !stored.contains(key.as_str()));
        for (key, image) in uploader.images() {
            if self.reported.contains(key) {
                continue;
            }
            match &image.state {
                ImageState::Done { job_id, .. } => {
                    self.line(format!("uploaded {} (job {job_id})", self.name(key)));
                }
                ImageState::Failed { reason } => {
                    self.line(format!("failed {}: {reason}", self.name(key)));
                }
                _ => continue,
            }
            self.reported.insert(key.to_owned());
            self.bodies.remove(key);
        }
        self.redraw(uploader);
        (self.on_change)(uploader);
    }

    fn sent(&mut self, _image: &str, target: &UploadTarget, bytes: u64) {
        self.partial.insert(target.key.clone(), bytes);
        let partial: u64 = self.partial.values().sum();
        self.bar.set_position(self.stored + partial);
    }
}

/// A bar for `files` files being checked, drawn in `multi` above the upload's.
pub(crate) fn checking(multi: &MultiProgress, files: usize) -> ProgressBar {
    multi.insert(
        0,
        ProgressBar::new(files as u64).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} checked",
            )
            .expect("valid template"),
        ),
    )
}

/// Preprocesses `files` on every core (rayon, on a thread of its own), counting them on `bar`,
/// and hands each result to `accept` as it comes, in the order they finish, so that uploads
/// start with the first files ready instead of after the last.
pub(crate) async fn prepare(
    files: Vec<PathBuf>,
    options: &Options,
    bar: ProgressBar,
    mut accept: impl FnMut(PathBuf, Result<Derivatives, FileError>),
) {
    let (done, mut results) = tokio::sync::mpsc::unbounded_channel();
    let options = options.clone();
    let workers = std::thread::spawn(move || {
        files.par_iter().for_each_with(done, |done, path| {
            let result = derive_file(path, &options).map(|(_, derived)| derived);
            let _ = done.send((path.clone(), result));
        });
    });
    while let Some((path, result)) = results.recv().await {
        bar.inc(1);
        accept(path, result);
    }
    bar.finish_and_clear();
    // Every sender is gone, so the thread has finished its work.
    let _ = workers.join();
}

/// What a run did, for the summary.
#[derive(Default)]
pub(crate) struct Tally {
    /// Files whose original is already recorded in the project.
    pub(crate) already: Vec<PathBuf>,
    /// Files the core refused.
    pub(crate) refused: Vec<(PathBuf, FileError)>,
    /// Files the core refused on an earlier run (`tessera sync`), unchanged since: the reason
    /// with its code.
    pub(crate) refused_again: Vec<(PathBuf, String)>,
}

/// Prints the summary of this run's images (those in `names`): counts, one line per job,
/// then one line per refused or failed file. Returns whether everything went well.
pub(crate) fn report(
    uploader: &Uploader,
    tally: &Tally,
    names: &BTreeMap<String, PathBuf>,
    started: Instant,
) -> bool {
    let mut jobs: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut done, mut bytes, mut waiting) = (0, 0, 0);
    let mut failed = Vec::new();
    for (key, image) in uploader.images().filter(|(k, _)| names.contains_key(*k)) {
        match &image.state {
            ImageState::Done { job_id, .. } => {
                *jobs.entry(job_id).or_default() += 1;
                done += 1;
                bytes += image.total_bytes();
            }
            ImageState::Failed { reason } => failed.push((&names[key], reason)),
            ImageState::Queued | ImageState::Uploading { .. } => waiting += 1,
        }
    }
    let refused = tally.refused.len() + tally.refused_again.len();
    println!(
        "{done} uploaded ({:.1} MB) to project {} in {:.1} s; {} already uploaded, {refused} refused, {} failed{}",
        bytes as f64 / 1e6,
        uploader.project(),
        started.elapsed().as_secs_f64(),
        tally.already.len(),
        failed.len(),
        if waiting > 0 {
            format!(", {waiting} not sent yet")
        } else {
            String::new()
        },
    );
    for (job, images) in &jobs {
        println!(
            "  job {job}: {images} image{}",
            if *images == 1 { "" } else { "s" }
        );
    }
    for (path, error) in &tally.refused {
        eprintln!("  refused {}: {error} [{}]", path.display(), error.code());
    }
    for (path, reason) in &tally.refused_again {
        eprintln!("  refused {}: {reason}", path.display());
    }
    for (path, reason) in &failed {
        eprintln!("  failed {}: {reason}", path.display());
    }
    refused == 0 && failed.is_empty() && waiting == 0
}

/// `tessera upload` arguments.
#[derive(Args)]
pub(crate) struct UploadArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Files and folders; folders are searched recursively (hidden entries skipped), and every
    /// file's type is decided by its content, not its name.
    #[arg(required = true, value_name = "FILES_OR_DIRS")]
    inputs: Vec<PathBuf>,
}

/// Runs `tessera upload`: every file checked and preprocessed, those whose original the
/// project already has skipped, the rest uploaded as they are ready. Exit 1 when any file was refused or failed.
pub(crate) fn run(args: &UploadArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let options = args.client.options()?;
    let files = collect_inputs(&args.inputs);
    let (runtime, transport, recorded) = args.client.connect()?;

    let mut uploader = Uploader::new(args.client.project.clone());
    uploader.set_more_coming(true);
    let uploader = RefCell::new(uploader);
    let tally = RefCell::new(Tally::default());
    let names = RefCell::new(BTreeMap::new());
    let bars = MultiProgress::new();
    let mut progress = Progress::new(&bars, &names, transport.bodies(), |_| {});
    let checked = checking(&bars, files.len());
    let feed = async {
        prepare(files, &options, checked, |path, result| match result {
            Ok(derived) => {
                let sha = derived.manifest.original().sha256.hex.clone();
                let declared = DeclaredImage::from(&derived.manifest);
                if recorded.contains(&sha) || !uploader.borrow_mut().add(declared) {
                    tally.borrow_mut().already.push(path);
                    return;
                }
                transport.bodies().insert(&path, derived);
                names.borrow_mut().insert(sha, path);
                transport.waker().notify_one();
            }
            Err(error) => tally.borrow_mut().refused.push((path, error)),
        })
        .await;
        uploader.borrow_mut().set_more_coming(false);
        transport.waker().notify_one();
    };
    runtime.block_on(async {
        let upload = tessera_client::run(&uploader, &transport, &mut progress, Until::Finished);
        tokio::join!(upload, feed);
    });
    progress.finish();
    let ok = report(
        &uploader.borrow(),
        &tally.borrow(),
        &names.borrow(),
        started,
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
