"""Shipments between the providers and crm: ``POST /v1/shipments`` (a tracker created
through the tenant's shipping connection, then the shipment registered), provider
records (streams, webhooks) folded into shipments, e-commerce fulfilments registered the
same way, and the re-poll schedule's work. crm never calls a vendor; this module does,
with the connection's decrypted config (docs/shipping.md).

Requests (measured in tests/integration/test_shipments.py): ``create`` of a new parcel =
5 GetItem (the tracking number, the order's pointer and the order, then register's
tracking number and order pointer) + 2 BatchGetItem (the connection; the shipment's
partition) + 1 TransactWriteItems, plus 1 KMS Decrypt (cached) and the provider's POST;
a repeat = 2 GetItem + 2 BatchGetItem and no provider call.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from connectors import connections
from connectors.sdk.base import OrderTracking, ShipmentRecord
from crm.context import TenantContext
from crm.errors import Conflict, DomainError, Invalid, Unavailable
from crm.shipments import service
from crm.shipments.schemas import Shipment, ShipmentCreate

log = logging.getLogger(__name__)
RETRY_AFTER_OUTAGE = timedelta(minutes=30)
RETRY_WITHOUT_CONNECTION = timedelta(days=1)
CALL_TIMEOUT = 8.0  # seconds per provider request (connect: 5 s)


def to_tracker(record: ShipmentRecord, connection_id: str | None, connector: str | None) -> service.Tracker:
    return service.Tracker(
        tracking_number=record.tracking_number,
        carrier=record.carrier,
        status=record.status,
        updated_at=record.updated_at,
        tracker_id=record.external_id,
        checkpoints=[
            {k: v for k, v in vars(cp).items() if v is not None} for cp in record.checkpoints
        ],
        status_detail=record.status_detail,
        est_delivery_at=record.est_delivery_at,
        url=record.url,
        order_id=record.order_id,
        event_id=record.event_id,
        order_ref=record.order_ref,
        order_number=record.order_number,
        connection_id=connection_id,
        connector=connector,
    )


def _shipping_connection(ctx: TenantContext, connection_id: str, field: str = "connection_id") -> tuple[Any, Any]:
    """(connector class, connection item) of a tracking-capable connection, or a 422."""
    from crm.errors import NotFound

    try:
        item, _ = connections.load(ctx, connection_id)
    except NotFound:
        raise Invalid(f"connection {connection_id} not found", field=field, code="connection_not_found") from None
    cls = connections.connector(item.connector)
    if not getattr(cls, "tracking", False):
        raise Invalid(
            f"connection {connection_id} is a {cls.name} connection, not a shipping provider "
            "(easypost, aftership): it cannot track parcels",
            field=field,
            code="not_a_shipping_connector",
        )
    if item.status != "active":
        raise Conflict(f"connection {connection_id} is paused: PATCH status active to resume",
                       field=field, code="connection_paused")
    return cls, item


def _call(cls: Any, ctx: TenantContext, item: Any, action: str, *args: Any) -> ShipmentRecord:
    """``create_tracker`` / ``fetch_tracker`` through the connection's client, errors as the
    API's: the provider refusing → 422 ``provider_refused`` (its status, never its body),
    unreachable or throttling → 503 ``provider_unavailable``."""
    from connectors.sdk.errors import RateLimited, VendorError

    config = connections.config_of(ctx, item)
    conn = cls()
    # bounded: an API request must answer within API Gateway's 29 s, and the re-poll
    # postpones a provider that cannot answer now rather than spend its run backing off
    client = conn.client(config, retries=1, max_wait=0, timeout=CALL_TIMEOUT)
    try:
        return getattr(conn, action)(config, client, *args)
    except RateLimited as exc:
        raise Unavailable(f"{cls.title or cls.name} is rate limiting; retry later", code="provider_unavailable",
                          retry_after=int(exc.retry_after + 0.999)) from None
    except VendorError as exc:
        if exc.status is not None and 400 <= exc.status < 500:
            raise Invalid(f"{cls.title or cls.name} refused the tracker: {exc}", field="tracking_number",
                          code="provider_refused", vendor_status=exc.status) from None
        raise Unavailable(f"{cls.title or cls.name} could not be reached: {exc}", code="provider_unavailable",
                          vendor_status=exc.status) from None
    finally:
        client.close()


def create(ctx: TenantContext, body: ShipmentCreate) -> tuple[Shipment, bool]:
    """POST /v1/shipments: a known tracking number answers its shipment (no provider call);
    else the order must exist, the connection must track parcels, and the provider must
    accept the tracker before anything is written."""
    existing = service.by_tracking_number(ctx, body.tracking_number)
    if existing:
        return service.register(ctx, body.order_id, body.carrier, body.tracking_number)
    from crm.orders import service as orders

    try:
        orders.get(ctx, body.order_id)
    except DomainError:
        raise Invalid(f"order {body.order_id} not found", field="order_id", code="order_not_found") from None
    cls, item = _shipping_connection(ctx, body.connection_id)
    record = _call(cls, ctx, item, "create_tracker", body.tracking_number, body.carrier, body.order_id)
    tracker = to_tracker(record, item.connection_id, cls.name)
    tracker.tracking_number = body.tracking_number  # as the client wrote it (the provider may reformat it)
    return service.register(ctx, body.order_id, body.carrier, body.tracking_number, tracker=tracker)


def write(ctx: TenantContext, connection_id: str | None, connector: str | None, records: list[ShipmentRecord],
          out: Any) -> None:
    """A page of provider records (a stream page, a webhook): each updates its shipment."""
    find_order = order_finder(ctx)
    trackers = [to_tracker(record, connection_id, connector) for record in records]
    for record, outcome in zip(records, service.apply_page(ctx, trackers, find_order), strict=True):
        if outcome.status == "rejected":
            out.reject("shipments", record.external_id, outcome.reason or "rejected")
        else:
            out.add(outcome.status)


def order_finder(ctx: TenantContext) -> service.OrderFinder:
    """Resolves what a provider kept of the shop's order to a Rapport order: the shop's own
    order id (AfterShip's ``order_id``), the order with that external id in one of the
    tenant's connected sources (Shopify, WooCommerce, an ERP...); else the order number
    the buyer knows (AfterShip's ``order_number``, ``#1001`` = ``1001``) when exactly one
    order has it: several (two shops both at ``#1001``) is a clear refusal, not a guess.
    Asked only for a tracker no shipment is registered for: by id 1 Query of the
    connections (once per page), then 1-2 GetItem per source tried; by number 1 Query
    (+1 BatchGetItem)."""
    from crm.orders import filters

    sources: list[str] | None = None

    def find(ref: str | None, number: str | None) -> str | None:
        nonlocal sources
        if ref:
            if sources is None:
                listed = connections.list_connections(ctx, limit=100, cursor=None).items
                sources = sorted({c.connector for c in listed
                                  if not getattr(connections.connector(c.connector), "tracking", False)})
            for source in sources:
                found = filters.by_external_id(ctx, source, ref).items
                if found:
                    return found[0].id
        if number:
            orders = filters.by_number(ctx, number).items
            if len(orders) > 1:
                raise Conflict(
                    f"order number {number!r} names {len(orders)} orders "
                    f"({', '.join(sorted(f'{o.source} {o.external_id}' for o in orders))}); register the "
                    "shipment with POST /v1/shipments and the order's id",
                    field="order_number", code="ambiguous_order_number")
            if orders:
                return orders[0].id
        return None

    return find


def register_fulfilments(ctx: TenantContext, source: str, order_id: str, parcels: list[OrderTracking]) -> int:
    """An imported order's parcels, registered like ``POST /v1/shipments`` but without a
    provider call: the re-poll schedule creates their trackers through the tenant's
    shipping connection. Returns how many were new."""
    new = 0
    for parcel in parcels:
        try:
            _, created = service.register(ctx, order_id, parcel.carrier or "unknown", parcel.tracking_number,
                                          source=source, shipped_at=parcel.shipped_at)
        except DomainError as exc:  # another order's tracking number, a bad number
            log.info("fulfilment parcel not registered", extra={"order_id": order_id, "reason": str(exc)})
            continue
        new += created
    return new


def repoll(now: str, limit: int, time_left: Any = None) -> dict[str, int]:
    """The schedule's work: every due, non-terminal shipment is asked of its provider
    again (or gets its tracker created, for one an import registered); a provider that
    cannot answer now is asked again later. Idempotent: what is already known changes
    nothing; bounded: at most ``limit`` shipments, and stops when time runs short."""
    from connectors.sdk.errors import RateLimited, VendorError

    counts = {"polled": 0, "updated": 0, "unchanged": 0, "postponed": 0, "created": 0}
    shipping: dict[str, tuple[Any, Any] | None] = {}
    active: dict[str, bool] = {}
    for item in service.due(now, limit):
        if time_left is not None and time_left() < 10:
            break
        ctx = TenantContext(item.pk.split("#", 2)[1])
        if not connections.tenant_active(ctx, active):
            service.postpone(ctx, item, RETRY_WITHOUT_CONNECTION)
            counts["postponed"] += 1
            continue
        provider = item.provider or {}
        try:
            if provider.get("connection_id"):
                cls, conn = _shipping_connection(ctx, provider["connection_id"])
                record = _call(cls, ctx, conn, "fetch_tracker", provider.get("tracker_id") or "",
                               item.tracking_number, item.carrier)
            else:
                found = shipping.get(ctx.tenant_id, ...)  # type: ignore[arg-type]
                if found is ...:
                    found = shipping[ctx.tenant_id] = _tenant_shipping(ctx)
                if found is None:
                    service.postpone(ctx, item, RETRY_WITHOUT_CONNECTION)
                    counts["postponed"] += 1
                    continue
                cls, conn = found
                carrier = None if item.carrier == "unknown" else item.carrier
                record = _call(cls, ctx, conn, "create_tracker", item.tracking_number, carrier, item.order_id)
                counts["created"] += 1
            counts["polled"] += 1
            tracker = to_tracker(record, conn.connection_id, cls.name)
            tracker.tracking_number = item.tracking_number
            outcome = service.apply(ctx, tracker)
        except (DomainError, VendorError, RateLimited) as exc:
            log.info("shipment re-poll postponed", extra={"shipment_id": item.shipment_id, "reason": str(exc)})
            service.postpone(ctx, item, RETRY_AFTER_OUTAGE)
            counts["postponed"] += 1
            continue
        if outcome.status == "unchanged":
            service.postpone(ctx, item, service.poll_interval())
            counts["unchanged"] += 1
        else:
            counts["updated"] += 1
    return counts


def _tenant_shipping(ctx: TenantContext) -> tuple[Any, Any] | None:
    """The tenant's first active shipping connection (1 Query of its connections)."""
    cursor = None
    while True:
        page = connections.list_connections(ctx, limit=100, cursor=cursor)
        for c in page.items:
            cls = connections.registry.get(c.connector)
            if cls is not None and getattr(cls, "tracking", False) and c.status == "active":
                return _shipping_connection(ctx, c.id)
        cursor = page.next_cursor
        if not cursor:
            return None
