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
    # loyalty re-reckons; the timeline entry was written in the edit's own transaction
    assert routed["loyalty"] == [e] and routed["timeline"] == []


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
    from crm import queues
    from functions import dispatch

    from crm import changes

    sent = {}
    monkeypatch.setattr(queues, "send", lambda name, events: sent.setdefault(name, list(events)))
    fed: list[dict] = []
    monkeypatch.setattr(changes, "append", fed.extend)
    good = {"eventID": "1", "eventName": "INSERT", "dynamodb": {"SequenceNumber": "100", "NewImage": {
        "kind": {"S": "order"}, "pk": {"S": T + "C#cus_1"}, "sk": {"S": "A#ORD#ord_1"},
        "order_id": {"S": "ord_1"}, "customer_id": {"S": "cus_1"}, "status": {"S": "placed"},
        "data": {"S": '{"placed_at": "2026-01-01T00:00:00.000Z", "paid_at": "2026-01-01T00:00:00.000Z", '
                      '"refunds": []}'},
        "created_at": {"S": "c"}, "updated_at": {"S": "u"}, "version": {"N": "1"}}}}
    bad = {"eventID": "2", "eventName": "INSERT", "dynamodb": {"SequenceNumber": "101", "NewImage": {
        "kind": {"S": "order"}, "pk": {"S": T + "C#cus_1"}, "sk": {"S": "A#ORD#ord_2"},
        "data": {"S": "{not json"}}}}
    after = {**good, "eventID": "3", "dynamodb": {**good["dynamodb"], "SequenceNumber": "102"}}
    answer = dispatch.handle({"Records": [good, bad, after]})
    # Lambda retries the shard from 101: 102 is failed too, so nothing after the bad record
    # reaches the feed (or a subscriber) before it does
    assert answer == {"batchItemFailures": [{"itemIdentifier": "101"}, {"itemIdentifier": "102"}]}
    assert [e["id"] for e in sent["loyalty"]] == ["order.paid:ord_1"] and sent["timeline"] == []
    assert [e["id"] for e in fed] == ["order.placed:ord_1", "order.paid:ord_1"]  # the feed first, the same events


def test_every_timeline_fact_writes_its_entry_itself_and_is_never_routed_to_the_timeline_queue():
    """crm/timeline.py: the entries are written in the fact's transaction, so the
    subscriber must not write them a second time (nor cost a message)."""
    from crm import timeline
    from crm.events import TYPES
    from functions.dispatch import ROUTES

    assert timeline.TYPES <= TYPES
    assert not timeline.TYPES & ROUTES["timeline"]


def test_a_facts_timeline_entries_have_ids_derived_from_the_fact():
    """The same change gives the same entries (ids, sort keys, text): a replay, or the
    same fact written again, writes nothing new."""
    from crm import timeline
    from crm.context import TenantContext

    ctx = TenantContext("t0000000000aa")
    placed = order_image(channel="web")
    paid = order_image("paid", channel="web", paid_at="2026-01-02T00:00:00.000Z")
    first = timeline.of_change(ctx, "cus_1", placed, paid)
    again = timeline.of_change(ctx, "cus_1", placed, paid)
    assert [(e.pk, e.sk, e.event_id) for e in first] == [(e.pk, e.sk, e.event_id) for e in again]
    [entry] = first
    assert entry.pk == T + "C#cus_1" and entry.sk.startswith("EV#2026-01-02T00:00:00.000Z#evt_")
    assert entry.data["type"] == "order.paid" and entry.data["channel"] == "web"
    assert entry.data["summary"] == "Order ord_1 paid: 10.00 EUR"
    assert timeline.of_change(ctx, "cus_2", placed, paid)[0].pk == T + "C#cus_2"  # a survivor's
    assert timeline.of_change(ctx, None, placed, paid) == []  # an erased customer's: none
    assert timeline.of_change(ctx, "cus_1", paid, paid) == []  # nothing new


def test_whose_timeline_a_fact_goes_on():
    from types import SimpleNamespace as P

    from crm import timeline

    assert timeline.target(P(status="active", customer_id="cus_1", merged_into=None)) == "cus_1"
    assert timeline.target(P(status="merging", customer_id="cus_1", merged_into="cus_2")) == "cus_2"
    assert timeline.target(P(status="merged", customer_id="cus_1", merged_into="cus_2")) == "cus_2"
    assert timeline.target(P(status="erased", customer_id="cus_1", merged_into=None)) is None
    assert timeline.target(None) is None
