"""The tenant's RFM cut points and VIP threshold, recomputed by a schedule as its data
shifts (functions/segment_jobs.py), and once by a tenant's first build.

``recompute`` pages through gsi1 ``P METRICS`` (never a Scan: 1 Query per 1 MB of
metrics), computes the quintile cut points of recency (whole days since the last order),
frequency (orders) and monetary value (net spend) over the customers with orders, and
the VIP threshold (top 20 %) over every customer's historical lifetime value
(crm/segments/rfm.py), and stores them on the SegmentCatalogueItem (1 GetItem + 1
UpdateItem conditional on its version, re-read and retried on a race). Then it
reconciles only the customers whose R, F, M or VIP changes under the new figures
(``maintain.reconcile``: 1 BatchGetItem + 1 TransactWriteItems each) and notes
``cuts_at`` (1 GetItem + 1 UpdateItem) once they all are. A customer's own changes
rescore them at once in between; the cut points only move the boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from crm import clock
from crm.context import TenantContext
from crm.errors import Conflict
from crm.storage import MetricsItem, SegmentCatalogueItem, condition_failed

PAGE = 500  # METRICS items per Query page
EVERY = timedelta(hours=23)  # a tenant's cut points are recomputed once a day
RETRY_EMPTY = timedelta(hours=1)  # a tenant without orders yet is looked at again hourly
COMPARED = ("r", "f", "m", "vip")
RESERVE_SECONDS = 60.0  # the schedule stops recomputing tenants with this much time left


@dataclass
class _Customer:
    customer_id: str
    agg: dict[str, Any]
    scores: dict[str, Any]


def due(catalogue: SegmentCatalogueItem | None, now: str) -> bool:
    """Whether the schedule recomputes a tenant now: never computed, computed without
    any order to cut (again after an hour), or computed a day ago. Without a catalogue
    there is nothing to cut: a tenant's first counted order creates it (its currency)."""
    if catalogue is None:
        return False
    if not catalogue.cuts_at:
        return True
    age = clock.parse(now) - clock.parse(catalogue.cuts_at)
    return age >= (RETRY_EMPTY if catalogue.cuts is None else EVERY)


def figures(customers: list[_Customer], now: str) -> tuple[dict[str, list[float]] | None, float | None]:
    """Pure: the cut points of the customers with orders (of ``rfm.measures``, what the
    scores compare) and the VIP threshold of all of them; (None, None) without orders."""
    from crm.segments import rfm

    measured = [(c, m) for c in customers if (m := rfm.measures(c.agg, now)) is not None]
    if not measured:
        return None, None
    cuts = {key: rfm.cut_points([float(m[key]) for _, m in measured]) for key in ("r", "f", "m")}
    # VIP: the top 20 % of all the tenant's customers (those without orders count, at 0)
    threshold = rfm.vip_threshold([float(rfm.ltv(c.agg, now)["historical"]) for c in customers])
    return cuts, threshold


def moved(customers: list[_Customer], cuts: dict[str, Any] | None, threshold: float | None, now: str) -> list[str]:
    """Pure: the customers whose R, F, M or VIP differs under the new figures from what
    their METRICS holds."""
    from crm.segments import rfm

    out = []
    for c in customers:
        fresh = rfm.score_all(c.agg, cuts, threshold, now)
        held = c.scores or {}
        if any(fresh.get(k) != held.get(k) for k in COMPARED):
            out.append(c.customer_id)
    return out


def read_all(ctx: TenantContext) -> list[_Customer]:
    """Every customer's aggregate and scores: Queries of gsi1 ``P METRICS``."""
    rows = MetricsItem.gsi1.query(
        ctx.key("METRICS"), page_size=PAGE, attributes_to_get=["pk", "sk", "kind", "customer_id", "agg", "scores"]
    )
    return [_Customer(r.customer_id, r.agg or {}, r.scores or {}) for r in rows if isinstance(r, MetricsItem)]


def recompute(
    ctx: TenantContext,
    now: str | None = None,
    time_left: Callable[[], float] | None = None,
    reserve: float | None = None,
) -> dict[str, Any]:
    """Recompute and store the tenant's cut points and VIP threshold, then reconcile the
    customers whose scores move; ``cuts_at`` is written last, once all of them are, so a
    run out of time (less than ``reserve`` seconds left, default ``RESERVE_SECONDS``) is due again and the next one
    rescores the rest (those already rescored no longer move). A customer the segments
    subscriber is reconciling at that moment (a transaction conflict) is left to it (it
    reads the new cut points) and the run counts as incomplete. Returns ``{"customers",
    "buyers", "cuts", "vip_threshold", "rescored", "busy", "complete"}``. A tenant without orders
    keeps the default cut points (only ``cuts_at`` is noted, on an existing catalogue)."""
    from crm.segments import maintain

    at = now or clock.now_iso()
    customers = read_all(ctx)
    cuts, threshold = figures(customers, at)
    if cuts is not None:
        _store(
            ctx,
            [
                SegmentCatalogueItem.cuts.set(cuts),
                SegmentCatalogueItem.vip_threshold.set(threshold)
                if threshold is not None
                else SegmentCatalogueItem.vip_threshold.remove(),
            ],
            cuts,
            threshold,
        )
    pending = moved(customers, cuts, threshold, at) if cuts is not None else []
    rescored = 0
    busy = 0
    for customer_id in pending:
        if time_left is not None and time_left() < (RESERVE_SECONDS if reserve is None else reserve):
            break
        try:
            maintain.reconcile(ctx, customer_id, now=at)
        except Conflict:  # the segments subscriber is reconciling it now (with these cut points)
            busy += 1  # the run is not complete: the next one rescores it if it still moves
            continue
        rescored += 1
    complete = rescored == len(pending)
    if complete:
        _store(ctx, [SegmentCatalogueItem.cuts_at.set(at)], None, None, create=False)
    return {
        "customers": len(customers),
        "buyers": sum(1 for c in customers if int(c.agg.get("count") or 0) > 0),
        "cuts": cuts,
        "vip_threshold": threshold,
        "rescored": rescored,
        "busy": busy,
        "complete": complete,
    }


def _store(
    ctx: TenantContext,
    actions: list[Any],
    cuts: dict[str, Any] | None,
    threshold: float | None,
    *,
    create: bool = True,
) -> None:
    """1 GetItem + 1 UpdateItem of the catalogue, conditional on its version (a
    concurrent segment edit: re-read and retried). Without a catalogue yet, one is
    created with the cut points (``create``), else nothing is written."""
    for _ in range(10):
        try:
            catalogue: SegmentCatalogueItem | None = SegmentCatalogueItem.get(
                ctx.prefix, "SEGMENTS", consistent_read=True
            )
        except SegmentCatalogueItem.DoesNotExist:
            catalogue = None
        try:
            if catalogue is None:
                if create:
                    SegmentCatalogueItem(
                        ctx.prefix,
                        "SEGMENTS",
                        segments={},
                        cuts=cuts,
                        vip_threshold=threshold,
                        updated_at=clock.now_iso(),
                    ).save()  # conditional on no catalogue yet (its version attribute)
                return
            catalogue.update(actions=[*actions, SegmentCatalogueItem.updated_at.set(clock.now_iso())])
            return
        except Exception as exc:
            if not condition_failed(exc):
                raise
    raise RuntimeError("the segment catalogue kept changing while storing the RFM cut points")


def run_all(
    now: str | None = None, *, force: bool = False, time_left: Callable[[], float] | None = None
) -> dict[str, int]:
    """The schedule: every active tenant (gsi1 ``TENANTS``, 1 Query per 1 MB), their
    catalogues (1 BatchGetItem per 100 tenants; a tenant without one has never had an
    order or a segment: nothing to cut), ``recompute`` for those ``due``, and for a tenant
    with segments 1 BatchGetItem of them to send stalled builds on
    (``build.resume_stalled``). With less than ``RESERVE_SECONDS`` left it stops: the next
    run goes on (the rest are still due)."""
    from crm.segments import build
    from crm.storage import TenantItem

    at = now or clock.now_iso()
    tenants = [
        TenantContext(t.pk.split("#")[1])
        for t in TenantItem.gsi1.query("TENANTS")
        if isinstance(t, TenantItem) and t.status == "active"
    ]
    catalogues = {
        c.pk: c
        for c in SegmentCatalogueItem.batch_get([(ctx.prefix, "SEGMENTS") for ctx in tenants])
        if isinstance(c, SegmentCatalogueItem)
    }
    seen = recomputed = resumed = 0
    for ctx in tenants:
        if time_left is not None and time_left() < RESERVE_SECONDS:
            break
        seen += 1
        catalogue = catalogues.get(ctx.prefix)
        if catalogue is None:
            continue
        if force or due(catalogue, at):
            recompute(ctx, at, time_left)
            recomputed += 1
        if catalogue.segments:
            resumed += build.resume_stalled(ctx, at, sorted(catalogue.segments))
    return {"tenants": seen, "recomputed": recomputed, **({"builds_resumed": resumed} if resumed else {})}
