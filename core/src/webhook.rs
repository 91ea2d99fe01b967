//! Webhooks: what Tessera sends, how it is signed, when a failed delivery is tried again, and
//! which URLs may receive one.
//!
//! - Signatures follow the Standard Webhooks specification
//!   (<https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>):
//!   headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
//!   space-separated list of `v1,{base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"}`, one per
//!   secret while a secret is being rotated. Secrets are `whsec_` + base64 of 24 to 64 random
//!   bytes. [`sign`] and [`verify`] are written here, over `hmac` and `sha2`, rather than taken
//!   from the `standardwebhooks` crate, whose 1.0.1 release accepts a `v1,` entry with an empty
//!   signature.
//! - The payload is the specification's `{type, timestamp, data}` ([`Payload`]).
//! - [`DeliverySchedule`] is the specification's retry schedule, and [`after_attempt`]
//!   decides what an answer means: only 2xx delivers, 410 disables the endpoint,
//!   `Retry-After` is honoured, and a delivery whose schedule is spent is dead-lettered.
//! - [`check_url`] and [`forbidden_address`] keep deliveries off loopback, private and
//!   link-local networks (server-side request forgery), unless the deployment allows them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a secret Tessera makes (the specification allows 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// How far a delivery's `webhook-timestamp` may be from the receiver's clock, in seconds,
/// before [`verify`] refuses it as a replay (the specification's suggestion: five minutes).
pub const TIMESTAMP_TOLERANCE_S: i64 = 5 * 60;

/// How long one delivery attempt may take, connection and answer together, in milliseconds.
/// The specification asks receivers to answer within 15 seconds.
pub const ATTEMPT_TIMEOUT_MS: u64 = 15_000;

/// The longest wait a receiver's `Retry-After` can ask for, in milliseconds (one day): a
/// larger one is read as this.
pub const MAX_RETRY_AFTER_MS: u64 = 24 * 3_600_000;

/// An endpoint's signing secret: 24 to 64 bytes, written `whsec_{base64}`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

/// Why a text is not a [`WebhookSecret`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is whsec_ and the base64 of 24 to 64 bytes")]
pub struct SecretError;

impl WebhookSecret {
    /// The secret of these random bytes (the caller draws them from a CSPRNG).
    ///
    /// # Errors
    /// Fewer than 24 or more than 64 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        if (24..=64).contains(&bytes.len()) {
            Ok(Self(bytes.to_vec()))
        } else {
            Err(SecretError)
        }
    }

    /// Reads `whsec_{base64}` (the prefix may be left off, as receivers paste it).
    ///
    /// # Errors
    /// Not base64, or a length outside 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let bytes = STANDARD.decode(encoded).map_err(|_| SecretError)?;
        Self::from_bytes(&bytes)
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Display for WebhookSecret {
    /// `whsec_{base64}`: the form the API answers once and receivers configure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

/// The `webhook-signature` header of one delivery: `v1,{base64 HMAC-SHA256}` of
/// `"{id}.{timestamp}.{body}"` under each secret, space-separated (several while rotating).
#[must_use]
pub fn sign(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| {
            let tag = secret.mac(id, timestamp, body).finalize().into_bytes();
            format!("v1,{}", STANDARD.encode(tag))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why [`verify`] refused a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// `webhook-timestamp` is not an integer.
    #[error("webhook-timestamp {0:?} is not Unix seconds")]
    BadTimestamp(String),
    /// The timestamp is more than [`TIMESTAMP_TOLERANCE_S`] from now.
    #[error("webhook-timestamp is {0} s from now; at most {TIMESTAMP_TOLERANCE_S} s allowed")]
    Stale(i64),
    /// No `v1` entry matches under any secret.
    #[error("no v1 signature matches")]
    NoMatch,
}

/// Checks a delivery as a receiver does: the timestamp within [`TIMESTAMP_TOLERANCE_S`] of
/// `now_s`, and one `v1,` entry of `signature_header` equal (in constant time) to the
/// HMAC under one of `secrets`. An entry with an empty or undecodable signature never
/// matches.
///
/// # Errors
/// [`VerifyError`].
pub fn verify(
    secrets: &[WebhookSecret],
    id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now_s: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| VerifyError::BadTimestamp(timestamp.to_owned()))?;
    let skew = ts.saturating_sub(now_s);
    if skew.abs() > TIMESTAMP_TOLERANCE_S {
        return Err(VerifyError::Stale(skew));
    }
    let candidates = signature_header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .filter(|tag| !tag.is_empty());
    for tag in candidates {
        for secret in secrets {
            // `verify_slice` compares in constant time and refuses a tag of another length.
            if secret.mac(id, ts, body).verify_slice(&tag).is_ok() {
                return Ok(());
            }
        }
    }
    Err(VerifyError::NoMatch)
}

/// What happened, as a webhook's `type`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEvent {
    /// A job ended `succeeded`; `data` is its status, results included.
    #[serde(rename = "job.completed")]
    JobCompleted,
    /// A job ended `failed`; `data` is its status, error included.
    #[serde(rename = "job.failed")]
    JobFailed,
    /// A running job's progress reached another tenth (10 % to 90 %, each once; opt-in, as
    /// every event is); `data` is its status without the per-input list.
    #[serde(rename = "job.progress")]
    JobProgress,
    /// An upload was completed (its objects verified, its images recorded) and its job
    /// created; `data` is an [`UploadCompletedEvent`].
    #[serde(rename = "upload.completed")]
    UploadCompleted,
    /// An upload's presigned URLs expired before it was completed: its files never all
    /// arrived (a tab closed, a device offline too long). `data` is an
    /// [`UploadExpiredEvent`]. A later completion (every object in storage after all) is
    /// still accepted and announced as `upload.completed`.
    #[serde(rename = "upload.expired")]
    UploadExpired,
    /// An original put into `original-uploads/{project}/` by another route than the edge
    /// (any S3 client; [`crate::arrival`]) was refused: not an image of an accepted type,
    /// too large, a likely decompression bomb. `data` is an [`UploadFailedEvent`]. Announced
    /// once per object version.
    #[serde(rename = "upload.failed")]
    UploadFailed,
}

/// The `data` of `upload.completed`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadCompletedEvent {
    /// The upload.
    pub upload_id: String,
    /// Its project.
    pub project: String,
    /// The job its completion created.
    pub job_id: String,
    /// Its images, in the upload's order.
    pub image_ids: Vec<String>,
}

/// The `data` of `upload.expired`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadExpiredEvent {
    /// The upload.
    pub upload_id: String,
    /// Its project.
    pub project: String,
    /// When it was planned (`POST /v1/uploads`), Unix seconds.
    pub created_at: u64,
    /// When its presigned URLs expired, Unix seconds.
    pub expired_at: u64,
    /// Its planned images, in the upload's order.
    pub image_ids: Vec<String>,
    /// Their file names as the client gave them, in the same order.
    pub file_names: Vec<String>,
}

/// The `data` of `upload.failed`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadFailedEvent {
    /// The refusal's id ([`crate::arrival::failure_id`]), the same however often the object
    /// is noticed.
    pub upload_id: String,
    /// The project of the folder it was put in.
    pub project: String,
    /// Its key in storage.
    pub key: String,
    /// Its file name (the key's last part).
    pub file_name: String,
    /// Its length in bytes.
    pub size_bytes: u64,
    /// Why it was refused: a stable code ([`crate::error::ErrorCode`]).
    pub code: crate::error::ErrorCode,
    /// Why it was refused, naming the limit.
    pub reason: String,
}

impl WebhookEvent {
    /// Every event, in the order the API documents them.
    pub const ALL: [Self; 6] = [
        Self::JobCompleted,
        Self::JobFailed,
        Self::JobProgress,
        Self::UploadCompleted,
        Self::UploadExpired,
        Self::UploadFailed,
    ];

    /// Its name on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::JobCompleted => "job.completed",
            Self::JobFailed => "job.failed",
            Self::JobProgress => "job.progress",
            Self::UploadCompleted => "upload.completed",
            Self::UploadExpired => "upload.expired",
            Self::UploadFailed => "upload.failed",
        }
    }

    /// Whether it is about a job (what a job's own endpoint may receive).
    #[must_use]
    pub const fn is_job_event(self) -> bool {
        matches!(
            self,
            Self::JobCompleted | Self::JobFailed | Self::JobProgress
        )
    }

    /// The event of a name; `None` for another.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// A webhook's body, the specification's payload structure: `{"type", "timestamp" (RFC 3339,
/// when the event happened), "data"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload<T> {
    /// The event's name ([`WebhookEvent::as_str`]).
    #[serde(rename = "type")]
    pub event: WebhookEvent,
    /// When it happened, RFC 3339 UTC.
    pub timestamp: String,
    /// The event's subject (a job's status).
    pub data: T,
}

/// `POST /v1/webhooks`: an endpoint that receives `events` of every job of `project`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// The project whose events it receives.
    pub project: String,
    /// Where deliveries are POSTed ([`check_url`]).
    pub url: String,
    /// The events it receives, at least one.
    pub events: Vec<WebhookEvent>,
}

/// A registered endpoint, as `POST /v1/webhooks` answers it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    /// `ep_` and 32 hex digits.
    pub endpoint_id: String,
    /// Its project.
    pub project: String,
    /// Where deliveries go.
    pub url: String,
    /// What it receives.
    pub events: Vec<WebhookEvent>,
    /// The signing secret, `whsec_…`: answered once, when the endpoint is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The job whose events alone it receives (`webhook_url` on `POST /v1/jobs`); absent
    /// for a project's endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Whether deliveries stopped (the endpoint answered 410 Gone).
    pub disabled: bool,
    /// When it was registered, Unix seconds.
    pub created_at: u64,
}

/// Where a delivery is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx arrived.
    Delivered,
    /// Dead-lettered: its schedule is spent or its endpoint was disabled. It can be replayed.
    Failed,
}

impl DeliveryState {
    /// Every state.
    pub const ALL: [Self; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    /// Its name in the API and in SQL.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// The state of a name; `None` for another.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One event on its way to one endpoint, as `GET /v1/webhooks/deliveries` lists it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// `dlv_` and 32 hex digits: what `POST /v1/webhooks/deliveries/{id}/replay` takes.
    pub delivery_id: String,
    /// The `webhook-id` header, the same on every attempt and replay.
    pub message_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The project whose event it is.
    pub project: String,
    /// Its URL.
    pub url: String,
    /// The event.
    pub event: WebhookEvent,
    /// Where it is.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (pending only), Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<u64>,
    /// The last attempt's HTTP status, when one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the event happened, Unix seconds.
    pub created_at: u64,
}

/// The answer of `GET /v1/webhooks/deliveries`: newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPage {
    /// The deliveries, at most the query's `limit`.
    pub deliveries: Vec<WebhookDelivery>,
}

/// The most deliveries one page lists, and the default.
pub const MAX_DELIVERY_PAGE: u32 = 200;

/// Why a webhook request is refused (400 `webhook`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookRequestError {
    /// A bad project name.
    #[error("{0:?} is not a project name")]
    Project(String),
    /// No events.
    #[error("an endpoint receives at least one event ({})", event_names())]
    NoEvents,
    /// The URL is refused.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A query parameter is unknown or its value is not accepted.
    #[error("query parameter {0}")]
    Query(String),
    /// A job's own endpoint asked for an event that is not about a job.
    #[error("a job's webhook receives job events only (job.completed, job.failed, job.progress), not {}", .0.as_str())]
    NotJobEvent(WebhookEvent),
    /// A job request names `webhook_events` but no `webhook_url`.
    #[error("webhook_events needs webhook_url")]
    EventsWithoutUrl,
}

fn event_names() -> String {
    WebhookEvent::ALL.map(WebhookEvent::as_str).join(", ")
}

impl CreateWebhook {
    /// The request checked: the project name, at least one event (repeats removed), and the
    /// URL ([`check_url`] with `allow_local`).
    ///
    /// # Errors
    /// [`WebhookRequestError`].
    pub fn checked(&self, allow_local: bool) -> Result<Self, WebhookRequestError> {
        crate::keys::Project::new(&self.project)
            .map_err(|_| WebhookRequestError::Project(self.project.clone()))?;
        if self.events.is_empty() {
            return Err(WebhookRequestError::NoEvents);
        }
        check_url(&self.url, allow_local)?;
        let mut events = Vec::with_capacity(self.events.len());
        for event in &self.events {
            if !events.contains(event) {
                events.push(*event);
            }
        }
        Ok(Self {
            events,
            ..self.clone()
        })
    }
}

/// `GET /v1/webhooks/deliveries?project=&state=&limit=`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryQuery {
    /// Only this project's.
    pub project: Option<crate::keys::Project>,
    /// Only deliveries in this state (`failed`: the dead-letter list).
    pub state: Option<DeliveryState>,
    /// At most this many, 1 to [`MAX_DELIVERY_PAGE`].
    pub limit: u32,
}

/// Reads a delivery query's pairs.
///
/// # Errors
/// An unknown parameter, a bad project, state or limit.
pub fn parse_delivery_query<'a>(
    pairs: impl IntoIterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
) -> Result<DeliveryQuery, WebhookRequestError> {
    let mut query = DeliveryQuery {
        project: None,
        state: None,
        limit: MAX_DELIVERY_PAGE,
    };
    for (name, value) in pairs {
        let bad = || WebhookRequestError::Query(format!("{name}={value:?} is not accepted"));
        match name.as_ref() {
            "project" => {
                query.project = Some(crate::keys::Project::new(value.as_ref()).map_err(|_| bad())?);
            }
            "state" => query.state = Some(DeliveryState::parse(&value).ok_or_else(bad)?),
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_DELIVERY_PAGE).contains(n))
                    .ok_or_else(bad)?;
            }
            _ => return Err(bad()),
        }
    }
    Ok(query)
}

/// When failed deliveries are tried again: the wait before each attempt after the first, in
/// milliseconds, each drawn within ±10 % (jitter, so that an endpoint's backlog does not come
/// back at once). The default is the specification's: immediately, then 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h and 10 h; after the last, the delivery is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySchedule(Vec<u64>);

impl Default for DeliverySchedule {
    fn default() -> Self {
        const S: u64 = 1_000;
        Self(vec![
            5 * S,
            5 * 60 * S,
            30 * 60 * S,
            2 * 3_600 * S,
            5 * 3_600 * S,
            10 * 3_600 * S,
            10 * 3_600 * S,
        ])
    }
}

/// Why a text is not a [`DeliverySchedule`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a delivery schedule: waits like 5s,5m,30m,2h separated by commas")]
pub struct ScheduleError(String);

impl DeliverySchedule {
    /// The waits (ms) before the second, third, … attempt.
    #[must_use]
    pub fn new(waits_ms: Vec<u64>) -> Self {
        Self(waits_ms)
    }

    /// Reads `5s,5m,30m,2h` (units `ms`, `s`, `m`, `h`); an empty text is one attempt only.
    ///
    /// # Errors
    /// An entry without a number and a unit.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let wait = |entry: &str| -> Option<u64> {
            let entry = entry.trim();
            let split = entry.find(|c: char| !c.is_ascii_digit())?;
            let (n, unit) = entry.split_at(split);
            let n: u64 = n.parse().ok()?;
            let scale = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return None,
            };
            n.checked_mul(scale)
        };
        if text.trim().is_empty() {
            return Ok(Self(Vec::new()));
        }
        text.split(',')
            .map(wait)
            .collect::<Option<Vec<_>>>()
            .map(Self)
            .ok_or_else(|| ScheduleError(text.to_owned()))
    }

    /// Attempts in all: the first and one per wait.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.0.len()).map_or(u32::MAX, |n| n.saturating_add(1))
    }

    /// The wait (ms) after failed attempt `attempt` (from 1) for `unit_random` in `[0, 1)`;
    /// `None` when the schedule is spent.
    #[must_use]
    pub fn wait_ms(&self, attempt: u32, unit_random: f64) -> Option<u64> {
        let base = *self.0.get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
        let factor = 0.9 + 0.2 * unit_random.clamp(0.0, 1.0);
        // Waits are at most hours: far inside f64's exact integers.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some((base as f64 * factor).round() as u64)
    }
}

/// What one delivery attempt came to, and what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    /// A 2xx: delivered.
    Delivered,
    /// A 410 Gone: the receiver asks never to be called again; the endpoint is disabled.
    Disable,
    /// Try again after this many milliseconds.
    Retry(u64),
    /// The schedule is spent: the delivery goes to the dead-letter list, from which it can
    /// be replayed.
    DeadLetter,
}

/// Decides after attempt `attempt` (from 1): `status` is the answer's (`None` when there was
/// none: refused, timed out), `retry_after_ms` its `Retry-After` (a floor on the next wait,
/// at most [`MAX_RETRY_AFTER_MS`]).
#[must_use]
pub fn after_attempt(
    schedule: &DeliverySchedule,
    attempt: u32,
    status: Option<u16>,
    retry_after_ms: Option<u64>,
    unit_random: f64,
) -> AfterAttempt {
    match status {
        Some(200..=299) => AfterAttempt::Delivered,
        Some(410) => AfterAttempt::Disable,
        _ => match schedule.wait_ms(attempt, unit_random) {
            None => AfterAttempt::DeadLetter,
            Some(wait) => {
                AfterAttempt::Retry(wait.max(retry_after_ms.unwrap_or(0).min(MAX_RETRY_AFTER_MS)))
            }
        },
    }
}

/// Reads `Retry-After` as milliseconds from `now_s`: delay-seconds or an HTTP date
/// (RFC 9110 §10.2.3); a date in the past is 0.
#[must_use]
pub fn retry_after_ms(value: &str, now_s: i64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1_000));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ahead = date.timestamp().saturating_sub(now_s).max(0);
    Some(u64::try_from(ahead).unwrap_or(0).saturating_mul(1_000))
}

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not an absolute URL.
    #[error("webhook URL {url:?} is not an absolute URL: {reason}")]
    Malformed {
        /// The URL as given.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Not `https` (plain `http` only where local webhooks are allowed).
    #[error("webhook URL {url:?} must be {allowed}")]
    NotHttps {
        /// The URL.
        url: String,
        /// What is allowed: `https`, or `https` and `http` where local webhooks are.
        allowed: &'static str,
    },
    /// User name or password in the URL.
    #[error("webhook URL {0:?} must not carry credentials")]
    Credentials(String),
    /// Its host is an address deliveries may not reach.
    #[error("webhook URL {url:?} points at {address}, a {kind} address")]
    Forbidden {
        /// The URL as given.
        url: String,
        /// The address.
        address: IpAddr,
        /// Which kind ([`forbidden_address`]).
        kind: &'static str,
    },
}

/// The longest webhook URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2_048;

/// Checks a webhook URL when it is registered: absolute, `https` (or `http` when
/// `allow_local`), no credentials, at most [`MAX_URL_BYTES`], and, when its host is an IP
/// address (in any spelling the URL standard accepts, `http://2130706433/` included), not a
/// [`forbidden_address`] unless `allow_local`. A host name is checked where it is resolved,
/// at every delivery (the batch backend's resolver), since its addresses can change.
///
/// # Errors
/// [`UrlError`].
pub fn check_url(text: &str, allow_local: bool) -> Result<url::Url, UrlError> {
    let malformed = |reason: String| UrlError::Malformed {
        url: text.to_owned(),
        reason,
    };
    if text.len() > MAX_URL_BYTES {
        return Err(malformed(format!("longer than {MAX_URL_BYTES} bytes")));
    }
    // RFC 3986 §2: a URI is ASCII letters, digits, these marks and percent-escapes; an
    // international name is written in punycode.
    if let Some(c) = text
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)))
    {
        return Err(malformed(format!(
            "{c:?} is not allowed in a URI (RFC 3986); percent-encode it, or write a name in punycode"
        )));
    }
    let url = url::Url::parse(text).map_err(|e| malformed(e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_local => {}
        _ => {
            return Err(UrlError::NotHttps {
                url: text.to_owned(),
                allowed: if allow_local {
                    "https (or http, as local webhooks are allowed)"
                } else {
                    "https"
                },
            });
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials(text.to_owned()));
    }
    let address = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(malformed("no host".to_owned())),
    };
    if let Some(address) = address
        && !allow_local
        && let Some(kind) = forbidden_address(address)
    {
        return Err(UrlError::Forbidden {
            url: text.to_owned(),
            address,
            kind,
        });
    }
    Ok(url)
}

/// The kind of address a delivery may not reach, or `None` for a public one: unspecified,
/// loopback, private (RFC 1918, IPv6 unique local RFC 4193), link-local (cloud metadata
/// services live at 169.254.169.254), shared (carrier-grade NAT, RFC 6598), multicast and
/// broadcast. IPv4-mapped and NAT64 (RFC 6052) IPv6 addresses are judged by their IPv4 part.
#[must_use]
pub fn forbidden_address(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return forbidden_v4(Ipv4Addr::new(a, b, c, d));
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_unspecified() {
        Some("unspecified")
    } else if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if v4.is_multicast() {
        Some("multicast")
    } else if v4.is_broadcast() {
        Some("broadcast")
    } else {
        None
    }
}

fn forbidden_v6(v6: Ipv6Addr) -> Option<&'static str> {
    let first = v6.segments()[0];
    if v6.is_unspecified() {
        Some("unspecified")
    } else if v6.is_loopback() {
        Some("loopback")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if v6.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's published test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret() -> WebhookSecret {
        WebhookSecret::parse(SECRET).unwrap()
    }

    #[test]
    fn signs_the_specification_s_test_vector() {
        assert_eq!(sign(&[secret()], ID, TIMESTAMP, BODY), SIGNATURE);
        assert_eq!(secret().to_string(), SECRET);
    }

    #[test]
    fn verifies_the_test_vector_and_refuses_what_differs() {
        let ts = TIMESTAMP.to_string();
        let ok =
            |header: &str, body: &[u8], now: i64| verify(&[secret()], ID, &ts, header, body, now);
        assert_eq!(ok(SIGNATURE, BODY, TIMESTAMP), Ok(()));
        // One matching entry among several (rotation), in any position.
        assert_eq!(
            ok(&format!("v1,AAAA {SIGNATURE}"), BODY, TIMESTAMP + 299),
            Ok(())
        );
        assert_eq!(
            ok(SIGNATURE, br#"{"test": 2432232315}"#, TIMESTAMP),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            ok(SIGNATURE, BODY, TIMESTAMP + 301),
            Err(VerifyError::Stale(-301))
        );
        assert_eq!(
            ok(SIGNATURE, BODY, TIMESTAMP - 301),
            Err(VerifyError::Stale(301))
        );
        assert_eq!(
            verify(&[secret()], "msg_other", &ts, SIGNATURE, BODY, TIMESTAMP),
            Err(VerifyError::NoMatch)
        );
        assert!(matches!(
            verify(&[secret()], ID, "soon", SIGNATURE, BODY, TIMESTAMP),
            Err(VerifyError::BadTimestamp(_))
        ));
        // Another scheme's entry with the right bytes is not a v1 signature.
        let v2 = SIGNATURE.replacen("v1,", "v2,", 1);
        assert_eq!(ok(&v2, BODY, TIMESTAMP), Err(VerifyError::NoMatch));
    }

    /// The `standardwebhooks` crate 1.0.1 accepts these; they must never verify.
    #[test]
    fn an_empty_or_truncated_signature_never_verifies() {
        let ts = TIMESTAMP.to_string();
        for header in ["v1,", "v1, v1,", "", "v1,g0hM9SsE", "v1,!!!!", "v1"] {
            assert_eq!(
                verify(&[secret()], ID, &ts, header, BODY, TIMESTAMP),
                Err(VerifyError::NoMatch),
                "{header:?}"
            );
        }
    }

    #[test]
    fn rotation_signs_under_every_secret() {
        let other = WebhookSecret::from_bytes(&[7; 32]).unwrap();
        let header = sign(&[secret(), other.clone()], ID, TIMESTAMP, BODY);
        assert!(header.starts_with(&format!("{SIGNATURE} v1,")));
        let ts = TIMESTAMP.to_string();
        assert_eq!(verify(&[other], ID, &ts, &header, BODY, TIMESTAMP), Ok(()));
    }

    #[test]
    fn secrets_are_24_to_64_bytes_of_base64() {
        assert!(WebhookSecret::from_bytes(&[0; 23]).is_err());
        assert!(WebhookSecret::from_bytes(&[0; 65]).is_err());
        let made = WebhookSecret::from_bytes(&[9; SECRET_BYTES]).unwrap();
        assert_eq!(WebhookSecret::parse(&made.to_string()), Ok(made.clone()));
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Ok(secret())
        );
        assert_eq!(WebhookSecret::parse("whsec_not base64"), Err(SecretError));
        assert_eq!(format!("{made:?}"), "WebhookSecret(…)");
    }

    #[test]
    fn the_default_schedule_is_the_specification_s_with_jitter() {
        let schedule = DeliverySchedule::default();
        assert_eq!(schedule.attempts(), 8);
        let mid: Vec<u64> = (1..=7).map(|a| schedule.wait_ms(a, 0.5).unwrap()).collect();
        assert_eq!(
            mid,
            [
                5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000
            ]
        );
        assert_eq!(schedule.wait_ms(1, 0.0), Some(4_500));
        assert_eq!(schedule.wait_ms(1, 1.0), Some(5_500));
        assert_eq!(schedule.wait_ms(8, 0.5), None);
        assert_eq!(schedule.wait_ms(0, 0.5), None);
        assert_eq!(
            DeliverySchedule::parse("5s,5m,30m,2h,5h,10h,10h"),
            Ok(schedule)
        );
        assert_eq!(
            DeliverySchedule::parse("200ms, 1s"),
            Ok(DeliverySchedule::new(vec![200, 1_000]))
        );
        assert_eq!(DeliverySchedule::parse("").map(|s| s.attempts()), Ok(1));
        assert!(DeliverySchedule::parse("5x").is_err());
        assert!(DeliverySchedule::parse("s").is_err());
    }

    #[test]
    fn only_2xx_delivers_410_disables_and_retry_after_is_a_floor() {
        let schedule = DeliverySchedule::new(vec![1_000, 2_000]);
        let after = |attempt, status, retry_after| {
            after_attempt(&schedule, attempt, status, retry_after, 0.5)
        };
        assert_eq!(after(1, Some(204), None), AfterAttempt::Delivered);
        assert_eq!(after(1, Some(410), None), AfterAttempt::Disable);
        assert_eq!(after(1, Some(503), None), AfterAttempt::Retry(1_000));
        assert_eq!(after(1, Some(301), None), AfterAttempt::Retry(1_000));
        assert_eq!(after(2, None, None), AfterAttempt::Retry(2_000));
        assert_eq!(after(1, Some(429), Some(7_000)), AfterAttempt::Retry(7_000));
        assert_eq!(
            after(1, Some(429), Some(u64::MAX)),
            AfterAttempt::Retry(MAX_RETRY_AFTER_MS)
        );
        assert_eq!(after(3, Some(500), None), AfterAttempt::DeadLetter);
        assert_eq!(retry_after_ms("120", 0), Some(120_000));
        assert_eq!(
            retry_after_ms("Wed, 21 Oct 2015 07:28:10 GMT", 1_445_412_480),
            Some(10_000)
        );
        assert_eq!(
            retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_490),
            Some(0)
        );
        assert_eq!(retry_after_ms("soon", 0), None);
    }

    #[test]
    fn urls_must_be_https_and_public_unless_local_is_allowed() {
        assert!(check_url("https://hooks.example.com/tessera?x=1", false).is_ok());
        assert_eq!(
            check_url("http://hooks.example.com/", false),
            Err(UrlError::NotHttps {
                url: "http://hooks.example.com/".into(),
                allowed: "https"
            })
        );
        assert!(check_url("http://127.0.0.1:9/hook", true).is_ok());
        assert_eq!(
            check_url("ftp://x/", true).unwrap_err().to_string(),
            r#"webhook URL "ftp://x/" must be https (or http, as local webhooks are allowed)"#
        );
        assert!(matches!(
            check_url("/relative", false),
            Err(UrlError::Malformed { .. })
        ));
        for not_a_uri in [
            "https://\u{cf}/",
            "https://a.example/b c",
            "https://a.example/\"x\"",
        ] {
            assert!(
                matches!(check_url(not_a_uri, true), Err(UrlError::Malformed { .. })),
                "{not_a_uri}"
            );
        }
        assert!(check_url("https://xn--bcher-kva.example/a%20b?c=d&e=f#g", false).is_ok());
        assert!(matches!(
            check_url("https://user:pw@hooks.example.com/", false),
            Err(UrlError::Credentials(_))
        ));
        for (url, kind) in [
            ("https://127.0.0.1/", "loopback"),
            ("https://2130706433/", "loopback"),
            ("https://0x7f.1/", "loopback"),
            ("https://10.0.0.1/", "private"),
            ("https://172.16.5.4/", "private"),
            ("https://192.168.1.1/", "private"),
            ("https://169.254.169.254/latest/meta-data/", "link-local"),
            ("https://100.64.0.1/", "shared (carrier-grade NAT)"),
            ("https://0.0.0.0/", "unspecified"),
            ("https://[::1]/", "loopback"),
            ("https://[::ffff:127.0.0.1]/", "loopback"),
            ("https://[64:ff9b::a9fe:a9fe]/", "link-local"),
            ("https://[fd00::1]/", "private (unique local)"),
            ("https://[fe80::1]/", "link-local"),
            ("https://224.0.0.1/", "multicast"),
        ] {
            match check_url(url, false) {
                Err(UrlError::Forbidden { kind: k, .. }) => assert_eq!(k, kind, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(check_url("https://8.8.8.8/", false).is_ok());
        assert!(check_url("https://[2606:4700::1111]/", false).is_ok());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(matches!(
            check_url(&long, false),
            Err(UrlError::Malformed { .. })
        ));
    }

    #[test]
    fn payloads_follow_the_specification_s_structure() {
        let payload = Payload {
            event: WebhookEvent::JobCompleted,
            timestamp: "2026-12-02T10:00:00Z".to_owned(),
            data: serde_json::json!({"job_id": "j"}),
        };
        assert_eq!(
            serde_json::to_value(&payload).unwrap(),
            serde_json::json!({"type": "job.completed", "timestamp": "2026-12-02T10:00:00Z", "data": {"job_id": "j"}})
        );
        for event in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(event.as_str()), Some(event));
        }
        assert_eq!(WebhookEvent::parse("job.done"), None);
    }
}
