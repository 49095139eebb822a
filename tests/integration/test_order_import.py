"""Batch import of orders in their vendor's state (crm/orders/imports.py) against the
emulator: final-state inserts, convergence, idempotency, loyalty points through the real
event pipeline, and the request counts the module documents."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from crm.orders.imports import import_orders
from tests.conftest import partition_items
from tests.dynamo_calls import dynamodb_calls
from tests.loyalty_helpers import iso
from tests.streams import StreamTail

PROGRAM = {
    "earns_from": "2000-01-01T00:00:00Z",  # backdated orders earn (default: the program's creation)
    "currency": "EUR", "earn_rates": {"EUR": 1}, "rounding": "floor",
    "channel_multipliers": {"mobile": 2}, "first_order_bonus": 50, "tier_basis": "spend",
    "tiers": [{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 20000, "multiplier": 2}],
    "return_window_days": 30, "expiry_months": 12,
}
NOW = datetime.now(timezone.utc)


def vendor_order(customer_id: str, xid: str, *, total: int = 10000, placed_days_ago: float = 3,
                 **state) -> dict:
    return {"external_id": xid, "customer_id": customer_id, "channel": "mobile", "currency": "EUR",
            "lines": [{"sku": "S-1", "name": "Thing", "category": "apparel", "quantity": 1, "unit_price": total}],
            "discount": 0, "shipping": 0, "tax": 0, "total": total,
            "placed_at": iso(NOW - timedelta(days=placed_days_ago)), **state}


@pytest.fixture()
def shop(tenant):
    r = tenant.http.put("/v1/loyalty/program", json=PROGRAM)
    assert r.status_code == 201, r.text
    return tenant


def get_order(tenant, oid: str) -> dict:
    r = tenant.http.get(f"/v1/orders/{oid}")
    assert r.status_code == 200, r.text
    return r.json()


def loyalty(tenant, cid: str) -> dict:
    r = tenant.http.get(f"/v1/customers/{cid}/loyalty")
    assert r.status_code == 200, r.text
    return r.json()


def ledger(tenant, cid: str) -> list[dict]:
    return tenant.http.get(f"/v1/customers/{cid}/loyalty/ledger").json()["data"]


def stored_loyalty(raw_table, tenant, cid: str, oid: str) -> dict:
    """The order's loyalty stamp as stored (the API shows it without program_at_payment)."""
    import json

    item = raw_table.get_item(Key={"pk": f"T#{tenant.id}#C#{cid}", "sk": f"A#ORD#{oid}"},
                              ConsistentRead=True)["Item"]
    return json.loads(item["data"])["loyalty"]


def fresh_tail(table: str) -> StreamTail:
    """A StreamTail past every record so far (its first read starts at the shard's start)."""
    tail = StreamTail(table)
    tail.records()
    return tail


def tenant_records(tail: StreamTail, tenant) -> list[dict]:
    return [r for r in tail.records() if r["dynamodb"]["Keys"]["pk"]["S"].startswith(f"T#{tenant.id}#")]


def test_a_new_paid_order_earns_exactly_as_an_api_order(shop, event_pipeline, table, raw_table):
    from functions.dispatch import events_of

    api_cid = shop.create_customer(email="api@example.com")["id"]
    imp_cid = shop.create_customer(email="imp@example.com")["id"]
    paid_at = iso(NOW - timedelta(days=2))
    body = vendor_order(api_cid, "api-1")
    placed = shop.http.post("/v1/orders", json={
        **{k: v for k, v in body.items() if k not in ("customer_id",)},
        "customer": {"id": api_cid}, "source": "shop"}).json()
    api_order = shop.http.post(f"/v1/orders/{placed['id']}/pay", json={"paid_at": paid_at}).json()

    tail = fresh_tail(table)
    [res] = import_orders(shop.ctx, "shop", [vendor_order(imp_cid, "imp-1", paid_at=paid_at)])
    assert res.status == "created", res
    order = get_order(shop, res.order_id)
    assert order["status"] == "paid" and order["paid_at"] == paid_at
    assert order["loyalty"] == api_order["loyalty"] == {"tier": "Bronze", "birthday": False, "first": True}
    assert stored_loyalty(raw_table, shop, imp_cid, res.order_id) == \
        stored_loyalty(raw_table, shop, api_cid, api_order["id"]) == {
            "tier": "Bronze", "birthday": False, "first": True, "program_at_payment": True}
    # one INSERT of the order stands for both events
    events = [e for r in tenant_records(tail, shop) for e in events_of(r)
              if e["data"].get("order_id") == res.order_id]
    assert sorted(e["type"] for e in events) == ["order.paid", "order.placed"]

    assert event_pipeline.wait_idle(timeout=60)
    mine, theirs = loyalty(shop, imp_cid), loyalty(shop, api_cid)
    assert (mine["pending"], mine["available"], mine["lifetime_earned"]) == (200 + 50, 0, 250)
    for k in ("pending", "available", "lifetime_earned", "tier"):
        assert mine[k] == theirs[k], k
    [entry] = ledger(shop, imp_cid)
    [api_entry] = ledger(shop, api_cid)
    assert entry["type"] == "pending" and entry["source"] == f"order.paid:{res.order_id}"
    assert (entry["points"], entry["detail"]) == (api_entry["points"], api_entry["detail"])


def test_a_repeat_is_unchanged_writes_nothing_and_never_undoes(tenant, table):
    cid = tenant.create_customer(email="rep@example.com")["id"]
    batch = [vendor_order(cid, "r-placed"),
             vendor_order(cid, "r-paid", paid_at=iso(NOW - timedelta(days=2))),
             vendor_order(cid, "r-done", paid_at=iso(NOW - timedelta(days=2)),
                          fulfilled_at=iso(NOW - timedelta(days=1))),
             vendor_order(cid, "r-cancel", cancelled_at=iso(NOW - timedelta(days=1)), cancel_reason="oos"),
             vendor_order(cid, "r-refund", total=4000, paid_at=iso(NOW - timedelta(days=2)),
                          refunds=[{"reference": "re-1", "amount": 1000, "reason": "damaged"}])]
    first = import_orders(tenant.ctx, "shop", batch)
    assert [r.status for r in first] == ["created"] * 5
    states = [get_order(tenant, r.order_id) for r in first]
    assert [o["status"] for o in states] == ["placed", "paid", "fulfilled", "cancelled", "partially_refunded"]
    assert states[3]["cancel_reason"] == "oos"
    assert states[4]["refunds"][0]["reference"] == "re-1" and states[4]["refunded_amount"] == 1000

    tail = fresh_tail(table)
    with dynamodb_calls() as calls:
        again = import_orders(tenant.ctx, "shop", batch)
    assert [(r.status, r.order_id) for r in again] == [("unchanged", r.order_id) for r in first]
    assert calls == {"BatchGetItem": 2}, calls
    # older versions (before payment, before the refund) change nothing either
    older = [vendor_order(cid, "r-paid"), vendor_order(cid, "r-refund", total=4000,
                                                       paid_at=iso(NOW - timedelta(days=2)))]
    assert [r.status for r in import_orders(tenant.ctx, "shop", older)] == ["unchanged"] * 2
    assert tenant_records(tail, tenant) == []
    assert [get_order(tenant, r.order_id) for r in first] == states


def test_a_vendor_refund_is_applied_once_and_reverses_points(shop, event_pipeline):
    cid = shop.create_customer(email="refund@example.com")["id"]
    paid = vendor_order(cid, "v-1", paid_at=iso(NOW - timedelta(days=2)))
    [res] = import_orders(shop.ctx, "shop", [paid])
    assert event_pipeline.wait_idle(timeout=60)
    assert loyalty(shop, cid)["pending"] == 250

    refunded = {**paid, "refunds": [{"reference": "re_1", "amount": 5000, "reason": "returned"}]}
    assert import_orders(shop.ctx, "shop", [refunded])[0].status == "updated"
    assert import_orders(shop.ctx, "shop", [refunded])[0].status == "unchanged"
    assert import_orders(shop.ctx, "shop", [paid])[0].status == "unchanged"  # an older version
    order = get_order(shop, res.order_id)
    assert order["status"] == "partially_refunded" and order["refunded_amount"] == 5000
    assert [(r["reference"], r["amount"]) for r in order["refunds"]] == [("re_1", 5000)]
    assert event_pipeline.wait_idle(timeout=60)
    view = loyalty(shop, cid)
    assert view["pending"] == 250 - 125 and view["lifetime_earned"] == 125
    assert sorted(e["type"] for e in ledger(shop, cid)) == ["pending", "reverse"]


def test_a_refund_reference_is_idempotent_through_the_api_too(tenant):
    cid = tenant.create_customer(email="ref@example.com")["id"]
    body = {**vendor_order(cid, "a-1"), "customer": {"id": cid}, "source": "shop"}
    del body["customer_id"]
    oid = tenant.http.post("/v1/orders", json=body).json()["id"]
    tenant.http.post(f"/v1/orders/{oid}/pay", json={})
    first = tenant.http.post(f"/v1/orders/{oid}/refunds", json={"amount": 300, "reference": "pay_re_9"})
    assert first.status_code == 200 and first.json()["refunds"][0]["reference"] == "pay_re_9"
    again = tenant.http.post(f"/v1/orders/{oid}/refunds", json={"amount": 300, "reference": "pay_re_9"})
    assert again.status_code == 200 and again.json() == first.json()
    other = tenant.http.post(f"/v1/orders/{oid}/refunds", json={"amount": 300, "reference": "pay_re_10"})
    assert other.json()["refunded_amount"] == 600 and len(other.json()["refunds"]) == 2
    # the vendor's record of the same refund is recognised by its reference
    vendor = vendor_order(cid, "a-1", paid_at=iso(NOW), refunds=[{"reference": "pay_re_9", "amount": 300}])
    assert import_orders(tenant.ctx, "shop", [vendor])[0].status == "unchanged"
    assert len(get_order(tenant, oid)["refunds"]) == 2
    bad = tenant.http.post(f"/v1/orders/{oid}/refunds", json={"amount": 1, "reference": ""})
    assert bad.status_code == 422 and bad.json()["field"] == "reference"


def test_another_customer_or_an_illegal_move_is_an_error_and_writes_nothing(tenant, raw_table):
    a = tenant.create_customer(email="a@example.com")["id"]
    b = tenant.create_customer(email="b@example.com")["id"]
    paid_at = iso(NOW - timedelta(days=1))
    first = import_orders(tenant.ctx, "shop", [vendor_order(a, "x-1", paid_at=paid_at),
                                               vendor_order(a, "x-2", cancelled_at=paid_at)])
    assert [r.status for r in first] == ["created", "created"]
    before = partition_items(raw_table, tenant)
    out = import_orders(tenant.ctx, "shop", [
        vendor_order(b, "x-1", paid_at=paid_at),                       # another customer
        vendor_order(a, "x-1", cancelled_at=paid_at),                  # cancel a paid order
        vendor_order(a, "x-2", paid_at=paid_at),                       # pay a cancelled one
        vendor_order(a, "x-1", paid_at=paid_at, refunds=[{"reference": "r", "amount": 10001}]),
    ])
    assert [r.status for r in out] == ["error"] * 4
    assert out[0].error.code == "conflict" and out[0].error.extra["existing_customer_id"] == a
    assert out[0].order_id == first[0].order_id
    assert out[1].error.extra["code"] == "illegal_transition" and out[1].error.extra["current_status"] == "paid"
    assert out[2].error.extra["code"] == "illegal_transition"
    assert out[3].errors and out[3].errors[0]["field"] == "refunds"
    assert partition_items(raw_table, tenant) == before


def test_invalid_records_are_errors_and_only_the_valid_are_written(tenant, raw_table):
    cid = tenant.create_customer(email="inv@example.com")["id"]
    good = vendor_order(cid, "ok")
    out = import_orders(tenant.ctx, "shop", [
        good,
        {**vendor_order(cid, "bad-total"), "total": 1},
        {k: v for k, v in vendor_order(cid, "no-customer").items() if k != "customer_id"},
        vendor_order(cid, "unpaid-fulfilled", fulfilled_at=iso(NOW)),
        vendor_order(cid, "cancel-paid", paid_at=iso(NOW), cancelled_at=iso(NOW)),
        vendor_order(cid, "bad-refund", paid_at=iso(NOW), refunds=[{"amount": 5}]),
        {**vendor_order(cid, "extra"), "coupon": "X"},
        vendor_order("cus_01ARZ3NDEKTSV4RRFFQ69G5FAV", "ghost"),
        vendor_order(cid, "future", paid_at=iso(NOW + timedelta(days=3))),
    ])
    assert [r.status for r in out] == ["created"] + ["error"] * 8
    fields = [[e["field"] for e in r.errors] for r in out[1:7]]
    assert fields == [["total"], ["customer_id"], ["fulfilled_at"], ["cancelled_at"],
                      ["refunds.0.reference"], ["coupon"]]
    assert out[7].error.field == "records[7].customer_id"
    assert [e["field"] for e in out[8].errors] == ["paid_at"]
    orders = [i for i in partition_items(raw_table, tenant) if i["sk"].startswith("A#ORD#")]
    assert [o["order_id"] for o in orders] == [out[0].order_id]


def test_the_same_external_id_twice_in_one_call_converges(tenant):
    cid = tenant.create_customer(email="twice@example.com")["id"]
    out = import_orders(tenant.ctx, "shop", [vendor_order(cid, "t-1"),
                                             vendor_order(cid, "t-1", paid_at=iso(NOW))])
    assert [r.status for r in out] == ["created", "updated"] and out[0].order_id == out[1].order_id
    assert get_order(tenant, out[0].order_id)["status"] == "paid"


def test_150_orders_of_30_customers_in_one_call(shop, raw_table):
    rng = random.Random(7)
    cids = [shop.create_customer(email=f"bulk{i}@example.com")["id"] for i in range(30)]
    # one customer has an order already: none of its imported orders is its first
    veteran = cids[0]
    [prior] = import_orders(shop.ctx, "pos", [vendor_order(veteran, "old", placed_days_ago=300)])
    batch = [vendor_order(cid, f"b-{i}-{n}", total=1000 + n, placed_days_ago=rng.uniform(1, 200),
                          **({"paid_at": iso(NOW - timedelta(hours=1))} if n % 2 else {}))
             for i, cid in enumerate(cids) for n in range(5)]
    rng.shuffle(batch)
    with dynamodb_calls() as calls:
        out = import_orders(shop.ctx, "shop", batch)
    assert [r.status for r in out] == ["created"] * 150
    # 30 x (profile check + ORDERS) + 150 x (guard, order, pointer, order.placed entry)
    # + 75 order.paid entries = 735 items: 8 transactions of at most 100
    assert calls == {"BatchGetItem": 3, "TransactWriteItems": 8}, calls
    for cid in cids:
        page = shop.http.get("/v1/orders", params={"customer_id": cid, "limit": 10}).json()["data"]
        mine = [o for o in page if o["source"] == "shop"]
        assert len(mine) == 5
        firsts = [o for o in page if o["loyalty"]["first"]]
        if cid == veteran:
            assert [o["id"] for o in firsts] == [prior.order_id]
        else:
            assert [o["id"] for o in firsts] == [min(mine, key=lambda o: o["placed_at"])["id"]]
        assert all(stored_loyalty(raw_table, shop, cid, o["id"])["program_at_payment"] is True
                   for o in mine if o["paid_at"])
        summary = shop.http.get(f"/v1/customers/{cid}/360").json()["recent_orders"]
        assert sorted(s["id"] for s in summary) == sorted(o["id"] for o in page)
    with dynamodb_calls() as calls:
        again = import_orders(shop.ctx, "shop", batch)
    assert {r.status for r in again} == {"unchanged"} and calls == {"BatchGetItem": 4}, calls


def test_more_orders_of_one_customer_than_a_transaction_holds(tenant):
    cid = tenant.create_customer(email="many@example.com")["id"]
    batch = [vendor_order(cid, f"m-{n}", placed_days_ago=50 - n) for n in range(40)]
    with dynamodb_calls() as calls:
        out = import_orders(tenant.ctx, "shop", batch)
    assert [r.status for r in out] == ["created"] * 40
    assert calls == {"BatchGetItem": 2, "TransactWriteItems": 2}, calls
    orders = tenant.http.get("/v1/orders", params={"customer_id": cid, "limit": 100}).json()["data"]
    assert len(orders) == 40
    assert [o["external_id"] for o in orders if o["loyalty"]["first"]] == ["m-0"]
    summary = tenant.http.get(f"/v1/customers/{cid}/360").json()["recent_orders"]
    assert [s["id"] for s in summary] == [o["id"] for o in orders[:10]]


def test_a_race_cancels_the_packed_transaction_and_each_order_is_retried_alone(tenant, monkeypatch):
    from crm.orders import imports

    cid = tenant.create_customer(email="race@example.com")["id"]
    batch = [vendor_order(cid, f"race-{n}", placed_days_ago=10 - n) for n in range(3)]
    real = imports._commit
    raced = []

    def commit(ctx, source, group):
        if not raced:  # another writer places race-1 between the reads and the write
            body = {**batch[1], "customer": {"id": cid}, "source": "shop"}
            del body["customer_id"]
            raced.append(tenant.http.post("/v1/orders", json=body).json())
        return real(ctx, source, group)

    monkeypatch.setattr(imports, "_commit", commit)
    with dynamodb_calls() as calls:
        out = import_orders(tenant.ctx, "shop", batch)
    assert [r.status for r in out] == ["created", "unchanged", "created"]
    assert out[1].order_id == raced[0]["id"]
    # 2 reads + the cancelled transaction, then 2 reads + 1 transaction per new order
    # and 2 reads for the one the other writer placed
    assert calls == {"BatchGetItem": 2 + 2 * 3, "TransactWriteItems": 1 + 2}, calls
    orders = tenant.http.get("/v1/orders", params={"customer_id": cid}).json()["data"]
    assert sorted(o["external_id"] for o in orders) == ["race-0", "race-1", "race-2"]
    # race-1 was placed first (through the API), so it is the customer's first order
    assert [o["external_id"] for o in orders if o["loyalty"]["first"]] == ["race-1"]


def test_an_edit_that_reopens_a_refunded_order_lets_the_same_record_refund_again(tenant):
    """The import asks the one state machine (crm/orders/states.py): an edit raising the
    total of a refunded order makes it partially refunded, so a refund in the same vendor
    record is a legal forward move, as it is through the API."""
    cid = tenant.create_customer(email="reopen@example.com")["id"]
    paid_at = iso(NOW - timedelta(days=2))
    [res] = import_orders(tenant.ctx, "shop", [vendor_order(cid, "r-1", paid_at=paid_at, refunds=[
        {"reference": "re_1", "amount": 10000}])])
    assert get_order(tenant, res.order_id)["status"] == "refunded"
    edited = vendor_order(cid, "r-1", total=12000, paid_at=paid_at, updated_at=iso(NOW),
                          refunds=[{"reference": "re_1", "amount": 10000}, {"reference": "re_2", "amount": 2000}])
    [out] = import_orders(tenant.ctx, "shop", [edited])
    assert out.status == "updated", out.error
    order = get_order(tenant, res.order_id)
    assert (order["status"], order["total"], order["refunded_amount"]) == ("refunded", 12000, 12000)
    assert [r["reference"] for r in order["refunds"]] == ["re_1", "re_2"]
