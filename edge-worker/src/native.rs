//! The native host of the edge router: hyper HTTP/1.1 on a single-threaded tokio runtime
//! (run it inside a `tokio::task::LocalSet`), reqwest for outbound requests, configuration
//! from environment variables.

use std::convert::Infallible;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::events::{EVENTS_POLL, JobEvents};
use crate::posted::{FileSink, FileWriter, FormRules, read_form};
use crate::{
    Admission, BackendConfig, ClientAddr, Config, ConfigError, Edge, Jobs, Outbound, OutboundError,
    Store,
};

/// Outbound HTTP with reqwest.
#[derive(Debug, Clone, Default)]
pub struct ReqwestOutbound(reqwest::Client);

impl Outbound for ReqwestOutbound {
    async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, OutboundError> {
        let (parts, body) = request.into_parts();
        let failed = |e: &dyn std::fmt::Display| OutboundError::of(&parts.method, &parts.uri, e);
        let response = self
            .0
            .request(parts.method.clone(), parts.uri.to_string())
            .headers(parts.headers.clone())
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| failed(&e))?;
        let mut answer = Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let body = response.bytes().await.map_err(|e| failed(&e))?;
        answer.body(body.to_vec()).map_err(|e| failed(&e))
    }
}

/// Reads the configuration from the process environment ([`Config::from_lookup`],
/// [`BackendConfig::from_lookup`]).
///
/// # Errors
/// Names the missing or malformed variable.
pub fn config_from_env() -> Result<(Config, BackendConfig), ConfigError> {
    let lookup = |name: &str| std::env::var(name).ok();
    Ok((
        Config::from_lookup(lookup)?,
        BackendConfig::from_lookup(lookup)?,
    ))
}

/// How a native server treats slow clients and how many it holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest wait for a request's head, from the connection's start or the end of the
    /// previous answer (so also how long an idle keep-alive connection is kept), and for any
    /// next byte of a body, or for the client to take the next byte of an answer. Default 15 s.
    pub client_timeout: Duration,
    /// Connections served at once; more wait in the kernel's accept queue. Default 512.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            client_timeout: Duration::from_secs(15),
            max_connections: 512,
        }
    }
}

/// The longest a native host waits for a whole request body to the edge (at most
/// `max_body_bytes`, 1 MiB by default): 30 s. A body that trickles in slower is answered
/// 408 `request_timeout`.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves HTTP/1.1 connections from `listener` with `service` until `shutdown` resolves.
/// Must run inside a `tokio::task::LocalSet`. Every request carries the peer's [`ClientAddr`]
/// in its extensions. Clients are held to `limits`; when `accept` fails (out of file
/// descriptors, say), the loop waits, from 10 ms doubling to 1 s, instead of retrying at once,
/// and logs at most one warning every 10 s with the number of failures.
pub async fn serve_connections<F, R, B, E>(
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
    service: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(Request<Incoming>) -> R + Clone + 'static,
    R: Future<Output = Result<Response<B>, E>> + 'static,
    B: hyper::body::Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(shutdown);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut backoff = AcceptBackoff::default();
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return,
            permit = std::sync::Arc::clone(&permits).acquire_owned() => permit.expect("never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff.succeeded();
                    accepted
                }
                Err(e) => {
                    tokio::time::sleep(backoff.failed(&e)).await;
                    continue;
                }
            },
        };
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_read_timeout(Some(limits.client_timeout));
        stream.set_write_timeout(Some(limits.client_timeout));
        let service = service.clone();
        tokio::task::spawn_local(async move {
            let _permit = permit;
            let client = ClientAddr(peer.ip());
            let service = service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(client);
                service(request)
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.client_timeout)
                .serve_connection(TokioIo::new(Box::pin(stream)), service)
                .await;
            if let Err(e) = served
                && !e.is_incomplete_message()
            {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
}

/// How long to wait after a failed `accept`, and when to say so.
#[derive(Debug, Default)]
struct AcceptBackoff {
    delay: Duration,
    failures_unlogged: u64,
    last_logged: Option<std::time::Instant>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(10);

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// The wait before the next `accept`; logs `error` unless a warning went out in the last
    /// [`Self::LOG_EVERY`].
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.failures_unlogged += 1;
        if self
            .last_logged
            .is_none_or(|t| t.elapsed() >= Self::LOG_EVERY)
        {
            tracing::warn!(
                error = %error,
                failures = self.failures_unlogged,
                "accept failed; backing off"
            );
            self.failures_unlogged = 0;
            self.last_logged = Some(std::time::Instant::now());
        }
        self.delay = (self.delay * 2).clamp(Self::FIRST, Self::MAX);
        self.delay
    }
}

/// Serves `edge` on `listener` with [`serve_connections`] until `shutdown` resolves. Must run
/// inside a `tokio::task::LocalSet` on a current-thread runtime.
pub async fn serve<S, O, J>(
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
    edge: Rc<Edge<S, O, J>>,
    shutdown: impl Future<Output = ()>,
) where
    S: Store + 'static,
    O: Outbound + 'static,
    J: Jobs + 'static,
{
    let service = move |request: Request<Incoming>| {
        let edge = Rc::clone(&edge);
        async move { Ok::<_, Infallible>(answer(&edge, request).await) }
    };
    serve_connections(listener, limits, service, shutdown).await;
}

/// The body of a native answer: whole, or a job's server-sent events as they come.
pub type AnswerBody = UnsyncBoxBody<Bytes, Infallible>;

/// Storage for jobs posted with their files ([`crate::posted`]), and the limits each file is
/// held to; hosts with an S3 client give it to [`answer_with_files`].
#[derive(Debug, Clone)]
pub struct PostedFiles<F> {
    /// Where the files go.
    pub sink: F,
    /// What one file may be.
    pub limits: tessera_core::job_inputs::JobLimits,
}

/// Answers one hyper request with `edge`: [`Edge::admit`] on the head, so that a request
/// without a valid key is refused before its body is read; then the body, up to the configured
/// limit (413 beyond it) and within [`BODY_READ_TIMEOUT`] (408), routed by [`Edge::respond`]
/// with the system clock and random v4 ids. A job's events stream: [`Edge::next_event`] every
/// [`EVENTS_POLL`] until the job ends or the client goes. A job posted with its files is
/// refused ([`Edge::files_not_taken`]): see [`answer_with_files`]. For hosts that serve more
/// than the edge on one port; [`serve`] uses it for every request.
pub async fn answer<S, O, J>(
    edge: &Rc<Edge<S, O, J>>,
    request: Request<Incoming>,
) -> Response<AnswerBody>
where
    S: Store + 'static,
    O: Outbound + 'static,
    J: Jobs + 'static,
{
    answer_posted(edge, request, None::<&PostedFiles<NoFiles>>).await
}

/// [`answer`], and a job posted with its files (`multipart/form-data`) read part by part into
/// `files` ([`read_form`]) and created ([`Edge::create_posted_job`]).
pub async fn answer_with_files<S, O, J, F>(
    edge: &Rc<Edge<S, O, J>>,
    request: Request<Incoming>,
    files: &PostedFiles<F>,
) -> Response<AnswerBody>
where
    S: Store + 'static,
    O: Outbound + 'static,
    J: Jobs + 'static,
    F: FileSink,
{
    answer_posted(edge, request, Some(files)).await
}

/// The name of the response header that carries a request's id, as its log lines do.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// [`answer_unlogged`] inside a `request` span carrying a fresh id (a UUID v4) and the
/// route, so that every log line of the request names both; its status is logged when it is
/// answered, and the id is answered in [`REQUEST_ID_HEADER`] for the client to quote.
async fn answer_posted<S, O, J, F>(
    edge: &Rc<Edge<S, O, J>>,
    request: Request<Incoming>,
    files: Option<&PostedFiles<F>>,
) -> Response<AnswerBody>
where
    S: Store + 'static,
    O: Outbound + 'static,
    J: Jobs + 'static,
    F: FileSink,
{
    use tracing::Instrument as _;
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let route = crate::route_template(request.method(), request.uri().path());
    let span = tracing::info_span!("request", id = %request_id, route);
    async move {
        let mut answer = answer_unlogged(edge, request, files).await;
        tracing::info!(status = answer.status().as_u16(), "answered");
        if let Ok(value) = http::HeaderValue::from_str(&request_id) {
            answer.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        answer
    }
    .instrument(span)
    .await
}

async fn answer_unlogged<S, O, J, F>(
    edge: &Rc<Edge<S, O, J>>,
    request: Request<Incoming>,
    files: Option<&PostedFiles<F>>,
) -> Response<AnswerBody>
where
    S: Store + 'static,
    O: Outbound + 'static,
    J: Jobs + 'static,
    F: FileSink,
{
    let whole = |answer: Response<Bytes>| answer.map(|b| Full::new(b).boxed_unsync());
    let (parts, body) = request.into_parts();
    let admitted = match edge.admit(&parts, SystemTime::now()) {
        Admission::Admitted(admitted) => admitted,
        Admission::Answered(answer) if body.is_end_stream() => return whole(answer),
        Admission::Answered(answer) => return whole(closing(answer)),
        Admission::Events(mut events) => {
            return match edge.open_events(&mut events, SystemTime::now()).await {
                Ok((head, first)) => head.map(|_| event_stream(Rc::clone(edge), events, first)),
                Err(answer) => whole(answer),
            };
        }
        Admission::Files(posted) => {
            let Some(files) = files else {
                return whole(closing(edge.files_not_taken(posted)));
            };
            let today = chrono::DateTime::from_timestamp(unix_s(SystemTime::now()), 0)
                .unwrap_or_default()
                .date_naive();
            let mut new_id = || uuid::Uuid::new_v4().to_string();
            let content_type = posted.content_type().to_owned();
            let form = read_form(
                &files.sink,
                &content_type,
                body.into_data_stream(),
                FormRules {
                    limits: files.limits,
                    max_inputs: edge.config.max_job_inputs,
                    scope: posted.scope(),
                },
                today,
                &mut new_id,
            )
            .await;
            return match form {
                Ok((request, refused)) => {
                    whole(edge.create_posted_job(posted, &request, refused).await)
                }
                Err(e) => whole(closing(edge.posted_job_refused(posted, e.code, e.message))),
            };
        }
    };
    let limit = edge.config.max_body_bytes;
    let body =
        match tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            // Over the limit, or the client went away: answer as the router would.
            Ok(Err(_)) => return whole(closing(edge.body_too_large())),
            Err(_) => return whole(closing(edge.body_timed_out())),
        };
    let mut new_id = || uuid::Uuid::new_v4().to_string();
    whole(
        edge.respond(admitted, body, SystemTime::now(), &mut new_id)
            .await,
    )
}

/// Seconds since the Unix epoch at `t` (0 before it).
fn unix_s(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The sink of a host without file storage: [`answer`] refuses posted files before any
/// would reach it.
#[derive(Debug)]
enum NoFiles {}

impl FileSink for NoFiles {
    type Writer = NoFiles;

    fn create(&self, _key: &str) -> Self::Writer {
        match *self {}
    }

    async fn put(&self, _key: &str, _body: Vec<u8>) -> Result<(), String> {
        match *self {}
    }
}

impl FileWriter for NoFiles {
    async fn write(&mut self, _chunk: &[u8]) -> Result<(), String> {
        match *self {}
    }

    async fn finish(self) -> Result<(), String> {
        match self {}
    }

    async fn abort(self) {
        match self {}
    }
}

/// `first`, then each frame [`Edge::next_event`] gives, polled every [`EVENTS_POLL`] by a
/// task on this thread's `LocalSet` (the edge is not `Send`) and handed over a channel; the
/// stream ends after the job's `end` frame, and the task as soon as the client has gone.
fn event_stream<S, O, J>(edge: Rc<Edge<S, O, J>>, mut events: JobEvents, first: Bytes) -> AnswerBody
where
    S: Store + 'static,
    O: Outbound + 'static,
    J: Jobs + 'static,
{
    let (frames, received) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::task::spawn_local(async move {
        if frames.send(first).await.is_err() {
            return;
        }
        while !events.ended() {
            tokio::select! {
                () = tokio::time::sleep(EVENTS_POLL) => {}
                () = frames.closed() => return,
            }
            if let Some(frame) = edge.next_event(&mut events, SystemTime::now()).await
                && frames.send(frame).await.is_err()
            {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(received, |mut received| async move {
        let frame = received.recv().await?;
        Some((Ok(Frame::data(frame)), received))
    });
    StreamBody::new(stream).boxed_unsync()
}

/// Marks an answer given before the request's body was read to its end with
/// `Connection: close` (RFC 9112 §9.6). hyper closes such a connection after the answer
/// rather than read an unknown rest; saying so keeps a client from reusing it for its next
/// request and losing that request to the close.
fn closing(mut answer: Response<Bytes>) -> Response<Bytes> {
    answer.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    answer
}
