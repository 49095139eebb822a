"""Bad input gets a clear 4xx naming the field, and a read-back proves nothing changed."""
from __future__ import annotations

import json

import pytest

from tests.conftest import partition_items

CREATE_CASES = [
    ("unknown field", {"email": "a@example.com", "favourite_colour": "red"}, 422, "favourite_colour"),
    ("wrong type", {"email": "a@example.com", "tags": "vip"}, 422, "tags"),
    ("invalid email", {"email": "not an email"}, 422, "email"),
    ("invalid phone", {"phone": "+1 555"}, 422, "phone"),
    ("national phone", {"phone": "020 7183 8750"}, 422, "phone"),
    ("future birth date", {"email": "a@example.com", "birth_date": "2999-01-01"}, 422, "birth_date"),
    ("bad country", {"email": "a@example.com", "addresses": [{"line1": "x", "country": "usa"}]},
     422, "addresses.0.country"),
    ("bad consent", {"email": "a@example.com", "consent": {"email": {"status": "maybe", "source": "x"}}},
     422, "consent.email.status"),
    ("unknown channel", {"email": "a@example.com", "consent": {"fax": {"status": "granted", "source": "x"}}},
     422, "consent.fax.[key]"),
    ("attribute name", {"email": "a@example.com", "attributes": {"has space": 1}}, 422, "attributes"),
    ("too many attributes", {"email": "a@example.com", "attributes": {f"k{i}": i for i in range(51)}},
     422, "attributes"),
    ("too deep", {"email": "a@example.com", "attributes": {"a": {"b": {"c": {"d": {"e": 1}}}}}},
     422, "attributes"),
    ("no identity", {"name": {"given": "Nobody"}}, 422, "email"),
    ("bad source", {"external_ids": {"Shop ify": "1"}}, 422, "external_ids.Shop ify.[key]"),
]


@pytest.mark.parametrize("case,payload,status,field", CREATE_CASES, ids=[c[0] for c in CREATE_CASES])
def test_bad_create_is_rejected_and_writes_nothing(tenant, raw_table, case, payload, status, field):
    before = partition_items(raw_table, tenant)
    r = tenant.http.post("/v1/customers", json=payload)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == field
    assert partition_items(raw_table, tenant) == before


def test_invalid_json_is_400(tenant, raw_table):
    before = partition_items(raw_table, tenant)
    r = tenant.http.post("/v1/customers", content=b'{"email": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_json"
    assert partition_items(raw_table, tenant) == before


def test_oversized_body_is_413(tenant, raw_table):
    before = partition_items(raw_table, tenant)
    big = {"email": "big@example.com", "attributes": {"blob": "x" * 70_000}}
    r = tenant.http.post("/v1/customers", content=json.dumps(big), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert partition_items(raw_table, tenant) == before


def test_bad_patch_changes_nothing(tenant, raw_table):
    c = tenant.create_customer(email="keep@example.com", tags=["a"])
    before = partition_items(raw_table, tenant)
    for payload in ({"email": "broken"}, {"tags": [""]}, {"version": 9}, {"email": None}):
        r = tenant.http.patch(f"/v1/customers/{c['id']}", json=payload)
        assert r.status_code == 422, (payload, r.text)
    r = tenant.http.patch(f"/v1/customers/{c['id']}", json={"locale": "en"}, headers={"If-Match": "garbage"})
    assert r.status_code == 400 and r.json()["field"] == "If-Match"
    assert r.json()["code"] == "invalid_header"
    assert partition_items(raw_table, tenant) == before


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 101}, {"limit": "ten"},
                                   {"updated_since": "yesterday"}, {"updated_since": "2026-01-01T00:00:00"},
                                   {"bogus": 1}])
def test_bad_list_queries_get_422(tenant, query):
    r = tenant.http.get("/v1/customers", params=query)
    assert r.status_code == 422, r.text
    assert r.json()["field"]


def test_bad_timeline_event_writes_nothing(tenant, raw_table):
    c = tenant.create_customer(email="ev@example.com")
    before = partition_items(raw_table, tenant)
    for payload in ({"type": "Bad Type"}, {"type": "x", "occurred_at": "2026-01-01T00:00:00"},
                    {"type": "x", "extra": 1}, {}):
        r = tenant.http.post(f"/v1/customers/{c['id']}/events", json=payload)
        assert r.status_code == 422, (payload, r.text)
    assert tenant.http.post("/v1/customers/cus_01ARZ3NDEKTSV4RRFFQ69G5FAV/events",
                            json={"type": "x"}).status_code == 404
    assert partition_items(raw_table, tenant) == before


def test_unknown_customer_ids_get_404(tenant):
    for cid in ("cus_01ARZ3NDEKTSV4RRFFQ69G5FAV", "nope", "cus_%23T%23x"):
        assert tenant.http.get(f"/v1/customers/{cid}").status_code == 404
        assert tenant.http.get(f"/v1/customers/{cid}/360").status_code == 404
        assert tenant.http.get(f"/v1/customers/{cid}/events").status_code == 404
        assert tenant.http.delete(f"/v1/customers/{cid}").status_code == 404


def test_router_errors_are_problem_details_too(tenant):
    r = tenant.http.post("/v1/customers", content=b'{"email": "a@example.com"}',
                         headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "unsupported_media_type"
    r = tenant.http.put("/v1/customers", json={})
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert tenant.http.get("/v1/customers").json()["data"] == []
