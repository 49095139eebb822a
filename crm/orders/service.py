"""Order operations. Each docstring names its DynamoDB request count (docs/performance.md).

Layout (``P = T#<tenant>#``):
- the order: ``P C#<customer>`` / ``A#ORD#<order id>``, in the customer's item collection
  (below the timeline), and on gsi1 ``P ORDERS`` / ``<order id>`` for the tenant list;
- a pointer ``P O#<order id>`` / ``O`` naming the customer, so GET by id needs no index;
- a guard ``P U#order#<source>#<external id>`` / ``U``: one order per vendor order;
- the customer's recent orders in brief, ``P C#<customer>`` / ``ORDERS``, read by the
  360 Query. Order ids are ULIDs of ``placed_at``, so they sort by placing time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from crm import clock, ids, retry, timeline
from crm.context import TenantContext
from crm.customers import records
from crm.errors import Conflict, Invalid, NotFound
from crm.loyalty.service import LOYALTY, PROGRAM, placement_stamp, program_pk
from crm.orders import states
from crm.orders.schemas import (
    CancellationCreate,
    CustomerRef,
    FulfilmentCreate,
    Order,
    OrderCreate,
    OrderStatus,
    OrderSummary,
    PaymentCreate,
    RefundCreate,
    number_key,
)
from crm.paging import Page, decode_cursor, encode_cursor, start_key
from crm.storage import (
    CustomerItem,
    GuardItem,
    Item,
    OrderItem,
    OrderPointerItem,
    RecentOrdersItem,
)
from crm.tx import Cancelled, Tx

ORDER_PREFIX = "A#ORD#"
RECENT = "ORDERS"
RECENT_KEPT = 10
REFUNDABLE = states.REFUNDABLE


def _order_sk(order_id: str) -> str:
    return ORDER_PREFIX + order_id


def _guard_pk(ctx: TenantContext, source: str, external_id: str) -> str:
    return ctx.key("U", "order", source, external_id)


def number_index(ctx: TenantContext, number: str) -> str:
    """gsi1 ``P ORDERNO#<number key>``: the guards of the orders that carry this number."""
    return ctx.key("ORDERNO", number_key(number))


def order_guard(ctx: TenantContext, data: dict[str, Any], customer_id: str, order_id: str) -> GuardItem:
    """The order's unique guard (source + external id). With the shop's order number it is
    also listed on gsi1 under the number, so finding an order by number costs no item of
    its own: the guard is written in the order's transaction anyway."""
    guard = GuardItem(
        _guard_pk(ctx, data["source"], data["external_id"]), "U", customer_id=customer_id, order_id=order_id
    )
    if data.get("number"):
        guard.gsi1pk, guard.gsi1sk = number_index(ctx, data["number"]), order_id
    return guard


def to_order(item: OrderItem) -> Order:
    return Order(
        id=item.order_id,
        customer_id=item.customer_id,
        status=cast(OrderStatus, item.status),
        created_at=item.created_at,
        updated_at=item.updated_at,
        version=item.version,
        **item.data,
    )


def summary(item: OrderItem) -> dict[str, Any]:
    d = item.data
    return OrderSummary(
        id=item.order_id,
        channel=d["channel"],
        currency=d["currency"],
        total=d["total"],
        status=cast(OrderStatus, item.status),
        placed_at=d["placed_at"],
        refunded_amount=d.get("refunded_amount", 0),
    ).model_dump()


def _with_summary(recent: list[dict], item: OrderItem) -> list[dict]:
    """The newest RECENT_KEPT orders by placing time, with ``item``'s summary in place."""
    kept = {s["id"]: s for s in recent}
    kept[item.order_id] = summary(item)
    return sorted(kept.values(), key=lambda s: s["id"], reverse=True)[:RECENT_KEPT]


# --- the customer an order belongs to ----------------------------------------


def _resolve_customer(ctx: TenantContext, ref: CustomerRef) -> str:
    """The customer id, by id or through the email / external-id guard (0 or 1 GetItem)."""
    if ref.id is not None:
        return ref.id
    if ref.email is not None:
        pk = records.email_guard(ctx, ref.email)
    else:  # CustomerRef's rule: source and external_id come together
        pk = records.xid_guard(ctx, cast(str, ref.source), cast(str, ref.external_id))
    try:
        return GuardItem.get(pk, "U", consistent_read=True).customer_id
    except GuardItem.DoesNotExist:
        raise Invalid("no customer matches this reference", field="customer") from None


def _read_for_create(ctx: TenantContext, customer_id: str, guard_pk: str) -> dict[str, Any]:
    """1 BatchGetItem: the profile, the recent-orders item and the points book (one
    partition), the loyalty program, and the order's guard, so a repeat is recognised
    before any write."""
    pk = records.profile_pk(ctx, customer_id)
    keys = {
        "profile": (pk, records.PROFILE),
        "recent": (pk, RECENT),
        "book": (pk, LOYALTY),
        "program": (program_pk(ctx), PROGRAM),
        "guard": (guard_pk, "U"),
    }
    found = {(i.pk, i.sk): i for i in Item.batch_get(list(keys.values()), consistent_read=True)}
    got = {name: found.get(key) for name, key in keys.items()}
    got["recent"] = got["recent"] or RecentOrdersItem(pk, RECENT, customer_id=customer_id, recent=[])
    return got


# --- writes ------------------------------------------------------------------


def create(ctx: TenantContext, body: OrderCreate) -> tuple[Order, bool]:
    """Place an order; idempotent on (source, external_id): a repeat returns the original
    (``created`` False). By customer id: 1 BatchGetItem + 1 TransactWriteItems (+1 GetItem
    by email or external id); a repeat: 1 BatchGetItem + 1 GetItem (+1 by email)."""
    guard_pk = _guard_pk(ctx, body.source, body.external_id)
    customer_id = _resolve_customer(ctx, body.customer)
    now = clock.now_iso()
    oid = ids.order_id(body.placed_at)
    subtotal = sum(line.quantity * line.unit_price for line in body.lines)
    data = body.model_dump(
        mode="json", exclude={"customer", "placed_at"} | ({"number"} if body.number is None else set())
    )
    data.update(subtotal=subtotal, placed_at=clock.iso(body.placed_at), refunded_amount=0, refunds=[])
    pk = records.profile_pk(ctx, customer_id)
    for _ in retry.backoff():  # a lost race re-reads after a backoff (crm/retry.py)
        got = _read_for_create(ctx, customer_id, guard_pk)
        profile, recent, guard = got["profile"], got["recent"], got["guard"]
        if survivor := records.survivor(profile):  # a merged customer: the order is its survivor's
            customer_id = survivor
            pk = records.profile_pk(ctx, customer_id)
            continue
        if guard is not None:
            return _existing(ctx, guard, customer_id), False
        if not isinstance(profile, CustomerItem) or profile.status != "active":
            raise Invalid(f"customer {customer_id} does not exist or was erased", field="customer")
        data["loyalty"] = placement_stamp(
            got["book"], got["program"], profile, bool(recent.recent), data["placed_at"], now
        )
        order = OrderItem(
            pk,
            _order_sk(oid),
            order_id=oid,
            customer_id=customer_id,
            status="placed",
            data=data,
            created_at=now,
            updated_at=now,
            gsi1pk=ctx.key("ORDERS"),
            gsi1sk=oid,
        )
        recent.recent = _with_summary(recent.recent or [], order)
        entries = timeline.of_change(ctx, customer_id, None, timeline.image(order, "order"))
        tx = Tx()
        tx.check(CustomerItem, pk, records.PROFILE, CustomerItem.status == "active", role="customer")
        tx.save(order_guard(ctx, data, customer_id, oid), GuardItem.pk.does_not_exist(), role="guard")
        tx.save(order, OrderItem.pk.does_not_exist(), role="order")
        tx.save(
            OrderPointerItem(ctx.key("O", oid), "O", customer_id=customer_id),
            OrderPointerItem.pk.does_not_exist(),
            role="pointer",
        )
        tx.save(recent, role="recent")
        for entry in entries:  # the fact's timeline entries (crm/timeline.py)
            tx.save(entry, role="timeline")
        try:
            tx.run({"customer": Invalid(f"customer {customer_id} was erased", field="customer")})
            return to_order(order), True
        except Cancelled:
            continue  # a concurrent repeat, another order of this customer, a TransactionConflict: re-read
    raise Conflict(
        "the customer's orders are being changed by many requests at once; retry", code="transaction_conflict"
    )


def _existing(ctx: TenantContext, guard: GuardItem, customer_id: str) -> Order:
    """The order a (source, external_id) guard names: 1 GetItem."""
    if guard.customer_id != customer_id:
        raise Conflict(
            "this source and external_id already identify an order of another customer",
            field="external_id",
            existing_order_id=guard.order_id,
            code="duplicate_order",
        )
    pk = records.profile_pk(ctx, customer_id)
    return to_order(OrderItem.get(pk, _order_sk(guard.order_id), consistent_read=True))


def _load(ctx: TenantContext, order_id: str, program: bool = False) -> tuple[OrderItem, RecentOrdersItem, bool, Any]:
    """1 GetItem (pointer) + 1 BatchGetItem (the order, the recent list and the profile,
    whose status says whose timeline the move goes on; with ``program`` the tenant's
    loyalty program: whether it exists is the third value)."""
    if not ids.ORDER_ID.match(order_id):
        raise NotFound(f"order {order_id} not found")
    try:
        cid = OrderPointerItem.get(ctx.key("O", order_id), "O", consistent_read=True).customer_id
    except OrderPointerItem.DoesNotExist:
        raise NotFound(f"order {order_id} not found") from None
    pk = records.profile_pk(ctx, cid)
    keys = [(pk, _order_sk(order_id)), (pk, RECENT), (pk, records.PROFILE)] + (
        [(program_pk(ctx), PROGRAM)] if program else []
    )
    found = {i.sk: i for i in Item.batch_get(keys, consistent_read=True)}
    order = found.get(_order_sk(order_id))
    if not isinstance(order, OrderItem):
        raise NotFound(f"order {order_id} not found")
    recent = found.get(RECENT)
    if not isinstance(recent, RecentOrdersItem):
        recent = RecentOrdersItem(pk, RECENT, customer_id=cid, recent=[])
    program_item: Any = found.get(PROGRAM)
    return (
        order,
        recent,
        program_item is not None and program_item.data.get("enabled", True),
        found.get(records.PROFILE),
    )


def get(ctx: TenantContext, order_id: str) -> Order:
    """1 GetItem (pointer) + 1 GetItem (the order), both strongly consistent."""
    if not ids.ORDER_ID.match(order_id):
        raise NotFound(f"order {order_id} not found")
    try:
        cid = OrderPointerItem.get(ctx.key("O", order_id), "O", consistent_read=True).customer_id
        return to_order(OrderItem.get(records.profile_pk(ctx, cid), _order_sk(order_id), consistent_read=True))
    except (OrderPointerItem.DoesNotExist, OrderItem.DoesNotExist):
        raise NotFound(f"order {order_id} not found") from None


def _transition(
    ctx: TenantContext, order_id: str, change: Callable[[OrderItem, str], None], program: bool = False
) -> Order:
    """Read, apply ``change`` (which raises on an illegal move), write the order and its
    summary conditional on both versions; re-read on a race (crm/retry.py's backoff). With
    ``program`` (a payment), the order records whether the tenant had a loyalty program
    then (and had it enabled): an order paid without one never earns, however late its
    events come."""
    for _ in retry.backoff():
        order, recent, has_program, profile = _load(ctx, order_id, program)
        before = timeline.image(order, "order")
        now = clock.now_iso()
        order.data = dict(order.data)
        try:
            change(order, now)
        except _Unchanged:
            return to_order(order)
        if program:
            order.data["loyalty"] = {**(order.data.get("loyalty") or {}), "program_at_payment": has_program}
        order.updated_at = now
        in_recent = any(s["id"] == order_id for s in recent.recent or [])
        # the move's timeline entries, on the customer's timeline (its survivor's while
        # it is being merged; none once erased), checked to be active in the transaction
        whose = timeline.target(profile)
        entries = timeline.of_change(ctx, whose, before, timeline.image(order, "order"))
        tx = Tx()
        tx.save(order, role="order")
        if in_recent:
            recent.recent = _with_summary(recent.recent, order)
            tx.save(recent, role="recent")
        timeline.add(tx, ctx, whose, entries)
        try:
            tx.run()
            return to_order(order)
        except Cancelled:  # either moved on since the read: re-read
            continue
    raise Conflict("the order is being changed by many requests at once; retry", code="transaction_conflict")


class _Unchanged(Exception):
    """Raised by a change that finds nothing to do: the order is returned as it is."""


def _illegal(exc: states.IllegalMove) -> Conflict:
    return Conflict(
        f"cannot {exc.action} an order that is {exc.status} (allowed from: {', '.join(exc.allowed)})",
        field="status",
        code="illegal_transition",
        current_status=exc.status,
    )


def _move(
    ctx: TenantContext,
    order_id: str,
    action: str,
    at: datetime | None,
    extra: dict[str, Any] | None = None,
    program: bool = False,
) -> Order:
    """A one-step move of crm/orders/states.py that stamps its time (default: now)."""

    def change(order: OrderItem, now: str) -> None:
        try:
            order.status = states.after(action, order.status)
        except states.IllegalMove as exc:
            raise _illegal(exc) from None
        order.data[states.MOVES[action].stamp] = clock.iso(at) if at else now
        order.data.update(extra or {})

    return _transition(ctx, order_id, change, program)


def pay(ctx: TenantContext, order_id: str, body: PaymentCreate) -> Order:
    return _move(ctx, order_id, "pay", body.paid_at, program=True)


def fulfill(ctx: TenantContext, order_id: str, body: FulfilmentCreate) -> Order:
    return _move(ctx, order_id, "fulfill", body.fulfilled_at)


def cancel(ctx: TenantContext, order_id: str, body: CancellationCreate) -> Order:
    """Only an unpaid order is cancelled; a paid one is refunded instead."""
    return _move(ctx, order_id, "cancel", None, {"cancel_reason": body.reason} if body.reason else None)


def refund(ctx: TenantContext, order_id: str, body: RefundCreate, refunded_at: str | None = None) -> Order:
    """A partial or full refund; the refunds never add up to more than the total paid.
    Idempotent per ``reference``: a refund whose reference the order already has
    returns the order unchanged (2 reads, no write), whatever its amount.
    ``refunded_at``: when it happened (a vendor's refund date); default now."""

    def change(order: OrderItem, now: str) -> None:
        if body.reference is not None and any(
            r.get("reference") == body.reference for r in order.data.get("refunds", [])
        ):
            raise _Unchanged()
        if order.status not in states.REFUNDABLE:
            raise _illegal(states.IllegalMove("refund", order.status))
        if body.currency is not None and body.currency != order.data["currency"]:
            raise Invalid(f"the order is in {order.data['currency']}, not {body.currency}", field="currency")
        refundable = order.data["total"] - order.data.get("refunded_amount", 0)
        if body.amount > refundable:
            raise Invalid(
                f"amount {body.amount} exceeds the {refundable} still refundable", field="amount", refundable=refundable
            )
        refunded = order.data.get("refunded_amount", 0) + body.amount
        entry = {
            "id": f"rf_{len(order.data.get('refunds', [])) + 1}",
            "amount": body.amount,
            "refunded_at": refunded_at or now,
            **({"reason": body.reason} if body.reason else {}),
            **({"reference": body.reference} if body.reference else {}),
        }
        order.data["refunds"] = [*order.data.get("refunds", []), entry]
        order.data["refunded_amount"] = refunded
        order.status = states.after("refund", order.status, refunded=refunded, total=order.data["total"])

    return _transition(ctx, order_id, change)


EDITABLE = ("lines", "discount", "shipping", "tax", "total")


def edit(ctx: TenantContext, order_id: str, placed: dict[str, Any], source_updated_at: str | None = None) -> Order:
    """An order edited at its vendor after it was placed (lines, amounts): the placed
    fields are replaced and ``revision`` goes up by one, which derives ``order.updated``
    (crm/events.py); loyalty re-reckons the order's points from its new state. The total
    never falls below what was refunded. 2 reads + 1 TransactWriteItems."""

    def change(order: OrderItem, now: str) -> None:
        new = {k: placed[k] for k in EDITABLE}
        if all(order.data.get(k) == v for k, v in new.items()):
            raise _Unchanged()
        if new["total"] < order.data.get("refunded_amount", 0):
            raise Invalid(
                f"the edited total {new['total']} is less than the "
                f"{order.data.get('refunded_amount', 0)} already refunded",
                field="total",
            )
        order.data.update(
            new,
            subtotal=sum(line["quantity"] * line["unit_price"] for line in new["lines"]),
            revision=order.data.get("revision", 0) + 1,
            edited_at=source_updated_at or now,
        )
        if source_updated_at:
            order.data["source_updated_at"] = source_updated_at
        order.status = states.after_edit(order.status, order.data.get("refunded_amount", 0), new["total"])

    return _transition(ctx, order_id, change)


# --- lists -------------------------------------------------------------------


def _bounds(since: datetime | None, before: datetime | None) -> tuple[str, str]:
    """Order-id bounds for a placing-date window (ids are ULIDs of placed_at, which the
    API keeps between 2000 and tomorrow, so dates outside that range just widen it)."""
    floor, ceiling = datetime(2000, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
    if since is not None and since.microsecond % 1000:
        # placed_at is kept to the millisecond: the first millisecond at or after ``since``
        since += timedelta(microseconds=1000 - since.microsecond % 1000)
    low = "ord_"
    if since is not None and since >= ceiling:
        low = "ord_~"  # nothing is placed that late: an empty window
    elif since is not None and since > floor:
        low = ids.order_id_bound(since, upper=False)
    high = "ord_~"
    if before is not None and before <= floor:
        high = "ord_"  # nothing was placed before 2000: an empty window
    elif before is not None and before < ceiling:
        high = ids.order_id_bound(before - timedelta(microseconds=1), upper=True)
    return low, high


def list_orders(
    ctx: TenantContext,
    *,
    limit: int,
    cursor: str | None = None,
    customer_id: str | None = None,
    placed_since: datetime | None = None,
    placed_before: datetime | None = None,
) -> Page:
    """Newest first. Per customer: 1 Query of its collection (+1 GetItem when the first
    page is empty, to answer 404 for an unknown customer). Per tenant: 1 Query on gsi1."""
    low, high = _bounds(placed_since, placed_before)
    if low > high:
        return Page([], None)  # an empty window (DynamoDB refuses an inverted BETWEEN)
    window = f":{low}:{high}"  # a cursor is only valid for the window it came from
    if customer_id is not None:
        if not ids.CUSTOMER_ID.match(customer_id):
            raise NotFound(f"customer {customer_id} not found")
        pk = records.profile_pk(ctx, customer_id)
        try:
            after = decode_cursor(cursor, "order:" + customer_id + window)
        except Invalid:  # a merged customer's next page is its survivor's
            from crm.customers.service import survivor_id

            target = survivor_id(ctx, customer_id)
            if target is None:
                raise
            return list_orders(
                ctx,
                limit=limit,
                cursor=cursor,
                customer_id=target,
                placed_since=placed_since,
                placed_before=placed_before,
            )
        if after is not None and not ids.ORDER_ID.match(after):
            raise Invalid("cursor is malformed", field="cursor")
        start = None if after is None else start_key(pk=pk, sk=_order_sk(after))
        rows = list(
            OrderItem.query(
                pk,
                OrderItem.sk.between(_order_sk(low), _order_sk(high)),
                scan_index_forward=False,
                limit=limit + 1,
                page_size=limit + 1,
                last_evaluated_key=start,
                consistent_read=True,
            )
        )
        if not rows and after is None:
            try:
                profile = CustomerItem.get(pk, records.PROFILE, consistent_read=True)
            except CustomerItem.DoesNotExist:
                raise NotFound(f"customer {customer_id} not found") from None
            if records.survivor(profile):  # a merged customer's orders are its survivor's
                return list_orders(
                    ctx,
                    limit=limit,
                    cursor=None,
                    customer_id=records.survivor(profile),
                    placed_since=placed_since,
                    placed_before=placed_before,
                )
        kind = "order:" + customer_id + window
        encode = lambda r: r.order_id
    else:
        after = decode_cursor(cursor, "order" + window)
        start = None
        if after is not None:
            oid, _, cid = after.partition("|")
            if not (ids.ORDER_ID.match(oid) and ids.CUSTOMER_ID.match(cid)):
                raise Invalid("cursor is malformed", field="cursor")
            start = start_key(gsi1pk=ctx.key("ORDERS"), gsi1sk=oid, pk=records.profile_pk(ctx, cid), sk=_order_sk(oid))
        rows = list(
            OrderItem.gsi1.query(
                ctx.key("ORDERS"),
                OrderItem.gsi1sk.between(low, high),
                scan_index_forward=False,
                limit=limit + 1,
                page_size=limit + 1,
                last_evaluated_key=start,
            )
        )
        kind = "order" + window
        encode = lambda r: f"{r.order_id}|{r.customer_id}"
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([to_order(r) for r in rows], encode_cursor(kind, encode(rows[-1])) if more else None)
