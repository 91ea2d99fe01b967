//! The Cloudflare Workers host of the edge router (`worker` crate, built by worker-build, run
//! by workerd): D1 as the [`Store`], `fetch` as [`Outbound`], configuration from vars and
//! secrets. The router is kept per isolate, so the rate limiter's buckets are per isolate.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use tessera_core::Manifest;
use tessera_core::search::ImageQuery;
use wasm_bindgen::{JsCast, JsValue};
use worker::d1::D1Database;
use worker::{Context, Env, HttpRequest, ScheduleContext, ScheduledEvent, event};

use crate::store::{ExpiredUpload, sql};
use crate::{
    BackendConfig, Config, Edge, HttpJobs, Outbound, OutboundError, Store, StoreError, UploadRow,
};

fn failed(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::Database {
        store: "d1",
        operation,
        detail: e.to_string(),
    }
}

fn corrupt(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt {
        store: "d1",
        what,
        detail: e.to_string(),
    }
}

/// D1, with the same SQL as the native SQLite store.
pub(crate) struct D1Store(D1Database);

fn text(v: &str) -> JsValue {
    JsValue::from_str(v)
}

fn opt_text(v: Option<String>) -> JsValue {
    v.map_or(JsValue::NULL, |v| JsValue::from_str(&v))
}

fn opt_f64(v: Option<f64>) -> JsValue {
    v.map_or(JsValue::NULL, JsValue::from_f64)
}

#[derive(serde::Deserialize)]
struct UploadFields {
    project: String,
    manifests: String,
    completed: i64,
    job_id: Option<String>,
}

#[derive(serde::Deserialize)]
struct ManifestField {
    manifest: String,
}

fn parse(json: &str) -> Result<Manifest, StoreError> {
    serde_json::from_str(json).map_err(corrupt("manifest"))
}

impl Store for D1Store {
    async fn create_upload(
        &self,
        upload_id: &str,
        project: &str,
        manifests: &[Manifest],
        now_s: u64,
        expires_at_s: u64,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(manifests).expect("manifests serialise");
        self.0
            .prepare(sql::INSERT_UPLOAD)
            .bind(&[
                text(upload_id),
                text(project),
                text(&json),
                JsValue::from_f64(now_s as f64),
                JsValue::from_f64(expires_at_s as f64),
            ])
            .map_err(failed("create_upload"))?
            .run()
            .await
            .map_err(failed("create_upload"))?;
        Ok(())
    }

    async fn expired_uploads(
        &self,
        now_s: u64,
        limit: u32,
    ) -> Result<Vec<ExpiredUpload>, StoreError> {
        #[derive(serde::Deserialize)]
        struct Row {
            upload_id: String,
            project: String,
            manifests: String,
            created_at: f64,
            expires_at: f64,
        }
        let rows = self
            .0
            .prepare(sql::EXPIRED_UPLOADS)
            .bind(&[
                JsValue::from_f64(now_s as f64),
                JsValue::from_f64(f64::from(limit)),
            ])
            .map_err(failed("expired_uploads"))?
            .all()
            .await
            .map_err(failed("expired_uploads"))?
            .results::<Row>()
            .map_err(failed("expired_uploads"))?;
        rows.into_iter()
            .map(|r| {
                Ok(ExpiredUpload {
                    upload_id: r.upload_id,
                    project: r.project,
                    manifests: serde_json::from_str(&r.manifests).map_err(corrupt("upload"))?,
                    // D1 answers numbers as JavaScript numbers: whole seconds, exact below 2^53.
                    created_at_s: r.created_at as u64,
                    expires_at_s: r.expires_at as u64,
                })
            })
            .collect()
    }

    async fn mark_expired(&self, upload_id: &str, now_s: u64) -> Result<bool, StoreError> {
        let result = self
            .0
            .prepare(sql::MARK_EXPIRED)
            .bind(&[text(upload_id), JsValue::from_f64(now_s as f64)])
            .map_err(failed("mark_expired"))?
            .run()
            .await
            .map_err(failed("mark_expired"))?;
        Ok(result
            .meta()
            .map_err(failed("mark_expired"))?
            .and_then(|m| m.changes)
            == Some(1))
    }

    async fn upload(&self, upload_id: &str) -> Result<Option<UploadRow>, StoreError> {
        let row: Option<UploadFields> = self
            .0
            .prepare(sql::UPLOAD)
            .bind(&[text(upload_id)])
            .map_err(failed("upload"))?
            .first(None)
            .await
            .map_err(failed("upload"))?;
        row.map(|r| {
            Ok(UploadRow {
                project: r.project,
                manifests: serde_json::from_str(&r.manifests).map_err(corrupt("upload"))?,
                completed: r.completed != 0,
                job_id: r.job_id,
            })
        })
        .transpose()
    }

    /// One D1 batch (atomic): mark the upload completed, insert its images (idempotently).
    async fn complete_upload(&self, upload_id: &str, now_s: u64) -> Result<bool, StoreError> {
        let Some(upload) = self.upload(upload_id).await? else {
            return Ok(false);
        };
        let mut statements = vec![
            self.0
                .prepare(sql::MARK_COMPLETED)
                .bind(&[text(upload_id), JsValue::from_f64(now_s as f64)])
                .map_err(failed("complete_upload"))?,
        ];
        for m in &upload.manifests {
            let gps = m.exif.gps;
            statements.push(
                self.0
                    .prepare(sql::INSERT_IMAGE)
                    .bind(&[
                        text(m.image_id.as_str()),
                        text(m.project.as_str()),
                        text(upload_id),
                        text(&m.date.to_string()),
                        opt_f64(gps.map(|g| g.latitude)),
                        opt_f64(gps.map(|g| g.longitude)),
                        text(&serde_json::to_string(m).expect("manifests serialise")),
                    ])
                    .map_err(failed("complete_upload"))?,
            );
        }
        let results = self
            .0
            .batch(statements)
            .await
            .map_err(failed("complete_upload"))?;
        let changed = results
            .first()
            .and_then(|r| r.meta().ok().flatten())
            .and_then(|m| m.changes)
            .unwrap_or(0);
        Ok(changed == 1)
    }

    async fn set_job(&self, upload_id: &str, job_id: &str) -> Result<bool, StoreError> {
        let result = self
            .0
            .prepare(sql::SET_JOB)
            .bind(&[text(upload_id), text(job_id)])
            .map_err(failed("set_job"))?
            .run()
            .await
            .map_err(failed("set_job"))?;
        Ok(result
            .meta()
            .map_err(failed("set_job"))?
            .and_then(|m| m.changes)
            == Some(1))
    }

    async fn search(&self, q: &ImageQuery) -> Result<Vec<Manifest>, StoreError> {
        let bbox = q.bbox;
        let rows = self
            .0
            .prepare(sql::SEARCH)
            .bind(&[
                opt_text(q.project.as_ref().map(|p| p.as_str().to_owned())),
                opt_text(q.from.map(|d| d.to_string())),
                opt_text(q.to.map(|d| d.to_string())),
                opt_f64(bbox.map(|b| b.min_lon)),
                opt_f64(bbox.map(|b| b.min_lat)),
                opt_f64(bbox.map(|b| b.max_lon)),
                opt_f64(bbox.map(|b| b.max_lat)),
                opt_text(q.cursor.as_ref().map(|c| c.date.to_string())),
                opt_text(q.cursor.as_ref().map(|c| c.image_id.as_str().to_owned())),
                JsValue::from_f64(f64::from(q.limit) + 1.0),
            ])
            .map_err(failed("search"))?
            .all()
            .await
            .map_err(failed("search"))?
            .results::<ManifestField>()
            .map_err(failed("search"))?;
        rows.iter().map(|r| parse(&r.manifest)).collect()
    }

    async fn image(&self, image_id: &str) -> Result<Option<Manifest>, StoreError> {
        let row: Option<ManifestField> = self
            .0
            .prepare(sql::IMAGE)
            .bind(&[text(image_id)])
            .map_err(failed("image"))?
            .first(None)
            .await
            .map_err(failed("image"))?;
        row.map(|r| parse(&r.manifest)).transpose()
    }

    async fn images(&self, image_ids: &[String]) -> Result<Vec<Manifest>, StoreError> {
        let ids = serde_json::to_string(image_ids).expect("strings serialise");
        let rows = self
            .0
            .prepare(sql::IMAGES)
            .bind(&[text(&ids)])
            .map_err(failed("images"))?
            .all()
            .await
            .map_err(failed("images"))?
            .results::<ManifestField>()
            .map_err(failed("images"))?;
        rows.iter().map(|r| parse(&r.manifest)).collect()
    }
}

/// Outbound HTTP through the Workers `fetch`.
pub(crate) struct FetchOutbound;

impl Outbound for FetchOutbound {
    async fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, OutboundError> {
        let (parts, body) = request.into_parts();
        let failed = |e: &dyn std::fmt::Display| OutboundError::of(&parts.method, &parts.uri, e);
        let sent =
            http::Request::from_parts(parts.clone(), http_body_util::Full::new(Bytes::from(body)));
        let sent = worker::Request::try_from(sent).map_err(|e| failed(&e))?;
        let response = worker::Fetch::Request(sent)
            .send()
            .await
            .map_err(|e| failed(&e))?;
        let response: http::Response<worker::Body> = response.try_into().map_err(|e| failed(&e))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| failed(&e))?.to_bytes();
        Ok(http::Response::from_parts(parts, body.to_vec()))
    }
}

/// One log line from tracing's formatter, written to the Workers console when dropped (seen
/// with `wrangler tail`, or kept by Workers Logs).
struct ConsoleLine(Vec<u8>);

impl std::io::Write for ConsoleLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleLine {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.0);
        worker::console_error!("{}", line.trim_end());
    }
}

/// JSON log lines to the console, without timestamps (the platform adds them, and the clock
/// of `std` panics on wasm32-unknown-unknown).
fn init_logging() {
    let _already_set = tracing_subscriber::fmt()
        .json()
        .without_time()
        .with_writer(|| ConsoleLine(Vec::new()))
        .try_init();
}

type WorkersEdge = Edge<D1Store, FetchOutbound, HttpJobs<FetchOutbound>>;

thread_local! {
    static EDGE: RefCell<Option<Rc<WorkersEdge>>> = const { RefCell::new(None) };
}

fn edge(env: &Env) -> worker::Result<Rc<WorkersEdge>> {
    if let Some(edge) = EDGE.with(|e| e.borrow().clone()) {
        return Ok(edge);
    }
    init_logging();
    let lookup = |name: &str| {
        env.secret(name)
            .map(|s| s.to_string())
            .or_else(|_| env.var(name).map(|v| v.to_string()))
            .ok()
    };
    let config =
        Config::from_lookup(lookup).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let backend =
        BackendConfig::from_lookup(lookup).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let jobs = HttpJobs::new(&backend.url, &backend.token, FetchOutbound);
    let edge = Rc::new(Edge::new(
        config,
        D1Store(env.d1("DB")?),
        FetchOutbound,
        jobs,
    ));
    EDGE.with(|e| *e.borrow_mut() = Some(Rc::clone(&edge)));
    Ok(edge)
}

fn random_uuid() -> String {
    let crypto = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))
        .expect("Workers have crypto");
    let uuid = js_sys::Reflect::get(&crypto, &JsValue::from_str("randomUUID"))
        .expect("crypto.randomUUID")
        .unchecked_into::<js_sys::Function>()
        .call0(&crypto)
        .expect("randomUUID() returns");
    uuid.as_string().unwrap_or_default()
}

/// The cron trigger (`[triggers] crons` in `wrangler.toml`): announces uploads whose URLs
/// expired before they were completed ([`crate::expiry`]).
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let now = UNIX_EPOCH + Duration::from_millis(worker::Date::now().as_millis());
    let swept = match edge(&env) {
        Ok(edge) => edge.expire_uploads(now).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match swept {
        Ok(announced) => tracing::info!(announced, "upload.expired sweep"),
        Err(error) => tracing::error!(%error, "upload.expired sweep failed"),
    }
}

#[event(fetch)]
async fn fetch(
    request: HttpRequest,
    env: Env,
    _ctx: Context,
) -> worker::Result<http::Response<http_body_util::Full<Bytes>>> {
    #[cfg(feature = "store-conformance")]
    if request.uri().path() == "/__store-conformance" {
        let (status, body) = match crate::conformance(&D1Store(env.d1("DB")?)).await {
            Ok(()) => (200, "conformant".to_owned()),
            Err(failure) => (500, failure.to_string()),
        };
        let response = http::Response::builder()
            .status(status)
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        return Ok(response);
    }
    let edge = edge(&env)?;
    let (mut parts, body) = request.into_parts();
    // SystemTime::now() panics on wasm32-unknown-unknown: the clock comes from JS.
    let now = || UNIX_EPOCH + Duration::from_millis(worker::Date::now().as_millis());
    if let Some(client) = parts
        .headers
        .get("cf-connecting-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        parts.extensions.insert(crate::ClientAddr(client));
    }
    // The head decides first: a request without a valid key is refused unread.
    let response = match edge.admit(&parts, now()) {
        crate::Admission::Admitted(admitted) => {
            let body = body.collect().await?.to_bytes();
            edge.respond(admitted, body, now(), &mut random_uuid).await
        }
        crate::Admission::Answered(answer) => answer,
        crate::Admission::Files(posted) => edge.files_not_taken(posted),
        // A Worker does not hold the response open: one frame, whose `retry:` has the
        // client reconnect for the next.
        crate::Admission::Events(mut events) => match edge.open_events(&mut events, now()).await {
            Ok((head, first)) => head.map(|_| first),
            Err(answer) => answer,
        },
    };
    Ok(response.map(http_body_util::Full::new))
}
