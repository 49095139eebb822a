"""Shopify end to end: a connection syncing from the fake Shopify (tests/fakes/shopify.py)
into Rapport through the runner, the sink and the crm services, on the emulator.

The backfill test is the issue's: 10,000 customers and 10,000 orders, throttled along the
way (short 429s slept through, a long one that pauses the run), many records sharing
boundary timestamps across page boundaries, and the process killed (SIGKILL) in the
middle; the resumed run must leave exactly one customer per Shopify customer and one
order per Shopify order. ``SHOPIFY_BACKFILL`` sets the size (default 10,000).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes.shopify import FakeShopify

ROOT = Path(__file__).resolve().parents[2]
N = int(os.environ.get("SHOPIFY_BACKFILL", "10000"))
SECRET = "whsec-shopify-sync"


@pytest.fixture()
def shop():
    with FakeShopify() as fake:
        yield fake


def _connect(tenant, fake, **extra) -> dict:
    r = tenant.http.post("/v1/connections", json={
        "connector": "shopify", "name": "Main shop",
        "config": {"shop_url": fake.url, "access_token": fake.token, "webhook_secret": SECRET}, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def _start(tenant, cid: str, mode: str) -> str:
    from connectors import connections

    return connections.start_run(tenant.ctx, cid, mode, "cli").id


def _run(tenant, cid: str, run_id: str) -> dict:
    """Invoke the runner until the run ends, as the queue consumer would (re-queued while paused)."""
    from connectors import connections, runner

    outcome = runner.run_to_end(tenant.ctx, cid, run_id, sleep=lambda s: None,
                                client_options={"sleep": lambda s: None})
    run = connections.get_run(tenant.ctx, cid, run_id).model_dump()
    assert outcome.status == run["status"], (outcome, run)
    return run


def _kinds(raw_table, tenant) -> dict[str, list[dict]]:
    """The tenant's customers and orders as stored, from their list indexes (gsi1), read
    raw with boto3 (a Scan of the whole shared table would cost minutes here)."""
    from boto3.dynamodb.conditions import Key

    out: dict[str, list[dict]] = {}
    for listing in ("CUSTOMERS", "ORDERS"):
        kwargs = {"IndexName": "gsi1", "KeyConditionExpression": Key("gsi1pk").eq(f"T#{tenant.id}#{listing}")}
        while True:
            page = raw_table.query(**kwargs)
            for item in page["Items"]:
                out.setdefault(item.get("kind"), []).append(item)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return out


def _boundaries(i: int) -> str:
    """Runs of 300 records share one updated_at second, so every 250-record page boundary
    falls inside a run of equal timestamps."""
    return f"2024-02-{1 + i // 9000:02d}T{(i // 300) % 24:02d}:{(i // 300) // 24 % 60:02d}:00Z"


@pytest.mark.bulk
def test_backfill_with_throttling_and_a_crash_resumes_exactly(tenant, shop, raw_table, aws_endpoint):
    shop.seed(customers=N, orders=N, updated_at=_boundaries)
    conn = _connect(tenant, shop)
    run_id = _start(tenant, conn["id"], "backfill")
    shop.throttle_every(9, "0.01")           # Shopify's leaky bucket: short 429s, slept through

    # 1. a worker process runs the sync and is killed without warning half-way
    env = {**os.environ, "AWS_ENDPOINT_URL": aws_endpoint, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, "-c", (
        "from connectors import runner; from crm.context import TenantContext; "
        f"runner.run_to_end(TenantContext({tenant.id!r}), {conn['id']!r}, {run_id!r})")],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    from connectors import connections

    deadline = time.monotonic() + 600
    while True:
        assert worker.poll() is None, f"the worker ended early: {worker.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "the worker made no progress"
        counts = connections.get_run(tenant.ctx, conn["id"], run_id).streams
        if "orders" in counts and counts["orders"].read >= N // 3:
            break
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    crashed = connections.get_run(tenant.ctx, conn["id"], run_id)
    assert crashed.status == "running" and crashed.streams["customers"].done
    assert not crashed.streams["orders"].done

    # 2. the redelivered message resumes it; a long throttle on the way pauses it once
    shop.throttle_next(1, "120")
    run = _run(tenant, conn["id"], run_id)
    assert run["status"] == "succeeded", run
    assert run["invocations"] >= 3  # the crashed one, the paused one, the one that finished
    assert shop.throttled > N // 250 // 9

    # 3. exactly one Rapport customer per Shopify customer, one order per Shopify order
    kinds = _kinds(raw_table, tenant)
    customers = kinds["customer"]
    xids = [json.loads(c["data"])["external_ids"]["shopify"] for c in customers]
    assert len(customers) == N and len(set(xids)) == N
    assert set(xids) == {str(i) for i in shop.ids("customers")}
    orders = kinds["order"]
    oxids = [json.loads(o["data"])["external_id"] for o in orders]
    assert len(orders) == N and set(oxids) == {str(i) for i in shop.ids("orders")}
    assert run["streams"]["customers"]["rejected"] == 0 and run["streams"]["orders"]["rejected"] == 0
    # the records sharing each boundary second are all there (checked above by id), and the
    # counts add up: what the crashed page wrote was written again as unchanged, not twice
    c = run["streams"]["customers"]
    assert c["created"] == N and c["read"] == N  # done before the crash: not read again
    o = run["streams"]["orders"]
    # resumed from the last checkpoint: at most the page in flight was read twice
    assert o["created"] == N and N <= o["read"] <= N + 250 and o["unchanged"] == o["read"] - N

    # 4. an incremental run after vendor-side changes touches exactly those records
    changed_customers = shop.ids("customers")[5:8]
    for cid in changed_customers:
        shop.update_customer(cid, note="vip", tags="vip, wholesale")
    changed_order = shop.ids("orders")[42]
    shop.update_order(changed_order, financial_status="paid", processed_at="2024-03-02T10:00:00-04:00")
    run2 = _run(tenant, conn["id"], _start(tenant, conn["id"], "incremental"))
    c2, o2 = run2["streams"]["customers"], run2["streams"]["orders"]
    assert (c2["updated"], c2["created"], c2["rejected"]) == (3, 0, 0), c2
    assert (o2["updated"], o2["created"], o2["rejected"]) == (1, 0, 0), o2
    assert c2["read"] - c2["updated"] == c2["unchanged"]
    for cid in changed_customers:
        found = tenant.http.get("/v1/customers/lookup", params={"source": "shopify", "external_id": str(cid)}).json()
        assert set(found["data"][0]["tags"]) == {"vip", "wholesale"}
    listed = tenant.http.get("/v1/orders", params={"limit": 100}).json()["data"]
    assert sum(o["status"] == "paid" for o in listed) <= 1
    paid = [o for o in _kinds(raw_table, tenant)["order"] if o["status"] == "paid"]
    assert [json.loads(p["data"])["external_id"] for p in paid] == [str(changed_order)]


def test_a_second_backfill_changes_nothing(tenant, shop, raw_table):
    """Orders carry a stale snapshot of their buyer (orders_count 0...): it must not undo
    what the customers stream wrote, or every sync would rewrite every customer."""
    shop.seed(customers=300, orders=300)
    conn = _connect(tenant, shop)
    first = _run(tenant, conn["id"], _start(tenant, conn["id"], "backfill"))
    assert first["streams"]["customers"]["created"] == 300 and first["streams"]["orders"]["created"] == 300
    before = {(i["pk"], i["sk"]): i for i in _kinds(raw_table, tenant).get("customer", [])}
    again = _run(tenant, conn["id"], _start(tenant, conn["id"], "backfill"))
    for stream in ("customers", "orders"):
        counts = again["streams"][stream]
        assert (counts["read"], counts["unchanged"], counts["updated"], counts["created"]) == (300, 300, 0, 0), counts
    after = {(i["pk"], i["sk"]): i for i in _kinds(raw_table, tenant).get("customer", [])}
    assert after == before
