"""What the segments API takes and returns (crm/segments/service.py, api/routes/segments.py).

A rule is taken as any JSON object here and validated by ``rules.parse`` in the service:
its errors name the condition (``rule.all[1].any[0]``), which JSON Schema cannot say."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from crm.customers.schemas import Name

SegmentName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(max_length=1000)]
RULE_DESCRIPTION = (
    'a rule: {"all": [...]} or {"any": [...]} groups of {"field", "op", "value"} conditions, '
    "nested (docs/segments.md); an unknown field or an operator that does not fit it is 422 "
    "naming the condition"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SegmentCreate(_Strict):
    name: SegmentName = Field(description="unique within the tenant (ignoring case)")
    description: Description | None = None
    rule: dict[str, JsonValue] = Field(description=RULE_DESCRIPTION)


class SegmentPatch(_Strict):
    """Fields given replace; ``description: null`` removes it, a null name or rule leaves
    it as it is. A new rule rebuilds."""

    name: SegmentName | None = None
    description: Description | None = None
    rule: dict[str, JsonValue] | None = Field(default=None, description=RULE_DESCRIPTION)


class SegmentBuild(BaseModel):
    percent: int = Field(description="0-100; 100 once built")
    processed: int = Field(description="customers evaluated by the build so far")
    total: int | None = Field(description="customers the build evaluates (null until it knows)")
    started_at: str | None = None
    finished_at: str | None = None


class Segment(BaseModel):
    id: str
    name: str
    description: str | None = None
    rule: dict[str, Any] = Field(description="the rule as validated and normalized")
    rule_version: int = Field(description="+1 on every change of the rule (each one rebuilds)")
    status: Literal["building", "ready"]
    build: SegmentBuild
    member_count: int = Field(description="exact: counted in the write that adds or removes a member")
    created_at: str
    updated_at: str
    version: int


class SegmentPage(BaseModel):
    data: list[Segment]
    next_cursor: str | None


class PreviewRequest(_Strict):
    rule: dict[str, JsonValue] = Field(description=RULE_DESCRIPTION)
    limit: int = Field(default=10, ge=0, le=100, description="at most this many customers in the sample")


class PreviewSample(BaseModel):
    customer_id: str
    name: Name | None = Field(default=None, description="null unless the key also has customers:read")
    email: str | None = Field(default=None, description="null unless the key also has customers:read")


class Preview(BaseModel):
    count: int = Field(description="customers the rule matches now (extrapolated when exact is false)")
    sample: list[PreviewSample]
    evaluated: int = Field(description="customers the rule was evaluated on")
    exact: bool = Field(description="false when the tenant has more customers than a preview evaluates")


class SegmentMember(BaseModel):
    customer_id: str
    since: str
    provisional: bool = Field(description="true while the segment is building: the build may still remove it")


class SegmentMemberPage(BaseModel):
    data: list[SegmentMember]
    next_cursor: str | None


class CustomerSegment(BaseModel):
    id: str
    name: str
    since: str
    provisional: bool = Field(description="the membership is from an older version of the rule (a rebuild runs)")


class CustomerSegmentList(BaseModel):
    data: list[CustomerSegment]


class RfmSegmentCount(BaseModel):
    name: str
    count: int


class RfmGrid(BaseModel):
    """Customers with orders by recency (r) x frequency (f) score; customers without orders
    have no scores and are in no cell."""

    grid: list[list[int]] = Field(description="grid[r-1][f-1]: customers with recency score r and frequency score f")
    names: list[list[str]] = Field(description="names[r-1][f-1]: the named RFM segment of the cell")
    segments: list[RfmSegmentCount] = Field(description="customers per named RFM segment")
    customers: int = Field(description="customers in the grid (those with orders)")
    cuts: dict[str, Any] = Field(description='the quintile cut points {"r": days, "f": orders, "m": minor units}')
    default_cuts: bool = Field(description="true until the schedule first computed the tenant's own cut points")
    cuts_at: str | None = Field(description="when the cut points were computed")
