//! The page's upload queue in IndexedDB (through the `idb` crate), owned by the upload worker:
//! what survives a reload.
//!
//! Database `tessera-uploads`, version 3, three object stores:
//! - `entries` (key path `key`, `"{project}/{sha256 of the original}"`): what the page shows of
//!   each file and never changes, `{ key, project, fileName, manifest, addedAt }`, `manifest`
//!   being tessera-core's `Manifest` as a plain object. Versions 1 and 2 of the page kept the
//!   upload state here too (`state`: `queued`, `uploading`, `done` or `failed`; `result`:
//!   the `complete` answer; `error`): [`Queue::load`] reads it once into the uploader.
//! - `files` (same key): the bodies as Blobs, `{ original: Blob | null, bodies: { processed,
//!   "augmented-90", …: Blob } }`; the original is dropped once the image is done. Version 1
//!   kept `bodies` as an array in the manifest's order after the original.
//! - `uploader` (new in version 3; key: the project): tessera-core's
//!   [`Uploader`] as JSON, the protocol's whole state.
//!
//! An entry whose image the saved uploader does not know (added just before a reload, or kept
//! by an earlier version) is restored into it on [`Queue::load`], so nothing added is lost.

use idb::{Database, DatabaseEvent as _, Factory, KeyPath, ObjectStoreParams, TransactionMode};
use js_sys::{Array, Object, Reflect};
use serde::Deserialize;
use tessera_core::Manifest;
use tessera_core::manifest::ObjectKind;
use tessera_core::upload::DeclaredImage;
use tessera_core::uploader::{ImageState, Uploader};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::Blob;

const DATABASE: &str = "tessera-uploads";
const VERSION: u32 = 3;
const ENTRIES: &str = "entries";
const FILES: &str = "files";
const UPLOADER: &str = "uploader";

/// An entry as the page versions before 3 left it: the fields read when restoring.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    key: String,
    project: String,
    manifest: Manifest,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    result: Option<Completed>,
    #[serde(default)]
    error: Option<String>,
}

/// The `complete` answer that versions 1 and 2 kept in `result`.
#[derive(Deserialize)]
struct Completed {
    upload_id: String,
    job_id: String,
    #[serde(default)]
    images: Vec<String>,
}

impl Entry {
    /// Where the image stood for an earlier page: done and failed stay so, the rest is queued.
    fn legacy_state(&self) -> ImageState {
        match (self.state.as_deref(), &self.result) {
            (Some("done"), Some(done)) => ImageState::Done {
                upload_id: done.upload_id.clone(),
                job_id: done.job_id.clone(),
                image_id: done.images.first().cloned().unwrap_or_default(),
            },
            (Some("failed"), _) => ImageState::Failed {
                reason: self.error.clone().unwrap_or_else(|| "failed".to_owned()),
            },
            _ => ImageState::Queued,
        }
    }
}

/// One image as the queue keeps it for the page: its entry and its Blobs.
#[derive(Debug)]
pub(crate) struct Kept {
    /// The entry's key, `"{project}/{sha256}"`.
    pub(crate) key: String,
    /// `{ key, project, fileName, manifest, addedAt }`.
    pub(crate) entry: JsValue,
    /// `{ original, bodies }`.
    pub(crate) files: JsValue,
}

/// The open database, for one project.
#[derive(Debug)]
pub(crate) struct Queue {
    db: Database,
    project: String,
}

/// An IndexedDB failure in words.
#[allow(clippy::needless_pass_by_value, reason = "the shape `map_err` takes")]
fn words(error: idb::Error) -> String {
    format!("IndexedDB: {error}")
}

impl Queue {
    /// Opens (creating or upgrading) the database for `project`'s uploads.
    ///
    /// # Errors
    /// IndexedDB unavailable (a private window may refuse it) or the upgrade failed.
    pub(crate) async fn open(project: &str) -> Result<Self, String> {
        let factory = Factory::new().map_err(words)?;
        let mut request = factory.open(DATABASE, Some(VERSION)).map_err(words)?;
        request.on_upgrade_needed(|event| {
            let Ok(db) = event.database() else {
                return;
            };
            // By store, not by version: every store a version lacks is created, whatever it was.
            let names = db.store_names();
            if !names.iter().any(|n| n == ENTRIES) {
                let mut params = ObjectStoreParams::new();
                params.key_path(Some(KeyPath::new_single("key")));
                let _ = db.create_object_store(ENTRIES, params);
            }
            for store in [FILES, UPLOADER] {
                if !names.iter().any(|n| n == store) {
                    let _ = db.create_object_store(store, ObjectStoreParams::new());
                }
            }
        });
        let db = request.await.map_err(words)?;
        Ok(Self {
            db,
            project: project.to_owned(),
        })
    }

    /// The key of an image's entry and files: `"{project}/{sha256}"`.
    pub(crate) fn key(&self, sha256: &str) -> String {
        format!("{}/{sha256}", self.project)
    }

    /// The saved uploader, with every entry it does not know restored into it, and what the
    /// page shows of each image. Version 1's arrays of bodies are keyed by kind on the way.
    ///
    /// # Errors
    /// IndexedDB failed, or the saved state is not an uploader's.
    pub(crate) async fn load(&self) -> Result<(Uploader, Vec<Kept>), String> {
        let tx = self
            .db
            .transaction(&[ENTRIES, FILES, UPLOADER], TransactionMode::ReadWrite)
            .map_err(words)?;
        let saved = tx
            .object_store(UPLOADER)
            .map_err(words)?
            .get(JsValue::from_str(&self.project))
            .map_err(words)?
            .await
            .map_err(words)?;
        let mut uploader = match saved.and_then(|v| v.as_string()) {
            Some(json) => serde_json::from_str::<Uploader>(&json)
                .map_err(|e| format!("the saved upload queue is unreadable: {e}"))?,
            None => Uploader::new(&self.project),
        }
        .with_max_files(1);
        let entries = tx
            .object_store(ENTRIES)
            .map_err(words)?
            .get_all(None, None)
            .map_err(words)?
            .await
            .map_err(words)?;
        let files = tx.object_store(FILES).map_err(words)?;
        let mut kept = Vec::new();
        for value in entries {
            let entry: Entry = match serde_wasm_bindgen::from_value(value.clone()) {
                Ok(entry) => entry,
                Err(e) => {
                    web_sys::console::warn_1(&format!("skipping a queue entry: {e}").into());
                    continue;
                }
            };
            if entry.project != self.project {
                continue;
            }
            let declared = DeclaredImage::from(&entry.manifest);
            if !uploader.contains(&entry.manifest.original().sha256.hex) {
                uploader.restore(declared, entry.legacy_state());
            }
            let key = JsValue::from_str(&entry.key);
            let mut stored = files
                .get(key.clone())
                .map_err(words)?
                .await
                .map_err(words)?
                .unwrap_or_else(|| Object::new().into());
            if let Some(keyed) = bodies_by_kind(&stored, &entry.manifest)? {
                files
                    .put(&keyed, Some(&key))
                    .map_err(words)?
                    .await
                    .map_err(words)?;
                stored = keyed;
            }
            kept.push(Kept {
                key: entry.key,
                entry: value,
                files: stored,
            });
        }
        let json = serde_json::to_string(&uploader).map_err(|e| e.to_string())?;
        tx.object_store(UPLOADER)
            .map_err(words)?
            .put(
                &JsValue::from_str(&json),
                Some(&JsValue::from_str(&self.project)),
            )
            .map_err(words)?
            .await
            .map_err(words)?;
        tx.commit().map_err(words)?.await.map_err(words)?;
        Ok((uploader, kept))
    }

    /// Keeps a new image's entry and Blobs; `false` when its key is already kept.
    ///
    /// # Errors
    /// IndexedDB failed (a full disk, for one).
    pub(crate) async fn add(&self, kept: &Kept) -> Result<bool, String> {
        let tx = self
            .db
            .transaction(&[ENTRIES, FILES], TransactionMode::ReadWrite)
            .map_err(words)?;
        let entries = tx.object_store(ENTRIES).map_err(words)?;
        let key = JsValue::from_str(&kept.key);
        if entries
            .get_key(key.clone())
            .map_err(words)?
            .await
            .map_err(words)?
            .is_some()
        {
            return Ok(false);
        }
        entries
            .add(&kept.entry, None)
            .map_err(words)?
            .await
            .map_err(words)?;
        tx.object_store(FILES)
            .map_err(words)?
            .put(&kept.files, Some(&key))
            .map_err(words)?
            .await
            .map_err(words)?;
        tx.commit().map_err(words)?.await.map_err(words)?;
        Ok(true)
    }

    /// Saves the uploader's state (`json`, its serde form).
    ///
    /// # Errors
    /// IndexedDB failed.
    pub(crate) async fn save(&self, json: &str) -> Result<(), String> {
        let tx = self
            .db
            .transaction(&[UPLOADER], TransactionMode::ReadWrite)
            .map_err(words)?;
        tx.object_store(UPLOADER)
            .map_err(words)?
            .put(
                &JsValue::from_str(json),
                Some(&JsValue::from_str(&self.project)),
            )
            .map_err(words)?
            .await
            .map_err(words)?;
        tx.commit().map_err(words)?.await.map_err(words)?;
        Ok(())
    }

    /// The Blob of image `sha256`'s object `kind`.
    ///
    /// # Errors
    /// The image or that body is not kept (the original of an image already done).
    pub(crate) async fn body(&self, sha256: &str, kind: ObjectKind) -> Result<Blob, String> {
        let files = self.files(sha256).await?;
        let body = if kind == ObjectKind::Original {
            Reflect::get(&files, &"original".into())
        } else {
            Reflect::get(&files, &"bodies".into())
                .and_then(|bodies| Reflect::get(&bodies, &kind.as_str().into()))
        }
        .unwrap_or(JsValue::UNDEFINED);
        body.dyn_into::<Blob>()
            .map_err(|_| format!("the {} of this file is no longer kept", kind.as_str()))
    }

    /// Forgets an image's original, once storage has it; the derivatives stay for the view.
    ///
    /// # Errors
    /// IndexedDB failed.
    pub(crate) async fn drop_original(&self, sha256: &str) -> Result<(), String> {
        let key = JsValue::from_str(&self.key(sha256));
        let tx = self
            .db
            .transaction(&[FILES], TransactionMode::ReadWrite)
            .map_err(words)?;
        let store = tx.object_store(FILES).map_err(words)?;
        if let Some(files) = store
            .get(key.clone())
            .map_err(words)?
            .await
            .map_err(words)?
        {
            Reflect::set(&files, &"original".into(), &JsValue::NULL)
                .map_err(|_| "IndexedDB: a files record is not an object".to_owned())?;
            store
                .put(&files, Some(&key))
                .map_err(words)?
                .await
                .map_err(words)?;
        }
        tx.commit().map_err(words)?.await.map_err(words)?;
        Ok(())
    }

    async fn files(&self, sha256: &str) -> Result<JsValue, String> {
        let tx = self
            .db
            .transaction(&[FILES], TransactionMode::ReadOnly)
            .map_err(words)?;
        tx.object_store(FILES)
            .map_err(words)?
            .get(JsValue::from_str(&self.key(sha256)))
            .map_err(words)?
            .await
            .map_err(words)?
            .ok_or_else(|| "this file is no longer kept".to_owned())
    }
}

/// Version 1's `{ original, bodies: [Blob, …] }` (bodies in the manifest's order after the
/// original) as `{ original, bodies: { kind: Blob } }`; `None` when already keyed by kind.
fn bodies_by_kind(files: &JsValue, manifest: &Manifest) -> Result<Option<JsValue>, String> {
    let bodies = Reflect::get(files, &"bodies".into()).unwrap_or(JsValue::UNDEFINED);
    let Some(array) = bodies.dyn_ref::<Array>() else {
        return Ok(None);
    };
    let keyed = Object::new();
    let kinds = manifest
        .objects
        .iter()
        .map(|o| o.kind)
        .filter(|&k| k != ObjectKind::Original);
    for (kind, body) in kinds.zip(array.iter()) {
        Reflect::set(&keyed, &kind.as_str().into(), &body)
            .map_err(|_| "IndexedDB: cannot key a body by kind".to_owned())?;
    }
    let upgraded = Object::new();
    let original = Reflect::get(files, &"original".into()).unwrap_or(JsValue::NULL);
    Reflect::set(&upgraded, &"original".into(), &original)
        .and_then(|_| Reflect::set(&upgraded, &"bodies".into(), &keyed))
        .map_err(|_| "IndexedDB: cannot rewrite a files record".to_owned())?;
    Ok(Some(upgraded.into()))
}

#[cfg(all(test, target_arch = "wasm32"))]
#[path = "queue_tests.rs"]
mod tests;
