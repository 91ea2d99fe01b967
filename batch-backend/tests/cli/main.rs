//! The `tessera` binary on real photos and GeoTIFFs (fetched by `tests/fetch-fixtures.sh`):
//! `preprocess` and `edge` here, `up` in [`up`], the servers' connection limits in
//! [`connections`], `mosaic` in [`mosaic`], `detect` in [`detect`]; the task store on SQLite and
//! Postgres in [`store`]; originals put by S3 clients in [`arrivals`]; `upload` and `sync` in [`upload`]; `/health`, `/ready` and `/metrics` in [`operations`]; webhooks, delivered to a receiver that verifies them, in [`webhooks`].

mod arrivals;
mod connections;
mod detect;
mod job_scale;
mod jobs;
mod mosaic;
mod operations;
mod store;
mod up;
mod upload;
mod webhooks;

use std::path::{Path, PathBuf};
use std::process::Command;

use tessera_core::{Manifest, Sha256Digest};

/// The variables `tessera edge` needs, with storage and the batch backend at a closed port.
pub(crate) const EDGE_ENV: [(&str, &str); 6] = [
    ("TESSERA_S3_ENDPOINT", "http://127.0.0.1:9"),
    ("TESSERA_S3_BUCKET", "b"),
    ("TESSERA_S3_ACCESS_KEY_ID", "ak"),
    ("TESSERA_S3_SECRET_ACCESS_KEY", "sk"),
    ("TESSERA_BACKEND_URL", "http://127.0.0.1:9"),
    ("TESSERA_BACKEND_TOKEN", "t"),
];

/// The Python of `tests/python/requirements.txt` (`TESSERA_TEST_PYTHON`; scripts/test.sh
/// makes the venv): the reference implementations the tests hold Tessera's output to.
pub(crate) fn test_python() -> std::ffi::OsString {
    std::env::var_os("TESSERA_TEST_PYTHON").expect(
        "TESSERA_TEST_PYTHON: a Python with tests/python/requirements.txt (scripts/test.sh sets it)",
    )
}

/// A port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn fixtures() -> PathBuf {
    std::env::var_os("TESSERA_FIXTURES").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/tessera/fixtures"),
        PathBuf::from,
    )
}

fn tessera(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("run tessera")
}

const GOOD: [&str; 6] = [
    "exif-0.6.0/sony-alpha-6000.jpg",
    "exif-0.6.0/short-ascii-II.jpg",
    "exif-0.6.0/test1.jpg",
    "exif-0.6.0/right.jpg",
    "deepforest-2.1.0/OSBS_029.tif",
    "scikit-image-0.26.0/horse.png",
];

#[test]
fn preprocesses_a_folder_and_reports_the_bad_file() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    for rel in GOOD {
        let src = fixtures().join(rel);
        let name = Path::new(rel).file_name().unwrap();
        std::fs::copy(&src, input.path().join(name)).unwrap_or_else(|e| {
            panic!("{}: {e}; run `bash tests/fetch-fixtures.sh`", src.display())
        });
    }
    // The bad one: a CSV wearing a .jpg name, and a truncated JPEG in a subfolder.
    std::fs::write(input.path().join("notes.jpg"), "image_path,xmin,ymin\n").unwrap();
    std::fs::create_dir(input.path().join("sub")).unwrap();
    let dji = std::fs::read(fixtures().join("deepforest-2.1.0/AWPE Pigeon Lake 2020 DJI_0005.JPG"))
        .unwrap();
    std::fs::write(input.path().join("sub/cut.jpg"), &dji[..dji.len() / 2]).unwrap();
    // And a path on the command line that does not exist.
    let missing = input.path().join("missing.jpg");

    let output = tessera(&[
        "preprocess".as_ref(),
        "--project".as_ref(),
        "survey-1".as_ref(),
        "--date".as_ref(),
        "2026-11-21".as_ref(),
        "--out".as_ref(),
        out.path().as_os_str(),
        input.path().as_os_str(),
        missing.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("6 of 9 files preprocessed"), "{stdout}");
    assert!(stderr.contains("3 failed:"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: cannot read: No such file or directory (os error 2) [unreadable]",
            missing.display()
        )),
        "{stderr}"
    );
    let notes = input.path().join("notes.jpg");
    assert!(
        stderr.contains(&format!(
            "{}: only JPEG, PNG and TIFF images are accepted (found a text file) [unsupported_type]",
            notes.display()
        )),
        "{stderr}"
    );
    let cut = input.path().join("sub/cut.jpg");
    assert!(
        stderr.contains(&format!("{}: damaged JPEG file", cut.display())),
        "{stderr}"
    );

    // Every good photo: a manifest whose six objects exist with the recorded checksum.
    let manifests: Vec<Manifest> = std::fs::read_dir(out.path().join("metadata/survey-1"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    assert_eq!(manifests.len(), GOOD.len());
    for manifest in &manifests {
        assert_eq!(manifest.objects.len(), 6);
        for object in &manifest.objects {
            let body = std::fs::read(out.path().join(&object.key))
                .unwrap_or_else(|e| panic!("{}: {e}", object.key));
            assert_eq!(Sha256Digest::of(&body), object.sha256, "{}", object.key);
            assert_eq!(body.len() as u64, object.size_bytes);
        }
    }
    let mut names: Vec<&str> = manifests.iter().map(|m| m.file_name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "OSBS_029.tif",
            "horse.png",
            "right.jpg",
            "short-ascii-II.jpg",
            "sony-alpha-6000.jpg",
            "test1.jpg"
        ]
    );
    // Nothing was written for the refused files: 6 images × 6 objects + 6 manifests.
    let written = walk(out.path());
    assert_eq!(written, 6 * 7, "files under the output folder");
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            if path.is_dir() { walk(&path) } else { 1 }
        })
        .sum()
}

#[test]
fn all_good_files_exit_zero() {
    let out = tempfile::tempdir().unwrap();
    let photo = fixtures().join("exif-0.6.0/test1.jpg");
    let output = tessera(&[
        "preprocess".as_ref(),
        "--project".as_ref(),
        "p".as_ref(),
        "--out".as_ref(),
        out.path().as_os_str(),
        photo.as_os_str(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn usage_errors_are_clear() {
    let output = tessera(&["preprocess".as_ref(), "--help".as_ref()]);
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--project",
        "--out",
        "--date",
        "--quality",
        "--max-bytes",
        "FILES_OR_DIRS",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
    let out = tempfile::tempdir().unwrap();
    let output = tessera(&[
        "preprocess".as_ref(),
        "--project".as_ref(),
        "Bad_Name".as_ref(),
        "--out".as_ref(),
        out.path().as_os_str(),
        "x".as_ref(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("project name \"Bad_Name\" is invalid"),
        "{stderr}"
    );
}

#[test]
fn edge_serves_logs_json_and_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "edge",
            "--log-format",
            "json",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
        ])
        .arg(dir.path().join("m.sqlite"))
        .envs(EDGE_ENV)
        .env("RUST_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut answer = String::new();
    for _ in 0..100 {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            stream.read_to_string(&mut answer).unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"status":"ok"}"#), "{answer}");
    // An API request: its log lines carry its id and route, and so does its answer.
    let refused = up::raw_request(
        &format!("127.0.0.1:{port}"),
        "GET /v1/images HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let request_id = refused
        .lines()
        .find_map(|line| line.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("no x-request-id: {refused}"))
        .to_owned();
    // Not HTTP: the connection fails, which the server logs (at debug level) and survives.
    up::raw_request(&format!("127.0.0.1:{port}"), "NONSENSE\r\n\r\n");
    // SIGINT, as Ctrl-C sends.
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {}", output.status);
    assert!(dir.path().join("m.sqlite").exists());
    // Log lines are JSON objects, one per line.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let logged: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(
        logged.iter().any(|l| l["level"] == "DEBUG"
            && l["fields"]["message"] == "connection closed with an error"),
        "{stderr}"
    );
    assert!(
        logged.iter().any(|l| l["fields"]["message"] == "answered"
            && l["fields"]["status"] == 401
            && l["span"]["id"] == request_id.as_str()
            && l["span"]["route"] == "GET /v1/images"),
        "no log line of request {request_id}: {stderr}"
    );
}

#[test]
fn edge_names_missing_configuration() {
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["edge", "--listen", "127.0.0.1:0"])
        .env_remove("TESSERA_S3_ENDPOINT")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("TESSERA_S3_ENDPOINT is not set"));
}
