//! Jobs run end to end: uploads through `tessera up`'s edge and storage, workers in-process
//! (SQLite) or as `tessera worker` processes (Postgres), results read back from storage.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_core::keys::Project;
use tessera_core::manifest::{Manifest, ObjectKind};
use tessera_core::{Derivatives, Options, Sha256Digest, preprocess};

use crate::up::{Up, credentials, start_up_with, stop};

/// One image to upload: its manifest and the bytes of each object by kind.
pub(crate) struct Image {
    pub(crate) manifest: Manifest,
    pub(crate) bodies: Vec<(ObjectKind, Vec<u8>)>,
}

impl Image {
    /// `original` preprocessed for `project` as the page would.
    pub(crate) fn of(project: &str, name: &str, original: Vec<u8>) -> Self {
        let derived: Derivatives = preprocess(
            &original,
            &Options::new(
                Project::new(project).unwrap(),
                name,
                chrono::NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
            ),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut bodies = vec![(ObjectKind::Original, original)];
        bodies.extend(derived.bodies.iter().cloned());
        Self {
            manifest: derived.manifest,
            bodies,
        }
    }

    /// Replaces the object of `kind` with `bytes`, declaring their checksum and size, as a
    /// client that lies about what it uploads would.
    pub(crate) fn replace(mut self, kind: ObjectKind, bytes: Vec<u8>) -> Self {
        let object = self
            .manifest
            .objects
            .iter_mut()
            .find(|o| o.kind == kind)
            .unwrap();
        object.sha256 = Sha256Digest::of(&bytes);
        object.size_bytes = bytes.len() as u64;
        self.bodies.retain(|(k, _)| *k != kind);
        self.bodies.push((kind, bytes));
        self
    }
}

/// Plans, PUTs and completes one upload of `images` through the edge at `api`; the job id.
pub(crate) async fn upload(
    client: &reqwest::Client,
    api: &str,
    key: &str,
    project: &str,
    images: &[Image],
) -> String {
    let manifests: Vec<&Manifest> = images.iter().map(|i| &i.manifest).collect();
    let created = client
        .post(format!("{api}/v1/uploads"))
        .bearer_auth(key)
        .json(&json!({ "project": project, "files": manifests }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let created: Value = created.json().await.unwrap();
    // Six objects per image, in the request's order; the edge names them.
    for (n, object) in created["objects"].as_array().unwrap().iter().enumerate() {
        let key = object["key"].as_str().unwrap();
        let kind: ObjectKind = serde_json::from_value(object["kind"].clone()).unwrap();
        let body = images[n / 6]
            .bodies
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, b)| b.clone())
            .unwrap();
        let mut request = client.put(object["url"].as_str().unwrap()).body(body);
        for pair in object["headers"].as_array().unwrap() {
            let (name, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            if name != "content-length" {
                request = request.header(name, value);
            }
        }
        let put = request.send().await.unwrap();
        assert_eq!(put.status(), 200, "{key}: {}", put.text().await.unwrap());
    }
    let upload_id = created["upload_id"].as_str().unwrap();
    let completed = client
        .post(format!("{api}/v1/uploads/{upload_id}/complete"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        completed.status(),
        200,
        "{}",
        completed.text().await.unwrap()
    );
    let completed: Value = completed.json().await.unwrap();
    completed["job_id"].as_str().unwrap().to_owned()
}

/// Polls `GET /v1/jobs/{id}` until the job ends; every answer's progress must not go back.
pub(crate) async fn wait_for_end(
    client: &reqwest::Client,
    api: &str,
    key: &str,
    job_id: &str,
    limit: Duration,
    up: &mut Up,
) -> Value {
    let start = Instant::now();
    let mut last = 0.0;
    loop {
        let answer = client
            .get(format!("{api}/v1/jobs/{job_id}"))
            .bearer_auth(key)
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => panic!(
                "{e}; tessera up: {:?}\n{}",
                up.child.try_wait(),
                up.log.lock().unwrap()
            ),
        };
        let job: Value = answer.json().await.unwrap();
        let fraction = job["progress"]["fraction"].as_f64().unwrap();
        assert!(fraction >= last, "progress went back: {last} → {fraction}");
        last = fraction;
        if ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap()) {
            return job;
        }
        assert!(
            start.elapsed() < limit,
            "job {job_id} still {job} after {limit:?}\n{}",
            up.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads `GET /v1/jobs/{id}/events` until the server closes the stream (within `limit`);
/// each frame's event name and data, keep-alive comments left out.
pub(crate) async fn follow_events(
    client: &reqwest::Client,
    api: &str,
    key: &str,
    job_id: &str,
    limit: Duration,
) -> Vec<(String, Value)> {
    let mut response = client
        .get(format!("{api}/v1/jobs/{job_id}/events"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    tokio::time::timeout(limit, async {
        while let Some(chunk) = response.chunk().await.unwrap() {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the event stream still open after {limit:?}:\n{text}"));
    text.split("\n\n")
        .filter_map(|frame| {
            let field = |name: &str| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            };
            Some((
                field("event")?.to_owned(),
                serde_json::from_str(field("data")?).unwrap(),
            ))
        })
        .collect()
}

/// `gdal_translate` with `args`.
pub(crate) fn gdal_translate(args: &[&str], from: &Path, to: &Path) {
    let status = Command::new("gdal_translate")
        .args(["-q"])
        .args(args)
        .arg(from)
        .arg(to)
        .status()
        .expect("gdal_translate (Debian's gdal-bin)");
    assert!(status.success());
}

/// OSBS_029 (400 × 400 px, 0.1 m) cut into four overlapping quarters.
pub(crate) fn osbs_quarters(dir: &Path) -> Vec<PathBuf> {
    let osbs = crate::fixtures().join("deepforest-2.1.0/OSBS_029.tif");
    [(0, 0), (180, 0), (0, 180), (180, 180)]
        .iter()
        .enumerate()
        .map(|(n, (x, y))| {
            let out = dir.join(format!("osbs-{n}.tif"));
            let (x, y) = (x.to_string(), y.to_string());
            gdal_translate(&["-srcwin", &x, &y, "220", "220"], &osbs, &out);
            out
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The object `key` in `tessera up`'s storage folder.
fn stored(data: &Path, key: &str) -> Vec<u8> {
    std::fs::read(data.join("s3/tessera").join(key)).unwrap_or_else(|e| panic!("{key}: {e}"))
}

#[test]
fn an_upload_s_job_runs_to_its_results_and_reports_each_bad_input() {
    let data = tempfile::tempdir().unwrap();
    let pieces = tempfile::tempdir().unwrap();
    // The 400² mosaic's four windows in four detect tasks, shared by the two workers.
    let mut up = start_up_with(
        data.path(),
        &["--workers", "2", "--detect-shard-pixels", "40000"],
    );
    let api = format!("http://{}", up.page);
    let key = credentials(data.path())["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut images: Vec<Image> = osbs_quarters(pieces.path())
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            Image::of("palms", name, std::fs::read(p).unwrap())
        })
        .collect();
    let photo = std::fs::read(crate::fixtures().join("exif-0.6.0/test1.jpg")).unwrap();
    images.push(Image::of("palms", "test1.jpg", photo.clone()));
    // Bad: text declared as a JPEG; a GeoTIFF cut short; a photo whose uploaded 256×256
    // derivative is another image's.
    let right = std::fs::read(crate::fixtures().join("exif-0.6.0/right.jpg")).unwrap();
    images.push(
        Image::of("palms", "notes.jpg", right.clone())
            .replace(ObjectKind::Original, b"image_path,xmin,ymin\n".repeat(40)),
    );
    let piece = std::fs::read(pieces.path().join("osbs-0.tif")).unwrap();
    images.push(
        Image::of("palms", "cut.tif", piece.clone())
            .replace(ObjectKind::Original, piece[..piece.len() / 2].to_vec()),
    );
    let other = Image::of("palms", "right.jpg", right);
    let planted = other
        .bodies
        .iter()
        .find(|(k, _)| *k == ObjectKind::Processed)
        .unwrap()
        .1
        .clone();
    images.push(
        Image::of(
            "palms",
            "planted.jpg",
            std::fs::read(crate::fixtures().join("exif-0.6.0/sony-alpha-6000.jpg")).unwrap(),
        )
        .replace(ObjectKind::Processed, planted),
    );

    let client = reqwest::Client::new();
    let (events, job) = runtime().block_on(async {
        let job_id = upload(&client, &api, &key, "palms", &images).await;
        let events = follow_events(&client, &api, &key, &job_id, Duration::from_secs(180)).await;
        let job = wait_for_end(
            &client,
            &api,
            &key,
            &job_id,
            Duration::from_secs(180),
            &mut up,
        )
        .await;
        (events, job)
    });
    let log = up.log.lock().unwrap().clone();
    assert_eq!(job["state"], "succeeded", "{job:#}\n{log}");
    // The events: progress that never goes back, then one `end` with the final status.
    let (last, progress) = events.split_last().unwrap();
    assert_eq!(last.0, "end");
    assert_eq!(
        (&last.1["state"], &last.1["inputs"]),
        (&job["state"], &job["inputs"])
    );
    assert!(
        progress.iter().all(|(name, _)| name == "progress"),
        "{events:?}"
    );
    let fractions: Vec<f64> = events
        .iter()
        .map(|(_, job)| job["progress"]["fraction"].as_f64().unwrap())
        .collect();
    assert!(fractions.is_sorted(), "{fractions:?}");
    assert_eq!(job["progress"]["fraction"], 1.0, "{job:#}");
    assert_eq!(job["progress"]["done"], 8);
    assert_eq!(job["progress"]["failed"], 3, "{:#}", job["inputs"]);
    let windows = &job["progress"]["windows_done"];
    assert!(
        windows.as_u64().unwrap() >= 1 && *windows == job["progress"]["windows_total"],
        "{job:#}"
    );
    let inputs = job["inputs"].as_array().unwrap();
    for input in &inputs[..5] {
        assert_eq!(input["state"], "ok", "{input}");
    }
    let reason = |i: usize| inputs[i]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason(5).contains("only JPEG, PNG and TIFF"),
        "{}",
        reason(5)
    );
    assert!(
        reason(6).starts_with("truncated: its image data runs to byte"),
        "{}",
        reason(6)
    );
    assert!(
        reason(7).contains("processed derivative")
            && reason(7).contains("is not the one its original gives"),
        "{}",
        reason(7)
    );

    // Results: presigned and in storage under results/{job_id}/.
    let job_id = job["job_id"].as_str().unwrap();
    for name in ["mosaic", "preview", "coco", "geojson", "stac"] {
        let result = &job["results"][name];
        assert!(
            result["key"]
                .as_str()
                .unwrap()
                .starts_with(&format!("results/{job_id}/")),
            "{name}: {result}"
        );
        let url = result["url"].as_str().unwrap();
        let got = runtime().block_on(async { client.get(url).send().await.unwrap() });
        assert_eq!(got.status(), 200, "{name}");
    }
    let coco: Value = serde_json::from_slice(&stored(
        data.path(),
        &format!("results/{job_id}/detections.coco.json"),
    ))
    .unwrap();
    // The mosaic is COCO image 1; the photo (test1.jpg, run upright on its own) image 2,
    // with its count and preview in the results.
    let annotations = coco["annotations"].as_array().unwrap();
    let of_image = |id: u64| annotations.iter().filter(|a| a["image_id"] == id).count();
    assert!(
        of_image(1) >= 15,
        "{} detections on the OSBS_029 mosaic",
        of_image(1)
    );
    assert_eq!(coco["images"][1]["file_name"], inputs[4]["original_key"]);
    let photos = job["results"]["photos"].as_array().unwrap();
    assert_eq!(photos.len(), 1, "{photos:#?}");
    assert_eq!(photos[0]["image_id"], inputs[4]["image_id"]);
    assert_eq!(photos[0]["detections"], of_image(2));
    let preview = runtime().block_on(async {
        let url = photos[0]["preview"]["url"].as_str().unwrap();
        client.get(url).send().await.unwrap().bytes().await.unwrap()
    });
    assert_eq!(&preview[..8], b"\x89PNG\r\n\x1a\n", "the photo's preview");
    let mosaic = stored(data.path(), &format!("results/{job_id}/mosaic.tif"));
    assert_eq!(&mosaic[..4], b"II*\0");
    // Each input's sidecar names the job's results.
    let sidecar_key = format!(
        "metadata/palms/{}.json",
        inputs[0]["image_id"].as_str().unwrap()
    );
    let sidecar: Value = serde_json::from_slice(&stored(data.path(), &sidecar_key)).unwrap();
    assert_eq!(
        sidecar["results"][job_id]["summary"],
        format!("results/{job_id}/job.json")
    );
    // The planted derivative is flagged on its image's sidecar, with the job that found it.
    let planted_key = format!(
        "metadata/palms/{}.json",
        inputs[7]["image_id"].as_str().unwrap()
    );
    let planted: Value = serde_json::from_slice(&stored(data.path(), &planted_key)).unwrap();
    assert_eq!(planted["refused"][job_id]["stage"], "ingest", "{planted:#}");
    assert_eq!(
        planted["refused"][job_id]["reason"].as_str(),
        Some(reason(7).as_str())
    );
    assert!(planted.get("results").is_none(), "{planted:#}");
    stop(up);
}

/// Peak resident memory of process `pid` so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Every object under `prefix` in `tessera up`'s bucket, as keys.
fn stored_keys(data: &Path, prefix: &str) -> Vec<String> {
    let root = data.join("s3/tessera");
    let mut keys = Vec::new();
    let mut folders = vec![root.join(prefix)];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let key = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                // s3s-fs keeps its own bookkeeping beside the objects.
                if !key.split('/').any(|segment| segment.starts_with('.')) {
                    keys.push(key);
                }
            }
        }
    }
    keys.sort();
    keys
}

#[test]
fn a_job_posted_with_its_files_streams_each_to_storage_checked_and_runs() {
    let data = tempfile::tempdir().unwrap();
    let pieces = tempfile::tempdir().unwrap();
    // Files of up to 160 MiB here; a 192 MiB one is refused while it streams.
    let limit = (160u64 << 20).to_string();
    let mut up = start_up_with(
        data.path(),
        &["--workers", "1", "--max-input-bytes", &limit],
    );
    let api = format!("http://{}", up.page);
    let key = credentials(data.path())["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let quarters: Vec<Vec<u8>> = osbs_quarters(pieces.path())
        .iter()
        .take(2)
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let client = reqwest::Client::new();
    let before = peak_rss(up.child.id());
    let post = |form: reqwest::multipart::Form, key: Option<&str>| {
        let mut request = client.post(format!("{api}/v1/jobs")).multipart(form);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move {
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<Value>().await.unwrap())
        }
    };
    let file = |name: &str, bytes: Vec<u8>| {
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned())
    };
    let (status, posted) = runtime().block_on(async {
        // 192 MiB that begin as a TIFF, sent as a stream of 1 MiB chunks.
        let chunks = (0..192).map(|i| {
            let mut chunk = vec![0u8; 1 << 20];
            if i == 0 {
                chunk[..4].copy_from_slice(b"II*\0");
            }
            Ok::<_, std::io::Error>(chunk)
        });
        let huge = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let form = reqwest::multipart::Form::new()
            .text("project", "palms")
            .part("files", file("osbs-0.tif", quarters[0].clone()))
            .part(
                "files",
                file("notes.tif", b"image_path,xmin,ymin\n".repeat(10)),
            )
            .part(
                "files",
                reqwest::multipart::Part::stream(huge).file_name("huge.tif"),
            )
            .part("files", file("empty.tif", Vec::new()))
            .part("files", file("osbs-1.tif", quarters[1].clone()));
        post(form, Some(&key)).await
    });
    assert_eq!(status, 201, "{posted:#}");
    let refused: Vec<(&str, &str)> = posted["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["file_name"].as_str().unwrap(),
                r["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("notes.tif", "unsupported_type"),
            ("huge.tif", "too_large"),
            ("empty.tif", "empty_image")
        ]
    );
    assert!(
        posted["refused"][1]["message"]
            .as_str()
            .unwrap()
            .contains("a job input may have at most 167772160"),
        "{posted:#}"
    );
    // The huge file streamed through without being held: memory grew by far less than it.
    let grown = peak_rss(up.child.id()).saturating_sub(before);
    assert!(grown < 64 << 20, "tessera up's peak RSS grew {grown} bytes");

    // The two GeoTIFFs are the job's inputs, stored byte for byte under the usual keys, each
    // with a sidecar; nothing of the refused files was kept.
    let inputs = posted["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2, "{posted:#}");
    for (input, bytes) in inputs.iter().zip(&quarters) {
        let original = input["original_key"].as_str().unwrap();
        let image_id = input["image_id"].as_str().unwrap();
        assert!(
            original.starts_with(&format!("original-uploads/palms/{image_id}/palms_osbs-")),
            "{original}"
        );
        assert_eq!(&stored(data.path(), original), bytes, "{original}");
        let sidecar: Value = serde_json::from_slice(&stored(
            data.path(),
            &format!("metadata/palms/{image_id}.json"),
        ))
        .unwrap();
        assert_eq!(
            sidecar["original"]["sha256"]["hex"],
            json!(Sha256Digest::of(bytes).hex),
            "{sidecar:#}"
        );
    }
    assert_eq!(stored_keys(data.path(), "original-uploads").len(), 2);

    let job_id = posted["job_id"].as_str().unwrap().to_owned();
    let job = runtime().block_on(wait_for_end(
        &client,
        &api,
        &key,
        &job_id,
        Duration::from_secs(180),
        &mut up,
    ));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["progress"]["done"], 2, "{job:#}");
    assert!(job["results"]["mosaic"]["url"].is_string(), "{job:#}");

    // The form's own mistakes refuse the request; so does a missing key.
    runtime().block_on(async {
        let files_first = reqwest::multipart::Form::new()
            .part("files", file("osbs-0.tif", quarters[0].clone()))
            .text("project", "palms");
        let (status, refused) = post(files_first, Some(&key)).await;
        assert_eq!((status, &refused["code"]), (400, &json!("job_inputs")));
        assert_eq!(
            refused["message"],
            "the project field comes before the files parts"
        );
        let bad_project = reqwest::multipart::Form::new().text("project", "Palms!");
        let (status, refused) = post(bad_project, Some(&key)).await;
        assert_eq!((status, &refused["code"]), (400, &json!("invalid_project")));
        // The project field is read whole, so it is bounded (256 bytes) and a longer one is
        // refused before it is read to its end.
        let huge_project = reqwest::multipart::Form::new().text("project", "a".repeat(4096));
        let (status, refused) = post(huge_project, Some(&key)).await;
        assert_eq!(
            (status, &refused["code"]),
            (400, &json!("job_inputs")),
            "{refused}"
        );
        let only_bad = reqwest::multipart::Form::new()
            .text("project", "palms")
            .part("files", file("notes.tif", b"a,b\n".to_vec()));
        let (status, refused) = post(only_bad, Some(&key)).await;
        assert_eq!((status, &refused["code"]), (400, &json!("job_inputs")));
        assert!(
            refused["message"].as_str().unwrap().starts_with(
                "no posted file can be a job input: notes.tif: only JPEG, PNG and TIFF"
            ),
            "{refused}"
        );
        let unkeyed = reqwest::multipart::Form::new().text("project", "palms");
        let (status, _) = post(unkeyed, None).await;
        assert_eq!(status, 401);
    });
    assert_eq!(stored_keys(data.path(), "original-uploads").len(), 2);
    stop(up);
}

/// A 2,400² virtual raster at OSBS_029's 0.1 m: its pixels tiled 6 × 6 (copies placed with
/// `gdal_translate -a_ullr`, joined by `gdalbuildvrt`).
pub(crate) fn tiled_vrt(dir: &Path) -> PathBuf {
    let osbs = crate::fixtures().join("deepforest-2.1.0/OSBS_029.tif");
    let (x0, y0) = (404_211.9, 3_285_142.9);
    let mut copies = Vec::new();
    for i in 0..6 {
        for j in 0..6 {
            let copy = dir.join(format!("copy-{i}-{j}.tif"));
            let (ulx, uly) = (x0 + 40.0 * f64::from(i), y0 - 40.0 * f64::from(j));
            let bounds = [ulx, uly, ulx + 40.0, uly - 40.0].map(|v| format!("{v:.1}"));
            let mut args = vec!["-a_ullr"];
            args.extend(bounds.iter().map(String::as_str));
            gdal_translate(&args, &osbs, &copy);
            copies.push(copy);
        }
    }
    let vrt = dir.join("tiled.vrt");
    let status = Command::new("gdalbuildvrt")
        .arg("-q")
        .arg(&vrt)
        .args(&copies)
        .status()
        .unwrap();
    assert!(status.success());
    vrt
}

/// [`tiled_vrt`] cut into four 1,200² quarters: a mosaic whose detection takes seconds, long
/// enough to kill a worker in the middle of it.
fn tiled_quarters(dir: &Path) -> Vec<PathBuf> {
    let vrt = tiled_vrt(dir);
    [(0, 0), (1200, 0), (0, 1200), (1200, 1200)]
        .iter()
        .enumerate()
        .map(|(n, (x, y))| {
            let out = dir.join(format!("quarter-{n}.tif"));
            let (x, y) = (x.to_string(), y.to_string());
            gdal_translate(&["-srcwin", &x, &y, "1200", "1200"], &vrt, &out);
            out
        })
        .collect()
}

/// `tessera worker` against `database` and `up`'s storage, with a 3 s lease and
/// `shard_pixels` mosaic pixels per detect task.
fn start_worker(database: &str, up: &Up, data: &Path, shard_pixels: u64) -> std::process::Child {
    let credentials = credentials(data);
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["worker", "--database", database, "--lease-seconds", "3"])
        .args(["--listen", "127.0.0.1:0", "--threads", "1"])
        .args(["--detect-shard-pixels", &shard_pixels.to_string()])
        .arg("--scratch")
        .arg(data.join("worker-scratch"))
        .env("TESSERA_S3_ENDPOINT", format!("http://{}", up.storage))
        .env("TESSERA_S3_BUCKET", "tessera")
        .env("TESSERA_S3_REGION", "us-east-1")
        .env("TESSERA_S3_ADDRESSING", "path")
        .env(
            "TESSERA_S3_ACCESS_KEY_ID",
            credentials["access_key_id"].as_str().unwrap(),
        )
        .env(
            "TESSERA_S3_SECRET_ACCESS_KEY",
            credentials["secret_access_key"].as_str().unwrap(),
        )
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// One run of the drill job: `tessera up` as storage (no workers of its own), the job's
/// inputs put straight into its bucket with fixed keys, the job recorded in a fresh Postgres
/// database under the fixed id `drill`, and `during` called with what it needs to start and
/// kill workers. Returns every result object's bytes by its name under `results/drill/`, and
/// the store.
async fn drill_run(
    name: &str,
    quarters: &[PathBuf],
    during: impl AsyncFnOnce(&str, &Up, &Path, &tessera_batch::store::Store),
) -> (Vec<(String, Vec<u8>)>, tessera_batch::store::Store) {
    use tessera_batch::store::Store;
    use tessera_core::job::JobRequest;
    use tessera_core::keys::{ImageId, JobId};

    let data = tempfile::tempdir().unwrap();
    let database = crate::store::postgres_database(name).await;
    let up = start_up_with(data.path(), &["--workers", "0", "--database", &database]);
    let bucket = data.path().join("s3/tessera");
    let mut manifests = Vec::new();
    for (n, quarter) in quarters.iter().enumerate() {
        let original = std::fs::read(quarter).unwrap();
        let mut options = Options::new(
            Project::new("drill").unwrap(),
            format!("quarter-{n}.tif"),
            chrono::NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
        );
        options.image_id = Some(ImageId::new(format!("quarter-{n}")).unwrap());
        let derived = preprocess(&original, &options).unwrap();
        for object in &derived.manifest.objects {
            let path = bucket.join(&object.key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let body = derived.body(object.kind).unwrap_or(&original);
            std::fs::write(path, body).unwrap();
        }
        let sidecar = bucket.join(&derived.manifest.metadata_key);
        std::fs::create_dir_all(sidecar.parent().unwrap()).unwrap();
        std::fs::write(
            sidecar,
            serde_json::to_vec_pretty(&derived.manifest).unwrap(),
        )
        .unwrap();
        manifests.push(derived.manifest);
    }
    let store = Store::connect(&database).await.unwrap();
    let job_id = JobId::new("drill").unwrap();
    let request = JobRequest::for_upload("drill", &Project::new("drill").unwrap(), &manifests);
    store
        .create_job(&job_id, &request, 1_780_000_000_000)
        .await
        .unwrap();

    during(&database, &up, data.path(), &store).await;

    let job = store.job(&job_id, 0).await.unwrap().unwrap();
    assert_eq!(
        job.state.as_str(),
        "succeeded",
        "{job:#?}\n{}",
        up.log.lock().unwrap()
    );
    let mut results = Vec::new();
    let root = bucket.join("results/drill");
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path
                .strip_prefix(&root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if path.is_dir() {
                folders.push(path);
            } else if !path.file_name().unwrap().to_str().unwrap().starts_with('.') {
                results.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    results.sort();
    stop(up);
    (results, store)
}

/// Waits for `store`'s drill job to end, up to `limit`.
async fn wait_for_drill(store: &tessera_batch::store::Store, limit: Duration) {
    let job_id = tessera_core::keys::JobId::new("drill").unwrap();
    let start = Instant::now();
    while !store
        .job(&job_id, 0)
        .await
        .unwrap()
        .unwrap()
        .state
        .is_terminal()
    {
        assert!(
            start.elapsed() < limit,
            "the drill job did not end in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The results a job publishes (its shards' intermediate files left out).
fn published(results: &[(String, Vec<u8>)]) -> Vec<&(String, Vec<u8>)> {
    results
        .iter()
        .filter(|(name, _)| !name.contains('/'))
        .collect()
}

#[test]
fn two_workers_share_a_mosaic_s_detect_shards_and_one_killed_mid_shard_changes_no_byte() {
    let pieces = tempfile::tempdir().unwrap();
    let quarters = tiled_quarters(pieces.path());
    let job_id = tessera_core::keys::JobId::new("drill").unwrap();
    // The 2,400² mosaic in 4 detect shards of 1,440,000 pixels (the default is 1).
    let (whole, quarter) = (u64::MAX >> 1, 2400 * 2400 / 4);
    runtime().block_on(async {
        // Undisturbed: one worker, the mosaic in one detect task, stopped with SIGTERM once
        // the job has ended.
        let (reference, _) =
            drill_run("drill_reference", &quarters, async |db, up, data, store| {
                let mut worker = start_worker(db, up, data, whole);
                wait_for_drill(store, Duration::from_secs(300)).await;
                let term = Command::new("kill")
                    .args(["-TERM", &worker.id().to_string()])
                    .status()
                    .unwrap();
                assert!(term.success());
                assert!(
                    worker.wait().unwrap().success(),
                    "SIGTERM ends a worker with 0"
                );
            })
            .await;
        let names: Vec<&str> = published(&reference)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "detections.coco.json",
                "detections.geojson",
                "item.json",
                "job.json",
                "mosaic.tif",
                "preview.png"
            ]
        );

        // The drill: workers A and B share the mosaic's four detect shards; the one holding
        // a shard is killed (-9) in the middle of it, and the other takes it up once the
        // lease (3 s) has run out.
        let (drilled, store) = drill_run("drill_killed", &quarters, async |db, up, data, store| {
            let mut workers = [
                start_worker(db, up, data, quarter),
                start_worker(db, up, data, quarter),
            ];
            let start = Instant::now();
            let holder = 'found: loop {
                for task in store.tasks(&job_id).await.unwrap() {
                    if task.key.starts_with("drill/detect/") && task.state.as_str() == "running" {
                        let attempts = store.attempts(task.id).await.unwrap();
                        if let Some(open) = attempts.last().filter(|a| a.ended_at.is_none()) {
                            break 'found open.worker.clone();
                        }
                    }
                }
                assert!(
                    start.elapsed() < Duration::from_secs(300),
                    "no detect shard ran"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            let killed = workers
                .iter()
                .position(|w| holder.contains(&format!("-{}-", w.id())))
                .unwrap_or_else(|| panic!("{holder} is neither worker"));
            workers[killed].kill().unwrap();
            workers[killed].wait().unwrap();
            wait_for_drill(store, Duration::from_secs(300)).await;
            let survivor = &mut workers[1 - killed];
            survivor.kill().unwrap();
            survivor.wait().unwrap();
        })
        .await;
        let (want, got) = (published(&reference), published(&drilled));
        assert_eq!(want.len(), got.len());
        for ((name, want), (got_name, got)) in want.iter().zip(&got) {
            assert_eq!(name, got_name);
            assert!(want == got, "{name} differs with four shards and a kill");
        }
        let partials: Vec<&str> = drilled
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| n.contains('/'))
            .collect();
        assert_eq!(
            partials,
            [
                "detect/shard-0-of-4.json",
                "detect/shard-1-of-4.json",
                "detect/shard-2-of-4.json",
                "detect/shard-3-of-4.json",
                "stitch/preview.png"
            ]
        );

        let tasks = store.tasks(&job_id).await.unwrap();
        let keys: Vec<&str> = tasks.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "drill/ingest/0",
                "drill/ingest/1",
                "drill/ingest/2",
                "drill/ingest/3",
                "drill/stitch/0",
                "drill/detect/0",
                "drill/detect/1",
                "drill/detect/2",
                "drill/detect/3",
                "drill/publish/0"
            ],
            "each task once"
        );
        let (mut killed_tasks, mut detect_workers) = (0, std::collections::HashSet::new());
        for task in &tasks {
            let attempts = store.attempts(task.id).await.unwrap();
            // Two workers never hold one task at once: each claim began after the one
            // before it ended.
            for pair in attempts.windows(2) {
                assert!(
                    pair[0].ended_at.unwrap() <= pair[1].started_at,
                    "{attempts:#?}"
                );
            }
            assert_eq!(
                attempts.last().unwrap().outcome.as_deref(),
                Some("completed"),
                "{}",
                task.key
            );
            if task.key.starts_with("drill/detect/") {
                detect_workers.extend(attempts.iter().map(|a| a.worker.clone()));
            }
            if attempts.len() > 1 {
                killed_tasks += 1;
                assert_eq!(task.key.split('/').nth(1), Some("detect"), "{attempts:#?}");
                assert_eq!(attempts.len(), 2, "{attempts:#?}");
                assert_eq!(attempts[0].outcome.as_deref(), Some("lease_expired"));
                assert_ne!(attempts[0].worker, attempts[1].worker);
            }
        }
        assert_eq!(killed_tasks, 1, "the killed worker's shard ran twice");
        assert_eq!(detect_workers.len(), 2, "both workers ran detect shards");
        let job = store.job(&job_id, 0).await.unwrap().unwrap();
        assert_eq!(
            (job.progress.fraction, job.progress.windows_done),
            (1.0, job.progress.windows_total)
        );
    });
}

#[test]
fn jobs_are_listed_by_page_cancelled_and_retried_through_the_edge() {
    let data = tempfile::tempdir().unwrap();
    let up = start_up_with(data.path(), &["--workers", "0"]);
    let api = format!("http://{}", up.page);
    let key = credentials(data.path())["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let photos = ["test1.jpg", "right.jpg", "short-ascii-II.jpg"];
    let client = reqwest::Client::new();
    runtime().block_on(async {
        let mut ids = Vec::new();
        for name in photos {
            let bytes = std::fs::read(crate::fixtures().join("exif-0.6.0").join(name)).unwrap();
            ids.push(
                upload(
                    &client,
                    &api,
                    &key,
                    "palms",
                    &[Image::of("palms", name, bytes)],
                )
                .await,
            );
        }
        let get = |path: String| {
            let request = client.get(format!("{api}{path}")).bearer_auth(&key);
            async move {
                let answer = request.send().await.unwrap();
                (
                    answer.status().as_u16(),
                    answer.json::<Value>().await.unwrap(),
                )
            }
        };
        let post = |path: String| {
            let request = client.post(format!("{api}{path}")).bearer_auth(&key);
            async move {
                let answer = request.send().await.unwrap();
                (
                    answer.status().as_u16(),
                    answer.json::<Value>().await.unwrap(),
                )
            }
        };
        // Newest first, two to a page, every job once.
        let (status, first) = get("/v1/jobs?project=palms&limit=2".into()).await;
        assert_eq!(status, 200, "{first}");
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let (_, second) = get(format!("/v1/jobs?project=palms&limit=2&cursor={cursor}")).await;
        assert!(second.get("next_cursor").is_none(), "{second}");
        let listed: Vec<&str> = first["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .chain(second["jobs"].as_array().unwrap())
            .map(|j| j["job_id"].as_str().unwrap())
            .collect();
        let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
        assert_eq!(listed, newest_first);
        let (_, other) = get("/v1/jobs?project=other".into()).await;
        assert_eq!(other["jobs"], json!([]));
        // Filters are typed before they reach SQL.
        for query in [
            "project=x'%20OR%20'1'='1",
            "state=queued'--",
            "limit=1;DROP",
            "cursor=1~a'b",
            "sort=x",
        ] {
            let (status, refused) = get(format!("/v1/jobs?{query}")).await;
            assert_eq!(status, 400, "{query}: {refused}");
        }
        let unauthorized = client.get(format!("{api}/v1/jobs")).send().await.unwrap();
        assert_eq!(unauthorized.status(), 401);

        // Cancel a queued job; cancelling again conflicts; retry queues it again.
        let job = &ids[0];
        let (status, cancelled) = post(format!("/v1/jobs/{job}/cancel")).await;
        assert_eq!((status, &cancelled["state"]), (200, &json!("cancelled")));
        let (_, listed) = get("/v1/jobs?state=cancelled".into()).await;
        assert_eq!(listed["jobs"][0]["job_id"], json!(job));
        let (status, again) = post(format!("/v1/jobs/{job}/cancel")).await;
        assert_eq!(
            (status, &again["code"]),
            (409, &json!("job_state_conflict"))
        );
        assert_eq!(again["message"], "a cancelled job cannot cancel");
        let (status, retried) = post(format!("/v1/jobs/{job}/retry")).await;
        assert_eq!((status, &retried["state"]), (200, &json!("queued")));
        let (status, missing) = post("/v1/jobs/no-such-job/retry".into()).await;
        assert_eq!((status, &missing["code"]), (404, &json!("job_not_found")));
    });
    stop(up);
}

/// The edge's HTTP client of the job API and the batch backend's service API, joined in
/// process: every call the deployed edge makes gets the answer the store gives.
#[test]
fn the_edge_s_http_client_and_the_service_job_api_agree() {
    use tessera_batch::store::Store;
    use tessera_core::job::{JobAction, JobQuery, JobRequest};
    use tessera_edge::{Acted, Created, HttpJobs, Jobs, JobsError, Outbound, OutboundError};

    struct Loopback(Store);
    impl Outbound for Loopback {
        async fn send(
            &self,
            request: http::Request<Vec<u8>>,
        ) -> Result<http::Response<Vec<u8>>, OutboundError> {
            let arrivals =
                None::<&tessera_batch::arrivals::Arrivals<tessera_edge::metadata::MetadataStore>>;
            Ok(
                tessera_batch::jobs::answer(&self.0, "service-token", false, arrivals, &request)
                    .await,
            )
        }
    }
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite:{}", dir.path().join("b.sqlite").display()))
            .await
            .unwrap();
        let image = Image::of(
            "palms",
            "test1.jpg",
            std::fs::read(crate::fixtures().join("exif-0.6.0/test1.jpg")).unwrap(),
        );
        let request = JobRequest::for_upload(
            "upload-1",
            &Project::new("palms").unwrap(),
            &[image.manifest],
        );
        let http = HttpJobs::new(
            "http://jobs.internal/",
            "service-token",
            Loopback(store.clone()),
        );
        let create = async |request: &JobRequest| match http.create(request).await.unwrap() {
            Created::Done { job, webhook } => (*job, webhook),
            Created::WebhookRefused(message) => panic!("{message}"),
        };
        let (created, webhook) = create(&request).await;
        assert_eq!(webhook, None);
        assert_eq!(created.state.as_str(), "queued");
        assert_eq!((created.progress.done, created.progress.total), (0, 1));
        // Creating it again (a second completion) gives the same job.
        assert_eq!(create(&request).await.0.job_id, created.job_id);
        assert_eq!(
            http.status(&created.job_id).await.unwrap(),
            Some(created.clone())
        );
        let page = http
            .list(&JobQuery {
                project: None,
                state: None,
                limit: 10,
                cursor: None,
            })
            .await
            .unwrap();
        assert_eq!(page.jobs.len(), 1);
        match http.act(&created.job_id, JobAction::Retry).await.unwrap() {
            Acted::Conflict(message) => assert_eq!(message, "a queued job cannot retry"),
            other => panic!("{other:?}"),
        }
        match http.act(&created.job_id, JobAction::Cancel).await.unwrap() {
            Acted::Done(job) => assert_eq!(job.state.as_str(), "cancelled"),
            other => panic!("{other:?}"),
        }
        let missing = tessera_core::keys::JobId::new("no-such-job").unwrap();
        assert_eq!(http.status(&missing).await.unwrap(), None);
        assert_eq!(
            http.act(&missing, JobAction::Cancel).await.unwrap(),
            Acted::NotFound
        );
        // Webhooks: registered (the backend refuses loopback without local webhooks; the
        // secret comes back once), listed and replayed over the same client.
        use tessera_core::webhook::{CreateWebhook, DeliveryQuery, WebhookEvent};
        let hook = |url: &str| CreateWebhook {
            project: "palms".into(),
            url: url.into(),
            events: vec![WebhookEvent::JobFailed],
        };
        match http
            .create_webhook(&hook("https://127.0.0.1/h"))
            .await
            .unwrap()
        {
            tessera_edge::Registered::Refused(message) => {
                assert!(message.contains("loopback"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match http
            .create_webhook(&hook("https://8.8.8.8/h"))
            .await
            .unwrap()
        {
            tessera_edge::Registered::Done(endpoint) => {
                assert!(endpoint.secret.unwrap().starts_with("whsec_"));
            }
            other => panic!("{other:?}"),
        }
        // A job's own webhook: refused (no job made), or made with the job, its secret once.
        let with_hook = |url: &str| JobRequest {
            upload_id: None,
            webhook: Some(CreateWebhook {
                events: vec![WebhookEvent::JobCompleted],
                ..hook(url)
            }),
            ..request.clone()
        };
        match http.create(&with_hook("https://10.0.0.1/h")).await.unwrap() {
            Created::WebhookRefused(message) => assert!(message.contains("private"), "{message}"),
            other => panic!("{other:?}"),
        }
        let (job, endpoint) = create(&with_hook("https://8.8.4.4/h")).await;
        let endpoint = endpoint.unwrap();
        assert_eq!(endpoint.job_id.as_deref(), Some(job.job_id.as_str()));
        assert!(endpoint.secret.unwrap().starts_with("whsec_"));
        let query = DeliveryQuery {
            project: Some(Project::new("palms").unwrap()),
            state: None,
            limit: 10,
        };
        assert_eq!(http.deliveries(&query).await.unwrap().deliveries, []);
        // upload.expired reaches the outbox once however often the edge announces it: the
        // endpoint registered above does not take it, so register one that does.
        let expired = match http
            .create_webhook(&CreateWebhook {
                events: vec![WebhookEvent::UploadExpired],
                ..hook("https://8.8.8.8/expired")
            })
            .await
            .unwrap()
        {
            tessera_edge::Registered::Done(endpoint) => endpoint,
            other => panic!("{other:?}"),
        };
        let event = tessera_core::webhook::UploadExpiredEvent {
            upload_id: "upload-9".into(),
            project: "palms".into(),
            created_at: 1,
            expired_at: 901,
            image_ids: vec!["i".into()],
            file_names: vec!["i.jpg".into()],
        };
        http.upload_expired(&event).await.unwrap();
        http.upload_expired(&event).await.unwrap();
        let deliveries = http.deliveries(&query).await.unwrap().deliveries;
        assert_eq!(deliveries.len(), 1, "{deliveries:?}");
        assert_eq!(
            (deliveries[0].event, &deliveries[0].endpoint_id),
            (WebhookEvent::UploadExpired, &expired.endpoint_id)
        );
        assert_eq!(http.replay("dlv_nothing/../x").await.unwrap(), None);
        let wrong = HttpJobs::new("http://jobs.internal", "guess", Loopback(store));
        match wrong.create(&request).await {
            Err(JobsError::Refused { status, .. }) => assert_eq!(status, 401),
            other => panic!("{other:?}"),
        }
    });
}

/// `tessera worker` serves the service job API that a deployed edge calls, behind its token.
#[test]
fn tessera_worker_serves_the_service_job_api_behind_its_token() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let port = crate::free_port();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "worker",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
        ])
        .arg(format!("sqlite:{}", dir.path().join("b.sqlite").display()))
        .envs(crate::EDGE_ENV)
        .env("TESSERA_BACKEND_TOKEN", "service-token")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(worker.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("tessera worker: 1 worker(s)"), "{line}");
    let image = Image::of(
        "palms",
        "test1.jpg",
        std::fs::read(crate::fixtures().join("exif-0.6.0/test1.jpg")).unwrap(),
    );
    let request = tessera_core::job::JobRequest::for_upload(
        "upload-1",
        &Project::new("palms").unwrap(),
        &[image.manifest],
    );
    let base = format!("http://127.0.0.1:{port}");
    runtime().block_on(async {
        let client = reqwest::Client::new();
        let health = client.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let refused = client
            .post(format!("{base}/v1/jobs"))
            .bearer_auth("guess")
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
        let created = client
            .post(format!("{base}/v1/jobs"))
            .bearer_auth("service-token")
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let job: Value = created.json().await.unwrap();
        let got: Value = client
            .get(format!(
                "{base}/v1/jobs/{}",
                job["job_id"].as_str().unwrap()
            ))
            .bearer_auth("service-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["job_id"], job["job_id"]);
        assert_eq!(got["inputs"].as_array().unwrap().len(), 1);
    });
    let term = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(worker.wait().unwrap().success());
}

/// A job cancelled between two stages (its ingest done, stitch not yet enqueued) is moved on
/// by a retry instead of staying queued with nothing to run; on SQLite and Postgres.
#[test]
fn a_job_cancelled_between_stages_runs_its_next_stage_when_retried() {
    use tessera_batch::store::{Advanced, Store};
    use tessera_core::job::{JobRequest, JobStage};
    use tessera_core::keys::JobId;
    use tessera_core::queue::Attempt;
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let urls = [
            format!("sqlite:{}", dir.path().join("b.sqlite").display()),
            crate::store::postgres_database("retry_gap").await,
        ];
        let image = Image::of(
            "palms",
            "test1.jpg",
            std::fs::read(crate::fixtures().join("exif-0.6.0/test1.jpg")).unwrap(),
        );
        let request =
            JobRequest::for_upload("u", &Project::new("palms").unwrap(), &[image.manifest]);
        for url in urls {
            let store = Store::connect(&url).await.unwrap();
            let job = JobId::new("gap").unwrap();
            store.create_job(&job, &request, 0).await.unwrap();
            let task = store.claim("w", 0).await.unwrap().unwrap();
            assert_eq!(task.key, "gap/ingest/0");
            let _ = store
                .change_state(&job, tessera_core::job::JobEvent::Claim, None, 0)
                .await
                .unwrap();
            store
                .finish(&task, "w", &Attempt::Completed, 1, 0.5)
                .await
                .unwrap();
            store.cancel_job(&job, 2).await.unwrap().unwrap();
            assert_eq!(
                store.advance(&job, JobStage::Ingest, 3).await.unwrap(),
                Advanced::Stopped
            );
            assert_eq!(store.claim("w", 4).await.unwrap(), None, "{url}");
            store.retry_job(&job, 5).await.unwrap().unwrap();
            let next = store
                .claim("w", 6)
                .await
                .unwrap()
                .expect("the next stage's task");
            assert_eq!(next.key, "gap/stitch/0", "{url}");
        }
    });
}
