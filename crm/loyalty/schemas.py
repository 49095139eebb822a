"""Loyalty models: the tenant's program and what the API shows of a customer's points."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from crm.customers.schemas import Timestamp
from crm.orders.schemas import Currency, OrderChannel

Multiplier = Annotated[float, Field(ge=0, le=100)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9 _-]+$")]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
EntryType = Literal["pending", "activate", "earn", "redeem", "expire", "adjust", "reverse"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tier(_Strict):
    name: Name
    threshold: int = Field(
        ge=0,
        le=10**12,
        description="qualifying spend (minor units of the program currency) or points over the rolling 12 months",
    )
    multiplier: Multiplier = Field(default=1, description="applied to the points of orders placed in this tier")


class ProgramFields(_Strict):
    """What a tenant sets with PUT /v1/loyalty/program."""

    enabled: bool = True
    currency: Currency = Field(description="the currency whose spend qualifies for tiers")
    earn_rates: dict[Currency, Annotated[float, Field(ge=0, le=10_000)]] = Field(
        min_length=1,
        max_length=50,
        description="points per major currency unit, per order currency; orders in other currencies earn nothing",
    )
    rounding: Literal["floor", "nearest", "ceil"] = Field(
        default="floor", description="how an order's fractional points are rounded (nearest: half up)"
    )
    channel_multipliers: dict[OrderChannel, Multiplier] = {}
    category_multipliers: dict[Code, Multiplier] = Field(default={}, max_length=500)
    sku_multipliers: dict[Code, Multiplier] = Field(
        default={}, max_length=2000, description="a line's SKU multiplier wins over its category's"
    )
    first_order_bonus: int = Field(
        default=0, ge=0, le=10**9, description="points added to the customer's first order once paid"
    )
    birthday_multiplier: Multiplier = Field(default=1, description="for orders placed in the birthday month")
    tier_basis: Literal["spend", "points"] = Field(
        default="spend", description="qualify by rolling 12-month spend or points earned; never by balance"
    )
    tiers: list[Tier] = Field(default=[], max_length=10, description="ascending thresholds; the first is 0")
    return_window_days: int = Field(default=30, ge=0, le=365, description="points stay pending this long after payment")
    expiry_months: int | None = Field(
        default=12, ge=1, le=120, description="an active lot expires this long after activation; null: never"
    )
    expiring_notice_days: int = Field(
        default=14, ge=0, le=90, description="points.expiring is emitted this long before expiry"
    )
    earns_from: Timestamp | None = Field(
        default=None,
        description="orders placed before this time earn nothing (imported history); "
        "default: when the program was created, kept by later PUTs that omit it",
    )

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, tiers: list[Tier]) -> list[Tier]:
        if tiers:
            names = [t.name.lower() for t in tiers]
            if len(set(names)) != len(names):
                raise ValueError("tier names must be unique (ignoring case)")
            thresholds = [t.threshold for t in tiers]
            if thresholds[0] != 0 or any(b <= a for a, b in itertools.pairwise(thresholds)):
                raise ValueError("tier thresholds must start at 0 and strictly increase")
        return tiers


class Program(ProgramFields):
    earns_from: str | None = None  # type: ignore[assignment]
    updated_at: str
    version: int


class LotView(BaseModel):
    id: str
    state: Literal["pending", "active"]
    points: int = Field(description="what is left in the lot")
    activates_at: str | None = None
    expires_at: str | None = None


class TierProgress(BaseModel):
    basis: Literal["spend", "points"]
    qualifying: int = Field(description="rolling 12-month spend or points, by the program's basis")
    next_tier: str | None = None
    next_threshold: int | None = None
    remaining: int | None = Field(default=None, description="how much more qualifies for the next tier")


class Loyalty(BaseModel):
    customer_id: str
    available: int
    pending: int
    lifetime_earned: int
    owed: int = Field(description="reversed points that had already been spent; paid from future points")
    tier: str | None = None
    tier_since: str | None = None
    progress: TierProgress | None = None
    lots: list[LotView] = []
    as_of: str


class LedgerEntry(BaseModel):
    seq: int
    type: EntryType
    points: int = Field(description="signed change to available (or pending, for pending entries)")
    lot: str | None = None
    source: str = Field(description="the event or request the entry comes from")
    reason: str | None = None
    detail: dict = {}
    at: str


class RedemptionCreate(_Strict):
    points: int = Field(ge=1, le=10**9)
    reason: Reason | None = None
    reference: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None, description="e.g. the reward or the order the points pay for"
    )


class AdjustmentCreate(_Strict):
    points: int = Field(
        ge=-(10**9),
        le=10**9,
        json_schema_extra={"not": {"const": 0}},
        description="positive credits a new active lot; negative debits oldest first; not 0",
    )
    reason: Reason

    @model_validator(mode="after")
    def _nonzero(self) -> AdjustmentCreate:
        if self.points == 0:
            raise ValueError("points must not be 0")
        return self


class PointsChange(BaseModel):
    """The answer to a redemption or an adjustment."""

    id: str
    customer_id: str
    points: int
    entries: list[LedgerEntry]
    balance: Loyalty
