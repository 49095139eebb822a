"""Stripe objects for the Stripe double, each a deep copy of the real example object from
stripe/openapi's fixtures (rapport/stripe_fixtures/, MIT) with ids and fields set: the
shapes Rapport reads are Stripe's own, in API version 2025-03-31.basil (subscription
periods on ``items.data[]``, an invoice's subscription under ``parent.subscription_details``)."""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import functools
import json
import secrets
import string
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).with_name("stripe_fixtures")
API_VERSION = "2025-03-31.basil"
_ALPHABET = string.ascii_letters + string.digits


@functools.cache
def _template(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text()


def template(name: str) -> dict[str, Any]:
    """A fresh copy of fixture ``name`` (e.g. ``subscription``)."""
    return json.loads(_template(name))


def new_id(prefix: str, n: int = 24) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(n))}"


def add_month(ts: int, months: int = 1) -> int:
    """``ts`` plus whole calendar months (day clamped to the month's end), as Stripe bills monthly."""
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return int(d.replace(year=year, month=month, day=day).timestamp())


def customer(now: int, *, email: str | None, name: str | None, metadata: dict) -> dict:
    c = template("customer")
    c.update(id=new_id("cus", 14), created=now, email=email, name=name, metadata=dict(metadata),
             discount=None, invoice_prefix=secrets.token_hex(4).upper(), shipping=None)
    return c


def product(now: int, plan: Any) -> dict:
    p = template("product")
    p.update(id=new_id("prod", 14), created=now, updated=now, name=f"Rapport {plan.name.capitalize()}",
             description=f"Rapport's {plan.name} plan", metadata={"plan": plan.name},
             package_dimensions=None, type="service", default_price=None)
    return p


def meter(now: int, plan: Any) -> dict:
    m = template("billing.meter")
    m.update(id=new_id("mtr_test", 24), created=now, updated=now, livemode=False,
             display_name=f"Rapport {plan.metered.unit}", event_name=plan.metered.meter,
             customer_mapping={"event_payload_key": "stripe_customer_id", "type": "by_id"},
             default_aggregation={"formula": "sum"}, value_settings={"event_payload_key": "value"})
    return m


def price(now: int, plan: Any, product_id: str, currency: str, meter_id: str | None) -> dict:
    """The plan's monthly price; a metered plan's price bills ``unit_price`` per ``per`` units
    reported to its meter (``transform_quantity``), with ``recurring.usage_type`` metered."""
    p = template("price")
    amount = plan.metered.unit_price if plan.metered else plan.monthly_price
    p.update(id=new_id("price", 24), created=now, currency=currency, lookup_key=plan.lookup_key,
             nickname=plan.name, metadata={"plan": plan.name}, product=product_id,
             unit_amount=amount, unit_amount_decimal=str(amount), custom_unit_amount=None,
             transform_quantity=None)
    p["recurring"].update(interval="month", interval_count=1, meter=None, usage_type="licensed",
                          trial_period_days=None)
    if plan.metered:
        p["recurring"].update(usage_type="metered", meter=meter_id)
        p["transform_quantity"] = {"divide_by": plan.metered.per, "round": "up"}
    return p


def legacy_plan(price: dict) -> dict:
    """The ``plan`` a subscription item still carries beside its ``price`` (same facts)."""
    r = price["recurring"]
    return {"id": price["id"], "object": "plan", "active": price["active"], "amount": price["unit_amount"],
            "amount_decimal": price["unit_amount_decimal"], "billing_scheme": price["billing_scheme"],
            "created": price["created"], "currency": price["currency"], "interval": r["interval"],
            "interval_count": r["interval_count"], "livemode": False, "metadata": price["metadata"],
            "meter": r["meter"], "nickname": price["nickname"], "product": price["product"],
            "tiers_mode": None, "transform_usage": price["transform_quantity"],
            "trial_period_days": None, "usage_type": r["usage_type"]}


def feature(now: int, lookup_key: str) -> dict:
    f = template("entitlements.feature")
    f.update(id=new_id("feat_test", 24), lookup_key=lookup_key, name=lookup_key.replace("_", " ").capitalize(),
             metadata={}, livemode=False)
    return f


def subscription_item(now: int, price: dict, sub_id: str, start: int, end: int) -> dict:
    item = template("subscription_item")
    metered = price["recurring"]["usage_type"] == "metered"
    item.update(id=new_id("si", 14), created=now, price=copy.deepcopy(price), plan=legacy_plan(price),
                quantity=None if metered else 1, subscription=sub_id, metadata={}, discounts=[],
                tax_rates=[], current_period_start=start, current_period_end=end, billing_thresholds=None)
    return item


def subscription(now: int, *, customer_id: str, price: dict, metadata: dict, trial_days: int | None,
                 currency: str) -> dict:
    s = template("subscription")
    sid = new_id("sub", 24)
    end = now + trial_days * 86400 if trial_days else add_month(now)
    s.update(id=sid, created=now, start_date=now, billing_cycle_anchor=end if trial_days else now,
             billing_cycle_anchor_config=None, customer=customer_id, currency=currency,
             status="trialing" if trial_days else "active", metadata=dict(metadata),
             cancel_at=None, cancel_at_period_end=False, canceled_at=None, ended_at=None,
             cancellation_details={"comment": None, "feedback": None, "reason": None},
             trial_start=now if trial_days else None, trial_end=end if trial_days else None,
             latest_invoice=None, discounts=[], default_payment_method=None, default_source=None,
             description=None, pause_collection=None, schedule=None, test_clock=None, livemode=False,
             pending_update=None, pending_setup_intent=None, next_pending_invoice_item_invoice=None,
             pending_invoice_item_interval=None, transfer_data=None, billing_thresholds=None,
             billing_schedules=[], managed_payments=None, on_behalf_of=None, application=None,
             application_fee_percent=None,
             payment_settings={"payment_method_options": None, "payment_method_types": None,
                               "save_default_payment_method": "off"})
    s["items"] = {"object": "list", "data": [subscription_item(now, price, sid, now, end)],
                  "has_more": False, "url": f"/v1/subscription_items?subscription={sid}"}
    return s


def invoice(now: int, sub: dict, *, amount: int, reason: str, paid: bool, number: int) -> dict:
    """A subscription's invoice for its current period: ``paid`` or ``open`` after a failed charge."""
    inv = template("invoice")
    iid = new_id("in", 24)
    item = sub["items"]["data"][0]
    start, end = item["current_period_start"], item["current_period_end"]
    line = inv["lines"]["data"][0]
    line.update(id=new_id("il", 24), invoice=iid, amount=amount, currency=sub["currency"],
                description=f"1 × {item['price']['nickname']} (at {amount / 100:.2f} / month)",
                period={"start": start, "end": end}, quantity=item["quantity"], subtotal=amount,
                metadata={}, subscription=None, discount_amounts=[], discounts=[],
                parent={"type": "subscription_item_details", "invoice_item_details": None,
                        "subscription_item_details": {"invoice_item": None, "proration": False,
                                                      "proration_details": {"credited_items": None},
                                                      "subscription": sub["id"], "subscription_item": item["id"]}},
                pricing={"type": "price_details", "unit_amount_decimal": str(amount),
                         "price_details": {"price": item["price"]["id"], "product": item["price"]["product"]}})
    inv["lines"].update(url=f"/v1/invoices/{iid}/lines")
    inv.update(id=iid, created=now, customer=sub["customer"], currency=sub["currency"], billing_reason=reason,
               status="paid" if paid else "open", amount_due=amount, amount_paid=amount if paid else 0,
               amount_remaining=0 if paid else amount, subtotal=amount, total=amount,
               subtotal_excluding_tax=amount, total_excluding_tax=amount, attempted=True,
               attempt_count=1, auto_advance=not paid, period_start=start, period_end=end,
               due_date=None, effective_at=now, from_invoice=None, last_finalization_error=None,
               number=f"{iid[-8:].upper()}-{number:04d}", metadata={}, livemode=False,
               next_payment_attempt=None if paid else now + 3 * 86400, subscription=None,
               hosted_invoice_url=None, invoice_pdf=None, webhooks_delivered_at=None, shipping_cost=None,
               amount_overpaid=0, amount_shipping=0, account_name="Rapport (Stripe double)",
               payment_settings={"default_mandate": None, "payment_method_options": None,
                                 "payment_method_types": None},
               parent={"type": "subscription_details", "quote_details": None,
                       "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"]}},
               status_transitions={"finalized_at": now, "marked_uncollectible_at": None,
                                   "paid_at": now if paid else None, "voided_at": None})
    return inv


def checkout_session(now: int, base_url: str, *, price: dict, params: dict, customer: dict | None) -> dict:
    cs = template("checkout.session")
    sid = new_id("cs_test", 58)
    cs.update(id=sid, created=now, expires_at=now + 86400, mode="subscription", status="open",
              payment_status="unpaid", livemode=False, url=f"{base_url}/checkout/{sid}",
              client_reference_id=params.get("client_reference_id"),
              customer=customer["id"] if customer else None,
              customer_email=params.get("customer_email"), customer_details=None,
              metadata=dict(params.get("metadata") or {}), success_url=params.get("success_url"),
              cancel_url=params.get("cancel_url"), currency=price["currency"],
              amount_subtotal=price["unit_amount"], amount_total=price["unit_amount"],
              subscription=None, invoice=None, payment_intent=None, setup_intent=None,
              client_secret=None, payment_link=None, recovered_from=None, discounts=[],
              customer_creation=None if customer else "always", total_details={
                  "amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
              custom_text={"after_submit": None, "shipping_address": None, "submit": None,
                           "terms_of_service_acceptance": None},
              after_expiration=None, payment_method_configuration_details=None, shipping_cost=None,
              shipping_address_collection=None, collected_information=None, currency_conversion=None,
              invoice_creation=None, managed_payments=None, adaptive_pricing=None,
              consent_collection=None, saved_payment_method_options=None)
    return cs


def entitlement(feat: dict) -> dict:
    """An ``entitlements.active_entitlement`` (the summary fixture's element shape)."""
    e = template("entitlements.active_entitlement_summary")["entitlements"]["data"][0]
    e.update(id=new_id("ent_test", 24), feature=feat["id"], lookup_key=feat["lookup_key"], livemode=False)
    return e


def entitlement_summary(customer_id: str, entitlements: list[dict]) -> dict:
    s = template("entitlements.active_entitlement_summary")
    s.update(customer=customer_id, livemode=False)
    s["entitlements"] = {"object": "list", "data": copy.deepcopy(entitlements), "has_more": False,
                         "url": f"/v1/customer/{customer_id}/entitlements"}
    return s


def event(now: int, type_: str, obj: dict, previous: dict | None = None, request_id: str | None = None) -> dict:
    e = template("event")
    e.update(id=new_id("evt", 24), created=now, type=type_, api_version=API_VERSION, livemode=False,
             pending_webhooks=1, request={"id": request_id, "idempotency_key": None})
    e["data"] = {"object": copy.deepcopy(obj)}
    if previous is not None:
        e["data"]["previous_attributes"] = copy.deepcopy(previous)
    return e


def meter_event(now: int, params: dict) -> dict:
    m = template("billing.meter_event")
    m.update(created=now, event_name=params["event_name"], identifier=params["identifier"],
             payload=dict(params["payload"]), timestamp=int(params.get("timestamp") or now), livemode=False)
    return m


def portal_session(now: int, base_url: str, customer_id: str, return_url: str | None) -> dict:
    """No fixture file for this one: the fields of Stripe's ``billing_portal.session``."""
    pid = new_id("bps", 24)
    return {"id": pid, "object": "billing_portal.session", "configuration": "bpc_rapport_double",
            "created": now, "customer": customer_id, "flow": None, "livemode": False, "locale": None,
            "on_behalf_of": None, "return_url": return_url, "url": f"{base_url}/portal/{pid}"}


def error(type_: str, message: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"type": type_, "code": code, "message": message, "param": param}}
