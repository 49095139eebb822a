"""The 360 view's loyalty block is GET …/loyalty's balance, and a reversal's timeline
entry says how many points were reversed."""
from __future__ import annotations

from tests.loyalty_helpers import place_order

PROGRAM = {"currency": "EUR", "earn_rates": {"EUR": 1}, "rounding": "floor", "tier_basis": "spend",
           "tiers": [{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 50000}],
           "return_window_days": 0, "expiry_months": 12,
           "earns_from": "2000-01-01T00:00:00Z"}  # the tests back-date their orders


def test_360_loyalty_is_the_loyalty_balance_with_progress_and_lots(tenant, deliver):
    assert tenant.http.put("/v1/loyalty/program", json=PROGRAM).status_code == 201
    cid = tenant.create_customer(email="three-sixty@example.com")["id"]
    place_order(tenant, {"id": cid}, "l360-1", total=12000, paid_days_ago=3)
    deliver()
    balance = tenant.http.get(f"/v1/customers/{cid}/loyalty").json()
    view = tenant.http.get(f"/v1/customers/{cid}/360").json()["loyalty"]
    assert balance["progress"]["next_tier"] == "Silver" and balance["lots"]
    assert {k: v for k, v in view.items() if k != "as_of"} == \
        {k: v for k, v in balance.items() if k != "as_of"}


def test_a_reversal_on_the_timeline_says_how_many_points_were_reversed(tenant, deliver):
    assert tenant.http.put("/v1/loyalty/program", json=PROGRAM).status_code == 201
    cid = tenant.create_customer(email="reversal@example.com")["id"]
    order = place_order(tenant, {"id": cid}, "rev-1", total=10000, paid_days_ago=1)
    deliver()
    r = tenant.http.post(f"/v1/customers/{cid}/loyalty/redemptions", json={"points": 60},
                         headers={"Idempotency-Key": "rev-spend"})
    assert r.status_code in (200, 201), r.text
    r = tenant.http.post(f"/v1/orders/{order['id']}/refunds", json={"amount": 10000, "reason": "returned"})
    assert r.status_code == 200, r.text
    deliver()
    entries = tenant.http.get(f"/v1/customers/{cid}/events", params={"limit": 100}).json()["data"]
    [reversal] = [e for e in entries if e["type"] == "points.reversed"]
    # 100 points earned, 60 already redeemed: 100 reversed, 40 taken back, 60 owed
    assert reversal["summary"].startswith("100 points reversed"), reversal["summary"]
    assert "60" in reversal["summary"] and order["id"] in reversal["summary"]
