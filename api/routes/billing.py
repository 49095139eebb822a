"""/v1/billing: the tenant's plan, Checkout, the customer portal and Stripe's webhooks
(crm/billing, docs/billing.md)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from chalice import Blueprint

from api.http import Request, Result, endpoint

bp = Blueprint(__name__)
TAG = "billing"
MAX_STRIPE_EVENT_BYTES = 256 * 1024


@contextlib.contextmanager
def _stripe_errors() -> Iterator[None]:
    """Stripe unreachable or refusing: 503 (nothing half-done is kept)."""
    import stripe

    from crm.errors import Unavailable

    try:
        yield
    except stripe.StripeError as exc:
        raise Unavailable(f"Stripe could not be reached: {type(exc).__name__}", code="stripe_unavailable") from None


def _return_url(req: Request, given: str | None, outcome: str) -> str:
    """The URL Stripe sends the browser back to: the request's, else RAPPORT_BILLING_RETURN_URL,
    else this API's index (which needs no key)."""
    from api.routes.connections import public_base

    if given:
        return given
    base = os.environ.get("RAPPORT_BILLING_RETURN_URL", "").strip() or f"{public_base(req.headers)}/v1"
    sep = "&" if "?" in base else "?"
    suffix = "&session_id={CHECKOUT_SESSION_ID}" if outcome == "success" else ""
    return f"{base}{sep}checkout={outcome}{suffix}" if outcome else base


@endpoint(
    bp,
    "/v1/billing",
    "GET",
    operation_id="getBilling",
    tag=TAG,
    scope="admin",
    summary="The tenant's plan, subscription status, current period, limits, usage so far and features",
    responses={200: "Billing"},
    errors=(503,),
)
def get_billing(req: Request) -> Result:
    from crm.billing import service

    return Result(200, service.summary(req.ctx))


@endpoint(
    bp,
    "/v1/billing/checkout",
    "POST",
    operation_id="createCheckout",
    tag=TAG,
    scope="admin",
    summary="A Stripe Checkout Session for a plan (201), or the open one for the same plan (200); "
    "409 while a subscription is live (use the portal) or another checkout is being created",
    body="CheckoutCreate",
    responses={201: "CheckoutSession", 200: "CheckoutSession"},
    errors=(409, 503),
)
def create_checkout(req: Request) -> Result:
    from crm.billing import checkout

    with _stripe_errors():
        session = checkout.start(
            req.ctx,
            req.body.plan,
            _return_url(req, req.body.success_url, "success"),
            _return_url(req, req.body.cancel_url, "canceled"),
        )
    return Result(201 if session.created else 200, {"url": session.url, "session_id": session.id})


@endpoint(
    bp,
    "/v1/billing/portal",
    "POST",
    operation_id="createPortalSession",
    tag=TAG,
    scope="admin",
    summary="A Stripe customer portal URL (change plan, payment method, cancel); 409 before any checkout",
    responses={200: "PortalSession"},
    errors=(409, 503),
)
def create_portal(req: Request) -> Result:
    from crm.billing import checkout

    with _stripe_errors():
        url = checkout.portal(req.ctx, _return_url(req, None, ""))
    return Result(200, {"url": url})


@endpoint(
    bp,
    "/v1/billing/stripe/webhook",
    "POST",
    operation_id="receiveStripeWebhook",
    tag="hooks",
    scope=None,
    summary="Stripe's webhook: the signature is verified on the raw bytes (400 if missing, forged or "
    "older than 300 s), the event de-duplicated by id and the tenant's state fetched from Stripe",
    responses={200: "BillingWebhookResult"},
    errors=(400, 413, 503),
    max_body=MAX_STRIPE_EVENT_BYTES,
)
def receive_stripe_webhook(req: Request) -> Result:
    from crm.billing import webhooks

    outcome, event_id = webhooks.receive(req.headers, req.raw)
    return Result(200, {"status": outcome, "event_id": event_id})
