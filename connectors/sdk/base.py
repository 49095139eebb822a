"""What a connector declares, and the records its streams yield.

Records are already in Rapport's shape (a connector knows its vendor; the SDK knows
Rapport), but not yet validated: the sink validates each one with the same pydantic
models the API uses, so a bad vendor record becomes a rejected record with a reason,
never a partial write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, get_args

from pydantic import BaseModel

Kind = Literal["ecommerce", "erp", "scm", "file"]


@dataclass
class CustomerRecord:
    """A person as the vendor knows them. ``profile`` holds CustomerPatch fields (name,
    email, phone, addresses, tags, consent, attributes...) without ``external_ids``:
    the sink adds ``{source: external_id}``."""

    external_id: str
    updated_at: str
    profile: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None  # when the vendor first saw the person (kept per source)
    # a contact of a B2B account: the account's external id in the same source, and the
    # person's role there ("Purchasing", "Accounts Payable"...). None: not linked by this record
    account: str | None = None
    role: str | None = None


@dataclass
class AccountRecord:
    """A company (a B2B account) as an ERP knows it. ``profile`` holds AccountPatch fields
    (name, tax_id, addresses, payment_terms, credit_limit in minor units, currency, tags,
    email, phone, website, attributes) without ``external_ids``: the sink adds
    ``{source: external_id}``. Its people arrive as :class:`CustomerRecord` s naming it
    in ``account``."""

    external_id: str
    updated_at: str
    profile: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None


@dataclass
class RefundRecord:
    reference: str  # the vendor's refund id: a refund is applied once per reference
    amount: int
    refunded_at: str | None = None
    reason: str | None = None


@dataclass
class OrderLine:
    sku: str
    name: str
    quantity: int
    unit_price: int
    category: str | None = None


@dataclass
class OrderTracking:
    """A fulfilment's parcel as an e-commerce order carries it: the carrier (as the shop
    names it, e.g. "UPS", "DHL Express") and the tracking number. The sink registers a
    shipment for each, the way ``POST /v1/shipments`` does (docs/shipping.md)."""

    tracking_number: str
    carrier: str | None = None
    shipped_at: str | None = None  # when the fulfilment was created, when the shop says


@dataclass
class OrderRecord:
    """An order in its current vendor state. The sink places it if new and then moves it
    (pay, fulfil, refund, cancel) until Rapport's copy matches, so a record read twice,
    late or out of order converges on the same order."""

    external_id: str
    updated_at: str
    channel: str
    currency: str
    placed_at: str
    lines: list[OrderLine]
    total: int
    discount: int = 0
    shipping: int = 0
    tax: int = 0
    customer: CustomerRecord | None = None  # the buyer, resolved like a customer record
    email: str | None = None  # a guest checkout's email when there is no customer record
    # a guest's name, phone, addresses (CustomerPatch fields): fill what the profile lacks
    guest_profile: dict[str, Any] = field(default_factory=dict)
    paid_at: str | None = None
    fulfilled_at: str | None = None
    cancelled_at: str | None = None
    cancel_reason: str | None = None
    refunds: list[RefundRecord] = field(default_factory=list)
    account: str | None = None  # a B2B order: the account's external id in the same source
    tracking: list[OrderTracking] = field(default_factory=list)  # its fulfilments' parcels
    number: str | None = None  # the order number the buyer knows (fields.order_number): shipments link by it


@dataclass
class InvoiceRecord:
    """An invoice in its current vendor state (ERP sales invoices). Amounts are integers
    in the currency's minor units; ``outstanding`` is what is still owed (the account's
    balance is the sum over its open invoices). A cancelled invoice (ERPNext docstatus 2,
    Odoo state ``cancel``) has ``status`` ``cancelled`` and owes nothing. Like orders, an
    older version never overwrites a newer one (``updated_at``)."""

    external_id: str
    updated_at: str
    number: str
    currency: str
    issued_at: str
    total: int
    outstanding: int
    status: Literal["draft", "open", "paid", "cancelled"] = "open"
    due_at: str | None = None
    payment_terms: str | None = None
    account: str | None = None  # the billed company's external id (same source)
    customer: CustomerRecord | None = None  # the billed person (or the account's contact)
    email: str | None = None
    order: str | None = None  # the sales order's external id (same source), when known
    lines: list[OrderLine] = field(default_factory=list)
    tax: int = 0
    paid_at: str | None = None
    cancelled_at: str | None = None
    # a credit note (ERPNext ``is_return``, Odoo ``out_refund``): ``total`` and ``outstanding``
    # are negative or zero (what is owed back), so summing open invoices nets it out
    credit_note: bool = False
    return_against: str | None = None  # the credited invoice's external id (same source), when known


@dataclass
class CheckoutRecord:
    """A checkout the buyer started and has not completed (cart abandonment journeys
    start from it, docs/journeys.md). Recorded once per ``external_id``: a later read of
    the same checkout changes nothing. The buyer is resolved as an order's is."""

    external_id: str
    updated_at: str
    started_at: str
    currency: str | None = None
    total: int | None = None
    url: str | None = None  # where the buyer resumes it (https only)
    lines: list[OrderLine] = field(default_factory=list)
    customer: CustomerRecord | None = None
    email: str | None = None
    guest_profile: dict[str, Any] = field(default_factory=dict)


# the SDK stands alone (a partner imports it without crm): crm/shipments/status.py has the
# same list, and tests/unit/test_shipment_status.py checks they agree
ShipmentStatus = Literal[
    "pre_transit",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "available_for_pickup",
    "return_to_sender",
    "failure",
    "exception",
]
SHIPMENT_STATUSES: tuple[str, ...] = get_args(ShipmentStatus)


@dataclass
class ShipmentCheckpoint:
    """One scan of a parcel (a carrier event). ``at`` is when it happened (UTC), not when
    it arrived; ``key`` is the provider's id of the checkpoint when it has one (AfterShip's
    ``hash``), else the sink derives one from the time, status, message and location, so
    the same checkpoint read twice (a webhook and a re-poll) is kept once."""

    at: str
    status: ShipmentStatus
    message: str | None = None
    location: str | None = None
    detail: str | None = None  # the provider's finer status (EasyPost status_detail, AfterShip subtag)
    key: str | None = None


@dataclass
class ShipmentRecord:
    """A tracker as a shipping provider (EasyPost, AfterShip) knows it, in Rapport's
    statuses. ``external_id`` is the provider's tracker id; the shipment is found by its
    tracking number (registered with ``POST /v1/shipments`` or from an e-commerce
    fulfilment), else by ``order_id`` when the provider kept Rapport's order id as the
    tracker's reference, else by ``order_ref``: the shop's own order id the provider kept
    (an order's external id in one of the tenant's connected sources), else by
    ``order_number``: the order number the buyer knows (``#1001``, the same as ``1001``),
    when exactly one of the tenant's orders has it. ``event_id`` is the provider event that
    carried it (webhooks)."""

    external_id: str
    updated_at: str
    tracking_number: str
    carrier: str
    status: ShipmentStatus
    checkpoints: list[ShipmentCheckpoint] = field(default_factory=list)
    status_detail: str | None = None
    est_delivery_at: str | None = None
    url: str | None = None  # the public tracking page, when the provider gives one
    order_id: str | None = None
    event_id: str | None = None
    order_ref: str | None = None
    order_number: str | None = None


@dataclass
class Rejected:
    """A vendor record the connector could not map; the run reports it with the reason."""

    external_id: str | None
    reason: str


Record = CustomerRecord | AccountRecord | OrderRecord | InvoiceRecord | CheckoutRecord | ShipmentRecord | Rejected

R = TypeVar("R")
MALFORMED = (ValueError, TypeError, KeyError, AttributeError)  # what a record of an unexpected shape raises


def rejecting(what: str, external_id: str, build: Callable[[], R]) -> R | Rejected:
    """``build()``, or, when the vendor record turns out malformed (a missing key, a wrong
    type, a bad value), ``Rejected(external_id, "<what> <external_id>: <error>")``."""
    try:
        return build()
    except MALFORMED as exc:
        return Rejected(external_id, f"{what} {external_id}: {exc}")


@dataclass
class Page:
    """One page of records and the state that resumes *after* it (the checkpoint)."""

    records: list[Record]
    state: dict[str, Any]
    total: int | None = None  # the vendor's total for the window, when it says (progress bars)


@dataclass
class ReadContext:
    """What ``read`` gets: the validated config (secrets decrypted), an HTTP client bound to
    the vendor, and the mode (``backfill`` ignores the cursor and reads everything)."""

    config: Any
    client: Any
    mode: Literal["backfill", "incremental"] = "incremental"
    # set by the runner: whose run this is (a file connector finds its upload under the
    # tenant and connection; ``run_id`` tells a resumed run from a new one)
    tenant_id: str | None = None
    connection_id: str | None = None
    run_id: str | None = None
    upload_id: str | None = None  # file connectors: the upload this run imports


@dataclass
class WebhookDelivery:
    """A verified push delivery: its de-duplication id, topic and the records it carries."""

    delivery_id: str
    topic: str
    records: list[Record]
    # why a verified delivery carries no record (e.g. the vendor could not be read again
    # for it: the next sync catches up), or what the tenant should fix in the vendor's
    # webhook settings; logged by the worker, never an error
    note: str | None = None


class Stream:
    """One kind of record a connector offers; ``read`` pages through it incrementally."""

    name: ClassVar[str]

    def read(self, rc: ReadContext, state: dict[str, Any]) -> Iterator[Page]:
        raise NotImplementedError


class Connector:
    """Subclass and register under the ``rapport.connectors`` entry-point group.

    ``name`` is also the ``source`` that external ids and orders are recorded under
    (``source(config)`` may say otherwise).
    ``Config`` fields marked ``Secret`` are encrypted at rest and never returned."""

    name: ClassVar[str]
    kind: ClassVar[Kind]
    version: ClassVar[str]
    title: ClassVar[str] = ""
    Config: ClassVar[type[BaseModel]]
    streams: ClassVar[tuple[type[Stream], ...]] = ()
    webhooks: ClassVar[bool] = False
    # True when a verified delivery is only a hint (its signature carries no id or time, as
    # Frappe's): the records come from reading the vendor again, never from the body, and a
    # delivery the vendor cannot confirm carries none (``note`` says why). The conformance
    # kit checks either promise.
    webhook_hints: ClassVar[bool] = False

    def client(self, config: Any) -> Any:
        """The HTTP client for this vendor (base URL, auth). None for file connectors."""
        return None

    def check(self, config: Any, client: Any) -> None:
        """Raise ``CheckFailed`` with a reason a tenant can act on if the config does not work."""

    def verify_webhook(self, config: Any, headers: dict[str, str], body: bytes) -> None:
        """Raise ``WebhookRejected`` unless the delivery is signed with the config's secret.
        Called before anything of the body is parsed."""
        from connectors.sdk.errors import WebhookRejected

        raise WebhookRejected(f"{self.name} does not accept webhooks")

    def parse_webhook(self, config: Any, headers: dict[str, str], body: bytes) -> WebhookDelivery:
        raise NotImplementedError

    # shipping providers (kind ``scm``): trackers created and read one by one, for
    # POST /v1/shipments and the re-poll schedule (crm never calls a vendor; see
    # connectors/shipping.py)
    tracking: ClassVar[bool] = False

    def create_tracker(
        self, config: Any, client: Any, tracking_number: str, carrier: str | None, reference: str | None
    ) -> ShipmentRecord:
        """Ask the provider to track a parcel (``reference``: Rapport's order id, kept by
        providers that take one). Idempotent at the provider: the same parcel again
        answers its existing tracker. Raises ``VendorError`` when the provider refuses."""
        raise NotImplementedError

    def fetch_tracker(
        self, config: Any, client: Any, tracker_id: str, tracking_number: str, carrier: str
    ) -> ShipmentRecord:
        """The tracker as the provider has it now (the re-poll of a non-terminal shipment)."""
        raise NotImplementedError

    def reread(self, config: Any, path: str) -> Any:
        """One GET of ``path`` as JSON, with no retries and no waiting: a webhook is a hint,
        so its record is read again from the vendor (its current state) and a replayed or
        reordered body cannot bring an old version back. None when the vendor cannot be
        read now (the caller keeps the body, still ordered by the vendor's ``updated_at``).
        ``client(config, retries=0, max_wait=0, timeout=5.0)`` must be supported."""
        import httpx

        from connectors.sdk.errors import RateLimited, VendorError

        try:
            client = self.client(config, retries=0, max_wait=0, timeout=5.0)  # type: ignore[call-arg]
            try:
                body, _ = client.get_json(path)
            finally:
                client.close()
        except (VendorError, RateLimited, ValueError, httpx.HTTPError, httpx.InvalidURL):
            return None
        return body

    def webhook_delivery_id(self, headers: dict[str, str], body: bytes) -> str:
        """The vendor's delivery id, read from the headers (never the unverified body's
        content). Default: a digest of the body, so an identical replay is recognised."""
        import hashlib

        return "sha256:" + hashlib.sha256(body).hexdigest()

    @classmethod
    def source(cls, config: Any) -> str:
        """The source that external ids and orders are recorded under: the connector's
        name, unless the connector lets the config name it (the CSV import does)."""
        return cls.name

    @classmethod
    def stream(cls, name: str) -> type[Stream] | None:
        return next((s for s in cls.streams if s.name == name), None)
