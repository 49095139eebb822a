"""How connections, their sync state and runs map onto the one table.

Layout (``P = T#<tenant>#``):

| item | pk | sk | GSI keys |
|---|---|---|---|
| connection | ``P CONN#<id>`` | ``CONN`` | gsi1 ``P CONNECTIONS`` / ``<id>``; gsi2 ``SYNC_SCHEDULE`` / ``<tenant>#<id>`` while scheduled |
| sync state | ``P CONN#<id>`` | ``STATE`` | gsi2 ``SYNC_ACTIVE#0`` / ``<heartbeat or resume time>#<tenant>#<id>`` while a run holds the lock |
| run | ``P CONN#<id>`` | ``RUN#<run id>`` | - |
| webhook delivery guard | ``P CONN#<id>`` | ``HOOK#<digest of delivery id>`` (TTL 7 days) | - |
| webhook route | ``HOOK#<id>`` | ``HOOK`` | - |

The webhook route is the one item without the tenant prefix: a vendor calls
``/v1/hooks/<connection id>`` without a Rapport key, so the tenant is looked up from the
id (one GetItem) before the signature is checked with that tenant's secret. The
schedule index is cross-tenant like the loyalty due index; only the scheduled fan-out
reads it. So is the active-run index: the schedule reads it to find runs with no
checkpoint for ``RAPPORT_SYNC_STALL_SECONDS`` (stalled: their worker died) and fails them.
"""
from __future__ import annotations

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute, VersionAttribute

from crm.schema import Kind
from crm.storage import Item

SCHEDULE_INDEX = "SYNC_SCHEDULE"
ACTIVE_INDEX = "SYNC_ACTIVE"


class ConnectionItem(Item, discriminator="connection"):
    KIND = Kind(
        "connection (config, KMS-sealed secrets, schedule)", "P CONN#<id>", "CONN", "connection",
        gsi="gsi1 `P CONNECTIONS` / `<id>`; while scheduled gsi2 `SYNC_SCHEDULE#0` / `<next due>#<tenant>#<id>`")

    connection_id = UnicodeAttribute()
    connector = UnicodeAttribute()
    name = UnicodeAttribute()
    config = JSONAttribute(default=dict)   # the non-secret fields
    sealed = JSONAttribute(default=dict)   # the secret fields, KMS envelope (connectors/sdk/secrets.py)
    secret_names = JSONAttribute(default=list)
    schedule_minutes = NumberAttribute(null=True)
    status = UnicodeAttribute(default="active")
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()


class SyncStateItem(Item, discriminator="sync_state"):
    KIND = Kind(
        "sync state (a window per stream, the run lock, last_error)", "P CONN#<id>", "STATE",
        "connection", gsi="while a run holds the lock gsi2 `SYNC_ACTIVE#0` / `<checkpoint>#<tenant>#<id>`")

    connection_id = UnicodeAttribute()
    streams = JSONAttribute(default=dict)   # {stream: Window state}
    active_run = UnicodeAttribute(null=True)
    last_run = UnicodeAttribute(null=True)   # the newest run (only it may be resumed by a redrive)
    last_error = JSONAttribute(null=True)    # the last run's classified error; None after a success
    updated_at = UnicodeAttribute()


class RunItem(Item, discriminator="sync_run"):
    KIND = Kind(
        "run (status, counts, the first 100 rejected records)", "P CONN#<id>", "RUN#<run id>",
        "connection", pii=("data.rejected",), erasure="blank")

    connection_id = UnicodeAttribute()
    run_id = UnicodeAttribute()
    data = JSONAttribute(default=dict)
    # set when the run is stopped from outside (cancelled, found stalled): the worker's
    # checkpoint is conditional on its absence, so the worker stops at its next page
    stop_requested = UnicodeAttribute(null=True)


class HookRouteItem(Item, discriminator="hook_route"):
    KIND = Kind("webhook route (not tenant-prefixed)", "HOOK#<id>", "HOOK", "global")

    tenant_id = UnicodeAttribute()


class HookDeliveryItem(Item, discriminator="hook_delivery"):
    KIND = Kind(
        "webhook delivery guard (a digest only, TTL 7 days; the body is never stored)",
        "P CONN#<id>", "HOOK#<digest of the delivery id>", "connection")

    connection_id = UnicodeAttribute()
    received_at = UnicodeAttribute()
