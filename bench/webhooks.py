"""Webhooks and the change feed: DynamoDB requests per change appended and per page read,
DynamoDB requests per webhook delivery (fan-out + first attempt, unordered and ordered
endpoints), and deliveries per second per core as a ratio to signing alone.

Setup. The local emulator in this process (``rapport.emulator``, through
requests_per_operation.py's ``start_emulator``), the table and the KMS key from infra/,
``RAPPORT_LOCAL_DEV=1`` (plain http to a loopback receiver; deployments refuse it), and a
receiver on 127.0.0.1 (an HTTP/1.1 server thread, keep-alive, that answers 200 to every
POST). Changes are synthetic ``customer.updated`` events shaped like
tests/integration/test_webhook_deliveries.py's ``_events`` (``--n`` over 40 customers).
DynamoDB requests are counted with botocore hooks (``ClientCounter``, every thread,
cross-checked against what the emulator received: a request the hooks missed stops the
bench); items written are read off the same requests' parameters. Nothing is written
directly: the setup's requests are taken off the counter before each measured step.

1. *Change feed.* ``crm.changes.append`` of ``--n`` events of one tenant in batches of
   ``--batch`` (default 100): requests and items written per change, and per 49 changes
   (target, crm/changes.py: 2 items per change, 1 GetItem + 1 TransactWriteItems per 49).
   Then the feed read back with ``crm.changes.page`` (limit 100): requests per page
   (target 1 Query), also with a ``types`` filter and from ``cursor=now`` (1 GetItem).
2. *Deliveries.* Per kind (unordered, ordered; a tenant each), an endpoint made with
   ``crm.webhooks.endpoints.create`` (``types=["*"]``), then per round ``--n`` changes
   appended (not counted) and ``functions.webhooks.handle({"type": "endpoint", ...},
   send=connectors.outbound.post)``: the worker's whole fan-out + first attempts. Requests
   per delivery by operation against the sum of crm/webhooks/deliveries.py's docstrings
   (1 GetItem for the endpoint, lease + release, 1 Query per 100 of the feed, deliveries
   with the cursor 1 TransactWriteItems per 99, payloads 1 BatchGetItem per 100, outcomes 1
   BatchWriteItem per 25; ordered: 1 Query + 1 BatchGetItem per 20 of the drain and 1
   UpdateItem for its mark). Round 1 is an endpoint's first fan-out (+1 UpdateItem: its
   cursor's start); later rounds are the steady state. Every delivery is checked
   delivered, and the first request of each round verified with the endpoint's secret.
3. *CPU.* Deliveries per second per core as a ratio to signing alone
   (``crm.webhooks.signing.headers`` over the same bodies and ids, best of 5): CPU time,
   never wall time. The headline is the worker's threads (the calling thread's
   ``time.thread_time`` + the attempt threads' inside ``deliveries.attempt``): what a
   Lambda worker spends, without the emulator (moto answers from its own threads in this
   process) or the receiver. ``time.process_time`` of the whole process is printed beside
   it, with the receiver's share (its threads' CPU, measured in them); the rest is moto.
   Median of the steady-state rounds.

    python3 -m uv run --locked python bench/webhooks.py            # N = 500, about 75 s on 2 cores
    python3 -m uv run --locked python bench/webhooks.py --n 2000 --rounds 4
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.requests_per_operation import ClientCounter, ServerCounter, fmt, start_emulator

TABLE = "rapport-bench-webhooks"
OBJECTS = 40  # customers the synthetic changes are spread over
PLURAL = {"change": "changes", "page": "pages", "delivery": "deliveries"}


# --- counting --------------------------------------------------------------------------------


class ItemCounter(ClientCounter):
    """``ClientCounter`` + the items each DynamoDB write request carries (from its
    parameters, ``before-parameter-build``) + KMS calls (the signing secrets' Decrypt)."""

    def __init__(self) -> None:
        super().__init__()
        self.items: Counter[str] = Counter()
        self.kms: Counter[str] = Counter()

    def install(self) -> None:
        from botocore import handlers

        super().install()
        handlers.BUILTIN_HANDLERS.append(("before-parameter-build.dynamodb", self._on_params))
        handlers.BUILTIN_HANDLERS.append(("before-call.kms", self._on_kms))

    def _on_params(self, params: dict[str, Any] | None = None, model: Any = None, **_: Any) -> None:
        params = params or {}
        name = model.name
        if name == "TransactWriteItems":
            n = len(params.get("TransactItems", []))
        elif name == "BatchWriteItem":
            n = sum(len(v) for v in params.get("RequestItems", {}).values())
        elif name in ("PutItem", "UpdateItem", "DeleteItem"):
            n = 1
        else:
            return
        with self._lock:
            self.items[name] += n

    def _on_kms(self, model: Any = None, **_: Any) -> None:
        with self._lock:
            self.kms[model.name] += 1

    def take_all(self, server: ServerCounter) -> tuple[Counter[str], Counter[str], Counter[str]]:
        """(calls, items written, KMS calls) since the last take; stops when the emulator
        received other than what the hooks saw."""
        calls, sends = self.take()
        with self._lock:
            items, kms = self.items, self.kms
            self.items, self.kms = Counter(), Counter()
        seen = server.take()
        if +seen != +sends:
            raise SystemExit(f"the emulator received {fmt(seen)} but the botocore hooks saw {fmt(sends)}")
        return calls, items, kms


class AttemptCPU:
    """Thread CPU spent inside ``crm.webhooks.deliveries.attempt`` on threads other than
    the calling one (an unordered endpoint's attempts run on a pool of threads), and inside
    the send (``connectors.outbound.post``) on any thread."""

    def __init__(self) -> None:
        from crm.webhooks import deliveries

        self.main = threading.get_ident()
        self.lock = threading.Lock()
        self.pool = 0.0
        self.send = 0.0
        original = deliveries.attempt

        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self.main:
                return original(*args, **kwargs)
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with self.lock:
                    self.pool += spent

        deliveries.attempt = timed  # type: ignore[assignment]

    def post(self, url: str, headers: dict[str, str], body: str) -> Any:
        """``connectors.outbound.post``, its CPU measured on the thread that calls it."""
        from connectors import outbound

        started = time.thread_time()
        try:
            return outbound.post(url, headers, body)
        finally:
            spent = time.thread_time() - started
            with self.lock:
                self.send += spent

    def take(self) -> tuple[float, float]:
        with self.lock:
            pool, send = self.pool, self.send
            self.pool = self.send = 0.0
        return pool, send


# --- the receiver ----------------------------------------------------------------------------


class Receiver:
    """A webhook endpoint on 127.0.0.1 that answers 200 ``{}`` to every POST, over
    HTTP/1.1 keep-alive (as a real receiver would). Keeps the webhook ids it got and the
    first request of each ``mark()`` (for a signature check), and the CPU of its threads
    (each request's, measured on the connection's thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: list[str] = []
        self.sample: dict[str, Any] | None = None
        self.cpu = 0.0

    def __enter__(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # the answer in one write (flushed per request): no Nagle/delayed-ACK stall


            def log_message(self, *args: Any) -> None:
                pass

            def handle_one_request(self) -> None:  # parse, answer (waiting for it takes no CPU)
                started = time.thread_time()
                try:
                    super().handle_one_request()
                finally:
                    spent = time.thread_time() - started
                    with receiver.lock:
                        receiver.cpu += spent

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.ids.append(self.headers.get("webhook-id", ""))
                    if receiver.sample is None:
                        receiver.sample = {"body": raw.decode(),
                                           "headers": {k.lower(): v for k, v in self.headers.items()}}
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def mark(self) -> None:
        with self.lock:
            self.ids, self.sample = [], None

    def take_cpu(self) -> float:
        """The receiver's CPU since the last take (its threads' own clocks)."""
        with self.lock:
            cpu, self.cpu = self.cpu, 0.0
        return cpu

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- the change feed ---------------------------------------------------------------------------


def events(tenant_id: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` customer.updated changes over ``OBJECTS`` customers, each with its version
    (tests/integration/test_webhook_deliveries.py's ``_events``)."""
    out = []
    for i in range(start, start + n):
        cid = f"cus_{i % OBJECTS:026d}"
        version = i // OBJECTS + 1
        out.append({"id": f"customer.updated:{cid}:{version}", "type": "customer.updated", "tenant_id": tenant_id,
                    "customer_id": cid, "occurred_at": "2026-12-01T00:00:00.000Z",
                    "data": {"customer_id": cid, "version": version, "changed": ["tags"]}})
    return out


@dataclass
class Row:
    what: str
    unit: str  # what "per" counts: change, page, delivery
    units: int
    calls: Counter[str]
    items: Counter[str]
    target: Counter[str]  # the docstrings' requests for these units
    note: str = ""

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def verdict(self) -> str:
        """met, or what is above (or below) the target, by operation."""
        if +self.calls == +self.target:
            return "met"
        diff = [f"{op} {self.calls[op] - self.target[op]:+d}" for op in sorted(set(self.calls) | set(self.target))
                if self.calls[op] != self.target[op]]
        return ("ABOVE: " if self.total > sum(self.target.values()) else "differs: ") + ", ".join(diff)


def measure_feed(counter: ItemCounter, server: ServerCounter, n: int, batch: int) -> list[Row]:
    from crm import changes, tenants
    from crm.context import TenantContext

    tenant = tenants.create("Bench feed")
    ctx = TenantContext(tenant.id)
    evs = events(tenant.id, n)
    counter.take_all(server)
    calls: Counter[str] = Counter()
    items: Counter[str] = Counter()
    target: Counter[str] = Counter()
    for i in range(0, n, batch):
        part = evs[i : i + batch]
        changes.append(part)
        c, it, _ = counter.take_all(server)
        calls += c
        items += it
        chunks = math.ceil(len(part) / changes.PER_TX)
        target += Counter({"GetItem": chunks, "TransactWriteItems": chunks})
    rows = [Row(f"append, {math.ceil(n / batch)} batches of {batch} events", "change", n, calls, items, target,
                note=f"per {changes.PER_TX} changes: " + fmt(Counter({k: round(v * changes.PER_TX / n, 2)
                                                                       for k, v in calls.items()})))]

    for label, types in (("page read (limit 100)", None),
                         ("page read, types filter (limit 100)", frozenset({"customer.updated", "order.paid"}))):
        cursor, pages, read, calls = None, 0, 0, Counter()
        while True:
            got, cursor, more = changes.page(ctx, cursor, types, limit=100)
            c, _, _ = counter.take_all(server)
            calls += c
            pages += 1
            read += len(got)
            if not more:
                break
        if read != n:
            raise SystemExit(f"{label}: read {read} changes back, appended {n}")
        rows.append(Row(label, "page", pages, calls, Counter(), Counter({"Query": pages}),
                        note=f"{read} changes in {pages} pages (the last one empty when {n} is a multiple of 100)"
                        if n % 100 == 0 else f"{read} changes in {pages} pages"))
    changes.page(ctx, changes.NOW, None)
    c, _, _ = counter.take_all(server)
    rows.append(Row("page read from cursor=now", "page", 1, c, Counter(), Counter({"GetItem": 1})))
    return rows


# --- deliveries --------------------------------------------------------------------------------


@dataclass
class Run:
    kind: str
    round: int
    rows: Row
    kms: Counter[str]
    worker_cpu: float  # the calling thread + the attempt threads
    process_cpu: float
    receiver_cpu: float
    send_cpu: float  # inside outbound.post (any thread)
    meters: dict[str, float]  # botocore / PynamoDB on the calling thread


@dataclass
class Kind:
    kind: str
    runs: list[Run] = field(default_factory=list)
    sign_cpu: float = 0.0  # signing alone, the same bodies: best of 5
    signed: int = 0


def delivery_target(n: int, ordered: bool, first: bool) -> Counter[str]:
    """The docstrings' requests for a fan-out of ``n`` wanted changes (crm/webhooks/
    deliveries.py, crm/changes.py, crm/webhooks/endpoints.py)."""
    from crm.webhooks import deliveries as d

    t = Counter({
        "GetItem": 1,  # endpoints.get (functions/webhooks.py)
        "UpdateItem": 2 + (1 if first else 0),  # lease + release (+ the cursor's start)
        "Query": math.ceil(n / d.PAGE) + 1,  # the feed from the cursor, until a read finds none
        "TransactWriteItems": math.ceil(n / d.PER_TX),  # deliveries + the cursor: 1 per 99
    })
    if ordered:  # the drain: its queue and payloads per 20, outcomes per 25, the mark
        t += Counter({"Query": math.ceil(n / d.ORDERED_PAGE), "BatchGetItem": math.ceil(n / d.ORDERED_PAGE),
                      "BatchWriteItem": math.ceil(n / 25), "UpdateItem": 1})
    else:  # payloads per 100, outcomes per 25
        t += Counter({"BatchGetItem": math.ceil(n / 100), "BatchWriteItem": math.ceil(n / 25)})
    return t


def measure_deliveries(counter: ItemCounter, server: ServerCounter, meters: dict[str, Any], cpu: AttemptCPU,
                       receiver: Receiver, ordered: bool, n: int, rounds: int) -> Kind:
    from crm import changes, tenants
    from crm.context import TenantContext
    from crm.storage import WebhookDeliveryItem
    from crm.webhooks import deliveries, endpoints, signing
    from crm.webhooks.schemas import WebhookEndpointCreate
    from functions import webhooks
    from tests.webhook_receiver import verify

    kind = "ordered" if ordered else "unordered"
    tenant = tenants.create(f"Bench webhooks {kind}")
    ctx = TenantContext(tenant.id)
    endpoint = endpoints.create(ctx, WebhookEndpointCreate(url=receiver.url, types=["*"], ordered=ordered))
    out = Kind(kind)
    message = {"type": "endpoint", "tenant_id": tenant.id, "endpoint_id": endpoint.id}
    for r in range(rounds):
        evs = events(tenant.id, n, start=r * n)
        changes.append(evs)
        counter.take_all(server)
        receiver.mark()
        receiver.take_cpu()
        cpu.take()
        for meter in meters.values():
            meter.take()
        process, thread = time.process_time(), time.thread_time()
        webhooks.handle(message, send=cpu.post)
        thread, process = time.thread_time() - thread, time.process_time() - process
        pool, send = cpu.take()
        inside = {name: meter.take() for name, meter in meters.items()}
        calls, items, kms = counter.take_all(server)
        want = {e["id"] for e in evs}
        if set(receiver.ids) != want or len(receiver.ids) != n:
            raise SystemExit(f"{kind} round {r + 1}: the receiver got {len(receiver.ids)} requests "
                             f"({len(set(receiver.ids) & want)} of the {n} changes)")
        if receiver.sample is None:
            raise SystemExit(f"{kind} round {r + 1}: no request to verify")
        verify(endpoint.secret, receiver.sample)  # what a receiver does: raises if forged
        states = Counter(d.status for d in WebhookDeliveryItem.query(deliveries._pk(ctx, endpoint.id)))
        if states != Counter({"delivered": n * (r + 1)}):
            raise SystemExit(f"{kind} round {r + 1}: deliveries {dict(states)}, expected all delivered")
        if ordered and receiver.ids != [e["id"] for e in evs]:
            raise SystemExit(f"{kind} round {r + 1}: not received in feed order")
        row = Row(f"{kind}, round {r + 1}" + (" (first fan-out)" if r == 0 else ""), "delivery", n, calls, items,
                  delivery_target(n, ordered, first=r == 0))
        out.runs.append(Run(kind, r + 1, row, kms, thread + pool, process, receiver.take_cpu(), send, inside))
        counter.take_all(server)

    # signing alone: the same bodies and ids, the same secrets (read outside the counts)
    seqs = [d.seq for d in WebhookDeliveryItem.query(deliveries._pk(ctx, endpoint.id))][-n:]
    bodies = deliveries._bodies(ctx, seqs)
    ids = {d.seq: d.change_id for d in WebhookDeliveryItem.query(deliveries._pk(ctx, endpoint.id))}
    secrets = endpoints.signing_secrets(ctx, endpoints.get(ctx, endpoint.id))
    counter.take_all(server)
    work = [(ids[s], b) for s, b in bodies.items()]

    def sign_all() -> None:
        for msg_id, body in work:
            signing.headers(secrets, msg_id, datetime.now(UTC), body)

    reps = 1
    while True:  # long enough for the clock: at least 0.1 s of CPU a pass
        started = time.thread_time()
        for _ in range(reps):
            sign_all()
        if time.thread_time() - started >= 0.1:
            break
        reps *= 2
    best = float("inf")
    for _ in range(5):
        started = time.thread_time()
        for _ in range(reps):
            sign_all()
        best = min(best, time.thread_time() - started)
    out.sign_cpu, out.signed = best, reps * len(work)
    return out


# --- the report --------------------------------------------------------------------------------


def requests_table(title: str, rows: list[Row]) -> Any:
    from rich.table import Table

    t = Table(title=title)
    for col in ("what", "n", "requests", "per", "items written per", "by operation", "target (docstrings)",
                "verdict"):
        t.add_column(col, justify="right" if col in ("n", "requests", "per", "items written per") else "left")
    for r in rows:
        items = sum(r.items.values())
        t.add_row(r.what, f"{r.units} {r.unit if r.units == 1 else PLURAL[r.unit]}", str(r.total), f"{r.total / r.units:.3f}",
                  f"{items / r.units:.2f}" if items else "-", fmt(r.calls), fmt(r.target), r.verdict)
    return t


def steady(runs: list[Run]) -> list[Run]:
    """The rounds after an endpoint's first (imports, the KMS Decrypt, the HTTP client's
    first connection), or the only one."""
    return runs[1:] or runs


def ratio(x: float) -> str:
    return f"{x:.4f}× (1/{1 / x:.0f})" if x < 0.1 else f"{x:.2f}×"


def cpu_table(kinds: list[Kind], n: int) -> tuple[Any, float]:
    from rich.table import Table

    t = Table(title=f"Deliveries per second per core (CPU time), as a ratio to signing alone; "
                    f"{n} deliveries a round, median of the steady rounds")
    for col in ("work", "× signing alone (deliveries/s ÷ signatures/s)", "CPU per delivery ÷ signing's"):
        t.add_column(col, justify="left" if col == "work" else "right")
    base = statistics.mean(k.sign_cpu / k.signed for k in kinds)
    t.add_row("signing alone (signing.headers, same bodies; baseline)", "1.0×", "1.0")
    for k in kinds:
        runs = steady(k.runs)

        def per(values: list[float]) -> float:
            return statistics.median(values) / n

        worker = per([r.worker_cpu for r in runs])
        t.add_row(f"{k.kind}: fan-out + first attempt, the worker's threads", ratio(base / worker),
                  f"{worker / base:.1f}")
        t.add_row("  of which botocore (DynamoDB requests: build, sign, send, parse)", "",
                  f"{per([r.meters['botocore'] for r in runs]) / base:.1f}")
        t.add_row("  of which PynamoDB (items to attribute maps and back)", "",
                  f"{per([r.meters['pynamodb'] for r in runs]) / base:.1f}")
        t.add_row("  of which the POST (connectors.outbound.post, httpx)", "",
                  f"{per([r.send_cpu for r in runs]) / base:.1f}")
        whole = per([r.process_cpu for r in runs])
        t.add_row(f"{k.kind}: the whole process (+ the emulator and the receiver)", ratio(base / whole),
                  f"{whole / base:.1f}")
        t.add_row("  of which the receiver's threads", "", f"{per([r.receiver_cpu for r in runs]) / base:.1f}")
    return t, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="changes appended, and deliveries per round (default 500)")
    parser.add_argument("--batch", type=int, default=100, help="events per append (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="fan-outs per endpoint kind (default 3)")
    args = parser.parse_args()

    counter, server_counter = ItemCounter(), ServerCounter()
    counter.install()
    moto, _, cross_check = start_emulator(server_counter, TABLE, key_cache_seconds=60)
    if not cross_check:
        raise SystemExit("the emulator's WSGI app could not be wrapped: no cross-check of the counts")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ["RAPPORT_LOCAL_DEV"] = "1"  # plain http to the loopback receiver (deployments refuse it)
    import boto3

    from bench.sync import client_meters
    from infra.bootstrap import create_connector_resources, create_table

    create_table(boto3.client("dynamodb"), TABLE)
    os.environ.update(create_connector_resources(boto3.session.Session(), TABLE))  # the KMS key sealing secrets

    from rich.console import Console

    console = Console(width=max(Console().width, 160))
    meters = client_meters()  # on this thread: the worker's DynamoDB requests are all made here
    cpu = AttemptCPU()
    try:
        feed = measure_feed(counter, server_counter, args.n, args.batch)
        console.print(requests_table("Change feed (crm/changes.py): DynamoDB requests", feed))
        for r in feed:
            if r.note:
                console.print(f"  {r.what}: {r.note}")
        console.print()
        kinds = []
        with Receiver() as receiver:
            for ordered in (False, True):
                kinds.append(measure_deliveries(counter, server_counter, meters, cpu, receiver, ordered,
                                                args.n, args.rounds))
        rows = [r.rows for k in kinds for r in k.runs]
        console.print(requests_table(
            "Deliveries: DynamoDB requests per delivery, fan-out + first attempt (functions.webhooks.handle, "
            "a receiver answering 200)", rows))
        for k in kinds:
            kms = sum((r.kms for r in k.runs), Counter())
            console.print(f"  {k.kind}: KMS {fmt(kms)} in {len(k.runs)} rounds (the secret, cached per container)")
        console.print()
        table, base = cpu_table(kinds, args.n)
        console.print(table)
        console.print(f"(the baseline: {base * 1e6:.0f} µs of CPU per signature, {kinds[0].signed:,} signed a pass; "
                      "the worker's threads are the calling thread's time.thread_time plus the attempt threads' "
                      "inside deliveries.attempt)")
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
