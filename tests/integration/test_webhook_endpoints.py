"""Webhook endpoints over HTTP (api/routes/webhooks.py, crm/webhooks/endpoints.py): CRUD with
ETags, the secret shown once and stored sealed, its rotation with an overlap during which
deliveries carry both signatures, a signed test ping that a receiver on 127.0.0.1 verifies
with standardwebhooks, the URL rules at save and at send, scopes, and the delivery
engine's bookkeeping calls."""
from __future__ import annotations

import json

import pytest

from common import net
from tests.conftest import Tenant, partition_items
from tests.dynamo_calls import dynamodb_calls
from tests.webhook_receiver import Receiver, verify

BASE = "/v1/webhooks/endpoints"
SPELLINGS = ["2130706433", "0177.0.0.1", "0x7f.1", "[::ffff:127.0.0.1]", "[::1]",
             "2852039166", "0251.0376.0251.0376", "[::ffff:a9fe:a9fe]"]


@pytest.fixture()
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture()
def deployed(monkeypatch):
    """As deployed: the local-development setting absent (the API server runs in-process)."""
    monkeypatch.delenv(net.LOCAL_DEV_ENV, raising=False)


def _create(tenant, url="https://hooks.example.com/rapport", types=("order.*",), **fields):
    r = tenant.http.post(BASE, json={"url": url, "types": list(types), **fields})
    assert r.status_code == 201, r.text
    return r.json()


def _stored(raw_table, tenant, endpoint_id) -> dict:
    return raw_table.get_item(Key={"pk": f"T#{tenant.id}#WEBHOOKS", "sk": endpoint_id})["Item"]


def test_create_shows_the_secret_once_and_stores_it_sealed(tenant, raw_table):
    created = tenant.http.post(BASE, json={"url": "https://hooks.example.com/rapport", "types": ["order.*", "tier.changed"],
                                           "description": "ERP"})
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and body["id"].startswith("whe_")
    assert created.headers["ETag"] == '"1"' and created.headers["Location"] == f"{BASE}/{body['id']}"
    assert body | {"secret": None} == body | {
        "url": "https://hooks.example.com/rapport", "types": ["order.*", "tier.changed"], "description": "ERP",
        "enabled": True, "ordered": False, "status": "enabled", "disabled_reason": None, "failing_since": None,
        "secret_overlap_until": None, "version": 1, "secret": None}
    got = tenant.http.get(f"{BASE}/{body['id']}")
    assert got.status_code == 200 and "secret" not in got.json() and secret not in got.text
    assert got.headers["ETag"] == '"1"'
    listed = tenant.http.get(BASE)
    assert [e["id"] for e in listed.json()["data"]] == [body["id"]] and secret not in listed.text
    item = _stored(raw_table, tenant, body["id"])
    assert secret not in json.dumps(item, default=str) and item["sealed"]
    from crm import sealing

    sealed = json.loads(item["sealed"])
    assert sealing.unseal({"tenant": tenant.id, "webhook_endpoint": body["id"]}, sealed)["current"] == secret
    with pytest.raises(Exception):  # bound to its tenant and endpoint
        sealing.unseal({"tenant": tenant.id, "webhook_endpoint": "whe_other"}, sealed)


def test_an_idempotent_create_replays_without_the_secret_and_never_stores_it(tenant, raw_table):
    headers = {"Idempotency-Key": "hook-1"}
    payload = {"url": "https://hooks.example.com/idem", "types": ["*"]}
    first = tenant.http.post(BASE, json=payload, headers=headers)
    again = tenant.http.post(BASE, json=payload, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["secret"] and again.json()["secret"] is None
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert len([e for e in tenant.http.get(BASE).json()["data"] if e["url"].endswith("/idem")]) == 1
    assert first.json()["secret"] not in json.dumps(partition_items(raw_table, tenant), default=str)
    eid = first.json()["id"]
    rotated = tenant.http.post(f"{BASE}/{eid}/rotate-secret", json={}, headers={"Idempotency-Key": "rot-1"})
    replay = tenant.http.post(f"{BASE}/{eid}/rotate-secret", json={}, headers={"Idempotency-Key": "rot-1"})
    assert rotated.json()["secret"] and replay.json()["secret"] is None and replay.headers["Idempotent-Replayed"]
    assert replay.json()["version"] == rotated.json()["version"] == 2  # rotated once
    assert rotated.json()["secret"] not in json.dumps(partition_items(raw_table, tenant), default=str)


@pytest.mark.parametrize("body, field", [
    ({"url": "http://hooks.example.com/x", "types": ["*"]}, "url"),  # plain http off loopback
    ({"url": "https://user:pw@hooks.example.com/x", "types": ["*"]}, "url"),
    ({"url": "ftp://hooks.example.com/x", "types": ["*"]}, "url"),
    ({"url": "https://hooks.example.com/x", "types": ["orders.*"]}, "types.0"),
    ({"url": "https://hooks.example.com/x", "types": ["order.paid", "order.shipped"]}, "types.1"),
    ({"url": "https://hooks.example.com/x", "types": []}, "types"),
    ({"url": "https://hooks.example.com/x"}, "types"),
    ({"url": "https://hooks.example.com/x", "types": ["*"], "secret": "whsec_mine"}, "secret"),
])
def test_bad_input_is_a_4xx_naming_the_field_and_creates_nothing(other_tenant, body, field):
    r = other_tenant.http.post(BASE, json=body)
    assert r.status_code == 422, r.text
    named = {r.json().get("field")} | {e["field"] for e in r.json().get("errors") or []}
    assert field in named, r.text
    assert other_tenant.http.get(BASE).json()["data"] == []


@pytest.mark.parametrize("host", SPELLINGS + ["10.0.0.5", "169.254.169.254", "localhost"])
def test_our_own_network_is_refused_at_save_as_deployed(deployed, other_tenant, host):
    r = other_tenant.http.post(BASE, json={"url": f"https://{host}/hooks", "types": ["*"]})
    assert r.status_code == 422 and r.json()["field"] == "url" and "public address" in r.json()["detail"], r.text
    assert other_tenant.http.get(BASE).json()["data"] == []


def test_the_ping_is_signed_and_the_receiver_verifies_it(tenant, receiver):
    created = _create(tenant, url=f"{receiver.url}/hooks")
    r = tenant.http.post(f"{BASE}/{created['id']}/test")
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["ok"] and result["status"] == 200 and result["error"] is None
    assert result["excerpt"] == '{"received":true}' and result["latency_ms"] >= 0
    got = receiver.requests[-1]
    assert got["path"] == "/hooks" and got["headers"]["webhook-id"] == result["webhook_id"]
    assert got["headers"]["content-type"] == "application/json"
    event = verify(created["secret"], got)
    assert event["type"] == "webhook.ping" and event["data"] == {"endpoint_id": created["id"]}
    assert created["secret"] not in r.text


def test_a_failing_or_refused_endpoint_is_an_answer_not_a_500(tenant, receiver, monkeypatch):
    created = _create(tenant, url=f"{receiver.url}/hooks")
    receiver.status, receiver.body = 500, b"boom"
    r = tenant.http.post(f"{BASE}/{created['id']}/test").json()
    assert not r["ok"] and r["status"] == 500 and r["excerpt"] == "boom"
    before = len(receiver.requests)
    monkeypatch.delenv(net.LOCAL_DEV_ENV)  # saved in local development; sent as deployed
    r = tenant.http.post(f"{BASE}/{created['id']}/test")
    assert r.status_code == 200 and r.json()["status"] is None, r.text
    assert r.json()["error"].startswith("refused by the SSRF guard") and len(receiver.requests) == before


def test_rotation_signs_with_both_secrets_during_the_overlap(tenant, receiver):
    from crm.webhooks import endpoints

    created = _create(tenant, url=f"{receiver.url}/hooks")
    old = created["secret"]
    rotated = tenant.http.post(f"{BASE}/{created['id']}/rotate-secret", json={})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old and rotated.json()["secret_overlap_until"]
    assert rotated.json()["version"] == 2 and rotated.headers["ETag"] == '"2"'
    assert endpoints.signing_secrets(tenant.ctx, endpoints.get(tenant.ctx, created["id"])) == [new, old]
    assert tenant.http.post(f"{BASE}/{created['id']}/test").json()["ok"]
    got = receiver.requests[-1]
    assert len(got["headers"]["webhook-signature"].split(" ")) == 2
    assert verify(new, got) == verify(old, got)  # a receiver holding either secret verifies
    shown = tenant.http.get(f"{BASE}/{created['id']}")
    assert new not in shown.text and old not in shown.text and shown.json()["secret_overlap_until"]
    # without an overlap the old secrets stop at once
    newest = tenant.http.post(f"{BASE}/{created['id']}/rotate-secret", json={"overlap_seconds": 0}).json()["secret"]
    assert endpoints.signing_secrets(tenant.ctx, endpoints.get(tenant.ctx, created["id"]))[0] == newest
    assert old in endpoints.signing_secrets(tenant.ctx, endpoints.get(tenant.ctx, created["id"]))  # its day runs on
    tenant.http.post(f"{BASE}/{created['id']}/test")
    assert len(receiver.requests[-1]["headers"]["webhook-signature"].split(" ")) == 2  # newest + old (new: 0 s)
    for bad in ({"overlap_seconds": 7 * 86400 + 1}, {"overlap_seconds": -1}, {"overlap_seconds": "60"}):
        r = tenant.http.post(f"{BASE}/{created['id']}/rotate-secret", json=bad)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "overlap_seconds", r.text
    assert endpoints.signing_secrets(tenant.ctx, endpoints.get(tenant.ctx, created["id"]))[0] == newest


def test_an_overlap_ends(tenant, monkeypatch):
    from datetime import timedelta

    from crm import clock
    from crm.webhooks import endpoints

    created = _create(tenant)
    new = tenant.http.post(f"{BASE}/{created['id']}/rotate-secret", json={"overlap_seconds": 60}).json()["secret"]
    endpoint = endpoints.get(tenant.ctx, created["id"])
    assert endpoints.signing_secrets(tenant.ctx, endpoint) == [new, created["secret"]]
    later = clock.now() + timedelta(seconds=61)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert endpoints.signing_secrets(tenant.ctx, endpoint) == [new]
    assert endpoints.get(tenant.ctx, created["id"]).secret_overlap_until is None


def test_patch_with_if_match_and_reenabling_clears_the_engines_state(tenant):
    from crm.webhooks import endpoints

    created = _create(tenant)
    eid = created["id"]
    stale = tenant.http.patch(f"{BASE}/{eid}", json={"description": "x"}, headers={"If-Match": '"9"'})
    assert stale.status_code == 412 and stale.json()["current_version"] == 1
    r = tenant.http.patch(f"{BASE}/{eid}", json={"types": ["customer.created", "customer.created"], "ordered": True,
                                                 "url": "https://hooks.example.com/v2"}, headers={"If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["types"] == ["customer.created"] and r.json()["ordered"] and r.json()["version"] == 2
    assert r.json()["url"].endswith("/v2") and r.headers["ETag"] == '"2"'
    assert tenant.http.patch(f"{BASE}/{eid}", json={"url": "http://hooks.example.com/x"}).status_code == 422
    assert tenant.http.patch(f"{BASE}/{eid}", json={"types": ["nope.*"]}).status_code == 422
    assert tenant.http.get(f"{BASE}/{eid}").json()["version"] == 2  # refused: nothing changed
    off = tenant.http.patch(f"{BASE}/{eid}", json={"enabled": False}).json()
    assert off["status"] == "disabled" and off["disabled_reason"] == "manual" and not off["enabled"]
    on = tenant.http.patch(f"{BASE}/{eid}", json={"enabled": True}).json()
    assert endpoints.mark_failing(tenant.ctx, eid, "2026-01-01T00:00:00.000Z")
    assert endpoints.disable(tenant.ctx, eid, "failing_5_days")
    gone = tenant.http.get(f"{BASE}/{eid}").json()
    assert gone["disabled_reason"] == "failing_5_days" and gone["failing_since"] and gone["version"] > on["version"]
    back = tenant.http.patch(f"{BASE}/{eid}", json={"enabled": True}, headers={"If-Match": f'"{gone["version"]}"'})
    assert back.status_code == 200, back.text
    assert back.json() | {"version": 0, "updated_at": ""} == gone | {
        "enabled": True, "status": "enabled", "disabled_reason": None, "failing_since": None, "version": 0,
        "updated_at": ""}
    cleared = tenant.http.patch(f"{BASE}/{eid}", json={"description": None}).json()
    assert cleared["description"] is None


def test_the_engines_bookkeeping_never_goes_back(tenant):
    from crm.webhooks import endpoints

    eid = _create(tenant, types=["*"])["id"]
    assert endpoints.mark_failing(tenant.ctx, eid, "2026-03-01T10:00:00.000Z")
    assert not endpoints.mark_failing(tenant.ctx, eid, "2026-03-01T11:00:00.000Z")  # a later failure: same streak
    assert endpoints.mark_failing(tenant.ctx, eid, "2026-03-01T09:00:00.000Z")  # an earlier one moves the start
    assert endpoints.get(tenant.ctx, eid).failing_since == "2026-03-01T09:00:00.000Z"
    assert endpoints.mark_healthy(tenant.ctx, eid)
    assert not endpoints.mark_healthy(tenant.ctx, eid)  # already healthy: nothing written
    assert endpoints.get(tenant.ctx, eid).failing_since is None
    assert not endpoints.mark_failing(tenant.ctx, eid, "2026-03-01T12:00:00.000Z")  # older than the success
    assert endpoints.get(tenant.ctx, eid).failing_since is None
    assert endpoints.disable(tenant.ctx, eid, "gone_410")
    assert not endpoints.disable(tenant.ctx, eid, "failing_5_days")  # the first reason stays
    assert endpoints.get(tenant.ctx, eid).disabled_reason == "gone_410"
    assert not endpoints.mark_failing(tenant.ctx, eid, "2099-01-01T00:00:00.000Z")  # disabled: no streak
    assert not endpoints.disable(tenant.ctx, "whe_01ARZ3NDEKTSV4RRFFQ69G5FAV", "manual")  # none: nothing created
    with pytest.raises(ValueError):
        endpoints.disable(tenant.ctx, eid, "bored")


def test_list_enabled_is_one_query_and_pages_list_all(api_url):
    from crm.webhooks import endpoints

    t = Tenant(api_url, "Hooks list")
    made = [_create(t, url=f"https://hooks{i}.example.com/x", types=["order.paid"])["id"] for i in range(4)]
    assert t.http.patch(f"{BASE}/{made[1]}", json={"enabled": False}).status_code == 200
    with dynamodb_calls() as calls:
        enabled = endpoints.list_enabled(t.ctx)
    assert [e.id for e in enabled] == [made[0], made[2], made[3]] and dict(calls) == {"Query": 1}
    assert all(endpoints.matches(e, "order.paid") and not endpoints.matches(e, "order.placed") for e in enabled)
    with dynamodb_calls() as calls:
        secrets = endpoints.signing_secrets(t.ctx, enabled[0])
    assert len(secrets) == 1 and dict(calls) == {}  # the sealed secrets came with the Query
    seen, cursor = [], None
    while True:
        page = t.http.get(BASE, params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [e["id"] for e in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == made


def test_delete_with_if_match_then_404(tenant):
    eid = _create(tenant)["id"]
    assert tenant.http.delete(f"{BASE}/{eid}", headers={"If-Match": '"5"'}).status_code == 412
    assert tenant.http.delete(f"{BASE}/{eid}", headers={"If-Match": '"1"'}).status_code == 204
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/test"), ("POST", "/rotate-secret")):
        r = tenant.http.request(method, f"{BASE}/{eid}{path}", json={} if path == "/rotate-secret" else None)
        assert r.status_code == 404 and r.json()["code"] == "webhook_endpoint_not_found", (method, path, r.text)
    assert tenant.http.get(f"{BASE}/not-an-id").status_code == 404


def test_scopes(tenant, api_url):
    import httpx

    eid = _create(tenant)["id"]

    def client(*scopes):
        return httpx.Client(base_url=api_url, timeout=30, headers={"Authorization": f"Bearer {tenant.key_with(*scopes)}"})

    reader, writer, other = client("webhooks:read"), client("webhooks:write"), client("customers:write", "email:write")
    assert reader.get(f"{BASE}/{eid}").status_code == 200
    r = reader.patch(f"{BASE}/{eid}", json={"description": "no"})
    assert r.status_code == 403 and r.json()["required_scope"] == "webhooks:write"
    assert reader.post(f"{BASE}/{eid}/rotate-secret", json={}).status_code == 403
    assert writer.get(BASE).status_code == 200 and writer.post(f"{BASE}/{eid}/rotate-secret", json={}).status_code == 200
    assert other.get(BASE).status_code == 403


def test_the_tenant_limit(api_url):
    from crm.webhooks import endpoints

    t = Tenant(api_url, "Hooks limit")
    for i in range(endpoints.MAX_ENDPOINTS):
        _create(t, url=f"https://h{i}.example.com/x")
    r = t.http.post(BASE, json={"url": "https://one-more.example.com/x", "types": ["*"]})
    assert r.status_code == 409 and r.json()["code"] == "webhook_endpoint_limit", r.text
