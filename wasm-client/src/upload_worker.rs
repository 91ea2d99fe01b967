//! The upload worker: a dedicated Web Worker (`web/upload-worker.js` loads the module and
//! calls [`start_upload_worker`]) that owns the IndexedDB queue and drives tessera-core's
//! [`Uploader`] with [`tessera_client::run`] over the browser transport (`transport.rs`).
//! The page keeps the view only; they talk by messages.
//!
//! Page → worker:
//! - `{ type: "start", config: { api_base, api_key, project }, online }`, once, first;
//! - `{ type: "add", id, file: File, manifest, bodies: { kind: Blob } }`, a preprocessed file
//!   (`manifest` as `preprocess` returns it, its five derivatives as JPEG Blobs);
//! - `{ type: "online", online }` whenever the page's network state changes;
//! - `{ type: "retry", key }` for a failed image;
//! - `{ type: "pause", paused }`: `true` while the page is checking files (nothing new starts),
//!   `false` once it is done.
//!
//! Worker → page (`key` is `"{project}/{sha256 of the original}"`):
//! - `{ type: "image", key, fileName, manifest, bodies: { kind: Blob }, …state }` the first
//!   time the page hears of an image: on start, for every image kept; and when one is added,
//!   then without `bodies` (the page made those Blobs; a Blob made in a worker costs the page's
//!   thread a wait when it is shown);
//! - `{ type: "changes", states: [{ key, state, stored, error, jobId }], progress: { key:
//!   fraction } }`, what changed in the last 200 ms at most: `state` is
//!   `queued`, `uploading` (`stored` of 6 objects in storage), `done` (`jobId`) or `failed`
//!   (`error`, the reason in words); `fraction` is the share of an uploading image's bytes
//!   sent. Batched, so that hundreds of uploads cost the page a few tasks a second;
//! - `{ type: "added", id, added }` answering an `add`: `false` when the same original is
//!   already queued or uploaded;
//! - `{ type: "ready" }` once every kept image has been announced;
//! - `{ type: "error", message }` when the queue cannot be opened or saved.
//!
//! The uploader's state is saved after changes, and only then is the page told of them: at
//! most every 200 ms, one save at a time, the latest state each. The page is never shown a
//! state that a reload would lose (an upload shown done and then sent again after a reload);
//! a reload loses at most the answers of the last moments, not yet shown: their requests are
//! sent again, and `complete` is idempotent. The limit keeps the worker's share of a small
//! machine's cores, and the page's, low while hundreds of files are uploaded.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Object, Reflect};
use serde::{Deserialize, Serialize};
use tessera_client::{Observer, Until};
use tessera_core::Manifest;
use tessera_core::manifest::ObjectKind;
use tessera_core::upload::{DeclaredImage, UploadTarget};
use tessera_core::uploader::{ImageState, Uploader};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{Blob, DedicatedWorkerGlobalScope, MessageEvent};

use crate::queue::{Kept, Queue};
use crate::transport::BrowserTransport;

/// The least time between two saves of the queue, each followed by a `changes` message, in
/// milliseconds.
const FLUSH_EVERY_MS: u32 = 200;

/// The page's configuration (`config.json`): the fields the worker reads.
#[derive(Debug, Deserialize)]
struct Config {
    #[serde(default)]
    api_base: String,
    api_key: String,
    project: String,
}

/// What the page is told of an image's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct StateView {
    state: &'static str,
    stored: usize,
    error: Option<String>,
    job_id: Option<String>,
}

impl StateView {
    fn of(uploader: &Uploader, sha256: &str) -> Option<Self> {
        let image = uploader.image(sha256)?;
        let (state, error, job_id) = match &image.state {
            ImageState::Queued => ("queued", None, None),
            ImageState::Uploading { .. } => ("uploading", None, None),
            ImageState::Done { job_id, .. } => ("done", None, Some(job_id.clone())),
            ImageState::Failed { reason } => ("failed", Some(reason.clone()), None),
        };
        Some(Self {
            state,
            stored: uploader.stored_objects(sha256),
            error,
            job_id,
        })
    }
}

/// The worker once started.
struct Running {
    scope: DedicatedWorkerGlobalScope,
    queue: Rc<Queue>,
    uploader: RefCell<Uploader>,
    transport: BrowserTransport,
    /// What the page was last told of each image, by the uploader's key.
    told: RefCell<BTreeMap<String, StateView>>,
    /// Bytes sent so far of each object in flight, by image and object key.
    sending: RefCell<BTreeMap<String, BTreeMap<String, u64>>>,
    /// State changes not yet told, by the page's key.
    states: RefCell<BTreeMap<String, JsValue>>,
    /// Progress not yet told, by the page's key.
    progress: RefCell<BTreeMap<String, f64>>,
    /// A save and a `changes` message are due.
    flushing: Cell<bool>,
    /// The uploader changed since its state was last saved.
    dirty: Cell<bool>,
}

/// The worker: not yet started, or running.
#[derive(Default)]
struct Worker {
    running: RefCell<Option<Rc<Running>>>,
}

/// Starts the upload worker: from now on the worker's messages are handled here. `early` is
/// what the page sent while the module loaded, handled first, in order.
#[wasm_bindgen]
pub fn start_upload_worker(early: &js_sys::Array) {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let worker = Rc::new(Worker::default());
    let handler = {
        let worker = Rc::clone(&worker);
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            handle(&worker, event.data());
        })
    };
    scope.set_onmessage(Some(handler.as_ref().unchecked_ref()));
    // The worker lives as long as its global scope.
    handler.forget();
    for message in early.iter() {
        handle(&worker, message);
    }
}

fn post(scope: &DedicatedWorkerGlobalScope, message: &JsValue) {
    if let Err(e) = scope.post_message(message) {
        web_sys::console::error_2(&"upload worker: cannot post".into(), &e);
    }
}

fn field(message: &JsValue, name: &str) -> JsValue {
    Reflect::get(message, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

fn to_js<T: Serialize>(value: &T) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::UNDEFINED)
}

fn report(scope: &DedicatedWorkerGlobalScope, message: &str) {
    web_sys::console::error_1(&format!("upload worker: {message}").into());
    let out = Object::new();
    let _ = Reflect::set(&out, &"type".into(), &"error".into());
    let _ = Reflect::set(&out, &"message".into(), &message.into());
    post(scope, &out);
}

fn handle(worker: &Rc<Worker>, message: JsValue) {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let kind = field(&message, "type").as_string().unwrap_or_default();
    let running = worker.running.borrow().clone();
    match (kind.as_str(), running) {
        ("start", None) => {
            let worker = Rc::clone(worker);
            spawn_local(async move {
                match start(scope.clone(), &message).await {
                    Ok(running) => {
                        *worker.running.borrow_mut() = Some(Rc::clone(&running));
                        post(&scope, &to_js(&serde_json::json!({ "type": "ready" })));
                        let mut observer = Reporter(Rc::clone(&running));
                        tessera_client::run(
                            &running.uploader,
                            &running.transport,
                            &mut observer,
                            Until::Stopped,
                        )
                        .await;
                    }
                    Err(e) => report(&scope, &e),
                }
            });
        }
        ("add", Some(running)) => spawn_local(async move {
            let id = field(&message, "id");
            let added = match running.add(&message).await {
                Ok(added) => added,
                Err(e) => {
                    report(&running.scope, &e);
                    false
                }
            };
            let out = Object::new();
            let _ = Reflect::set(&out, &"type".into(), &"added".into());
            let _ = Reflect::set(&out, &"id".into(), &id);
            let _ = Reflect::set(&out, &"added".into(), &added.into());
            post(&running.scope, &out);
        }),
        ("online", Some(running)) => {
            running
                .transport
                .set_online(field(&message, "online").as_bool().unwrap_or(true));
        }
        ("pause", Some(running)) => {
            running
                .transport
                .set_paused(field(&message, "paused").as_bool().unwrap_or(false));
        }
        ("retry", Some(running)) => {
            let key = field(&message, "key").as_string().unwrap_or_default();
            let sha256 = key.rsplit('/').next().unwrap_or_default().to_owned();
            if running.uploader.borrow_mut().retry(&sha256) {
                running.changed_now();
                running.transport.wake();
            }
        }
        (other, running) => report(
            &scope,
            &format!(
                "unexpected message {other:?} ({})",
                if running.is_some() {
                    "running"
                } else {
                    "not started"
                }
            ),
        ),
    }
}

/// Opens the queue, restores the uploader and announces every kept image.
async fn start(
    scope: DedicatedWorkerGlobalScope,
    message: &JsValue,
) -> Result<Rc<Running>, String> {
    let config: Config = serde_wasm_bindgen::from_value(field(message, "config"))
        .map_err(|e| format!("bad config: {e}"))?;
    let online = field(message, "online").as_bool().unwrap_or(true);
    let queue = Rc::new(Queue::open(&config.project).await?);
    let (uploader, kept) = queue.load().await?;
    let transport = BrowserTransport::new(
        scope.clone(),
        config.api_base,
        config.api_key,
        Rc::clone(&queue),
        online,
    );
    let running = Rc::new(Running {
        scope,
        queue,
        uploader: RefCell::new(uploader),
        transport,
        told: RefCell::new(BTreeMap::new()),
        sending: RefCell::new(BTreeMap::new()),
        states: RefCell::new(BTreeMap::new()),
        progress: RefCell::new(BTreeMap::new()),
        flushing: Cell::new(false),
        dirty: Cell::new(false),
    });
    for image in &kept {
        running.announce(image, true);
    }
    Ok(running)
}

impl Running {
    /// Keeps and queues a preprocessed file; `false` when the same original is already here.
    async fn add(self: &Rc<Self>, message: &JsValue) -> Result<bool, String> {
        let manifest_js = field(message, "manifest");
        let manifest: Manifest = serde_wasm_bindgen::from_value(manifest_js.clone())
            .map_err(|e| format!("bad manifest: {e}"))?;
        let sha256 = manifest.original().sha256.hex.clone();
        if self.uploader.borrow().contains(&sha256) {
            return Ok(false);
        }
        let key = self.queue.key(&sha256);
        let entry = Object::new();
        for (name, value) in [
            ("key", JsValue::from_str(&key)),
            (
                "project",
                JsValue::from_str(self.uploader.borrow().project()),
            ),
            ("fileName", JsValue::from_str(&manifest.file_name)),
            ("manifest", manifest_js),
            ("addedAt", js_sys::Date::now().into()),
        ] {
            Reflect::set(&entry, &name.into(), &value).map_err(|_| "cannot build an entry")?;
        }
        let kept = Kept {
            key,
            entry: entry.into(),
            files: files_of(&field(message, "file"), &field(message, "bodies"))?,
        };
        if !self.queue.add(&kept).await? {
            return Ok(false);
        }
        if !self
            .uploader
            .borrow_mut()
            .add(DeclaredImage::from(&manifest))
        {
            return Ok(false);
        }
        self.announce(&kept, false);
        self.changed_now();
        self.transport.wake();
        Ok(true)
    }

    /// Tells the page of an image and its state, with its derivatives' Blobs when `bodies`.
    fn announce(&self, kept: &Kept, bodies: bool) {
        let sha256 = kept.key.rsplit('/').next().unwrap_or_default();
        let Some(view) = StateView::of(&self.uploader.borrow(), sha256) else {
            return;
        };
        let out: JsValue = to_js(&view);
        let set = |name: &str, value: &JsValue| {
            let _ = Reflect::set(&out, &name.into(), value);
        };
        set("type", &"image".into());
        set("key", &kept.key.as_str().into());
        set("fileName", &field(&kept.entry, "fileName"));
        set("manifest", &field(&kept.entry, "manifest"));
        if bodies {
            set("bodies", &field(&kept.files, "bodies"));
        }
        self.told.borrow_mut().insert(sha256.to_owned(), view);
        post(&self.scope, &out);
    }

    /// The uploader changed outside [`tessera_client::run`] (an image added or retried).
    fn changed_now(self: &Rc<Self>) {
        let uploader = self.uploader.borrow();
        self.tell_changes(&uploader);
        drop(uploader);
        self.save_soon();
    }

    /// Tells the page what changed since it was last told; forgets the originals of images
    /// just done.
    fn tell_changes(self: &Rc<Self>, uploader: &Uploader) {
        let mut told = self.told.borrow_mut();
        for (sha256, _) in uploader.images() {
            let Some(view) = StateView::of(uploader, sha256) else {
                continue;
            };
            if told.get(sha256) == Some(&view) {
                continue;
            }
            let became_done = view.state == "done";
            let out = to_js(&view);
            let key = self.queue.key(sha256);
            let _ = Reflect::set(&out, &"key".into(), &key.as_str().into());
            self.states.borrow_mut().insert(key, out);
            self.tell_soon();
            told.insert(sha256.to_owned(), view);
            if became_done {
                let this = Rc::clone(self);
                let sha256 = sha256.to_owned();
                spawn_local(async move {
                    if let Err(e) = this.queue.drop_original(&sha256).await {
                        report(&this.scope, &e);
                    }
                });
            }
        }
    }

    /// Changes or progress to tell the page (after the next save).
    fn tell_soon(self: &Rc<Self>) {
        self.flush_soon();
    }

    /// The uploader changed: its state to save, then the page to tell.
    fn save_soon(self: &Rc<Self>) {
        self.dirty.set(true);
        self.flush_soon();
    }

    /// Saves the uploader's state and then posts the changes it holds, [`FLUSH_EVERY_MS`] from
    /// now, and again while more come.
    fn flush_soon(self: &Rc<Self>) {
        if self.flushing.replace(true) {
            return;
        }
        let this = Rc::clone(self);
        spawn_local(async move {
            loop {
                gloo_timers::future::TimeoutFuture::new(FLUSH_EVERY_MS).await;
                // The changes in the state about to be saved; later ones wait for the next save.
                let states: js_sys::Array = std::mem::take(&mut *this.states.borrow_mut())
                    .into_values()
                    .collect();
                if this.dirty.replace(false) {
                    let json = serde_json::to_string(&*this.uploader.borrow());
                    let saved = match json {
                        Ok(json) => this.queue.save(&json).await,
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = saved {
                        report(&this.scope, &format!("cannot save the upload queue: {e}"));
                    }
                }
                let progress = Object::new();
                let fractions = std::mem::take(&mut *this.progress.borrow_mut());
                for (key, fraction) in &fractions {
                    let _ = Reflect::set(&progress, &key.into(), &(*fraction).into());
                }
                if states.length() > 0 || !fractions.is_empty() {
                    let out = Object::new();
                    let _ = Reflect::set(&out, &"type".into(), &"changes".into());
                    let _ = Reflect::set(&out, &"states".into(), &states);
                    let _ = Reflect::set(&out, &"progress".into(), &progress);
                    post(&this.scope, &out);
                }
                let idle = !this.dirty.get()
                    && this.states.borrow().is_empty()
                    && this.progress.borrow().is_empty();
                if idle {
                    break;
                }
            }
            this.flushing.set(false);
        });
    }
}

/// The [`Observer`] of [`tessera_client::run`]: tells the page, saves the queue.
struct Reporter(Rc<Running>);

impl Observer for Reporter {
    fn changed(&mut self, uploader: &Uploader) {
        let running = &self.0;
        // Objects now stored (or abandoned) are no longer being sent.
        let live: std::collections::BTreeSet<&str> = uploader
            .uploads()
            .flat_map(|u| u.created.objects.iter())
            .map(|t| t.key.as_str())
            .collect();
        let stored: std::collections::BTreeSet<&str> = uploader
            .uploads()
            .flat_map(|u| u.stored.iter().map(String::as_str))
            .collect();
        running.sending.borrow_mut().retain(|_, objects| {
            objects.retain(|key, _| live.contains(key.as_str()) && !stored.contains(key.as_str()));
            !objects.is_empty()
        });
        running.tell_changes(uploader);
        running.save_soon();
    }

    fn sent(&mut self, image: &str, target: &UploadTarget, bytes: u64) {
        let running = &self.0;
        let in_flight: u64 = {
            let mut sending = running.sending.borrow_mut();
            let objects = sending.entry(image.to_owned()).or_default();
            objects.insert(target.key.clone(), bytes);
            objects.values().sum()
        };
        let uploader = running.uploader.borrow();
        let Some(declared) = uploader.image(image) else {
            return;
        };
        let stored_bytes: u64 = uploader
            .uploads()
            .flat_map(|u| {
                u.created.objects.iter().filter(|t| {
                    u.stored.contains(&t.key)
                        && u.images.get(&t.image_id).map(String::as_str) == Some(image)
                })
            })
            .map(|t| declared.size_of(t.kind))
            .sum();
        let total = declared.total_bytes().max(1);
        let fraction = ((stored_bytes + in_flight) as f64 / total as f64).min(1.0);
        drop(uploader);
        running
            .progress
            .borrow_mut()
            .insert(running.queue.key(image), fraction);
        running.tell_soon();
    }
}

/// `{ original: file, bodies: { kind: Blob } }` for the queue, from the page's `File` and
/// the five derivative Blobs it sent.
fn files_of(file: &JsValue, bodies: &JsValue) -> Result<JsValue, String> {
    for kind in [
        ObjectKind::Processed,
        ObjectKind::Augmented90,
        ObjectKind::Augmented180,
        ObjectKind::Augmented270,
        ObjectKind::Augmented360,
    ] {
        if !field(bodies, kind.as_str()).is_instance_of::<Blob>() {
            return Err(format!("the {} body is missing", kind.as_str()));
        }
    }
    if !file.is_instance_of::<Blob>() {
        return Err("the original is missing".to_owned());
    }
    let files = Object::new();
    Reflect::set(&files, &"original".into(), file).map_err(|_| "cannot keep the original")?;
    Reflect::set(&files, &"bodies".into(), bodies).map_err(|_| "cannot keep the bodies")?;
    Ok(files.into())
}
