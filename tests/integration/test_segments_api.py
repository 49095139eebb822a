"""The segments API over HTTP (api/routes/segments.py, crm/segments/service.py): CRUD with
its validation (a rule's error names the condition), names unique per tenant, the limit of
segments, ETag/If-Match, delete; the preview (exact on a small tenant, extrapolated past its
bound); members' pages; a customer's segments; the RFM grid; scopes; idempotent create.

What other parts of issue 12 maintain is written directly here, as they would write it:
customers' METRICS items (crm/segments/maintain.py), a segment's member items and
``ready`` status (crm/segments/build.py), the RFM grid counts and the catalogue's cut
points (maintain.py, cuts.py). ``build.start``/``build.drop`` are replaced by recorders
(service._build): this file tests that the API asks for a build, not the build."""
from __future__ import annotations

import types

import pytest

from tests.conftest import Tenant, partition_items
from tests.dynamo_calls import dynamodb_calls

VIP = {"all": [{"field": "vip", "op": "=", "value": True}]}
BIG = {"all": [{"field": "orders.count", "op": ">=", "value": 3}]}


@pytest.fixture()
def builds(monkeypatch):
    """Records build.start / build.drop instead of queueing builds."""
    from crm.segments import service

    calls: list[tuple] = []
    fake = types.SimpleNamespace(
        start=lambda ctx, sid, version: calls.append(("start", ctx.tenant_id, sid, version)),
        drop=lambda ctx, sid: calls.append(("drop", ctx.tenant_id, sid)))
    monkeypatch.setattr(service, "_build", lambda: fake)
    return calls


def facts(**given) -> dict:
    """A customer's facts as crm/segments/aggregate.facts makes them (CONTRACT12.md)."""
    base = {"tags": [], "attributes": {}, "consent": {}, "locale": None, "address.country": None,
            "created_at": "2025-01-01T00:00:00Z", "source": [], "birth_date": None,
            "orders.count": 0, "orders.net_spend": 0, "orders.first_at": None, "orders.last_at": None,
            "orders.aov": None, "orders.channels": [], "orders.categories": [], "loyalty.tier": None,
            "loyalty.balance": 0, "rfm.r": None, "rfm.f": None, "rfm.m": None, "rfm.segment": None,
            "ltv.historical": 0, "ltv.predicted": 0, "vip": False}
    return {**base, **given}


def put_metrics(tenant: Tenant, customer_id: str, memberships: dict | None = None, **given) -> None:
    """A METRICS item as crm/segments/maintain.py writes it (listed on gsi1 ``P METRICS``)."""
    from crm import clock
    from crm.storage import MetricsItem

    MetricsItem(tenant.ctx.key("C", customer_id), "METRICS", customer_id=customer_id,
                gsi1pk=tenant.ctx.key("METRICS"), gsi1sk=customer_id, facts=facts(**given),
                memberships=memberships or {}, updated_at=clock.now_iso()).save()


def create(tenant: Tenant, name: str, rule: dict | None = None, **extra) -> dict:
    r = tenant.http.post("/v1/segments", json={"name": name, "rule": rule or VIP, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def test_create_get_list_a_segment(tenant, builds):
    r = tenant.http.post("/v1/segments", json={"name": "VIPs", "description": "top 20 %", "rule": VIP})
    assert r.status_code == 201, r.text
    seg = r.json()
    assert r.headers["etag"] == f'"{seg["version"]}"' and r.headers["location"] == f"/v1/segments/{seg['id']}"
    assert seg["id"].startswith("seg_") and seg["name"] == "VIPs" and seg["description"] == "top 20 %"
    assert seg["status"] == "building" and seg["rule_version"] == 1 and seg["member_count"] == 0
    assert seg["build"]["percent"] == 0 and seg["build"]["started_at"]
    assert builds == [("start", tenant.id, seg["id"], 1)]
    got = tenant.http.get(f"/v1/segments/{seg['id']}")
    assert got.status_code == 200 and got.json() == seg and got.headers["etag"] == r.headers["etag"]
    from crm.segments import service

    with dynamodb_calls() as calls:  # GET /v1/segments/{id}: one request, the count included
        service.get(tenant.ctx, seg["id"])
    assert dict(calls) == {"GetItem": 1}
    listed = tenant.http.get("/v1/segments").json()
    assert [s["id"] for s in listed["data"]] == [seg["id"]] and listed["next_cursor"] is None


def test_a_bad_rule_is_422_naming_the_condition_and_changes_nothing(tenant, builds, raw_table):
    create(tenant, "Existing")
    before = partition_items(raw_table, tenant)
    bad = {"all": [{"field": "vip", "op": "=", "value": True},
                   {"any": [{"field": "tags", "op": "contains", "value": "a"},
                            {"field": "no_such_field", "op": "=", "value": 1}]}]}
    r = tenant.http.post("/v1/segments", json={"name": "Bad", "rule": bad})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "invalid_rule" and body["field"] == "rule.all[1].any[1]", body
    assert "rule.all[1].any[1]" in body["detail"]
    wrong_op = {"all": [{"field": "orders.count", "op": "contains", "value": 1}]}
    r = tenant.http.post("/v1/segments", json={"name": "Bad", "rule": wrong_op})
    assert r.status_code == 422 and r.json()["field"] == "rule.all[0]", r.text
    r = tenant.http.post("/v1/segments/preview", json={"rule": wrong_op})
    assert r.status_code == 422 and r.json()["field"] == "rule.all[0]", r.text
    seg = tenant.http.get("/v1/segments").json()["data"][0]
    r = tenant.http.patch(f"/v1/segments/{seg['id']}", json={"rule": bad})
    assert r.status_code == 422 and r.json()["field"] == "rule.all[1].any[1]", r.text
    from crm.segments.service import MAX_RULE_BYTES

    huge = {"any": [{"field": "tags", "op": "in", "value": [f"t{i:03d}-{j}" for i in range(100)]} for j in range(8)]}
    r = tenant.http.post("/v1/segments", json={"name": "Huge", "rule": huge})
    assert r.status_code == 422 and r.json()["field"] == "rule" and r.json()["max_bytes"] == MAX_RULE_BYTES, r.text
    for body in ({"rule": VIP}, {"name": "", "rule": VIP}, {"name": "x", "rule": VIP, "other": 1},
                 {"name": "x", "rule": [1]}):
        assert tenant.http.post("/v1/segments", json=body).status_code == 422, body
    assert partition_items(raw_table, tenant) == before
    assert builds == [("start", tenant.id, seg["id"], 1)]


def test_names_are_unique_per_tenant_and_segments_limited(tenant, other_tenant, builds):
    from crm.segments.service import MAX_SEGMENTS

    first = create(tenant, "Lapsed")
    r = tenant.http.post("/v1/segments", json={"name": "  LAPSED ", "rule": BIG})
    assert r.status_code == 409 and r.json()["code"] == "segment_name_taken", r.text
    assert r.json()["existing_segment_id"] == first["id"]
    create(other_tenant, "Lapsed")  # another tenant's names are its own
    for i in range(MAX_SEGMENTS - 1):
        create(tenant, f"S{i}")
    r = tenant.http.post("/v1/segments", json={"name": "One too many", "rule": VIP})
    assert r.status_code == 409 and r.json()["code"] == "segment_limit" and r.json()["limit"] == MAX_SEGMENTS
    assert str(MAX_SEGMENTS) in r.json()["detail"]
    pages, cursor = [], None
    while True:
        page = tenant.http.get("/v1/segments", params={"limit": 7, **({"cursor": cursor} if cursor else {})}).json()
        pages.append(page["data"])
        if not (cursor := page["next_cursor"]):
            break
    ids = [s["id"] for p in pages for s in p]
    assert len(ids) == MAX_SEGMENTS == len(set(ids)) and ids == sorted(ids) and len(pages) == 8
    assert tenant.http.delete(f"/v1/segments/{first['id']}").status_code == 204
    create(tenant, "lapsed")  # room again, and the name is free


def test_patch_with_if_match_and_a_new_rule_rebuilds(tenant, builds):
    seg = create(tenant, "Frequent", BIG)
    path = f"/v1/segments/{seg['id']}"
    stale = tenant.http.patch(path, json={"name": "x"}, headers={"If-Match": f'"{seg["version"] + 1}"'})
    assert stale.status_code == 412 and stale.json()["current_version"] == seg["version"], stale.text
    renamed = tenant.http.patch(path, json={"name": "Regulars", "description": "3+ orders"},
                                headers={"If-Match": f'"{seg["version"]}"'})
    assert renamed.status_code == 200, renamed.text
    body = renamed.json()
    assert body["name"] == "Regulars" and body["rule_version"] == 1 and body["version"] == seg["version"] + 1
    assert renamed.headers["etag"] == f'"{body["version"]}"' and len(builds) == 1  # no rebuild for a name
    assert tenant.http.patch(path, json={"name": "x"}, headers={"If-Match": f'"{seg["version"]}"'}).status_code == 412
    new_rule = {"any": [{"field": "orders.count", "op": ">=", "value": 5}, VIP]}
    changed = tenant.http.patch(path, json={"rule": new_rule, "description": None}).json()
    assert changed["rule_version"] == 2 and changed["status"] == "building" and changed["description"] is None
    assert builds[-1] == ("start", tenant.id, seg["id"], 2)
    assert tenant.http.get(path).json() == changed
    described = tenant.http.patch(path, json={"description": "d"}, headers={"If-Match": f'"{changed["version"]}"'})
    assert described.status_code == 200 and described.json()["version"] == changed["version"] + 1
    assert described.json()["description"] == "d" and described.json()["rule_version"] == 2
    r = tenant.http.patch(path, json={"description": "e"}, headers={"If-Match": f'"{changed["version"]}"'})
    assert r.status_code == 412 and tenant.http.get(path).json()["description"] == "d"
    changed = tenant.http.patch(path, json={"description": None}).json()
    same = tenant.http.patch(path, json={"rule": new_rule}).json()  # the same rule: nothing to rebuild
    assert same == changed and len(builds) == 2
    other = create(tenant, "Other")
    r = tenant.http.patch(f"/v1/segments/{other['id']}", json={"name": "regulars"})
    assert r.status_code == 409 and r.json()["code"] == "segment_name_taken"
    assert tenant.http.patch(path, json={"name": None, "rule": None}).json()["name"] == "Regulars"  # unchanged


def test_delete_removes_it_everywhere_and_drops_its_members(tenant, builds):
    seg = create(tenant, "Gone soon")
    keep = create(tenant, "Kept")
    path = f"/v1/segments/{seg['id']}"
    assert tenant.http.delete(path, headers={"If-Match": '"99"'}).status_code == 412
    assert tenant.http.delete(path).status_code == 204
    assert builds[-1] == ("drop", tenant.id, seg["id"])
    assert tenant.http.get(path).status_code == 404
    assert tenant.http.get(path + "/members").status_code == 404
    assert tenant.http.delete(path).status_code == 404
    assert [s["id"] for s in tenant.http.get("/v1/segments").json()["data"]] == [keep["id"]]
    from crm.segments import service

    assert set(service.catalogue(tenant.ctx).segments) == {keep["id"]}


def test_create_is_idempotent_with_a_key(tenant, builds):
    body = {"name": "Once", "rule": VIP}
    first = tenant.http.post("/v1/segments", json=body, headers={"Idempotency-Key": "seg-1"})
    again = tenant.http.post("/v1/segments", json=body, headers={"Idempotency-Key": "seg-1"})
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert len(tenant.http.get("/v1/segments").json()["data"]) == 1 and len(builds) == 1


def test_preview_is_exact_on_a_small_tenant(tenant, builds, raw_table):
    """Customers' METRICS written directly (crm/segments/maintain.py's, not merged here)."""
    customers = [tenant.create_customer(email=f"p{i}@example.com", name={"given": f"P{i}"}) for i in range(12)]
    for i, c in enumerate(customers):
        put_metrics(tenant, c["id"], vip=i % 3 == 0, **{"orders.count": i})
    reader = tenant.key_with("segments:read")  # without customers:read: no names or emails
    before = partition_items(raw_table, tenant)
    r = tenant.http.post("/v1/segments/preview", json={"rule": VIP, "limit": 2})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["count"] == 4 and got["evaluated"] == 12 and got["exact"] is True
    vips = {c["id"]: c for i, c in enumerate(customers) if i % 3 == 0}
    assert len(got["sample"]) == 2 and {s["customer_id"] for s in got["sample"]} <= set(vips)
    for s in got["sample"]:
        customer = vips[s["customer_id"]]
        assert s["email"] == customer["email"] and s["name"]["given"] == customer["name"]["given"]
    both = {"all": [VIP["all"][0], {"field": "orders.count", "op": ">", "value": 5}]}
    assert tenant.http.post("/v1/segments/preview", json={"rule": both}).json()["count"] == 2  # 6 and 9
    r = tenant.http.post("/v1/segments/preview", json={"rule": VIP}, headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 200 and all(s["name"] is None and s["email"] is None for s in r.json()["sample"])
    assert len(r.json()["sample"]) == 4
    assert partition_items(raw_table, tenant) == before  # a preview writes nothing
    assert builds == []


def test_preview_past_its_bound_extrapolates(tenant, builds, monkeypatch):
    from crm.billing import usage
    from crm.segments import service

    customers = [tenant.create_customer(email=f"x{i}@example.com")["id"] for i in range(20)]
    for i, cid in enumerate(customers):
        put_metrics(tenant, cid, vip=i % 2 == 0)
    usage.update(tenant.id, {"customers": 40})  # the live count the stream dispatcher keeps
    monkeypatch.setattr(service, "PREVIEW_MAX_CUSTOMERS", 10)
    got = tenant.http.post("/v1/segments/preview", json={"rule": VIP, "limit": 0}).json()
    assert got == {"count": 20, "sample": [], "evaluated": 10, "exact": False}


def put_members(tenant: Tenant, segment_id: str, customer_ids: list[str]) -> None:
    """Member items as a build or maintain.py writes them."""
    from crm.storage import SegmentMemberItem

    for cid in customer_ids:
        SegmentMemberItem(tenant.ctx.key("SEG", segment_id), f"M#{cid}", segment_id=segment_id, customer_id=cid,
                          since="2026-01-01T00:00:00Z", rule_version=1).save()


def test_members_are_paged_and_provisional_while_building(tenant, builds):
    from crm.storage import SegmentItem

    seg = create(tenant, "Members")
    cids = sorted(f"cus_01ARZ3NDEKTSV4RRFFQ69G5F{i:02d}" for i in range(10, 17))
    put_members(tenant, seg["id"], cids)
    path = f"/v1/segments/{seg['id']}/members"
    seen, cursor = [], None
    while True:
        page = tenant.http.get(path, params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += page["data"]
        if not (cursor := page["next_cursor"]):
            break
    assert [m["customer_id"] for m in seen] == cids
    assert all(m["provisional"] and m["since"] == "2026-01-01T00:00:00Z" for m in seen)
    item = SegmentItem.get(tenant.ctx.key("SEG", seg["id"]), "SEGMENT")
    item.update(actions=[SegmentItem.status.set("ready"),
                         SegmentItem.build.set({**item.build, "processed": 7, "total": 7})])
    got = tenant.http.get(path).json()
    assert not any(m["provisional"] for m in got["data"])
    assert tenant.http.get(f"/v1/segments/{seg['id']}").json()["build"]["percent"] == 100
    other = create(tenant, "Other")
    page1 = tenant.http.get(path, params={"limit": 2}).json()
    r = tenant.http.get(f"/v1/segments/{other['id']}/members", params={"cursor": page1["next_cursor"]})
    assert r.status_code == 422 and r.json()["field"] == "cursor"
    assert tenant.http.get("/v1/segments/seg_01ARZ3NDEKTSV4RRFFQ69G5FAV/members").status_code == 404


def test_a_customers_segments(tenant, builds):
    from crm.segments import service

    vip, big, gone = create(tenant, "VIP"), create(tenant, "Big"), create(tenant, "Deleted")
    c = tenant.create_customer(email="member@example.com")
    since = "2026-02-01T00:00:00Z"
    put_metrics(tenant, c["id"], memberships={
        vip["id"]: {"since": since, "v": 1, "name": "VIP"}, big["id"]: {"since": since, "v": 1, "name": "Big"},
        gone["id"]: {"since": since, "v": 1, "name": "Deleted"}})
    tenant.http.delete(f"/v1/segments/{gone['id']}")
    tenant.http.patch(f"/v1/segments/{big['id']}", json={"name": "Big spenders", "rule": BIG})  # v 2: rebuilding
    r = tenant.http.get(f"/v1/customers/{c['id']}/segments")
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [
        {"id": big["id"], "name": "Big spenders", "since": since, "provisional": True},
        {"id": vip["id"], "name": "VIP", "since": since, "provisional": False}]
    with dynamodb_calls() as calls:
        service.of_customer(tenant.ctx, c["id"])
    assert dict(calls) == {"BatchGetItem": 1}
    fresh = tenant.create_customer(email="nometrics@example.com")
    assert tenant.http.get(f"/v1/customers/{fresh['id']}/segments").json() == {"data": []}
    missing = tenant.http.get("/v1/customers/cus_01ARZ3NDEKTSV4RRFFQ69G5FAV/segments")
    assert missing.status_code == 404


def test_the_rfm_grid(tenant, raw_table):
    from crm.segments import rfm

    empty = tenant.http.get("/v1/segments/rfm").json()
    assert empty["grid"] == [[0] * 5] * 5 and empty["customers"] == 0 and empty["default_cuts"] is True
    assert empty["cuts"] == rfm.DEFAULT_CUTS and empty["cuts_at"] is None
    counts = {"c55": 7, "c11": 3, "c15": 2, "c51": 1}
    raw_table.put_item(Item={"pk": tenant.ctx.prefix, "sk": "RFM", "kind": "rfm_grid", **counts})
    cuts = {"r": [10, 30, 90, 180], "f": [1, 2, 3, 5], "m": [1000, 5000, 10000, 50000]}
    from crm.storage import SegmentCatalogueItem

    SegmentCatalogueItem(tenant.ctx.prefix, "SEGMENTS", cuts=cuts, cuts_at="2026-03-01T00:00:00Z").save()
    got = tenant.http.get("/v1/segments/rfm").json()
    assert got["grid"][4][4] == 7 and got["grid"][0][0] == 3 and got["grid"][0][4] == 2 and got["grid"][4][0] == 1
    assert got["customers"] == 13 and got["cuts"] == cuts and got["default_cuts"] is False
    assert got["cuts_at"] == "2026-03-01T00:00:00Z"
    assert got["names"] == [[rfm.named(r, f) for f in range(1, 6)] for r in range(1, 6)]
    by_name = {s["name"]: s["count"] for s in got["segments"]}
    assert sum(by_name.values()) == 13 and by_name[rfm.named(5, 5)] >= 7
    assert len(by_name) >= 11  # every named segment is listed, with 0 if empty


def test_scopes(tenant, builds):
    seg = create(tenant, "Scoped")

    def as_(*scopes):
        return {"Authorization": f"Bearer {tenant.key_with(*scopes)}"}

    customers_only = as_("customers:write", "orders:write")
    for method, path, body in [("GET", "/v1/segments", None), ("GET", f"/v1/segments/{seg['id']}", None),
                               ("POST", "/v1/segments", {"name": "n", "rule": VIP}),
                               ("POST", "/v1/segments/preview", {"rule": VIP}), ("GET", "/v1/segments/rfm", None)]:
        r = tenant.http.request(method, path, json=body, headers=customers_only)
        assert r.status_code == 403 and r.json()["required_scope"].startswith("segments:"), (path, r.text)
    reader = as_("segments:read")
    assert tenant.http.get(f"/v1/segments/{seg['id']}", headers=reader).status_code == 200
    r = tenant.http.patch(f"/v1/segments/{seg['id']}", json={"name": "n"}, headers=reader)
    assert r.status_code == 403 and r.json()["required_scope"] == "segments:write"
    writer = as_("segments:write")  # write implies read
    assert tenant.http.get("/v1/segments", headers=writer).status_code == 200
    assert tenant.http.post("/v1/segments", json={"name": "w", "rule": VIP}, headers=writer).status_code == 201
    key = tenant.http.post("/v1/api-keys", json={"name": "all", "scopes": [
        "customers:read", "customers:write", "orders:read", "orders:write", "segments:read", "segments:write",
        "admin"]})
    assert key.status_code == 201, key.text
