"""Loyalty through the HTTP API: the program, points from orders, redemptions,
adjustments, refunds, the ledger, the schedule, and the events on the timeline.

Events are delivered by ``deliver`` (tests/conftest.py): the table's stream is read from
the emulator and each record goes through the dispatcher's decoding to the same handlers
that Lambda (and `rapport dev`'s pollers) run, until nothing new comes out. The background path
itself (pollers, SQS, DLQ) is tested in test_pollers.py and e2e.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import partition_items
from tests.loyalty_helpers import iso, place_order

PROGRAM = {
    "earns_from": "2000-01-01T00:00:00Z",  # backdated orders earn (default: the program's creation)
    "currency": "EUR", "earn_rates": {"EUR": 1}, "rounding": "floor",
    "channel_multipliers": {"mobile": 2}, "category_multipliers": {"coffee": 3},
    "first_order_bonus": 50, "tier_basis": "spend",
    "tiers": [{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 20000, "multiplier": 2}],
    "return_window_days": 30, "expiry_months": 12, "expiring_notice_days": 14,
}


@pytest.fixture()
def shop(tenant):
    r = tenant.http.put("/v1/loyalty/program", json=PROGRAM)
    assert r.status_code == 201, r.text
    return tenant


def place(tenant, customer_id: str, ext: str, *, category: str = "apparel", **kw) -> dict:
    return place_order(tenant, {"id": customer_id}, ext, category=category, **kw)


def loyalty(tenant, cid: str) -> dict:
    r = tenant.http.get(f"/v1/customers/{cid}/loyalty")
    assert r.status_code == 200, r.text
    return r.json()


def redeem(tenant, cid: str, points: int, key: str | None = "k", **body):
    headers = {"Idempotency-Key": key} if key else {}
    return tenant.http.post(f"/v1/customers/{cid}/loyalty/redemptions", json={"points": points, **body},
                            headers=headers)


# --- the program ----------------------------------------------------------------

def test_program_get_put_with_etags_and_admin_scope(tenant):
    assert tenant.http.get("/v1/loyalty/program").json()["code"] == "program_not_found"
    r = tenant.http.put("/v1/loyalty/program", json=PROGRAM)
    assert r.status_code == 201 and r.headers["ETag"] == '"1"'
    assert tenant.http.get("/v1/loyalty/program").json()["tiers"][1]["name"] == "Silver"
    r = tenant.http.put("/v1/loyalty/program", json={**PROGRAM, "first_order_bonus": 0},
                        headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["version"] == 2
    r = tenant.http.put("/v1/loyalty/program", json=PROGRAM, headers={"If-Match": '"1"'})
    assert r.status_code == 412
    import httpx

    reader = httpx.Client(base_url=str(tenant.http.base_url),
                          headers={"Authorization": f"Bearer {tenant.key_with('customers:write')}"})
    assert reader.get("/v1/loyalty/program").status_code == 403
    assert reader.put("/v1/loyalty/program", json=PROGRAM).status_code == 403
    assert tenant.http.get("/v1/loyalty/program").json()["first_order_bonus"] == 0


@pytest.mark.parametrize("change,field", [
    ({"tiers": [{"name": "A", "threshold": 5}]}, "tiers"),
    ({"tiers": [{"name": "A", "threshold": 0}, {"name": "a", "threshold": 9}]}, "tiers"),
    ({"channel_multipliers": {"fax": 2}}, "channel_multipliers.fax"),
    ({"earn_rates": {"EUR": -1}}, "earn_rates.EUR"),
    ({"earn_rates": {}}, "earn_rates"),
    ({"return_window_days": 400}, "return_window_days"),
    ({"currency": "euro"}, "currency"),
    ({"surprise": 1}, "surprise"),
])
def test_a_bad_program_gets_422_and_changes_nothing(shop, change, field):
    r = shop.http.put("/v1/loyalty/program", json={**PROGRAM, **change})
    assert r.status_code == 422, r.text
    assert any(e["field"].startswith(field) for e in r.json()["errors"]), r.json()
    assert shop.http.get("/v1/loyalty/program").json()["version"] == 1


# --- earning, the 360 and the timeline ---------------------------------------------------

def test_a_paid_order_earns_pending_points_shown_in_the_360_and_timeline(shop, deliver):
    cid = shop.create_customer(email="earn@example.com")["id"]
    order = place(shop, cid, "e1", total=12345, paid_days_ago=1, channel="mobile")
    assert order["loyalty"] == {"tier": "Bronze", "birthday": False, "first": True}
    deliver()
    view = loyalty(shop, cid)
    # 123.45 EUR x 1 point x 2 (mobile), floored, + 50 first-order bonus
    assert (view["pending"], view["available"], view["lifetime_earned"]) == (246 + 50, 0, 296)
    assert view["lots"][0]["state"] == "pending"
    assert view["progress"] == {"basis": "spend", "qualifying": 12345, "next_tier": "Silver",
                                "next_threshold": 20000, "remaining": 7655}
    [entry] = shop.http.get(f"/v1/customers/{cid}/loyalty/ledger").json()["data"]
    assert entry["type"] == "pending" and entry["points"] == 296 and entry["source"] == f"order.paid:{order['id']}"
    c360 = shop.http.get(f"/v1/customers/{cid}/360").json()
    assert c360["loyalty"]["pending"] == 296
    types = [e["type"] for e in c360["timeline"]]
    assert {"order.placed", "order.paid", "points.earned"} <= set(types)
    # delivering everything again changes nothing: no new entries, no new timeline items
    before = shop.http.get(f"/v1/customers/{cid}/events").json()["data"]
    from functions import loyalty as handler

    assert handler.apply({"tenant_id": shop.id, "type": "order.paid", "data": {
        "order_id": order["id"], "customer_id": cid, "status": "paid",
        "data": shop.http.get(f"/v1/orders/{order['id']}").json()}}) == 0
    assert shop.http.get(f"/v1/customers/{cid}/events").json()["data"] == before
    assert loyalty(shop, cid)["pending"] == 296


def test_points_activate_after_the_return_window_and_a_second_order_earns_no_bonus(shop, deliver):
    cid = shop.create_customer(email="old@example.com")["id"]
    place(shop, cid, "a1", total=10000, paid_days_ago=45)
    place(shop, cid, "a2", total=5000, paid_days_ago=2, category="coffee")
    deliver()
    view = loyalty(shop, cid)
    assert view["available"] == 100 + 50  # window passed: active
    assert view["pending"] == 150          # coffee x3, no bonus the second time
    types = [e["type"] for e in shop.http.get(f"/v1/customers/{cid}/loyalty/ledger").json()["data"]]
    assert sorted(types) == ["activate", "pending", "pending"]


def test_tier_changes_by_rolling_spend_and_lands_on_the_timeline(shop, deliver):
    cid = shop.create_customer(email="tier@example.com")["id"]
    place(shop, cid, "t1", total=25000, paid_days_ago=3)
    deliver()
    assert loyalty(shop, cid)["tier"] == "Silver"
    later = place(shop, cid, "t2", total=1000, paid_days_ago=0)
    assert later["loyalty"]["tier"] == "Silver"  # placed as Silver: earns x2
    deliver()
    assert loyalty(shop, cid)["pending"] == 250 + 50 + 20
    events = shop.http.get(f"/v1/customers/{cid}/events").json()["data"]
    changed = [e for e in events if e["type"] == "tier.changed"]
    assert changed and changed[0]["payload"]["to"] == "Silver"


# --- refunds ----------------------------------------------------------------------

def test_refunds_reverse_points_in_proportion(shop, deliver):
    cid = shop.create_customer(email="refund@example.com")["id"]
    order = place(shop, cid, "r1", total=20000, paid_days_ago=1)
    deliver()
    assert loyalty(shop, cid)["pending"] == 250
    r = shop.http.post(f"/v1/orders/{order['id']}/refunds", json={"amount": 5000})
    assert r.status_code == 200
    deliver()
    view = loyalty(shop, cid)
    assert view["pending"] == 187 and view["lifetime_earned"] == 187  # keeps floor(250 x 3/4)
    shop.http.post(f"/v1/orders/{order['id']}/refunds", json={"amount": 15000})
    deliver()
    view = loyalty(shop, cid)
    assert (view["pending"], view["available"], view["lifetime_earned"]) == (0, 0, 0)
    reversals = [e for e in shop.http.get(f"/v1/customers/{cid}/loyalty/ledger").json()["data"]
                 if e["type"] == "reverse"]
    assert sorted(e["points"] for e in reversals) == [-187, -63]


def test_refund_of_spent_points_leaves_them_owed_and_new_points_repay_it(shop, deliver):
    cid = shop.create_customer(email="owed@example.com")["id"]
    order = place(shop, cid, "o1", total=10000, paid_days_ago=40)   # 150 active
    deliver()
    assert redeem(shop, cid, 120, key="spend-120").status_code == 201
    shop.http.post(f"/v1/orders/{order['id']}/refunds", json={"amount": 10000})
    deliver()
    view = loyalty(shop, cid)
    assert (view["available"], view["owed"]) == (0, 120)  # 30 taken back, 120 already spent
    place(shop, cid, "o2", total=20000, paid_days_ago=35)  # 200 more, active at once
    deliver()
    view = loyalty(shop, cid)
    assert (view["available"], view["owed"]) == (80, 0)


# --- redemptions and adjustments -----------------------------------------------------

def test_redemptions_are_idempotent_and_never_overspend(shop, deliver, raw_table):
    cid = shop.create_customer(email="redeem@example.com")["id"]
    place(shop, cid, "d1", total=10000, paid_days_ago=40)
    deliver()
    assert loyalty(shop, cid)["available"] == 150
    r = redeem(shop, cid, 151)
    assert r.status_code == 422 and r.json()["code"] == "insufficient_points" and r.json()["available"] == 150
    r = redeem(shop, cid, 10, key=None)
    assert r.status_code == 400 and r.json()["code"] == "idempotency_key_required"
    first = redeem(shop, cid, 100, key="order-77", reference="voucher-77")
    assert first.status_code == 201, first.text
    again = redeem(shop, cid, 100, key="order-77", reference="voucher-77")
    assert again.status_code in (200, 201) and again.json()["id"] == first.json()["id"]
    assert redeem(shop, cid, 5, key="order-77").status_code == 422  # same key, other request
    assert loyalty(shop, cid)["available"] == 50
    assert first.json()["balance"]["available"] == 50
    [entry] = [e for e in shop.http.get(f"/v1/customers/{cid}/loyalty/ledger").json()["data"]
               if e["type"] == "redeem"]
    assert entry["points"] == -100 and entry["detail"] == {"reference": "voucher-77"}


@pytest.mark.parametrize("body", [{"points": 0}, {"points": -5}, {"points": "ten"}, {}, {"points": 5, "x": 1}])
def test_bad_redemptions_get_422_and_write_nothing(shop, raw_table, body):
    cid = shop.create_customer(email="badredeem@example.com")["id"]
    before = partition_items(raw_table, shop)
    r = shop.http.post(f"/v1/customers/{cid}/loyalty/redemptions", json=body, headers={"Idempotency-Key": "b"})
    assert r.status_code == 422, r.text
    after = [i for i in partition_items(raw_table, shop) if not i["pk"].endswith("#IDEM")]
    assert after == [i for i in before if not i["pk"].endswith("#IDEM")]


def test_adjustments_need_admin_and_a_reason(shop):
    import httpx

    cid = shop.create_customer(email="adjust@example.com")["id"]
    writer = httpx.Client(base_url=str(shop.http.base_url),
                          headers={"Authorization": f"Bearer {shop.key_with('customers:write')}"})
    url = f"/v1/customers/{cid}/loyalty/adjustments"
    assert writer.post(url, json={"points": 10, "reason": "goodwill"}).status_code == 403
    assert shop.http.post(url, json={"points": 10}).status_code == 422
    assert shop.http.post(url, json={"points": 10, "reason": "   "}).status_code == 422
    r = shop.http.post(url, json={"points": 40, "reason": "late delivery"})
    assert r.status_code == 201, r.text
    assert r.json()["entries"][0] | {"at": None} == {
        **r.json()["entries"][0], "type": "adjust", "points": 40, "reason": "late delivery", "at": None}
    r = shop.http.post(url, json={"points": -50, "reason": "too much"})
    assert r.status_code == 422 and r.json()["available"] == 40
    assert shop.http.post(url, json={"points": -15, "reason": "correction"}).status_code == 201
    assert loyalty(shop, cid)["available"] == 25


def test_unknown_customer_is_404_everywhere(shop):
    ghost = "cus_01H00000000000000000000000"
    for method, path, body in [("GET", "/loyalty", None), ("GET", "/loyalty/ledger", None),
                               ("POST", "/loyalty/redemptions", {"points": 1}),
                               ("POST", "/loyalty/adjustments", {"points": 1, "reason": "x"})]:
        r = shop.http.request(method, f"/v1/customers/{ghost}{path}", json=body,
                              headers={"Idempotency-Key": "g"})
        assert r.status_code == 404, (path, r.text)


def test_another_tenant_cannot_read_spend_or_adjust_points(shop, other_tenant, deliver, raw_table):
    cid = shop.create_customer(email="mine@example.com")["id"]
    place(shop, cid, "i1", total=10000, paid_days_ago=40)
    deliver()
    before = partition_items(raw_table, shop)
    for method, path, body in [("GET", "/loyalty", None), ("GET", "/loyalty/ledger", None),
                               ("POST", "/loyalty/redemptions", {"points": 1}),
                               ("POST", "/loyalty/adjustments", {"points": 1, "reason": "x"})]:
        r = other_tenant.http.request(method, f"/v1/customers/{cid}{path}", json=body,
                                      headers={"Idempotency-Key": "x"})
        assert r.status_code == 404, (path, r.text)
    assert other_tenant.http.get("/v1/loyalty/program").status_code == 404
    assert partition_items(raw_table, shop) == before


def test_ledger_pages_newest_first(shop):
    cid = shop.create_customer(email="pages@example.com")["id"]
    for i in range(7):
        shop.http.post(f"/v1/customers/{cid}/loyalty/adjustments", json={"points": i + 1, "reason": f"r{i}"})
    seqs, cursor = [], None
    while True:
        page = shop.http.get(f"/v1/customers/{cid}/loyalty/ledger",
                             params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seqs += [e["seq"] for e in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seqs == [7, 6, 5, 4, 3, 2, 1]
    r = shop.http.get(f"/v1/customers/{cid}/loyalty/ledger", params={"cursor": "garbage"})
    assert r.status_code == 422


# --- the schedule ----------------------------------------------------------------------

def test_the_schedule_activates_due_points_through_the_due_index(shop, deliver):
    from functions import loyalty as handler

    cid = shop.create_customer(email="sched@example.com")["id"]
    place(shop, cid, "s1", total=10000, paid_days_ago=30 - 120 / 86400)  # due in 2 minutes
    deliver()
    from crm.storage import LoyaltyItem

    item = LoyaltyItem.get(f"T#{shop.id}#C#{cid}", "LOYALTY", consistent_read=True)
    assert item.book["pending"] == 150 and item.gsi2sk.endswith(f"#{shop.id}#{cid}")
    soon = iso(datetime.now(timezone.utc) + timedelta(seconds=150))
    from functions.idempotency import LocalContext

    short = handler.run_schedule(now=soon, lambda_context=LocalContext(remaining_ms=1_000))
    assert short == {"customers": 0, "entries": 0, "stopped_early": 1}  # leaves it for the next run
    assert LoyaltyItem.get(f"T#{shop.id}#C#{cid}", "LOYALTY", consistent_read=True).book["pending"] == 150
    ran = handler.run_schedule(now=soon)
    assert ran == {"customers": 1, "entries": 1}  # the module's emulator is fresh: only this book is due
    item = LoyaltyItem.get(f"T#{shop.id}#C#{cid}", "LOYALTY", consistent_read=True)
    assert (item.book["pending"], item.book["available"]) == (0, 150)
    assert item.gsi2sk > iso(datetime.now(timezone.utc) + timedelta(days=300))  # next: the expiry notice


def test_points_expiring_soon_are_announced_once(shop, deliver):
    cid = shop.create_customer(email="expiring@example.com")["id"]
    shop.http.put("/v1/loyalty/program", json={**PROGRAM, "expiry_months": 1, "expiring_notice_days": 10},
                  headers={"If-Match": '"1"'})
    place(shop, cid, "x1", total=10000, paid_days_ago=30 + 25)  # active 25 days ago: expires in ~5
    events = deliver()
    notices = [e for e in events if e["type"] == "points.expiring"]
    assert len(notices) == 1 and notices[0]["data"]["points"] == 150
    timeline = shop.http.get(f"/v1/customers/{cid}/events").json()["data"]
    assert [e["type"] for e in timeline].count("points.expiring") == 1


def test_rejected_order_changes_write_nothing_and_emit_nothing(shop, deliver, raw_table):
    cid = shop.create_customer(email="strict@example.com")["id"]
    order = place(shop, cid, "b1", total=10000, paid_days_ago=1)
    deliver()
    before = partition_items(raw_table, shop)
    oid = order["id"]
    attempts = [
        (f"/v1/orders/{oid}/pay", {}, 409),                                   # paid twice
        (f"/v1/orders/{oid}/cancel", {}, 409),                                # cancel a paid order
        (f"/v1/orders/{oid}/refunds", {"amount": 100, "currency": "USD"}, 422),  # currency mismatch
        (f"/v1/orders/{oid}/refunds", {"amount": 10001}, 422),                # more than paid
        (f"/v1/orders/{oid}/refunds", {"amount": -5}, 422),
        ("/v1/orders", {"customer": {"id": "cus_01ARZ3NDEKTSV4RRFFQ69G5FAV"}, "source": "shop",
                        "external_id": "b2", "channel": "web", "currency": "EUR",
                        "placed_at": "2026-01-01T00:00:00Z", "total": 100,
                        "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 100}]}, 422),
        ("/v1/orders", {"customer": {"id": cid}, "source": "shop", "external_id": "b3", "channel": "web",
                        "currency": "EUR", "placed_at": "2026-01-01T00:00:00Z", "total": -100,
                        "lines": [{"sku": "s", "name": "n", "quantity": -1, "unit_price": 100}]}, 422),
    ]
    for path, body, status in attempts:
        r = shop.http.post(path, json=body)
        assert r.status_code == status, (path, body, r.text)
    assert partition_items(raw_table, shop) == before
    assert deliver() == []  # no stream records, so no events and no points
    assert loyalty(shop, cid)["pending"] == 150
