"""The sink's B2B part (connectors/sink.py): account records, contacts, account orders and
invoices, written through crm.accounts.

Order independence: a contact, an order or an invoice may name an account (by its
external id in the same source) before the account's own record arrived. The sink then
creates a *stub* account that holds only that external id (``stub: true``, no name); the
account record fills it when it comes, and everything linked to the stub stays linked.
"""

from __future__ import annotations

from typing import Any

from connectors.sdk.base import AccountRecord, CustomerRecord, InvoiceRecord, OrderRecord
from crm.context import TenantContext


def account_ids(ctx: TenantContext, source: str, external_ids: list[str]) -> dict[str, str]:
    """external id -> account id (stubs created for unknown ones): crm.accounts.service.resolve."""
    from crm.accounts import service

    return service.resolve(ctx, source, external_ids) if external_ids else {}


def accounts(ctx: TenantContext, source: str, stream: str, records: list[AccountRecord], out: Any) -> None:
    """Each account record upserted by (source, external id); an older ``updated_at`` than
    the last applied changes nothing (``unchanged``); a stub filled counts as created."""
    from crm.accounts import service

    latest: dict[str, AccountRecord] = {}
    for r in records:  # the same account twice in a page: its newest version
        if r.external_id not in latest or r.updated_at >= latest[r.external_id].updated_at:
            latest[r.external_id] = r
    newest = [r for r in records if latest[r.external_id] is r]
    results = service.upsert_many(ctx, source, [(r.external_id, r.updated_at, dict(r.profile or {})) for r in newest])
    done_of = {id(r): done for r, done in zip(newest, results, strict=True)}
    for r in records:
        if latest[r.external_id] is not r:
            out.add("unchanged")
            continue
        done = done_of[id(r)]
        if done.status == "error":
            out.reject(stream, r.external_id, done.error or "invalid account", done.errors)
        else:
            out.add(done.status)


def contacts(
    ctx: TenantContext, source: str, stream: str, people: list[tuple[str, CustomerRecord, str | None]], out: Any
) -> None:
    """Link each resolved customer to the account its record names. The customer itself
    was counted by the customers' upsert (its status is the tuple's third item); a contact
    whose profile is unchanged but whose link moved to another account or changed its role
    counts as updated instead (the run shows the move). A link that fails is reported
    among the rejected with its reason, not counted twice."""
    from crm.accounts import contacts as service
    from crm.errors import DomainError

    ids = account_ids(ctx, source, [r.account for _, r, _ in people if r.account])
    links = [(ids[r.account or ""], cid, r.role, r.updated_at) for cid, r, _ in people]
    for (_, r, counted), done in zip(people, service.link_many(ctx, source, links), strict=True):
        if isinstance(done, DomainError):
            out.rejected.append(
                {
                    "stream": stream,
                    "external_id": r.external_id,
                    "errors": [],
                    "reason": f"the contact's link to account {r.account} was not written: {done}",
                }
            )
        elif counted == "unchanged" and done.status != "unchanged":
            out.counts["unchanged"] -= 1
            out.add("updated")


def account_order(source: str, o: OrderRecord, order_id: str | None, customer_id: str | None) -> dict[str, Any]:
    """The account's item for an order (crm/accounts/orders.py): the brief of a contact's
    order, or the whole order when the company ordered without a contact person (pure)."""
    from crm.accounts import orders

    refunded = sum(r.amount for r in o.refunds)
    data: dict[str, Any] = {
        "order_id": order_id,
        "customer_id": customer_id,
        "source": source,
        "external_id": o.external_id,
        "channel": o.channel if o.channel in ("web", "mobile", "tv", "store", "marketplace") else None,
        "status": orders.vendor_status(o.paid_at, o.fulfilled_at, o.cancelled_at, refunded, o.total),
        "currency": o.currency,
        "total": o.total,
        "placed_at": o.placed_at,
        "source_updated_at": o.updated_at,
    }
    if customer_id is None:  # the only copy: keep the order whole
        data.update(
            lines=[{k: v for k, v in vars(line).items() if v is not None} for line in o.lines],
            discount=o.discount,
            shipping=o.shipping,
            tax=o.tax,
            paid_at=o.paid_at,
            fulfilled_at=o.fulfilled_at,
            cancelled_at=o.cancelled_at,
            refunded_amount=refunded,
        )
    return data


def account_orders(ctx: TenantContext, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """A page's account orders (account id, :func:`account_order` data) written at once:
    created, updated or unchanged each (crm.accounts.orders.record_many)."""
    from crm.accounts import orders

    return orders.record_many(ctx, entries) if entries else []


def invoices(ctx: TenantContext, source: str, stream: str, records: list[InvoiceRecord], out: Any,
             buyers: dict[int, str | None]) -> None:  # fmt: skip
    """Each invoice validated, its account resolved (a stub if unknown) and its buyer as an
    order's, then upserted (crm/accounts/invoices.py). An invoice with neither an account
    nor a buyer is rejected: it would belong to no one."""
    from pydantic import ValidationError

    from crm.accounts import invoices as service
    from crm.accounts.schemas import InvoiceWrite
    from crm.errors import field_errors

    ids = account_ids(ctx, source, [r.account for r in records if r.account])
    ready: list[service.IncomingInvoice] = []
    for i, r in enumerate(records):
        aid, cid = ids.get(r.account or ""), buyers.get(i)
        if aid is None and cid is None:
            out.reject(stream, r.external_id, "the invoice names no account and its buyer could not be resolved "
                       "to one customer: it would belong to no one")  # fmt: skip
            continue
        try:
            body = InvoiceWrite.model_validate({
                "number": r.number, "status": r.status, "currency": r.currency, "issued_at": r.issued_at,
                "due_at": r.due_at, "payment_terms": r.payment_terms, "total": r.total, "outstanding": r.outstanding,
                "tax": r.tax, "paid_at": r.paid_at, "cancelled_at": r.cancelled_at,
                "credit_note": r.credit_note, "return_against": r.return_against,
                "lines": [{k: v for k, v in vars(line).items() if v is not None} for line in r.lines]})  # fmt: skip
        except ValidationError as exc:
            errors = field_errors(exc)
            out.reject(stream, r.external_id, f"invalid invoice: {errors[0]['field']}: {errors[0]['message']}", errors)
            continue
        ready.append(service.IncomingInvoice(r.external_id, r.updated_at, body, aid, cid, r.order))
    for start in range(0, len(ready), 100):
        chunk = ready[start : start + 100]
        for inv, done in zip(chunk, service.upsert(ctx, source, chunk), strict=True):
            if done.status == "error":
                out.reject(stream, inv.external_id, done.error or "the invoice was not written")
            else:
                out.add(done.status)
