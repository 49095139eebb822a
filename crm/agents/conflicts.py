"""Conflicts a field's rule resolved: ``T#<tenant>#AGT#<agent id>`` / ``CFL#<seq>#<field>``,
kept 90 days, listed newest first. The id is derived from (agent, seq, field), so a
retried upload records a conflict once. Both values are the customer's personal data:
each conflict is listed on gsi1 ``P AGTCFL#<customer id>``, and an erasure deletes them
(crm/erasure.py's hook: 1 Query + 1 BatchWriteItem per 25).

DynamoDB requests: record: 1 PutItem per conflict, conditional on it not being stored
yet; list: 1 Query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from crm import clock
from crm.agents.parked import page_of
from crm.agents.rules import conflict_id
from crm.agents.schemas import AgentConflict
from crm.context import TenantContext
from crm.paging import Page
from crm.storage import AgentConflictItem, condition_failed

KEEP_DAYS = 90
PREFIX = "CFL#"


@dataclass(frozen=True)
class Resolved:
    seq: int
    customer_id: str | None
    external_id: str | None
    field: str
    local_value: Any
    cloud_value: Any
    winner: str
    rule: str
    local_hlc: str
    cloud_hlc: str


def pk(ctx: TenantContext, agent_id: str) -> str:
    return ctx.key("AGT", agent_id)


def erasure_pk(ctx: TenantContext, customer_id: str) -> str:
    return ctx.key("AGTCFL", customer_id)


def record(ctx: TenantContext, agent_id: str, found: list[Resolved]) -> int:
    """Store the conflicts; returns how many were new (the agent's ``conflicts`` count)."""
    from pynamodb.exceptions import PutError

    now, new = clock.now_iso(), 0
    for c in found:
        cid = conflict_id(agent_id, c.seq, c.field)
        item = AgentConflictItem(
            pk(ctx, agent_id),
            f"{PREFIX}{c.seq:016d}#{c.field}",
            conflict_id=cid,
            agent_id=agent_id,
            seq=c.seq,
            customer_id=c.customer_id,
            external_id=c.external_id,
            field=c.field,
            local_value=c.local_value,
            cloud_value=c.cloud_value,
            winner=c.winner,
            rule=c.rule,
            local_hlc=c.local_hlc,
            cloud_hlc=c.cloud_hlc,
            resolved_at=now,
            ttl=timedelta(days=KEEP_DAYS),
        )
        if c.customer_id:
            item.gsi1pk, item.gsi1sk = erasure_pk(ctx, c.customer_id), f"{now}#{cid}"
        try:
            item.save(condition=AgentConflictItem.pk.does_not_exist())
            new += 1
        except PutError as exc:
            if not condition_failed(exc):
                raise
    return new


def to_conflict(item: AgentConflictItem) -> AgentConflict:
    return AgentConflict(
        id=item.conflict_id,
        seq=int(item.seq),
        customer_id=item.customer_id,
        external_id=item.external_id,
        field=item.field,
        local_value=item.local_value,
        cloud_value=item.cloud_value,
        winner=item.winner,  # type: ignore[arg-type]
        rule=item.rule,
        local_hlc=item.local_hlc,
        cloud_hlc=item.cloud_hlc,
        resolved_at=item.resolved_at,
    )


def list_conflicts(ctx: TenantContext, agent_id: str, cursor: str | None, limit: int) -> Page:
    rows, nxt = page_of(AgentConflictItem, pk(ctx, agent_id), PREFIX, "agent_conflicts", cursor, limit)
    return Page([to_conflict(r) for r in rows], nxt)


def erase(ctx: TenantContext, customer_id: str) -> int:
    """Delete the erased customer's conflicts (every agent's): 1 Query on gsi1 per page, 1
    BatchWriteItem per 25."""
    found = list(AgentConflictItem.gsi1.query(erasure_pk(ctx, customer_id)))
    with AgentConflictItem.batch_write() as batch:
        for item in found:
            batch.delete(item)
    return len(found)
