"""The 360 view: profile, metrics and segments, points, recent orders and the latest
timeline entries in one Query."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from crm import clock, ids
from crm.context import TenantContext
from crm.customers import records
from crm.customers.schemas import Customer, TimelineEvent
from crm.customers.service import timeline_query
from crm.errors import NotFound
from crm.loyalty.book import Book
from crm.loyalty.schemas import Loyalty
from crm.loyalty.service import PROGRAM, _view, program_pk
from crm.orders.schemas import OrderSummary
from crm.segments.view import metrics_block
from crm.shipments.schemas import ShipmentBrief
from crm.storage import (
    CustomerItem,
    EventItem,
    LoyaltyItem,
    LoyaltyProgramItem,
    MetricsItem,
    RecentOrdersItem,
    RecentShipmentsItem,
)

TIMELINE_IN_360 = 20


class AccountRef(BaseModel):
    """The account the customer is a contact of (crm/accounts)."""

    id: str
    name: str | None = None
    role: str | None = None


class Customer360(BaseModel):
    customer: Customer
    account: AccountRef | None = Field(default=None, description="the B2B account the customer is a contact of")
    loyalty: Loyalty | None = None
    recent_orders: list[OrderSummary] | None = Field(description="null when the key lacks the orders:read scope")
    recent_shipments: list[ShipmentBrief] | None = Field(
        default=None, description="the 5 latest shipments in brief; null when the key lacks the orders:read scope"
    )
    timeline: list[TimelineEvent]


def view_360(ctx: TenantContext, customer_id: str) -> Customer360:
    """1 Query: ``PROFILE``, ``PARCELS`` (the 5 latest shipments in brief), ``ORDERS`` (the
    10 latest in brief), ``METRICS`` (the customer's ``metrics`` block: orders aggregate, RFM, lifetime value, VIP, segments),
    ``LOYALTY`` (the points book) and the newest ``EV#`` entries are adjacent in the
    customer's item collection,
    read newest first. +1 BatchGetItem when the customer has a points book (the program:
    the loyalty block is exactly what ``GET …/loyalty`` answers, tier progress, lots,
    what fell due since the last write, and both need the program for that) or is a
    contact of an account (its name), both in that one request: at most 2 requests."""
    if not ids.CUSTOMER_ID.match(customer_id):
        raise NotFound(f"customer {customer_id} not found")
    # the 5 items above the timeline (PROFILE, PARCELS, ORDERS, METRICS, LOYALTY), then its entries
    rows = timeline_query(ctx, customer_id, TIMELINE_IN_360 + 5, None)
    if not rows or not isinstance(rows[0], CustomerItem):
        raise NotFound(f"customer {customer_id} not found")
    recent: list[dict[str, Any]] = next((r.recent for r in rows if isinstance(r, RecentOrdersItem)), [])
    parcels: list[dict[str, Any]] = next((r.recent for r in rows if isinstance(r, RecentShipmentsItem)), [])
    book = next((r for r in rows if isinstance(r, LoyaltyItem) and r.book), None)
    events = [records.to_event(r) for r in rows[1:] if isinstance(r, EventItem)]
    customer = records.to_customer(rows[0])
    metrics = next((r for r in rows if isinstance(r, MetricsItem)), None)
    if metrics is not None and rows[0].status == "active":
        customer.metrics = metrics_block(metrics)
    account_id = (rows[0].data or {}).get("account_id") if rows[0].status == "active" else None
    extra = _extra(ctx, bool(book), account_id)
    account = None
    if account_id:
        named = extra.get("account")
        account = AccountRef(
            id=account_id,
            name=(named.data or {}).get("name") if named is not None else None,
            role=(rows[0].data or {}).get("account_role"),
        )
    return Customer360(
        customer=customer,
        account=account,
        recent_orders=[OrderSummary.model_validate(r) for r in recent],
        recent_shipments=[ShipmentBrief.model_validate(r) for r in parcels],
        loyalty=_loyalty(book, extra.get("program")) if book else None,
        timeline=events[:TIMELINE_IN_360],
    )


def _extra(ctx: TenantContext, program: bool, account_id: str | None) -> dict[str, Any]:
    """1 BatchGetItem of what the 360 needs beyond the partition: the loyalty program
    and the customer's account (its name); none when it needs neither."""
    from crm.storage import AccountItem, Item

    wanted: dict[tuple[str, str], str] = {}
    if program:
        wanted[(program_pk(ctx), PROGRAM)] = "program"
    if account_id:
        wanted[(ctx.key("A", account_id), "PROFILE")] = "account"
    if not wanted:
        return {}
    out: dict[str, Any] = {}
    for item in Item.batch_get(list(wanted), consistent_read=True):
        name = wanted.get((item.pk, item.sk))
        if (
            name == "program"
            and isinstance(item, LoyaltyProgramItem)
            or name == "account"
            and isinstance(item, AccountItem)
        ):
            out[name] = item
    return out


def _loyalty(item: LoyaltyItem, program_item: LoyaltyProgramItem | None) -> Loyalty:
    """The balance as of now, as crm.loyalty.service.view computes it."""
    program = program_item.data if program_item is not None else None
    book = Book(item.book, program)
    at = clock.now_iso()
    book.catch_up(at)
    return _view(item.customer_id, book, at)
