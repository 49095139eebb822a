"""Timeline reactions: domain events -> entries on the customer's timeline, written
once per event id (the entry id is derived from it)."""
from __future__ import annotations

from typing import Any


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
        payload = {"order_id": d["order_id"], "status": d["status"], "total": o["total"],
                   "currency": o["currency"]}
        what = type_.split(".", 1)[1]
        if type_ == "order.refunded":
            payload["refund"] = d["refund"]["amount"]
            text = f"Order {d['order_id']} refunded {_money(d['refund']['amount'], o['currency'])}"
        else:
            text = f"Order {d['order_id']} {what}: {_money(o['total'], o['currency'])}"
        return text, payload, o.get("channel")
    if type_ == "tier.changed":
        return f"Tier changed from {d['from'] or 'none'} to {d['to'] or 'none'}", \
            {"from": d["from"], "to": d["to"]}, None
    if type_ == "points.expiring":
        return f"{d['points']} points expire at {d['expires_at']}", \
            {"lot": d["lot"], "points": d["points"], "expires_at": d["expires_at"]}, None
    if type_ == "points.reversed":
        return _reversal(d), {"points": d["points"], "lot": d.get("lot"), "source": d["source"],
                              "seq": d["seq"], **{k: v for k, v in (d.get("detail") or {}).items()
                                                 if k in ("reversed", "owed", "written_off")}}, None
    verb = type_.split(".", 1)[1]
    pending = " (pending)" if d.get("type") == "pending" else ""
    return f"{abs(d['points'])} points {verb}{pending}", \
        {"points": d["points"], "lot": d.get("lot"), "source": d["source"], "seq": d["seq"]}, None


def _reversal(d: dict[str, Any]) -> str:
    """"100 points reversed (refund of order ord_…): 40 taken back, 60 already redeemed
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


def apply(event: dict[str, Any]) -> bool:
    from crm.context import TenantContext
    from crm.customers.schemas import TimelineEventCreate
    from crm.customers.service import record_event

    summary, payload, channel = describe(event)
    body = TimelineEventCreate(type=event["type"], channel=channel, occurred_at=event["occurred_at"],
                               summary=summary[:500], payload=payload)
    return record_event(TenantContext(event["tenant_id"]), event["customer_id"], event["id"], body)


def handle_batch(raw_event: dict[str, Any], lambda_context: Any = None) -> dict[str, Any]:
    from functions.consumer import consume

    return consume("timeline", raw_event, apply, lambda_context)
