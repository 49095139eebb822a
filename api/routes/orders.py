"""/v1/orders: orders from every channel and their lifecycle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice import Blueprint

from api.http import Request, Result, endpoint
from crm.errors import Forbidden, NotFound

bp = Blueprint(__name__)
TAG = "orders"
READ, WRITE = "orders:read", "orders:write"
_ID = "/v1/orders/{order_id}"


@endpoint(
    bp,
    "/v1/orders",
    "POST",
    operation_id="createOrder",
    tag=TAG,
    scope=WRITE,
    summary="Place an order; a repeat of (source, external_id) returns the original with 200",
    body="OrderCreate",
    responses={201: "Order", 200: "Order"},
    errors=(409,),
    idempotent=True,
)
def create_order(req: Request) -> Result:
    from crm.orders import service

    ref = req.body.customer
    if ref.id is None and not req.ctx.allows("customers:read"):
        # finding the customer by email or external id would tell whether one exists
        raise Forbidden(
            "naming the customer by email or source + external_id needs the "
            "customers:read scope; name it by id instead",
            field="customer",
            code="insufficient_scope",
            required_scope="customers:read",
        )

    order, created = service.create(req.ctx, req.body)
    return Result(201 if created else 200, order, {"Location": f"/v1/orders/{order.id}"})


@endpoint(
    bp,
    "/v1/orders",
    "GET",
    operation_id="listOrders",
    tag=TAG,
    scope=READ,
    summary="Orders newest first, for the tenant or one customer, by placing date; by status; "
    "the one order of source + external_id; or the orders with a shop order number",
    query="OrderListQuery",
    responses={200: "OrderPage"},
    errors=(404, 422),
)
def list_orders(req: Request) -> Result:
    from crm.errors import Invalid
    from crm.orders import filters, service

    q = req.query
    window = {"placed_since": q.placed_since, "placed_before": q.placed_before}
    if (q.source is None) != (q.external_id is None):
        missing, given = ("external_id", "source") if q.external_id is None else ("source", "external_id")
        raise Invalid(f"{missing} is required with {given}", field=missing)
    if q.number is not None:
        if q.source is not None:
            raise Invalid("number cannot be combined with source and external_id; use one or the other", field="number")
        page = filters.by_number(req.ctx, q.number, customer_id=q.customer_id, status=q.status, **window)
    elif q.source is not None:
        page = filters.by_external_id(
            req.ctx, q.source, q.external_id, customer_id=q.customer_id, status=q.status, **window
        )
    elif q.status is not None:
        if q.customer_id is not None:
            raise Invalid(
                "status cannot be combined with customer_id; list the customer's orders and read each order's status",
                field="status",
            )
        page = filters.by_status(req.ctx, q.status, limit=q.limit, cursor=q.cursor, **window)
    else:
        page = service.list_orders(req.ctx, limit=q.limit, cursor=q.cursor, customer_id=q.customer_id, **window)
    return Result(200, {"data": page.items, "next_cursor": page.next_cursor})


@endpoint(
    bp,
    _ID,
    "GET",
    operation_id="getOrder",
    tag=TAG,
    scope=READ,
    summary="Get an order",
    responses={200: "Order"},
    errors=(404,),
)
def get_order(req: Request) -> Result:
    from crm.orders import service

    return Result(200, service.get(req.ctx, _order_id(req)))


def _order_id(req: Request) -> str:
    """The path's order id; a word such as ``lookup`` is not read as one."""
    from crm import ids

    order_id = req.params["order_id"]
    if not ids.ORDER_ID.match(order_id):
        raise NotFound(
            f"'{order_id[:64]}' is not an order id (order ids look like "
            "ord_01J...); to find an order by its source and external id use "
            "GET /v1/orders?source=...&external_id=...",
            field="order_id",
            code="not_an_order_id",
        )
    return order_id


def _transition(
    name: str, operation: str, body: str, summary: str, errors: tuple[int, ...] = (404, 409)
) -> Callable[..., Any]:
    def declare(handler):
        return endpoint(
            bp,
            f"{_ID}/{name}",
            "POST",
            operation_id=f"{operation}Order",
            tag=TAG,
            scope=WRITE,
            summary=summary,
            body=body,
            responses={200: "Order"},
            errors=errors,
            idempotent=True,
        )(handler)

    return declare


@_transition("pay", "pay", "PaymentCreate", "Mark a placed order paid")
def pay_order(req: Request) -> Result:
    from crm.orders import service

    return Result(200, service.pay(req.ctx, _order_id(req), req.body))


@_transition("fulfill", "fulfill", "FulfilmentCreate", "Mark a paid order fulfilled")
def fulfill_order(req: Request) -> Result:
    from crm.orders import service

    return Result(200, service.fulfill(req.ctx, _order_id(req), req.body))


@_transition("cancel", "cancel", "CancellationCreate", "Cancel an unpaid order (refund a paid one instead)")
def cancel_order(req: Request) -> Result:
    from crm.orders import service

    return Result(200, service.cancel(req.ctx, _order_id(req), req.body))


@_transition("refunds", "refund", "RefundCreate", "Refund part or all of a paid order", errors=(404, 409, 422))
def refund_order(req: Request) -> Result:
    from crm.orders import service

    return Result(200, service.refund(req.ctx, _order_id(req), req.body))
