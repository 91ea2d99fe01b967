//! The native host of the edge router: hyper HTTP/1.1 on a single-threaded tokio runtime
//! (run it inside a `tokio::task::LocalSet`), reqwest for outbound requests, configuration
//! from environment variables.

use std::convert::Infallible;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::{BackendConfig, Config, ConfigError, Edge, Jobs, Outbound, OutboundError, Store};

/// Outbound HTTP with reqwest.
#[derive(Debug, Clone, Default)]
pub struct ReqwestOutbound(reqwest::Client);

impl Outbound for ReqwestOutbound {
    async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, OutboundError> {
        let (parts, body) = request.into_parts();
        let failed = |e: &dyn std::fmt::Display| OutboundError::of(&parts.method, &parts.uri, e);
        let response = self
            .0
            .request(parts.method.clone(), parts.uri.to_string())
            .headers(parts.headers.clone())
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| failed(&e))?;
        let mut answer = Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let body = response.bytes().await.map_err(|e| failed(&e))?;
        answer.body(body.to_vec()).map_err(|e| failed(&e))
    }
}

/// Reads the configuration from the process environment ([`Config::from_lookup`],
/// [`BackendConfig::from_lookup`]).
///
/// # Errors
/// Names the missing or malformed variable.
pub fn config_from_env() -> Result<(Config, BackendConfig), ConfigError> {
    let lookup = |name: &str| std::env::var(name).ok();
    Ok((
        Config::from_lookup(lookup)?,
        BackendConfig::from_lookup(lookup)?,
    ))
}

/// Serves `edge` on `listener` until `shutdown` resolves. Must run inside a
/// `tokio::task::LocalSet` on a current-thread runtime. Request bodies over the configured
/// limit are refused with 413 before they are read whole.
pub async fn serve<S, O, J>(
    listener: tokio::net::TcpListener,
    edge: Rc<Edge<S, O, J>>,
    shutdown: impl Future<Output = ()>,
) where
    S: Store + 'static,
    O: Outbound + 'static,
    J: Jobs + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
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
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
}

/// Answers one hyper request with `edge`: the body is read up to the configured limit (413
/// beyond it), then routed by [`Edge::handle`] with the system clock and random v4 ids. For
/// hosts that serve more than the edge on one port; [`serve`] uses it for every request.
pub async fn answer<S: Store, O: Outbound, J: Jobs>(
    edge: &Edge<S, O, J>,
    request: Request<Incoming>,
) -> Response<Bytes> {
    let (parts, body) = request.into_parts();
    let limit = edge.config.max_body_bytes;
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        // Over the limit, or the client went away: answer as the router would.
        Err(_) => return edge.body_too_large(),
    };
    let mut new_id = || uuid::Uuid::new_v4().to_string();
    edge.handle(
        Request::from_parts(parts, body),
        SystemTime::now(),
        &mut new_id,
    )
    .await
}
