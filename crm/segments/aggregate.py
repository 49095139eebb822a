"""What a customer is measured by: each order's contribution, the per-customer aggregate
and the flat facts rules are evaluated on. Pure: no I/O.

Exact under replay and merge: the aggregate is a function of the contributions, kept per
order id, and a contribution replaces the stored one only when it is ``newer`` (its
``updated_at``, then its version), so a redelivered or reordered event changes nothing
and a merge recomputes from the union of both customers' orders.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from common.clock import iso, parse

MAX_ORDERS = 1000  # more: MetricsItem.large, contributions not kept (recomputed from the orders)


def instant(value: str) -> datetime:
    """An ISO 8601 time, to the millisecond (the precision of every stored time, so the
    instants rules flip at are exact stored times)."""
    dt = parse(value)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _time(value: Any) -> str | None:
    return iso(instant(value)) if isinstance(value, str) and value else None


def _stamp(data: dict[str, Any]) -> str:
    """The latest fact an order's state records: a stand-in for ``updated_at`` when the
    state carries none."""
    stamps = [data.get(k) for k in ("placed_at", "paid_at", "fulfilled_at", "cancelled_at", "edited_at")]
    stamps += [r.get("refunded_at") for r in data.get("refunds") or []]
    return max((s for s in (_time(x) for x in stamps) if s), default="")


def contribution(order: dict[str, Any]) -> dict[str, Any]:
    """An order's contribution from its state (the stream image, or an order event's
    ``data``: ``{"order_id", "customer_id", "status", "data", ...}``)."""
    data = order.get("data") or {}
    cancelled = bool(data.get("cancelled_at")) or order.get("status") == "cancelled"
    refunded = sum(int(r.get("amount") or 0) for r in data.get("refunds") or [])
    version = order.get("version")
    return {
        "at": _time(data.get("placed_at")) or _time(order.get("created_at")),
        "cur": data.get("currency"),
        "net": 0 if cancelled else max(0, int(data.get("total") or 0) - refunded),
        "ch": data.get("channel"),
        "cat": sorted({line["category"] for line in data.get("lines") or [] if line.get("category")}),
        "live": not cancelled,
        "u": _time(data.get("updated_at")) or _time(order.get("updated_at")) or _stamp(data),
        "v": int(version if version is not None else data.get("revision") or 0),
    }


def _progress(c: dict[str, Any]) -> tuple[Any, ...]:
    # equal (updated_at, version): a cancellation or a refund only ever comes later
    return (not c.get("live", True), -int(c.get("net") or 0))


def newer(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Whether ``new`` replaces the stored ``old`` (an older fact never overwrites a
    newer one; the same state twice changes nothing)."""
    if old is None:
        return True
    a, b = (new.get("u") or "", new.get("v") or 0), (old.get("u") or "", old.get("v") or 0)
    if a != b:
        return a > b
    return _progress(new) > _progress(old)


def aggregate(contribs: dict[str, dict[str, Any]], currency: str | None) -> dict[str, Any]:
    """The aggregate of a customer's contributions. Counted orders are the live (not
    cancelled) ones; net spend and the average order value are in ``currency`` (the
    tenant's; None: the currency of the customer's first counted order), orders in
    another currency count in ``count`` and ``by_currency`` only."""
    live = sorted(
        (c for c in contribs.values() if c.get("live")), key=lambda c: (c.get("at") or "", c.get("cur") or "")
    )
    if currency is None and live:
        currency = live[0].get("cur")
    by_currency: dict[str, int] = {}
    for c in live:
        by_currency[c.get("cur") or ""] = by_currency.get(c.get("cur") or "", 0) + int(c.get("net") or 0)
    priced = [c for c in live if c.get("cur") == currency]
    net = sum(int(c.get("net") or 0) for c in priced)
    times = [c["at"] for c in live if c.get("at")]
    return {
        "count": len(live),
        "net_spend": net,
        "first_at": min(times) if times else None,
        "last_at": max(times) if times else None,
        "aov": net // len(priced) if priced else None,
        "channels": sorted({c["ch"] for c in live if c.get("ch")}),
        "categories": sorted({cat for c in live for cat in c.get("cat") or []}),
        "currency": currency,
        "by_currency": dict(sorted(by_currency.items())),
    }


def _since(profile: dict[str, Any], data: dict[str, Any]) -> str | None:
    """customer_since: the earliest of Rapport's creation and the vendors' first-seen."""
    times = [
        t for t in (_time(x) for x in [profile.get("created_at"), *(data.get("source_created_at") or {}).values()]) if t
    ]
    return min(times) if times else None


def facts(
    profile: dict[str, Any], book: dict[str, Any] | None, agg: dict[str, Any], scores: dict[str, Any]
) -> dict[str, Any]:
    """The flat facts rules read (field name -> value; docs/segments.md "Fields and
    operators"). ``profile`` is the PROFILE item's image, ``book`` LoyaltyItem.book as
    stored, ``scores`` what ``rfm.score_all`` returns."""
    data = profile.get("data") or {}
    addresses = data.get("addresses") or []
    consent = {ch: c.get("status") for ch, c in (data.get("consent") or {}).items() if isinstance(c, dict)}
    sources = set(data.get("external_ids") or {}) | set(data.get("source_created_at") or {})
    value = scores.get("ltv") or {}
    return {
        "tags": sorted(set(data.get("tags") or [])),
        "attributes": dict(data.get("attributes") or {}),
        "consent": {ch: s for ch, s in sorted(consent.items()) if s},
        "locale": data.get("locale"),
        "address.country": addresses[0].get("country") if addresses else None,
        "created_at": _since(profile, data),
        "source": sorted(sources),
        "birth_date": data.get("birth_date"),
        "orders.count": int(agg.get("count") or 0),
        "orders.net_spend": int(agg.get("net_spend") or 0),
        "orders.first_at": agg.get("first_at"),
        "orders.last_at": agg.get("last_at"),
        "orders.aov": agg.get("aov"),
        "orders.channels": list(agg.get("channels") or []),
        "orders.categories": list(agg.get("categories") or []),
        "loyalty.tier": (book or {}).get("tier"),
        "loyalty.balance": int((book or {}).get("available") or 0),
        "rfm.r": scores.get("r"),
        "rfm.f": scores.get("f"),
        "rfm.m": scores.get("m"),
        "rfm.segment": scores.get("segment"),
        "ltv.historical": int(value.get("historical") or 0),
        "ltv.predicted": int(value.get("predicted") or 0),
        "vip": bool(scores.get("vip")),
    }
