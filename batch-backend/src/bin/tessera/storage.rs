//! The local stack's S3-compatible storage: s3s-fs (objects under `{data}/s3/{bucket}/`) with
//! SigV4 enforced, behind the guards that make it keep the promises Tessera relies on from S3
//! and R2:
//!
//! - **Verify before store.** s3s-fs 0.14.1 renames a new object into place before it compares
//!   the body with `x-amz-checksum-*` or `Content-MD5`, so a PUT that fails its checksum
//!   still replaces the object. [`VerifiedFs`] reads a PutObject body whole (objects here
//!   are at most [`MAX_PUT_BYTES`]), checks every checksum the request carries, and only then
//!   hands the bytes to s3s-fs. A presigned PUT signs `x-amz-checksum-sha256`, so no other
//!   bytes can replace an object through its URL, before or after `complete`.
//! - **Only signed metadata is stored.** A write that carries a header S3 would store with the
//!   object without signing it is refused (`x-amz-meta-*`, `x-amz-website-redirect-location`,
//!   …) or has it dropped (`Content-Disposition`, `Cache-Control`, …), so a presigned URL
//!   cannot be used to attach them ([`unsigned_stored_headers`]).
//! - **Keys s3s-fs cannot hold are refused with 4xx**: `.`/`..` segments, a leading `/` or an
//!   empty segment (400), and a `GET`/`HEAD` of a key ending in `/` (404, no such object),
//!   instead of a 500 from the file system.
//! - CORS for the page's origins.
//! - **Object-created events.** After every successful write of an original (PutObject,
//!   CompleteMultipartUpload, CopyObject under `original-uploads/`), its key is sent on the
//!   channel `tessera up` settles arrivals from ([`tessera_batch::arrivals`]), as S3 or R2
//!   would send an event notification.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use s3s::crypto::Checksum as _;
use s3s::dto::{self, StreamingBlob};
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use tower::ServiceExt as _;

use crate::up::{Body, LocalCredentials};

/// The largest PutObject body the local storage takes, in bytes: 64 MiB. Bodies are verified
/// in memory before they are stored; Tessera's originals are at most 10 MiB, and S3 clients
/// send larger files as multipart uploads (the AWS CLI from 8 MiB).
pub(crate) const MAX_PUT_BYTES: usize = 64 * 1024 * 1024;

/// The storage as one HTTP service.
pub(crate) type StorageService =
    tower::util::BoxCloneService<Request<Incoming>, Response<Body>, std::io::Error>;

/// Where the storage sends the key of each original written.
pub(crate) type Created = tokio::sync::mpsc::UnboundedSender<String>;

/// The S3-compatible service: CORS for `origins`, the request guards, then [`VerifiedFs`] over
/// `root` with SigV4 for `credentials`, sending the key of every original written on
/// `created`.
///
/// # Errors
/// When `root` cannot be opened or an origin is not a valid header value.
pub(crate) fn storage_service(
    root: &Path,
    credentials: &LocalCredentials,
    origins: &[String],
    created: Created,
) -> anyhow::Result<StorageService> {
    let fs = s3s_fs::FileSystem::new(root)
        .map_err(|e| anyhow::anyhow!("storage at {}: {e:?}", root.display()))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(VerifiedFs { fs, created });
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        credentials.access_key_id.as_str(),
        credentials.secret_access_key.as_str(),
    ));
    let s3 = builder.build();
    let guarded = tower::service_fn(move |mut request: Request<Incoming>| {
        let s3 = s3.clone();
        async move {
            if has_dot_segment(request.uri().path()) {
                return Ok(refusal(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "object keys with '.' or '..' segments are refused",
                ));
            }
            if matches!(*request.method(), Method::PUT | Method::POST) {
                let unsigned = unsigned_stored_headers(request.uri(), request.headers());
                if let Some(name) = unsigned.iter().find(|n| n.as_str().starts_with("x-amz-")) {
                    return Ok(refusal(
                        StatusCode::FORBIDDEN,
                        "AccessDenied",
                        &format!("header {name} would be stored with the object but is not signed"),
                    ));
                }
                for name in unsigned {
                    request.headers_mut().remove(name);
                }
            }
            s3.call(request.map(s3s::Body::from)).await
        }
    });
    let origins: Vec<HeaderValue> = origins
        .iter()
        .map(|o| HeaderValue::from_str(o))
        .collect::<Result<_, _>>()?;
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::PUT, Method::HEAD])
        .allow_headers(tower_http::cors::Any)
        .expose_headers([header::ETAG])
        .max_age(Duration::from_secs(3600));
    Ok(tower::util::BoxCloneService::new(
        tower::ServiceBuilder::new()
            .layer(cors)
            .service(guarded)
            .map_response(|response| {
                response.map(|body| {
                    body.map_err(|e| std::io::Error::other(e.to_string()))
                        .boxed_unsync()
                })
            })
            .map_err(|e| std::io::Error::other(format!("{e:?}"))),
    ))
}

/// An S3 error document (`<Error><Code>…`) with `status`.
fn refusal(status: StatusCode, code: &str, message: &str) -> Response<s3s::Body> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message></Error>",
        message.replace('&', "&amp;").replace('<', "&lt;")
    );
    let mut response = Response::new(s3s::Body::from(xml));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

/// Whether a request path has a `.` or `..` segment, raw or percent-encoded (s3s-fs would
/// resolve it outside the bucket's folder).
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        decoded == "." || decoded == ".." || decoded.contains(['/', '\\'])
    })
}

/// The headers of a write that S3 stores with the object (system metadata, user metadata,
/// ACLs, tags, storage options) but that the request's SigV4 signature does not cover, read
/// from `X-Amz-SignedHeaders` (presigned) or the `Authorization` header's `SignedHeaders=`.
/// As S3 does, the storage refuses such `x-amz-*` headers (403); unlike S3, which stores
/// unsigned `Content-*`, `Cache-Control` and `Expires`, it drops them, so a presigned URL
/// cannot attach a `Content-Disposition` to an object, while a browser that adds
/// `Cache-Control: no-cache` to its PUT (as Chromium does with its cache disabled) still works.
fn unsigned_stored_headers(uri: &http::Uri, headers: &HeaderMap) -> Vec<http::HeaderName> {
    let from_query = uri.query().and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name.eq_ignore_ascii_case("x-amz-signedheaders"))
            .map(|(_, value)| value.into_owned())
    });
    let from_authorization = || {
        let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (_, rest) = authorization.split_once("SignedHeaders=")?;
        Some(rest.split([',', ' ']).next()?.to_owned())
    };
    let signed = from_query.or_else(from_authorization).unwrap_or_default();
    let signed: Vec<&str> = signed.split(';').collect();
    headers
        .keys()
        .filter(|name| is_stored_header(name.as_str()))
        .filter(|name| !signed.iter().any(|s| s.eq_ignore_ascii_case(name.as_str())))
        .cloned()
        .collect()
}

/// Whether S3 keeps header `name` (lower case) with the object it writes.
fn is_stored_header(name: &str) -> bool {
    matches!(
        name,
        "content-encoding"
            | "content-disposition"
            | "content-language"
            | "cache-control"
            | "expires"
            | "x-amz-website-redirect-location"
            | "x-amz-tagging"
            | "x-amz-acl"
            | "x-amz-storage-class"
    ) || [
        "x-amz-meta-",
        "x-amz-grant-",
        "x-amz-server-side-encryption",
        "x-amz-object-lock-",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

/// A key s3s-fs cannot hold as a file: a leading `/` or an empty segment. 400.
fn check_key(key: &str) -> S3Result<()> {
    if key.starts_with('/') || key.contains("//") {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "object keys with a leading '/' or an empty segment are not supported here",
        ));
    }
    Ok(())
}

/// [`check_key`], and 404 for a key ending in `/`: a prefix, which holds no object here.
fn check_read_key(key: &str) -> S3Result<()> {
    check_key(key)?;
    if key.is_empty() || key.ends_with('/') {
        return Err(s3_error!(NoSuchKey));
    }
    Ok(())
}

/// s3s-fs with PutObject verified before anything is written (see the module's text); every
/// other operation is s3s-fs's own, after [`check_key`]. Originals written are announced on
/// `created`.
#[derive(Debug)]
pub(crate) struct VerifiedFs {
    fs: s3s_fs::FileSystem,
    created: Created,
}

impl VerifiedFs {
    /// Announces `key` when it is under `original-uploads/` and `written` succeeded.
    fn announce<T>(&self, key: &str, written: S3Result<T>) -> S3Result<T> {
        if written.is_ok() && key.starts_with(tessera_core::arrival::ORIGINALS_PREFIX) {
            // Closed only while the stack stops; reconciliation settles what was missed.
            let _ = self.created.send(key.to_owned());
        }
        written
    }
}

/// Reads a PutObject body whole, refusing one over [`MAX_PUT_BYTES`] as soon as it is.
async fn read_body(mut body: StreamingBlob) -> S3Result<Bytes> {
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| S3Error::with_message(S3ErrorCode::IncompleteBody, e.to_string()))?;
        if bytes.len() + chunk.len() > MAX_PUT_BYTES {
            return Err(S3Error::with_message(
                S3ErrorCode::EntityTooLarge,
                format!(
                    "PutObject bodies are limited to {MAX_PUT_BYTES} bytes here; use a multipart upload"
                ),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

/// The checksums a PutObject declares, by algorithm: base64 of the digest, from the
/// request's headers (`x-amz-checksum-*`, `Content-MD5`) or, for aws-chunked bodies, its
/// trailers.
#[derive(Debug, Default)]
struct DeclaredChecksums {
    sha256: Option<String>,
    sha1: Option<String>,
    crc32: Option<String>,
    crc32c: Option<String>,
    crc64nvme: Option<String>,
    md5: Option<String>,
}

impl DeclaredChecksums {
    fn of(input: &dto::PutObjectInput, trailers: Option<&s3s::TrailingHeaders>) -> Self {
        let trailer = |name: &str| {
            trailers.and_then(|t| {
                t.read(|t| t.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned))
                    .flatten()
            })
        };
        Self {
            sha256: trailer("x-amz-checksum-sha256").or_else(|| input.checksum_sha256.clone()),
            sha1: trailer("x-amz-checksum-sha1").or_else(|| input.checksum_sha1.clone()),
            crc32: trailer("x-amz-checksum-crc32").or_else(|| input.checksum_crc32.clone()),
            crc32c: trailer("x-amz-checksum-crc32c").or_else(|| input.checksum_crc32c.clone()),
            crc64nvme: trailer("x-amz-checksum-crc64nvme")
                .or_else(|| input.checksum_crc64nvme.clone()),
            md5: input.content_md5.clone(),
        }
    }

    /// Checks `bytes` against every declared checksum, as S3 does before it commits a
    /// PutObject.
    fn verify(&self, bytes: &[u8]) -> S3Result<()> {
        use base64::Engine as _;
        use s3s::crypto::{Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};
        fn b64(digest: impl AsRef<[u8]>) -> String {
            base64::engine::general_purpose::STANDARD.encode(digest)
        }
        type Digest = fn(&[u8]) -> String;
        let checks: [(&str, &Option<String>, Digest); 6] = [
            ("SHA-256", &self.sha256, |b| b64(Sha256::checksum(b))),
            ("SHA-1", &self.sha1, |b| b64(Sha1::checksum(b))),
            ("CRC32", &self.crc32, |b| b64(Crc32::checksum(b))),
            ("CRC32C", &self.crc32c, |b| b64(Crc32c::checksum(b))),
            ("CRC64NVME", &self.crc64nvme, |b| {
                b64(Crc64Nvme::checksum(b))
            }),
            ("MD5", &self.md5, |b| b64(Md5::checksum(b))),
        ];
        for (name, declared, digest) in checks {
            if let Some(declared) = declared {
                let actual = digest(bytes);
                if actual != *declared {
                    return Err(S3Error::with_message(
                        S3ErrorCode::BadDigest,
                        format!(
                            "the body's {name} is {actual}, not the declared {declared}; nothing was stored"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Implements `S3` for [`VerifiedFs`]: `put_object` as written in the macro's call, the listed
/// operations passed to s3s-fs after [`check_key`] (or [`check_read_key`]) of the request's
/// key, and the rest passed on as they are.
macro_rules! verified_fs {
    (
        custom { $($custom:item)* }
        read_keyed { $($read:ident($read_in:ident) -> $read_out:ident;)* }
        keyed { $($keyed:ident($keyed_in:ident) -> $keyed_out:ident;)* }
        plain { $($plain:ident($plain_in:ident) -> $plain_out:ident;)* }
    ) => {
        #[async_trait::async_trait]
        impl S3 for VerifiedFs {
            $($custom)*
            $(
                async fn $read(
                    &self,
                    req: S3Request<dto::$read_in>,
                ) -> S3Result<S3Response<dto::$read_out>> {
                    check_read_key(&req.input.key)?;
                    self.fs.$read(req).await
                }
            )*
            $(
                async fn $keyed(
                    &self,
                    req: S3Request<dto::$keyed_in>,
                ) -> S3Result<S3Response<dto::$keyed_out>> {
                    check_key(&req.input.key)?;
                    self.fs.$keyed(req).await
                }
            )*
            $(
                async fn $plain(
                    &self,
                    req: S3Request<dto::$plain_in>,
                ) -> S3Result<S3Response<dto::$plain_out>> {
                    self.fs.$plain(req).await
                }
            )*
        }
    };
}

verified_fs! {
    custom {
        async fn put_object(
            &self,
            mut req: S3Request<dto::PutObjectInput>,
        ) -> S3Result<S3Response<dto::PutObjectOutput>> {
            check_key(&req.input.key)?;
            let body = req.input.body.take().ok_or_else(|| s3_error!(IncompleteBody))?;
            let bytes = read_body(body).await?;
            // With aws-chunked bodies the checksum is a trailer, ready once the body has
            // been read (s3s-fs reads the same trailers again).
            DeclaredChecksums::of(&req.input, req.trailing_headers.as_ref()).verify(&bytes)?;
            req.input.body = Some(StreamingBlob::from(s3s::Body::from(bytes)));
            let key = req.input.key.clone();
            let written = self.fs.put_object(req).await;
            self.announce(&key, written)
        }

        async fn complete_multipart_upload(
            &self,
            req: S3Request<dto::CompleteMultipartUploadInput>,
        ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
            check_key(&req.input.key)?;
            let key = req.input.key.clone();
            let written = self.fs.complete_multipart_upload(req).await;
            self.announce(&key, written)
        }

        async fn copy_object(
            &self,
            req: S3Request<dto::CopyObjectInput>,
        ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
            check_key(&req.input.key)?;
            let key = req.input.key.clone();
            let written = self.fs.copy_object(req).await;
            self.announce(&key, written)
        }
    }
    read_keyed {
        get_object(GetObjectInput) -> GetObjectOutput;
        head_object(HeadObjectInput) -> HeadObjectOutput;
    }
    keyed {
        delete_object(DeleteObjectInput) -> DeleteObjectOutput;
        create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
        upload_part(UploadPartInput) -> UploadPartOutput;
        upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
        list_parts(ListPartsInput) -> ListPartsOutput;
        abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
    }
    plain {
        create_bucket(CreateBucketInput) -> CreateBucketOutput;
        delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
        delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
        get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
        head_bucket(HeadBucketInput) -> HeadBucketOutput;
        list_buckets(ListBucketsInput) -> ListBucketsOutput;
        list_objects(ListObjectsInput) -> ListObjectsOutput;
        list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_raw_and_encoded() {
        for path in [
            "/tessera/../etc/passwd",
            "/tessera/a/%2E%2E/b",
            "/tessera/a/%2e./b",
            "/tessera/./a",
            "/tessera/a%2F..%2Fb",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in [
            "/tessera/original-uploads/local/2024/a..b.jpg",
            "/tessera/a/.../b",
            "/",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }

    #[test]
    fn stored_headers_must_be_signed() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            map
        };
        let presigned: http::Uri =
            "/tessera/k?X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bx-amz-checksum-sha256&X-Amz-Signature=0"
                .parse()
                .unwrap();
        let sent = headers(&[
            ("content-type", "image/jpeg"),
            ("x-amz-checksum-sha256", "x"),
            ("user-agent", "curl"),
        ]);
        assert!(unsigned_stored_headers(&presigned, &sent).is_empty());
        for extra in [
            "content-disposition",
            "Cache-Control",
            "x-amz-meta-owner",
            "x-amz-website-redirect-location",
            "content-encoding",
        ] {
            let mut with = sent.clone();
            with.insert(
                http::HeaderName::from_bytes(extra.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
            let unsigned = unsigned_stored_headers(&presigned, &with);
            assert_eq!(unsigned.len(), 1, "{extra}");
            assert_eq!(unsigned[0].as_str(), extra.to_ascii_lowercase(), "{extra}");
        }
        let signed_in_header = headers(&[
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=K/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date;x-amz-meta-owner, Signature=0",
            ),
            ("x-amz-meta-owner", "me"),
        ]);
        let plain: http::Uri = "/tessera/k".parse().unwrap();
        assert!(unsigned_stored_headers(&plain, &signed_in_header).is_empty());
    }

    #[test]
    fn checksums_are_compared_before_anything_is_stored() {
        use base64::Engine as _;
        let body = b"the object's bytes";
        let sha256 =
            base64::engine::general_purpose::STANDARD.encode(s3s::crypto::Sha256::checksum(body));
        let mut declared = DeclaredChecksums {
            sha256: Some(sha256),
            ..DeclaredChecksums::default()
        };
        assert!(declared.verify(body).is_ok());
        let error = declared.verify(b"other bytes, same len").unwrap_err();
        assert_eq!(*error.code(), S3ErrorCode::BadDigest);
        declared.md5 = Some("AAAAAAAAAAAAAAAAAAAAAA==".into());
        assert!(
            declared.verify(body).is_err(),
            "a wrong Content-MD5 is refused too"
        );
    }

    #[test]
    fn keys_the_file_system_cannot_hold_are_refused() {
        assert!(check_key("original-uploads/local/a.jpg").is_ok());
        for key in ["/etc/passwd", "a//b"] {
            assert_eq!(
                *check_key(key).unwrap_err().code(),
                S3ErrorCode::InvalidArgument
            );
        }
        assert_eq!(
            *check_read_key("original-uploads/").unwrap_err().code(),
            S3ErrorCode::NoSuchKey
        );
    }
}
