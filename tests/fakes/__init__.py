"""Fake vendor APIs: real HTTP servers on loopback that replay the vendors' own payloads.

Each fake is a threaded ``http.server`` on 127.0.0.1 and a free port, started as a context
manager (or ``start()`` / ``stop()``). Records are kept compact (id, timestamps, a variant
number) and rendered on request from a deep copy of the vendor's fixture, so 10,000
customers and 10,000 orders are generated in milliseconds. Common knobs:

- ``throttle_every(n, retry_after)``: every n-th request answers 429 with ``Retry-After``;
- ``throttle_next(count, retry_after)``: the next ``count`` requests answer 429;
- ``fail_next(count, status=500, headers=None)`` / ``fail_every(n, status=500)``: errors
  (5xx, 401/403 with the vendor's error body, 429 with the given ``Retry-After``);
  ``clear_faults()`` ends every injected fault;
- ``max_page_size``: serve at most this many records a page whatever the client asks (a
  test control: many pages from few records; the paging links and totals follow it);
- ``requests`` / ``served`` / ``throttled`` / ``failed``: counters, ``log``: (method, path+query),
  ``calls``: :class:`Call` s (method, path, query, headers) to assert what was sent.

:class:`FakeShop` adds a shop's customers and orders (compact :class:`Rec` s rendered on
request) and the vendor-side writes: ``seed``, ``add_*``, ``update_*``.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence
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


class Call(NamedTuple):
    """One request as the fake received it (faults included)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class FakeVendor:
    """Start/stop, counters and fault injection; subclasses implement ``route``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests = 0  # every request received, faults included
        self.served = 0  # requests answered 2xx
        self.throttled = 0
        self.failed = 0
        self.log: list[tuple[str, str]] = []
        self.calls: list[Call] = []
        self.max_page_size: int | None = None  # serve at most this many a page (a test control)
        self._throttle_every: tuple[int, str] | None = None
        self._throttle_next: list[str] = []
        self._fail_every: tuple[int, int] | None = None
        self._fail_next: list[tuple[int, dict[str, str]]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._local = threading.local()  # the request body, for routes that read one (POST, PUT)

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

    def fail_next(self, count: int, status: int = 500, headers: dict[str, str] | None = None) -> None:
        """The next ``count`` requests answer ``status`` with ``headers`` (429: the vendor's
        throttle body, ``Retry-After`` from ``headers``; 401/403: its refusal), then normal."""
        with self.lock:
            self._fail_next.extend([(status, dict(headers or {}))] * count)

    def clear_faults(self) -> None:
        """End every injected fault (pending ``*_next`` ones and the ``*_every`` patterns)."""
        with self.lock:
            self._throttle_next.clear()
            self._fail_next.clear()
            self._throttle_every = self._fail_every = None

    def page_size(self, asked: int) -> int:
        """What a page holds when the client asks for ``asked``: capped by ``max_page_size``."""
        return min(asked, self.max_page_size) if self.max_page_size else asked

    def reset_counters(self) -> None:
        with self.lock:
            self.requests = self.served = self.throttled = self.failed = 0
            self.log.clear()
            self.calls.clear()

    def throttle_reply(self, retry_after: str) -> Reply:
        return Reply(429, {"errors": "Too many requests"}, {"Retry-After": retry_after})

    def error_body(self, status: int) -> Any:
        """The vendor's body for an injected error status (subclasses: the vendor's words)."""
        return {"errors": "Internal Server Error" if status >= 500 else "Unauthorized" if status == 401
                else "Forbidden" if status == 403 else "Error"}

    def fault_reply(self, status: int, headers: dict[str, str]) -> Reply:
        if status == 429:
            reply = self.throttle_reply(headers.get("Retry-After", "1"))
            reply.headers.update(headers)
            return reply
        return Reply(status, self.error_body(status), headers)

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
            # headers and body go out in two writes: without TCP_NODELAY the body waits for
            # the client's delayed ACK (~40 ms a request on Linux)
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._handle("PUT")

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                reply = fake.serve(method, self.path, self.headers, raw)
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
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
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
    def serve(self, method: str, target: str, headers: Any, raw: bytes) -> Reply:
        """One request as the server received it: the body is kept for the route
        (``request_body()``), then faults, counters and ``route`` (``_dispatch``). A fake
        with its own request log and faults overrides this."""
        self._local.body = raw
        return self._dispatch(method, target, headers)

    def request_body(self) -> bytes:
        """The body of the request being routed (on the server's thread)."""
        return getattr(self._local, "body", b"")

    def _dispatch(self, method: str, target: str, headers: Any) -> Reply:
        with self.lock:
            self.requests += 1
            n = self.requests
            self.log.append((method, target))
            parts = urlsplit(target)
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            self.calls.append(Call(method, parts.path, query, dict(headers.items())))
            fault: Reply | None = None
            if self._throttle_next:
                fault = self.throttle_reply(self._throttle_next.pop(0))
            elif self._throttle_every and n % self._throttle_every[0] == 0:
                fault = self.throttle_reply(self._throttle_every[1])
            elif self._fail_next:
                fault = self.fault_reply(*self._fail_next.pop(0))
            elif self._fail_every and n % self._fail_every[0] == 0:
                fault = self.fault_reply(self._fail_every[1], {})
            if fault is not None:
                if fault.status == 429:
                    self.throttled += 1
                else:
                    self.failed += 1
                return fault
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


FIRST = ["Bob", "Ana", "Chen", "Dara", "Emil", "Fatou", "Goran", "Hana", "Ivo", "Jun", "Kofi", "Lea"]
LAST = ["Norman", "Silva", "Wang", "Okafor", "Novak", "Diallo", "Berg", "Sato", "Rossi", "Kim"]


class Rec:
    __slots__ = ("id", "n", "created", "updated", "override", "buyer")

    def __init__(self, id: int, n: int, created: int, updated: int, buyer: int | None = None) -> None:
        self.id, self.n, self.created, self.updated = id, n, created, updated
        self.override: dict[str, Any] | None = None
        self.buyer = buyer  # orders: the customer's id (``FakeShop.no_buyer`` for none)


class FakeShop(FakeVendor):
    """A shop's customers and orders, kept as :class:`Rec` s and rendered on request by the
    subclass's ``_customer`` / ``_order``. Subclasses set the first ids, what an order
    without a buyer holds and the rendered field ``update_*`` return."""

    first_ids: dict[str, int] = {"customers": 1, "orders": 1}
    no_buyer: int | None = None
    updated_field = "updated_at"

    def __init__(self, base_time: str) -> None:
        super().__init__()
        self.now = epoch(base_time)  # the vendor's clock: moves on each write
        self.customers: dict[int, Rec] = {}
        self.orders: dict[int, Rec] = {}
        self._ids: dict[str, list[int]] = {"customers": [], "orders": []}

    # vendor-side data -----------------------------------------------------------------
    def tick(self) -> int:
        with self.lock:
            self.now += 1
            return self.now

    def _buyer(self, kind: str, i: int) -> int | None:
        """Order i's buyer: customer i mod n."""
        buyers = self._ids["customers"]
        return buyers[i % len(buyers)] if kind == "orders" and buyers else self.no_buyer

    def _seed_buyer(self, kind: str, i: int) -> int | None:
        return self._buyer(kind, i)

    def seed(self, customers: int = 0, orders: int = 0, *,
             updated_at: str | Sequence[str] | Callable[[int], str] | None = None) -> dict[str, list[int]]:
        """Generate ``customers`` then ``orders`` (order i bought by customer i mod n).
        ``updated_at``: one ISO time for all (boundary timestamps: many records sharing one
        time), a function of i (the record's index in its kind), or a list with one time per
        record generated (of the one kind seeded). Returns the new ids by kind."""
        new: dict[str, list[int]] = {"customers": [], "orders": []}
        with self.lock:
            start = self.now
            for kind, count in (("customers", customers), ("orders", orders)):
                table, ids = getattr(self, kind), self._ids[kind]
                id0 = self.first_ids[kind]
                first = len(ids)
                for i in range(first, first + count):
                    created = start + i + 1
                    if updated_at is None:
                        updated = created
                    elif isinstance(updated_at, str):
                        updated = epoch(updated_at)
                    elif callable(updated_at):
                        updated = epoch(updated_at(i))
                    else:
                        updated = epoch(updated_at[i - first])
                    rec = Rec(id0 + i, i, created, updated, self._seed_buyer(kind, i))
                    table[rec.id] = rec
                    ids.append(rec.id)
                    new[kind].append(rec.id)
                    self.now = max(self.now, created, updated)
        return new

    def add_customer(self, **fields: Any) -> int:
        return self._add("customers", fields)

    def add_order(self, **fields: Any) -> int:
        return self._add("orders", fields)

    def _add(self, kind: str, fields: dict[str, Any]) -> int:
        with self.lock:
            ids = self._ids[kind]
            new_id = (ids[-1] + 1) if ids else self.first_ids[kind]
            stamp = epoch(fields.pop("updated_at")) if "updated_at" in fields else self.tick()
            rec = Rec(new_id, len(ids), stamp, stamp, self._buyer(kind, len(ids)))
            rec.override = fields or None
            getattr(self, kind)[new_id] = rec
            ids.append(new_id)
            return new_id

    def update_customer(self, id: int, updated_at: str | None = None, **fields: Any) -> str:
        return self._update("customers", id, updated_at, fields)

    def update_order(self, id: int, updated_at: str | None = None, **fields: Any) -> str:
        return self._update("orders", id, updated_at, fields)

    def _update(self, kind: str, id: int, updated_at: str | None, fields: dict[str, Any]) -> str:
        """Change fields vendor-side and bump updated_at (to the vendor clock, or as given)."""
        with self.lock:
            rec = getattr(self, kind)[id]
            if fields:
                rec.override = {**(rec.override or {}), **fields}
            rec.updated = epoch(updated_at) if updated_at else self.tick()
            self.now = max(self.now, rec.updated)
            return self.render(kind, rec)[self.updated_field]

    def ids(self, kind: str) -> list[int]:
        return list(self._ids[kind])

    # rendering ------------------------------------------------------------------------
    def render(self, kind: str, rec: Rec) -> dict[str, Any]:
        return self._customer(rec) if kind == "customers" else self._order(rec)

    def customer(self, id: int) -> dict[str, Any]:
        return self._customer(self.customers[id])

    def order(self, id: int) -> dict[str, Any]:
        return self._order(self.orders[id])

    def _person(self, n: int) -> tuple[str, str, str]:
        first, last = FIRST[n % len(FIRST)], LAST[(n // len(FIRST)) % len(LAST)]
        return first, last, f"{first}.{last}.{n}@example.com".lower()

    def _customer(self, rec: Rec) -> dict[str, Any]:
        raise NotImplementedError

    def _order(self, rec: Rec) -> dict[str, Any]:
        raise NotImplementedError
