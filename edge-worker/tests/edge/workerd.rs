//! The edge router under the real Cloudflare Workers runtime: `wrangler dev` (workerd from
//! npm, local D1 with the migrations applied), against the same real S3-compatible server as
//! `native.rs`: upload → PUT → complete → search → download, then the store conformance
//! suite against D1 (the worker is built with the `store-conformance` feature, see
//! `wrangler.toml`'s `test` environment).
//!
//! Needs `TESSERA_TEST_WORKERD` = the wrangler binary, with worker-build and wasm-bindgen on
//! the PATH; `scripts/test.sh` installs them and sets it.

use crate::support::*;
use std::time::Duration;

use serde_json::json;
use tessera_core::ObjectKind;

#[test]
fn upload_complete_and_search_under_workerd() {
    runtime().block_on(async {
        // URLs valid 10 s: the upload below completes well within them; the one planned
        // here is left, and announced by the cron trigger once they expire.
        let stack = Stack::start_workerd(|config| {
            config.policy.expires_in = std::time::Duration::from_secs(10);
        });
        let left = photo("exif-0.6.0/test1.jpg", None, None);
        let (status, abandoned) = stack.post_uploads(&upload_body("palms", &[&left])).await;
        assert_eq!(status, 201, "{abandoned}");
        let abandoned_at = std::time::Instant::now();
        let photo = photo(
            "exif-0.6.0/test3.jpg",
            chrono::NaiveDate::from_ymd_opt(2024, 5, 1),
            Some((5.6, -0.2)),
        );
        let (status, answer) = stack.post_uploads(&upload_body("palms", &[&photo])).await;
        assert_eq!(status, 201, "{answer}");
        let upload_id = answer["upload_id"].as_str().unwrap().to_owned();
        let (status, refused) = stack.complete(&upload_id).await;
        assert_eq!(
            (status, refused["code"].as_str()),
            (409, Some("objects_not_uploaded")),
            "{refused}"
        );
        stack.put_all(&answer, &|_, kind| photo.body(kind)).await;
        let (status, done) = stack.complete(&upload_id).await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(stack.complete(&upload_id).await.1["job_id"], done["job_id"]);
        assert_eq!(stack.jobs.lock().unwrap().len(), 1, "triggered once");
        let image_id = done["images"][0].as_str().unwrap().to_owned();
        let (status, found) = stack
            .search("project=palms&from=2024-05-01&to=2024-05-01&bbox=-1,5,0,6")
            .await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["images"].as_array().unwrap().len(), 1);
        assert_eq!(found["images"][0]["image_id"], json!(image_id));
        let (_, none) = stack.search("bbox=10,10,11,11").await;
        assert_eq!(none["images"], json!([]));
        let bytes = stack.download(&image_id, ObjectKind::Augmented90).await;
        assert_eq!(&bytes[..], &photo.body("augmented-90")[..]);

        // The same store conformance suite as SQLite's, against D1 inside workerd.
        let r = stack
            .client
            .post(format!("{}/__store-conformance", stack.edge))
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, 200, "{}", r.text().await.unwrap());

        // The cron trigger (`wrangler dev --test-scheduled`): the abandoned upload is
        // announced once its URLs expired, and once only.
        tokio::time::sleep(Duration::from_secs(11).saturating_sub(abandoned_at.elapsed())).await;
        for _ in 0..2 {
            let r = stack
                .client
                .get(format!("{}/__scheduled?cron=*+*+*+*+*", stack.edge))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
        let expired = stack.expired.lock().unwrap().clone();
        assert_eq!(expired.len(), 1, "{expired:?}");
        assert_eq!(expired[0]["upload_id"], abandoned["upload_id"]);
        assert_eq!(expired[0]["file_names"], json!(["test1.jpg"]));
    });
}
