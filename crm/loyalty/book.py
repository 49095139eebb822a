"""A customer's points book: lots, the balance projection and the entries that change
them. Pure (no I/O), so the storage layer, the property test and the balance view all
run the same rules.

State (kept whole in the customer's ``LOYALTY`` item):
- ``lots``: pending or active points with what is left in each; an order's lot is
  ``lot_<order id>``, an adjustment's ``lot_adj_<seq>``;
- ``orders``: per paid order, the points it earned and what refunds took back, so a
  redelivered or reordered event is recognised and a reversal is proportional;
- ``months``: qualifying spend and points by month of payment, for tiers;
- ``available``/``pending`` (always the sums of the active/pending lots), ``lifetime``,
  ``owed`` (reversed points that had already been redeemed), ``tier``, ``seq``.

Two books are combined by ``merge`` when two customers are merged (crm/merge.py): the
survivor's book takes the other's lots, orders and months, and the other's ledger
entries are renumbered after the survivor's (``merged_entry``); the other's book is
left closed (``merged_into``), so it never earns again.

Every change appends ledger entries numbered by ``seq``. Times only move forward through
``catch_up(now)``, which applies whatever fell due (activation, expiry, expiry notices,
tier changes) in time order, so the state depends on the facts and the clock, not on
when a scheduled run happened to come by.
"""

from __future__ import annotations

import calendar
import copy
import re
from datetime import timedelta
from typing import Any

from crm import clock
from crm.loyalty.points import order_points, reversed_after

PAID_STATES = ("paid", "fulfilled", "partially_refunded", "refunded")


class InsufficientPoints(Exception):
    def __init__(self, available: int) -> None:
        super().__init__(f"only {available} points are available")
        self.available = available


def empty() -> dict[str, Any]:
    return {
        "seq": 0,
        "available": 0,
        "pending": 0,
        "lifetime": 0,
        "owed": 0,
        "tier": None,
        "tier_since": None,
        "lots": {},
        "orders": {},
        "months": {},
    }


def add_days(iso: str, days: int) -> str:
    return clock.iso(clock.parse(iso) + timedelta(days=days))


def add_months(iso: str, months: int) -> str:
    """Calendar months; the 31st becomes the month's last day when it has fewer."""
    dt = clock.parse(iso)
    y, m = divmod(dt.month - 1 + months, 12)
    year, month = dt.year + y, m + 1
    return clock.iso(dt.replace(year=year, month=month, day=min(dt.day, calendar.monthrange(year, month)[1])))


def month_of(iso: str, shift: int = 0) -> str:
    y, m = divmod(int(iso[5:7]) - 1 + shift, 12)
    return f"{int(iso[:4]) + y:04d}-{m + 1:02d}"


class Book:
    def __init__(self, state: dict[str, Any] | None, program: dict[str, Any] | None) -> None:
        self.s = copy.deepcopy(state) if state else empty()
        self.program = program or {}
        self.entries: list[dict[str, Any]] = []
        self.due_entries = 0  # how many entries and notices catch_up wrote (what fell due)

    # --- ledger -----------------------------------------------------------------
    def _entry(
        self,
        type_: str,
        points: int,
        lot: str | None,
        source: str,
        at: str,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.s["seq"] += 1
        entry = {
            "seq": self.s["seq"],
            "type": type_,
            "points": points,
            "lot": lot,
            "source": source,
            "at": at,
            "detail": detail or {},
        }
        if reason is not None:
            entry["reason"] = reason
        self.entries.append(entry)

    def _credit(self, lot_id: str, points: int, at: str, order: str | None) -> int:
        """Make ``points`` available in an active lot, paying what is owed first."""
        repaid = min(points, self.s["owed"])
        self.s["owed"] -= repaid
        if order in self.s["orders"]:
            # the order's points paid a debt: they are spent, like redeemed ones
            self.s["orders"][order]["redeemed"] += repaid
        left = points - repaid
        expiry = self.program.get("expiry_months")
        lot = {
            "state": "active",
            "left": left,
            "activated_at": at,
            "expires_at": add_months(at, expiry) if expiry else None,
            "order": order,
        }
        if left:
            self.s["lots"][lot_id] = lot
        else:
            self.s["lots"].pop(lot_id, None)
        self.s["available"] += left
        return repaid

    # --- orders -----------------------------------------------------------------
    def apply_order(self, order_id: str, status: str, data: dict[str, Any], now: str) -> None:
        """Bring the book in line with an order's state: earn once it is paid, reverse
        in proportion for each refund not seen yet. Idempotent and monotonic, so an old
        image delivered late, or twice, changes nothing."""
        o = self.s["orders"].get(order_id)
        if o is None:
            if status not in PAID_STATES or not self.program:
                return
            if (data.get("loyalty") or {}).get("program_at_payment") is False:
                return  # paid before the program existed: earns nothing, ever
            if self.program.get("earns_from") and data["placed_at"] < self.program["earns_from"]:
                return  # history from before the program's start: earns nothing, ever
            o = self._earn(order_id, data, now)
        elif data.get("revision", 0) > o.get("r", 0):
            self._edited(order_id, o, data, now)
        for refund in data.get("refunds", []):
            if refund["id"] not in o["rf"]:
                self._reverse(order_id, o, data, refund, now)

    def _earn(self, order_id: str, data: dict[str, Any], now: str) -> dict[str, Any]:
        points, detail = order_points(data, self.program)
        paid_at = data.get("paid_at") or now
        qualifying = data["total"] if data["currency"] == self.program.get("currency") else 0
        month = month_of(paid_at)
        o = {
            "p": points,
            "rev": 0,
            "rf": [],
            "refunded": 0,
            "m": month,
            "q": qualifying,
            "total": data["total"],
            "redeemed": 0,
            "owed": 0,
            "r": data.get("revision", 0),
        }
        self.s["orders"][order_id] = o
        bucket = self.s["months"].setdefault(month, {"spend": 0, "points": 0})
        bucket["spend"] += qualifying
        bucket["points"] += points
        self.s["lifetime"] += points
        if points:
            lot_id = f"lot_{order_id}"
            source = f"order.paid:{order_id}"
            window = self.program.get("return_window_days", 0)
            if window:
                self.s["lots"][lot_id] = {
                    "state": "pending",
                    "left": points,
                    "order": order_id,
                    "activate_at": add_days(paid_at, window),
                }
                self.s["pending"] += points
                self._entry("pending", points, lot_id, source, now, detail=detail)
            else:
                repaid = self._credit(lot_id, points, paid_at, order_id)
                self._entry(
                    "earn",
                    points - repaid,
                    lot_id,
                    source,
                    now,
                    detail={**detail, "repaid_owed": repaid} if repaid else detail,
                )
        return o

    def _edited(self, order_id: str, o: dict[str, Any], data: dict[str, Any], now: str) -> None:
        """An order edited after it earned (a newer ``revision``): its points become what
        the new state earns, less what its refunds took back; only the difference is
        written (an ``earn``/``pending`` or a ``reverse`` entry), so nothing counts twice."""
        points, detail = order_points(data, self.program)
        qualifying = data["total"] if data["currency"] == self.program.get("currency") else 0
        target = reversed_after(points, data["total"], o["refunded"])
        delta = (points - target) - (o["p"] - o["rev"])
        bucket = self.s["months"].setdefault(o["m"], {"spend": 0, "points": 0})
        bucket["spend"] += qualifying - o["q"]
        bucket["points"] += delta
        self.s["lifetime"] += delta
        o.update(p=points, rev=target, q=qualifying, total=data["total"], r=data.get("revision", 0))
        if not delta:
            return
        lot_id = f"lot_{order_id}"
        lot = self.s["lots"].get(lot_id)
        source = f"order.updated:{order_id}:{o['r']}"
        detail = {**detail, "edited": True, "points": points, "reversed": target}
        if delta > 0:
            if lot is None:
                repaid = self._credit(lot_id, delta, now, order_id)
                self._entry("earn", delta - repaid, lot_id, source, now, detail=detail)
            elif lot["state"] == "pending":
                lot["left"] += delta
                self.s["pending"] += delta
                self._entry("pending", delta, lot_id, source, now, detail=detail)
            else:
                repaid = min(delta, self.s["owed"])
                self.s["owed"] -= repaid
                o["redeemed"] += repaid
                lot["left"] += delta - repaid
                self.s["available"] += delta - repaid
                if not lot["left"]:
                    del self.s["lots"][lot_id]
                self._entry("earn", delta - repaid, lot_id, source, now, detail=detail)
            return
        take = min(-delta, lot["left"]) if lot else 0
        if lot:
            lot["left"] -= take
            self.s["pending" if lot["state"] == "pending" else "available"] -= take
            if not lot["left"]:
                del self.s["lots"][lot_id]
        rest = -delta - take
        owe = min(rest, o["redeemed"] - o["owed"])
        o["owed"] += owe
        self.s["owed"] += owe
        self._entry(
            "reverse",
            -take,
            lot_id,
            source,
            now,
            detail={**detail, "from": lot["state"] if lot else None, "owed": owe, "written_off": rest - owe},
        )

    def _reverse(
        self, order_id: str, o: dict[str, Any], data: dict[str, Any], refund: dict[str, Any], now: str
    ) -> None:
        o["rf"].append(refund["id"])
        o["refunded"] += refund["amount"]
        target = reversed_after(o["p"], o["total"], o["refunded"])
        delta = target - o["rev"]
        o["rev"] = target
        bucket = self.s["months"].setdefault(o["m"], {"spend": 0, "points": 0})
        if o["q"]:
            bucket["spend"] -= refund["amount"]
        bucket["points"] -= delta
        self.s["lifetime"] -= delta
        if not delta:
            return
        lot_id = f"lot_{order_id}"
        lot = self.s["lots"].get(lot_id)
        take = min(delta, lot["left"]) if lot else 0
        if lot:
            lot["left"] -= take
            self.s["pending" if lot["state"] == "pending" else "available"] -= take
            if not lot["left"]:
                del self.s["lots"][lot_id]
        rest = delta - take
        owe = min(rest, o["redeemed"] - o["owed"])
        o["owed"] += owe
        self.s["owed"] += owe
        self._entry(
            "reverse",
            -take,
            lot_id,
            f"order.refunded:{order_id}:{refund['id']}",
            now,
            detail={
                "reversed": delta,
                "from": lot["state"] if lot else None,
                "owed": owe,
                "written_off": rest - owe,
                "refund": refund["amount"],
            },
        )

    # --- spending ---------------------------------------------------------------
    def spend(
        self,
        points: int,
        type_: str,
        source: str,
        now: str,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Take ``points`` from the active lots, oldest expiry first; never below zero."""
        self.catch_up(now)
        if points > self.s["available"]:
            raise InsufficientPoints(self.s["available"])
        order = sorted(
            (lot.get("expires_at") or "~", lot["activated_at"], lid)
            for lid, lot in self.s["lots"].items()
            if lot["state"] == "active"
        )
        for _, _, lid in order:
            if not points:
                break
            lot = self.s["lots"][lid]
            take = min(points, lot["left"])
            lot["left"] -= take
            points -= take
            self.s["available"] -= take
            if lot.get("order") in self.s["orders"]:
                self.s["orders"][lot["order"]]["redeemed"] += take
            if not lot["left"]:
                del self.s["lots"][lid]
            self._entry(type_, -take, lid, source, now, reason, detail)

    def credit(self, points: int, source: str, now: str, reason: str) -> None:
        """A positive manual adjustment: a new active lot, expiring like any other."""
        self.catch_up(now)
        lot_id = f"lot_adj_{self.s['seq'] + 1}"
        repaid = self._credit(lot_id, points, now, None)
        self.s["lifetime"] += points
        self._entry("adjust", points - repaid, lot_id, source, now, reason, {"repaid_owed": repaid} if repaid else None)

    # --- time -------------------------------------------------------------------
    def _due(self) -> list[tuple[str, str, str]]:
        notice = self.program.get("expiring_notice_days", 0)
        due = []
        for lid, lot in self.s["lots"].items():
            if lot["state"] == "pending":
                due.append((lot["activate_at"], "activate", lid))
            elif lot.get("expires_at"):
                due.append((lot["expires_at"], "expire", lid))
                if not lot.get("warned") and notice:
                    due.append((add_days(lot["expires_at"], -notice), "warn", lid))
        return sorted(due)

    def overdue(self, now: str) -> bool:
        """Whether something fell due by ``now`` that catch_up has not applied."""
        due = self._due()
        return bool(due) and due[0][0] <= now

    def catch_up(self, now: str, limit: int | None = None) -> None:
        """Apply what fell due by ``now``, in time order; with ``limit``, stop once that
        many ledger entries and expiry notices are written (the rest stays due, for the
        next call): each is a timeline entry in the same transaction too."""
        start, warned = len(self.entries), 0
        while limit is None or len(self.entries) - start + warned < limit:
            due = self._due()
            if not due or due[0][0] > now:
                break
            at, what, lid = due[0]
            lot = self.s["lots"][lid]
            if what == "activate":
                self.s["pending"] -= lot["left"]
                points = lot["left"]
                repaid = self._credit(lid, points, at, lot.get("order"))
                self._entry(
                    "activate",
                    points - repaid,
                    lid,
                    f"schedule.activate:{lid}",
                    now,
                    detail={"repaid_owed": repaid} if repaid else None,
                )
            elif what == "expire":
                self._expire(lid, lot, now)
            else:
                lot["warned"] = True
                warned += 1
        self.due_entries += len(self.entries) - start + warned
        self._retier(now)

    def _expire(self, lid: str, lot: dict[str, Any], now: str) -> None:
        self.s["available"] -= lot["left"]
        del self.s["lots"][lid]
        self._entry(
            "expire", -lot["left"], lid, f"schedule.expire:{lid}", now, detail={"expired_at": lot["expires_at"]}
        )

    def qualifying(self, now: str) -> int:
        basis = self.program.get("tier_basis", "spend")
        first = month_of(now, -11)
        return sum(b[basis] for m, b in self.s["months"].items() if first <= m <= month_of(now))

    def _retier(self, now: str) -> None:
        first = month_of(now, -11)
        for m in [m for m in self.s["months"] if m < first]:
            del self.s["months"][m]  # out of the rolling window for good
        tiers = self.program.get("tiers") or []
        value = self.qualifying(now)
        tier = None
        for t in tiers:
            if value >= t["threshold"]:
                tier = t["name"]
        if tier != self.s["tier"]:
            self.s["tier"], self.s["tier_since"] = tier, now

    def next_due(self) -> str | None:
        """When this book next needs a scheduled ``catch_up``: a lot to activate, expire
        or warn about, or a month leaving the tier window."""
        times = [at for at, _, _ in self._due()]
        if self.s["months"] and self.program.get("tiers"):
            times.append(month_of(min(self.s["months"]), 12) + "-01T00:00:00.000Z")
        return min(times) if times else None

    # --- checks -----------------------------------------------------------------
    def check(self) -> None:
        """The invariants; raises AssertionError (used by tests and before each write)."""
        active = sum(lot["left"] for lot in self.s["lots"].values() if lot["state"] == "active")
        pending = sum(lot["left"] for lot in self.s["lots"].values() if lot["state"] == "pending")
        if not (
            self.s["available"] == active
            and self.s["pending"] == pending
            and self.s["available"] >= 0
            and self.s["owed"] >= 0
            and all(lot["left"] > 0 for lot in self.s["lots"].values())
        ):
            raise AssertionError(f"loyalty invariants broken: {self.s}")


# --- merging two customers' books ------------------------------------------------

_ADJ_LOT = re.compile(r"^lot_adj_([0-9]+)$")


def merged_lot_id(lot_id: str | None, base: int) -> str | None:
    """A lot of the other book, as named in the combined one. Order lots
    (``lot_<order id>``) keep their names: an order is in one book only. An adjustment's
    lot is named after its ledger entry, so it follows the entry's new number
    (``lot_adj_<base + seq>``), which no lot of the survivor has or will have."""
    m = _ADJ_LOT.match(lot_id or "")
    return f"lot_adj_{base + int(m.group(1))}" if m else lot_id


def merged_entry(entry: dict[str, Any], base: int, other_id: str) -> dict[str, Any]:
    """One of the other's ledger entries as it is copied to the survivor's ledger:
    numbered after the survivor's entries, its lot renamed, and marked, so that the
    copy derives no points event (crm/events.py)."""
    out = copy.deepcopy(entry)
    out["seq"] = base + entry["seq"]
    if out.get("lot"):
        out["lot"] = merged_lot_id(out["lot"], base)
    out["detail"] = {**(entry.get("detail") or {}), "merged_from": other_id, "merged_seq": entry["seq"]}
    return out


def merge(
    survivor: dict[str, Any] | None,
    other: dict[str, Any] | None,
    program: dict[str, Any] | None,
    now: str,
    *,
    survivor_id: str,
    other_id: str,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Combine ``other`` into ``survivor``: (the combined state, the other's closed
    state, ``base``: the survivor's seq before, to add to the other's entry numbers).

    Lots, paid orders and months are united; available, pending, lifetime and owed are
    summed; the seq moves on by the other's, reserving the numbers of its entries; the
    tier is recomputed from the combined months (the program's rules, as of ``now``).
    Pure; raises ValueError if the books cannot be combined (a closed book, an order in
    both)."""
    s = Book(survivor, program)
    o = copy.deepcopy(other) if other else empty()
    if o.get("merged_into") or s.s.get("merged_into"):
        raise ValueError("a closed book cannot be merged")
    both = set(o["orders"]) & set(s.s["orders"])
    if both:
        raise ValueError(f"orders in both books: {sorted(both)}")
    base = s.s["seq"]
    for lid, lot in o["lots"].items():
        new = merged_lot_id(lid, base)
        if new in s.s["lots"]:
            raise ValueError(f"lot {new} is in both books")
        s.s["lots"][new] = {**lot, "merged_from": other_id}
    s.s["orders"].update(o["orders"])
    for month, bucket in o["months"].items():
        mine = s.s["months"].setdefault(month, {"spend": 0, "points": 0})
        mine["spend"] += bucket["spend"]
        mine["points"] += bucket["points"]
    for name in ("available", "pending", "lifetime", "owed"):
        s.s[name] += o[name]
    s.s["seq"] = base + o["seq"]
    s.s.setdefault("merged", {})[other_id] = {"base": base, "entries": o["seq"]}
    s._retier(now)
    s.check()
    closed = {**empty(), "seq": o["seq"], "merged_into": survivor_id, "merge_base": base}
    return s.s, closed, base
