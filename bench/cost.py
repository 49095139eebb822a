"""What a tenant costs to run, per plan: each plan's reference workload (a tenant-month)
x the request counts measured here x AWS list prices, item by item, beside the plan's
price. The arithmetic is bench/cost_model.py (pure, unit-tested); this file measures.

Measurement (about 50 s on 2 cores, no network). The local stack in-process with
the pollers ``rapport dev`` runs (as bench/events.py: the table's stream -> the
dispatcher, the subscriber queues -> their handlers; queue pollers short-poll, the
schedule ticker is off), a tenant with a loyalty program, then:

- *the API call mix*: each operation of ``MIX`` sent ``--repeat`` times through the HTTP
  API; after each operation the pipeline is waited idle, so what its writes cause
  (stream records, dispatcher invocations) is counted with it. Weighted by ``MIX``.
- *an order*: ``--orders`` orders placed, paid and fulfilled through the API, with what
  their events cause (dispatcher, loyalty handler, SQS).
- *a connector run*: a CSV connection whose file is imported once, then ``--runs``
  uploads of it (presigned PUTs) and as many runs that find its rows unchanged: a
  scheduled run that finds nothing new, without the API call that started it.
- *storage*: the tenant's items read back at the end, sized as DynamoDB sizes them
  (+100 bytes an item, and again for each GSI the item is in: both GSIs project ALL).

Counted per unit: DynamoDB requests and request units (botocore hooks on every session,
bench/events.py's ``ComponentCounter``, extended here to size each request's items: reads
by the items returned, 4 KB a unit, half when eventually consistent; writes by the item
sent, 1 KB a unit, twice in a transaction; index writes from the stream records' old and
new images: cost_model.request_units and gsi_write_units), Lambda invocations (the API requests and the pollers' handler calls), the handlers'
thread CPU (the API's measured around the Chalice app's call, the event handlers' by
bench/events.py's ``LabelledHandlers``), stream records, the functions' SQS requests
(+ a receive and a delete per subscriber invocation, which Lambda's event source mapping
makes) and their S3 and KMS requests (a spy on botocore, as events.py's ``SqsCounter``). CPU is shown as a ratio against ``get customer`` in the same run; the dollars
use it as seconds (bench/cost_model.py says how), so they are estimates of the order
of magnitude, not a bill.

    python3 -m uv run python bench/cost.py [--repeat 10] [--orders 10] [--runs 5] [--rows 1]
        [--stage prod] [--io-ms 5] [--rate-limit 0.04]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cost_model as cm
from bench.events import (
    API,
    PROGRAM,
    ComponentCounter,
    LabelledHandlers,
    SqsCounter,
    component,
)
from bench.requests_per_operation import ServerCounter, fmt, free_port, order_body, start_emulator

TABLE = "rapport-bench-cost"
GSI_KEYS = ("gsi1pk", "gsi2pk")  # infra/resources.json: gsi1 and gsi2, ProjectionType ALL
ITEM_OVERHEAD = 100              # bytes DynamoDB adds per item (and per index entry) for storage

# The reference workloads (a tenant-month), one per plan of the catalogue, near each
# plan's limits (crm/billing/plans.json). Orders are placed, paid and fulfilled through the
# API (3 calls each, not counted in api_calls). Sync runs: each connection the plan allows
# (free 1, starter 3, growth 10; scale: 20 assumed) syncing hourly (free: daily).
WORKLOADS = {
    "free": cm.Workload("free", customers=500, orders=200, emails=1_000, api_calls=20_000,
                        sync_runs=30, uploads=1, note="1 connection, daily"),
    "starter": cm.Workload("starter", customers=10_000, orders=5_000, emails=20_000, api_calls=300_000,
                           sync_runs=3 * 720, uploads=4, note="3 connections, hourly"),
    "growth": cm.Workload("growth", customers=100_000, orders=50_000, emails=200_000, api_calls=3_000_000,
                          sync_runs=10 * 720, uploads=10, note="10 connections, hourly"),
    "scale": cm.Workload("scale", customers=500_000, orders=250_000, emails=1_000_000,
                         api_calls=15_000_000, sync_runs=20 * 720, uploads=20,
                         note="20 connections, hourly"),
}

# What "an API call" is: a CRM's traffic, mostly reads. Weights sum to 1.
MIX: list[tuple[str, float]] = [
    ("get customer", 0.30), ("360 view", 0.15), ("list page (25)", 0.10), ("search", 0.10),
    ("lookup by email", 0.10), ("PATCH (name)", 0.10), ("timeline add", 0.10), ("create customer", 0.05),
]
BASELINE = "get customer"


# --- request units ------------------------------------------------------------------------------


class UnitCounter(ComponentCounter):
    """bench/events.py's hooks, plus each request's request units, by component."""

    def __init__(self) -> None:
        super().__init__()
        self.units: Counter[tuple[str, str]] = Counter()  # (component, "rru" | "wru")

    def install(self) -> None:
        from botocore import handlers

        super().install()
        handlers.BUILTIN_HANDLERS.append(("before-parameter-build.dynamodb", self._on_params))
        handlers.BUILTIN_HANDLERS.append(("after-call.dynamodb", self._on_result))

    def _on_params(self, params: dict | None = None, context: dict | None = None, **_: Any) -> None:
        if context is not None and params is not None:
            context["cost_params"] = params

    def _on_result(self, parsed: dict | None = None, model: Any = None, context: dict | None = None,
                   **_: Any) -> None:
        params = (context or {}).get("cost_params") or {}
        rru, wru = cm.request_units(model.name, params, parsed or {})
        with self._lock:
            who = component()
            self.units[(who, "rru")] += rru
            self.units[(who, "wru")] += wru

    def take_units(self) -> Counter[tuple[str, str]]:
        with self._lock:
            units, self.units = self.units, Counter()
        return units


class AwsCounter:
    """S3 and KMS requests the functions send (not the pollers' plumbing), by component."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()  # (component, "s3 GetObject")

    def install(self) -> None:
        from botocore.client import BaseClient

        from rapport.pollers import is_plumbing

        inner, counter = BaseClient._make_api_call, self

        def counted(client: Any, operation_name: str, api_params: dict) -> Any:
            service = client.meta.service_model.service_name
            if service in ("s3", "kms") and not is_plumbing(client):
                with counter._lock:
                    counter.requests[(component(), f"{service} {operation_name}")] += 1
            return inner(client, operation_name, api_params)

        BaseClient._make_api_call = counted

    def take(self) -> Counter[tuple[str, str]]:
        with self._lock:
            out, self.requests = self.requests, Counter()
        return out


class ApiClock:
    """Thread CPU and calls of the Chalice app's Lambda entry point (what API Gateway invokes)."""

    def __init__(self, chalice_app: Any) -> None:
        self._lock = threading.Lock()
        self.calls, self.cpu = 0, 0.0
        cls = type(chalice_app)
        inner = cls.__call__
        clock = self

        def timed(app: Any, event: Any, context: Any) -> Any:
            start = time.thread_time()
            try:
                return inner(app, event, context)
            finally:
                spent = time.thread_time() - start
                with clock._lock:
                    clock.calls += 1
                    clock.cpu += spent

        cls.__call__ = timed

    def take(self) -> tuple[int, float]:
        with self._lock:
            out, (self.calls, self.cpu) = (self.calls, self.cpu), (0, 0.0)
        return out


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Sample:
    name: str
    n: int
    unit: cm.PerUnit
    requests: Counter[str]
    index_wru: float  # of unit.wru: the GSIs' share
    other: Counter[str]  # S3 and KMS requests per unit, by "service operation"


class Meter:
    def __init__(self, http: Any, stack: Any, counter: UnitCounter, server: ServerCounter | None,
                 sqs: SqsCounter, aws: AwsCounter, handlers: LabelledHandlers, api: ApiClock) -> None:
        self.http, self.stack, self.counter, self.server = http, stack, counter, server
        self.sqs, self.aws, self.handlers, self.api = sqs, aws, handlers, api

    def idle(self) -> None:
        pipeline = self.stack.pipeline
        if not pipeline.wait_idle(timeout=120):
            raise SystemExit("the event pipeline did not become idle within 120 s")
        bad = sum(p.stats.dead_lettered + p.stats.errors + p.stats.failed for p in pipeline.pollers)
        if bad:
            raise SystemExit(f"a handler failed ({bad} records): the counts would not mean what they say")

    def reset(self) -> None:
        self.idle()
        self.counter.take_all()
        self.counter.take_units()
        if self.server:
            self.server.take()
        self.sqs.take()
        self.aws.take()
        self.handlers.take()
        self.api.take()

    def measure(self, name: str, n: int, api_requests_per_unit: int, action: Callable[[], None],
                without_api: bool = False) -> Sample:
        """What ``action`` (``n`` units) cost, per unit, once the pipeline is idle again.
        ``without_api``: leave out the API requests it made and what they sent (a sync run
        started by the API stands for one the schedule starts)."""
        self.reset()
        action()
        self.idle()
        by, calls, sends = self.counter.take_all()
        if self.server:
            seen = self.server.take()
            if +seen != +sends:
                raise SystemExit(f"{name}: the emulator received {fmt(seen)} but the hooks saw {fmt(sends)}")
        if sum(sends.values()) != sum(calls.values()):
            raise SystemExit(f"{name}: retries ({fmt(sends)} sent for {fmt(calls)}); run again")
        units = self.counter.take_units()
        sqs_requests, _, _ = self.sqs.take()
        other = self.aws.take()
        stats, records = self.handlers.take()
        index_wru = sum(cm.gsi_write_units(r["dynamodb"].get("OldImage"), r["dynamodb"].get("NewImage"))
                        for r in records)
        api_calls, api_cpu = self.api.take()
        if api_calls != n * api_requests_per_unit:
            raise SystemExit(f"{name}: {api_calls} API invocations, expected {n * api_requests_per_unit}")
        if without_api:
            calls = Counter({op: c for (who, op), c in by.items() if who != API})
            units = Counter({(who, k): v for (who, k), v in units.items() if who != API})
            api_calls, api_cpu, api_requests_per_unit = 0, 0.0, 0
        subscribers = sum(s.invocations for who, s in stats.items() if who != "dispatch")
        dispatch = stats.get("dispatch")
        unit = cm.PerUnit(
            api_requests=api_requests_per_unit,
            rru=sum(v for (_, k), v in units.items() if k == "rru") / n,
            wru=(sum(v for (_, k), v in units.items() if k == "wru") + index_wru) / n,
            dynamodb_requests=sum(calls.values()) / n,
            lambda_invocations=(api_calls + sum(s.invocations for s in stats.values())) / n,
            lambda_cpu_seconds=(api_cpu + sum(s.cpu for s in stats.values())) / n,
            stream_records=(dispatch.records if dispatch else 0) / n,
            sqs_requests=(sum(sqs_requests.values()) + 2 * subscribers) / n)
        return Sample(name, n, unit, calls, index_wru / n,
                      Counter({op: c / n for (_, op), c in other.items()}))


def ok(r: Any, expect: int = 200) -> dict:
    if r.status_code != expect:
        raise SystemExit(f"{r.request.method} {r.request.url.path}: HTTP {r.status_code}, "
                         f"expected {expect}: {r.text[:300]}")
    return r.json()


def run_mix(meter: Meter, repeat: int, tag: str) -> list[Sample]:
    http = meter.http
    people = [ok(http.post("/v1/customers", json={
        "email": f"{tag}{i}@example.com", "phone": f"+1415555{1000 + i:04d}",
        "name": {"given": f"Grace{i}", "family": "Hopper"}}), 201)["id"] for i in range(repeat)]
    for cid in people:  # a timeline to read
        for j in range(5):
            ok(http.post(f"/v1/customers/{cid}/events", json={"type": "call.logged", "summary": f"#{j}"}), 201)
    counter = iter(range(10**6))

    def each(fn: Callable[[int, str], Any]) -> Callable[[], None]:
        return lambda: [fn(i, cid) for i, cid in enumerate(people)]

    ops: dict[str, Callable[[], None]] = {
        "get customer": each(lambda i, c: ok(http.get(f"/v1/customers/{c}"))),
        "360 view": each(lambda i, c: ok(http.get(f"/v1/customers/{c}/360"))),
        "list page (25)": each(lambda i, c: ok(http.get("/v1/customers", params={"limit": 25}))),
        "search": each(lambda i, c: ok(http.get("/v1/customers/search", params={"q": f"grace{i}"}))),
        "lookup by email": each(lambda i, c: ok(http.get("/v1/customers/lookup",
                                                         params={"email": f"{tag}{i}@example.com"}))),
        "PATCH (name)": each(lambda i, c: ok(http.patch(f"/v1/customers/{c}",
                                                        json={"name": {"given": f"G{next(counter)}"}}))),
        "timeline add": each(lambda i, c: ok(http.post(f"/v1/customers/{c}/events",
                                                       json={"type": "note.added", "summary": "x"}), 201)),
        "create customer": each(lambda i, c: ok(http.post("/v1/customers", json={
            "email": f"{tag}.new{next(counter)}@example.com", "name": {"given": "Ada", "family": "Byron"}}), 201)),
    }
    return [meter.measure(name, repeat, 1, ops[name]) for name, _ in MIX]


def run_orders(meter: Meter, n: int, tag: str) -> tuple[Sample, list[str]]:
    http = meter.http
    buyers = [ok(http.post("/v1/customers", json={"email": f"{tag}.buyer{i}@example.com",
                                                  "name": {"given": "Bench"}}), 201)["id"] for i in range(n)]
    placed = datetime.now(UTC) - timedelta(hours=1)
    ids: list[str] = []

    def lifecycle() -> None:
        for i, cid in enumerate(buyers):
            ids.append(ok(http.post("/v1/orders", json=order_body({"id": cid}, f"{tag}-{i}", placed)), 201)["id"])
        for verb in ("pay", "fulfill"):
            for oid in ids:
                ok(http.post(f"/v1/orders/{oid}/{verb}", json={}))

    return meter.measure("order (placed, paid, fulfilled)", n, 3, lifecycle), buyers


CSV_MAPPING = {"Id": "external_id", "E-mail": "email", "Name": "name.given"}
S3_PUT_CLASS = ("PutObject", "CopyObject", "PostObject", "ListObjects", "ListObjectsV2")  # billed as PUT


def run_sync(meter: Meter, runs: int, rows: int, tag: str) -> tuple[Sample, Sample]:
    """A CSV connection, its file imported once (not measured); then ``runs`` uploads of the
    same file (each a presigned PUT) and as many runs that find every row unchanged: a
    run's own cost (queue message, Lambda, run and state items, guard reads, S3), as an
    hourly sync that finds nothing new. Returns (uploads, runs)."""
    import httpx

    http = meter.http
    cid = ok(http.post("/v1/connections", json={"connector": "csv", "name": f"{tag} export",
                                                "config": {"mapping": CSV_MAPPING, "source": tag}}), 201)["id"]
    data = ("Id,E-mail,Name\r\n" + "".join(f"{tag}{i},{tag}.csv{i}@example.com,Row{i}\r\n"
                                             for i in range(rows))).encode()

    def upload() -> str:
        up = ok(http.post(f"/v1/connections/{cid}/uploads"), 201)
        put = httpx.put(up["url"], content=data, headers=up["headers"], timeout=30)
        if put.status_code != 200:
            raise SystemExit(f"the presigned PUT answered {put.status_code}: {put.text[:300]}")
        return up["upload_id"]

    def run(upload_id: str) -> dict:
        run_id = ok(http.post(f"/v1/connections/{cid}/sync", json={"mode": "backfill", "upload_id": upload_id}),
                    202)["id"]
        meter.idle()  # one run at a time: a connection runs one sync at once
        return {"id": run_id}

    first = run(upload())
    done = ok(http.get(f"/v1/connections/{cid}/runs/{first['id']}"))
    if done["status"] != "succeeded" or done["streams"]["customers"]["created"] != rows:
        raise SystemExit(f"the first CSV import did not create {rows} customers: {done}")
    ids: list[str] = []
    started: list[dict] = []
    uploads = meter.measure("CSV upload (presigned PUT not included)", runs, 1,
                            lambda: ids.extend(upload() for _ in range(runs)))
    synced = meter.measure(f"connector run ({rows} unchanged row{'s' if rows != 1 else ''})", runs, 1,
                           lambda: started.extend(run(u) for u in ids), without_api=True)
    for r in started:
        got = ok(http.get(f"/v1/connections/{cid}/runs/{r['id']}"))
        if got["status"] != "succeeded" or got["streams"]["customers"]["unchanged"] != rows:
            raise SystemExit(f"a measured run did not find its {rows} rows unchanged: {got}")
    return uploads, synced


def stored_bytes(tenant_id: str, order_customers: set[str]) -> tuple[float, float, int, int]:
    """(customer-side bytes, order-side bytes, customers, orders) of the tenant, each item
    counted with DynamoDB's 100-byte overhead and once more per GSI it is in."""
    from rapport.pollers import plumbing_client

    ddb = plumbing_client("dynamodb")
    prefix = f"T#{tenant_id}#"
    customer_side = order_side = 0.0
    customers = orders = 0
    for page in ddb.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            pk = item["pk"]["S"]
            if not pk.startswith(prefix):
                continue
            kind = item.get("kind", {}).get("S", "")
            size = (cm.item_size(item) + ITEM_OVERHEAD) * (1 + sum(1 for k in GSI_KEYS if k in item))
            owner = pk[len(prefix):].removeprefix("C#")
            if kind == "order":
                orders += 1
            if kind == "customer" and item.get("status", {}).get("S") == "active":
                customers += 1
            if kind in ("order", "order_pointer", "recent_orders", "loyalty", "ledger") \
                    or (kind == "guard" and "#U#order#" in pk) or (kind == "event" and owner in order_customers):
                order_side += size
            elif kind in ("customer", "guard", "index"):  # not the mix's timeline entries
                customer_side += size
    return customer_side, order_side, customers, orders


# --- printing -------------------------------------------------------------------------------------


def money(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.4f}"


def fmt_other(counts: Counter[str]) -> str:
    return " + ".join(f"{c:g} {op}" for op, c in sorted(counts.items())) or "nothing"


def print_measured(console: Any, samples: list[Sample], api_call: cm.PerUnit, order: Sample, synced: Sample,
                   storage: tuple[float, float]) -> None:
    from rich.table import Table

    base = next(s for s in samples if s.name == BASELINE).unit
    weights = dict(MIX)
    table = Table(title="Measured per unit (counted; CPU as a ratio against 'get customer' in this run)")
    for col in ("unit", "weight", "DynamoDB requests", "RRU", "WRU (of which GSIs)", "Lambda inv.", "CPU / baseline",
                "stream records", "SQS requests"):
        table.add_column(col, overflow="fold")

    def row(name: str, weight: str, u: cm.PerUnit, requests: str, index: float) -> None:
        table.add_row(name, weight, requests, f"{u.rru:.2f}", f"{u.wru:.2f} ({index:.2f})", f"{u.lambda_invocations:.2f}",
                      f"{u.lambda_cpu_seconds / base.lambda_cpu_seconds:.2f}x", f"{u.stream_records:.2f}",
                      f"{u.sqs_requests:.2f}")

    for s in samples:
        row(s.name, f"{weights[s.name]:.0%}", s.unit, fmt(Counter({k: v / s.n for k, v in s.requests.items()})),
            s.index_wru)
    row("[b]API call (the mix)[/b]", "100%", api_call, f"{api_call.dynamodb_requests:.2f}",
        sum(s.index_wru * weights[s.name] for s in samples))
    for s in (order, synced):
        row(f"[b]{s.name}[/b]", "-", s.unit, fmt(Counter({k: v / s.n for k, v in s.requests.items()})), s.index_wru)
    console.print(table)
    console.print(f"Stored: {storage[0]:,.0f} bytes per customer, {storage[1]:,.0f} bytes per order "
                  "(items + 100 B each, GSI copies included).")


def print_bills(console: Any, bills: dict[str, cm.Bill], alternatives: dict[str, dict[str, cm.Bill]],
                settings: cm.Settings) -> None:
    from rich.table import Table

    names = list(bills)
    base = bills[names[0]]
    table = Table(title=f"AWS cost per tenant-month (us-east-1 list prices; Lambda {settings.memory_mb} MB, "
                        f"{settings.io_ms_per_request:g} ms per AWS request assumed)")
    table.add_column("line item")
    for plan in names:
        table.add_column(plan, justify="right")
    for i, item in enumerate(base.items):
        cells = []
        for plan in names:
            line = bills[plan].items[i]
            share = line.dollars / bills[plan].total if bills[plan].total else 0
            cells.append(f"{money(line.dollars)} ({share:.0%})")
        table.add_row(item.name, *cells)
    table.add_row("[b]total[/b]", *[f"[b]{money(bills[p].total)}[/b]" for p in names], end_section=True)
    table.add_row("x the free plan's total", *[f"{bills[p].total / base.total:.1f}x" for p in names])
    table.add_row("plan price", *[money(bills[p].price) for p in names])
    table.add_row("AWS cost / price", *[f"{bills[p].total / bills[p].price:.1%}" if bills[p].price else "-"
                                         for p in names])
    table.add_row("biggest item", *[bills[p].biggest.name for p in names])
    table.add_row("second biggest", *[sorted(bills[p].items, key=lambda i: -i.dollars)[1].name for p in names],
                  end_section=True)
    for label, alt in alternatives.items():
        table.add_row(f"total with {label}", *[money(alt[p].total) for p in names])
    console.print(table)
    table = Table(title="Quantities per tenant-month, and the price each is billed at")
    table.add_column("line item")
    for plan in names:
        table.add_column(plan, justify="right")
    table.add_column(f"price ({names[-1]})")
    for i, item in enumerate(base.items):
        table.add_row(f"{item.name} ({item.unit})", *[f"{bills[p].items[i].quantity:,.2f}".rstrip("0").rstrip(".")
                                                     for p in names], bills[names[-1]].items[i].how)
    console.print(table)


# --- main -------------------------------------------------------------------------------------


def memory_mb(stage: str = "prod") -> int:
    """Lambda memory from .chalice/config.json: the stage's, else the app's."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return int(config.get("stages", {}).get(stage, {}).get("lambda_memory_size") or config["lambda_memory_size"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="requests per operation of the mix (default 10)")
    parser.add_argument("--orders", type=int, default=10, help="orders (default 10)")
    parser.add_argument("--runs", type=int, default=5, help="connector runs (default 5)")
    parser.add_argument("--rows", type=int, default=1,
                        help="rows of the CSV file each run reads, all unchanged (default 1: a run that finds nothing new)")
    parser.add_argument("--stage", default="prod", help="the .chalice stage whose memory is used (default prod)")
    parser.add_argument("--io-ms", type=float, default=5.0, help="assumed ms per DynamoDB request (default 5)")
    from crm.billing import ratelimit

    parser.add_argument("--rate-limit", type=float, default=1 / ratelimit.FLUSH_EVERY,
                        help="DynamoDB writes per API call for rate limits + usage counters (default: the "
                             "limiter's bound, 1 UpdateItem per FLUSH_EVERY calls; bench/ratelimit.py measures "
                             "0.036 on average). The measured mix leaves the limiter's flushes out, so that they "
                             "are counted once, here")
    args = parser.parse_args()

    from rich.console import Console

    console = Console(width=200)
    logging.getLogger("rapport.dev").disabled = True  # the dev server's line per request
    counter, server_counter, sqs, aws = UnitCounter(), ServerCounter(), SqsCounter(), AwsCounter()
    # the limiter's flushes are the --rate-limit line: none inside the measured mix (80 calls
    # would hold 3 of them, landing on whichever operations happen to be the 25th)
    ratelimit.MAX_AGE = float("inf")
    ratelimit._limiter = ratelimit.Limiter(flush_every=10**9)
    counter.install()  # before any botocore session exists
    sqs.install()
    aws.install()
    moto, endpoint, cross_check = start_emulator(server_counter, TABLE, key_cache_seconds=3600)
    from rapport.devstack import DevStack
    from rapport.pollers import QueuePoller

    stack = DevStack(free_port(), endpoint_url=endpoint, table=TABLE, seed=False, schedule_seconds=3600)
    running = stack.start()
    try:
        for poller in stack.pipeline.pollers:
            if isinstance(poller, QueuePoller):
                poller.wait_seconds = 0
        handlers = LabelledHandlers(stack.pipeline)
        api = ApiClock(stack._chalice_app)
        import httpx

        from crm import apikeys, tenants
        from crm.context import TenantContext
        from crm.storage import BillingItem

        tenant = tenants.create("Bench cost")
        # On the largest plan, so that plan limits and rate limits (once enforced) never
        # refuse a request of the bench: what a request costs does not depend on the plan.
        BillingItem(f"T#{tenant.id}#", "BILLING", plan="scale", status="active").save()
        key = apikeys.create(TenantContext(tenant.id), "bench", ["admin"]).secret
        with httpx.Client(base_url=running.api_url.removesuffix("/v1"), timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as http:
            meter = Meter(http, stack, counter, server_counter if cross_check else None, sqs, aws, handlers, api)
            ok(http.put("/v1/loyalty/program", json=PROGRAM), 201)
            # warm up every route measured below, so that no sample pays for first imports
            run_mix(meter, 2, "warm")
            run_orders(meter, 2, "warm")
            run_sync(meter, 1, 5, "warm")
            samples = run_mix(meter, args.repeat, "mix")
            order, buyers = run_orders(meter, args.orders, "cost")
            uploads, synced = run_sync(meter, args.runs, args.rows, "sync")
            meter.idle()
        customer_bytes, order_bytes, customers, orders = stored_bytes(tenant.id, set(buyers))
    finally:
        stack.stop()
        moto.stop()

    api_call = cm.PerUnit()
    for s in samples:
        api_call = api_call + s.unit.scaled(dict(MIX)[s.name])
    s3 = uploads.other + synced.other
    measured = cm.Measured(api_call=api_call, order=order.unit, bytes_per_customer=customer_bytes / customers,
                           bytes_per_order=order_bytes / orders, sync_run=synced.unit,
                           s3_puts_per_upload=1 + sum(c for op, c in s3.items()
                                                      if op.startswith("s3 ") and op[3:] in S3_PUT_CLASS),
                           s3_gets_per_upload=sum(c for op, c in s3.items()
                                                  if op.startswith("s3 ") and op[3:] not in S3_PUT_CLASS))
    settings = cm.Settings(memory_mb=memory_mb(args.stage), io_ms_per_request=args.io_ms,
                           rate_limit_requests_per_call=args.rate_limit)
    from crm.billing import plans

    catalogue = {p.name: p.model_dump() for p in plans.catalogue().plans}
    missing = set(catalogue) - set(WORKLOADS)
    if missing:
        raise SystemExit(f"no reference workload for plan(s) {sorted(missing)}: add them to WORKLOADS")

    def bills_for(s: cm.Settings) -> dict[str, cm.Bill]:
        return {name: cm.bill(w, measured, settings=s, price=cm.plan_price(catalogue[name], w))
                for name, w in WORKLOADS.items()}

    console.print(f"[b]Measured[/b]: {args.repeat} requests per operation, {args.orders} orders; "
                  "cross-check against the emulator: " + ("every request seen" if cross_check else "unavailable"))
    print_measured(console, samples, api_call, order, synced, (measured.bytes_per_customer, measured.bytes_per_order))
    console.print(f"S3 and KMS requests per upload: the client's presigned PUT + {fmt_other(uploads.other)} "
                  f"(the upload) + {fmt_other(synced.other)} (its run); KMS per scheduled run: "
                  f"{measured.kms_per_sync_run:g} Decrypt (connectors/connections.py config_of; a CSV "
                  "connection has no secret to decrypt).")
    console.print("Reference workloads (a tenant-month): " + "; ".join(
        f"{w.plan}: {w.customers:,} customers, {w.orders:,} orders, {w.emails:,} emails, {w.api_calls:,} API calls, "
        f"{w.sync_runs:,} sync runs ({w.note}), {w.uploads} uploads" for w in WORKLOADS.values()))
    print_bills(console, bills_for(settings), {
        "HTTP API": bills_for(cm.with_gateway(settings, "http")),
        "Lambda function URLs": bills_for(cm.with_gateway(settings, "function_url"))}, settings)


if __name__ == "__main__":
    main()
