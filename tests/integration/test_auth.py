"""API keys and tenants: 401/403 rules, scopes, rotation, revocation, suspension."""
from __future__ import annotations

import httpx
import pytest


def _get(base: str, key: str | None, path: str = "/v1/customers") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.get(base + path, headers=headers, timeout=30)


def test_missing_malformed_and_unknown_keys_get_401(api_url, tenant):
    forged = tenant.key[:-4] + ("AAAA" if not tenant.key.endswith("AAAA") else "BBBB")
    for key in (None, "not-a-key", "rpk_t000000000000_0000000000_secret", forged):
        r = _get(api_url, key)
        assert r.status_code == 401, key
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = httpx.get(api_url + "/v1/customers", headers={"Authorization": f"Basic {tenant.key}"})
    assert r.status_code == 401


def test_scopes(api_url, tenant):
    reader = tenant.key_with("customers:read")
    writer = tenant.key_with("customers:write")
    assert _get(api_url, reader).status_code == 200
    denied = httpx.post(api_url + "/v1/customers", json={"email": "s@example.com"},
                        headers={"Authorization": f"Bearer {reader}"})
    assert denied.status_code == 403 and denied.json()["required_scope"] == "customers:write"
    assert _get(api_url, reader, "/v1/api-keys").status_code == 403
    ok = httpx.post(api_url + "/v1/customers", json={"email": "s@example.com"},
                    headers={"Authorization": f"Bearer {writer}"})
    assert ok.status_code == 201
    assert _get(api_url, writer).status_code == 200  # write implies read
    assert tenant.http.get("/v1/customers").json()["data"][0]["email"] == "s@example.com"


def test_keys_are_listed_without_secrets_and_stored_only_as_hashes(api_url, tenant, raw_table):
    r = tenant.http.post("/v1/api-keys", json={"name": "zapier", "scopes": ["customers:read"]})
    assert r.status_code == 201
    issued = r.json()
    secret = issued["key"]
    assert secret.startswith(issued["prefix"] + "_")
    assert _get(api_url, secret).status_code == 200
    listed = tenant.http.get("/v1/api-keys").json()["data"]
    assert {k["name"] for k in listed} == {"admin", "zapier"}
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    from tests.conftest import partition_items

    assert secret not in str(partition_items(raw_table, tenant))
    assert secret.split("_")[-1] not in str(partition_items(raw_table, tenant))


def test_revoked_key_gets_401(api_url, tenant):
    issued = tenant.http.post("/v1/api-keys", json={"name": "tmp", "scopes": ["admin"]}).json()
    assert _get(api_url, issued["key"]).status_code == 200
    r = tenant.http.delete(f"/v1/api-keys/{issued['id']}")
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert _get(api_url, issued["key"]).status_code == 401


def test_rotation_issues_a_new_secret_and_revokes_the_old(api_url, tenant):
    issued = tenant.http.post("/v1/api-keys", json={"name": "pos", "scopes": ["customers:read"]}).json()
    r = tenant.http.post(f"/v1/api-keys/{issued['id']}/rotate")
    assert r.status_code == 201
    new = r.json()
    assert new["scopes"] == ["customers:read"] and new["name"] == "pos" and new["key"] != issued["key"]
    assert _get(api_url, issued["key"]).status_code == 401
    assert _get(api_url, new["key"]).status_code == 200
    assert tenant.http.post(f"/v1/api-keys/{issued['id']}/rotate").status_code == 422


@pytest.mark.parametrize("body", [{"name": "x", "scopes": []}, {"name": "x", "scopes": ["root"]},
                                  {"name": "", "scopes": ["admin"]}, {"scopes": ["admin"]}])
def test_bad_key_requests_get_422_and_create_nothing(tenant, body):
    assert tenant.http.post("/v1/api-keys", json=body).status_code == 422
    assert len(tenant.http.get("/v1/api-keys").json()["data"]) == 1


def test_suspended_tenant_gets_403_everywhere_until_reactivated(api_url, tenant):
    from crm import tenants

    c = tenant.create_customer(email="sus@example.com")
    tenants.set_status(tenant.ctx, "suspended")
    for method, path in (("GET", "/v1/customers"), ("GET", f"/v1/customers/{c['id']}"),
                         ("POST", "/v1/customers"), ("GET", "/v1/api-keys")):
        r = tenant.http.request(method, path, json={"email": "x@example.com"} if method == "POST" else None)
        assert r.status_code == 403, (method, path)
        assert r.json()["code"] == "tenant_suspended"
    tenants.set_status(tenant.ctx, "active")
    assert tenant.http.get(f"/v1/customers/{c['id']}").status_code == 200


def test_a_revoked_admin_key_cannot_mint_keys_even_while_cached(api_url, tenant, monkeypatch):
    """Issue 9: within the key cache, a revoked admin key minted a key that outlived it."""
    monkeypatch.setenv("RAPPORT_KEY_CACHE_SECONDS", "60")
    from crm import apikeys

    apikeys.clear_cache()
    try:
        k = tenant.http.post("/v1/api-keys", json={"name": "k", "scopes": ["admin"]}).json()
        as_k = {"Authorization": f"Bearer {k['key']}"}
        assert httpx.get(api_url + "/v1/api-keys", headers=as_k).status_code == 200  # cached now
        assert httpx.get(api_url + "/v1/customers", headers=as_k).status_code == 200
        assert tenant.http.delete(f"/v1/api-keys/{k['id']}").status_code == 200
        minted = httpx.post(api_url + "/v1/api-keys", headers=as_k, json={"name": "m", "scopes": ["admin"]})
        assert minted.status_code == 401, minted.text
        assert httpx.get(api_url + "/v1/api-keys", headers=as_k).status_code == 401
        assert httpx.get(api_url + "/v1/identity/settings", headers=as_k).status_code == 401
        names = [key["name"] for key in tenant.http.get("/v1/api-keys").json()["data"]]
        assert names == ["admin", "k"]
    finally:
        apikeys.clear_cache()


def test_each_key_records_which_key_created_it(api_url, tenant):
    listed = {key["name"]: key for key in tenant.http.get("/v1/api-keys").json()["data"]}
    root = listed["admin"]
    assert root["created_by"] is None  # made by the operator (rapport tenants create)
    a = tenant.http.post("/v1/api-keys", json={"name": "a", "scopes": ["admin"]}).json()
    assert a["created_by"] == root["id"]
    b = httpx.post(api_url + "/v1/api-keys", headers={"Authorization": f"Bearer {a['key']}"},
                   json={"name": "b", "scopes": ["customers:read"]}).json()
    assert b["created_by"] == a["id"]
    rotated = tenant.http.post(f"/v1/api-keys/{b['id']}/rotate").json()
    assert rotated["created_by"] == root["id"]
    listed = {key["id"]: key for key in tenant.http.get("/v1/api-keys").json()["data"]}
    assert listed[b["id"]]["created_by"] == a["id"] and listed[rotated["id"]]["created_by"] == root["id"]
