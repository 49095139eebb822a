"""The billing schedules of app.py: the daily reconcile (crm/billing/reconcile.py) and the
hourly metering (crm/billing/meter.py: deterministic identifiers, so a second run in the
same hour or a retried send is never counted twice). A deployment without Stripe settings
has nothing to reconcile or meter."""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("rapport.billing")


def run_reconcile(lambda_context: Any = None) -> dict[str, Any]:
    """Refresh every tenant with a Stripe customer and apply Stripe's undelivered events;
    a deployment without Stripe settings has nothing to reconcile."""
    from crm.billing import reconcile, stripe_api

    if not stripe_api.configured():
        return {"skipped": "billing is not configured (RAPPORT_STRIPE_API_KEY)"}
    report = reconcile.run(lambda_context=lambda_context).as_dict()
    log.info("billing reconcile", extra={"tenants": report["tenants"], "repaired": len(report["repaired"]),
                                          "events_applied": len(report["events_applied"])})
    return report


def run_meter(now: Any = None) -> dict[str, int]:
    """Each tenant on a metered plan reports its customers to the plan's Stripe Billing Meter."""
    from crm import clock
    from crm.billing import meter, stripe_api

    if not stripe_api.configured():
        return {"tenants": 0, "reported": 0, "skipped": 0, "failed": 0}
    return meter.run(clock.parse(now) if isinstance(now, str) else now)
