//! The servers' connection limits, on `tessera edge` (`tessera up` serves its two ports with
//! the same code): stalled clients are dropped after `--client-timeout`, and running out of
//! file descriptors neither pins a core nor keeps the server from answering once descriptors
//! are free again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server that is killed if a test fails before it stops it, and its data folder.
struct Running {
    child: Option<Child>,
    _data: tempfile::TempDir,
}

impl Running {
    fn id(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `tessera edge` on a free port with `--client-timeout`, under `ulimit -n` when given.
fn start_edge(client_timeout_s: u64, open_files: Option<u32>) -> (Running, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::free_port();
    let limit = open_files.map_or_else(String::new, |n| format!("ulimit -n {n} && "));
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("{limit}exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "edge",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--client-timeout",
            &client_timeout_s.to_string(),
            "--database",
        ])
        .arg(dir.path().join("m.sqlite"))
        .envs(crate::EDGE_ENV)
        .env(
            "TESSERA_API_KEY_HASHES",
            tessera_core::access::api_key_hash("k"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child = Running {
        child: Some(child),
        _data: dir,
    };
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&addr).is_none() {
        assert!(Instant::now() < deadline, "tessera edge did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr)
}

/// `GET /health`'s status line, or `None` when the server does not answer within 2 s.
fn health(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.lines().next().map(str::to_owned)
}

/// Seconds until the server closes `stream` (reads return 0 or fail with a reset), reading
/// and discarding whatever it answers first; panics after `limit`.
fn seconds_until_closed(mut stream: TcpStream, limit: Duration) -> f64 {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buffer = [0; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return start.elapsed().as_secs_f64(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return start.elapsed().as_secs_f64();
            }
            Err(e) => panic!("still open after {limit:?}: {e}"),
        }
    }
}

fn stop(mut running: Running) -> String {
    let child = running.child.take().expect("running");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {}", output.status);
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn stalled_clients_are_dropped_after_the_client_timeout() {
    let (child, addr) = start_edge(1, None);
    let limit = Duration::from_secs(5);
    // Connects and sends nothing.
    let silent = TcpStream::connect(&addr).unwrap();
    // Sends half a request head, then stalls (slowloris).
    let mut half_head = TcpStream::connect(&addr).unwrap();
    half_head
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    // Sends a head promising 100 bytes of body, then 10 of them.
    let mut half_body = TcpStream::connect(&addr).unwrap();
    half_body
        .write_all(
            b"POST /v1/uploads HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer k\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"project\"",
        )
        .unwrap();
    // Gets one answer and keeps the connection idle.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    for (name, stream) in [
        ("silent", silent),
        ("half head", half_head),
        ("half body", half_body),
        ("idle keep-alive", idle),
    ] {
        let closed_after = seconds_until_closed(stream, limit);
        assert!(
            closed_after < 4.0,
            "{name}: closed after {closed_after:.1} s"
        );
    }
    assert_eq!(health(&addr).as_deref(), Some("HTTP/1.1 200 OK"));
    stop(child);
}

/// CPU seconds (user + system) the process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let per_second: f64 = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    ticks / per_second
}

#[test]
fn running_out_of_file_descriptors_neither_spins_nor_stops_the_server() {
    let (child, addr) = start_edge(30, Some(64));
    // More stalled connections than the server has descriptors: accept fails with EMFILE.
    let stalled: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_seconds(child.id());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(child.id()) - before;
    eprintln!("out of descriptors: {used:.2} CPU seconds in 2 s");
    assert!(
        used < 0.5,
        "{used:.2} CPU seconds in 2 s while out of descriptors"
    );
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if health(&addr).as_deref() == Some("HTTP/1.1 200 OK") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer once descriptors were free"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stderr = stop(child);
    let warnings = stderr.matches("accept failed").count();
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} accept warnings (one per 10 s at most):\n{stderr}"
    );
}
