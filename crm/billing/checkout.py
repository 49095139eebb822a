"""Checkout and the customer portal: how a tenant buys a plan and changes it.

One live subscription per tenant: a checkout while one is live is refused (409: change the
plan in the portal), and at most one Checkout Session is open per tenant: a conditional
write reserves the slot before the session is created, so of two concurrent checkouts one
gets 409. If Stripe still ends up with two subscriptions, the refresh cancels the newer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

from pynamodb.exceptions import UpdateError

from crm import tenants
from crm.billing import plans, service, state, stripe_api
from crm.context import TenantContext
from crm.errors import Conflict, Invalid, Unavailable
from crm.storage import BillingItem, condition_failed

PENDING = "pending:"  # checkout_session while a session is being created (with the ms it began)
PENDING_STALE_MS = 60_000  # a reservation older than this was left by a crash: take it over


@dataclass(frozen=True)
class Session:
    id: str
    url: str
    created: bool  # False: the tenant's open session for the same plan, returned again


def _sold(name: str) -> plans.Plan:
    sold = {p.name: p for p in plans.sold()}
    if name not in sold:
        choices = ", ".join(sorted(sold))
        raise Invalid(
            f"plan {name!r} cannot be bought: choose one of {choices}",
            field="plan",
            code="unknown_plan" if name not in {p.name for p in plans.catalogue().plans} else "not_for_sale",
        )
    return sold[name]


def _refuse_if_live(item: BillingItem) -> None:
    if state.is_live(item.status):
        raise Conflict(
            f"the tenant already has a subscription ({item.plan}, {item.status}): change the plan in the "
            "customer portal (POST /v1/billing/portal)",
            code="subscription_exists",
            subscription=item.subscription,
        )


def _reserve(tenant_id: str, observed: str | None) -> str:
    marker = f"{PENDING}{time.time_ns() // 1_000_000}"
    cond = (BillingItem.checkout_session == observed) if observed else BillingItem.checkout_session.does_not_exist()
    try:
        BillingItem(TenantContext(tenant_id).prefix, service.SK).update(
            actions=[BillingItem.checkout_session.set(marker)], condition=cond
        )
    except UpdateError as exc:
        if condition_failed(exc):
            raise Conflict(
                "another checkout for this tenant is being created: use its session", code="checkout_in_progress"
            ) from None
        raise
    return marker


def _set_session(tenant_id: str, marker: str, session_id: str | None, plan: str | None) -> bool:
    actions: list[Any] = (
        [BillingItem.checkout_session.set(session_id), BillingItem.checkout_plan.set(plan or "")]
        if session_id
        else [BillingItem.checkout_session.remove(), BillingItem.checkout_plan.remove()]
    )
    try:
        BillingItem(TenantContext(tenant_id).prefix, service.SK).update(
            actions=actions, condition=BillingItem.checkout_session == marker
        )
        return True
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise


def _price(plan: plans.Plan) -> dict[str, Any]:
    found = stripe_api.client().v1.prices.list(
        cast(Any, {"lookup_keys": [plan.lookup_key], "active": True, "limit": 1})
    )
    if not found.data:
        raise Unavailable(
            f"the Stripe account has no active price with lookup_key {plan.lookup_key!r} "
            f"(plan {plan.name}): create it (docs/billing.md)",
            code="price_missing",
        )
    return found.data[0].to_dict()


def _expire(session_id: str) -> bool:
    import stripe

    try:
        stripe_api.client().v1.checkout.sessions.expire(session_id)
        return True
    except stripe.StripeError:
        return False


def start(ctx: TenantContext, plan_name: str, success_url: str, cancel_url: str) -> Session:
    """A Checkout Session for ``plan_name`` (mode subscription), or the tenant's open one for it."""
    plan = _sold(plan_name)
    stripe_api.client()  # 503 billing_not_configured before anything is written
    item = service.ensure(ctx.tenant_id)
    _refuse_if_live(item)
    observed = item.checkout_session
    if observed and observed.startswith(PENDING):
        if time.time_ns() // 1_000_000 - int(observed[len(PENDING) :]) < PENDING_STALE_MS:
            raise Conflict(
                "another checkout for this tenant is being created: use its session", code="checkout_in_progress"
            )
    elif observed:
        open_session = sync_session(ctx.tenant_id, item)
        item = service.load(ctx.tenant_id) or item
        _refuse_if_live(item)
        if open_session is not None:
            if item.checkout_plan == plan.name:
                return Session(open_session["id"], open_session["url"], created=False)
            if not _expire(open_session["id"]):
                raise Conflict(
                    "a checkout for another plan is open and could not be expired: finish or cancel it first",
                    code="checkout_open",
                )
        observed = item.checkout_session
    marker = _reserve(ctx.tenant_id, observed)
    try:
        customer = service.customer_for(ctx.tenant_id, _name(ctx))
        price = _price(plan)
        line: dict[str, Any] = {"price": price["id"]}
        if ((price.get("recurring") or {}).get("usage_type")) != "metered":
            line["quantity"] = 1
        session = stripe_api.client().v1.checkout.sessions.create(
            cast(
                Any,
                {
                    "mode": "subscription",
                    "customer": customer,
                    "client_reference_id": ctx.tenant_id,
                    "line_items": [line],
                    "subscription_data": {"metadata": {"tenant_id": ctx.tenant_id}},
                    "metadata": {"tenant_id": ctx.tenant_id, "plan": plan.name},
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                },
            )
        )
    except BaseException:
        _set_session(ctx.tenant_id, marker, None, None)
        raise
    if not _set_session(ctx.tenant_id, marker, session.id, plan.name):
        _expire(session.id)  # a subscription went live meanwhile
        raise Conflict(
            "the tenant's subscription changed while the checkout was created: look at GET /v1/billing",
            code="subscription_exists",
        )
    return Session(session.id, session.url or "", created=True)


def _name(ctx: TenantContext) -> str | None:
    try:
        return tenants.get(ctx).name
    except Exception:  # noqa: BLE001 - the name is cosmetic
        return None


def sync_session(tenant_id: str, item: BillingItem) -> dict[str, Any] | None:
    """The tenant's open Checkout Session, or None. A completed one is applied at once (the
    webhook may be late: the tenant sees the plan it paid for) and an expired one forgotten."""
    session_id = item.checkout_session
    if not session_id or session_id.startswith(PENDING):
        return None
    found = stripe_api.client().v1.checkout.sessions.retrieve(session_id).to_dict()
    if found.get("status") == "open":
        return found
    if found.get("status") == "complete" and found.get("client_reference_id") == tenant_id:
        customer = found.get("customer")
        if customer and (item.stripe_customer in (None, customer)):
            service.link_customer(tenant_id, customer)
            service.refresh(tenant_id, customer)
    # expired or complete: no longer open
    try:
        BillingItem(TenantContext(tenant_id).prefix, service.SK).update(
            actions=[BillingItem.checkout_session.remove(), BillingItem.checkout_plan.remove()],
            condition=BillingItem.checkout_session == session_id,
        )
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
    return None


def portal(ctx: TenantContext, return_url: str) -> str:
    """A Billing Portal session's URL (change plan, payment method, cancel)."""
    item = service.load(ctx.tenant_id)
    if item is None or not item.stripe_customer:
        raise Conflict(
            "the tenant has no Stripe customer yet: start with POST /v1/billing/checkout", code="no_stripe_customer"
        )
    return (
        stripe_api.client()
        .v1.billing_portal.sessions.create({"customer": item.stripe_customer, "return_url": return_url})
        .url
    )
