//! The edge API's answers on the wire (JSON, described in the OpenAPI document by the same
//! types). Requests are tessera-core's ([`tessera_core::upload::UploadRequest`]); errors are
//! [`tessera_core::error::ErrorBody`].

use serde::{Deserialize, Serialize};
use tessera_core::Manifest;
use tessera_core::presign::PresignedRequest;
use utoipa::ToSchema;

/// One object to upload, in the answer to `POST /v1/uploads`: PUT the bytes to `url` with
/// exactly `headers`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadTarget {
    /// The image the object belongs to.
    pub image_id: String,
    /// Which object.
    pub kind: tessera_core::ObjectKind,
    /// Its key in storage.
    pub key: String,
    /// The presigned PUT.
    #[serde(flatten)]
    pub request: PresignedRequest,
}

/// `201` answer to `POST /v1/uploads`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadCreated {
    /// Pass to `POST /v1/uploads/{id}/complete` once every object is stored.
    pub upload_id: String,
    /// Six per image: original, processed, augmented 90/180/270/360.
    pub objects: Vec<UploadTarget>,
}

/// `200` answer to `POST /v1/uploads/{id}/complete` (the same every time it is called).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadCompleted {
    /// The upload.
    pub upload_id: String,
    /// The batch job it triggered; poll `GET /v1/jobs/{job_id}`.
    pub job_id: String,
    /// The recorded images.
    pub images: Vec<String>,
}

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
