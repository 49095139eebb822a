"""Shipment ids and keys. The id is derived from the tracking number, so one tracking
number is one shipment per tenant: its pointer item is the guard, and finding a
shipment by tracking number is one GetItem."""

from __future__ import annotations

import base64
import hashlib
import re

from crm.context import TenantContext

PREFIX = "A#SHP#"  # in the customer's partition, below the timeline (like orders)
RECENT = "PARCELS"  # the latest shipments in brief, inside the 360 range
POINTER_SK = "S"
DUE_INDEX = "SHIPMENT_DUE"
SHARD = 0  # one shard: the schedule reads at most a bounded batch per run
SHIPMENT_ID = re.compile(r"^shp_[A-Z2-7]{26}$")
TRACKING_NUMBER = r"^[A-Za-z0-9][A-Za-z0-9 \-]{2,63}$"


def normalize(tracking_number: str) -> str:
    """Carriers print tracking numbers with spaces and in either case; they mean one parcel."""
    return re.sub(r"[\s\-]+", "", tracking_number).upper()


def shipment_id(tracking_number: str) -> str:
    digest = hashlib.sha256(normalize(tracking_number).encode()).digest()
    return "shp_" + base64.b32encode(digest).decode()[:26]


def sk(sid: str) -> str:
    return PREFIX + sid


def pointer_pk(ctx: TenantContext, sid: str) -> str:
    return ctx.key("SHP", sid)


def due_pk() -> str:
    return f"{DUE_INDEX}#{SHARD}"
