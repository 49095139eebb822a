"""What the journeys and checkouts API takes and returns (api/routes/journeys.py;
docs/journeys.md). The definition itself is crm/journeys/schemas.py."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from crm.customers.schemas import Timestamp
from crm.journeys.schemas import Exit, JourneyDefinition, JourneyName, Reentry, Status, Step, Trigger

CustomerId = Annotated[str, StringConstraints(pattern=r"^cus_[0-9A-HJKMNP-TV-Z]{26}$")]
CheckoutId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class JourneyPatch(BaseModel):
    """Fields given replace the journey's; the result is validated as a whole definition."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: JourneyName | None = None
    status: Status | None = None
    trigger: Trigger | None = None
    steps: list[Step] | None = Field(default=None, min_length=1, max_length=50)
    exit: Exit | None = None
    reentry: Reentry | None = None


class JourneyStats(BaseModel):
    started: int = Field(description="runs started")
    active: int = Field(description="runs not finished yet (waiting, or sending a step)")
    completed: int = Field(description="runs that went past their last step")
    exited: int = Field(description="runs ended early: an exit event, the exit rule, a condition, archived")
    emails: int = Field(description="send steps recorded sent")


class Journey(BaseModel):
    id: str
    name: str
    status: Status
    trigger: dict[str, JsonValue]
    steps: list[dict[str, JsonValue]]
    exit: dict[str, JsonValue]
    reentry: dict[str, JsonValue]
    stats: JourneyStats
    created_at: str
    updated_at: str
    version: int


class JourneyPage(BaseModel):
    data: list[Journey]
    next_cursor: str | None


class JourneyRun(BaseModel):
    """One customer's run of a journey, as ``GET /v1/customers/{id}/journeys`` lists it."""

    journey_id: str
    occurrence: str = Field(description="what started it: a checkout id, a birthday's year, a segment entry's time")
    status: str = Field(description="waiting | sending | done | exited")
    step: int = Field(description="the step it is at (the number of steps: past the end)")
    due_at: str | None = Field(description="when it next runs (null once finished)")
    started_at: str
    ended_at: str | None
    reason: str | None = Field(description="why it exited: an event type, exit_rule, condition, archived, deleted")
    sends: list[dict[str, Any]] = Field(description="[{step, at, state}]: sent, skipped (with no consent…) or failed")


class JourneyRunPage(BaseModel):
    data: list[JourneyRun]
    next_cursor: str | None


class CheckoutItemLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=300)] | None = None
    quantity: int = Field(default=1, ge=1, le=100_000)
    unit_price: int | None = Field(default=None, ge=0, le=10**12, description="minor units")


class CheckoutStart(BaseModel):
    """A started checkout: cart abandonment journeys start from it (``checkout.started``)."""

    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId
    checkout_id: CheckoutId = Field(description="the shop's id of the checkout; the same id again is the same checkout")
    started_at: Timestamp | None = Field(default=None, description="absent: now")
    currency: Currency | None = None
    total: int | None = Field(default=None, ge=0, le=10**12, description="minor units")
    url: Annotated[str, StringConstraints(pattern=r"^https://\S+$", max_length=2000)] | None = Field(
        default=None, description="where the customer resumes the checkout ({{ event.data.url }} in a template)"
    )
    items: list[CheckoutItemLine] = Field(default_factory=list, max_length=100)


class StartedCheckout(BaseModel):
    customer_id: str
    checkout_id: str
    started_at: str
    currency: str | None
    total: int | None
    url: str | None
    items: list[dict[str, Any]]
    created: bool = Field(description="false when this checkout was recorded before (nothing changed)")


__all__ = ["JourneyDefinition"]
