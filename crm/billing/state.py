"""A tenant's billing state from what Stripe says now (pure: no I/O, unit tested).

Webhook events are only hints: the handler fetches the tenant's subscriptions and active
entitlements from Stripe and :func:`derive` turns them into the tenant's state. So the
event bodies' order never matters, only the order of the fetches, and :func:`newer`
keeps a fetch from overwriting a later one: ``seen`` is when the fetch began (ms), taken
before the request, so a state stored from a later fetch is never replaced by an earlier
one (the write is conditional on it, crm/billing/service.py).

Two live subscriptions (two checkouts that both got paid): the older one is the tenant's,
the newer is returned in ``cancel`` (the caller cancels it at Stripe). A deleted
subscription stays in Stripe's list (status ``canceled``): with no live one left the
latest ended one stands, on ``free``. A subscription whose metadata names another tenant
is never the tenant's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from common import clock
from crm.billing import plans

GRACE = timedelta(days=7)  # past_due: writes keep working this long after the payment was due
# statuses in which the subscription still exists and bills (one per tenant; checkout answers 409)
LIVE = frozenset({"trialing", "active", "past_due", "unpaid", "paused", "incomplete"})
PAYING = frozenset({"trialing", "active", "past_due", "unpaid"})  # the plan's limits apply
OVERDUE = frozenset({"past_due", "unpaid"})


@dataclass(frozen=True)
class State:
    """What crm/storage.BillingItem keeps of Stripe's state (the attributes a refresh sets)."""

    plan: str = plans.FREE
    status: str = "free"  # free (never subscribed) or the subscription's status
    subscription: str | None = None
    subscription_created: int | None = None
    period_start: str | None = None
    period_end: str | None = None
    past_due_since: str | None = None
    grace_until: str | None = None
    cancel_at_period_end: bool = False
    features: tuple[str, ...] | None = None  # active entitlements' lookup keys (None: never fetched)
    seen: int = 0  # when the fetch this state comes from began (ms since the epoch)


@dataclass(frozen=True)
class Outcome:
    state: State
    cancel: tuple[str, ...] = field(default=())  # newer live subscriptions to cancel at Stripe


def _iso(ts: int | None) -> str | None:
    """Stripe's Unix seconds as Rapport's timestamps (common/clock.py: they sort as strings)."""
    return None if ts is None else clock.iso(datetime.fromtimestamp(int(ts), UTC))


def _items(sub: dict[str, Any]) -> list[dict[str, Any]]:
    return list(((sub.get("items") or {}).get("data")) or [])


def plan_of(sub: dict[str, Any]) -> plans.Plan | None:
    """The catalogue's plan whose price (by lookup_key) the subscription is for."""
    for item in _items(sub):
        plan = plans.by_lookup_key((item.get("price") or {}).get("lookup_key"))
        if plan is not None:
            return plan
    return None


def _period(sub: dict[str, Any]) -> tuple[int | None, int | None]:
    """Basil: periods live on the items (the earliest start, the latest end)."""
    starts = [i["current_period_start"] for i in _items(sub) if i.get("current_period_start") is not None]
    ends = [i["current_period_end"] for i in _items(sub) if i.get("current_period_end") is not None]
    return (min(starts) if starts else None), (max(ends) if ends else None)


def belongs(sub: dict[str, Any], tenant_id: str, customer_id: str) -> bool:
    """The tenant's customer's, and not naming another tenant in its metadata."""
    named = (sub.get("metadata") or {}).get("tenant_id")
    return sub.get("customer") == customer_id and named in (None, "", tenant_id)


def _order(sub: dict[str, Any], held: str | None = None) -> tuple[int, int, str]:
    """Oldest first. Stripe's ``created`` is in whole seconds, so two checkouts paid in the
    same second tie: the one the tenant already holds counts as the older (then the id, so
    every refresh picks the same one)."""
    return int(sub.get("created") or 0), 0 if held and sub.get("id") == held else 1, str(sub.get("id"))


def choose(subs: list[dict[str, Any]], held: str | None = None) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """The tenant's subscription among its customer's: the oldest live one (the newer live
    ones are to be cancelled), else the latest ended one, else none. ``held``: the
    subscription the tenant has now (it wins a tie)."""
    live = sorted((s for s in subs if s.get("status") in LIVE), key=lambda s: _order(s, held))
    if live:
        return live[0], tuple(s["id"] for s in live[1:])
    ended = sorted(subs, key=_order)
    return (ended[-1] if ended else None), ()


def derive(
    tenant_id: str,
    customer_id: str,
    subscriptions: list[dict[str, Any]],
    entitlements: list[dict[str, Any]] | None,
    *,
    seen: int,
    stored: State | None = None,
) -> Outcome:
    """The tenant's state from its customer's subscriptions (all statuses) and active
    entitlements, as fetched at ``seen``."""
    stored = stored or State()
    mine = [s for s in subscriptions if belongs(s, tenant_id, customer_id)]
    sub, cancel = choose(mine, stored.subscription)
    features = tuple(sorted({e["lookup_key"] for e in (entitlements or []) if e.get("lookup_key")}))
    features_or_none = features if entitlements is not None else stored.features
    if sub is None:
        # nothing at Stripe: never subscribed (free), or every subscription is gone (canceled)
        status = "canceled" if stored.subscription else "free"
        return Outcome(
            replace(
                State(),
                status=status,
                subscription=stored.subscription,
                subscription_created=stored.subscription_created,
                features=features_or_none,
                seen=seen,
            )
        )
    status = str(sub.get("status"))
    if status == "incomplete_expired":
        status = "canceled"
    plan = plan_of(sub)
    name = plan.name if plan is not None and status in PAYING else plans.FREE
    start, end = _period(sub)
    since = grace = None
    if status in OVERDUE and start is not None:
        since = _iso(start)  # the renewal whose invoice is unpaid
        grace = _iso(int(start) + int(GRACE.total_seconds()))
    return Outcome(
        State(
            plan=name,
            status=status,
            subscription=str(sub["id"]),
            subscription_created=int(sub["created"]) if sub.get("created") is not None else None,
            period_start=_iso(start),
            period_end=_iso(end),
            past_due_since=since,
            grace_until=grace,
            cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
            features=features_or_none,
            seen=seen,
        ),
        cancel,
    )


def newer(stored: State | None, fetched: State) -> bool:
    """Whether ``fetched`` may replace ``stored``: never an earlier fetch over a later one."""
    return stored is None or fetched.seen > stored.seen


def apply(stored: State | None, fetched: State) -> State:
    """What is stored after a write of ``fetched`` (the conditional write's effect)."""
    return fetched if newer(stored, fetched) else stored  # type: ignore[return-value]


def is_live(status: str | None) -> bool:
    return status in LIVE
