"""GET /v1/customers/{id}/export (GDPR art. 20): everything held about the person, paged,
built from the declared schema; nothing of another customer; customers:read suffices."""
from __future__ import annotations

from crm import identity

PROGRAM = {"earns_from": "2000-01-01T00:00:00Z", "currency": "EUR", "earn_rates": {"EUR": 1},
           "rounding": "floor", "tiers": [{"name": "Bronze", "threshold": 0}], "expiry_months": 12}
ORDER = {"source": "pos", "channel": "store", "currency": "EUR",
         "lines": [{"sku": "A", "name": "Thing", "quantity": 1, "unit_price": 1000}],
         "total": 1000, "placed_at": "2026-01-02T10:00:00Z"}


def export_all(http, cid: str, limit: int) -> tuple[list[dict], dict]:
    pages, cursor = [], None
    while True:
        r = http.get(f"/v1/customers/{cid}/export", params={"limit": limit, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        pages.append(r.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 50
    sections: dict[str, list[dict]] = {}
    for page in pages:
        for name, items in page["sections"].items():
            sections.setdefault(name, []).extend(items)
    return pages, sections


def test_export_holds_everything_about_the_person_and_nothing_else(tenant):
    assert tenant.http.put("/v1/loyalty/program", json=PROGRAM).status_code in (200, 201)
    c = tenant.create_customer(email="ex@example.com", phone="+14155550100", name={"given": "Exa"},
                               external_ids={"shop": "e-1"},
                               consent={"email": {"status": "granted", "source": "checkout"}})
    other = tenant.create_customer(email="other@example.com", external_ids={"shop": "o-1"})
    orders = []
    for i in range(3):
        r = tenant.http.post("/v1/orders", json={**ORDER, "customer": {"id": c["id"]}, "external_id": f"x-{i}"})
        assert r.status_code == 201, r.text
        orders.append(r.json()["id"])
    tenant.http.post("/v1/orders", json={**ORDER, "customer": {"id": other["id"]}, "external_id": "y-1"})
    for i in range(4):
        assert tenant.http.post(f"/v1/customers/{c['id']}/events", json={"type": "note", "summary": f"n{i}"}).status_code == 201
    assert tenant.http.post(f"/v1/customers/{c['id']}/loyalty/adjustments",
                            json={"points": 40, "reason": "welcome"}).status_code in (200, 201)
    [res] = identity.upsert(tenant.ctx, "shop", [("e-2", {"email": "ex@example.com"})])
    [unrelated] = identity.upsert(tenant.ctx, "shop", [("o-9", {"email": "other@example.com"})])
    assert res.status == unrelated.status == "conflict"

    reader = tenant.key_with("customers:read")
    import httpx
    http = httpx.Client(base_url=str(tenant.http.base_url), headers={"Authorization": f"Bearer {reader}"})
    pages, sections = export_all(http, c["id"], limit=2)
    assert len(pages) > 3  # paged
    first = pages[0]
    assert first["profile"]["email"] == "ex@example.com" and first["customer_id"] == c["id"]
    assert first["identities"]["external_ids"] == {"shop": "e-1"}
    assert first["consent"]["email"]["status"] == "granted"
    assert all(p.get("profile") is None for p in pages[1:])
    assert sorted(o["order_id"] for o in sections["orders"]) == sorted(orders)
    exported = sorted(e["data"].get("summary") or "" for e in sections["timeline"])
    assert [s for s in exported if s.startswith("n") and len(s) == 2] == ["n0", "n1", "n2", "n3"]
    # the whole timeline, the entries Rapport wrote with its facts (orders, points, tier) included
    listed = http.get(f"/v1/customers/{c['id']}/events", params={"limit": 100}).json()
    assert exported == sorted(e.get("summary") or "" for e in listed["data"]) and listed["next_cursor"] is None
    assert [e["entry"]["points"] for e in sections["ledger"]] == [40]
    assert sections["loyalty"][0]["customer_id"] == c["id"]
    assert [x["conflict_id"] for x in sections["conflicts"]] == [res.conflict_id]
    assert other["id"] not in str(pages) and "other@example.com" not in str(pages)
    # the same with one big page; a cursor of another customer's export is refused
    _, whole = export_all(http, c["id"], limit=100)
    assert {k: len(v) for k, v in whole.items()} == {k: len(v) for k, v in sections.items()}
    foreign = http.get(f"/v1/customers/{other['id']}/export", params={"limit": 1}).json()["next_cursor"]
    r = http.get(f"/v1/customers/{c['id']}/export", params={"cursor": foreign})
    assert r.status_code == 422 and r.json()["field"] == "cursor"


def test_export_needs_customers_read_and_a_known_customer(tenant):
    import httpx

    c = tenant.create_customer(email="scoped@example.com")
    key = tenant.key_with("orders:read")
    r = httpx.get(f"{tenant.http.base_url}/v1/customers/{c['id']}/export",
                  headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403
    r = tenant.http.get("/v1/customers/cus_01ARZ3NDEKTSV4RRFFQ69G5FAV/export")
    assert r.status_code == 404
