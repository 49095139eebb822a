"""Odoo (17, 18 over JSON-RPC; 19+ over JSON-2): partners, sale orders, invoices.

The API is found once per run (:mod:`connectors.odoo.transport`): JSON-2 first, JSON-RPC
when the server has no ``/json/2``. Every stream reads with ``search_read`` and an
explicit field list, keyset-paged on ``write_date`` (whole seconds, UTC) with the record
id as the tie-break: ``order="write_date asc, id asc"``, and each next page asks for
``write_date > w or (write_date = w and id > i)`` after the last record read, so a
second shared by more records than a page holds is read across pages without a gap or
a repeat, and a record written while the window is read moves behind the keyset and is
read again later in the same window. The window starts at the cursor minus the SDK's
lookback (:class:`connectors.sdk.window.Window`), which re-reads the boundary second of
the previous run; the window's ``seen`` skips what was already read at the same
``write_date``. The checkpoint's page token is the last ``[write_date, id]`` read.

Odoo sends no signed webhooks for these models (its automation rules can post to a URL,
but unsigned and without a delivery id), so ``webhooks = False``: scheduled incremental
runs keep the copy fresh, each costing one request per stream when nothing changed.
Mapping rules: :mod:`connectors.odoo.mapping`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.odoo import mapping
from connectors.odoo.transport import OdooClient, OdooError
from connectors.sdk.base import Connector, Page, ReadContext, Stream
from connectors.sdk.errors import CheckFailed, VendorError
from connectors.sdk.fields import base_url
from connectors.sdk.secrets import Secret
from connectors.sdk.window import Window

PAGE_SIZE = 200  # Odoo honours any ``limit``; 200 partners with their fields is ~100 KB
ORDER = "write_date asc, id asc"
CHANNEL = "web"  # Odoo has no sales channel common to every install: orders count as web


class OdooConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="the Odoo server's URL, e.g. https://mycompany.odoo.com")
    database: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="the database name (on Odoo Online: <name> in <name>.odoo.com)",
    )
    api_key: Secret = Field(
        description="an API key: Preferences › Account Security › New API Key, of a user "
        "who may read contacts, sales and invoices"
    )
    username: str | None = Field(
        default=None,
        min_length=1,
        max_length=254,
        description=("Odoo 17 and 18 only (JSON-RPC): the login of the API key's user; Odoo 19+ needs none"),
    )

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        return base_url(v, "base_url")


def odoo_time(iso: str) -> str:
    """Rapport's ``2024-03-01T09:30:00.000Z`` → Odoo's ``2024-03-01 09:30:00`` (rounded down)."""
    return iso[:10] + " " + iso[11:19]


def keyset(since: str | None, after: list[Any] | None) -> list[Any]:
    """The window's domain terms: updated at or after ``since``, and after the last
    ``[write_date, id]`` read (Odoo's prefix notation; the list's terms are and-ed)."""
    out: list[Any] = []
    if since:
        out.append(["write_date", ">=", odoo_time(since)])
    if after:
        stamp, last_id = after
        out += ["|", ["write_date", ">", stamp], "&", ["write_date", "=", stamp], ["id", ">", last_id]]
    return out


def _read(client: OdooClient, model: str, ids: set[int], fields: list[str]) -> list[dict[str, Any]]:
    """One batched ``read`` of ``ids`` (none when empty)."""
    if not ids:
        return []
    rows = client.call(model, "read", ids=sorted(ids), fields=fields)
    if not isinstance(rows, list):
        raise VendorError(f"{model}.read: the answer is not a list")
    return [r for r in rows if isinstance(r, dict)]


def _partners(client: OdooClient, items: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    ids = {m[0] for m in (mapping.many2one(i.get("partner_id")) for i in items) if m}
    return {r["id"]: r for r in _read(client, "res.partner", ids, mapping.BUYER_FIELDS) if isinstance(r.get("id"), int)}


class _OdooStream(Stream):
    model: ClassVar[str]
    fields: ClassVar[list[str]]
    domain: ClassVar[list[Any]] = []
    # Odoo returns ``limit`` rows unless fewer remain, so a short page ends the window
    # (no empty probe). The conformance kit sets its own page size on a subclass.
    page_size: ClassVar[int] = PAGE_SIZE

    def map_page(self, client: OdooClient, items: list[dict[str, Any]]) -> list[Any]:
        raise NotImplementedError

    def read(self, rc: ReadContext, state: dict[str, Any]) -> Iterator[Page]:
        window = Window(state, backfill=rc.mode == "backfill")
        after = list(window.page) if window.page is not None else None
        client: OdooClient = rc.client
        while True:
            items = client.call(
                self.model,
                "search_read",
                domain=[*self.domain, *keyset(window.since, after)],
                fields=self.fields,
                order=ORDER,
                limit=self.page_size,
            )
            if not isinstance(items, list):
                raise VendorError(f"{self.model}.search_read: the answer is not a list")
            items = [i for i in items if isinstance(i, dict)]
            records = [r for r in self.map_page(client, items) if r is not None]
            next_page = None
            if len(items) >= self.page_size:
                last = items[-1]
                if not isinstance(last.get("write_date"), str) or not isinstance(last.get("id"), int):
                    raise VendorError(f"{self.model}.search_read: a record without write_date or id")
                next_page = [last["write_date"], last["id"]]
            fresh = window.fresh(records)
            yield Page(fresh, state=window.advance(records, next_page))
            if next_page is None:
                return
            after = next_page


class Partners(_OdooStream):
    """``res.partner``: companies → accounts, people → customers (contacts name their company)."""

    name = "partners"
    model = "res.partner"
    fields = mapping.PARTNER_FIELDS

    def map_page(self, client: OdooClient, items: list[dict[str, Any]]) -> list[Any]:
        currency = company_currency(client)
        return [mapping.partner(i, currency=currency) for i in items]


class SaleOrders(_OdooStream):
    """``sale.order`` with its lines (one ``sale.order.line`` read per page) and buyers
    (one ``res.partner`` read per page): 3 requests per page."""

    name = "sale_orders"
    model = "sale.order"
    fields = mapping.ORDER_FIELDS

    def map_page(self, client: OdooClient, items: list[dict[str, Any]]) -> list[Any]:
        wanted = [i for i in items if mapping.value(i.get("state")) not in mapping.QUOTATIONS]
        line_ids = {lid for i in wanted for lid in (i.get("order_line") or []) if isinstance(lid, int)}
        by_order: dict[int, list[dict[str, Any]]] = {}
        for line in _read(client, "sale.order.line", line_ids, mapping.LINE_FIELDS):
            order = mapping.many2one(line.get("order_id"))
            if order:
                by_order.setdefault(order[0], []).append(line)
        partners = _partners(client, wanted)
        return [
            mapping.order(
                i,
                sorted(by_order.get(i.get("id"), []), key=lambda li: li.get("id") or 0),  # type: ignore[arg-type]
                partners,
                CHANNEL,
            )
            for i in items
        ]


class Invoices(_OdooStream):
    """``account.move`` customer invoices and credit notes, with their buyers (one
    ``res.partner`` read per page): 2 requests per page."""

    name = "invoices"
    model = "account.move"
    fields = mapping.INVOICE_FIELDS
    domain: ClassVar[list[Any]] = [["move_type", "in", list(mapping.INVOICE_TYPES)]]

    def map_page(self, client: OdooClient, items: list[dict[str, Any]]) -> list[Any]:
        partners = _partners(client, items)
        return [mapping.invoice(i, partners) for i in items]


def company_currency(client: OdooClient) -> str | None:
    """The main company's currency (``credit_limit`` is kept in it): read once per client."""
    if "company_currency" in client.cache:
        return client.cache["company_currency"]
    rows = client.call("res.company", "search_read", domain=[], fields=["currency_id"], order="id asc", limit=1)
    currency = None
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        m = mapping.many2one(rows[0].get("currency_id"))
        currency = mapping.currency_code(m[1]) if m else None
    client.cache["company_currency"] = currency
    return currency


CHECKS = (
    ("res.partner", "contacts"),
    ("sale.order", "sales orders (the Sales app)"),
    ("account.move", "invoices (the Invoicing app)"),
)


class Odoo(Connector):
    name = "odoo"
    kind = "erp"
    version = "1.0.0"
    title = "Odoo"
    Config = OdooConfig
    streams = (Partners, SaleOrders, Invoices)
    webhooks = False  # no signed outbound webhooks for these models: schedules keep it fresh

    def client(self, config: OdooConfig, **options: Any) -> OdooClient:
        """``options`` go to the SDK :class:`~connectors.sdk.http.Client` (``sleep``, ``time_left``…)."""
        return OdooClient(
            config.base_url, database=config.database, api_key=config.api_key, username=config.username, **options
        )

    def check(self, config: OdooConfig, client: OdooClient) -> None:
        """Finds the API, then reads one record of each model the streams read."""
        try:
            client.detect()
            for model, what in CHECKS:
                try:
                    client.call(model, "search_read", domain=[], fields=["id"], limit=1)
                except OdooError as exc:
                    if exc.reason == "missing":
                        raise CheckFailed(
                            f"Odoo has no {model}: install {what}, or check the user may read it",
                            status=exc.status,
                            kind="config",
                        ) from None
                    raise
        except OdooError as exc:
            raise CheckFailed(_reason(exc, config), status=exc.status, kind=exc.kind) from None
        except VendorError as exc:
            raise CheckFailed(
                f"could not reach Odoo at {config.base_url}: {exc}", status=exc.status, kind=exc.kind
            ) from None


def _reason(exc: OdooError, config: OdooConfig) -> str:
    """What the tenant reads when ``check`` fails: the cause and what to do."""
    if exc.reason == "plan":
        return (
            "this Odoo database's plan has no external API access (Odoo Online's One App Free and Standard "
            "plans): switch to the Custom plan, or host on Odoo.sh or on premise. Odoo said: "
            f"{exc.odoo_message[:200]}"
        )
    if exc.reason == "database":
        return (
            str(exc)
            if "found no database" in str(exc)
            else (f"Odoo has no database {config.database!r}: check the database name")
        )
    if exc.reason == "auth":
        if exc.kind == "config":
            return str(exc)
        return (
            "Odoo refused the API key: create a new one (Preferences › Account Security › New API Key; "
            "keys expire) and paste it whole" + (", with the login of its user as username" if config.username else "")
        )
    return f"Odoo answered an error: {exc}"
