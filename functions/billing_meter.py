"""The hourly metering schedule: each tenant on a metered plan reports its customers to
the plan's Stripe Billing Meter (crm/billing/meter.py: deterministic identifiers, so a
second run in the same hour or a retried send is never counted twice)."""
from __future__ import annotations

from typing import Any


def run_schedule(now: Any = None) -> dict[str, int]:
    from crm import clock
    from crm.billing import meter, stripe_api

    if not stripe_api.configured():  # a deployment without Stripe has nothing to meter
        return {"tenants": 0, "reported": 0, "skipped": 0, "failed": 0}
    return meter.run(clock.parse(now) if isinstance(now, str) else now)
