"""How many points an order earns, and how much of them a refund takes back. Pure.

Exact arithmetic (``Fraction``) so the same order always earns the same points,
whatever the float formatting of the program's rates and multipliers.
"""

from __future__ import annotations

from fractions import Fraction
from math import ceil, floor
from typing import Any

from common.currency import exponent


def minor_per_major(currency: str) -> int:
    return 10 ** exponent(currency)


def _q(x: float) -> Fraction:
    return Fraction(str(x))


def round_points(value: Fraction, rule: str) -> int:
    if rule == "ceil":
        return ceil(value)
    if rule == "nearest":
        return floor(value + Fraction(1, 2))
    return floor(value)


def order_points(order: dict[str, Any], program: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Points for a paid order and how they were made up.

    Lines earn ``rate × price`` times their SKU (else category) multiplier; the discount
    is shared out over the lines in proportion; shipping and tax earn nothing. The sum
    is multiplied by the channel's, the tier's (held when the order was placed) and the
    birthday-month multiplier, rounded by the program's rule; the first-order bonus is
    added after rounding. ``order`` is the order's stored data.
    """
    rate = program["earn_rates"].get(order["currency"])
    if not program.get("enabled", True) or rate is None:
        return 0, {"reason": "no earn rate for " + order["currency"] if rate is None else "program disabled"}
    per_major = minor_per_major(order["currency"])
    subtotal = sum(line["quantity"] * line["unit_price"] for line in order["lines"])
    weighted = Fraction(0)
    for line in order["lines"]:
        mult = program.get("sku_multipliers", {}).get(line["sku"])
        if mult is None:
            mult = program.get("category_multipliers", {}).get(line.get("category") or "", 1)
        weighted += line["quantity"] * line["unit_price"] * _q(mult)
    if subtotal:
        weighted *= Fraction(subtotal - order.get("discount", 0), subtotal)
    stamp = order.get("loyalty") or {}
    tier_mult = next((t.get("multiplier", 1) for t in program.get("tiers", []) if t["name"] == stamp.get("tier")), 1)
    birthday = program.get("birthday_multiplier", 1) if stamp.get("birthday") else 1
    channel = program.get("channel_multipliers", {}).get(order["channel"], 1)
    raw = weighted / per_major * _q(rate) * _q(channel) * _q(tier_mult) * _q(birthday)
    base = round_points(raw, program.get("rounding", "floor"))
    bonus = program.get("first_order_bonus", 0) if stamp.get("first") else 0
    detail = {
        "base": base,
        "first_order_bonus": bonus,
        "tier": stamp.get("tier"),
        "tier_multiplier": tier_mult,
        "channel_multiplier": channel,
        "birthday_multiplier": birthday,
    }
    return base + bonus, detail


def reversed_after(points: int, total: int, refunded: int) -> int:
    """Points taken back once ``refunded`` of ``total`` is refunded: in proportion, and
    rounded so that what the customer keeps is never more than its share."""
    if total <= 0 or refunded >= total:
        return points
    return points - (points * (total - refunded)) // total
