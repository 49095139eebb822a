"""The timeline subscriber, for events whose fact has no transaction of its own to
write the entry in. None has today: every event with a timeline entry writes it in the
transaction that records the fact (crm/timeline.py), so ``functions.dispatch.ROUTES``
sends this queue nothing. The queue, its DLQ and this handler stay, so that a later
event without such a transaction (a delivery reported by a carrier, say) only needs a
route. Idempotent on its own: the entry's id is derived from the event id."""
from __future__ import annotations

from typing import Any


def apply(event: dict[str, Any]) -> bool:
    """1 TransactWriteItems (crm.customers.service.record_event); False when the entry
    exists already or the customer was erased."""
    from crm.context import TenantContext
    from crm.customers.schemas import TimelineEventCreate
    from crm.customers.service import record_event
    from crm.timeline import describe

    summary, payload, channel = describe(event)
    body = TimelineEventCreate(type=event["type"], channel=channel, occurred_at=event["occurred_at"],
                               summary=summary[:500], payload=payload)
    return record_event(TenantContext(event["tenant_id"]), event["customer_id"], event["id"], body)


def handle_batch(raw_event: dict[str, Any], lambda_context: Any = None) -> dict[str, Any]:
    from functions.consumer import consume

    return consume("timeline", raw_event, apply, lambda_context)
