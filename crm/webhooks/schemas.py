"""What the webhook endpoints API takes and returns (crm/webhooks/endpoints.py,
api/routes/webhooks.py). A secret appears only in :class:`WebhookEndpointWithSecret`, the
answer to a create or a rotation."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, WithJsonSchema

from crm.events import TYPES

WILDCARD = "*"
PREFIXES = frozenset(t.split(".", 1)[0] for t in TYPES)
# every pattern an endpoint may list: every type, each family (``order.*``), or all of them
PATTERNS = sorted({WILDCARD, *TYPES, *(f"{p}.*" for p in PREFIXES)})
MAX_TYPES = 50
MAX_URL = 2048
OVERLAP_DEFAULT = 86_400  # a rotated-out secret keeps signing for a day, unless told otherwise
OVERLAP_MAX = 7 * 86_400
ENDPOINT_ID_PATTERN = r"^whe_[0-9A-HJKMNP-TV-Z]{26}$"
DisabledReason = Literal["manual", "gone_410", "failing_5_days"]


def _known_pattern(value: str) -> str:
    if value == WILDCARD or value in TYPES:
        return value
    if value.endswith(".*") and value[:-2] in PREFIXES:
        return value
    if value.endswith(".*"):
        raise ValueError(f"{value!r} is no family of events: the families are {', '.join(sorted(PREFIXES))}")
    raise ValueError(
        f"{value!r} is no event type: use one of the types (docs/webhooks.md), a family such as order.*, or *"
    )


# validated in code for a message that names the choices; the document lists them as an enum
EventPattern = Annotated[
    str,
    AfterValidator(_known_pattern),
    WithJsonSchema({"type": "string", "enum": PATTERNS, "description": "an event type, a family (order.*) or *"}),
]
WebhookUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=8, max_length=MAX_URL, pattern=r"^https?://[^\s]+$"),
    Field(
        description="https, to a public host (checked when saved and on every send: docs/webhooks.md); "
        "plain http only to a loopback host in local development"
    ),
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
Types = Annotated[list[EventPattern], Field(min_length=1, max_length=MAX_TYPES)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookEndpointCreate(_Strict):
    url: WebhookUrl
    types: Types = Field(description="the events to send: exact types, families such as order.*, or * (all)")
    description: Description | None = None
    enabled: bool = True
    ordered: bool = Field(
        default=False, description="deliver strictly in feed order (a failing event holds back the later ones)"
    )


class WebhookEndpointPatch(_Strict):
    """Fields given replace; ``description: null`` removes it. ``enabled: true`` clears
    ``disabled_reason`` and ``failing_since``; ``enabled: false`` disables it (``manual``)."""

    url: WebhookUrl | None = None
    types: Types | None = None
    description: Description | None = None
    enabled: bool | None = None
    ordered: bool | None = None


class WebhookSecretRotation(_Strict):
    overlap_seconds: int = Field(
        default=OVERLAP_DEFAULT,
        ge=0,
        le=OVERLAP_MAX,
        description="how long the old secret keeps signing beside the new one (default a day, at most 7 days)",
    )


class WebhookEndpoint(BaseModel):
    id: str
    url: str
    types: list[str]
    description: str | None = None
    enabled: bool
    ordered: bool
    status: Literal["enabled", "disabled"]
    disabled_reason: DisabledReason | None = Field(
        default=None,
        description="manual (PATCH enabled: false), gone_410 (the endpoint answered 410), "
        "failing_5_days (every delivery failed for 5 days); null while enabled",
    )
    failing_since: str | None = Field(default=None, description="the first failure of the current failing streak")
    secret_overlap_until: str | None = Field(
        default=None, description="until then a rotated-out secret signs too (a second signature); null: none"
    )
    created_at: str
    updated_at: str
    version: int
    # the sealed secrets as read with the endpoint (never serialized): signing_secrets
    # opens them without reading the item again
    _sealed: dict[str, Any] = PrivateAttr(default_factory=dict)


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str | None = Field(
        description="whsec_ + base64 of 24 random bytes: shown in this answer only (create, rotate); Rapport "
        "keeps it sealed with KMS. null in an Idempotency-Key replay (of a create or a rotation), which "
        "never stores it: rotate the secret to get a new one"
    )


class WebhookEndpointPage(BaseModel):
    data: list[WebhookEndpoint]
    next_cursor: str | None


class WebhookTestResult(BaseModel):
    """POST …/test: one signed ``webhook.ping``, sent at once, and what came back."""

    __test__ = False  # not a pytest class

    ok: bool = Field(description="the endpoint answered 2xx")
    webhook_id: str
    status: int | None = Field(description="the endpoint's HTTP status; null when no answer came")
    latency_ms: int
    excerpt: str = Field(description="the first 200 characters of the answer's body")
    error: str | None = Field(description="why the attempt failed, in words (timeout, refused, TLS, a redirect...)")


Endpoint = WebhookEndpoint  # the name the delivery engine imports (crm/webhooks/endpoints.py)


# --- deliveries (crm/webhooks/deliveries.py) ---------------------------------------------

DeliveryStatus = Literal["pending", "delivered", "failed"]
MAX_REPLAY_IDS = 100


class DeliveryAttempt(BaseModel):
    at: str
    status: int | None = Field(description="the endpoint's HTTP status; null when no answer came")
    latency_ms: int
    excerpt: str = Field(description="the first 200 characters of the answer's body")
    error: str | None = Field(description="why the attempt failed, in words")


class WebhookDelivery(BaseModel):
    id: str = Field(description="the change's id: the webhook-id of every attempt")
    type: str
    status: DeliveryStatus = Field(description="pending (an attempt is due), delivered, or failed (gave up)")
    attempts: list[DeliveryAttempt]
    next_attempt_at: str | None
    created_at: str
    updated_at: str


class WebhookDeliveryPage(BaseModel):
    data: list[WebhookDelivery]
    next_cursor: str | None


class WebhookDeliveryQuery(_Strict):
    status: DeliveryStatus | None = None
    limit: int = Field(default=25, ge=1, le=100)
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None


Time = Annotated[str, StringConstraints(min_length=10, max_length=40)]


class WebhookReplay(_Strict):
    """Either ``event_ids`` or a time range (``since``, ``until``: when the changes entered
    the feed)."""

    event_ids: (
        Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=300)]], Field(max_length=MAX_REPLAY_IDS)
        ]
        | None
    ) = None
    since: Time | None = None
    until: Time | None = None


class WebhookReplayResult(BaseModel):
    replayed: int = Field(description="how many deliveries are due again (the worker sends them now)")
