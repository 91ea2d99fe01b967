//! Webhook delivery from the store's outbox, with [`tessera_core::webhook`]'s signatures,
//! schedule and URL rules: the only module that sends webhooks.
//!
//! - [`register`] checks an endpoint (its URL by [`check_url`], its host's addresses by a
//!   lookup) and records it with a fresh secret; [`create_job`] does the same for a job's own
//!   endpoint, made with its job.
//! - [`run`] is a process's delivery loop, beside its workers ([`crate::worker::run`]): claim
//!   a due delivery (a lease), POST it signed, record what the answer means. Several
//!   processes share one outbox; a killed one's delivery is taken again when its lease ends,
//!   with the same `webhook-id`.
//! - Every connection goes through [`GuardedResolver`], which refuses a host name whose
//!   addresses include a loopback, private or link-local one, at every delivery (the name's
//!   addresses may have changed since it was registered); redirects are not followed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tessera_core::job::{JobRequest, JobStatus};
use tessera_core::keys::JobId;
use tessera_core::webhook::{
    ATTEMPT_TIMEOUT_MS, AfterAttempt, CreateWebhook, DeliverySchedule, SECRET_BYTES, UrlError,
    WebhookEndpoint, WebhookRequestError, WebhookSecret, after_attempt, check_url,
    forbidden_address, retry_after_ms, sign,
};
use tokio::sync::watch;

use crate::store::{DueDelivery, Store};
use crate::tasks::now_ms;

/// How a process delivers webhooks.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// When failed attempts are tried again.
    pub schedule: DeliverySchedule,
    /// Whether `http` URLs and loopback, private and link-local addresses may receive
    /// deliveries (the local stack and tests; never a deployment on a shared network).
    pub allow_local: bool,
    /// One attempt's time limit.
    pub timeout: Duration,
    /// Deliveries attempted at once by this process.
    pub concurrency: usize,
    /// Wait between looks at the outbox when nothing is due.
    pub poll: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            schedule: DeliverySchedule::default(),
            allow_local: false,
            timeout: Duration::from_millis(ATTEMPT_TIMEOUT_MS),
            concurrency: 4,
            poll: Duration::from_millis(250),
        }
    }
}

/// Checks a webhook endpoint and records it with a fresh secret (32 bytes from the operating
/// system's CSPRNG): [`CreateWebhook::checked`], then, unless `allow_local`, every address
/// its host name resolves to must be public ([`forbidden_address`]).
///
/// # Errors
/// The outer one is the database's or the random source's; the inner one is the request's
/// refusal, for a 400.
pub async fn register(
    store: &Store,
    request: &CreateWebhook,
    allow_local: bool,
) -> Result<Result<WebhookEndpoint, WebhookRequestError>> {
    Ok(match checked_with_secret(request, allow_local).await? {
        Ok((request, secret)) => Ok(store.create_endpoint(&request, &secret, now_ms()).await?),
        Err(refused) => Err(refused),
    })
}

/// Records the job `request` asks for ([`Store::create_job_with_webhook`]), with its own
/// endpoint when it names one, checked as [`register`] checks one first: a refused URL makes
/// no job.
///
/// # Errors
/// The outer one is the database's or the random source's; the inner one is the webhook's
/// refusal, for a 400.
pub async fn create_job(
    store: &Store,
    job_id: &JobId,
    request: &JobRequest,
    allow_local: bool,
) -> Result<Result<(JobStatus, bool, Option<WebhookEndpoint>), WebhookRequestError>> {
    let Some(hook) = &request.webhook else {
        return Ok(Ok(store
            .create_job_with_webhook(job_id, request, None, now_ms())
            .await?));
    };
    let (hook, secret) = match checked_with_secret(hook, allow_local).await? {
        Ok(checked) => checked,
        Err(refused) => return Ok(Err(refused)),
    };
    let request = JobRequest {
        webhook: Some(hook),
        ..request.clone()
    };
    Ok(Ok(store
        .create_job_with_webhook(job_id, &request, Some(&secret), now_ms())
        .await?))
}

/// A webhook endpoint checked, with a fresh secret (32 bytes from the operating system's
/// CSPRNG): [`CreateWebhook::checked`], then, unless `allow_local`, every address its host
/// name resolves to must be public ([`forbidden_address`]).
///
/// # Errors
/// The outer one is the random source's; the inner one is the request's refusal.
async fn checked_with_secret(
    request: &CreateWebhook,
    allow_local: bool,
) -> Result<Result<(CreateWebhook, WebhookSecret), WebhookRequestError>> {
    let request = match request.checked(allow_local) {
        Ok(request) => request,
        Err(e) => return Ok(Err(e)),
    };
    if !allow_local {
        let url = check_url(&request.url, allow_local)?;
        if let Some(url::Host::Domain(host)) = url.host()
            && let Err(refusal) = public_addresses(host).await
        {
            return Ok(Err(WebhookRequestError::Url(refusal)));
        }
    }
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the random source failed: {e}"))?;
    Ok(Ok((request, WebhookSecret::from_bytes(&bytes)?)))
}

/// `host`'s addresses, refused when one of them is a [`forbidden_address`] or the name does
/// not resolve.
async fn public_addresses(host: &str) -> Result<Vec<SocketAddr>, UrlError> {
    let refused = |reason: String| UrlError::Malformed {
        url: host.to_owned(),
        reason,
    };
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| refused(format!("{host} does not resolve: {e}")))?
        .collect();
    if let Some((address, kind)) = addresses
        .iter()
        .find_map(|a| forbidden_address(a.ip()).map(|kind| (a.ip(), kind)))
    {
        return Err(UrlError::Forbidden {
            url: host.to_owned(),
            address,
            kind,
        });
    }
    Ok(addresses)
}

/// reqwest's name resolution for deliveries: the system's, refusing a name with any
/// loopback, private or link-local address unless local webhooks are allowed.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// Whether such addresses are allowed.
    pub allow_local: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_local = self.allow_local;
        Box::pin(async move {
            let host = name.as_str();
            let addresses: Vec<SocketAddr> = if allow_local {
                tokio::net::lookup_host((host, 0)).await?.collect()
            } else {
                public_addresses(host).await?
            };
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What one attempt got: the status when an answer came, its `Retry-After` (ms), and why
/// it failed otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The HTTP status, `None` without an answer.
    pub status: Option<u16>,
    /// `Retry-After`, in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// Why it failed (a non-2xx status or no answer).
    pub error: Option<String>,
}

/// Sends deliveries: one HTTP client (connections reused), no redirects, the
/// [`GuardedResolver`], a time limit per attempt.
#[derive(Debug, Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    allow_local: bool,
}

impl Deliverer {
    /// A deliverer for `options`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (its TLS roots).
    pub fn new(options: &DeliveryOptions) -> Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.timeout)
            .dns_resolver(Arc::new(GuardedResolver {
                allow_local: options.allow_local,
            }))
            .user_agent(concat!("tessera-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow_local: options.allow_local,
        })
    }

    /// POSTs `due`, signed at `now_s` (Unix seconds).
    pub async fn attempt(&self, due: &DueDelivery, now_s: i64) -> Answered {
        // An address written in the URL is checked again here: the resolver never sees it.
        if let Err(e) = check_url(&due.url, self.allow_local) {
            return Answered {
                status: None,
                retry_after_ms: None,
                error: Some(e.to_string()),
            };
        }
        let signature = sign(
            std::slice::from_ref(&due.secret),
            &due.message_id,
            now_s,
            due.payload.as_bytes(),
        );
        let sent = self
            .client
            .post(&due.url)
            .header("content-type", "application/json")
            .header("webhook-id", &due.message_id)
            .header("webhook-timestamp", now_s.to_string())
            .header("webhook-signature", signature)
            .body(due.payload.clone())
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after_ms(v, now_s));
                Answered {
                    status: Some(status.as_u16()),
                    retry_after_ms: retry_after,
                    error: (!status.is_success()).then(|| format!("answered {status}")),
                }
            }
            Err(e) => Answered {
                status: None,
                retry_after_ms: None,
                error: Some(error_chain(&e)),
            },
        }
    }
}

/// An error with its sources, `a: b: c` (reqwest's own text leaves out the cause).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Delivers from `store`'s outbox as `name` until `stopped` turns true: `options.concurrency`
/// loops, each claiming one due delivery at a time. An attempt in flight when stopping ends
/// (within its time limit) and is recorded.
pub async fn run(
    store: Store,
    name: String,
    options: DeliveryOptions,
    stopped: watch::Receiver<bool>,
) {
    let deliverer = match Deliverer::new(&options) {
        Ok(deliverer) => deliverer,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "webhook deliveries cannot start");
            return;
        }
    };
    let mut loops = tokio::task::JoinSet::new();
    for n in 0..options.concurrency.max(1) {
        let (store, deliverer, options) = (store.clone(), deliverer.clone(), options.clone());
        let (name, stopped) = (format!("{name}-webhooks-{n}"), stopped.clone());
        loops.spawn(async move { deliver(&store, &deliverer, &options, &name, stopped).await });
    }
    while loops.join_next().await.is_some() {}
}

async fn deliver(
    store: &Store,
    deliverer: &Deliverer,
    options: &DeliveryOptions,
    name: &str,
    mut stopped: watch::Receiver<bool>,
) {
    while !*stopped.borrow() {
        let due = match store.claim_delivery(name, now_ms()).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "claiming a webhook delivery");
                None
            }
        };
        let Some(due) = due else {
            tokio::select! {
                () = tokio::time::sleep(options.poll) => {}
                _ = stopped.changed() => {}
            }
            continue;
        };
        let answered = deliverer.attempt(&due, now_ms() / 1000).await;
        let outcome = after_attempt(
            &options.schedule,
            due.attempt,
            answered.status,
            answered.retry_after_ms,
            crate::worker::rand_unit(),
        );
        tracing::info!(
            delivery = %due.delivery_id,
            webhook_id = %due.message_id,
            event = due.event.as_str(),
            attempt = due.attempt,
            status = answered.status,
            outcome = ?outcome,
            error = answered.error.as_deref(),
            "webhook attempt"
        );
        let recorded = store
            .finish_delivery(
                &due,
                name,
                outcome,
                answered.status,
                answered.error.as_deref(),
                now_ms(),
            )
            .await;
        crate::metrics::metrics().webhook_attempt(match outcome {
            AfterAttempt::Delivered => "delivered",
            AfterAttempt::Retry(_) => "retry",
            AfterAttempt::DeadLetter => "dead_letter",
            AfterAttempt::Disable => "disabled",
        });
        if let Err(e) = &recorded {
            tracing::warn!(error = %format!("{e:#}"), "recording a webhook attempt");
        } else if matches!(recorded, Ok(false)) {
            tracing::warn!(delivery = %due.delivery_id, "the lease ran out during the attempt");
        }
        if outcome == AfterAttempt::Disable {
            tracing::warn!(url = %due.url, "the endpoint answered 410 Gone: disabled");
        }
    }
}
