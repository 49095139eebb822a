"""Merging two customers: ``POST /v1/customers/{id}/merge`` ``{"other_id"}``.

The other customer is merged INTO the survivor (the customer of the path): its
identities, timeline, orders, redemption guards and points end up on the survivor, its
profile becomes a tombstone (``status: merged``, ``merged_into``) and its id resolves to
the survivor everywhere (crm/customers/service.py ``resolve``).

A customer may hold thousands of items, more than one TransactWriteItems (100 items)
can take, so the merge is a resumable procedure of idempotent steps. Each step can be
repeated, and a crash (or a timeout) between any two leaves a state from which the
same POST — or a retry of it — finishes the job:

1. **mark**: 1 BatchGetItem (both profiles) + 1 TransactWriteItems: the other becomes
   ``merging`` with ``merged_into`` (it leaves the lists; its id already resolves to the
   survivor, so writes to it are redirected), the survivor records ``merge.from`` (it
   cannot be merged elsewhere or erased meanwhile, and a second merge into it first
   finishes this one). Both conditional on the versions read.
2. **count** (once): 3 Query (Select COUNT; 1 per MB of the other's partition) + 1
   PutItem: what the other holds, for the audit entry.
3. **identities**: 1 TransactWriteItems per 100 unique guards of the other (email,
   external ids, aliases: each re-pointed to the survivor, conditional on naming one of
   the two) + 1 BatchWriteItem per 25 lookup entries put for the survivor and 1 per 25
   deleted for the other + 1 GetItem and 1 PutItem (version-conditional) of the
   survivor's profile: its own fields win, missing ones are filled from the other,
   identities that do not fit go to ``aliases``, and ``merged_ids`` grows; then 1
   BatchWriteItem puts the survivor's search entries and deletes the other's
   (crm/customers/search.py).
4. **move**: orders, 25 per TransactWriteItems (each: Put the order in the survivor's
   partition, marked ``data.moved_from``; Delete the original conditional on its
   version, so a concurrent payment is never lost; Put its pointer and its order guard
   naming the survivor) after 1 Query each; timeline entries and redemption guards,
   100 per Query, put in the survivor's partition with the same sort keys (4
   BatchWriteItem per 100) and then deleted from the other's (4 more); redemption
   guards the survivor already has are kept (+1 BatchGetItem per 100). A last empty
   Query per family ends each loop. Then the survivor's ``ORDERS`` is recomputed (1
   GetItem + 1 Query of its 10 newest orders + 1 PutItem by version) and the other's
   deleted (1 DeleteItem).
5. **books**: 1 BatchGetItem + 1 TransactWriteItems conditional on both books'
   versions: ``crm.loyalty.book.merge`` combines them, and the other's is closed.
6. **ledger**: the other's entries, 100 per Query, copied renumbered after the
   survivor's (``book.merged_entry``, 4 BatchWriteItem per 100) and then deleted (4
   more); a last empty Query.
7. **finish**: 1 BatchGetItem (both profiles) + 1 TransactWriteItems: the other becomes
   ``merged`` (its data cleared: it is all on the survivor now), the survivor drops
   ``merge.from``, and the audit entry (``customer.merged``, keyed by that fact, so it
   is written once) lands on the survivor's timeline. Customers merged earlier into the
   other are re-pointed to the survivor first (1 BatchGetItem + 1 TransactWriteItems per
   100), so every merged id stays one GetItem from its survivor.

Measured (docs/performance.md): the other with 3 orders, 5 timeline entries, 8 ledger
entries, a redemption, 2 external ids, a phone and 2 tags took 37 requests (4
BatchGetItem, 5 TransactWriteItems, 4 GetItem, 12 Query, 3 PutItem, 8 BatchWriteItem,
1 DeleteItem), and 1 BatchWriteItem more since search entries are moved too; each further 100 timeline or ledger entries adds 9, each further 25
orders 2. A repeat of a finished merge is the 1 BatchGetItem. Nothing here Scans.

Events: the copies derive no events (crm/events.py skips marked inserts), the deletes
none either; the other's change to ``merged`` derives ``customer.merged``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from crm import clock, ids, retry, schema
from crm.context import TenantContext
from crm.customers import records
from crm.customers.schemas import Customer, TimelineEventCreate
from crm.customers.service import event_item, follow
from crm.errors import Conflict, Invalid, NotFound
from crm.storage import (
    CustomerItem,
    EventItem,
    GuardItem,
    IndexEntryItem,
    LedgerItem,
    OrderItem,
    OrderPointerItem,
    RecentOrdersItem,
    RedemptionItem,
    condition_failed,
)
from crm.tx import Cancelled, Tx

ATTEMPTS = 8
PAGE = 100  # items read per Query while moving
ORDERS_PER_TX = 25  # 4 items per order, 100 per TransactWriteItems
EVENT_KEY = "customer.merged:{other}"


# --- the profile ----------------------------------------------------------------


def _unique(values: Any) -> list:
    out: list = []
    for v in values:
        if v is not None and v not in out:
            out.append(v)
    return out


def merged_profile(survivor: dict[str, Any], other: dict[str, Any], other_id: str) -> dict[str, Any]:
    """The survivor's profile data with the other's merged in (pure, and idempotent:
    merging the same other again changes nothing). The survivor's fields win; the
    fields it lacks are filled from the other; maps merge key by key (the survivor's
    keys win); tags and addresses are united; an email, phone or external id that does
    not fit goes to ``aliases``. ``merged_ids`` lists every customer merged in."""
    out = copy.deepcopy(survivor)
    other = copy.deepcopy(other)
    for name in ("name", "birth_date", "gender", "locale"):
        if out.get(name) is None and other.get(name) is not None:
            out[name] = other[name]
    if not out.get("account_id") and other.get("account_id"):  # a B2B contact: the link (crm/accounts)
        for name in ("account_id", "account_role", "account_link"):
            if other.get(name) is not None:
                out[name] = other[name]
    for name in ("attributes", "consent"):
        merged = {**(other.get(name) or {}), **(out.get(name) or {})}
        if merged:
            out[name] = merged
    mine, theirs = out.get("aliases") or {}, other.get("aliases") or {}
    emails = list(mine.get("emails") or [])
    phones = list(mine.get("phones") or [])
    xids = [dict(a) for a in mine.get("external_ids") or []]
    for email in [other.get("email"), *(theirs.get("emails") or [])]:
        if email and not out.get("email"):
            out["email"] = email
        elif email and email != out["email"] and email not in emails:
            emails.append(email)
    for phone in [other.get("phone"), *(theirs.get("phones") or [])]:
        if phone and not out.get("phone"):
            out["phone"] = phone
        elif phone and phone != out["phone"] and phone not in phones:
            phones.append(phone)
    external = dict(out.get("external_ids") or {})
    given = [(s, x) for s, x in (other.get("external_ids") or {}).items()]
    given += [(a["source"], a["external_id"]) for a in theirs.get("external_ids") or []]
    for source, xid in given:
        alias = {"source": source, "external_id": xid}
        if source not in external:
            external[source] = xid
        elif external[source] != xid and alias not in xids:
            xids.append(alias)
    if external:
        out["external_ids"] = external
    seen = {t.casefold() for t in out.get("tags") or []}
    tags = list(out.get("tags") or [])
    for tag in other.get("tags") or []:
        if tag.casefold() not in seen:
            seen.add(tag.casefold())
            tags.append(tag)
    if tags:
        out["tags"] = tags
    addresses = _unique([*(out.get("addresses") or []), *(other.get("addresses") or [])])
    if addresses:
        out["addresses"] = addresses
    aliases = {
        "emails": [e for e in emails if e != out.get("email")],
        "phones": [p for p in phones if p != out.get("phone")],
        "external_ids": [a for a in xids if external.get(a["source"]) != a["external_id"]],
    }
    aliases = {k: v for k, v in aliases.items() if v}
    if aliases:
        out["aliases"] = aliases
    else:
        out.pop("aliases", None)
    # the other's replaced emails stay guarded (their guards move here) and its vendors'
    # first-seen times count for customer_since
    previous = [
        p
        for p in [*(out.get("previous_emails") or []), *(other.get("previous_emails") or [])]
        if p["email"] != out.get("email") and p["email"] not in emails
    ]
    if previous:
        out["previous_emails"] = list({p["email"]: p for p in reversed(previous)}.values())[::-1]
    for source, at in (other.get("source_created_at") or {}).items():
        mine_at = (out.get("source_created_at") or {}).get(source)
        if mine_at is None or at < mine_at:
            out["source_created_at"] = {**(out.get("source_created_at") or {}), source: at}
    out["merged_ids"] = _unique([*(out.get("merged_ids") or []), other_id, *(other.get("merged_ids") or [])])
    return out


@dataclass(frozen=True)
class IdentityMoves:
    """What of the other's identities moves to the survivor (pure: see :func:`identity_moves`)."""

    guards: list[str]  # guard pks (email, external ids, aliases, previous emails) to name the survivor
    entries: list[str]  # lookup entry pks (phones, tags) to list the survivor instead


def identity_moves(ctx: TenantContext, other: dict[str, Any]) -> IdentityMoves:
    """Every guard and lookup entry the other's profile holds moves: the survivor's
    merged profile (:func:`merged_profile`) answers to all of them, as a field or an alias."""
    return IdentityMoves(sorted(records.guards(ctx, other)), sorted(records.entries(ctx, other)))


# --- the procedure ----------------------------------------------------------------


def _pair(ctx: TenantContext, survivor_id: str, other_id: str) -> tuple[Any, Any]:
    """1 BatchGetItem: both profiles (None for a missing one)."""
    keys = [(records.profile_pk(ctx, c), records.PROFILE) for c in (survivor_id, other_id)]
    found = {i.customer_id: i for i in CustomerItem.batch_get(keys, consistent_read=True)}
    return found.get(survivor_id), found.get(other_id)


def merge(ctx: TenantContext, survivor_id: str, other_id: str) -> Customer:
    """Merge ``other_id`` into ``survivor_id`` and return the survivor. Repeating it (or
    retrying it after a crash) finishes the job; a finished merge answers at once.
    404: either customer missing or erased (another tenant's id is missing too);
    409: the other was merged into another customer, or the survivor was merged."""
    if not ids.CUSTOMER_ID.match(survivor_id):
        raise NotFound(f"customer {survivor_id} not found")
    if other_id == survivor_id:
        raise Invalid("a customer cannot be merged into itself", field="other_id")
    if not ids.CUSTOMER_ID.match(other_id):
        raise NotFound(f"customer {other_id} not found", field="other_id")
    for _ in retry.backoff(ATTEMPTS):
        survivor, other = _pair(ctx, survivor_id, other_id)
        state = _state(ctx, survivor, other, survivor_id, other_id)
        if state == "done":
            return records.to_customer(survivor)
        if isinstance(state, tuple):  # another merge into one of them is unfinished
            _run(ctx, *state)
            continue
        if state == "start" and not _mark(ctx, survivor, other):
            continue  # lost a race: read again
        return _run(ctx, survivor_id, other_id)
    raise Conflict("the customers changed concurrently; retry", code="transaction_conflict")


def _state(ctx: TenantContext, survivor: Any, other: Any, survivor_id: str, other_id: str) -> str | tuple[str, str]:
    if survivor is None or survivor.status == "erased":
        raise NotFound(f"customer {survivor_id} not found")
    if records.survivor(survivor):
        raise Conflict(
            f"customer {survivor_id} was merged into {survivor.merged_into}; merge into that customer instead",
            code="customer_merged",
            merged_into=survivor.merged_into,
        )
    if other is None or other.status == "erased":
        raise NotFound(f"customer {other_id} not found", field="other_id")
    if other.status == "merged":
        if other.merged_into == survivor_id or follow(ctx, other).customer_id == survivor_id:
            return "done"
        raise Conflict(
            f"customer {other_id} was merged into another customer",
            field="other_id",
            code="already_merged",
            merged_into=other.merged_into,
        )
    if other.status == "merging":
        if other.merged_into == survivor_id:
            return "resume"
        raise Conflict(
            f"customer {other_id} is being merged into another customer",
            field="other_id",
            code="already_merged",
            merged_into=other.merged_into,
        )
    pending = (survivor.merge or {}).get("from")
    if pending and pending != other_id:
        return (survivor_id, pending)
    pending = (other.merge or {}).get("from")
    if pending:
        return (other_id, pending)
    return "start"


def _mark(ctx: TenantContext, survivor: CustomerItem, other: CustomerItem) -> bool:
    """Step 1: 1 TransactWriteItems, both profiles conditional on their versions."""
    now = clock.now_iso()
    other.status, other.merged_into, other.updated_at = "merging", survivor.customer_id, now
    other.merge = {"into": survivor.customer_id, "started_at": now}
    records.set_list_keys(ctx, other)
    survivor.merge = {**(survivor.merge or {}), "from": other.customer_id}
    tx = Tx()
    tx.save(other, CustomerItem.status == "active", role="other")
    tx.save(survivor, CustomerItem.status == "active", role="survivor")
    try:
        tx.run()
    except Cancelled:
        return False
    return True


def _run(ctx: TenantContext, survivor_id: str, other_id: str) -> Customer:
    """Steps 2-7 for a pair marked ``merging``; every step is idempotent."""
    from crm.accounts import contacts as account_contacts
    from crm.accounts import invoices as account_invoices
    from crm.loyalty import service as loyalty
    from crm.shipments import service as shipments

    counts = _count(ctx, survivor_id, other_id)
    other_data, survivor_data = _identities(ctx, survivor_id, other_id)
    account_contacts.on_merge(ctx, survivor_id, other_id, other_data, survivor_data)
    _move_orders(ctx, survivor_id, other_id)
    account_invoices.on_merge(ctx, survivor_id, other_id)
    for model, prefix, keep in families():  # timeline entries, redemption guards, …
        _move_family(ctx, model, prefix, survivor_id, other_id, keep_existing=keep)
    _recompute_recent(ctx, survivor_id, other_id)
    shipments.recompute_recent(ctx, survivor_id, other_id)
    base, entries = loyalty.combine(ctx, survivor_id, other_id, clock.now_iso())
    _copy_ledger(ctx, survivor_id, other_id, base)
    return _finish(ctx, survivor_id, other_id, {**counts, "ledger_entries": entries})


def _load(ctx: TenantContext, customer_id: str) -> CustomerItem:
    return CustomerItem.get(records.profile_pk(ctx, customer_id), records.PROFILE, consistent_read=True)


def _count(ctx: TenantContext, survivor_id: str, other_id: str) -> dict[str, int]:
    """Step 2, once: what the other holds (the audit entry's counts)."""
    from pynamodb.exceptions import PutError

    for _ in retry.backoff(ATTEMPTS):
        other = _load(ctx, other_id)
        state = other.merge or {}
        if "counts" in state:
            return state["counts"]
        if other.status != "merging" or other.merged_into != survivor_id:
            raise Conflict(
                f"customer {other_id} is no longer being merged into {survivor_id}", code="transaction_conflict"
            )
        pk = other.pk
        counts = {
            "orders": OrderItem.count(pk, OrderItem.sk.startswith("A#ORD#"), consistent_read=True),
            "timeline_entries": EventItem.count(
                pk, EventItem.sk.startswith(records.EVENT_PREFIX), consistent_read=True
            ),
            "redemptions": RedemptionItem.count(pk, RedemptionItem.sk.startswith("B#RDM#"), consistent_read=True),
        }
        other.merge = {**state, "counts": counts}
        try:
            other.save()
            return counts
        except PutError as exc:
            if not condition_failed(exc):
                raise
    raise Conflict("the customers changed concurrently; retry", code="transaction_conflict")


def _identities(ctx: TenantContext, survivor_id: str, other_id: str) -> tuple[dict, dict]:
    """Step 3: the other's guards and lookup entries name the survivor; its profile
    fields are merged into the survivor's. Returns (the other's data, the survivor's)."""
    from pynamodb.exceptions import PutError

    other = _load(ctx, other_id)
    data = other.data or {}
    moves = identity_moves(ctx, data)
    guard_pks = moves.guards
    for i in range(0, len(guard_pks), 100):
        tx = Tx()
        for pk in guard_pks[i : i + 100]:
            tx.save(
                GuardItem(pk, "U", customer_id=survivor_id),
                GuardItem.customer_id.is_in(other_id, survivor_id) | GuardItem.pk.does_not_exist(),
                role="guard",
            )
        try:
            tx.run()
        except Cancelled:
            raise Conflict(
                f"an identity of customer {other_id} is held by a third customer", code="merge_conflict"
            ) from None
    entries = moves.entries
    with IndexEntryItem.batch_write() as batch:
        for pk in entries:
            batch.save(IndexEntryItem(pk, survivor_id, customer_id=survivor_id))
    with IndexEntryItem.batch_write() as batch:
        for pk in entries:
            batch.delete(IndexEntryItem(pk, other_id, customer_id=other_id))
    for _ in retry.backoff(ATTEMPTS):
        survivor = _load(ctx, survivor_id)
        new = merged_profile(survivor.data or {}, data, other_id)
        if new == (survivor.data or {}):
            break
        survivor.data, survivor.updated_at = new, clock.now_iso()
        records.set_list_keys(ctx, survivor)
        try:
            survivor.save(condition=CustomerItem.status == "active")
            break
        except PutError as exc:
            if not condition_failed(exc):
                raise
    else:
        raise Conflict("the survivor changed concurrently; retry", code="transaction_conflict")
    _move_search_entries(ctx, survivor_id, survivor.data or {}, other_id, data)
    return data, survivor.data or {}


def _move_search_entries(
    ctx: TenantContext, survivor_id: str, survivor_data: dict, other_id: str, other_data: dict
) -> None:
    """The survivor's search entries (crm/customers/search.py) for its merged fields are
    put (again: a repeat is harmless), the other's deleted: 1-2 BatchWriteItem."""
    from crm.customers import search

    with IndexEntryItem.batch_write() as batch:
        for entry in search.entry_items(ctx, survivor_id, survivor_data):
            batch.save(entry)
        for entry in search.entry_items(ctx, other_id, other_data):
            batch.delete(entry)


def _move_orders(ctx: TenantContext, survivor_id: str, other_id: str) -> int:
    """Step 4, orders: 1 Query + 1 TransactWriteItems per 25 orders."""
    from crm.orders.service import ORDER_PREFIX, order_guard

    s_pk, o_pk = records.profile_pk(ctx, survivor_id), records.profile_pk(ctx, other_id)
    moved = 0
    races = retry.backoff(ATTEMPTS + 1)  # the first attempt, then up to ATTEMPTS re-reads
    next(races)
    while True:
        rows = list(
            OrderItem.query(
                o_pk,
                OrderItem.sk.startswith(ORDER_PREFIX),
                limit=ORDERS_PER_TX,
                page_size=ORDERS_PER_TX,
                consistent_read=True,
            )
        )
        if not rows:
            return moved
        tx = Tx()
        for order in rows:
            copy_ = OrderItem(
                s_pk,
                order.sk,
                order_id=order.order_id,
                customer_id=survivor_id,
                status=order.status,
                data={**order.data, "moved_from": other_id},
                created_at=order.created_at,
                updated_at=order.updated_at,
                gsi1pk=order.gsi1pk,
                gsi1sk=order.gsi1sk,
            )
            copy_.version = order.version
            tx.put_as_is(copy_, role="copy")
            tx.delete(order, role="order")  # conditional on the version read
            tx.save(OrderPointerItem(ctx.key("O", order.order_id), "O", customer_id=survivor_id), role="pointer")
            tx.save(
                order_guard(ctx, order.data, survivor_id, order.order_id),
                GuardItem.customer_id.is_in(other_id, survivor_id) | GuardItem.pk.does_not_exist(),
                role="guard",
            )
        try:
            tx.run()
            moved += len(rows)
        except Cancelled:  # an order changed meanwhile: read it again, after a backoff
            if next(races, None) is None:
                raise Conflict(
                    "the orders changed concurrently; retry the merge", code="transaction_conflict"
                ) from None


def _move_family(
    ctx: TenantContext, model: Any, prefix: str, survivor_id: str, other_id: str, keep_existing: bool = False
) -> int:
    """Step 4, immutable items (timeline entries, redemption guards): per 100, 1 Query,
    put in the survivor's partition under the same sort key, then deleted from the
    other's. ``keep_existing``: an item the survivor has under that key wins."""
    s_pk, o_pk = records.profile_pk(ctx, survivor_id), records.profile_pk(ctx, other_id)
    moved = 0
    while True:
        rows = list(model.query(o_pk, model.sk.startswith(prefix), limit=PAGE, page_size=PAGE, consistent_read=True))
        if not rows:
            return moved
        have = set()
        if keep_existing:
            have = {i.sk for i in model.batch_get([(s_pk, r.sk) for r in rows], consistent_read=True)}
        with model.batch_write() as batch:
            for row in rows:
                if row.sk in have:
                    continue
                values = {k: v for k, v in row.attribute_values.items() if k not in ("pk", "sk", "kind")}
                values["customer_id"] = survivor_id
                batch.save(model(s_pk, row.sk, **values))
        with model.batch_write() as batch:
            for row in rows:
                batch.delete(row)
        moved += len(rows)


# declared kinds (crm/schema.py) that a step of their own moves or recomputes; every other
# kind of the customer's partition declared ``merge="move"`` is moved as it is
STEPS = {
    "customer": "_finish",
    "guard": "_identities",
    "index": "_identities",
    "order": "_move_orders",
    "order_pointer": "_move_orders",
    "recent_orders": "_recompute_recent",
    "recent_shipments": "shipments.recompute_recent",
    "loyalty": "loyalty.combine",
    "ledger": "_copy_ledger",
    # recomputed from the survivor's orders by the segments subscriber on customer.merged
    "metrics": "segments.maintain.on_merged",
    # B2B accounts (crm/accounts): the contact link follows the survivor's profile, and the
    # other's invoices become the survivor's in all their copies
    "account_contact": "accounts.contacts.on_merge",
    "customer_invoice": "accounts.invoices.on_merge",
}


def families() -> list[tuple[Any, str, bool]]:
    """(model, sort-key prefix, the survivor's copy wins) of the kinds moved as they are,
    from the declarations."""
    prefixes = schema.customer_sort_prefixes()
    return [
        (cls, prefixes[name], kind.merge_keeps_survivors)
        for cls in schema.item_classes()
        if (kind := schema.declared(cls))
        and kind.merge == "move"
        and (name := schema.name_of(cls)) not in STEPS
        and name in prefixes
    ]


def unhandled() -> list[str]:
    """Declared kinds a merge moves or recomputes but nothing here does (tests/unit/test_schema.py)."""
    moved = {schema.name_of(m) for m, _, _ in families()}
    return sorted(
        name
        for name, kind in schema.kinds().items()
        if kind.merge in ("move", "recompute") and name not in STEPS and name not in moved
    )


def _recompute_recent(ctx: TenantContext, survivor_id: str, other_id: str) -> None:
    """Step 4, the survivor's 10 newest orders in brief, now from both customers'."""
    from pynamodb.exceptions import PutError

    from crm.orders.service import ORDER_PREFIX, RECENT, RECENT_KEPT, summary

    s_pk = records.profile_pk(ctx, survivor_id)
    for _ in retry.backoff(ATTEMPTS):
        try:
            recent = RecentOrdersItem.get(s_pk, RECENT, consistent_read=True)
        except RecentOrdersItem.DoesNotExist:
            recent = RecentOrdersItem(s_pk, RECENT, customer_id=survivor_id, recent=[])
        newest = list(
            OrderItem.query(
                s_pk,
                OrderItem.sk.between(ORDER_PREFIX + "ord_", ORDER_PREFIX + "ord_~"),
                scan_index_forward=False,
                limit=RECENT_KEPT,
                page_size=RECENT_KEPT,
                consistent_read=True,
            )
        )
        wanted = [summary(o) for o in newest]
        if wanted == recent.recent and recent.version is not None:
            break
        recent.recent = wanted
        try:
            recent.save()
            break
        except PutError as exc:
            if not condition_failed(exc):
                raise
    RecentOrdersItem(records.profile_pk(ctx, other_id), RECENT, customer_id=other_id).delete(
        add_version_condition=False
    )


def _copy_ledger(ctx: TenantContext, survivor_id: str, other_id: str, base: int) -> int:
    """Step 6: per 100 of the other's ledger entries, 1 Query, the renumbered copies
    put in the survivor's ledger, then the originals deleted."""
    from crm.loyalty.book import merged_entry
    from crm.loyalty.service import LEDGER_PREFIX

    s_pk, o_pk = records.profile_pk(ctx, survivor_id), records.profile_pk(ctx, other_id)
    copied = 0
    while True:
        rows = list(
            LedgerItem.query(
                o_pk, LedgerItem.sk.startswith(LEDGER_PREFIX), limit=PAGE, page_size=PAGE, consistent_read=True
            )
        )
        if not rows:
            return copied
        with LedgerItem.batch_write() as batch:
            for row in rows:
                entry = merged_entry(row.entry, base, other_id)
                batch.save(
                    LedgerItem(s_pk, f"{LEDGER_PREFIX}{entry['seq']:010d}", customer_id=survivor_id, entry=entry)
                )
        with LedgerItem.batch_write() as batch:
            for row in rows:
                batch.delete(row)
        copied += len(rows)


def _finish(ctx: TenantContext, survivor_id: str, other_id: str, counts: dict[str, int]) -> Customer:
    """Step 7: the other's tombstone, the survivor's marker, the audit entry, at once."""
    for _ in retry.backoff(ATTEMPTS):
        survivor, other = _pair(ctx, survivor_id, other_id)
        if other is not None and other.status == "merged":
            return records.to_customer(survivor)  # a concurrent run finished it
        _repoint(ctx, (other.data or {}).get("merged_ids") or [], other_id, survivor_id)
        state = other.merge or {}
        audit = event_item(
            ctx,
            survivor_id,
            TimelineEventCreate(
                type="customer.merged",
                occurred_at=state.get("started_at") or other.updated_at,
                summary=f"Customer {other_id} was merged into this customer",
                payload={"other_id": other_id, **counts},
            ),
            key=EVENT_KEY.format(other=other_id),
        )
        now = clock.now_iso()
        other.status, other.data, other.updated_at = "merged", {}, now
        other.merge = {**state, "counts": counts, "finished_at": now}
        records.set_list_keys(ctx, other)
        if (survivor.merge or {}).get("from") == other_id:
            rest = {k: v for k, v in survivor.merge.items() if k != "from"}
            survivor.merge = rest or None
        tx = Tx()
        tx.save(other, CustomerItem.status == "merging", role="other")
        tx.save(survivor, role="survivor")
        tx.save(audit, EventItem.pk.does_not_exist(), role="audit")
        try:
            tx.run()
            return records.to_customer(survivor)
        except Cancelled:  # a concurrent run or write: read both again
            continue
    raise Conflict("the customers changed concurrently; retry", code="transaction_conflict")


def _repoint(ctx: TenantContext, absorbed: list[str], other_id: str, survivor_id: str) -> None:
    """Customers merged into the other earlier now resolve to the survivor directly."""
    for i in range(0, len(absorbed), 100):
        keys = [(records.profile_pk(ctx, c), records.PROFILE) for c in absorbed[i : i + 100]]
        stale = [p for p in CustomerItem.batch_get(keys, consistent_read=True) if p.merged_into == other_id]
        if not stale:
            continue
        for p in stale:
            p.merged_into = survivor_id
            p.merge = {**(p.merge or {}), "into": survivor_id}
        tx = Tx()
        for p in stale:
            tx.save(p, role="absorbed")
        try:
            tx.run()
        except Cancelled:
            pass  # a race with a concurrent run: the next attempt reads them again
