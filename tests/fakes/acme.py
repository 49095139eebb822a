"""A local Acme Contacts API for the partner connector (tests/partner): bearer auth,
``changed_since`` (inclusive, compared as times), opaque cursors ordered by id, and the
test controls every fake offers (tests/fakes/__init__.py): 429s with ``Retry-After`` on
demand (``throttle_next``/``retry_after``, or ``fail_next(count, 429, headers)``), any
other status for the next requests (``fail_next``, ``clear_faults``), a page-size cap
(``max_page_size``), bulk seeding with chosen times (``seed``) and a request log
(``calls``). Acme sends no webhooks."""
from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.fakes import Call


def _at(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class AcmeServer:
    def __init__(self, token: str = "acme-token") -> None:
        self.token = token
        self.contacts: dict[str, dict] = {}
        self.throttle_next = 0     # answer this many requests with 429 first
        self.retry_after = "1"
        self.requests = 0
        self.max_page_size: int | None = None  # serve at most this many a page (a test control)
        self.calls: list[Call] = []
        self._fail_next: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # no delayed-ACK wait between headers and body

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                with server._lock:
                    server.requests += 1
                    server.calls.append(Call("GET", url.path, q, dict(self.headers.items())))
                    fault = server._fail_next.pop(0) if server._fail_next else None
                if fault is not None:
                    status, headers = fault
                    error = {401: "invalid token", 403: "forbidden", 429: "slow down"}.get(status, "server error")
                    return self._send(status, {"error": error}, headers)
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    return self._send(401, {"error": "invalid token"})
                with server._lock:
                    if server.throttle_next > 0:
                        server.throttle_next -= 1
                        return self._send(429, {"error": "slow down"}, {"Retry-After": server.retry_after})
                if url.path == "/v2/me":
                    return self._send(200, {"account": "acme-test"})
                if url.path != "/v2/contacts":
                    return self._send(404, {"error": "not found"})
                limit = int(q.get("limit", 50))
                if server.max_page_size:
                    limit = min(limit, server.max_page_size)
                if "cursor" in q:
                    state = json.loads(base64.urlsafe_b64decode(q["cursor"]))
                    since, after = state["since"], state["after"]
                else:
                    since, after = q.get("changed_since"), ""
                floor = _at(since) if since else None
                with server._lock:
                    rows = sorted((dict(c) for c in server.contacts.values()
                                   if (floor is None or _at(c["changed_at"]) >= floor) and c["id"] > after),
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
        """Add or change a contact (a change is a newer ``changed_at``)."""
        with self._lock:
            self.contacts[id_] = {"id": id_, "changed_at": changed_at, **fields}

    def touch(self, id_: str, changed_at: str) -> None:
        """Change a contact vendor-side: its ``changed_at`` becomes the given (later) time."""
        with self._lock:
            self.contacts[id_] = {**self.contacts[id_], "changed_at": changed_at}

    def seed(self, changed_at: Sequence[str], *, prefix: str = "k") -> list[str]:
        """One contact per time (many may share one), ids ``<prefix>00001``... following the
        ones already there, with an email and a name each; returns their ids."""
        ids = []
        for changed in changed_at:
            n = len(self.contacts) + 1
            id_ = f"{prefix}{n:05d}"
            self.put(id_, changed, email=f"{prefix}{n}@acme-example.com", first="Seed", last=f"N{n}")
            ids.append(id_)
        return ids

    def fail_next(self, count: int, status: int = 500, headers: dict[str, str] | None = None) -> None:
        """The next ``count`` requests answer ``status`` with ``headers`` (429 with
        ``Retry-After``, 401/403, 5xx), before auth is even looked at; then normal again."""
        with self._lock:
            self._fail_next.extend([(status, dict(headers or {}))] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self._fail_next.clear()
            self.throttle_next = 0

    def __enter__(self) -> "AcmeServer":
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
