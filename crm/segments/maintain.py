"""Each customer's metrics and segment memberships, kept right after every change and at
the instant a time condition flips. Each docstring names its DynamoDB request count.

A change (an order's state, the profile, the points book) is reconciled per customer:
1 BatchGetItem reads the profile, the points book, ``METRICS`` and the tenant's segment
catalogue (every rule, the currency, the RFM cut points and VIP threshold); the new
metrics, scores, facts and memberships are computed in memory (crm/segments/plan.py,
O(segments of the tenant)); if anything changed, 1 TransactWriteItems writes ``METRICS``
(conditional on its version) with the memberships entered and left, the counts, the RFM
grid and the timeline entries (crm/segments/membership.py). A lost race re-reads and
redoes (crm/retry.py). A replayed, repeated or late event changes nothing: each order's
contribution is replaced only by a newer state (crm/segments/aggregate.py ``newer``).

``METRICS`` is listed on gsi1 ``T#<tenant>#METRICS`` / ``<customer>`` (builds, previews,
the cut points) and, while a time condition or a score is due to change, on gsi2
``SEGMENT_DUE#<shard>`` / ``<due at>#<tenant>#<customer>``; the schedule
(functions/segments.py) reconciles the customers due, so a condition such as "no order
in 90 days" flips at its instant, with no rescan of the tenant.

Erased and merged customers leave every segment: their ``METRICS`` is deleted with their
member items and the counts (``segment.exited`` is derived from the deletion; no
timeline entry, the customer's timeline is gone or someone else's). A merge's survivor
is recomputed from its orders, which the merge moved to it (``on_merged``); a late
event of a merged customer is applied to its survivor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from crm import clock, retry, timeline
from crm.context import TenantContext
from crm.customers import records
from crm.errors import Conflict, NotFound
from crm.segments import plan
from crm.segments.membership import CATALOGUE, METRICS, count, member_sk, metrics_index, segment_pk, write
from crm.segments.plan import Catalogue, cell
from crm.storage import (
    CustomerItem,
    Item,
    LoyaltyItem,
    MetricsItem,
    OrderItem,
    RecentOrdersItem,
    SegmentCatalogueItem,
    SegmentMemberItem,
)
from crm.tx import Cancelled, Tx

LOYALTY = "LOYALTY"
RECENT = "ORDERS"  # crm/orders/service.py: the recent orders item
ORDER_PREFIX = "A#ORD#"
DUE_SHARDS = 4
DUE_PREFIX = "SEGMENT_DUE#"
ATTEMPTS = 40
MAX_HOPS = 3  # merged -> survivor links are one hop long (crm/merge.py); more is a fallback
BUILD_TX = 40  # customers per build transaction: METRICS + member each, + 1 count ADD


def catalogue_of(item: SegmentCatalogueItem | None) -> Catalogue:
    if item is None:
        return Catalogue()
    return Catalogue(
        segments=dict(item.segments or {}),
        currency=item.currency,
        cuts=item.cuts,
        vip_threshold=item.vip_threshold,
    )


def _due_shard(ctx: TenantContext, customer_id: str) -> int:
    return int(hashlib.sha256(f"{ctx.tenant_id}#{customer_id}".encode()).hexdigest()[:4], 16) % DUE_SHARDS


def _keys(ctx: TenantContext, customer_id: str, due_at: str | None) -> dict[str, Any]:
    """The index keys of a customer's ``METRICS``: always gsi1, gsi2 while something is due."""
    due: dict[str, str | None] = {"gsi2pk": None, "gsi2sk": None}
    if due_at:
        due = {
            "gsi2pk": f"{DUE_PREFIX}{_due_shard(ctx, customer_id)}",
            "gsi2sk": f"{due_at}#{ctx.tenant_id}#{customer_id}",
        }
    return {"gsi1pk": metrics_index(ctx), "gsi1sk": customer_id, **due}


# --- reading ---------------------------------------------------------------------


class _Read:
    """What 1 BatchGetItem found for one customer."""

    def __init__(self, ctx: TenantContext, customer_id: str, found: dict[tuple[str, str], Any] | None = None) -> None:
        if found is None:
            found = {(i.pk, i.sk): i for i in Item.batch_get(_keys_of(ctx, customer_id), consistent_read=True)}
        pk = records.profile_pk(ctx, customer_id)
        profile, book = found.get((pk, records.PROFILE)), found.get((pk, LOYALTY))
        metrics, catalogue = found.get((pk, METRICS)), found.get((ctx.prefix, CATALOGUE))
        recent = found.get((pk, RECENT))
        # the 10 latest orders in brief: there only once the customer has had an order
        self.has_orders = isinstance(recent, RecentOrdersItem) and bool(recent.recent)
        self.profile = profile if isinstance(profile, CustomerItem) else None
        self.book = book if isinstance(book, LoyaltyItem) else None
        self.metrics = metrics if isinstance(metrics, MetricsItem) else None
        self.catalogue = catalogue if isinstance(catalogue, SegmentCatalogueItem) else None


def _keys_of(ctx: TenantContext, customer_id: str) -> list[tuple[str, str]]:
    pk = records.profile_pk(ctx, customer_id)
    return [(pk, records.PROFILE), (pk, LOYALTY), (pk, METRICS), (pk, RECENT), (ctx.prefix, CATALOGUE)]


def read_many(customers: list[tuple[TenantContext, str]]) -> dict[tuple[str, str], _Read]:
    """What ``reconcile`` reads first, for a batch of customers at once: 1 BatchGetItem per
    20 customers (5 keys each) instead of 1 each. (tenant, customer) -> its read."""
    keys = sorted({k for ctx, cid in customers for k in _keys_of(ctx, cid)})
    found = {(i.pk, i.sk): i for i in Item.batch_get(keys, consistent_read=True)} if keys else {}
    return {(ctx.tenant_id, cid): _Read(ctx, cid, found) for ctx, cid in customers}


def _order_state(row: OrderItem) -> dict[str, Any]:
    """An order as its events carry it (crm/events.py), from the item."""
    return {
        "order_id": row.order_id,
        "customer_id": row.customer_id,
        "status": row.status,
        "data": row.data or {},
        "updated_at": row.updated_at,
        "version": row.version,
    }


def orders_of(ctx: TenantContext, customer_id: str) -> list[dict[str, Any]]:
    """Every order of the customer's partition: 1 Query per 1 MB."""
    pk = records.profile_pk(ctx, customer_id)
    return [
        _order_state(r)
        for r in OrderItem.query(pk, OrderItem.sk.startswith(ORDER_PREFIX), consistent_read=True)
        if isinstance(r, OrderItem)
    ]


# --- one customer --------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A value as a JSON attribute reads back (tuples as lists), so an unchanged metric
    compares equal to the stored one and nothing is written."""
    return json.loads(json.dumps(value)) if isinstance(value, (dict, list, tuple)) else value


def _removal(ctx: TenantContext, read: _Read, customer_id: str) -> dict[str, Any]:
    """An erased, merged or missing customer leaves every segment: 1 TransactWriteItems
    per 30 memberships deleting ``METRICS`` with them. Without a ``METRICS`` (an erasure
    deletes it with the partition), member items it left behind are found by key in
    the catalogue's segments (+1 BatchGetItem, erased customers only) and removed with
    their counts."""
    catalogue = catalogue_of(read.catalogue)
    item = read.metrics
    if item is not None:
        exited = sorted(item.memberships or {})
        write(
            ctx,
            item,
            {},
            whose=None,
            cells=(cell(item.scores), None),
            counted=set(catalogue.segments),
            remove=True,
        )
        return {"entered": [], "exited": exited, "written": True}
    if read.profile is None or read.profile.status != "erased":
        return {"entered": [], "exited": [], "written": False}
    keys = [(segment_pk(ctx, sid), member_sk(customer_id)) for sid in sorted(catalogue.segments)]
    left = [m for m in SegmentMemberItem.batch_get(keys, consistent_read=True)] if keys else []
    if not left:
        return {"entered": [], "exited": [], "written": False}
    for i in range(0, len(left), 45):
        tx = Tx()
        for member in left[i : i + 45]:
            tx.delete(member, SegmentMemberItem.pk.exists(), role="member")
            count(tx, ctx, member.segment_id, -1)
        tx.run()
    return {"entered": [], "exited": sorted(m.segment_id for m in left), "written": True}


def _measure(
    ctx: TenantContext,
    read: _Read,
    customer_id: str,
    orders: Iterable[dict[str, Any]],
    now: str,
    rebuild: bool,
    backfill: bool = False,
) -> dict[str, Any]:
    """Reconcile an active customer as read: the writes if anything changed. ``backfill``:
    a new ``METRICS`` records memberships that already held (quiet: no events)."""
    assert read.profile is not None
    item = read.metrics
    fresh = item is None
    orders = list(orders)
    if fresh and not orders and not read.has_orders and not (rebuild or backfill):
        # Nothing measured yet, and no order at all (a new customer, a profile or points
        # change): nothing to read back. Until the tenant's first build has backfilled
        # every customer, one without orders waits for that backfill, so a bulk import of
        # customers costs the segments subscriber 1 BatchGetItem each, not 2 writes more.
        if read.catalogue is None or not read.catalogue.backfilled_at:
            return {"entered": [], "exited": [], "written": False, "item": None}
    elif item is None or item.large or rebuild:
        orders = orders_of(ctx, customer_id) + orders  # +1 Query (per MB)
    if item is None:
        item = MetricsItem(records.profile_pk(ctx, customer_id), METRICS, customer_id=customer_id)
    stored: dict[str, Any] = dict(item.orders or {})
    catalogue = catalogue_of(read.catalogue)
    profile = timeline.image(read.profile, "customer")
    book = read.book.book if read.book is not None else None
    m = plan.measure(profile, book, stored, orders, catalogue, dict(item.memberships or {}), now)
    values: dict[str, Any] = {
        "orders": m.orders,
        "large": m.large,
        "agg": m.agg,
        "scores": m.scores,
        "facts": m.facts,
        "memberships": m.memberships,
        "due_at": m.due_at,
        **_keys(ctx, customer_id, m.due_at),
    }
    values = {k: _plain(v) for k, v in values.items()}
    if not fresh and all(getattr(item, k) == v for k, v in values.items()):
        return {"entered": [], "exited": [], "written": False, "item": item}
    values["updated_at"] = now
    before = dict(item.memberships or {})
    currency = None
    if m.currency and not catalogue.currency:
        currency = (read.catalogue, m.currency)
    gone = set(before) - set(catalogue.segments)  # deleted segments: dropped quietly
    held = set(m.memberships) if fresh and backfill else set()  # a backfill announces nothing
    write(
        ctx,
        item,
        values,
        whose=customer_id,
        cells=(None if fresh else cell(item.scores), cell(m.scores)),
        currency=currency,
        counted=set(catalogue.segments),
        quiet=gone | held,
    )
    return {
        "entered": sorted(set(m.memberships) - set(before)),
        "exited": sorted(set(before) - set(m.memberships) - gone),
        "written": True,
        "item": item,
    }


def _reconcile(
    ctx: TenantContext,
    customer_id: str,
    orders: Iterable[dict[str, Any]],
    now: str,
    rebuild: bool = False,
    follow: bool = True,
    backfill: bool = False,
    first: _Read | None = None,
) -> dict[str, Any]:
    """``reconcile``; ``rebuild``: from the customer's orders read back; ``follow``: a
    merged customer's change goes on to its survivor; ``first``: the first read, made."""
    orders = list(orders)
    for _ in retry.backoff(ATTEMPTS):
        try:
            target, result = customer_id, None
            for _hop in range(MAX_HOPS + 1):
                read, first = first or _Read(ctx, target), None
                survivor = records.survivor(read.profile)
                if read.profile is None or read.profile.status != "active":
                    # erased, merged (or merging), or no such customer: it leaves everything
                    removed = _removal(ctx, read, target)
                    result = result or removed
                    if survivor is None or not follow:
                        return result
                    target, rebuild = survivor, False  # a late event: the survivor's now
                    continue
                measured = _measure(ctx, read, target, orders, now, rebuild, backfill)
                if result is not None:  # the merged one's removal, then its survivor's change
                    measured = {**measured, "exited": result["exited"] + measured["exited"]}
                return measured
            raise Conflict(f"customer {customer_id}: merged into one another too many times", code="merge_loop")
        except Cancelled:  # another writer moved METRICS, a count or the profile on: re-read
            continue
    raise Conflict(f"customer {customer_id}'s segments changed concurrently; retry", code="transaction_conflict")


def reconcile(
    ctx: TenantContext,
    customer_id: str,
    orders: Iterable[dict[str, Any]] = (),
    now: str | None = None,
    read: _Read | None = None,
) -> dict[str, Any]:
    """One customer after a change, with the order states the change brought (their
    newer states replace the kept contributions). 1 BatchGetItem + 1 TransactWriteItems
    when something changed (none otherwise; +1 per 30 membership changes beyond the
    first 30). A customer with no ``METRICS`` yet: +1 Query of its orders (per MB); so
    does a ``large`` one (more than aggregate.MAX_ORDERS orders) on every change. A
    merged customer: its removal, then its survivor's reconcile (+1 BatchGetItem and
    TransactWriteItems). ``read``: its first read, made for a batch (``read_many``); a
    retry reads again. Returns ``{"entered", "exited", "written"}`` (segment ids)."""
    result = _reconcile(ctx, customer_id, orders, now or clock.now_iso(), first=read)
    result.pop("item", None)
    return result


def ensure(ctx: TenantContext, customer_id: str, now: str | None = None) -> MetricsItem | None:
    """A customer's ``METRICS``, reconciled (created if missing: a backfill, whose
    memberships held already, so no segment.entered); None for an erased, merged or
    missing customer. 1 BatchGetItem (+1 Query and 1 TransactWriteItems to create it)."""
    item = _reconcile(ctx, customer_id, (), now or clock.now_iso(), follow=False, backfill=True).get("item")
    return item if isinstance(item, MetricsItem) else None


def on_merged(ctx: TenantContext, other_id: str, survivor_id: str, now: str | None = None) -> dict[str, Any]:
    """``customer.merged``: the merged customer leaves every segment, and the survivor is
    recomputed from its orders (the merge moved the other's there). 1 BatchGetItem (+1
    TransactWriteItems if it had ``METRICS``), then the survivor's reconcile with 1
    Query of its orders."""
    at = now or clock.now_iso()
    gone = _reconcile(ctx, other_id, (), at, follow=False)
    kept = _reconcile(ctx, survivor_id, (), at, rebuild=True)
    kept.pop("item", None)
    return {**kept, "exited": sorted(set(gone["exited"]) | set(kept["exited"]))}


def due(shard: int, now: str, limit: int) -> Iterator[tuple[str, str]]:
    """(tenant, customer) whose next flip time has passed by ``now``: Queries on gsi2
    ``SEGMENT_DUE#<shard>``, ``limit`` rows (1 Query per 100)."""
    for row in MetricsItem.gsi2.query(
        f"{DUE_PREFIX}{shard}", MetricsItem.gsi2sk <= f"{now}#~", limit=limit, page_size=min(limit, 100)
    ):
        _, tenant, customer = row.gsi2sk.rsplit("#", 2)
        yield tenant, customer


# --- a segment's build (crm/segments/build.py) ----------------------------------------


def _member_change(
    item: MetricsItem, segment_id: str, segment: dict[str, Any], desired: bool, now: str
) -> dict[str, Any] | None:
    """The memberships ``item`` should hold for ``desired`` membership of the segment
    under its current rule version, or None when they are right already."""
    current = dict(item.memberships or {})
    was = current.get(segment_id)
    if desired:
        want = {"since": was["since"] if was else now, "v": segment.get("v", 1), "name": segment.get("name")}
        if was == want:
            return None
        current[segment_id] = want
    elif was is None:
        return None
    else:
        current.pop(segment_id)
    return current


def commit_many(
    ctx: TenantContext,
    rows: list[tuple[MetricsItem, bool]],
    catalogue: SegmentCatalogueItem | Catalogue,
    segment_id: str,
    now: str,
    quiet: bool = True,
) -> int:
    """A build's batched write: each customer's ``METRICS`` (conditional on the version
    read) with its membership of ``segment_id`` as ``desired``, its member item, and one
    ADD of the segment's count per transaction; ``BUILD_TX`` customers per
    TransactWriteItems. The rule's next flip joins each customer's due time. ``quiet``:
    no segment.entered/exited for these changes (False: the events are derived from the
    stream, but no timeline entries are written). On a lost race the customers of that
    transaction are read again (1 BatchGetItem), re-evaluated and retried. Returns
    members added - removed. Raises NotFound if the segment was deleted meanwhile."""
    cat = catalogue if isinstance(catalogue, Catalogue) else catalogue_of(catalogue)
    segment = cat.segments.get(segment_id)
    if segment is None:
        raise NotFound(f"segment {segment_id} not found", code="segment_not_found")
    total = 0
    for i in range(0, len(rows), BUILD_TX):
        total += _commit_chunk(ctx, list(rows[i : i + BUILD_TX]), segment_id, segment, now, quiet)
    return total


def _commit_chunk(
    ctx: TenantContext,
    rows: list[tuple[MetricsItem, bool]],
    segment_id: str,
    segment: dict[str, Any],
    now: str,
    quiet: bool,
) -> int:
    from crm.segments import rules

    for attempt in retry.backoff(ATTEMPTS):
        if attempt:  # re-read consistently and re-evaluate what the race changed
            keys = [(item.pk, item.sk) for item, _ in rows]
            fresh = {i.pk: i for i in MetricsItem.batch_get(keys, consistent_read=True)}
            rows = [
                (fresh[item.pk], rules.evaluate(segment["rule"], fresh[item.pk].facts or {}, now))
                for item, _ in rows
                if item.pk in fresh
            ]
        tx, delta = Tx(), 0
        for item, desired in rows:
            wanted = _member_change(item, segment_id, segment, desired, now)
            flip = plan.index_time(rules.next_flip(segment["rule"], item.facts or {}, now))
            due_at = min([t for t in (item.due_at, flip) if t], default=None)
            if wanted is None and due_at == item.due_at:
                continue
            was = (item.memberships or {}).get(segment_id)
            memberships = wanted if wanted is not None else dict(item.memberships or {})
            after = memberships.get(segment_id)
            item.memberships, item.due_at, item.updated_at = memberships, due_at, now
            item.quiet = [segment_id] if quiet and wanted is not None else None  # type: ignore[list-item]
            for name, value in _keys(ctx, item.customer_id, due_at).items():
                setattr(item, name, value)
            tx.save(item, role="metrics")
            if wanted is not None:
                pk, sk = segment_pk(ctx, segment_id), member_sk(item.customer_id)
                if after is not None:
                    exists = SegmentMemberItem.pk.exists() if was else SegmentMemberItem.pk.does_not_exist()
                    member = SegmentMemberItem(
                        pk,
                        sk,
                        segment_id=segment_id,
                        customer_id=item.customer_id,
                        since=after["since"],
                        rule_version=after.get("v", 1),
                    )
                    tx.save(member, exists, role="member")
                else:
                    tx.delete(SegmentMemberItem(pk, sk), SegmentMemberItem.pk.exists(), role="member")
                delta += int(after is not None) - int(was is not None)
        if not len(tx):
            return 0
        if delta:
            count(tx, ctx, segment_id, delta)
        try:
            tx.run()
            return delta
        except Cancelled as exc:
            if exc.failed_role("count"):
                raise NotFound(f"segment {segment_id} not found", code="segment_not_found") from None
            continue
    raise Conflict("the customers changed concurrently while building; retry", code="transaction_conflict")
