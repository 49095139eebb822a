"""Plan limits over HTTP (crm/billing/limits.py): the free plan's 500 customers (single
create, batch upsert per record, a connector sync per record) and its one connection;
402 plan_limit names the limit, the usage, the plan and the plan that allows more. A
downgrade deletes nothing: what is above the limit stays readable and updatable."""
from __future__ import annotations

import pytest

from tests.connector_helpers import wait_run
from tests.fakes.acme import AcmeServer
from tests.plan_helpers import set_plan

FREE_CUSTOMERS = 500
# 500 customers pass through the dispatcher and the segments subscriber: on a loaded
# 2-core machine that can take more than wait_idle's default 30 s
IDLE = 120


def _fill(tenant, n: int, start: int = 0) -> None:
    for first in range(start, start + n, 100):
        records = [{"email": f"f{i}@example.com"} for i in range(first, min(first + 100, start + n))]
        r = tenant.http.post("/v1/customers/batch", json={"records": records})
        assert r.status_code == 200 and r.json()["created"] == len(records), r.text


def _counted(tenant, n: int) -> None:
    """``n`` more live customers on the tenant's usage item, as the stream dispatcher
    counts them (crm/billing/usage.py; its counting is tests/integration/test_usage.py's).
    The first test below fills 500 real customers through the pipeline, end to end; the
    others start from the count, which is all the limit reads."""
    from crm.billing import limits, usage

    usage.update(tenant.id, {"customers": n})
    limits.clear_cache()  # the served API's count, cached up to 10 s far from the limit


def _is_plan_limit(body: dict, *, limit: str, usage: int, plan: str, upgrade_to: str | None) -> None:
    assert body["code"] == "plan_limit", body
    assert (body["limit"], body["usage"], body["plan"], body["upgrade_to"]) == (limit, usage, plan, upgrade_to), body


def test_creates_past_the_free_plan_get_402_per_request_and_per_record(tenant, event_pipeline) -> None:
    _fill(tenant, FREE_CUSTOMERS - 1)
    assert event_pipeline.wait_idle(IDLE)
    assert tenant.http.post("/v1/customers", json={"email": "last@example.com"}).status_code == 201
    assert event_pipeline.wait_idle(IDLE)

    r = tenant.http.post("/v1/customers", json={"email": "one-too-many@example.com"})
    assert r.status_code == 402, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    _is_plan_limit(r.json(), limit="customers", usage=FREE_CUSTOMERS, plan="free", upgrade_to="starter")
    assert r.json()["allowed"] == FREE_CUSTOMERS

    # a batch: the update of an existing customer goes through, each new one gets a 402
    r = tenant.http.post("/v1/customers/batch", json={"records": [
        {"email": "f1@example.com", "locale": "fr-FR"}, {"email": "new1@example.com"}, {"email": "new2@example.com"}]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["updated", "error", "error"]
    for x in results[1:]:
        _is_plan_limit(x["error"], limit="customers", usage=FREE_CUSTOMERS, plan="free", upgrade_to="starter")
    assert results[1]["error"]["field"] == "records[1]"
    lookup = tenant.http.get("/v1/customers/lookup", params={"email": "new1@example.com"})
    assert lookup.json()["data"] == []


def test_a_downgrade_keeps_everything_readable_and_updatable(tenant, event_pipeline) -> None:
    set_plan(tenant, "starter")
    _fill(tenant, 3)
    assert event_pipeline.wait_idle(IDLE)
    _counted(tenant, FREE_CUSTOMERS - 1)  # 502 live customers in all
    set_plan(tenant, "free", status="canceled")  # the subscription ended: back to free
    listed = tenant.http.get("/v1/customers", params={"limit": 100})
    assert listed.status_code == 200 and len(listed.json()["data"]) == 3
    some = listed.json()["data"][0]
    patched = tenant.http.patch(f"/v1/customers/{some['id']}", json={"locale": "de-DE"})
    assert patched.status_code == 200, patched.text
    r = tenant.http.post("/v1/customers", json={"email": "after-downgrade@example.com"})
    assert r.status_code == 402
    _is_plan_limit(r.json(), limit="customers", usage=FREE_CUSTOMERS + 2, plan="free", upgrade_to="starter")
    set_plan(tenant, "starter")
    assert tenant.http.post("/v1/customers", json={"email": "after-downgrade@example.com"}).status_code == 201


@pytest.fixture()
def acme():
    with AcmeServer() as server:
        for i in range(30):
            server.put(f"c{i:04d}", f"2026-01-01T00:00:{i:02d}Z", email=f"p{i}@acme-example.com",
                       first=f"P{i}", last="Acme", labels=["acme"])
        yield server


def _connect(tenant, acme):
    return tenant.http.post("/v1/connections", json={
        "connector": "acme", "name": "Acme contacts", "config": {"base_url": acme.url, "api_token": acme.token}})


def test_a_second_connection_on_free_gets_402(tenant, acme) -> None:
    assert _connect(tenant, acme).status_code == 201
    r = _connect(tenant, acme)
    assert r.status_code == 402, r.text
    _is_plan_limit(r.json(), limit="connections", usage=1, plan="free", upgrade_to="starter")
    assert len(tenant.http.get("/v1/connections").json()["data"]) == 1
    from crm.billing import usage

    assert usage.summary(tenant.ctx)["connections"] == 1
    set_plan(tenant, "starter")
    assert _connect(tenant, acme).status_code == 201


def test_a_sync_past_the_limit_rejects_each_new_customer_and_succeeds(tenant, acme, event_pipeline) -> None:
    _counted(tenant, FREE_CUSTOMERS - 10)
    conn = _connect(tenant, acme).json()
    r = tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={"mode": "backfill"})
    assert r.status_code == 202, r.text
    run = wait_run(tenant, conn["id"], r.json()["id"])
    assert run["status"] == "succeeded", run
    counts = run["streams"]["customers"]
    assert (counts["read"], counts["created"], counts["rejected"]) == (30, 10, 20), counts
    assert run["rejected_total"] == 20
    assert all("free plan allows 500 customers" in x["reason"] for x in run["rejected"]), run["rejected"][:2]
    assert event_pipeline.wait_idle(IDLE)
    from crm.billing import usage

    got = usage.summary(tenant.ctx)
    assert got["customers"] == FREE_CUSTOMERS and got["connector_records"] == 30



def test_an_upgrade_is_honoured_at_once_although_the_key_is_cached(tenant, monkeypatch) -> None:
    """A key's lookup (with the plan) is cached up to 60 s on non-admin routes; a tenant who
    has just paid must not be refused by the cached free plan: the refusal path reads the
    plan afresh."""
    import httpx

    from crm import apikeys

    _counted(tenant, FREE_CUSTOMERS)
    monkeypatch.setenv("RAPPORT_KEY_CACHE_SECONDS", "60")
    apikeys.clear_cache()
    writer = httpx.Client(base_url=str(tenant.http.base_url), timeout=30,
                          headers={"Authorization": f"Bearer {tenant.key_with('customers:write')}"})
    with writer:
        r = writer.post("/v1/customers", json={"email": "while-free@example.com"})
        assert r.status_code == 402, r.text  # the key (and its plan, free) is now cached
        set_plan(tenant, "starter")  # as the webhook would
        r = writer.post("/v1/customers", json={"email": "just-paid@example.com"})
        assert r.status_code == 201, r.text
