"""Records -> crm: customers through identity resolution, orders through the batch import.

The same crm services back the API, so a synced customer or order is validated, guarded
and evented exactly like one created by a client (loyalty points follow paid orders).

Per page: the customers (and the buyers embedded in orders) go through
``crm.identity.upsert`` (a page per call), then the orders through
``crm.orders.imports.import_orders`` with the resolved customer ids. Each record ends as
created, updated, unchanged, conflict or rejected (with the reason).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.sdk.base import (
    AccountRecord,
    CheckoutRecord,
    CustomerRecord,
    InvoiceRecord,
    OrderRecord,
    Rejected,
    ShipmentRecord,
)
from crm.context import TenantContext

CHUNK = 250  # a whole vendor page per call: the identity settings read once, transactions packed across it


@dataclass
class Outcome:
    """What writing one page did: counts by status, and the rejected records."""

    counts: dict[str, int] = field(default_factory=lambda: {
        "read": 0, "created": 0, "updated": 0, "unchanged": 0, "rejected": 0, "conflicts": 0})
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def add(self, status: str) -> None:
        key = {"conflict": "conflicts", "error": "rejected"}.get(status, status)
        self.counts[key] = self.counts.get(key, 0) + 1

    def reject(self, stream: str, external_id: str | None, reason: str,
               errors: list[dict[str, Any]] | None = None) -> None:
        self.add("rejected")
        self.rejected.append({"stream": stream, "external_id": external_id, "reason": reason,
                              "errors": errors or []})


def _reason(result: Any) -> tuple[str, list[dict[str, Any]]]:
    error = getattr(result, "error", None)
    return (getattr(error, "detail", None) or str(error) or "rejected"), list(getattr(result, "errors", []) or [])


def _customers(ctx: TenantContext, source: str, stream: str, records: list[CustomerRecord],
               out: Outcome | None, fill_only: bool = False,
               conflicts: dict[int, str] | None = None, statuses: dict[int, str] | None = None,
               profiles: dict[str, Any] | None = None) -> dict[int, str | None]:
    """Resolve and upsert; returns {position: customer id or None}; ``conflicts`` gets
    {position: conflict id} of the records held back for an identity conflict, ``statuses``
    {position: created | updated | unchanged | conflict | error}, ``profiles`` {customer id:
    profile} as resolution left them (the order import need not read them)."""
    from crm import identity

    ids: dict[int, str | None] = {}
    for start in range(0, len(records), CHUNK):
        chunk = records[start:start + CHUNK]
        # the vendor's times: an older version of a record never overwrites a newer one,
        # and the first-seen time is kept per source
        results = identity.upsert(ctx, source, [(r.external_id, r.profile, {
            "updated_at": r.updated_at, "created_at": getattr(r, "created_at", None)}) for r in chunk],
            fill_only=fill_only)
        for r, rec in zip(results, chunk, strict=True):
            ids[start + r.index] = r.customer_id
            if statuses is not None:
                statuses[start + r.index] = r.status
            if profiles is not None and r.customer_id and r.profile is not None:
                profiles[r.customer_id] = r.profile
            if r.status == "conflict" and conflicts is not None and r.conflict_id:
                conflicts[start + r.index] = r.conflict_id
            if out is None:
                continue
            if r.status == "error":
                reason, errors = _reason(r)
                out.reject(stream, rec.external_id, reason, errors)
            elif r.status == "conflict":
                out.add("conflict")
                reason, errors = _reason(r)
                out.rejected.append({"stream": stream, "external_id": rec.external_id,
                                     "reason": f"identity conflict {r.conflict_id}, recorded for review "
                                               f"(GET /v1/identity/conflicts): {reason}",
                                     "errors": errors, "conflict_id": r.conflict_id})
            else:
                out.add(r.status)
    return ids


def _buyers(ctx: TenantContext, source: str, orders: list[OrderRecord] | list[CheckoutRecord] | list[InvoiceRecord],
            conflicts: dict[int, str] | None = None, profiles: dict[str, Any] | None = None) -> dict[int, str | None]:
    """The customer id of each order's buyer (embedded record, else the guest's email);
    ``conflicts`` gets {order position: conflict id} of buyers held back for a conflict."""
    people: list[CustomerRecord] = []
    slot: dict[int, int] = {}
    by_key: dict[str, int] = {}
    for i, o in enumerate(orders):
        if o.customer is not None:
            key, rec = f"x:{o.customer.external_id}", o.customer
        elif o.email:
            key, rec = f"e:{o.email.strip().lower()}", CustomerRecord(
                None, o.updated_at, {**(getattr(o, "guest_profile", None) or {}), "email": o.email})
        else:
            continue
        if key in by_key:  # one buyer in several orders of the page: resolved once, newest data
            j = by_key[key]
            if (rec.updated_at or "") > (people[j].updated_at or ""):
                people[j] = rec
        else:
            by_key[key] = len(people)
            people.append(rec)
        slot[i] = by_key[key]
    # an order's copy of its buyer is a snapshot (Shopify's says orders_count 0): it finds
    # or creates the customer and fills gaps, but never overwrites the customers stream
    held: dict[int, str] = {}
    resolved = _customers(ctx, source, "orders", people, None, fill_only=True, conflicts=held, profiles=profiles)
    if conflicts is not None:
        conflicts.update({i: held[j] for i, j in slot.items() if j in held})
    return {i: resolved.get(j) for i, j in slot.items()}


def _order_dict(o: OrderRecord, customer_id: str) -> dict[str, Any]:
    return {"external_id": o.external_id, "number": o.number, "customer_id": customer_id, "channel": o.channel,
            "currency": o.currency, "placed_at": o.placed_at,
            "lines": [{k: v for k, v in vars(line).items() if v is not None} for line in o.lines],
            "discount": o.discount, "shipping": o.shipping, "tax": o.tax, "total": o.total,
            "paid_at": o.paid_at, "fulfilled_at": o.fulfilled_at, "cancelled_at": o.cancelled_at,
            "cancel_reason": o.cancel_reason, "updated_at": o.updated_at,
            "refunds": [{k: v for k, v in vars(r).items() if v is not None} for r in o.refunds]}


def write(ctx: TenantContext, source: str, stream: str, records: list[Any], *,
          connection_id: str | None = None, orders_done: dict[str, dict[str, Any]] | None = None) -> Outcome:
    """Write one page of a stream's records; never raises for a bad record. Shipping
    providers' records update their shipments (connectors/shipping.py); an order's
    fulfilment parcels register theirs. ``orders_done`` gets, per written order's external
    id, ``{"status", "order_id", "customer_id"}`` (the on-premise agent answers per record)."""
    out = Outcome()
    out.counts["read"] = len(records)
    customers = [r for r in records if isinstance(r, CustomerRecord)]
    orders = [r for r in records if isinstance(r, OrderRecord)]
    for r in records:
        if isinstance(r, Rejected):
            out.reject(stream, r.external_id, r.reason)
    companies = [r for r in records if isinstance(r, AccountRecord)]
    if companies:  # first: the contacts, orders and invoices of this page name them
        from connectors import sink_accounts

        sink_accounts.accounts(ctx, source, stream, companies, out)
    if customers:
        statuses: dict[int, str] = {}
        resolved = _customers(ctx, source, stream, customers, out, statuses=statuses)
        contacts = [(resolved[i], r, statuses.get(i)) for i, r in enumerate(customers) if r.account and resolved.get(i)]
        if contacts:
            from connectors import sink_accounts

            sink_accounts.contacts(ctx, source, stream, contacts, out)  # type: ignore[arg-type]
    if orders:
        from connectors import sink_accounts
        from crm.orders import imports

        held: dict[int, str] = {}
        profiles: dict[str, Any] = {}
        buyers = _buyers(ctx, source, orders, held, profiles)
        account_ids = sink_accounts.account_ids(ctx, source, [o.account for o in orders if o.account])
        ready, positions = [], []
        kept: list[tuple[str, dict[str, Any]]] = []  # the accounts' items, written at once below
        counted: list[bool] = []  # whether the account's item is what the run counts for the order
        for i, o in enumerate(orders):
            cid = buyers.get(i)
            if cid is None and i not in held and o.account and o.customer is None and not o.email:
                # a company's order without a contact person: the account keeps it
                kept.append((account_ids[o.account], sink_accounts.account_order(source, o, None, None)))
                counted.append(True)
                continue
            if cid is None and i in held:
                out.add("conflict")
                out.rejected.append({"stream": stream, "external_id": o.external_id, "conflict_id": held[i],
                                     "reason": f"the order's buyer is held back by identity conflict {held[i]} "
                                               f"(GET /v1/identity/conflicts); resolve it, then sync again "
                                               "(a backfill) to import the order", "errors": []})
                continue
            if cid is None:
                out.reject(stream, o.external_id, "the order's buyer could not be resolved to one "
                           "customer (no customer record or email, an invalid one, or an identity conflict)")
                continue
            ready.append({**_order_dict(o, cid), **({"account_id": account_ids[o.account]} if o.account else {})})
            positions.append(o)
        parcels: list[tuple[str, Any]] = []
        for start in range(0, len(ready), CHUNK):
            results = imports.import_orders(ctx, source, ready[start:start + CHUNK], profiles=profiles)
            for r in results:
                o = positions[start + r.index]
                if r.status == "error":
                    reason, errors = _reason(r)
                    out.reject(stream, o.external_id, reason, errors)
                else:
                    out.add(r.status)
                    if orders_done is not None:
                        orders_done[o.external_id] = {"status": r.status, "order_id": r.order_id,
                                                      "customer_id": ready[start + r.index]["customer_id"]}
                    if o.account:  # the account's brief of its contact's order
                        kept.append((account_ids[o.account], sink_accounts.account_order(
                            source, o, r.order_id, ready[start + r.index]["customer_id"])))
                        counted.append(False)
                    if o.tracking and r.order_id:
                        parcels.extend((r.order_id, p) for p in o.tracking)
        for status, counts in zip(sink_accounts.account_orders(ctx, kept), counted, strict=True):
            if counts:
                out.add(status)
        if parcels:
            _parcels(ctx, source, parcels)
    invoices = [r for r in records if isinstance(r, InvoiceRecord)]
    if invoices:
        from connectors import sink_accounts

        sink_accounts.invoices(ctx, source, stream, invoices, out, _buyers(ctx, source, invoices))
    checkouts = [r for r in records if isinstance(r, CheckoutRecord)]
    if checkouts:
        _checkouts(ctx, source, stream, checkouts, out)
    shipments = [r for r in records if isinstance(r, ShipmentRecord)]
    if shipments:
        from connectors import shipping

        shipping.write(ctx, connection_id, source, shipments, out)
    return out


def _parcels(ctx: TenantContext, source: str, parcels: list[tuple[str, Any]]) -> None:
    """Register the imported orders' parcels not registered yet (1 BatchGetItem per 100
    to find them; a re-read page registers nothing again)."""
    from connectors import shipping
    from crm.shipments import service

    known = service.known(ctx, [p.tracking_number for _, p in parcels])
    by_order: dict[str, list[Any]] = {}
    for order_id, p in parcels:
        if p.tracking_number not in known:
            known.add(p.tracking_number)
            by_order.setdefault(order_id, []).append(p)
    for order_id, todo in by_order.items():
        shipping.register_fulfilments(ctx, source, order_id, todo)


def _checkouts(ctx: TenantContext, source: str, stream: str, checkouts: list[CheckoutRecord], out: Outcome) -> None:
    """Each checkout's buyer resolved as an order's, then the checkout recorded once
    (``<source>:<external id>``; crm/journeys/checkouts.py): created, or unchanged."""
    from pydantic import ValidationError

    from crm.errors import DomainError
    from crm.journeys import checkouts as service
    from crm.journeys.api_schemas import CheckoutStart

    buyers = _buyers(ctx, source, checkouts)
    for i, c in enumerate(checkouts):
        cid = buyers.get(i)
        if cid is None:
            out.reject(stream, c.external_id, "the checkout's buyer could not be resolved to one customer")
            continue
        try:
            body = CheckoutStart.model_validate({
                "customer_id": cid, "checkout_id": f"{source}:{c.external_id}"[:100], "started_at": c.started_at,
                "currency": c.currency, "total": c.total, "url": c.url,
                "items": [{"sku": line.sku[:100], "name": line.name[:300], "quantity": line.quantity,
                           "unit_price": line.unit_price} for line in c.lines[:100]]})
            recorded = service.record(ctx, body)
        except ValidationError as exc:
            out.reject(stream, c.external_id, f"invalid checkout: {exc.errors()[0].get('msg')}")
            continue
        except DomainError as exc:
            out.reject(stream, c.external_id, str(exc))
            continue
        out.add("created" if recorded.created else "unchanged")
