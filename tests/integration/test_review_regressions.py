"""Regressions for bugs found in review: each was a 500, a leak or a leftover."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import partition_items
from tests.integration.test_orders import order_body


def test_a_key_created_with_an_idempotency_key_is_still_stored_only_as_a_hash(tenant, raw_table):
    for path in ("/v1/api-keys",):
        r = tenant.http.post(path, json={"name": "x", "scopes": ["admin"]}, headers={"Idempotency-Key": "abc"})
        assert r.status_code == 201
        rotated = tenant.http.post(f"/v1/api-keys/{r.json()['id']}/rotate", headers={"Idempotency-Key": "def"})
        stored = str(partition_items(raw_table, tenant))
        assert r.json()["key"] not in stored and rotated.json()["key"] not in stored


def test_nulls_inside_maps_of_a_batch_record_are_not_a_500(tenant):
    r = tenant.http.post("/v1/customers/batch", json={"records": [
        {"email": "n1@example.com", "external_ids": {"shop": None}, "attributes": {"a": None, "b": 1}},
        {"email": "n2@example.com", "consent": {"email": None}}]})
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["created", "created"]
    first = tenant.http.get("/v1/customers/lookup", params={"email": "n1@example.com"}).json()["data"][0]
    assert first["external_ids"] == {} and first["attributes"] == {"b": 1}


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "0999-01-01T00:00:00Z",
                                   "9999-12-31T23:59:59.999999Z"])
def test_out_of_range_times_are_422_everywhere(tenant, value):
    c = tenant.create_customer(email="t@example.com")
    o = tenant.http.post("/v1/orders", json=order_body({"id": c["id"]})).json()
    calls = [
        tenant.http.post(f"/v1/customers/{c['id']}/events", json={"type": "x", "occurred_at": value}),
        tenant.http.patch(f"/v1/customers/{c['id']}", json={"consent": {"sms": {"status": "granted", "source": "x", "at": value}}}),
        tenant.http.get("/v1/customers", params={"updated_since": value}),
        tenant.http.get("/v1/orders", params={"placed_since": value}),
        tenant.http.post(f"/v1/orders/{o['id']}/pay", json={"paid_at": value}),
    ]
    assert [r.status_code for r in calls] == [422] * 5


def test_an_inverted_order_window_is_empty_not_an_error(tenant):
    r = tenant.http.get("/v1/orders", params={"placed_since": "2026-03-01T00:00:00Z",
                                              "placed_before": "2026-02-01T00:00:00Z"})
    assert r.status_code == 200 and r.json() == {"data": [], "next_cursor": None}


def test_a_cursor_is_bound_to_its_date_filter(tenant):
    for i in range(3):
        tenant.create_customer(email=f"cf{i}@example.com")
    cursor = tenant.http.get("/v1/customers", params={"limit": 1, "updated_since": "2000-01-01T00:00:00Z"}).json()["next_cursor"]
    r = tenant.http.get("/v1/customers", params={"cursor": cursor, "updated_since": "2001-01-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["field"] == "cursor"


def test_racing_revokes_and_rotations_answer_cleanly(api_url, tenant):
    keys = [tenant.http.post("/v1/api-keys", json={"name": f"k{i}", "scopes": ["customers:read"]}).json()
            for i in range(3)]

    def hit(args):
        method, path = args
        with httpx.Client(base_url=api_url, headers=dict(tenant.http.headers), timeout=60) as http:
            return http.request(method, path).status_code

    jobs = [("DELETE", f"/v1/api-keys/{keys[0]['id']}")] * 4 + [("POST", f"/v1/api-keys/{keys[1]['id']}/rotate")] * 4
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(hit, jobs))
    assert codes[:4] == [200] * 4
    assert sorted(codes[4:]).count(201) == 1 and set(codes[4:]) <= {201, 422}


def test_a_cancelled_oversized_write_leaves_no_lookup_entries(tenant, raw_table):
    tenant.create_customer(email="taken@example.com")
    c = tenant.create_customer(email="big@example.com", tags=[f"old-{i}" for i in range(50)])
    r = tenant.http.patch(f"/v1/customers/{c['id']}", json={
        "tags": [f"new-{i}" for i in range(50)], "phone": "+14155552671", "email": "taken@example.com"})
    assert r.status_code == 409
    assert tenant.http.delete(f"/v1/customers/{c['id']}").status_code == 200
    leftovers = [i for i in partition_items(raw_table, tenant) if "#I#" in i["pk"] and i["sk"] == c["id"]]
    assert leftovers == []
