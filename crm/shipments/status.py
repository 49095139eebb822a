"""Pure rules of a shipment's state: checkpoints merged and ordered, the current status,
when it left and when it arrived, and what the order shows. No I/O (unit tested in
tests/unit/test_shipment_status.py).

- A checkpoint is kept once: by the provider's key when it has one, else by its time,
  status, message and location. A webhook and a re-poll, or a replayed delivery, carry
  the same checkpoints and add nothing.
- Checkpoints are ordered by when they happened (UTC), never by when they arrived: a late
  webhook carrying an older scan slots in below the newer ones and changes nothing above.
- The status is the latest checkpoint's; a tracker without checkpoints (just created)
  has the provider's status.
- ``shipped_at`` is the earliest checkpoint at which the parcel was moving (in transit or
  beyond); ``delivered_at`` the earliest delivered checkpoint. Neither is ever cleared.
- The order is shipped when its first parcel is, delivered when every parcel it has is
  (at the last one's delivery); an older fact never moves either back.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal, get_args

Status = Literal[
    "pre_transit",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "available_for_pickup",
    "return_to_sender",
    "failure",
    "exception",
]
STATUSES: tuple[str, ...] = get_args(Status)
# no more news will come: not re-polled
TERMINAL = frozenset({"delivered", "return_to_sender", "failure"})
# the parcel has left the sender
MOVING = frozenset({"in_transit", "out_for_delivery", "delivered", "available_for_pickup"})
MAX_CHECKPOINTS = 200  # a parcel's scans; more (a stuck tracker repeating itself) keeps the newest


def checkpoint_key(cp: dict[str, Any]) -> str:
    """The provider's key, else a digest of what the scan says."""
    if cp.get("key"):
        return str(cp["key"])
    raw = "|".join(str(cp.get(k) or "") for k in ("at", "status", "message", "location"))
    return "d:" + hashlib.sha256(raw.encode()).hexdigest()[:20]


def merge_checkpoints(kept: list[dict[str, Any]], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``kept`` plus the new ones of ``incoming``, ordered by checkpoint time."""
    by_key = {checkpoint_key(cp): cp for cp in kept}
    for cp in incoming:
        key = checkpoint_key(cp)
        if key not in by_key:
            by_key[key] = {**cp, "key": key}
    merged = sorted(by_key.values(), key=lambda cp: (cp["at"], STATUSES.index(cp["status"])))
    return merged[-MAX_CHECKPOINTS:]


def current(checkpoints: list[dict[str, Any]], fallback: str, fallback_at: str | None) -> tuple[str, str | None]:
    """(status, since when): the latest checkpoint's, else the provider's."""
    if checkpoints:
        last = checkpoints[-1]
        return last["status"], last["at"]
    return fallback, fallback_at


def shipped_at(checkpoints: list[dict[str, Any]]) -> str | None:
    return next((cp["at"] for cp in checkpoints if cp["status"] in MOVING), None)


def delivered_at(checkpoints: list[dict[str, Any]]) -> str | None:
    return next((cp["at"] for cp in checkpoints if cp["status"] == "delivered"), None)


def earliest(a: str | None, b: str | None) -> str | None:
    return min(x for x in (a, b) if x) if (a or b) else None


def order_stamps(
    parcels: list[dict[str, Any]], shipped: str | None, delivered: str | None
) -> tuple[str | None, str | None]:
    """The order's (shipped_at, delivered_at) from its parcels in brief and its current
    stamps: shipped at the first parcel's departure, delivered once every parcel is, at
    the last delivery. A stamp once set stays (an older fact never clears it)."""
    starts = [p["shipped_at"] for p in parcels if p.get("shipped_at")]
    shipped = earliest(shipped, min(starts) if starts else None)
    if delivered is None and parcels and all(p.get("delivered_at") for p in parcels):
        delivered = max(p["delivered_at"] for p in parcels)
    if delivered and not shipped:
        shipped = delivered  # delivered without a transit scan: it left by then
    return shipped, delivered
