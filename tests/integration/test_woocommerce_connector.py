"""The WooCommerce connector against a fake WooCommerce over HTTP (tests/fakes/woocommerce.py):
customers from WooCommerce's documented customer response, orders from the docs' order
examples (``order_payload``)."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from connectors.sdk import CheckFailed, RateLimited, WebhookRejected
from connectors.sdk.base import CustomerRecord, OrderRecord, ReadContext, Rejected
from connectors.woocommerce import Customers, Orders, WooCommerce, WooCommerceConfig, mapping
from crm.customers.schemas import CustomerPatch
from tests.connector_helpers import Sleeps, as_order_create, read_stream
from tests.fakes import fixture
from tests.fakes.woocommerce import FakeWooCommerce, order_payload

SECRET = "whsec-woo-test"
CUSTOMER = fixture("woocommerce", "v3_customer_create_response.json")


@pytest.fixture
def store():
    with FakeWooCommerce() as fake:
        yield fake


def context(fake: FakeWooCommerce, mode: str = "incremental") -> tuple[ReadContext, Sleeps]:
    config = WooCommerceConfig(store_url=fake.url, consumer_key=fake.key, consumer_secret=fake.secret,
                               webhook_secret=SECRET)
    sleeps = Sleeps()
    return ReadContext(config, WooCommerce().client(config, sleep=sleeps), mode), sleeps


# mapping --------------------------------------------------------------------------------

def test_documented_customer_maps_to_a_valid_profile():
    record = mapping.customer(copy.deepcopy(CUSTOMER))
    assert isinstance(record, CustomerRecord)
    assert (record.external_id, record.updated_at) == ("25", "2017-03-21T19:09:30.000Z")  # _gmt read as UTC
    p = record.profile
    assert p["name"] == {"given": "John", "family": "Doe"} and p["email"] == "john.doe@example.com"
    assert "phone" not in p  # (555) 555-5555 is not a valid US number
    # billing and shipping are the same place: kept once
    assert p["addresses"] == [{"line1": "969 Market", "city": "San Francisco", "region": "CA",
                               "postal_code": "94103", "country": "US", "label": "billing"}]
    assert p["attributes"] == {"woocommerce_role": "customer", "woocommerce_paying_customer": False,
                               "woocommerce_username": "john.doe"}
    CustomerPatch.model_validate(p)

    c = copy.deepcopy(CUSTOMER)
    c["billing"]["phone"] = "(415) 555-2671"
    c["shipping"].update(address_1="1 Ferry Building", postcode="94111")
    c["date_modified_gmt"] = None
    r = mapping.customer(c)
    assert r.profile["phone"] == "+14155552671"
    assert [a["label"] for a in r.profile["addresses"]] == ["billing", "shipping"]
    assert r.updated_at == "2017-03-21T19:09:28.000Z"  # date_created_gmt when never modified
    assert isinstance(mapping.customer({**CUSTOMER, "date_modified_gmt": "21/03/2017"}), Rejected)


def test_documented_orders_map_with_refunds_guest_and_status():
    registered = mapping.order(order_payload(723))
    assert isinstance(registered, OrderRecord), registered
    assert [(li.sku, li.name, li.quantity, li.unit_price) for li in registered.lines] == [
        ("product-87", "Woo Album #2", 1, 900), ("product-34", "Woo Ninja", 1, 2000)]
    assert (registered.shipping, registered.tax, registered.total, registered.discount) == (1000, 0, 3900, 0)
    assert registered.customer.external_id == "26" and registered.email is None
    assert registered.placed_at == "2017-03-21T19:16:00.000Z"
    # completed without date_paid (bank transfer marked complete): paid when completed
    assert registered.paid_at == registered.fulfilled_at == "2017-03-21T19:54:51.000Z"
    assert [(r.reference, r.amount) for r in registered.refunds] == [("726", 1000), ("724", 900)]
    assert registered.channel == "web" and registered.cancelled_at is None
    as_order_create(registered, "woocommerce")

    guest = mapping.order(order_payload(727))
    assert guest.customer is None and guest.email == "john.doe@example.com"
    assert [(li.sku, li.name, li.quantity, li.unit_price) for li in guest.lines] == [
        ("product-93", "Woo Single #1", 2, 300),
        ("Bar3", "Ship Your Idea \u2013 Color: Black, Size: M Test", 1, 1200)]  # &ndash; unescaped
    assert (guest.shipping, guest.tax, guest.total, guest.discount) == (1000, 135, 2935, 0)
    assert guest.paid_at == "2017-03-22T19:28:08.000Z" and guest.fulfilled_at is None
    as_order_create(guest, "woocommerce")


def test_order_discounts_fees_rounding_and_statuses():
    o = order_payload(727, discount_total="2.00", total="27.35")
    o["line_items"][1].update(total="10.00")  # a coupon took 2.00 off this line
    assert mapping.order(o).discount == 200

    o = order_payload(727, total="29.35")
    o["line_items"][0].update(quantity=3, subtotal="6.00")  # 2.00 each: exact
    o["fee_lines"] = [{"id": 9, "name": "Gift wrap", "total": "5.00"},
                      {"id": 10, "name": "Loyalty credit", "total": "-5.00"}]
    r = mapping.order(o)
    assert r.lines[-1].sku == "fee-9" and r.lines[-1].unit_price == 500
    assert r.discount == 500  # the negative fee
    as_order_create(r, "woocommerce")

    o = order_payload(727, total="33.35")
    o["line_items"][0].update(quantity=3, subtotal="10.00")  # 3.33… each: rounded up to 334
    r = mapping.order(o)
    assert r.lines[0].unit_price == 334 and r.discount == 2
    as_order_create(r, "woocommerce")

    jpy = order_payload(723, currency="JPY", shipping_total="500", total="3400")
    jpy["line_items"][0].update(subtotal="900")
    jpy["line_items"][1].update(subtotal="2000")
    r = mapping.order(jpy)
    assert [li.unit_price for li in r.lines] == [900, 2000] and (r.shipping, r.total) == (500, 3400)

    for status in ("pending", "on-hold", "failed"):
        r = mapping.order(order_payload(727, status=status))
        assert r.paid_at is None, status
    cancelled = mapping.order(order_payload(727, status="cancelled", date_paid_gmt=None))
    assert cancelled.cancelled_at == "2017-03-22T19:28:08.000Z" and cancelled.paid_at is None
    assert mapping.order(order_payload(727, status="checkout-draft")) is None  # not an order yet
    assert mapping.order(order_payload(727, created_via="pos-rest-api")).channel == "store"
    assert mapping.order(order_payload(727, created_via="amazon"), {"amazon": "marketplace"}).channel == "marketplace"


@pytest.mark.parametrize("changes, reason", [
    ({"total": "100.00"}, "exceeds line items"),
    ({"line_items": []}, "no line items"),
    ({"billing": {"email": ""}}, "buyer cannot be identified"),
    ({"currency": ""}, "ISO 4217"),
    ({"total": "n/a"}, "not an amount"),
    ({"date_created_gmt": None}, "date_created_gmt"),
])
def test_unmappable_orders_are_rejected_with_a_reason(changes, reason):
    record = mapping.order(order_payload(727, **changes))
    assert isinstance(record, Rejected) and record.external_id == "727" and reason in record.reason


# config and check -----------------------------------------------------------------------

def test_config_refuses_plain_http_stores():
    with pytest.raises(ValidationError, match="https"):
        WooCommerceConfig(store_url="http://shop.example.com", consumer_key="ck", consumer_secret="cs")
    WooCommerceConfig(store_url="https://shop.example.com", consumer_key="ck", consumer_secret="cs")
    WooCommerceConfig(store_url="http://127.0.0.1:8080", consumer_key="ck", consumer_secret="cs")


def test_check_accepts_the_key_and_refuses_a_wrong_secret(store):
    rc, _ = context(store)
    WooCommerce().check(rc.config, rc.client)
    bad = rc.config.model_copy(update={"consumer_secret": "cs_wrong"})
    with pytest.raises(CheckFailed, match="consumer key") as err:
        WooCommerce().check(bad, WooCommerce().client(bad))
    assert err.value.status == 401
    elsewhere = rc.config.model_copy(update={"store_url": rc.config.store_url + "/blog"})
    with pytest.raises(CheckFailed, match="404"):
        WooCommerce().check(elsewhere, WooCommerce().client(elsewhere))


# reading ------------------------------------------------------------------------------

def test_full_read_with_throttles_yields_every_record_exactly_once(store):
    store.seed(customers=1200, orders=1200)
    store.throttle_every(4, retry_after="1")
    store.fail_next(1, 500)
    rc, sleeps = context(store, mode="backfill")

    customers, state, pages = read_stream(Customers, rc)
    assert len(pages) == 12 and all(p.total == 1200 for p in pages)
    assert sorted(int(r.external_id) for r in customers) == store.ids("customers")
    assert state["cursor"] == max(r.updated_at for r in customers)

    orders, _, pages = read_stream(Orders, rc)
    assert sorted(int(r.external_id) for r in orders) == store.ids("orders")
    assert all(isinstance(r, OrderRecord) for r in orders)
    guests = [r for r in orders if r.customer is None]
    assert len(guests) == 300 and all(r.email.startswith("guest.") for r in guests)
    for r in orders[:40]:
        as_order_create(r, "woocommerce")

    assert store.throttled >= 6 and sleeps.count(1.0) == store.throttled
    assert len(sleeps) == store.throttled + 1  # and one backoff for the 500
    assert all("per_page=100" in t and "orderby=id" in t for _, t in store.log if "orders" in t)
    assert not any("modified_after" in t for _, t in store.log)  # backfill: no filter


def test_long_retry_after_raises_and_the_page_checkpoint_resumes(store):
    store.seed(orders=1200)
    rc, sleeps = context(store, mode="backfill")
    pages = Orders().read(rc, {})
    got, state = [], {}
    for _ in range(3):
        page = next(pages)
        got += page.records
        state = page.state
    store.throttle_next(1, retry_after="3600")
    with pytest.raises(RateLimited):
        next(pages)
    assert state["page"] == 4 and sleeps == []
    json.loads(json.dumps(state))
    rest, final, _ = read_stream(Orders, context(store, mode="backfill")[0], state)
    ids = [r.external_id for r in got + rest]
    assert len(ids) == len(set(ids)) == 1200 and final["page"] is None


def test_boundary_timestamps_orders_and_customers(store):
    boundary = "2024-03-01T12:00:00Z"
    store.seed(customers=250, orders=450, updated_at=boundary)
    rc, _ = context(store)
    orders, ostate, pages = read_stream(Orders, rc)
    customers, cstate, _ = read_stream(Customers, rc)
    assert (len(orders), len(pages), len(customers)) == (450, 5, 250)
    assert ostate["cursor"] == cstate["cursor"] == "2024-03-01T12:00:00.000Z"

    oids, cids = store.ids("orders"), store.ids("customers")
    changed = [oids[0], oids[99], oids[100], oids[449]]  # on both sides of page boundaries
    for i in changed:
        store.update_order(i, status="completed")
    late = store.add_order(updated_at=boundary)
    for i in cids[::100]:
        store.update_customer(i, first_name="Changed")
    store.reset_counters()

    again, ostate, _ = read_stream(Orders, rc, ostate)
    assert sorted(int(r.external_id) for r in again) == sorted(changed + [late])
    assert any("modified_after=2024-03-01T11%3A55%3A00&dates_are_gmt=true" in t for _, t in store.log)
    customers, cstate, _ = read_stream(Customers, rc, cstate)  # no vendor filter: filtered here
    assert sorted(int(r.external_id) for r in customers) == cids[::100]
    assert all(r.profile["name"]["given"] == "Changed" for r in customers)
    assert read_stream(Orders, rc, ostate)[0] == [] and read_stream(Customers, rc, cstate)[0] == []


def test_customers_have_no_vendor_filter_so_the_window_filters_them(store):
    start = datetime(2024, 3, 1, tzinfo=timezone.utc)
    store.seed(customers=250, updated_at=lambda i: (start + timedelta(seconds=10 * i)).isoformat())
    rc, _ = context(store)
    first, state, _ = read_stream(Customers, rc)
    assert len(first) == 250 and len(state["seen"]) < 250  # only the lookback's tail is remembered
    ids = store.ids("customers")
    store.update_customer(ids[3], first_name="Changed")
    store.reset_counters()
    again, _, _ = read_stream(Customers, rc, state)
    assert [r.external_id for r in again] == [str(ids[3])]
    assert store.served == 3 and not any("modified_after" in t for _, t in store.log)  # a full scan


def test_orders_modified_during_a_read_do_not_shift_pages(store):
    """Pages are counted over id order, so an update while reading skips nothing (over
    ``orderby=modified`` it would move the order to the end and skip its neighbour)."""
    store.seed(orders=300)
    rc, _ = context(store)
    pages = Orders().read(rc, {})
    got = list(next(pages).records)
    ids = store.ids("orders")
    store.update_order(ids[50], status="completed")  # already read
    store.update_order(ids[250], status="completed")  # not yet
    for page in pages:
        got += page.records
    assert sorted(int(r.external_id) for r in got) == ids


def test_a_record_the_mapping_cannot_handle_is_rejected_not_raised(store):
    store.seed(customers=2, orders=2)
    bad = store.add_order(total="100000.00")
    orders, _, _ = read_stream(Orders, context(store)[0])
    rejected = [r for r in orders if isinstance(r, Rejected)]
    assert len(orders) == 3 and [r.external_id for r in rejected] == [str(bad)]
    assert "exceeds" in rejected[0].reason


# webhooks -----------------------------------------------------------------------------

def test_webhook_signature_topics_and_delivery_ids():
    conn = WooCommerce()
    config = WooCommerceConfig(store_url="https://shop.example.com", consumer_key="ck",
                               consumer_secret="cs", webhook_secret=SECRET)
    headers, body = FakeWooCommerce.webhook("order.created", order_payload(727), SECRET, delivery_id="d-1")
    conn.verify_webhook(config, headers, body)
    delivery = conn.parse_webhook(config, headers, body)
    assert (delivery.delivery_id, delivery.topic) == ("d-1", "order.created")
    [order] = delivery.records
    assert order.external_id == "727" and order.email == "john.doe@example.com" and order.total == 2935

    lower = {k.lower(): v for k, v in headers.items()}
    conn.verify_webhook(config, lower, body)
    assert conn.parse_webhook(config, lower, body).delivery_id == "d-1"
    assert conn.webhook_delivery_id(lower, body) == "d-1"  # what the intake dedupes on

    forged, _ = FakeWooCommerce.webhook("order.created", order_payload(727), "guess")
    for bad_headers, bad_body in ((forged, body), (headers, body.replace(b"29.35", b"0.01")),
                                  ({k: v for k, v in headers.items() if k != "X-WC-Webhook-Signature"}, body)):
        with pytest.raises(WebhookRejected):
            conn.verify_webhook(config, bad_headers, bad_body)
    with pytest.raises(WebhookRejected, match="secret"):
        conn.verify_webhook(config.model_copy(update={"webhook_secret": None}), headers, body)

    headers, body = FakeWooCommerce.webhook("customer.updated", CUSTOMER, SECRET)
    del headers["X-WC-Webhook-Delivery-ID"]
    delivery = conn.parse_webhook(config, headers, body)
    assert delivery.delivery_id.startswith("sha256:") and delivery.records[0].external_id == "25"

    # the ping WooCommerce sends when a webhook is saved: form-encoded, no topic to act on
    headers, body = FakeWooCommerce.webhook("action.woocommerce_webhook_ping", b"webhook_id=7", SECRET)
    conn.verify_webhook(config, headers, body)
    assert conn.parse_webhook(config, headers, body).records == []
    headers, body = FakeWooCommerce.webhook("order.updated", order_payload(723, line_items=[]), SECRET)
    [rejected] = conn.parse_webhook(config, headers, body).records
    assert isinstance(rejected, Rejected) and rejected.external_id == "723"
