"""The edge's benchmarks, side by side in one run, written into BENCHMARKS.md.

    python3 edge-worker/benches/compare.py

1. Presigning: presigned PUT URLs per second on one core, with content-type, content-length
   and x-amz-checksum-sha256 signed in, by
   - Tessera natively (`presign-probe --bench N`, release build),
   - Tessera compiled to wasm32-wasip1 and run by Node's WASI (`tests/wasi.mjs`),
   - botocore's `generate_presigned_url('put_object', ...)` with the same parameters.
2. `POST /v1/uploads` with one image (six presigned objects) on the native host, SQLite in a
   temporary folder, under wrk on loopback: requests per second and latency percentiles.

Needs: cargo, node, the wasm32-wasip1 target, botocore (pinned below, installed if missing),
wrk (`apt-get install wrk`).
"""
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BOTOCORE = "1.43.11"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from benchmarks import write_section  # noqa: E402  (BENCHMARKS.md's one writer)
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
N = 100_000
ROUNDS = 5


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, **kw).stdout


def rate(output):
    return float(re.match(r"(\d+) presigned URLs/s", output).group(1))


def botocore_rate(n):
    import botocore.session
    from botocore.config import Config
    session = botocore.session.get_session()
    client = session.create_client(
        "s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9000",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    params = {"Bucket": "examplebucket",
              "Key": "processed/palms/0190b6c4/palms_img-0042_20240309_256x256.jpg",
              "ContentType": "image/jpeg", "ContentLength": 18336,
              "ChecksumSHA256": "e3FhVkMYroxnTUSDZ0u+SiF84YBUlSIB+ZJKnTGtlb8="}
    client.generate_presigned_url("put_object", Params=params, ExpiresIn=900)  # warm up
    start = time.perf_counter()
    for _ in range(n):
        client.generate_presigned_url("put_object", Params=params, ExpiresIn=900)
    return n / (time.perf_counter() - start)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_test(seconds=10, connections=16):
    """Starts `tessera edge` and runs wrk against POST /v1/uploads; returns wrk's numbers."""
    work = tempfile.mkdtemp()
    fixtures = os.environ.get("TESSERA_FIXTURES", os.path.expanduser("~/.cache/tessera/fixtures"))
    run(os.path.join(TARGET, "release", "tessera"), "preprocess", "--project", "bench", "--out",
        os.path.join(work, "out"), os.path.join(fixtures, "exif-0.6.0", "test1.jpg"))
    meta = os.path.join(work, "out", "metadata", "bench")
    photo = {"project": "bench", "files": [json.load(open(os.path.join(meta, os.listdir(meta)[0])))]}
    port = free_port()
    env = dict(os.environ,
               TESSERA_S3_ENDPOINT="http://127.0.0.1:9", TESSERA_S3_BUCKET="bench",
               TESSERA_S3_ACCESS_KEY_ID="AK", TESSERA_S3_SECRET_ACCESS_KEY="SK",
               TESSERA_API_KEY_HASHES="ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
               TESSERA_RATE_BURST="1e12", TESSERA_RATE_PER_SECOND="1e12",
               TESSERA_BACKEND_URL="http://127.0.0.1:9", TESSERA_BACKEND_TOKEN="t")
    server = subprocess.Popen([os.path.join(TARGET, "release", "tessera"), "edge", "--listen",
                               f"127.0.0.1:{port}", "--database", os.path.join(work, "m.sqlite")],
                              env=env, cwd=ROOT)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        script = os.path.join(work, "post.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    'wrk.headers["Authorization"] = "Bearer abc"\n'
                    f"wrk.body = {json.dumps(json.dumps(photo))}\n")
        out = run("wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script,
                  f"http://127.0.0.1:{port}/v1/uploads")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk saw {non2xx.group(1)} error responses:\n{out}")
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, pct, connections, seconds


def main():
    try:
        import botocore
        assert botocore.__version__ == BOTOCORE
    except (ImportError, AssertionError):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", f"botocore=={BOTOCORE}"], check=True)
    run("cargo", "build", "--release", "--locked", "-p", "tessera-core", "--bin", "presign-probe", "-p", "tessera-batch")
    run("cargo", "build", "--release", "--locked", "-p", "tessera-core", "--bin", "presign-probe", "--target", "wasm32-wasip1")
    # Interleaved rounds, medians: the machine is shared and its speed drifts.
    rounds = {"native": [], "wasm": [], "boto": []}
    for _ in range(ROUNDS):
        rounds["native"].append(rate(run(os.path.join(TARGET, "release", "presign-probe"), "--bench", str(N))))
        rounds["wasm"].append(rate(run("node", "--no-warnings", "tests/wasi.mjs",
                                       os.path.join(TARGET, "wasm32-wasip1", "release", "presign-probe.wasm"),
                                       "--bench", str(N))))
        rounds["boto"].append(botocore_rate(N // 20))
    native, wasm, boto = (statistics.median(rounds[k]) for k in ("native", "wasm", "boto"))
    rps, pct, connections, seconds = load_test()
    cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read()).group(1)
    node = run("node", "--version").strip()
    rustc = run("rustc", "--version").strip()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    body = f"""## Edge API (issue 3)

Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; {rustc};
Node {node}; Python {platform.python_version()}, botocore {BOTOCORE}; {wrk.strip()}.

Presigned PUT URLs per second on one core (content-type, content-length and
x-amz-checksum-sha256 signed in, 15 minutes): medians of {ROUNDS} interleaved rounds in one run of
`python3 edge-worker/benches/compare.py` (native rounds ranged {min(rounds['native']):,.0f}–{max(rounds['native']):,.0f}):

| signer | URLs/s | vs botocore |
|---|---|---|
| Tessera, native (aws-sigv4) | {native:,.0f} | {native / boto:.1f}× |
| Tessera, wasm32 in Node {node} (WASI) | {wasm:,.0f} | {wasm / boto:.1f}× |
| botocore `generate_presigned_url` | {boto:,.0f} | 1.0× |

The native and wasm builds print byte-identical URLs for the same inputs (checked in CI).

`POST /v1/uploads` with one image (six presigned PUTs, planning, SQLite insert) on the native
host (one thread), wrk with {connections} connections for {seconds} s on loopback:
{rps:,.0f} requests/s; latency p50 {pct.get('50')}, p90 {pct.get('90')}, p99 {pct.get('99')}.
"""
    print(write_section("edge", "edge-worker/benches/compare.py", body))


if __name__ == "__main__":
    main()
