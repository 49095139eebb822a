"""Shopify end to end: a connection syncing from the fake Shopify (tests/fakes/shopify.py)
into Rapport through the runner, the sink and the crm services, on the emulator.

The crash-and-throttle backfill (2,000 records; ``SHOPIFY_BACKFILL`` sets another size) is
in test_shopify_backfill.py (a bulk test, scheduled first); its helpers live here.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.shopify import FakeShopify

ROOT = Path(__file__).resolve().parents[2]
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
