"""Loyalty operations over the table. Each docstring names its DynamoDB request count.

Layout (``P = T#<tenant>#``): the program at ``P LOYALTY`` / ``PROGRAM``; per customer,
in its item collection, the book at ``LOYALTY`` (inside the 360 range), ledger entries
at ``B#LED#<seq>`` and redemption guards at ``B#RDM#<key digest>`` (below the timeline).
Every change is one TransactWriteItems: the new ledger entries (each conditional on
not existing) and the book (conditional on its version), so the ledger and the
projection never disagree and concurrent writers cannot both spend the same points.

Merged customers (crm/merge.py): the routes take a merged id for its survivor; an
order's points stay in the book of the customer it was paid under until the merge
combines the books (``combine``), and a combined (closed) book sends everything on to
the survivor's, so an event delivered before, during or after a merge counts once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from crm import clock, ids, retry, timeline
from crm.context import TenantContext
from crm.customers import records
from crm.errors import Conflict, Gone, Invalid, NotFound, PreconditionFailed
from crm.loyalty.book import Book, InsufficientPoints
from crm.loyalty.book import merge as merge_books
from crm.loyalty.schemas import (
    AdjustmentCreate,
    LedgerEntry,
    LotView,
    Loyalty,
    PointsChange,
    Program,
    ProgramFields,
    RedemptionCreate,
    TierProgress,
)
from crm.paging import Page, decode_cursor, encode_cursor, start_key
from crm.storage import (
    CustomerItem,
    Item,
    LedgerItem,
    LoyaltyItem,
    LoyaltyProgramItem,
    RedemptionItem,
    condition_failed,
)
from crm.tx import Cancelled, Tx

LOYALTY = "LOYALTY"
PROGRAM = "PROGRAM"
LEDGER_PREFIX = "B#LED#"
REDEMPTION_PREFIX = "B#RDM#"
DUE_SHARDS = 4
TX_ITEMS = 100  # one transaction holds at most 100 items
MAX_ENTRIES = 45  # due entries per scheduled transaction: each with its timeline entry, + book and check
ATTEMPTS = 40


def program_pk(ctx: TenantContext) -> str:
    return ctx.key("LOYALTY")


# --- the program -------------------------------------------------------------


def _to_program(item: LoyaltyProgramItem) -> Program:
    return Program(updated_at=item.updated_at, version=item.version, **item.data)


def get_program(ctx: TenantContext) -> Program:
    """1 GetItem."""
    try:
        return _to_program(LoyaltyProgramItem.get(program_pk(ctx), PROGRAM, consistent_read=True))
    except LoyaltyProgramItem.DoesNotExist:
        raise NotFound("this tenant has no loyalty program yet; PUT one", code="program_not_found") from None


def put_program(ctx: TenantContext, fields: ProgramFields, if_match: int | None) -> tuple[Program, bool]:
    """1 GetItem + 1 PutItem conditional on the version read (If-Match: on the one given).
    A new program applies to points earned from then on; lots keep their dates. Orders
    placed before ``earns_from`` (default: the program's creation) never earn."""
    from pynamodb.exceptions import PutError

    try:
        item = LoyaltyProgramItem.get(program_pk(ctx), PROGRAM, consistent_read=True)
        created = False
    except LoyaltyProgramItem.DoesNotExist:
        item, created = LoyaltyProgramItem(program_pk(ctx), PROGRAM), True
    if if_match is not None and if_match != (item.version or 0):
        raise PreconditionFailed(
            f"the program is at version {item.version or 0}, not {if_match}", current_version=item.version or 0
        )
    now = clock.now_iso()
    kept = (item.data or {}).get("earns_from") if not created else now
    item.data = fields.model_dump(mode="json")
    # history imported later (orders placed before this) earns nothing: see book.apply_order
    item.data["earns_from"] = clock.iso(fields.earns_from) if fields.earns_from else kept
    item.updated_at = now
    try:
        item.save()
    except PutError as exc:
        if condition_failed(exc):
            raise Conflict("the program changed concurrently; read it and retry", code="version_conflict") from None
        raise
    return _to_program(item), created


# --- reading a book ------------------------------------------------------------


def _read(ctx: TenantContext, customer_id: str, *extra_sks: str) -> dict[str, Any]:
    """1 BatchGetItem: the book, the program, and ``extra_sks`` of the customer."""
    pk = records.profile_pk(ctx, customer_id)
    keys = [(pk, LOYALTY), (program_pk(ctx), PROGRAM), *[(pk, sk) for sk in extra_sks]]
    return {i.sk: i for i in Item.batch_get(keys, consistent_read=True)}


def _book(found: dict[str, Any], customer_id: str, ctx: TenantContext) -> tuple[LoyaltyItem, Book, dict | None]:
    item = found.get(LOYALTY)
    if not isinstance(item, LoyaltyItem):
        item = LoyaltyItem(records.profile_pk(ctx, customer_id), LOYALTY, customer_id=customer_id, book={})
    program = found.get(PROGRAM)
    data = program.data if isinstance(program, LoyaltyProgramItem) else None
    return item, Book(item.book or None, data), data


def _survivor(found: dict[str, Any]) -> str | None:
    """The survivor, when the profile read is a merged customer's."""
    return records.survivor(found.get(records.PROFILE))


def _require_customer(found: dict[str, Any], customer_id: str) -> CustomerItem:
    profile = found.get(records.PROFILE)
    if not isinstance(profile, CustomerItem):
        raise NotFound(f"customer {customer_id} not found")
    if profile.status != "active":
        raise Gone(f"customer {customer_id} was erased", code="customer_erased")
    return profile


def _due_shard(ctx: TenantContext, customer_id: str) -> int:
    return int(hashlib.sha256(f"{ctx.tenant_id}#{customer_id}".encode()).hexdigest()[:4], 16) % DUE_SHARDS


def _set_due(ctx: TenantContext, item: LoyaltyItem, book: Book) -> bool:
    """Index the book under its next due time; return whether that changed."""
    due = book.next_due()
    before = (item.gsi2pk, item.gsi2sk)
    if due is None:
        item.gsi2pk = item.gsi2sk = None
    else:
        item.gsi2pk = f"LOYALTY_DUE#{_due_shard(ctx, item.customer_id)}"
        item.gsi2sk = f"{due}#{ctx.tenant_id}#{item.customer_id}"
    return before != (item.gsi2pk, item.gsi2sk)


# --- writing a book ------------------------------------------------------------


class _Retry(Exception):
    pass


class _Settle(Exception):
    """What fell due and the change do not fit in one transaction: apply what fell due
    first (``maintain``, MAX_ENTRIES entries and notices per transaction), then the change."""


def _commit(
    ctx: TenantContext,
    item: LoyaltyItem,
    book: Book,
    now: str,
    extra: Sequence[tuple[Item, Any]] = (),
    whose: str | None = None,
) -> None:
    """1 TransactWriteItems: the new entries, ``extra`` puts, the book (by version), and
    the timeline entries of what changed (points, tier, expiry notices) on ``whose``
    timeline (crm/timeline.py), with a ConditionCheck that ``whose`` is active."""
    book.check()
    before = timeline.image(item, "loyalty")
    ledger = [
        LedgerItem(item.pk, f"{LEDGER_PREFIX}{entry['seq']:010d}", customer_id=item.customer_id, entry=entry)
        for entry in book.entries
    ]
    _set_due(ctx, item, book)
    item.book = book.s
    item.updated_at = now
    entries = timeline.of_change(ctx, whose, before, timeline.image(item, "loyalty"))
    for row in ledger:
        entries += timeline.of_change(ctx, whose, None, timeline.image(row, "ledger"))
    if len(ledger) + len(extra) + 1 + len(entries) + bool(entries) > TX_ITEMS:
        if book.due_entries:
            raise _Settle()
        raise Invalid(
            f"this change would write {len(book.entries)} ledger entries and their timeline "
            f"entries, more than one transaction holds ({TX_ITEMS} items; redeem in smaller "
            "steps)",
            field="points",
        )
    tx = Tx()
    for row in ledger:
        tx.save(row, LedgerItem.pk.does_not_exist(), role="entry")
    for extra_item, condition in extra:
        tx.save(extra_item, condition, role="extra")
    tx.save(item, role="book")
    timeline.add(tx, ctx, whose, entries)
    try:
        tx.run()
    except Cancelled:  # any part: another writer moved the book on; re-read and redo
        raise _Retry() from None


def _retrying(attempt: Callable[[], Any], settle: Callable[[], Any] | None = None) -> Any:
    """Re-read and re-apply on a lost race (another writer moved the book's version),
    or after ``settle`` committed what fell due when it was too much for one transaction."""
    for _ in retry.backoff(ATTEMPTS):
        try:
            return attempt()
        except _Retry:
            continue
        except _Settle:
            if settle is None:
                raise
            settle()
    raise Conflict("the customer's points changed concurrently; retry", code="transaction_conflict")


def _owner(ctx: TenantContext, order: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Which customer's book holds an order's points, and that book and the program as
    ``_read`` gives them, with the owner's profile: the customer the order was paid
    under (``data.moved_from`` for an order a merge moved) until that book is closed by
    the merge, then the survivor's. 1 BatchGetItem (the books and profiles of the
    order's customer and of the customer it was moved from, the program); +1
    BatchGetItem per closed book followed (a stale event of a merged customer)."""
    customer_id = order["customer_id"]
    origin = (order.get("data") or {}).get("moved_from")
    owner = origin or customer_id
    wanted = {customer_id, owner}
    keys = [(records.profile_pk(ctx, c), sk) for c in sorted(wanted) for sk in (LOYALTY, records.PROFILE)] + [
        (program_pk(ctx), PROGRAM)
    ]
    found: dict[tuple[str, str], Item | None] = {(i.pk, i.sk): i for i in Item.batch_get(keys, consistent_read=True)}
    for _ in range(8):
        book = found.get((records.profile_pk(ctx, owner), LOYALTY))
        target = (book.book or {}).get("merged_into") if isinstance(book, LoyaltyItem) else None
        if not target:
            break
        owner = target
        key = (records.profile_pk(ctx, owner), LOYALTY)
        if key not in found:
            found[key] = None
            keys = [key, (key[0], records.PROFILE)]
            found.update({(i.pk, i.sk): i for i in Item.batch_get(keys, consistent_read=True)})
    else:
        raise Conflict(f"the books merged into one another too many times ({customer_id})", code="transaction_conflict")
    mine = {
        LOYALTY: found.get((records.profile_pk(ctx, owner), LOYALTY)),
        PROGRAM: found.get((program_pk(ctx), PROGRAM)),
        records.PROFILE: found.get((records.profile_pk(ctx, owner), records.PROFILE)),
    }
    return owner, {k: v for k, v in mine.items() if v is not None}


def apply_order(ctx: TenantContext, order: dict[str, Any], now: str | None = None) -> int:
    """Bring a customer's points in line with an order's state (from a stream image):
    1 BatchGetItem, then 1 TransactWriteItems if anything changed. Returns the number
    of ledger entries written (0 for a duplicate or stale delivery). The book is the
    one ``_owner`` names (merged customers)."""
    at = now or clock.now_iso()

    def attempt() -> int:
        customer_id, found = _owner(ctx, order)
        item, book, program = _book(found, customer_id, ctx)
        if program is None:
            return 0  # no program: orders earn nothing
        if (
            program.get("earns_from")
            and order["data"]["placed_at"] < program["earns_from"]
            and order["order_id"] not in book.s["orders"]
        ):
            return 0  # imported history from before the program: no points, no tier, no events
        before = book.s.__repr__()
        book.catch_up(at)
        book.apply_order(order["order_id"], order["status"], order["data"], at)
        book.catch_up(at)
        if repr(book.s) == before and not book.entries:
            return 0
        _commit(ctx, item, book, at, whose=timeline.target(found.get(records.PROFILE)))
        return len(book.entries)

    return _retrying(attempt, lambda: maintain(ctx, _owner(ctx, order)[0], at))


def maintain(ctx: TenantContext, customer_id: str, now: str | None = None) -> int:
    """What the schedule does per due customer: activate, expire, warn, re-tier.
    1 BatchGetItem (book, program, profile) + 1 TransactWriteItems (none when nothing
    was due), and one more of each per MAX_ENTRIES ledger entries and expiry notices
    when more than that fell due."""
    at = now or clock.now_iso()

    def attempt() -> tuple[int, bool]:
        found = _read(ctx, customer_id, records.PROFILE)
        item, book, _ = _book(found, customer_id, ctx)
        if not item.book or item.book.get("merged_into"):
            return 0, False
        before = repr(book.s)
        book.catch_up(at, limit=MAX_ENTRIES)
        moved = _set_due(ctx, item, book)
        if repr(book.s) == before and not moved:
            return 0, False
        _commit(ctx, item, book, at, whose=timeline.target(found.get(records.PROFILE)))
        return len(book.entries), book.overdue(at)

    total, more = 0, True
    while more:
        written, more = _retrying(attempt)
        total += written
    return total


def due(shard: int, now: str, limit: int) -> Iterator[tuple[str, str]]:
    """(tenant, customer) whose books fell due by ``now``: Queries on gsi2, ``limit`` rows."""
    for row in LoyaltyItem.gsi2.query(
        f"LOYALTY_DUE#{shard}", LoyaltyItem.gsi2sk <= f"{now}#~", limit=limit, page_size=min(limit, 100)
    ):
        _, tenant, customer = row.gsi2sk.rsplit("#", 2)
        yield tenant, customer


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _change(
    ctx: TenantContext,
    customer_id: str,
    idempotency_key: str | None,
    apply: Callable[[Book, str, str], None],
    points: int,
) -> tuple[PointsChange, bool]:
    """A redemption or an adjustment: 1 BatchGetItem (book, program, profile and the
    key's guard) + 1 TransactWriteItems that includes the guard, so a key is used once
    even if the request is retried after a crash. A repeat returns the first answer."""
    if not ids.CUSTOMER_ID.match(customer_id):
        raise NotFound(f"customer {customer_id} not found")
    guard_sk = REDEMPTION_PREFIX + _digest(idempotency_key) if idempotency_key else None
    target = {"id": customer_id}

    def attempt() -> tuple[PointsChange, bool]:
        at = clock.now_iso()
        for _ in range(4):  # a merged id: the survivor's book (+1 BatchGetItem)
            customer_id = target["id"]
            found = _read(ctx, customer_id, records.PROFILE, *([guard_sk] if guard_sk else []))
            if (survivor := _survivor(found)) is None:
                break
            target["id"] = survivor
        guard = found.get(guard_sk) if guard_sk else None
        if isinstance(guard, RedemptionItem):
            return PointsChange.model_validate(guard.result), False
        _require_customer(found, customer_id)
        item, book, _program = _book(found, customer_id, ctx)
        change_id = "pc_" + (_digest(idempotency_key)[:20] if idempotency_key else ids.event_id()[4:].lower())
        try:
            apply(book, change_id, at)
        except InsufficientPoints as exc:
            raise Invalid(
                f"{points} points requested but only {exc.available} are available",
                field="points",
                code="insufficient_points",
                available=exc.available,
            ) from None
        result = PointsChange(
            id=change_id,
            customer_id=customer_id,
            points=points,
            entries=[LedgerEntry(**e) for e in book.entries],
            balance=_view(customer_id, book, at),
        )
        extra = []
        if guard_sk:
            extra.append(
                (
                    RedemptionItem(item.pk, guard_sk, customer_id=customer_id, result=result.model_dump(mode="json")),
                    RedemptionItem.pk.does_not_exist(),
                )
            )
        _commit(ctx, item, book, at, extra, whose=customer_id)
        return result, True

    return _retrying(attempt, lambda: maintain(ctx, target["id"]))


def redeem(
    ctx: TenantContext, customer_id: str, body: RedemptionCreate, idempotency_key: str
) -> tuple[PointsChange, bool]:
    """Spend points, oldest-expiring lots first; 422 with the balance when short."""

    def apply(book: Book, change_id: str, at: str) -> None:
        book.spend(
            body.points,
            "redeem",
            f"redemption:{change_id}",
            at,
            reason=body.reason,
            detail={"reference": body.reference} if body.reference else None,
        )

    return _change(ctx, customer_id, idempotency_key, apply, body.points)


def adjust(
    ctx: TenantContext, customer_id: str, body: AdjustmentCreate, idempotency_key: str | None
) -> tuple[PointsChange, bool]:
    """A manual credit (a new active lot) or debit (oldest first, never below zero)."""

    def apply(book: Book, change_id: str, at: str) -> None:
        source = f"adjustment:{change_id}:{ctx.key_id or 'system'}"
        if body.points > 0:
            book.credit(body.points, source, at, body.reason)
        else:
            book.spend(-body.points, "adjust", source, at, reason=body.reason)

    return _change(ctx, customer_id, idempotency_key, apply, body.points)


# --- reads ---------------------------------------------------------------------


def _view(customer_id: str, book: Book, now: str) -> Loyalty:
    s, program = book.s, book.program
    progress = None
    if program.get("tiers"):
        value = book.qualifying(now)
        nxt = next((t for t in program["tiers"] if t["threshold"] > value), None)
        progress = TierProgress(
            basis=program.get("tier_basis", "spend"),
            qualifying=value,
            next_tier=nxt["name"] if nxt else None,
            next_threshold=nxt["threshold"] if nxt else None,
            remaining=nxt["threshold"] - value if nxt else None,
        )
    lots = sorted(
        (
            LotView(
                id=lid,
                state=lot["state"],
                points=lot["left"],
                activates_at=lot.get("activate_at"),
                expires_at=lot.get("expires_at"),
            )
            for lid, lot in s["lots"].items()
        ),
        key=lambda v: (v.state != "active", v.expires_at or v.activates_at or "~", v.id),
    )
    return balance(customer_id, s, now, progress=progress, lots=lots)


def balance(
    customer_id: str,
    state: dict[str, Any],
    as_of: str,
    *,
    progress: TierProgress | None = None,
    lots: list[LotView] | None = None,
) -> Loyalty:
    """A book's state as the API shows it (the 360 view shows it without progress and lots)."""
    return Loyalty(
        customer_id=customer_id,
        available=state["available"],
        pending=state["pending"],
        lifetime_earned=state["lifetime"],
        owed=state["owed"],
        tier=state["tier"],
        tier_since=state["tier_since"],
        progress=progress,
        lots=lots or [],
        as_of=as_of,
    )


def view(ctx: TenantContext, customer_id: str) -> Loyalty:
    """1 BatchGetItem (profile, book, program). The balance as of now: what fell due
    since the last write is applied in memory."""
    if not ids.CUSTOMER_ID.match(customer_id):
        raise NotFound(f"customer {customer_id} not found")
    found = _read(ctx, customer_id, records.PROFILE)
    for _ in range(3):  # a merged id: the survivor's balance (+1 BatchGetItem)
        if (survivor := _survivor(found)) is None:
            break
        customer_id = survivor
        found = _read(ctx, customer_id, records.PROFILE)
    if not isinstance(found.get(records.PROFILE), CustomerItem):
        raise NotFound(f"customer {customer_id} not found")
    _, book, _ = _book(found, customer_id, ctx)
    at = clock.now_iso()
    book.catch_up(at)
    return _view(customer_id, book, at)


def ledger(ctx: TenantContext, customer_id: str, *, limit: int, cursor: str | None, _hops: int = 0) -> Page:
    """Newest first: 1 Query (+1 GetItem when the first page is empty, for the 404). A
    merged id: its first page is empty, so the GetItem finds the survivor, then 1 Query
    of the survivor's ledger; its cursors name the survivor."""
    from crm.customers.service import survivor_id

    if not ids.CUSTOMER_ID.match(customer_id):
        raise NotFound(f"customer {customer_id} not found")
    pk = records.profile_pk(ctx, customer_id)
    kind = "ledger:" + customer_id
    try:
        after = decode_cursor(cursor, kind)
    except Invalid:
        target = survivor_id(ctx, customer_id) if _hops == 0 else None
        if target is None:
            raise
        return ledger(ctx, target, limit=limit, cursor=cursor, _hops=1)
    if after is not None and not re.fullmatch(r"[0-9]{1,10}", after):
        raise Invalid("cursor is malformed", field="cursor")
    start = None if after is None else start_key(pk=pk, sk=f"{LEDGER_PREFIX}{int(after):010d}")
    rows = list(
        LedgerItem.query(
            pk,
            LedgerItem.sk.startswith(LEDGER_PREFIX),
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
        if (survivor := records.survivor(profile)) and _hops < 3:
            return ledger(ctx, survivor, limit=limit, cursor=None, _hops=_hops + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(kind, str(rows[-1].entry["seq"])) if more else None
    return Page([LedgerEntry(**r.entry) for r in rows], nxt)


# --- merging two customers' books (crm/merge.py) ----------------------------------


def combine(ctx: TenantContext, survivor_id: str, other_id: str, now: str) -> tuple[int, int]:
    """Combine the other's points book into the survivor's (``book.merge``) and close
    the other's: 1 BatchGetItem (both books, the program) + 1 TransactWriteItems (both
    books, each conditional on its version; re-read and redone on a race). Returns
    (base, entries): the other's ledger entries are to be copied to the survivor's as
    ``base + seq`` for seq 1..entries (``book.merged_entry``). Done already (the other's
    book is closed into the survivor's): the same answer, nothing written. The other
    never had points: its book is closed with 1 PutItem, the survivor's left alone."""
    from pynamodb.exceptions import PutError

    from crm.loyalty.book import empty as book_empty

    s_pk, o_pk = records.profile_pk(ctx, survivor_id), records.profile_pk(ctx, other_id)
    for _ in retry.backoff(ATTEMPTS):
        keys = [(s_pk, LOYALTY), (o_pk, LOYALTY), (program_pk(ctx), PROGRAM)]
        found: dict[tuple[str, str], Any] = {(i.pk, i.sk): i for i in Item.batch_get(keys, consistent_read=True)}
        s_item = found.get((s_pk, LOYALTY)) or LoyaltyItem(s_pk, LOYALTY, customer_id=survivor_id, book={})
        o_item = found.get((o_pk, LOYALTY)) or LoyaltyItem(o_pk, LOYALTY, customer_id=other_id, book={})
        program = found.get((program_pk(ctx), PROGRAM))
        closed = o_item.book or {}
        if closed.get("merged_into"):
            if closed["merged_into"] != survivor_id:
                raise Conflict(
                    f"customer {other_id}'s points were merged into {closed['merged_into']}", code="already_merged"
                )
            return closed["merge_base"], closed["seq"]
        if not o_item.book or o_item.book == book_empty():
            # nothing to combine: the survivor's book stays as it is; the other's is closed
            s_item, combined, closed, base = (
                None,
                None,
                {**book_empty(), "merged_into": survivor_id, "merge_base": 0},
                0,
            )
            o_item.book, o_item.updated_at, o_item.gsi2pk, o_item.gsi2sk = closed, now, None, None
            try:
                o_item.save()
                return 0, 0
            except PutError as exc:
                if not condition_failed(exc):
                    raise
                continue
        try:
            combined, closed, base = merge_books(
                s_item.book or None,
                o_item.book or None,
                program.data if program else None,
                now,
                survivor_id=survivor_id,
                other_id=other_id,
            )
        except ValueError as exc:
            raise Conflict(f"the points books cannot be combined: {exc}", code="merge_conflict") from None
        before = timeline.image(s_item, "loyalty")
        s_item.book, o_item.book = combined, closed
        s_item.updated_at = o_item.updated_at = now
        _set_due(ctx, s_item, Book(combined, program.data if program else None))
        o_item.gsi2pk = o_item.gsi2sk = None
        # a tier the combined book reaches is the survivor's news (the merge keeps it active)
        entries = timeline.of_change(ctx, survivor_id, before, timeline.image(s_item, "loyalty"))
        tx = Tx()
        tx.save(s_item, role="survivor_book")
        tx.save(o_item, role="other_book")
        for entry in entries:
            tx.save(entry, role="timeline")
        try:
            tx.run()
            return base, closed["seq"]
        except Cancelled:  # either book moved on: re-read both
            continue
    raise Conflict("the customers' points changed concurrently; retry", code="transaction_conflict")


def placement_stamp(
    book_item: Any, program_item: Any, profile: CustomerItem, has_orders: bool, placed_at: str, now: str
) -> dict[str, Any]:
    """What an order records when it is placed, so its points never depend on when
    the events are processed: the tier held now, whether it is placed in the birthday
    month, and whether it is the customer's first order."""
    tier = None
    if isinstance(program_item, LoyaltyProgramItem):
        book = Book(book_item.book if isinstance(book_item, LoyaltyItem) else None, program_item.data)
        book.catch_up(now)
        tier = book.s["tier"]
    birth = (profile.data or {}).get("birth_date")
    return {"tier": tier, "birthday": bool(birth and birth[5:7] == placed_at[5:7]), "first": not has_orders}
