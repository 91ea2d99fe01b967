//! The upload client's protocol, as a pure state machine that the page's Web Worker and the
//! `tessera upload` / `tessera sync` commands drive alike.
//!
//! The protocol (the edge's OpenAPI document describes each call):
//! 1. `POST /v1/uploads` plans up to [`UploadPolicy::max_files`] images at once and answers a
//!    presigned PUT per object ([`UploadCreated`]);
//! 2. every object is PUT to its URL with exactly the signed headers;
//! 3. `POST /v1/uploads/{id}/complete` verifies the objects, records the images and starts
//!    their job ([`UploadCompleted`]).
//!
//! [`Uploader`] decides what to send next and what an answer means; it does no I/O, reads no
//! clock and draws no random numbers: a driver asks [`Uploader::next`] for the next request,
//! sends it, and hands the answer back (`planned`, `stored`, `completed`) with the time and a
//! random number for the backoff. What it decides:
//! - **Batching.** Images waiting are planned together, up to [`UploadPolicy::max_files`] a
//!   request, in the order they were added. While the caller says more are coming
//!   ([`Uploader::set_more_coming`]: files still being preprocessed), a batch not yet full
//!   waits for them until none has arrived for [`BATCH_QUIET`], and never longer than
//!   [`BATCH_MAX_WAIT`] (the rule of Nagle's algorithm and of Kafka's `linger.ms`), so that a
//!   folder streamed in becomes uploads, and jobs, of 50 images rather than one each.
//! - **At most [`RetryPolicy::max_in_flight`] requests at once**, finishing work before
//!   starting more: completions first, then PUTs of the oldest upload, then plans.
//! - **Retries.** A transient failure ([`RetryPolicy::retryable`]: no answer, 408, 425, 429,
//!   5xx) is tried again after [`RetryPolicy::delay_ms`] (full-jitter backoff, `Retry-After` as
//!   a floor); any other failure, or the last retry's, is final.
//! - **Offline.** While offline nothing starts, and a request that found no network is tried
//!   again once back online, without spending a retry.
//! - **Expired URLs.** An upload whose next PUT would start within [`URL_EXPIRY_MARGIN`] of its
//!   URLs' expiry is abandoned (never completed, so never recorded) and its images are planned
//!   again; the edge announces the abandoned upload `upload.expired`.
//! - **One bad file never fails the others.** A batch whose plan is refused (4xx) is planned
//!   again one image per request, so that only the bad image is refused. An object refused by
//!   storage fails its image; the other images of its upload are planned again without it.
//! - **Exactly once.** An image is known by its original's SHA-256: adding the same file again
//!   is a no-op, and an image done stays done.
//!
//! The state serialises (serde) for the page's IndexedDB queue and the command line's state
//! file; requests in flight and backoffs are not kept, so a restored uploader starts them again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::manifest::ObjectKind;
use crate::retry::RetryPolicy;
use crate::upload::{
    DeclaredImage, UploadCompleted, UploadCreated, UploadPolicy, UploadRequest, UploadTarget,
};

/// How close to its URL's expiry a PUT is no longer started: 30 s leaves room for a slow
/// start and clock skew between client and storage (the edge's URLs live 15 minutes by
/// default). When the edge signs URLs for less than twice this (`TESSERA_UPLOAD_URL_SECONDS`),
/// the margin is half their lifetime instead, so that a short lifetime still leaves time to
/// send instead of planning again forever.
pub const URL_EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// While more images are coming, how long a batch not yet full waits after the last image
/// arrived: preprocessing a camera photo takes well under a second a core, so a pause this
/// long means the stream has paused (a folder's last files, a watched folder between copies).
pub const BATCH_QUIET: Duration = Duration::from_secs(1);

/// While more images are coming, the longest a batch not yet full waits from its first image,
/// so that a slow trickle (a camera writing a file every few hundred milliseconds) still
/// uploads within seconds.
pub const BATCH_MAX_WAIT: Duration = Duration::from_secs(10);

/// A failed request: the HTTP status (`0` when there was no answer: network down, connection
/// reset, CORS), the server's message or the transport's, and the server's `Retry-After` in
/// seconds when given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// HTTP status, `0` for no answer.
    pub status: u16,
    /// What went wrong, in words.
    pub message: String,
    /// `Retry-After`, in seconds.
    pub retry_after_s: Option<f64>,
}

impl Failure {
    /// A request that got no answer.
    #[must_use]
    pub fn no_answer(message: impl Into<String>) -> Self {
        Self {
            status: 0,
            message: message.into(),
            retry_after_s: None,
        }
    }
}

/// Where one image stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ImageState {
    /// Waiting to be planned (or planned again).
    Queued,
    /// Planned in `upload_id`; its objects are being stored.
    Uploading {
        /// The upload it belongs to.
        upload_id: String,
    },
    /// Recorded by the edge, its job started.
    Done {
        /// The completed upload.
        upload_id: String,
        /// The job it triggered.
        job_id: String,
        /// The image's id at the edge.
        image_id: String,
    },
    /// Refused, or given up after the last retry; [`Uploader::retry`] queues it again.
    Failed {
        /// Why, in words (the server's, with the HTTP status).
        reason: String,
    },
}

/// One image to upload: what the client declares, and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Adding order.
    pub seq: u64,
    /// The manifest's declared fields, sent in `POST /v1/uploads`.
    pub declared: DeclaredImage,
    /// Where it stands.
    #[serde(flatten)]
    pub state: ImageState,
    /// Planned alone, because a batch with it was refused.
    #[serde(default)]
    pub solo: bool,
}

impl Image {
    /// The declared size of one object, in bytes (0 when not declared).
    #[must_use]
    pub fn size_of(&self, kind: ObjectKind) -> u64 {
        self.declared
            .objects
            .iter()
            .find(|o| o.kind == kind)
            .map_or(0, |o| o.size_bytes)
    }

    /// All six objects' bytes.
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.declared.objects.iter().map(|o| o.size_bytes).sum()
    }
}

/// A planned upload whose objects are being stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedUpload {
    /// Creation order.
    pub seq: u64,
    /// When the plan was answered, in unix milliseconds.
    pub planned_at_ms: f64,
    /// The edge's answer: the upload id and one presigned PUT per object.
    pub created: UploadCreated,
    /// The images it holds, by their edge image id → this uploader's image key.
    pub images: BTreeMap<String, String>,
    /// Keys of the objects stored so far.
    pub stored: BTreeSet<String>,
}

impl PlannedUpload {
    /// Whether every object is stored.
    #[must_use]
    pub fn all_stored(&self) -> bool {
        self.created
            .objects
            .iter()
            .all(|t| self.stored.contains(&t.key))
    }
}

/// A request in flight, named by [`Uploader::next`]; hand it back with its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(u64);

/// The next request to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `POST /v1/uploads` with `body`; answer with [`Uploader::planned`].
    Plan {
        /// This request.
        id: RequestId,
        /// The body.
        body: UploadRequest,
    },
    /// A PUT of one object's bytes to `target`; answer with [`Uploader::stored`].
    Put {
        /// This request.
        id: RequestId,
        /// The image's key (its original's SHA-256, hex), to find the bytes by.
        image: String,
        /// The presigned PUT.
        target: UploadTarget,
    },
    /// `POST /v1/uploads/{upload_id}/complete`; answer with [`Uploader::completed`].
    Complete {
        /// This request.
        id: RequestId,
        /// The upload.
        upload_id: String,
    },
}

/// What [`Uploader::next`] says to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Send this request (and ask again).
    Send(Request),
    /// Nothing to start now: wait for a request in flight to answer, or until `until_ms`
    /// (unix milliseconds) when a retry is due, whichever comes first.
    Wait {
        /// When a backoff ends, if one is pending.
        until_ms: Option<f64>,
    },
    /// Offline, nothing in flight: wait for the network ([`Uploader::set_online`]).
    Offline,
    /// Nothing left to do: every image is done or failed.
    Finished,
}

/// Which step a backoff delays.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Plan(String),
    Put(String, String),
    Complete(String),
}

/// A step's retries so far and when it may start again (unix ms).
#[derive(Debug, Clone, Copy, Default)]
struct Backoff {
    retries: u32,
    not_before_ms: f64,
}

/// What a request in flight was for.
#[derive(Debug, Clone)]
enum InFlight {
    Plan(Vec<String>),
    Put { upload_id: String, key: String },
    Complete(String),
}

/// Counts of images by state, and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Waiting to be planned.
    pub queued: usize,
    /// Planned, objects being stored.
    pub uploading: usize,
    /// Recorded.
    pub done: usize,
    /// Refused or given up.
    pub failed: usize,
    /// Bytes of objects stored in uploads not yet completed, plus all of every done image.
    pub bytes_stored: u64,
    /// Bytes of every image not failed.
    pub bytes_total: u64,
}

fn online_default() -> bool {
    true
}

/// The upload client's state machine; see the [module documentation](self).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Uploader {
    project: String,
    images: BTreeMap<String, Image>,
    uploads: BTreeMap<String, PlannedUpload>,
    next_seq: u64,
    #[serde(skip, default)]
    policy: RetryPolicy,
    #[serde(skip, default = "default_max_files")]
    max_files: usize,
    #[serde(skip, default = "online_default")]
    online: bool,
    #[serde(skip)]
    in_flight: BTreeMap<RequestId, InFlight>,
    #[serde(skip)]
    next_request: u64,
    #[serde(skip)]
    backoff: BTreeMap<Step, Backoff>,
    #[serde(skip)]
    more_coming: bool,
    #[serde(skip)]
    gathering: Option<Gathering>,
}

/// A batch not yet full, held back while more images are coming: how many images it had when
/// last looked at, since when it has had that many, and since when it has had any (unix ms).
#[derive(Debug, Clone, Copy)]
struct Gathering {
    images: usize,
    quiet_since_ms: f64,
    first_since_ms: f64,
}

fn default_max_files() -> usize {
    UploadPolicy::default().max_files
}

impl Uploader {
    /// An empty uploader for `project`, with the default [`RetryPolicy`] and the edge's
    /// default [`UploadPolicy::max_files`].
    #[must_use]
    pub fn new(project: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            images: BTreeMap::new(),
            uploads: BTreeMap::new(),
            next_seq: 0,
            policy: RetryPolicy::default(),
            max_files: default_max_files(),
            online: true,
            in_flight: BTreeMap::new(),
            next_request: 0,
            backoff: BTreeMap::new(),
            more_coming: false,
            gathering: None,
        }
    }

    /// The same uploader with another retry policy.
    #[must_use]
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The same uploader planning at most `max_files` images a request (at least 1, at most
    /// the edge's [`UploadPolicy::max_files`]). The page plans one file a request, so that each
    /// dropped file has its own job to follow; the command line plans 50.
    #[must_use]
    pub fn with_max_files(mut self, max_files: usize) -> Self {
        self.max_files = max_files.clamp(1, default_max_files());
        self
    }

    /// The project every image is uploaded to.
    #[must_use]
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The key an image is known by: its original's SHA-256 (hex), `None` for a declaration
    /// without an original.
    #[must_use]
    pub fn key_of(declared: &DeclaredImage) -> Option<&str> {
        declared
            .objects
            .iter()
            .find(|o| o.kind == ObjectKind::Original)
            .map(|o| o.sha256.hex.as_str())
    }

    /// Queues an image; `false` when the same original is already here (in any state) or the
    /// declaration has no original.
    pub fn add(&mut self, declared: DeclaredImage) -> bool {
        let Some(key) = Self::key_of(&declared).map(str::to_owned) else {
            return false;
        };
        if self.images.contains_key(&key) {
            return false;
        }
        let seq = self.bump_seq();
        self.images.insert(
            key,
            Image {
                seq,
                declared,
                state: ImageState::Queued,
                solo: false,
            },
        );
        true
    }

    /// Adds an image in the state an earlier client left it (the page's queue before this
    /// uploader): done and failed images are kept as they were, so they are never uploaded
    /// again unless retried; queued and uploading ones are queued (a plan whose URLs this
    /// uploader never saw is abandoned, never completed). `false` as for [`Self::add`].
    pub fn restore(&mut self, declared: DeclaredImage, state: ImageState) -> bool {
        let Some(key) = Self::key_of(&declared).map(str::to_owned) else {
            return false;
        };
        if !self.add(declared) {
            return false;
        }
        if matches!(state, ImageState::Done { .. } | ImageState::Failed { .. })
            && let Some(image) = self.images.get_mut(&key)
        {
            image.state = state;
        }
        true
    }

    /// How many of an image's objects its current upload has stored (0 unless uploading).
    #[must_use]
    pub fn stored_objects(&self, key: &str) -> usize {
        let Some(ImageState::Uploading { upload_id }) = self.images.get(key).map(|i| &i.state)
        else {
            return 0;
        };
        let Some(upload) = self.uploads.get(upload_id) else {
            return 0;
        };
        upload
            .created
            .objects
            .iter()
            .filter(|t| {
                upload.stored.contains(&t.key)
                    && upload.images.get(&t.image_id).map(String::as_str) == Some(key)
            })
            .count()
    }

    /// Whether an image with this original (SHA-256, hex) is here.
    #[must_use]
    pub fn contains(&self, key: &str) -> bool {
        self.images.contains_key(key)
    }

    /// Queues a failed image again; `false` when it is not failed.
    pub fn retry(&mut self, key: &str) -> bool {
        match self.images.get_mut(key) {
            Some(image) if matches!(image.state, ImageState::Failed { .. }) => {
                image.state = ImageState::Queued;
                self.backoff.remove(&Step::Plan(key.to_owned()));
                true
            }
            _ => false,
        }
    }

    /// Tells the uploader whether the caller is still adding images (preprocessing files): a
    /// batch not yet full then waits for them ([`BATCH_QUIET`], [`BATCH_MAX_WAIT`]), and
    /// [`Next::Finished`] is not answered. Off by default; once off, what waits is planned at
    /// once.
    pub fn set_more_coming(&mut self, more: bool) {
        self.more_coming = more;
        if !more {
            self.gathering = None;
        }
    }

    /// Tells the uploader whether the network is up.
    pub fn set_online(&mut self, online: bool) {
        self.online = online;
    }

    /// One image.
    #[must_use]
    pub fn image(&self, key: &str) -> Option<&Image> {
        self.images.get(key)
    }

    /// Every image, by key.
    pub fn images(&self) -> impl Iterator<Item = (&str, &Image)> {
        self.images.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The uploads planned and not completed.
    pub fn uploads(&self) -> impl Iterator<Item = &PlannedUpload> {
        self.uploads.values()
    }

    /// Counts by state, and bytes stored of bytes to store.
    #[must_use]
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for image in self.images.values() {
            match image.state {
                ImageState::Queued => summary.queued += 1,
                ImageState::Uploading { .. } => summary.uploading += 1,
                ImageState::Done { .. } => {
                    summary.done += 1;
                    summary.bytes_stored += image.total_bytes();
                }
                ImageState::Failed { .. } => {
                    summary.failed += 1;
                    continue;
                }
            }
            summary.bytes_total += image.total_bytes();
        }
        for upload in self.uploads.values() {
            for target in &upload.created.objects {
                if upload.stored.contains(&target.key)
                    && let Some(image) = upload
                        .images
                        .get(&target.image_id)
                        .and_then(|key| self.images.get(key))
                {
                    summary.bytes_stored += image.size_of(target.kind);
                }
            }
        }
        summary
    }

    /// Whether every image is done or failed and nothing is in flight.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.in_flight.is_empty()
            && self
                .images
                .values()
                .all(|i| matches!(i.state, ImageState::Done { .. } | ImageState::Failed { .. }))
    }

    fn bump_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn start(&mut self, what: InFlight) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        self.in_flight.insert(id, what);
        id
    }

    /// When `step` may start: `Ok` now, `Err(at_ms)` later.
    fn gate(&self, step: &Step, now_ms: f64) -> Result<(), f64> {
        match self.backoff.get(step) {
            Some(b) if b.not_before_ms > now_ms => Err(b.not_before_ms),
            _ => Ok(()),
        }
    }

    /// The next request to send at `now_ms` (unix milliseconds); see [`Next`].
    pub fn next(&mut self, now_ms: f64) -> Next {
        if !self.online {
            return if self.in_flight.is_empty() {
                Next::Offline
            } else {
                Next::Wait { until_ms: None }
            };
        }
        if self.in_flight.len() >= self.policy.max_in_flight as usize {
            return Next::Wait { until_ms: None };
        }
        let mut earliest: Option<f64> = None;
        let mut later = |at: f64| earliest = Some(earliest.map_or(at, |e: f64| e.min(at)));
        if let Some(request) = self.next_complete(now_ms, &mut later) {
            return Next::Send(request);
        }
        if let Some(request) = self.next_put(now_ms, &mut later) {
            return Next::Send(request);
        }
        if let Some(request) = self.next_plan(now_ms, &mut later) {
            return Next::Send(request);
        }
        if earliest.is_none() && self.is_finished() && !self.more_coming {
            Next::Finished
        } else {
            Next::Wait { until_ms: earliest }
        }
    }

    fn busy(&self, upload_id: &str) -> bool {
        self.in_flight.values().any(|f| match f {
            InFlight::Put { upload_id: u, .. } | InFlight::Complete(u) => u == upload_id,
            InFlight::Plan(_) => false,
        })
    }

    fn next_complete(&mut self, now_ms: f64, later: &mut impl FnMut(f64)) -> Option<Request> {
        let mut ready: Vec<&PlannedUpload> = self
            .uploads
            .values()
            .filter(|u| u.all_stored() && !self.busy(&u.created.upload_id))
            .collect();
        ready.sort_by_key(|u| u.seq);
        let upload_id = ready.into_iter().find_map(|u| {
            let id = &u.created.upload_id;
            match self.gate(&Step::Complete(id.clone()), now_ms) {
                Ok(()) => Some(id.clone()),
                Err(at) => {
                    later(at);
                    None
                }
            }
        })?;
        let id = self.start(InFlight::Complete(upload_id.clone()));
        Some(Request::Complete { id, upload_id })
    }

    fn next_put(&mut self, now_ms: f64, later: &mut impl FnMut(f64)) -> Option<Request> {
        let mut order: Vec<(u64, String)> = self
            .uploads
            .values()
            .map(|u| (u.seq, u.created.upload_id.clone()))
            .collect();
        order.sort();
        for (_, upload_id) in order {
            let upload = &self.uploads[&upload_id];
            let pending: Vec<&UploadTarget> = upload
                .created
                .objects
                .iter()
                .filter(|t| !upload.stored.contains(&t.key))
                .collect();
            let soonest_ms = pending
                .iter()
                .map(|t| unix_ms(t.request.expires_at))
                .fold(f64::INFINITY, f64::min);
            let lifetime_ms = soonest_ms - upload.planned_at_ms;
            let margin_ms = duration_ms(URL_EXPIRY_MARGIN).min(lifetime_ms / 2.0);
            if now_ms + margin_ms >= soonest_ms {
                if !self.busy(&upload_id) {
                    self.abandon(&upload_id, None);
                }
                continue;
            }
            let in_flight: BTreeSet<&str> = self
                .in_flight
                .values()
                .filter_map(|f| match f {
                    InFlight::Put { key, .. } => Some(key.as_str()),
                    _ => None,
                })
                .collect();
            let mut found = None;
            for target in pending {
                if in_flight.contains(target.key.as_str()) {
                    continue;
                }
                match self.gate(&Step::Put(upload_id.clone(), target.key.clone()), now_ms) {
                    Ok(()) => {
                        found = Some(target.clone());
                        break;
                    }
                    Err(at) => later(at),
                }
            }
            if let Some(target) = found {
                let image = upload.images[&target.image_id].clone();
                let id = self.start(InFlight::Put {
                    upload_id,
                    key: target.key.clone(),
                });
                return Some(Request::Put { id, image, target });
            }
        }
        None
    }

    fn next_plan(&mut self, now_ms: f64, later: &mut impl FnMut(f64)) -> Option<Request> {
        let planning: BTreeSet<&String> = self
            .in_flight
            .values()
            .filter_map(|f| match f {
                InFlight::Plan(keys) => Some(keys),
                _ => None,
            })
            .flatten()
            .collect();
        let mut waiting: Vec<(&String, &Image)> = self
            .images
            .iter()
            .filter(|(k, i)| i.state == ImageState::Queued && !planning.contains(k))
            .collect();
        waiting.sort_by_key(|(_, i)| i.seq);
        let mut batch: Vec<String> = Vec::new();
        for (key, image) in waiting {
            if let Err(at) = self.gate(&Step::Plan(key.clone()), now_ms) {
                later(at);
                continue;
            }
            if image.solo {
                if batch.is_empty() {
                    batch.push(key.clone());
                    break;
                }
                continue;
            }
            batch.push(key.clone());
            if batch.len() == self.max_files {
                break;
            }
        }
        if batch.is_empty() {
            return None;
        }
        let solo = batch.len() == 1 && self.images[&batch[0]].solo;
        if self.more_coming && batch.len() < self.max_files && !solo {
            let gathering = self.gathering.get_or_insert(Gathering {
                images: batch.len(),
                quiet_since_ms: now_ms,
                first_since_ms: now_ms,
            });
            if gathering.images != batch.len() {
                gathering.images = batch.len();
                gathering.quiet_since_ms = now_ms;
            }
            let due_ms = (gathering.quiet_since_ms + duration_ms(BATCH_QUIET))
                .min(gathering.first_since_ms + duration_ms(BATCH_MAX_WAIT));
            if now_ms < due_ms {
                later(due_ms);
                return None;
            }
        }
        self.gathering = None;
        let body = UploadRequest {
            project: self.project.clone(),
            files: batch
                .iter()
                .map(|k| self.images[k].declared.clone())
                .collect(),
        };
        let id = self.start(InFlight::Plan(batch));
        Some(Request::Plan { id, body })
    }

    /// Abandons an upload: its images not done or failed are queued again, `except` one
    /// (which has failed).
    fn abandon(&mut self, upload_id: &str, except: Option<&str>) {
        let Some(upload) = self.uploads.remove(upload_id) else {
            return;
        };
        self.backoff.retain(|step, _| match step {
            Step::Put(u, _) | Step::Complete(u) => u != upload_id,
            Step::Plan(_) => true,
        });
        for key in upload.images.values() {
            if Some(key.as_str()) == except {
                continue;
            }
            if let Some(image) = self.images.get_mut(key)
                && matches!(image.state, ImageState::Uploading { .. })
            {
                image.state = ImageState::Queued;
            }
        }
    }

    /// Decides about a failed step: `true` when it will be tried again (its backoff set),
    /// `false` when the failure is final.
    fn backs_off(&mut self, step: Step, failure: &Failure, now_ms: f64, unit_random: f64) -> bool {
        if !RetryPolicy::retryable(failure.status) {
            return false;
        }
        let backoff = self.backoff.entry(step).or_default();
        if failure.status == 0 && !self.online {
            // Waiting for the network is not a retry.
            backoff.not_before_ms = now_ms;
            return true;
        }
        match self
            .policy
            .delay_ms(backoff.retries, unit_random, failure.retry_after_s)
        {
            Some(delay) => {
                backoff.retries += 1;
                backoff.not_before_ms = now_ms + delay;
                true
            }
            None => false,
        }
    }

    /// A final failure in words: `{what}: HTTP {status}: {message}`, or `{what}: no answer:
    /// {message}`, and how many retries were spent on a transient one.
    fn final_reason(&self, what: &str, failure: &Failure) -> String {
        let status = if failure.status == 0 {
            "no answer".to_owned()
        } else {
            format!("HTTP {}", failure.status)
        };
        let mut reason = format!("{what}: {status}");
        if !failure.message.is_empty() {
            reason = format!("{reason}: {}", failure.message);
        }
        if RetryPolicy::retryable(failure.status) {
            reason = format!(
                "{reason} (gave up after {} retries)",
                self.policy.max_retries
            );
        }
        reason
    }

    fn fail(&mut self, key: &str, reason: String) {
        if let Some(image) = self.images.get_mut(key) {
            image.state = ImageState::Failed { reason };
        }
        self.backoff.remove(&Step::Plan(key.to_owned()));
    }

    /// The answer to a [`Request::Plan`]. A plan whose answer does not hold one image id per
    /// planned image, six objects each, is refused as a protocol error.
    pub fn planned(
        &mut self,
        id: RequestId,
        answer: Result<UploadCreated, Failure>,
        now_ms: f64,
        unit_random: f64,
    ) {
        let Some(InFlight::Plan(keys)) = self.in_flight.remove(&id) else {
            return;
        };
        let keys: Vec<String> = keys
            .into_iter()
            .filter(|k| {
                self.images
                    .get(k)
                    .is_some_and(|i| i.state == ImageState::Queued)
            })
            .collect();
        let created = match answer.and_then(|created| check_plan(created, keys.len())) {
            Ok(created) => created,
            Err(failure) => {
                let mut retried = false;
                for key in &keys {
                    retried =
                        self.backs_off(Step::Plan(key.clone()), &failure, now_ms, unit_random);
                }
                if retried {
                    return;
                }
                if keys.len() > 1 && !RetryPolicy::retryable(failure.status) {
                    // One of them may be the bad one: plan each alone.
                    for key in &keys {
                        if let Some(image) = self.images.get_mut(key) {
                            image.solo = true;
                        }
                        self.backoff.remove(&Step::Plan(key.clone()));
                    }
                } else {
                    let reason = self.final_reason("the edge refused the upload", &failure);
                    for key in &keys {
                        self.fail(key, reason.clone());
                    }
                }
                return;
            }
        };
        let mut image_ids: Vec<&str> = Vec::new();
        for target in &created.objects {
            if !image_ids.contains(&target.image_id.as_str()) {
                image_ids.push(&target.image_id);
            }
        }
        let images: BTreeMap<String, String> = image_ids
            .into_iter()
            .map(str::to_owned)
            .zip(keys.iter().cloned())
            .collect();
        for key in &keys {
            self.backoff.remove(&Step::Plan(key.clone()));
            if let Some(image) = self.images.get_mut(key) {
                image.state = ImageState::Uploading {
                    upload_id: created.upload_id.clone(),
                };
            }
        }
        let seq = self.bump_seq();
        self.uploads.insert(
            created.upload_id.clone(),
            PlannedUpload {
                seq,
                planned_at_ms: now_ms,
                created,
                images,
                stored: BTreeSet::new(),
            },
        );
    }

    /// The answer to a [`Request::Put`]. A final failure fails the object's image and plans
    /// the upload's other images again.
    pub fn stored(
        &mut self,
        id: RequestId,
        answer: Result<(), Failure>,
        now_ms: f64,
        unit_random: f64,
    ) {
        let Some(InFlight::Put { upload_id, key }) = self.in_flight.remove(&id) else {
            return;
        };
        if !self.uploads.contains_key(&upload_id) {
            return; // abandoned meanwhile
        }
        let failure = match answer {
            Ok(()) => {
                if let Some(upload) = self.uploads.get_mut(&upload_id) {
                    upload.stored.insert(key.clone());
                }
                self.backoff.remove(&Step::Put(upload_id, key));
                return;
            }
            Err(failure) => failure,
        };
        let step = Step::Put(upload_id.clone(), key.clone());
        if self.backs_off(step, &failure, now_ms, unit_random) {
            return;
        }
        let upload = &self.uploads[&upload_id];
        let target = upload.created.objects.iter().find(|t| t.key == key);
        let image = target.and_then(|t| upload.images.get(&t.image_id)).cloned();
        let kind = target.map_or("object", |t| t.kind.as_str());
        let reason = self.final_reason(&format!("storage refused {kind}"), &failure);
        if let Some(image) = &image {
            self.fail(image, reason);
        }
        self.abandon(&upload_id, image.as_deref());
    }

    /// The answer to a [`Request::Complete`]. A final failure fails every image of the
    /// upload with the edge's reason.
    pub fn completed(
        &mut self,
        id: RequestId,
        answer: Result<UploadCompleted, Failure>,
        now_ms: f64,
        unit_random: f64,
    ) {
        let Some(InFlight::Complete(upload_id)) = self.in_flight.remove(&id) else {
            return;
        };
        match answer {
            Ok(completed) => {
                self.backoff.remove(&Step::Complete(upload_id.clone()));
                let Some(upload) = self.uploads.remove(&upload_id) else {
                    return;
                };
                for (image_id, key) in upload.images {
                    if let Some(image) = self.images.get_mut(&key) {
                        image.state = ImageState::Done {
                            upload_id: upload_id.clone(),
                            job_id: completed.job_id.clone(),
                            image_id,
                        };
                    }
                }
            }
            Err(failure) => {
                if self.backs_off(
                    Step::Complete(upload_id.clone()),
                    &failure,
                    now_ms,
                    unit_random,
                ) {
                    return;
                }
                let reason = self.final_reason("the edge refused to complete the upload", &failure);
                if let Some(upload) = self.uploads.remove(&upload_id) {
                    for key in upload.images.values() {
                        self.fail(key, reason.clone());
                    }
                }
                self.backoff.remove(&Step::Complete(upload_id));
            }
        }
    }
}

/// Checks that a plan's answer holds `images` images of six objects each.
fn check_plan(created: UploadCreated, images: usize) -> Result<UploadCreated, Failure> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for target in &created.objects {
        match counts.iter_mut().find(|(id, _)| *id == target.image_id) {
            Some((_, n)) => *n += 1,
            None => counts.push((&target.image_id, 1)),
        }
    }
    if counts.len() == images && counts.iter().all(|(_, n)| *n == ObjectKind::ALL.len()) {
        Ok(created)
    } else {
        Err(Failure {
            status: 502,
            message: format!(
                "the edge planned {} objects for {} images; expected {} images of {} objects",
                created.objects.len(),
                counts.len(),
                images,
                ObjectKind::ALL.len()
            ),
            retry_after_s: None,
        })
    }
}

fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn unix_ms(t: std::time::SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, duration_ms)
}

#[cfg(test)]
#[path = "uploader_tests.rs"]
mod tests;
