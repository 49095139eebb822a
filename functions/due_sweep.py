"""The shape both due-index schedules share (loyalty's points books, segments' flips):
read each shard's due rows, skip suspended tenants, stop with time in reserve."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

SCHEDULE_BATCH = 250  # customers per shard per run; the rest wait for the next run
SKIP_HEADROOM = 4  # due rows read per shard: this many batches, so skipped ones do not starve others
TIME_RESERVE_MS = 5_000  # stop taking customers when the invocation has less left

Due = Callable[[int, str, int], Iterable[tuple[str, str]]]  # (shard, now, limit) -> (tenant, customer)
Work = Callable[[Any, str, str], int]  # (TenantContext, customer, now) -> what to add to ``total``


def sweep(shards: int, due: Due, work: Work, total: str, now: str | None = None,
          lambda_context: Any = None) -> dict[str, int]:
    """``work`` for every customer whose due time has passed, at most ``SCHEDULE_BATCH``
    per shard: 1 Query per shard, 1 GetItem per tenant per run (is it suspended? its
    customers stay due and are done once it is active again). Stops early when the
    invocation runs short of time; what is left is still due at the next run. Returns
    ``{"customers", total}`` (+ ``stopped_early``, ``skipped``)."""
    from connectors.connections import tenant_active
    from crm import clock
    from crm.context import TenantContext

    at = now or clock.now_iso()
    counts = {"customers": 0, total: 0}
    skipped = 0
    active: dict[str, bool] = {}
    for shard in range(shards):
        done = 0
        for tenant, customer in list(due(shard, at, SCHEDULE_BATCH * SKIP_HEADROOM)):
            if done >= SCHEDULE_BATCH:
                break
            ctx = TenantContext(tenant)
            if not tenant_active(ctx, active):
                skipped += 1
                continue
            if lambda_context is not None and lambda_context.get_remaining_time_in_millis() < TIME_RESERVE_MS:
                return {**counts, "stopped_early": 1, **({"skipped": skipped} if skipped else {})}
            counts[total] += work(ctx, customer, at)
            counts["customers"] += 1
            done += 1
    return {**counts, **({"skipped": skipped} if skipped else {})}
