"""ERPNext (Frappe REST API, ``/api/resource/<DocType>``): customers and accounts, contacts,
addresses, sales orders and sales invoices, plus webhooks as hints.

Auth: ``Authorization: token <api_key>:<api_secret>`` (a user's API key pair; every request
runs with that user's permissions).

Listing: ``GET /api/resource/<DocType>`` with explicit ``fields``, ``filters`` (JSON),
``order_by=modified asc, name asc`` and ``limit_page_length``; never ``limit_start``. Paging is
keyset, on (``modified``, ``name``), with an inclusive bound: the next page asks for
``modified >= <the last modified read>`` (the rows at that time come again and are skipped by
name), and when one ``modified`` holds a whole page, a tie page asks for ``modified = m and
name > <last name>`` until it is empty, then ``modified > m``. Offset paging would skip or
repeat rows whenever a document changes during the read (frappe/erpnext#49037). Child tables
(``items``, ``links``, ``email_ids``...) are read per page with one listing of the child
DocType (``parent=<DocType>``, ``filters=[["parent", "in", [...]]]``), not one GET per
document. Mapping rules: :mod:`connectors.erpnext.mapping`; request counts and the time
zone: docs/connectors.md, "ERPNext".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.erpnext import mapping
from connectors.sdk.base import Connector, Page, ReadContext, Record, Rejected, Stream, WebhookDelivery
from connectors.sdk.errors import CheckFailed, RateLimited, VendorError
from connectors.sdk.fields import base_url
from connectors.sdk.http import Client
from connectors.sdk.secrets import Secret
from connectors.sdk.webhooks import verify_hmac_base64
from connectors.sdk.window import Window

_log = logging.getLogger("rapport.connectors")

Channel = Literal["web", "mobile", "tv", "store", "marketplace"]
PAGE_SIZE = 100
SIGNATURE = "X-Frappe-Webhook-Signature"
DOCTYPES = ("Customer", "Contact", "Address", "Sales Order", "Sales Invoice")

CUSTOMER_FIELDS = (
    "name",
    "customer_name",
    "customer_type",
    "customer_group",
    "territory",
    "tax_id",
    "default_currency",
    "payment_terms",
    "disabled",
    "email_id",
    "mobile_no",
    "website",
    "creation",
    "modified",
)
ADDRESS_FIELDS = (
    "name",
    "address_title",
    "address_type",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "pincode",
    "country",
    "is_primary_address",
    "disabled",
    "creation",
    "modified",
)
CONTACT_FIELDS = (
    "name",
    "first_name",
    "last_name",
    "full_name",
    "email_id",
    "phone",
    "mobile_no",
    "designation",
    "department",
    "unsubscribed",
    "creation",
    "modified",
)
SALES_FIELDS = (
    "name",
    "customer",
    "customer_name",
    "currency",
    "total",
    "total_taxes_and_charges",
    "discount_amount",
    "grand_total",
    "rounded_total",
    "docstatus",
    "status",
    "contact_person",
    "contact_email",
    "creation",
    "modified",
)
ORDER_FIELDS = (*SALES_FIELDS, "order_type", "transaction_date", "delivery_date", "per_delivered", "per_billed")
INVOICE_FIELDS = (
    *SALES_FIELDS,
    "posting_date",
    "posting_time",
    "due_date",
    "outstanding_amount",
    "payment_terms_template",
    "is_return",
    "return_against",
)
ITEM_FIELDS = ("name", "item_code", "item_name", "qty", "uom", "stock_uom", "rate", "amount")

# DocType → its child tables read per page: table field → (child DocType, fields)
CHILDREN: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "Customer": {"credit_limits": ("Customer Credit Limit", ("company", "credit_limit"))},
    "Contact": {
        "links": ("Dynamic Link", ("link_doctype", "link_name")),
        "email_ids": ("Contact Email", ("email_id", "is_primary")),
        "phone_nos": ("Contact Phone", ("phone", "is_primary_phone", "is_primary_mobile_no")),
    },
    "Address": {"links": ("Dynamic Link", ("link_doctype", "link_name"))},
    "Sales Order": {"items": ("Sales Order Item", ITEM_FIELDS)},
    "Sales Invoice": {"items": ("Sales Invoice Item", (*ITEM_FIELDS, "sales_order"))},
}


class ERPNextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="the Frappe site's base URL, e.g. https://erp.example.com")
    api_key: Secret = Field(description="API key of the integration user (User > Settings > API Access)")
    api_secret: Secret = Field(description="that user's API secret, shown once when the keys are generated")
    webhook_secret: Secret | None = Field(
        default=None, description="the Webhook Secret set on the site's webhooks (signs X-Frappe-Webhook-Signature)"
    )
    time_zone: str | None = Field(
        default=None,
        description=(
            "the site's time zone (IANA, e.g. Europe/Berlin), in which Frappe writes its times; "
            "default: asked from the site (System Settings)"
        ),
    )
    channel: Channel = Field(default="store", description="the channel of sales orders (Shopping Cart orders: web)")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        return base_url(v, "base_url")

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, v: str | None) -> str | None:
        if v is not None:
            zone(v, "time_zone")
        return v


def zone(name: Any, what: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{what} {str(name)[:60]!r} is not an IANA time zone (e.g. Europe/Berlin)") from None


def resource(doctype: str, name: str | None = None) -> str:
    path = f"api/resource/{quote(doctype, safe='')}"
    return path if name is None else f"{path}/{quote(name, safe='')}"


def _same_time(a: Any, b: Any) -> bool:
    try:
        return datetime.fromisoformat(str(a)) == datetime.fromisoformat(str(b))
    except ValueError:
        return str(a) == str(b)


class Site:
    """One ERPNext site as the streams read it: listings, child tables and the lookups a
    page needs (customer types, addresses, countries, the time zone), asked once per read."""

    def __init__(self, config: ERPNextConfig, client: Client) -> None:
        self.config, self.client = config, client
        self._zone: ZoneInfo | None = zone(config.time_zone, "time_zone") if config.time_zone else None
        self._countries: dict[str, str] | None = None

    @property
    def zone(self) -> ZoneInfo:
        """The site's time zone: the config's, else ``frappe.client.get_time_zone`` (1 request)."""
        if self._zone is None:
            body, _ = self.client.get_json("api/method/frappe.client.get_time_zone")
            name = body.get("message", {}).get("time_zone") if isinstance(body, dict) else None
            if not name:
                raise VendorError(
                    "the site did not say its time zone: set time_zone in the connection's config", kind="config"
                )
            try:
                self._zone = zone(name, "the site's time zone")
            except ValueError as exc:
                raise VendorError(f"{exc}: set time_zone in the connection's config", kind="config") from None
        return self._zone

    def fetch(
        self,
        doctype: str,
        fields: Iterable[str],
        filters: list[Any],
        *,
        order_by: str,
        limit: int,
        parent: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {
            "fields": json.dumps(list(fields)),
            "filters": json.dumps(filters),
            "order_by": order_by,
            "limit_page_length": str(limit),
        }
        if parent:
            params["parent"] = parent
        try:
            body, _ = self.client.get_json(resource(doctype), params=params)
        except VendorError as exc:
            if exc.status == 403:
                raise VendorError(
                    f"the API user may not read {doctype} (403): give its role read permission on {parent or doctype}",
                    status=403,
                ) from None
            raise
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise VendorError(f"GET {resource(doctype)}: no 'data' list in the answer")
        return [d for d in data if isinstance(d, dict)]

    def attach_children(self, doctype: str, docs: list[dict[str, Any]]) -> None:
        """Fill each document's child tables: one listing per child DocType for the page."""
        names = [d["name"] for d in docs]
        if not names:
            return
        for table, (child, fields) in CHILDREN.get(doctype, {}).items():
            rows = self.fetch(
                child,
                (*fields, "parent", "parentfield", "idx"),
                [["parent", "in", names], ["parenttype", "=", doctype], ["parentfield", "=", table]],
                order_by="parent asc, idx asc",
                limit=0,
                parent=doctype,
            )
            by_parent: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                by_parent.setdefault(str(row.get("parent")), []).append(row)
            for d in docs:
                d[table] = by_parent.get(d["name"], [])

    def companies(self, names: Iterable[Any]) -> set[str]:
        """Which of these customers are companies (``customer_type`` Company): 1 request."""
        wanted = sorted({str(n) for n in names if n})
        if not wanted:
            return set()
        rows = self.fetch("Customer", ("name", "customer_type"), [["name", "in", wanted]], order_by="name asc", limit=0)
        return {str(r["name"]) for r in rows if r.get("customer_type") == mapping.COMPANY}

    def countries(self) -> dict[str, str]:
        """Country name → ISO code (the Country doctype's ``code``): 1 request per read; when
        the user may not read Country, only two-letter countries are understood."""
        if self._countries is None:
            try:
                rows = self.fetch("Country", ("name", "code"), [], order_by="name asc", limit=0)
            except VendorError as exc:
                if exc.status not in (403, 404):
                    raise
                rows = []
            self._countries = {str(r["name"]): str(r.get("code") or "").upper() for r in rows if r.get("code")}
        return self._countries

    def addresses_of(self, customers: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """Every Address linked to each customer (disabled ones too: they count for
        ``updated_at``): 2 requests for a page of customers."""
        wanted = sorted(set(customers))
        if not wanted:
            return {}
        links = self.fetch(
            "Dynamic Link",
            ("parent", "link_name"),
            [["parenttype", "=", "Address"], ["link_doctype", "=", "Customer"], ["link_name", "in", wanted]],
            order_by="parent asc, idx asc",
            limit=0,
            parent="Address",
        )
        names = sorted({str(r["parent"]) for r in links})
        if not names:
            return {}
        docs = {
            d["name"]: d
            for d in self.fetch("Address", ADDRESS_FIELDS, [["name", "in", names]], order_by="name asc", limit=0)
        }
        out: dict[str, list[dict[str, Any]]] = {}
        for r in links:
            doc = docs.get(str(r["parent"]))
            if doc is not None:
                out.setdefault(str(r["link_name"]), []).append(doc)
        return out

    def customer_records(self, docs: list[dict[str, Any]], *, children: bool = True) -> list[Record]:
        """Customers with their credit limits and addresses → account / person records
        (``children=False``: the documents came whole, from a keyed GET)."""
        if children:
            self.attach_children("Customer", docs)
        addresses = self.addresses_of(d["name"] for d in docs)
        countries = self.countries() if addresses else {}
        return [mapping.customer(d, addresses.get(d["name"], []), countries, self.zone) for d in docs]


@dataclass
class _Key:
    """What the window de-duplicates on: the document's name and its ``modified`` (UTC)."""

    external_id: str
    updated_at: str


class _DocStream(Stream):
    doctype: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    page_size: ClassVar[int] = PAGE_SIZE

    def records(self, site: Site, docs: list[dict[str, Any]]) -> list[Record]:
        raise NotImplementedError

    def read(self, rc: ReadContext, state: dict[str, Any]) -> Iterator[Page]:
        window = Window(state, backfill=rc.mode == "backfill")
        site = Site(rc.config, rc.client)
        if window.resumed:
            token: dict[str, Any] = dict(window.page or {})
        else:
            token = {
                "m": mapping.to_site(window.since, site.zone) if window.since else None,
                "n": None,
                "strict": False,
            }
        while True:
            docs, next_token = self._page(site, token)
            keys, bad = [], []
            for d in docs:
                try:
                    keys.append(_Key(str(d["name"]), mapping.stamp(d, site.zone)))
                except (KeyError, ValueError, TypeError) as exc:
                    bad.append(Rejected(str(d.get("name")), f"erpnext {self.doctype} {d.get('name')}: {exc}"))
            fresh = {k.external_id for k in window.fresh(keys)}
            todo = [d for d in docs if str(d.get("name")) in fresh]
            records = bad + (self.records(site, todo) if todo else [])
            yield Page(records, state=window.advance(keys, next_token))
            if next_token is None:
                return
            token = next_token

    def _page(self, site: Site, token: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One keyset page and the token of the next (None: the window is read)."""
        m, n, strict = token.get("m"), token.get("n"), bool(token.get("strict"))
        if n is not None:  # inside a tie: the rows of one ``modified`` after a name
            docs = site.fetch(
                self.doctype,
                self.fields,
                [["modified", "=", m], ["name", ">", n]],
                order_by="name asc",
                limit=self.page_size,
            )
            if docs:
                return docs, {"m": m, "n": docs[-1]["name"], "strict": False}
            return docs, {"m": m, "n": None, "strict": True}
        filters = [["modified", ">" if strict else ">=", m]] if m is not None else []
        docs = site.fetch(self.doctype, self.fields, filters, order_by="modified asc, name asc", limit=self.page_size)
        if not docs:
            return docs, None
        last_m, last_n = docs[-1].get("modified"), docs[-1].get("name")
        if m is not None and not strict and _same_time(last_m, m):
            return docs, {"m": m, "n": last_n, "strict": False}  # the whole page shares m: break the tie by name
        return docs, {"m": last_m, "n": None, "strict": False}  # inclusive: the rows at last_m come again


class Customers(_DocStream):
    """``Customer``: companies as accounts, individuals as people, with their addresses."""

    name = "customers"
    doctype = "Customer"
    fields = CUSTOMER_FIELDS

    def records(self, site: Site, docs: list[dict[str, Any]]) -> list[Record]:
        return site.customer_records(docs)


class Contacts(_DocStream):
    """``Contact``: the people of company customers (``links``), with their role."""

    name = "contacts"
    doctype = "Contact"
    fields = CONTACT_FIELDS

    def records(self, site: Site, docs: list[dict[str, Any]]) -> list[Record]:
        site.attach_children("Contact", docs)
        companies = site.companies(n for d in docs for n in mapping.customer_links(d))
        out = [mapping.contact(d, companies, site.zone) for d in docs]
        return [r for r in out if r is not None]


class Addresses(_DocStream):
    """``Address``: a changed address brings its customers again, each with all its
    addresses and the latest ``modified`` of them and the customer as ``updated_at``."""

    name = "addresses"
    doctype = "Address"
    fields = ("name", "modified")

    def records(self, site: Site, docs: list[dict[str, Any]]) -> list[Record]:
        site.attach_children("Address", docs)
        customers = sorted({n for d in docs for n in mapping.customer_links(d)})
        if not customers:
            return []
        found = site.fetch("Customer", CUSTOMER_FIELDS, [["name", "in", customers]], order_by="name asc", limit=0)
        return site.customer_records(found)


class SalesOrders(_DocStream):
    name = "sales_orders"
    doctype = "Sales Order"
    fields = ORDER_FIELDS

    def records(self, site: Site, docs: list[dict[str, Any]]) -> list[Record]:
        live = [d for d in docs if int(d.get("docstatus") or 0) != 0]  # drafts are not orders yet
        site.attach_children("Sales Order", live)
        companies = site.companies(d.get("customer") for d in live)
        out = [mapping.order(d, companies, site.zone, site.config.channel) for d in live]
        return [r for r in out if r is not None]


class SalesInvoices(_DocStream):
    name = "sales_invoices"
    doctype = "Sales Invoice"
    fields = INVOICE_FIELDS

    def records(self, site: Site, docs: list[dict[str, Any]]) -> list[Record]:
        site.attach_children("Sales Invoice", docs)
        companies = site.companies(d.get("customer") for d in docs)
        return [mapping.invoice(d, companies, site.zone) for d in docs]


def webhook_target(body: bytes) -> tuple[str, str] | None:
    """(doctype, name) a Frappe webhook body points at: ``{"doctype", "name"}`` as the
    documented request body sets them, else the ``parenttype``/``parent`` of a child row
    (a body of selected fields with a child table, as Frappe's own webhook example)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    doctype, name = data.get("doctype"), data.get("name")
    if isinstance(doctype, str) and isinstance(name, str) and doctype and name:
        return doctype, name
    for value in data.values():
        if isinstance(value, list):
            for row in value:
                if (
                    isinstance(row, dict)
                    and isinstance(row.get("parenttype"), str)
                    and isinstance(row.get("parent"), str)
                ):
                    return row["parenttype"], row["parent"]
    return None


UNVERSIONED = (
    'the webhook\'s body has no "modified": add "modified": "{{ doc.modified }}" to its JSON '
    "(docs/connectors.md, ERPNext), else later changes of this document within 7 days look like replays "
    "and are dropped until the next sync"
)


def webhook_versioned(body: bytes) -> bool:
    """Whether the body names the document's version (``modified``): the delivery id is the
    body's digest, so without it every delivery of a document is the same delivery."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and bool(data.get("modified"))


class ERPNext(Connector):
    name = "erpnext"
    kind = "erp"
    version = "1.0.0"
    title = "ERPNext"
    Config = ERPNextConfig
    streams = (Customers, Contacts, Addresses, SalesOrders, SalesInvoices)
    webhooks = True
    webhook_hints = True  # Frappe's signature carries no id or time: a delivery is only a hint

    def client(self, config: ERPNextConfig, **options: Any) -> Client:
        """``options`` go to :class:`Client` (``sleep``, ``time_left``, ``max_wait``...)."""
        return Client(
            config.base_url,
            headers={"Authorization": f"token {config.api_key}:{config.api_secret}", "Accept": "application/json"},
            **options,
        )

    def check(self, config: ERPNextConfig, client: Client) -> None:
        try:
            body, _ = client.get_json("api/method/frappe.auth.get_logged_user")
        except VendorError as exc:
            if exc.status in (401, 403):
                raise CheckFailed(
                    f"ERPNext refused the API key and secret ({exc.status}): generate the keys again "
                    "(User > Settings > API Access) and paste both whole",
                    status=exc.status,
                ) from None
            if exc.status == 404:
                raise CheckFailed(
                    f"no Frappe site at {config.base_url} (404 on /api/method): check base_url", status=404
                ) from None
            raise CheckFailed(
                f"could not reach ERPNext at {config.base_url}: {exc}", status=exc.status, kind=exc.kind
            ) from None
        if not isinstance(body, dict) or "message" not in body:
            raise CheckFailed(f"{config.base_url} did not answer like a Frappe site")
        for doctype in DOCTYPES:
            try:
                client.get_json(resource(doctype), params={"fields": '["name"]', "limit_page_length": "1"})
            except VendorError as exc:
                if exc.status in (401, 403):
                    raise CheckFailed(
                        f"the API user may not read {doctype} ({exc.status}): give its role read "
                        f"permission on {doctype} (Role Permissions Manager)",
                        status=exc.status,
                    ) from None
                if exc.status == 404:
                    raise CheckFailed(
                        f"{config.base_url} has no {doctype} DocType (404): is ERPNext installed on this site?",
                        status=404,
                    ) from None
                raise CheckFailed(f"could not list {doctype}: {exc}", status=exc.status, kind=exc.kind) from None
        try:
            Site(config, client).zone  # noqa: B018 - resolves and checks the time zone
        except VendorError as exc:
            raise CheckFailed(str(exc), status=exc.status, kind="config") from None

    def verify_webhook(self, config: ERPNextConfig, headers: dict[str, str], body: bytes) -> None:
        verify_hmac_base64(headers, SIGNATURE, config.webhook_secret, body, vendor=self.title)

    def parse_webhook(self, config: ERPNextConfig, headers: dict[str, str], body: bytes) -> WebhookDelivery:
        """A verified delivery is only a hint (its signature carries no id or time, so a replay
        looks new): the document it names is read again and only that read is written."""
        delivery_id = self.webhook_delivery_id(headers, body)
        target = webhook_target(body)
        if target is None:
            return WebhookDelivery(delivery_id, "unknown", [], note="the body names no document")
        doctype, name = target
        if doctype not in DOCTYPES:
            return WebhookDelivery(delivery_id, doctype, [], note=f"{doctype} is not read by this connector")
        try:
            client = self.client(config, retries=0, max_wait=0, timeout=5.0)
            try:
                records = self._reread(Site(config, client), doctype, name)
            finally:
                client.close()
        except (VendorError, RateLimited, httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            note = f"could not read {doctype} {name} again ({exc}): the next sync brings it"
            _log.warning("erpnext webhook re-read failed", extra={"doctype": doctype, "reason": str(exc)[:200]})
            return WebhookDelivery(delivery_id, doctype, [], note=note)
        if not webhook_versioned(body):
            return WebhookDelivery(delivery_id, doctype, records, note=UNVERSIONED)
        return WebhookDelivery(delivery_id, doctype, records)

    def _reread(self, site: Site, doctype: str, name: str) -> list[Record]:
        """The document as the site has it now (one keyed GET, then the page lookups)."""
        body, _ = site.client.get_json(resource(doctype, name))
        doc = body.get("data") if isinstance(body, dict) else None
        if not isinstance(doc, dict) or doc.get("name") != name:
            raise VendorError(f"GET {doctype} {name}: no such document in the answer")
        if doctype == "Customer":
            return site.customer_records([doc], children=False)
        if doctype == "Address":
            customers = mapping.customer_links(doc)
            found = (
                site.fetch("Customer", CUSTOMER_FIELDS, [["name", "in", customers]], order_by="name asc", limit=0)
                if customers
                else []
            )
            return site.customer_records(found)
        if doctype == "Contact":
            record = mapping.contact(doc, site.companies(mapping.customer_links(doc)), site.zone)
            return [record] if record is not None else []
        companies = site.companies([doc.get("customer")])
        if doctype == "Sales Order":
            order = mapping.order(doc, companies, site.zone, site.config.channel)
            return [order] if order is not None else []
        return [mapping.invoice(doc, companies, site.zone)]
