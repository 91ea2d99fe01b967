"""A webhook receiver for the tests: verifies every delivery with the `standardwebhooks`
package (the Standard Webhooks reference library for Python) and answers as each endpoint's
mode says.

    python receiver.py            prints its port on the first line, then serves until killed

Endpoints are paths. Their modes, set with `PUT /_mode/{name}` (body: the mode):
    ok          204
    flaky       503 to the first two attempts of each webhook-id, then 204
    closed      503 until the mode changes
    gone        410 Gone
    silent      never answers (holds the connection for an hour)
`PUT /_secret/{name}` (body: `whsec_…`) sets the secret an endpoint's deliveries are verified
with. `GET /_log` answers every delivery so far as JSON: path, webhook-id, timestamp,
verified (and why not), the status answered, and the body.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

lock = threading.Lock()
modes: dict[str, str] = {}
secrets: dict[str, str] = {}
log: list[dict] = []
attempts: dict[str, int] = {}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet: the test reads /_log
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        body = self._body().decode()
        kind, _, name = self.path.lstrip("/").partition("/")
        with lock:
            if kind == "_mode":
                modes[name] = body
            elif kind == "_secret":
                secrets[name] = body
            else:
                return self._answer(404)
        self._answer(204)

    def do_GET(self):
        if self.path != "/_log":
            return self._answer(404)
        with lock:
            self._answer(200, json.dumps(log).encode())

    def do_POST(self):
        body = self._body()
        name = self.path.lstrip("/")
        headers = {k.lower(): v for k, v in self.headers.items()}
        webhook_id = headers.get("webhook-id", "")
        with lock:
            mode = modes.get(name, "ok")
            secret = secrets.get(name)
            attempts[webhook_id + name] = attempts.get(webhook_id + name, 0) + 1
            attempt = attempts[webhook_id + name]
        try:
            Webhook(secret).verify(body, headers)
            verified, why = True, None
        except Exception as e:  # the library's verification error, or no secret set
            verified, why = False, repr(e)
        if mode == "silent":
            status = None
        elif mode == "gone":
            status = 410
        elif mode == "closed" or (mode == "flaky" and attempt <= 2):
            status = 503
        else:
            status = 204
        with lock:
            log.append({
                "path": name,
                "webhook_id": webhook_id,
                "timestamp": headers.get("webhook-timestamp"),
                "verified": verified,
                "why": why,
                "status": status,
                "body": body.decode(errors="replace"),
            })
        if status is None:
            time.sleep(3600)
            return
        self._answer(status)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
