"""The daily reconcile: what Stripe says against what each paying tenant has stored.

A missed or failed webhook must not leave a paying tenant locked out (or a cancelled one
on a paid plan): every tenant with a Stripe customer (gsi1 ``BILLED``: one Query, never a
Scan) is refreshed from Stripe (its subscriptions and active entitlements, one write if
the state changed), and Stripe's events of the last 30 days that were never delivered
(``delivery_success=false``) are applied as if they had just arrived (de-duplicated by id,
so a later delivery is a duplicate). ``rapport billing reconcile`` and the schedule
(functions/billing.py) run it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from crm.billing import service, state, stripe_api, webhooks

log = logging.getLogger("rapport.billing")
LOOKBACK_DAYS = 30  # Stripe keeps events this long
COMPARED = (
    "plan",
    "status",
    "subscription",
    "period_start",
    "period_end",
    "grace_until",
    "cancel_at_period_end",
    "features",
)


@dataclass
class Report:
    tenants: int = 0
    repaired: list[dict[str, Any]] = field(default_factory=list)  # {tenant, changes: {field: [before, after]}}
    events_applied: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)  # duplicate subscriptions cancelled
    failed: list[dict[str, str]] = field(default_factory=list)
    stopped_early: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _changes(before: state.State, after: state.State) -> dict[str, list[Any]]:
    return {f: [getattr(before, f), getattr(after, f)] for f in COMPARED if getattr(before, f) != getattr(after, f)}


def undelivered(now: float | None = None) -> list[dict[str, Any]]:
    """Handled events of the last 30 days Stripe could not deliver, oldest first."""
    since = int((now or time.time()) - LOOKBACK_DAYS * 86400)
    page = stripe_api.client().v1.events.list(
        {"delivery_success": False, "created": {"gte": since}, "limit": 100, "types": sorted(webhooks.HANDLED)}
    )
    events = [e.to_dict() for e in page.auto_paging_iter()]
    return sorted(events, key=lambda e: int(e.get("created") or 0))


def run(*, lambda_context: Any = None, reserve_ms: int = 20_000) -> Report:
    """Apply the undelivered events, then refresh every billed tenant; what changed is reported."""
    import stripe

    report = Report()
    billed = service.billed_tenants()  # before: what each tenant had (the events may repair it)
    before = {item.gsi1sk: service.as_state(item) for item in billed}
    for event in undelivered():
        try:
            if webhooks.apply_event(event) == "applied":
                report.events_applied.append(str(event["id"]))
        except stripe.StripeError as exc:
            report.failed.append({"event": str(event.get("id")), "error": str(exc)})
    for item in billed:
        if lambda_context is not None and lambda_context.get_remaining_time_in_millis() < reserve_ms:
            report.stopped_early = True
            break
        tenant_id = item.gsi1sk
        report.tenants += 1
        try:
            after, cancelled = service.refresh(tenant_id, item.stripe_customer)
        except stripe.StripeError as exc:
            report.failed.append({"tenant": tenant_id, "error": str(exc)})
            continue
        report.cancelled += list(cancelled)
        changes = _changes(before[tenant_id], after)
        if changes:
            log.warning("billing drift repaired", extra={"tenant": tenant_id, "changes": changes})
            report.repaired.append({"tenant": tenant_id, "changes": changes})
    return report
