"""Metering to the Stripe double's Billing Meter (crm/billing/meter.py): one event per
tenant and hour with a deterministic identifier, never counted twice when the schedule
runs twice, when a run dies after sending, or when the next hour finishes a dead run."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crm.billing import meter, service, usage
from functions.billing import run_meter as run_schedule
from tests.stripe_helpers import stripe_client

HOUR = datetime(2026, 12, 1, 5, 30, tzinfo=UTC)
NEXT = datetime(2026, 12, 1, 6, 10, tzinfo=UTC)


def _billed(tenant, stripe_double, plan: str) -> str:
    from crm.storage import BillingItem

    customer = stripe_client(stripe_double.url).v1.customers.create(params={"email": f"{tenant.id}@example.com"})
    BillingItem(tenant.ctx.prefix, "BILLING", plan=plan, status="active", stripe_customer=customer.id,
                period_start="2026-12-01T00:00:00Z", gsi1pk=service.BILLED, gsi1sk=tenant.id).save()
    return customer.id


def _events(stripe_double, tenant) -> list[dict]:
    return [e for e in stripe_double.meter_events() if e["identifier"].startswith(f"{tenant.id}:")]


def test_each_hour_is_reported_once_with_the_growth(stripe_double, tenant, other_tenant) -> None:
    customer = _billed(tenant, stripe_double, "scale")
    _billed(other_tenant, stripe_double, "starter")  # not metered: never reported
    usage.update(tenant.id, {"customers": 2345})  # the live count the dispatcher keeps

    first = run_schedule(HOUR)
    assert first["reported"] == 1 and first["failed"] == 0
    assert run_schedule(HOUR)["reported"] == 0  # the same hour again: nothing new
    [event] = _events(stripe_double, tenant)
    assert event["identifier"] == f"{tenant.id}:rapport_customers:2026-12-01T05"
    assert event["event_name"] == "rapport_customers"
    assert event["payload"] == {"stripe_customer_id": customer, "value": "2345"}
    assert _events(stripe_double, other_tenant) == []

    usage.update(tenant.id, {"customers": 100})
    run_schedule(NEXT)
    run_schedule(NEXT)
    values = [(e["identifier"].rsplit(":", 1)[1], e["payload"]["value"]) for e in _events(stripe_double, tenant)]
    assert values == [("2026-12-01T05", "2345"), ("2026-12-01T06", "100")]  # sums to the peak, 2,445
    shown = tenant.http.get("/v1/billing").json()["metering"]  # what the tenant sees of it
    assert shown == {"meter": "rapport_customers", "reported_through": "2026-12-01T06",
                     "billing_period": shown["billing_period"], "reported_in_period": 2445, "pending": None}
    assert other_tenant.http.get("/v1/billing").json()["metering"] is None  # starter is not metered


@pytest.mark.parametrize("retry_at", [HOUR, NEXT], ids=["same hour", "next hour"])
def test_a_run_that_dies_after_sending_is_not_counted_twice(stripe_double, tenant, monkeypatch, retry_at) -> None:
    _billed(tenant, stripe_double, "scale")
    usage.update(tenant.id, {"customers": 700})
    real = meter._set

    def dies_booking(tenant_id, sets, **kw):
        if "metered_through" in sets:
            raise ConnectionError("the function timed out after the send")
        return real(tenant_id, sets, **kw)

    monkeypatch.setattr(meter, "_set", dies_booking)
    assert run_schedule(HOUR)["failed"] >= 1  # (the module's earlier tenants too)
    assert len(_events(stripe_double, tenant)) == 1  # it went out
    monkeypatch.setattr(meter, "_set", real)
    usage.update(tenant.id, {"customers": 50})  # growth meanwhile: belongs to the later hour
    run_schedule(retry_at)
    run_schedule(retry_at)
    events = _events(stripe_double, tenant)
    assert sum(int(e["payload"]["value"]) for e in events) == (700 if retry_at is HOUR else 750)
    assert len({e["identifier"] for e in events}) == len(events)
    assert usage.read(tenant.id, consistent=True)["metered_total"] == sum(int(e["payload"]["value"]) for e in events)
