"""The Shopify connector against a fake Shopify over HTTP (tests/fakes/shopify.py), which
replays shopify_python_api's own customer and order fixtures."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from connectors.sdk import CheckFailed, RateLimited, WebhookRejected
from connectors.sdk.base import CustomerRecord, OrderRecord, ReadContext, Rejected
from connectors.shopify import Customers, Orders, Shopify, ShopifyConfig, mapping
from crm.customers.schemas import CustomerPatch
from tests.connector_helpers import Sleeps, as_order_create, read_stream
from tests.fakes import fixture
from tests.fakes.shopify import FakeShopify

SECRET = "whsec-shopify-test"
CUSTOMER = fixture("shopify", "python_api_customer.json")["customer"]
ORDER = fixture("shopify", "python_api_order.json")["order"]


@pytest.fixture
def shop():
    with FakeShopify() as fake:
        yield fake


def context(fake: FakeShopify, mode: str = "incremental", **options) -> tuple[ReadContext, Sleeps]:
    config = ShopifyConfig(shop_url=fake.url, access_token=fake.token, webhook_secret=SECRET)
    sleeps = Sleeps()
    return ReadContext(config, Shopify().client(config, sleep=sleeps, **options), mode), sleeps


# mapping of the real payloads ---------------------------------------------------------

def test_fixture_customer_maps_to_a_valid_profile():
    record = mapping.customer(copy.deepcopy(CUSTOMER))
    assert isinstance(record, CustomerRecord)
    assert record.external_id == "207119551"
    assert record.updated_at == "2015-05-27T22:11:24.000Z"  # -04:00 → UTC
    p = record.profile
    assert p["name"] == {"given": "Bob", "family": "Norman"}
    assert p["email"] == "bob.norman@hostmail.com"
    assert "phone" not in p  # 555-625-1199 is not a valid US number: dropped, record kept
    assert p["addresses"] == [{"line1": "Chestnut Street 92", "city": "Louisville", "region": "KY",
                               "postal_code": "40202", "country": "US", "label": "default"}]
    assert p["consent"] == {"email": {"status": "denied", "source": "shopify",
                                      "at": "2015-05-27T22:11:24.000Z"}}
    assert p["attributes"] == {"shopify_orders_count": 1, "shopify_total_spent": "41.94",
                               "shopify_state": "disabled", "shopify_verified_email": True}
    assert "tags" not in p  # "" → none
    CustomerPatch.model_validate(p)


def test_customer_variants_phone_tags_consent():
    c = copy.deepcopy(CUSTOMER)
    c["tags"] = "VIP, newsletter ,vip,#nope, ," + "x" * 65
    c["phone"] = "(415) 555-2671"  # national format: read with the address's country
    c.pop("accepts_marketing")
    c["email_marketing_consent"] = {"state": "subscribed", "opt_in_level": "single_opt_in",
                                    "consent_updated_at": "2024-01-02T03:04:05-05:00"}
    p = mapping.customer(c).profile
    assert p["tags"] == ["VIP", "newsletter"]
    assert p["phone"] == "+14155552671"
    assert p["consent"]["email"] == {"status": "granted", "source": "shopify", "at": "2024-01-02T08:04:05.000Z"}
    CustomerPatch.model_validate(p)

    c["phone"], c["email"] = "+44 20 7946 0958", "not an email"
    p = mapping.customer(c).profile
    assert p["phone"] == "+442079460958" and "email" not in p
    assert isinstance(mapping.customer({"email": "x@example.com"}), Rejected)
    bad = mapping.customer({**CUSTOMER, "updated_at": "yesterday"})
    assert isinstance(bad, Rejected) and bad.external_id == "207119551" and "updated_at" in bad.reason


def test_fixture_order_reconciles_discount_and_resolves_the_buyer():
    record = mapping.order(copy.deepcopy(ORDER))
    assert isinstance(record, OrderRecord), record
    assert record.external_id == "450789469" and record.currency == "USD"
    assert [(li.sku, li.name, li.quantity, li.unit_price) for li in record.lines] == [
        ("IPOD2008GREEN", "IPod Nano - 8gb - green", 1, 19900),
        ("IPOD2008RED", "IPod Nano - 8gb - red", 1, 19900),
        ("IPOD2008BLACK", "IPod Nano - 8gb - black", 1, 19900)]
    # 3 × 199.00 + 0 shipping + 11.94 tax - 409.94 total: the 199.00 Shopify's own totals leave out
    assert (record.shipping, record.tax, record.total, record.discount) == (0, 1194, 40994, 19900)
    assert record.placed_at == "2008-01-10T16:00:00.000Z"
    assert record.channel == "web"
    assert record.paid_at is None  # financial_status "authorized" is not paid
    assert record.fulfilled_at is None and record.cancelled_at is None and record.refunds == []
    assert record.customer.external_id == "207119551"
    assert record.customer.profile["email"] == "bob.norman@hostmail.com"
    assert record.email is None
    as_order_create(record, "shopify")


def test_order_status_refunds_channels_and_currencies():
    o = copy.deepcopy(ORDER)
    o.update(financial_status="partially_refunded", fulfillment_status="fulfilled",
             processed_at="2008-01-10T12:00:00-05:00", source_name="pos",
             cancelled_at="2008-01-12T10:00:00-05:00", cancel_reason="customer")
    o["fulfillments"].append({**o["fulfillments"][0], "id": 1, "status": "success",
                              "created_at": "2014-01-23T10:00:00-05:00"})
    o["refunds"] = [
        {"id": 509562969, "created_at": "2014-01-24T10:00:00-05:00", "note": "it broke",
         "transactions": [{"kind": "refund", "status": "success", "amount": "41.94"},
                          {"kind": "refund", "status": "failure", "amount": "10.00"}]},
        {"id": 509562970, "created_at": "2014-01-25T10:00:00-05:00", "transactions": [],
         "refund_line_items": [{"quantity": 1, "subtotal": "199.00", "total_tax": "11.94"}]},
        {"id": 509562971, "created_at": "2014-01-26T10:00:00-05:00",
         "transactions": [{"kind": "refund", "status": "pending", "amount": "5.00"}]},
    ]
    r = mapping.order(o)
    assert r.channel == "store"
    assert r.placed_at == r.paid_at == "2008-01-10T17:00:00.000Z"  # processed_at
    assert r.fulfilled_at == "2014-01-23T15:00:00.000Z"  # the successful fulfilment, not the failed one
    assert (r.cancelled_at, r.cancel_reason) == ("2008-01-12T15:00:00.000Z", "customer")
    assert [(x.reference, x.amount, x.refunded_at, x.reason) for x in r.refunds] == [
        ("509562969", 4194, "2014-01-24T15:00:00.000Z", "it broke"),
        ("509562970", 21094, "2014-01-25T15:00:00.000Z", None)]  # the pending one is not refunded yet

    for source, expected in (("web", "web"), ("iphone", "mobile"), ("android", "mobile"),
                             ("shopify_draft_order", "web"), ("580111", "web")):
        assert mapping.order({**ORDER, "source_name": source}).channel == expected
    assert mapping.order({**ORDER, "source_name": "580111"}, {"580111": "marketplace"}).channel == "marketplace"
    assert mapping.order({**ORDER, "financial_status": "paid"}).paid_at == "2008-01-10T16:00:00.000Z"
    for unpaid in ("pending", "authorized", "partially_paid", "voided"):
        assert mapping.order({**ORDER, "financial_status": unpaid}).paid_at is None
    assert mapping.order({**ORDER, "fulfillment_status": "fulfilled"}).fulfilled_at == \
        "2008-01-10T16:00:00.000Z"  # only a failed fulfilment: the order's updated_at

    jpy = copy.deepcopy(ORDER)
    jpy.update(currency="JPY", total_tax="120", total_price="5000")
    for li in jpy["line_items"]:
        li["price"] = "1990"
    r = mapping.order(jpy)
    assert [li.unit_price for li in r.lines] == [1990] * 3 and (r.tax, r.total, r.discount) == (120, 5000, 1090)
    kwd = {**ORDER, "currency": "KWD", "total_tax": "0.125", "total_price": "597.125"}
    r = mapping.order(kwd)
    assert (r.lines[0].unit_price, r.tax, r.total, r.discount) == (199000, 125, 597125, 0)

    incl = mapping.order({**ORDER, "taxes_included": True, "total_price": "597.00"})
    assert (incl.tax, incl.discount, incl.total) == (0, 0, 59700)
    as_order_create(incl, "shopify")

    guest = mapping.order({**ORDER, "customer": None, "email": "Guest@Example.COM"})
    assert guest.customer is None and guest.email == "guest@example.com"
    as_order_create(guest, "shopify")
    shipped = copy.deepcopy(ORDER)
    shipped["shipping_lines"] = [{"price": "5.00"}, {"price": "2.50"}]
    shipped["total_price"] = "417.44"
    r = mapping.order(shipped)
    assert (r.shipping, r.discount) == (750, 19900)
    as_order_create(r, "shopify")


@pytest.mark.parametrize("change, reason", [
    ({"total_price": "999.00"}, "exceeds line items"),
    ({"line_items": []}, "no line items"),
    ({"currency": "dollars"}, "ISO 4217"),
    ({"total_price": "abc"}, "not an amount"),
    ({"customer": None, "email": None}, "buyer cannot be identified"),
    ({"created_at": "10/01/2008", "updated_at": None}, "450789469"),
])
def test_unmappable_orders_are_rejected_with_a_reason(change, reason):
    record = mapping.order({**copy.deepcopy(ORDER), **change})
    assert isinstance(record, Rejected)
    assert record.external_id == "450789469" and reason in record.reason
    assert isinstance(mapping.order("not an object"), Rejected)


# config and check -----------------------------------------------------------------------

def test_config_refuses_plain_http_and_unknown_fields():
    with pytest.raises(ValidationError, match="https"):
        ShopifyConfig(shop_url="http://example.myshopify.com", access_token="t")
    with pytest.raises(ValidationError):
        ShopifyConfig(shop_url="https://example.myshopify.com", access_token="t", password="x")
    assert ShopifyConfig(shop_url="https://example.myshopify.com/", access_token="t").shop_url == \
        "https://example.myshopify.com"
    assert "x-rapport-secret" in json.dumps(ShopifyConfig.model_json_schema()["properties"]["access_token"])


def test_check_accepts_the_token_and_refuses_a_wrong_one(shop):
    rc, _ = context(shop)
    Shopify().check(rc.config, rc.client)
    bad = ShopifyConfig(shop_url=shop.url, access_token="shpat_wrong")
    with pytest.raises(CheckFailed, match="access token") as err:
        Shopify().check(bad, Shopify().client(bad))
    assert err.value.status == 401
    nowhere = ShopifyConfig(shop_url=shop.url, access_token=shop.token, api_version="2019-01")
    with pytest.raises(CheckFailed, match="404"):
        Shopify().check(nowhere, Shopify().client(nowhere))


# reading ------------------------------------------------------------------------------

def test_full_read_with_throttles_yields_every_record_exactly_once(shop):
    shop.seed(customers=1200, orders=1200)
    cancelled = shop.ids("orders")[7]
    shop.update_order(cancelled, cancelled_at="2024-03-01T05:00:00-05:00", cancel_reason="fraud")
    shop.throttle_every(3, retry_after="0.5")
    shop.fail_next(1, 502)
    rc, sleeps = context(shop, mode="backfill")

    customers, state, pages = read_stream(Customers, rc)
    ids = [r.external_id for r in customers]
    assert len(ids) == 1200 and set(ids) == {str(i) for i in shop.ids("customers")}
    assert len(pages) == 5  # 250 a page
    assert all(isinstance(r, CustomerRecord) for r in customers)
    assert state["cursor"] == max(r.updated_at for r in customers) and state["page"] is None

    orders, _, _ = read_stream(Orders, rc)
    assert sorted(int(r.external_id) for r in orders) == shop.ids("orders")
    assert next(r for r in orders if r.external_id == str(cancelled)).cancel_reason == "fraud"
    assert all(isinstance(r, OrderRecord) and r.customer is not None for r in orders)
    for r in orders[:50]:
        as_order_create(r, "shopify")

    assert shop.throttled >= 4 and sleeps.count(0.5) == shop.throttled  # each Retry-After slept
    assert len(sleeps) == shop.throttled + 1  # and one backoff for the 502
    listed = [t for _, t in shop.log if "count.json" not in t]
    first, then = listed[0], [t for t in listed[1:] if "page_info" in t]
    assert "limit=250" in first and "updated_at_min" not in first  # backfill: no filter
    assert then and all("status" not in t and "updated_at_min" not in t for t in then)
    assert any("status=any" in t for _, t in shop.log)


def test_long_retry_after_raises_and_the_checkpoint_resumes_without_loss(shop):
    shop.seed(customers=1200)
    rc, sleeps = context(shop, mode="backfill")
    got, state = [], {}
    pages = Customers().read(rc, {})
    for _ in range(2):
        page = next(pages)
        got += page.records
        state = page.state
    shop.throttle_next(1, retry_after="120")
    with pytest.raises(RateLimited) as err:
        next(pages)
    assert err.value.retry_after == 120 and 120 not in sleeps  # handed over, not slept
    assert state["page"] and "page_info=" in state["page"]

    json.loads(json.dumps(state))  # the checkpoint is plain JSON
    rc2, _ = context(shop, mode="backfill")
    rest, final, _ = read_stream(Customers, rc2, state)
    ids = [r.external_id for r in got + rest]
    assert len(ids) == len(set(ids)) == 1200
    assert final["cursor"] is not None and final["page"] is None


def test_boundary_timestamps_are_neither_lost_nor_read_twice(shop):
    boundary = "2024-03-01T12:00:00Z"
    shop.seed(customers=600, updated_at=boundary)  # 600 records in one second, over 3 pages
    rc, _ = context(shop)
    first, state, pages = read_stream(Customers, rc)
    assert len(first) == 600 and len(pages) == 3
    assert state["cursor"] == "2024-03-01T12:00:00.000Z"

    ids = shop.ids("customers")
    changed = [ids[10], ids[300], ids[599]]
    for i in changed:
        shop.update_customer(i, first_name="Changed")
    late = shop.add_customer(updated_at=boundary)  # indexed late, at the boundary second
    shop.reset_counters()
    second, state, _ = read_stream(Customers, rc, state)
    assert sorted(int(r.external_id) for r in second) == sorted(changed + [late])
    assert all(r.profile["name"]["given"] == "Changed" for r in second if int(r.external_id) in changed)
    # the window's count (for progress) and its first page both start at the cursor minus the lookback
    assert "count.json" in shop.log[0][1] and "updated_at_min=2024-03-01T11%3A55%3A00Z" in shop.log[0][1]
    assert "updated_at_min=2024-03-01T11%3A55%3A00Z" in shop.log[1][1]

    third, state, _ = read_stream(Customers, rc, state)
    assert third == []  # the overlap is re-read but nothing in it is new


def test_an_update_made_while_a_long_window_is_read_is_not_skipped(shop, monkeypatch):
    """The cursor never passes the window's start: an update behind the pages already read
    is picked up by the next window even when a later record carries a later stamp."""
    import common.clock

    monkeypatch.setattr(common.clock, "now", lambda: datetime(2024, 3, 1, 20, 0, tzinfo=timezone.utc))
    shop.seed(customers=600)
    rc, _ = context(shop)
    pages = Customers().read(rc, {})
    got = next(pages).records
    ids = shop.ids("customers")
    shop.update_customer(ids[5], updated_at="2024-03-01T21:00:00Z", first_name="Behind")
    shop.update_customer(ids[500], updated_at="2024-03-01T22:00:00Z")
    state = None
    for page in pages:
        got += page.records
        state = page.state
    assert len(got) == 600 and state["cursor"] == "2024-03-01T20:00:00.000Z"
    again, _, _ = read_stream(Customers, rc, state)
    assert [r.external_id for r in again] == [str(ids[5])]


def test_a_record_the_mapping_cannot_handle_is_rejected_not_raised(shop):
    shop.seed(customers=3, orders=3)
    bad = shop.add_order(total_price="99999.00")
    rc, _ = context(shop)
    orders, _, _ = read_stream(Orders, rc)
    assert len(orders) == 4
    rejected = [r for r in orders if isinstance(r, Rejected)]
    assert [r.external_id for r in rejected] == [str(bad)] and "exceeds" in rejected[0].reason


# webhooks -----------------------------------------------------------------------------

def test_webhook_signature_topics_and_delivery_ids():
    conn = Shopify()
    config = ShopifyConfig(shop_url="https://fake.myshopify.com", access_token="t", webhook_secret=SECRET)
    headers, body = FakeShopify.webhook("orders/create", ORDER, SECRET, webhook_id="b54557e4-bdd9-4b37")
    conn.verify_webhook(config, headers, body)
    delivery = conn.parse_webhook(config, headers, body)
    assert delivery.delivery_id == "b54557e4-bdd9-4b37" and delivery.topic == "orders/create"
    [order] = delivery.records
    assert isinstance(order, OrderRecord) and order.external_id == "450789469" and order.discount == 19900

    lower = {k.lower(): v for k, v in headers.items()}  # API Gateway hands header names lower-cased
    conn.verify_webhook(config, lower, body)
    assert conn.webhook_delivery_id(lower, body) == "b54557e4-bdd9-4b37"  # what the intake dedupes on
    upper = {k.upper(): v for k, v in headers.items()}
    conn.verify_webhook(config, upper, body)
    assert conn.parse_webhook(config, upper, body).delivery_id == "b54557e4-bdd9-4b37"

    forged, _ = FakeShopify.webhook("orders/create", ORDER, "someone-else")
    for bad_headers, bad_body in ((forged, body), (headers, body + b" "),
                                  ({k: v for k, v in headers.items() if k != "X-Shopify-Hmac-Sha256"}, body),
                                  ({**headers, "X-Shopify-Hmac-Sha256": ""}, body)):
        with pytest.raises(WebhookRejected):
            conn.verify_webhook(config, bad_headers, bad_body)
    with pytest.raises(WebhookRejected, match="secret"):
        conn.verify_webhook(config.model_copy(update={"webhook_secret": None}), headers, body)

    headers, body = FakeShopify.webhook("customers/update", CUSTOMER, SECRET)
    del headers["X-Shopify-Webhook-Id"]
    delivery = conn.parse_webhook(config, headers, body)
    assert delivery.delivery_id == conn.parse_webhook(config, headers, body).delivery_id  # stable
    assert delivery.delivery_id.startswith("sha256:")
    assert isinstance(delivery.records[0], CustomerRecord) and delivery.records[0].external_id == "207119551"

    headers, body = FakeShopify.webhook("products/create", {"id": 1}, SECRET)
    assert conn.parse_webhook(config, headers, body).records == []
    headers, body = FakeShopify.webhook("orders/updated", {**ORDER, "line_items": []}, SECRET)
    conn.verify_webhook(config, headers, body)
    [rejected] = conn.parse_webhook(config, headers, body).records
    assert isinstance(rejected, Rejected) and rejected.external_id == "450789469"


def test_each_window_tells_its_size_for_progress_bars(shop):
    shop.seed(customers=600)
    rc, _ = context(shop, mode="backfill")
    pages = list(Customers().read(rc, {}))
    assert [p.total for p in pages] == [600, 600, 600]
    state = pages[-1].state
    shop.update_customer(shop.ids("customers")[7], first_name="New")
    rc, _ = context(shop)
    pages = list(Customers().read(rc, state))
    assert pages[0].total is not None and pages[0].total >= 1  # the overlap is counted too
