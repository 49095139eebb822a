"""Connector sync throughput: records per second through a Shopify backfill on one core
(fetch, parse, map, resolve identities, write), as a ratio against a baseline that only
parses the same vendor JSON; and DynamoDB requests per 100 records synced.

Setup: the local emulator (rapport/emulator.py, in this process) and the fake Shopify
(tests/fakes/shopify.py, which replays shopify_python_api's fixtures) with N customers
and N orders (each order with its buyer embedded). Then, in the same run:

1. baseline: ``json.loads`` of every page body the sync will fetch (fetched once
   beforehand, so no HTTP), i.e. only parsing the vendor JSON;
2. map: parsing + the connector's mapping into Rapport records (no writes);
3. sync: a backfill run through ``connectors.runner`` (HTTP to the fake vendor, mapping,
   identity resolution, batch writes, checkpoints), then an incremental run that finds
   nothing new, then a re-run backfill (every record unchanged).

Time is CPU time of the thread that runs the sync (``time.thread_time``): the emulator
answers from its own threads, so its work (moto's, not DynamoDB's) is left out, while
everything Rapport does per record (botocore serialization included) is in. Each figure
is printed as a ratio to the baseline, never as an absolute claim. DynamoDB requests
are counted with botocore hooks (bench/requests_per_operation.py's ClientCounter).

    python3 -m uv run python bench/sync.py              # N = 2000, about a minute
    python3 -m uv run python bench/sync.py --records 500
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.requests_per_operation import ClientCounter, ServerCounter, fmt, start_emulator  # noqa: E402

TABLE = "rapport-bench-sync"


def fetch_pages(shop) -> list[bytes]:
    """Every page body a backfill fetches, in order (for the parse-only baseline)."""
    import httpx

    from connectors.sdk.paging import link_next

    bodies = []
    with httpx.Client(headers={"X-Shopify-Access-Token": shop.token}) as http:
        for kind in ("customers", "orders"):
            url = f"{shop.url}/admin/api/2024-04/{kind}.json?limit=250" + ("&status=any" if kind == "orders" else "")
            while url:
                r = http.get(url)
                bodies.append(r.content)
                url = link_next(r)
    return bodies


def warm_up(url: str, token: str) -> None:
    """A small sync under another tenant, before anything is measured: it imports every
    module a sync loads lazily and fills the key and plan caches' code paths."""
    from connectors import connections, runner
    from connectors.schemas import ConnectionCreate
    from crm import tenants
    from crm.context import TenantContext
    from crm.storage import BillingItem
    from tests.fakes.shopify import FakeShopify

    with FakeShopify() as small:
        small.seed(customers=5, orders=5)
        ctx = TenantContext(tenants.create("warm-up").id)
        BillingItem(ctx.prefix, "BILLING", plan="scale", status="active", updated_at="2026-01-01T00:00:00Z").save()
        conn = connections.create(ctx, ConnectionCreate(
            connector="shopify", name="warm-up", config={"shop_url": small.url, "access_token": small.token}))
        runner.run_to_end(ctx, conn.id, connections.start_run(ctx, conn.id, "backfill", "cli").id)


def best_of(times: int, work) -> float:
    """The least thread CPU time of ``times`` runs of ``work()``."""
    best = float("inf")
    for _ in range(times):
        started = time.thread_time()
        work()
        best = min(best, time.thread_time() - started)
    return best


def map_all(bodies: list[bytes], mapping) -> None:
    for body in (json.loads(b) for b in bodies):
        for c in body.get("customers", []):
            mapping.customer(c)
        for o in body.get("orders", []):
            mapping.order(o, {})


def per_record(seconds: float, records: int) -> float:
    return seconds / records if records else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000, help="customers and as many orders")
    args = parser.parse_args()
    n = args.records

    counter, server_counter = ClientCounter(), ServerCounter()
    counter.install()
    moto, _, _ = start_emulator(server_counter, TABLE, key_cache_seconds=60)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("RAPPORT_LOCAL_DEV", "1")  # the fake shop is on loopback, which deployments refuse (SSRF guard)
    import boto3

    from infra.bootstrap import create_connector_resources, create_table

    create_table(boto3.client("dynamodb"), TABLE)
    os.environ.update(create_connector_resources(boto3.session.Session(), TABLE))

    from connectors import connections, runner
    from connectors.schemas import ConnectionCreate
    from connectors.shopify import mapping
    from crm import tenants
    from crm.context import TenantContext
    from crm.storage import BillingItem
    from tests.fakes.shopify import FakeShopify

    with FakeShopify() as shop:
        shop.seed(customers=n, orders=n)
        bodies = fetch_pages(shop)
        records = 2 * n

        # the least CPU of a few repetitions: one pass over a few MB is short enough for
        # a scheduler hiccup to move it, and every figure is a ratio to it
        baseline = best_of(5, lambda: [json.loads(b) for b in bodies])
        mapped = best_of(3, lambda: map_all(bodies, mapping))

        warm_up(shop.url, shop.token)  # imports are a cold start's cost (bench/cold_start.py), not a sync's
        ctx = TenantContext(tenants.create("bench").id)
        # the scale plan: the free plan's 500 customers would reject the rest of a larger run
        BillingItem(ctx.prefix, "BILLING", plan="scale", status="active", updated_at="2026-01-01T00:00:00Z").save()
        conn = connections.create(ctx, ConnectionCreate(
            connector="shopify", name="bench", config={"shop_url": shop.url, "access_token": shop.token}))
        counter.take()
        server_counter.take()

        rows = []
        for label, mode in (("backfill (all new)", "backfill"), ("incremental (nothing new)", "incremental"),
                            ("backfill again (all unchanged)", "backfill")):
            run_id = connections.start_run(ctx, conn.id, mode, "cli").id
            counter.take()
            server_counter.take()
            cpu, wall = time.thread_time(), time.perf_counter()
            runner.run_to_end(ctx, conn.id, run_id)
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            calls, _ = counter.take()
            arrived = server_counter.take()
            run = connections.get_run(ctx, conn.id, run_id)
            read = sum(s.read for s in run.streams.values())
            rows.append((label, run, read, cpu, wall, calls, arrived))
    moto.stop()

    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]Shopify backfill of {n} customers + {n} orders[/] "
                  f"({len(bodies)} vendor pages of up to 250 records)\n")
    t = Table(title="CPU per record of the sync thread, as a ratio to parsing the vendor JSON")
    for col in ("work", "records", "× parse-only"):
        t.add_column(col, justify="right" if col != "work" else "left")
    base = per_record(baseline, records)
    t.add_row("parse the vendor JSON (baseline)", str(records), "1.0×")
    t.add_row("parse + map to Rapport records", str(records), f"{per_record(mapped, records) / base:.1f}×")
    for label, run, read, cpu, wall, calls, arrived in rows:
        t.add_row(f"sync: {label}", str(read), f"{per_record(cpu, read) / base:.1f}×" if read else
                  f"(no records; {cpu * 1000:.0f} ms CPU in all)")
    console.print(t)
    console.print(f"(the baseline: {baseline * 1000:.0f} ms of CPU to parse {len(bodies)} pages)")
    console.print(f"So one core syncs about 1/{per_record(rows[0][3], rows[0][2]) / base:.0f} of the records per "
                  "second it could only parse; the rest of a sync's time is the vendor and DynamoDB.\n")

    r = Table(title="DynamoDB requests per 100 records synced")
    for col in ("run", "records", "requests", "per 100", "by operation"):
        r.add_column(col, justify="right" if col in ("records", "requests", "per 100") else "left")
    for label, run, read, cpu, wall, calls, arrived in rows:
        total = sum(calls.values())
        if total != sum(arrived.values()):
            raise SystemExit(f"counted {total} requests but the emulator received {sum(arrived.values())}")
        r.add_row(label, str(read), str(total), f"{100 * total / read:.1f}" if read else "-", fmt(calls))
    console.print(r)
    for label, run, *_ in rows:
        if any(s.rejected or s.conflicts for s in run.streams.values()):
            raise SystemExit(f"{label}: records were rejected, so the figures would not be a sync's")
        console.print(f"{label}: " + ", ".join(
            f"{name} created {s.created} updated {s.updated} unchanged {s.unchanged} rejected {s.rejected}"
            for name, s in run.streams.items()))


if __name__ == "__main__":
    main()
