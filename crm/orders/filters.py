"""Order lists by ``status`` and by ``source`` + ``external_id`` (``GET /v1/orders``).

- By status: 1 Query on gsi2 ``P ORDERS#<status>`` / ``<order id>`` (newest first; the
  keys follow the status on every write, crm/storage.py ``OrderItem.serialize``), with
  the same ``placed_since`` / ``placed_before`` bounds as the tenant list.
- By ``(source, external_id)``: the order's unique guard ``P U#order#<source>#<id>``
  names it (1 GetItem), then the order (1 GetItem): a page of 0 or 1 order.
- By ``number`` (the shop's order number, ``#1001`` = ``1001``): the guards of the orders
  with that number are listed on gsi1 ``P ORDERNO#<number>`` (1 Query), then the orders
  (1 BatchGetItem): every source's order with that number, at most 100, oldest first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crm import ids
from crm.context import TenantContext
from crm.customers import records
from crm.errors import Invalid
from crm.paging import Page, decode_cursor, encode_cursor, start_key
from crm.storage import GuardItem, OrderItem

MAX_BY_NUMBER = 100  # orders sharing one number (one per source, in practice)


def by_status(
    ctx: TenantContext,
    status: str,
    *,
    limit: int,
    cursor: str | None = None,
    placed_since: datetime | None = None,
    placed_before: datetime | None = None,
) -> Page:
    """1 Query on gsi2."""
    from crm.orders.service import _bounds, _order_sk, to_order

    low, high = _bounds(placed_since, placed_before)
    if low > high:
        return Page([], None)
    kind = f"order:{status}:{low}:{high}"
    after = decode_cursor(cursor, kind)
    pk = ctx.key("ORDERS", status)
    start = None
    if after is not None:
        oid, _, cid = after.partition("|")
        if not (ids.ORDER_ID.match(oid) and ids.CUSTOMER_ID.match(cid)):
            raise Invalid("cursor is malformed", field="cursor")
        start = start_key(gsi2pk=pk, gsi2sk=oid, pk=records.profile_pk(ctx, cid), sk=_order_sk(oid))
    rows = list(
        OrderItem.gsi2.query(
            pk,
            OrderItem.gsi2sk.between(low, high),
            scan_index_forward=False,
            limit=limit + 1,
            page_size=limit + 1,
            last_evaluated_key=start,
        )
    )
    rows = [r for r in rows if isinstance(r, OrderItem)]
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(kind, f"{rows[-1].order_id}|{rows[-1].customer_id}") if more else None
    return Page([to_order(r) for r in rows], nxt)


def by_external_id(
    ctx: TenantContext,
    source: str,
    external_id: str,
    *,
    customer_id: str | None = None,
    status: str | None = None,
    placed_since: datetime | None = None,
    placed_before: datetime | None = None,
) -> Page:
    """2 GetItem (1 when no order has that id); other filters apply to the one order."""
    from crm.orders.service import _guard_pk, _order_sk, to_order

    try:
        guard = GuardItem.get(_guard_pk(ctx, source, external_id), "U", consistent_read=True)
        item = OrderItem.get(
            records.profile_pk(ctx, guard.customer_id), _order_sk(guard.order_id), consistent_read=True
        )
    except (GuardItem.DoesNotExist, OrderItem.DoesNotExist):
        return Page([], None)
    order = to_order(item)
    return Page([order] if _matches(ctx, order, customer_id, status, placed_since, placed_before) else [], None)


def by_number(
    ctx: TenantContext,
    number: str,
    *,
    customer_id: str | None = None,
    status: str | None = None,
    placed_since: datetime | None = None,
    placed_before: datetime | None = None,
) -> Page:
    """1 Query on gsi1 (+1 BatchGetItem when an order has the number)."""
    from crm.orders.service import _order_sk, number_index, to_order
    from crm.storage import Item

    guards = [
        g
        for g in Item.gsi1.query(number_index(ctx, number), limit=MAX_BY_NUMBER, page_size=MAX_BY_NUMBER)
        if isinstance(g, GuardItem) and g.order_id
    ]
    if not guards:
        return Page([], None)
    keys = [(records.profile_pk(ctx, g.customer_id), _order_sk(g.order_id)) for g in guards]
    found = [i for i in OrderItem.batch_get(keys, consistent_read=True) if isinstance(i, OrderItem)]
    orders = sorted((to_order(i) for i in found), key=lambda o: o.id)
    return Page([o for o in orders if _matches(ctx, o, customer_id, status, placed_since, placed_before)], None)


def _matches(
    ctx: TenantContext,
    order: Any,
    customer_id: str | None,
    status: str | None,
    placed_since: datetime | None,
    placed_before: datetime | None,
) -> bool:
    """The list's other filters, applied to an order found by its key."""
    from crm.customers.service import survivor_id

    if (
        customer_id is not None
        and customer_id != order.customer_id
        and survivor_id(ctx, customer_id) != order.customer_id
    ):
        return False
    if status is not None and order.status != status:
        return False
    placed = datetime.fromisoformat(order.placed_at)
    return not ((placed_since and placed < placed_since) or (placed_before and placed >= placed_before))
