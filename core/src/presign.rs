//! Presigned S3 requests (AWS Signature Version 4, query-string authentication) built with
//! `aws-sigv4`. The clock is an argument: the core has none, and `SystemTime::now()` panics on
//! `wasm32-unknown-unknown`.
//!
//! Source: "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)", Amazon
//! S3 API Reference. Signing settings follow S3's rules: the path is percent-encoded once
//! (`PercentEncodingMode::Single`), never normalised, and the payload is `UNSIGNED-PAYLOAD`;
//! integrity comes from the signed `x-amz-checksum-sha256` header instead.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningInstructions, SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

/// The longest validity SigV4 allows for a presigned URL: 7 days (604,800 s).
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(604_800);

/// Why a request could not be presigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PresignError {
    /// `expires_in` is zero or longer than [`MAX_EXPIRES_IN`].
    #[error("expires_in is {expires_in_s} s; it must be 1 to {max_s} s")]
    BadExpiry {
        /// The requested validity in seconds.
        expires_in_s: u64,
        /// The limit in seconds.
        max_s: u64,
    },
    /// The endpoint is not an absolute `http://` or `https://` URL without path or query.
    #[error("storage endpoint {0:?} must look like https://host[:port]")]
    BadEndpoint(String),
    /// `aws-sigv4` refused the request.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// How the bucket appears in URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Addressing {
    /// `https://endpoint/bucket/key`: local servers, R2, MinIO-style.
    Path,
    /// `https://bucket.endpoint/key`: AWS S3's default.
    VirtualHost,
}

/// Where objects live and how to sign for them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageTarget {
    /// `scheme://host[:port]`, e.g. `https://s3.us-east-1.amazonaws.com` or
    /// `http://127.0.0.1:9000`; no trailing slash, path or query.
    pub endpoint: String,
    /// The bucket name.
    pub bucket: String,
    /// The signing region, e.g. `us-east-1`, or `auto` for R2.
    pub region: String,
    /// Path-style or virtual-hosted-style URLs.
    pub addressing: Addressing,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for StorageTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageTarget")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("addressing", &self.addressing)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// The HTTP methods Tessera presigns.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// Download an object.
    Get,
    /// Upload an object.
    Put,
    /// Read an object's size and checksum without its body.
    Head,
}

impl Method {
    /// `GET`, `PUT` or `HEAD`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
            Self::Head => "HEAD",
        }
    }
}

/// A presigned request: send `method` to `url` with exactly `headers`, before `expires_at`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignedRequest {
    /// The HTTP method.
    pub method: Method,
    /// The full URL, signature in the query string.
    pub url: String,
    /// Headers that were signed (names lower-case); the request must carry them with these
    /// values or storage refuses it. `host` is implied by the URL and not listed. Each entry
    /// is `[name, value]`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<String>>))]
    pub headers: Vec<(String, String)>,
    /// When the signature stops being accepted, in unix seconds.
    #[serde(with = "unix_seconds")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub expires_at: SystemTime,
}

mod unix_seconds {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(UNIX_EPOCH + Duration::from_secs(u64::deserialize(d)?))
    }
}

/// Characters S3 keeps unescaped in a key path (RFC 3986 unreserved, plus `/` between
/// segments): everything else is percent-encoded once.
const KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

impl StorageTarget {
    /// The unsigned URL of `key`.
    ///
    /// # Errors
    /// [`PresignError::BadEndpoint`] when the endpoint is not `http(s)://host[:port]`.
    pub fn object_url(&self, key: &str) -> Result<String, PresignError> {
        let bad = || PresignError::BadEndpoint(self.endpoint.clone());
        let (scheme, host) = self.endpoint.split_once("://").ok_or_else(bad)?;
        if !matches!(scheme, "http" | "https") || host.is_empty() || host.contains(['/', '?', '#'])
        {
            return Err(bad());
        }
        let path = utf8_percent_encode(key.trim_start_matches('/'), KEY_ESCAPES);
        Ok(match self.addressing {
            Addressing::Path => format!("{scheme}://{host}/{}/{path}", self.bucket),
            Addressing::VirtualHost => format!("{scheme}://{}.{host}/{path}", self.bucket),
        })
    }

    /// Presigns `method` on `key` at `now`, valid for `expires_in`, with `signed_headers`
    /// (e.g. `content-type`, `content-length`, `x-amz-checksum-sha256`) bound into the
    /// signature so that storage refuses a request whose headers differ.
    ///
    /// # Errors
    /// [`PresignError`] for a bad expiry or endpoint, or a signing failure.
    pub fn presign(
        &self,
        method: Method,
        key: &str,
        signed_headers: &[(&str, &str)],
        expires_in: Duration,
        now: SystemTime,
    ) -> Result<PresignedRequest, PresignError> {
        if expires_in.is_zero() || expires_in > MAX_EXPIRES_IN {
            return Err(PresignError::BadExpiry {
                expires_in_s: expires_in.as_secs(),
                max_s: MAX_EXPIRES_IN.as_secs(),
            });
        }
        let url = self.object_url(key)?;
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires_in);
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
        let (instructions, headers) =
            self.sign_with(settings, method, &url, signed_headers, now)?;
        let query: Vec<String> = instructions
            .params()
            .iter()
            .map(|(name, value)| {
                format!(
                    "{name}={}",
                    utf8_percent_encode(value, KEY_ESCAPES)
                        .to_string()
                        .replace('/', "%2F")
                )
            })
            .collect();
        Ok(PresignedRequest {
            method,
            url: format!("{url}?{}", query.join("&")),
            headers,
            expires_at: now + expires_in,
        })
    }

    /// A request for `key` signed in its headers (SigV4's `Authorization`, `x-amz-date`,
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD`), for the service's own calls to storage.
    /// Unlike a presigned URL, every header in `signed_headers` is signed: aws-sigv4 leaves
    /// `x-amz-checksum-mode` out of presigned URLs, as AWS accepts it unsigned there, while
    /// other S3 servers (SeaweedFS) refuse any unsigned `x-amz-*` header. The answer's
    /// `headers` are all the request must carry; it is valid for 15 minutes from `now`
    /// (SigV4's clock skew allowance).
    ///
    /// # Errors
    /// [`PresignError`] for a key that is not a valid path or a signing failure.
    pub fn sign(
        &self,
        method: Method,
        key: &str,
        signed_headers: &[(&str, &str)],
        now: SystemTime,
    ) -> Result<PresignedRequest, PresignError> {
        let url = self.object_url(key)?;
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let (instructions, mut headers) =
            self.sign_with(settings, method, &url, signed_headers, now)?;
        headers.extend(
            instructions
                .headers()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned())),
        );
        Ok(PresignedRequest {
            method,
            url,
            headers,
            expires_at: now + Duration::from_secs(15 * 60),
        })
    }

    /// Signs `method` on `url` with `signed_headers` (names lower-cased) under `settings`,
    /// with S3's rules: single percent-encoding, no path normalisation, an unsigned payload.
    /// Returns what to add to the request and the signed headers.
    fn sign_with(
        &self,
        mut settings: SigningSettings,
        method: Method,
        url: &str,
        signed_headers: &[(&str, &str)],
        now: SystemTime,
    ) -> Result<(SigningInstructions, Vec<(String, String)>), PresignError> {
        let identity = Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            None,
            None,
            "tessera",
        )
        .into();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| PresignError::Signing(e.to_string()))?
            .into();
        let headers: Vec<(String, String)> = signed_headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), (*value).to_owned()))
            .collect();
        let request = SignableRequest::new(
            method.as_str(),
            Cow::Borrowed(url),
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| PresignError::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| PresignError::Signing(e.to_string()))?
            .into_parts();
        Ok((instructions, headers))
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn a_request_signed_in_headers_signs_every_header_it_carries() {
        let signed = aws_example()
            .sign(
                Method::Head,
                "test.txt",
                &[("x-amz-checksum-mode", "ENABLED")],
                UNIX_EPOCH + Duration::from_secs(1_369_353_600),
            )
            .unwrap();
        assert_eq!(
            signed.url,
            "https://examplebucket.s3.amazonaws.com/test.txt"
        );
        let header = |name: &str| {
            signed
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-amz-checksum-mode"), Some("ENABLED"));
        assert_eq!(header("x-amz-content-sha256"), Some("UNSIGNED-PAYLOAD"));
        assert_eq!(header("x-amz-date"), Some("20130524T000000Z"));
        let authorization = header("authorization").unwrap();
        assert!(
            authorization.contains(
                "SignedHeaders=host;x-amz-checksum-mode;x-amz-content-sha256;x-amz-date,"
            ),
            "{authorization}"
        );
    }

    fn aws_example() -> StorageTarget {
        StorageTarget {
            endpoint: "https://s3.amazonaws.com".into(),
            bucket: "examplebucket".into(),
            region: "us-east-1".into(),
            addressing: Addressing::VirtualHost,
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        }
    }

    /// 2013-05-24T00:00:00Z, the example's time.
    fn may_24_2013() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    /// The presigned-URL example of the S3 API Reference, "Authenticating Requests: Using Query
    /// Parameters (AWS Signature Version 4)", byte for byte.
    #[test]
    fn reproduces_the_aws_published_presigned_url() {
        let presigned = aws_example()
            .presign(
                Method::Get,
                "test.txt",
                &[],
                Duration::from_secs(86_400),
                may_24_2013(),
            )
            .unwrap();
        assert_eq!(
            presigned.url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
        assert_eq!(
            presigned.expires_at,
            may_24_2013() + Duration::from_secs(86_400)
        );
    }

    #[test]
    fn signed_headers_are_bound_and_listed() {
        let target = StorageTarget {
            endpoint: "http://127.0.0.1:9000".into(),
            addressing: Addressing::Path,
            ..aws_example()
        };
        let headers = [
            ("Content-Type", "image/jpeg"),
            ("Content-Length", "1234"),
            (
                "x-amz-checksum-sha256",
                "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            ),
        ];
        let put = target
            .presign(
                Method::Put,
                "processed/p/i/p_a_20260101_256x256.jpg",
                &headers,
                Duration::from_secs(900),
                may_24_2013(),
            )
            .unwrap();
        assert!(
            put.url.starts_with(
                "http://127.0.0.1:9000/examplebucket/processed/p/i/p_a_20260101_256x256.jpg?"
            ),
            "{}",
            put.url
        );
        assert!(
            put.url.contains(
                "X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bx-amz-checksum-sha256"
            ),
            "{}",
            put.url
        );
        assert_eq!(
            put.headers[0],
            ("content-type".to_owned(), "image/jpeg".to_owned())
        );
        // Any change of a signed header changes the signature.
        let other = target
            .presign(
                Method::Put,
                "processed/p/i/p_a_20260101_256x256.jpg",
                &[("content-type", "image/png"), headers[1], headers[2]],
                Duration::from_secs(900),
                may_24_2013(),
            )
            .unwrap();
        assert_ne!(signature(&put.url), signature(&other.url));
    }

    fn signature(url: &str) -> &str {
        url.rsplit("X-Amz-Signature=").next().unwrap()
    }

    #[test]
    fn refuses_bad_expiry_and_endpoints() {
        let target = aws_example();
        assert!(matches!(
            target.presign(
                Method::Get,
                "k",
                &[],
                Duration::from_secs(604_801),
                may_24_2013()
            ),
            Err(PresignError::BadExpiry { max_s: 604_800, .. })
        ));
        assert!(
            target
                .presign(Method::Get, "k", &[], Duration::ZERO, may_24_2013())
                .is_err()
        );
        for endpoint in ["s3.amazonaws.com", "ftp://x", "https://x/path", "https://"] {
            let bad = StorageTarget {
                endpoint: endpoint.into(),
                ..aws_example()
            };
            assert!(
                matches!(bad.object_url("k"), Err(PresignError::BadEndpoint(_))),
                "{endpoint}"
            );
        }
    }

    #[test]
    fn keys_are_percent_encoded_once() {
        let target = StorageTarget {
            addressing: Addressing::Path,
            ..aws_example()
        };
        assert_eq!(
            target.object_url("a b/c+d/é.jpg").unwrap(),
            "https://s3.amazonaws.com/examplebucket/a%20b/c%2Bd/%C3%A9.jpg"
        );
    }
}
