"""ERPNext (Frappe REST) documents → Rapport records.

Pure functions of the documents as ``GET /api/resource/<DocType>/<name>`` returns them (child
tables as lists under their table field), shared by the streams and the webhook re-read; an
unmappable document becomes :class:`Rejected` with the reason. Rules (docs/connectors.md,
"ERPNext"):

- times: Frappe writes ``modified``/``creation`` as naive datetimes in the site's time zone
  (System Settings); :func:`site_utc` reads them there and converts to UTC. A wall time that
  a DST change repeats is read as its first occurrence, one that it skips as after the gap.
  Dates (``transaction_date``, ``posting_date``, ``due_date``) are the site's midnight;
- money: ``Decimal`` through the ISO 4217 exponent (connectors/sdk/money.py);
- ``Customer``: ``customer_type`` Company → :class:`AccountRecord`, anything else (Individual,
  Partnership as a person) → :class:`CustomerRecord`; ``disabled`` is kept as the attribute
  ``erpnext_disabled`` (marked, not dropped); its addresses are the enabled ``Address``
  documents linked to it, all of them, so the profile's list is replaced by the whole set;
  ``updated_at`` is the latest ``modified`` of the customer and those addresses;
- ``Contact`` linked to a Company customer → a person (external id ``contact:<name>``, so it
  never collides with an individual customer's name) with ``account`` = that customer (the
  first such link), ``role`` = ``designation``, else ``department``; a contact of no company
  (an individual's own contact) is skipped: the customer carries its primary details;
- ``Sales Order``: drafts (docstatus 0) are skipped (not orders yet); cancelled (2) →
  ``cancelled_at`` = ``modified``; ``account`` when the customer is a company; the buyer is
  ``contact_person`` (``contact:<name>``), else the individual customer, else
  ``contact_email``; a company's order with none of them has no buyer: the account keeps it;
- ``Sales Invoice``: draft → ``draft``, cancelled → ``cancelled`` owing nothing, else ``open``
  while ``outstanding_amount`` is not zero and ``paid`` when it is; a return (``is_return``,
  a credit note) keeps its negative total and outstanding and is marked ``credit_note``, so
  the account's balance (the sum of open outstanding amounts) goes down by it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from common import clock
from connectors.sdk import fields
from connectors.sdk.base import (
    AccountRecord,
    CustomerRecord,
    InvoiceRecord,
    OrderLine,
    OrderRecord,
    Rejected,
    rejecting,
)
from connectors.sdk.money import currency_code, minor_units

CONTACT_PREFIX = "contact:"
COMPANY = "Company"
SITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


# times --------------------------------------------------------------------------------


def site_datetime(value: Any, zone: ZoneInfo) -> datetime | None:
    """A Frappe naive datetime (``"2024-03-01 10:00:00.123456"``) as an aware UTC datetime."""
    if value in (None, ""):
        return None
    dt = datetime.fromisoformat(str(value).strip())
    if dt.tzinfo is None:
        # fold=0: a repeated wall time is its first occurrence; a skipped one maps past the gap
        dt = dt.replace(tzinfo=zone)
    return dt.astimezone(UTC)


def site_utc(value: Any, zone: ZoneInfo) -> str | None:
    """A Frappe naive datetime → Rapport's UTC string (``clock.iso``); None for empty values."""
    dt = site_datetime(value, zone)
    return None if dt is None else clock.iso(dt)


def site_date(value: Any, zone: ZoneInfo) -> str | None:
    """A Frappe date (``"2024-03-01"``) → the site's midnight that day, in UTC."""
    if value in (None, ""):
        return None
    day = date.fromisoformat(str(value).strip()[:10])
    return clock.iso(datetime.combine(day, time(0), tzinfo=zone))


def to_site(utc_iso: str, zone: ZoneInfo) -> str:
    """A UTC time → the site's naive wall time, as Frappe filters compare ``modified``."""
    return clock.parse(utc_iso).astimezone(zone).replace(tzinfo=None).strftime(SITE_FORMAT)


def stamp(doc: Mapping[str, Any], zone: ZoneInfo) -> str:
    """A document's ``modified`` in UTC at full precision: the key the window de-duplicates on."""
    dt = site_datetime(doc.get("modified"), zone)
    if dt is None:
        raise ValueError("no modified time")
    return dt.isoformat()


# shared pieces ------------------------------------------------------------------------


def _flag(value: Any) -> bool:
    return str(value).strip() in ("1", "True", "true")


def _number(value: Any) -> Decimal:
    try:
        return Decimal(str(value if value not in (None, "") else 0))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None


def address(doc: Mapping[str, Any], countries: Mapping[str, str]) -> dict | None:
    """An ``Address`` document → a Rapport address (None when disabled or incomplete).
    ERPNext's ``country`` is the Country document's name ("Germany"): ``countries`` maps
    names to ISO codes (the Country doctype's ``code``); a two-letter value is taken as is."""
    if _flag(doc.get("disabled")):
        return None
    country = str(doc.get("country") or "").strip()
    iso = countries.get(country) or (country if len(country) == 2 else None)  # "Atlantis" is not "AT"
    label = fields.text(doc.get("address_type"), 40)
    return fields.address(
        line1=doc.get("address_line1"),
        line2=doc.get("address_line2"),
        city=doc.get("city"),
        region=doc.get("state"),
        postal_code=doc.get("pincode"),
        country_code=iso,
        label=label.lower() if label else None,
    )


def _addresses(docs: Iterable[Mapping[str, Any]], countries: Mapping[str, str]) -> list[dict]:
    out: list[dict] = []
    ordered = sorted(docs, key=lambda d: (not _flag(d.get("is_primary_address")), str(d.get("name"))))
    for doc in ordered:
        mapped = address(doc, countries)
        if mapped and mapped not in out:
            out.append(mapped)
    return out[:10]  # Rapport keeps at most 10


def _latest(doc_stamp: str | None, docs: Iterable[Mapping[str, Any]], zone: ZoneInfo) -> str | None:
    latest = doc_stamp
    for d in docs:
        s = site_utc(d.get("modified"), zone)
        if s and (latest is None or s > latest):
            latest = s
    return latest


def _person_name(full: Any) -> dict | None:
    """A person's "First Last" as given and family names (the last word is the family name)."""
    text = fields.text(full)
    if not text:
        return None
    given, _, family = text.rpartition(" ")
    return fields.name(given, family) if given else fields.name(family, None)


def _attributes(doc: Mapping[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"erpnext_disabled": _flag(doc.get("disabled"))}
    for key, field in (("erpnext_customer_group", "customer_group"), ("erpnext_territory", "territory")):
        value = fields.text(doc.get(field), 140)
        if value:
            attrs[key] = value
    return attrs


def _credit_limit(doc: Mapping[str, Any], currency: str | None) -> int | None:
    """The credit limit of ``credit_limits`` (per company; the highest when several)."""
    rows = doc.get("credit_limits") or []
    limits = [_number(r.get("credit_limit")) for r in rows if isinstance(r, dict)]
    limits = [x for x in limits if x > 0]
    if not limits or currency is None:
        return None
    return minor_units(max(limits), currency)


# Customer -----------------------------------------------------------------------------


def customer(
    doc: Any, addresses: Iterable[Mapping[str, Any]], countries: Mapping[str, str], zone: ZoneInfo
) -> AccountRecord | CustomerRecord | Rejected:
    """A ``Customer`` with the ``Address`` documents linked to it."""
    name = doc.get("name") if isinstance(doc, dict) else None
    if not name:
        return Rejected(None, "erpnext customer without a name")
    return rejecting("erpnext customer", str(name), lambda: _customer(doc, list(addresses), countries, zone))


def _customer(
    doc: Mapping[str, Any], addresses: list[Mapping[str, Any]], countries: Mapping[str, str], zone: ZoneInfo
) -> AccountRecord | CustomerRecord | Rejected:
    ext = str(doc["name"])
    updated_at = _latest(site_utc(doc.get("modified"), zone), addresses, zone)
    if updated_at is None:
        return Rejected(ext, "erpnext customer without modified")
    created_at = site_utc(doc.get("creation"), zone)
    profile: dict[str, Any] = {}
    mail = fields.email(doc.get("email_id"))
    if mail:
        profile["email"] = mail
    phone = fields.phone(doc.get("mobile_no"))
    if phone:
        profile["phone"] = phone
    mapped = _addresses(addresses, countries)
    if mapped:
        profile["addresses"] = mapped
    profile["attributes"] = _attributes(doc)
    if doc.get("customer_type") == COMPANY:
        title = fields.text(doc.get("customer_name")) or ext
        profile["name"] = title
        currency = currency_code(doc.get("default_currency"))
        if currency:
            profile["currency"] = currency
        for key, field, limit in (("tax_id", "tax_id", 64), ("payment_terms", "payment_terms", 140)):
            value = fields.text(doc.get(field), limit)
            if value:
                profile[key] = value
        website = fields.text(doc.get("website"), 500)
        if website:
            profile["website"] = website
        credit = _credit_limit(doc, currency)
        if credit is not None:
            profile["credit_limit"] = credit
        return AccountRecord(external_id=ext, updated_at=updated_at, profile=profile, created_at=created_at)
    person = _person_name(doc.get("customer_name"))
    if person:
        profile["name"] = person
    return CustomerRecord(external_id=ext, updated_at=updated_at, profile=profile, created_at=created_at)


# Contact ------------------------------------------------------------------------------


def company_link(doc: Mapping[str, Any], companies: Iterable[str]) -> str | None:
    """The first Company customer a ``Contact``/``Address`` links to (``links`` by ``idx``)."""
    wanted = set(companies)
    rows = sorted((r for r in doc.get("links") or [] if isinstance(r, dict)), key=lambda r: int(r.get("idx") or 0))
    for r in rows:
        if r.get("link_doctype") == "Customer" and r.get("link_name") in wanted:
            return str(r["link_name"])
    return None


def customer_links(doc: Mapping[str, Any]) -> list[str]:
    """The names of the Customers a ``Contact``/``Address`` links to, in ``idx`` order."""
    rows = sorted((r for r in doc.get("links") or [] if isinstance(r, dict)), key=lambda r: int(r.get("idx") or 0))
    out: list[str] = []
    for r in rows:
        if r.get("link_doctype") == "Customer" and r.get("link_name") and str(r["link_name"]) not in out:
            out.append(str(r["link_name"]))
    return out


def _primary(rows: Any, value: str, *flags: str) -> Any:
    """The child row value marked primary by one of ``flags``, else the first row's."""
    good = [r for r in rows or [] if isinstance(r, dict) and r.get(value)]
    for flag in flags:
        for r in good:
            if _flag(r.get(flag)):
                return r[value]
    return good[0][value] if good else None


def contact(doc: Any, companies: Iterable[str], zone: ZoneInfo) -> CustomerRecord | Rejected | None:
    """A ``Contact`` → a person of the Company customer it links to; None for a contact of no
    company (an individual customer's own details come with the customer)."""
    name = doc.get("name") if isinstance(doc, dict) else None
    if not name:
        return Rejected(None, "erpnext contact without a name")
    account = company_link(doc, companies)
    if account is None:
        return None
    ext = CONTACT_PREFIX + str(name)
    return rejecting("erpnext contact", ext, lambda: _contact(doc, ext, account, zone))


def _contact(doc: Mapping[str, Any], ext: str, account: str, zone: ZoneInfo) -> CustomerRecord | Rejected:
    updated_at = site_utc(doc.get("modified"), zone)
    if updated_at is None:
        return Rejected(ext, "erpnext contact without modified")
    profile: dict[str, Any] = {}
    person = fields.name(doc.get("first_name"), doc.get("last_name")) or _person_name(doc.get("full_name"))
    if person:
        profile["name"] = person
    mail = fields.email(doc.get("email_id")) or fields.email(_primary(doc.get("email_ids"), "email_id", "is_primary"))
    if mail:
        profile["email"] = mail
    phone = (
        fields.phone(doc.get("mobile_no"))
        or fields.phone(doc.get("phone"))
        or fields.phone(_primary(doc.get("phone_nos"), "phone", "is_primary_mobile_no", "is_primary_phone"))
    )
    if phone:
        profile["phone"] = phone
    if _flag(doc.get("unsubscribed")):
        profile["consent"] = {"email": {"status": "denied", "source": "erpnext", "at": updated_at}}
    role = fields.text(doc.get("designation"), 140) or fields.text(doc.get("department"), 140)
    return CustomerRecord(
        external_id=ext,
        updated_at=updated_at,
        profile=profile,
        created_at=site_utc(doc.get("creation"), zone),
        account=account,
        role=role,
    )


# Sales Order / Sales Invoice ------------------------------------------------------------


def _lines(items: Any, currency: str, ext: str) -> list[OrderLine]:
    """``items`` → lines: a whole ``qty`` keeps its ``rate``; a fractional one (2.5 kg) becomes
    one line of its ``amount``, the quantity and unit in its name. Returns (rows ERPNext
    writes negative, in a return, keep their sign: see :func:`invoice`)."""
    lines: list[OrderLine] = []
    for row in sorted((r for r in items or [] if isinstance(r, dict)), key=lambda r: int(r.get("idx") or 0)):
        qty = _number(row.get("qty"))
        if qty == 0:
            continue
        sku = fields.text(row.get("item_code"), 64) or f"row-{row.get('name')}"
        title = fields.text(row.get("item_name"), 200) or sku
        if qty == qty.to_integral_value():
            lines.append(
                OrderLine(
                    sku=sku,
                    name=title,
                    quantity=abs(int(qty)),
                    unit_price=abs(minor_units(row.get("rate") or 0, currency)),
                )
            )
        else:
            uom = fields.text(row.get("uom") or row.get("stock_uom"), 20) or ""
            lines.append(
                OrderLine(
                    sku=sku,
                    name=f"{title} ({abs(qty)} {uom})".strip()[:200],
                    quantity=1,
                    unit_price=abs(minor_units(row.get("amount") or 0, currency)),
                )
            )
    return lines


def _buyer(doc: Mapping[str, Any], companies: Iterable[str], updated_at: str) -> tuple[str | None, Any, str | None]:
    """(account, buyer record, email) of a sales document."""
    customer_name = fields.text(doc.get("customer"), 140)
    account = customer_name if customer_name and customer_name in set(companies) else None
    contact_person = fields.text(doc.get("contact_person"), 140)
    if contact_person and account:
        return account, CustomerRecord(external_id=CONTACT_PREFIX + contact_person, updated_at=updated_at), None
    if customer_name and not account:
        return None, CustomerRecord(external_id=customer_name, updated_at=updated_at), None
    return account, None, fields.email(doc.get("contact_email"))


def order(doc: Any, companies: Iterable[str], zone: ZoneInfo, channel: str = "store") -> OrderRecord | Rejected | None:
    """A ``Sales Order`` with its ``items``; None for a draft."""
    name = doc.get("name") if isinstance(doc, dict) else None
    if not name:
        return Rejected(None, "erpnext sales order without a name")
    if int(doc.get("docstatus") or 0) == 0:
        return None
    return rejecting("erpnext sales order", str(name), lambda: _order(doc, str(name), list(companies), zone, channel))


def _order(
    doc: Mapping[str, Any], ext: str, companies: list[str], zone: ZoneInfo, channel: str
) -> OrderRecord | Rejected:
    currency = currency_code(doc.get("currency"))
    if currency is None:
        return Rejected(ext, f"currency {doc.get('currency')!r} is not an ISO 4217 code")
    updated_at = site_utc(doc.get("modified"), zone)
    if updated_at is None:
        return Rejected(ext, "erpnext sales order without modified")
    placed_at = _placed(doc, zone) or updated_at
    lines = _lines(doc.get("items"), currency, ext)
    if not lines:
        return Rejected(ext, "the sales order has no items with a quantity")
    subtotal = sum(li.quantity * li.unit_price for li in lines)
    tax = minor_units(doc.get("total_taxes_and_charges") or 0, currency)
    total = minor_units(doc.get("grand_total"), currency)
    discount = subtotal + tax - total
    if tax < 0 or discount < 0 or discount > subtotal:
        return Rejected(
            ext,
            f"grand_total {doc.get('grand_total')} {currency} does not reconcile with the items "
            f"({subtotal}) and taxes ({tax}) in minor units",
        )
    account, buyer, email = _buyer(doc, companies, updated_at)
    if account is None and buyer is None and email is None:
        return Rejected(ext, "the sales order names no customer: the buyer cannot be identified")
    # a company's order without a contact person or email belongs to the account alone
    cancelled = int(doc.get("docstatus") or 0) == 2
    delivered = not cancelled and _number(doc.get("per_delivered")) >= 100
    order_type = str(doc.get("order_type") or "")
    return OrderRecord(
        external_id=ext,
        updated_at=updated_at,
        channel="web" if order_type == "Shopping Cart" else channel,
        currency=currency,
        placed_at=placed_at,
        lines=lines,
        total=total,
        discount=discount,
        tax=tax,
        customer=buyer,
        email=email,
        account=account,
        fulfilled_at=updated_at if delivered else None,
        cancelled_at=updated_at if cancelled else None,
        cancel_reason="cancelled in ERPNext" if cancelled else None,
        number=fields.order_number(doc.get("name")),
    )


def _placed(doc: Mapping[str, Any], zone: ZoneInfo) -> str | None:
    """The business date (``transaction_date``) at the time the document was created, when
    it was created that day; else that day's midnight (a back-dated order)."""
    day = doc.get("transaction_date")
    created = site_datetime(doc.get("creation"), zone)
    if created is not None and day and created.astimezone(zone).date().isoformat() == str(day)[:10]:
        return clock.iso(created)
    return site_date(day, zone)


def invoice(doc: Any, companies: Iterable[str], zone: ZoneInfo) -> InvoiceRecord | Rejected:
    """A ``Sales Invoice`` with its ``items``."""
    name = doc.get("name") if isinstance(doc, dict) else None
    if not name:
        return Rejected(None, "erpnext sales invoice without a name")
    return rejecting("erpnext sales invoice", str(name), lambda: _invoice(doc, str(name), list(companies), zone))


def _invoice(doc: Mapping[str, Any], ext: str, companies: list[str], zone: ZoneInfo) -> InvoiceRecord | Rejected:
    currency = currency_code(doc.get("currency"))
    if currency is None:
        return Rejected(ext, f"currency {doc.get('currency')!r} is not an ISO 4217 code")
    updated_at = site_utc(doc.get("modified"), zone)
    if updated_at is None:
        return Rejected(ext, "erpnext sales invoice without modified")
    posted = doc.get("posting_date")
    issued_at = None
    if posted:
        issued_at = site_utc(f"{str(posted)[:10]} {doc.get('posting_time') or '00:00:00'}", zone)
    issued_at = issued_at or updated_at
    # what the customer is billed: the rounded total when rounding is on (ERPNext writes 0 when it is off)
    rounded = _number(doc.get("rounded_total"))
    total = minor_units(rounded if rounded != 0 else doc.get("grand_total"), currency)
    outstanding = minor_units(doc.get("outstanding_amount") or 0, currency)
    docstatus = int(doc.get("docstatus") or 0)
    credit_note = _flag(doc.get("is_return"))
    status: Any
    if docstatus == 2:
        status, outstanding = "cancelled", 0
    elif docstatus == 0:
        status = "draft"
    else:
        status = "open" if outstanding != 0 else "paid"
    account, buyer, email = _buyer(doc, companies, updated_at)
    items = doc.get("items") or []
    order_ref = next(
        (fields.text(r.get("sales_order"), 140) for r in items if isinstance(r, dict) and r.get("sales_order")), None
    )
    return InvoiceRecord(
        external_id=ext,
        updated_at=updated_at,
        number=ext,
        currency=currency,
        issued_at=issued_at,
        total=total,
        outstanding=outstanding,
        status=status,
        due_at=site_date(doc.get("due_date"), zone),
        payment_terms=fields.text(doc.get("payment_terms_template"), 140),
        account=account,
        customer=buyer,
        email=email,
        order=order_ref,
        lines=_lines(items, currency, ext),
        tax=minor_units(doc.get("total_taxes_and_charges") or 0, currency),
        paid_at=updated_at if status == "paid" and not credit_note else None,
        cancelled_at=updated_at if status == "cancelled" else None,
        credit_note=credit_note,
        return_against=fields.text(doc.get("return_against"), 140) if credit_note else None,
    )
