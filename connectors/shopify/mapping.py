"""Shopify Admin REST (2024-04) customers and orders → Rapport records.

Pure functions of the vendor JSON: the same mapping serves the streams and the webhooks.
A record that cannot be mapped becomes :class:`Rejected` with the reason; nothing raises
for one bad record. Rules (docs/connectors.md, "Shopify"):

- money: the vendor's decimal strings → integer minor units via ``Decimal`` and the
  currency's ISO 4217 exponent (JPY 0, KWD 3...);
- discount is reconciled: ``discount = lines + shipping + tax - total_price`` (Shopify's own
  ``total_discounts`` / ``total_line_items_price`` do not always add up); a negative result
  (the total exceeds what the parts account for) rejects the order;
- ``taxes_included`` orders: line prices already contain the tax, so tax is reported as 0;
- channel from ``source_name``: web → web, pos → store, iphone/android/mobile apps → mobile,
  anything else (draft orders, app ids) → web; the connection's ``channels`` map overrides;
- paid when ``financial_status`` is paid, partially_refunded or refunded (authorized,
  pending, partially_paid, voided, expired are not), at ``processed_at`` (else created_at);
- test transactions (``"test": true``, a test order) are not money: they neither pay nor
  refund;
- consent: ``email_marketing_consent`` → email, ``sms_marketing_consent`` → sms, each at its
  ``consent_updated_at``; ``created_at`` is the person's first-seen time at Shopify;
- a body that is an order (``line_items``...) is never read as a customer, whatever the
  webhook's (unsigned) topic header says;
- parcels: each fulfilment not cancelled or failed carries its ``tracking_numbers`` (else
  ``tracking_number``) with ``tracking_company`` as the carrier: the sink registers a
  shipment for each (docs/shipping.md).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.sdk import fields
from connectors.sdk.base import (
    CheckoutRecord,
    CustomerRecord,
    OrderLine,
    OrderRecord,
    OrderTracking,
    RefundRecord,
    Rejected,
    rejecting,
)
from connectors.sdk.money import currency_code, minor_units

PAID = {"paid", "partially_refunded", "refunded"}
MOBILE_SOURCES = {"iphone", "android", "mobile_app", "shopify_mobile", "ios", "mobile"}
STORE_SOURCES = {"pos", "shopify_pos"}
CONSENT = {"subscribed": "granted", "pending": "pending", "unsubscribed": "denied",
           "not_subscribed": "denied"}
MAX_TAGS = 50
ORDER_KEYS = ("line_items", "financial_status", "order_number")  # what only an order has


def _tags(raw: Any) -> list[str]:
    items = raw if isinstance(raw, list) else str(raw or "").split(",")
    out: list[str] = []
    for item in items:
        tag = fields.text(item, 1000)
        if tag and len(tag) <= 64 and "#" not in tag and tag.casefold() not in {t.casefold() for t in out}:
            out.append(tag)
    return out[:MAX_TAGS]


def _consent(c: Mapping[str, Any], updated_at: str) -> dict | None:
    """Email and SMS marketing consent, each at the vendor's own time of the change."""
    out: dict[str, Any] = {}
    for key, channel_ in (("email_marketing_consent", "email"), ("sms_marketing_consent", "sms")):
        given = c.get(key)
        if isinstance(given, dict) and given.get("state") in CONSENT:
            at = fields.utc(given.get("consent_updated_at")) or updated_at
            out[channel_] = {"status": CONSENT[given["state"]], "source": "shopify", "at": at}
    if "email" not in out and isinstance(c.get("accepts_marketing"), bool):  # older versions
        at = fields.utc(c.get("accepts_marketing_updated_at")) or updated_at
        out["email"] = {"status": "granted" if c["accepts_marketing"] else "denied",
                        "source": "shopify", "at": at}
    return out or None


def _addresses(c: Mapping[str, Any]) -> list[dict]:
    raw = list(c.get("addresses") or [])
    default = c.get("default_address")
    if isinstance(default, dict) and not any(isinstance(a, dict) and a.get("id") == default.get("id")
                                             and default.get("id") is not None for a in raw):
        raw.insert(0, default)
    out: list[dict] = []
    for a in raw:
        if not isinstance(a, dict):
            continue
        mapped = fields.address(line1=a.get("address1"), line2=a.get("address2"), city=a.get("city"),
                                region=a.get("province_code") or a.get("province"),
                                postal_code=a.get("zip"), country_code=a.get("country_code"),
                                label="default" if a.get("default") else None)
        if mapped and mapped not in out:
            out.append(mapped)
    return out[:10]


def customer(c: Any) -> CustomerRecord | Rejected:
    cid = c.get("id") if isinstance(c, dict) else None
    if cid in (None, ""):
        return Rejected(None, "shopify customer without an id")
    if any(k in c for k in ORDER_KEYS):  # a signed order body under a customer topic
        return Rejected(str(cid), "the body is an order, not a customer (its topic header is wrong)")
    try:
        updated_at = fields.utc(c.get("updated_at") or c.get("created_at"))
        created_at = fields.utc(c.get("created_at"))
    except ValueError:
        return Rejected(str(cid), f"updated_at {c.get('updated_at')!r} is not an ISO-8601 time")
    if updated_at is None:
        return Rejected(str(cid), "shopify customer without updated_at")
    profile: dict[str, Any] = {}
    name = fields.name(c.get("first_name"), c.get("last_name"))
    if name:
        profile["name"] = name
    mail = fields.email(c.get("email"))
    if mail:
        profile["email"] = mail
    addresses = _addresses(c)
    home = addresses[0]["country"] if addresses else None
    default = c.get("default_address") if isinstance(c.get("default_address"), dict) else {}
    phone = fields.phone(c.get("phone"), home) or fields.phone(default.get("phone"), home)
    if phone:
        profile["phone"] = phone
    if addresses:
        profile["addresses"] = addresses
    tags = _tags(c.get("tags"))
    if tags:
        profile["tags"] = tags
    consent = _consent(c, updated_at)
    if consent:
        profile["consent"] = consent
    attributes: dict[str, Any] = {}
    if isinstance(c.get("orders_count"), int):
        attributes["shopify_orders_count"] = c["orders_count"]
    if c.get("total_spent") not in (None, ""):
        attributes["shopify_total_spent"] = str(c["total_spent"])[:40]
    if fields.text(c.get("state"), 40):
        attributes["shopify_state"] = fields.text(c.get("state"), 40)
    if isinstance(c.get("verified_email"), bool):
        attributes["shopify_verified_email"] = c["verified_email"]
    if attributes:
        profile["attributes"] = attributes
    return CustomerRecord(external_id=str(cid), updated_at=updated_at, profile=profile,
                          created_at=created_at)


def channel(source_name: Any, overrides: Mapping[str, str] | None = None) -> str:
    source = str(source_name or "").strip().lower()
    if overrides and source in overrides:
        return overrides[source]
    if source == "web":
        return "web"
    if source in STORE_SOURCES:
        return "store"
    if source in MOBILE_SOURCES:
        return "mobile"
    return "web"


def _sku(li: Mapping[str, Any]) -> str:
    sku = fields.text(li.get("sku"), 64)
    if sku:
        return sku
    if li.get("variant_id"):
        return f"variant-{li['variant_id']}"[:64]
    return f"item-{li.get('id')}"[:64]


def _refund(r: Mapping[str, Any], currency: str) -> RefundRecord | None:
    txs = [t for t in (r.get("transactions") or []) if isinstance(t, dict)]
    if txs:
        txs = [t for t in txs if not t.get("test")]  # a test gateway's refund is not money
        if not txs:
            return None
        amount = sum(minor_units(t.get("amount"), currency) for t in txs
                     if t.get("kind") == "refund" and t.get("status") == "success")
    else:
        amount = 0
        for rli in r.get("refund_line_items") or []:
            amount += minor_units(rli.get("subtotal") or 0, currency)
            amount += minor_units(rli.get("total_tax") or 0, currency)
    if amount <= 0:
        return None  # nothing refunded yet (pending or failed transactions)
    return RefundRecord(reference=str(r.get("id")), amount=amount,
                        refunded_at=fields.utc(r.get("processed_at") or r.get("created_at")),
                        reason=fields.text(r.get("note"), 500))


def _test_payment(o: Mapping[str, Any]) -> bool:
    """A test order, or one whose successful payments were all test transactions: no money."""
    if o.get("test") is True:
        return True
    txs = [t for t in o.get("transactions") or [] if isinstance(t, dict)
           and t.get("kind") in ("sale", "capture") and t.get("status") == "success"]
    return bool(txs) and all(t.get("test") for t in txs)


def _fulfilled_at(o: Mapping[str, Any], updated_at: str) -> str | None:
    if o.get("fulfillment_status") != "fulfilled":
        return None
    done = [fields.utc(f.get("created_at")) for f in o.get("fulfillments") or []
            if isinstance(f, dict) and f.get("status") == "success" and f.get("created_at")]
    return max(done) if done else updated_at


def _tracking(o: Mapping[str, Any]) -> list[OrderTracking]:
    """The parcels of the order's live fulfilments (a cancelled, failed or errored one
    shipped nothing), each tracking number once."""
    out: dict[str, OrderTracking] = {}
    for f in o.get("fulfillments") or []:
        if not isinstance(f, dict) or f.get("status") in ("cancelled", "failure", "error"):
            continue
        numbers = f.get("tracking_numbers") or ([f["tracking_number"]] if f.get("tracking_number") else [])
        for number in numbers:
            text = fields.text(number, 64)
            if text and text not in out:
                out[text] = OrderTracking(tracking_number=text, carrier=fields.text(f.get("tracking_company"), 64),
                                          shipped_at=fields.utc(f.get("created_at")))
    return list(out.values())


def order(o: Any, channels: Mapping[str, str] | None = None) -> OrderRecord | Rejected:
    oid = o.get("id") if isinstance(o, dict) else None
    if oid in (None, ""):
        return Rejected(None, "shopify order without an id")
    ext = str(oid)
    return rejecting("shopify order", ext, lambda: _order(o, ext, channels))


def _order(o: Mapping[str, Any], ext: str, channels: Mapping[str, str] | None) -> OrderRecord | Rejected:
    currency = currency_code(o.get("currency"))
    if currency is None:
        return Rejected(ext, f"currency {o.get('currency')!r} is not an ISO 4217 code")
    updated_at = fields.utc(o.get("updated_at") or o.get("created_at"))
    placed_at = fields.utc(o.get("processed_at") or o.get("created_at"))
    if updated_at is None or placed_at is None:
        return Rejected(ext, "shopify order without created_at/updated_at")
    lines = []
    for li in o.get("line_items") or []:
        quantity = int(li.get("quantity") or 0)
        if quantity <= 0:
            continue  # removed by an order edit
        unit = minor_units(li.get("price"), currency)
        sku = _sku(li)
        lines.append(OrderLine(sku=sku, name=fields.text(li.get("name") or li.get("title"), 200) or sku,
                               quantity=quantity, unit_price=unit))
    if not lines:
        return Rejected(ext, "the order has no line items with a quantity")
    if any(line.unit_price < 0 for line in lines):
        return Rejected(ext, "a line item has a negative price")
    subtotal = sum(line.quantity * line.unit_price for line in lines)
    shipping = sum(minor_units(s.get("price") or 0, currency) for s in o.get("shipping_lines") or [])
    tax = 0 if o.get("taxes_included") else minor_units(o.get("total_tax") or 0, currency)
    total = minor_units(o.get("total_price"), currency)
    discount = subtotal + shipping + tax - total
    if discount < 0:
        return Rejected(ext, f"total_price {o.get('total_price')} {currency} exceeds line items "
                             f"({subtotal}) + shipping ({shipping}) + tax ({tax}) in minor units: "
                             "the order carries charges Rapport cannot represent")
    if discount > subtotal:
        return Rejected(ext, f"reconciled discount {discount} exceeds the line items' subtotal {subtotal}")
    buyer = customer(o["customer"]) if isinstance(o.get("customer"), dict) and o["customer"].get("id") else None
    if isinstance(buyer, Rejected):
        buyer = None
    email = None if buyer else fields.email(o.get("email") or o.get("contact_email"))
    if buyer is None and email is None:
        return Rejected(ext, "the order has neither a customer nor a valid email: the buyer cannot be identified")
    paid_at = None
    if o.get("financial_status") in PAID and not _test_payment(o):
        paid_at = placed_at
    refunds = [] if _test_payment(o) else [
        r for r in (_refund(r, currency) for r in o.get("refunds") or [] if isinstance(r, dict)) if r]
    return OrderRecord(
        external_id=ext, updated_at=updated_at, channel=channel(o.get("source_name"), channels),
        currency=currency, placed_at=placed_at, lines=lines, total=total, discount=discount,
        shipping=shipping, tax=tax, customer=buyer, email=email, paid_at=paid_at,
        fulfilled_at=_fulfilled_at(o, updated_at), cancelled_at=fields.utc(o.get("cancelled_at")),
        cancel_reason=fields.text(o.get("cancel_reason"), 500) if o.get("cancelled_at") else None,
        refunds=refunds, tracking=_tracking(o), number=fields.order_number(o.get("name")))


def checkout(c: Any) -> CheckoutRecord | Rejected | None:
    """A ``checkouts/create`` or ``checkouts/update`` body (the Admin API's checkout,
    shopify_python_api's test/fixtures/abandoned_checkout.json): the ``token`` is its id
    (the numeric ``id`` as a fallback), ``abandoned_checkout_url`` where the buyer resumes
    it. A completed checkout is an order by now: None (nothing to record)."""
    if not isinstance(c, dict):
        return Rejected(None, "shopify checkout body is not an object")
    ext = str(c.get("token") or c.get("id") or "")
    if not ext:
        return Rejected(None, "shopify checkout without a token or an id")
    if c.get("completed_at"):
        return None
    return rejecting("shopify checkout", ext, lambda: _checkout(c, ext))


def _checkout(c: Mapping[str, Any], ext: str) -> CheckoutRecord | Rejected:
    started_at = fields.utc(c.get("created_at"))
    updated_at = fields.utc(c.get("updated_at") or c.get("created_at"))
    if started_at is None or updated_at is None:
        return Rejected(ext, "shopify checkout without created_at")
    currency = currency_code(c.get("currency"))
    lines = []
    for li in c.get("line_items") or []:
        quantity = int(li.get("quantity") or 0)
        if quantity <= 0 or currency is None:
            continue
        sku = _sku(li)
        lines.append(OrderLine(sku=sku, name=fields.text(li.get("title") or li.get("name"), 200) or sku,
                               quantity=quantity, unit_price=minor_units(li.get("price"), currency)))
    total = minor_units(c.get("total_price"), currency) if currency and c.get("total_price") is not None else None
    url = c.get("abandoned_checkout_url")
    buyer = customer(c["customer"]) if isinstance(c.get("customer"), dict) and c["customer"].get("id") else None
    if isinstance(buyer, Rejected):
        buyer = None
    email = None if buyer else fields.email(c.get("email"))
    if buyer is None and email is None:
        return Rejected(ext, "the checkout has neither a customer nor a valid email: the buyer cannot be identified")
    return CheckoutRecord(
        external_id=ext, updated_at=updated_at, started_at=started_at, currency=currency, total=total,
        url=url if isinstance(url, str) and url.startswith("https://") and len(url) <= 2000 else None,
        lines=lines, customer=buyer, email=email)
