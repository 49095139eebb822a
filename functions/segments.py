"""Segment maintenance: order, profile and loyalty events -> each customer's metrics and
memberships (crm/segments/maintain.py); the schedule -> the customers whose time
condition or score is due to flip."""
from __future__ import annotations

import json
from typing import Any

SCHEDULE_BATCH = 250  # customers per shard per run; the rest wait for the next run
SKIP_HEADROOM = 4  # due rows read per shard: this many batches, so skipped ones do not starve others
TIME_RESERVE_MS = 5_000  # stop taking customers when the invocation has less left

Key = tuple[str, str]


def group(events: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """(tenant, customer) -> what to do for it: the order states its events carry, and
    the survivor when one of them is ``customer.merged``. A batch's events for one
    customer are reconciled once."""
    out: dict[Key, dict[str, Any]] = {}
    for event in events:
        data = event.get("data") or {}
        customer = event.get("customer_id") or data.get("customer_id")
        if not customer:
            continue
        work = out.setdefault((event["tenant_id"], customer), {"orders": [], "merged_into": None})
        if event["type"].startswith("order."):
            work["orders"].append(data)
        elif event["type"] == "customer.merged" and data.get("merged_into"):
            work["merged_into"] = data["merged_into"]
    return out


def apply(key: Key, work: dict[str, Any], now: str | None = None) -> dict[str, Any]:
    """One customer: ``on_merged`` for a merge, else a reconcile with the order states."""
    from crm.context import TenantContext
    from crm.segments import maintain

    ctx = TenantContext(key[0])
    if work["merged_into"]:
        return maintain.on_merged(ctx, key[1], work["merged_into"], now)
    return maintain.reconcile(ctx, key[1], work["orders"], now)


def handle_batch(raw_event: dict[str, Any], lambda_context: Any = None) -> dict[str, Any]:
    """No idempotency records (functions/consumer.py): a reconcile brings the customer
    in line with what is stored and the newest order states, so a duplicate or a late
    event changes nothing. The batch is grouped per customer first: each customer is
    reconciled once, at its first message; a failure fails every message of that
    customer (they come back together)."""
    from functions.consumer import consume

    events = []
    for record in raw_event.get("Records") or []:
        try:
            events.append(json.loads(record["body"]))
        except (KeyError, TypeError, ValueError):
            continue  # consume() reports it failed
    groups = group(events)
    done: dict[Key, BaseException | None] = {}

    def handle(event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        key = (event["tenant_id"], event.get("customer_id") or data.get("customer_id"))
        if key not in groups:
            return
        if key not in done:
            try:
                apply(key, groups[key])
                done[key] = None
            except Exception as exc:  # noqa: BLE001 - kept to fail this customer's other messages too
                done[key] = exc
        if done[key] is not None:
            raise done[key]  # type: ignore[misc]

    return consume("segments", raw_event, handle, lambda_context)


def run_schedule(now: str | None = None, lambda_context: Any = None) -> dict[str, int]:
    """Every customer whose next flip time has passed: 1 Query per shard on the sparse
    due index, then each customer's reconcile (1 BatchGetItem + 1 TransactWriteItems).
    A suspended tenant's customers are skipped (1 GetItem per tenant per run); they stay
    due. Stops early when the invocation runs short of time; what is left is still due
    at the next run."""
    from connectors.connections import tenant_active
    from crm import clock
    from crm.context import TenantContext
    from crm.segments import maintain

    at = now or clock.now_iso()
    customers = changed = skipped = 0
    active: dict[str, bool] = {}
    for shard in range(maintain.DUE_SHARDS):
        done = 0
        for tenant, customer in list(maintain.due(shard, at, SCHEDULE_BATCH * SKIP_HEADROOM)):
            if done >= SCHEDULE_BATCH:
                break
            ctx = TenantContext(tenant)
            if not tenant_active(ctx, active):
                skipped += 1
                continue
            if lambda_context is not None and lambda_context.get_remaining_time_in_millis() < TIME_RESERVE_MS:
                return {"customers": customers, "changed": changed, "stopped_early": 1,
                        **({"skipped": skipped} if skipped else {})}
            result = maintain.reconcile(ctx, customer, now=at)
            changed += int(bool(result["entered"] or result["exited"]))
            customers += 1
            done += 1
    return {"customers": customers, "changed": changed, **({"skipped": skipped} if skipped else {})}
