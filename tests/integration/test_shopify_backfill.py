"""A Shopify backfill from the fake Shopify (tests/fakes/shopify.py), throttled along the
way (short 429s slept through, a long one that pauses the run), many records sharing
boundary timestamps across page boundaries, and the worker process killed (SIGKILL) in
the middle; the resumed run must leave exactly one customer per Shopify customer and
one order per Shopify order. Then an incremental run after vendor-side changes.

Its size: 2,000 customers and 2,000 orders (``SHOPIFY_BACKFILL`` sets another, e.g.
the 10,000 of the original issue). What the test proves does not grow with the size:
each stream crosses 7 page boundaries (pages of 250), 6 of them inside a run of 300
records sharing one ``updated_at`` second, the kill lands mid-stream (after a third of
the orders, with pages still to read), the short 429s hit on every 9th request and the
long one pauses the resumed run. 10,000 added 27 more such boundaries and ~5 minutes
of the suite's 10-minute budget, and proved nothing more; the checkpoint staying small
over 40 pages is tests/unit/test_connector_sdk.py's, the throughput at scale
bench/'s (docs/performance.md).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.fakes.shopify import FakeShopify
from tests.integration.test_shopify_sync import ROOT, _boundaries, _connect, _kinds, _run, _start
from tests.plan_helpers import set_plan

N = int(os.environ.get("SHOPIFY_BACKFILL", "2000"))
PAGE = 250  # connectors/shopify PAGE_SIZE: Shopify's maximum ``limit``


@pytest.fixture()
def shopify():
    with FakeShopify() as fake:
        yield fake


@pytest.mark.bulk
def test_backfill_with_throttling_and_a_crash_resumes_exactly(tenant, shopify, raw_table, aws_endpoint):
    set_plan(tenant, "starter")  # 2,000 customers: more than free allows
    from connectors.shopify import PAGE_SIZE

    assert PAGE_SIZE == PAGE and N >= 6 * PAGE  # several pages are left when the worker is killed
    ties = [b for b in range(PAGE, N, PAGE) if _boundaries(b - 1) == _boundaries(b)]
    assert len(ties) >= 6  # page boundaries inside a run of equal timestamps
    shopify.seed(customers=N, orders=N, updated_at=_boundaries)
    conn = _connect(tenant, shopify)
    run_id = _start(tenant, conn["id"], "backfill")
    shopify.throttle_every(9, "0.01")           # Shopify's leaky bucket: short 429s, slept through

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
    shopify.throttle_next(1, "120")
    run = _run(tenant, conn["id"], run_id)
    assert run["status"] == "succeeded", run
    assert run["invocations"] >= 3  # the crashed one, the paused one, the one that finished
    assert shopify.throttled > N // PAGE // 9

    # 3. exactly one Rapport customer per Shopify customer, one order per Shopify order
    kinds = _kinds(raw_table, tenant)
    customers = kinds["customer"]
    xids = [json.loads(c["data"])["external_ids"]["shopify"] for c in customers]
    assert len(customers) == N and len(set(xids)) == N
    assert set(xids) == {str(i) for i in shopify.ids("customers")}
    orders = kinds["order"]
    oxids = [json.loads(o["data"])["external_id"] for o in orders]
    assert len(orders) == N and set(oxids) == {str(i) for i in shopify.ids("orders")}
    assert run["streams"]["customers"]["rejected"] == 0 and run["streams"]["orders"]["rejected"] == 0
    # the records sharing each boundary second are all there (checked above by id), and the
    # counts add up: what the crashed page wrote was written again as unchanged, not twice
    c = run["streams"]["customers"]
    assert c["created"] == N and c["read"] == N  # done before the crash: not read again
    o = run["streams"]["orders"]
    # resumed from the last checkpoint: at most the page in flight was read twice
    assert o["created"] == N and N <= o["read"] <= N + PAGE and o["unchanged"] == o["read"] - N

    # 4. an incremental run after vendor-side changes touches exactly those records
    changed_customers = shopify.ids("customers")[5:8]
    for cid in changed_customers:
        shopify.update_customer(cid, note="vip", tags="vip, wholesale")
    changed_order = shopify.ids("orders")[42]
    shopify.update_order(changed_order, financial_status="paid", processed_at="2024-03-02T10:00:00-04:00")
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
