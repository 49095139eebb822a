"""Domain events derived from item images, and the dispatcher's handling of records."""
from __future__ import annotations

from crm.events import derive

T = "T#t0000000000aa#"


def order_image(status="placed", **data):
    base = {"placed_at": "2026-01-01T00:00:00.000Z", "refunds": [], "total": 1000, "currency": "EUR"}
    return {"kind": "order", "pk": T + "C#cus_1", "sk": "A#ORD#ord_1", "order_id": "ord_1",
            "customer_id": "cus_1", "status": status, "data": {**base, **data}, "version": 1}


def test_order_lifecycle_events_with_stable_ids():
    placed = order_image()
    paid = order_image("paid", paid_at="2026-01-02T00:00:00.000Z")
    refund = {"id": "rf_1", "amount": 300, "refunded_at": "2026-01-03T00:00:00.000Z"}
    refunded = order_image("partially_refunded", paid_at="2026-01-02T00:00:00.000Z", refunds=[refund])
    assert [e["id"] for e in derive(None, placed)] == ["order.placed:ord_1"]
    [e] = derive(placed, paid)
    assert (e["id"], e["tenant_id"], e["occurred_at"]) == ("order.paid:ord_1", "t0000000000aa",
                                                            "2026-01-02T00:00:00.000Z")
    assert e["data"]["status"] == "paid" and e["data"]["data"]["total"] == 1000
    [e] = derive(paid, refunded)
    assert e["id"] == "order.refunded:ord_1:rf_1" and e["data"]["refund"]["amount"] == 300
    assert derive(refunded, refunded) == []  # a rewrite with nothing new is no event
    assert derive(placed, None) == []


def test_a_vendor_edit_is_order_updated_once_per_revision_and_routed():
    from functions.dispatch import route

    paid = order_image("paid", paid_at="2026-01-02T00:00:00.000Z")
    edited = order_image("paid", paid_at="2026-01-02T00:00:00.000Z", total=600, revision=1,
                         edited_at="2026-01-04T00:00:00.000Z")
    [e] = derive(paid, edited)
    assert (e["id"], e["type"], e["occurred_at"]) == ("order.updated:ord_1:1", "order.updated",
                                                      "2026-01-04T00:00:00.000Z")
    assert e["data"]["data"]["total"] == 600
    assert derive(edited, edited) == [] and derive(edited, paid) == []  # an older image: nothing
    routed = route([e])
    assert routed["loyalty"] == [e] and routed["timeline"] == [e]


def test_customer_events():
    old = {"kind": "customer", "pk": T + "C#cus_1", "customer_id": "cus_1", "version": 1,
           "status": "active", "data": {"email": "a@x.io"}, "created_at": "c", "updated_at": "u1"}
    new = {**old, "version": 2, "data": {"email": "a@x.io", "locale": "en"}, "updated_at": "u2"}
    assert derive(None, old)[0]["type"] == "customer.created"
    [e] = derive(old, new)
    assert e["id"] == "customer.updated:cus_1:2" and e["data"]["changed"] == ["locale"]
    erased = {**new, "version": 3, "status": "erased", "erased_at": "e"}
    assert derive(new, erased)[0]["type"] == "customer.erased"


def test_ledger_and_book_events():
    entry = {"seq": 4, "type": "pending", "points": 50, "lot": "lot_ord_1", "source": "order.paid:ord_1",
             "at": "2026-01-02T00:00:00.000Z", "detail": {}}
    row = {"kind": "ledger", "pk": T + "C#cus_1", "customer_id": "cus_1", "entry": entry}
    [e] = derive(None, row)
    assert (e["id"], e["type"], e["data"]["points"]) == ("points.earned:cus_1:4", "points.earned", 50)
    assert derive(row, row) == []  # append-only: only inserts are news
    lot = {"state": "active", "left": 40, "expires_at": "2027-01-01T00:00:00.000Z"}
    old = {"kind": "loyalty", "pk": T + "C#cus_1", "customer_id": "cus_1", "updated_at": "u",
           "book": {"tier": "Bronze", "tier_since": "t1", "lots": {"l1": lot}}}
    new = {**old, "book": {"tier": "Silver", "tier_since": "t2", "lots": {"l1": {**lot, "warned": True}}}}
    types = {e["type"]: e for e in derive(old, new)}
    assert types["tier.changed"]["data"] == {"customer_id": "cus_1", "from": "Bronze", "to": "Silver"}
    assert types["points.expiring"]["data"]["points"] == 40
    assert derive(new, new) == []


def test_items_without_a_kind_are_not_events():
    assert derive(None, {"pk": T + "IDEM", "sk": "x"}) == []
    assert derive(None, {"kind": "guard", "pk": T + "U#email#a", "customer_id": "c"}) == []


def test_the_dispatcher_reports_an_undecodable_record_and_routes_the_rest(monkeypatch):
    from functions import dispatch, queues

    sent = {}
    monkeypatch.setattr(queues, "send", lambda name, events: sent.setdefault(name, list(events)))
    good = {"eventID": "1", "eventName": "INSERT", "dynamodb": {"SequenceNumber": "100", "NewImage": {
        "kind": {"S": "order"}, "pk": {"S": T + "C#cus_1"}, "sk": {"S": "A#ORD#ord_1"},
        "order_id": {"S": "ord_1"}, "customer_id": {"S": "cus_1"}, "status": {"S": "placed"},
        "data": {"S": '{"placed_at": "2026-01-01T00:00:00.000Z", "refunds": []}'},
        "created_at": {"S": "c"}, "updated_at": {"S": "u"}, "version": {"N": "1"}}}}
    bad = {"eventID": "2", "eventName": "INSERT", "dynamodb": {"SequenceNumber": "101", "NewImage": {
        "kind": {"S": "order"}, "pk": {"S": T + "C#cus_1"}, "sk": {"S": "A#ORD#ord_2"},
        "data": {"S": "{not json"}}}}
    answer = dispatch.handle({"Records": [good, bad]})
    assert answer == {"batchItemFailures": [{"itemIdentifier": "101"}]}
    assert [e["id"] for e in sent["timeline"]] == ["order.placed:ord_1"] and sent["loyalty"] == []
