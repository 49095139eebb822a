"""Outbound webhooks (crm/webhooks/deliveries.py): the worker on the webhooks queue and
the retry schedule.

Messages: ``{"type": "changes", "tenant_id"}`` from the stream dispatcher once a batch's
changes are in the feed: one ``{"type": "endpoint", "tenant_id", "endpoint_id"}`` per
enabled endpoint of the tenant, each handled on its own (the queue's batch size is 1),
so a slow or failing endpoint never holds up another endpoint or tenant. An endpoint
message makes the endpoint's deliveries and first attempts; one another worker is on
is asked again 5 s later, so nothing is left behind its lease. ``{"type": "due",
"tenant_id", "endpoint_id", "seqs"}`` from the schedule or a replay: those deliveries
are attempted.

No idempotency records: a delivery is made once (its key is the change's seq, under
the cursor's condition) and a repeated attempt is what receivers de-duplicate on
(the same ``webhook-id``).
"""
from __future__ import annotations

from typing import Any

BUSY_DELAY = 5  # seconds before a tenant's fan-out is tried again while an endpoint is leased


def _send(url: str, headers: dict[str, str], body: str) -> Any:
    from connectors import outbound

    return outbound.post(url, headers, body)


def handle_batch(raw_event: dict[str, Any], lambda_context: Any = None) -> dict[str, Any]:
    from functions.consumer import consume

    return consume("webhooks", raw_event, handle, lambda_context)


def handle(message: dict[str, Any], send: Any = _send) -> None:
    from crm import queues
    from crm.context import TenantContext
    from crm.errors import NotFound
    from crm.webhooks import deliveries, endpoints

    ctx = TenantContext(message["tenant_id"])
    kind = message.get("type")
    if kind == "due":
        deliveries.retry(ctx, message["endpoint_id"], list(message.get("seqs") or []), send)
    elif kind == "endpoint":
        try:
            endpoint = endpoints.get(ctx, message["endpoint_id"])
        except NotFound:
            return  # deleted since
        if endpoint.enabled and deliveries.fan_out(ctx, endpoint, send) is None:
            queues.send("webhooks", [message], delay=BUSY_DELAY)  # another worker is on it: after it
    else:  # "changes": one message per endpoint, so a slow endpoint holds up no other
        queues.send(
            "webhooks",
            [{"type": "endpoint", "tenant_id": ctx.tenant_id, "endpoint_id": e.id} for e in endpoints.list_enabled(ctx)],
        )


def run_schedule(lambda_context: Any = None) -> dict[str, int]:
    """Deliveries whose next attempt is due, handed to the worker (1 Query of gsi2
    ``WEBHOOK_DUE#0`` per 500, one message per endpoint)."""
    from crm import queues
    from crm.webhooks import deliveries

    messages = deliveries.due(limit=500)
    queues.send("webhooks", messages)
    return {"endpoints": len(messages), "deliveries": sum(len(m["seqs"]) for m in messages)}


def wake(tenants: list[str]) -> int:
    """The dispatcher's message: these tenants' feeds have new changes."""
    from crm import queues

    return queues.send("webhooks", [{"type": "changes", "tenant_id": t} for t in tenants])
