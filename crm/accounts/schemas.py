"""Pydantic models of accounts, contacts and invoices: they validate requests and the
sink's records, shape responses and generate the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

from crm.customers.schemas import (
    _ATTRIBUTES_SCHEMA,
    Address,
    Attributes,
    Email,
    ExternalId,
    Name,
    Phone,
    Source,
    Tag,
    Timestamp,
    _unique_tags,
)
from crm.orders.schemas import Currency, LineItem, Money, OrderChannel

CUSTOMER_ID_PATTERN = r"^cus_[0-9A-HJKMNP-TV-Z]{26}$"
AccountName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")
]
TaxId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")
]
PaymentTerms = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")
]
Website = Annotated[str, StringConstraints(max_length=300, pattern=r"^https?://[^\s]+$")]
Role = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")
]
InvoiceStatus = Literal["draft", "open", "paid", "cancelled"]
# a credit note's amounts are negative (what is owed back): the account's balance is the plain sum
SignedMoney = Annotated[int, Field(ge=-(10**12), le=10**12, description="minor units; negative on a credit note")]
OrderState = Literal["placed", "paid", "fulfilled", "cancelled", "partially_refunded", "refunded"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountFields(_Strict):
    """Every writable field of an account; all optional so PATCH and the sink share them."""

    name: AccountName | None = None
    tax_id: TaxId | None = Field(default=None, description="VAT number, EIN, …")
    addresses: list[Address] | None = Field(default=None, max_length=10)
    payment_terms: PaymentTerms | None = Field(default=None, description='e.g. "Net 30"')
    credit_limit: Money | None = Field(default=None, description="minor units of `currency`")
    currency: Currency | None = Field(default=None, description="ISO 4217, the account's billing currency")
    tags: Annotated[list[Tag], AfterValidator(_unique_tags)] | None = Field(default=None, max_length=50)
    email: Email | None = None
    phone: Phone | None = None
    website: Website | None = None
    attributes: Attributes | None = None
    external_ids: dict[Source, ExternalId] | None = Field(default=None, max_length=20)


class AccountCreate(AccountFields):
    """POST /v1/accounts: a name is required."""

    name: AccountName


class AccountPatch(AccountFields):
    """PATCH: given fields replace (null removes); ``attributes`` and ``external_ids`` merge
    key by key, a key set to null is removed (JSON Merge Patch). The name cannot be removed."""

    name: AccountName = Field(default=None, description="cannot be null: an account keeps a name")  # type: ignore[assignment]
    attributes: Annotated[dict[str, JsonValue | None], Field(json_schema_extra=_ATTRIBUTES_SCHEMA)] | None = None
    external_ids: dict[Source, ExternalId | None] | None = Field(default=None, max_length=20)  # type: ignore[assignment]


class Account(BaseModel):
    """An account as the API returns it."""

    id: str
    name: str | None = Field(default=None, description="null only on a stub")
    tax_id: str | None = None
    addresses: list[Address] = []
    payment_terms: str | None = None
    credit_limit: int | None = None
    currency: str | None = None
    tags: list[str] = []
    email: str | None = None
    phone: str | None = None
    website: str | None = None
    attributes: dict[str, JsonValue] = {}
    external_ids: dict[str, str] = {}
    stub: bool = Field(
        default=False,
        description="created from a contact, order or invoice naming the account's external id "
        "before the account's own record arrived; that record fills it",
    )
    balance: dict[str, int] | None = Field(
        default=None,
        description="per currency: what the account's open invoices still owe, minor units "
        "(on GET, PATCH and the 360; null in lists)",
    )
    open_invoices: int | None = Field(default=None, description="how many invoices are open (with balance)")
    created_at: str
    updated_at: str
    version: int


class AccountPage(BaseModel):
    data: list[Account]
    next_cursor: str | None


class AccountList(BaseModel):
    data: list[Account]


class ContactLink(_Strict):
    """POST /v1/accounts/{id}/contacts: make a customer a contact of the account."""

    customer_id: Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)]
    role: Role | None = Field(default=None, description='e.g. "Purchasing", "Accounts Payable"')


class Contact(BaseModel):
    customer_id: str
    role: str | None = None
    linked_at: str
    source: str = Field(description="api, or the connector that linked the contact")
    name: Name | None = None
    email: str | None = None
    phone: str | None = None


class ContactPage(BaseModel):
    data: list[Contact]
    next_cursor: str | None


class AccountOrder(BaseModel):
    """An order of the account in brief. ``order_id`` and ``customer_id`` are set when a
    contact placed it (GET /v1/orders/{order_id} has it whole); null when the company
    ordered without a contact person (the account keeps that order)."""

    order_id: str | None = None
    customer_id: str | None = None
    source: str
    external_id: str
    channel: OrderChannel | None = None
    status: OrderState
    currency: str
    total: int
    placed_at: str


class InvoiceSummary(BaseModel):
    id: str
    number: str
    status: InvoiceStatus
    overdue: bool = False
    currency: str
    total: int
    outstanding: int
    issued_at: str
    due_at: str | None = None
    credit_note: bool = Field(default=False, description="a credit note: total and outstanding are negative")


class Invoice(BaseModel):
    """An invoice as an ERP reported it (read-only: connectors write invoices)."""

    id: str
    number: str
    status: InvoiceStatus
    overdue: bool = Field(default=False, description="open and past its due date")
    account_id: str | None = Field(default=None, description="the billed company, if any")
    customer_id: str | None = Field(default=None, description="the billed person (or the account's contact), if any")
    order_id: str | None = Field(default=None, description="the Rapport order it bills, when known")
    order_external_id: str | None = None
    source: str
    external_id: str
    currency: str
    issued_at: str
    due_at: str | None = None
    payment_terms: str | None = None
    total: int
    outstanding: int = Field(description="what is still owed, minor units (0 once paid or cancelled)")
    tax: int = 0
    lines: list[LineItem] = []
    paid_at: str | None = None
    cancelled_at: str | None = None
    credit_note: bool = Field(default=False, description="a credit note (a return): amounts negative, owed back")
    return_against: str | None = Field(default=None, description="the credited invoice's external id, when known")
    source_updated_at: str | None = Field(default=None, description="the vendor's time of this version")
    created_at: str
    updated_at: str


class InvoicePage(BaseModel):
    data: list[Invoice]
    next_cursor: str | None


class AccountRef(BaseModel):
    """The account a customer is a contact of, as their 360 names it."""

    id: str
    name: str | None = None
    role: str | None = None


class Account360(BaseModel):
    account: Account
    contacts: list[Contact] = Field(description="the first 50 contacts (GET …/contacts pages through all)")
    more_contacts: bool = False
    recent_orders: list[AccountOrder] | None = Field(description="10 latest; null without the orders:read scope")
    recent_invoices: list[InvoiceSummary] | None = Field(description="10 latest; null without orders:read")


class InvoiceWrite(_Strict):
    """An invoice as a connector reports it, validated before anything is written."""

    number: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]
    status: InvoiceStatus
    currency: Currency
    issued_at: Timestamp
    due_at: Timestamp | None = None
    payment_terms: PaymentTerms | None = None
    total: SignedMoney
    outstanding: SignedMoney
    tax: SignedMoney = 0
    lines: list[LineItem] = Field(default=[], max_length=250)
    paid_at: Timestamp | None = None
    cancelled_at: Timestamp | None = None
    credit_note: bool = False
    return_against: Annotated[str, StringConstraints(min_length=1, max_length=140)] | None = None

    @model_validator(mode="after")
    def _owed(self) -> InvoiceWrite:
        """An invoice owes at most its total; a credit note (ERPNext return, Odoo refund)
        owes back at most its total, so all its amounts are negative or zero."""
        sign = -1 if self.credit_note else 1
        for name in ("total", "outstanding", "tax"):
            if sign * getattr(self, name) < 0:
                raise ValueError(
                    f"{name} {getattr(self, name)} must be {'at most' if self.credit_note else 'at least'} 0 "
                    f"on {'a credit note' if self.credit_note else 'an invoice'}"
                )
        if sign * self.outstanding > sign * self.total:
            raise ValueError(f"outstanding {self.outstanding} exceeds the total {self.total}")
        return self


def dump(model: BaseModel, names: set[str]) -> dict[str, Any]:
    return model.model_dump(mode="json", include=names)
