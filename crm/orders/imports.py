"""Batch import of orders in their vendor's current state (connector syncs).

``import_orders(ctx, source, records)`` takes up to 250 orders of one source, each with
the customer identity resolution found for it, and makes Rapport's copy match the
vendor's, forward only:

- **A new order** (no guard ``P U#order#<source>#<external id>``) is written directly in
  its final state: the guard, the order, its pointer and the customer's updated
  ``ORDERS`` summary, as ``crm.orders.service.create`` writes them, with the stamps
  (``paid_at``, ``fulfilled_at``, ``cancelled_at``) and refunds the vendor reports. It
  is stamped for loyalty exactly as an API order: ``placement_stamp`` (tier held,
  birthday month, first order) and, if paid, ``program_at_payment`` as ``pay`` records
  it. The stream's INSERT of an order carrying ``paid_at`` derives ``order.placed`` and
  ``order.paid`` (and one ``order.refunded`` per refund), so points follow the same
  rules as for an order placed and paid through the API. A customer's new orders are
  placed in ``placed_at`` order, so only the earliest can be its ``first``, and only if
  it had no order before.
- **An existing order** converges: what the vendor reports and Rapport lacks is applied
  through ``crm.orders.service`` (``pay``, ``fulfill``, each refund by its
  ``reference``, ``cancel``), so the same rules and events apply. Nothing is ever
  undone: an older version arriving after a newer one finds nothing to add
  (``unchanged``, no write). Every move is checked before any is applied: an illegal one
  (the vendor says cancelled, Rapport has it paid) is an ``error`` and nothing is
  written. The placed fields (lines, discount, shipping, tax, total) are compared: an
  order edited at the vendor is updated (``service.edit``: ``revision`` + 1, which
  derives ``order.updated``; loyalty re-reckons its points), before the other moves. A
  refund added later keeps the vendor's ``refunded_at``. A record older than the order's
  ``source_updated_at`` (the vendor's ``updated_at`` it was last written from) is
  ``unchanged``: a replayed or late version never reverts an edit. A stored refund
  without a reference (made through the API without one)
  cannot be matched: the amount check still keeps refunds within the total.
- A record naming another customer than the stored order's is an ``error``
  (``conflict``): the order is not moved. An invalid record is an ``error`` with field
  errors (validated with ``OrderCreate`` and the transition models) and writes nothing.
- The same external id twice in one call: the later record converges onto the order
  the earlier one wrote (a second round).

DynamoDB requests (measured in tests/integration/test_order_import.py; table in
docs/performance.md), with G = ⌈orders / 100⌉:

- reads: the orders' guards in G BatchGetItem; then one BatchGetItem per 100 keys of:
  the existing orders the guards name, and for the customers with new orders their
  profile (unless the caller passes it: the sink's buyers were just resolved), ``ORDERS``
  and points book, plus the program;
- writes, new orders: TransactWriteItems packed to at most 100 items: per customer a
  ConditionCheck of the profile (still active) and ``ORDERS``, plus 3 items per order
  (guard, order, pointer) and its timeline entries (``order.placed``, and
  ``order.paid`` etc. for the state it arrives in: crm/timeline.py); a customer's orders
  share its ``ORDERS`` item, so they go in one transaction (24 placed orders at most;
  more are sequenced over several). Packing is first-fit decreasing.
- so **100 new (placed) orders of 30 customers: 1 + 1 + 5 TransactWriteItems = 7**;
  150 of 30, half of them paid: 2 + 1 + 8 = 11; **100 repeats: 1 + 1 = 2, no write**;
  a repeat that adds a move: 3 requests per move (the service function's own 2 reads +
  1 transaction, its timeline entry included).
- a cancelled packed transaction (a concurrent writer) is retried order by order, each
  with fresh reads (2 BatchGetItem + 1 TransactWriteItems), so each gets a precise result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from crm import clock, ids, timeline
from crm.context import TenantContext
from crm.customers import records as customer_keys
from crm.customers.schemas import SOURCE_PATTERN, Timestamp
from crm.errors import Conflict, DomainError, Invalid, field_errors
from crm.loyalty.service import LOYALTY, PROGRAM, placement_stamp, program_pk
from crm.orders import service, states
from crm.orders.schemas import (
    CancellationCreate,
    FulfilmentCreate,
    OrderCreate,
    PaymentCreate,
    RefundCreate,
    RefundReference,
    _not_future,
)
from crm.storage import (
    CustomerItem,
    GuardItem,
    Item,
    LoyaltyProgramItem,
    OrderItem,
    OrderPointerItem,
    RecentOrdersItem,
)
from crm.tx import Cancelled, Tx

MAX_RECORDS = 250
MAX_TRANSACTION_ITEMS = 100
_ORDER_FIELDS = (
    "external_id",
    "number",
    "channel",
    "currency",
    "lines",
    "discount",
    "shipping",
    "tax",
    "total",
    "placed_at",
)
_STATE_FIELDS = ("customer_id", "paid_at", "fulfilled_at", "cancelled_at", "cancel_reason", "refunds", "updated_at")
_ACCOUNT_FIELDS = ("account_id",)  # a B2B order's account (crm/accounts), set when the order is placed


@dataclass
class ImportResult:
    index: int
    status: str  # created | updated | unchanged | error
    order_id: str | None = None
    error: DomainError | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Cancellation(_Strict):
    cancelled_at: Timestamp | None = None


class _RefundState(_Strict):
    reference: RefundReference
    refunded_at: Timestamp | None = None


def _check_at(value: datetime | None, name: str) -> list[dict[str, Any]]:
    try:
        _not_future(value)
    except ValueError as exc:
        return [{"field": name, "message": str(exc), "type": "value_error"}]
    return []


@dataclass
class _Record:
    order: OrderCreate
    customer_id: str
    paid: PaymentCreate | None
    fulfilled: FulfilmentCreate | None
    cancelled_at: datetime | None
    cancel: CancellationCreate | None
    refunds: list[tuple[RefundCreate, datetime | None]]
    updated_at: str | None = None  # the vendor's version of the order
    account_id: str | None = None  # a B2B order: the account it was placed for


def _errors(exc: ValidationError, prefix: str = "", rename: dict[str, str] | None = None) -> list[dict]:
    out = []
    for e in field_errors(exc):
        name = (rename or {}).get(e["field"], e["field"])
        out.append({**e, "field": f"{prefix}{name}" if name else prefix.rstrip(".")})
    return out


def _parse(raw: Any, source: str) -> _Record | list[dict[str, Any]]:
    if not isinstance(raw, dict):
        return [{"field": "", "message": "a record must be an object", "type": "dict_type"}]
    errors = [
        {"field": k, "message": "Extra inputs are not permitted", "type": "extra_forbidden"}
        for k in raw
        if k not in _ORDER_FIELDS + _STATE_FIELDS + _ACCOUNT_FIELDS
    ]
    order = paid = fulfilled = cancel = None
    cancelled_at = None
    try:
        order = OrderCreate.model_validate(
            {
                **{k: raw[k] for k in _ORDER_FIELDS if k in raw},
                "customer": {"id": raw.get("customer_id")},
                "source": source,
            }
        )
    except ValidationError as exc:
        errors += _errors(exc, rename={"customer.id": "customer_id", "customer": "customer_id"})
    try:
        paid = PaymentCreate.model_validate({"paid_at": raw.get("paid_at")}) if raw.get("paid_at") is not None else None
    except ValidationError as exc:
        errors += _errors(exc)
    try:
        fulfilled = (
            FulfilmentCreate.model_validate({"fulfilled_at": raw.get("fulfilled_at")})
            if raw.get("fulfilled_at") is not None
            else None
        )
    except ValidationError as exc:
        errors += _errors(exc)
    try:
        if raw.get("cancelled_at") is not None:
            cancelled_at = _Cancellation.model_validate({"cancelled_at": raw["cancelled_at"]}).cancelled_at
            errors += _check_at(cancelled_at, "cancelled_at")
        if raw.get("cancelled_at") is not None or raw.get("cancel_reason") is not None:
            cancel = CancellationCreate.model_validate({"reason": raw.get("cancel_reason")})
    except ValidationError as exc:
        errors += _errors(exc, rename={"reason": "cancel_reason"})
    refunds: list[tuple[RefundCreate, datetime | None]] = []
    raw_refunds = raw.get("refunds") or []
    if not isinstance(raw_refunds, list):
        errors.append({"field": "refunds", "message": "must be a list", "type": "list_type"})
        raw_refunds = []
    for j, rf in enumerate(raw_refunds):
        if not isinstance(rf, dict):
            errors.append({"field": f"refunds.{j}", "message": "must be an object", "type": "dict_type"})
            continue
        extra = [k for k in rf if k not in ("reference", "amount", "refunded_at", "reason")]
        errors += [
            {"field": f"refunds.{j}.{k}", "message": "Extra inputs are not permitted", "type": "extra_forbidden"}
            for k in extra
        ]
        try:
            body = RefundCreate.model_validate({k: rf[k] for k in ("amount", "reason", "reference") if k in rf})
            state = _RefundState.model_validate({k: rf[k] for k in ("reference", "refunded_at") if k in rf})
            errors += _check_at(state.refunded_at, f"refunds.{j}.refunded_at")
            refunds.append((body, state.refunded_at))
        except ValidationError as exc:
            errors += _errors(exc, prefix=f"refunds.{j}.")
    if errors:
        return errors
    # the state must be one Rapport's lifecycle can reach
    if fulfilled and not paid:
        errors.append(
            {"field": "fulfilled_at", "message": "a fulfilled order must be paid (paid_at)", "type": "value_error"}
        )
    if refunds and not paid:
        errors.append({"field": "refunds", "message": "a refunded order must be paid (paid_at)", "type": "value_error"})
    if cancel and paid:
        errors.append(
            {
                "field": "cancelled_at",
                "message": "only an unpaid order is cancelled; a paid one is refunded",
                "type": "value_error",
            }
        )
    if cancel and cancelled_at is None:
        errors.append({"field": "cancel_reason", "message": "cancel_reason needs cancelled_at", "type": "value_error"})
    refs = [b.reference for b, _ in refunds]
    if len(set(refs)) != len(refs):
        errors.append({"field": "refunds", "message": "each refund's reference at most once", "type": "value_error"})
    if order is not None and sum(b.amount for b, _ in refunds) > order.total:
        errors.append({"field": "refunds", "message": f"refunds exceed the total {order.total}", "type": "value_error"})
    updated_at = None
    if raw.get("updated_at") is not None:
        try:
            stamp = _Cancellation.model_validate({"cancelled_at": raw["updated_at"]}).cancelled_at
            updated_at = clock.iso(stamp) if stamp is not None else None
        except ValidationError as exc:
            errors += _errors(exc, rename={"cancelled_at": "updated_at"})
    account_id = raw.get("account_id")
    if account_id is not None and not (
        isinstance(account_id, str) and re.match(r"^acc_[0-9A-HJKMNP-TV-Z]{26}$", account_id)
    ):
        errors.append({"field": "account_id", "message": "must be an account id (acc_…)", "type": "value_error"})
    if errors or order is None:
        return errors
    return _Record(order, raw["customer_id"], paid, fulfilled, cancelled_at, cancel, refunds, updated_at, account_id)


def import_orders(
    ctx: TenantContext, source: str, records: list[dict], *, profiles: Mapping[str, CustomerItem] | None = None
) -> list[ImportResult]:
    """Import up to 250 orders of ``source``; one ImportResult per record, in order.
    Request counts: the module docstring. ``profiles``: customers' profiles the caller has
    just read or written consistently (the sink's buyers, from identity resolution), not
    read again; the transaction still checks each customer is active."""
    import re

    if not isinstance(source, str) or not re.match(SOURCE_PATTERN, source):
        raise Invalid(f"source must match {SOURCE_PATTERN}", field="source")
    if not 1 <= len(records) <= MAX_RECORDS:
        raise Invalid(f"records must hold 1 to {MAX_RECORDS} items", field="records")
    results: list[ImportResult | None] = [None] * len(records)
    parsed: dict[int, _Record] = {}
    for i, raw in enumerate(records):
        rec = _parse(raw, source)
        if isinstance(rec, list):
            results[i] = ImportResult(i, "error", error=Invalid("record is invalid", field=f"records[{i}]"), errors=rec)
        else:
            parsed[i] = rec
    pending = list(parsed)
    while pending:
        # the same external id twice: the later one converges onto what the first wrote
        seen: set[str] = set()
        now_: list[int] = []
        later: list[int] = []
        for i in pending:
            xid = parsed[i].order.external_id
            (later if xid in seen else now_).append(i)
            seen.add(xid)
        _run(ctx, source, {i: parsed[i] for i in now_}, results, retry=True, profiles=profiles)
        pending = later
    return [r for r in results if r is not None]


def _customer_keys(ctx: TenantContext, cid: str, known: Mapping[str, CustomerItem]) -> list[tuple[str, str]]:
    pk = customer_keys.profile_pk(ctx, cid)
    return [*([] if cid in known else [(pk, customer_keys.PROFILE)]), (pk, service.RECENT), (pk, LOYALTY)]


def _run(
    ctx: TenantContext,
    source: str,
    batch: dict[int, _Record],
    results: list,
    *,
    retry: bool,
    profiles: Mapping[str, CustomerItem] | None = None,
) -> None:
    guards = {i: service._guard_pk(ctx, source, r.order.external_id) for i, r in batch.items()}
    found = {g.pk: g for g in GuardItem.batch_get([(pk, "U") for pk in guards.values()], consistent_read=True)}
    existing = {i: found[pk] for i, pk in guards.items() if pk in found}
    new = [i for i in batch if i not in existing]
    customers = sorted({batch[i].customer_id for i in new})
    keys = [(customer_keys.profile_pk(ctx, g.customer_id), service._order_sk(g.order_id)) for g in existing.values()]
    if new:
        keys += [k for cid in customers for k in _customer_keys(ctx, cid, profiles or {})] + [
            (program_pk(ctx), PROGRAM)
        ]
    items = (
        {(it.pk, it.sk): it for it in Item.batch_get(list(dict.fromkeys(keys)), consistent_read=True)} if keys else {}
    )
    for cid in customers:
        if profiles and cid in profiles:
            items[(customer_keys.profile_pk(ctx, cid), customer_keys.PROFILE)] = profiles[cid]
    for i, guard in existing.items():
        stored = items.get((customer_keys.profile_pk(ctx, guard.customer_id), service._order_sk(guard.order_id)))
        results[i] = _converge(ctx, i, batch[i], guard, stored)
    if new:
        _insert(ctx, source, batch, new, items, results, retry=retry)


# --- existing orders ---------------------------------------------------------


def _converge(ctx: TenantContext, i: int, rec: _Record, guard: GuardItem, stored: Any) -> ImportResult:
    oid = guard.order_id
    if guard.customer_id != rec.customer_id:
        return ImportResult(
            i,
            "error",
            order_id=oid,
            error=Conflict(
                f"this order belongs to customer {guard.customer_id}, not {rec.customer_id}; it is not moved",
                field=f"records[{i}].customer_id",
                existing_customer_id=guard.customer_id,
            ),
        )
    if not isinstance(stored, OrderItem):
        return ImportResult(
            i,
            "error",
            order_id=oid,
            error=Conflict("the order's guard names an order that cannot be read; retry", code="transaction_conflict"),
        )
    seen = stored.data.get("source_updated_at")
    if rec.updated_at and seen and rec.updated_at < seen:
        return ImportResult(i, "unchanged", order_id=oid)  # older than what Rapport holds
    try:
        moves = _moves(stored, rec)
    except DomainError as exc:
        exc.field = f"records[{i}].{exc.field}" if exc.field else f"records[{i}]"
        return ImportResult(i, "error", order_id=oid, error=exc)
    if not moves:
        return ImportResult(i, "unchanged", order_id=oid)
    try:
        for move, *args in moves:
            getattr(service, move)(ctx, oid, *args)
    except DomainError as exc:  # a concurrent change: what was applied stays (forward only)
        exc.field = f"records[{i}].{exc.field}" if exc.field else f"records[{i}]"
        return ImportResult(i, "error", order_id=oid, error=exc)
    return ImportResult(i, "updated", order_id=oid)


def _moves(stored: OrderItem, rec: _Record) -> list[tuple[Any, ...]]:
    """The service calls that bring ``stored`` up to ``rec``, checked before any is made."""
    d, status = stored.data, stored.status
    moves: list[tuple[Any, ...]] = []  # (service call, its body[, the vendor's time])

    def step(action: str, name: str, **amounts: int) -> str:  # forward only (crm/orders/states.py)
        try:
            return states.after(action, status, **amounts)
        except states.IllegalMove as exc:
            past = states.MOVES[action].past
            raise Conflict(
                f"the vendor's order is {past}, but Rapport has it {status} (it can be "
                f"{past} only from {', '.join(exc.allowed)}); nothing was changed",
                field=name,
                code="illegal_transition",
                current_status=status,
            ) from None

    total = d["total"]
    placed = rec.order.model_dump(mode="json", include=set(service.EDITABLE))
    if any(d.get(k) != placed[k] for k in service.EDITABLE):  # edited at the vendor
        if placed["total"] < d.get("refunded_amount", 0):
            raise Invalid(
                f"the edited total {placed['total']} is less than the {d.get('refunded_amount', 0)} already refunded",
                field="total",
            )
        moves.append(("edit", placed, rec.updated_at))
        total = placed["total"]
        status = states.after_edit(status, d.get("refunded_amount", 0), total)
    if rec.paid and not d.get("paid_at"):
        status = step("pay", "paid_at")
        moves.append(("pay", rec.paid))
    if rec.fulfilled and not d.get("fulfilled_at"):
        status = step("fulfill", "fulfilled_at")
        moves.append(("fulfill", rec.fulfilled))
    known = {r.get("reference") for r in d.get("refunds", [])}
    refunded = d.get("refunded_amount", 0)
    for j, (body, at) in enumerate(rec.refunds):
        if body.reference in known:
            continue
        moved = step("refund", f"refunds.{j}", refunded=refunded + body.amount, total=total)
        if refunded + body.amount > total:
            raise Invalid(
                f"refund {body.reference} of {body.amount} exceeds the {total - refunded} still refundable",
                field=f"refunds.{j}.amount",
                refundable=total - refunded,
            )
        moves.append(("refund", body, clock.iso(at) if at else None))  # at the vendor's date
        refunded, status = refunded + body.amount, moved
    if rec.cancelled_at and not d.get("cancelled_at"):
        step("cancel", "cancelled_at")
        moves.append(("cancel", rec.cancel or CancellationCreate()))
    return moves


# --- new orders --------------------------------------------------------------


@dataclass
class _Chunk:
    """Some new orders of one customer: one transaction's share of its ORDERS item."""

    customer_id: str
    recent: RecentOrdersItem
    summary: list[dict]  # the ORDERS list once these orders are in
    orders: list[tuple[int, OrderItem]]
    timeline: list[Any] = field(default_factory=list)  # the orders' entries (crm/timeline.py)

    @property
    def size(self) -> int:
        return 2 + 3 * len(self.orders) + len(self.timeline)


def _data(rec: _Record, now: str) -> tuple[str, dict[str, Any]]:
    """The order's status and stored data in the vendor's state (as create + the moves write it)."""
    body = rec.order
    data = body.model_dump(
        mode="json", exclude={"customer", "placed_at"} | ({"number"} if body.number is None else set())
    )
    data.update(
        subtotal=sum(line.quantity * line.unit_price for line in body.lines),
        placed_at=clock.iso(body.placed_at),
        refunded_amount=0,
        refunds=[],
    )
    if rec.updated_at:
        data["source_updated_at"] = rec.updated_at
    if rec.account_id:
        data["account_id"] = rec.account_id
    status = "placed"  # _parse refused the vendor states the machine cannot reach
    if rec.paid:
        data["paid_at"] = clock.iso(rec.paid.paid_at) if rec.paid.paid_at else now
        status = states.after("pay", status)
    if rec.fulfilled:
        data["fulfilled_at"] = clock.iso(rec.fulfilled.fulfilled_at) if rec.fulfilled.fulfilled_at else now
        status = states.after("fulfill", status)
    if rec.cancelled_at:
        data["cancelled_at"] = clock.iso(rec.cancelled_at)
        if rec.cancel and rec.cancel.reason:
            data["cancel_reason"] = rec.cancel.reason
        status = states.after("cancel", status)
    for n, (refund, at) in enumerate(rec.refunds, start=1):
        data["refunds"].append(
            {
                "id": f"rf_{n}",
                "amount": refund.amount,
                "refunded_at": clock.iso(at) if at else now,
                **({"reason": refund.reason} if refund.reason else {}),
                "reference": refund.reference,
            }
        )
        data["refunded_amount"] += refund.amount
        status = states.after("refund", status, refunded=data["refunded_amount"], total=data["total"])
    return status, data


def _insert(
    ctx: TenantContext,
    source: str,
    batch: dict[int, _Record],
    new: list[int],
    items: dict,
    results: list,
    *,
    retry: bool,
) -> None:
    now = clock.now_iso()
    program = items.get((program_pk(ctx), PROGRAM))
    has_program = isinstance(program, LoyaltyProgramItem) and program.data.get("enabled", True)
    by_customer: dict[str, list[int]] = {}
    for i in new:
        by_customer.setdefault(batch[i].customer_id, []).append(i)
    chunks: list[_Chunk] = []
    for cid, idxs in by_customer.items():
        pk = customer_keys.profile_pk(ctx, cid)
        profile = items.get((pk, customer_keys.PROFILE))
        if not isinstance(profile, CustomerItem) or profile.status != "active":
            merged = customer_keys.survivor(profile) if hasattr(customer_keys, "survivor") else None
            for i in idxs:
                results[i] = ImportResult(
                    i,
                    "error",
                    error=Invalid(
                        f"customer {cid} does not exist, was erased or was merged",
                        field=f"records[{i}].customer_id",
                        **({"survivor_id": merged} if merged else {}),
                    ),
                )
            continue
        recent = items.get((pk, service.RECENT)) or RecentOrdersItem(pk, service.RECENT, customer_id=cid, recent=[])
        book = items.get((pk, LOYALTY))
        summary = list(recent.recent or [])
        chunk = None
        for i in sorted(idxs, key=lambda j: (batch[j].order.placed_at, j)):
            rec = batch[i]
            status, data = _data(rec, now)
            data["loyalty"] = placement_stamp(book, program, profile, bool(summary), data["placed_at"], now)
            if rec.paid:
                data["loyalty"]["program_at_payment"] = has_program
            oid = ids.order_id(rec.order.placed_at)
            order = OrderItem(
                pk,
                service._order_sk(oid),
                order_id=oid,
                customer_id=cid,
                status=status,
                data=data,
                created_at=now,
                updated_at=now,
                gsi1pk=ctx.key("ORDERS"),
                gsi1sk=oid,
            )
            summary = service._with_summary(summary, order)
            entries = timeline.of_change(ctx, cid, None, timeline.image(order, "order"))
            if chunk is None or chunk.size + 3 + len(entries) > MAX_TRANSACTION_ITEMS:
                chunk = _Chunk(cid, recent, [], [])
                chunks.append(chunk)
            chunk.orders.append((i, order))
            chunk.timeline += entries
            chunk.summary = summary
    for group in _pack(chunks):
        if _commit(ctx, source, group):
            for chunk in group:
                for i, order in chunk.orders:
                    results[i] = ImportResult(i, "created", order_id=order.order_id)
            continue
        for chunk in group:
            for i, _ in chunk.orders:
                if retry:  # fresh reads, so each order gets a precise result
                    _run(ctx, source, {i: batch[i]}, results, retry=False)
                else:
                    results[i] = ImportResult(
                        i,
                        "error",
                        error=Conflict(
                            "the order conflicted with a concurrent change (its customer's orders "
                            "or the same external id); retry",
                            field=f"records[{i}]",
                            code="transaction_conflict",
                        ),
                    )


def _pack(chunks: list[_Chunk]) -> list[list[_Chunk]]:
    """First-fit decreasing into transactions of at most 100 items; a customer's later
    chunk never lands in a transaction before (or with) its earlier one."""
    bins: list[list[_Chunk]] = []
    sizes: list[int] = []
    after: dict[str, int] = {}  # customer -> index of the bin holding its latest chunk
    for chunk in sorted(chunks, key=lambda c: -c.size):  # stable: a customer's chunks stay in order
        start = after.get(chunk.customer_id, -1) + 1
        slot = next((b for b in range(start, len(bins)) if sizes[b] + chunk.size <= MAX_TRANSACTION_ITEMS), None)
        if slot is None:
            bins.append([])
            sizes.append(0)
            slot = len(bins) - 1
        bins[slot].append(chunk)
        sizes[slot] += chunk.size
        after[chunk.customer_id] = slot
    return bins


def _commit(ctx: TenantContext, source: str, group: list[_Chunk]) -> bool:
    """1 TransactWriteItems; False if it was cancelled (nothing of it was written)."""
    tx = Tx()
    for chunk in group:
        pk = customer_keys.profile_pk(ctx, chunk.customer_id)
        tx.check(CustomerItem, pk, customer_keys.PROFILE, CustomerItem.status == "active", role="customer")
        for _, order in chunk.orders:
            oid = order.order_id
            tx.save(
                service.order_guard(ctx, order.data, chunk.customer_id, oid),
                GuardItem.pk.does_not_exist(),
                role="guard",
            )
            tx.save(order, OrderItem.pk.does_not_exist(), role="order")
            tx.save(
                OrderPointerItem(ctx.key("O", oid), "O", customer_id=chunk.customer_id),
                OrderPointerItem.pk.does_not_exist(),
                role="pointer",
            )
        chunk.recent.recent = chunk.summary
        tx.save(chunk.recent, role="recent")
        for entry in chunk.timeline:
            tx.save(entry, role="timeline")
    try:
        tx.run()
    except Cancelled:
        return False
    return True
