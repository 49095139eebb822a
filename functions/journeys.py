"""Journeys (crm/journeys/runner.py): domain events start and end runs; the schedule runs
the steps that are due; a birthday journey's backfill pages through its customers."""
from __future__ import annotations

from typing import Any


def handle_batch(raw_event: dict[str, Any], lambda_context: Any = None) -> dict[str, Any]:
    """No idempotency records (functions/consumer.py): a run is keyed by its trigger's
    occurrence and remembers the events it applied, and each send is exactly-once on its
    own record, so a duplicate or a replayed event changes nothing. The tenant's journeys
    are read once per batch."""
    from crm.context import TenantContext
    from crm.journeys import runner
    from functions.consumer import consume

    cache: dict[str, Any] = {}

    def handle(event: dict[str, Any]) -> None:
        ctx = TenantContext(event["tenant_id"])
        if event.get("job") == "birthdays":
            cursor = runner.backfill_step(ctx, event["journey_id"], event.get("cursor"))
            if cursor is not None:
                from crm import queues

                queues.send("journeys", [{**event, "cursor": cursor}])
            return
        runner.handle_event(ctx, event, cache)

    return consume("journeys", raw_event, handle, lambda_context)


def run_schedule(now: str | None = None, lambda_context: Any = None) -> dict[str, int]:
    """Every customer with a run due (functions/due_sweep.py): 1 Query per shard on the
    sparse due index, then the customer's runs (1 Query) and each due one's steps."""
    from crm.journeys import runner
    from functions.due_sweep import sweep

    cache: dict[str, Any] = {}

    def work(ctx: Any, customer: str, at: str) -> int:
        return runner.run_due(ctx, customer, at, cache)

    return sweep(runner.DUE_SHARDS, runner.due, work, "runs", now, lambda_context)
