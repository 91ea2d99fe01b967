//! `tessera sync DIR [--watch]`: a folder kept uploaded. Everything in DIR is preprocessed and
//! uploaded as `tessera upload` does; with `--watch`, every file created or changed afterwards
//! too, once it has stopped growing (file-system notifications through `notify`).
//!
//! A state file (`DIR/.tessera-sync.json` by default, hidden so it is never uploaded) keeps
//! what each file was when last seen (size, modification time, SHA-256) and the uploader's own
//! state, written atomically as uploads progress: a restarted sync uploads nothing twice, and
//! finishes an upload that was under way (only the objects it is missing, while its URLs last).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context as _, anyhow};
use clap::Args;
use indicatif::MultiProgress;
use notify::Watcher as _;
use serde::{Deserialize, Serialize};
use tessera_client::Until;
use tessera_client::native::HttpTransport;
use tessera_core::Options;
use tessera_core::upload::DeclaredImage;
use tessera_core::uploader::{ImageState, Uploader};

use crate::preprocess::collect_inputs;
use crate::upload::{ClientArgs, FileBodies, Progress, Tally, checking, prepare, report};

/// The state file's name inside DIR when `--state` is not given.
const STATE_FILE: &str = ".tessera-sync.json";

/// How often files waiting to settle are looked at again.
const SETTLE_POLL: Duration = Duration::from_millis(250);

/// The state is written at most this often while uploads progress (and always at the end).
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// `tessera sync` arguments.
#[derive(Args)]
pub(crate) struct SyncArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Keep watching DIR after the first pass, uploading new and changed files; Ctrl-C or
    /// SIGTERM stops.
    #[arg(long)]
    watch: bool,
    /// The state file [default: DIR/.tessera-sync.json].
    #[arg(long)]
    state: Option<PathBuf>,
    /// How long a new or changed file must keep its size and modification time before it is
    /// uploaded, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// The folder: searched recursively, hidden entries skipped.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// A file as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    size_bytes: u64,
    /// Modification time, in unix nanoseconds.
    modified_ns: u128,
    /// Its SHA-256 (hex) when it was preprocessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    /// Why the core refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refused: Option<String>,
}

/// The state file.
#[derive(Serialize, Deserialize)]
struct SyncState {
    /// The project the folder is synced to.
    project: String,
    /// Every file seen, by its path relative to DIR.
    files: BTreeMap<String, Seen>,
    /// Images recorded in the project (by this sync or found recorded), by SHA-256.
    uploaded: BTreeSet<String>,
    /// The uploader: images waiting, uploads under way.
    uploader: Uploader,
}

/// What the sync knows and does, shared by the pass, the watcher and the state writer.
struct Sync<'a> {
    dir: PathBuf,
    state_path: PathBuf,
    options: Options,
    files: RefCell<BTreeMap<String, Seen>>,
    uploaded: RefCell<BTreeSet<String>>,
    uploader: RefCell<Uploader>,
    names: RefCell<BTreeMap<String, PathBuf>>,
    tally: RefCell<Tally>,
    transport: &'a HttpTransport<FileBodies>,
    /// The progress bars: the upload's, and one for each batch of files being checked.
    bars: MultiProgress,
}

/// Runs `tessera sync`.
pub(crate) fn run(args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let options = args.client.options()?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("opening {}", args.dir.display()))?;
    let state_path = args.state.clone().unwrap_or_else(|| dir.join(STATE_FILE));
    let state = load(&state_path, &args.client.project)?;
    let (runtime, transport, recorded) = args.client.connect()?;
    let mut uploader = state.uploader;
    let failed: Vec<String> = uploader
        .images()
        .filter(|(_, i)| matches!(i.state, ImageState::Failed { .. }))
        .map(|(k, _)| k.to_owned())
        .collect();
    for key in failed {
        uploader.retry(&key);
    }
    let mut uploaded = state.uploaded;
    uploaded.extend(recorded);
    let sync = Sync {
        dir: dir.clone(),
        state_path,
        options,
        files: RefCell::new(state.files),
        uploaded: RefCell::new(uploaded),
        uploader: RefCell::new(uploader),
        names: RefCell::new(BTreeMap::new()),
        tally: RefCell::new(Tally::default()),
        transport: &transport,
        bars: MultiProgress::new(),
    };

    // Watch before the first pass, so that nothing created during it is missed.
    let (events, mut arrived) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = None;
    if args.watch {
        let mut w = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && !matches!(
                    event.kind,
                    notify::EventKind::Remove(_) | notify::EventKind::Access(_)
                )
            {
                for path in event.paths {
                    let _ = events.send(path);
                }
            }
        })
        .context("starting the file-system watcher")?;
        w.watch(&dir, notify::RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", dir.display()))?;
        watcher = Some(w);
    }

    let mut last_save = Instant::now();
    let mut last_counts = (0, 0);
    let mut progress = Progress::new(
        &sync.bars,
        &sync.names,
        transport.bodies(),
        |uploader: &Uploader| {
            let summary = uploader.summary();
            let counts = (summary.done, summary.failed);
            if counts != last_counts || last_save.elapsed() >= SAVE_EVERY {
                last_counts = counts;
                last_save = Instant::now();
                if let Err(e) = sync.save(uploader) {
                    eprintln!("warning: {e:#}");
                }
            }
        },
    );
    progress.seen(&sync.uploader.borrow());
    let settle = Duration::from_millis(args.settle_ms);
    // Not finished before the first pass has queued what it finds.
    sync.uploader.borrow_mut().set_more_coming(true);
    let stopped = runtime.block_on(async {
        let stop = crate::interrupted()?;
        let upload = tessera_client::run(
            &sync.uploader,
            &transport,
            &mut progress,
            if args.watch {
                Until::Stopped
            } else {
                Until::Finished
            },
        );
        let watch = async {
            sync.add(collect_inputs(std::slice::from_ref(&dir))).await;
            if args.watch {
                sync.watch(&mut arrived, settle).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = upload => Ok::<_, anyhow::Error>(false),
            () = watch => Ok(false),
            () = stop => Ok(true),
        }
    })?;
    drop(watcher);
    progress.finish();
    let uploader = sync.uploader.borrow();
    sync.save(&uploader)?;
    if stopped {
        eprintln!("stopped; what was under way resumes on the next run");
    }
    let ok = report(
        &uploader,
        &sync.tally.borrow(),
        &sync.names.borrow(),
        started,
    );
    Ok(if ok || (stopped && args.watch) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The state at `path`, or a fresh one.
fn load(path: &Path, project: &str) -> anyhow::Result<SyncState> {
    let state = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<SyncState>(&bytes)
            .with_context(|| format!("reading the state file {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SyncState {
                project: project.to_owned(),
                files: BTreeMap::new(),
                uploaded: BTreeSet::new(),
                uploader: Uploader::new(project),
            });
        }
        Err(e) => return Err(anyhow!("reading the state file {}: {e}", path.display())),
    };
    if state.project != project {
        return Err(anyhow!(
            "the state file {} syncs to project {}, not {project}; pass --state for another",
            path.display(),
            state.project
        ));
    }
    Ok(state)
}

/// A file's size and modification time, `None` when it is gone or not a file.
fn stat(path: &Path) -> Option<(u64, u128)> {
    let meta = std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Some((meta.len(), modified))
}

impl Sync<'_> {
    /// The path relative to DIR, `None` for a path outside it or hidden (the state file).
    fn relative(&self, path: &Path) -> Option<String> {
        let relative = path.strip_prefix(&self.dir).ok()?;
        let hidden = relative
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
        (!hidden && path != self.state_path).then(|| relative.to_string_lossy().into_owned())
    }

    /// Whether a file needs looking at: new, changed, or not yet uploaded.
    fn needs(&self, relative: &str, now: (u64, u128)) -> bool {
        match self.files.borrow().get(relative) {
            Some(seen) if (seen.size_bytes, seen.modified_ns) == now => {
                let recorded = seen
                    .sha256
                    .as_ref()
                    .is_some_and(|sha| self.uploaded.borrow().contains(sha));
                !recorded && seen.refused.is_none()
            }
            _ => true,
        }
    }

    /// Preprocesses the files that need it and queues their images as they are ready (the
    /// uploader holds a batch back meanwhile: [`Uploader::set_more_coming`]).
    async fn add(&self, paths: Vec<PathBuf>) {
        // Path → (relative path, size and time).
        let mut todo = BTreeMap::new();
        for path in paths {
            let (Some(relative), Some(now)) = (self.relative(&path), stat(&path)) else {
                continue;
            };
            if self.needs(&relative, now) {
                todo.insert(path, (relative, now));
            } else if let Some(reason) = self.files.borrow()[&relative].refused.clone() {
                self.tally.borrow_mut().refused_again.push((path, reason));
            } else {
                self.tally.borrow_mut().already.push(path);
            }
        }
        if !todo.is_empty() {
            let paths: Vec<PathBuf> = todo.keys().cloned().collect();
            let bar = checking(&self.bars, paths.len());
            self.uploader.borrow_mut().set_more_coming(true);
            prepare(paths, &self.options, bar, |path, result| {
                let Some((relative, now)) = todo.remove(&path) else {
                    return;
                };
                let mut seen = Seen {
                    size_bytes: now.0,
                    modified_ns: now.1,
                    sha256: None,
                    refused: None,
                };
                match result {
                    Ok(derived) => {
                        let sha = derived.manifest.original().sha256.hex.clone();
                        seen.sha256 = Some(sha.clone());
                        let mut uploader = self.uploader.borrow_mut();
                        let done = self.uploaded.borrow().contains(&sha)
                            || matches!(
                                uploader.image(&sha).map(|i| &i.state),
                                Some(ImageState::Done { .. })
                            );
                        if done {
                            self.tally.borrow_mut().already.push(path);
                        } else {
                            uploader.add(DeclaredImage::from(&derived.manifest));
                            self.names.borrow_mut().insert(sha, path.clone());
                            self.transport.bodies().insert(&path, derived);
                            self.transport.waker().notify_one();
                        }
                    }
                    Err(error) => {
                        seen.refused = Some(format!("{error} [{}]", error.code()));
                        self.tally.borrow_mut().refused.push((path, error));
                    }
                }
                self.files.borrow_mut().insert(relative, seen);
            })
            .await;
        }
        self.uploader.borrow_mut().set_more_coming(false);
        self.transport.waker().notify_one();
    }

    /// Watches for new and changed files: each is queued once its size and modification
    /// time have not changed for `settle`.
    async fn watch(
        &self,
        arrived: &mut tokio::sync::mpsc::UnboundedReceiver<PathBuf>,
        settle: Duration,
    ) {
        // Path → (size and time last seen, when they last changed).
        let mut settling: BTreeMap<PathBuf, (Option<(u64, u128)>, Instant)> = BTreeMap::new();
        let mut tick = tokio::time::interval(SETTLE_POLL);
        loop {
            tokio::select! {
                path = arrived.recv() => match path {
                    Some(path) if self.relative(&path).is_some() => {
                        settling.insert(path, (None, Instant::now()));
                    }
                    Some(_) => {}
                    None => return,
                },
                _ = tick.tick() => {
                    let mut ready = Vec::new();
                    settling.retain(|path, (last, since)| {
                        let Some(now) = stat(path) else {
                            return false; // gone, or a folder
                        };
                        if *last != Some(now) {
                            *last = Some(now);
                            *since = Instant::now();
                            true
                        } else if since.elapsed() >= settle {
                            ready.push(path.clone());
                            false
                        } else {
                            true
                        }
                    });
                    if !ready.is_empty() {
                        self.add(ready).await;
                    }
                }
            }
        }
    }

    /// Writes the state atomically (a temporary file beside it, then a rename).
    fn save(&self, uploader: &Uploader) -> anyhow::Result<()> {
        let mut uploaded = self.uploaded.borrow_mut();
        for (key, image) in uploader.images() {
            if matches!(image.state, ImageState::Done { .. }) {
                uploaded.insert(key.to_owned());
            }
        }
        let state = SyncStateRef {
            project: uploader.project(),
            files: &self.files.borrow(),
            uploaded: &uploaded,
            uploader,
        };
        let json = serde_json::to_vec(&state).context("serialising the sync state")?;
        let folder = self
            .state_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        let mut file = tempfile::Builder::new()
            .prefix(".tessera-sync")
            .tempfile_in(folder)
            .with_context(|| format!("writing the state beside {}", self.state_path.display()))?;
        std::io::Write::write_all(&mut file, &json)
            .with_context(|| format!("writing {}", self.state_path.display()))?;
        file.persist(&self.state_path)
            .with_context(|| format!("writing {}", self.state_path.display()))?;
        Ok(())
    }
}

/// [`SyncState`] borrowed, for writing.
#[derive(Serialize)]
struct SyncStateRef<'a> {
    project: &'a str,
    files: &'a BTreeMap<String, Seen>,
    uploaded: &'a BTreeSet<String>,
    uploader: &'a Uploader,
}
