"""A connection can never wedge (issue 9, section 1): config validated when saved, a check
that never answers 5xx, every run ends with a classified error, runs can be cancelled,
deleting a connection cancels its run, a redriven message resumes its run, and the
stall check of the schedule ends runs whose worker died."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from crm import clock
from tests.connector_helpers import wait_run
from tests.fakes.shopify import FakeShopify
from tests.plan_helpers import set_plan

PLACEHOLDER = {"shop_url": "https://….myshopify.com", "access_token": "shpat_…"}  # the README's


@pytest.fixture()
def shop():
    with FakeShopify() as fake:
        fake.seed(customers=300, orders=0)
        yield fake


def _connect(tenant, fake, token: str | None = None) -> dict:
    r = tenant.http.post("/v1/connections", json={
        "connector": "shopify", "name": "Lifecycle shop",
        "config": {"shop_url": fake.url, "access_token": token or fake.token}})
    assert r.status_code == 201, r.text
    return r.json()


def _raw_config(raw_table, tenant, cid: str, *, plain: dict | None = None, hidden: dict | None = None) -> None:
    """Store a config the API would refuse today (as an older version accepted it)."""
    from connectors import sealing

    key = {"pk": f"T#{tenant.id}#CONN#{cid}", "sk": "CONN"}
    item = raw_table.get_item(Key=key, ConsistentRead=True)["Item"]
    updates, values = ["version = version + :one"], {":one": 1}
    if plain is not None:
        updates.append("config = :c")
        values[":c"] = json.dumps({**json.loads(item["config"]), **plain})
    if hidden is not None:
        updates.append("sealed = :s")
        values[":s"] = json.dumps(sealing.seal(tenant.id, cid, hidden))
    raw_table.update_item(Key=key, UpdateExpression="SET " + ", ".join(updates), ExpressionAttributeValues=values)


def _fields(problem: dict) -> list[str]:
    return [problem.get("field")] + [e["field"] for e in problem.get("errors", [])]


# --- config validated when saved -------------------------------------------------------

@pytest.mark.parametrize("config, field", [
    (PLACEHOLDER, "config.shop_url"),
    ({"shop_url": "https://shop.example.com", "access_token": "shpat_…"}, "config.access_token"),
    ({"shop_url": "https://shop.example.com", "access_token": "shpat_abc\r\nX-Evil: 1"}, "config.access_token"),
    ({"shop_url": "https://shop.example.com", "access_token": "tok", "webhook_secret": "s\u00e9cret"},
     "config.webhook_secret"),
    ({"shop_url": "https://exa mple.com", "access_token": "tok"}, "config.shop_url"),
    ({"shop_url": "https://shop.example.com:99999", "access_token": "tok"}, "config.shop_url"),
])
def test_a_config_that_cannot_work_is_refused_when_saved(tenant, raw_table, config, field):
    from tests.conftest import partition_items

    before = partition_items(raw_table, tenant)
    r = tenant.http.post("/v1/connections", json={"connector": "shopify", "name": "x", "config": config})
    assert r.status_code == 422, r.text
    assert field in _fields(r.json()), r.json()
    for secret in ("shpat_", "X-Evil", "s\u00e9cret"):
        assert secret not in r.text  # the values of secret fields are never echoed
    assert partition_items(raw_table, tenant) == before


def test_a_patch_is_validated_like_a_create(tenant, shop):
    conn = _connect(tenant, shop)
    r = tenant.http.patch(f"/v1/connections/{conn['id']}", json={"config": PLACEHOLDER})
    assert r.status_code == 422 and "config.shop_url" in _fields(r.json()), r.text
    assert "config.access_token" in _fields(r.json())
    assert tenant.http.get(f"/v1/connections/{conn['id']}").json()["version"] == conn["version"]


# --- check never answers 5xx -------------------------------------------------------------

def test_check_answers_200_ok_or_422_with_the_vendors_reason(tenant, shop, raw_table):
    set_plan(tenant, "starter")  # more connections (or customers) than free allows
    conn = _connect(tenant, shop)
    r = tenant.http.post(f"/v1/connections/{conn['id']}/check")
    assert r.status_code == 200 and r.json()["ok"] is True
    wrong = _connect(tenant, shop, token="shpat_wrong")
    r = tenant.http.post(f"/v1/connections/{wrong['id']}/check")
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "check_failed" and problem["ok"] is False and problem["error"] == "auth"
    assert problem["vendor_status"] == 401 and "401" in problem["detail"]
    assert "Invalid API key" not in r.text  # the vendor's status, never its body
    # a stored config that no longer validates (saved before validation existed): 422, not 500
    _raw_config(raw_table, tenant, conn["id"], plain={"shop_url": PLACEHOLDER["shop_url"]},
                hidden={"access_token": PLACEHOLDER["access_token"]})
    r = tenant.http.post(f"/v1/connections/{conn['id']}/check")
    assert r.status_code == 422 and r.json()["error"] == "config", r.text
    assert "config.shop_url" in r.json()["detail"] and "shpat_" not in r.text


# --- every run ends, classified ------------------------------------------------------------

def test_refused_credentials_end_the_run_failed_auth_and_the_connection_shows_it(tenant, shop, event_pipeline):
    conn = _connect(tenant, shop, token="shpat_revoked")
    r = tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={"mode": "backfill"})
    assert r.status_code == 202, r.text
    run = wait_run(tenant, conn["id"], r.json()["id"])
    assert run["status"] == "failed" and run["error"] == "auth", run
    assert "401" in run["error_detail"] and "Invalid API key" not in json.dumps(run)
    got = tenant.http.get(f"/v1/connections/{conn['id']}").json()
    assert got["active_run"] is None and got["status"] == "active"
    assert got["last_error"]["code"] == "auth" and got["last_error"]["run_id"] == run["id"]
    # fixed: the next run succeeds and clears the error
    assert tenant.http.patch(f"/v1/connections/{conn['id']}", json={"config": {"access_token": shop.token}}).status_code == 200
    r = tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={"mode": "backfill"})
    assert r.status_code == 202, r.text
    assert wait_run(tenant, conn["id"], r.json()["id"])["status"] == "succeeded"
    assert tenant.http.get(f"/v1/connections/{conn['id']}").json()["last_error"] is None


def test_a_stored_config_that_fails_validation_fails_the_run_without_its_secret(tenant, shop, raw_table, anon):
    from connectors import connections, runner

    conn = _connect(tenant, shop)
    _raw_config(raw_table, tenant, conn["id"], hidden={"access_token": "shpat_\u2026SECRET\u00e9"})
    run_id = connections.start_run(tenant.ctx, conn["id"], "backfill", "cli").id
    assert runner.execute(tenant.ctx, conn["id"], run_id).status == "failed"
    run = connections.get_run(tenant.ctx, conn["id"], run_id)
    assert run.error == "config" and "config.access_token" in run.error_detail
    assert "SECRET" not in run.model_dump_json()
    assert "SECRET" not in tenant.http.get(f"/v1/connections/{conn['id']}").text
    # a webhook to it: a clear 422, not a 500 (whose log would carry pydantic's input)
    headers, body = FakeShopify.webhook("customers/create", {"id": 1}, "whsec")
    r = anon.post(f"/v1/hooks/{conn['id']}", headers=headers, content=body)
    assert r.status_code == 422 and r.json()["code"] == "config_invalid" and "SECRET" not in r.text, r.text


def test_a_worker_that_raises_anything_ends_the_run_internal_with_a_trace_id(tenant, shop, monkeypatch):
    from connectors import connections, runner
    from connectors.shopify import Customers

    conn = _connect(tenant, shop)
    run_id = connections.start_run(tenant.ctx, conn["id"], "backfill", "cli").id

    def broken(self, rc, state):
        raise UnicodeEncodeError("ascii", "x", 0, 1, "a bug of ours")
        yield

    monkeypatch.setattr(Customers, "read", broken)
    assert runner.execute(tenant.ctx, conn["id"], run_id, trace_id="trace-123").status == "failed"
    run = tenant.http.get(f"/v1/connections/{conn['id']}/runs/{run_id}").json()
    assert run["status"] == "failed" and run["error"] == "internal" and run["trace_id"] == "trace-123"
    assert "trace-123" in run["error_detail"]
    assert tenant.http.get(f"/v1/connections/{conn['id']}").json()["active_run"] is None
    assert tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={}).status_code == 202


def test_the_last_receive_of_a_failing_message_fails_its_run(tenant, shop, monkeypatch):
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    from connectors import connections, runner
    from functions import sync

    conn = _connect(tenant, shop)
    run_id = connections.start_run(tenant.ctx, conn["id"], "backfill", "cli").id

    def crash(*args, **kwargs):
        raise RuntimeError("the worker itself failed")

    monkeypatch.setattr(runner, "execute", crash)
    body = json.dumps(sync.sync_message(tenant.id, conn["id"], run_id))

    def deliver(receive_count: int):
        record = {"messageId": f"m{receive_count}", "receiptHandle": "h", "body": body,
                  "attributes": {"ApproximateReceiveCount": str(receive_count)}, "messageAttributes": {},
                  "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
                  "awsRegion": "us-east-1"}
        with pytest.raises(BatchProcessingError):  # a batch of one that failed: the message stays
            sync.handle_batch({"Records": [record]})

    deliver(1)  # retried: the run is still going
    assert tenant.http.get(f"/v1/connections/{conn['id']}/runs/{run_id}").json()["status"] == "queued"
    deliver(sync.max_receives())  # the last try: on to the DLQ
    run = tenant.http.get(f"/v1/connections/{conn['id']}/runs/{run_id}").json()
    assert run["status"] == "failed" and run["error"] == "internal" and run["trace_id"]
    assert tenant.http.get(f"/v1/connections/{conn['id']}").json()["last_error"]["code"] == "internal"


def test_the_schedule_fails_runs_that_stopped_checkpointing(tenant, shop):
    from functions.sync import run_schedule

    conn = _connect(tenant, shop)
    r = tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={})  # queued; no worker runs here
    assert r.status_code == 202
    run_id = r.json()["id"]
    run_schedule(now=clock.iso(clock.now() + timedelta(minutes=1)))
    assert tenant.http.get(f"/v1/connections/{conn['id']}/runs/{run_id}").json()["status"] == "queued"
    run_schedule(now=clock.iso(clock.now() + timedelta(minutes=20)))
    run = tenant.http.get(f"/v1/connections/{conn['id']}/runs/{run_id}").json()
    assert run["status"] == "failed" and run["error"] == "stalled", run
    got = tenant.http.get(f"/v1/connections/{conn['id']}").json()
    assert got["active_run"] is None and got["last_error"]["code"] == "stalled"
    assert tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={}).status_code == 202


# --- cancel, delete, redrive -----------------------------------------------------------------

def test_a_queued_run_can_be_cancelled_and_the_list_shows_the_active_run(tenant, shop):
    conn = _connect(tenant, shop)
    run_id = tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={}).json()["id"]
    [listed] = tenant.http.get("/v1/connections").json()["data"]
    assert listed["active_run"] == run_id
    r = tenant.http.post(f"/v1/connections/{conn['id']}/runs/{run_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert tenant.http.get(f"/v1/connections/{conn['id']}/runs/{run_id}").json()["status"] == "cancelled"
    assert tenant.http.get("/v1/connections").json()["data"][0]["active_run"] is None
    again = tenant.http.post(f"/v1/connections/{conn['id']}/runs/{run_id}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "run_finished"
    missing = tenant.http.post(f"/v1/connections/{conn['id']}/runs/run_01J00000000000000000000000/cancel")
    assert missing.status_code == 404
    # the worker that picks the cancelled run's message up does nothing
    from connectors import runner

    assert runner.execute(tenant.ctx, conn["id"], run_id).status == "cancelled"
    assert tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={}).status_code == 202


def test_a_running_run_stops_at_its_next_page_when_cancelled(tenant, shop):
    from connectors import connections, runner

    conn = _connect(tenant, shop)
    run_id = connections.start_run(tenant.ctx, conn["id"], "backfill", "cli").id
    pages = []

    def cancel_after_first_page(stream, counts):
        pages.append(counts["pages"])
        if len(pages) == 1:
            r = tenant.http.post(f"/v1/connections/{conn['id']}/runs/{run_id}/cancel")
            assert r.status_code == 200, r.text

    outcome = runner.execute(tenant.ctx, conn["id"], run_id, progress=cancel_after_first_page,
                             client_options={"sleep": lambda s: None})
    assert outcome.status == "cancelled" and pages == [1]
    run = tenant.http.get(f"/v1/connections/{conn['id']}/runs/{run_id}").json()
    assert run["status"] == "cancelled" and run["finished_at"]
    assert tenant.http.get(f"/v1/connections/{conn['id']}").json()["active_run"] is None


def test_deleting_a_connection_cancels_its_run(tenant, shop):
    conn = _connect(tenant, shop)
    run_id = tenant.http.post(f"/v1/connections/{conn['id']}/sync", json={}).json()["id"]
    r = tenant.http.delete(f"/v1/connections/{conn['id']}")
    assert r.status_code == 204, r.text
    assert tenant.http.get(f"/v1/connections/{conn['id']}").status_code == 404
    from connectors import runner

    assert runner.execute(tenant.ctx, conn["id"], run_id).status == "cancelled"  # its message: a no-op
    assert tenant.http.get(f"/v1/connections/{conn['id']}").status_code == 404


def test_a_redriven_message_resumes_the_failed_run_from_its_checkpoint_after_a_fix(tenant, shop):
    from connectors import connections, runner

    conn = _connect(tenant, shop)
    run_id = connections.start_run(tenant.ctx, conn["id"], "backfill", "cli").id

    def revoke_after_first_page(stream, counts):
        if counts["pages"] == 1:
            shop.token = "shpat_rotated"  # the shop rotated its token mid-run

    outcome = runner.execute(tenant.ctx, conn["id"], run_id, progress=revoke_after_first_page,
                             client_options={"sleep": lambda s: None})
    assert outcome.status == "failed"
    failed = connections.get_run(tenant.ctx, conn["id"], run_id)
    assert failed.error == "auth" and failed.streams["customers"].read == 250
    # the tenant pastes the new token; the dead-lettered message is redriven
    r = tenant.http.patch(f"/v1/connections/{conn['id']}", json={"config": {"access_token": "shpat_rotated"}})
    assert r.status_code == 200
    assert runner.execute(tenant.ctx, conn["id"], run_id, client_options={"sleep": lambda s: None}).status == "succeeded"
    run = tenant.http.get(f"/v1/connections/{conn['id']}/runs/{run_id}").json()
    assert run["status"] == "succeeded" and run["error"] is None and run["invocations"] == 2
    assert run["streams"]["customers"]["read"] == 300  # resumed after page 1, not from the start
    assert tenant.http.get(f"/v1/connections/{conn['id']}").json()["last_error"] is None


def test_throttling_past_the_budget_and_vendor_failures_are_classified(tenant, shop, monkeypatch):
    from connectors import connections, runner

    conn = _connect(tenant, shop)
    monkeypatch.setenv("RAPPORT_SYNC_RATE_LIMIT_BUDGET_SECONDS", "100")
    run_id = connections.start_run(tenant.ctx, conn["id"], "backfill", "cli").id
    shop.throttle_next(10, retry_after=60)  # each 60 s: a pause, until the budget is spent
    statuses = [runner.execute(tenant.ctx, conn["id"], run_id).status for _ in range(2)]
    assert statuses == ["paused", "failed"], statuses
    run = tenant.http.get(f"/v1/connections/{conn['id']}/runs/{run_id}").json()
    assert run["error"] == "rate_limited" and "budget" in run["error_detail"]

    with shop.lock:
        shop._throttle_next.clear()
    shop.fail_next(20, status=500)  # the vendor keeps failing: retried, then the run fails
    run_id = connections.start_run(tenant.ctx, conn["id"], "backfill", "cli").id
    assert runner.execute(tenant.ctx, conn["id"], run_id, client_options={"sleep": lambda s: None}).status == "failed"
    run = tenant.http.get(f"/v1/connections/{conn['id']}/runs/{run_id}").json()
    assert run["error"] == "vendor" and "500" in run["error_detail"], run
