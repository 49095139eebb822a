"""What the two tracking-provider fakes (EasyPost, AfterShip) share, on top of
:class:`tests.fakes.FakeVendor`: the request body is read (trackers are created by POST),
every request is logged with its query and headers, and the next N requests can be
answered with any status and headers (fakes.md: 429 with ``Retry-After``, 5xx, 401/403).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import FakeVendor, Reply


@dataclass
class Logged:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None
    status: int = 0


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeCarrier(FakeVendor):
    """Subclasses implement ``handle(method, path, query, headers, body) -> Reply``."""

    def __init__(self) -> None:
        super().__init__()
        self.max_page_size: int = 100  # FakeVendor's default (None: no cap) does not suit a carrier's lists
        self.requests_log: list[Logged] = []
        self._faults: list[Fault] = []

    # controls -------------------------------------------------------------------------
    def fail_next_with(self, count: int, status: int, headers: dict[str, str] | None = None,
                       body: Any = None) -> None:
        """The next ``count`` requests answer ``status`` with ``headers`` (e.g. 429 and
        ``{"Retry-After": "2"}``, 503, 401), then the fake answers normally again."""
        with self.lock:
            self._faults.extend(Fault(status, dict(headers or {}), body) for _ in range(count))

    def set_page_size(self, n: int) -> None:
        """The largest page the fake serves (requests asking more get this many)."""
        self.max_page_size = n

    def sent(self, method: str | None = None, path_part: str = "") -> list[Logged]:
        """The logged requests (after faults), filtered by method and a part of the path."""
        with self.lock:
            return [r for r in self.requests_log if (method is None or r.method == method) and path_part in r.path]

    # server ---------------------------------------------------------------------------
    def serve(self, method: str, target: str, headers: Any, raw: bytes) -> Reply:
        """Its own request log (with the parsed body) and faults (any status, headers and
        body), instead of FakeVendor's."""
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        entry = Logged(method, parts.path, query, {k.lower(): v for k, v in headers.items()}, body)
        with self.lock:
            self.requests += 1
            self.log.append((method, target))
            self.requests_log.append(entry)
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            with self.lock:
                if fault.status == 429:
                    self.throttled += 1
                else:
                    self.failed += 1
            entry.status = fault.status
            return Reply(fault.status, fault.body if fault.body is not None else {"error": "injected"}, fault.headers)
        try:
            reply = self.handle(method, parts.path, query, entry.headers, body)
        except Exception as exc:  # a bug in the fake must show, not hang the client
            reply = Reply(500, {"error": f"fake crashed: {exc!r}"})
        entry.status = reply.status
        if reply.status < 300:
            with self.lock:
                self.served += 1
        return reply

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any) -> Reply:
        raise NotImplementedError
