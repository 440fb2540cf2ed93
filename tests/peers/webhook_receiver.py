"""A Standard Webhooks receiver for Tayori's integration tests (the webhook channel).

    WEBHOOK_SECRET=whsec_... WEBHOOK_LOG=FILE python webhook_receiver.py PORT [SCRIPT]

Listens on 127.0.0.1:PORT (0: a free port) and prints `PORT <n>` as the first line
of stdout once listening. Every request is verified with the official library,
`standardwebhooks.Webhook(WEBHOOK_SECRET).verify(body, headers)`, so the tests
check Tayori's signatures against the reference implementation rather than a second
copy of ours. A request that does not verify (or is not a POST) is answered 401
(405) and consumes no step of the script.

SCRIPT (JSON, as the second argument or in env WEBHOOK_SCRIPT) says what each path
answers, in order; once a path's list is used up it answers 200. A key "*" applies
to paths not listed. A step is a status, or an object:

    {"/hook": [500, 500], "/gone": [410], "/bad": [{"status": 400, "body": "no"}],
     "/busy": [{"status": 503, "retry_after": "2"}]}

    status       the HTTP status (default 200)
    retry_after  a Retry-After header value (seconds or an HTTP date), as a string
    body         the answer's body (default: {"ok": true} for 2xx, "" otherwise)
    body_bytes   pad the body with "x" to this many bytes (a long answer)
    delay        seconds to wait before answering (a slow endpoint)

Paths are matched without their query string. With WEBHOOK_LOG set, one JSON line
per request is appended to that file before the answer is sent: path, query,
method, webhook_id, timestamp, signature, content_type, verified (true/false),
error (why it did not verify), body (the JSON body, or null when it is not JSON),
status (what was answered). SIGTERM or SIGINT stops the receiver.
"""

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from standardwebhooks import Webhook

MAX_BODY = 16 * 1024 * 1024


class Script:
    """Each path's remaining steps, consumed by verified requests in order."""

    def __init__(self, raw):
        spec = json.loads(raw) if raw else {}
        if not isinstance(spec, dict):
            raise ValueError("the script must be a JSON object of path -> list of steps")
        self.steps = {}
        for path, steps in spec.items():
            if not isinstance(steps, list):
                raise ValueError(f"the script's {path!r} must be a list of steps")
            self.steps[path] = [self._step(s) for s in steps]
        self.lock = threading.Lock()

    @staticmethod
    def _step(step):
        if isinstance(step, int):
            return {"status": step}
        if isinstance(step, dict):
            unknown = set(step) - {"status", "retry_after", "body", "body_bytes", "delay"}
            if unknown:
                raise ValueError(f"unknown step keys: {sorted(unknown)}")
            return step
        raise ValueError(f"a step is a status or an object, not {step!r}")

    def next(self, path):
        with self.lock:
            key = path if path in self.steps else "*"
            steps = self.steps.get(key)
            if steps:
                return steps.pop(0)
            return {"status": 200}


class Log:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def write(self, record):
        if not self.path:
            return
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self.lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


def make_handler(webhook, script, log):
    class Handler(BaseHTTPRequestHandler):
        # Keep-alive, as a real endpoint would: the sender pools its connections.
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            pass

        def _answer(self, status, body=b"", retry_after=None):
            self.send_response(status)
            content_type = "application/json" if body.startswith(b"{") else "text/plain"
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if retry_after is not None:
                self.send_header("Retry-After", str(retry_after))
            self.end_headers()
            self.wfile.write(body)

        def _read_body(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ValueError("body too large")
            return self.rfile.read(length)

        def do_POST(self):
            target = urlsplit(self.path)
            body = self._read_body()
            headers = {k: v for k, v in self.headers.items()}
            record = {
                "path": target.path,
                "query": target.query,
                "method": "POST",
                "webhook_id": self.headers.get("webhook-id"),
                "timestamp": self.headers.get("webhook-timestamp"),
                "signature": self.headers.get("webhook-signature"),
                "content_type": self.headers.get("Content-Type"),
            }
            try:
                webhook.verify(body, headers, json_parse=False)
                record["verified"] = True
            except Exception as e:  # the library's WebhookVerificationError, or bad headers
                record["verified"] = False
                record["error"] = f"{type(e).__name__}: {e}"
            try:
                record["body"] = json.loads(body)
            except ValueError:
                record["body"] = None
            if not record["verified"]:
                record["status"] = 401
                log.write(record)
                self._answer(401, b'{"error": "invalid signature"}')
                return
            step = script.next(target.path)
            status = int(step.get("status", 200))
            if "body" in step:
                answer = str(step["body"]).encode("utf-8")
            else:
                answer = b'{"ok": true}' if 200 <= status < 300 else b""
            pad = int(step.get("body_bytes", 0)) - len(answer)
            if pad > 0:
                answer += b"x" * pad
            record["status"] = status
            log.write(record)
            if step.get("delay"):
                time.sleep(float(step["delay"]))
            self._answer(status, answer, step.get("retry_after"))

        def _not_allowed(self):
            log.write({"path": urlsplit(self.path).path, "method": self.command,
                       "verified": False, "error": "not a POST", "status": 405})
            self._answer(405, b"")

        do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed

    return Handler


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    port = int(sys.argv[1])
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        print("webhook_receiver: set WEBHOOK_SECRET (whsec_...)", file=sys.stderr)
        return 2
    raw_script = sys.argv[2] if len(sys.argv) == 3 else os.environ.get("WEBHOOK_SCRIPT", "")
    try:
        webhook = Webhook(secret)
        script = Script(raw_script)
    except Exception as e:  # a bad secret or script: say which, not the secret
        print(f"webhook_receiver: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    log = Log(os.environ.get("WEBHOOK_LOG"))

    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(webhook, script, log))
    server.daemon_threads = True

    def stop(*_):
        # shutdown() waits for serve_forever to return: not from its own thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
