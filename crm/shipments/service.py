"""Shipment writes and reads. Each docstring names its DynamoDB request count
(docs/performance.md). crm never calls a provider: the provider's tracker arrives here
as a :class:`Tracker` built by the connectors layer (connectors/shipping.py).

Layout (``P = T#<tenant>#``):
- the shipment: ``P C#<customer>`` / ``A#SHP#<shipment id>``, beside the order;
- its pointer ``P SHP#<shipment id>`` / ``S`` (customer, order): the id is derived from the
  tracking number, so the pointer is the tracking number's guard and its lookup;
- ``P C#<customer>`` / ``PARCELS``: the 5 latest shipments in brief, read by the 360 Query;
- the order's ``data.shipments`` (its parcels in brief) and its ``shipped_at`` /
  ``delivered_at``, written in the same transaction when they change.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from crm import clock, retry, timeline
from crm.context import TenantContext
from crm.customers import records
from crm.errors import Conflict, Invalid, NotFound
from crm.shipments import keys, status
from crm.shipments.schemas import Checkpoint, Shipment, ShipmentBrief
from crm.storage import (
    CustomerItem,
    Item,
    OrderItem,
    OrderPointerItem,
    RecentShipmentsItem,
    ShipmentItem,
    ShipmentPointerItem,
)
from crm.tx import Cancelled, Tx

RECENT_KEPT = 5
SEEN_EVENTS_KEPT = 20
ORDER_PARCELS_KEPT = 20  # an order's parcels in brief (more are still tracked, not listed there)
STOP_POLLING_AFTER = timedelta(days=90)  # registered this long ago and still not arrived: lost, left alone


def poll_interval() -> timedelta:
    """How long a non-terminal shipment waits before the schedule asks its provider again
    (a webhook usually comes first; the poll is what survives a lost one)."""
    return timedelta(minutes=float(os.environ.get("RAPPORT_SHIPMENT_POLL_MINUTES", "360")))


@dataclass
class Tracker:
    """What a provider says about a parcel, in Rapport's statuses (plain values)."""

    tracking_number: str
    carrier: str
    status: str
    updated_at: str
    tracker_id: str | None = None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    status_detail: str | None = None
    est_delivery_at: str | None = None
    url: str | None = None
    order_id: str | None = None  # Rapport's order id, when the provider kept it as reference
    order_ref: str | None = None  # else the shop's own order id the provider kept (``find_order`` resolves it)
    order_number: str | None = None  # else the order number the buyer knows (``#1001``), resolved the same way
    event_id: str | None = None
    connection_id: str | None = None
    connector: str | None = None


@dataclass
class Outcome:
    status: str  # created | updated | unchanged | rejected
    shipment: Shipment | None = None
    reason: str | None = None


# --- views -------------------------------------------------------------------------


def to_shipment(item: ShipmentItem) -> Shipment:
    provider = item.provider or {}
    return Shipment(
        id=item.shipment_id,
        order_id=item.order_id,
        customer_id=item.customer_id,
        carrier=item.carrier,
        tracking_number=item.tracking_number,
        status=item.status,  # type: ignore[arg-type]
        status_at=item.status_at,
        shipped_at=item.shipped_at,
        delivered_at=item.delivered_at,
        est_delivery_at=provider.get("est_delivery_at"),
        tracking_url=provider.get("url"),
        provider=provider.get("connector"),
        connection_id=provider.get("connection_id"),
        checkpoints=[Checkpoint(**{k: v for k, v in cp.items() if k != "key"}) for cp in item.checkpoints or []],
        source=item.source,
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


def brief(item: ShipmentItem) -> dict[str, Any]:
    cps = item.checkpoints or []
    last = {k: v for k, v in cps[-1].items() if k != "key"} if cps else None
    return ShipmentBrief(
        id=item.shipment_id,
        order_id=item.order_id,
        carrier=item.carrier,
        tracking_number=item.tracking_number,
        status=item.status,  # type: ignore[arg-type]
        status_at=item.status_at,
        shipped_at=item.shipped_at,
        delivered_at=item.delivered_at,
        last=Checkpoint(**last) if last else None,
        updated_at=item.updated_at,
    ).model_dump(exclude_none=True)


def _with(recent: list[dict[str, Any]], item: ShipmentItem, kept: int) -> list[dict[str, Any]]:
    """The newest ``kept`` briefs by last change, with ``item``'s in place."""
    by_id = {b["id"]: b for b in recent}
    by_id[item.shipment_id] = brief(item)
    return sorted(by_id.values(), key=lambda b: (b.get("updated_at") or "", b["id"]), reverse=True)[:kept]


# --- reads -------------------------------------------------------------------------


def _pointer(ctx: TenantContext, sid: str) -> ShipmentPointerItem | None:
    try:
        return ShipmentPointerItem.get(keys.pointer_pk(ctx, sid), keys.POINTER_SK, consistent_read=True)
    except ShipmentPointerItem.DoesNotExist:
        return None


def _load(ctx: TenantContext, customer_id: str, sid: str, order_id: str) -> dict[str, Any]:
    """1 BatchGetItem: the shipment, its order, the customer's PARCELS and profile (one
    partition). A merged customer's items are its survivor's (+1 BatchGetItem)."""
    for _ in range(3):
        pk = records.profile_pk(ctx, customer_id)
        names = {
            keys.sk(sid): "shipment",
            "A#ORD#" + order_id: "order",
            keys.RECENT: "recent",
            records.PROFILE: "profile",
        }
        found: dict[str, Any] = {names[i.sk]: i for i in Item.batch_get([(pk, s) for s in names], consistent_read=True)}
        profile = found.get("profile")
        survivor = records.survivor(profile) if profile is not None else None
        if survivor and "shipment" not in found and "order" not in found:
            customer_id = survivor
            continue
        found["customer_id"] = customer_id
        found["pk"] = pk
        return found
    return {"customer_id": customer_id, "pk": records.profile_pk(ctx, customer_id)}


def get(ctx: TenantContext, shipment_id: str) -> Shipment:
    """1 GetItem (pointer) + 1 BatchGetItem (the shipment with its partition's neighbours)."""
    if not keys.SHIPMENT_ID.match(shipment_id):
        raise NotFound(f"shipment {shipment_id} not found")
    pointer = _pointer(ctx, shipment_id)
    if pointer is None:
        raise NotFound(f"shipment {shipment_id} not found")
    got = _load(ctx, pointer.customer_id, shipment_id, pointer.order_id)
    if not isinstance(got.get("shipment"), ShipmentItem):
        raise NotFound(f"shipment {shipment_id} not found")
    return to_shipment(got["shipment"])


def by_tracking_number(ctx: TenantContext, tracking_number: str) -> list[Shipment]:
    """Where is my order: the shipment of a tracking number (0 or 1), 2 requests."""
    try:
        return [get(ctx, keys.shipment_id(tracking_number))]
    except NotFound:
        return []


def for_order(ctx: TenantContext, order_id: str) -> list[Shipment]:
    """An order's shipments, oldest first: 1 GetItem (the order's pointer) + 1 Query of the
    customer's shipments filtered on the order (+1 GetItem to answer 404)."""
    from crm import ids

    if not ids.ORDER_ID.match(order_id):
        raise NotFound(f"order {order_id} not found")
    try:
        cid = OrderPointerItem.get(ctx.key("O", order_id), "O", consistent_read=True).customer_id
    except OrderPointerItem.DoesNotExist:
        raise NotFound(f"order {order_id} not found") from None
    pk = records.profile_pk(ctx, cid)
    rows = list(
        ShipmentItem.query(
            pk,
            ShipmentItem.sk.startswith(keys.PREFIX),
            filter_condition=ShipmentItem.order_id == order_id,
            consistent_read=True,
        )
    )
    if not rows:
        try:
            OrderItem.get(pk, "A#ORD#" + order_id, consistent_read=True)
        except OrderItem.DoesNotExist:
            raise NotFound(f"order {order_id} not found") from None
    return sorted((to_shipment(r) for r in rows), key=lambda s: (s.created_at, s.id))


# --- writes ------------------------------------------------------------------------


def _due(item: ShipmentItem, now: str) -> None:
    """List a non-terminal shipment on the sparse re-poll index; drop a terminal one (or
    one registered more than STOP_POLLING_AFTER ago: a parcel that is lost)."""
    stale = clock.parse(item.created_at) < clock.parse(now) - STOP_POLLING_AFTER
    if item.status in status.TERMINAL or stale:
        item.due_at = item.gsi2pk = item.gsi2sk = None
        return
    item.due_at = clock.iso(clock.parse(now) + poll_interval())
    tenant = item.pk.split("#", 2)[1]
    item.gsi2pk, item.gsi2sk = keys.due_pk(), f"{item.due_at}#{tenant}#{item.shipment_id}"


def _apply_tracker(item: ShipmentItem, tracker: Tracker | None, now: str) -> bool:
    """Fold what the provider says into the item; True when anything changed. An older
    record still adds its checkpoints (they are facts), but never replaces the newer
    record's tracker-level fields."""
    before = (
        item.checkpoints,
        item.status,
        item.status_at,
        item.provider,
        item.shipped_at,
        item.delivered_at,
        item.carrier,
    )
    if tracker is not None:
        if item.carrier == "unknown" and tracker.carrier:
            item.carrier = tracker.carrier  # an imported parcel's carrier, as the provider detected it
        incoming = [dict(cp) for cp in tracker.checkpoints]
        item.checkpoints = status.merge_checkpoints(list(item.checkpoints or []), incoming)
        newest = item.source_updated_at is None or tracker.updated_at >= item.source_updated_at
        provider = dict(item.provider or {})
        if tracker.connection_id and (newest or not provider.get("connection_id")):
            provider.update(connection_id=tracker.connection_id, connector=tracker.connector)
        if tracker.tracker_id and (newest or not provider.get("tracker_id")):
            provider["tracker_id"] = tracker.tracker_id
        if newest:
            for key in ("url", "status_detail", "est_delivery_at"):
                value = getattr(tracker, key)
                if value:
                    provider[key] = value
            item.source_updated_at = tracker.updated_at
            fallback, fallback_at = tracker.status, tracker.updated_at
        else:
            fallback, fallback_at = item.status, item.status_at
        item.provider = provider or None
        item.status, item.status_at = status.current(item.checkpoints, fallback, fallback_at)
        if tracker.event_id:
            seen: list[Any] = [e for e in (item.seen_events or []) if e != tracker.event_id]
            item.seen_events = (seen + [tracker.event_id])[-SEEN_EVENTS_KEPT:]
    item.shipped_at = status.earliest(item.shipped_at, status.shipped_at(item.checkpoints or []))
    item.delivered_at = item.delivered_at or status.delivered_at(item.checkpoints or [])
    if item.delivered_at and not item.shipped_at:
        item.shipped_at = item.delivered_at
    return before != (
        item.checkpoints,
        item.status,
        item.status_at,
        item.provider,
        item.shipped_at,
        item.delivered_at,
        item.carrier,
    )


def _order_change(order: OrderItem, item: ShipmentItem) -> bool:
    """The order's parcels in brief and its shipped/delivered stamps; True when changed."""
    data = dict(order.data)
    parcels = {p["id"]: p for p in data.get("shipments") or []}
    parcels[item.shipment_id] = {
        k: v
        for k, v in brief(item).items()
        if k in ("id", "carrier", "tracking_number", "status", "shipped_at", "delivered_at")
    }
    listed = sorted(parcels.values(), key=lambda p: p["id"])[:ORDER_PARCELS_KEPT]
    shipped, delivered = status.order_stamps(listed, data.get("shipped_at"), data.get("delivered_at"))
    new = {**data, "shipments": listed}
    if shipped:
        new["shipped_at"] = shipped
    if delivered:
        new["delivered_at"] = delivered
    if new == order.data:
        return False
    order.data = new
    return True


MAX_STAGED = 7  # what _stage adds at most: pointer, shipment, order, PARCELS, a check, 2 timeline entries


def _stage(
    tx: Tx | None,
    ctx: TenantContext,
    got: dict[str, Any],
    item: ShipmentItem,
    before: dict[str, Any] | None,
    now: str,
    pointer: ShipmentPointerItem | None = None,
    pointer_was: str | None = None,
) -> None:
    """A shipment's write: the shipment (conditional on its version, or new), its pointer
    when new, the order when its parcels changed, PARCELS, and the timeline entries the
    change derives (on the customer's timeline while it is active). Added to ``tx`` (a
    packed page's transaction); without one, sent as its own TransactWriteItems."""
    own = tx is None
    tx = Tx() if tx is None else tx
    order, profile = got.get("order"), got.get("profile")
    recent = got.get("recent")
    if not isinstance(recent, RecentShipmentsItem):
        recent = RecentShipmentsItem(got["pk"], keys.RECENT, customer_id=got["customer_id"], recent=[])
    item.updated_at = now
    _due(item, now)
    recent.recent = _with(recent.recent or [], item, RECENT_KEPT)
    if pointer is not None:
        cond = (
            ShipmentPointerItem.pk.does_not_exist()
            if pointer_was is None
            else ShipmentPointerItem.customer_id == pointer_was
        )
        tx.save(pointer, cond, role="pointer")
    if before is None:
        tx.save(item, ShipmentItem.pk.does_not_exist(), role="shipment")
    else:
        tx.save(item, role="shipment")
    if isinstance(order, OrderItem) and _order_change(order, item):
        order.updated_at = now
        tx.save(order, role="order")
    tx.save(recent, role="recent")
    whose = timeline.target(profile)
    timeline.add(tx, ctx, whose, timeline.of_change(ctx, whose, before, timeline.image(item, "shipment")))
    if own:
        tx.run()


def known(ctx: TenantContext, tracking_numbers: list[str]) -> set[str]:
    """Which tracking numbers already have a shipment: 1 BatchGetItem per 100."""
    ids = {keys.shipment_id(t): t for t in tracking_numbers}
    found: set[str] = set()
    keys_ = [(keys.pointer_pk(ctx, sid), keys.POINTER_SK) for sid in ids]
    for start in range(0, len(keys_), 100):
        for item in ShipmentPointerItem.batch_get(keys_[start : start + 100], consistent_read=True):
            found.add(ids[item.pk.rsplit("#", 1)[1]])
    return found


def register(
    ctx: TenantContext,
    order_id: str,
    carrier: str,
    tracking_number: str,
    *,
    tracker: Tracker | None = None,
    source: str = "api",
    shipped_at: str | None = None,
) -> tuple[Shipment, bool]:
    """Register a parcel of an order (``created`` False: the tracking number already had
    its shipment, which is answered). New: 1 GetItem (pointer) + 1 GetItem (the order's
    pointer) + 1 BatchGetItem + 1 TransactWriteItems; a repeat: 1 GetItem + 1 BatchGetItem."""
    from crm import ids

    if not ids.ORDER_ID.match(order_id):
        raise Invalid(f"order {order_id} not found", field="order_id", code="order_not_found")
    sid = keys.shipment_id(tracking_number)
    for _ in retry.backoff():
        pointer = _pointer(ctx, sid)
        pointer_was = None
        if pointer is not None:
            got = _load(ctx, pointer.customer_id, sid, pointer.order_id)
            existing = got.get("shipment")
            if isinstance(existing, ShipmentItem):
                if existing.order_id != order_id:
                    raise Conflict(
                        f"tracking number {tracking_number} is already a shipment of order {existing.order_id}",
                        field="tracking_number",
                        code="tracking_number_taken",
                        existing_shipment_id=sid,
                    )
                if tracker is not None:
                    before, now = timeline.image(existing, "shipment"), clock.now_iso()
                    if _apply_tracker(existing, tracker, now):
                        try:
                            _stage(None, ctx, got, existing, before, now)
                        except Cancelled:
                            continue
                return to_shipment(existing), False
            pointer_was = pointer.customer_id  # its shipment was erased: the number is free again
        try:
            cid = OrderPointerItem.get(ctx.key("O", order_id), "O", consistent_read=True).customer_id
        except OrderPointerItem.DoesNotExist:
            raise Invalid(f"order {order_id} not found", field="order_id", code="order_not_found") from None
        got = _load(ctx, cid, sid, order_id)
        order, profile = got.get("order"), got.get("profile")
        if not isinstance(order, OrderItem):
            raise Invalid(f"order {order_id} not found", field="order_id", code="order_not_found")
        if not isinstance(profile, CustomerItem) or profile.status not in ("active", "merging"):
            raise Invalid(f"order {order_id}'s customer was erased", field="order_id", code="order_not_found")
        now = clock.now_iso()
        item = ShipmentItem(
            got["pk"],
            keys.sk(sid),
            shipment_id=sid,
            customer_id=got["customer_id"],
            order_id=order_id,
            carrier=carrier,
            tracking_number=tracking_number.strip(),
            status="pre_transit",
            status_at=now,
            checkpoints=[],
            source=source,
            created_at=now,
            updated_at=now,
        )
        _apply_tracker(item, tracker, now)
        if shipped_at and not item.shipped_at:
            item.shipped_at = shipped_at  # the shop's fulfilment date: it left then
        new_pointer = ShipmentPointerItem(
            keys.pointer_pk(ctx, sid), keys.POINTER_SK, customer_id=got["customer_id"], order_id=order_id
        )
        try:
            _stage(None, ctx, got, item, None, now, pointer=new_pointer, pointer_was=pointer_was)
            return to_shipment(item), True
        except Cancelled:
            continue  # a concurrent registration or a change of the order: re-read
    raise Conflict("the order is being changed by many requests at once; retry", code="transaction_conflict")


OrderFinder = Callable[[str | None, str | None], str | None]  # (shop's order id, order number) → order id


def apply(ctx: TenantContext, tracker: Tracker, find_order: OrderFinder | None = None) -> Outcome:
    """A provider's news about a parcel (a webhook, a stream page, a re-poll). Linked by
    tracking number, else by the order id the provider kept (Rapport's, or the shop's own
    ``order_ref``), else by the shop's ``order_number``: ``find_order`` resolves those two
    to an order id (connectors/shipping.py ``order_finder``); a delivery already applied
    (its event id) or carrying nothing new writes nothing. 1 GetItem + 1 BatchGetItem
    (+1 TransactWriteItems when something changed)."""
    from crm import ids
    from crm.errors import DomainError

    sid = keys.shipment_id(tracker.tracking_number)
    for _ in retry.backoff():
        pointer = _pointer(ctx, sid)
        if pointer is None:
            order_id = tracker.order_id if tracker.order_id and ids.ORDER_ID.match(tracker.order_id) else None
            if order_id is None and (tracker.order_ref or tracker.order_number) and find_order is not None:
                order_id = find_order(tracker.order_ref, tracker.order_number)
            if order_id:
                try:
                    shipment, created = register(
                        ctx, order_id, tracker.carrier, tracker.tracking_number, tracker=tracker
                    )
                except DomainError as exc:
                    return Outcome("rejected", reason=f"tracking number {tracker.tracking_number}: {exc.detail}")
                return Outcome("created" if created else "updated", shipment)
            return Outcome(
                "rejected",
                reason=f"no shipment is registered for tracking number {tracker.tracking_number}"
                + (f" and no order of a connected source has the id {tracker.order_ref!r}" if tracker.order_ref else "")
                + (f" or the number {tracker.order_number!r}" if tracker.order_number else "")
                + ": register it with POST /v1/shipments (or import the order's fulfilment)",
            )
        outcome = _apply_known(ctx, tracker, _load(ctx, pointer.customer_id, sid, pointer.order_id))
        if outcome is not None:
            return outcome
    raise Conflict("the shipment is being changed by many writers at once; retry", code="transaction_conflict")


def _staged(ctx: TenantContext, tracker: Tracker, got: dict[str, Any]) -> tuple[Outcome, Tx | None]:
    """A tracker applied in memory to its registered shipment as ``_load`` read it: the
    outcome, and the transaction's parts when something changed (the outcome's shipment
    is then the one before the write: the caller answers it once committed)."""
    item = got.get("shipment")
    if not isinstance(item, ShipmentItem):
        return Outcome("rejected", reason=f"the shipment of tracking number {tracker.tracking_number} was erased"), None
    if tracker.event_id and tracker.event_id in (item.seen_events or []):
        return Outcome("unchanged", to_shipment(item)), None
    before = timeline.image(item, "shipment")
    now = clock.now_iso()
    if not _apply_tracker(item, tracker, now):
        return Outcome("unchanged", to_shipment(item)), None
    tx = Tx()
    _stage(tx, ctx, got, item, before, now)
    return Outcome("updated"), tx


def _apply_known(ctx: TenantContext, tracker: Tracker, got: dict[str, Any]) -> Outcome | None:
    """A tracker applied to its registered shipment, as ``_load`` read it; None when the
    write lost a race (read again and retry)."""
    outcome, tx = _staged(ctx, tracker, got)
    if tx is None:
        return outcome
    try:
        tx.run()
    except Cancelled:
        return None
    return Outcome("updated", to_shipment(got["shipment"]))


def apply_page(ctx: TenantContext, trackers: list[Tracker], find_order: OrderFinder | None = None) -> list[Outcome]:
    """A page of trackers (a sync's stream page), each as :func:`apply` would, with the
    reads shared and the writes packed: the pointers in 1 BatchGetItem per 100, the
    registered shipments' items (shipment, order, PARCELS, profile) in 1 BatchGetItem
    per 100 keys, and the changes of many customers' parcels in one TransactWriteItems
    (at most 100 items; one customer's parcels never share one, so each is built on what
    the one before committed). An unchanged tracker costs no request of its own.

    A cancelled transaction writes nothing: its trackers, and every later one of their
    customers, go through :func:`apply` (fresh reads, its retries) in page order, as do
    unregistered tracking numbers (linked through ``find_order``) and parcels of a merged
    customer. A tracker's own error (an order number several orders share) is its
    outcome, ``rejected`` with the reason; the others go on."""
    from crm import packing
    from crm.errors import DomainError

    sids = [keys.shipment_id(t.tracking_number) for t in trackers]
    pointers: dict[str, ShipmentPointerItem] = {}
    wanted = list(dict.fromkeys((keys.pointer_pk(ctx, sid), keys.POINTER_SK) for sid in sids))
    for found in ShipmentPointerItem.batch_get(wanted, consistent_read=True) if wanted else []:
        if isinstance(found, ShipmentPointerItem):
            pointers[found.pk] = found
    located = {sid: pointers.get(keys.pointer_pk(ctx, sid)) for sid in sids}
    item_keys: list[tuple[str, str]] = []
    for sid, where in located.items():
        if where is not None:
            pk = records.profile_pk(ctx, where.customer_id)
            item_keys += [(pk, keys.sk(sid)), (pk, "A#ORD#" + where.order_id), (pk, keys.RECENT), (pk, records.PROFILE)]
    unique = list(dict.fromkeys(item_keys))
    items: dict[tuple[str, str], Any] = (
        {(i.pk, i.sk): i for i in Item.batch_get(unique, consistent_read=True)} if unique else {}
    )

    outcomes: dict[int, Outcome] = {}
    staged: dict[int, dict[str, Any]] = {}  # the index's got, once its parts are in a transaction

    def unit(i: int, tracker: Tracker, sid: str, where: ShipmentPointerItem) -> packing.Unit:
        pk = records.profile_pk(ctx, where.customer_id)
        if items.get((pk, keys.RECENT)) is None:  # one new PARCELS per customer, shared by its parcels
            items[(pk, keys.RECENT)] = RecentShipmentsItem(pk, keys.RECENT, customer_id=where.customer_id, recent=[])
        got = {  # the same instances for every parcel of the customer: each builds on the last commit
            "shipment": items.get((pk, keys.sk(sid))),
            "order": items.get((pk, "A#ORD#" + where.order_id)),
            "recent": items[(pk, keys.RECENT)],
            "profile": items.get((pk, records.PROFILE)),
            "customer_id": where.customer_id,
            "pk": pk,
        }

        def build(tx: Tx) -> None:  # when its transaction is built: after the customer's previous one committed
            outcome, parts = _staged(ctx, tracker, got)
            outcomes[i] = outcome
            if parts is not None:
                tx.extend(parts)
                staged[i] = got

        return packing.Unit(MAX_STAGED, build, key=pk, members=[i])

    dirty: set[str | None] = set()  # customers whose items read above may be stale: the rest go one by one
    units = []
    for i, (tracker, sid) in enumerate(zip(trackers, sids, strict=True)):
        where = located[sid]
        if where is not None and isinstance(
            items.get((records.profile_pk(ctx, where.customer_id), keys.sk(sid))), ShipmentItem
        ):  # else erased, merged away or new: apply reads again
            units.append(unit(i, tracker, sid, where))
    for done, committed in packing.run(units, skip=lambda u: u.key in dirty):
        [i] = done.members
        if not committed:
            outcomes.pop(i, None)
            staged.pop(i, None)
            dirty.add(done.key)
        elif i in staged:
            outcomes[i] = Outcome("updated", to_shipment(staged[i]["shipment"]))
    out: list[Outcome] = []
    for i, tracker in enumerate(trackers):
        if i not in outcomes:
            try:
                outcomes[i] = apply(ctx, tracker, find_order)
            except DomainError as exc:
                outcomes[i] = Outcome("rejected", reason=str(exc))
        out.append(outcomes[i])
    return out


def postpone(ctx: TenantContext, item: ShipmentItem, delay: timedelta) -> None:
    """The provider could not be asked now (an outage, a throttle): ask again after
    ``delay``. 1 UpdateItem, conditional on the version read (a webhook that wrote since
    has already rescheduled it)."""
    from pynamodb.exceptions import UpdateError

    from crm.storage import condition_failed

    due = clock.iso(clock.now() + delay)
    tenant = ctx.tenant_id
    try:
        item.update(
            actions=[
                ShipmentItem.due_at.set(due),
                ShipmentItem.gsi2pk.set(keys.due_pk()),
                ShipmentItem.gsi2sk.set(f"{due}#{tenant}#{item.shipment_id}"),
            ],
            condition=ShipmentItem.version == item.version,
        )
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


def due(now: str, limit: int) -> list[ShipmentItem]:
    """Non-terminal shipments whose re-poll is due, oldest first, across tenants: 1 Query
    of the sparse index (eventually consistent: a just-written one shows next run)."""
    return [
        i
        for i in ShipmentItem.gsi2.query(keys.due_pk(), ShipmentItem.gsi2sk < f"{now}#~", limit=limit)
        if isinstance(i, ShipmentItem)
    ]


def recompute_recent(ctx: TenantContext, survivor_id: str, other_id: str) -> None:
    """A merge's step: the survivor's PARCELS from both customers' shipments (now all in
    its partition), the other's deleted. 1 Query + 1 GetItem + 1 PutItem + 1 DeleteItem."""
    s_pk = records.profile_pk(ctx, survivor_id)
    rows = list(ShipmentItem.query(s_pk, ShipmentItem.sk.startswith(keys.PREFIX), consistent_read=True))
    wanted = sorted((brief(r) for r in rows), key=lambda b: (b.get("updated_at") or "", b["id"]), reverse=True)
    try:
        recent = RecentShipmentsItem.get(s_pk, keys.RECENT, consistent_read=True)
    except RecentShipmentsItem.DoesNotExist:
        recent = RecentShipmentsItem(s_pk, keys.RECENT, customer_id=survivor_id, recent=[])
    if rows and recent.recent != wanted[:RECENT_KEPT]:
        recent.recent = wanted[:RECENT_KEPT]
        recent.save(add_version_condition=False)
    RecentShipmentsItem(records.profile_pk(ctx, other_id), keys.RECENT, customer_id=other_id).delete(
        add_version_condition=False
    )
