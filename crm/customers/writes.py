"""Atomic profile writes: the profile, its unique guards and its lookup entries in
one TransactWriteItems, so a uniqueness violation or a stale version changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from crm.context import TenantContext
from crm.customers import records, search
from crm.errors import EXPECTED_VERSION, Conflict, DomainError, PreconditionFailed
from crm.storage import CustomerItem, GuardItem, IndexEntryItem
from crm.tx import Cancelled, Tx

MAX_TRANSACTION_ITEMS = 100

K = TypeVar("K")


@dataclass
class ProfileWrite:
    """One customer's write: ``ops`` are (kind, item, condition, meta) in tx order."""

    ctx: TenantContext
    item: CustomerItem
    is_new: bool
    ops: list[tuple[str, Any, Any, str | None]] = field(default_factory=list)
    # Lookup entries that did not fit in the transaction: new ones are put before it,
    # stale ones deleted after it. Readers check each entry against the profile, so
    # an entry left over by a crash between the steps is never shown.
    before: list[IndexEntryItem] = field(default_factory=list)
    after: list[IndexEntryItem] = field(default_factory=list)

    @classmethod
    def plan(
        cls, ctx: TenantContext, item: CustomerItem, old: dict[str, Any] | None, new: dict[str, Any], *, is_new: bool
    ) -> ProfileWrite:
        write = cls(ctx, item, is_new)
        cid = item.customer_id
        cond = CustomerItem.pk.does_not_exist() if is_new else None
        write.ops.append(("save", item, cond, None))
        old_guards = records.guards(ctx, old or {})
        new_guards = records.guards(ctx, new)
        for pk, fld in new_guards.items():
            if pk not in old_guards:
                write.ops.append(("save", GuardItem(pk, "U", customer_id=cid), GuardItem.pk.does_not_exist(), fld))
        for pk, fld in old_guards.items():
            if pk not in new_guards:
                write.ops.append(("delete", GuardItem(pk, "U", customer_id=cid), GuardItem.customer_id == cid, fld))
        old_entries, new_entries = records.entries(ctx, old or {}), records.entries(ctx, new)
        for pk in sorted(new_entries - old_entries):
            write.ops.append(("save", IndexEntryItem(pk, cid, customer_id=cid), None, None))
        for pk in sorted(old_entries - new_entries):
            write.ops.append(("delete", IndexEntryItem(pk, cid, customer_id=cid), None, None))
        old_search, new_search = search.entries(ctx, cid, old or {}), search.entries(ctx, cid, new)
        for pk, sk in sorted(new_search - old_search):  # prefix search (crm/customers/search.py)
            write.ops.append(("save", IndexEntryItem(pk, sk, customer_id=cid), None, None))
        for pk, sk in sorted(old_search - new_search):
            write.ops.append(("delete", IndexEntryItem(pk, sk, customer_id=cid), None, None))
        if len(write.ops) > MAX_TRANSACTION_ITEMS:  # e.g. 50 tags replaced by 50 others
            entries = [op for op in write.ops if isinstance(op[1], IndexEntryItem)]
            write.ops = [op for op in write.ops if not isinstance(op[1], IndexEntryItem)]
            write.before = [item for kind, item, _, _ in entries if kind == "save"]
            write.after = [item for kind, item, _, _ in entries if kind == "delete"]
        return write


def execute(writes: list[ProfileWrite]) -> None:
    """Run the writes in one transaction; raise the first domain error on failure."""
    tx = Tx()
    for w in writes:
        for kind, item, cond, fld in w.ops:
            role = fld or ("profile" if isinstance(item, CustomerItem) else "entry")
            if kind == "save":
                tx.save(item, cond, role=role)
            else:
                tx.delete(item, cond, role=role, add_version_condition=False)
    _batch_entries([e for w in writes for e in w.before], delete=False)
    try:
        tx.run()
    except Exception as exc:
        # entries put ahead of a transaction that did not happen must not outlive it
        _batch_entries([e for w in writes for e in w.before], delete=True)
        if isinstance(exc, Cancelled):
            raise _explain(exc) from None
        raise
    _batch_entries([e for w in writes for e in w.after], delete=True)


def execute_packed(
    writes: list[tuple[K, ProfileWrite]],
) -> Iterator[tuple[K, ProfileWrite, DomainError | None]]:
    """Run ``(key, write)`` pairs packed into transactions of at most MAX_TRANSACTION_ITEMS
    items. A cancelled transaction is retried write by write, so each write gets its own
    outcome. Yields ``(key, write, None)`` for a write done, ``(key, write, error)`` for one
    that failed, a transaction's outcomes once it (and its retries) have run."""
    for group in _pack(writes):
        try:
            execute([w for _, w in group])
            outcomes: list[tuple[K, ProfileWrite, DomainError | None]] = [(key, w, None) for key, w in group]
        except DomainError:
            outcomes = [(key, w, _execute_alone(w)) for key, w in group]
        yield from outcomes


def _execute_alone(write: ProfileWrite) -> DomainError | None:
    try:
        execute([write])
    except DomainError as exc:
        return exc
    return None


def _pack(writes: list[tuple[K, ProfileWrite]]) -> Iterator[list[tuple[K, ProfileWrite]]]:
    group: list[tuple[K, ProfileWrite]] = []
    size = 0
    for entry in writes:
        n = len(entry[1].ops)
        if group and size + n > MAX_TRANSACTION_ITEMS:
            yield group
            group, size = [], 0
        group.append(entry)
        size += n
    if group:
        yield group


def _batch_entries(entries: list[IndexEntryItem], *, delete: bool) -> None:
    if not entries:
        return
    with IndexEntryItem.batch_write() as batch:
        for entry in entries:
            batch.delete(entry) if delete else batch.save(entry)


def _explain(exc: Cancelled) -> DomainError:
    """The first failed part, in the order sent: a stale profile is 412, a taken guard
    409 naming its holder (+1 GetItem), a guard given up concurrently 412; a cancellation
    without a failed condition (a lost race) is a retryable 409."""
    for part in exc.failed:
        item, fld = part.item, part.role
        if isinstance(item, CustomerItem):
            return PreconditionFailed(
                f"customer {item.customer_id} was changed by another request; re-read it and retry",
                field=EXPECTED_VERSION,
            )
        if isinstance(item, GuardItem) and part.kind == "save":
            try:
                holder = GuardItem.get(item.pk, "U", consistent_read=True).customer_id
            except GuardItem.DoesNotExist:
                holder = None
            return Conflict(
                f"another customer already has this {fld}",
                field=fld,
                existing_customer_id=holder,
                code="duplicate_customer",
            )
        return PreconditionFailed("a concurrent request changed this customer; retry", field=fld)
    codes = {c for c in exc.codes if c}
    return Conflict(
        f"the write conflicted with a concurrent request ({', '.join(sorted(codes)) or 'transaction cancelled'}); retry",
        code="transaction_conflict",
    )
