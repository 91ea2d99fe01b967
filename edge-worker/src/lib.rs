//! # tessera-edge
//!
//! Tessera's public HTTP API, one router for two hosts: the Cloudflare Workers runtime and the
//! native tokio host of the local stack ([`native`]). [`Edge::handle`] takes an
//! `http::Request` and returns an `http::Response`; everything the router needs from its host
//! (the metadata [`Store`], [`Outbound`] HTTP, the batch backend's [`Jobs`], the clock and ids)
//! is passed in, and every rule comes from [`tessera_core`].
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | liveness, no auth |
//! | `GET /v1/openapi.json` | this API's OpenAPI 3.1 document ([`openapi::document`]), no auth |
//! | `POST /v1/uploads` | validate manifests, decide keys, presign one PUT per object |
//! | `POST /v1/uploads/{id}/complete` | HEAD-verify every object, write sidecars, record, trigger a job; idempotent |
//! | `GET /v1/images?project=&from=&to=&bbox=&limit=&cursor=` | search by date and place, keyset-paginated |
//! | `GET /v1/images/{id}` | one record with short-lived presigned GET URLs |
//! | `POST /v1/jobs` | a job of recorded images named by ids, uploads or a search ([`tessera_core::job_inputs::CreateJob`]); natively also a job posted with its files ([`posted`]) |
//! | `GET /v1/jobs?project=&state=&limit=&cursor=` | jobs, newest first, keyset-paginated |
//! | `GET /v1/jobs/{id}` | the batch job's status ([`tessera_core::job::JobStatus`]) |
//! | `POST /v1/jobs/{id}/cancel`, `…/retry` | cancel a job; run again what failed |
//! | `GET /v1/jobs/{id}/events` | the job's progress as server-sent events ([`events`]) |
//! | `POST /v1/webhooks`, `GET /v1/webhooks/deliveries`, `POST /v1/webhooks/deliveries/{id}/replay` | webhook endpoints and their deliveries, kept by the batch backend |
//!
//! Errors are tessera-core's [`ErrorBody`](tessera_core::error::ErrorBody) `{code, message}`:
//! 4xx with a stable code for the client's mistakes, 5xx logged with details and answered
//! without them.
//!
//! | file | what |
//! |---|---|
//! | [`config`] | every configuration variable, named, defaulted and documented once |
//! | [`routes`](Edge) | the router: CORS, auth, rate limit, the routes |
//! | `error.rs` | how a failure becomes an answer |
//! | [`wire`] | the answers' JSON types |
//! | [`store`] | the metadata [`Store`] trait, its SQL, its conformance suite |
//! | [`sqlite`], [`postgres`], `workers.rs` | the stores and glue of the two hosts: SQLite or PostgreSQL ([`metadata`] chooses by URL) and hyper natively ([`native`]), D1 and `fetch` on Workers |
//! | [`jobs`] | how the edge reaches the batch backend |
//! | [`events`] | a job's server-sent events: which frame, when |
//! | [`expiry`] | uploads whose URLs expired before completion, announced as `upload.expired` |
//! | [`posted`] | a job posted with its files (`multipart/form-data`), on the native hosts |
//! | [`openapi`] | the OpenAPI document |

use std::future::Future;

use http::{Request, Response};

pub use crate::config::{BackendConfig, Config, ConfigError};
pub use crate::events::JobEvents;
pub use crate::jobs::{Acted, Created, HttpJobs, Jobs, JobsError, Registered};
pub use crate::routes::{Admission, Admitted, ClientAddr, Edge, PostedJob, route_template};
pub use crate::store::{ExpiredUpload, MIGRATIONS, Store, StoreError, UploadRow, conformance};
pub use crate::wire::{
    Download, ImageAnswer, SearchPage, UploadCompleted, UploadCreated, UploadTarget,
};

pub mod config;
mod error;
pub mod events;
pub mod expiry;
pub mod jobs;
#[cfg(not(target_arch = "wasm32"))]
pub mod metadata;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod openapi;
#[cfg(not(target_arch = "wasm32"))]
pub mod posted;
#[cfg(not(target_arch = "wasm32"))]
pub mod postgres;
mod routes;
#[cfg(not(target_arch = "wasm32"))]
pub mod sqlite;
pub mod store;
pub mod wire;
#[cfg(target_arch = "wasm32")]
mod workers;

/// An outgoing request that got no HTTP answer.
#[derive(Debug, thiserror::Error)]
#[error("{method} {url}: {detail}")]
pub struct OutboundError {
    /// The request's method.
    pub method: http::Method,
    /// The request's URL without its query (which may hold a signature).
    pub url: String,
    /// What the HTTP client reported.
    pub detail: String,
}

impl OutboundError {
    /// The error of a `method` request to `uri` (its query left out), with the client's
    /// message.
    pub fn of(method: &http::Method, uri: &http::Uri, detail: impl std::fmt::Display) -> Self {
        Self {
            method: method.clone(),
            url: format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map_or("", |a| a.as_str()),
                uri.path()
            ),
            detail: detail.to_string(),
        }
    }
}

/// Outgoing HTTP: `fetch` on Workers, reqwest natively.
pub trait Outbound {
    /// Sends a request and returns the whole response; `Err` only when there is no answer.
    fn send(
        &self,
        request: Request<Vec<u8>>,
    ) -> impl Future<Output = Result<Response<Vec<u8>>, OutboundError>>;
}
