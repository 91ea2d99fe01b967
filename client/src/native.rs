//! The command line's [`Transport`]: the edge API and storage over `reqwest` (rustls), object
//! bodies from a [`Bodies`] source, tokio's clock.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::{Either, select};
use serde::Deserialize;
use tessera_core::Manifest;
use tessera_core::manifest::ObjectKind;
use tessera_core::upload::{UploadCompleted, UploadCreated, UploadRequest, UploadTarget};
use tessera_core::uploader::Failure;
use tokio::sync::Notify;

use crate::Transport;

/// Bytes are handed to the connection in pieces this large, and progress counted by them.
const CHUNK_BYTES: usize = 64 * 1024;

/// How often a PUT reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// No connection within this long is a failed try (then retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection silent this long is a failed try (then retried).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Characters kept as they are in a path segment: RFC 3986's unreserved ones.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the bytes of each object come from: the original from disk, the derivatives from
/// memory, in `tessera upload`.
pub trait Bodies {
    /// The bytes of `image`'s object `kind` (`image` is the original's SHA-256, hex).
    ///
    /// # Errors
    /// Why they cannot be had (a file gone or unreadable), in words.
    fn body(&self, image: &str, kind: ObjectKind) -> Result<Bytes, String>;
}

/// The edge API at `endpoint` with an API key, and storage through the URLs it presigns.
#[derive(Debug)]
pub struct HttpTransport<B> {
    client: reqwest::Client,
    endpoint: String,
    api_key: String,
    bodies: B,
    wake: Arc<Notify>,
}

impl<B: Bodies> HttpTransport<B> {
    /// A transport to the edge at `endpoint` (`http(s)://host[:port]`, no trailing path).
    ///
    /// # Errors
    /// When the TLS backend cannot start.
    pub fn new(endpoint: &str, api_key: String, bodies: B) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            api_key,
            bodies,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Notified when new images were added, so that [`crate::run`] with
    /// [`crate::Until::Stopped`] plans them at once.
    #[must_use]
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// The body source.
    pub fn bodies(&self) -> &B {
        &self.bodies
    }

    /// The SHA-256 (hex) of every original recorded in `project`, paging through
    /// `GET /v1/images` 200 records at a time: the files already uploaded, by anyone.
    ///
    /// # Errors
    /// A [`Failure`] when a page cannot be had.
    pub async fn recorded_originals(&self, project: &str) -> Result<BTreeSet<String>, Failure> {
        /// `GET /v1/images`'s answer, the fields read here.
        #[derive(Deserialize)]
        struct Page {
            images: Vec<Manifest>,
            next_cursor: Option<String>,
        }
        let mut originals = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("project", project.to_owned()), ("limit", "200".to_owned())];
            query.extend(cursor.take().map(|c| ("cursor", c)));
            let request = self
                .client
                .get(format!("{}/v1/images", self.endpoint))
                .query(&query)
                .bearer_auth(&self.api_key);
            let page: Page = answer(request.send().await, "search").await?;
            originals.extend(page.images.iter().map(|m| m.original().sha256.hex.clone()));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(originals),
            }
        }
    }
}

impl<B: Bodies> Transport for HttpTransport<B> {
    async fn plan(&self, body: &UploadRequest) -> Result<UploadCreated, Failure> {
        let request = self
            .client
            .post(format!("{}/v1/uploads", self.endpoint))
            .bearer_auth(&self.api_key)
            .json(body);
        answer(request.send().await, "the edge").await
    }

    async fn put(
        &self,
        image: &str,
        target: &UploadTarget,
        sent: &dyn Fn(u64),
    ) -> Result<(), Failure> {
        let bytes = self
            .bodies
            .body(image, target.kind)
            .map_err(Failure::no_answer)?;
        let counted = Arc::new(AtomicU64::new(0));
        let chunks: Vec<Bytes> = (0..bytes.len())
            .step_by(CHUNK_BYTES)
            .map(|start| bytes.slice(start..bytes.len().min(start + CHUNK_BYTES)))
            .collect();
        let counter = Arc::clone(&counted);
        let stream = futures_util::stream::iter(chunks.into_iter().map(move |chunk| {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            Ok::<_, std::convert::Infallible>(chunk)
        }));
        let mut request = self
            .client
            .put(&target.request.url)
            .body(reqwest::Body::wrap_stream(stream));
        // Exactly the signed headers, content-length included: the body is streamed.
        for (name, value) in &target.request.headers {
            request = request.header(name, value);
        }
        let mut response = std::pin::pin!(request.send());
        let response = loop {
            let tick = std::pin::pin!(tokio::time::sleep(PROGRESS_EVERY));
            match select(response.as_mut(), tick).await {
                Either::Left((response, _)) => break response,
                Either::Right(_) => sent(counted.load(Ordering::Relaxed)),
            }
        };
        let kind = target.kind.as_str();
        let response = response.map_err(|e| Failure::no_answer(format!("{kind}: {e}")))?;
        if response.status().is_success() {
            sent(bytes.len() as u64);
            return Ok(());
        }
        Err(failure(response, "storage").await)
    }

    async fn complete(&self, upload_id: &str) -> Result<UploadCompleted, Failure> {
        let id = percent_encoding::utf8_percent_encode(upload_id, PATH_SEGMENT);
        let request = self
            .client
            .post(format!("{}/v1/uploads/{id}/complete", self.endpoint))
            .bearer_auth(&self.api_key);
        answer(request.send().await, "the edge").await
    }

    async fn sleep(&self, ms: f64) {
        tokio::time::sleep(Duration::from_secs_f64(ms.max(0.0) / 1000.0)).await;
    }

    async fn woken(&self) {
        self.wake.notified().await;
    }

    fn now_ms(&self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }

    fn random(&self) -> f64 {
        let mut bytes = [0u8; 8];
        // The jitter only spreads retries out; a failed draw just means no jitter.
        let _ = getrandom::fill(&mut bytes);
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A JSON answer from the edge, or its failure.
async fn answer<T: serde::de::DeserializeOwned>(
    response: reqwest::Result<reqwest::Response>,
    who: &str,
) -> Result<T, Failure> {
    let response = response.map_err(|e| Failure::no_answer(format!("{who}: {e}")))?;
    if !response.status().is_success() {
        return Err(failure(response, who).await);
    }
    let status = response.status().as_u16();
    response.json().await.map_err(|e| Failure {
        status,
        message: format!("{who} answered what is not the expected JSON: {e}"),
        retry_after_s: None,
    })
}

/// A refused request's [`Failure`]: [`crate::refusal`] over reqwest's response.
async fn failure(response: reqwest::Response, who: &str) -> Failure {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.unwrap_or_default();
    crate::refusal(status, retry_after.as_deref(), &body, who)
}
