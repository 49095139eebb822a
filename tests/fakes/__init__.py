"""Fake vendor APIs: real HTTP servers on loopback that replay the vendors' own payloads.

Each fake is a threaded ``http.server`` on 127.0.0.1 and a free port, started as a context
manager (or ``start()`` / ``stop()``). Records are kept compact (id, timestamps, a variant
number) and rendered on request from a deep copy of the vendor's fixture, so 10,000
customers and 10,000 orders are generated in milliseconds. Common knobs:

- ``throttle_every(n, retry_after)``: every n-th request answers 429 with ``Retry-After``;
- ``throttle_next(count, retry_after)``: the next ``count`` requests answer 429;
- ``fail_next(count, status=500)`` / ``fail_every(n, status=500)``: server errors;
- ``requests`` / ``served`` / ``throttled`` / ``failed``: counters, ``log``: (method, path+query).
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
if not FIXTURES.exists():  # the tree may be checked out elsewhere; /work/shared is the shared copy
    FIXTURES = Path("/work/shared/fixtures")


def fixture(*parts: str) -> Any:
    return json.loads((FIXTURES.joinpath(*parts)).read_text())


def epoch(value: str) -> int:
    """ISO-8601 (offset, ``Z`` or none = UTC) → whole epoch seconds."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


class Reply:
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, dict(headers or {})


class FakeVendor:
    """Start/stop, counters and fault injection; subclasses implement ``route``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests = 0  # every request received, faults included
        self.served = 0  # requests answered 2xx
        self.throttled = 0
        self.failed = 0
        self.log: list[tuple[str, str]] = []
        self._throttle_every: tuple[int, str] | None = None
        self._throttle_next: list[str] = []
        self._fail_every: tuple[int, int] | None = None
        self._fail_next: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # fault injection -----------------------------------------------------------------
    def throttle_every(self, n: int | None, retry_after: float | str = 1) -> None:
        with self.lock:
            self._throttle_every = (n, str(retry_after)) if n else None

    def throttle_next(self, count: int, retry_after: float | str = 1) -> None:
        with self.lock:
            self._throttle_next.extend([str(retry_after)] * count)

    def fail_every(self, n: int | None, status: int = 500) -> None:
        with self.lock:
            self._fail_every = (n, status) if n else None

    def fail_next(self, count: int, status: int = 500) -> None:
        with self.lock:
            self._fail_next.extend([status] * count)

    def reset_counters(self) -> None:
        with self.lock:
            self.requests = self.served = self.throttled = self.failed = 0
            self.log.clear()

    def throttle_reply(self, retry_after: str) -> Reply:
        return Reply(429, {"errors": "Too many requests"}, {"Retry-After": retry_after})

    # lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeVendor":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                reply = fake._dispatch(method, self.path, self.headers)
                data = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeVendor":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # dispatch --------------------------------------------------------------------------
    def _dispatch(self, method: str, target: str, headers: Any) -> Reply:
        with self.lock:
            self.requests += 1
            n = self.requests
            self.log.append((method, target))
            fault: Reply | None = None
            if self._throttle_next:
                fault = self.throttle_reply(self._throttle_next.pop(0))
            elif self._throttle_every and n % self._throttle_every[0] == 0:
                fault = self.throttle_reply(self._throttle_every[1])
            elif self._fail_next:
                fault = Reply(self._fail_next.pop(0), {"errors": "Internal Server Error"})
            elif self._fail_every and n % self._fail_every[0] == 0:
                fault = Reply(self._fail_every[1], {"errors": "Internal Server Error"})
            if fault is not None:
                if fault.status == 429:
                    self.throttled += 1
                else:
                    self.failed += 1
                return fault
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            reply = self.route(method, parts.path, query, headers)
        except Exception as exc:  # a bug in the fake must show, not hang the client
            reply = Reply(500, {"errors": f"fake crashed: {exc!r}"})
        if reply.status < 300:
            with self.lock:
                self.served += 1
        return reply

    def route(self, method: str, path: str, query: dict[str, str], headers: Any) -> Reply:
        raise NotImplementedError
