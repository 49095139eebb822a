"""RFM scores, the named RFM segments, lifetime value and VIP. Pure: no I/O.

- Cut points: the tenant's quintile boundaries (20/40/60/80 %) of days since the last
  order, order count and net spend, recomputed by a schedule (crm/segments/cuts.py);
  ``DEFAULT_CUTS`` until then.
- Scores 1-5: a value on a boundary takes the better score. R counts whole days since
  the last order (more recent = higher), so it changes only at an exact instant.
- ``NAMED``: the eleven named segments as rectangles of the R x F grid, covering each of
  the 25 cells exactly once (docs/segments.md shows the table).
- Lifetime value: historical = net spend; predicted = the next 12 months at the
  customer's usual pace, halved for every usual gap between orders they have stayed
  away (a step function of time, so ``next_change`` knows its next step exactly).
- VIP: historical value at or above the tenant's top-20 % threshold (and above 0).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from common.clock import iso
from crm.segments.aggregate import instant

MS = timedelta(milliseconds=1)
DAY = timedelta(days=1)
YEAR = timedelta(days=365)
MIN_GAP = timedelta(days=7)  # a faster pace than weekly is not extrapolated to a year
FIRST_GAP = YEAR  # one order so far: assume one a year
TOP_SHARE = 0.2  # VIP: the top 20 % by historical value

DEFAULT_CUTS: dict[str, list[float]] = {
    "r": [30, 90, 180, 365],  # days since the last order
    "f": [1, 2, 3, 5],  # orders
    "m": [2_000, 5_000, 10_000, 25_000],  # net spend, minor units
}

# name -> {"r": [lo, hi], "f": [lo, hi]} (inclusive score ranges), in the order
NAMED: dict[str, dict[str, list[int]]] = {
    "Champions": {"r": [5, 5], "f": [4, 5]},
    "Loyal": {"r": [3, 4], "f": [4, 5]},
    "Potential loyalist": {"r": [4, 5], "f": [2, 3]},
    "New": {"r": [5, 5], "f": [1, 1]},
    "Promising": {"r": [4, 4], "f": [1, 1]},
    "Need attention": {"r": [3, 3], "f": [3, 3]},
    "About to sleep": {"r": [3, 3], "f": [1, 2]},
    "At risk": {"r": [1, 2], "f": [3, 4]},
    "Can't lose them": {"r": [1, 2], "f": [5, 5]},
    "Hibernating": {"r": [2, 2], "f": [1, 2]},
    "Lost": {"r": [1, 1], "f": [1, 2]},
}


def cut_points(values: list[float]) -> list[float]:
    """The 4 quintile boundaries (20/40/60/80 %, linear interpolation between the sorted
    values); [] without values (scores then use DEFAULT_CUTS for that measure)."""
    xs = sorted(values)
    if not xs:
        return []
    out = []
    for q in (0.2, 0.4, 0.6, 0.8):
        pos = q * (len(xs) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        out.append(float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)))
    return out


def _cuts(cuts: dict[str, Any] | None, key: str) -> list[float]:
    got = (cuts or {}).get(key)
    if isinstance(got, list) and len(got) == 4:
        return sorted(float(c) for c in got)
    return [float(c) for c in DEFAULT_CUTS[key]]


def _days(agg: dict[str, Any], now: str) -> int:
    """Whole days since the last order (negative for an order placed in the future)."""
    return (instant(now) - instant(agg["last_at"])) // DAY


def measures(agg: dict[str, Any], now: str) -> dict[str, int] | None:
    """What the cut points are computed from, per customer (None without orders):
    whole days since the last order, order count, net spend."""
    if not agg.get("count") or not agg.get("last_at"):
        return None
    return {"r": _days(agg, now), "f": int(agg["count"]), "m": int(agg.get("net_spend") or 0)}


def _higher_better(value: float, cuts: list[float]) -> int:
    return 1 + sum(1 for c in cuts if value > c)


def scores(agg: dict[str, Any], cuts: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """R, F, M 1-5 and the named segment; all None for a customer without orders."""
    if not agg.get("count") or not agg.get("last_at"):
        return {"r": None, "f": None, "m": None, "segment": None}
    r = 6 - _higher_better(_days(agg, now), _cuts(cuts, "r"))
    f = _higher_better(agg["count"], _cuts(cuts, "f"))
    m = _higher_better(agg.get("net_spend") or 0, _cuts(cuts, "m"))
    return {"r": r, "f": f, "m": m, "segment": named(r, f)}


def named(r: int, f: int) -> str:
    """The named segment of a cell of the R x F grid."""
    for name, cell in NAMED.items():
        if cell["r"][0] <= r <= cell["r"][1] and cell["f"][0] <= f <= cell["f"][1]:
            return name
    raise ValueError(f"no named segment for r={r}, f={f}")


def _pace(agg: dict[str, Any]) -> tuple[int, timedelta] | None:
    """(12-month value before decay, the usual gap between orders), None if nothing to
    predict from."""
    count, aov = agg.get("count") or 0, agg.get("aov")
    if not count or aov is None or not agg.get("first_at") or not agg.get("last_at"):
        return None
    if count == 1:
        gap = FIRST_GAP
    else:
        gap = (instant(agg["last_at"]) - instant(agg["first_at"])) / (count - 1)
        gap = max(MIN_GAP, gap // MS * MS)
    return int(aov) * (YEAR // MS) // (gap // MS), gap


def _away(agg: dict[str, Any], gap: timedelta, now: str) -> int:
    """How many whole usual gaps have passed since the last order."""
    return max(0, (instant(now) - instant(agg["last_at"])) // gap)


def ltv(agg: dict[str, Any], now: str) -> dict[str, int]:
    """Historical (net spend) and predicted 12-month value, minor units."""
    historical = int(agg.get("net_spend") or 0)
    pace = _pace(agg)
    if pace is None:
        return {"historical": historical, "predicted": 0}
    value, gap = pace
    away = _away(agg, gap, now)
    return {"historical": historical, "predicted": value >> away if away < 64 else 0}


def vip_threshold(values: list[float]) -> float | None:
    """The least historical value inside the top 20 % (at least one customer)."""
    xs = sorted(values, reverse=True)
    if not xs:
        return None
    return float(xs[max(1, math.ceil(TOP_SHARE * len(xs))) - 1])


def vip(ltv: dict[str, Any], threshold: float | None) -> bool:
    historical = ltv.get("historical") or 0
    return threshold is not None and historical > 0 and historical >= threshold


def next_change(agg: dict[str, Any], cuts: dict[str, Any] | None, now: str) -> str | None:
    """The next instant after ``now`` at which R or the predicted value changes by the
    passing of time alone (F, M, historical value and VIP never do); None if never."""
    if not agg.get("count") or not agg.get("last_at"):
        return None
    last = instant(agg["last_at"])
    days = _days(agg, now)
    found: list[datetime] = []
    later = [c for c in _cuts(cuts, "r") if days <= c]
    if later:  # R drops when the whole days since the last order first exceed a cut
        found.append(last + (math.floor(min(later)) + 1) * DAY)
    pace = _pace(agg)
    if pace is not None:
        value, gap = pace
        away = _away(agg, gap, now)
        if away < 64 and value >> away:
            found.append(last + (away + 1) * gap)
    return iso(min(found)) if found else None


def score_all(agg: dict[str, Any], cuts: dict[str, Any] | None, threshold: float | None, now: str) -> dict[str, Any]:
    """What MetricsItem.scores holds."""
    value = ltv(agg, now)
    return {**scores(agg, cuts, now), "ltv": value, "vip": vip(value, threshold)}
