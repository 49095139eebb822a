"""Inbound vendor webhooks: route, verify, de-duplicate, queue. Nothing of the body is
parsed before its signature checks out, and the response goes back before any record is
written (the sync queue's consumer does that, functions/sync.py).

Requests: 1 GetItem (route -> tenant) + 1 Query (connection) + 1 KMS Decrypt (cached per
connection version) + 1 conditional PutItem (delivery guard, TTL 7 days) + 1 SQS
SendMessage. A replayed delivery stops at the PutItem and answers 200 "duplicate".

A suspended tenant's or a paused connection's deliveries are refused once the signature
checks out (403 ``tenant_suspended``, 409 ``connection_paused``; +1 GetItem of the
tenant) and nothing is written: the vendor sees the failure and retries or gives up.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from connectors import connections
from connectors.sdk.errors import WebhookRejected
from connectors.store import HookDeliveryItem, HookRouteItem
from crm import clock
from crm.context import TenantContext
from crm.errors import Conflict, Forbidden, NotFound, Unauthorized
from crm.storage import condition_failed

DELIVERY_TTL = timedelta(days=7)
KEPT_HEADERS = ("content-type",)


def _route(connection_id: str) -> TenantContext:
    if not connection_id.startswith("con_") or len(connection_id) != 30:
        raise NotFound(f"connection {connection_id} not found")
    try:
        return TenantContext(HookRouteItem.get(f"HOOK#{connection_id}", "HOOK").tenant_id)
    except HookRouteItem.DoesNotExist:
        raise NotFound(f"connection {connection_id} not found") from None


def _refuse_if_stopped(ctx: TenantContext, item: Any) -> None:
    if not connections.tenant_active(ctx):
        raise Forbidden("the tenant is suspended: its webhooks are not accepted", code="tenant_suspended")
    if item.status != "active":
        raise Conflict(f"connection {item.connection_id} is paused: its webhooks are not accepted "
                       "(PATCH status active to resume)", code="connection_paused")


def receive(connection_id: str, headers: dict[str, Any], body: bytes) -> tuple[bool, str]:
    """(queued?, delivery id). Raises Unauthorized (401) on a missing or forged signature."""
    from pynamodb.exceptions import PutError

    from connectors import messages

    ctx = _route(connection_id)
    item, _ = connections.load(ctx, connection_id)
    cls = connections.connector(item.connector)
    if not cls.webhooks:
        raise NotFound(f"the {cls.name} connector takes no webhooks")
    lowered = {k.lower(): v for k, v in headers.items()}
    config = connections.config_of(ctx, item)
    conn = cls()
    try:
        conn.verify_webhook(config, lowered, body)
    except WebhookRejected as exc:
        raise Unauthorized(f"webhook rejected: {exc}", code="invalid_signature") from None
    _refuse_if_stopped(ctx, item)
    delivery_id = conn.webhook_delivery_id(lowered, body)
    now = clock.now()
    guard = HookDeliveryItem(connections.pk(ctx, connection_id),
                             f"HOOK#{connections.delivery_digest(delivery_id)}",
                             connection_id=connection_id, received_at=clock.iso(now),
                             ttl=now + DELIVERY_TTL)
    try:
        guard.save(condition=HookDeliveryItem.pk.does_not_exist())
    except PutError as exc:
        if condition_failed(exc):
            return False, delivery_id
        raise
    kept = {k: v for k, v in lowered.items() if k.startswith("x-") or k in KEPT_HEADERS}
    message = messages.hook_message(ctx.tenant_id, connection_id, delivery_id, kept, body)
    try:
        messages.send([message])
    except Exception:
        guard.delete()  # not queued: let the vendor's retry through
        raise
    return True, delivery_id
