"""Segment maintenance: order, profile and loyalty events -> each customer's metrics and
memberships (crm/segments/maintain.py); the schedule -> the customers whose time
condition or score is due to flip."""
from __future__ import annotations

import json
from typing import Any

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


def apply(key: Key, work: dict[str, Any], now: str | None = None, read: Any = None) -> dict[str, Any]:
    """One customer: ``on_merged`` for a merge, else a reconcile with the order states
    (``read``: its first read, made for the whole batch)."""
    from crm.context import TenantContext
    from crm.segments import maintain

    ctx = TenantContext(key[0])
    if work["merged_into"]:
        return maintain.on_merged(ctx, key[1], work["merged_into"], now)
    return maintain.reconcile(ctx, key[1], work["orders"], now, read=read)


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
    reads: dict[Key, Any] = {}
    try:  # every customer's first read in one BatchGetItem (a failure: each reads its own)
        from crm.context import TenantContext
        from crm.segments import maintain

        reads = maintain.read_many([(TenantContext(t), c) for (t, c), w in groups.items() if not w["merged_into"]])
    except Exception:  # noqa: BLE001 - each customer's reconcile reads (and fails) on its own
        reads = {}

    def handle(event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        key = (event["tenant_id"], event.get("customer_id") or data.get("customer_id"))
        if key not in groups:
            return
        if key not in done:
            try:
                apply(key, groups[key], read=reads.get(key))
                done[key] = None
            except Exception as exc:  # noqa: BLE001 - kept to fail this customer's other messages too
                done[key] = exc
        if done[key] is not None:
            raise done[key]  # type: ignore[misc]

    return consume("segments", raw_event, handle, lambda_context)


def run_schedule(now: str | None = None, lambda_context: Any = None) -> dict[str, int]:
    """Every customer whose next flip time has passed (functions/due_sweep.py): 1 Query
    per shard on the sparse due index, then each customer's reconcile (1 BatchGetItem +
    1 TransactWriteItems); ``changed`` counts those whose memberships moved."""
    from crm.segments import maintain
    from functions.due_sweep import sweep

    def work(ctx: Any, customer: str, at: str) -> int:
        result = maintain.reconcile(ctx, customer, now=at)
        return int(bool(result["entered"] or result["exited"]))

    return sweep(maintain.DUE_SHARDS, maintain.due, work, "changed", now, lambda_context)
