//! # tessera-client
//!
//! The upload client that the page's Web Worker and the `tessera upload` and `tessera sync`
//! commands share. Every decision (batching, retries, expiry, what a refusal means) is
//! [`tessera_core::uploader::Uploader`]'s; this crate sends the requests it asks for, through a
//! [`Transport`], and hands the answers back:
//!
//! | transport | where | how |
//! |---|---|---|
//! | [`native::HttpTransport`] | `tessera upload`, `tessera sync` | `reqwest`, bodies streamed from disk with progress |
//! | `tessera_wasm`'s browser transport | the page's Web Worker | `fetch`, `XMLHttpRequest` for upload progress, IndexedDB for bodies |
//!
//! [`run`] is the loop: start every request the uploader allows (at most
//! [`tessera_core::retry::RetryPolicy::max_in_flight`] at once), wait for the first answer or
//! the next retry, apply it, tell the [`Observer`], and again. It needs no runtime of its own:
//! it is one future, polled by tokio natively and by the browser's event loop in wasm.

use std::cell::RefCell;
use std::pin::pin;

use futures_util::future::{Either, select};
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tessera_core::upload::{UploadCompleted, UploadCreated, UploadRequest, UploadTarget};
use tessera_core::uploader::{Failure, Next, Request, RequestId, Uploader};

#[cfg(feature = "native")]
pub mod native;

/// How the client reaches the edge and storage, and the world around it (clock, randomness,
/// network state). Implementations: [`native::HttpTransport`], and the page's in `tessera_wasm`.
///
/// Futures need not be `Send`: [`run`] polls them all from one task (the browser's are not).
#[allow(
    async_fn_in_trait,
    reason = "one task polls these futures; the browser's are !Send"
)]
pub trait Transport {
    /// `POST /v1/uploads` with `body`: the `201` answer, or why not.
    async fn plan(&self, body: &UploadRequest) -> Result<UploadCreated, Failure>;

    /// PUTs the bytes of `image`'s object `target.kind` (`image` is its original's SHA-256,
    /// hex) to `target`'s presigned URL with exactly its signed headers, calling `sent` with
    /// the bytes sent so far as they go.
    async fn put(
        &self,
        image: &str,
        target: &UploadTarget,
        sent: &dyn Fn(u64),
    ) -> Result<(), Failure>;

    /// `POST /v1/uploads/{upload_id}/complete`: the `200` answer, or why not.
    async fn complete(&self, upload_id: &str) -> Result<UploadCompleted, Failure>;

    /// Waits `ms` milliseconds.
    async fn sleep(&self, ms: f64);

    /// Resolves when there may be new work: images added, no more coming
    /// ([`Uploader::set_more_coming`]), or the network back.
    async fn woken(&self);

    /// Now, in unix milliseconds.
    fn now_ms(&self) -> f64;

    /// A number drawn uniformly from `[0, 1)`, for the backoff's jitter.
    fn random(&self) -> f64;

    /// Whether the network is up (always, natively).
    fn online(&self) -> bool {
        true
    }
}

/// Told what happens, to save the state and redraw the view. Called between answers, never
/// while the uploader is borrowed.
pub trait Observer {
    /// The uploader changed: an answer was applied.
    fn changed(&mut self, uploader: &Uploader);

    /// A PUT of `image`'s object `target` has sent `bytes` so far.
    fn sent(&mut self, image: &str, target: &UploadTarget, bytes: u64);
}

/// When [`run`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Once every image is done or failed and no more are coming
    /// ([`Uploader::set_more_coming`]): `tessera upload`, `tessera sync` without `--watch`.
    Finished,
    /// Never: wait for new work ([`Transport::woken`]) and go on (`tessera sync --watch`,
    /// the page). Drop the future to stop; a saved uploader starts what was in flight again.
    Stopped,
}

/// One answer, for the uploader.
enum Answer {
    Planned(RequestId, Result<UploadCreated, Failure>),
    Stored(RequestId, Result<(), Failure>),
    Completed(RequestId, Result<UploadCompleted, Failure>),
}

/// Drives `uploader` over `transport` until [`Until`] says so. The uploader is borrowed only
/// between awaits, so the caller may add images meanwhile (then wake the transport).
pub async fn run<T: Transport, O: Observer>(
    uploader: &RefCell<Uploader>,
    transport: &T,
    observer: &mut O,
    until: Until,
) {
    let observer = RefCell::new(observer);
    let mut in_flight = FuturesUnordered::new();
    loop {
        let next = {
            let mut uploader = uploader.borrow_mut();
            uploader.set_online(transport.online());
            loop {
                match uploader.next(transport.now_ms()) {
                    Next::Send(request) => in_flight.push(send(transport, request, &observer)),
                    other => break other,
                }
            }
        };
        let answer = match next {
            Next::Send(_) => unreachable!("sent above"),
            Next::Finished if until == Until::Finished => return,
            Next::Finished | Next::Offline => {
                transport.woken().await;
                continue;
            }
            Next::Wait { until_ms: None } if in_flight.is_empty() => {
                // Nothing to wait for but new work (not reached by the uploader's rules).
                transport.woken().await;
                continue;
            }
            Next::Wait { until_ms } => {
                let due = async {
                    match until_ms {
                        Some(at) => transport.sleep(at - transport.now_ms()).await,
                        None => std::future::pending().await,
                    }
                };
                let woken = async {
                    select(pin!(due), pin!(transport.woken())).await;
                };
                if in_flight.is_empty() {
                    // Only a backoff to wait out (an empty set of requests is ready at once).
                    woken.await;
                    continue;
                }
                match select(in_flight.next(), pin!(woken)).await {
                    Either::Left((Some(answer), _)) => answer,
                    Either::Left((None, _)) | Either::Right(_) => continue,
                }
            }
        };
        let (now_ms, unit_random) = (transport.now_ms(), transport.random());
        let mut machine = uploader.borrow_mut();
        match answer {
            Answer::Planned(id, result) => machine.planned(id, result, now_ms, unit_random),
            Answer::Stored(id, result) => machine.stored(id, result, now_ms, unit_random),
            Answer::Completed(id, result) => machine.completed(id, result, now_ms, unit_random),
        }
        observer.borrow_mut().changed(&machine);
    }
}

/// Sends one request and wraps its answer.
async fn send<T: Transport, O: Observer>(
    transport: &T,
    request: Request,
    observer: &RefCell<&mut O>,
) -> Answer {
    match request {
        Request::Plan { id, body } => Answer::Planned(id, transport.plan(&body).await),
        Request::Put { id, image, target } => {
            let sent = |bytes| observer.borrow_mut().sent(&image, &target, bytes);
            Answer::Stored(id, transport.put(&image, &target, &sent).await)
        }
        Request::Complete { id, upload_id } => {
            Answer::Completed(id, transport.complete(&upload_id).await)
        }
    }
}

/// A refused request in words, whatever carried it: the edge's JSON `message`, or storage's
/// XML `Code` and `Message` (S3's error response), else the start of the body; `who` names
/// the refuser when the body says nothing. `retry_after` is the `Retry-After` header, in
/// seconds (an HTTP date is not honoured: the backoff applies).
#[must_use]
pub fn refusal(status: u16, retry_after: Option<&str>, body: &str, who: &str) -> Failure {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .or_else(|| {
            let code = xml_element(body, "Code")?;
            Some(xml_element(body, "Message").map_or(code.clone(), |m| format!("{code}: {m}")))
        })
        .unwrap_or_else(|| body.chars().take(200).collect::<String>().trim().to_owned());
    Failure {
        status,
        message: if message.is_empty() {
            format!("{who} refused")
        } else {
            message
        },
        retry_after_s: retry_after.and_then(|v| v.trim().parse::<f64>().ok()),
    }
}

/// The text of the first `<name>…</name>` in `xml`.
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    //! [`run`] against an in-memory edge and storage: every request answered after a
    //! simulated delay, the first try of each PUT failed with 503.

    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use tessera_core::exif::ExifMetadata;
    use tessera_core::manifest::ObjectKind;
    use tessera_core::presign::{Method, PresignedRequest};
    use tessera_core::upload::{DeclaredImage, DeclaredObject, DeclaredSha256};

    use super::*;

    /// Storage and the edge in memory, on tokio's paused clock.
    #[derive(Default)]
    struct Memory {
        in_flight: Cell<usize>,
        most_in_flight: Cell<usize>,
        puts: RefCell<BTreeMap<String, usize>>,
        uploads: Cell<usize>,
    }

    impl Memory {
        async fn request(&self) {
            self.in_flight.set(self.in_flight.get() + 1);
            self.most_in_flight
                .set(self.most_in_flight.get().max(self.in_flight.get()));
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.in_flight.set(self.in_flight.get() - 1);
        }
    }

    impl Transport for Memory {
        async fn plan(&self, body: &UploadRequest) -> Result<UploadCreated, Failure> {
            self.request().await;
            self.uploads.set(self.uploads.get() + 1);
            let upload_id = format!("u{}", self.uploads.get());
            let expires_at = UNIX_EPOCH + Duration::from_secs(4_000_000_000);
            let objects = body
                .files
                .iter()
                .enumerate()
                .flat_map(|(i, file)| {
                    let upload_id = upload_id.clone();
                    file.objects.iter().map(move |o| UploadTarget {
                        image_id: format!("{upload_id}-{i}"),
                        kind: o.kind,
                        key: format!("{upload_id}/{i}/{}", o.kind.as_str()),
                        request: PresignedRequest {
                            method: Method::Put,
                            url: String::new(),
                            headers: Vec::new(),
                            expires_at,
                        },
                    })
                })
                .collect();
            Ok(UploadCreated { upload_id, objects })
        }

        async fn put(
            &self,
            _image: &str,
            target: &UploadTarget,
            sent: &dyn Fn(u64),
        ) -> Result<(), Failure> {
            self.request().await;
            let tries = {
                let mut puts = self.puts.borrow_mut();
                let tries = puts.entry(target.key.clone()).or_default();
                *tries += 1;
                *tries
            };
            if tries == 1 {
                return Err(Failure {
                    status: 503,
                    message: "SlowDown".to_owned(),
                    retry_after_s: None,
                });
            }
            sent(100);
            Ok(())
        }

        async fn complete(&self, upload_id: &str) -> Result<UploadCompleted, Failure> {
            self.request().await;
            Ok(UploadCompleted {
                upload_id: upload_id.to_owned(),
                job_id: format!("job-{upload_id}"),
                images: Vec::new(),
            })
        }

        async fn sleep(&self, ms: f64) {
            tokio::time::sleep(Duration::from_secs_f64(ms.max(0.0) / 1000.0)).await;
        }

        async fn woken(&self) {
            std::future::pending::<()>().await;
        }

        fn now_ms(&self) -> f64 {
            let elapsed = tokio::time::Instant::now() - START.with(|s| *s);
            1.8e12 + elapsed.as_secs_f64() * 1000.0
        }

        fn random(&self) -> f64 {
            0.5
        }
    }

    thread_local! {
        static START: tokio::time::Instant = tokio::time::Instant::now();
    }

    #[derive(Default)]
    struct Counted {
        changes: usize,
        sent: usize,
    }

    impl Observer for Counted {
        fn changed(&mut self, _uploader: &Uploader) {
            self.changes += 1;
        }

        fn sent(&mut self, _image: &str, _target: &UploadTarget, _bytes: u64) {
            self.sent += 1;
        }
    }

    fn image(n: u32) -> DeclaredImage {
        DeclaredImage {
            file_name: format!("{n}.jpg"),
            exif: ExifMetadata::default(),
            objects: ObjectKind::ALL
                .into_iter()
                .map(|kind| DeclaredObject {
                    kind,
                    content_type: "image/jpeg".to_owned(),
                    size_bytes: 100,
                    sha256: DeclaredSha256 {
                        hex: format!("{n:0>60}{:04x}", kind as u32),
                    },
                    width: 1,
                    height: 1,
                })
                .collect(),
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn run_keeps_four_requests_in_flight_retries_and_finishes() {
        START.with(|_| ());
        let mut uploader = Uploader::new("p");
        for n in 0..60 {
            uploader.add(image(n));
        }
        let uploader = RefCell::new(uploader);
        let memory = Memory::default();
        let mut observer = Counted::default();
        run(&uploader, &memory, &mut observer, Until::Finished).await;
        let uploader = uploader.into_inner();
        assert_eq!(uploader.summary().done, 60);
        assert_eq!(memory.uploads.get(), 2, "50, then 10");
        assert_eq!(memory.most_in_flight.get(), 4);
        assert!(memory.puts.borrow().values().all(|tries| *tries == 2));
        assert_eq!(observer.sent, 360);
        // Every answer is one change: 2 plans, 720 PUTs, 2 completions.
        assert_eq!(observer.changes, 724);
    }
}
