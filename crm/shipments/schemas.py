"""Shipment models (the API validates and answers with these)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from crm.shipments.keys import TRACKING_NUMBER
from crm.shipments.status import Status

TrackingNumber = Annotated[str, StringConstraints(pattern=TRACKING_NUMBER)]
Carrier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]


class ShipmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: Annotated[str, StringConstraints(pattern=r"^ord_[0-9A-HJKMNP-TV-Z]{26}$")] = Field(
        description="the order the parcel belongs to"
    )
    carrier: Carrier = Field(description="the carrier as the provider names it: usps, ups, fedex, dhl…")
    tracking_number: TrackingNumber = Field(
        description="the carrier's tracking number (3-64 letters, digits, spaces, -)"
    )
    connection_id: Annotated[str, StringConstraints(pattern=r"^con_[0-9A-Za-z]{26}$")] = Field(
        description="the shipping connection (easypost or aftership) that tracks it"
    )


class ShipmentListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_number: TrackingNumber = Field(description="where is this parcel?")


class Checkpoint(BaseModel):
    at: str
    status: Status
    message: str | None = None
    location: str | None = None
    detail: str | None = None


class Shipment(BaseModel):
    id: str
    order_id: str
    customer_id: str
    carrier: str
    tracking_number: str
    status: Status
    status_at: str | None = None
    shipped_at: str | None = None
    delivered_at: str | None = None
    est_delivery_at: str | None = None
    tracking_url: str | None = None
    provider: str | None = Field(default=None, description="the connector that tracks it (easypost, aftership)")
    connection_id: str | None = None
    checkpoints: list[Checkpoint] = Field(description="oldest first, by when each scan happened")
    source: str = Field(description="api, or the e-commerce connector whose fulfilment registered it")
    created_at: str
    updated_at: str


class ShipmentBrief(BaseModel):
    """A shipment in brief, as an order and the 360 view show it."""

    id: str
    order_id: str
    carrier: str
    tracking_number: str
    status: Status
    status_at: str | None = None
    shipped_at: str | None = None
    delivered_at: str | None = None
    last: Checkpoint | None = None
    updated_at: str | None = None


class ShipmentPage(BaseModel):
    data: list[Shipment]
