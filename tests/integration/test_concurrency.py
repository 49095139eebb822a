"""Concurrent writers against the HTTP API: guards and versions hold under races."""
from __future__ import annotations

import sys
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

    # 30 at once, as the orders below: with 50 on a loaded 2-core machine a writer could
    # spend the retry budget (crm/retry.py, 15 s) waiting for the emulator
    racers = 30
    with ThreadPoolExecutor(racers) as pool:
        codes = list(pool.map(patch, range(racers)))
    final = tenant.http.get(f"/v1/customers/{c['id']}").json()
    assert codes == [200] * racers  # no If-Match: a lost race is retried, never a 412
    assert set(final["attributes"]) == {f"k{i}" for i in range(racers)}  # no update lost
    assert final["version"] == racers + 1


def test_racing_orders_of_one_customer_all_succeed(tenant):
    c = tenant.create_customer(email="orders-race@example.com")

    def place(i: int) -> httpx.Response:
        with _client(tenant) as http:
            return http.post("/v1/orders", json={
                "customer": {"id": c["id"]}, "source": "pos", "external_id": f"race-{i}",
                "channel": "store", "currency": "EUR", "total": 100 + i, "placed_at": "2026-01-02T10:00:00Z",
                "lines": [{"sku": "A", "name": "A", "quantity": 1, "unit_price": 100 + i}]})

    # 30 at once: with 50, on two cores shared by four test workers and their in-process
    # emulators, a writer could spend the retry budget (crm/retry.py, 15 s) just waiting
    # for the emulator, which DynamoDB answers in milliseconds
    racers = 30
    with ThreadPoolExecutor(racers) as pool:
        responses = list(pool.map(place, range(racers)))
    assert [r.status_code for r in responses] == [201] * racers, [r.text for r in responses if r.status_code != 201][:2]
    listed = tenant.http.get("/v1/orders", params={"customer_id": c["id"], "limit": 100}).json()["data"]
    assert sorted(o["external_id"] for o in listed) == sorted(f"race-{i}" for i in range(racers))
    recent = tenant.http.get(f"/v1/customers/{c['id']}/360").json()["recent_orders"]
    assert len(recent) == 10


def test_racing_order_transitions_and_timeline_writes_succeed(tenant):
    c = tenant.create_customer(email="mixed-race@example.com")
    orders = [tenant.http.post("/v1/orders", json={
        "customer": {"id": c["id"]}, "source": "pos", "external_id": f"mix-{i}", "channel": "store",
        "currency": "EUR", "total": 100, "placed_at": "2026-01-02T10:00:00Z",
        "lines": [{"sku": "A", "name": "A", "quantity": 1, "unit_price": 100}]}).json() for i in range(10)]

    def act(i: int) -> httpx.Response:
        with _client(tenant) as http:
            if i < 10:
                return http.post(f"/v1/orders/{orders[i]['id']}/pay", json={})
            if i < 20:
                return http.post(f"/v1/customers/{c['id']}/events", json={"type": "note.added"})
            return http.patch(f"/v1/customers/{c['id']}", json={"attributes": {f"m{i}": i}})

    with ThreadPoolExecutor(30) as pool:
        responses = list(pool.map(act, range(30)))
    codes = [r.status_code for r in responses]
    assert codes == [200] * 10 + [201] * 10 + [200] * 10, [(r.status_code, r.text) for r in responses if r.status_code >= 300]
    statuses = {tenant.http.get(f"/v1/orders/{o['id']}").json()["status"] for o in orders}
    assert statuses == {"paid"}


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


def test_concurrent_requests_each_see_their_own_request(tenant, other_tenant):
    """Chalice keeps the request being served on the app object, which the local server
    shares between its threads: two requests at once could read each other's headers and
    body (another tenant's key, another route's body). Locally each thread sees its own
    request, as each Lambda invocation does."""
    mine = {t.key: t.create_customer(email=f"own-{i}@example.com")["id"] for i, t in enumerate((tenant, other_tenant))}

    def get(i: int) -> tuple[str, httpx.Response]:
        key = list(mine)[i % 2]
        with httpx.Client(base_url=str(tenant.http.base_url), headers={"Authorization": f"Bearer {key}"},
                          timeout=60) as http:
            if i % 3 == 0:  # a write with a body the GETs must never see (new entries: no contention)
                return key, http.post(f"/v1/customers/{mine[key]}/events", json={"type": "note.added"})
            return key, http.get(f"/v1/customers/{mine[key]}")

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a race shows at once
    try:
        with ThreadPoolExecutor(40) as pool:
            results = list(pool.map(get, range(400)))
    finally:
        sys.setswitchinterval(switch)
    wrong = [(r.status_code, r.text[:200]) for key, r in results
             if r.status_code not in (200, 201) or r.json().get("customer_id", r.json().get("id")) != mine[key]]
    assert not wrong, wrong[:5]
