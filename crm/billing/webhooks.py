"""Stripe's webhooks: verified on the raw bytes, de-duplicated by event id, and used as
hints only (the tenant's state is fetched from Stripe, crm/billing/service.py), so the
order they arrive in never matters.

Tenant isolation: an event only ever touches the tenant whose stored Stripe customer is
the event's customer; the tenant named in the body (metadata, client_reference_id) or by
the customer's metadata is checked against it, and anything else is acknowledged and
ignored.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any, TypeGuard

from pynamodb.exceptions import PutError

from crm import clock
from crm.billing import service, stripe_api
from crm.context import TenantContext
from crm.errors import DomainError, Unavailable
from crm.storage import BillingItem, StripeEventItem, condition_failed

log = logging.getLogger("rapport.billing")
TOLERANCE = 300  # seconds: a signature older than this is refused (a replay)
GUARD_TTL = timedelta(days=30)
HANDLED = frozenset(
    {
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "customer.subscription.trial_will_end",
        "invoice.paid",
        "invoice.payment_failed",
        "entitlements.active_entitlement_summary.updated",
    }
)


def verify(headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    """The event, if ``Stripe-Signature`` is valid for one of the configured secrets (several
    while rotating) and at most 300 s old; else 400 (nothing is read from the body)."""
    import stripe

    secrets = stripe_api.webhook_secrets()
    if not secrets:
        raise Unavailable(
            "Stripe webhooks are not configured (RAPPORT_STRIPE_WEBHOOK_SECRETS)", code="billing_not_configured"
        )
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get("stripe-signature")
    if not signature:
        raise DomainError("the Stripe-Signature header is missing", field="Stripe-Signature", code="invalid_signature")
    payload = raw.decode("utf-8", errors="replace")
    if not any(_signed(stripe, payload, signature, secret) for secret in secrets):
        raise DomainError(
            "the Stripe-Signature does not match, or is older than 300 s",
            field="Stripe-Signature",
            code="invalid_signature",
        )
    try:
        body = json.loads(payload)
    except ValueError:
        raise DomainError("the body is not a Stripe event (not JSON)", code="invalid_payload") from None
    if (
        not isinstance(body, dict)
        or body.get("object") != "event"
        or not isinstance((body.get("data") or {}).get("object"), dict)
    ):
        raise DomainError(
            "only snapshot events (v1) are accepted here; send thin (v2) events to an event destination of their own",
            code="unsupported_event",
        )
    return body


def _signed(stripe: Any, payload: str, signature: str, secret: str) -> bool:
    """The official library's check (HMAC-SHA256 of "t.payload", constant-time, tolerance)."""
    try:
        return bool(stripe.WebhookSignature.verify_header(payload, signature, secret, TOLERANCE))
    except stripe.SignatureVerificationError:
        return False


def _customer_and_tenant(event: dict[str, Any]) -> tuple[str | None, str | None]:
    obj = event["data"]["object"]
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    kind = event.get("type", "")
    named = None
    if kind.startswith("checkout.session."):
        named = obj.get("client_reference_id") or (obj.get("metadata") or {}).get("tenant_id")
    elif kind.startswith("customer.subscription."):
        named = (obj.get("metadata") or {}).get("tenant_id")
    elif kind.startswith("invoice."):
        details = ((obj.get("parent") or {}).get("subscription_details")) or {}
        named = (details.get("metadata") or {}).get("tenant_id")
    return customer, named


def _tenant_of_customer(customer: str) -> str | None:
    import stripe

    try:
        found = stripe_api.client().v1.customers.retrieve(customer)
    except stripe.InvalidRequestError:
        return None
    return (found.to_dict().get("metadata") or {}).get("tenant_id")


def _valid_tenant(tenant_id: Any) -> TypeGuard[str]:
    try:
        TenantContext(str(tenant_id))
        return True
    except ValueError:
        return False


def receive(headers: dict[str, str], raw: bytes) -> tuple[str, str]:
    """Verify and apply one delivery: ("applied" | "duplicate" | "ignored", event id)."""
    import stripe

    event = verify(headers, raw)
    event_id = str(event.get("id"))
    try:
        return apply_event(event), event_id
    except stripe.StripeError as exc:  # Stripe unreachable: 503, and Stripe delivers again
        raise Unavailable(
            f"Stripe could not be reached to apply {event_id}: {type(exc).__name__}", code="stripe_unavailable"
        ) from None


def apply_event(event: dict[str, Any]) -> str:
    """Apply one verified event (a delivery, or an undelivered one the reconcile found):
    "applied", "duplicate" (its id was applied before) or "ignored"."""
    event_id, kind = str(event.get("id")), str(event.get("type"))
    if kind not in HANDLED:
        return "ignored"
    customer, named = _customer_and_tenant(event)
    if not customer:
        log.info("Stripe event without a customer ignored", extra={"event": event_id})
        return "ignored"
    tenant_id = named if _valid_tenant(named) else None
    item = service.load(tenant_id) if tenant_id else None
    if item is None or item.stripe_customer != customer:
        tenant_id = _tenant_of_customer(customer)  # the customer Rapport made names its tenant
        item = service.load(tenant_id) if _valid_tenant(tenant_id) else None
    if item is None and kind == "checkout.session.completed" and _valid_tenant(named):
        item = service.load(named)
        tenant_id = named
    if item is None or not _owns(item, customer, event):
        log.warning("Stripe event for no tenant of ours ignored", extra={"event": event_id, "type": kind})
        return "ignored"
    assert tenant_id is not None
    ctx = TenantContext(tenant_id)
    now = clock.now()
    guard = StripeEventItem(
        f"{ctx.prefix}STRIPE", f"EVT#{event_id}", event_type=kind, received_at=clock.iso(now), ttl=now + GUARD_TTL
    )
    try:
        guard.save(condition=StripeEventItem.pk.does_not_exist())
    except PutError as exc:
        if condition_failed(exc):
            return "duplicate"
        raise
    try:
        if item.stripe_customer is None:  # a session Rapport opened without a customer: link it
            service.link_customer(tenant_id, customer)
        service.refresh(tenant_id, customer)
    except Exception:
        guard.delete()  # not applied: let Stripe's retry through
        raise
    return "applied"


def _owns(item: BillingItem, customer: str, event: dict[str, Any]) -> bool:
    """The tenant's stored customer is the event's; or, before any customer is stored, the
    event is the completion of the Checkout Session Rapport opened for this tenant."""
    if item.stripe_customer:
        return item.stripe_customer == customer
    obj = event["data"]["object"]
    return (
        event.get("type") == "checkout.session.completed"
        and bool(item.checkout_session)
        and obj.get("id") == item.checkout_session
    )
