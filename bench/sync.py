"""Connector sync throughput: records per second through a connector's backfill on one
core (fetch, parse, map, resolve identities, write), as a ratio against a baseline that
only parses the same vendor JSON; and DynamoDB requests per 100 records synced.

``--connector shopify|woocommerce|erpnext|odoo|easypost|aftership|all`` (default shopify). Setup: the local
emulator (rapport/emulator.py, in this process) and the connector's fake vendor
(tests/fakes/*.py: vendor-shaped payloads) seeded with about N records of each kind (each
connector's heading says what). Then, per connector, in the same run:

1. baseline: ``json.loads`` of every vendor reply a backfill reads (recorded once by a
   read-only pass through the connector's streams, so no HTTP), i.e. only parsing;
2. map: parsing + the connector's paging and mapping into Rapport records, its streams
   read again over the recorded replies (no network, no writes);
3. sync: a backfill run through ``connectors.runner`` (HTTP to the fake vendor, mapping,
   identity resolution, batch writes, checkpoints), then an incremental run that finds
   nothing new, then a re-run backfill (every record unchanged).

Time is CPU time of the thread that runs the sync (``time.thread_time``): the emulator
answers from its own threads, so its work (moto's, not DynamoDB's) is left out, while
everything Rapport does per record (botocore serialization included) is in. The share
spent inside the client libraries is printed beside it: botocore's ``_make_api_call``
(building, signing, sending and parsing each DynamoDB request) and PynamoDB's attribute
containers (items to DynamoDB's attribute maps and back): what the requests and items a
sync writes cost before any of Rapport's own code runs. Each figure
is printed as a ratio to the baseline, never as an absolute claim. DynamoDB requests
are counted with botocore hooks (bench/requests_per_operation.py's ClientCounter).
Records the sink does not write (yet) are read and mapped, and said so under the tables.

    python3 -m uv run python bench/sync.py              # Shopify, N = 2000, about a minute
    python3 -m uv run python bench/sync.py --connector all --records 500
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.requests_per_operation import ClientCounter, ServerCounter, fmt, start_emulator  # noqa: E402

TABLE = "rapport-bench-sync"


@dataclass
class Vendor:
    """A connector's fake vendor for the bench: ``start(n)`` returns the running fake
    (a context manager, already entered) seeded with about ``n`` records of each kind,
    and the connection config that reaches it."""

    connector: str
    what: str  # what ``--records n`` seeds, for the heading
    start: Callable[[int], tuple[Any, dict[str, Any]]]
    # what the tenant holds before the runs (a carrier's trackers link to orders), not timed
    prepare: Callable[[Any, Any, int], None] | None = None


def _shopify(n: int) -> tuple[Any, dict[str, Any]]:
    from tests.fakes.shopify import FakeShopify

    shop = FakeShopify().__enter__()
    shop.seed(customers=n, orders=n)
    return shop, {"shop_url": shop.url, "access_token": shop.token}


def _woocommerce(n: int) -> tuple[Any, dict[str, Any]]:
    from tests.fakes.woocommerce import FakeWooCommerce

    shop = FakeWooCommerce().__enter__()
    shop.seed(customers=n, orders=n)
    return shop, {"store_url": shop.url, "consumer_key": shop.key, "consumer_secret": shop.secret}


def _erpnext(n: int) -> tuple[Any, dict[str, Any]]:
    """n customers (every other one a company, with a contact and an address), a
    submitted sales order and a sales invoice per customer."""
    from tests.fakes import erpnext as fake

    site = fake.FakeFrappe().__enter__()
    for i in range(n):
        name = f"Customer {i:05d}"
        company = i % 2 == 0
        site.put(fake.customer_doc(name, company=company, email_id=f"buyer.{i}@example.com"))
        if company:
            site.put(fake.contact_doc(f"Contact {i:05d}-{name}", "Max", f"Muster{i}", customer=name,
                                      email=f"contact.{i}@example.com"))
            site.put(fake.address_doc(f"{name}-Billing", customer=name))
        contact = f"Contact {i:05d}-{name}" if company else None  # a company's order names its buyer
        site.put(fake.sales_order_doc(f"SAL-ORD-2024-{i:05d}", name, contact=contact))
        site.put(fake.sales_invoice_doc(f"ACC-SINV-2024-{i:05d}", name, order=f"SAL-ORD-2024-{i:05d}"))
    return site, {"base_url": site.url, "api_key": site.key, "api_secret": site.secret}


def _odoo(n: int) -> tuple[Any, dict[str, Any]]:
    """n/10 companies with 9 contacts each, and per company 10 sale orders and 10 invoices."""
    from tests.fakes import odoo as fake

    server = fake.FakeOdoo("json2").__enter__()
    for c in range(max(1, n // 10)):
        stamp = fake.odoo_time(fake.epoch(fake.BASE_TIME) + 60 + c)
        company = server.add_company(f"Company {c:05d}", write_date=stamp, email=f"office.{c}@example.com")
        for p in range(9):
            server.add_person(f"Person {c:05d}-{p} Example", parent=company, write_date=stamp,
                              email=f"person.{c}.{p}@example.com")
        server.seed_orders(10, company, write_date=stamp)
        server.seed_invoices(10, company, write_date=stamp)
    return server, {"base_url": server.url, "database": server.database, "api_key": server.key}


def _shop_orders(ctx: Any, n: int) -> list[str]:
    """n orders of a shop, numbered #1001…, each with its buyer, written by the sink as a
    shop's sync writes them; their Rapport ids in order."""
    from connectors import sink
    from connectors.sdk.base import CustomerRecord, OrderLine, OrderRecord

    stamp = "2026-01-01T10:00:00Z"
    ids: list[str] = []
    for start in range(0, n, 250):
        page = [OrderRecord(external_id=str(5000 + i), updated_at=stamp, channel="web", currency="EUR",
                            placed_at=stamp, lines=[OrderLine(sku="s", name="n", quantity=1, unit_price=1000)],
                            total=1000, paid_at=stamp, number=f"#{1001 + i}",
                            customer=CustomerRecord(str(9000 + i), stamp, {"email": f"buyer.{i}@example.com"}))
                for i in range(start, min(n, start + 250))]
        sink.write(ctx, "shop", "orders", page)
    from crm.orders import filters

    for i in range(n):
        ids.append(filters.by_external_id(ctx, "shop", str(5000 + i)).items[0].id)
    return ids


def _easypost(n: int) -> tuple[Any, dict[str, Any]]:
    """n trackers, each registered for a shop order (``prepare``) before the runs."""
    from tests.fakes.easypost import FakeEasyPost

    fake = FakeEasyPost().__enter__()
    fake.seed(n)
    return fake, {"api_key": fake.api_key, "webhook_secret": "bench-secret", "base_url": fake.url + "/v2"}


def _register_trackers(ctx: Any, fake: Any, n: int) -> None:
    from crm.shipments import service

    for order_id, tracker in zip(_shop_orders(ctx, n), list(fake.trackers.values()), strict=False):
        service.register(ctx, order_id, tracker["carrier"], tracker["tracking_code"])


def _aftership(n: int) -> tuple[Any, dict[str, Any]]:
    """n trackings that kept only the shop's order number (#1001…), each linked by it."""
    from tests.fakes.aftership import FakeAfterShip

    fake = FakeAfterShip().__enter__()
    for i in range(n):
        fake.add(f"AS{100000000001 + i}", "dhl", order_number=f"#{1001 + i}")
    return fake, {"api_key": fake.api_key, "webhook_secret": "bench-secret",
                  "base_url": fake.url + "/tracking/2026-07"}


VENDORS = {
    "shopify": Vendor("shopify", "{n} customers + {n} orders (each with its buyer embedded)", _shopify),
    "woocommerce": Vendor("woocommerce", "{n} customers + {n} orders", _woocommerce),
    "erpnext": Vendor("erpnext", "{n} customers (half companies, with a contact and an address), "
                      "{n} sales orders, {n} sales invoices", _erpnext),
    "odoo": Vendor("odoo", "{n} partners (a company per 10), {n} sale orders, {n} invoices", _odoo),
    "easypost": Vendor("easypost", "{n} trackers, each registered for a shop order beforehand (not timed)",
                       _easypost, lambda ctx, fake, n: _register_trackers(ctx, fake, n)),
    "aftership": Vendor("aftership", "{n} trackings that kept only the shop's order number (the orders "
                        "written beforehand, not timed)", _aftership, lambda ctx, fake, n: _shop_orders(ctx, n)),
}


def reader(connector: str, config: dict[str, Any]) -> Callable[..., int]:
    """``read(record=None, replay=None)``: every page of a backfill's streams, read and
    mapped as the runner reads them, with no writes; returns the number of records.
    ``record`` collects the vendor's replies; ``replay`` answers from such a list instead
    of the network (parse + map only). The HTTP client is made once, outside any timing."""
    from connectors import connections
    from connectors.sdk.base import ReadContext

    cls = connections.connector(connector)
    cfg = cls.Config.model_validate(config)
    client = cls().client(cfg)
    send = client.request

    def key(method: str, url: str, kwargs: dict[str, Any]) -> str:
        return json.dumps([method, url, kwargs], sort_keys=True, default=str)

    def read(record: list[Any] | None = None, replay: list[Any] | None = None) -> int:
        if replay is not None:  # by request, in order: a client may skip what it cached (Odoo's API version)
            replies: dict[str, list[Any]] = {}
            for k, response in replay:
                replies.setdefault(k, []).append(response)
            client.request = lambda method, url, **kwargs: replies[key(method, url, kwargs)].pop(0)
        else:
            def recording(method: str, url: str, **kwargs: Any) -> Any:
                response = send(method, url, **kwargs)
                if record is not None:
                    record.append((key(method, url, kwargs), response))
                return response

            client.request = recording
        rc = ReadContext(config=cfg, client=client, mode="backfill")
        records = 0
        for stream_cls in cls.streams:
            for page in stream_cls().read(rc, {"cursor": None}):
                records += len(page.records)
        return records

    return read


def warm_up(vendor: Vendor) -> None:
    """A small sync under another tenant, before anything is measured: it imports every
    module a sync loads lazily and fills the key and plan caches' code paths."""
    from connectors import connections, runner
    from connectors.schemas import ConnectionCreate
    from crm import tenants
    from crm.context import TenantContext
    from crm.storage import BillingItem

    small, config = vendor.start(10)
    try:
        ctx = TenantContext(tenants.create(f"warm-up {vendor.connector}").id)
        BillingItem(ctx.prefix, "BILLING", plan="scale", status="active", updated_at="2026-01-01T00:00:00Z").save()
        conn = connections.create(ctx, ConnectionCreate(connector=vendor.connector, name="warm-up", config=config))
        runner.run_to_end(ctx, conn.id, connections.start_run(ctx, conn.id, "backfill", "cli").id)
    finally:
        small.__exit__(None, None, None)


class CPUMeter:
    """Thread CPU the sync's thread spends inside some functions (the outermost call only,
    so a nested container is not counted twice). ``take()`` returns the seconds since the
    last take."""

    def __init__(self, *targets: tuple[Any, str]) -> None:
        self.thread = threading.get_ident()
        self.spent = 0.0
        self.depth = 0
        for owner, name in targets:
            self._wrap(owner, name)

    def _wrap(self, owner: Any, name: str) -> None:
        original = getattr(owner, name)
        meter = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != meter.thread or meter.depth:
                return original(*args, **kwargs)
            meter.depth += 1
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                meter.spent += time.thread_time() - started
                meter.depth -= 1

        setattr(owner, name, timed)

    def take(self) -> float:
        spent, self.spent = self.spent, 0.0
        return spent


def client_meters() -> dict[str, CPUMeter]:
    """botocore: every DynamoDB request's serialization, endpoint rules, signing, HTTP and
    response parsing (``_make_api_call``); PynamoDB: turning model instances into
    DynamoDB's attribute maps and back (its attribute containers)."""
    from botocore.client import BaseClient
    from pynamodb.attributes import AttributeContainer

    return {"botocore": CPUMeter((BaseClient, "_make_api_call")),
            "pynamodb": CPUMeter((AttributeContainer, "_container_serialize"),
                                 (AttributeContainer, "_container_deserialize"))}


def best_of(times: int, work) -> float:
    """The least thread CPU time of ``times`` runs of ``work()``."""
    best = float("inf")
    for _ in range(times):
        started = time.thread_time()
        work()
        best = min(best, time.thread_time() - started)
    return best


def per_record(seconds: float, records: int) -> float:
    return seconds / records if records else float("nan")


@dataclass
class Measured:
    vendor: Vendor
    n: int
    records: int  # what a backfill reads
    replies: int  # vendor replies parsed by the baseline
    baseline: float  # CPU seconds: json.loads of every reply
    mapped: float  # CPU seconds: parse + map (replayed replies, no writes)
    # label, run, read, cpu, calls, cpu inside the client libraries (botocore, pynamodb)
    rows: list[tuple[str, Any, int, float, Any, dict[str, float]]] = field(default_factory=list)


def measure(vendor: Vendor, n: int, counter: ClientCounter, server_counter: ServerCounter,
            meters: dict[str, CPUMeter]) -> Measured:
    from connectors import connections, runner
    from connectors.schemas import ConnectionCreate
    from crm import tenants
    from crm.context import TenantContext
    from crm.storage import BillingItem

    fake, config = vendor.start(n)
    try:
        read = reader(vendor.connector, config)
        replies: list[Any] = []
        records = read(record=replies)
        bodies = [r.content for _, r in replies if r.content]
        # the least CPU of a few repetitions: one pass over a few MB is short enough for
        # a scheduler hiccup to move it, and every figure is a ratio to it
        baseline = best_of(5, lambda: [json.loads(b) for b in bodies])
        mapped = best_of(3, lambda: read(replay=replies))
        out = Measured(vendor, n, records, len(bodies), baseline, mapped)

        warm_up(vendor)  # imports are a cold start's cost (bench/cold_start.py), not a sync's
        ctx = TenantContext(tenants.create(f"bench {vendor.connector}").id)
        # the scale plan: the free plan's 500 customers would reject the rest of a larger run
        BillingItem(ctx.prefix, "BILLING", plan="scale", status="active", updated_at="2026-01-01T00:00:00Z").save()
        conn = connections.create(ctx, ConnectionCreate(connector=vendor.connector, name="bench", config=config))
        if vendor.prepare is not None:
            vendor.prepare(ctx, fake, n)
        for label, mode in (("backfill (all new)", "backfill"), ("incremental (nothing new)", "incremental"),
                            ("backfill again (all unchanged)", "backfill")):
            run_id = connections.start_run(ctx, conn.id, mode, "cli").id
            counter.take()
            server_counter.take()
            for meter in meters.values():
                meter.take()
            cpu = time.thread_time()
            runner.run_to_end(ctx, conn.id, run_id)
            cpu = time.thread_time() - cpu
            inside = {name: meter.take() for name, meter in meters.items()}
            calls, _ = counter.take()
            arrived = server_counter.take()
            if sum(calls.values()) != sum(arrived.values()):
                raise SystemExit(f"counted {sum(calls.values())} requests but the emulator received "
                                 f"{sum(arrived.values())}")
            run = connections.get_run(ctx, conn.id, run_id)
            if run.status != "succeeded":
                raise SystemExit(f"{vendor.connector} {label}: the run {run.status}: {run.error_detail}")
            got = sum(s.read for s in run.streams.values())
            out.rows.append((label, run, got, cpu, calls, inside))
    finally:
        fake.__exit__(None, None, None)
    return out


def report(console: Any, m: Measured) -> None:
    from rich.table import Table

    console.print(f"[bold]{m.vendor.connector} backfill of " + m.vendor.what.format(n=m.n) + f"[/] "
                  f"({m.records} records in {m.replies} vendor replies)\n")
    t = Table(title=f"{m.vendor.connector}: CPU per record of the sync thread, as a ratio to parsing the vendor JSON")
    for col in ("work", "records", "× parse-only"):
        t.add_column(col, justify="right" if col != "work" else "left")
    base = per_record(m.baseline, m.records)
    t.add_row("parse the vendor JSON (baseline)", str(m.records), "1.0×")
    t.add_row("parse + map to Rapport records", str(m.records), f"{per_record(m.mapped, m.records) / base:.1f}×")
    for label, _run, read, cpu, _, inside in m.rows:
        t.add_row(f"sync: {label}", str(read), f"{per_record(cpu, read) / base:.1f}×" if read else
                  f"(no records; {cpu * 1000:.0f} ms CPU in all)")
        if read:
            t.add_row("  of which in botocore (building, signing, sending, parsing requests)", str(read),
                      f"{per_record(inside['botocore'], read) / base:.1f}×")
            t.add_row("  of which in PynamoDB (items to attribute maps and back)", str(read),
                      f"{per_record(inside['pynamodb'], read) / base:.1f}×")
    console.print(t)
    console.print(f"(the baseline: {m.baseline * 1000:.0f} ms of CPU to parse {m.replies} replies)")
    console.print(f"So one core syncs about 1/{per_record(m.rows[0][3], m.rows[0][2]) / base:.0f} of the records "
                  "per second it could only parse; the rest of a sync's time is the vendor and DynamoDB.\n")

    r = Table(title=f"{m.vendor.connector}: DynamoDB requests per 100 records synced")
    for col in ("run", "records", "requests", "per 100", "by operation"):
        r.add_column(col, justify="right" if col in ("records", "requests", "per 100") else "left")
    for label, _run, read, _cpu, calls, _ in m.rows:
        total = sum(calls.values())
        r.add_row(label, str(read), str(total), f"{100 * total / read:.1f}" if read else "-", fmt(calls))
    console.print(r)
    for label, run, *_ in m.rows:
        if any(s.rejected or s.conflicts for s in run.streams.values()):
            raise SystemExit(f"{m.vendor.connector} {label}: records were rejected, so the figures would not be "
                             f"a sync's: {run.rejected[:3] if hasattr(run, 'rejected') else ''}")
        console.print(f"{label}: " + ", ".join(
            f"{name} created {s.created} updated {s.updated} unchanged {s.unchanged} rejected {s.rejected}"
            for name, s in run.streams.items()))
    label, run, read, *_ = m.rows[0]
    idle = {name: s.read - s.created - s.updated - s.unchanged - s.rejected - s.conflicts
            for name, s in run.streams.items()}
    if any(idle.values()):
        console.print(f"[yellow]Not written by this branch's sink (read and mapped only, so the sync figures are "
                      f"not yet a full sync's): {', '.join(f'{k} {v}' for k, v in idle.items() if v)}[/]")
    console.print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000, help="records of each kind (see each connector's line)")
    parser.add_argument("--connector", choices=[*VENDORS, "all"], default="shopify")
    args = parser.parse_args()

    counter, server_counter = ClientCounter(), ServerCounter()
    counter.install()
    meters = client_meters()
    moto, _, _ = start_emulator(server_counter, TABLE, key_cache_seconds=60)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("RAPPORT_LOCAL_DEV", "1")  # the fakes are on loopback, which deployments refuse (SSRF guard)
    import boto3

    from infra.bootstrap import create_connector_resources, create_table

    create_table(boto3.client("dynamodb"), TABLE)
    os.environ.update(create_connector_resources(boto3.session.Session(), TABLE))

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 132))  # the summary table has 8 columns
    chosen = list(VENDORS) if args.connector == "all" else [args.connector]
    done = []
    try:
        for name in chosen:
            m = measure(VENDORS[name], args.records, counter, server_counter, meters)
            report(console, m)
            done.append(m)
    finally:
        moto.stop()
    if len(done) > 1:
        t = Table(title="Every connector: CPU per record as a ratio to parsing its vendor's JSON; "
                        "DynamoDB requests per 100 records")
        for col in ("connector", "records", "parse + map", "backfill", "of which botocore + PynamoDB",
                    "backfill again", "requests/100 (backfill)", "requests/100 (again)"):
            t.add_column(col, justify="left" if col == "connector" else "right")
        for m in done:
            base = per_record(m.baseline, m.records)
            new, again = m.rows[0], m.rows[2]
            t.add_row(m.vendor.connector, str(m.records), f"{per_record(m.mapped, m.records) / base:.1f}×",
                      f"{per_record(new[3], new[2]) / base:.1f}×",
                      f"{per_record(sum(new[5].values()), new[2]) / base:.1f}×",
                      f"{per_record(again[3], again[2]) / base:.1f}×",
                      f"{100 * sum(new[4].values()) / new[2]:.1f}", f"{100 * sum(again[4].values()) / again[2]:.1f}")
        console.print(t)


if __name__ == "__main__":
    main()
