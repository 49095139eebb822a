"""Vendor webhooks over HTTP: POST /v1/hooks/{connection} checks the signature before it
reads the body, de-duplicates deliveries, queues the work and answers at once; the
sync_work consumer (the local pollers run it) writes the records, and loyalty follows."""
from __future__ import annotations

import copy
import json
import time

import pytest

from tests.conftest import partition_items
from tests.fakes import fixture
from tests.fakes.shopify import FakeShopify
from tests.plan_helpers import set_plan

SECRET = "whsec-hooks"
ORDER = fixture("shopify", "python_api_order.json")["order"]
CUSTOMER = fixture("shopify", "python_api_customer.json")["customer"]
PROGRAM = {"currency": "USD", "earn_rates": {"USD": 1}, "return_window_days": 0, "earns_from": "2000-01-01T00:00:00Z",
           "tiers": [{"name": "Bronze", "threshold": 0}]}


@pytest.fixture()
def hooked(tenant, api_url):
    assert tenant.http.put("/v1/loyalty/program", json=PROGRAM).status_code == 201
    r = tenant.http.post("/v1/connections", json={
        "connector": "shopify", "name": "Shop",
        "config": {"shop_url": "https://hooks.myshopify.com", "access_token": "shpat_x",
                   "webhook_secret": SECRET}})
    assert r.status_code == 201, r.text
    # the absolute URL to paste into the shop's webhook settings
    assert r.json()["webhook_url"] == f"{api_url}/v1/hooks/{r.json()['id']}"
    # an optional secret (Secret | None) is sealed and never returned, like a required one
    assert r.json()["secrets_set"] == ["access_token", "webhook_secret"]
    assert SECRET not in tenant.http.get(f"/v1/connections/{r.json()['id']}").text
    return tenant, r.json()["id"]


def _paid_order(order_id: int, customer_id: int, email: str) -> dict:
    """The fixture's order as a paid one of a new customer (the fixture's is only authorized)."""
    order = copy.deepcopy(ORDER)
    order.update(id=order_id, financial_status="paid", email=email, processed_at="2026-11-01T10:00:00-05:00",
                 updated_at="2026-11-01T10:00:00-05:00", created_at="2026-11-01T09:59:00-05:00")
    order["customer"] = {**order["customer"], "id": customer_id, "email": email}
    return order


def _post(anon, cid: str, headers: dict, body: bytes):
    return anon.post(f"/v1/hooks/{cid}", headers=headers, content=body)


def test_forged_or_missing_signatures_get_401_and_write_nothing(hooked, anon, raw_table, event_pipeline):
    tenant, cid = hooked
    headers, body = FakeShopify.webhook("orders/create", _paid_order(1, 2, "forged@example.com"), "not-the-secret")
    before = partition_items(raw_table, tenant)
    started = time.perf_counter()
    assert _post(anon, cid, headers, body).status_code == 401
    assert time.perf_counter() - started < 5
    del headers["X-Shopify-Hmac-Sha256"]
    r = _post(anon, cid, headers, body)
    assert r.status_code == 401 and r.json()["code"] == "invalid_signature"
    # the right signature over other bytes is forged too
    good, _ = FakeShopify.webhook("orders/create", _paid_order(1, 2, "forged@example.com"), SECRET)
    assert _post(anon, cid, good, body + b" ").status_code == 401
    assert event_pipeline.wait_idle(timeout=60)
    assert partition_items(raw_table, tenant) == before
    assert tenant.http.get("/v1/customers/lookup", params={"email": "forged@example.com"}).json()["data"] == []


def test_an_order_webhook_gives_the_customer_the_order_and_points_once(hooked, anon, raw_table, event_pipeline):
    tenant, cid = hooked
    headers, body = FakeShopify.webhook("orders/create", _paid_order(9001, 7001, "hook-buyer@example.com"),
                                        SECRET, webhook_id="delivery-1")
    r = _post(anon, cid, headers, body)
    assert r.status_code == 202 and r.json() == {"status": "queued", "delivery_id": "delivery-1"}
    assert event_pipeline.wait_idle(timeout=60)
    [customer] = tenant.http.get("/v1/customers/lookup",
                                 params={"source": "shopify", "external_id": "7001"}).json()["data"]
    assert customer["email"] == "hook-buyer@example.com"
    [order] = tenant.http.get("/v1/orders", params={"customer_id": customer["id"]}).json()["data"]
    assert order["external_id"] == "9001" and order["status"] == "paid" and order["currency"] == "USD"
    loyalty = tenant.http.get(f"/v1/customers/{customer['id']}/loyalty").json()
    assert loyalty["lifetime_earned"] > 0 and loyalty["available"] + loyalty["pending"] == loyalty["lifetime_earned"]
    # the same delivery again (the vendor retries): acknowledged, nothing written
    before = partition_items(raw_table, tenant)
    r = _post(anon, cid, headers, body)
    assert r.status_code == 200 and r.json()["status"] == "duplicate"
    assert event_pipeline.wait_idle(timeout=60)
    assert partition_items(raw_table, tenant) == before


def test_customer_webhooks_create_and_update_the_profile(hooked, anon, event_pipeline):
    tenant, cid = hooked
    person = {**copy.deepcopy(CUSTOMER), "id": 8123, "email": "hook-person@example.com",
              "updated_at": "2026-11-02T10:00:00-05:00"}
    headers, body = FakeShopify.webhook("customers/create", person, SECRET)
    assert _post(anon, cid, headers, body).status_code == 202
    person = {**person, "first_name": "Renamed", "updated_at": "2026-11-03T10:00:00-05:00"}
    headers, body = FakeShopify.webhook("customers/update", person, SECRET)
    assert _post(anon, cid, headers, body).status_code == 202
    assert event_pipeline.wait_idle(timeout=60)
    [found] = tenant.http.get("/v1/customers/lookup", params={"email": "hook-person@example.com"}).json()["data"]
    assert found["name"]["given"] == "Renamed" and found["external_ids"]["shopify"] == "8123"


def test_a_checkout_webhook_records_the_started_checkout_once_and_starts_cart_journeys(hooked, anon,
                                                                                      event_pipeline):
    """Shopify's checkouts/create (shopify_python_api's abandoned checkout, unchanged):
    the buyer is resolved as an order's, the checkout recorded once (a checkouts/update of
    the same token changes nothing; a completed one is an order's business), and an
    active cart abandonment journey starts its run from it."""
    from pathlib import Path

    tenant, cid = hooked
    set_plan(tenant, "growth")
    checkout = json.loads((Path(__file__).resolve().parents[1] / "fakes" / "fixtures"
                           / "shopify_abandoned_checkout.json").read_text())["checkout"]
    template = tenant.http.post("/v1/email/templates", json={
        "name": "Cart", "kind": "transactional", "subject": "Your cart",
        "html": "<a href='{{ event.data.url }}'>{{ event.data.total }}</a>"}).json()["id"]
    settings = tenant.http.get("/v1/email/settings").json()
    tenant.http.put("/v1/email/settings", json={"default_sender": settings["default_sender"]})
    journey = tenant.http.post("/v1/journeys", json={
        "name": "Cart", "status": "active", "trigger": {"type": "checkout.started"},
        "steps": [{"type": "send_email", "template_id": template}]})
    assert journey.status_code == 201, journey.text
    headers, body = FakeShopify.webhook("checkouts/create", checkout, SECRET)
    assert _post(anon, cid, headers, body).status_code == 202
    again = {**checkout, "updated_at": "2012-10-12T08:00:00-04:00", "total_price": "1.00"}
    headers, body = FakeShopify.webhook("checkouts/update", again, SECRET)
    assert _post(anon, cid, headers, body).status_code == 202
    done = {**checkout, "token": "completed-one", "completed_at": "2012-10-12T08:00:00-04:00"}
    headers, body = FakeShopify.webhook("checkouts/update", done, SECRET)
    assert _post(anon, cid, headers, body).status_code == 202
    assert event_pipeline.wait_idle(timeout=60)
    [bob] = tenant.http.get("/v1/customers/lookup", params={"email": "bob.norman@hostmail.com"}).json()["data"]
    assert bob["external_ids"]["shopify"] == "207119551"
    export = tenant.http.get(f"/v1/customers/{bob['id']}/export", params={"limit": 100}).json()
    [recorded] = export["sections"]["checkouts"]
    assert recorded["checkout_id"] == "shopify:2a1ace52255252df566af0faaedfbfa7"
    assert recorded["data"]["total"] == 40994 and recorded["data"]["currency"] == "USD"
    assert recorded["data"]["url"].startswith("https://checkout.local/orders/690933842/")
    assert [i["sku"] for i in recorded["data"]["items"]] == ["IPOD2008RED", "IPOD2008PINK"]
    [run] = tenant.http.get(f"/v1/customers/{bob['id']}/journeys").json()["data"]
    assert run["occurrence"] == "shopify:2a1ace52255252df566af0faaedfbfa7"
    assert run["status"] == "done" and [s["state"] for s in run["sends"]] == ["sent"]


def test_hooks_for_unknown_or_webhookless_connections_are_404(hooked, anon, tenant):
    set_plan(tenant, "starter")  # more connections (or customers) than free allows
    _, cid = hooked
    headers, body = FakeShopify.webhook("orders/create", {"id": 1}, SECRET)
    assert _post(anon, "con_" + "0" * 26, headers, body).status_code == 404
    assert _post(anon, "nope", headers, body).status_code == 404
    from tests.fakes.acme import AcmeServer

    with AcmeServer() as acme:
        other = tenant.http.post("/v1/connections", json={
            "connector": "acme", "name": "a", "config": {"base_url": acme.url, "api_token": "t"}}).json()
    assert _post(anon, other["id"], headers, body).status_code == 404


def test_an_oversized_delivery_gets_413(hooked, anon):
    _, cid = hooked
    body = json.dumps({"id": 1, "note": "x" * 300_000}).encode()
    headers, _ = FakeShopify.webhook("orders/create", body, SECRET)
    assert _post(anon, cid, headers, body).status_code == 413


def test_webhook_url_is_absolute_from_the_host_or_the_configured_url(hooked, monkeypatch):
    tenant, cid = hooked
    monkeypatch.delenv("RAPPORT_PUBLIC_URL", raising=False)  # the dev stack sets one for email links
    r = tenant.http.get(f"/v1/connections/{cid}", headers={"Host": "abc123.execute-api.eu-west-1.amazonaws.com",
                                                            "X-Forwarded-Proto": "https"})
    assert r.json()["webhook_url"] == f"https://abc123.execute-api.eu-west-1.amazonaws.com/api/v1/hooks/{cid}"
    monkeypatch.setenv("RAPPORT_PUBLIC_URL", "https://crm.example.com/")
    assert tenant.http.get(f"/v1/connections/{cid}").json()["webhook_url"] == f"https://crm.example.com/v1/hooks/{cid}"
    [listed] = tenant.http.get("/v1/connections").json()["data"]
    assert listed["webhook_url"] == f"https://crm.example.com/v1/hooks/{cid}"
