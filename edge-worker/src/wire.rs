//! The edge API's answers on the wire (JSON, described in the OpenAPI document by the same
//! types). Requests are tessera-core's ([`tessera_core::upload::UploadRequest`]); errors are
//! [`tessera_core::error::ErrorBody`].

use serde::{Deserialize, Serialize};
use tessera_core::Manifest;
pub use tessera_core::upload::{UploadCompleted, UploadCreated, UploadTarget};
use utoipa::ToSchema;

/// `200` answer to `GET /v1/images`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchPage {
    /// Records in (date, id) order.
    pub images: Vec<Manifest>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A presigned download.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Download {
    /// The presigned GET URL.
    pub url: String,
    /// Unix seconds after which the URL is refused.
    pub expires_at: u64,
}

/// `200` answer to `GET /v1/images/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageAnswer {
    /// The record (the metadata sidecar).
    pub image: Manifest,
    /// A presigned GET per object key.
    pub downloads: std::collections::BTreeMap<String, Download>,
}
