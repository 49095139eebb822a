"""The API's edges (issue 9): unknown paths, plain 422 wording, hostile JSON, empty
Idempotency-Key, scope leaks and reserved timeline types."""
from __future__ import annotations

import httpx
import pytest

from tests.conftest import partition_items

ORDER = {"source": "pos", "external_id": "edge-1", "channel": "store", "currency": "EUR",
         "lines": [{"sku": "A", "name": "A", "quantity": 1, "unit_price": 500}],
         "total": 500, "placed_at": "2026-01-02T10:00:00Z"}


# --- 1. unknown paths and methods -------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/v1/nope"), ("GET", "/v2/customers"), ("POST", "/anything/at/all"),
    ("GET", "/v1/customers/cus_01ARZ3NDEKTSV4RRFFQ69G5FAV/nothing/here"), ("DELETE", "/x/y/z/w/v/u/t/s/r/q"),
    ("GET", "/v1/docs/extra"),
])
def test_unknown_paths_are_404_problems_that_echo_no_credential(tenant, method, path):
    r = tenant.http.request(method, path)
    assert r.status_code == 404, (path, r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"
    assert tenant.key not in r.text and tenant.key.split("_")[-1] not in r.text
    assert tenant.key not in str(r.headers)


def test_unknown_method_on_a_known_path_is_405_without_the_key(tenant):
    r = tenant.http.request("PUT", "/v1/health")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    assert tenant.key not in r.text


def test_v1_root_lists_the_entry_points(anon, tenant):
    for client in (anon, tenant.http):
        for path in ("/v1", "/v1/"):
            r = client.get(path)
            assert r.status_code == 200, r.text
            links = r.json()["links"]
            assert {"health", "openapi", "docs"} <= set(links)
            assert links["openapi"] == "/v1/openapi.json"
            assert tenant.key not in r.text


def test_v1_docs_is_a_page_pointing_at_the_openapi_document(anon):
    r = anon.get("/v1/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "/v1/openapi.json" in r.text


# --- 2. plain 422 wording, /v1/orders/lookup ---------------------------------------

def test_unknown_query_and_body_fields_are_named_plainly(tenant):
    r = tenant.http.get("/v1/customers", params={"q": "x"})
    assert r.status_code == 422
    assert r.json()["field"] == "q"
    assert "unknown field 'q'" in r.json()["detail"]
    assert "Extra inputs" not in r.text
    r = tenant.http.post("/v1/customers", json={"email": "p@example.com", "colour": "red"})
    assert r.status_code == 422 and "unknown field 'colour'" in r.json()["detail"]
    r = tenant.http.post("/v1/customers", json={"email": "p@example.com", "tags": "vip"})
    assert r.status_code == 422 and r.json()["field"] == "tags"
    assert "Input should be" not in r.json()["detail"]


def test_orders_lookup_is_not_read_as_an_order_id(tenant):
    r = tenant.http.get("/v1/orders/lookup", params={"source": "pos", "external_id": "1"})
    assert r.status_code == 404
    body = r.json()
    assert body["code"] == "not_an_order_id"
    assert "not an order id" in body["detail"] and "/v1/orders?" in body["detail"]


# --- 4. lone surrogates, deep nesting ----------------------------------------------

def _raw(client: httpx.Client, method: str, path: str, text: str) -> httpx.Response:
    return client.request(method, path, content=text.encode(),
                          headers={"content-type": "application/json"})


def test_lone_surrogates_are_refused_everywhere_and_store_nothing(tenant, raw_table):
    c = tenant.create_customer(email="sur@example.com")
    before = partition_items(raw_table, tenant)
    cases = [("POST", "/v1/customers", '{"email": "s2@example.com", "attributes": {"a": "\\udfff"}}'),
             ("POST", "/v1/customers", '{"email": "s3@example.com", "attributes": {"\\ud800x": 1}}'),
             ("PATCH", f"/v1/customers/{c['id']}", '{"attributes": {"a": "x\\udfffy"}}'),
             ("POST", f"/v1/customers/{c['id']}/events", '{"type": "note", "payload": {"a": "\\udfff"}}'),
             ("POST", f"/v1/customers/{c['id']}/events", '{"type": "note", "summary": "\\ud83d"}')]
    for method, path, text in cases:
        r = _raw(tenant.http, method, path, text)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.json()["code"] == "invalid_unicode"
    assert partition_items(raw_table, tenant) == before
    assert tenant.http.get(f"/v1/customers/{c['id']}").status_code == 200
    assert tenant.http.get(f"/v1/customers/{c['id']}/360").status_code == 200
    # a proper surrogate pair (an emoji written as escapes) is fine
    r = _raw(tenant.http, "PATCH", f"/v1/customers/{c['id']}", '{"attributes": {"a": "\\ud83d\\ude00"}}')
    assert r.status_code == 200 and r.json()["attributes"]["a"] == "\U0001F600"


def test_deeply_nested_json_is_422_with_the_limit(tenant, raw_table):
    before = partition_items(raw_table, tenant)
    deep = '{"email": "deep@example.com", "attributes": {"a": ' + "[" * 30000 + "]" * 30000 + "}}"
    r = _raw(tenant.http, "POST", "/v1/customers", deep)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "too_deep" and "32" in r.json()["detail"]
    r = _raw(tenant.http, "POST", "/v1/customers", "[" * 40 + "]" * 40)
    assert r.status_code == 422 and r.json()["code"] == "too_deep"
    assert partition_items(raw_table, tenant) == before


# --- 6. empty Idempotency-Key ------------------------------------------------------

def test_empty_idempotency_key_is_400(tenant, raw_table):
    before = partition_items(raw_table, tenant)
    for value in ("",):
        r = tenant.http.post("/v1/customers", json={"email": "idem@example.com"},
                             headers={"Idempotency-Key": value})
        assert r.status_code == 400, (value, r.text)
        assert r.json()["field"] == "Idempotency-Key"
    assert partition_items(raw_table, tenant) == before


# --- 7. scopes -----------------------------------------------------------------------

def test_orders_write_key_cannot_probe_emails(tenant, api_url):
    tenant.create_customer(email="known@example.com")
    orders_only = {"Authorization": f"Bearer {tenant.key_with('orders:write')}"}
    outcomes = []
    for email in ("known@example.com", "unknown@example.com"):
        r = httpx.post(api_url + "/v1/orders", headers=orders_only,
                       json={**ORDER, "external_id": email, "customer": {"email": email}})
        outcomes.append((r.status_code, r.json().get("code")))
    assert outcomes[0] == outcomes[1] == (403, "insufficient_scope")
    r = httpx.post(api_url + "/v1/orders", headers=orders_only,
                   json={**ORDER, "customer": {"source": "shop", "external_id": "1"}})
    assert r.status_code == 403 and r.json()["required_scope"] == "customers:read"


def test_orders_write_key_can_still_order_by_customer_id(tenant, api_url):
    c = tenant.create_customer(email="byid@example.com")
    key = tenant.key_with("orders:write")
    r = httpx.post(api_url + "/v1/orders", headers={"Authorization": f"Bearer {key}"},
                   json={**ORDER, "customer": {"id": c["id"]}})
    assert r.status_code == 201, r.text


def test_the_360_shows_orders_only_with_orders_read(tenant, api_url):
    c = tenant.create_customer(email="three@example.com")
    order = tenant.http.post("/v1/orders", json={**ORDER, "customer": {"id": c["id"]}}).json()
    reader = {"Authorization": f"Bearer {tenant.key_with('customers:read')}"}
    view = httpx.get(f"{api_url}/v1/customers/{c['id']}/360", headers=reader).json()
    assert view["recent_orders"] is None
    both = {"Authorization": f"Bearer {tenant.key_with('customers:read', 'orders:read')}"}
    view = httpx.get(f"{api_url}/v1/customers/{c['id']}/360", headers=both).json()
    assert [o["id"] for o in view["recent_orders"]] == [order["id"]]


@pytest.mark.parametrize("type_", ["order.paid", "points.earned", "tier.changed", "customer.merged",
                                   "order.something_new", "points.x"])
def test_domain_event_types_are_reserved(tenant, raw_table, type_):
    c = tenant.create_customer(email=f"{type_}@example.com".replace("_", ""))
    before = partition_items(raw_table, tenant)
    r = tenant.http.post(f"/v1/customers/{c['id']}/events", json={"type": type_})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "type" and r.json()["code"] == "reserved_event_type"
    assert partition_items(raw_table, tenant) == before
    assert tenant.http.post(f"/v1/customers/{c['id']}/events", json={"type": "orders_call.logged"}).status_code == 201
