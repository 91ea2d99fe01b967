//! `tessera upload` and `tessera sync` (tessera-client over reqwest) against `tessera up`, and
//! against the native edge over SeaweedFS behind a proxy that fails storage requests on
//! purpose: every object in storage byte-identical to what the page makes of the same files,
//! nothing uploaded twice, a file dropped into a watched folder uploaded once, transient
//! failures retried, refusals reported.

use std::collections::HashMap;
use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use tessera_core::keys::Project;
use tessera_core::manifest::{Manifest, ObjectKind, Sha256Digest};
use tessera_core::{Options, preprocess};

use crate::arrivals::{SEAWEED_KEYS, Seaweed, Worker};
use crate::up::{credentials, start_up_with, stop};
use crate::webhooks::runtime;

/// Real photos and GeoTIFFs: camera JPEGs with EXIF orientation and GPS, a PNG, a GeoTIFF.
const FILES: [&str; 6] = [
    "exif-0.6.0/sony-alpha-6000.jpg",
    "exif-0.6.0/short-ascii-II.jpg",
    "exif-0.6.0/test1.jpg",
    "exif-0.6.0/right.jpg",
    "deepforest-2.1.0/OSBS_029.tif",
    "scikit-image-0.26.0/horse.png",
];

/// Copies fixtures into `dir`.
fn folder(dir: &Path, files: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for rel in files {
        let src = crate::fixtures().join(rel);
        std::fs::copy(&src, dir.join(Path::new(rel).file_name().unwrap())).unwrap_or_else(|e| {
            panic!("{}: {e}; run `bash tests/fetch-fixtures.sh`", src.display())
        });
    }
}

/// Runs `tessera` with the API key in the environment and no config file.
fn tessera(args: &[&str], api_key: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env("TESSERA_API_KEY", api_key)
        .env("TESSERA_CONFIG", "/nonexistent/tessera.json")
        .env_remove("TESSERA_ENDPOINT")
        .output()
        .unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every image recorded in `project`, with the presigned GET of each object.
fn recorded(
    endpoint: &str,
    api_key: &str,
    project: &str,
) -> Vec<(Manifest, HashMap<String, String>)> {
    runtime().block_on(async {
        let client = reqwest::Client::new();
        let page: Value = client
            .get(format!("{endpoint}/v1/images?project={project}&limit=200"))
            .bearer_auth(api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut images = Vec::new();
        for image in page["images"].as_array().unwrap() {
            let manifest: Manifest = serde_json::from_value(image.clone()).unwrap();
            let answer: Value = client
                .get(format!(
                    "{endpoint}/v1/images/{}",
                    manifest.image_id.as_str()
                ))
                .bearer_auth(api_key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let downloads = answer["downloads"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(key, d)| (key.clone(), d["url"].as_str().unwrap().to_owned()))
                .collect();
            images.push((manifest, downloads));
        }
        images
    })
}

/// Holds every recorded image to what the page makes of the same file (tessera-core's
/// `preprocess` with the page's options: the file's name, today as the fallback date): each
/// object fetched back from storage is byte-identical to it, and hashes to the recorded
/// checksum.
fn check_against_the_page(images: &[(Manifest, HashMap<String, String>)], dir: &Path) {
    runtime().block_on(async {
        let client = reqwest::Client::new();
        for (manifest, downloads) in images {
            let bytes = std::fs::read(dir.join(&manifest.file_name)).unwrap();
            let options = Options::new(
                Project::new(manifest.project.as_str().to_owned()).unwrap(),
                manifest.file_name.clone(),
                Utc::now().date_naive(),
            );
            let page = preprocess(&bytes, &options).unwrap();
            for kind in ObjectKind::ALL {
                let object = manifest.object(kind).unwrap();
                let expected = page.body(kind).unwrap_or(&bytes);
                let stored = client
                    .get(&downloads[&object.key])
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                assert!(
                    stored.as_ref() == expected,
                    "{} of {}: storage holds {} bytes, the page makes {}",
                    kind.as_str(),
                    manifest.file_name,
                    stored.len(),
                    expected.len()
                );
                assert_eq!(Sha256Digest::of(&stored), object.sha256, "{}", object.key);
                assert_eq!(page.manifest.object(kind).unwrap().sha256, object.sha256);
            }
        }
    });
}

fn not_an_image(dir: &Path) -> PathBuf {
    let path = dir.join("notes.jpg");
    std::fs::write(&path, b"field notes, not a photo\n".repeat(40)).unwrap();
    path
}

#[test]
fn upload_and_sync_through_tessera_up_store_what_the_page_makes_once() {
    let data = tempfile::tempdir().unwrap();
    let up = start_up_with(data.path(), &[]);
    let endpoint = format!("http://{}", up.page);
    let api_key = credentials(data.path())["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let files = tempfile::tempdir().unwrap();
    let photos = files.path().join("photos");
    folder(&photos, &FILES);
    let notes = not_an_image(&photos);

    let first = tessera(
        &[
            "upload",
            "--endpoint",
            &endpoint,
            "--project",
            "local",
            photos.to_str().unwrap(),
        ],
        &api_key,
    );
    let (stdout, stderr) = text(&first);
    assert_eq!(
        first.status.code(),
        Some(1),
        "a refusal fails the run\n{stdout}{stderr}"
    );
    assert!(stdout.starts_with("6 uploaded "), "{stdout}");
    assert!(
        stdout.contains("0 already uploaded, 1 refused, 0 failed"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "refused {}: only JPEG, PNG and TIFF images are accepted (found a text file) [unsupported_type]",
            notes.display()
        )),
        "{stderr}"
    );
    // One job for the batch, named in the summary.
    assert_eq!(stdout.matches("  job ").count(), 1, "{stdout}");
    let images = recorded(&endpoint, &api_key, "local");
    assert_eq!(images.len(), 6);
    check_against_the_page(&images, &photos);

    // Again, without the bad file: everything is already there.
    std::fs::remove_file(&notes).unwrap();
    let again = tessera(
        &[
            "upload",
            "--endpoint",
            &endpoint,
            "--project",
            "local",
            photos.to_str().unwrap(),
        ],
        &api_key,
    );
    let (stdout, stderr) = text(&again);
    assert!(again.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("0 uploaded "), "{stdout}");
    assert!(
        stdout.contains("6 already uploaded, 0 refused, 0 failed"),
        "{stdout}"
    );
    assert_eq!(recorded(&endpoint, &api_key, "local").len(), 6);

    // A watched folder: what is there, then a file written in two parts while it runs.
    let watched = files.path().join("watched");
    folder(
        &watched,
        &["scikit-image-0.26.0/retina.jpg", "exif-0.6.0/right.jpg"],
    );
    let mut sync = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "sync",
            "--watch",
            "--settle-ms",
            "400",
            "--endpoint",
            &endpoint,
            "--project",
            "local",
        ])
        .arg(&watched)
        .env("TESSERA_API_KEY", &api_key)
        .env("TESSERA_CONFIG", "/nonexistent/tessera.json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&log);
    let stderr = sync.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !log.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("uploaded ");
    wait_for("retina.jpg (job ");
    let astronaut =
        std::fs::read(crate::fixtures().join("scikit-image-0.26.0/astronaut.png")).unwrap();
    let dropped = watched.join("astronaut.png");
    {
        let mut file = std::fs::File::create(&dropped).unwrap();
        file.write_all(&astronaut[..astronaut.len() / 2]).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(250));
        file.write_all(&astronaut[astronaut.len() / 2..]).unwrap();
    }
    wait_for("astronaut.png (job ");
    // Touched, same bytes: not uploaded again.
    std::fs::write(&dropped, &astronaut).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let interrupted = Command::new("kill")
        .args(["-INT", &sync.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = sync.wait().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(status.success(), "{log}");
    assert_eq!(log.matches("astronaut.png (job ").count(), 1, "{log}");
    assert!(
        !log.contains(&format!(
            "uploaded {} ",
            watched.join("right.jpg").display()
        )),
        "right.jpg was uploaded before: {log}"
    );
    let images = recorded(&endpoint, &api_key, "local");
    let named = |name: &str| images.iter().filter(|(m, _)| m.file_name == name).count();
    assert_eq!(
        (
            named("astronaut.png"),
            named("retina.jpg"),
            named("right.jpg")
        ),
        (1, 1, 1)
    );
    assert_eq!(images.len(), 8);
    check_against_the_page(
        &images
            .into_iter()
            .filter(|(m, _)| ["astronaut.png", "retina.jpg"].contains(&m.file_name.as_str()))
            .collect::<Vec<_>>(),
        &watched,
    );
    assert!(watched.join(".tessera-sync.json").is_file());

    // Restarted, one-shot: nothing twice, exit 0.
    let rerun = tessera(
        &[
            "sync",
            "--endpoint",
            &endpoint,
            "--project",
            "local",
            watched.to_str().unwrap(),
        ],
        &api_key,
    );
    let (stdout, stderr) = text(&rerun);
    assert!(rerun.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("0 uploaded "), "{stdout}");
    assert!(
        stdout.contains("3 already uploaded, 0 refused, 0 failed"),
        "{stdout}"
    );
    assert_eq!(recorded(&endpoint, &api_key, "local").len(), 8);

    // No API key: said so, before anything is read.
    let keyless = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["upload", "--endpoint", &endpoint, "--project", "local"])
        .arg(&photos)
        .env_remove("TESSERA_API_KEY")
        .env("TESSERA_CONFIG", files.path().join("none.json"))
        .output()
        .unwrap();
    let (_, stderr) = text(&keyless);
    assert_eq!(keyless.status.code(), Some(2));
    assert!(
        stderr.contains("no API key: set TESSERA_API_KEY, or put \"api_key\" in"),
        "{stderr}"
    );
    stop(up);
}

/// A proxy in front of storage that forwards each request unchanged (the `Host` the URL was
/// signed for included) unless `fault` answers it instead, given the method, the path and
/// how many times that method and path were seen.
struct FaultyProxy {
    addr: String,
    seen: Arc<Mutex<HashMap<(String, String), usize>>>,
}

type Fault = fn(&str, &str, usize) -> Option<(u16, &'static str)>;

impl FaultyProxy {
    fn start(upstream: &str, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let counts = Arc::clone(&seen);
        let upstream = upstream.trim_start_matches("http://").to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let counts = Arc::clone(&counts);
                let upstream = upstream.clone();
                std::thread::spawn(move || serve(client, &upstream, &counts, fault));
            }
        });
        Self { addr, seen }
    }
}

/// Answers one request on `client` (then closes it): the fault, or upstream's answer.
fn serve(
    mut client: TcpStream,
    upstream: &str,
    counts: &Mutex<HashMap<(String, String), usize>>,
    fault: Fault,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap().to_owned();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap().to_owned();
    let path = parts.next().unwrap().split('?').next().unwrap().to_owned();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.trim().parse().unwrap());
    let mut body = vec![0; length];
    client.read_exact(&mut body).unwrap();
    let attempt = {
        let mut counts = counts.lock().unwrap();
        let n = counts.entry((method.clone(), path.clone())).or_default();
        *n += 1;
        *n
    };
    if let Some((status, code)) = fault(&method, &path, attempt) {
        let xml = format!(
            "<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>injected by the test</Message></Error>"
        );
        let _ = write!(
            client,
            "HTTP/1.1 {status} Injected\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{xml}",
            xml.len()
        );
        return;
    }
    let mut server = TcpStream::connect(upstream).unwrap();
    let head = head.replacen("\r\n", "\r\nconnection: close\r\n", 1);
    server.write_all(head.as_bytes()).unwrap();
    server.write_all(&body).unwrap();
    let mut answer = Vec::new();
    let _ = server.read_to_end(&mut answer);
    let _ = client.write_all(&answer);
}

#[test]
fn upload_through_the_native_edge_retries_transient_storage_failures_and_reports_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("weed")).unwrap();
    let seaweed = Seaweed::start(&dir.path().join("weed"));
    // Every object's first PUT fails with 503 SlowDown; the original of `refuse-me` is denied.
    let proxy = FaultyProxy::start(&seaweed.endpoint, |method, path, attempt| {
        if method != "PUT" || path.contains("/metadata/") {
            return None;
        }
        if path.contains("original-uploads/") && path.contains("refuse-me") {
            Some((403, "AccessDenied"))
        } else if attempt == 1 {
            Some((503, "SlowDown"))
        } else {
            None
        }
    });
    let backend = format!("127.0.0.1:{}", crate::free_port());
    let (_worker, _log) = Worker::start(dir.path(), &seaweed.endpoint, &backend, 0);
    let api_key = "native-edge-key";
    let key_hash = Sha256Digest::of(api_key.as_bytes()).hex;
    let edge = format!("127.0.0.1:{}", crate::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["edge", "--listen", &edge, "--database"])
        .arg(format!(
            "sqlite:{}",
            dir.path().join("metadata.sqlite").display()
        ))
        .env("TESSERA_S3_ENDPOINT", format!("http://{}", proxy.addr))
        .env("TESSERA_S3_BUCKET", "tessera")
        .env("TESSERA_S3_ACCESS_KEY_ID", SEAWEED_KEYS.0)
        .env("TESSERA_S3_SECRET_ACCESS_KEY", SEAWEED_KEYS.1)
        .env("TESSERA_BACKEND_URL", format!("http://{backend}"))
        .env("TESSERA_BACKEND_TOKEN", "service-token")
        .env("TESSERA_API_KEY_HASHES", &key_hash)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&edge).is_err() || TcpStream::connect(&backend).is_err() {
        assert!(
            Instant::now() < deadline,
            "the edge or the worker did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let photos = dir.path().join("photos");
    folder(
        &photos,
        &["exif-0.6.0/test1.jpg", "deepforest-2.1.0/OSBS_029.tif"],
    );
    std::fs::copy(
        crate::fixtures().join("exif-0.6.0/right.jpg"),
        photos.join("refuse-me.jpg"),
    )
    .unwrap();
    let endpoint = format!("http://{edge}");
    let output = tessera(
        &[
            "upload",
            "--endpoint",
            &endpoint,
            "--project",
            "site-a",
            photos.to_str().unwrap(),
        ],
        api_key,
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.starts_with("2 uploaded "), "{stdout}{stderr}");
    assert!(
        stdout.contains("0 already uploaded, 0 refused, 1 failed"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "failed {}: storage refused original: HTTP 403: AccessDenied: injected by the test",
            photos.join("refuse-me.jpg").display()
        )),
        "{stderr}"
    );
    let images = recorded(&endpoint, api_key, "site-a");
    assert_eq!(images.len(), 2);
    check_against_the_page(&images, &photos);
    // Each stored object: a 503, retried, then stored. The denied original: tried once, never
    // retried.
    let seen = proxy.seen.lock().unwrap().clone();
    for (manifest, _) in &images {
        for object in &manifest.objects {
            let tries = seen
                .iter()
                .find(|((method, path), _)| method == "PUT" && path.ends_with(&object.key))
                .map(|(_, n)| *n);
            // At least: a retry of a dropped connection under load would add one.
            assert!(tries >= Some(2), "{}: {tries:?} tries", object.key);
        }
    }
    let denied: Vec<usize> = seen
        .iter()
        .filter(|((method, path), _)| method == "PUT" && path.contains("refuse-me"))
        .filter(|((_, path), _)| path.contains("original-uploads/"))
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(denied, [1]);
    let _ = child.kill();
    let _ = child.wait();
    drop(seaweed);
}
