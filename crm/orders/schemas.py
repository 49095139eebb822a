"""Order models. Money is integer minor units with an ISO-4217 currency code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from crm.customers.schemas import Email, ExternalId, Source, Timestamp

OrderChannel = Literal["web", "mobile", "tv", "store", "marketplace"]
OrderStatus = Literal["placed", "paid", "fulfilled", "cancelled", "partially_refunded", "refunded"]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Money = Annotated[int, Field(ge=0, le=10**12, description="minor units, e.g. cents")]
MAX_LINES = 250


def _has_number(value: str) -> str:
    if not number_key(value):
        raise ValueError("an order number needs more than '#' and blanks")
    return value


OrderNumber = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$"),
    AfterValidator(_has_number),
    Field(
        description="the order's number as the shop shows it to the buyer (Shopify `#1001`, Odoo "
        "`S00012`); shipments whose provider kept only the number link by it (docs/shipping.md)"
    ),
]


def number_key(number: str) -> str:
    """An order number as it is looked up: without surrounding blanks or a leading ``#``, case
    folded, so a carrier's ``1001`` finds the shop's ``#1001``."""
    return number.strip().lstrip("#").strip().casefold()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_NULL: JsonDict = {"type": "null"}
_STR: JsonDict = {"type": "string"}


class CustomerRef(_Strict):
    """Exactly one of: ``id``, ``email``, or ``source`` with ``external_id``."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [  # the rule below, for the document
                {"required": ["id"], "properties": {"id": _STR, "email": _NULL, "source": _NULL, "external_id": _NULL}},
                {
                    "required": ["email"],
                    "properties": {"id": _NULL, "email": _STR, "source": _NULL, "external_id": _NULL},
                },
                {
                    "required": ["source", "external_id"],
                    "properties": {"id": _NULL, "email": _NULL, "source": _STR, "external_id": _STR},
                },
            ]
        }
    )

    id: Annotated[str, StringConstraints(pattern=r"^cus_[0-9A-Z]{26}$")] | None = None
    email: Email | None = None
    source: Source | None = None
    external_id: ExternalId | None = None

    @model_validator(mode="after")
    def _one(self) -> CustomerRef:
        given = [self.id is not None, self.email is not None, self.source is not None or self.external_id is not None]
        if sum(given) != 1 or (self.source is None) != (self.external_id is None):
            raise ValueError("give exactly one of id, email, or source with external_id")
        return self


class LineItem(_Strict):
    sku: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    category: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    quantity: int = Field(ge=1, le=100_000)
    unit_price: Money


class OrderCreate(_Strict):
    customer: CustomerRef
    source: Source = Field(description="the system the order comes from, e.g. shopify, pos")
    external_id: ExternalId = Field(description="the order's id there; (source, external_id) is unique")
    channel: OrderChannel
    currency: Currency
    lines: list[LineItem] = Field(min_length=1, max_length=MAX_LINES)
    discount: Money = 0
    shipping: Money = 0
    tax: Money = 0
    total: Money
    placed_at: Timestamp
    number: OrderNumber | None = None

    @field_validator("placed_at")
    @classmethod
    def _placed_at(cls, v: datetime) -> datetime:
        now = datetime.now(UTC)
        if not datetime(2000, 1, 1, tzinfo=UTC) <= v <= now + timedelta(days=1):
            raise ValueError("placed_at must be between 2000-01-01 and tomorrow")
        return v

    @field_validator("discount")
    @classmethod
    def _discount(cls, v: int, info: ValidationInfo) -> int:
        subtotal = _subtotal(info.data.get("lines"))
        if subtotal is not None and v > subtotal:
            raise ValueError(f"discount {v} exceeds the lines' subtotal {subtotal}")
        return v

    @field_validator("total")
    @classmethod
    def _total(cls, v: int, info: ValidationInfo) -> int:
        subtotal = _subtotal(info.data.get("lines"))
        discount, shipping, tax = (info.data.get(k) for k in ("discount", "shipping", "tax"))
        if subtotal is None or discount is None or shipping is None or tax is None:
            return v  # another field is already invalid and named
        expected = subtotal - discount + shipping + tax
        if v != expected:
            raise ValueError(f"total {v} does not match lines - discount + shipping + tax = {expected}")
        return v


def _subtotal(lines: list[LineItem] | None) -> int | None:
    return None if lines is None else sum(line.quantity * line.unit_price for line in lines)


def _not_future(v: datetime | None) -> datetime | None:
    if v is not None and not datetime(2000, 1, 1, tzinfo=UTC) <= v <= datetime.now(UTC) + timedelta(days=1):
        raise ValueError("must be between 2000-01-01 and tomorrow")
    return v


class PaymentCreate(_Strict):
    paid_at: Timestamp | None = Field(default=None, description="defaults to now; at most tomorrow")

    _paid_at = field_validator("paid_at")(_not_future)


class FulfilmentCreate(_Strict):
    fulfilled_at: Timestamp | None = Field(default=None, description="defaults to now; at most tomorrow")

    _fulfilled_at = field_validator("fulfilled_at")(_not_future)


class CancellationCreate(_Strict):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None


RefundReference = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]


class RefundCreate(_Strict):
    amount: int = Field(ge=1, le=10**12, description="minor units; at most what was paid and not yet refunded")
    currency: Currency | None = Field(default=None, description="if given, must be the order's")
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    reference: RefundReference | None = Field(
        default=None,
        description="your id for this refund (e.g. the payment provider's); a refund "
        "with a reference the order already has changes nothing",
    )


class Refund(BaseModel):
    id: str
    amount: int
    reason: str | None = None
    reference: str | None = None
    refunded_at: str


class OrderLoyalty(BaseModel):
    """Recorded when the order is placed; its points are computed from these."""

    tier: str | None = None
    birthday: bool = False
    first: bool = False


class OrderParcel(BaseModel):
    """One of the order's shipments in brief."""

    id: str
    carrier: str
    tracking_number: str
    status: str
    shipped_at: str | None = None
    delivered_at: str | None = None


class Order(BaseModel):
    id: str
    customer_id: str
    source: str
    external_id: str
    number: str | None = Field(default=None, description="the shop's order number, as the buyer knows it")
    channel: OrderChannel
    currency: str
    lines: list[LineItem]
    subtotal: int
    discount: int
    shipping: int
    tax: int
    total: int
    status: OrderStatus
    placed_at: str
    paid_at: str | None = None
    fulfilled_at: str | None = None
    cancelled_at: str | None = None
    cancel_reason: str | None = None
    refunded_amount: int = 0
    refunds: list[Refund] = []
    loyalty: OrderLoyalty | None = None
    revision: int = Field(default=0, description="how many times the vendor edited the order after it was placed")
    edited_at: str | None = None
    account_id: str | None = Field(default=None, description="a B2B order: the account it was placed for")
    shipped_at: str | None = Field(default=None, description="when its first parcel left (docs/shipping.md)")
    delivered_at: str | None = Field(default=None, description="when its last parcel arrived, all of them delivered")
    shipments: list[OrderParcel] = Field(
        default=[], description="its parcels in brief (GET …/shipments has them whole)"
    )
    created_at: str
    updated_at: str
    version: int


class OrderSummary(BaseModel):
    """An order in brief, as the 360 view shows the latest ones."""

    id: str
    channel: OrderChannel
    currency: str
    total: int
    status: OrderStatus
    placed_at: str
    refunded_amount: int = 0
