"""The client and the checks of scripts/scale-demo.sh (which starts the processes):

1. preprocesses FOLDER with `tessera preprocess` (the same tessera-core code as the page);
2. registers a webhook endpoint for `job.completed` at a receiver in this process that
   verifies every delivery with `standardwebhooks`;
3. uploads every image through the edge: `POST /v1/uploads`, one presigned PUT per object,
   `POST /v1/uploads/{id}/complete`, which triggers the job;
4. kills worker A (SIGKILL) while it holds a task of that job, as the job store's
   `task_attempts` shows;
5. waits for the job and checks that every result arrived once: the job succeeded with every
   input `ok`, each photo's result once, the COCO file's images and annotation ids unique, the
   killed worker's task taken over by the other worker after its lease expired, and one
   `job.completed` delivery.

    python scale_demo.py --edge URL --api-key KEY --database POSTGRES_URL --kill-pid PID \
        --tessera BIN FOLDER

Standard library, `standardwebhooks` and `psql`; exits non-zero on any failed check.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks import Webhook

PROJECT = "scale-demo"


def call(method, url, key=None, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if key:
        request.add_header("authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as answer:
        text = answer.read()
        return json.loads(text) if text else None


def psql(database, query):
    out = subprocess.run(["psql", database, "-Atc", query], check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Receiver(BaseHTTPRequestHandler):
    secret = None
    deliveries = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        Webhook(Receiver.secret).verify(body, dict(self.headers))  # raises if forged
        Receiver.deliveries.append((self.headers["webhook-id"], json.loads(body)))
        self.send_response(204)
        self.end_headers()


def check(condition, message):
    if not condition:
        sys.exit(f"scale demo: FAILED: {message}")
    print(f"  ok: {message}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--edge", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--kill-pid", type=int, required=True)
    parser.add_argument("--tessera", required=True)
    parser.add_argument("folder")
    args = parser.parse_args()
    edge, key = args.edge, args.api_key

    out = Path(tempfile.mkdtemp(prefix="tessera-scale-"))
    subprocess.run(
        [args.tessera, "preprocess", "--project", PROJECT, "--out", str(out), args.folder],
        check=True, stdout=subprocess.DEVNULL,
    )
    manifests = [json.loads(p.read_text()) for p in sorted((out / "metadata" / PROJECT).glob("*.json"))]
    print(f"preprocessed {len(manifests)} images from {args.folder}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = call("POST", f"{edge}/v1/webhooks", key, {
        "project": PROJECT, "url": f"http://127.0.0.1:{server.server_port}/hook",
        "events": ["job.completed", "job.failed"]})
    Receiver.secret = endpoint["secret"]

    declared = [{"file_name": m["file_name"], "exif": m["exif"], "objects": [
        {k: o[k] for k in ("kind", "content_type", "size_bytes", "width", "height")}
        | {"sha256": {"hex": o["sha256"]["hex"]}} for o in m["objects"]]} for m in manifests]
    upload = call("POST", f"{edge}/v1/uploads", key, {"project": PROJECT, "files": declared})
    # The answer's images come in the request's order; each gets its manifest's local files.
    order = list(dict.fromkeys(t["image_id"] for t in upload["objects"]))
    started = time.monotonic()
    for target in upload["objects"]:
        manifest = manifests[order.index(target["image_id"])]
        local = next(o for o in manifest["objects"] if o["kind"] == target["kind"])
        body = (out / local["key"]).read_bytes()
        request = urllib.request.Request(target["url"], data=body, method=target["method"])
        for name, value in target["headers"]:
            request.add_header(name, value)
        urllib.request.urlopen(request, timeout=60).read()
    print(f"uploaded {len(upload['objects'])} objects with presigned PUTs in {time.monotonic() - started:.1f} s")
    completed = call("POST", f"{edge}/v1/uploads/{upload['upload_id']}/complete", key)
    job_id = completed["job_id"]
    print(f"job {job_id} of {len(completed['images'])} images")

    # Worker A is killed as soon as it holds a task of the job.
    pattern = f"%-{args.kill_pid}-%"
    deadline = time.monotonic() + 120
    held = ""
    while not held:
        held = psql(args.database,
                    "SELECT t.unique_key FROM task_attempts a JOIN tasks t ON t.id = a.task_id "
                    f"WHERE a.worker LIKE '{pattern}' AND a.ended_at IS NULL LIMIT 1")
        if time.monotonic() > deadline:
            sys.exit("scale demo: FAILED: worker A never held a task")
        time.sleep(0.02)
    os.kill(args.kill_pid, signal.SIGKILL)
    # A may have finished that task between the query and the kill, and taken the next: what it
    # held when it died is its attempt still open once a commit it had sent has landed.
    time.sleep(0.5)
    held = psql(args.database,
                "SELECT t.unique_key FROM task_attempts a JOIN tasks t ON t.id = a.task_id "
                f"WHERE a.worker LIKE '{pattern}' AND a.ended_at IS NULL LIMIT 1")
    if not held:
        sys.exit("scale demo: FAILED: worker A was killed between two tasks (run it again)")
    print(f"killed worker A (pid {args.kill_pid}) holding {held}")

    deadline = time.monotonic() + 300
    while True:
        job = call("GET", f"{edge}/v1/jobs/{job_id}", key)
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            sys.exit(f"scale demo: FAILED: the job did not end: {json.dumps(job)}")
        time.sleep(0.5)
    print(f"job {job['state']} in {time.monotonic() - started:.1f} s since the first PUT")
    check(job["state"] == "succeeded", f"the job succeeded ({job.get('error')})")
    check(all(i["state"] == "ok" for i in job["inputs"]) and len(job["inputs"]) == len(manifests),
          f"all {len(manifests)} inputs ok: {[i for i in job['inputs'] if i['state'] != 'ok']}")
    photos = [p["image_id"] for p in job["results"].get("photos", [])]
    check(len(photos) == len(set(photos)), f"each of {len(photos)} photo results once")
    coco = call("GET", job["results"]["coco"]["url"])
    images = [i["id"] for i in coco["images"]]
    annotations = [a["id"] for a in coco["annotations"]]
    check(len(images) == len(set(images)) and len(annotations) == len(set(annotations)),
          f"COCO: {len(images)} images, {len(annotations)} annotations, ids unique")
    attempts = psql(args.database,
                    "SELECT t.unique_key || ' ' || a.attempt || ' ' || a.worker || ' ' || COALESCE(a.outcome, '-') "
                    "FROM task_attempts a JOIN tasks t ON t.id = a.task_id "
                    f"WHERE t.unique_key = '{held}' ORDER BY a.attempt").splitlines()
    print("  attempts of the task worker A held:\n    " + "\n    ".join(attempts))
    check(len(attempts) >= 2 and "lease_expired" in attempts[0] and attempts[-1].endswith("completed")
          and f"-{args.kill_pid}-" not in attempts[-1],
          "its lease expired and the other worker completed it")
    time.sleep(3)
    ends = [d for d in Receiver.deliveries if d[1]["data"]["job_id"] == job_id]
    check(len(ends) == 1 and ends[0][1]["type"] == "job.completed",
          "one job.completed delivery, verified with standardwebhooks")
    print("scale demo: every result arrived once")


if __name__ == "__main__":
    main()
