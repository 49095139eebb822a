"""Odoo ``res.partner``, ``sale.order`` (+ lines) and ``account.move`` → Rapport records.

Pure functions of what ``search_read``/``read`` answer; an unmappable record becomes
:class:`Rejected` with the reason. Rules (docs/connectors.md, "Odoo"):

- Odoo answers ``false`` for every empty field, and many2one fields as ``[id, "display
  name"]``; times are UTC strings without an offset (``"2024-03-01 09:30:00"``, whole
  seconds), dates ``"2024-03-01"``;
- partners: ``is_company`` → :class:`AccountRecord`; a person with ``parent_id`` → a
  :class:`CustomerRecord` naming the parent in ``account`` and ``function`` as ``role``;
  a person without one → a plain :class:`CustomerRecord`; a child that is an address
  (``type`` invoice, delivery, other) is not a person and is skipped;
- money: floats in major units → minor units (``Decimal`` of the JSON text, ISO 4217
  exponent), the currency from ``currency_id``'s name (Odoo names currencies by code);
- sale orders: quotations (``draft``, ``sent``) are skipped until confirmed; ``cancel`` →
  cancelled at ``write_date``; lines' unit price = the line's amount before its discount
  (``price_subtotal``, tax excluded) ÷ quantity, rounded up; section and note lines and
  negative lines (discount or down-payment lines) are left out, and the reconciled
  ``discount = lines − amount_untaxed`` takes them, line discounts and the rounding;
- invoices: ``out_invoice`` and ``out_refund`` (a credit note: amounts negative, so an
  account's balance is the plain sum of what is outstanding); ``cancel`` → cancelled,
  ``draft`` → draft, posted with nothing residual (``paid``, ``in_payment``) → paid,
  ``reversed`` → cancelled (a credit note took it back), else open.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

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

# the fields read, never all of them (docs/connectors.md lists what each becomes)
PARTNER_FIELDS = [
    "id",
    "name",
    "is_company",
    "parent_id",
    "type",
    "function",
    "email",
    "phone",
    "street",
    "street2",
    "city",
    "zip",
    "state_id",
    "country_code",
    "vat",
    "company_registry",
    "website",
    "ref",
    "lang",
    "category_id",
    "property_payment_term_id",
    "credit_limit",
    "create_date",
    "write_date",
]
ORDER_FIELDS = [
    "id",
    "name",
    "state",
    "partner_id",
    "date_order",
    "currency_id",
    "amount_untaxed",
    "amount_tax",
    "amount_total",
    "order_line",
    "client_order_ref",
    "create_date",
    "write_date",
]
LINE_FIELDS = [
    "id",
    "order_id",
    "product_id",
    "name",
    "product_uom_qty",
    "price_unit",
    "discount",
    "price_subtotal",
    "display_type",
]
BUYER_FIELDS = ["id", "is_company", "parent_id", "commercial_partner_id", "email"]
INVOICE_FIELDS = [
    "id",
    "name",
    "move_type",
    "state",
    "payment_state",
    "partner_id",
    "commercial_partner_id",
    "currency_id",
    "invoice_date",
    "invoice_date_due",
    "invoice_payment_term_id",
    "amount_untaxed",
    "amount_tax",
    "amount_total",
    "amount_residual",
    "create_date",
    "write_date",
]

QUOTATIONS = {"draft", "sent"}
ADDRESS_TYPES = {"invoice", "delivery", "other"}
INVOICE_TYPES = ("out_invoice", "out_refund")
_SKU = re.compile(r"^\[([^\]]{1,64})\]\s*")


def value(v: Any) -> Any:
    """Odoo's ``false`` for an empty field → None."""
    return None if v is False else v


def many2one(v: Any) -> tuple[int, str] | None:
    """``[id, "name"]`` → ``(id, name)``; ``false`` → None."""
    if isinstance(v, (list, tuple)) and len(v) >= 1 and isinstance(v[0], int) and not isinstance(v[0], bool):
        return v[0], str(v[1]) if len(v) > 1 and v[1] not in (None, False) else ""
    if isinstance(v, int) and not isinstance(v, bool):  # a bare id (read with load=None)
        return v, ""
    return None


def ref(v: Any) -> str | None:
    m = many2one(v)
    return None if m is None else str(m[0])


def utc(v: Any) -> str | None:
    return fields.utc(value(v))


def _currency(record: Mapping[str, Any]) -> str | None:
    m = many2one(record.get("currency_id"))
    return currency_code(m[1]) if m else None


def _address(p: Mapping[str, Any]) -> dict | None:
    state = many2one(p.get("state_id"))
    return fields.address(
        line1=value(p.get("street")),
        line2=value(p.get("street2")),
        city=value(p.get("city")),
        region=state[1] if state else None,
        postal_code=value(p.get("zip")),
        country_code=_country_code(p),
    )


def _country_code(p: Mapping[str, Any]) -> str | None:
    """``country_code``, the ISO code of ``country_id`` (whose display name is the
    country's name, "Belgium")."""
    return fields.country(value(p.get("country_code")))


def _name(text: Any) -> dict | None:
    """A person's name: Odoo keeps one ``name``; its last word is taken as the family name."""
    full = fields.text(value(text))
    if not full:
        return None
    parts = full.rsplit(" ", 1)
    return fields.name(parts[0], parts[1]) if len(parts) == 2 else fields.name(full, None)


def _tags(p: Mapping[str, Any]) -> list[str]:
    raw = p.get("category_id")
    return (
        [f"odoo-tag-{t}" for t in raw if isinstance(t, int) and not isinstance(t, bool)]
        if isinstance(raw, list)
        else []
    )


def partner(p: Any, *, currency: str | None = None) -> AccountRecord | CustomerRecord | Rejected | None:
    """A partner as a company (account), a company's contact or a lone person; None for a
    child address. ``currency``: the company currency (``credit_limit`` is kept in it)."""
    pid = p.get("id") if isinstance(p, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool):
        return Rejected(None, "odoo res.partner without an id")
    ext = str(pid)
    parent = ref(p.get("parent_id"))
    if not p.get("is_company") and parent and value(p.get("type")) in ADDRESS_TYPES:
        return None
    return rejecting("odoo res.partner", ext, lambda: _partner(p, ext, parent, currency))


def _partner(
    p: Mapping[str, Any], ext: str, parent: str | None, currency: str | None
) -> AccountRecord | CustomerRecord | Rejected:
    updated_at = utc(p.get("write_date")) or utc(p.get("create_date"))
    if updated_at is None:
        return Rejected(ext, "odoo res.partner without write_date")
    created_at = utc(p.get("create_date"))
    country = _country_code(p)
    email = fields.email(value(p.get("email")))
    phone = fields.phone(value(p.get("phone")), country)
    address = _address(p)
    attributes: dict[str, Any] = {}
    for key, attribute, limit in (("ref", "odoo_ref", 64), ("lang", "odoo_lang", 16)):
        text = fields.text(value(p.get(key)), limit)
        if text:
            attributes[attribute] = text
    tags = _tags(p)
    if p.get("is_company"):
        profile: dict[str, Any] = {}
        company = fields.text(value(p.get("name")))
        if not company:
            return Rejected(ext, "an odoo company without a name")
        profile["name"] = company
        tax_id = fields.text(value(p.get("vat")), 40)
        if tax_id:
            profile["tax_id"] = tax_id
        registry = fields.text(value(p.get("company_registry")), 64)
        if registry:
            attributes["odoo_company_registry"] = registry
        if address:
            profile["addresses"] = [address]
        terms = many2one(p.get("property_payment_term_id"))
        if terms and terms[1]:
            profile["payment_terms"] = terms[1][:100]
        if currency:
            profile["currency"] = currency
            limit = value(p.get("credit_limit"))
            if limit not in (None, 0, 0.0):
                profile["credit_limit"] = minor_units(limit, currency)
        website = fields.text(value(p.get("website")), 300)
        if website:
            profile["website"] = website
        if email:
            profile["email"] = email
        if phone:
            profile["phone"] = phone
        if tags:
            profile["tags"] = tags
        if attributes:
            profile["attributes"] = attributes
        return AccountRecord(external_id=ext, updated_at=updated_at, profile=profile, created_at=created_at)
    person: dict[str, Any] = {}
    full_name = _name(p.get("name"))
    if full_name:
        person["name"] = full_name
    if email:
        person["email"] = email
    if phone:
        person["phone"] = phone
    if address and not parent:  # a contact's address is its company's, unless typed apart
        person["addresses"] = [address]
    if tags:
        person["tags"] = tags
    if attributes:
        person["attributes"] = attributes
    role = fields.text(value(p.get("function")), 100) if parent else None
    return CustomerRecord(
        external_id=ext, updated_at=updated_at, profile=person, created_at=created_at, account=parent, role=role
    )


# buyers ------------------------------------------------------------------------------------


def buyer(
    partner_id: Any, partners: Mapping[int, Mapping[str, Any]], updated_at: str
) -> tuple[CustomerRecord | None, str | None, str | None]:
    """``(customer, account, email)`` of a document's ``partner_id``, from the page's one
    batched read of its partners (``BUYER_FIELDS``): a company's contact → the person and
    the company; a company itself → the account alone (the account keeps the document:
    a person is never made of the company's own email, docs/accounts.md); a lone person
    → the person."""
    m = many2one(partner_id)
    if m is None:
        return None, None, None
    p = partners.get(m[0]) or {}
    commercial = ref(p.get("commercial_partner_id")) or ref(p.get("parent_id"))
    if p.get("is_company"):
        return None, str(m[0]), None
    person = CustomerRecord(external_id=str(m[0]), updated_at=updated_at, profile={})
    account = commercial if commercial and commercial != str(m[0]) else None
    return person, account, None


# sale orders -------------------------------------------------------------------------------


def _sku(line: Mapping[str, Any]) -> str:
    product = many2one(line.get("product_id"))
    if product:
        match = _SKU.match(product[1])
        if match:
            return match.group(1).strip()
        return f"product-{product[0]}"
    return f"line-{line.get('id')}"


def order_lines(lines: list[Mapping[str, Any]], currency: str) -> list[OrderLine]:
    out: list[OrderLine] = []
    for li in lines:
        if value(li.get("display_type")):  # a section or a note
            continue
        quantity_raw = float(value(li.get("product_uom_qty")) or 0)
        net = minor_units(value(li.get("price_subtotal")) or 0, currency)
        if quantity_raw <= 0 or net <= 0:  # negative lines (discounts, down payments) go to the discount
            continue
        discount_pct = float(value(li.get("discount")) or 0)
        gross = net if not 0 < discount_pct < 100 else round(net / (1 - discount_pct / 100))
        if quantity_raw.is_integer():
            quantity = int(quantity_raw)
        else:  # 2.5 kg: one line of the whole amount
            quantity = 1
        unit = -(-gross // quantity)  # rounded up: the remainder goes to the discount
        sku = _sku(li)
        name = fields.text(value(li.get("name")), 200) or sku
        if not quantity_raw.is_integer():
            name = f"{name} ({quantity_raw:g})"[:200]
        out.append(OrderLine(sku=sku, name=name, quantity=quantity, unit_price=unit))
    return out


def order(
    o: Any, lines: list[Mapping[str, Any]], partners: Mapping[int, Mapping[str, Any]], channel: str = "web"
) -> OrderRecord | Rejected | None:
    """A confirmed or cancelled sale order with its lines (read in one batch per page);
    None for a quotation."""
    oid = o.get("id") if isinstance(o, dict) else None
    if not isinstance(oid, int) or isinstance(oid, bool):
        return Rejected(None, "odoo sale.order without an id")
    ext = str(oid)
    if value(o.get("state")) in QUOTATIONS:
        return None
    return rejecting("odoo sale.order", ext, lambda: _order(o, ext, lines, partners, channel))


def _order(
    o: Mapping[str, Any],
    ext: str,
    lines: list[Mapping[str, Any]],
    partners: Mapping[int, Mapping[str, Any]],
    channel: str,
) -> OrderRecord | Rejected:
    currency = _currency(o)
    if currency is None:
        return Rejected(ext, f"currency_id {o.get('currency_id')!r} does not name an ISO 4217 code")
    updated_at = utc(o.get("write_date"))
    placed_at = utc(o.get("date_order")) or utc(o.get("create_date"))
    if updated_at is None or placed_at is None:
        return Rejected(ext, "odoo sale.order without write_date or date_order")
    mapped = order_lines(lines, currency)
    if not mapped:
        return Rejected(ext, "the order has no product lines with a quantity and an amount")
    subtotal = sum(li.quantity * li.unit_price for li in mapped)
    untaxed = minor_units(value(o.get("amount_untaxed")) or 0, currency)
    tax = minor_units(value(o.get("amount_tax")) or 0, currency)
    total = minor_units(value(o.get("amount_total")), currency)
    discount = subtotal - untaxed
    if discount < 0:
        return Rejected(ext, f"amount_untaxed {o.get('amount_untaxed')} {currency} exceeds the lines ({subtotal})")
    if tax < 0 or untaxed + tax != total:
        return Rejected(ext, f"amount_total {o.get('amount_total')} is not amount_untaxed + amount_tax")
    customer, account, email = buyer(o.get("partner_id"), partners, updated_at)
    if customer is None and account is None:
        return Rejected(ext, "odoo sale.order without a partner_id")
    cancelled = value(o.get("state")) == "cancel"
    return OrderRecord(
        external_id=ext,
        updated_at=updated_at,
        channel=channel,
        currency=currency,
        placed_at=placed_at,
        lines=mapped,
        total=total,
        discount=discount,
        tax=tax,
        customer=customer,
        email=email,
        account=account,
        cancelled_at=updated_at if cancelled else None,
        number=fields.order_number(value(o.get("name"))),
    )


# invoices ----------------------------------------------------------------------------------


def invoice(m: Any, partners: Mapping[int, Mapping[str, Any]]) -> InvoiceRecord | Rejected | None:
    mid = m.get("id") if isinstance(m, dict) else None
    if not isinstance(mid, int) or isinstance(mid, bool):
        return Rejected(None, "odoo account.move without an id")
    ext = str(mid)
    if value(m.get("move_type")) not in INVOICE_TYPES:
        return None  # vendor bills and journal entries are not customer invoices
    return rejecting("odoo account.move", ext, lambda: _invoice(m, ext, partners))


def _status(m: Mapping[str, Any], outstanding: int) -> str:
    state, paid = value(m.get("state")), value(m.get("payment_state"))
    if state == "cancel" or paid == "reversed":
        return "cancelled"
    if state == "draft":
        return "draft"
    if paid in ("paid", "in_payment") or outstanding == 0:
        return "paid"
    return "open"


def _invoice(m: Mapping[str, Any], ext: str, partners: Mapping[int, Mapping[str, Any]]) -> InvoiceRecord | Rejected:
    currency = _currency(m)
    if currency is None:
        return Rejected(ext, f"currency_id {m.get('currency_id')!r} does not name an ISO 4217 code")
    updated_at = utc(m.get("write_date"))
    if updated_at is None:
        return Rejected(ext, "odoo account.move without write_date")
    issued_at = utc(m.get("invoice_date")) or utc(m.get("create_date")) or updated_at
    sign = -1 if value(m.get("move_type")) == "out_refund" else 1
    total = sign * minor_units(value(m.get("amount_total")) or 0, currency)
    tax = sign * minor_units(value(m.get("amount_tax")) or 0, currency)
    residual = sign * minor_units(value(m.get("amount_residual")) or 0, currency)
    status = _status(m, residual)
    outstanding = residual if status == "open" else 0
    name = fields.text(value(m.get("name")), 64)
    number = name if name and name != "/" else f"draft-{ext}"
    terms = many2one(m.get("invoice_payment_term_id"))
    customer, account, email = buyer(m.get("partner_id"), partners, updated_at)
    commercial = ref(m.get("commercial_partner_id"))
    if account is None and commercial and customer is not None and commercial != customer.external_id:
        account = commercial
    return InvoiceRecord(
        external_id=ext,
        updated_at=updated_at,
        number=number,
        currency=currency,
        issued_at=issued_at,
        total=total,
        outstanding=outstanding,
        status=status,  # type: ignore[arg-type]
        due_at=utc(m.get("invoice_date_due")),
        payment_terms=terms[1][:100] if terms else None,
        account=account,
        customer=customer,
        email=email,
        tax=tax,
        cancelled_at=updated_at if status == "cancelled" else None,
        credit_note=sign < 0,
    )
