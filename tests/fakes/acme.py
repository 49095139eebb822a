"""A local Acme Contacts API for the partner connector (tests/partner): bearer auth,
``changed_since`` (inclusive), opaque cursors, and 429s with ``Retry-After`` on demand."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class AcmeServer:
    def __init__(self, token: str = "acme-token") -> None:
        self.token = token
        self.contacts: dict[str, dict] = {}
        self.throttle_next = 0     # answer this many requests with 429 first
        self.retry_after = "1"
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server.requests += 1
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    return self._send(401, {"error": "invalid token"})
                with server._lock:
                    if server.throttle_next > 0:
                        server.throttle_next -= 1
                        return self._send(429, {"error": "slow down"}, {"Retry-After": server.retry_after})
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/v2/me":
                    return self._send(200, {"account": "acme-test"})
                if url.path != "/v2/contacts":
                    return self._send(404, {"error": "not found"})
                limit = int(q.get("limit", 50))
                if "cursor" in q:
                    state = json.loads(base64.urlsafe_b64decode(q["cursor"]))
                    since, after = state["since"], state["after"]
                else:
                    since, after = q.get("changed_since"), ""
                rows = sorted((c for c in server.contacts.values()
                               if (since is None or c["changed_at"] >= since) and c["id"] > after),
                              key=lambda c: c["id"])
                page = rows[:limit]
                nxt = None
                if len(rows) > limit:
                    nxt = base64.urlsafe_b64encode(json.dumps(
                        {"since": since, "after": page[-1]["id"]}).encode()).decode()
                return self._send(200, {"contacts": page, "next": nxt})

            def _send(self, status, body, headers=None):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def put(self, id_: str, changed_at: str, **fields) -> None:
        self.contacts[id_] = {"id": id_, "changed_at": changed_at, **fields}

    def __enter__(self) -> "AcmeServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
