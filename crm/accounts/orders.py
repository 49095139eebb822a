"""An account's orders: one ``A#ORD#<source>#<external id>`` item per order in the account's
partition, and the 10 latest in brief on its ``SUMMARY`` (the 360 reads them for free).

A contact's order is a Rapport order in the customer's partition (loyalty, timeline and
segments follow it as any order) and carries ``account_id``; the account's item is its
brief (``order_id``, ``customer_id``). An order the company placed without a contact
person has no customer to belong to: the account's item keeps it whole (lines, totals,
the vendor's state), and ``customer_id`` is null. Both are written by the sink in the
vendor's current state; an older ``updated_at`` than the stored one changes nothing.
"""

from __future__ import annotations

from typing import Any

from crm import clock, packing, retry
from crm.accounts import keys
from crm.context import TenantContext
from crm.storage import AccountOrderItem, AccountSummaryItem, Item
from crm.tx import Cancelled, Tx

RECENT_KEPT = 10
BRIEF = ("order_id", "customer_id", "source", "external_id", "channel", "status", "currency", "total", "placed_at")


def with_brief(recent: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The RECENT_KEPT newest orders by placing time, ``entry`` in place (by its vendor id)."""
    kept = {(b["source"], b["external_id"]): b for b in recent}
    kept[(entry["source"], entry["external_id"])] = entry
    return sorted(kept.values(), key=lambda b: (b["placed_at"], b["external_id"]), reverse=True)[:RECENT_KEPT]


def record(ctx: TenantContext, account_id: str, data: dict[str, Any]) -> str:
    """Write one order of the account (``data``: source, external_id, status, currency,
    total, placed_at, source_updated_at, and order_id/customer_id or the whole order).
    1 BatchGetItem + 1 TransactWriteItems (item and summary, both by version); returns
    created, updated or unchanged."""
    pk = keys.account_pk(ctx, account_id)
    sk = keys.order_sk(data["source"], data["external_id"])
    for _ in retry.backoff(8):
        found = {i.sk: i for i in Item.batch_get([(pk, sk), (pk, keys.SUMMARY)], consistent_read=True)}
        item, summary = found.get(sk), found.get(keys.SUMMARY)
        merged = _merged(item, data)
        if merged is None:
            return "unchanged"
        data = merged
        if not isinstance(summary, AccountSummaryItem):
            summary = AccountSummaryItem(pk, keys.SUMMARY, account_id=account_id, balance={}, open_invoices=0,
                                         orders=[], invoices=[])  # fmt: skip
        now = clock.now_iso()
        is_new = not isinstance(item, AccountOrderItem)
        order = item if isinstance(item, AccountOrderItem) else AccountOrderItem(pk, sk, account_id=account_id)
        order.data, order.updated_at = data, now
        summary.orders = with_brief(list(summary.orders or []), {k: data.get(k) for k in BRIEF})
        summary.updated_at = now
        tx = Tx()
        tx.save(order, role="order")
        tx.save(summary, role="summary")
        try:
            tx.run()
            return "created" if is_new else "updated"
        except Cancelled:
            continue
    return "error"


def record_many(ctx: TenantContext, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Write a page of account orders (``(account id, data)`` as :func:`record` takes).
    1 BatchGetItem per 100 orders, then per 100 summaries of the accounts whose orders
    changed, then the changed orders packed into TransactWriteItems of up to 100 items, each account's
    SUMMARY once per transaction with all its orders' briefs; an unchanged order (older or
    the same) writes nothing. A cancelled transaction's orders are written again one by
    one (:func:`record`, fresh reads)."""
    keyed = [(keys.account_pk(ctx, a), keys.order_sk(d["source"], d["external_id"])) for a, d in entries]
    found = _batch(keyed)
    newest: dict[tuple[str, str], int] = {}  # the same order twice in a page: its newest version
    for n, ((_, data), key) in enumerate(zip(entries, keyed, strict=True)):
        j = newest.get(key)
        if j is None or (data.get("source_updated_at") or "") >= (entries[j][1].get("source_updated_at") or ""):
            newest[key] = n
    out: list[str] = ["unchanged"] * len(entries)
    groups: dict[str, list[tuple[int, AccountOrderItem, bool]]] = {}
    now = clock.now_iso()
    for n, ((account_id, data), (pk, sk)) in enumerate(zip(entries, keyed, strict=True)):
        if newest[(pk, sk)] != n:
            continue
        item = found.get((pk, sk))
        merged = _merged(item, data)
        if merged is None:
            continue  # unchanged
        is_new = not isinstance(item, AccountOrderItem)
        order = item if isinstance(item, AccountOrderItem) else AccountOrderItem(pk, sk, account_id=account_id)
        order.data, order.updated_at = merged, now
        groups.setdefault(account_id, []).append((n, order, is_new))
    summaries = {i.account_id: i for i in _batch([(keys.account_pk(ctx, a), keys.SUMMARY) for a in groups]).values()}

    def builder(account_id: str, chunk: list[tuple[int, AccountOrderItem, bool]]) -> Any:
        def build(tx: Tx) -> None:
            summary = summaries.get(account_id)
            if not isinstance(summary, AccountSummaryItem):
                summary = summaries[account_id] = AccountSummaryItem(
                    keys.account_pk(ctx, account_id), keys.SUMMARY, account_id=account_id, balance={},
                    open_invoices=0, orders=[], invoices=[])  # fmt: skip
            recent = list(summary.orders or [])
            for _, order, _ in chunk:
                tx.save(order, role="order")
                recent = with_brief(recent, {k: order.data.get(k) for k in BRIEF})
            summary.orders, summary.updated_at = recent, clock.now_iso()
            tx.save(summary, role="summary")

        return build

    units = [packing.Unit(len(chunk) + 1, builder(a, chunk), a, chunk)
             for a, group in groups.items() for chunk in packing.chunks(group, packing.MAX_ITEMS - 1)]  # fmt: skip
    failed: set[str | None] = set()
    for unit, ok in packing.run(units, skip=lambda u: u.key in failed):
        for n, _, is_new in unit.members:
            if ok:
                out[n] = "created" if is_new else "updated"
            else:
                out[n] = record(ctx, *entries[n])
        if not ok:
            failed.add(unit.key)
    return out


def _batch(wanted: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """1 BatchGetItem per 100 keys (none for none)."""
    found: dict[tuple[str, str], Any] = {}
    for chunk in packing.chunks(list(dict.fromkeys(wanted)), 100):
        found.update({(i.pk, i.sk): i for i in Item.batch_get(chunk, consistent_read=True)})
    return found


def _merged(item: Any, data: dict[str, Any]) -> dict[str, Any] | None:
    """What to store for ``data`` over the stored ``item``; None when that changes nothing
    (an older version, or the same)."""
    if not isinstance(item, AccountOrderItem):
        return data
    seen = (item.data or {}).get("source_updated_at")
    if seen and data.get("source_updated_at") and data["source_updated_at"] < seen:
        return None
    merged = {**data, **{k: v for k, v in (item.data or {}).items() if k in ("order_id", "customer_id") and v
                         and not data.get(k)}}  # fmt: skip
    return None if merged == item.data else merged


def vendor_status(paid_at: Any, fulfilled_at: Any, cancelled_at: Any, refunded: int, total: int) -> str:
    """The order's state as Rapport's lifecycle names it (crm/orders/states.py)."""
    if cancelled_at:
        return "cancelled"
    if refunded and refunded >= total:
        return "refunded"
    if refunded:
        return "partially_refunded"
    if fulfilled_at:
        return "fulfilled"
    return "paid" if paid_at else "placed"
