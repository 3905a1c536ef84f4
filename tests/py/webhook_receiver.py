"""A webhook receiver for the end-to-end tests (tests/tests/e2e/webhooks.rs).

Every delivery to /ok/<name> is verified with the Standard Webhooks reference library
(`standardwebhooks`, PyPI) against each secret registered for <name>, and appended as one JSON
line to <state>/records.jsonl: {name, id, event, verified: [bool per secret], legacy, payload}.
An unverifiable delivery is answered 401 (and recorded). Other paths misbehave on purpose:
/500/<name> answers 500, /hang/<name> never answers, /redirect/<name> redirects to loopback,
/big/<name> answers 200 with a 50 MB body, /close/<name> closes in the middle of its answer.

Usage: webhook_receiver.py <port> <state-dir>. Secrets: POST /_secret/<name> with a JSON list
of secrets (kept in <state>/secrets.json, so a restarted receiver keeps them).
"""

import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT = int(sys.argv[1])
STATE = sys.argv[2]
LOCK = threading.Lock()
SECRETS_FILE = os.path.join(STATE, "secrets.json")
RECORDS_FILE = os.path.join(STATE, "records.jsonl")


def secrets():
    try:
        with open(SECRETS_FILE) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n)

    def answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        parts = self.path.strip("/").split("/")
        data = self.body()
        if parts[0] == "_secret":
            with LOCK:
                s = secrets()
                s[parts[1]] = json.loads(data)
                with open(SECRETS_FILE + ".tmp", "w") as f:
                    json.dump(s, f)
                os.replace(SECRETS_FILE + ".tmp", SECRETS_FILE)
            return self.answer(204)
        kind, name = parts[0], parts[1] if len(parts) > 1 else ""
        if kind == "500":
            return self.answer(500, b"no")
        if kind == "hang":
            time.sleep(120)
            return self.answer(200)
        if kind == "redirect":
            self.send_response(307)
            self.send_header("location", "http://127.0.0.1:1/steal")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        if kind == "big":
            self.send_response(200)
            self.send_header("content-length", str(50 * 1024 * 1024))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(800):
                    self.wfile.write(chunk)
            except OSError:
                pass
            return
        if kind == "close":
            self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial")
            self.wfile.flush()
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = []
        legacy = []
        for secret in secrets().get(name, []):
            try:
                Webhook(secret).verify(data, headers)
                verified.append(True)
            except WebhookVerificationError:
                verified.append(False)
            mac = hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
            legacy.append(headers.get("x-sentryagent-signature") == "sha256=" + mac)
        try:
            payload = json.loads(data)
        except ValueError:
            payload = None
        rec = {
            "name": name,
            "id": headers.get("webhook-id"),
            "event": (payload or {}).get("event"),
            "verified": verified,
            "legacy": legacy,
            "payload": payload,
        }
        with LOCK:
            with open(RECORDS_FILE, "a") as f:
                f.write(json.dumps(rec) + "\n")
        self.answer(204 if any(verified) else 401)


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
