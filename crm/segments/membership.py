"""One customer's ``METRICS`` write and everything that must change with it, in one
TransactWriteItems: the member items of the segments entered (put, not existing) and
left (delete, existing), each segment's ``member_count`` ADDed by the same amount
(conditional on the segment existing), the RFM grid's cells when the (r, f) cell moved,
the tenant's currency the first time it is known, and the timeline entries of
``segment.entered`` / ``segment.exited`` (crm/timeline.py, derived from the item's
images as the stream will derive the events). So a member item exists exactly when the
customer's ``memberships`` names the segment, and a count is exact.

More membership changes than one transaction holds (100 items) are written in several,
``PER_TX`` changes each, each conditional on the version the previous one wrote.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pynamodb.attributes import NumberAttribute

from crm import timeline
from crm.context import TenantContext
from crm.segments.plan import changes
from crm.storage import MetricsItem, RfmGridItem, SegmentCatalogueItem, SegmentItem, SegmentMemberItem
from crm.tx import Tx

METRICS = "METRICS"
CATALOGUE = "SEGMENTS"
RFM = "RFM"
SEGMENT = "SEGMENT"
# membership changes per transaction: 3 items each (member, count, timeline entry), with
# METRICS, the profile's check, the RFM grid and the catalogue: 94 of the 100 allowed
PER_TX = 30


def segment_pk(ctx: TenantContext, segment_id: str) -> str:
    return ctx.key("SEG", segment_id)


def metrics_index(ctx: TenantContext) -> str:
    """gsi1 of every customer's ``METRICS`` in the tenant (builds, previews, cut points)."""
    return ctx.key("METRICS")


def member_sk(customer_id: str) -> str:
    return f"M#{customer_id}"


def member_parts(
    tx: Tx,
    ctx: TenantContext,
    customer_id: str,
    segment_id: str,
    was: dict[str, Any] | None,
    now: dict[str, Any] | None,
    counted: bool,
) -> int:
    """The member item's put or delete and the count's ADD; returns the count's change.
    ``counted`` False: the segment is gone (deleted), its member item goes uncounted."""
    pk, sk = segment_pk(ctx, segment_id), member_sk(customer_id)
    if now is not None:
        if was is not None and was.get("v") == now.get("v"):
            return 0  # a new name only: the member item holds no name
        member = SegmentMemberItem(
            pk, sk, segment_id=segment_id, customer_id=customer_id, since=now["since"], rule_version=now.get("v", 1)
        )
        exists = SegmentMemberItem.pk.exists() if was is not None else SegmentMemberItem.pk.does_not_exist()
        tx.save(member, exists, role="member")
    else:
        tx.delete(SegmentMemberItem(pk, sk), SegmentMemberItem.pk.exists() if counted else None, role="member")
    delta = int(now is not None) - int(was is not None)
    if delta and counted:
        count(tx, ctx, segment_id, delta)
    return delta


def count(tx: Tx, ctx: TenantContext, segment_id: str, delta: int) -> None:
    """ADD ``delta`` to the segment's ``member_count``, if the segment exists (its version,
    which If-Match checks, is left alone)."""
    tx.update_key(
        SegmentItem,
        segment_pk(ctx, segment_id),
        SEGMENT,
        [SegmentItem.member_count.add(delta)],
        SegmentItem.pk.exists(),
        role="count",
    )


def grid_part(tx: Tx, ctx: TenantContext, old_cell: str | None, new_cell: str | None) -> None:
    """Move the customer from one RFM grid cell to another (ADD -1, ADD +1)."""
    if old_cell == new_cell:
        return
    actions: list[Any] = [RfmGridItem.kind.set(RfmGridItem)]
    for name, delta in ((old_cell, -1), (new_cell, 1)):
        if name:
            actions.append(NumberAttribute(attr_name=name).add(delta))
    tx.update_key(RfmGridItem, ctx.prefix, RFM, actions, role="grid")


def currency_part(tx: Tx, ctx: TenantContext, catalogue: SegmentCatalogueItem | None, currency: str) -> None:
    """Set the tenant's currency once (conditional on it being unset); creates the
    catalogue if the tenant has none yet. The catalogue's version goes up, so a
    concurrent save of the catalogue read before cannot drop it."""
    if catalogue is None:
        tx.save(SegmentCatalogueItem(ctx.prefix, CATALOGUE, currency=currency), role="catalogue")
    else:
        tx.update(
            catalogue,
            [SegmentCatalogueItem.currency.set(currency)],
            SegmentCatalogueItem.currency.does_not_exist(),
            role="catalogue",
            add_version_condition=False,
        )


def write(
    ctx: TenantContext,
    item: MetricsItem,
    values: dict[str, Any],
    *,
    whose: str | None,
    cells: tuple[str | None, str | None] = (None, None),
    currency: tuple[SegmentCatalogueItem | None, str] | None = None,
    counted: Collection[str] = (),
    quiet: Collection[str] = (),
    remove: bool = False,
) -> int:
    """Write ``item`` with ``values`` (its attributes after the change, ``memberships``
    the wanted ones), or delete it (``remove``), with every membership change: 1
    TransactWriteItems per ``PER_TX`` changes. Timeline entries go on ``whose``
    timeline (None: none, e.g. an erased customer). Segments in ``quiet`` change without
    events. Raises crm.tx.Cancelled on a lost race (the caller re-reads). Returns the
    number of transactions."""
    target = {} if remove else values.get("memberships", {})
    current = dict(item.memberships or {})
    todo = changes(current, target)
    chunks = [todo[i : i + PER_TX] for i in range(0, len(todo), PER_TX)] or [[]]
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        before = timeline.image(item, "metrics") if item.version is not None else None
        tx = Tx()
        if n == 0:
            for name, value in values.items():
                if name != "memberships":
                    setattr(item, name, value)
            grid_part(tx, ctx, *cells)
            if currency is not None:
                currency_part(tx, ctx, *currency)
        for sid, _, now in chunk:
            if now is None:
                current.pop(sid, None)
            else:
                current[sid] = now
        item.memberships = dict(current)
        item.quiet = sorted(sid for sid, _, _ in chunk if sid in quiet) or None  # type: ignore[misc]
        after = None
        if remove and last:
            tx.delete(item, role="metrics")  # conditional on the version read
        else:
            tx.save(item, role="metrics")
            after = timeline.image(item, "metrics")
        for sid, was, now in chunk:
            member_parts(tx, ctx, item.customer_id, sid, was, now, sid in counted)
        timeline.add(tx, ctx, whose, timeline.of_change(ctx, whose, before, after))
        tx.run()
    return len(chunks)
