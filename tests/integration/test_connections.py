"""Connections over HTTP: install a connector, sealed secrets, check, sync through the
queue consumer, runs, and the partner connector that arrives through its entry point."""
from __future__ import annotations

import pytest

from tests.connector_helpers import wait_run
from tests.fakes.acme import AcmeServer


@pytest.fixture()
def acme():
    with AcmeServer() as server:
        for i in range(250):
            server.put(f"c{i:04d}", f"2026-01-01T00:00:{i % 60:02d}Z", email=f"p{i}@acme-example.com",
                       first=f"P{i}", last="Acme", labels=["acme"])
        yield server


def _connect(tenant, acme, **extra) -> dict:
    r = tenant.http.post("/v1/connections", json={
        "connector": "acme", "name": "Acme contacts",
        "config": {"base_url": acme.url, "api_token": acme.token}, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def test_the_partner_connector_is_listed_with_its_schema(tenant):
    r = tenant.http.get("/v1/connectors")
    assert r.status_code == 200
    acme = {c["name"]: c for c in r.json()["data"]}["acme"]
    assert acme["version"] == "0.3.0" and acme["streams"] == ["customers"]
    props = acme["config_schema"]["properties"]
    assert props["api_token"]["x-rapport-secret"] is True and props["api_token"]["writeOnly"] is True
    assert "api_token" in acme["config_schema"]["required"]


def test_secrets_are_sealed_with_kms_and_never_returned(tenant, acme, raw_table):
    conn = _connect(tenant, acme)
    assert conn["config"] == {"base_url": acme.url + "/"} and conn["secrets_set"] == ["api_token"]
    assert "acme-token" not in str(tenant.http.get(f"/v1/connections/{conn['id']}").json())
    item = raw_table.get_item(Key={"pk": f"T#{tenant.id}#CONN#{conn['id']}", "sk": "CONN"})["Item"]
    assert acme.token not in str(item)
    # the sealed blob is bound to its tenant and connection (KMS encryption context)
    import json as _json

    from connectors import sealing

    sealed = item["sealed"] if isinstance(item["sealed"], dict) else _json.loads(item["sealed"])
    assert set(sealed) == {"format", "blob"}  # one KMS Encrypt: no data key beside it
    assert sealing.unseal(tenant.id, conn["id"], sealed) == {"api_token": acme.token}
    with pytest.raises(Exception):
        sealing.unseal("t000000000000", conn["id"], sealed)


def test_check_tells_whether_the_credentials_work(tenant, acme):
    conn = _connect(tenant, acme)
    assert tenant.http.post(f"/v1/connections/{conn['id']}/check").json()["ok"] is True
    r = tenant.http.patch(f"/v1/connections/{conn['id']}", json={"config": {"api_token": "wrong"}})
    assert r.status_code == 200 and r.json()["version"] == 2
    r = tenant.http.post(f"/v1/connections/{conn['id']}/check")
    assert r.status_code == 422 and r.json()["code"] == "check_failed"
    result = r.json()
    assert result["ok"] is False and "401" in result["detail"] and result["vendor_status"] == 401


@pytest.mark.parametrize("body, field", [
    ({"connector": "nope", "name": "x", "config": {}}, "connector"),
    ({"connector": "acme", "name": "x", "config": {"base_url": "not a url", "api_token": "t"}}, "config.base_url"),
    ({"connector": "acme", "name": "x", "config": {"base_url": "http://x"}}, "config.api_token"),
    ({"connector": "acme", "name": "x", "config": {"base_url": "http://x", "api_token": "t", "extra": 1}}, "config.extra"),
    ({"connector": "acme", "name": "", "config": {}}, "name"),
    ({"connector": "acme", "name": "x", "config": {}, "schedule_minutes": 1}, "schedule_minutes"),
])
def test_bad_connections_get_422_naming_the_field_and_write_nothing(tenant, body, field, raw_table):
    from tests.conftest import partition_items

    before = partition_items(raw_table, tenant)
    r = tenant.http.post("/v1/connections", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    fields = [problem.get("field")] + [e["field"] for e in problem.get("errors", [])]
    assert any(f and f.startswith(field) for f in fields), problem
    assert partition_items(raw_table, tenant) == before


def test_connections_need_the_admin_scope_and_stay_in_their_tenant(tenant, other_tenant, acme, api_url):
    import httpx

    conn = _connect(tenant, acme)
    reader = tenant.key_with("customers:write")
    r = httpx.get(f"{api_url}/v1/connections/{conn['id']}", headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403
    for method, path in [("GET", ""), ("PATCH", ""), ("POST", "/check"), ("POST", "/sync"), ("GET", "/runs"),
                         ("DELETE", "")]:
        r = other_tenant.http.request(method, f"/v1/connections/{conn['id']}{path}",
                                      json={} if method in ("PATCH", "POST") else None)
        assert r.status_code == 404, (method, path, r.text)
    assert other_tenant.http.get("/v1/connections").json()["data"] == []
    assert [c["id"] for c in tenant.http.get("/v1/connections").json()["data"]] == [conn["id"]]


def test_a_sync_runs_through_the_queue_and_reports_counts(tenant, acme, event_pipeline):
    conn = _connect(tenant, acme)
    acme.put("c9999", "2026-01-01T00:00:00Z", email="not-an-email")  # rejected, with its reason
    acme.throttle_next, acme.retry_after = 2, "1"  # throttled twice: slept through
    r = tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={"mode": "backfill"})
    assert r.status_code == 202, r.text
    run = wait_run(tenant, conn["id"], r.json()["id"])
    assert run["status"] == "succeeded", run
    counts = run["streams"]["customers"]
    assert (counts["read"], counts["created"], counts["rejected"], counts["pages"]) == (251, 250, 1, 3)
    [rejected] = run["rejected"]
    assert rejected["external_id"] == "c9999" and rejected["errors"][0]["field"] == "email"
    assert run["rejected_total"] == 1
    assert run["duration_ms"] >= 0 and run["finished_at"]
    found = tenant.http.get("/v1/customers/lookup", params={"source": "acme", "external_id": "c0007"}).json()
    assert [c["email"] for c in found["data"]] == ["p7@acme-example.com"]
    # an incremental run after one vendor-side change touches exactly that record
    acme.put("c0042", "2026-01-02T00:00:00Z", email="p42@acme-example.com", first="Renamed", last="Acme", labels=["acme"])
    r = tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={"mode": "incremental"})
    run = wait_run(tenant, conn["id"], r.json()["id"])
    counts = run["streams"]["customers"]
    assert (counts["updated"], counts["created"]) == (1, 0), counts
    runs = tenant.http.get(f"/v1/connections/{conn['id']}/runs").json()["data"]
    assert [x["mode"] for x in runs] == ["incremental", "backfill"]


def test_a_second_sync_while_one_is_queued_gets_409(tenant, acme):
    conn = _connect(tenant, acme)
    first = tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={})
    assert first.status_code == 202
    second = tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={})
    assert second.status_code == 409 and second.json()["run_id"] == first.json()["id"]


def test_a_record_held_back_by_an_identity_conflict_names_the_conflict(tenant, event_pipeline):
    """A run counts its conflicts and each such record names the conflict to review
    (GET /v1/identity/conflicts, resolved with POST …/{id}/resolve: docs/connectors.md)."""
    with AcmeServer() as acme:
        holder = tenant.create_customer(email="held@acme-example.com", external_ids={"acme": "someone-else"})
        acme.put("c-held", "2026-01-01T00:00:00Z", email="held@acme-example.com", first="Held", last="Back", labels=[])
        acme.put("c-free", "2026-01-01T00:00:01Z", email="free@acme-example.com", first="Free", last="One", labels=[])
        conn = _connect(tenant, acme)
        r = tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={"mode": "backfill"})
        run = wait_run(tenant, conn["id"], r.json()["id"])
    assert run["status"] == "succeeded", run
    counts = run["streams"]["customers"]
    assert (counts["conflicts"], counts["created"]) == (1, 1), counts
    [held] = [x for x in run["rejected"] if x["external_id"] == "c-held"]
    assert held["conflict_id"] and held["conflict_id"] in held["reason"]
    listed = {c["id"]: c for c in tenant.http.get("/v1/identity/conflicts").json()["data"]}
    assert held["conflict_id"] in listed and holder["id"] in str(listed[held["conflict_id"]])
