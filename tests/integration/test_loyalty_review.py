"""Reproductions of loyalty bugs found in review (each failed before its fix)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from unittest import mock


from tests.integration.test_loyalty_api import (  # noqa: F401 - fixtures (deliver: tests/conftest.py)
    PROGRAM,
    loyalty,
    place,
    redeem,
    shop,
)
from tests.loyalty_helpers import iso


def test_a_ledger_cursor_with_a_non_ascii_digit_is_a_4xx_not_a_500(shop):
    from crm.paging import encode_cursor

    cid = shop.create_customer(email="cursor@example.com")["id"]
    for value in ("\u00b2", "\u2460", "\u0663"):  # superscript two, circled one, Arabic-Indic three
        cursor = encode_cursor("ledger:" + cid, value)
        r = shop.http.get(f"/v1/customers/{cid}/loyalty/ledger", params={"cursor": cursor})
        assert r.status_code < 500 and r.status_code in (200, 422), (value, r.status_code, r.text)


def test_an_order_paid_before_the_program_existed_earns_nothing_when_refunded_later(tenant, deliver):
    """docs/loyalty.md: "Orders paid before a program exists earn nothing" and "replaying
    the whole stream changes nothing". A later event of such an order (a partial refund,
    or a redelivered order.paid) must not earn its points after the program is created."""
    cid = tenant.create_customer(email="early@example.com")["id"]
    order = place(tenant, cid, "pre1", total=10000, paid_days_ago=1)
    deliver()  # no program: nothing
    assert tenant.http.put("/v1/loyalty/program", json=PROGRAM).status_code == 201
    r = tenant.http.post(f"/v1/orders/{order['id']}/refunds", json={"amount": 1000})
    assert r.status_code == 200, r.text
    deliver()
    view = loyalty(tenant, cid)
    assert (view["pending"], view["available"], view["lifetime_earned"]) == (0, 0, 0), view


def test_a_redelivered_payment_of_an_order_paid_before_the_program_earns_nothing(tenant, deliver):
    from functions import loyalty as handler

    cid = tenant.create_customer(email="early2@example.com")["id"]
    order = place(tenant, cid, "pre2", total=10000, paid_days_ago=1)
    event = next(e for e in deliver() if e["type"] == "order.paid")
    assert tenant.http.put("/v1/loyalty/program", json=PROGRAM).status_code == 201
    handler.apply(event)  # the same event, delivered again (at least once) after the program exists
    assert loyalty(tenant, cid)["lifetime_earned"] == 0
    assert order["id"]


def test_more_than_90_lots_falling_due_together_do_not_block_the_book(shop):
    """The 90-entry limit is documented for one redemption or adjustment. Lots that fall
    due together (here: 91 lots expiring in the same schedule interval) must not make
    every later write of the customer fail, nor the scheduled run."""
    from crm.loyalty import service
    from crm.loyalty.schemas import RedemptionCreate
    from crm.storage import LoyaltyItem

    cid = shop.create_customer(email="many@example.com")["id"]
    for i in range(91):
        r = shop.http.post(f"/v1/customers/{cid}/loyalty/adjustments", json={"points": 1, "reason": f"r{i}"})
        assert r.status_code == 201, r.text
    r = shop.http.post(f"/v1/customers/{cid}/loyalty/adjustments", json={"points": 5, "reason": "later"})
    assert r.status_code == 201
    # 12 months on, the 91 lots expire together; the 92nd (5 points) a moment later
    later = datetime.now(timezone.utc) + timedelta(days=366)
    first_expiry = min(lot["expires_at"] for lot in loyalty(shop, cid)["lots"])
    at = datetime.fromisoformat(first_expiry.replace("Z", "+00:00"))
    # the schedule, when they are due: must not raise, and may take several runs
    for _ in range(3):
        service.maintain(shop.ctx, cid, iso(at + timedelta(minutes=5)))
    book = LoyaltyItem.get(f"T#{shop.id}#C#{cid}", "LOYALTY", consistent_read=True).book
    assert book["available"] == 0 and not book["lots"]
    # a redemption right after the lots fell due (nothing run in between) is not refused
    cid2 = shop.create_customer(email="many2@example.com")["id"]
    for i in range(91):
        shop.http.post(f"/v1/customers/{cid2}/loyalty/adjustments", json={"points": 1, "reason": f"r{i}"})
    shop.http.post(f"/v1/customers/{cid2}/loyalty/adjustments", json={"points": 500, "reason": "big"})
    # put the 500-point lot on a later expiry so it is still there
    item = LoyaltyItem.get(f"T#{shop.id}#C#{cid2}", "LOYALTY", consistent_read=True)
    big = next(lid for lid, lot in item.book["lots"].items() if lot["left"] == 500)
    item.book["lots"][big]["expires_at"] = iso(later + timedelta(days=365))
    item.save()
    with mock.patch("crm.clock.now", return_value=later):
        change, created = service.redeem(shop.ctx, cid2, RedemptionCreate(points=10), "after-expiry")
    assert created and change.balance.available == 490


def test_points_that_repaid_a_debt_become_owed_again_when_their_order_is_refunded(shop, deliver):
    """docs/loyalty.md: what was spent becomes owed on a refund; only expired points are
    written off. Points of order B that paid order A's debt were spent (on the debt): a
    refund of B must not make that debt disappear (buy, redeem, refund, buy, refund)."""
    cid = shop.create_customer(email="debt@example.com")["id"]
    a = place(shop, cid, "da", total=10000, paid_days_ago=40)   # 100 + 50 bonus, active
    deliver()
    assert redeem(shop, cid, 150, key="spend-all").status_code == 201
    shop.http.post(f"/v1/orders/{a['id']}/refunds", json={"amount": 10000})
    deliver()
    assert (loyalty(shop, cid)["owed"], loyalty(shop, cid)["available"]) == (150, 0)
    b = place(shop, cid, "db", total=20000, paid_days_ago=35)   # 200, active: repays the 150
    deliver()
    assert (loyalty(shop, cid)["owed"], loyalty(shop, cid)["available"]) == (0, 50)
    shop.http.post(f"/v1/orders/{b['id']}/refunds", json={"amount": 20000})
    deliver()
    view = loyalty(shop, cid)
    # both orders refunded, 150 points redeemed: they are owed again
    assert (view["available"], view["owed"], view["lifetime_earned"]) == (0, 150, 0), view


def test_an_if_match_with_a_non_ascii_digit_is_a_4xx_not_a_500(shop):
    r = shop.http.put("/v1/loyalty/program", json=PROGRAM, headers={"If-Match": b'"\xb2"'})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert shop.http.get("/v1/loyalty/program").json()["version"] == 1
