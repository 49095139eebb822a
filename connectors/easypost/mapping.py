"""EasyPost (API v2) trackers and events → Rapport's shipment records. Pure functions of
the vendor JSON: the streams, the webhooks and the tracker calls share them.

Statuses (``Tracker.status`` and each ``tracking_details[].status``):

| EasyPost | Rapport | why |
|---|---|---|
| pre_transit | pre_transit | label created, not yet handed over |
| in_transit | in_transit | |
| out_for_delivery | out_for_delivery | |
| delivered | delivered | |
| available_for_pickup | available_for_pickup | at a pickup point or locker |
| return_to_sender | return_to_sender | |
| failure | failure | the carrier gave up |
| cancelled | failure | the shipment was cancelled: it will not arrive |
| error | exception | the carrier reported a problem that needs attention |
| unknown (or anything new) | pre_transit | no usable scan yet |
"""
from __future__ import annotations

from typing import Any

from connectors.sdk import fields
from connectors.sdk.base import Rejected, ShipmentCheckpoint, ShipmentRecord, rejecting

STATUSES = {
    "pre_transit": "pre_transit",
    "in_transit": "in_transit",
    "out_for_delivery": "out_for_delivery",
    "delivered": "delivered",
    "available_for_pickup": "available_for_pickup",
    "return_to_sender": "return_to_sender",
    "failure": "failure",
    "cancelled": "failure",
    "error": "exception",
    "unknown": "pre_transit",
}


def status(value: Any) -> str:
    return STATUSES.get(str(value or "").strip().lower(), "pre_transit")


def _location(loc: Any) -> str | None:
    if not isinstance(loc, dict):
        return None
    parts = [fields.text(loc.get(k), 60) for k in ("city", "state", "zip", "country")]
    return ", ".join(p for p in parts if p) or None


def checkpoint(detail: dict[str, Any]) -> ShipmentCheckpoint | None:
    at = fields.utc(detail.get("datetime"))
    if at is None:
        return None
    return ShipmentCheckpoint(
        at=at,
        status=status(detail.get("status")),  # type: ignore[arg-type]
        message=fields.text(detail.get("message") or detail.get("description"), 300),
        location=_location(detail.get("tracking_location")),
        detail=fields.text(detail.get("status_detail"), 64),
    )


def tracker(t: Any, event_id: str | None = None) -> ShipmentRecord | Rejected:
    tid = t.get("id") if isinstance(t, dict) else None
    if not tid:
        return Rejected(None, "easypost tracker without an id")
    return rejecting("easypost tracker", str(tid), lambda: _tracker(t, str(tid), event_id))


def _tracker(t: dict[str, Any], tid: str, event_id: str | None) -> ShipmentRecord | Rejected:
    number = fields.text(t.get("tracking_code"), 64)
    if not number:
        return Rejected(tid, "the tracker has no tracking_code")
    updated_at = fields.utc(t.get("updated_at") or t.get("created_at"))
    if updated_at is None:
        return Rejected(tid, "the tracker has no updated_at")
    cps = [c for c in (checkpoint(d) for d in t.get("tracking_details") or [] if isinstance(d, dict)) if c]
    return ShipmentRecord(
        external_id=tid,
        updated_at=updated_at,
        tracking_number=number,
        carrier=fields.text(t.get("carrier"), 64) or "unknown",
        status=status(t.get("status")),  # type: ignore[arg-type]
        checkpoints=cps,
        status_detail=fields.text(t.get("status_detail"), 64),
        est_delivery_at=fields.utc(t.get("est_delivery_date")),
        url=fields.text(t.get("public_url"), 500),
        event_id=event_id,
    )


def event(body: Any) -> ShipmentRecord | Rejected | None:
    """A webhook's Event: ``tracker.created`` / ``tracker.updated`` carry the tracker in
    ``result``; other events (batches, refunds, reports) carry no parcel."""
    if not isinstance(body, dict) or body.get("object") != "Event":
        return Rejected(None, "the body is not an EasyPost Event")
    if body.get("description") not in ("tracker.created", "tracker.updated"):
        return None
    result = body.get("result")
    if not isinstance(result, dict):
        return Rejected(body.get("id"), "the tracker event carries no tracker")
    return tracker(result, event_id=fields.text(body.get("id"), 100))
