//! The queue in headless Chromium's IndexedDB (`cargo test -p tessera-wasm --target
//! wasm32-unknown-unknown`): a database left by version 1 of the page is upgraded, its
//! entries restored into the uploader as they stood, and the state survives a reopen.

use chrono::NaiveDate;
use tessera_core::keys::Project;
use tessera_core::{Options, preprocess};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{IdbDatabase, IdbOpenDbRequest};

use super::*;

wasm_bindgen_test_configure!(run_in_browser);

const ROCKET: &[u8] = include_bytes!("../../tests/fixtures/rocket-progressive.jpg");
const UPRIGHT_PNG: &[u8] = include_bytes!("../../tests/fixtures/right.jpg.upright.png");

fn manifest_of(bytes: &[u8], name: &str) -> Manifest {
    let options = Options::new(
        Project::new("local".to_owned()).unwrap(),
        name.to_owned(),
        NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
    );
    preprocess(bytes, &options).unwrap().manifest
}

fn to_js<T: serde::Serialize>(value: &T) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap()
}

fn set(object: &JsValue, name: &str, value: &JsValue) {
    Reflect::set(object, &name.into(), value).unwrap();
}

/// Waits for an IndexedDB request's `success`.
async fn done(request: &web_sys::IdbRequest) -> JsValue {
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
    request.result().unwrap()
}

/// Leaves `tessera-uploads` as version 1 of the page did: one entry queued (bodies in an
/// array) and one done.
async fn seed_version_1(queued: &Manifest, done_manifest: &Manifest) {
    let factory = js_sys::global()
        .unchecked_into::<web_sys::Window>()
        .indexed_db()
        .unwrap()
        .unwrap();
    done(&factory.delete_database(DATABASE).unwrap()).await;
    let open: IdbOpenDbRequest = factory.open_with_u32(DATABASE, 1).unwrap();
    let upgrade = wasm_bindgen::closure::Closure::<dyn FnMut()>::new({
        let open = open.clone();
        move || {
            let db: IdbDatabase = open.result().unwrap().unchecked_into();
            let params = web_sys::IdbObjectStoreParameters::new();
            params.set_key_path(&"key".into());
            db.create_object_store_with_optional_parameters(ENTRIES, &params)
                .unwrap();
            db.create_object_store(FILES).unwrap();
        }
    });
    open.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
    let db: IdbDatabase = done(&open).await.unchecked_into();
    let tx = db
        .transaction_with_str_sequence_and_mode(
            &Array::of2(&ENTRIES.into(), &FILES.into()),
            web_sys::IdbTransactionMode::Readwrite,
        )
        .unwrap();
    for (manifest, state) in [(queued, "queued"), (done_manifest, "done")] {
        let key = format!("local/{}", manifest.original().sha256.hex);
        let entry: JsValue = Object::new().into();
        set(&entry, "key", &key.as_str().into());
        set(&entry, "project", &"local".into());
        set(&entry, "fileName", &manifest.file_name.as_str().into());
        set(&entry, "manifest", &to_js(manifest));
        set(&entry, "state", &state.into());
        set(&entry, "stored", &Object::new());
        if state == "done" {
            let result = serde_json::json!({
                "upload_id": "upl-old", "job_id": "job-old", "images": ["img-old"],
            });
            set(&entry, "result", &to_js(&result));
        }
        done(&tx.object_store(ENTRIES).unwrap().put(&entry).unwrap()).await;
        let bodies = Array::new();
        for object in manifest.objects.iter().skip(1) {
            bodies.push(
                &Blob::new_with_str_sequence(&Array::of1(&object.kind.as_str().into())).unwrap(),
            );
        }
        let files: JsValue = Object::new().into();
        set(
            &files,
            "original",
            &Blob::new_with_str_sequence(&Array::of1(&"original".into())).unwrap(),
        );
        set(&files, "bodies", &bodies);
        done(
            &tx.object_store(FILES)
                .unwrap()
                .put_with_key(&files, &key.as_str().into())
                .unwrap(),
        )
        .await;
    }
    db.close();
}

async fn text(blob: &Blob) -> String {
    wasm_bindgen_futures::JsFuture::from(blob.text())
        .await
        .unwrap()
        .as_string()
        .unwrap()
}

#[wasm_bindgen_test]
async fn a_version_1_queue_is_upgraded_and_restored_as_it_stood() {
    let queued = manifest_of(ROCKET, "rocket.jpg");
    let uploaded = manifest_of(UPRIGHT_PNG, "upright.png");
    seed_version_1(&queued, &uploaded).await;

    let queue = Queue::open("local").await.unwrap();
    let (uploader, kept) = queue.load().await.unwrap();
    assert_eq!(kept.len(), 2);
    let queued_key = &queued.original().sha256.hex;
    let uploaded_key = &uploaded.original().sha256.hex;
    assert_eq!(
        uploader.image(queued_key).unwrap().state,
        ImageState::Queued
    );
    assert_eq!(
        uploader.image(uploaded_key).unwrap().state,
        ImageState::Done {
            upload_id: "upl-old".into(),
            job_id: "job-old".into(),
            image_id: "img-old".into(),
        }
    );
    // Version 1's array of bodies is keyed by kind now, in the manifest's order.
    for kind in [
        ObjectKind::Processed,
        ObjectKind::Augmented180,
        ObjectKind::Augmented360,
    ] {
        let body = queue.body(queued_key, kind).await.unwrap();
        assert_eq!(text(&body).await, kind.as_str());
    }
    assert_eq!(
        text(&queue.body(queued_key, ObjectKind::Original).await.unwrap()).await,
        "original"
    );

    // Done images lose their original; the state saved is the state loaded.
    queue.drop_original(uploaded_key).await.unwrap();
    let error = queue
        .body(uploaded_key, ObjectKind::Original)
        .await
        .unwrap_err();
    assert!(error.contains("original"), "{error}");
    let mut changed = uploader.clone();
    let mut another = DeclaredImage::from(&queued);
    another.objects[0].sha256.hex = "ab".repeat(32);
    assert!(changed.add(another));
    queue
        .save(&serde_json::to_string(&changed).unwrap())
        .await
        .unwrap();
    queue.db.close();
    let reopened = Queue::open("local").await.unwrap();
    let (restored, kept) = reopened.load().await.unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(
        serde_json::to_value(&restored).unwrap(),
        serde_json::to_value(&changed).unwrap()
    );
    // Adding a kept key again is refused; a new one is kept.
    assert!(!reopened.add(&kept[0]).await.unwrap());
    reopened.db.close();
}
