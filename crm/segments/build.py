"""A new or edited segment's background build, and a deleted segment's drop.

A build walks the tenant's ``METRICS`` items once (gsi1 ``P METRICS``, never a Scan),
evaluates the segment's rule on each item's ``facts`` and writes only the differences
with ``maintain.commit_many`` (quiet: a build emits no ``segment.entered``/``exited``).
It runs as a chain of ``{"type": "segment_build", "tenant_id", "segment_id", "version"}``
messages on the ``sync`` queue (functions/segment_jobs.py): each step works until its
invocation has ``RESERVE_SECONDS`` left, checkpoints on the SegmentItem and asks for the
next step. The message carries no position: a redelivered or duplicated message resumes
from the stored checkpoint, and a page done twice finds nothing left to change
(``commit_many``'s conditions keep ``member_count`` exact).

State (``SegmentItem.build``): ``{"version", "phase": "backfill"|"members", "cursor",
"backfilled", "processed", "total", "percent", "started_at", "finished_at"}``. The
version is the rule's: an edit (a newer ``rule_version``) or a delete stops an older
build at its next step or checkpoint (every checkpoint is conditional on it).

Requests per page of ``PAGE`` customers: backfill 1 Query (gsi1 ``P CUSTOMERS``) +
1 BatchGetItem (their ``METRICS`` keys) + ``maintain.ensure`` per customer without one;
members 1 Query (gsi1 ``P METRICS``) + ``commit_many``'s TransactWriteItems (one per
40 customers whose membership, or whose next due time under a time condition, changes;
none when nothing changes) + 1 UpdateItem (the checkpoint). Per step: 1 GetItem (segment) + 1 GetItem (catalogue).
"""

from __future__ import annotations

import time
from typing import Any

from crm import clock, queues
from crm.context import TenantContext
from crm.customers import records
from crm.errors import NotFound
from crm.segments.membership import metrics_index, segment_pk
from crm.storage import (
    CustomerItem,
    MetricsItem,
    SegmentCatalogueItem,
    SegmentItem,
    SegmentMemberItem,
    condition_failed,
)

MESSAGE = "segment_build"
QUEUE = "sync"
PAGE = 200  # customers per page (one Query of gsi1, then one checkpoint)
RESERVE_SECONDS = 10.0  # a step stops with at least this much of its invocation left
DROP_PAGE = 100  # member items per Query when a deleted segment's members go
STALL_SECONDS = 900  # a build with no checkpoint for this long is sent on again


def message(tenant_id: str, segment_id: str, version: int | None, *, drop: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"type": MESSAGE, "tenant_id": tenant_id, "segment_id": segment_id, "version": version}
    if drop:
        body["drop"] = True
    return body


# -- start / drop ------------------------------------------------------------------------


def start(ctx: TenantContext, segment_id: str, rule_version: int) -> None:
    """Reset the segment's build to the start for ``rule_version`` (status ``building``)
    and queue its first step: 1 GetItem (the usage counters, for the total) + 1 UpdateItem
    (conditional on the segment still having that rule version) + 1 SendMessageBatch.
    A newer edit already saved wins: nothing is started for an older version."""
    from crm.billing import usage

    now = clock.now_iso()
    total = usage.live_customers(ctx.tenant_id) or _count(ctx)
    state = {
        "version": rule_version,
        "phase": "backfill",
        "cursor": None,
        "backfilled": 0,
        "processed": 0,
        "total": total,
        "percent": 0,
        "started_at": now,
        "finished_at": None,
    }
    try:
        _update(
            ctx,
            segment_id,
            [SegmentItem.build.set(state), SegmentItem.status.set("building")],
            SegmentItem.rule_version == rule_version,
        )
    except Exception as exc:
        if condition_failed(exc):
            return  # deleted, or edited again (that edit starts its own build)
        raise
    queues.send(QUEUE, [message(ctx.tenant_id, segment_id, rule_version)])


def resume_stalled(ctx: TenantContext, now: str | None = None, segment_ids: list[str] | None = None) -> int:
    """Send a step again for every build that has not checkpointed for ``STALL_SECONDS``:
    its start's message was never sent (the API's write committed, the send failed) or
    its chain ended in the sync queue's DLQ. The step resumes from the checkpoint, so a
    build that was only slow loses nothing. 1 BatchGetItem of ``segment_ids`` (the
    catalogue's), or 1 Query of gsi1 ``P SEGMENTS``; the cut points schedule calls it
    for every tenant with segments. Returns the builds sent on."""
    at = clock.parse(now or clock.now_iso())
    items = (
        SegmentItem.batch_get([(segment_pk(ctx, sid), "SEGMENT") for sid in segment_ids])
        if segment_ids is not None
        else SegmentItem.gsi1.query(ctx.key("SEGMENTS"))
    )
    stalled = [
        item
        for item in items
        if isinstance(item, SegmentItem)
        and item.status == "building"
        and (at - clock.parse(item.updated_at)).total_seconds() >= STALL_SECONDS
    ]
    if stalled:
        queues.send(QUEUE, [message(ctx.tenant_id, i.segment_id, int(i.rule_version)) for i in stalled])
    return len(stalled)


def _count(ctx: TenantContext) -> int:
    """The tenant's active customers when the usage counter has none yet (1 Query with
    Select COUNT per 1 MB of gsi1 ``P CUSTOMERS``)."""
    return int(CustomerItem.gsi1.count(records.list_pk(ctx)))


def drop(ctx: TenantContext, segment_id: str) -> None:
    """Queue the removal of a deleted segment's member items (1 SendMessageBatch). The
    customers' ``METRICS.memberships`` entries of the segment are dropped lazily by
    maintenance (crm/segments/maintain.py), the next time each customer changes."""
    queues.send(QUEUE, [message(ctx.tenant_id, segment_id, None, drop=True)])


# -- the step ----------------------------------------------------------------------------


class _Clock:
    """How long the invocation has left, and whether another page fits."""

    def __init__(self, lambda_context: Any) -> None:
        self.context = lambda_context
        self.longest = 0.0

    def left(self) -> float:
        if self.context is None:
            return float("inf")
        return float(self.context.get_remaining_time_in_millis()) / 1000.0

    def another(self) -> bool:
        return self.left() - self.longest > RESERVE_SECONDS

    def timed(self, started: float) -> None:
        self.longest = max(self.longest, time.monotonic() - started)


def step(message_: dict[str, Any], lambda_context: Any = None) -> dict[str, Any] | None:
    """Run the build (or the drop) the message names from its checkpoint until done or
    until the invocation has ``RESERVE_SECONDS`` left; return the next step's message
    (for the caller to queue), or None when finished, superseded or stale."""
    ctx = TenantContext(message_["tenant_id"])
    budget = _Clock(lambda_context)
    if message_.get("drop"):
        return _drop_step(ctx, message_["segment_id"], message_, budget)
    try:
        return _build_step(ctx, message_, budget)
    except _Superseded:
        return None


def _build_step(ctx: TenantContext, message_: dict[str, Any], budget: _Clock) -> dict[str, Any] | None:
    segment_id, version = message_["segment_id"], message_.get("version")
    segment = _segment(ctx, segment_id)
    if segment is None or segment.rule_version != version:
        return None  # deleted or edited since: the newer build (or the drop) takes over
    state = dict(segment.build or {})
    if state.get("version") != version or segment.status != "building" or state.get("finished_at"):
        return None  # finished already (a duplicate message), or a newer build's state
    catalogue = _catalogue(ctx)
    entry = (catalogue.segments or {}).get(segment_id) if catalogue else None
    if catalogue is None or not entry or entry.get("v") != version:
        return None  # the catalogue no longer holds this version of the rule
    if state.get("phase", "backfill") == "backfill":
        if not catalogue.backfilled_at:
            if _backfill(ctx, segment_id, state, budget):
                return dict(message_)  # out of time: the next step goes on from the checkpoint
            _first_cuts(ctx, _mark_backfilled(ctx), budget, backfilled=True)
        elif catalogue.cuts is None:
            _first_cuts(ctx, catalogue, budget)
        state.update(phase="members", cursor=None)
        if not _checkpoint(ctx, segment_id, state):
            return None
        catalogue = _catalogue(ctx) or catalogue  # with the cut points the first cuts wrote
    return _members(ctx, segment_id, entry["rule"], catalogue, state, budget, message_)


def _backfill(ctx: TenantContext, segment_id: str, state: dict[str, Any], budget: _Clock) -> bool:
    """Make sure every customer has ``METRICS`` (customers from before segments existed):
    page through the customer list, read the pages' METRICS keys, ``maintain.ensure``
    the missing ones. Returns True when the invocation ran out of time first."""
    from crm.segments import maintain

    while True:
        if not budget.another():
            return True
        started = time.monotonic()
        now = clock.now_iso()
        start = _start_key(records.list_pk(ctx), state.get("cursor"), ctx, "PROFILE")
        rows = CustomerItem.gsi1.query(records.list_pk(ctx), limit=PAGE, page_size=PAGE, last_evaluated_key=start)
        ids = [row.customer_id for row in rows]
        if ids:
            keys = [(ctx.key("C", cid), "METRICS") for cid in ids]
            have = {
                m.customer_id
                for m in MetricsItem.batch_get(keys, attributes_to_get=["pk", "sk", "kind", "customer_id"])
            }
            for cid in ids:
                if cid not in have:
                    maintain.ensure(ctx, cid, now)
        last = rows.last_evaluated_key
        state["cursor"] = ids[-1] if ids and last else None
        state["backfilled"] = int(state.get("backfilled") or 0) + len(ids)
        state["percent"] = _percent(state)
        if state["cursor"] is None:
            return False
        if not _checkpoint(ctx, segment_id, state):
            raise _Superseded
        budget.timed(started)


def _members(
    ctx: TenantContext,
    segment_id: str,
    rule: dict[str, Any],
    catalogue: SegmentCatalogueItem,
    state: dict[str, Any],
    budget: _Clock,
    message_: dict[str, Any],
) -> dict[str, Any] | None:
    """Evaluate the rule on every ``METRICS`` item from the checkpoint and commit the
    differences, a page at a time; finish the build at the end."""
    from crm.segments import maintain, rules

    while True:
        if not budget.another():
            return dict(message_)
        started = time.monotonic()
        now = clock.now_iso()
        start = _start_key(metrics_index(ctx), state.get("cursor"), ctx, "METRICS")
        rows = MetricsItem.gsi1.query(metrics_index(ctx), limit=PAGE, page_size=PAGE, last_evaluated_key=start)
        items = [row for row in rows if isinstance(row, MetricsItem)]
        # every customer of the page: commit_many writes those whose membership (or its
        # rule version) differs, and those whose due time the rule's next flip moves
        desired = [(item, bool(rules.evaluate(rule, item.facts or {}, now))) for item in items]
        if desired:
            try:
                maintain.commit_many(ctx, desired, catalogue, segment_id, now, quiet=True)
            except NotFound:
                return None  # the segment was deleted meanwhile
        last = rows.last_evaluated_key
        state["cursor"] = items[-1].customer_id if items and last else None
        state["processed"] = int(state.get("processed") or 0) + len(items)
        if state["cursor"] is None:
            state.update(percent=100, finished_at=clock.now_iso())
            _checkpoint(ctx, segment_id, state, ready=True)
            return None
        state["percent"] = _percent(state)
        if not _checkpoint(ctx, segment_id, state):
            return None  # edited or deleted meanwhile
        budget.timed(started)


class _Superseded(Exception):
    """The build's checkpoint found a newer version (or no segment): stop quietly."""


def _percent(state: dict[str, Any]) -> int:
    """Progress for ``GET /v1/segments/{id}``: the backfill (if any) is the first half."""
    total = max(1, int(state.get("total") or 0))
    done = int(state.get("processed") or 0)
    backfilled = int(state.get("backfilled") or 0)
    if backfilled:
        share = (min(backfilled, total) + min(done, total)) / (2 * total)
    else:
        share = min(done, total) / total
    return min(99, int(share * 100))


def _checkpoint(ctx: TenantContext, segment_id: str, state: dict[str, Any], *, ready: bool = False) -> bool:
    """1 UpdateItem: the build's state (and ``ready`` at the end), conditional on the
    segment still building this version. False: superseded (edited or deleted)."""
    actions = [SegmentItem.build.set(state), SegmentItem.updated_at.set(clock.now_iso())]
    if ready:
        actions.append(SegmentItem.status.set("ready"))
    try:
        _update(
            ctx,
            segment_id,
            actions,
            (SegmentItem.rule_version == state["version"]) & (SegmentItem.status == "building"),
        )
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def _update(ctx: TenantContext, segment_id: str, actions: list[Any], condition: Any) -> None:
    """An UpdateItem of the SegmentItem that leaves its ``version`` alone: the build's
    state and the status are the build's, the API's edits (If-Match) are not raced."""
    SegmentItem._get_connection().update_item(
        segment_pk(ctx, segment_id),
        "SEGMENT",
        actions=actions,
        condition=SegmentItem.pk.exists() & condition,
    )


def _segment(ctx: TenantContext, segment_id: str) -> SegmentItem | None:
    try:
        return SegmentItem.get(segment_pk(ctx, segment_id), "SEGMENT", consistent_read=True)
    except SegmentItem.DoesNotExist:
        return None


def _catalogue(ctx: TenantContext) -> SegmentCatalogueItem | None:
    try:
        return SegmentCatalogueItem.get(ctx.prefix, "SEGMENTS", consistent_read=True)
    except SegmentCatalogueItem.DoesNotExist:
        return None


def _start_key(index: str, after: str | None, ctx: TenantContext, sk: str) -> dict[str, Any] | None:
    """The gsi1 start key after customer ``after``, rebuilt from the tenant context (the
    checkpoint keeps only the customer id)."""
    if not after:
        return None
    return {
        "gsi1pk": {"S": index},
        "gsi1sk": {"S": after},
        "pk": {"S": ctx.key("C", after)},
        "sk": {"S": sk},
    }


def _mark_backfilled(ctx: TenantContext) -> SegmentCatalogueItem | None:
    """Record on the catalogue that every customer has METRICS (conditional on its
    version, re-read and retried on a race)."""
    for _ in range(5):
        catalogue = _catalogue(ctx)
        if catalogue is None:
            return None
        if catalogue.backfilled_at:
            return catalogue
        try:
            catalogue.update(
                actions=[
                    SegmentCatalogueItem.backfilled_at.set(clock.now_iso()),
                    SegmentCatalogueItem.updated_at.set(clock.now_iso()),
                ]
            )
            return catalogue
        except Exception as exc:
            if not condition_failed(exc):
                raise
    raise RuntimeError("the segment catalogue kept changing while marking it backfilled")


def _first_cuts(
    ctx: TenantContext, catalogue: SegmentCatalogueItem | None, budget: _Clock, *, backfilled: bool = False
) -> None:
    """A tenant's first build computes its RFM cut points if it has none yet, so scores
    are the tenant's own the same day rather than the defaults until the schedule runs
    (customers it has no time to rescore are the schedule's within the hour: ``cuts_at``
    stays unset until all are). Right after the backfill it recomputes them anyway: cut
    points the schedule took from the first few orders would otherwise stand for a day."""
    if catalogue is not None and (backfilled or catalogue.cuts is None):
        from crm.segments import cuts

        cuts.recompute(ctx, clock.now_iso(), budget.left, RESERVE_SECONDS)


# -- drop --------------------------------------------------------------------------------


def _drop_step(ctx: TenantContext, segment_id: str, message_: dict[str, Any], budget: _Clock) -> dict[str, Any] | None:
    """Delete a deleted segment's member items, ``DROP_PAGE`` per Query and BatchWriteItem
    (25 per request). Nothing is deleted while the segment exists (a stale message)."""
    if _segment(ctx, segment_id) is not None:
        return None
    pk = segment_pk(ctx, segment_id)
    while True:
        if not budget.another():
            return dict(message_)
        started = time.monotonic()
        members = list(
            SegmentMemberItem.query(pk, SegmentMemberItem.sk.startswith("M#"), limit=DROP_PAGE, page_size=DROP_PAGE)
        )
        if not members:
            return None
        with SegmentMemberItem.batch_write() as batch:
            for member in members:
                batch.delete(member)
        if len(members) < DROP_PAGE:
            return None
        budget.timed(started)
