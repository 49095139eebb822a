"""Plan limits: a create that would exceed the tenant's plan gets 402 ``plan_limit``
naming the limit, the usage, the plan and the plan that allows more (``upgrade_to``).

Only creates are refused: a downgrade never deletes data, and what is above the new
limit stays readable and updatable. Checks are cheap: the live customer count is the
usage item's (crm/billing/usage.py, kept by the stream dispatcher), cached per container
for ``CACHE_SECONDS`` while far from the limit (plus what this container created since),
and read afresh (1 consistent GetItem) before refusing. The count lags the profiles by
the stream's delivery (about a second): creates racing within that lag can pass the
limit by as many (docs/limits.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from crm.billing import plans
from crm.context import PlanState, TenantContext
from crm.errors import PaymentRequired

CACHE_SECONDS = 10.0
FAR = 0.9  # below this share of the limit, a cached count is good enough

_LABELS = {"customers": "customers", "connections": "connections", "emails_per_month": "emails a month"}


_plans: dict[str, tuple[float, str]] = {}  # tenant -> (read at, plan name), for contexts without a key


def plan_of(ctx: TenantContext, *, fresh: bool = False, monotonic: Callable[[], float] = time.monotonic) -> plans.Plan:
    """The tenant's plan: an API request's context carries it (read with the key, cached with
    it up to 60 s); a worker's (a sync, a schedule: no key) reads the billing item, cached per
    container for ``CACHE_SECONDS``. ``fresh``: read it now (before refusing, so that a
    tenant who has just upgraded is never refused by a cached plan)."""
    if ctx.key_id is not None and not fresh:
        return plans.get(ctx.billing.plan)
    now = monotonic()
    hit = _plans.get(ctx.tenant_id)
    if fresh or hit is None or now - hit[0] >= CACHE_SECONDS:
        from crm.storage import BillingItem

        try:
            name = BillingItem.get(ctx.prefix, "BILLING", consistent_read=fresh).plan
        except BillingItem.DoesNotExist:
            name = plans.FREE
        hit = _plans[ctx.tenant_id] = (now, name)
    return plans.get(hit[1])


def refusal(
    limit: plans.LimitName, usage: int, plan: plans.Plan, needed: int, *, field: str | None = None
) -> PaymentRequired:
    """The 402 problem: ``limit``, ``allowed``, ``usage``, ``plan`` and ``upgrade_to``."""
    allowed = plan.limit(limit)
    up = plans.allowing(limit, needed, above=plan)
    advice = f"; the {up.name} plan allows {up.limit(limit) or 'unlimited'}" if up else ""
    return PaymentRequired(
        f"the {plan.name} plan allows {allowed} {_LABELS.get(limit, limit)} and the tenant has {usage}{advice}",
        field=field,
        code="plan_limit",
        limit=limit,
        allowed=allowed,
        usage=usage,
        plan=plan.name,
        upgrade_to=up.name if up else None,
    )


@dataclass
class _Count:
    value: int
    read_at: float


_cache: dict[str, _Count] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _plans.clear()


def _customers(ctx: TenantContext, *, fresh: bool, monotonic: Callable[[], float]) -> int:
    from crm.billing import usage

    now = monotonic()
    with _lock:
        hit = _cache.get(ctx.tenant_id)
    if hit is not None and not fresh and now - hit.read_at < CACHE_SECONDS:
        return hit.value
    value = usage.live_customers(ctx.tenant_id, consistent=True)
    with _lock:
        if hit is not None and now - hit.read_at < CACHE_SECONDS:
            # what this container created lately may not have reached the count yet (the
            # stream's lag): never believe fewer than it knows of
            value = max(value, hit.value)
        _cache[ctx.tenant_id] = _Count(value, now)
    return value


def state_now(ctx: TenantContext) -> PlanState:
    """The tenant's plan state read afresh (1 consistent GetItem): what a refusal checks
    first, since the context's copy may be cached from before a payment."""
    from crm.storage import BillingItem

    try:
        item = BillingItem.get(ctx.prefix, "BILLING", consistent_read=True)
    except BillingItem.DoesNotExist:
        return PlanState()
    return PlanState(item.plan, item.status, item.grace_until)


def customers_room(
    ctx: TenantContext, *, monotonic: Callable[[], float] = time.monotonic
) -> tuple[int | None, int, plans.Plan]:
    """(how many customers may still be created, the count it is based on, the plan); None:
    no limit. No request at all while the cached count is far from the limit; near it, the
    count and the plan are read afresh (2 GetItems)."""
    plan = plan_of(ctx, monotonic=monotonic)
    cap = plan.limit("customers")
    if cap is None:
        return None, 0, plan
    count = _customers(ctx, fresh=False, monotonic=monotonic)
    if count >= cap * FAR:
        count = _customers(ctx, fresh=True, monotonic=monotonic)
        plan = plan_of(ctx, fresh=True, monotonic=monotonic)
        cap = plan.limit("customers")
        if cap is None:
            return None, count, plan
    return max(0, cap - count), count, plan


def created(ctx: TenantContext, n: int) -> None:
    """This container created ``n`` customers: counted in the cached value at once (the
    usage item catches up through the stream)."""
    if n:
        with _lock:
            hit = _cache.get(ctx.tenant_id)
            if hit is not None:
                hit.value += n


def check_customers(ctx: TenantContext, adding: int = 1) -> None:
    """Raise 402 plan_limit if ``adding`` more customers would pass the plan's limit."""
    room, count, plan = customers_room(ctx)
    if room is not None and adding > room:
        raise refusal("customers", count, plan, count + adding)


class Budget:
    """Room for new customers across one batch (a batch upsert, a sync page): each new
    record takes one; once none is left, each further one gets its own 402."""

    def __init__(self, ctx: TenantContext) -> None:
        self.ctx = ctx
        self._room: int | None = None
        self._count = 0
        self._read = False
        self._plan = plans.get(None)
        self.taken = 0

    def take(self, field: str | None = None) -> PaymentRequired | None:
        """None: go ahead; else the refusal for this record."""
        if not self._read:
            self._room, self._count, self._plan = customers_room(self.ctx)
            self._read = True
        if self._room is None:
            self.taken += 1
            return None
        if self.taken >= self._room:
            return refusal("customers", self._count + self.taken, self._plan, self._count + self.taken + 1, field=field)
        self.taken += 1
        return None

    def give_back(self, n: int = 1) -> None:
        """A planned creation that did not happen (a deferred or failed write)."""
        self.taken = max(0, self.taken - n)

    def done(self, created_n: int) -> None:
        created(self.ctx, created_n)


def check_connections(ctx: TenantContext, current: int) -> None:
    """Raise 402 plan_limit if one more connection would pass the plan's limit."""
    plan = plan_of(ctx)
    cap = plan.limit("connections")
    if cap is not None and current + 1 > cap:
        plan = plan_of(ctx, fresh=True)  # not refused by a plan cached from before an upgrade
        cap = plan.limit("connections")
    if cap is not None and current + 1 > cap:
        raise refusal("connections", current, plan, current + 1)


def require_feature(ctx: TenantContext, feature: plans.Feature) -> None:
    """Raise 402 ``feature_not_in_plan`` unless the tenant's plan includes ``feature``
    (journeys, hybrid sync: for the issues that add them)."""
    plan = plan_of(ctx)
    if plan.allows(feature):
        return
    plan = plan_of(ctx, fresh=True)  # not refused by a plan cached from before an upgrade
    if plan.allows(feature):
        return
    up = next((p for p in plans.sold() if p.allows(feature)), None)
    raise PaymentRequired(
        f"the {plan.name} plan does not include {feature}" + (f"; the {up.name} plan does" if up else ""),
        code="feature_not_in_plan",
        feature=feature,
        plan=plan.name,
        upgrade_to=up.name if up else None,
    )
