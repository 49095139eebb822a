"""The sync schedule: one incremental run per due connection, fanned out through the sync
queue (functions/sync.py run_schedule, which app.sync_schedule calls every 5 minutes).

The module starts from an empty emulator (tests/conftest.py), so the schedule sees only
the connections made here, and each run's counts are asserted exactly."""
from __future__ import annotations

import time
from datetime import timedelta

from crm import clock
from tests.fakes.acme import AcmeServer
from tests.plan_helpers import set_plan

NOTHING = {"queued": 0, "skipped": 0, "stalled": 0}


def _connection(tenant, acme, **extra) -> str:
    r = tenant.http.post("/v1/connections", json={
        "connector": "acme", "name": "scheduled", "config": {"base_url": acme.url, "api_token": acme.token},
        **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _runs(tenant, cid: str) -> list[dict]:
    return tenant.http.get(f"/v1/connections/{cid}/runs").json()["data"]


def _at(minutes: int) -> str:
    return clock.iso(clock.now() + timedelta(minutes=minutes))


def test_due_connections_get_one_scheduled_run_each(tenant, other_tenant, event_pipeline):
    set_plan(tenant, "starter")  # more connections (or customers) than free allows
    from functions.sync import run_schedule

    with AcmeServer() as acme:
        acme.put("s1", "2026-01-01T00:00:00Z", email="sched-1@example.com")
        every_15 = _connection(tenant, acme, schedule_minutes=15)
        hourly = _connection(other_tenant, acme, schedule_minutes=60)
        manual = _connection(tenant, acme)
        paused = _connection(tenant, acme, schedule_minutes=15)
        assert tenant.http.patch(f"/v1/connections/{paused}", json={"status": "paused"}).status_code == 200

        assert run_schedule(now=_at(5)) == NOTHING  # nothing of these is due yet
        assert _runs(tenant, every_15) == []
        assert run_schedule(now=_at(16)) == {**NOTHING, "queued": 1}  # every_15 only
        [run] = _runs(tenant, every_15)
        assert run["trigger"] == "schedule" and run["mode"] == "incremental"
        assert _runs(other_tenant, hourly) == [] and _runs(tenant, manual) == [] and _runs(tenant, paused) == []
        deadline = time.monotonic() + 60
        while _runs(tenant, every_15)[0]["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the scheduled run was not processed"
            time.sleep(0.2)
        assert _runs(tenant, every_15)[0]["status"] == "succeeded"
        found = tenant.http.get("/v1/customers/lookup", params={"email": "sched-1@example.com"}).json()["data"]
        assert len(found) == 1

        assert run_schedule(now=_at(17)) == NOTHING  # the next slot of every_15 is 15 minutes on: not again yet
        assert len(_runs(tenant, every_15)) == 1
        assert run_schedule(now=_at(61)) == {**NOTHING, "queued": 2}  # hourly, and every_15 again
        assert len(_runs(other_tenant, hourly)) == 1 and len(_runs(tenant, every_15)) == 2
        assert _runs(tenant, paused) == [] and _runs(tenant, manual) == []
        assert event_pipeline.wait_idle(timeout=60)
