//! The upload worker's [`Transport`]: the edge API through `fetch`, storage through
//! `XMLHttpRequest` (the only browser API that reports upload progress), bodies as Blobs
//! from the IndexedDB [`Queue`], timers from `gloo-timers`, and the network state the page
//! reports (a worker's `online`/`offline` events do not fire under every browser's network
//! emulation, the page's do).

use std::cell::Cell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use tessera_client::{Transport, refusal};
use tessera_core::upload::{UploadCompleted, UploadCreated, UploadRequest, UploadTarget};
use tessera_core::uploader::Failure;
use tokio::sync::{Notify, mpsc};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, Headers, ProgressEvent, RequestInit, Response};
use web_sys::{XmlHttpRequest, XmlHttpRequestUpload};

use crate::queue::Queue;

/// The edge API at `api_base` with an API key, and storage through the URLs it presigns.
#[derive(Debug)]
pub(crate) struct BrowserTransport {
    scope: DedicatedWorkerGlobalScope,
    api_base: String,
    api_key: String,
    queue: Rc<Queue>,
    online: Cell<bool>,
    paused: Cell<bool>,
    wake: Notify,
}

/// What an `XMLHttpRequest` reports, in order.
enum XhrEvent {
    Progress(f64),
    Answered,
    NoAnswer(&'static str),
}

/// A JavaScript error in words.
fn js_words(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| format!("{error:?}"))
}

impl BrowserTransport {
    /// A transport to the edge at `api_base` (`""` for the page's own origin).
    pub(crate) fn new(
        scope: DedicatedWorkerGlobalScope,
        api_base: String,
        api_key: String,
        queue: Rc<Queue>,
        online: bool,
    ) -> Self {
        Self {
            scope,
            api_base,
            api_key,
            queue,
            online: Cell::new(online),
            paused: Cell::new(false),
            wake: Notify::new(),
        }
    }

    /// There may be new work: an image added or retried, or the network back.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// The page says the network went up or down.
    pub(crate) fn set_online(&self, online: bool) {
        self.online.set(online);
        self.wake();
    }

    /// The page is checking files: nothing new starts until it is done (requests in flight
    /// finish). On a small machine checking and uploading at once would share the cores with
    /// the page's own thread, and hold key presses back.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.set(paused);
        self.wake();
    }

    /// `POST {api_base}{path}` with an optional JSON body: the JSON answer, or its failure.
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<String>,
    ) -> Result<T, Failure> {
        let no_answer =
            |e: JsValue| Failure::no_answer(format!("no answer from the API: {}", js_words(&e)));
        let headers = Headers::new().map_err(no_answer)?;
        headers
            .set("authorization", &format!("Bearer {}", self.api_key))
            .map_err(no_answer)?;
        let init = RequestInit::new();
        init.set_method("POST");
        if let Some(body) = &body {
            headers
                .set("content-type", "application/json")
                .map_err(no_answer)?;
            init.set_body(&JsValue::from_str(body));
        }
        init.set_headers(&headers);
        let url = format!("{}{path}", self.api_base);
        let response: Response = JsFuture::from(self.scope.fetch_with_str_and_init(&url, &init))
            .await
            .map_err(no_answer)?
            .unchecked_into();
        let text = JsFuture::from(response.text().map_err(no_answer)?)
            .await
            .map_err(no_answer)?
            .as_string()
            .unwrap_or_default();
        let status = response.status();
        if !response.ok() {
            let retry_after = response.headers().get("retry-after").ok().flatten();
            return Err(refusal(status, retry_after.as_deref(), &text, "the edge"));
        }
        serde_json::from_str(&text).map_err(|e| Failure {
            status,
            message: format!("the edge answered what is not the expected JSON: {e}"),
            retry_after_s: None,
        })
    }
}

impl Transport for BrowserTransport {
    async fn plan(&self, body: &UploadRequest) -> Result<UploadCreated, Failure> {
        let json = serde_json::to_string(body).map_err(|e| Failure::no_answer(e.to_string()))?;
        self.post("/v1/uploads", Some(json)).await
    }

    async fn put(
        &self,
        image: &str,
        target: &UploadTarget,
        sent: &dyn Fn(u64),
    ) -> Result<(), Failure> {
        let kind = target.kind.as_str();
        let body = self
            .queue
            .body(image, target.kind)
            .await
            .map_err(Failure::no_answer)?;
        let failed = |e: JsValue| Failure::no_answer(format!("{kind}: {}", js_words(&e)));
        let xhr = XmlHttpRequest::new().map_err(failed)?;
        xhr.open("PUT", &target.request.url).map_err(failed)?;
        // Exactly the signed headers; the browser sets content-length (from the Blob) and host.
        for (name, value) in &target.request.headers {
            if !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("host") {
                xhr.set_request_header(name, value).map_err(failed)?;
            }
        }
        let (events, mut heard) = mpsc::unbounded_channel();
        let progress = {
            let events = events.clone();
            Closure::<dyn FnMut(ProgressEvent)>::new(move |e: ProgressEvent| {
                let _ = events.send(XhrEvent::Progress(e.loaded()));
            })
        };
        let answered = {
            let events = events.clone();
            Closure::<dyn FnMut()>::new(move || {
                let _ = events.send(XhrEvent::Answered);
            })
        };
        let no_answer = {
            let events = events.clone();
            Closure::<dyn FnMut()>::new(move || {
                let _ = events.send(XhrEvent::NoAnswer("no answer from storage"));
            })
        };
        let upload: XmlHttpRequestUpload = xhr.upload().map_err(failed)?;
        upload.set_onprogress(Some(progress.as_ref().unchecked_ref()));
        xhr.set_onload(Some(answered.as_ref().unchecked_ref()));
        xhr.set_onerror(Some(no_answer.as_ref().unchecked_ref()));
        xhr.set_ontimeout(Some(no_answer.as_ref().unchecked_ref()));
        // Dropped unanswered (the worker stopping): abort, so nothing calls a freed closure.
        let _abort = AbortOnDrop(&xhr);
        xhr.send_with_opt_blob(Some(&body)).map_err(failed)?;
        let outcome = loop {
            match heard.recv().await {
                Some(XhrEvent::Progress(bytes)) => sent(bytes as u64),
                Some(XhrEvent::Answered) => break Ok(()),
                Some(XhrEvent::NoAnswer(why)) => break Err(why),
                None => break Err("the request was dropped"),
            }
        };
        if let Err(why) = outcome {
            return Err(Failure::no_answer(format!("{why} for {kind}")));
        }
        let status = xhr.status().unwrap_or(0);
        if (200..300).contains(&status) {
            sent(body.size() as u64);
            return Ok(());
        }
        let retry_after = xhr.get_response_header("retry-after").ok().flatten();
        let text = xhr.response_text().ok().flatten().unwrap_or_default();
        Err(refusal(status, retry_after.as_deref(), &text, "storage"))
    }

    async fn complete(&self, upload_id: &str) -> Result<UploadCompleted, Failure> {
        let id = String::from(js_sys::encode_uri_component(upload_id));
        self.post(&format!("/v1/uploads/{id}/complete"), None).await
    }

    async fn sleep(&self, ms: f64) {
        // Timers take whole milliseconds; a fraction is rounded up, never down to a spin.
        gloo_timers::future::sleep(std::time::Duration::from_millis(ms.max(0.0).ceil() as u64))
            .await;
    }

    async fn woken(&self) {
        self.wake.notified().await;
    }

    fn now_ms(&self) -> f64 {
        js_sys::Date::now()
    }

    fn random(&self) -> f64 {
        js_sys::Math::random()
    }

    fn online(&self) -> bool {
        self.online.get() && !self.paused.get()
    }
}

/// Aborts its request when dropped (the PUT's future dropped unanswered, the worker
/// stopping), so that no event calls a closure already freed; aborting an answered request
/// does nothing.
struct AbortOnDrop<'a>(&'a XmlHttpRequest);

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.abort();
    }
}
