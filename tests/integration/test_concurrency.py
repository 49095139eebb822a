"""Concurrent writers against the HTTP API: guards and versions hold under races."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx


def _client(tenant) -> httpx.Client:
    return httpx.Client(base_url=str(tenant.http.base_url), headers=dict(tenant.http.headers), timeout=60)


def test_racing_creates_of_one_email_make_exactly_one_customer(tenant):
    def create(i: int) -> httpx.Response:
        with _client(tenant) as http:
            return http.post("/v1/customers", json={"email": "race@example.com", "locale": f"en-{i:02d}"[:5]})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(create, range(8)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1, codes
    assert set(codes) <= {201, 409}
    winner = next(r.json()["id"] for r in responses if r.status_code == 201)
    for r in responses:
        if r.status_code == 409 and r.json()["code"] == "duplicate_customer":
            assert r.json()["existing_customer_id"] == winner
    listed = tenant.http.get("/v1/customers").json()["data"]
    assert [c["id"] for c in listed] == [winner]


def test_racing_patches_without_if_match_lose_no_update(tenant):
    c = tenant.create_customer(email="merge@example.com")

    def patch(i: int) -> int:
        with _client(tenant) as http:
            return http.patch(f"/v1/customers/{c['id']}", json={"attributes": {f"k{i}": i}}).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(patch, range(6)))
    final = tenant.http.get(f"/v1/customers/{c['id']}").json()
    succeeded = {f"k{i}" for i, code in enumerate(codes) if code == 200}
    assert set(codes) <= {200, 412}
    assert set(final["attributes"]) == succeeded  # every acknowledged write is there
    assert final["version"] == 1 + len(succeeded)


def test_racing_patches_with_the_same_if_match_let_exactly_one_win(tenant):
    c = tenant.create_customer(email="ifmatch@example.com")

    def patch(i: int) -> int:
        with _client(tenant) as http:
            return http.patch(f"/v1/customers/{c['id']}", headers={"If-Match": '"1"'},
                              json={"locale": f"en-{'ABCDEF'[i]}{'ABCDEF'[i]}"}).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(patch, range(6)))
    assert codes == [200] + [412] * 5
    assert tenant.http.get(f"/v1/customers/{c['id']}").json()["version"] == 2
