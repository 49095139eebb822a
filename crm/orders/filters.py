"""Order lists by ``status`` and by ``source`` + ``external_id`` (``GET /v1/orders``).

- By status: 1 Query on gsi2 ``P ORDERS#<status>`` / ``<order id>`` (newest first; the
  keys follow the status on every write, crm/storage.py ``OrderItem.serialize``), with
  the same ``placed_since`` / ``placed_before`` bounds as the tenant list.
- By ``(source, external_id)``: the order's unique guard ``P U#order#<source>#<id>``
  names it (1 GetItem), then the order (1 GetItem): a page of 0 or 1 order.
"""

from __future__ import annotations

from datetime import datetime

from crm import ids
from crm.context import TenantContext
from crm.customers import records
from crm.errors import Invalid
from crm.paging import Page, decode_cursor, encode_cursor, start_key
from crm.storage import GuardItem, OrderItem


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
    from crm.customers.service import survivor_id
    from crm.orders.service import _guard_pk, _order_sk, to_order

    try:
        guard = GuardItem.get(_guard_pk(ctx, source, external_id), "U", consistent_read=True)
        item = OrderItem.get(
            records.profile_pk(ctx, guard.customer_id), _order_sk(guard.order_id), consistent_read=True
        )
    except (GuardItem.DoesNotExist, OrderItem.DoesNotExist):
        return Page([], None)
    order = to_order(item)
    if (
        customer_id is not None
        and customer_id != order.customer_id
        and survivor_id(ctx, customer_id) != order.customer_id
    ):
        return Page([], None)
    if status is not None and order.status != status:
        return Page([], None)
    placed = datetime.fromisoformat(order.placed_at)
    if (placed_since and placed < placed_since) or (placed_before and placed >= placed_before):
        return Page([], None)
    return Page([order], None)
