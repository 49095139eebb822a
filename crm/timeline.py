"""The timeline entries a fact writes in its own transaction.

An order placed, paid, fulfilled, cancelled, refunded or edited, points earned,
redeemed, expired, adjusted or reversed, points about to expire, a tier change and a
segment entered or left each get an entry on the customer's timeline. The entry is
written in the transaction that records the fact (crm/orders/service.py,
crm/orders/imports.py, crm/loyalty/service.py, crm/segments/maintain.py),
not by a subscriber: no event hop, no idempotency record, one request less per entry
and never an entry without its fact (docs/performance.md, "Events and loyalty").

The entries are derived from the item's images before and after the write with
``crm.events.derive``, exactly as the stream will derive the fact's events, so an
entry's id (``crm.ids.derived_event_id`` of the event id) is a function of the fact:
a replay writes nothing new, and a merge moves the entry like any other (same sort key).
"""

from __future__ import annotations

import copy
from typing import Any

from crm import events as domain_events
from crm.context import TenantContext

# The event types that have a timeline entry (written in the fact's transaction): every
# event but the customer's own (its profile is its record) and an activation (no news).
TYPES = frozenset(t for t in domain_events.TYPES if not t.startswith("customer.") and t != "points.activated")


def add(tx: Any, ctx: TenantContext, whose: str | None, entries: list[Any]) -> None:
    """Put a fact's timeline ``entries`` into its transaction ``tx`` (crm/tx.py), with a
    ConditionCheck that ``whose`` (the customer whose timeline they are on) is active."""
    if not entries:
        return
    from crm.customers import records
    from crm.storage import CustomerItem

    assert whose is not None  # entries are written only to a customer's timeline
    tx.check(
        CustomerItem, records.profile_pk(ctx, whose), records.PROFILE, CustomerItem.status == "active", role="customer"
    )
    for entry in entries:
        tx.save(entry, role="timeline")


def image(item: Any, kind: str) -> dict[str, Any]:
    """An item as the stream's image of it (plain values, ``kind`` by name), copied."""
    return {**copy.deepcopy(dict(item.attribute_values)), "kind": kind}


def target(profile: Any) -> str | None:
    """Whose timeline a fact of this profile's partition goes to: its own while active,
    the survivor's while it is being (or was) merged, nobody's once erased."""
    from crm.customers import records

    status = getattr(profile, "status", None)
    if status == "active":
        return profile.customer_id
    return records.survivor(profile)


def entries(ctx: TenantContext, customer_id: str | None, events: list[dict[str, Any]]) -> list[Any]:
    """The timeline items (``EventItem``) of ``events`` on ``customer_id``'s timeline."""
    from crm.customers.schemas import TimelineEventCreate
    from crm.customers.service import event_item

    if customer_id is None:
        return []
    out = []
    for event in events:
        if event["type"] not in TYPES:
            continue
        summary, payload, channel = describe(event)
        body = TimelineEventCreate(
            type=event["type"],
            channel=channel,
            occurred_at=event["occurred_at"],
            summary=summary[:500],
            payload=payload,
        )
        out.append(event_item(ctx, customer_id, body, key=event["id"]))
    return out


def of_change(
    ctx: TenantContext, customer_id: str | None, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> list[Any]:
    """The timeline items of one item's change (images as ``image`` gives them)."""
    if customer_id is None:
        return []
    return entries(ctx, customer_id, domain_events.derive(old, new))


def _money(amount: int, currency: str) -> str:
    from crm.loyalty.points import minor_per_major

    per = minor_per_major(currency)
    digits = len(str(per)) - 1
    return f"{amount / per:.{digits}f} {currency}"


def describe(event: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """A one-line summary, a small payload and the channel of an event."""
    d, type_ = event["data"], event["type"]
    if type_.startswith("order."):
        o = d["data"]
        payload = {"order_id": d["order_id"], "status": d["status"], "total": o["total"], "currency": o["currency"]}
        what = type_.split(".", 1)[1]
        if type_ == "order.refunded":
            payload["refund"] = d["refund"]["amount"]
            text = f"Order {d['order_id']} refunded {_money(d['refund']['amount'], o['currency'])}"
        else:
            text = f"Order {d['order_id']} {what}: {_money(o['total'], o['currency'])}"
        return text, payload, o.get("channel")
    if type_.startswith("shipment."):
        what = "registered" if type_ == "shipment.registered" else d["status"].replace("_", " ")
        where = f" ({d['location']})" if d.get("location") and type_ != "shipment.registered" else ""
        payload = {k: d[k] for k in ("shipment_id", "order_id", "carrier", "tracking_number", "status") if d.get(k)}
        return f"Parcel {d['tracking_number']} ({d['carrier']}) of order {d['order_id']}: {what}{where}", payload, None
    if type_ in ("segment.entered", "segment.exited"):
        verb = "Entered" if type_ == "segment.entered" else "Left"
        return (
            f"{verb} segment {d.get('name') or d['segment_id']}",
            {"segment_id": d["segment_id"], "name": d.get("name")},
            None,
        )
    if type_ == "tier.changed":
        return (
            f"Tier changed from {d['from'] or 'none'} to {d['to'] or 'none'}",
            {"from": d["from"], "to": d["to"]},
            None,
        )
    if type_ == "points.expiring":
        return (
            f"{d['points']} points expire at {d['expires_at']}",
            {"lot": d["lot"], "points": d["points"], "expires_at": d["expires_at"]},
            None,
        )
    if type_ == "points.reversed":
        return (
            _reversal(d),
            {
                "points": d["points"],
                "lot": d.get("lot"),
                "source": d["source"],
                "seq": d["seq"],
                **{k: v for k, v in (d.get("detail") or {}).items() if k in ("reversed", "owed", "written_off")},
            },
            None,
        )
    verb = type_.split(".", 1)[1]
    pending = " (pending)" if d.get("type") == "pending" else ""
    return (
        f"{abs(d['points'])} points {verb}{pending}",
        {"points": d["points"], "lot": d.get("lot"), "source": d["source"], "seq": d["seq"]},
        None,
    )


def _reversal(d: dict[str, Any]) -> str:
    """ "100 points reversed (refund of order ord_…): 40 taken back, 60 already redeemed
    and now owed": the reversal is the order's points the refund undoes, whatever part
    of them was still there to take back (the entry's own ``points``)."""
    detail = d.get("detail") or {}
    total = detail.get("reversed", abs(d["points"]))
    parts = d["source"].split(":")
    text = f"{total} points reversed" + (f" (refund of order {parts[1]})" if len(parts) > 1 else "")
    taken, owed, lost = abs(d["points"]), detail.get("owed", 0), detail.get("written_off", 0)
    if taken != total:
        text += f": {taken} taken back"
        text += f", {owed} already redeemed and now owed" if owed else ""
        text += f", {lost} already spent and written off" if lost else ""
    return text
