"""Pydantic models of a customer: they validate requests, shape responses and
generate the OpenAPI document, so the three can never disagree.

Limits (also in docs/api.md):
- ``attributes``: at most 50 keys named ``[A-Za-z_][A-Za-z0-9_]{0,63}``; values are
  strings (<= 2,000 chars), numbers, booleans, null, lists (<= 100 items) or objects,
  nested at most 3 deep; at most 16 KiB as JSON.
- ``tags``: at most 50, each 1-64 chars, no control characters; duplicates collapse.
- ``addresses``: at most 10. ``external_ids``: at most 20 sources.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
)

from crm.customers import normalize

Channel = Literal["email", "sms", "phone", "postal"]
ConsentStatus = Literal["granted", "denied", "pending"]
Gender = Literal["female", "male", "non_binary", "other", "undisclosed"]

SOURCE_PATTERN = r"^(?:[a-z][a-z0-9_-]{0,31}|agent:agt_[0-9a-hjkmnp-tv-z]{26})$"
# an on-premise agent's default source is ``agent:<agent id>`` (crm/agents); a name given
# to an agent, like every other source, follows the plain pattern
PLAIN_SOURCE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ATTRIBUTE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTES_BYTES = 16 * 1024


def _utc_in_range(value: datetime) -> datetime:
    """Aware, converted to UTC, and within years 1900-9998 (so it sorts and formats)."""
    utc = (
        value.astimezone(UTC)
        if datetime(1900, 1, 2, tzinfo=UTC) <= value <= datetime(9998, 12, 31, tzinfo=UTC)
        else None
    )
    if utc is None:
        raise ValueError("must be between 1900-01-02 and 9998-12-31")
    return utc


_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_only(value: Any) -> Any:
    """An ISO-8601 string, parsed here (or a datetime from code): never a number of
    seconds since 1970, which pydantic would otherwise read as one, unlike the documented
    date-time. Parsed here so that it holds in strict mode too (the API's bodies)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATETIME.match(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("must be an ISO-8601 date-time with a timezone, e.g. 2026-01-01T09:00:00Z")


Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_only), AfterValidator(_utc_in_range)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Email = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(normalize.email),
    Field(json_schema_extra={"format": "email"}),
]
Phone = Annotated[str, StringConstraints(max_length=32), AfterValidator(normalize.phone)]
Source = Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f#]+$")]
Locale = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Name(_Strict):
    given: Text | None = None
    family: Text | None = None


class Address(_Strict):
    label: Annotated[str, StringConstraints(max_length=40)] | None = None
    line1: Text
    line2: Text | None = None
    city: Text | None = None
    region: Text | None = None
    postal_code: Annotated[str, StringConstraints(max_length=20)] | None = None
    country: Country = Field(description="ISO 3166-1 alpha-2, upper case")


class ConsentInput(_Strict):
    status: ConsentStatus
    source: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="where the consent was given or withdrawn, e.g. checkout, import, api"
    )
    at: Timestamp | None = Field(default=None, description="when, with a timezone; defaults to the time of the request")


class Consent(BaseModel):
    status: ConsentStatus
    source: str
    at: str


def _check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return value
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
    for key in value:
        if not ATTRIBUTE_KEY.match(key):
            raise ValueError(f"attribute name {key!r} must match {ATTRIBUTE_KEY.pattern}")
    _check_value(value, 0)
    if len(json.dumps(value, separators=(",", ":"))) > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"attributes exceed {MAX_ATTRIBUTES_BYTES} bytes as JSON")
    return value


def _check_value(value: Any, depth: int) -> None:
    if depth > 3:
        raise ValueError("attributes nest at most 3 levels deep")
    if isinstance(value, str) and len(value) > 2000:
        raise ValueError("attribute strings are at most 2000 characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("attribute numbers must be finite")
    if isinstance(value, list):
        if len(value) > 100:
            raise ValueError("attribute lists hold at most 100 items")
        for v in value:
            _check_value(v, depth + 1)
    if isinstance(value, dict):
        for v in value.values():
            _check_value(v, depth + 1)


_ATTRIBUTES_SCHEMA = {"propertyNames": {"pattern": ATTRIBUTE_KEY.pattern}, "maxProperties": MAX_ATTRIBUTES}
Attributes = Annotated[
    dict[str, JsonValue], AfterValidator(_check_attributes), Field(json_schema_extra=_ATTRIBUTES_SCHEMA)
]


def _unique_tags(tags: list[str] | None) -> list[str] | None:
    """Tags compare case-insensitively: the first spelling of each is kept."""
    if tags is None:
        return None
    seen: dict[str, str] = {}
    for tag in tags:
        seen.setdefault(tag.casefold(), tag)
    return list(seen.values())


def _check_birth_date(value: date | None) -> date | None:
    if value is not None and not date(1900, 1, 1) <= value <= date.today():
        raise ValueError("birth_date must be between 1900-01-01 and today")
    return value


class CustomerFields(_Strict):
    """Every writable field; all optional so PATCH and batch upsert share them."""

    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    birth_date: Annotated[date, AfterValidator(_check_birth_date)] | None = None
    gender: Gender | None = None
    addresses: list[Address] | None = Field(default=None, max_length=10)
    locale: Locale | None = None
    tags: Annotated[list[Tag], AfterValidator(_unique_tags)] | None = Field(default=None, max_length=50)
    attributes: Attributes | None = None
    consent: dict[Channel, ConsentInput] | None = None
    external_ids: dict[Source, ExternalId] | None = Field(default=None, max_length=20)


class CustomerCreate(CustomerFields):
    """POST /v1/customers. At least an email, a phone or an external id identifies the record."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["email"], "properties": {"email": {"type": "string"}}},
                {"required": ["phone"], "properties": {"phone": {"type": "string"}}},
                {"required": ["external_ids"], "properties": {"external_ids": {"type": "object", "minProperties": 1}}},
            ]
        }
    )


CustomerStatus = Literal["active", "erased", "merging", "merged"]


class CustomerPatch(CustomerFields):
    """PATCH: given fields replace; ``attributes``, ``consent`` and ``external_ids`` merge
    key by key, and a key set to null is removed (JSON Merge Patch, RFC 7396)."""

    attributes: Annotated[dict[str, JsonValue | None], Field(json_schema_extra=_ATTRIBUTES_SCHEMA)] | None = None
    consent: dict[Channel, ConsentInput | None] | None = None  # type: ignore[assignment]
    external_ids: dict[Source, ExternalId | None] | None = Field(default=None, max_length=20)  # type: ignore[assignment]


class ExternalIdAlias(BaseModel):
    source: str
    external_id: str


class Aliases(BaseModel):
    """Identities a merge brought that do not fit the profile's own fields (a second
    email, a second external id of a source…). Their uniqueness guards and lookup
    entries name this customer, so lookups by them find it."""

    emails: list[str] = []
    phones: list[str] = []
    external_ids: list[ExternalIdAlias] = []


class PreviousEmail(BaseModel):
    email: str
    replaced_at: str = Field(
        description="lookups by it find this customer, and no one else can take it, for 90 days from then"
    )


class ErasureStatus(BaseModel):
    status: Literal["pending", "complete"]


class OrdersAggregate(BaseModel):
    count: int = Field(default=0, description="orders placed and not cancelled, in any currency")
    net_spend: int = Field(
        default=0, description="minor units of `currency`: totals less refunds, cancelled orders excluded"
    )
    currency: str | None = Field(default=None, description="the tenant's reporting currency (its first order's)")
    first_at: str | None = None
    last_at: str | None = None
    aov: int | None = Field(default=None, description="average order value, minor units")
    channels: list[str] = []
    categories: list[str] = []


class RfmScores(BaseModel):
    r: int | None = Field(default=None, description="recency 1-5 (5: most recent); null without orders")
    f: int | None = Field(default=None, description="frequency 1-5")
    m: int | None = Field(default=None, description="monetary 1-5")
    segment: str | None = Field(default=None, description="the named RFM segment (docs/segments.md)")


class LifetimeValue(BaseModel):
    historical: int = Field(default=0, description="net revenue so far, minor units")
    predicted: int = Field(default=0, description="predicted value of the next 12 months, minor units")


class SegmentMembership(BaseModel):
    id: str
    name: str | None = None
    since: str


class CustomerMetrics(BaseModel):
    """What segments measure the customer by, as of ``updated_at`` (docs/segments.md)."""

    orders: OrdersAggregate
    rfm: RfmScores
    ltv: LifetimeValue
    vip: bool = Field(default=False, description="in the top 20 % of the tenant's customers by value")
    segments: list[SegmentMembership] = Field(default=[], description="the segments the customer is in")
    updated_at: str


class Customer(BaseModel):
    """A customer as the API returns it. An erased customer keeps only id, status and
    times. A merged customer's id answers with its survivor (see ``merged_ids``)."""

    id: str
    status: CustomerStatus
    name: Name | None = None
    email: str | None = None
    phone: str | None = None
    birth_date: date | None = None
    gender: Gender | None = None
    addresses: list[Address] = []
    locale: str | None = None
    tags: list[str] = []
    attributes: dict[str, JsonValue] = {}
    consent: dict[Channel, Consent] = {}
    external_ids: dict[str, str] = {}
    source_created_at: dict[str, str] = Field(
        default={}, description="per source: when the vendor first saw this customer (its created_at)"
    )
    previous_emails: list[PreviousEmail] = Field(default=[], description="emails replaced in the last 90 days")
    created_at: str
    customer_since: str | None = Field(
        default=None,
        description="the earliest of created_at and source_created_at: when the customer was first seen anywhere",
    )
    updated_at: str
    erased_at: str | None = None
    erasure: ErasureStatus | None = Field(
        default=None,
        description="set on an erased customer: pending until the follow-up job has "
        "removed their data from imports, conflicts and stored responses, then complete",
    )
    merged_ids: list[str] = Field(default=[], description="customers merged into this one; their ids resolve here")
    merged_into: str | None = Field(default=None, description="set on a merged customer: its survivor")
    aliases: Aliases | None = Field(
        default=None, description="identities merged in that do not fit the profile's fields"
    )
    version: int
    account_id: str | None = Field(
        default=None, description="the B2B account the customer is a contact of (POST /v1/accounts/{id}/contacts)"
    )
    account_role: str | None = Field(default=None, description="their role at that account")
    metrics: CustomerMetrics | None = Field(
        default=None,
        description="on GET /v1/customers/{id} and the 360 view: orders aggregate, RFM, lifetime "
        "value, VIP and segments; null until measured (and on other answers)",
    )


class MergeRequest(_Strict):
    """POST /v1/customers/{id}/merge: merge ``other_id`` into the customer of the path."""

    other_id: Annotated[str, StringConstraints(pattern=r"^cus_[0-9A-HJKMNP-TV-Z]{26}$")] = Field(
        description="the customer merged into this one; afterwards its id resolves to this one"
    )


class TimelineEventCreate(_Strict):
    type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.]{0,63}$")] = Field(
        description="e.g. email.opened, call.logged, store.visit"
    )
    channel: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")] | None = None
    occurred_at: Timestamp | None = Field(default=None, description="with a timezone; defaults to now")
    summary: Annotated[str, StringConstraints(max_length=500)] | None = None
    payload: Attributes | None = None


class TimelineEvent(BaseModel):
    id: str
    customer_id: str
    type: str
    channel: str | None = None
    occurred_at: str
    summary: str | None = None
    payload: dict[str, JsonValue] = {}
    created_at: str
