"""A plain reference model of the loyalty rules, for the property test.

Written separately from crm/loyalty/book.py, as directly as the rules read in
docs/loyalty.md: operations arrive one at a time, in the order they happened, with no
retries, no storage and no idempotency to worry about. The system under test must
end up exactly here however its events are delivered.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta

from crm.loyalty.points import order_points


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _s(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def _plus_months(s: str, n: int) -> str:
    d = _dt(s)
    y, m = divmod(d.month - 1 + n, 12)
    y, m = d.year + y, m + 1
    return _s(d.replace(year=y, month=m, day=min(d.day, calendar.monthrange(y, m)[1])))


def _month_index(s: str) -> int:
    return int(s[:4]) * 12 + int(s[5:7]) - 1


@dataclass
class Lot:
    id: str
    left: int
    active: bool
    activate_at: str
    expires_at: str | None = None
    order: str | None = None


@dataclass
class PaidOrder:
    points: int
    total: int
    month: int
    spend: int
    refunded: int = 0
    reversed: int = 0
    redeemed: int = 0
    clawed: int = 0


class Model:
    def __init__(self, program: dict) -> None:
        self.p = program
        self.lots: dict[str, Lot] = {}
        self.orders: dict[str, PaidOrder] = {}
        self.owed = self.lifetime = 0
        self.spend_by_month: dict[int, int] = {}
        self.points_by_month: dict[int, int] = {}
        self.ledger: list[tuple[str, int, str]] = []  # (type, points, source)
        self.placed = 0

    # balances
    @property
    def available(self) -> int:
        return sum(lot.left for lot in self.lots.values() if lot.active)

    @property
    def pending(self) -> int:
        return sum(lot.left for lot in self.lots.values() if not lot.active)

    def tier(self, now: str) -> str | None:
        last = _month_index(now)
        by = self.spend_by_month if self.p["tier_basis"] == "spend" else self.points_by_month
        value = sum(v for m, v in by.items() if last - 11 <= m <= last)
        return max((t for t in self.p["tiers"] if t["threshold"] <= value),
                   key=lambda t: t["threshold"], default={"name": None})["name"]

    # what happens
    def stamp(self, now: str, birthday: bool) -> dict:
        stamp = {"tier": self.tier(now), "birthday": birthday, "first": self.placed == 0}
        self.placed += 1
        return stamp

    def _make_active(self, lot: Lot, at: str) -> int:
        repaid = min(lot.left, self.owed)
        self.owed -= repaid
        if lot.order:
            self.orders[lot.order].redeemed += repaid  # spent on the debt
        lot.left -= repaid
        lot.active = True
        lot.expires_at = _plus_months(at, self.p["expiry_months"])
        if lot.left == 0:
            del self.lots[lot.id]
        return repaid

    def pay(self, oid: str, data: dict, now: str) -> None:
        self.advance(now)  # what fell due before the payment happened first
        points, _ = order_points(data, self.p)
        month = _month_index(data["paid_at"])
        spend = data["total"] if data["currency"] == self.p["currency"] else 0
        self.orders[oid] = PaidOrder(points, data["total"], month, spend)
        self.spend_by_month[month] = self.spend_by_month.get(month, 0) + spend
        self.points_by_month[month] = self.points_by_month.get(month, 0) + points
        self.lifetime += points
        if points:
            at = _s(_dt(data["paid_at"]) + timedelta(days=self.p["return_window_days"]))
            self.lots["lot_" + oid] = Lot("lot_" + oid, points, False, at, order=oid)
            self.ledger.append(("pending", points, "order.paid:" + oid))

    def refund(self, oid: str, refund_id: str, amount: int, now: str) -> None:
        self.advance(now)
        o = self.orders[oid]
        o.refunded += amount
        keep = 0 if o.refunded >= o.total else (o.points * (o.total - o.refunded)) // o.total
        delta = (o.points - keep) - o.reversed
        o.reversed += delta
        if o.spend:
            self.spend_by_month[o.month] -= amount
        self.points_by_month[o.month] -= delta
        self.lifetime -= delta
        if not delta:
            return
        lot = self.lots.get("lot_" + oid)
        take = min(delta, lot.left) if lot else 0
        if lot:
            lot.left -= take
            if not lot.left:
                del self.lots[lot.id]
        owe = min(delta - take, o.redeemed - o.clawed)
        o.clawed += owe
        self.owed += owe
        self.ledger.append(("reverse", -take, f"order.refunded:{oid}:{refund_id}"))

    def advance(self, now: str) -> None:
        """Apply activations and expiries up to ``now``, earliest first."""
        while True:
            due = sorted([(lot.activate_at, "activate", lot.id) for lot in self.lots.values() if not lot.active]
                         + [(lot.expires_at, "expire", lot.id) for lot in self.lots.values()
                            if lot.active and lot.expires_at])
            if not due or due[0][0] > now:
                return
            at, what, lid = due[0]
            lot = self.lots[lid]
            if what == "activate":
                before = lot.left
                repaid = self._make_active(lot, at)
                self.ledger.append(("activate", before - repaid, "schedule.activate:" + lid))
            else:
                self.ledger.append(("expire", -lot.left, "schedule.expire:" + lid))
                del self.lots[lid]

    def redeem(self, points: int, now: str, source: str) -> bool:
        self.advance(now)
        if points > self.available:
            return False
        for lot in sorted((x for x in self.lots.values() if x.active),
                          key=lambda x: (x.expires_at or "~", x.activate_at, x.id)):
            if not points:
                break
            take = min(points, lot.left)
            lot.left -= take
            points -= take
            if lot.order:
                self.orders[lot.order].redeemed += take
            if not lot.left:
                del self.lots[lot.id]
            self.ledger.append(("redeem", -take, source))
        return True
