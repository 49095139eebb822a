"""The on-premise agent (issue 16 §4): records per second up and down per core, as a ratio
to reading the same rows from the local database, and the API requests per 100 records.

Setup. The local stack in this process (``rapport.devstack.DevStack`` on the local
emulator, no seed, with ``rapport dev``'s pollers: the stream dispatcher fills the change
feed the agent reads; the schedule ticker set to an hour, the queues short-polled), a
tenant on the scale plan (the free plan stops at 500 customers) and an admin key, an
agent made with ``POST /v1/agents``, and a local SQLite database (a temp file) with a
``customers`` table (id, email, first_name, last_name, phone, updated_at) and a ``sales``
table. The agent's TOML config (docs/agent.md) is written to a
temp dir and loaded with ``rapport_agent.config.load``; the agent is built in-process as
``rapport-agent run`` builds it (``Agent(config, Store(...), Client(...))``) and driven
one ``Agent.cycle()`` at a time.

Cycles, in order (each is one ``Agent.cycle()``: scan, upload, change feed, heartbeat):

1. *connect*: the local tables empty; the agent identifies itself and starts the change
   feed at its end (``cursor=now``). Then a *warm-up*: one row up and its echo down (as
   3 below), so that the measured cycles do not carry the one-time imports and compiles
   (the phone and email helpers, SQLAlchemy's statements, the API's modules) that a
   long-running agent and a warm Lambda have already paid.
2. *up, new*: ``--records`` customers inserted locally (not timed), then one cycle that
   scans and uploads them (all created in Rapport).
3. *echo*: the change feed now holds a ``customer.created`` per uploaded customer (the
   agent's own uploads); one cycle reads them, fetches those customers and writes nothing.
   During the *up* cycles the stream dispatcher is held (its handler waits on a gate), so
   the echo comes in this cycle and not partly in the previous one, whatever the timing;
   in production it arrives in the same or the next cycle, depending on the dispatcher's
   lag.
4. *up, changed*: every local row's ``first_name`` edited (not timed), one cycle that
   uploads the changed field; then its echo (``customer.updated``), as 3.
5. *up, orders* (``--orders`` > 0): that many sales rows, each naming a customer; one
   cycle (order changes are not read by the agent: no echo).
6. *down*: ``--records`` customers changed in Rapport (``POST /v1/customers/batch`` by
   the agent's external ids, ``name.family`` set; not timed), the pipeline waited for until
   idle (the feed has them), then one cycle that reads the feed, fetches the customers and
   writes the new value into each local row; checked in the local table.
7. *after down*: the next cycle scans the rows the download touched (``updated_at``
   moved), finds every field equal to its base and uploads nothing.
8. *idle*: ``--idle`` cycles with nothing to do, each 2.5 s after the previous one (more
   than the scan's 2 s overlap, so what they re-read is not an artefact of the bench's
   pace).

Baseline: ``sqlalchemy.select`` of the mapped columns of the customers table, every row
read into dicts, on an engine made like the agent's (``sources.sql.engine_for``):
``--rounds`` reads before every measured cycle once the table holds the rows (and after
the last), the median per row of all of them; sampled through the run because other jobs
share the cores and a single sample moved by 2x between runs.

Figures per cycle: API requests (``Client.requests``, by route; per 100 records) and CPU
time. The headline CPU is the agent's: ``time.thread_time()`` of the thread that runs
the cycle (the agent runs on one thread: its SQLite, mapping, outbox, httpx), so it does
**not** include the API server, which runs in this process on other threads, nor the
emulator or the pollers. The API server's CPU is measured apart, in its request threads
(``handle_one_request`` of Chalice's local handler, each request's ``thread_time``:
routing, Rapport's code, botocore building and parsing the DynamoDB requests; not moto's
answers), and ``time.process_time()`` of the whole process is printed beside them (the
rest is mostly moto). Records per second per core is the inverse of CPU per record; both
are given as ratios to the baseline's, never as absolute claims (the microseconds of the
baseline are printed for scale only). Also printed: each phase's share of the agent's
CPU (``scan``, ``upload``, ``download``, ``heartbeat`` wrapped on the agent; and the SQL
source's one-row ``get`` / ``update`` inside them) and the rows each cycle's scan read.
Every cycle is checked: records sent = records queued, nothing parked, the echo writes
no row, the down writes every row (read back from the local table).

    python3 -m uv run --locked python bench/agent.py                 # 500 customers, about 90 s on 2 cores
    python3 -m uv run --locked python bench/agent.py --records 2000 --orders 500
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# First, even when the editable install already lists the checkout (after site-packages):
# the agent's wheel puts a ``connectors`` package (the SDK only) into site-packages, which
# would otherwise shadow the repository's ``connectors`` that the API server imports.
if sys.path[:1] != [str(ROOT)]:
    sys.path.insert(0, str(ROOT))

from bench.requests_per_operation import ServerCounter, fmt, free_port, start_emulator

TABLE = "rapport-bench-agent"
IDLE_GAP = 2.5  # seconds before each idle cycle: more than the scan's overlap (sources/sql.py OVERLAP)
SCHEDULES_NEVER = 3600.0  # seconds: the schedule ticker does not run during the bench
PHASES = ("scan", "upload", "download", "heartbeat")
ROW_CALLS = ("get", "update")  # the SQL source's one-row calls (sources/sql.py Table), inside the phases
COLUMNS = ("id", "email", "first_name", "last_name", "phone", "updated_at")
SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT, first_name TEXT, last_name TEXT, phone TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE sales (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER, sold_at TEXT, total_cents INTEGER, lines_json TEXT,
    updated_at TEXT NOT NULL
);
"""


# --- measuring -------------------------------------------------------------------------------


class ServerCPU:
    """CPU of the local API server's request threads: each request's ``thread_time``,
    measured around ``handle_one_request`` of Chalice's local handler (waiting for the next
    request on a kept-alive connection takes no CPU)."""

    def __init__(self) -> None:
        from chalice.local import ChaliceRequestHandler

        self.lock = threading.Lock()
        self.cpu = 0.0
        self.requests = 0
        original = ChaliceRequestHandler.handle_one_request
        meter = self

        def timed(handler: Any) -> None:
            started = time.thread_time()
            try:
                original(handler)
            finally:
                spent = time.thread_time() - started
                with meter.lock:
                    meter.cpu += spent
                    meter.requests += 1

        ChaliceRequestHandler.handle_one_request = timed  # type: ignore[method-assign]

    def take(self) -> float:
        with self.lock:
            cpu, self.cpu = self.cpu, 0.0
        return cpu


class Gate:
    """Holds the stream dispatcher while it is closed: its handler waits before it runs, so
    nothing reaches the change feed until ``open()``. Lets a cycle be measured without the
    echo of its own uploads arriving halfway through it."""

    def __init__(self, pipeline: Any) -> None:
        from rapport.pollers import StreamPoller

        self.event = threading.Event()
        self.event.set()
        streams = [p for p in pipeline.pollers if isinstance(p, StreamPoller)]
        if len(streams) != 1:
            raise SystemExit(f"expected one stream poller, found {len(streams)}")
        poller = streams[0]
        original = poller.handler

        def gated(event: Any, context: Any) -> Any:
            self.event.wait()
            return original(event, context)

        poller.handler = gated

    def close(self) -> None:
        self.event.clear()

    def open(self) -> None:
        self.event.set()


class Calls:
    """The agent client's requests by route (its ``request`` wrapped), beside its own
    ``requests`` counter (retries included), which must agree."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        original = client.request

        def counted(method: str, path: str, **kwargs: Any) -> Any:
            self.counts[label(method, path)] += 1
            return original(method, path, **kwargs)

        client.request = counted

    def take(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


ROUTES = {  # the agent protocol's routes by short name (agent/rapport_agent/client.py)
    "GET /v1/agents/me": "me",
    "GET /v1/changes": "changes",
    "POST /v1/agents/{id}/uploads": "uploads",
    "POST /v1/agents/{id}/fetch": "fetch",
    "POST /v1/agents/{id}/heartbeat": "heartbeat",
}


def label(method: str, path: str) -> str:
    parts = path.split("/")
    if len(parts) > 3 and parts[2] == "agents" and parts[3] != "me":
        parts[3] = "{id}"
    route = f"{method} {'/'.join(parts)}"
    return ROUTES.get(route, route)


class Phases:
    """The agent's thread CPU inside ``scan``, ``upload``, ``download`` and ``heartbeat``
    (the agent's methods wrapped on the instance); the rest of a cycle (write-backs,
    identify, prune, the store's bookkeeping) is the remainder."""

    def __init__(self, agent: Any) -> None:
        self.cpu: Counter[str] = Counter()
        for name in PHASES:
            setattr(agent, name, self._wrap(name, getattr(agent, name)))
        self.scanned = 0  # rows the scans read from the local tables
        for local in agent.locals:  # and the one-row reads and writes of the local tables
            for table in (local.customers, local.orders):
                if table is not None:
                    table.scan = self._count(table.scan)
            if local.customers is not None:
                for name in ROW_CALLS:
                    setattr(local.customers, name, self._wrap(f"row {name}", getattr(local.customers, name)))

    def _count(self, scan: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            for page in scan(*args, **kwargs):
                self.scanned += len(page)
                yield page

        return counted

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.cpu[name] += time.thread_time() - started

        return timed

    def take(self) -> tuple[Counter[str], int]:
        cpu, scanned = self.cpu, self.scanned
        self.cpu, self.scanned = Counter(), 0
        return cpu, scanned


@dataclass
class Cycle:
    name: str
    records: int  # what the cycle moved (0: a cycle with nothing to do)
    agent_cpu: float
    server_cpu: float
    process_cpu: float
    calls: Counter[str]
    phases: Counter[str]
    scanned: int  # rows the scan read from the local tables
    report: Any
    note: str = ""

    @property
    def requests(self) -> int:
        return sum(self.calls.values())


@dataclass
class Bench:
    agent: Any
    calls: Calls
    phases: Phases
    server: ServerCPU
    gate: Gate
    pipeline: Any
    baseline: Baseline
    rounds: int
    cycles: list[Cycle] = field(default_factory=list)

    def idle(self) -> None:
        if not self.pipeline.wait_idle(timeout=120):
            raise SystemExit("the pollers did not become idle within 120 s")

    def cycle(self, name: str, records: int, *, hold_feed: bool = False, note: str = "") -> Cycle:
        """One ``Agent.cycle()``, measured. ``hold_feed``: the stream dispatcher is held
        during it (released and waited for afterwards, not measured)."""
        self.idle()
        self.baseline.sample(self.rounds)
        self.calls.take()
        self.phases.take()
        self.server.take()
        before = self.agent.client.requests
        if hold_feed:
            self.gate.close()
        try:
            process, thread = time.process_time(), time.thread_time()
            report = self.agent.cycle()
            thread, process = time.thread_time() - thread, time.process_time() - process
        finally:
            self.gate.open()
        server = self.server.take()
        calls = self.calls.take()
        if sum(calls.values()) != self.agent.client.requests - before:
            raise SystemExit(f"{name}: counted {sum(calls.values())} requests, the client "
                             f"{self.agent.client.requests - before}")
        if report.parked:
            raise SystemExit(f"{name}: {report.parked} records parked: {self.agent.store.parked(3)}")
        phases, scanned = self.phases.take()
        out = Cycle(name, records, thread, server, process, calls, phases, scanned, report, note)
        self.cycles.append(out)
        self.idle()
        return out


# --- the local database ----------------------------------------------------------------------


def stamp() -> str:
    """Now in UTC as text, like an application writing CURRENT_TIMESTAMP with a fraction."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def insert_customers(path: Path, n: int, first: int = 0) -> list[int]:
    """``n`` customer rows (numbered from ``first`` in their values); their keys."""
    now = stamp()
    with sqlite3.connect(path) as db:
        keys = []
        for i in range(first, first + n):
            cur = db.execute(
                "INSERT INTO customers (email, first_name, last_name, phone, updated_at) VALUES (?, ?, ?, ?, ?)",
                (f"Customer.{i}@Bench.Example", f"Given{i}", f"Family{i}", f"+4930{1_000_000 + i}", now))
            keys.append(int(cur.lastrowid or 0))
    return keys


def edit_customers(path: Path, keys: list[int]) -> int:
    with sqlite3.connect(path) as db:
        return db.executemany("UPDATE customers SET first_name = first_name || 'x', updated_at = ? WHERE id = ?",
                              [(stamp(), k) for k in keys]).rowcount


def insert_orders(path: Path, n: int, customers: list[int]) -> None:
    now = stamp()
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO sales (customer_id, sold_at, total_cents, lines_json, updated_at) VALUES (?, ?, ?, ?, ?)",
            [(customers[i % len(customers)], "2026-11-20 10:00:00", 2500 + i,
              json.dumps([{"sku": f"SKU-{i % 17}", "name": "Item", "quantity": 1, "unit_price": 2500 + i}]), now)
             for i in range(n)])


class Baseline:
    """Reading the customers table back: ``sqlalchemy.select`` of the mapped columns, every
    row into a dict, on an engine made like the agent's. CPU seconds of this thread per row,
    sampled before every measured cycle (``rounds`` reads each time), so that the baseline
    sees the same machine as the cycles (other jobs share the cores)."""

    def __init__(self, dsn: str, min_rows: int) -> None:
        import sqlalchemy as sa

        from rapport_agent.sources.sql import engine_for

        self.engine = engine_for(dsn)
        table = sa.Table("customers", sa.MetaData(), autoload_with=self.engine)
        self.query = sa.select(*(table.c[c] for c in COLUMNS))
        self.min_rows = min_rows
        self.per_row: list[float] = []
        self.rows = 0

    def read(self) -> int:
        with self.engine.connect() as conn:
            return len([dict(r._mapping) for r in conn.execute(self.query)])

    def sample(self, rounds: int) -> None:
        """``rounds`` timed reads after an untimed one (caches warm), once the table holds the
        bench's rows (before that a read is mostly its fixed cost)."""
        if self.read() < self.min_rows:
            return
        for _ in range(rounds):
            started = time.thread_time()
            rows = self.read()
            self.per_row.append((time.thread_time() - started) / rows)
            self.rows = rows

    @property
    def median(self) -> float:
        return statistics.median(self.per_row)

    @property
    def spread(self) -> tuple[float, float]:
        """The 10th and 90th percentiles of the samples."""
        deciles = statistics.quantiles(self.per_row, n=10)
        return deciles[0], deciles[-1]


# --- the agent -------------------------------------------------------------------------------


def write_config(folder: Path, api: str, key: str, dsn: str, orders: bool) -> Path:
    """The agent's TOML config (docs/agent.md), as a tenant would write it."""
    text = f"""\
[api]
url = "{api}"
key = "{key}"
retries = 2
backoff_seconds = 0.1

[agent]
state = "state.sqlite"
batch_size = 100

[[sources]]
kind = "sql"
name = "pos"
dsn = "{dsn}"

[sources.customers]
table = "customers"
key = "id"
updated_at = "updated_at"
fields = {{ "email" = "email", "phone" = "phone", "name.given" = "first_name", "name.family" = "last_name" }}
default_owner = "latest"
"""
    if orders:
        text += """
[sources.orders]
table = "sales"
key = "id"
updated_at = "updated_at"
fields = { "customer" = "customer_id", "placed_at" = "sold_at", "total" = "total_cents", "lines" = "lines_json" }
currency = "EUR"
"""
    path = folder / "rapport-agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def make_agent(config_path: Path) -> Any:
    """As ``rapport-agent run`` does (agent/rapport_agent/cli.py)."""
    from rapport_agent.client import Client
    from rapport_agent.config import load
    from rapport_agent.outbox import Store
    from rapport_agent.sync import Agent

    cfg = load(config_path)
    store = Store(cfg.state_path(config_path.resolve().parent))
    client = Client(cfg.api.url, cfg.api_key(), timeout=cfg.api.timeout_seconds, retries=cfg.api.retries,
                    backoff=cfg.api.backoff_seconds)
    return Agent(cfg, store, client)


def change_in_cloud(http: Any, source: str, keys: list[int]) -> None:
    """The customers of these rows get ``name.family`` = ``Cloud<key>`` in Rapport, 100 per
    batch upsert, matched by the agent's external id (the row's key)."""
    for start in range(0, len(keys), 100):
        records = [{"external_ids": {source: str(k)}, "name": {"family": f"Cloud{k}"}}
                   for k in keys[start : start + 100]]
        r = http.post("/v1/customers/batch", json={"records": records})
        r.raise_for_status()
        body = r.json()
        if body["updated"] != len(records):
            raise SystemExit(f"batch upsert: {body['updated']} of {len(records)} updated: {body['results'][:2]}")


def check_down(path: Path, keys: list[int]) -> int:
    """How many of these rows hold the cloud's value."""
    wanted = set(keys)
    with sqlite3.connect(path) as db:
        return sum(1 for (k, family) in db.execute("SELECT id, last_name FROM customers")
                   if k in wanted and family == f"Cloud{k}")


# --- output ----------------------------------------------------------------------------------


def ratio(x: float) -> str:
    if x <= 0:
        return "-"
    if x >= 1:
        return f"{x:.2f}x"
    return f"{x:.4f}x (1/{1 / x:.0f})"


def show(console: Any, cycles: list[Cycle], baseline: Baseline, n: int) -> None:
    from rich.table import Table

    base_per_row = baseline.median
    low, high = baseline.spread
    console.print(f"[b]Baseline[/b]: SQLAlchemy select of the 6 mapped columns of {baseline.rows} customer rows "
                  f"into dicts, {len(baseline.per_row)} reads interleaved with the cycles: median "
                  f"{base_per_row * 1e6:.1f} µs of CPU a row here, 10-90 % {low * 1e6:.1f}-{high * 1e6:.1f} µs "
                  "(for scale only; every figure below is a ratio to the median)")
    console.print()
    table = Table(title=f"Per record moved ({n} customers; CPU per core; a row read = the baseline's CPU per row)",
                  title_justify="left")
    for col in ("cycle", "records", "agent CPU/record in rows read", "agent records/s ÷ rows read/s",
                "API server CPU/record in rows read", "whole process CPU/record in rows read", "API requests",
                "requests per 100 records"):
        table.add_column(col, justify="left" if col in ("cycle", "API requests") else "right")
    for c in cycles:
        if not c.records:
            continue
        per = c.agent_cpu / c.records / base_per_row
        table.add_row(c.name, str(c.records), f"{per:.1f}", ratio(1 / per),
                      f"{c.server_cpu / c.records / base_per_row:.1f}",
                      f"{c.process_cpu / c.records / base_per_row:.1f}",
                      fmt(c.calls), f"{100 * c.requests / c.records:.2f}")
    console.print(table)

    up = [c for c in cycles if c.name in ("up, new", "echo of up, new")]
    if len(up) == 2:
        agent = sum(c.agent_cpu for c in up) / n / base_per_row
        requests = sum(c.requests for c in up)
        console.print(f"up, new with its echo (what the upload costs all told): agent CPU/record "
                      f"{agent:.1f} rows read ({ratio(1 / agent)} records/s), "
                      f"{requests} API requests = {100 * requests / n:.2f} per 100 records")
    console.print("routes: me = GET /v1/agents/me, changes = GET /v1/changes, uploads / fetch / heartbeat = "
                  "POST /v1/agents/{id}/uploads | fetch | heartbeat")
    console.print()

    table = Table(title="Where the agent's CPU goes (share of the cycle's thread CPU; row get / row update: the "
                  "SQL source's one-row calls, inside the phases)", title_justify="left")
    for col in ("cycle", *PHASES, "rest", *(f"row {r}" for r in ROW_CALLS), "rows the scan read"):
        table.add_column(col, justify="left" if col == "cycle" else "right")
    for c in cycles:
        if c.agent_cpu <= 0:
            continue
        shares = [c.phases[p] / c.agent_cpu for p in PHASES]
        rows = [c.phases[f"row {r}"] / c.agent_cpu for r in ROW_CALLS]
        table.add_row(c.name, *(f"{s:.0%}" for s in shares), f"{max(0.0, 1 - sum(shares)):.0%}",
                      *(f"{s:.0%}" for s in rows), str(c.scanned))
    console.print(table)
    console.print()

    table = Table(title="Cycles with nothing (or nothing new) to move", title_justify="left")
    for col in ("cycle", "API requests", "agent CPU in rows read", "rows the scan read", "note"):
        table.add_column(col)
    for c in cycles:
        if c.records:
            continue
        table.add_row(c.name, f"{c.requests}: {fmt(c.calls)}", f"{c.agent_cpu / base_per_row:.0f}", str(c.scanned),
                      c.note)
    console.print(table)


# --- main ------------------------------------------------------------------------------------


def start(server_counter: ServerCounter) -> tuple[Any, Any, Any]:
    moto, endpoint, _ = start_emulator(server_counter, TABLE, key_cache_seconds=3600)

    from rapport.devstack import DevStack
    from rapport.pollers import QueuePoller

    stack = DevStack(free_port(), endpoint_url=endpoint, table=TABLE, seed=False,
                     schedule_seconds=SCHEDULES_NEVER)
    running = stack.start()
    for poller in stack.pipeline.pollers:
        if isinstance(poller, QueuePoller):
            poller.wait_seconds = 0
    if not stack.pipeline.wait_started():
        raise SystemExit("the pollers did not start")
    return moto, stack, running


def scenario(bench: Bench, db: Path, args: argparse.Namespace, http: Any, source: str) -> None:
    n = args.records
    bench.cycle("connect", 0, note="GET /v1/agents/me, the feed's end (cursor=now), heartbeat")
    # A long-running agent has imported and compiled what a record needs (the phone and
    # email helpers, SQLAlchemy's statements) and so has the API: one record up and its
    # echo down first, so that the measured cycles do not carry those one-time costs.
    insert_customers(db, 1, first=n)
    bench.cycle("warm-up: 1 record up", 0, hold_feed=True, note="one-time imports and compiles (agent and API)")
    bench.cycle("warm-up: its echo", 0, note="the same for the download path")

    keys = insert_customers(db, n)
    up = bench.cycle("up, new", n, hold_feed=True)
    if up.report.sent != n:
        raise SystemExit(f"up: {up.report.sent} of {n} records sent")
    echo = bench.cycle("echo of up, new", n, note="the agent's own uploads read back from the feed")
    if echo.report.applied:
        raise SystemExit(f"the echo wrote {echo.report.applied} local rows")

    edited = edit_customers(db, keys)
    up = bench.cycle("up, changed (1 field)", edited, hold_feed=True)
    if up.report.sent != edited:
        raise SystemExit(f"up, changed: {up.report.sent} of {edited} records sent")
    bench.cycle("echo of up, changed", edited)

    if args.orders:
        insert_orders(db, args.orders, keys)
        up = bench.cycle("up, orders", args.orders, hold_feed=True)
        if up.report.sent != args.orders:
            raise SystemExit(f"up, orders: {up.report.sent} of {args.orders} records sent")

    change_in_cloud(http, source, keys)
    down = bench.cycle("down (1 field)", n)
    written = check_down(db, keys)
    if down.report.applied != n or written != n:
        raise SystemExit(f"down: {down.report.applied} rows applied, {written} of {n} hold the cloud's value")
    bench.cycle("after down", 0, note=f"scans the {n} rows the download touched; uploads nothing")
    for i in range(args.idle):
        time.sleep(IDLE_GAP)
        bench.cycle(f"idle {i + 1}", 0, note=f"nothing changed anywhere; {IDLE_GAP:g} s after the previous cycle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=500, help="local customers (default 500)")
    parser.add_argument("--orders", type=int, default=0, help="local orders, uploaded in a cycle of their own")
    parser.add_argument("--rounds", type=int, default=5,
                        help="baseline reads before each cycle (default 5; the median of all is the baseline)")
    parser.add_argument("--idle", type=int, default=3, help="cycles with nothing to do (default 3)")
    args = parser.parse_args()

    import logging

    from rich.console import Console

    logging.getLogger("httpx").setLevel(logging.WARNING)
    console = Console(width=200)
    moto, stack, running = start(ServerCounter())
    try:
        import httpx

        from crm import apikeys, tenants
        from crm.context import TenantContext
        from crm.storage import BillingItem

        server = ServerCPU()
        tenant = tenants.create("Bench agent")
        ctx = TenantContext(tenant.id)
        # the free plan stops at 500 customers: the tenant is on the largest plan (as bench/sync.py)
        BillingItem(ctx.prefix, "BILLING", plan="scale", status="active", updated_at="2026-01-01T00:00:00Z").save()
        key = apikeys.create(ctx, "bench", ["admin"]).secret
        base = running.api_url.removesuffix("/v1")
        with tempfile.TemporaryDirectory(prefix="rapport-bench-agent-") as tmp, \
                httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}) as http:
            folder = Path(tmp)
            r = http.post("/v1/agents", json={"name": "bench till server"})
            r.raise_for_status()
            created = r.json()
            db = folder / "pos.sqlite"
            with sqlite3.connect(db) as conn:
                conn.executescript(SCHEMA)
            agent = make_agent(write_config(folder, base, created["key"], f"sqlite:///{db}", args.orders > 0))
            try:
                baseline = Baseline(f"sqlite:///{db}", args.records)
                bench = Bench(agent, Calls(agent.client), Phases(agent), server, Gate(stack.pipeline),
                              stack.pipeline, baseline, args.rounds)
                scenario(bench, db, args, http, created["source"])
                baseline.sample(args.rounds)
                baseline.engine.dispose()
            finally:
                agent.store.close()
                agent.client.close()
        if baseline.rows != args.records + 1:  # + the warm-up's row
            raise SystemExit(f"the baseline read {baseline.rows} rows, expected {args.records + 1}")
        console.print(f"On-premise agent, {args.records} local customers"
                      + (f", {args.orders} orders" if args.orders else "")
                      + f"; agent {created['id']} against the local stack (API server, emulator and pollers in "
                      "this process)")
        console.print("CPU: the agent = thread_time of the thread running Agent.cycle() (excludes the API "
                      "server); API server = its request threads' thread_time; whole process = "
                      "process_time (agent + server + moto + pollers)")
        console.print()
        show(console, bench.cycles, baseline, args.records)
    finally:
        stack.stop()
        moto.stop()


if __name__ == "__main__":
    main()
