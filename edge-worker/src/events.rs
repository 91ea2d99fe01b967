//! `GET /v1/jobs/{id}/events`: a job's progress as server-sent events (the WHATWG HTML
//! standard, §9.2 "Server-sent events": `text/event-stream`, frames of `id:`, `event:`,
//! `retry:` and `data:` lines ended by a blank line).
//!
//! The edge decides every frame; hosts only carry them. [`Edge::open_events`] answers the
//! head (404 for an unknown job) with the first frame; then a streaming host (the native
//! edge, `tessera up`) calls [`Edge::next_event`] every [`EVENTS_POLL`] and writes what it
//! returns until [`JobEvents::ended`]. A host that cannot hold a response open (Workers) sends
//! the first frame alone: its `retry:` makes the client reconnect after
//! [`EVENTS_RETRY`], which is the same poll driven from the client's side.
//!
//! Frames: `event: progress` with the [`JobStatus`] as `data` (its per-input list left out;
//! result URLs presigned) whenever the status changes; `event: end` with the full status
//! once the job has ended, after which the stream closes; a `: keep-alive` comment after
//! [`KEEP_ALIVE_POLLS`] polls without a frame, so that proxies keep the connection.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use tessera_core::access::KeyScope;
use tessera_core::error::{ErrorBody, ErrorCode};
use tessera_core::job::JobStatus;
use tessera_core::keys::JobId;

use crate::error::{ApiError, log_error};
use crate::{Edge, Jobs, Outbound, Store};

/// How often a streaming host asks [`Edge::next_event`] for the next frame.
pub const EVENTS_POLL: Duration = Duration::from_secs(1);

/// The reconnection delay every stream announces (`retry:`).
pub const EVENTS_RETRY: Duration = Duration::from_secs(1);

/// Polls without a frame after which a `: keep-alive` comment is sent.
pub const KEEP_ALIVE_POLLS: u32 = 15;

/// One client's event stream of one job: what it was last sent.
#[derive(Debug)]
pub struct JobEvents {
    pub(crate) job_id: String,
    pub(crate) origin: Option<HeaderValue>,
    scope: KeyScope,
    last: Option<Box<JobStatus>>,
    sent: u64,
    quiet_polls: u32,
    ended: bool,
}

impl JobEvents {
    pub(crate) fn new(job_id: String, origin: Option<HeaderValue>, scope: KeyScope) -> Self {
        Self {
            job_id,
            origin,
            scope,
            last: None,
            sent: 0,
            quiet_polls: 0,
            ended: false,
        }
    }

    /// Whether the job has ended (its `end` frame is sent): the host closes the stream.
    #[must_use]
    pub const fn ended(&self) -> bool {
        self.ended
    }
}

impl<S: Store, O: Outbound, J: Jobs> Edge<S, O, J> {
    /// The head of the stream and its first frame (with `retry:`), or the error answer: 404
    /// `job_not_found`, 502 `job_status_unavailable`.
    pub async fn open_events(
        &self,
        events: &mut JobEvents,
        now: SystemTime,
    ) -> Result<(Response<Bytes>, Bytes), Response<Bytes>> {
        let first = async {
            let job = self.job_status(&events.job_id).await?;
            crate::routes::reach(&events.scope, &job.project)?;
            let frame = self.frame(events, job, now)?;
            let retry = format!("retry: {}\n", EVENTS_RETRY.as_millis());
            Ok::<_, ApiError>(Bytes::from([retry.as_bytes(), &frame].concat()))
        };
        match first.await {
            Ok(first) => {
                let mut head = Response::new(Bytes::new());
                let headers = head.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                self.cors(events.origin.clone(), head.headers_mut());
                Ok((head, first))
            }
            Err(e) => {
                let mut answer = e.into_response();
                self.cors(events.origin.clone(), answer.headers_mut());
                Err(answer)
            }
        }
    }

    /// The next frame, if any: the status when it changed (`end` once the job has ended), a
    /// keep-alive comment after [`KEEP_ALIVE_POLLS`] quiet polls, or nothing. A backend that
    /// does not answer is logged and asked again on the next poll.
    pub async fn next_event(&self, events: &mut JobEvents, now: SystemTime) -> Option<Bytes> {
        if events.ended {
            return None;
        }
        let job_id = JobId::new(&events.job_id).ok()?;
        let frame = match self.jobs.status(&job_id).await {
            Ok(Some(job)) => self.frame(events, job, now).unwrap_or_default(),
            Ok(None) => {
                // Deleted under the stream: say so and end.
                events.ended = true;
                let body =
                    ErrorBody::new(ErrorCode::JobNotFound, format!("no job {}", events.job_id));
                let body = serde_json::to_string(&body).expect("an error body serialises");
                return Some(Bytes::from(format!("event: error\ndata: {body}\n\n")));
            }
            Err(e) => {
                log_error("job events", &e);
                Bytes::new()
            }
        };
        if !frame.is_empty() {
            return Some(frame);
        }
        events.quiet_polls += 1;
        (events.quiet_polls >= KEEP_ALIVE_POLLS).then(|| {
            events.quiet_polls = 0;
            Bytes::from_static(b": keep-alive\n\n")
        })
    }

    /// The frame for `job`, empty when it is what the stream last sent. The stream's state
    /// changes only once the frame is made (a failed presign leaves it as it was).
    fn frame(
        &self,
        events: &mut JobEvents,
        mut job: JobStatus,
        now: SystemTime,
    ) -> Result<Bytes, ApiError> {
        let ended = job.state.is_terminal();
        if !ended {
            job.inputs.clear();
        }
        if events.last.as_deref() == Some(&job) {
            return Ok(Bytes::new());
        }
        let mut sent = job.clone();
        self.presign_results(&mut sent, now)?;
        events.last = Some(Box::new(job));
        events.ended = ended;
        events.sent += 1;
        events.quiet_polls = 0;
        let data = serde_json::to_string(&sent).expect("a job status serialises");
        let event = if ended { "end" } else { "progress" };
        Ok(Bytes::from(format!(
            "id: {}\nevent: {event}\ndata: {data}\n\n",
            events.sent
        )))
    }
}
