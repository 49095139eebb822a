"""How many points an order earns, and how much a refund takes back (pure rules)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm.loyalty.points import order_points, reversed_after

PROGRAM = {"currency": "USD", "earn_rates": {"USD": 1, "JPY": 0.01, "KWD": 3}, "rounding": "floor",
           "channel_multipliers": {"mobile": 2}, "category_multipliers": {"shoes": 1.5},
           "sku_multipliers": {"GIFT": 0, "SHOE-GOLD": 4}, "first_order_bonus": 100,
           "birthday_multiplier": 2, "tiers": [{"name": "Bronze", "threshold": 0},
                                               {"name": "Gold", "threshold": 1000, "multiplier": 1.5}]}


def order(lines, currency="USD", channel="web", discount=0, stamp=None):
    return {"currency": currency, "channel": channel, "discount": discount, "lines": lines,
            "loyalty": stamp or {}}


def line(price, qty=1, sku="X", category=None):
    return {"sku": sku, "quantity": qty, "unit_price": price, "category": category}


def test_one_point_per_unit_floored_and_shipping_earns_nothing():
    assert order_points(order([line(1999)]), PROGRAM)[0] == 19


@pytest.mark.parametrize("rule,expected", [("floor", 19), ("nearest", 20), ("ceil", 20)])
def test_rounding_rules(rule, expected):
    assert order_points(order([line(1950)]), {**PROGRAM, "rounding": rule})[0] == expected


def test_sku_multiplier_wins_over_the_category_and_zero_excludes():
    lines = [line(10000, sku="SHOE-GOLD", category="shoes"), line(10000, sku="SHOE-2", category="shoes"),
             line(5000, sku="GIFT")]
    points, detail = order_points(order(lines), PROGRAM)
    assert points == 400 + 150 + 0 and detail["base"] == 550


def test_the_discount_is_shared_over_the_lines_in_proportion():
    lines = [line(10000, sku="SHOE-2", category="shoes"), line(10000)]
    # 20% off both lines: (150 + 100) x 0.8
    assert order_points(order(lines, discount=4000), PROGRAM)[0] == 200


def test_channel_tier_birthday_multiply_and_the_bonus_is_added_after_rounding():
    stamp = {"tier": "Gold", "birthday": True, "first": True}
    points, detail = order_points(order([line(1001)], channel="mobile", stamp=stamp), PROGRAM)
    assert detail["base"] == 60  # floor(10.01 x 2 x 1.5 x 2) = floor(60.06)
    assert points == 160 and detail["first_order_bonus"] == 100


def test_currency_minor_units_and_missing_rates():
    assert order_points(order([line(12345)], currency="JPY"), PROGRAM)[0] == 123   # no minor unit
    assert order_points(order([line(12345)], currency="KWD"), PROGRAM)[0] == 37    # 12.345 x 3
    assert order_points(order([line(12345)], currency="EUR"), PROGRAM)[0] == 0     # no rate
    assert order_points(order([line(12345)]), {**PROGRAM, "enabled": False})[0] == 0


def test_reversal_is_proportional_and_a_full_refund_takes_all():
    assert reversed_after(250, 20000, 5000) == 63     # keeps floor(187.5)
    assert reversed_after(250, 20000, 20000) == 250
    assert reversed_after(250, 20000, 0) == 0
    assert reversed_after(0, 100, 50) == 0


@given(points=st.integers(0, 10**6), total=st.integers(1, 10**7), data=st.data())
def test_reversal_grows_with_each_refund_and_never_exceeds_the_points(points, total, data):
    refunds = data.draw(st.lists(st.integers(1, total), max_size=6))
    refunded, before = 0, 0
    for amount in refunds:
        refunded = min(total, refunded + amount)
        now = reversed_after(points, total, refunded)
        assert before <= now <= points
        before = now
    if refunded == total:
        assert before == points
