//! One error vocabulary for every Tessera surface: the edge API, the batch job API, the
//! command line's failure summaries and the page. Each failure has a stable
//! [`ErrorCode`] (snake_case on the wire) that clients branch on, and a message in plain
//! words with the value and the limit that people read; an HTTP answer carries both in an
//! [`ErrorBody`]. Messages may be reworded; codes never change meaning.

use serde::{Deserialize, Serialize};

/// Every stable machine-readable error code, grouped by where it arises. Serialised in
/// snake_case (`ErrorCode::TooManyPixels` is `"too_many_pixels"`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    // A file refused by preprocessing (crate::PreprocessError), in the page and the CLI.
    /// Larger than the size limit.
    TooLarge,
    /// Not a JPEG, PNG or TIFF by its magic bytes.
    UnsupportedType,
    /// A side longer than the limit.
    SideTooLong,
    /// More pixels than the limit (a likely decompression bomb).
    TooManyPixels,
    /// A header claiming zero width or height.
    EmptyImage,
    /// Truncated or damaged data.
    Corrupt,
    /// A valid file using a feature the codecs lack.
    UnsupportedFeature,
    /// A derivative could not be encoded.
    EncodeFailed,
    /// The file could not be read from disk (CLI).
    Unreadable,
    /// An output could not be written to disk (CLI).
    Unwritable,
    /// Options the caller passed are invalid (the wasm bindings' options object).
    BadOptions,

    // A refused upload request (crate::upload::UploadError).
    /// The body is not the expected JSON.
    InvalidJson,
    /// The project name is not `[a-z0-9-]`, 1 to 64 characters.
    InvalidProject,
    /// No files, or more than the policy allows.
    FileCount,
    /// A file's objects are not one of each kind.
    ObjectSet,
    /// A declared content type is not allowed.
    ContentType,
    /// A declared object size is out of range.
    ObjectSize,
    /// A declared SHA-256 is malformed.
    Checksum,
    /// A file name is empty or too long.
    FileName,
    /// A declared EXIF date or GPS position is outside what a camera records.
    InvalidMetadata,
    /// `complete` found objects missing or different from what was declared.
    ObjectsNotUploaded,

    // A refused search (crate::search::QueryError).
    /// A query parameter the API does not have.
    UnknownParameter,
    /// A query parameter given twice.
    RepeatedParameter,
    /// A query parameter's value is invalid.
    InvalidParameter,
    // A refused job request (crate::job_inputs::JobInputsError).
    /// Not exactly one way of naming a job's inputs, none, or more than a job takes.
    JobInputs,
    /// Named images or uploads that the project has no record of (listed in the message).
    InputsNotFound,
    // A refused webhook request (crate::webhook::WebhookRequestError).
    /// A webhook endpoint or delivery query that is refused: its URL (not https, or a
    /// loopback, private or link-local address), its events, its project or a parameter.
    Webhook,

    // Access.
    /// No API key, or an unknown one.
    Unauthorized,
    /// The API key does not reach the project the request concerns.
    Forbidden,
    /// The key's rate limit is spent; see `Retry-After`.
    RateLimited,
    /// The request body is over the limit.
    BodyTooLarge,
    /// The request body did not arrive in time.
    RequestTimeout,
    /// The path exists but not with this method; see `Allow`.
    MethodNotAllowed,

    // Things that do not exist.
    /// No such route.
    NotFound,
    /// No such upload.
    UploadNotFound,
    /// No such image.
    ImageNotFound,
    /// No such job.
    JobNotFound,
    /// No such webhook delivery.
    DeliveryNotFound,

    // A change a job's state does not allow (cancelling a finished job, retrying a running one).
    /// The job's state does not allow the change.
    JobStateConflict,

    // Failures that are not the client's.
    /// The batch backend did not accept a job; completing again retries.
    JobTriggerFailed,
    /// The batch backend did not report a job; asking again retries.
    JobStatusUnavailable,
    /// Anything else; details are logged, never answered.
    Internal,
}

impl ErrorCode {
    /// The code as written on the wire, e.g. `"too_many_pixels"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::UnsupportedType => "unsupported_type",
            Self::SideTooLong => "side_too_long",
            Self::TooManyPixels => "too_many_pixels",
            Self::EmptyImage => "empty_image",
            Self::Corrupt => "corrupt",
            Self::UnsupportedFeature => "unsupported_feature",
            Self::EncodeFailed => "encode_failed",
            Self::Unreadable => "unreadable",
            Self::Unwritable => "unwritable",
            Self::BadOptions => "bad_options",
            Self::InvalidJson => "invalid_json",
            Self::InvalidProject => "invalid_project",
            Self::FileCount => "file_count",
            Self::ObjectSet => "object_set",
            Self::ContentType => "content_type",
            Self::ObjectSize => "object_size",
            Self::Checksum => "checksum",
            Self::FileName => "file_name",
            Self::InvalidMetadata => "invalid_metadata",
            Self::ObjectsNotUploaded => "objects_not_uploaded",
            Self::UnknownParameter => "unknown_parameter",
            Self::RepeatedParameter => "repeated_parameter",
            Self::InvalidParameter => "invalid_parameter",
            Self::JobInputs => "job_inputs",
            Self::InputsNotFound => "inputs_not_found",
            Self::Webhook => "webhook",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::BodyTooLarge => "body_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotFound => "not_found",
            Self::UploadNotFound => "upload_not_found",
            Self::ImageNotFound => "image_not_found",
            Self::JobNotFound => "job_not_found",
            Self::DeliveryNotFound => "delivery_not_found",
            Self::JobStateConflict => "job_state_conflict",
            Self::JobTriggerFailed => "job_trigger_failed",
            Self::JobStatusUnavailable => "job_status_unavailable",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status an API answers with this code (RFC 9110 semantics): 400 for a bad
    /// request or file, 401, 403, 404, 405, 408, 409 for objects that are not as declared or a job state change not allowed, 413, 429, 502
    /// when the batch backend failed, 500 otherwise.
    #[must_use]
    pub fn http_status(self) -> u16 {
        match self {
            Self::TooLarge | Self::BodyTooLarge => 413,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::RateLimited => 429,
            Self::NotFound
            | Self::UploadNotFound
            | Self::ImageNotFound
            | Self::JobNotFound
            | Self::DeliveryNotFound
            | Self::InputsNotFound => 404,
            Self::ObjectsNotUploaded | Self::JobStateConflict => 409,
            Self::JobTriggerFailed | Self::JobStatusUnavailable => 502,
            Self::Internal | Self::EncodeFailed | Self::Unreadable | Self::Unwritable => 500,
            Self::UnsupportedType
            | Self::SideTooLong
            | Self::TooManyPixels
            | Self::EmptyImage
            | Self::Corrupt
            | Self::UnsupportedFeature
            | Self::BadOptions
            | Self::InvalidJson
            | Self::InvalidProject
            | Self::FileCount
            | Self::ObjectSet
            | Self::ContentType
            | Self::ObjectSize
            | Self::Checksum
            | Self::FileName
            | Self::InvalidMetadata
            | Self::UnknownParameter
            | Self::RepeatedParameter
            | Self::InvalidParameter
            | Self::JobInputs
            | Self::Webhook => 400,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem with one stored object, listed by an `objects_not_uploaded` error.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectProblem {
    /// The object's key.
    pub key: String,
    /// `missing`, or what differs: `size 10 instead of 12`, `sha256 … instead of …`.
    // The Display of crate::upload::StoredProblem (this text is the API's description).
    pub problem: String,
}

/// Every API error's body: `{"code": "rate_limited", "message": "too many requests; retry in
/// 0.4 s"}`, with `objects` for `objects_not_uploaded`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// What went wrong, in plain words, with the value and the limit.
    pub message: String,
    /// For `objects_not_uploaded`: each missing or differing object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<Vec<ObjectProblem>>,
}

impl ErrorBody {
    /// A body with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            objects: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_written_in_snake_case_both_ways() {
        for code in [
            ErrorCode::TooManyPixels,
            ErrorCode::ObjectsNotUploaded,
            ErrorCode::JobStatusUnavailable,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn a_body_without_objects_leaves_the_field_out() {
        let body = ErrorBody::new(ErrorCode::RateLimited, "slow down");
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"code": "rate_limited", "message": "slow down"})
        );
    }
}
