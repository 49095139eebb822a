"""Data as the vendor meant it (issue 9, section 2) and replay safety (section 4): real
Shopify and WooCommerce payloads through the mapping, the sink and the crm services on
the emulator, read back over the API."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from connectors import sink
from connectors.shopify import mapping as shopify
from connectors.woocommerce import mapping as woo
from crm.orders.imports import import_orders
from tests.fakes import fixture
from tests.fakes.shopify import FakeShopify
from tests.fakes.woocommerce import order_payload
from tests.loyalty_helpers import iso

CUSTOMER = fixture("shopify", "python_api_customer.json")["customer"]
ORDER = fixture("shopify", "python_api_order.json")["order"]
NOW = datetime.now(timezone.utc)
PROGRAM = {"currency": "EUR", "earn_rates": {"EUR": 1}, "return_window_days": 0, "expiry_months": 12,
           "tiers": [{"name": "Bronze", "threshold": 0}], "earns_from": "2000-01-01T00:00:00Z"}


def order_record(cid: str, xid: str, *, quantity: int = 1, unit: int = 10000,
                 updated: timedelta | None = None, **state) -> dict:
    """An order as the sink hands it to import_orders, at vendor version ``NOW - updated``."""
    return {"external_id": xid, "customer_id": cid, "channel": "web", "currency": "EUR",
            "lines": [{"sku": "S-1", "name": "Thing", "quantity": quantity, "unit_price": unit}],
            "total": quantity * unit, "placed_at": iso(NOW - timedelta(days=5)),
            **({"updated_at": iso(NOW - updated)} if updated is not None else {}), **state}


def get(tenant, path: str, **params) -> dict:
    r = tenant.http.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def lookup(tenant, **params) -> list[dict]:
    return get(tenant, "/v1/customers/lookup", **params)["data"]


# --- orders ------------------------------------------------------------------------

def test_a_refund_added_to_an_imported_order_keeps_the_vendors_refund_date(tenant):
    cid = tenant.create_customer(email="refund-date@example.com")["id"]
    paid = order_record(cid, "rd-1", paid_at=iso(NOW - timedelta(days=4)))
    [res] = import_orders(tenant.ctx, "shop", [paid])
    assert res.status == "created"
    refunded_at = iso(NOW - timedelta(days=2, hours=3))
    later = {**paid, "refunds": [{"reference": "re-9", "amount": 2500, "refunded_at": refunded_at}]}
    assert import_orders(tenant.ctx, "shop", [later])[0].status == "updated"
    [refund] = get(tenant, f"/v1/orders/{res.order_id}")["refunds"]
    assert (refund["reference"], refund["amount"], refund["refunded_at"]) == ("re-9", 2500, refunded_at)


def test_an_order_edited_at_the_vendor_is_updated_and_points_follow_without_double_counting(tenant, deliver):
    assert tenant.http.put("/v1/loyalty/program", json=PROGRAM).status_code == 201
    cid = tenant.create_customer(email="edited@example.com")["id"]
    v1 = order_record(cid, "ed-1", quantity=2, updated=timedelta(days=4), paid_at=iso(NOW - timedelta(days=4)))
    [res] = import_orders(tenant.ctx, "shop", [v1])
    deliver()
    assert get(tenant, f"/v1/customers/{cid}/loyalty")["available"] == 200

    v2 = order_record(cid, "ed-1", quantity=1, unit=6000, updated=timedelta(days=3),
                      paid_at=iso(NOW - timedelta(days=4)))
    assert import_orders(tenant.ctx, "shop", [v2])[0].status == "updated"
    order = get(tenant, f"/v1/orders/{res.order_id}")
    assert [(li["quantity"], li["unit_price"]) for li in order["lines"]] == [(1, 6000)]
    assert (order["total"], order["subtotal"], order["revision"], order["status"]) == (6000, 6000, 1, "paid")
    events = deliver()
    assert [e["id"] for e in events if e["type"] == "order.updated"] == [f"order.updated:{res.order_id}:1"]
    view = get(tenant, f"/v1/customers/{cid}/loyalty")
    assert (view["available"], view["lifetime_earned"]) == (60, 60)
    summary = get(tenant, f"/v1/customers/{cid}/360")
    assert summary["recent_orders"][0]["total"] == 6000
    assert "order.updated" in [e["type"] for e in summary["timeline"]]

    # the older version, replayed or late, reverts nothing and earns nothing
    assert import_orders(tenant.ctx, "shop", [v1])[0].status == "unchanged"
    assert get(tenant, f"/v1/orders/{res.order_id}")["total"] == 6000
    deliver()
    # an edit upwards, then the same edit again: counted once
    v3 = order_record(cid, "ed-1", quantity=3, unit=5000, updated=timedelta(days=2),
                      paid_at=iso(NOW - timedelta(days=4)))
    assert import_orders(tenant.ctx, "shop", [v3])[0].status == "updated"
    assert import_orders(tenant.ctx, "shop", [v3])[0].status == "unchanged"
    deliver()
    view = get(tenant, f"/v1/customers/{cid}/loyalty")
    assert (view["available"], view["lifetime_earned"]) == (150, 150)
    ledger = get(tenant, f"/v1/customers/{cid}/loyalty/ledger")["data"]
    assert sum(e["points"] for e in ledger) == 150


def test_vendor_test_transactions_neither_pay_nor_refund():
    paid = {**copy.deepcopy(ORDER), "financial_status": "paid"}
    assert shopify.order(paid).paid_at is not None
    assert shopify.order({**paid, "test": True}).paid_at is None  # a test order is not money
    sale = {"kind": "sale", "status": "success", "amount": "409.94"}
    assert shopify.order({**paid, "transactions": [{**sale, "test": True}]}).paid_at is None
    assert shopify.order({**paid, "transactions": [{**sale, "test": False}]}).paid_at is not None
    refunded = {**paid, "financial_status": "partially_refunded", "refunds": [
        {"id": 1, "created_at": "2014-01-24T10:00:00-05:00",
         "transactions": [{"kind": "refund", "status": "success", "amount": "41.94", "test": True}]},
        {"id": 2, "created_at": "2014-01-25T10:00:00-05:00",
         "transactions": [{"kind": "refund", "status": "success", "amount": "10.00", "test": False}]}]}
    assert [(r.reference, r.amount) for r in shopify.order(refunded).refunds] == [("2", 1000)]


# --- customers -----------------------------------------------------------------------

def test_a_synced_consent_never_replaces_a_newer_one_and_sms_consent_maps(tenant):
    api = tenant.create_customer(email="bob.norman@hostmail.com",
                                 consent={"email": {"status": "granted", "source": "api"}})
    vendor = {**copy.deepcopy(CUSTOMER),  # Shopify's "denied" (accepts_marketing false) of 2015
              "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in",
                                        "consent_updated_at": "2024-05-01T10:00:00-04:00"}}
    out = sink.write(tenant.ctx, "shopify", "customers", [shopify.customer(vendor)])
    assert out.counts["updated"] == 1, out
    got = get(tenant, f"/v1/customers/{api['id']}")
    assert got["consent"]["email"] == api["consent"]["email"]  # the newer API consent stands
    assert got["consent"]["sms"] == {"status": "granted", "source": "shopify", "at": "2024-05-01T14:00:00.000Z"}
    # a newer vendor consent does replace it
    later = datetime.now(timezone.utc) + timedelta(minutes=1)  # after the API's consent, however slow the run
    newer = {**vendor, "updated_at": iso(later),
             "email_marketing_consent": {"state": "unsubscribed", "consent_updated_at": iso(later)}}
    sink.write(tenant.ctx, "shopify", "customers", [shopify.customer(newer)])
    assert get(tenant, f"/v1/customers/{api['id']}")["consent"]["email"]["status"] == "denied"


def test_the_vendors_first_seen_time_is_kept_and_customer_since_is_the_earliest(tenant):
    api = tenant.create_customer(email="bob.norman@hostmail.com")
    assert api["customer_since"] == api["created_at"]
    sink.write(tenant.ctx, "shopify", "customers", [shopify.customer(copy.deepcopy(CUSTOMER))])
    woo_customer = fixture("woocommerce", "v3_customer_create_response.json")
    sink.write(tenant.ctx, "woocommerce", "customers",
               [woo.customer({**woo_customer, "email": "bob.norman@hostmail.com"})])
    got = get(tenant, f"/v1/customers/{api['id']}")
    assert got["source_created_at"] == {"shopify": "2015-05-27T22:11:24.000Z",
                                        "woocommerce": woo.fields.utc(woo_customer["date_created_gmt"])}
    assert got["customer_since"] == "2015-05-27T22:11:24.000Z" and got["created_at"] == api["created_at"]
    assert get(tenant, f"/v1/customers/{api['id']}/360")["customer"]["customer_since"] == "2015-05-27T22:11:24.000Z"


def test_a_woocommerce_guest_order_fills_the_buyers_name_phone_and_address(tenant):
    guest = order_payload(727)  # John Doe's guest order, from WooCommerce's docs
    guest["billing"]["phone"] = "+1 415 555 2671"  # the docs' (555) 555-5555 is no real number
    bare = tenant.create_customer(email="john.doe@example.com")
    named = tenant.create_customer(email="jane.roe@example.com", name={"given": "Jane"})
    other = order_payload(727, id=728)
    other["billing"].update(email="jane.roe@example.com", first_name="Janet", last_name="Roe")
    out = sink.write(tenant.ctx, "woocommerce", "orders", [woo.order(guest), woo.order(other)])
    assert out.counts["created"] == 2, out
    got = get(tenant, f"/v1/customers/{bare['id']}")
    assert got["name"] == {"given": "John", "family": "Doe"} and got["phone"] == "+14155552671"
    assert got["addresses"] == [{"label": "billing", "line1": "969 Market", "line2": None,
                                 "city": "San Francisco", "region": "CA", "postal_code": "94103",
                                 "country": "US"}]
    assert get(tenant, f"/v1/customers/{named['id']}")["name"] == {"given": "Jane", "family": None}


def test_a_changed_email_stays_findable_and_guarded(tenant):
    c = tenant.create_customer(email="old@example.com")
    r = tenant.http.patch(f"/v1/customers/{c['id']}", json={"email": "new@example.com"})
    assert r.status_code == 200, r.text
    assert [p["email"] for p in r.json()["previous_emails"]] == ["old@example.com"]
    assert [x["id"] for x in lookup(tenant, email="old@example.com")] == [c["id"]]
    assert [x["id"] for x in lookup(tenant, email="new@example.com")] == [c["id"]]
    taken = tenant.http.post("/v1/customers", json={"email": "old@example.com"})
    assert taken.status_code == 409, taken.text
    back = tenant.http.patch(f"/v1/customers/{c['id']}", json={"email": "old@example.com"})
    assert back.status_code == 200 and [p["email"] for p in back.json()["previous_emails"]] == ["new@example.com"]
    # a sync record with the replaced email finds the same customer, not a new one
    out = sink.write(tenant.ctx, "erp", "customers", [sink.CustomerRecord("e-1", iso(NOW), {"email": "new@example.com"})])
    assert out.counts["updated"] == 1, out
    assert [x["id"] for x in lookup(tenant, source="erp", external_id="e-1")] == [c["id"]]


def test_history_placed_before_the_program_earns_nothing_and_emits_nothing(tenant, deliver):
    program = {k: v for k, v in PROGRAM.items() if k != "earns_from"}
    r = tenant.http.put("/v1/loyalty/program", json=program)
    assert r.status_code == 201 and r.json()["earns_from"] >= iso(NOW - timedelta(minutes=5))
    cid = tenant.create_customer(email="history@example.com")["id"]
    old = order_record(cid, "h-2008", updated=timedelta(days=1), placed_at="2008-01-10T16:00:00.000Z",
                       paid_at="2008-01-10T16:00:00.000Z")
    [res] = import_orders(tenant.ctx, "shop", [old])
    assert res.status == "created"
    events = deliver()
    assert [e["type"] for e in events if e["type"].startswith(("points.", "tier."))] == []
    assert get(tenant, f"/v1/customers/{cid}/loyalty/ledger")["data"] == []
    # a later PUT without earns_from keeps it; an order placed since earns
    kept = tenant.http.put("/v1/loyalty/program", json={**program, "first_order_bonus": 5})
    assert kept.json()["earns_from"] == r.json()["earns_from"]
    later = iso(datetime.now(timezone.utc) + timedelta(seconds=1))
    new = order_record(cid, "h-now", updated=timedelta(0), placed_at=later, paid_at=later)
    import_orders(tenant.ctx, "shop", [new])
    deliver()
    assert get(tenant, f"/v1/customers/{cid}/loyalty")["lifetime_earned"] == 100


# --- replays -------------------------------------------------------------------------

SECRET = "whsec-fidelity"


@pytest.fixture()
def hooked(tenant):
    r = tenant.http.post("/v1/connections", json={
        "connector": "shopify", "name": "Shop",
        "config": {"shop_url": "https://fidelity.myshopify.com", "access_token": "shpat_x",
                   "webhook_secret": SECRET}})
    assert r.status_code == 201, r.text
    return tenant, r.json()["id"]


def test_a_replayed_or_late_customer_webhook_never_reverts_newer_data(hooked, anon, event_pipeline):
    tenant, cid = hooked
    old = {**copy.deepcopy(CUSTOMER), "id": 9101, "email": "first@example.com",
           "updated_at": "2026-11-02T10:00:00-05:00"}
    new = {**old, "email": "second@example.com", "updated_at": "2026-11-03T10:00:00-05:00"}
    for body in (old, new):
        headers, raw = FakeShopify.webhook("customers/update", body, SECRET)
        assert anon.post(f"/v1/hooks/{cid}", headers=headers, content=raw).status_code == 202
    assert event_pipeline.wait_idle(timeout=60)
    [c] = lookup(tenant, source="shopify", external_id="9101")
    assert c["email"] == "second@example.com"  # whichever of the two was consumed first
    version = c["version"]
    # the older signed body again: under a new webhook id, and with none
    headers, raw = FakeShopify.webhook("customers/update", old, SECRET)
    assert anon.post(f"/v1/hooks/{cid}", headers=headers, content=raw).status_code == 202
    del headers["X-Shopify-Webhook-Id"]
    assert anon.post(f"/v1/hooks/{cid}", headers=headers, content=raw).status_code == 202
    # an order's signed body under the (unsigned) customers/update topic
    order = {**copy.deepcopy(ORDER), "id": 9202, "email": "second@example.com"}
    headers, raw = FakeShopify.webhook("customers/update", order, SECRET)
    assert anon.post(f"/v1/hooks/{cid}", headers=headers, content=raw).status_code == 202
    assert event_pipeline.wait_idle(timeout=60)
    [c] = lookup(tenant, source="shopify", external_id="9101")
    assert c["email"] == "second@example.com" and c["version"] == version
    assert lookup(tenant, source="shopify", external_id="9202") == []
    assert get(tenant, "/v1/identity/conflicts")["data"] == []


def test_a_late_sync_page_never_reverts_a_newer_record(tenant):
    newer = shopify.customer({**copy.deepcopy(CUSTOMER), "first_name": "Robert",
                              "updated_at": "2024-02-01T00:00:00Z"})
    older = shopify.customer(copy.deepcopy(CUSTOMER))
    assert sink.write(tenant.ctx, "shopify", "customers", [newer]).counts["created"] == 1
    out = sink.write(tenant.ctx, "shopify", "customers", [older])
    assert out.counts["unchanged"] == 1, out
    [c] = lookup(tenant, source="shopify", external_id="207119551")
    assert c["name"]["given"] == "Robert"


def test_a_webhook_is_a_hint_to_re_read_the_record_from_the_shop(tenant, anon, event_pipeline):
    with FakeShopify() as shop:
        shop.seed(customers=1)
        [xid] = shop.ids("customers")
        stale = shop.customer(xid)  # the body of an old delivery
        shop.update_customer(xid, email="moved-on@example.com", first_name="Current")
        r = tenant.http.post("/v1/connections", json={
            "connector": "shopify", "name": "Live shop",
            "config": {"shop_url": shop.url, "access_token": shop.token, "webhook_secret": SECRET}})
        assert r.status_code == 201, r.text
        headers, raw = FakeShopify.webhook("customers/update", stale, SECRET)
        assert anon.post(f"/v1/hooks/{r.json()['id']}", headers=headers, content=raw).status_code == 202
        assert event_pipeline.wait_idle(timeout=60)
        assert any(path.endswith(f"/customers/{xid}.json") for _, path in shop.log)
    [c] = lookup(tenant, source="shopify", external_id=str(xid))
    assert (c["email"], c["name"]["given"]) == ("moved-on@example.com", "Current")


def test_a_woocommerce_webhook_is_re_read_from_the_store_too():
    from connectors.woocommerce import WooCommerce, WooCommerceConfig
    from tests.fakes.woocommerce import FakeWooCommerce

    with FakeWooCommerce() as store:
        store.seed(customers=1, orders=1)
        [xid] = store.ids("customers")
        [oid] = store.ids("orders")
        stale_customer, stale_order = store.customer(xid), store.order(oid)
        store.update_customer(xid, email="moved-on@example.com")
        store.update_order(oid, status="cancelled")
        config = WooCommerceConfig(store_url=store.url, consumer_key=store.key,
                                   consumer_secret=store.secret, webhook_secret=SECRET)
        conn = WooCommerce()
        [person] = conn.parse_webhook(config, *FakeWooCommerce.webhook("customer.updated", stale_customer, SECRET)).records
        [order] = conn.parse_webhook(config, *FakeWooCommerce.webhook("order.updated", stale_order, SECRET)).records
    assert person.profile["email"] == "moved-on@example.com"
    assert order.cancelled_at is not None
