"""Loyalty reactions: order events -> points; the schedule -> activation, expiry,
expiry notices and tier recalculation."""
from __future__ import annotations

from typing import Any


def apply(event: dict[str, Any]) -> int:
    """An order event: reconcile the customer's points with the order's state."""
    from crm.context import TenantContext
    from crm.loyalty import service

    return service.apply_order(TenantContext(event["tenant_id"]), event["data"])


def handle_batch(raw_event: dict[str, Any], lambda_context: Any = None) -> dict[str, Any]:
    """No idempotency records (functions/consumer.py): ``apply`` reconciles the book with
    the order's state it is given, so a duplicate or a late event changes nothing."""
    from functions.consumer import consume

    return consume("loyalty", raw_event, apply, lambda_context)


def run_schedule(now: str | None = None, lambda_context: Any = None) -> dict[str, int]:
    """Every book whose next due time has passed (functions/due_sweep.py): 1 Query per
    shard on the sparse due index, then 1 BatchGetItem + 1 TransactWriteItems per
    customer (``service.maintain``)."""
    from crm.loyalty import service
    from functions.due_sweep import sweep

    return sweep(service.DUE_SHARDS, service.due, service.maintain, "entries", now, lambda_context)
