"""WooCommerce REST API v3 customers and orders → Rapport records.

Pure functions of the vendor JSON, shared by the streams and the webhooks; an unmappable
record becomes :class:`Rejected` with the reason. Rules (docs/connectors.md, "WooCommerce"):

- times: the ``*_gmt`` fields (no offset in the JSON) are read as UTC;
- money: decimal strings/numbers → minor units via ``Decimal`` and the ISO 4217 exponent;
- a line's unit price is its ``subtotal`` (before coupons) / quantity, rounded up to a whole
  minor unit; positive fee lines become lines (``fee-<id>``); coupons, negative fees and
  the rounding remainder land in the reconciled ``discount = lines + shipping + tax - total``;
  a negative result rejects the order;
- status: paid at ``date_paid_gmt`` (processing/completed/refunded without it: at
  ``date_completed_gmt`` or ``date_modified_gmt``), never for pending/failed/checkout-draft;
  fulfilled at ``date_completed_gmt``; ``cancelled`` → cancelled at ``date_modified_gmt``;
- channel from ``created_via``: anything with "pos" → store, else web; overridable;
- refunds: ``refunds[]`` (``total`` is a negative string) by refund id; WooCommerce gives no
  refund date in the order, so ``refunded_at`` is left to the sink;
- buyer: ``customer_id`` > 0 → the customer (profile left to the customers stream); 0 is a
  guest → ``billing.email``, whose billing name, phone and address fill what the profile
  lacks;
- ``date_created_gmt`` is a customer's first-seen time at the store; a body that is an
  order (``line_items``) is never read as a customer;
- parcels: WooCommerce itself keeps no tracking numbers; where the official Shipment
  Tracking extension wrote them (``meta_data`` ``_wc_shipment_tracking_items``: a list of
  ``tracking_provider`` or ``custom_tracking_provider``, ``tracking_number``,
  ``date_shipped`` in epoch seconds) each becomes a parcel the sink registers.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.sdk import fields
from connectors.sdk.base import (
    CustomerRecord,
    OrderLine,
    OrderRecord,
    OrderTracking,
    RefundRecord,
    Rejected,
    rejecting,
)
from connectors.sdk.money import currency_code, minor_units

UNPAID = {"pending", "failed", "checkout-draft", "on-hold"}
SKIPPED = {"checkout-draft", "trash", "auto-draft"}


def _stamp(item: Mapping[str, Any]) -> str | None:
    return fields.utc(item.get("date_modified_gmt") or item.get("date_created_gmt"))


def _addresses(c: Mapping[str, Any]) -> list[dict]:
    out: list[dict] = []
    for label in ("billing", "shipping"):
        a = c.get(label)
        if not isinstance(a, dict):
            continue
        mapped = fields.address(line1=a.get("address_1"), line2=a.get("address_2"), city=a.get("city"),
                                region=a.get("state"), postal_code=a.get("postcode"),
                                country_code=a.get("country"), label=label)
        if mapped and not any({**x, "label": None} == {**mapped, "label": None} for x in out):
            out.append(mapped)
    return out


def customer(c: Any) -> CustomerRecord | Rejected:
    cid = c.get("id") if isinstance(c, dict) else None
    if cid in (None, "", 0):
        return Rejected(None, "woocommerce customer without an id")
    if "line_items" in c:  # a signed order body under a customer topic
        return Rejected(str(cid), "the body is an order, not a customer (its topic header is wrong)")
    try:
        updated_at = _stamp(c)
        created_at = fields.utc(c.get("date_created_gmt"))
    except ValueError:
        return Rejected(str(cid), f"date_modified_gmt {c.get('date_modified_gmt')!r} is not an ISO-8601 time")
    if updated_at is None:
        return Rejected(str(cid), "woocommerce customer without date_modified_gmt or date_created_gmt")
    billing = c.get("billing") if isinstance(c.get("billing"), dict) else {}
    profile: dict[str, Any] = {}
    name = fields.name(c.get("first_name") or billing.get("first_name"),
                       c.get("last_name") or billing.get("last_name"))
    if name:
        profile["name"] = name
    mail = fields.email(c.get("email")) or fields.email(billing.get("email"))
    if mail:
        profile["email"] = mail
    phone = fields.phone(billing.get("phone"), fields.country(billing.get("country")))
    if phone:
        profile["phone"] = phone
    addresses = _addresses(c)
    if addresses:
        profile["addresses"] = addresses
    attributes: dict[str, Any] = {}
    if fields.text(c.get("role"), 40):
        attributes["woocommerce_role"] = fields.text(c.get("role"), 40)
    if isinstance(c.get("is_paying_customer"), bool):
        attributes["woocommerce_paying_customer"] = c["is_paying_customer"]
    if fields.text(c.get("username"), 60):
        attributes["woocommerce_username"] = fields.text(c.get("username"), 60)
    if attributes:
        profile["attributes"] = attributes
    return CustomerRecord(external_id=str(cid), updated_at=updated_at, profile=profile,
                          created_at=created_at)


def _guest(billing: Mapping[str, Any]) -> dict[str, Any]:
    """A guest's name, phone and billing address, to fill what the profile lacks."""
    out: dict[str, Any] = {}
    name = fields.name(billing.get("first_name"), billing.get("last_name"))
    if name:
        out["name"] = name
    phone = fields.phone(billing.get("phone"), fields.country(billing.get("country")))
    if phone:
        out["phone"] = phone
    address = _addresses({"billing": billing})
    if address:
        out["addresses"] = address
    return out


def channel(created_via: Any, overrides: Mapping[str, str] | None = None) -> str:
    via = str(created_via or "").strip().lower()
    if overrides and via in overrides:
        return overrides[via]
    return "store" if "pos" in via else "web"


def _sku(li: Mapping[str, Any]) -> str:
    sku = fields.text(li.get("sku"), 64)
    if sku:
        return sku
    if li.get("variation_id"):
        return f"variation-{li['variation_id']}"
    if li.get("product_id"):
        return f"product-{li['product_id']}"
    return f"item-{li.get('id')}"


def order(o: Any, channels: Mapping[str, str] | None = None) -> OrderRecord | Rejected | None:
    """None for what is not an order yet (a block checkout's draft, the trash)."""
    oid = o.get("id") if isinstance(o, dict) else None
    if oid in (None, "", 0):
        return Rejected(None, "woocommerce order without an id")
    ext = str(oid)
    if o.get("status") in SKIPPED:
        return None
    return rejecting("woocommerce order", ext, lambda: _order(o, ext, channels))


def _order(o: Mapping[str, Any], ext: str, channels: Mapping[str, str] | None) -> OrderRecord | Rejected:
    currency = currency_code(o.get("currency"))
    if currency is None:
        return Rejected(ext, f"currency {o.get('currency')!r} is not an ISO 4217 code")
    updated_at = _stamp(o)
    placed_at = fields.utc(o.get("date_created_gmt"))
    if updated_at is None or placed_at is None:
        return Rejected(ext, "woocommerce order without date_created_gmt")
    lines: list[OrderLine] = []
    for li in o.get("line_items") or []:
        quantity = int(li.get("quantity") or 0)
        if quantity <= 0:
            continue
        subtotal = minor_units(li.get("subtotal") if li.get("subtotal") not in (None, "") else
                               li.get("total"), currency)
        if subtotal < 0:
            return Rejected(ext, f"line item {li.get('id')} has a negative subtotal")
        unit = -(-subtotal // quantity)  # rounded up: the remainder goes to the discount
        sku = _sku(li)
        lines.append(OrderLine(sku=sku, name=fields.text(li.get("name"), 200, unescape=True) or sku,
                               quantity=quantity, unit_price=unit))
    for fee in o.get("fee_lines") or []:
        amount = minor_units(fee.get("total") or 0, currency)
        if amount > 0:
            lines.append(OrderLine(sku=f"fee-{fee.get('id')}",
                                   name=fields.text(fee.get("name"), 200, unescape=True) or "Fee",
                                   quantity=1, unit_price=amount))
    if not lines:
        return Rejected(ext, "the order has no line items with a quantity")
    subtotal = sum(line.quantity * line.unit_price for line in lines)
    shipping = minor_units(o.get("shipping_total") or 0, currency)
    tax = minor_units(o.get("total_tax") or 0, currency)
    total = minor_units(o.get("total"), currency)
    discount = subtotal + shipping + tax - total
    if discount < 0:
        return Rejected(ext, f"total {o.get('total')} {currency} exceeds line items ({subtotal}) + "
                             f"shipping ({shipping}) + tax ({tax}) in minor units")
    if discount > subtotal:
        return Rejected(ext, f"reconciled discount {discount} exceeds the line items' subtotal {subtotal}")
    if shipping < 0 or tax < 0:
        return Rejected(ext, "negative shipping or tax")
    status = o.get("status")
    billing = o.get("billing") if isinstance(o.get("billing"), dict) else {}
    buyer = None
    email = None
    guest: dict[str, Any] = {}
    customer_id = int(o.get("customer_id") or 0)
    if customer_id > 0:
        buyer = CustomerRecord(external_id=str(customer_id), updated_at=updated_at, profile={})
    else:
        email = fields.email(billing.get("email"))
        if email is None:
            return Rejected(ext, "a guest order without a valid billing email: the buyer cannot be identified")
        guest = _guest(billing)
    paid_at = None
    if status not in UNPAID:
        paid_at = fields.utc(o.get("date_paid_gmt"))
        if paid_at is None and status in ("processing", "completed", "refunded"):
            paid_at = fields.utc(o.get("date_completed_gmt")) or updated_at
    fulfilled_at = fields.utc(o.get("date_completed_gmt")) if status not in ("cancelled", "failed") else None
    if fulfilled_at is None and status == "completed":
        fulfilled_at = updated_at
    refunds = []
    for r in o.get("refunds") or []:
        amount = abs(minor_units(r.get("total") or 0, currency))
        if amount > 0:
            refunds.append(RefundRecord(reference=str(r.get("id")), amount=amount,
                                        reason=fields.text(r.get("reason") or r.get("refund"), 500)))
    return OrderRecord(
        external_id=ext, updated_at=updated_at, channel=channel(o.get("created_via"), channels),
        currency=currency, placed_at=placed_at, lines=lines, total=total, discount=discount,
        shipping=shipping, tax=tax, customer=buyer, email=email, guest_profile=guest, paid_at=paid_at,
        fulfilled_at=fulfilled_at,
        cancelled_at=updated_at if status == "cancelled" else None,
        cancel_reason="cancelled in WooCommerce" if status == "cancelled" else None,
        refunds=refunds, tracking=_tracking(o), number=fields.order_number(o.get("number")))


def _tracking(o: Mapping[str, Any]) -> list[OrderTracking]:
    """Parcels from the Shipment Tracking extension's order meta, when the store has it."""
    out: dict[str, OrderTracking] = {}
    for meta in o.get("meta_data") or []:
        if not isinstance(meta, dict) or meta.get("key") != "_wc_shipment_tracking_items":
            continue
        for item in meta.get("value") or []:
            if not isinstance(item, dict):
                continue
            number = fields.text(item.get("tracking_number"), 64)
            if not number or number in out:
                continue
            shipped = item.get("date_shipped")
            shipped_at = None
            if str(shipped or "").isdigit():
                from datetime import UTC, datetime

                shipped_at = datetime.fromtimestamp(int(shipped), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            carrier = fields.text(item.get("tracking_provider") or item.get("custom_tracking_provider"), 64)
            out[number] = OrderTracking(tracking_number=number, carrier=carrier, shipped_at=shipped_at)
    return list(out.values())
