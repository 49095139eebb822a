"""Merging customers through the HTTP API: POST /v1/customers/{id}/merge.

Two customers with orders, payments, refunds, timeline entries, adjustments and
redemptions are merged; afterwards the survivor holds everything once, the other id
resolves to the survivor everywhere, and no event is derived twice. Events are
delivered as in test_loyalty_api.py (the table's stream through the dispatcher's
decoding to the handlers), or by the running pipeline (``event_pipeline``).
"""
from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import partition_items
from tests.loyalty_helpers import place_order

PROGRAM = {
    "earns_from": "2000-01-01T00:00:00Z",  # backdated orders earn (default: the program's creation)
    "currency": "EUR", "earn_rates": {"EUR": 1}, "rounding": "floor", "first_order_bonus": 50,
    "tier_basis": "spend",
    "tiers": [{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 30000}],
    "return_window_days": 30, "expiry_months": 12, "expiring_notice_days": 14,
}
MISSING = "cus_01ARZ3NDEKTSV4RRFFQ69G5FAV"


@pytest.fixture()
def shop(tenant):
    r = tenant.http.put("/v1/loyalty/program", json=PROGRAM)
    assert r.status_code == 201, r.text
    return tenant


def place(tenant, customer: dict, ext: str, **kw) -> dict:
    return place_order(tenant, customer, ext, statuses=(200, 201), **kw)


def get(tenant, path: str, **params) -> dict:
    r = tenant.http.get(path, params=params)
    assert r.status_code == 200, (path, r.text)
    return r.json()


def every(tenant, path: str, **params) -> list[dict]:
    """Every item of a paginated list, following next_cursor."""
    out, cursor = [], None
    while True:
        page = get(tenant, path, limit=7, **params, **({"cursor": cursor} if cursor else {}))
        out += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def merge(tenant, survivor: str, other: str, **kw):
    return tenant.http.post(f"/v1/customers/{survivor}/merge", json={"other_id": other}, **kw)


def _pair(shop):
    """A survivor and another customer with orders, payments, a refund, timeline entries,
    an adjustment each (colliding adjustment lot ids) and a redemption."""
    s = shop.create_customer(email="keep@example.com", external_ids={"shop": "k-1"},
                             phone="+14155552671", tags=["vip"], attributes={"band": "a"})
    o = shop.create_customer(email="dupe@example.com", external_ids={"shop": "d-1", "pos": "p-9"},
                             phone="+14155552672", tags=["new", "VIP"], name={"given": "Dee"},
                             attributes={"band": "z", "club": True}, birth_date="1990-05-17")
    place(shop, {"id": s["id"]}, "s-1", total=12000, paid_days_ago=40)   # active 120 + 50
    place(shop, {"id": o["id"]}, "o-1", total=10000, paid_days_ago=40)   # active 100 + 50
    refunded = place(shop, {"id": o["id"]}, "o-2", total=8000, paid_days_ago=2)  # pending 80
    place(shop, {"id": o["id"]}, "o-3", total=3000, number="#O-3")       # placed, unpaid
    r = shop.http.post(f"/v1/orders/{refunded['id']}/refunds", json={"amount": 2000})
    assert r.status_code == 200, r.text
    for cid, n in ((s["id"], 2), (o["id"], 3)):
        for i in range(n):
            r = shop.http.post(f"/v1/customers/{cid}/events", json={"type": "call.logged", "summary": f"call {i}"})
            assert r.status_code == 201, r.text
        r = shop.http.post(f"/v1/customers/{cid}/loyalty/adjustments", json={"points": 40, "reason": "welcome"})
        assert r.status_code == 201, r.text
    r = shop.http.post(f"/v1/customers/{o['id']}/loyalty/redemptions", json={"points": 30},
                       headers={"Idempotency-Key": "dupe-redeem"})
    assert r.status_code == 201, r.text
    return s["id"], o["id"]


POINT_FIELDS = ("available", "pending", "lifetime_earned", "owed")


def test_merge_moves_everything_once_and_the_other_id_resolves_to_the_survivor(shop, deliver, raw_table):
    sid, oid = _pair(shop)
    deliver()
    before = {c: {"loyalty": get(shop, f"/v1/customers/{c}/loyalty"),
                  "ledger": every(shop, f"/v1/customers/{c}/loyalty/ledger"),
                  "events": every(shop, f"/v1/customers/{c}/events"),
                  "orders": every(shop, "/v1/orders", customer_id=c)} for c in (sid, oid)}
    assert before[oid]["loyalty"]["available"] > 0 and before[oid]["loyalty"]["pending"] > 0
    assert {e["lot"] for e in before[sid]["ledger"] if e["type"] == "adjust"} & \
        {e["lot"] for e in before[oid]["ledger"] if e["type"] == "adjust"}  # lot ids collide

    r = merge(shop, sid, oid)
    assert r.status_code == 200, r.text
    survivor = r.json()
    assert survivor["id"] == sid and survivor["merged_ids"] == [oid] and survivor["status"] == "active"
    # the survivor's own fields win, the missing ones are filled, identities that do not fit are kept
    assert survivor["email"] == "keep@example.com" and survivor["phone"] == "+14155552671"
    assert survivor["name"] == {"given": "Dee", "family": None} and survivor["birth_date"] == "1990-05-17"
    assert survivor["external_ids"] == {"shop": "k-1", "pos": "p-9"}
    assert survivor["attributes"] == {"band": "a", "club": True}
    assert survivor["tags"] == ["vip", "new"]
    assert survivor["aliases"] == {"emails": ["dupe@example.com"], "phones": ["+14155552672"],
                                   "external_ids": [{"source": "shop", "external_id": "d-1"}]}

    derived = deliver()
    types = Counter(e["type"] for e in derived)
    assert not [t for t in types if t.startswith(("order.", "points."))], types
    assert types["customer.merged"] == 1

    # points: sums, the ledger complete and renumbered after the survivor's
    after = get(shop, f"/v1/customers/{sid}/loyalty")
    for f in POINT_FIELDS:
        assert after[f] == before[sid]["loyalty"][f] + before[oid]["loyalty"][f], f
    assert sum(lot["points"] for lot in after["lots"]) == after["available"] + after["pending"]
    ledger = every(shop, f"/v1/customers/{sid}/loyalty/ledger")
    assert [e["seq"] for e in ledger] == list(range(len(ledger), 0, -1))
    copied = [e for e in ledger if e["detail"].get("merged_from") == oid]
    assert sorted((e["type"], e["points"], e["source"]) for e in copied) == \
        sorted((e["type"], e["points"], e["source"]) for e in before[oid]["ledger"])
    assert sorted(e["detail"]["merged_seq"] for e in copied) == sorted(e["seq"] for e in before[oid]["ledger"])
    assert min(e["seq"] for e in copied) == max(e["seq"] for e in before[sid]["ledger"]) + 1
    # timeline: every entry of both, and one audit entry
    events = every(shop, f"/v1/customers/{sid}/events")
    ids_before = {e["id"] for c in (sid, oid) for e in before[c]["events"]}
    assert ids_before <= {e["id"] for e in events}
    audit = [e for e in events if e["type"] == "customer.merged"]
    assert len(audit) == 1 and len(events) == len(ids_before) + 1
    assert audit[0]["payload"] == {"other_id": oid, "orders": 3, "timeline_entries": len(before[oid]["events"]),
                                   "ledger_entries": len(before[oid]["ledger"]), "redemptions": 1}
    # orders: all of them, by either id, and each names the survivor
    orders = every(shop, "/v1/orders", customer_id=sid)
    assert sorted(o["id"] for o in orders) == sorted(o["id"] for c in (sid, oid) for o in before[c]["orders"])
    assert {o["customer_id"] for o in orders} == {sid}
    assert every(shop, "/v1/orders", customer_id=oid) == orders
    for o in before[oid]["orders"]:
        assert get(shop, f"/v1/orders/{o['id']}")["customer_id"] == sid
    [numbered] = get(shop, "/v1/orders", number="o-3")["data"]  # the moved order's guard keeps its number
    assert (numbered["external_id"], numbered["customer_id"], numbered["number"]) == ("o-3", sid, "#O-3")
    c360 = get(shop, f"/v1/customers/{oid}/360")
    assert c360["customer"]["id"] == sid and len(c360["recent_orders"]) == 4
    assert c360["loyalty"]["available"] == after["available"]

    # the other id resolves to the survivor
    r = shop.http.get(f"/v1/customers/{oid}")
    assert r.status_code == 200 and r.json() == get(shop, f"/v1/customers/{sid}")
    assert r.headers["x-rapport-merged-into"] == sid and r.headers["content-location"] == f"/v1/customers/{sid}"
    for params in ({"email": "dupe@example.com"}, {"source": "shop", "external_id": "d-1"},
                   {"source": "pos", "external_id": "p-9"}, {"phone": "+14155552672"},
                   {"email": "keep@example.com"}):
        assert [c["id"] for c in get(shop, "/v1/customers/lookup", **params)["data"]] == [sid], params
    assert [c["id"] for c in get(shop, "/v1/customers", tag="new")["data"]] == [sid]
    assert oid not in {c["id"] for c in every(shop, "/v1/customers")}
    assert get(shop, f"/v1/customers/{oid}/loyalty")["available"] == after["available"]
    assert every(shop, f"/v1/customers/{oid}/loyalty/ledger") == ledger
    assert every(shop, f"/v1/customers/{oid}/events") == events
    # writes by the other id land on the survivor
    new = place(shop, {"id": oid}, "o-4", total=1000)
    assert new["customer_id"] == sid
    assert place(shop, {"email": "dupe@example.com"}, "o-5", total=1000)["customer_id"] == sid
    assert place(shop, {"id": oid}, "o-1")["customer_id"] == sid  # a repeat: the original order
    r = shop.http.post(f"/v1/customers/{oid}/events", json={"type": "note.added"})
    assert r.status_code == 201 and r.json()["customer_id"] == sid
    r = shop.http.post(f"/v1/customers/{oid}/loyalty/redemptions", json={"points": 30},
                       headers={"Idempotency-Key": "dupe-redeem-2"})
    assert r.status_code == 201 and r.json()["customer_id"] == sid
    r = shop.http.patch(f"/v1/customers/{oid}", json={"locale": "en-GB"})
    assert r.status_code == 200 and r.json()["id"] == sid and r.json()["locale"] == "en-GB"
    assert r.json()["aliases"] == survivor["aliases"]  # a PATCH keeps the merged identities
    deliver()
    # a repeat is a no-op answering with the survivor
    items = [i for i in partition_items(raw_table, shop) if not i["pk"].endswith("#IDEM")]
    again = merge(shop, sid, oid)
    assert again.status_code == 200 and again.json()["id"] == sid
    assert again.json() == get(shop, f"/v1/customers/{sid}")
    assert [i for i in partition_items(raw_table, shop) if not i["pk"].endswith("#IDEM")] == items
    assert deliver() == []


def test_events_queued_for_the_other_before_the_merge_land_on_the_survivor_once(shop, deliver):
    """Payments and refunds whose events are still queued when the merge runs."""
    from functions import loyalty as handler

    sid = shop.create_customer(email="late-keep@example.com")["id"]
    oid = shop.create_customer(email="late-dupe@example.com")["id"]
    deliver()
    o1 = place(shop, {"id": oid}, "late-1", total=10000, paid_days_ago=40)
    o2 = place(shop, {"id": oid}, "late-2", total=6000, paid_days_ago=1)
    shop.http.post(f"/v1/orders/{o2['id']}/refunds", json={"amount": 3000})
    assert merge(shop, sid, oid).status_code == 200
    deliver()  # the old events (customer: the other) and the merge's records
    view = get(shop, f"/v1/customers/{sid}/loyalty")
    assert (view["available"], view["pending"], view["lifetime_earned"]) == (150, 30, 180)
    # the same old events again: nothing changes
    for order in (o1, o2):
        stored = get(shop, f"/v1/orders/{order['id']}")
        stale = {"order_id": order["id"], "customer_id": oid, "status": stored["status"], "data": stored}
        assert handler.apply({"tenant_id": shop.id, "type": "order.paid", "data": stale}) == 0
    assert {**get(shop, f"/v1/customers/{sid}/loyalty"), "as_of": None} == {**view, "as_of": None}
    timeline = Counter(e["type"] for e in every(shop, f"/v1/customers/{sid}/events"))
    assert timeline["order.placed"] == 2 and timeline["order.paid"] == 2 and timeline["order.refunded"] == 1
    assert timeline["points.earned"] == 2 and timeline["points.reversed"] == 1


@pytest.mark.parametrize("case", ["same", "unknown", "foreign", "malformed", "extra", "empty", "erased",
                                  "unknown_survivor", "foreign_survivor", "read_scope"])
def test_bad_merges_get_4xx_and_change_nothing(shop, other_tenant, raw_table, case):
    import httpx

    sid = shop.create_customer(email="bad-keep@example.com")["id"]
    oid = shop.create_customer(email="bad-dupe@example.com")["id"]
    erased = shop.create_customer(email="bad-gone@example.com")["id"]
    assert shop.http.delete(f"/v1/customers/{erased}").status_code == 200
    foreign = other_tenant.create_customer(email="bad-foreign@example.com")["id"]
    path, body, status, field = f"/v1/customers/{sid}/merge", {"other_id": oid}, None, "other_id"
    http = shop.http
    if case == "same":
        body, status = {"other_id": sid}, 422
    elif case == "unknown":
        body, status = {"other_id": MISSING}, 404
    elif case == "foreign":
        body, status = {"other_id": foreign}, 404
    elif case == "malformed":
        body, status = {"other_id": "cus_nope"}, 422
    elif case == "extra":
        body, status = {"other_id": oid, "strategy": "theirs"}, 422
        field = "strategy"
    elif case == "empty":
        body, status = {}, 422
    elif case == "erased":
        body, status = {"other_id": erased}, 404
    elif case == "unknown_survivor":
        path, status, field = f"/v1/customers/{MISSING}/merge", 404, None
    elif case == "foreign_survivor":
        path, status, field = f"/v1/customers/{foreign}/merge", 404, None
    elif case == "read_scope":
        http = httpx.Client(base_url=str(shop.http.base_url),
                            headers={"Authorization": f"Bearer {shop.key_with('customers:read')}"})
        status, field = 403, "scope"
    mine, theirs = partition_items(raw_table, shop), partition_items(raw_table, other_tenant)
    r = http.post(path, json=body, headers={"Idempotency-Key": f"bad-{case}"})
    assert r.status_code == status, r.text
    problem = r.json()
    if field == "other_id" and status == 422 and case != "same":
        assert any(e["field"] == "other_id" for e in problem["errors"]), problem
    elif field:
        assert problem["field"] == field or any(e["field"] == field for e in problem.get("errors", [])), problem
    if case == "foreign":  # exactly the answer for an id that does not exist
        missing = http.post(path, json={"other_id": MISSING})
        assert (missing.status_code, missing.json()["code"]) == (r.status_code, problem["code"])
        assert missing.json()["detail"].replace(MISSING, "X") == problem["detail"].replace(foreign, "X")
    strip = lambda items: [i for i in items if not i["pk"].endswith("#IDEM")]  # noqa: E731
    assert strip(partition_items(raw_table, shop)) == strip(mine)
    assert partition_items(raw_table, other_tenant) == theirs


def test_merged_elsewhere_is_409_and_chains_resolve_in_one_hop(shop, raw_table):
    a = shop.create_customer(email="chain-a@example.com")["id"]
    b = shop.create_customer(email="chain-b@example.com")["id"]
    c = shop.create_customer(email="chain-c@example.com")["id"]
    d = shop.create_customer(email="chain-d@example.com")["id"]
    assert merge(shop, b, a).status_code == 200
    r = merge(shop, c, a)
    assert r.status_code == 409 and r.json()["code"] == "already_merged" and r.json()["merged_into"] == b
    r = merge(shop, a, d)  # the survivor was merged itself
    assert r.status_code == 409 and r.json()["code"] == "customer_merged"
    assert merge(shop, c, b).status_code == 200
    assert sorted(get(shop, f"/v1/customers/{c}")["merged_ids"]) == sorted([a, b])
    assert get(shop, f"/v1/customers/{a}")["id"] == c
    tomb = {i["pk"].split("#C#")[1]: i for i in partition_items(raw_table, shop)
            if i["sk"] == "PROFILE" and i.get("status") == "merged"}
    assert tomb[a]["merged_into"] == c and tomb[b]["merged_into"] == c  # one hop each
    assert [x["id"] for x in get(shop, "/v1/customers/lookup", email="chain-a@example.com")["data"]] == [c]
    assert merge(shop, c, a).status_code == 200  # a was merged into c (through b): nothing to do


def test_an_interrupted_merge_of_a_large_customer_is_finished_by_repeating_it(shop, deliver):
    """More items than one transaction holds; the procedure stops after any step and the
    repeated POST finishes it."""
    from crm import merge as procedure
    from crm.customers import service as customers
    from crm.customers.schemas import TimelineEventCreate

    sid = shop.create_customer(email="big-keep@example.com")["id"]
    oid = shop.create_customer(email="big-dupe@example.com", tags=[f"t{i}" for i in range(50)])["id"]
    for i in range(130):
        customers.add_event(shop.ctx, oid, TimelineEventCreate(type="email.opened", summary=f"{i}"))
    orders = [place(shop, {"id": oid}, f"big-{i}", total=1000 + i, paid_days_ago=40) for i in range(30)]
    for i in range(3):
        shop.http.post(f"/v1/customers/{oid}/loyalty/adjustments", json={"points": 5, "reason": f"r{i}"})
    deliver()
    points = get(shop, f"/v1/customers/{oid}/loyalty")
    ledger = every(shop, f"/v1/customers/{oid}/loyalty/ledger")
    # a crash after the orders moved, before the timeline and the books
    survivor, other = procedure._pair(shop.ctx, sid, oid)
    assert procedure._mark(shop.ctx, survivor, other)
    procedure._count(shop.ctx, sid, oid)
    procedure._identities(shop.ctx, sid, oid)
    procedure._move_orders(shop.ctx, sid, oid)
    assert get(shop, f"/v1/customers/{oid}")["id"] == sid  # already resolves to the survivor
    assert oid not in {c["id"] for c in every(shop, "/v1/customers")}
    r = merge(shop, sid, oid)
    assert r.status_code == 200, r.text
    events = every(shop, f"/v1/customers/{sid}/events")
    assert len([e for e in events if e["type"] == "email.opened"]) == 130
    [audit] = [e for e in events if e["type"] == "customer.merged"]
    assert audit["payload"]["orders"] == 30 and audit["payload"]["timeline_entries"] >= 130
    assert len(every(shop, "/v1/orders", customer_id=sid)) == 30
    assert {get(shop, f"/v1/orders/{o['id']}")["customer_id"] for o in orders} == {sid}
    after = get(shop, f"/v1/customers/{sid}/loyalty")
    assert [after[f] for f in POINT_FIELDS] == [points[f] for f in POINT_FIELDS]
    assert len(every(shop, f"/v1/customers/{sid}/loyalty/ledger")) == len(ledger)
    assert {c["id"] for c in get(shop, "/v1/customers", tag="t49")["data"]} == {sid}
    derived = deliver()
    assert not [e for e in derived if e["type"].startswith(("order.", "points."))]


def test_with_the_pipeline_running_points_and_timeline_are_not_double_counted(shop, event_pipeline):
    sid = shop.create_customer(email="live-keep@example.com")["id"]
    oid = shop.create_customer(email="live-dupe@example.com")["id"]
    place(shop, {"id": sid}, "live-1", total=10000, paid_days_ago=40)
    place(shop, {"id": oid}, "live-2", total=20000, paid_days_ago=40)
    refund = place(shop, {"id": oid}, "live-3", total=5000, paid_days_ago=3)
    assert event_pipeline.wait_idle(timeout=120)
    before = {c: get(shop, f"/v1/customers/{c}/loyalty") for c in (sid, oid)}
    # events of these are still on their way while the merge runs
    late = place(shop, {"id": oid}, "live-4", total=4000, paid_days_ago=1)
    shop.http.post(f"/v1/orders/{refund['id']}/refunds", json={"amount": 5000})
    assert merge(shop, sid, oid).status_code == 200
    assert event_pipeline.wait_idle(timeout=120)
    view = get(shop, f"/v1/customers/{sid}/loyalty")
    assert view["available"] == before[sid]["available"] + before[oid]["available"]
    assert view["pending"] == before[sid]["pending"] + before[oid]["pending"] - 50 + 40
    assert view["lifetime_earned"] == before[sid]["lifetime_earned"] + before[oid]["lifetime_earned"] - 50 + 40
    timeline = Counter(e["type"] for e in every(shop, f"/v1/customers/{sid}/events"))
    assert (timeline["order.placed"], timeline["order.paid"], timeline["order.refunded"]) == (4, 4, 1)
    assert (timeline["points.earned"], timeline["points.reversed"], timeline["customer.merged"]) == (4, 1, 1)
    assert get(shop, f"/v1/orders/{late['id']}")["customer_id"] == sid
