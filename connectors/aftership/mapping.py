"""AfterShip Tracking API trackings and webhooks → Rapport's shipment records. Pure
functions of the vendor JSON.

Statuses (the tracking's ``tag`` and each ``checkpoints[].tag``):

| AfterShip tag | Rapport | why |
|---|---|---|
| Pending | pre_transit | no scan yet (new, or the carrier has nothing) |
| InfoReceived | pre_transit | the carrier has the label, not the parcel |
| InTransit | in_transit | (``return_to_sender: true`` → return_to_sender) |
| OutForDelivery | out_for_delivery | |
| AttemptFail | exception | a delivery attempt failed; the carrier tries again |
| Delivered | delivered | |
| AvailableForPickup | available_for_pickup | |
| Exception | exception | (``return_to_sender: true`` → return_to_sender) |
| Expired | failure | no news for 30 days: AfterShip stopped tracking |

Checkpoint times carry the scan's local offset (``-05:00``, ``+08:00``…); they are turned
into UTC, so scans across time zones sort as they happened. ``checkpoints[].hash`` (since
API 2026-07) is the checkpoint's key when present.
"""
from __future__ import annotations

from typing import Any

from connectors.sdk import fields
from connectors.sdk.base import Rejected, ShipmentCheckpoint, ShipmentRecord, rejecting

TAGS = {
    "pending": "pre_transit",
    "inforeceived": "pre_transit",
    "intransit": "in_transit",
    "outfordelivery": "out_for_delivery",
    "attemptfail": "exception",
    "delivered": "delivered",
    "availableforpickup": "available_for_pickup",
    "exception": "exception",
    "expired": "failure",
}
ORDER_ID = "ord_"


def status(tag: Any, returning: bool = False) -> str:
    mapped = TAGS.get(str(tag or "").strip().lower(), "pre_transit")
    if returning and mapped in ("in_transit", "exception"):
        return "return_to_sender"
    return mapped


def _location(cp: dict[str, Any]) -> str | None:
    if fields.text(cp.get("location"), 200):
        return fields.text(cp.get("location"), 200)
    parts = [fields.text(cp.get(k), 60) for k in ("city", "state", "zip", "country_name")]
    return ", ".join(p for p in parts if p) or None


def checkpoint(cp: dict[str, Any]) -> ShipmentCheckpoint | None:
    at = fields.utc(cp.get("checkpoint_time"))
    if at is None:
        return None
    return ShipmentCheckpoint(
        at=at,
        status=status(cp.get("tag")),  # type: ignore[arg-type]
        message=fields.text(cp.get("message"), 300),
        location=_location(cp),
        detail=fields.text(cp.get("subtag"), 64),
        key=fields.text(cp.get("hash"), 100),
    )


def unwrap(body: Any) -> Any:
    """The tracking of a response: ``data`` (the current API) or ``data.tracking`` (v4 and
    the 2024 versions)."""
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict) and isinstance(data.get("tracking"), dict):
        return data["tracking"]
    return data


def tracking(t: Any, event_id: str | None = None) -> ShipmentRecord | Rejected:
    tid = t.get("id") if isinstance(t, dict) else None
    if not tid:
        return Rejected(None, "aftership tracking without an id")
    return rejecting("aftership tracking", str(tid), lambda: _tracking(t, str(tid), event_id))


def _tracking(t: dict[str, Any], tid: str, event_id: str | None) -> ShipmentRecord | Rejected:
    number = fields.text(t.get("tracking_number"), 64)
    if not number:
        return Rejected(tid, "the tracking has no tracking_number")
    updated_at = fields.utc(t.get("updated_at") or t.get("created_at"))
    if updated_at is None:
        return Rejected(tid, "the tracking has no updated_at")
    returning = bool(t.get("return_to_sender"))
    cps = [c for c in (checkpoint(cp) for cp in t.get("checkpoints") or [] if isinstance(cp, dict)) if c]
    if returning and cps and cps[-1].status in ("in_transit", "exception"):
        cps[-1].status = "return_to_sender"
    order_id = fields.text(t.get("order_id"), 64)
    edd = t.get("aftership_estimated_delivery_date")
    eta = t.get("expected_delivery") or (edd.get("estimated_delivery_date") if isinstance(edd, dict) else None)
    try:
        est = fields.utc(eta)
    except ValueError:
        est = None
    return ShipmentRecord(
        external_id=tid,
        updated_at=updated_at,
        tracking_number=number,
        carrier=fields.text(t.get("slug"), 64) or "unknown",
        status=status(t.get("tag"), returning),  # type: ignore[arg-type]
        checkpoints=cps,
        status_detail=fields.text(t.get("subtag"), 64),
        est_delivery_at=est,
        url=fields.text(t.get("courier_tracking_link"), 500),
        order_id=order_id if order_id and order_id.startswith(ORDER_ID) else None,
        event_id=event_id,
        # the shop's own order id and its order number, as the merchant gave them to AfterShip
        order_ref=order_id if order_id and not order_id.startswith(ORDER_ID) else None,
        order_number=fields.order_number(t.get("order_number")),
    )


def webhook(body: Any) -> ShipmentRecord | Rejected | None:
    """A Tracking webhook: ``{"event": "tracking_update", "event_id", "msg": <tracking>, "ts"}``;
    other events (edd_revise, tracking_pending_time) carry no new scan."""
    if not isinstance(body, dict) or "msg" not in body:
        return Rejected(None, "the body is not an AfterShip tracking webhook")
    if body.get("event") != "tracking_update":
        return None
    return tracking(body.get("msg"), event_id=fields.text(body.get("event_id"), 100))
