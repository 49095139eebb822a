"""Usage counters (crm/billing/usage.py): the live customer count and the month's
creations kept by the stream dispatcher, emails through usage.add, connector records per
synced page; past due beyond the grace period: writes 402, reads work."""
from __future__ import annotations

from datetime import timedelta

from crm import clock
from crm.billing import usage
from tests.plan_helpers import set_plan


def test_the_dispatcher_keeps_the_live_count_and_the_months_creations(tenant, other_tenant, event_pipeline) -> None:
    ids = [tenant.create_customer(email=f"u{i}@example.com")["id"] for i in range(4)]
    other_tenant.create_customer(email="o@example.com")
    assert tenant.http.delete(f"/v1/customers/{ids[0]}").status_code in (200, 202, 204)
    merged = tenant.http.post(f"/v1/customers/{ids[1]}/merge", json={"other_id": ids[2]})
    assert merged.status_code == 200, merged.text
    batch = tenant.http.post("/v1/customers/batch", json={"records": [{"email": "b1@example.com"},
                                                                      {"email": "u3@example.com"}]})
    assert batch.json()["created"] == 1
    assert event_pipeline.wait_idle()
    got = usage.summary(tenant.ctx)
    # 5 created; one erased and one merged away: 3 live
    assert (got["customers"], got["customers_created"]) == (3, 5)
    assert got["period"] == clock.now().strftime("%Y-%m")
    assert usage.summary(other_tenant.ctx)["customers"] == 1


def test_emails_sent_are_added_to_the_month(tenant) -> None:
    usage.add(tenant.ctx, "emails_sent", 3)
    usage.add(tenant.ctx, "emails_sent", 2)
    got = usage.summary(tenant.ctx)
    assert got["emails_sent"] == 5 and got["api_calls"] >= 0 and got["connections"] == 0


def test_past_due_writes_get_402_after_the_grace_period_reads_keep_working(tenant) -> None:
    soon = clock.iso(clock.now() + timedelta(days=3))
    set_plan(tenant, "starter", status="past_due", grace_until=soon)
    assert tenant.http.post("/v1/customers", json={"email": "in-grace@example.com"}).status_code == 201

    set_plan(tenant, "starter", status="past_due", grace_until=clock.iso(clock.now() - timedelta(seconds=1)))
    r = tenant.http.post("/v1/customers", json={"email": "late@example.com"})
    assert r.status_code == 402
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "payment_required" and r.json()["plan"] == "starter"
    assert "RateLimit-Limit" in r.headers
    listed = tenant.http.get("/v1/customers")
    assert listed.status_code == 200
    assert [c["email"] for c in listed.json()["data"]] == ["in-grace@example.com"]

    set_plan(tenant, "starter", status="active")  # the invoice is paid
    assert tenant.http.post("/v1/customers", json={"email": "late@example.com"}).status_code == 201


def test_a_paid_invoice_lifts_the_402_at_once_although_the_key_is_cached(tenant, monkeypatch) -> None:
    """The key's lookup (with the plan state) is cached up to 60 s on non-admin routes: the
    402 path reads the state afresh, so paying is never followed by a minute of refusals."""
    import httpx

    from crm import apikeys

    monkeypatch.setenv("RAPPORT_KEY_CACHE_SECONDS", "60")
    apikeys.clear_cache()
    set_plan(tenant, "starter", status="past_due", grace_until=clock.iso(clock.now() - timedelta(seconds=1)))
    with httpx.Client(base_url=str(tenant.http.base_url), timeout=30,
                      headers={"Authorization": f"Bearer {tenant.key_with('customers:write')}"}) as writer:
        assert writer.post("/v1/customers", json={"email": "overdue@example.com"}).status_code == 402
        set_plan(tenant, "starter", status="active")  # the invoice is paid (the webhook wrote it)
        r = writer.post("/v1/customers", json={"email": "paid@example.com"})
        assert r.status_code == 201, r.text
