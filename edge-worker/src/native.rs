//! The native host of the edge router: hyper HTTP/1.1 on a single-threaded tokio runtime
//! (run it inside a `tokio::task::LocalSet`), reqwest for outbound requests, configuration
//! from environment variables.

use std::convert::Infallible;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tessera_core::api::UploadPolicy;
use tessera_core::presign::{Addressing, StorageTarget};

use crate::{Config, Edge, HostError, Outbound, Store};

/// Outbound HTTP with reqwest.
#[derive(Debug, Clone, Default)]
pub struct ReqwestOutbound(reqwest::Client);

impl Outbound for ReqwestOutbound {
    async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, HostError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| HostError(format!("outbound {}: {e}", parts.uri)))?;
        let mut answer = Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| HostError(format!("outbound body: {e}")))?;
        answer
            .body(body.to_vec())
            .map_err(|e| HostError(e.to_string()))
    }
}

/// Reads the configuration from the environment (names in the README):
/// `TESSERA_S3_ENDPOINT`, `TESSERA_S3_BUCKET`, `TESSERA_S3_REGION` (default `us-east-1`),
/// `TESSERA_S3_ADDRESSING` (`path` or `virtual-host`, default `path`),
/// `TESSERA_S3_ACCESS_KEY_ID`, `TESSERA_S3_SECRET_ACCESS_KEY`, `TESSERA_API_KEY_HASHES`
/// (comma-separated SHA-256 hex), `TESSERA_CORS_ORIGINS` (comma-separated),
/// `TESSERA_BACKEND_URL`, `TESSERA_BACKEND_TOKEN`, and optional `TESSERA_MAX_BODY_BYTES`
/// (default 1 MiB), `TESSERA_RATE_BURST` (60), `TESSERA_RATE_PER_SECOND` (10).
///
/// # Errors
/// Names the missing or malformed variable.
pub fn config_from_env() -> Result<Config, String> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let or = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let number = |name: &str, default: &str| {
        or(name, default)
            .parse::<f64>()
            .map_err(|_| format!("{name} must be a number"))
    };
    let list = |name: &str| -> Vec<String> {
        or(name, "")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let addressing = match or("TESSERA_S3_ADDRESSING", "path").as_str() {
        "path" => Addressing::Path,
        "virtual-host" => Addressing::VirtualHost,
        other => {
            return Err(format!(
                "TESSERA_S3_ADDRESSING is {other:?}; use path or virtual-host"
            ));
        }
    };
    Ok(Config {
        storage: StorageTarget {
            endpoint: var("TESSERA_S3_ENDPOINT")?,
            bucket: var("TESSERA_S3_BUCKET")?,
            region: or("TESSERA_S3_REGION", "us-east-1"),
            addressing,
            access_key_id: var("TESSERA_S3_ACCESS_KEY_ID")?,
            secret_access_key: var("TESSERA_S3_SECRET_ACCESS_KEY")?,
        },
        policy: UploadPolicy::default(),
        get_expires_in: Duration::from_secs(300),
        api_key_hashes: list("TESSERA_API_KEY_HASHES"),
        cors_origins: list("TESSERA_CORS_ORIGINS"),
        max_body_bytes: number("TESSERA_MAX_BODY_BYTES", "1048576")? as usize,
        rate_burst: number("TESSERA_RATE_BURST", "60")?,
        rate_per_second: number("TESSERA_RATE_PER_SECOND", "10")?,
        backend_url: var("TESSERA_BACKEND_URL")?,
        backend_token: var("TESSERA_BACKEND_TOKEN")?,
    })
}

/// Serves `edge` on `listener` until `shutdown` resolves. Must run inside a
/// `tokio::task::LocalSet` on a current-thread runtime. Request bodies over the configured
/// limit are refused with 413 before they are read whole.
pub async fn serve<S, O>(
    listener: tokio::net::TcpListener,
    edge: Rc<Edge<S, O>>,
    shutdown: impl Future<Output = ()>,
) where
    S: Store + 'static,
    O: Outbound + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("tessera-edge: accept: {e}");
                    continue;
                }
            },
        };
        let edge = Rc::clone(&edge);
        tokio::task::spawn_local(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let edge = Rc::clone(&edge);
                async move { Ok::<_, Infallible>(answer(&edge, request).await.map(Full::new)) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("tessera-edge: connection: {e}");
            }
        });
    }
}

async fn answer<S: Store, O: Outbound>(
    edge: &Edge<S, O>,
    request: Request<Incoming>,
) -> Response<Bytes> {
    let (parts, body) = request.into_parts();
    let limit = edge.config.max_body_bytes;
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            // Over the limit, or the client went away: answer as the router would.
            let mut response = Response::new(Bytes::from(format!(
                r#"{{"code":"body_too_large","message":"request body is over the limit of {limit} bytes"}}"#
            )));
            *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return response;
        }
    };
    let mut new_id = || uuid::Uuid::new_v4().to_string();
    edge.handle(
        Request::from_parts(parts, body),
        SystemTime::now(),
        &mut new_id,
    )
    .await
}
