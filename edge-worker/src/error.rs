//! How the router answers a failure: an [`ErrorBody`] from tessera-core's one vocabulary, the
//! HTTP status its [`ErrorCode`] names, and `Retry-After` when waiting helps. Failures that are
//! not the client's are logged with their details and answered without them.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;
use tessera_core::error::{ErrorBody, ErrorCode, ObjectProblem};

/// An API error on its way to becoming a response.
#[derive(Debug)]
pub(crate) struct ApiError {
    body: ErrorBody,
    retry_after_s: Option<u64>,
    allow: Option<&'static str>,
}

pub(crate) type ApiResult = Result<Response<Bytes>, ApiError>;

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            body: ErrorBody::new(code, message),
            retry_after_s: None,
            allow: None,
        }
    }

    /// `objects_not_uploaded`, listing each object.
    pub(crate) fn objects_not_uploaded(problems: Vec<ObjectProblem>) -> Self {
        let message = match problems.len() {
            1 => "1 object is missing or differs from what was declared".to_owned(),
            n => format!("{n} objects are missing or differ from what was declared"),
        };
        let mut error = Self::new(ErrorCode::ObjectsNotUploaded, message);
        error.body.objects = Some(problems);
        error
    }

    pub(crate) fn rate_limited(wait_s: f64) -> Self {
        Self {
            retry_after_s: Some(wait_s.ceil() as u64),
            ..Self::new(
                ErrorCode::RateLimited,
                format!("too many requests; retry in {wait_s:.1} s"),
            )
        }
    }

    /// `method_not_allowed` for a known `path`, with `Allow: allowed`.
    pub(crate) fn method_not_allowed(
        method: &http::Method,
        path: &str,
        allowed: &'static str,
    ) -> Self {
        Self {
            allow: Some(allowed),
            ..Self::new(
                ErrorCode::MethodNotAllowed,
                format!("{path} does not answer {method}; it answers {allowed}"),
            )
        }
    }

    pub(crate) fn body_too_large(max_body_bytes: usize) -> Self {
        Self::new(
            ErrorCode::BodyTooLarge,
            format!("request body is over the limit of {max_body_bytes} bytes"),
        )
    }

    /// A failure that is not the client's: logged with `context` and the details, answered
    /// `internal` without them.
    pub(crate) fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        log_error(context, error);
        Self::new(ErrorCode::Internal, "internal error; it has been logged")
    }

    pub(crate) fn into_response(self) -> Response<Bytes> {
        let status = StatusCode::from_u16(self.body.code.http_status())
            .expect("ErrorCode::http_status is a valid status");
        let mut response = json_response(status, &self.body);
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

impl From<crate::StoreError> for ApiError {
    fn from(e: crate::StoreError) -> Self {
        Self::internal("store", &e)
    }
}

impl From<crate::OutboundError> for ApiError {
    fn from(e: crate::OutboundError) -> Self {
        Self::internal("storage request", &e)
    }
}

/// Logs a failure whose details never reach the client.
pub(crate) fn log_error(context: &str, error: &dyn std::fmt::Display) {
    tracing::error!(context, %error, "request failed");
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Bytes> {
    let body = serde_json::to_vec(body).expect("API bodies serialise");
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
