"""Uploaded records the server refused: ``T#<tenant>#AGT#<agent id>`` / ``PARK#<seq>``,
kept 30 days, listed newest first. A parked record keeps its seq, kind, local key, the
reason and the errors (where and what, never the value sent).

DynamoDB requests: park: 1 PutItem per refused record, conditional on it not being
parked yet (a retried batch parks it once, counted once); list: 1 Query.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from crm import clock
from crm.agents.records import Refused
from crm.agents.schemas import AgentParked
from crm.context import TenantContext
from crm.errors import Invalid
from crm.paging import Page, decode_cursor, encode_cursor, start_key
from crm.storage import AgentParkedItem, condition_failed

KEEP_DAYS = 30
PREFIX = "PARK#"


def pk(ctx: TenantContext, agent_id: str) -> str:
    return ctx.key("AGT", agent_id)


def sk(seq: int) -> str:
    return f"{PREFIX}{seq:016d}"


def park(ctx: TenantContext, agent_id: str, refused: list[Refused]) -> int:
    """Store the refused records; returns how many were new (the agent's ``rejected`` count)."""
    from pynamodb.exceptions import PutError

    now, new = clock.now_iso(), 0
    for r in refused:
        item = AgentParkedItem(
            pk(ctx, agent_id),
            sk(r.seq),
            seq=r.seq,
            record_kind=r.kind,
            external_id=r.external_id,
            reason=r.reason[:500],
            errors=r.errors[:50],
            parked_at=now,
            ttl=timedelta(days=KEEP_DAYS),
        )
        try:
            item.save(condition=AgentParkedItem.pk.does_not_exist())
            new += 1
        except PutError as exc:
            if not condition_failed(exc):
                raise
    return new


def to_parked(item: AgentParkedItem) -> AgentParked:
    return AgentParked(
        seq=int(item.seq),
        kind=item.record_kind,
        external_id=item.external_id,
        reason=item.reason,
        errors=list(item.errors or []),
        parked_at=item.parked_at,
    )


def page_of(
    model: Any, partition: str, prefix: str, kind: str, cursor: str | None, limit: int
) -> tuple[list, str | None]:
    """Newest first (the sort key grows with the seq): 1 Query of ``limit + 1`` items."""
    after = decode_cursor(cursor, kind)
    start = None
    if after is not None:
        if not after.startswith(prefix) or len(after) > 200:
            raise Invalid("cursor is malformed or belongs to a different list", field="cursor")
        start = start_key(pk=partition, sk=after)
    rows = list(
        model.query(
            partition,
            model.sk.startswith(prefix),
            scan_index_forward=False,
            limit=limit + 1,
            page_size=limit + 1,
            last_evaluated_key=start,
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(kind, rows[-1].sk) if more and rows else None)


def list_parked(ctx: TenantContext, agent_id: str, cursor: str | None, limit: int) -> Page:
    rows, nxt = page_of(AgentParkedItem, pk(ctx, agent_id), PREFIX, "agent_parked", cursor, limit)
    return Page([to_parked(r) for r in rows], nxt)
