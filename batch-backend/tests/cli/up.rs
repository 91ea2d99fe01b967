//! `tessera up` tried as an outsider would: the page, the API and the storage, through raw
//! sockets, reqwest and presigned URLs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tessera_core::keys::Project;
use tessera_core::manifest::ObjectKind;
use tessera_core::presign::{Addressing, Method, StorageTarget};
use tessera_core::{Options, preprocess};

/// Sends one raw HTTP/1.1 request (the path exactly as given, no normalisation).
pub(crate) fn raw_request(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

pub(crate) struct Up {
    pub(crate) child: std::process::Child,
    pub(crate) page: String,
    pub(crate) storage: String,
    /// What `tessera up` logged after its ready line, read as it comes (a full pipe would
    /// block it).
    pub(crate) log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// A test that fails leaves no `tessera up` behind (a stopped one is already reaped).
impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_up(data: &Path) -> Up {
    start_up_with(data, &[])
}

/// `tessera up` on free ports with its data in `data` and `extra` arguments.
pub(crate) fn start_up_with(data: &Path, extra: &[&str]) -> Up {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--data")
        .arg(data)
        .arg("--web")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../web"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let page = line.trim().rsplit("http://").next().unwrap().to_owned();
    let mut storage = String::new();
    while !storage.starts_with("storage: ") {
        storage.clear();
        stderr.read_line(&mut storage).unwrap();
    }
    let storage = storage["storage: http://".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    Up {
        child,
        page,
        storage,
        log,
    }
}

pub(crate) fn stop(mut up: Up) {
    let killed = Command::new("kill")
        .args(["-INT", &up.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = up.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}

/// A `GET` of `path` with `Host: {addr}`, as a browser at that address sends it.
fn get(addr: &str, path: &str) -> String {
    raw_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

pub(crate) fn credentials(data: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(data.join("local.json")).unwrap()).unwrap()
}

#[test]
fn up_serves_the_page_guards_storage_and_keeps_its_data() {
    let data = tempfile::tempdir().unwrap();
    let up = start_up(data.path());
    let health = get(&up.page, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let page = get(&up.page, "/");
    assert!(page.contains("<title>Tessera"), "{page}");
    let config = get(&up.page, "/config.json");
    let credentials = credentials(data.path());
    assert!(
        config.contains(credentials["api_key"].as_str().unwrap()),
        "{config}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.path().join("local.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "local.json is the owner's only");
    }

    // Storage refuses dot segments before s3s-fs could resolve them outside the bucket,
    // raw or percent-encoded; other requests reach SigV4 and are refused for no signature.
    for path in [
        "/tessera/../local.json",
        "/tessera/x/%2e%2e/%2e%2e/local.json",
    ] {
        let answer = get(&up.storage, path);
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("segments are refused"), "{path}: {answer}");
    }
    let unsigned = get(&up.storage, "/tessera/a.jpg");
    assert!(unsigned.starts_with("HTTP/1.1 403"), "{unsigned}");
    // CORS preflight from the page's origin only.
    let preflight = |origin: &str| {
        raw_request(
            &up.storage,
            &format!(
                "OPTIONS /tessera/a.jpg HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\n\
                 Access-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n",
                up.storage
            ),
        )
        .to_lowercase()
    };
    assert!(
        preflight(&format!("http://{}", up.page))
            .contains(&format!("access-control-allow-origin: http://{}", up.page))
    );
    assert!(!preflight("http://evil.example").contains("access-control-allow-origin"));
    stop(up);

    // A restart keeps the credentials (and with them, the data), and narrows a secrets file
    // that someone made readable to others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            data.path().join("local.json"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let up = start_up(data.path());
    assert_eq!(self::credentials(data.path()), credentials);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.path().join("local.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    stop(up);
}

/// DNS rebinding: a page at attacker.example whose name now resolves to 127.0.0.1 sends
/// `Host: attacker.example:PORT`. Neither the page (with the API key in /config.json), the
/// API nor the storage answers it; `localhost` and the listen address are answered.
#[test]
fn up_answers_only_requests_for_its_own_host() {
    let data = tempfile::tempdir().unwrap();
    let up = start_up(data.path());
    let key = credentials(data.path())["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let port = |addr: &str| addr.rsplit(':').next().unwrap().to_owned();
    let request = |addr: &str, host: &str, path: &str| {
        raw_request(
            addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
                 Connection: close\r\n\r\n"
            ),
        )
    };
    for (addr, path) in [
        (&up.page, "/config.json"),
        (&up.page, "/v1/images"),
        (&up.page, "/"),
        (&up.storage, "/tessera/a.jpg"),
    ] {
        let rebound = request(addr, &format!("attacker.example:{}", port(addr)), path);
        assert!(rebound.starts_with("HTTP/1.1 421"), "{path}: {rebound}");
        assert!(!rebound.contains(&key), "{path}: {rebound}");
        let missing = raw_request(addr, &format!("GET {path} HTTP/1.0\r\n\r\n"));
        assert!(
            missing.starts_with("HTTP/1.0 421") || missing.starts_with("HTTP/1.1 421"),
            "{path}: {missing}"
        );
    }
    let local = request(
        &up.page,
        &format!("localhost:{}", port(&up.page)),
        "/config.json",
    );
    assert!(
        local.starts_with("HTTP/1.1 200") && local.contains(&key),
        "{local}"
    );
    let images = request(&up.page, &up.page, "/v1/images");
    assert!(images.starts_with("HTTP/1.1 200"), "{images}");
    stop(up);
}

#[test]
fn up_refuses_a_non_loopback_listen_unless_exposed() {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["up", "--listen", "0.0.0.0:0", "--s3-listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(data.path())
        .arg("--web")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../web"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("--expose"),
        "{stderr}"
    );
}

/// An upload through the API with a real client, then an attack with the legitimate
/// presigned URL of its original: other bytes of the same length. Storage refuses them
/// (400 BadDigest) and keeps the object, before and after `complete` (ten at once, which make
/// one job); headers that would be
/// stored with the object are refused unless signed; signed GETs of keys s3s-fs cannot hold
/// answer 4xx.
#[test]
fn storage_keeps_an_object_whose_put_fails_its_checksum() {
    let data = tempfile::tempdir().unwrap();
    let up = start_up(data.path());
    let credentials = credentials(data.path());
    let original = std::fs::read(crate::fixtures().join("exif-0.6.0/test1.jpg"))
        .expect("run `bash tests/fetch-fixtures.sh`");
    let derived = preprocess(
        &original,
        &Options::new(
            Project::new("local").unwrap(),
            "test1.jpg",
            chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        ),
    )
    .unwrap();
    let api = format!("http://{}", up.page);
    let key = credentials["api_key"].as_str().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let created: Value = client
            .post(format!("{api}/v1/uploads"))
            .bearer_auth(key)
            .json(&json!({ "project": "local", "files": [derived.manifest] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let put = |object: &Value, body: Vec<u8>, extra: Option<(&str, &str)>| {
            let mut request = client.put(object["url"].as_str().unwrap()).body(body);
            for pair in object["headers"].as_array().unwrap() {
                let (name, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
                if name != "content-length" {
                    request = request.header(name, value);
                }
            }
            if let Some((name, value)) = extra {
                request = request.header(name, value);
            }
            async move { request.send().await.unwrap() }
        };
        let objects = created["objects"].as_array().expect("objects");
        let mut original_object = None;
        for object in objects {
            let kind: ObjectKind = serde_json::from_value(object["kind"].clone()).unwrap();
            let body = derived
                .body(kind)
                .map_or_else(|| original.clone(), <[u8]>::to_vec);
            if kind == ObjectKind::Original {
                original_object = Some(object);
                // Unsigned x-amz-* headers S3 would store with the object are refused (the
                // refusal comes before the body is read; a short body is written whole).
                let answer = put(object, vec![0], Some(("x-amz-meta-owner", "mallory"))).await;
                assert_eq!(answer.status(), 403);
                let text = answer.text().await.unwrap();
                assert!(
                    text.contains("x-amz-meta-owner") && text.contains("not signed"),
                    "{text}"
                );
                // Unsigned Content-* and Cache-Control are dropped, not stored.
                let answer = put(
                    object,
                    body.clone(),
                    Some(("content-disposition", "attachment; filename=evil.html")),
                )
                .await;
                assert_eq!(answer.status(), 200);
            }
            assert_eq!(
                put(object, body, None).await.status(),
                200,
                "{}",
                object["key"]
            );
        }
        let original_object = original_object.unwrap();
        let stored = data
            .path()
            .join("s3/tessera")
            .join(original_object["key"].as_str().unwrap());
        assert_eq!(std::fs::read(&stored).unwrap(), original);
        let mut tampered = original.clone();
        *tampered.last_mut().unwrap() ^= 0xff;

        let attack = put(original_object, tampered.clone(), None).await;
        assert_eq!(attack.status(), 400);
        assert!(attack.text().await.unwrap().contains("BadDigest"));
        assert_eq!(
            std::fs::read(&stored).unwrap(),
            original,
            "unchanged before complete"
        );

        // Ten completions at once: all succeed, with one job between them.
        let upload_id = created["upload_id"].as_str().unwrap();
        let completions = (0..10).map(|_| async {
            let answer = client
                .post(format!("{api}/v1/uploads/{upload_id}/complete"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            answer.json::<Value>().await.unwrap()["job_id"].clone()
        });
        let job_ids = futures_util::future::join_all(completions).await;
        assert!(job_ids.iter().all(|id| *id == job_ids[0]), "{job_ids:?}");
        let jobs = rusqlite::Connection::open(data.path().join("batch.sqlite")).unwrap();
        let rows: i64 = jobs
            .query_row("SELECT COUNT(*) FROM jobs", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 1, "one job row for one upload");

        assert_eq!(put(original_object, tampered, None).await.status(), 400);
        assert_eq!(
            std::fs::read(&stored).unwrap(),
            original,
            "unchanged after complete"
        );

        // Signed GETs of a prefix, a leading '/' and an empty segment: 4xx, not 500.
        let storage = StorageTarget {
            endpoint: format!("http://{}", up.storage),
            bucket: "tessera".into(),
            region: "us-east-1".into(),
            addressing: Addressing::Path,
            access_key_id: credentials["access_key_id"].as_str().unwrap().into(),
            secret_access_key: credentials["secret_access_key"].as_str().unwrap().into(),
        };
        // The dropped header was not stored.
        let get = storage
            .presign(
                Method::Get,
                original_object["key"].as_str().unwrap(),
                &[],
                Duration::from_secs(60),
                SystemTime::now(),
            )
            .unwrap();
        let answer = client.get(&get.url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.headers().get("content-disposition").is_none());
        assert_eq!(answer.bytes().await.unwrap(), original);

        for key in [
            "original-uploads/",
            "/etc/passwd",
            "original-uploads//x.jpg",
        ] {
            let signed = storage
                .presign(
                    Method::Get,
                    key,
                    &[],
                    Duration::from_secs(60),
                    SystemTime::now(),
                )
                .unwrap();
            let status = client.get(&signed.url).send().await.unwrap().status();
            assert!(status.is_client_error(), "{key}: {status}");
        }
    });
    stop(up);
}
