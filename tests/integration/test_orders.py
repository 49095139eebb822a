"""Orders through the HTTP API: placing, idempotency, lifecycle, lists, the 360 view."""
from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import partition_items


def order_body(customer: dict, external_id: str = "1001", **overrides) -> dict:
    body = {
        "customer": customer, "source": "shopify", "external_id": external_id, "channel": "web",
        "currency": "EUR", "placed_at": "2026-03-01T10:00:00Z",
        "lines": [{"sku": "TEE-1", "name": "Tee", "category": "apparel", "quantity": 2, "unit_price": 1500},
                  {"sku": "MUG-1", "name": "Mug", "quantity": 1, "unit_price": 900}],
        "discount": 400, "shipping": 500, "tax": 0, "total": 4000,
    }
    body.update(overrides)
    return body


@pytest.fixture()
def customer(tenant) -> dict:
    return tenant.create_customer(email="buyer@example.com", external_ids={"shopify": "c-1"})


def test_place_an_order_by_id_email_or_external_id(tenant, customer):
    refs = [{"id": customer["id"]}, {"email": "BUYER@example.com"},
            {"source": "shopify", "external_id": "c-1"}]
    for i, ref in enumerate(refs):
        r = tenant.http.post("/v1/orders", json=order_body(ref, external_id=f"o-{i}"))
        assert r.status_code == 201, r.text
        order = r.json()
        assert order["customer_id"] == customer["id"]
        assert order["status"] == "placed" and order["subtotal"] == 3900 and order["total"] == 4000
        assert tenant.http.get(f"/v1/orders/{order['id']}").json() == order


def test_a_repeat_of_source_and_external_id_returns_the_original(tenant, customer, raw_table):
    first = tenant.http.post("/v1/orders", json=order_body({"id": customer["id"]}))
    before = partition_items(raw_table, tenant)
    again = tenant.http.post("/v1/orders", json=order_body({"id": customer["id"]}, channel="store"))
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    assert partition_items(raw_table, tenant) == before
    other = tenant.create_customer(email="other@example.com")
    clash = tenant.http.post("/v1/orders", json=order_body({"id": other["id"]}))
    assert clash.status_code == 409 and clash.json()["existing_order_id"] == first.json()["id"]


def test_lifecycle_pay_fulfill_and_refunds(tenant, customer):
    oid = tenant.http.post("/v1/orders", json=order_body({"id": customer["id"]})).json()["id"]
    assert tenant.http.post(f"/v1/orders/{oid}/fulfill", json={}).status_code == 409  # not paid
    paid = tenant.http.post(f"/v1/orders/{oid}/pay", json={}).json()
    assert paid["status"] == "paid" and paid["paid_at"]
    assert tenant.http.post(f"/v1/orders/{oid}/pay", json={}).json()["code"] == "illegal_transition"
    assert tenant.http.post(f"/v1/orders/{oid}/cancel", json={}).status_code == 409
    assert tenant.http.post(f"/v1/orders/{oid}/fulfill", json={}).json()["status"] == "fulfilled"
    part = tenant.http.post(f"/v1/orders/{oid}/refunds", json={"amount": 1000, "reason": "damaged"}).json()
    assert part["status"] == "partially_refunded" and part["refunded_amount"] == 1000
    too_much = tenant.http.post(f"/v1/orders/{oid}/refunds", json={"amount": 3001})
    assert too_much.status_code == 422 and too_much.json()["refundable"] == 3000
    wrong = tenant.http.post(f"/v1/orders/{oid}/refunds", json={"amount": 100, "currency": "USD"})
    assert wrong.status_code == 422 and wrong.json()["field"] == "currency"
    full = tenant.http.post(f"/v1/orders/{oid}/refunds", json={"amount": 3000}).json()
    assert full["status"] == "refunded" and [r["amount"] for r in full["refunds"]] == [1000, 3000]
    assert tenant.http.post(f"/v1/orders/{oid}/refunds", json={"amount": 1}).status_code == 409  # refunded


def test_cancel_an_unpaid_order_and_nothing_after(tenant, customer):
    oid = tenant.http.post("/v1/orders", json=order_body({"id": customer["id"]})).json()["id"]
    done = tenant.http.post(f"/v1/orders/{oid}/cancel", json={"reason": "changed mind"}).json()
    assert done["status"] == "cancelled" and done["cancel_reason"] == "changed mind"
    for action, body in (("pay", {}), ("refunds", {"amount": 1}), ("fulfill", {})):
        assert tenant.http.post(f"/v1/orders/{oid}/{action}", json=body).status_code == 409


BAD = [
    ("total mismatch", {"total": 4001}, "total"),
    ("negative quantity", {"lines": [{"sku": "x", "name": "x", "quantity": -1, "unit_price": 1}]}, "lines.0.quantity"),
    ("negative price", {"lines": [{"sku": "x", "name": "x", "quantity": 1, "unit_price": -5}]}, "lines.0.unit_price"),
    ("no lines", {"lines": []}, "lines"),
    ("bad channel", {"channel": "fax"}, "channel"),
    ("bad currency", {"currency": "euro"}, "currency"),
    ("naive time", {"placed_at": "2026-03-01T10:00:00"}, "placed_at"),
    ("discount over subtotal", {"discount": 999999, "total": 0}, "discount"),
]


@pytest.mark.parametrize("case,overrides,field", BAD, ids=[b[0] for b in BAD])
def test_bad_orders_get_422_and_write_nothing(tenant, customer, raw_table, case, overrides, field):
    before = partition_items(raw_table, tenant)
    r = tenant.http.post("/v1/orders", json=order_body({"id": customer["id"]}, **overrides))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert partition_items(raw_table, tenant) == before


def test_unknown_or_erased_customer_gets_422_and_writes_nothing(tenant, customer, raw_table):
    gone = tenant.create_customer(email="gone@example.com")
    tenant.http.delete(f"/v1/customers/{gone['id']}")
    before = partition_items(raw_table, tenant)
    for ref in ({"id": "cus_01ARZ3NDEKTSV4RRFFQ69G5FAV"}, {"email": "nobody@example.com"}, {"id": gone["id"]}):
        r = tenant.http.post("/v1/orders", json=order_body(ref))
        assert r.status_code == 422 and r.json()["field"] == "customer", r.text
    assert partition_items(raw_table, tenant) == before


def test_lists_per_tenant_and_per_customer_newest_first_with_dates(tenant, customer):
    other = tenant.create_customer(email="second@example.com")
    ids = []
    for day in range(1, 8):
        who = customer if day % 2 else other
        body = order_body({"id": who["id"]}, external_id=f"d{day}", placed_at=f"2026-04-0{day}T09:00:00Z")
        ids.append(tenant.http.post("/v1/orders", json=body).json()["id"])
    seen, cursor = [], None
    while True:
        page = tenant.http.get("/v1/orders", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [o["id"] for o in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == list(reversed(ids))
    window = tenant.http.get("/v1/orders", params={"placed_since": "2026-04-03T00:00:00Z",
                                                   "placed_before": "2026-04-05T09:00:00Z"}).json()
    assert [o["id"] for o in window["data"]] == [ids[3], ids[2]]
    mine, cursor = [], None
    while True:
        page = tenant.http.get("/v1/orders", params={"customer_id": customer["id"], "limit": 2,
                                                     **({"cursor": cursor} if cursor else {})}).json()
        mine += [o["id"] for o in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert mine == [ids[6], ids[4], ids[2], ids[0]]
    assert tenant.http.get("/v1/orders", params={"customer_id": "cus_01ARZ3NDEKTSV4RRFFQ69G5FAV"}).status_code == 404


def test_360_shows_the_latest_orders_with_their_status_in_one_view(tenant, customer):
    oids = [tenant.http.post("/v1/orders", json=order_body(
        {"id": customer["id"]}, external_id=f"r{i}", placed_at=f"2026-05-{i + 1:02d}T09:00:00Z")).json()["id"]
        for i in range(12)]
    tenant.http.post(f"/v1/orders/{oids[-1]}/pay", json={})
    tenant.http.post(f"/v1/customers/{customer['id']}/events", json={"type": "email.opened"})
    view = tenant.http.get(f"/v1/customers/{customer['id']}/360").json()
    assert [o["id"] for o in view["recent_orders"]] == list(reversed(oids))[:10]
    assert view["recent_orders"][0]["status"] == "paid"
    # the orders' entries are written with the orders (crm/timeline.py), no event hop
    wanted = {"email.opened": 1, "order.paid": 1, "order.placed": 12}
    assert Counter(e["type"] for e in view["timeline"]) == wanted
    events = tenant.http.get(f"/v1/customers/{customer['id']}/events").json()["data"]
    assert Counter(e["type"] for e in events) == wanted


def test_orders_need_order_scopes(api_url, tenant, customer):
    import httpx

    reader = tenant.key_with("customers:read", "orders:read")
    r = httpx.post(api_url + "/v1/orders", json=order_body({"id": customer["id"]}),
                   headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403 and r.json()["required_scope"] == "orders:write"
    assert httpx.get(api_url + "/v1/orders", headers={"Authorization": f"Bearer {reader}"}).status_code == 200


def test_another_tenant_cannot_see_or_touch_orders(tenant, other_tenant, customer):
    oid = tenant.http.post("/v1/orders", json=order_body({"id": customer["id"]})).json()["id"]
    for method, path, body in (("GET", f"/v1/orders/{oid}", None), ("POST", f"/v1/orders/{oid}/pay", {}),
                               ("POST", f"/v1/orders/{oid}/refunds", {"amount": 1}),
                               ("GET", f"/v1/orders?customer_id={customer['id']}", None)):
        assert other_tenant.http.request(method, path, json=body).status_code == 404, path
    assert other_tenant.http.get("/v1/orders").json()["data"] == []
    r = other_tenant.http.post("/v1/orders", json=order_body({"email": "buyer@example.com"}))
    assert r.status_code == 422  # B has no such customer; A's is not revealed
    assert tenant.http.get(f"/v1/orders/{oid}").json()["status"] == "placed"


@pytest.mark.parametrize("params", [{"placed_since": "0001-01-01T00:00:00Z"},
                                    {"placed_before": "0001-01-01T00:00:00Z"},
                                    {"placed_since": "9999-12-31T23:59:59Z"},
                                    {"placed_before": "9999-12-31T23:59:59Z"}])
def test_extreme_date_windows_are_422_not_500(tenant, customer, params):
    r = tenant.http.get("/v1/orders", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == next(iter(params))


def test_wide_date_windows_include_everything(tenant, customer):
    oid = tenant.http.post("/v1/orders", json=order_body({"id": customer["id"]})).json()["id"]
    r = tenant.http.get("/v1/orders", params={"placed_since": "1900-01-02T00:00:00Z",
                                              "placed_before": "9998-12-31T00:00:00Z"})
    assert [o["id"] for o in r.json()["data"]] == [oid]


@pytest.mark.parametrize("placed_at", ["1969-12-31T23:59:59Z", "2999-01-01T00:00:00Z"])
def test_placed_at_out_of_range_is_422(tenant, customer, placed_at):
    r = tenant.http.post("/v1/orders", json=order_body({"id": customer["id"]}, placed_at=placed_at))
    assert r.status_code == 422 and r.json()["field"] == "placed_at"


def test_date_windows_are_exact_to_the_millisecond(tenant, customer):
    body = order_body({"id": customer["id"]}, placed_at="2026-04-01T09:00:00.123Z")
    oid = tenant.http.post("/v1/orders", json=body).json()["id"]
    window = lambda **q: [o["id"] for o in tenant.http.get("/v1/orders", params=q).json()["data"]]  # noqa: E731
    assert window(placed_since="2026-04-01T09:00:00.123Z") == [oid]
    assert window(placed_since="2026-04-01T09:00:00.123500Z") == []
    assert window(placed_before="2026-04-01T09:00:00.123500Z") == [oid]
    assert window(placed_before="2026-04-01T09:00:00.123Z") == []


def test_list_by_status_follows_each_transition_in_one_query(tenant):
    from crm.orders import filters
    from tests.dynamo_calls import dynamodb_calls

    a = tenant.create_customer(email="status-a@example.com")["id"]
    b = tenant.create_customer(email="status-b@example.com")["id"]
    made = [tenant.http.post("/v1/orders", json=order_body(
        {"id": cid}, external_id=f"st-{i}", placed_at=f"2026-03-0{i + 1}T10:00:00Z")).json()["id"]
        for i, cid in enumerate([a, b, a, b, a])]
    for oid in made[:3]:
        assert tenant.http.post(f"/v1/orders/{oid}/pay", json={}).status_code == 200
    tenant.http.post(f"/v1/orders/{made[0]}/fulfill", json={})
    tenant.http.post(f"/v1/orders/{made[3]}/cancel", json={})

    def listed(status, **params):
        seen, cursor = [], None
        while True:
            page = tenant.http.get("/v1/orders", params={"status": status, **params,
                                                         **({"cursor": cursor} if cursor else {})})
            assert page.status_code == 200, page.text
            seen += [(o["id"], o["status"]) for o in page.json()["data"]]
            if not (cursor := page.json()["next_cursor"]):
                return seen
    assert listed("paid", limit=1) == [(made[2], "paid"), (made[1], "paid")]  # newest first
    assert listed("fulfilled") == [(made[0], "fulfilled")]
    assert listed("cancelled") == [(made[3], "cancelled")]
    assert listed("placed") == [(made[4], "placed")]
    assert listed("refunded") == []
    assert listed("paid", placed_since="2026-03-03T00:00:00Z") == [(made[2], "paid")]
    with dynamodb_calls() as calls:
        filters.by_status(tenant.ctx, "paid", limit=25)
    assert calls == {"Query": 1}, calls


def test_list_by_source_and_external_id_finds_the_one_order(tenant, customer):
    from crm.orders import filters
    from tests.dynamo_calls import dynamodb_calls

    placed = tenant.http.post("/v1/orders", json=order_body({"id": customer["id"]}, external_id="ext-77")).json()
    tenant.http.post("/v1/orders", json=order_body({"id": customer["id"]}, external_id="ext-78"))
    r = tenant.http.get("/v1/orders", params={"source": "shopify", "external_id": "ext-77"})
    assert r.status_code == 200, r.text
    assert r.json() == {"data": [placed], "next_cursor": None}
    for params in ({"source": "woocommerce", "external_id": "ext-77"},
                   {"source": "shopify", "external_id": "ext-77", "status": "paid"},
                   {"source": "shopify", "external_id": "nope"}):
        assert tenant.http.get("/v1/orders", params=params).json()["data"] == [], params
    with dynamodb_calls() as calls:
        filters.by_external_id(tenant.ctx, "shopify", "ext-77")
    assert calls == {"GetItem": 2}, calls


@pytest.mark.parametrize("params, field", [
    ({"source": "shopify"}, "external_id"), ({"external_id": "x"}, "source"),
    ({"status": "lost"}, "status"),
    ({"status": "paid", "customer_id": "cus_01ARZ3NDEKTSV4RRFFQ69G5FAV"}, "status")])
def test_order_list_filters_refuse_bad_combinations(tenant, params, field):
    r = tenant.http.get("/v1/orders", params=params)
    assert r.status_code == 422 and r.json()["field"] == field, r.text
