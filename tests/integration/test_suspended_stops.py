"""Suspended or paused means stopped (issue 9, section 4): a suspended tenant's or a paused
connection's webhooks are refused and write nothing, and the sync and loyalty schedules
skip them; everything resumes when the tenant or the connection is active again."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from crm import clock, tenants
from tests.conftest import partition_items
from tests.fakes import fixture
from tests.fakes.acme import AcmeServer
from tests.fakes.shopify import FakeShopify
from tests.loyalty_helpers import iso, place_order

SECRET = "whsec-suspended"
CUSTOMER = fixture("shopify", "python_api_customer.json")["customer"]


@pytest.fixture()
def hooked(tenant):
    r = tenant.http.post("/v1/connections", json={
        "connector": "shopify", "name": "Shop",
        "config": {"shop_url": "https://stops.myshopify.com", "access_token": "shpat_x", "webhook_secret": SECRET}})
    assert r.status_code == 201, r.text
    return tenant, r.json()["id"]


def _delivery(n: int) -> tuple[dict, bytes]:
    person = {**copy.deepcopy(CUSTOMER), "id": 9100 + n, "email": f"stopped-{n}@example.com",
              "updated_at": "2026-11-02T10:00:00-05:00"}
    return FakeShopify.webhook("customers/create", person, SECRET, webhook_id=f"stopped-{n}")


def test_a_paused_connection_refuses_webhooks_and_writes_nothing(hooked, anon, raw_table, event_pipeline):
    tenant, cid = hooked
    assert tenant.http.patch(f"/v1/connections/{cid}", json={"status": "paused"}).status_code == 200
    before = partition_items(raw_table, tenant)
    headers, body = _delivery(1)
    r = anon.post(f"/v1/hooks/{cid}", headers=headers, content=body)
    assert r.status_code == 409 and r.json()["code"] == "connection_paused", r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert event_pipeline.wait_idle(timeout=60)
    assert partition_items(raw_table, tenant) == before  # not even the delivery guard
    # active again: the vendor's retry of the same delivery goes through
    assert tenant.http.patch(f"/v1/connections/{cid}", json={"status": "active"}).status_code == 200
    assert anon.post(f"/v1/hooks/{cid}", headers=headers, content=body).status_code == 202
    assert event_pipeline.wait_idle(timeout=60)
    assert len(tenant.http.get("/v1/customers/lookup", params={"email": "stopped-1@example.com"}).json()["data"]) == 1


def test_a_suspended_tenant_refuses_webhooks_and_writes_nothing(hooked, anon, raw_table, event_pipeline):
    tenant, cid = hooked
    headers, body = _delivery(2)
    tenants.set_status(tenant.ctx, "suspended")
    before = partition_items(raw_table, tenant)
    try:
        r = anon.post(f"/v1/hooks/{cid}", headers=headers, content=body)
        assert r.status_code == 403 and r.json()["code"] == "tenant_suspended", r.text
        assert event_pipeline.wait_idle(timeout=60)
        assert partition_items(raw_table, tenant) == before
    finally:
        tenants.set_status(tenant.ctx, "active")


def test_a_delivery_queued_before_the_pause_writes_nothing(hooked, raw_table):
    import base64

    from functions import sync

    tenant, cid = hooked
    headers, body = _delivery(3)
    message = {"type": "hook", "tenant_id": tenant.id, "connection_id": cid, "delivery_id": "stopped-3",
               "headers": {k.lower(): v for k, v in headers.items()}, "body": base64.b64encode(body).decode()}
    assert tenant.http.patch(f"/v1/connections/{cid}", json={"status": "paused"}).status_code == 200
    before = partition_items(raw_table, tenant)
    assert sync.hook(message) == {}
    assert partition_items(raw_table, tenant) == before


def test_the_sync_schedule_skips_a_suspended_tenant(tenant):
    from functions.sync import run_schedule

    with AcmeServer() as acme:
        r = tenant.http.post("/v1/connections", json={
            "connector": "acme", "name": "scheduled", "schedule_minutes": 15,
            "config": {"base_url": acme.url, "api_token": acme.token}})
        cid = r.json()["id"]
        tenants.set_status(tenant.ctx, "suspended")
        try:
            out = run_schedule(now=clock.iso(clock.now() + timedelta(minutes=16)))
            assert out == {"queued": 0, "skipped": 1, "stalled": 0}  # a fresh emulator per module
            from connectors import connections

            assert connections.list_runs(tenant.ctx, cid, limit=10, cursor=None).items == []
        finally:
            tenants.set_status(tenant.ctx, "active")
        run_schedule(now=clock.iso(clock.now() + timedelta(minutes=32)))
        [run] = tenant.http.get(f"/v1/connections/{cid}/runs").json()["data"]
        assert run["trigger"] == "schedule"
        tenant.http.post(f"/v1/connections/{cid}/runs/{run['id']}/cancel")  # its message: a no-op later


def test_the_loyalty_schedule_skips_a_suspended_tenants_books(tenant, deliver):
    from crm.storage import LoyaltyItem
    from functions import loyalty as handler

    program = {"currency": "EUR", "earn_rates": {"EUR": 1}, "return_window_days": 30,
               "tiers": [{"name": "Bronze", "threshold": 0}],
               "earns_from": "2000-01-01T00:00:00Z"}  # the order below is back-dated
    assert tenant.http.put("/v1/loyalty/program", json=program).status_code == 201
    cid = tenant.create_customer(email="suspended-sched@example.com")["id"]
    place_order(tenant, {"id": cid}, "ss1", total=10000, paid_days_ago=30 - 120 / 86400)  # due in 2 minutes
    deliver()
    soon = iso(datetime.now(timezone.utc) + timedelta(seconds=150))
    pending = LoyaltyItem.get(f"T#{tenant.id}#C#{cid}", "LOYALTY", consistent_read=True).book["pending"]
    assert pending > 0
    tenants.set_status(tenant.ctx, "suspended")
    try:
        ran = handler.run_schedule(now=soon)
        assert ran == {"customers": 0, "entries": 0, "skipped": 1}
        assert LoyaltyItem.get(f"T#{tenant.id}#C#{cid}", "LOYALTY", consistent_read=True).book["pending"] == pending
    finally:
        tenants.set_status(tenant.ctx, "active")
    handler.run_schedule(now=soon)
    book = LoyaltyItem.get(f"T#{tenant.id}#C#{cid}", "LOYALTY", consistent_read=True).book
    assert (book["pending"], book["available"]) == (0, pending)
