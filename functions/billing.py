"""The daily billing reconcile (crm/billing/reconcile.py), run by app.py's schedule."""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("rapport.billing")


def run_reconcile(lambda_context: Any = None) -> dict[str, Any]:
    """Refresh every tenant with a Stripe customer and apply Stripe's undelivered events;
    a deployment without Stripe settings has nothing to reconcile."""
    from crm.billing import reconcile

    if not reconcile.configured():
        return {"skipped": "billing is not configured (RAPPORT_STRIPE_API_KEY)"}
    report = reconcile.run(lambda_context=lambda_context).as_dict()
    log.info("billing reconcile", extra={"tenants": report["tenants"], "repaired": len(report["repaired"]),
                                          "events_applied": len(report["events_applied"])})
    return report
