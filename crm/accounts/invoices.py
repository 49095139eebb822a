"""Invoices: written by connectors (ERP sales invoices), read over the API.

An invoice is three copies written in one TransactWriteItems, so every list is one Query:
its home ``P INV#<id>`` / ``INVOICE`` (GET by id; gsi1 all, gsi2 per status), its
account's copy and its customer's copy (``A#INV#<issued_at>#<id>`` in their partitions).
The same transaction moves the account's balance (``SUMMARY``: what open invoices still
owe, per currency) by the difference the new version makes, conditional on the home's
version read: a concurrent or repeated write cannot count twice, and a version older
than the one stored (the vendor's ``updated_at``) changes nothing.

An invoice needs its account, its customer, or both: a company billed without a contact
person is an invoice of the account alone; a private buyer's is the customer's alone.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from crm import clock, packing, retry
from crm.accounts import keys
from crm.accounts.schemas import Invoice, InvoiceSummary, InvoiceWrite
from crm.context import TenantContext
from crm.customers import records
from crm.errors import Invalid, NotFound
from crm.paging import Page, decode_cursor, encode_cursor, start_key
from crm.storage import (
    AccountGuardItem,
    AccountInvoiceItem,
    AccountSummaryItem,
    CustomerInvoiceItem,
    GuardItem,
    InvoiceItem,
    Item,
)
from crm.tx import Cancelled, Tx

RECENT_KEPT = 10
ATTEMPTS = 6
_OWN = {"id", "status", "account_id", "customer_id", "overdue", "created_at", "updated_at"}  # the item's, not data's


# --- pure ----------------------------------------------------------------------------


def owed(status: str | None, data: dict[str, Any] | None, account_id: str | None) -> tuple[str, str, int] | None:
    """(account, currency, amount) an invoice adds to its account's balance: an open
    invoice's outstanding amount; a draft, paid or cancelled one adds nothing."""
    if not data or status != "open" or not account_id or not data.get("outstanding"):
        return None
    return account_id, data["currency"], int(data["outstanding"])


def overdue(status: str, data: dict[str, Any], now: str | None = None) -> bool:
    due = data.get("due_at")
    # a credit note (negative outstanding) is owed by the seller: never overdue
    return bool(status == "open" and due and (data.get("outstanding") or 0) > 0 and due < (now or clock.now_iso()))


def brief(invoice_id: str, status: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": invoice_id, "number": data["number"], "status": status, "currency": data["currency"],
            "total": data["total"], "outstanding": data["outstanding"], "issued_at": data["issued_at"],
            "due_at": data.get("due_at"), **({"credit_note": True} if data.get("credit_note") else {})}  # fmt: skip


def with_brief(recent: list[dict[str, Any]], entry: dict[str, Any] | None, drop: str | None = None) -> list[dict]:
    """The RECENT_KEPT newest invoices by issue date, ``entry`` in place (``drop``: an id to remove)."""
    kept = {b["id"]: b for b in recent if b["id"] != drop}
    if entry is not None:
        kept[entry["id"]] = entry
    return sorted(kept.values(), key=lambda b: (b["issued_at"], b["id"]), reverse=True)[:RECENT_KEPT]


def stored_data(source: str, external_id: str, body: InvoiceWrite, updated_at: str, order_id: str | None,
                order_external_id: str | None) -> dict[str, Any]:  # fmt: skip
    data = body.model_dump(mode="json", exclude_none=True)
    for name in ("issued_at", "due_at", "paid_at", "cancelled_at"):
        if getattr(body, name) is not None:
            data[name] = clock.iso(getattr(body, name))
    if body.status == "cancelled":
        data["outstanding"] = 0  # a cancelled invoice owes nothing
    data.update(source=source, external_id=external_id, source_updated_at=updated_at)
    if order_id:
        data["order_id"] = order_id
    if order_external_id:
        data["order_external_id"] = order_external_id
    return data


def to_invoice(item: Any, now: str | None = None) -> Invoice:
    d = item.data or {}
    return Invoice(id=item.invoice_id, status=item.status, account_id=item.account_id, customer_id=item.customer_id,
                   overdue=overdue(item.status, d, now), created_at=item.created_at, updated_at=item.updated_at,
                   **{k: v for k, v in d.items() if k in Invoice.model_fields and k not in _OWN})  # fmt: skip


def to_summary(entry: dict[str, Any], now: str | None = None) -> InvoiceSummary:
    return InvoiceSummary(**entry, overdue=overdue(entry["status"], entry, now))


# --- writes (the sink's) ---------------------------------------------------------------


@dataclass
class IncomingInvoice:
    external_id: str
    updated_at: str
    body: InvoiceWrite
    account_id: str | None
    customer_id: str | None
    order_external_id: str | None = None


@dataclass
class Written:
    status: str  # created | updated | unchanged | error
    invoice_id: str | None = None
    error: str | None = None


@dataclass
class _State:
    """What the writes of one page share: the summaries read, kept current after each commit."""

    summaries: dict[str, AccountSummaryItem | None] = field(default_factory=dict)


def upsert(ctx: TenantContext, source: str, incoming: list[IncomingInvoice], *, rounds: int = ATTEMPTS,
           ) -> list[Written]:  # fmt: skip
    """Write a page of invoices of ``source``. Reads: 1 BatchGetItem per 100 guards, then
    1 per 100 homes; only for the invoices that change, 1 per 100 keys of their accounts'
    summaries and the guards of the orders they bill not linked yet. Writes: the changed invoices' items (home, its copies, guard when new)
    packed into TransactWriteItems of up to 100 items, grouped by account so that each
    account's SUMMARY is written once per transaction with the sum of what its invoices
    move (conditional on its version). A version not newer than the stored one, or the
    same: ``unchanged``, no write. A cancelled transaction (a concurrent writer): its
    accounts' groups are read and written again (``rounds`` times at most, then invoice
    by invoice); an invoice that moves from one account to another is written alone."""
    guard_pks = [keys.guard_pk(ctx, "invoice", source, i.external_id) for i in incoming]
    guards: dict[str, str] = {}
    for chunk in packing.chunks([(pk, keys.GUARD) for pk in dict.fromkeys(guard_pks)], 100):
        for g in AccountGuardItem.batch_get(chunk, consistent_read=True):
            guards[g.pk] = g.target_id
    found = _batch(ctx, [(keys.invoice_pk(ctx, iid), keys.HOME) for iid in guards.values()])
    newest: dict[str, int] = {}  # the same invoice twice in a page: its newest version is written
    for n, inv in enumerate(incoming):
        j = newest.get(inv.external_id)
        if j is None or inv.updated_at >= incoming[j].updated_at:
            newest[inv.external_id] = n
    out: list[Written | None] = [None] * len(incoming)
    fallback: list[int] = []
    homes: dict[int, InvoiceItem | None] = {}
    for n, (inv, gpk) in enumerate(zip(incoming, guard_pks, strict=True)):
        if newest[inv.external_id] != n:
            continue
        iid = guards.get(gpk)
        home = found.get((keys.invoice_pk(ctx, iid), keys.HOME)) if iid else None
        if iid and not isinstance(home, InvoiceItem):
            fallback.append(n)  # a guard without its home: the single path sorts it out
            continue
        if not inv.order_external_id or (home is not None and (home.data or {}).get("order_id")):
            decided = _decide(source, inv, home, None)  # no order to look up: decided by the home alone
            if isinstance(decided, Written):
                out[n] = decided
                continue
        homes[n] = home
    # what only a change needs: the accounts' summaries, and the guards of orders not linked yet
    order_key = {n: ctx.key("U", "order", source, str(incoming[n].order_external_id)) for n in homes
                 if incoming[n].order_external_id}  # fmt: skip
    accounts = list(dict.fromkeys(a for n in homes if (a := incoming[n].account_id)))
    found = _batch(ctx, [*((keys.account_pk(ctx, a), keys.SUMMARY) for a in accounts),
                         *((pk, "U") for pk in order_key.values())])  # fmt: skip
    state = _State({a: found.get((keys.account_pk(ctx, a), keys.SUMMARY)) for a in accounts})
    groups: dict[str | None, list[_Plan]] = {}
    for n, home in homes.items():
        inv, gpk = incoming[n], guard_pks[n]
        order_guard = found.get((order_key[n], "U")) if n in order_key else None
        order_id = order_guard.order_id if isinstance(order_guard, GuardItem) else None
        decided = _decide(source, inv, home, order_id)
        if isinstance(decided, Written):
            out[n] = decided
            continue
        plan = _prepare(ctx, n, inv, gpk, guards.get(gpk), home, *decided)
        touched = {a for a in (plan.old[0] if plan.old else None, plan.item.account_id) if a}
        if len(touched) > 1:
            fallback.append(n)  # moves between accounts: rare, written alone
            continue
        groups.setdefault(next(iter(touched), None), []).append(plan)
    failed: set[str] = set()
    again: list[int] = []
    for unit, ok in packing.run(_units(ctx, state, groups), skip=lambda u: u.key in failed):
        if ok:
            for plan in unit.members:
                out[plan.index] = Written("created" if plan.is_new else "updated", plan.item.invoice_id)
            continue
        if unit.key is not None:
            failed.add(unit.key)  # its summary as held here is no longer the stored one
        again.extend(plan.index for plan in unit.members)
    if again and rounds > 1:  # a concurrent writer: those accounts' groups again, from fresh reads
        time.sleep(random.uniform(0, 0.05 * 2 ** (ATTEMPTS - rounds)))
        for n, written in zip(again, upsert(ctx, source, [incoming[n] for n in again], rounds=rounds - 1),
                              strict=True):  # fmt: skip
            out[n] = written
    else:
        fallback += again
    for n in sorted(fallback):
        out[n] = _fresh(ctx, source, incoming[n], guard_pks[n])
    for n, inv in enumerate(incoming):
        if out[n] is None:
            out[n] = Written("unchanged", out[newest[inv.external_id]].invoice_id)  # type: ignore[union-attr]
    return out  # type: ignore[return-value]


def _batch(ctx: TenantContext, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """1 BatchGetItem per 100 keys (none for none)."""
    found: dict[tuple[str, str], Any] = {}
    for chunk in packing.chunks(list(dict.fromkeys(wanted)), 100):
        found.update({(i.pk, i.sk): i for i in Item.batch_get(chunk, consistent_read=True)})
    return found


@dataclass
class _Plan:
    """One invoice's new version, ready to go into a transaction (all but the summary)."""

    index: int
    item: InvoiceItem
    old: tuple | None
    is_new: bool
    parts: list[Any]  # callables adding the home, copies, stale copies, guard to a Tx
    size: int


def _decide(source: str, inv: IncomingInvoice, home: InvoiceItem | None, order_id: str | None,
            ) -> Written | tuple[dict[str, Any], str]:  # fmt: skip
    """``unchanged`` (older or the same as stored), else the data and status to write."""
    if home is not None:
        seen = (home.data or {}).get("source_updated_at")
        if seen and inv.updated_at < seen:
            return Written("unchanged", home.invoice_id)  # older than what Rapport holds
        order_id = order_id or (home.data or {}).get("order_id")
    data = stored_data(source, inv.external_id, inv.body, inv.updated_at, order_id, inv.order_external_id)
    status = inv.body.status
    if home is not None and home.data == data and home.status == status and (
        home.account_id, home.customer_id) == (inv.account_id, inv.customer_id):  # fmt: skip
        return Written("unchanged", home.invoice_id)
    return data, status


def _units(ctx: TenantContext, state: _State, groups: dict[str | None, list[_Plan]]) -> list[packing.Unit]:
    """An account's plans in units of at most 99 items plus its SUMMARY (built when sent,
    so a second unit of the account carries on from the first one's summary); invoices
    of no account (a private buyer's) in units without a summary."""
    units: list[packing.Unit] = []
    for account, plans in groups.items():
        room = packing.MAX_ITEMS - (1 if account else 0)
        chunk: list[_Plan] = []
        for plan in [*plans, None]:
            if chunk and (plan is None or sum(p.size for p in chunk) + plan.size > room):
                units.append(packing.Unit(sum(p.size for p in chunk) + (1 if account else 0),
                                          _builder(ctx, state, account, chunk), account, chunk))  # fmt: skip
                chunk = []
            if plan is not None:
                chunk.append(plan)
    return units


def _builder(ctx: TenantContext, state: _State, account: str | None, plans: list[_Plan]) -> Any:
    def build(tx: Tx) -> None:
        for plan in plans:
            for part in plan.parts:
                part(tx)
        touched: dict[str, AccountSummaryItem] = {}  # the unit's one account: the deltas add up
        for plan in plans:
            touched.update((s.account_id, s) for s in _summaries(ctx, state, plan.item, plan.old))
        now = clock.now_iso()
        for summary in touched.values():
            summary.updated_at = now
            tx.save(summary, role="summary")

    return build


def _fresh(ctx: TenantContext, source: str, inv: IncomingInvoice, guard_pk: str) -> Written:
    """One invoice written alone from fresh reads (GetItems), with the single path's retries."""
    iid = _guard_target(guard_pk)
    try:
        home = InvoiceItem.get(keys.invoice_pk(ctx, iid), keys.HOME, consistent_read=True) if iid else None
    except InvoiceItem.DoesNotExist:
        home = None
    order_id = None
    if inv.order_external_id:
        try:
            order_id = GuardItem.get(ctx.key("U", "order", source, inv.order_external_id), "U",
                                     consistent_read=True).order_id  # fmt: skip
        except GuardItem.DoesNotExist:
            pass
    return _one(ctx, source, inv, guard_pk, iid, home, order_id, _State())


def _summary(ctx: TenantContext, state: _State, account_id: str) -> AccountSummaryItem:
    if account_id not in state.summaries:
        try:
            state.summaries[account_id] = AccountSummaryItem.get(keys.account_pk(ctx, account_id), keys.SUMMARY,
                                                                 consistent_read=True)  # fmt: skip
        except AccountSummaryItem.DoesNotExist:
            state.summaries[account_id] = None
    return state.summaries[account_id] or AccountSummaryItem(
        keys.account_pk(ctx, account_id), keys.SUMMARY, account_id=account_id, balance={}, open_invoices=0,
        orders=[], invoices=[])  # fmt: skip


def _one(ctx: TenantContext, source: str, inv: IncomingInvoice, guard_pk: str, iid: str | None,
         home: InvoiceItem | None, order_id: str | None, state: _State) -> Written:  # fmt: skip
    for _ in retry.backoff(ATTEMPTS):
        decided = _decide(source, inv, home, order_id)
        if isinstance(decided, Written):
            return decided
        data, status = decided
        try:
            return _commit(ctx, inv, guard_pk, iid, home, data, status, state)
        except Cancelled:
            # someone else wrote it (a concurrent sync, a merge): read it again
            for account in [a for a in (inv.account_id, home.account_id if home else None) if a]:
                state.summaries.pop(account, None)
            try:
                iid = iid or _guard_target(guard_pk)
                home = InvoiceItem.get(keys.invoice_pk(ctx, iid), keys.HOME, consistent_read=True) if iid else None
            except InvoiceItem.DoesNotExist:
                home = None
    return Written("error", iid, "the invoice kept changing concurrently; sync again")


def _guard_target(guard_pk: str) -> str | None:
    from crm.storage import AccountGuardItem

    try:
        return AccountGuardItem.get(guard_pk, keys.GUARD, consistent_read=True).target_id
    except AccountGuardItem.DoesNotExist:
        return None


def _commit(ctx: TenantContext, inv: IncomingInvoice, guard_pk: str, iid: str | None, home: InvoiceItem | None,
            data: dict[str, Any], status: str, state: _State) -> Written:  # fmt: skip
    """1 TransactWriteItems."""
    plan = _prepare(ctx, 0, inv, guard_pk, iid, home, data, status)
    tx = Tx()
    for part in plan.parts:
        part(tx)
    now = clock.now_iso()
    for summary in _summaries(ctx, state, plan.item, plan.old):
        summary.updated_at = now
        tx.save(summary, role="summary")
    tx.run()
    return Written("created" if plan.is_new else "updated", plan.item.invoice_id)


def _prepare(ctx: TenantContext, index: int, inv: IncomingInvoice, guard_pk: str, iid: str | None,
             home: InvoiceItem | None, data: dict[str, Any], status: str) -> _Plan:  # fmt: skip
    """The new version of the home (changed in place) and the parts that write it."""
    now = clock.now_iso()
    is_new = home is None
    parts: list[Any] = []
    if is_new:
        iid = iid or keys.invoice_id()
        guard = AccountGuardItem(guard_pk, keys.GUARD, target_id=iid)
        parts.append(lambda tx: tx.save(guard, AccountGuardItem.pk.does_not_exist(), role="guard"))
        item = InvoiceItem(keys.invoice_pk(ctx, iid), keys.HOME, invoice_id=iid, created_at=now)
    else:
        item = home  # type: ignore[assignment]
    old = (item.account_id, item.customer_id, item.status, dict(item.data or {})) if not is_new else None
    item.account_id, item.customer_id, item.status, item.data, item.updated_at = (
        inv.account_id, inv.customer_id, status, data, now)  # fmt: skip
    parts.append(lambda tx: tx.save(item, role="home"))  # new: must not exist; else conditional on the version
    copies = _copies(ctx, item)
    fresh = {(c.pk, c.sk) for c in copies}
    for stale in _copies_of_old(ctx, item, old):
        if (stale.pk, stale.sk) not in fresh:
            parts.append(lambda tx, stale=stale: tx.delete(stale, role="stale_copy", add_version_condition=False))
    for copy in copies:
        parts.append(lambda tx, copy=copy: tx.save(copy, role="copy"))
    return _Plan(index, item, old, is_new, parts, len(parts))


def _copies(ctx: TenantContext, item: InvoiceItem) -> list[Any]:
    values = {"invoice_id": item.invoice_id, "account_id": item.account_id, "customer_id": item.customer_id,
              "status": item.status, "data": item.data, "created_at": item.created_at, "updated_at": item.updated_at}  # fmt: skip
    sk = keys.invoice_copy_sk(item.data["issued_at"], item.invoice_id)
    out: list[Any] = []
    if item.account_id:
        out.append(AccountInvoiceItem(keys.account_pk(ctx, item.account_id), sk, **values))
    if item.customer_id:
        out.append(CustomerInvoiceItem(records.profile_pk(ctx, item.customer_id), sk, **values))
    return out


def _copies_of_old(ctx: TenantContext, item: InvoiceItem, old: tuple | None) -> list[Any]:
    if old is None:
        return []
    account_id, customer_id, _, data = old
    sk = keys.invoice_copy_sk(data["issued_at"], item.invoice_id)
    out: list[Any] = []
    if account_id:
        out.append(AccountInvoiceItem(keys.account_pk(ctx, account_id), sk))
    if customer_id:
        out.append(CustomerInvoiceItem(records.profile_pk(ctx, customer_id), sk))
    return out


def _summaries(ctx: TenantContext, state: _State, item: InvoiceItem, old: tuple | None) -> list[AccountSummaryItem]:
    """The summaries this version changes: the balance by (new owed - old owed) and the
    latest invoices' briefs (the invoice leaves an account it no longer bills)."""
    touched: dict[str, AccountSummaryItem] = {}
    before = owed(old[2], old[3], old[0]) if old else None
    after = owed(item.status, item.data, item.account_id)
    for sign, entry in ((-1, before), (1, after)):
        if entry is None:
            continue
        account, currency, amount = entry
        summary = touched.setdefault(account, _summary(ctx, state, account))
        balance = dict(summary.balance or {})
        balance[currency] = balance.get(currency, 0) + sign * amount
        summary.balance = {k: v for k, v in balance.items() if v}
        summary.open_invoices = int(summary.open_invoices or 0) + sign
    if old and old[0] and old[0] != item.account_id:
        summary = touched.setdefault(old[0], _summary(ctx, state, old[0]))
        summary.invoices = with_brief(list(summary.invoices or []), None, drop=item.invoice_id)
    if item.account_id:
        summary = touched.setdefault(item.account_id, _summary(ctx, state, item.account_id))
        summary.invoices = with_brief(list(summary.invoices or []), brief(item.invoice_id, item.status, item.data))
    for account, summary in touched.items():
        state.summaries[account] = summary  # its version moves on with the commit
    return list(touched.values())


# --- reads -----------------------------------------------------------------------------


def get(ctx: TenantContext, invoice_id: str) -> Invoice:
    """1 GetItem."""
    if not keys.INVOICE_ID.match(invoice_id):
        raise NotFound(f"invoice {invoice_id} not found")
    try:
        return to_invoice(InvoiceItem.get(keys.invoice_pk(ctx, invoice_id), keys.HOME, consistent_read=True))
    except InvoiceItem.DoesNotExist:
        raise NotFound(f"invoice {invoice_id} not found") from None


def list_invoices(ctx: TenantContext, *, limit: int, cursor: str | None = None, account_id: str | None = None,
                  customer_id: str | None = None, status: str | None = None) -> Page:  # fmt: skip
    """Newest issued first. An account's or a customer's: 1 Query of their partition's
    copies (with ``status``, filtered in that Query: it reads on until the page is full).
    By status alone: 1 Query on gsi2. All: 1 Query on gsi1. Never a Scan."""
    from crm import ids

    if account_id and customer_id:
        raise Invalid("give account_id or customer_id, not both", field="customer_id")
    scope = f"a:{account_id}" if account_id else f"c:{customer_id}" if customer_id else ""
    kind = f"invoices:{scope}:{status or ''}"
    after = decode_cursor(cursor, kind)
    now = clock.now_iso()
    if account_id or customer_id:
        if (
            account_id
            and not keys.ACCOUNT_ID.match(account_id)
            or customer_id
            and not ids.CUSTOMER_ID.match(customer_id)
        ):
            return Page([], None)
        model: Any = AccountInvoiceItem if account_id else CustomerInvoiceItem
        pk = keys.account_pk(ctx, account_id) if account_id else records.profile_pk(ctx, customer_id or "")
        if after is not None and not after.startswith(keys.INVOICE):
            raise Invalid("cursor is malformed", field="cursor")
        rows = list(model.query(
            pk, model.sk.startswith(keys.INVOICE), filter_condition=(model.status == status) if status else None,
            scan_index_forward=False, limit=limit + 1, page_size=max(limit + 1, 25), consistent_read=True,
            last_evaluated_key=None if after is None else start_key(pk=pk, sk=after)))  # fmt: skip
        more, rows = len(rows) > limit, rows[:limit]
        nxt = encode_cursor(kind, rows[-1].sk) if more else None
        return Page([to_invoice(r, now) for r in rows], nxt)
    index = InvoiceItem.gsi2 if status else InvoiceItem.gsi1
    gpk = ctx.key("INVOICES", status) if status else ctx.key("INVOICES")
    start = None
    if after is not None:
        iid = after.rsplit("#", 1)[-1]
        if not keys.INVOICE_ID.match(iid):
            raise Invalid("cursor is malformed", field="cursor")
        names = ("gsi2pk", "gsi2sk") if status else ("gsi1pk", "gsi1sk")
        start = start_key(**{names[0]: gpk, names[1]: after}, pk=keys.invoice_pk(ctx, iid), sk=keys.HOME)
    rows = list(index.query(gpk, scan_index_forward=False, limit=limit + 1, page_size=limit + 1,
                            last_evaluated_key=start))  # fmt: skip
    more, rows = len(rows) > limit, rows[:limit]
    nxt = encode_cursor(kind, rows[-1].gsi2sk if status else rows[-1].gsi1sk) if more else None
    return Page([to_invoice(r, now) for r in rows], nxt)


# --- merge (crm/merge.py) ----------------------------------------------------------------


def on_merge(ctx: TenantContext, survivor_id: str, other_id: str) -> int:
    """The merged-away customer's invoices become the survivor's, in all three copies:
    per 100, 1 Query of the other's copies + 1 BatchGetItem of the homes, then 1
    TransactWriteItems per invoice (home by version, account copy, the survivor's copy
    put and the other's deleted). A last empty Query ends it. Balances do not move."""
    o_pk = records.profile_pk(ctx, other_id)
    moved = 0
    races = retry.backoff(ATTEMPTS + 1)  # the first attempt, then a re-read per lost race
    next(races)
    while True:
        failed = False
        rows = list(CustomerInvoiceItem.query(o_pk, CustomerInvoiceItem.sk.startswith(keys.INVOICE), limit=100,
                                              page_size=100, consistent_read=True))  # fmt: skip
        if not rows:
            return moved
        homes = {h.invoice_id: h for h in InvoiceItem.batch_get(
            [(keys.invoice_pk(ctx, r.invoice_id), keys.HOME) for r in rows], consistent_read=True)}  # fmt: skip
        for row in rows:
            home = homes.get(row.invoice_id)
            tx = Tx()
            tx.delete(row, role="other", add_version_condition=False)
            if home is not None and home.customer_id in (other_id, survivor_id):
                home.customer_id = survivor_id
                tx.save(home, role="home")
                for copy in _copies(ctx, home):
                    tx.save(copy, role="copy")
            try:
                tx.run()
                moved += 1
            except Cancelled:
                failed = True  # the invoice was written meanwhile: the next round reads it again
        if failed and next(races, None) is None:
            from crm.errors import Conflict

            raise Conflict("the invoices changed concurrently; retry the merge", code="transaction_conflict")
