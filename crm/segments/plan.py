"""What one customer's ``METRICS`` should hold after a change, and which memberships that
enters and leaves: pure (no I/O), so maintenance, builds and tests share one answer.

Inputs are plain values: the profile's image, the points book, the stored contributions,
the order states the change brought, the tenant's catalogue (rules, currency, cut
points, VIP threshold) and ``now``. The rules, aggregate and scores are
crm/segments/{rules,aggregate,rfm}.py's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from common.clock import iso, parse
from crm.segments import aggregate, rfm, rules


@dataclass
class Catalogue:
    """The tenant's ``SEGMENTS`` item as plain values."""

    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    currency: str | None = None
    cuts: dict[str, Any] | None = None
    vip_threshold: float | None = None


@dataclass
class Measured:
    """The new values of a ``METRICS`` item (``memberships`` as wanted now)."""

    orders: dict[str, dict[str, Any]]
    large: bool
    agg: dict[str, Any]
    scores: dict[str, Any]
    facts: dict[str, Any]
    memberships: dict[str, dict[str, Any]]
    due_at: str | None
    currency: str | None  # the tenant's currency: the catalogue's, or the one to set now


def contributions(stored: dict[str, dict[str, Any]], orders: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``stored`` with each order state's contribution where it is newer than the one kept
    (an older or repeated state changes nothing: replays and reordering are harmless)."""
    out = dict(stored)
    for order in orders:
        contribution = aggregate.contribution(order)
        if aggregate.newer(contribution, out.get(order["order_id"])):
            out[order["order_id"]] = contribution
    return out


def tenant_currency(current: str | None, contribs: dict[str, dict[str, Any]]) -> str | None:
    """The catalogue's currency; unset, the currency of this customer's first order (not
    cancelled, as the aggregate counts it, unless all are)."""
    if current:
        return current
    dated = sorted((not c.get("live", True), c.get("at") or "~", oid) for oid, c in contribs.items() if c.get("cur"))
    return contribs[dated[0][2]]["cur"] if dated else None


def cell(scores: dict[str, Any] | None) -> str | None:
    """The RFM grid cell (``c<r><f>``) of scores, None without orders."""
    r, f = (scores or {}).get("r"), (scores or {}).get("f")
    return f"c{r}{f}" if r is not None and f is not None else None


def memberships(
    old: dict[str, dict[str, Any]], segments: dict[str, dict[str, Any]], facts: dict[str, Any], now: str
) -> dict[str, dict[str, Any]]:
    """Every segment whose rule holds: a continuing membership keeps its ``since``."""
    out = {}
    for sid, segment in segments.items():
        if rules.evaluate(segment["rule"], facts, now):
            was = old.get(sid)
            out[sid] = {
                "since": was["since"] if was else now,
                "v": segment.get("v", 1),
                "name": segment.get("name"),
            }
    return out


def index_time(value: str | None) -> str | None:
    """A time in the index's format (milliseconds, ``Z``), so due times sort as strings."""
    return iso(parse(value.replace("Z", "+00:00"))) if value else None


def due_at(
    segments: dict[str, dict[str, Any]], facts: dict[str, Any], agg: dict[str, Any], cuts: Any, now: str
) -> str | None:
    """The next instant a rule's answer or a score may change with no new fact."""
    times = [rules.next_flip(s["rule"], facts, now) for s in segments.values()]
    times.append(rfm.next_change(agg, cuts, now))
    found = [t for t in (index_time(t) for t in times) if t]
    return min(found) if found else None


def measure(
    profile: dict[str, Any],
    book: dict[str, Any] | None,
    stored: dict[str, dict[str, Any]],
    orders: Iterable[dict[str, Any]],
    catalogue: Catalogue,
    old_memberships: dict[str, dict[str, Any]],
    now: str,
) -> Measured:
    """A customer's metrics, facts and wanted memberships from what was read."""
    contribs = contributions(stored, orders)
    currency = tenant_currency(catalogue.currency, contribs)
    agg = aggregate.aggregate(contribs, currency)
    scores = rfm.score_all(agg, catalogue.cuts, catalogue.vip_threshold, now)
    facts = aggregate.facts(profile, book, agg, scores)
    large = len(contribs) > aggregate.MAX_ORDERS
    return Measured(
        orders={} if large else contribs,
        large=large,
        agg=agg,
        scores=scores,
        facts=facts,
        memberships=memberships(old_memberships, catalogue.segments, facts, now),
        due_at=due_at(catalogue.segments, facts, agg, catalogue.cuts, now),
        currency=currency,
    )


def changes(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]:
    """(segment, membership before, after) for each segment entered, left, or kept under
    a new rule version or name, in segment order."""
    out = []
    for sid in sorted(set(before) | set(after)):
        was, now = before.get(sid), after.get(sid)
        if was != now:
            out.append((sid, was, now))
    return out
