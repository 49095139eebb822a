"""The tenant's billing item and its refresh from Stripe (the I/O around crm/billing/state.py).

``refresh`` is what every webhook, GET /v1/billing (with a checkout open) and the reconcile
do: list the customer's subscriptions (all statuses) and active entitlements, derive the
state, and write it only if no later fetch was stored meanwhile (``seen``, a conditional
UpdateItem: 1 write). Newer duplicate live subscriptions are cancelled at Stripe.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pynamodb.exceptions import PutError, UpdateError

from crm import clock
from crm.billing import state, stripe_api
from crm.context import TenantContext
from crm.storage import BillingItem, condition_failed

SK = "BILLING"
log = logging.getLogger("rapport.billing")
BILLED = "BILLED"  # gsi1pk of tenants with a Stripe customer (reconcile, metering)


def _conditional_failed(exc: Exception) -> bool:
    return condition_failed(exc)


def load(tenant_id: str, *, consistent: bool = True) -> BillingItem | None:
    try:
        return BillingItem.get(TenantContext(tenant_id).prefix, SK, consistent_read=consistent)
    except BillingItem.DoesNotExist:
        return None


def as_state(item: BillingItem | None) -> state.State:
    if item is None:
        return state.State()
    return state.State(
        plan=item.plan,
        status=item.status,
        subscription=item.subscription,
        subscription_created=int(item.subscription_created) if item.subscription_created is not None else None,
        period_start=item.period_start,
        period_end=item.period_end,
        past_due_since=item.past_due_since,
        grace_until=item.grace_until,
        cancel_at_period_end=bool(item.cancel_at_period_end),
        features=tuple(str(f) for f in item.features) if item.features is not None else None,
        seen=int(item.seen or 0),
    )


def ensure(tenant_id: str) -> BillingItem:
    """The billing item, created on free if there is none (a conditional put, once per tenant)."""
    item = BillingItem(TenantContext(tenant_id).prefix, SK, updated_at=clock.now_iso())
    try:
        item.save(condition=BillingItem.pk.does_not_exist())
        return item
    except PutError as exc:
        if not condition_failed(exc):
            raise
    found = load(tenant_id)
    assert found is not None
    return found


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def fetch(customer_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The customer's subscriptions (all statuses, canceled included) and active entitlements
    (None when Stripe would not list them: the stored features stay)."""
    import stripe

    client = stripe_api.client()
    subs = client.v1.subscriptions.list({"customer": customer_id, "status": "all", "limit": 100})
    subscriptions = [_plain(s) for s in subs.data]
    try:
        ents = client.v1.entitlements.active_entitlements.list({"customer": customer_id, "limit": 100})
        entitlements: list[dict[str, Any]] | None = [_plain(e) for e in ents.data]
    except stripe.StripeError as exc:
        log.warning("active entitlements not listed", extra={"customer": customer_id, "error": str(exc)})
        entitlements = None
    return subscriptions, entitlements


def refresh(tenant_id: str, customer_id: str) -> tuple[state.State, tuple[str, ...]]:
    """Fetch the customer's state from Stripe and store it unless a later fetch was stored
    first; returns (the stored state, the subscriptions cancelled). Duplicate live
    subscriptions (the newer ones) are cancelled at Stripe; their deletion comes back as
    a webhook."""
    import stripe

    stored = load(tenant_id)
    seen = time.time_ns() // 1_000_000  # before the requests: the fetch is at least this fresh
    subscriptions, entitlements = fetch(customer_id)
    outcome = state.derive(tenant_id, customer_id, subscriptions, entitlements, seen=seen, stored=as_state(stored))
    for extra in outcome.cancel:
        log.warning("cancelling a duplicate subscription", extra={"tenant": tenant_id, "subscription": extra})
        try:
            stripe_api.client().v1.subscriptions.cancel(extra)
        except stripe.InvalidRequestError:  # cancelled meanwhile (a concurrent refresh)
            pass
    written = write(tenant_id, outcome.state)
    return (outcome.state if written else as_state(load(tenant_id))), outcome.cancel


def write(tenant_id: str, new: state.State) -> bool:
    """Store ``new`` unless the item holds a later fetch (``seen``): one conditional UpdateItem."""
    item = BillingItem(TenantContext(tenant_id).prefix, SK)
    values: list[tuple[Any, Any]] = [
        (BillingItem.plan, new.plan),
        (BillingItem.status, new.status),
        (BillingItem.subscription, new.subscription),
        (BillingItem.subscription_created, new.subscription_created),
        (BillingItem.period_start, new.period_start),
        (BillingItem.period_end, new.period_end),
        (BillingItem.past_due_since, new.past_due_since),
        (BillingItem.grace_until, new.grace_until),
        (BillingItem.cancel_at_period_end, new.cancel_at_period_end),
        (BillingItem.features, list(new.features) if new.features is not None else None),
        (BillingItem.seen, new.seen),
        (BillingItem.updated_at, clock.now_iso()),
    ]
    actions = [attr.set(v) if v is not None else attr.remove() for attr, v in values]
    if state.is_live(new.status):  # a checkout left open no longer matters (a new one is refused)
        actions += [BillingItem.checkout_session.remove(), BillingItem.checkout_plan.remove()]
    try:
        item.update(actions=actions, condition=BillingItem.pk.exists() & (BillingItem.seen < new.seen))
        return True
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise


def link_customer(tenant_id: str, customer_id: str) -> str:
    """Store the tenant's Stripe customer (once: a conditional write) and list the tenant under
    gsi1 ``BILLED``; returns the customer that is stored (an earlier one wins)."""
    item = BillingItem(TenantContext(tenant_id).prefix, SK)
    try:
        item.update(
            actions=[
                BillingItem.stripe_customer.set(customer_id),
                BillingItem.gsi1pk.set(BILLED),
                BillingItem.gsi1sk.set(tenant_id),
                BillingItem.updated_at.set(clock.now_iso()),
            ],
            condition=BillingItem.pk.exists() & BillingItem.stripe_customer.does_not_exist(),
        )
        return customer_id
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
    found = load(tenant_id)
    if found is None or not found.stripe_customer:
        raise RuntimeError(f"billing item of {tenant_id} vanished")
    return found.stripe_customer


def customer_for(tenant_id: str, name: str | None = None) -> str:
    """The tenant's Stripe customer, created on first use (Stripe's idempotency key makes two
    concurrent first uses create one customer; the conditional write keeps the first)."""
    item = ensure(tenant_id)
    if item.stripe_customer:
        return item.stripe_customer
    created = stripe_api.client().v1.customers.create(
        {"name": name or tenant_id, "metadata": {"tenant_id": tenant_id}, "description": f"Rapport tenant {tenant_id}"},
        {"idempotency_key": f"rapport-customer-{tenant_id}"},
    )
    return link_customer(tenant_id, created.id)


def billed_tenants() -> list[BillingItem]:
    """Every tenant with a Stripe customer: a Query of gsi1 ``BILLED`` (never a Scan)."""
    return list(BillingItem.gsi1.query(BILLED))


def usage_of(ctx: TenantContext) -> dict[str, Any]:
    """Usage so far this month (crm/billing/usage.py)."""
    from crm.billing import usage

    return dict(usage.summary(ctx))


def summary(ctx: TenantContext) -> dict[str, Any]:
    """What GET /v1/billing and ``rapport tenants show`` print. With a Checkout Session open,
    it is looked up at Stripe first (1 request): paid, the plan shows at once, webhook or not."""
    import stripe

    from crm.billing import checkout, meter, plans

    item = load(ctx.tenant_id)
    if item is not None and item.checkout_session and stripe_api.configured():
        try:
            checkout.sync_session(ctx.tenant_id, item)
            item = load(ctx.tenant_id)
        except stripe.StripeError as exc:  # the stored state stands
            log.warning("checkout session not looked up", extra={"tenant": ctx.tenant_id, "error": str(exc)})
    current = as_state(item)
    plan = plans.get(current.plan)
    open_session = item.checkout_session if item is not None else None
    return {
        "plan": plan.name,
        "status": current.status,
        "current_period": {"start": current.period_start, "end": current.period_end}
        if current.period_start or current.period_end
        else None,
        "limits": plan.limits.model_dump(),
        "usage": usage_of(ctx),
        "features": sorted(set(plan.features) | set(current.features or ())),
        "past_due_since": current.past_due_since,
        "grace_until": current.grace_until,
        "cancel_at_period_end": current.cancel_at_period_end,
        "subscription": current.subscription,
        "metering": meter.status(ctx.tenant_id, plan),
        "checkout": {"session_id": open_session, "plan": item.checkout_plan}
        if item is not None and open_session and not open_session.startswith("pending:")
        else None,
    }
