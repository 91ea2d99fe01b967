//! The edge API on its native host against a real S3-compatible server (s3s + s3s-fs, SigV4
//! enforced) and a real SQLite file, with real photos (fetched by `tests/fetch-fixtures.sh`).
//! A small HTTP server stands in for the batch backend's job endpoint and records each call.

use std::time::{Duration, SystemTime};

use crate::support::*;
use chrono::NaiveDate;
use serde_json::{Value, json};
use tessera_core::ObjectKind;
use tessera_core::keys::Project;
use tessera_core::presign::Method;
use tessera_core::{Options, preprocess};
use tessera_edge::sqlite::SqliteStore;

#[test]
fn upload_put_complete_search_and_download() {
    runtime().block_on(async {
        let stack = Stack::start(|_| {});
        // test1.jpg keeps its real EXIF: taken 2013-02-06 at 37.885 N, 122.6225 W.
        let real = {
            let bytes = fetched("exif-0.6.0/test1.jpg");
            let derived = preprocess(
                &bytes,
                &Options::new(
                    Project::new("x").unwrap(),
                    "test1.jpg",
                    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                ),
            )
            .unwrap();
            Photo { bytes, derived }
        };
        let (status, answer) = stack.post_uploads(&upload_body("palms", &[&real])).await;
        assert_eq!(status, 201, "{answer}");
        let objects = answer["objects"].as_array().unwrap();
        assert_eq!(objects.len(), 6);
        let image_id = objects[0]["image_id"].as_str().unwrap().to_owned();
        assert_eq!(
            objects[0]["key"],
            format!("original-uploads/palms/{image_id}/palms_test1_20130206.jpg")
        );
        assert_eq!(objects[0]["method"], "PUT");

        // Not uploaded yet: complete names every missing object.
        let upload_id = answer["upload_id"].as_str().unwrap().to_owned();
        let (status, refused) = stack.complete(&upload_id).await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(refused["code"], "objects_not_uploaded");
        assert_eq!(refused["objects"].as_array().unwrap().len(), 6);
        assert_eq!(refused["objects"][0]["problem"], "missing");

        stack.put_all(&answer, &|_, kind| real.body(kind)).await;
        let (status, done) = stack.complete(&upload_id).await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["job_id"], "job-1");
        assert_eq!(done["images"], json!([image_id]));
        // Completing again records once and triggers once.
        let (status, again) = stack.complete(&upload_id).await;
        assert_eq!((status, &again["job_id"]), (200, &json!("job-1")));
        assert_eq!(stack.jobs.lock().unwrap().len(), 1);
        assert_eq!(
            SqliteStore::open(&stack.store_path)
                .unwrap()
                .image_count()
                .unwrap(),
            1
        );
        let job = stack.jobs.lock().unwrap()[0].clone();
        assert_eq!(job["inputs"][0]["image_id"], image_id);
        assert_eq!(job["inputs"][0]["original_key"], objects[0]["key"]);

        // The sidecar is in storage, and the record is searchable with its EXIF position.
        let sidecar = stack
            .storage
            .presign(
                Method::Get,
                &format!("metadata/palms/{image_id}.json"),
                &[],
                Duration::from_secs(60),
                SystemTime::now(),
            )
            .unwrap();
        let sidecar: Value = stack
            .client
            .get(&sidecar.url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(sidecar["image_id"], image_id);
        let (status, found) = stack.search("project=palms&bbox=-123,37,-122,38").await;
        assert_eq!(status, 200);
        assert_eq!(found["images"][0]["image_id"], image_id);

        // One record with download URLs that work.
        let downloaded = stack.download(&image_id, ObjectKind::Processed).await;
        assert_eq!(
            Some(&downloaded[..]),
            real.derived.body(ObjectKind::Processed)
        );

        // The job's status, as the backend reports it; an unknown job is a 404.
        let r = stack
            .api(reqwest::Method::GET, "/v1/jobs/job-1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let job = r.json::<Value>().await.unwrap();
        assert_eq!(
            (
                &job["state"],
                &job["progress"]["done"],
                &job["progress"]["total"]
            ),
            (&json!("queued"), &json!(0), &json!(1))
        );
        let r = stack
            .api(reqwest::Method::GET, "/v1/jobs/job-9")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "job_not_found");
    });
}

#[test]
fn storage_refuses_anything_but_the_signed_file() {
    runtime().block_on(async {
        let stack = Stack::start(|_| {});
        let photo = photo("exif-0.6.0/test2.jpg", None, None);
        let (_, answer) = stack.post_uploads(&upload_body("palms", &[&photo])).await;
        let object = answer["objects"][1].clone(); // the processed letterbox
        let body = photo.body("processed");
        let with_header = |name: &str, value: &str| {
            let mut o = object.clone();
            for pair in o["headers"].as_array_mut().unwrap() {
                if pair[0] == name {
                    pair[1] = value.into();
                }
            }
            o
        };
        // Another content type, another length, another checksum.
        assert_eq!(
            stack
                .put(&with_header("content-type", "image/png"), body.clone())
                .await,
            403
        );
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(stack.put(&object, longer).await, 403);
        let other = tessera_core::Sha256Digest::of(b"other").base64;
        assert_eq!(
            stack
                .put(&with_header("x-amz-checksum-sha256", &other), body.clone())
                .await,
            403
        );
        // The right length and headers but other bytes: storage checks the signed checksum.
        let mut flipped = body.clone();
        flipped[100] ^= 1;
        assert_eq!(stack.put(&object, flipped).await, 400);
        // A tampered signature, and the URL pointed at another key.
        let mut tampered = object.clone();
        let url = object["url"].as_str().unwrap();
        let last = url.chars().last().unwrap();
        tampered["url"] = format!(
            "{}{}",
            &url[..url.len() - 1],
            if last == '0' { '1' } else { '0' }
        )
        .into();
        assert_eq!(stack.put(&tampered, body.clone()).await, 403);
        let mut elsewhere = object.clone();
        elsewhere["url"] = url.replace("/processed/", "/processed-x/").into();
        assert_eq!(stack.put(&elsewhere, body.clone()).await, 403);
        // An expired URL: presigned 16 minutes ago for 15.
        let headers = [
            ("content-type", "image/jpeg".to_owned()),
            ("content-length", body.len().to_string()),
        ];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let expired = stack
            .storage
            .presign(
                Method::Put,
                object["key"].as_str().unwrap(),
                &headers,
                Duration::from_secs(900),
                SystemTime::now() - Duration::from_secs(960),
            )
            .unwrap();
        let expired = json!({"url": expired.url, "headers": expired.headers});
        assert_eq!(stack.put(&expired, body.clone()).await, 403);
        // And the right file goes in.
        assert_eq!(stack.put(&object, body).await, 200);
        // A mismatched object is named by complete.
        let upload_id = answer["upload_id"].as_str().unwrap();
        let (status, refused) = stack.complete(upload_id).await;
        assert_eq!(status, 409);
        let problems = refused["objects"].as_array().unwrap();
        assert_eq!(problems.len(), 5, "{refused}");
        assert!(
            problems.iter().all(|p| p["key"] != object["key"]),
            "the uploaded one is fine"
        );
    });
}

#[test]
fn search_by_date_and_place_across_pages() {
    runtime().block_on(async {
        let stack = Stack::start(|_| {});
        // 12 images: dates across 2023–2024, positions on a grid around Accra and one near
        // the antimeridian, one without GPS.
        let mut photos = Vec::new();
        for i in 0..12u32 {
            let date = NaiveDate::from_ymd_opt(2023 + i as i32 % 2, 1 + i % 12, 1 + i).unwrap();
            let gps = match i {
                10 => Some((-17.7, 178.4)),
                11 => None,
                _ => Some((5.0 + f64::from(i) * 0.1, -0.5 + f64::from(i) * 0.1)),
            };
            photos.push(photo("exif-0.6.0/test3.jpg", Some(date), gps));
        }
        let refs: Vec<&Photo> = photos.iter().collect();
        let (status, answer) = stack.post_uploads(&upload_body("survey", &refs)).await;
        assert_eq!(status, 201, "{answer}");
        let ids: Vec<String> = answer["objects"]
            .as_array()
            .unwrap()
            .iter()
            .step_by(6)
            .map(|o| o["image_id"].as_str().unwrap().to_owned())
            .collect();
        stack
            .put_all(&answer, &|id, kind| {
                photos[ids.iter().position(|i| i == id).unwrap()].body(kind)
            })
            .await;
        assert_eq!(
            stack
                .complete(answer["upload_id"].as_str().unwrap())
                .await
                .0,
            200
        );

        let expected = |keep: &dyn Fn(&Photo) -> bool| {
            let mut e: Vec<(String, String)> = photos
                .iter()
                .zip(&ids)
                .filter(|(p, _)| keep(p))
                .map(|(p, id)| {
                    (
                        p.derived.manifest.exif.taken_at.unwrap().date().to_string(),
                        id.clone(),
                    )
                })
                .collect();
            e.sort();
            e.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
        };
        let all_pages = |query: String| {
            let stack = &stack;
            async move {
                let mut seen = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let q = match &cursor {
                        Some(c) => format!("{query}&limit=3&cursor={c}"),
                        None => format!("{query}&limit=3"),
                    };
                    let (status, page) = stack.search(&q).await;
                    assert_eq!(status, 200, "{page}");
                    seen.extend(
                        page["images"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|m| m["image_id"].as_str().unwrap().to_owned()),
                    );
                    match page["next_cursor"].as_str() {
                        Some(c) => cursor = Some(c.to_owned()),
                        None => break,
                    }
                }
                seen
            }
        };
        let in_2024 = |p: &Photo| {
            p.derived
                .manifest
                .exif
                .taken_at
                .unwrap()
                .date()
                .format("%Y")
                .to_string()
                == "2024"
        };
        assert_eq!(
            all_pages("project=survey&from=2024-01-01&to=2024-12-31".into()).await,
            expected(&in_2024)
        );
        let in_box = |p: &Photo| {
            p.derived.manifest.exif.gps.is_some_and(|g| {
                (5.2..=5.6).contains(&g.latitude) && (-0.3..=0.1).contains(&g.longitude)
            })
        };
        assert_eq!(
            all_pages("bbox=-0.3,5.2,0.1,5.6".into()).await,
            expected(&in_box)
        );
        let across = |p: &Photo| {
            p.derived
                .manifest
                .exif
                .gps
                .is_some_and(|g| g.longitude > 170.0)
        };
        assert_eq!(
            all_pages("bbox=170,-20,-170,-10".into()).await,
            expected(&across)
        );
        assert_eq!(all_pages("project=survey".into()).await.len(), 12);
        assert_eq!(all_pages("project=other".into()).await.len(), 0);
    });
}

#[test]
fn the_native_host_refuses_a_large_body_before_reading_it_whole() {
    runtime().block_on(async {
        let stack = Stack::start(|c| c.max_body_bytes = 64 * 1024);
        let huge = json!({"project": "palms", "files": [], "pad": "x".repeat(70 * 1024)});
        // The refusal leaves the body unread, so the server closes the connection after it
        // and says so; a client that reused the connection for its next request would lose
        // that request (hyper's IncompleteMessage). Health needs no key.
        for _ in 0..20 {
            let r = stack
                .api(reqwest::Method::POST, "/v1/uploads")
                .json(&huge)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 413);
            assert_eq!(r.headers()["connection"], "close");
            let answer: Value = r.json().await.unwrap();
            assert_eq!(answer["code"], "body_too_large");
            let r = stack
                .client
                .get(format!("{}/health", stack.edge))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    });
}

#[test]
fn openapi_document_describes_every_route() {
    runtime().block_on(async {
        let stack = Stack::start(|_| {});
        let r = stack
            .client
            .get(format!("{}/v1/openapi.json", stack.edge))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let doc: Value = r.json().await.unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for route in [
            "/v1/uploads",
            "/v1/uploads/{id}/complete",
            "/v1/images",
            "/v1/images/{id}",
            "/v1/jobs/{id}",
            "/health",
        ] {
            assert!(paths.contains(&route), "{route} missing from {paths:?}");
        }
        // Every $ref points at a schema the document defines.
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut refs = Vec::new();
        fn collect<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        out.push(r);
                    }
                    map.values().for_each(|v| collect(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        collect(&doc, &mut refs);
        assert!(refs.len() > 20);
        for r in refs {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r}"));
            assert!(schemas.contains_key(name), "dangling {r}");
        }
        // The Manifest schema has the fields the router sends.
        let manifest = &schemas["Manifest"]["properties"];
        for field in [
            "project",
            "image_id",
            "date",
            "exif",
            "objects",
            "metadata_key",
        ] {
            assert!(manifest.get(field).is_some(), "Manifest.{field}");
        }
    });
}
