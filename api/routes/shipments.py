"""/v1/shipments: parcels of orders, tracked by a shipping provider (docs/shipping.md)."""

from __future__ import annotations

from chalice import Blueprint

from api.http import Request, Result, endpoint
from crm.errors import NotFound

bp = Blueprint(__name__)
TAG = "shipments"
READ, WRITE = "orders:read", "orders:write"


@endpoint(
    bp,
    "/v1/shipments",
    "POST",
    operation_id="createShipment",
    tag=TAG,
    scope=WRITE,
    summary="Register a parcel of an order and create its tracker at the shipping provider of the connection; "
    "a tracking number already registered answers its shipment with 200",
    body="ShipmentCreate",
    responses={201: "Shipment", 200: "Shipment"},
    errors=(409, 422, 503),
    idempotent=True,
)
def create_shipment(req: Request) -> Result:
    from connectors import shipping

    shipment, created = shipping.create(req.ctx, req.body)
    return Result(201 if created else 200, shipment, {"Location": f"/v1/shipments/{shipment.id}"})


@endpoint(
    bp,
    "/v1/shipments",
    "GET",
    operation_id="findShipments",
    tag=TAG,
    scope=READ,
    summary="Where is my order: the shipment of a tracking number (a list of 0 or 1)",
    query="ShipmentListQuery",
    responses={200: "ShipmentPage"},
)
def find_shipments(req: Request) -> Result:
    from crm.shipments import service

    return Result(200, {"data": service.by_tracking_number(req.ctx, req.query.tracking_number)})


@endpoint(
    bp,
    "/v1/shipments/{shipment_id}",
    "GET",
    operation_id="getShipment",
    tag=TAG,
    scope=READ,
    summary="A shipment with its checkpoint history",
    responses={200: "Shipment"},
    errors=(404,),
)
def get_shipment(req: Request) -> Result:
    from crm.shipments import service

    return Result(200, service.get(req.ctx, req.params["shipment_id"]))


@endpoint(
    bp,
    "/v1/orders/{order_id}/shipments",
    "GET",
    operation_id="listOrderShipments",
    tag=TAG,
    scope=READ,
    summary="An order's shipments with their checkpoint histories, oldest first",
    responses={200: "ShipmentPage"},
    errors=(404,),
)
def list_order_shipments(req: Request) -> Result:
    from crm import ids
    from crm.shipments import service

    order_id = req.params["order_id"]
    if not ids.ORDER_ID.match(order_id):
        raise NotFound(f"order {order_id[:64]} not found", field="order_id")
    return Result(200, {"data": service.for_order(req.ctx, order_id)})
