"""Put a test tenant on a plan (writes its BillingItem, as the Stripe webhooks would)."""
from __future__ import annotations


def set_plan(tenant, plan: str, *, status: str = "active", grace_until: str | None = None) -> None:
    """``tenant``: a tests.conftest.Tenant (or anything with ``.ctx``). The API reads the
    plan with the key (RAPPORT_KEY_CACHE_SECONDS=0 in the tests: at once)."""
    from crm import clock
    from crm.storage import BillingItem

    BillingItem(tenant.ctx.prefix, "BILLING", plan=plan, status=status, grace_until=grace_until,
                updated_at=clock.now_iso()).save()
