"""Every model the API names: the domain's, re-exported, plus HTTP-only shapes."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from connectors.schemas import (  # noqa: F401 - re-exported for api.http.model()
    CheckResult,
    Connection,
    ConnectionCreate,
    ConnectionPage,
    ConnectionPatch,
    ConnectorList,
    HookAccepted,
    Run,
    RunPage,
    SyncRequest,
    UploadCreated,
)
from crm.agents.schemas import (  # noqa: F401 - re-exported for api.http.model()
    Agent,
    AgentConflictPage,
    AgentCreate,
    AgentFetch,
    AgentFetchResult,
    AgentHeartbeat,
    AgentHeartbeatResult,
    AgentList,
    AgentParkedPage,
    AgentUpload,
    AgentUploadResponse,
    IssuedAgent,
)
from crm.context import SCOPES
from crm.customer360 import Customer360  # noqa: F401 - re-exported for api.http.model()
from crm.customers.schemas import (  # noqa: F401 - re-exported for api.http.model()
    SOURCE_PATTERN,
    Customer,
    CustomerCreate,
    CustomerPatch,
    MergeRequest,
    TimelineEvent,
    TimelineEventCreate,
    Timestamp,
)
from crm.email.schemas_campaigns import (  # noqa: F401 - re-exported for api.http.model()
    Campaign,
    CampaignCreate,
    CampaignPage,
    CampaignPatch,
    CampaignSend,
)
from crm.email.schemas_templates import (  # noqa: F401 - re-exported for api.http.model()
    EmailSettings,
    EmailSettingsPut,
    Sender,
    SenderCreate,
    SenderList,
    Template,
    TemplateCreate,
    TemplatePage,
    TemplatePatch,
    TemplatePreview,
    TemplatePreviewRequest,
)
from crm.identity_schemas import (  # noqa: F401 - re-exported for api.http.model()
    ConflictResolve,
    ConflictStatus,
    IdentityConflict,
    IdentitySettings,
    IdentitySettingsFields,
)
from crm.journeys.api_schemas import (  # noqa: F401 - re-exported for api.http.model()
    CheckoutStart,
    Journey,
    JourneyPage,
    JourneyPatch,
    JourneyRunPage,
    StartedCheckout,
)
from crm.journeys.schemas import JourneyDefinition  # noqa: F401 - re-exported for api.http.model()
from crm.loyalty.schemas import (  # noqa: F401 - re-exported for api.http.model()
    AdjustmentCreate,
    LedgerEntry,
    Loyalty,
    PointsChange,
    Program,
    ProgramFields,
    RedemptionCreate,
)
from crm.orders.schemas import (  # noqa: F401 - re-exported for api.http.model()
    CancellationCreate,
    FulfilmentCreate,
    Order,
    OrderCreate,
    OrderNumber,
    OrderStatus,
    PaymentCreate,
    RefundCreate,
)
from crm.segments.schemas import (  # noqa: F401 - re-exported for api.http.model()
    CustomerSegmentList,
    Preview,
    PreviewRequest,
    RfmGrid,
    Segment,
    SegmentCreate,
    SegmentMemberPage,
    SegmentPage,
    SegmentPatch,
)

Scope = Literal[
    "customers:read",
    "customers:write",
    "orders:read",
    "orders:write",
    "segments:read",
    "segments:write",
    "email:read",
    "email:write",
    "changes:read",
    "webhooks:read",
    "webhooks:write",
    "admin",
]
# every scope but ``agent``: an agent's key is made by POST /v1/agents only (a 422 here)
assert set(SCOPES) - {"agent"} == set(get_args(Scope))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    code: str
    detail: str
    field: str | None = None


class IndexLinks(BaseModel):
    health: str
    openapi: str
    docs: str


class Index(BaseModel):
    name: str
    version: str
    links: IndexLinks


class Health(BaseModel):
    status: Literal["ok"]
    table: str
    version: str


Cursor = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class PageQuery(_Strict):
    limit: int = Field(default=25, ge=1, le=100)
    cursor: Cursor | None = None


class CustomerListQuery(PageQuery):
    tag: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    updated_since: Timestamp | None = Field(
        default=None, description="only customers changed at or after this time; ordered by change"
    )


class CustomerLookupQuery(_Strict):
    email: Annotated[str, StringConstraints(min_length=1, max_length=254)] | None = None
    phone: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    source: Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)] | None = None
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


class OrderListQuery(PageQuery):
    customer_id: Annotated[str, StringConstraints(pattern=r"^cus_[0-9A-Z]{26}$")] | None = None
    placed_since: Timestamp | None = Field(default=None, description="placed at or after")
    placed_before: Timestamp | None = Field(default=None, description="placed strictly before")
    status: OrderStatus | None = Field(default=None, description="only orders in this status (not with customer_id)")
    source: Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)] | None = Field(
        default=None, description="with external_id: the order placed under this vendor id"
    )
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None, description="with source"
    )
    number: OrderNumber | None = Field(
        default=None,
        description="the orders with this shop order number (`#1001` and `1001` are the same), of every source",
    )


class OrderPage(BaseModel):
    data: list[Order]
    next_cursor: str | None


class LedgerPage(BaseModel):
    data: list[LedgerEntry]
    next_cursor: str | None = None


class CustomerPage(BaseModel):
    data: list[Customer]
    next_cursor: str | None


class CustomerList(BaseModel):
    data: list[Customer]


class TimelinePage(BaseModel):
    data: list[TimelineEvent]
    next_cursor: str | None


class BatchUpsertRequest(_Strict):
    """Each record is matched on its external ids, then its email; fields as in PATCH."""

    records: list[dict[str, JsonValue]] = Field(min_length=1, max_length=100)


class RecordError(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    detail: str
    field: str | None = None
    errors: list[dict[str, Any]] = []


class RecordResult(BaseModel):
    index: int
    status: Literal["created", "updated", "unchanged", "error"]
    id: str | None = None
    error: RecordError | None = None


class BatchUpsertResponse(BaseModel):
    results: list[RecordResult]
    created: int
    updated: int
    unchanged: int
    failed: int


class ApiKeyCreate(_Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    scopes: list[Scope] = Field(min_length=1, max_length=len(SCOPES))


class ApiKey(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="the visible start of the key, to tell keys apart")
    last4: str
    scopes: list[str]
    created_at: str
    revoked_at: str | None = None
    rotated_to: str | None = None
    created_by: str | None = Field(
        default=None,
        description="the id of the key that created this one; null for a tenant's first key (made by the operator)",
    )
    agent_id: str | None = Field(default=None, description="an on-premise agent's key: the agent (GET /v1/agents)")


class IssuedApiKey(ApiKey):
    key: str = Field(description="the whole secret key: shown only in this response")


class ApiKeyList(BaseModel):
    data: list[ApiKey]


class ConflictListQuery(PageQuery):
    status: ConflictStatus | None = Field(default=None, description="open or resolved; both if left out")


class IdentityConflictPage(BaseModel):
    data: list[IdentityConflict]
    next_cursor: str | None


class CustomerSearchQuery(PageQuery):
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="a prefix of a given or family name, an email or a phone number; several words must all match"
    )


class CustomerExportQuery(PageQuery):
    limit: int = Field(default=100, ge=1, le=100, description="items of the customer read per page")


class CustomerExport(BaseModel):
    """A page of everything Rapport holds about a person (GDPR art. 20): the first page
    has the profile, its identities and consent; ``sections`` holds the stored items by
    kind (``orders``, ``ledger``, ``timeline``, ``loyalty``, ``conflicts``, and any kind
    declared exportable later). Follow ``next_cursor`` until it is null."""

    customer_id: str
    profile: dict[str, Any] | None = None
    identities: dict[str, Any] | None = None
    consent: dict[str, Any] | None = None
    sections: dict[str, list[dict[str, Any]]] = {}
    next_cursor: str | None = None


# -- billing (crm/billing, docs/billing.md) --------------------------------------------------

ReturnUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$", max_length=2000)]


class CheckoutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: Annotated[str, StringConstraints(min_length=1, max_length=32)] = Field(
        description="a plan of the catalogue that is sold (not free), e.g. starter"
    )
    success_url: ReturnUrl | None = Field(
        default=None, description="where Checkout returns after paying (default: RAPPORT_BILLING_RETURN_URL)"
    )
    cancel_url: ReturnUrl | None = Field(default=None, description="where Checkout returns when abandoned")


class CheckoutSession(BaseModel):
    url: str = Field(description="the Stripe Checkout page to send the tenant's admin to")
    session_id: str


class PortalSession(BaseModel):
    url: str = Field(description="the Stripe customer portal: change plan, payment method, cancel")


class BillingPeriod(BaseModel):
    start: str | None
    end: str | None


class BillingCheckout(BaseModel):
    session_id: str
    plan: str | None


class BillingMetering(BaseModel):
    """A metered plan's hourly reports to its Stripe Billing Meter (crm/billing/meter.py)."""

    meter: str = Field(description="the meter's event_name")
    reported_through: str | None = Field(description="the last hour reported, YYYY-MM-DDTHH (UTC)")
    billing_period: str | None = Field(description="the billing period the reports count in (its start)")
    reported_in_period: int = Field(description="customers reported in this period (the meter sums them)")
    pending: str | None = Field(description="an hour sent but not yet booked: resent with the same identifier")


class Billing(BaseModel):
    """The tenant's plan, its Stripe subscription's status and what the plan allows."""

    plan: str
    status: str = Field(
        description="free (never subscribed), trialing, active, past_due, unpaid, paused, "
        "incomplete or canceled (back on free)"
    )
    current_period: BillingPeriod | None
    limits: dict[str, int | None] = Field(description="the plan's limits (null: unlimited)")
    usage: dict[str, int | str] = Field(description="usage so far in this period (crm/billing/usage.py)")
    features: list[str]
    past_due_since: str | None = None
    grace_until: str | None = Field(default=None, description="past_due: writes answer 402 from then on")
    cancel_at_period_end: bool = False
    subscription: str | None = None
    metering: BillingMetering | None = Field(default=None, description="metered plans only")
    checkout: BillingCheckout | None = Field(default=None, description="the open Checkout Session, if any")


class BillingWebhookResult(BaseModel):
    status: Literal["applied", "duplicate", "ignored"]
    event_id: str


# -- B2B accounts and invoices (crm/accounts, docs/accounts.md) ----------------------------

from crm.accounts.keys import ACCOUNT_ID_PATTERN
from crm.accounts.schemas import (  # noqa: F401 - re-exported for api.http.model()
    Account,
    Account360,
    AccountCreate,
    AccountList,
    AccountPage,
    AccountPatch,
    Contact,
    ContactLink,
    ContactPage,
    Invoice,
    InvoicePage,
    InvoiceStatus,
)


class AccountListQuery(PageQuery):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="a prefix of the name; case, accents and punctuation are ignored (results in name order)",
    )


class AccountLookupQuery(_Strict):
    source: Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)]
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class InvoiceListQuery(PageQuery):
    account_id: Annotated[str, StringConstraints(pattern=ACCOUNT_ID_PATTERN)] | None = Field(
        default=None, description="the account's invoices"
    )
    customer_id: Annotated[str, StringConstraints(pattern=r"^cus_[0-9A-Z]{26}$")] | None = Field(
        default=None, description="the customer's invoices (not with account_id)"
    )
    status: InvoiceStatus | None = Field(default=None, description="draft, open, paid or cancelled")


from crm.shipments.schemas import (  # noqa: F401 - re-exported for api.http.model()
    Shipment,
    ShipmentCreate,
    ShipmentListQuery,
    ShipmentPage,
)
from crm.webhooks.schemas import (  # noqa: F401 - re-exported for api.http.model()
    WebhookDelivery,
    WebhookDeliveryPage,
    WebhookDeliveryQuery,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointPage,
    WebhookEndpointPatch,
    WebhookEndpointWithSecret,
    WebhookReplay,
    WebhookReplayResult,
    WebhookSecretRotation,
    WebhookTestResult,
)

# --- the change feed (crm/changes.py) ---------------------------------------------------


class ChangeListQuery(_Strict):
    cursor: Cursor | None = Field(
        default=None,
        description="where to read on from: a previous page's next_cursor; 'now' for the current end; "
        "none for the oldest change kept",
    )
    types: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None, description="comma-separated event types: exact ('order.paid'), 'order.*' or '*'"
    )
    limit: int = Field(default=100, ge=1, le=500)


class ChangeObject(BaseModel):
    type: str = Field(description="order, customer, loyalty, segment_membership, checkout or shipment")
    id: str


class Change(BaseModel):
    id: str = Field(description="the event's id: the same on every delivery and replay")
    type: str
    occurred_at: str = Field(description="when the fact happened (at the vendor, for imported facts)")
    committed_at: str = Field(description="when the change entered the feed")
    object: ChangeObject
    customer_id: str | None
    data: dict[str, JsonValue] = Field(description="the object's new state, or the fields that changed")


class ChangePage(BaseModel):
    data: list[Change]
    next_cursor: str = Field(description="always present: read on from here (poll it later when has_more is false)")
    has_more: bool = Field(description="more changes are there already")
