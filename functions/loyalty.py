"""Loyalty reactions: order events -> points; the schedule -> activation, expiry,
expiry notices and tier recalculation."""
from __future__ import annotations

from typing import Any

SCHEDULE_BATCH = 250  # customers per shard per run; the rest wait for the next run
TIME_RESERVE_MS = 5_000  # stop taking customers when the invocation has less left


def apply(event: dict[str, Any]) -> int:
    """An order event: reconcile the customer's points with the order's state."""
    from crm.context import TenantContext
    from crm.loyalty import service

    return service.apply_order(TenantContext(event["tenant_id"]), event["data"])


def handle_batch(raw_event: dict[str, Any], lambda_context: Any = None) -> dict[str, Any]:
    from functions.consumer import consume

    return consume("loyalty", raw_event, apply, lambda_context)


def run_schedule(now: str | None = None, lambda_context: Any = None) -> dict[str, int]:
    """Every book whose next due time has passed: 1 Query per shard on the sparse due
    index, then 1 BatchGetItem + 1 TransactWriteItems per customer. Stops early when
    the invocation runs short of time; what is left is still due at the next run."""
    from crm import clock
    from crm.context import TenantContext
    from crm.loyalty import service

    at = now or clock.now_iso()
    customers = entries = 0
    for shard in range(service.DUE_SHARDS):
        for tenant, customer in list(service.due(shard, at, SCHEDULE_BATCH)):
            if lambda_context is not None and lambda_context.get_remaining_time_in_millis() < TIME_RESERVE_MS:
                return {"customers": customers, "entries": entries, "stopped_early": 1}
            entries += service.maintain(TenantContext(tenant), customer, at)
            customers += 1
    return {"customers": customers, "entries": entries}
