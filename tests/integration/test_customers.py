"""Customers through the HTTP API, against moto's server over HTTP."""
from __future__ import annotations

import pytest

from tests.conftest import partition_items


def test_create_normalizes_and_get_returns_it_with_etag(tenant):
    body = tenant.create_customer(
        name={"given": "Ann", "family": "Lee"}, email="  Ann.Lee@Example.COM ",
        phone="+1 (415) 555-2671", birth_date="1990-02-03", gender="female",
        addresses=[{"line1": "1 Main St", "city": "Portland", "country": "US"}],
        locale="en-US", tags=["VIP", "vip", "wholesale"], attributes={"ltv_band": "a", "n": 3},
        consent={"email": {"status": "granted", "source": "checkout"}},
        external_ids={"shopify": "207119551"})
    assert body["email"] == "ann.lee@example.com"
    assert body["phone"] == "+14155552671"
    assert body["tags"] == ["VIP", "wholesale"]
    assert body["consent"]["email"]["status"] == "granted"
    assert body["consent"]["email"]["at"].endswith("Z")
    assert body["id"].startswith("cus_") and body["version"] == 1
    r = tenant.http.get(f"/v1/customers/{body['id']}")
    assert r.status_code == 200
    assert r.headers["etag"] == '"1"'
    assert r.json() == body


def test_ids_are_time_sortable(tenant):
    ids = [tenant.create_customer(email=f"sort{i}@example.com")["id"] for i in range(5)]
    assert ids == sorted(ids)


def test_duplicate_email_or_external_id_gets_409_naming_the_existing_customer(tenant):
    first = tenant.create_customer(email="dup@example.com", external_ids={"shopify": "42"})
    for payload, field in (({"email": "DUP@example.com"}, "email"),
                           ({"email": "other@example.com", "external_ids": {"shopify": "42"}},
                            "external_ids.shopify")):
        r = tenant.http.post("/v1/customers", json=payload)
        assert r.status_code == 409, r.text
        problem = r.json()
        assert r.headers["content-type"] == "application/problem+json"
        assert problem["existing_customer_id"] == first["id"]
        assert problem["field"] == field
    listed = tenant.http.get("/v1/customers", params={"limit": 100}).json()["data"]
    assert [c["id"] for c in listed] == [first["id"]]


def test_patch_with_if_match_and_stale_etag_gets_412(tenant):
    c = tenant.create_customer(email="patch@example.com", attributes={"a": 1, "b": 2})
    r = tenant.http.patch(f"/v1/customers/{c['id']}", headers={"If-Match": '"1"'},
                          json={"name": {"given": "Pat"}, "attributes": {"a": None, "c": 3}})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"2"'
    assert r.json()["attributes"] == {"b": 2, "c": 3}
    stale = tenant.http.patch(f"/v1/customers/{c['id']}", headers={"If-Match": '"1"'},
                              json={"locale": "fr-FR"})
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2
    after = tenant.http.get(f"/v1/customers/{c['id']}").json()
    assert after["locale"] is None and after["version"] == 2


def test_email_change_moves_the_uniqueness_guard(tenant):
    a = tenant.create_customer(email="old@example.com")
    r = tenant.http.patch(f"/v1/customers/{a['id']}", json={"email": "new@example.com"})
    assert r.status_code == 200
    # the new one is taken; the old one stays the customer's for 90 days (issue 9: a
    # replaced email stays findable, and guarded so no one else can take it)
    kept = tenant.http.post("/v1/customers", json={"email": "old@example.com"})
    assert kept.status_code == 409 and kept.json()["existing_customer_id"] == a["id"]
    clash = tenant.http.post("/v1/customers", json={"email": "new@example.com"})
    assert clash.status_code == 409 and clash.json()["existing_customer_id"] == a["id"]
    found = tenant.http.get("/v1/customers/lookup", params={"email": "NEW@example.com"}).json()
    assert [c["id"] for c in found["data"]] == [a["id"]]


def test_patch_to_an_email_held_by_another_customer_is_409_and_changes_nothing(tenant):
    a = tenant.create_customer(email="a1@example.com")
    b = tenant.create_customer(email="b1@example.com")
    r = tenant.http.patch(f"/v1/customers/{b['id']}", json={"email": "a1@example.com", "locale": "de"})
    assert r.status_code == 409 and r.json()["existing_customer_id"] == a["id"]
    assert tenant.http.get(f"/v1/customers/{b['id']}").json() == b


def test_lookups_by_email_phone_and_external_id(tenant):
    a = tenant.create_customer(email="look@example.com", phone="+442071838750",
                               external_ids={"woocommerce": "17"})
    b = tenant.create_customer(email="look2@example.com", phone="+44 20 7183 8750")
    by = lambda **q: [c["id"] for c in tenant.http.get("/v1/customers/lookup", params=q).json()["data"]]
    assert by(email="Look@Example.com") == [a["id"]]
    assert sorted(by(phone="+442071838750")) == sorted([a["id"], b["id"]])
    assert by(source="woocommerce", external_id="17") == [a["id"]]
    assert by(email="nobody@example.com") == []
    r = tenant.http.get("/v1/customers/lookup", params={"email": "x@example.com", "phone": "+14155552671"})
    assert r.status_code == 422


def test_list_pages_through_everything_once_in_id_order(tenant):
    ids = [tenant.create_customer(email=f"page{i}@example.com")["id"] for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = tenant.http.get("/v1/customers", params=params).json()
        seen += [c["id"] for c in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 3


def test_list_filters_by_tag_and_updated_since(tenant):
    a = tenant.create_customer(email="t1@example.com", tags=["VIP"])
    tenant.create_customer(email="t2@example.com", tags=["other"])
    c = tenant.create_customer(email="t3@example.com")
    by_tag = tenant.http.get("/v1/customers", params={"tag": "vip"}).json()["data"]
    assert [x["id"] for x in by_tag] == [a["id"]]
    since = tenant.http.patch(f"/v1/customers/{c['id']}", json={"tags": ["vip"]}).json()["updated_at"]
    changed = tenant.http.get("/v1/customers", params={"updated_since": since}).json()["data"]
    assert [x["id"] for x in changed] == [c["id"]]
    both = tenant.http.get("/v1/customers", params={"tag": "VIP", "updated_since": since}).json()["data"]
    assert [x["id"] for x in both] == [c["id"]]
    untagged = tenant.http.patch(f"/v1/customers/{a['id']}", json={"tags": []})
    assert untagged.status_code == 200
    assert [x["id"] for x in tenant.http.get("/v1/customers", params={"tag": "vip"}).json()["data"]] == [c["id"]]


def test_a_cursor_from_one_list_is_refused_by_another(tenant):
    for i in range(3):
        tenant.create_customer(email=f"cur{i}@example.com", tags=["x"])
    cursor = tenant.http.get("/v1/customers", params={"limit": 1}).json()["next_cursor"]
    r = tenant.http.get("/v1/customers", params={"tag": "x", "cursor": cursor})
    assert r.status_code == 422 and r.json()["field"] == "cursor"
    assert tenant.http.get("/v1/customers", params={"cursor": "%%%garbage"}).status_code == 422


def test_batch_upsert_reports_each_record_and_writes_only_the_good_ones(tenant, raw_table):
    existing = tenant.create_customer(email="known@example.com", external_ids={"shopify": "1"})
    records = [
        {"email": "fresh@example.com", "name": {"given": "Fresh"}},
        {"external_ids": {"shopify": "1"}, "locale": "en-GB"},
        {"email": "not-an-email"},
        {"email": "fresh@example.com"},
        {"email": "known@example.com", "external_ids": {"shopify": "1"}, "locale": "en-GB"},
        {"name": {"given": "no key"}},
    ]
    r = tenant.http.post("/v1/customers/batch", json={"records": records})
    assert r.status_code == 200, r.text
    body = r.json()
    statuses = [x["status"] for x in body["results"]]
    assert statuses == ["created", "updated", "error", "error", "error", "error"]
    assert body["results"][1]["id"] == existing["id"]
    assert body["results"][2]["error"]["errors"][0]["field"] == "email"
    assert body["results"][3]["error"]["code"] == "duplicate_in_batch"
    assert body["results"][4]["error"]["code"] == "duplicate_in_batch"  # same shopify id as [1]
    assert body["results"][5]["error"]["field"] == "records[5].email"
    assert (body["created"], body["updated"], body["unchanged"], body["failed"]) == (1, 1, 0, 4)
    assert tenant.http.get(f"/v1/customers/{existing['id']}").json()["locale"] == "en-GB"
    emails = sorted(c["email"] for c in tenant.http.get("/v1/customers").json()["data"])
    assert emails == ["fresh@example.com", "known@example.com"]
    # a repeat of the same batch changes nothing
    again = tenant.http.post("/v1/customers/batch", json={"records": records[:2]}).json()
    assert [x["status"] for x in again["results"]] == ["unchanged", "unchanged"]


def test_batch_of_100_new_customers(tenant):
    records = [{"email": f"bulk{i}@example.com", "tags": ["bulk"]} for i in range(100)]
    body = tenant.http.post("/v1/customers/batch", json={"records": records}).json()
    assert body["created"] == 100 and body["failed"] == 0
    seen, cursor = 0, None
    while True:
        page = tenant.http.get("/v1/customers", params={"tag": "bulk", "limit": 100,
                                                        **({"cursor": cursor} if cursor else {})}).json()
        seen += len(page["data"])
        if not (cursor := page["next_cursor"]):
            break
    assert seen == 100
    r = tenant.http.post("/v1/customers/batch", json={"records": records + [{"email": "x@example.com"}]})
    assert r.status_code == 422


def test_timeline_is_newest_first_and_paginated_and_360_is_profile_plus_latest(tenant):
    c = tenant.create_customer(email="tl@example.com")
    for day in (3, 1, 2):
        r = tenant.http.post(f"/v1/customers/{c['id']}/events", json={
            "type": "email.opened", "channel": "email", "summary": f"day {day}",
            "occurred_at": f"2026-01-0{day}T10:00:00Z", "payload": {"campaign": "jan"}})
        assert r.status_code == 201, r.text
    page = tenant.http.get(f"/v1/customers/{c['id']}/events", params={"limit": 2}).json()
    assert [e["summary"] for e in page["data"]] == ["day 3", "day 2"]
    rest = tenant.http.get(f"/v1/customers/{c['id']}/events",
                           params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [e["summary"] for e in rest["data"]] == ["day 1"] and rest["next_cursor"] is None
    view = tenant.http.get(f"/v1/customers/{c['id']}/360").json()
    assert view["customer"]["id"] == c["id"]
    assert [e["summary"] for e in view["timeline"]] == ["day 3", "day 2", "day 1"]


def test_erase_keeps_a_tombstone_and_removes_personal_data(tenant, raw_table):
    c = tenant.create_customer(email="gone@example.com", phone="+14155552671",
                               tags=["vip"], external_ids={"shopify": "9"})
    tenant.http.post(f"/v1/customers/{c['id']}/events", json={"type": "call.logged", "summary": "whispered-detail"})
    r = tenant.http.delete(f"/v1/customers/{c['id']}")
    assert r.status_code == 200
    tomb = tenant.http.get(f"/v1/customers/{c['id']}").json()
    assert tomb["status"] == "erased" and tomb["email"] is None and tomb["erased_at"]
    assert tenant.http.patch(f"/v1/customers/{c['id']}", json={"locale": "en"}).status_code == 410
    assert tenant.http.post(f"/v1/customers/{c['id']}/events", json={"type": "x"}).status_code == 410
    assert tenant.http.get("/v1/customers").json()["data"] == []
    assert tenant.http.get("/v1/customers/lookup", params={"email": "gone@example.com"}).json()["data"] == []
    stored = str(partition_items(raw_table, tenant))
    for secret in ("gone@example.com", "+14155552671", "whispered-detail", "vip"):
        assert secret not in stored
    # the email is free for a new customer, and erasing twice is harmless
    assert tenant.http.post("/v1/customers", json={"email": "gone@example.com"}).status_code == 201
    assert tenant.http.delete(f"/v1/customers/{c['id']}").status_code == 200


def test_idempotency_key_replays_the_first_response(tenant):
    headers = {"Idempotency-Key": "order-7"}
    first = tenant.http.post("/v1/customers", json={"email": "idem@example.com"}, headers=headers)
    again = tenant.http.post("/v1/customers", json={"email": "idem@example.com"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = tenant.http.post("/v1/customers", json={"email": "idem2@example.com"}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert len(tenant.http.get("/v1/customers").json()["data"]) == 1


def test_idempotency_keys_are_per_tenant(tenant, other_tenant):
    headers = {"Idempotency-Key": "shared-key"}
    a = tenant.http.post("/v1/customers", json={"email": "k@example.com"}, headers=headers)
    b = other_tenant.http.post("/v1/customers", json={"email": "k@example.com"}, headers=headers)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert "idempotent-replayed" not in b.headers


@pytest.mark.parametrize("path", ["/v1/health", "/v1/openapi.json"])
def test_public_routes_need_no_key(anon, path):
    assert anon.get(path).status_code == 200


def test_replacing_50_tags_with_50_others_fits_despite_the_transaction_limit(tenant):
    old = [f"old-{i}" for i in range(50)]
    new = [f"new-{i}" for i in range(50)]
    c = tenant.create_customer(email="tags@example.com", tags=old)
    r = tenant.http.patch(f"/v1/customers/{c['id']}", json={"tags": new})
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == new
    assert [x["id"] for x in tenant.http.get("/v1/customers", params={"tag": "new-7"}).json()["data"]] == [c["id"]]
    assert tenant.http.get("/v1/customers", params={"tag": "old-7"}).json()["data"] == []


def test_two_batch_records_matching_one_customer_are_reported_not_merged(tenant):
    c = tenant.create_customer(email="one@example.com", external_ids={"pos": "77"})
    r = tenant.http.post("/v1/customers/batch", json={"records": [
        {"email": "one@example.com", "locale": "en-GB"},
        {"external_ids": {"pos": "77"}, "locale": "fr-FR"}]}).json()
    assert [x["status"] for x in r["results"]] == ["updated", "error"]
    assert r["results"][1]["error"]["code"] == "duplicate_in_batch"
    assert tenant.http.get(f"/v1/customers/{c['id']}").json()["locale"] == "en-GB"
