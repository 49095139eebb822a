"""Loyalty reactions: order events -> points; the schedule -> activation, expiry,
expiry notices and tier recalculation."""
from __future__ import annotations

from typing import Any

SCHEDULE_BATCH = 250  # customers per shard per run; the rest wait for the next run
SKIP_HEADROOM = 4  # due rows read per shard: this many batches, so skipped ones do not starve others
TIME_RESERVE_MS = 5_000  # stop taking customers when the invocation has less left


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
    """Every book whose next due time has passed: 1 Query per shard on the sparse due
    index, then 1 BatchGetItem + 1 TransactWriteItems per customer. A suspended tenant's
    books are skipped (1 GetItem per tenant per run); they stay due and are maintained
    once the tenant is active again. Stops early when the invocation runs short of time;
    what is left is still due at the next run."""
    from connectors.connections import tenant_active
    from crm import clock
    from crm.context import TenantContext
    from crm.loyalty import service

    at = now or clock.now_iso()
    customers = entries = skipped = 0
    active: dict[str, bool] = {}
    for shard in range(service.DUE_SHARDS):
        done = 0
        # read past a suspended tenant's books, so they do not hold the batch up
        for tenant, customer in list(service.due(shard, at, SCHEDULE_BATCH * SKIP_HEADROOM)):
            if done >= SCHEDULE_BATCH:
                break
            ctx = TenantContext(tenant)
            if not tenant_active(ctx, active):
                skipped += 1
                continue
            if lambda_context is not None and lambda_context.get_remaining_time_in_millis() < TIME_RESERVE_MS:
                return {"customers": customers, "entries": entries, "stopped_early": 1,
                        **({"skipped": skipped} if skipped else {})}
            entries += service.maintain(ctx, customer, at)
            customers += 1
            done += 1
    return {"customers": customers, "entries": entries, **({"skipped": skipped} if skipped else {})}
