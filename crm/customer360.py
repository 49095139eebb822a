"""The 360 view: profile, points, recent orders and the latest timeline entries in one Query."""
from __future__ import annotations

from pydantic import BaseModel, Field

from crm import ids
from crm.context import TenantContext
from crm.customers import records
from crm.customers.schemas import Customer, TimelineEvent
from crm.customers.service import timeline_query
from crm.errors import NotFound
from crm.loyalty.schemas import Loyalty
from crm.loyalty.service import balance
from crm.orders.schemas import OrderSummary
from crm.storage import CustomerItem, EventItem, LoyaltyItem, RecentOrdersItem

TIMELINE_IN_360 = 20


class Customer360(BaseModel):
    customer: Customer
    loyalty: Loyalty | None = None
    recent_orders: list[OrderSummary] | None = Field(
        description="null when the key lacks the orders:read scope")
    timeline: list[TimelineEvent]


def view_360(ctx: TenantContext, customer_id: str) -> Customer360:
    """1 Query: ``PROFILE``, ``ORDERS`` (the 10 latest in brief), ``LOYALTY`` (the points
    book) and the newest ``EV#`` entries are adjacent in the customer's item collection,
    read newest first."""
    if not ids.CUSTOMER_ID.match(customer_id):
        raise NotFound(f"customer {customer_id} not found")
    rows = timeline_query(ctx, customer_id, TIMELINE_IN_360 + 3, None)
    if not rows or not isinstance(rows[0], CustomerItem):
        raise NotFound(f"customer {customer_id} not found")
    recent = next((r.recent for r in rows if isinstance(r, RecentOrdersItem)), [])
    book = next((r for r in rows if isinstance(r, LoyaltyItem) and r.book), None)
    events = [records.to_event(r) for r in rows[1:] if isinstance(r, EventItem)]
    return Customer360(customer=records.to_customer(rows[0]), recent_orders=recent,
                       # as of the book's last change (GET …/loyalty applies what fell due since)
                       loyalty=balance(book.customer_id, book.book, book.updated_at) if book else None,
                       timeline=events[:TIMELINE_IN_360])
