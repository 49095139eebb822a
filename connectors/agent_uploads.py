"""An on-premise agent's upload (POST /v1/agents/{agent_id}/uploads), record by record.

Each record is validated on its own (crm/agents/records.py); a bad one is rejected with
its reason and parked, the rest apply. A record whose ``seq`` is at most the agent's
``acked_seq`` (or repeats an earlier seq of the batch) is a duplicate: nothing is
written, it is answered with the cloud's current values. Customers go through
crm/agents/customers.py (the conflict rules); orders through ``connectors.sink`` with the
agent's source, as a connector's. After the batch, ``acked_seq`` moves (never back) to
its highest seq, so a retried batch writes nothing twice.

It lives in connectors/ because orders are written by the sink (crm never imports
connectors); everything else is crm/agents.

DynamoDB requests per batch (docs/performance.md): 1 GetItem (the agent) + the customers'
(crm/agents/customers.py) + the sink's for the orders + 1 PutItem per new conflict and per
parked record + 1 UpdateItem (acked_seq and the counts); duplicates: 1 BatchGetItem of
guards + 1 of profiles, nothing written.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from connectors.sdk.base import OrderRecord as SdkOrder
from crm.agents import conflicts, customers, parked, records, registry
from crm.agents.hlc import now as hlc_now
from crm.context import TenantContext

STREAM = "agent"
_ORDER = TypeAdapter(SdkOrder)


def _sdk_order(r: records.OrderRecord) -> SdkOrder | records.Refused:
    data = dict(r.order)
    given = data.get("external_id")
    if given is not None and given != r.external_id:
        return records.Refused(r.index, r.seq, "order", r.external_id, "the order's external_id is not the record's",
                               [{"field": "order.external_id", "code": "mismatch",
                                 "detail": "must be the record's external_id"}])
    data["external_id"] = r.external_id
    buyer = data.get("customer")
    if isinstance(buyer, dict):  # {"external_id": <local customer key>}: resolved like a customer record
        data["customer"] = {"updated_at": data.get("updated_at"), "profile": {}, **buyer}
    try:
        return _ORDER.validate_python(data)
    except ValidationError as exc:
        return records.Refused(r.index, r.seq, "order", r.external_id, "invalid order record",
                               [{**e, "field": f"order.{e['field']}" if e["field"] else "order"}
                                for e in records._errors(exc)])


def _orders(ctx: TenantContext, source: str, todo: list[records.OrderRecord]) -> tuple[dict[int, dict], list]:
    from connectors import sink

    answers: dict[int, dict[str, Any]] = {}
    refused: list[records.Refused] = []
    ready: list[tuple[records.OrderRecord, SdkOrder]] = []
    for r in todo:
        sdk = _sdk_order(r)
        if isinstance(sdk, records.Refused):
            refused.append(sdk)
        else:
            ready.append((r, sdk))
    if not ready:
        return answers, refused
    done: dict[str, dict[str, Any]] = {}
    out = sink.write(ctx, source, STREAM, [o for _, o in ready], orders_done=done)
    why = {x["external_id"]: x for x in out.rejected}
    for r, _ in ready:
        if r.external_id in done:
            d = done[r.external_id]
            answers[r.index] = {"seq": r.seq, "status": d["status"], "order_id": d["order_id"],
                                "customer_id": d["customer_id"]}
        else:
            x = why.get(r.external_id) or {"reason": "the order was not imported", "errors": []}
            errors = [{k: v for k, v in e.items() if k != "input"} for e in x.get("errors") or []]
            refused.append(records.Refused(r.index, r.seq, "order", r.external_id, str(x["reason"])[:500], errors))
    return answers, refused


def _order_duplicates(ctx: TenantContext, source: str, todo: list[records.OrderRecord]) -> dict[int, dict]:
    """The orders already written for duplicate records: 1 BatchGetItem of their guards."""
    from crm.storage import GuardItem, Item

    keys = [(ctx.key("U", "order", source, r.external_id), "U") for r in todo]
    found = {i.pk: i for i in Item.batch_get(list(dict.fromkeys(keys)), consistent_read=True)
             if isinstance(i, GuardItem)}
    out = {}
    for r, (gpk, _) in zip(todo, keys, strict=True):
        g = found.get(gpk)
        out[r.index] = {"seq": r.seq, "status": "duplicate", "order_id": getattr(g, "order_id", None),
                        "customer_id": getattr(g, "customer_id", None)}
    return out


def _answer(o: customers.Outcome) -> dict[str, Any]:
    return {"seq": o.seq, "status": o.status, "customer_id": o.customer_id, "conflicts": o.conflicts,
            "values": o.values, "updated_at": o.updated_at}


def upload(ctx: TenantContext, agent_id: str, raw: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer to an upload: a result per record (same order), acked_seq, hlc."""
    agent = registry.for_agent(ctx, agent_id)
    acked, source = int(agent.acked_seq or 0), agent.source
    parsed = [records.parse(i, r) for i, r in enumerate(raw)]
    seen: set[int] = set()
    duplicate: set[int] = set()
    for p in parsed:
        if p.seq <= acked or p.seq in seen:
            duplicate.add(p.index)
        seen.add(p.seq)
    fresh = [p for p in parsed if p.index not in duplicate]
    answers: dict[int, dict[str, Any]] = {}

    dup_customers = [p for p in parsed if p.index in duplicate and isinstance(p, records.CustomerRecord)]
    dup_orders = [p for p in parsed if p.index in duplicate and isinstance(p, records.OrderRecord)]
    if dup_customers:
        answers.update({i: _answer(o) for i, o in customers.current(ctx, source, dup_customers).items()})
    if dup_orders:
        answers.update(_order_duplicates(ctx, source, dup_orders))
    for p in parsed:
        if p.index in duplicate and p.index not in answers:
            answers[p.index] = {"seq": p.seq, "status": "duplicate"}

    refused = [p for p in fresh if isinstance(p, records.Refused)]
    todo = [p for p in fresh if isinstance(p, records.CustomerRecord)]
    applied = customers.apply(ctx, agent_id, source, todo) if todo else customers.Applied()
    answers.update({i: _answer(o) for i, o in applied.outcomes.items()})
    refused += applied.refused
    order_answers, order_refused = _orders(ctx, source, [p for p in fresh if isinstance(p, records.OrderRecord)])
    answers.update(order_answers)
    refused += order_refused

    new_rejected = parked.park(ctx, agent_id, refused) if refused else 0
    new_conflicts = conflicts.record(ctx, agent_id, applied.conflicts) if applied.conflicts else 0
    for r in refused:
        answers[r.index] = {"seq": r.seq, "status": "rejected", "reason": r.reason, "errors": r.errors}
    top = max((p.seq for p in parsed), default=0)
    if top > acked or new_rejected or new_conflicts:
        acked = registry.advance(ctx, agent_id, max(top, acked), new_rejected, new_conflicts)
    return {"results": [answers[p.index] for p in parsed], "acked_seq": acked, "hlc": hlc_now()}
