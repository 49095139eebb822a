"""Identity resolution for connector syncs (crm/identity.py) against the emulator, and
its settings and conflict routes over HTTP."""
from __future__ import annotations

import httpx
import pytest

from crm import identity
from tests.conftest import partition_items
from tests.dynamo_calls import dynamodb_calls


def upsert(tenant, recs, source="shop"):
    return identity.upsert(tenant.ctx, source, recs)


def customer(tenant, cid: str) -> dict:
    r = tenant.http.get(f"/v1/customers/{cid}")
    assert r.status_code == 200, r.text
    return r.json()


def lookup(tenant, **params) -> list[dict]:
    r = tenant.http.get("/v1/customers/lookup", params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def conflicts(tenant, **params) -> list[dict]:
    r = tenant.http.get("/v1/identity/conflicts", params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_links_by_external_id_then_email_then_phone_and_creates_the_rest(tenant):
    by_email = tenant.create_customer(email="ann@example.com")
    by_phone = tenant.create_customer(phone="+14155552671")
    by_xid = tenant.create_customer(email="cy@example.com", external_ids={"shop": "c-9"})
    recs = [("x-1", {"email": "ANN@example.com", "name": {"given": "Ann"}}),
            ("x-2", {"phone": "+1 415-555-2671", "locale": "en-US"}),
            ("c-9", {"locale": "fr"}),
            ("x-4", {"email": "new@example.com", "tags": ["synced"]})]
    out = upsert(tenant, recs)
    assert [(r.status, r.matched_by) for r in out] == [
        ("updated", "email"), ("updated", "phone"), ("updated", "external_id"), ("created", None)]
    assert [r.customer_id for r in out[:3]] == [by_email["id"], by_phone["id"], by_xid["id"]]
    ann = customer(tenant, by_email["id"])
    assert ann["external_ids"] == {"shop": "x-1"} and ann["name"] == {"given": "Ann", "family": None}
    assert customer(tenant, by_phone["id"])["external_ids"] == {"shop": "x-2"}
    assert customer(tenant, by_xid["id"])["locale"] == "fr"
    [new] = lookup(tenant, source="shop", external_id="x-4")
    assert new["id"] == out[3].customer_id and new["email"] == "new@example.com"

    # the same records again: every one found by its external id now, and nothing written
    with dynamodb_calls() as calls:
        again = upsert(tenant, recs)
    assert [(r.status, r.matched_by) for r in again] == [("unchanged", "external_id")] * 4
    assert [r.customer_id for r in again] == [r.customer_id for r in out]
    assert calls["TransactWriteItems"] == 0 and calls["PutItem"] == 0


def test_a_consent_without_a_time_does_not_make_a_resync_an_update(tenant):
    rec = [("k-1", {"email": "con@example.com", "consent": {"email": {"status": "granted", "source": "shop"}}})]
    assert upsert(tenant, rec)[0].status == "created"
    assert upsert(tenant, rec)[0].status == "unchanged"
    changed = [("k-1", {"consent": {"email": {"status": "denied", "source": "shop"}}})]
    assert upsert(tenant, changed)[0].status == "updated"


def test_the_order_is_configurable_per_tenant(tenant):
    holder = tenant.create_customer(email="eve@example.com", phone="+14155552672")
    other = tenant.create_customer(external_ids={"shop": "o-1"}, phone="+14155552673")

    # phone left out: a record with only a known phone is a new customer
    r = tenant.http.put("/v1/identity/settings", json={"order": ["external_id", "email"]})
    assert r.status_code == 200 and r.json()["order"] == ["external_id", "email"]
    [res] = upsert(tenant, [("p-1", {"phone": "+14155552672"})])
    assert res.status == "created" and res.customer_id != holder["id"]
    assert customer(tenant, holder["id"])["external_ids"] == {}

    # external id first (default): its customer is updated, the email stays where it is
    tenant.http.put("/v1/identity/settings", json={"order": ["external_id", "email", "phone"]})
    [res] = upsert(tenant, [("o-1", {"email": "eve@example.com", "locale": "de"})])
    assert (res.status, res.customer_id, res.matched_by) == ("conflict", other["id"], "external_id")
    assert customer(tenant, other["id"])["locale"] == "de"
    assert customer(tenant, other["id"])["email"] is None
    assert customer(tenant, holder["id"])["locale"] is None

    # email first: the email's customer would win, it holds no such external id, so
    # nothing is written for the record
    tenant.http.put("/v1/identity/settings", json={"order": ["email", "external_id"]})
    [res] = upsert(tenant, [("o-1", {"email": "eve@example.com", "locale": "it"})])
    assert (res.status, res.customer_id, res.matched_by) == ("conflict", None, "email")
    assert res.error.extra["reason"] == "matches_disagree"
    assert customer(tenant, other["id"])["locale"] == "de"
    assert customer(tenant, holder["id"])["locale"] is None

    # email left out: an email held by a customer no rule links to is never taken
    tenant.http.put("/v1/identity/settings", json={"order": ["external_id"]})
    [res] = upsert(tenant, [("z-1", {"email": "eve@example.com"})])
    assert res.status == "conflict" and res.error.extra["reason"] == "email_taken"
    assert lookup(tenant, source="shop", external_id="z-1") == []


def test_conflicts_are_recorded_once_listed_and_nothing_is_guessed(tenant, raw_table):
    a = tenant.create_customer(email="a@example.com", external_ids={"shop": "a-1"})
    tenant.create_customer(email="p1@example.com", phone="+14155552674")
    tenant.create_customer(email="p2@example.com", phone="+14155552674")
    c = tenant.create_customer(external_ids={"shop": "c-1"})
    d = tenant.create_customer(email="d@example.com")
    recs = [("a-2", {"email": "a@example.com", "locale": "fr"}),      # a has another shop id
            ("p-1", {"phone": "+14155552674"}),                        # two customers share it
            ("c-1", {"email": "d@example.com", "locale": "de"})]       # xid -> c, email -> d
    before = {i["pk"] + i["sk"] for i in partition_items(raw_table, tenant)}
    out = upsert(tenant, recs)
    assert [r.status for r in out] == ["conflict"] * 3
    assert [r.error.extra["reason"] for r in out] == ["different_external_id", "ambiguous_phone",
                                                      "matches_disagree"]
    assert out[2].customer_id == c["id"]
    assert customer(tenant, a["id"])["external_ids"] == {"shop": "a-1"}
    assert customer(tenant, a["id"])["locale"] is None
    assert lookup(tenant, source="shop", external_id="p-1") == []
    assert customer(tenant, c["id"])["locale"] == "de" and customer(tenant, c["id"])["email"] is None
    assert customer(tenant, d["id"])["locale"] is None

    again = upsert(tenant, recs)
    assert [r.conflict_id for r in again] == [r.conflict_id for r in out]
    assert [r.status for r in again] == ["conflict"] * 3
    listed = conflicts(tenant)
    assert len(listed) == 3 and {x["id"] for x in listed} == {r.conflict_id for r in out}
    by_reason = {x["reason"]: x for x in listed}
    assert by_reason["different_external_id"]["candidate_customer_ids"] == [a["id"]]
    assert by_reason["different_external_id"]["rule"] == "email"
    assert by_reason["matches_disagree"]["candidate_customer_ids"] == [c["id"], d["id"]]
    assert by_reason["ambiguous_phone"]["phone"] == "+14155552674"
    assert all(x["status"] == "open" and x["source"] == "shop" for x in listed)
    # apart from the conflicts and c's update, nothing was written
    after = {i["pk"] + i["sk"] for i in partition_items(raw_table, tenant)}
    assert {k for k in after - before if "#CONFLICT#" not in k} == set()

    # pages, newest first, each conflict once
    first = tenant.http.get("/v1/identity/conflicts", params={"limit": 2}).json()
    second = tenant.http.get("/v1/identity/conflicts",
                             params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert len(first["data"]) == 2 and len(second["data"]) == 1 and second["next_cursor"] is None
    assert {x["id"] for x in first["data"] + second["data"]} == {x["id"] for x in listed}

    cid = by_reason["ambiguous_phone"]["id"]
    r = tenant.http.post(f"/v1/identity/conflicts/{cid}/resolve", json={"note": "two people"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved" and r.json()["note"] == "two people"
    assert [x["id"] for x in conflicts(tenant, status="resolved")] == [cid]
    assert len(conflicts(tenant, status="open")) == 2
    upsert(tenant, recs)  # seen again: stored once, and stays resolved
    assert len(conflicts(tenant)) == 3 and len(conflicts(tenant, status="open")) == 2
    again = tenant.http.post(f"/v1/identity/conflicts/{cid}/resolve", json={})
    assert again.status_code == 200 and again.json()["resolved_at"] == r.json()["resolved_at"]


def test_one_email_twice_in_a_batch_makes_one_customer(tenant):
    out = upsert(tenant, [(None, {"email": "dup@example.com", "name": {"given": "Ann"}}),
                          (None, {"email": "DUP@example.com", "locale": "en"}),
                          ("s-1", {"email": "same@example.com", "locale": "en"}),
                          ("s-1", {"email": "same@example.com", "locale": "fr"}),
                          ("s-2", {"email": "twice@example.com"}),
                          (None, {"email": "twice@example.com", "locale": "nl"})])
    assert [r.status for r in out] == ["created", "updated"] * 3
    assert [r.matched_by for r in out[1::2]] == ["email", "external_id", "email"]
    assert all(out[i].customer_id == out[i + 1].customer_id for i in (0, 2, 4))
    [dup] = lookup(tenant, email="dup@example.com")
    assert dup["name"]["given"] == "Ann" and dup["locale"] == "en"
    [same] = lookup(tenant, email="same@example.com")
    assert same["locale"] == "fr" and same["external_ids"] == {"shop": "s-1"}
    [twice] = lookup(tenant, email="twice@example.com")
    assert twice["locale"] == "nl" and twice["external_ids"] == {"shop": "s-2"}


def test_an_email_moving_between_records_of_one_call_is_resolved_in_order(tenant):
    out = upsert(tenant, [("m-1", {"email": "old@example.com"})])
    out = upsert(tenant, [("m-1", {"email": "new@example.com"}),     # m-1 gives old@ up
                          ("m-2", {"email": "old@example.com"})])    # and m-2 wants it
    # a replaced email stays m-1's for 90 days (findable, guarded): m-2 is a conflict
    assert [r.status for r in out] == ["updated", "conflict"]
    assert lookup(tenant, email="new@example.com")[0]["external_ids"] == {"shop": "m-1"}
    assert lookup(tenant, email="old@example.com")[0]["external_ids"] == {"shop": "m-1"}


def test_an_invalid_record_is_an_error_and_writes_nothing(tenant, raw_table):
    out = upsert(tenant, [("ok", {"email": "ok@example.com"}),
                          ("bad-1", {"email": "not-an-email", "name": {"given": "X"}}),
                          ("bad-2", {"email": "b2@example.com", "external_ids": {"shop": "x"}}),
                          (None, {"name": {"given": "Nobody"}}),
                          ("bad\x01", {"email": "b4@example.com"}),
                          ("bad-5", {"email": "b5@example.com", "shoe_size": 9})])
    assert [r.status for r in out] == ["created"] + ["error"] * 5
    assert [e["field"] for e in out[1].errors] == ["email"]
    assert [e["field"] for e in out[2].errors] == ["external_ids"]
    assert [e["field"] for e in out[3].errors] == ["external_id"]
    assert [e["field"] for e in out[4].errors] == ["external_id"]
    assert [e["field"] for e in out[5].errors] == ["shoe_size"]
    profiles = [i for i in partition_items(raw_table, tenant) if i["sk"] == "PROFILE"]
    assert [p["customer_id"] for p in profiles] == [out[0].customer_id]
    with pytest.raises(Exception) as exc:
        identity.upsert(tenant.ctx, "Bad Source", [("1", {"email": "x@example.com"})])
    assert getattr(exc.value, "field", None) == "source"
    with pytest.raises(Exception) as exc:
        identity.upsert(tenant.ctx, "shop", [("1", {"email": "x@example.com"})] * 251)
    assert getattr(exc.value, "field", None) == "records"


def test_settings_and_conflicts_are_per_tenant(tenant, other_tenant):
    tenant.create_customer(email="iso@example.com", external_ids={"shop": "i-1"})
    tenant.http.put("/v1/identity/settings", json={"order": ["external_id", "phone"]})
    [res] = upsert(tenant, [("i-2", {"email": "iso@example.com"})])
    assert res.status == "conflict" and res.error.extra["reason"] == "email_taken"

    assert other_tenant.http.get("/v1/identity/settings").json() == {
        "order": ["external_id", "email", "phone"], "updated_at": None}
    assert conflicts(other_tenant) == [] and conflicts(other_tenant, status="open") == []
    cursor = tenant.http.get("/v1/identity/conflicts", params={"limit": 1}).json()
    r = other_tenant.http.post(f"/v1/identity/conflicts/{res.conflict_id}/resolve", json={})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert [x["status"] for x in conflicts(tenant)] == ["open"]
    # B's same records land on B's own customers
    [b] = upsert(other_tenant, [("i-2", {"email": "iso@example.com"})])
    assert b.status == "created"
    assert cursor["next_cursor"] is None


def test_settings_and_conflict_routes_refuse_bad_requests(tenant, anon):
    assert anon.get("/v1/identity/settings").status_code == 401
    assert anon.get("/v1/identity/conflicts").status_code == 401
    base = str(tenant.http.base_url)
    reader = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tenant.key_with('customers:read')}"})
    writer = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tenant.key_with('customers:write')}"})
    assert reader.get("/v1/identity/settings").status_code == 403
    assert writer.put("/v1/identity/settings", json={"order": ["external_id"]}).status_code == 403
    assert reader.get("/v1/identity/conflicts").status_code == 200
    r = reader.post("/v1/identity/conflicts/cfl_000000000000000000000000/resolve", json={})
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    r = writer.post("/v1/identity/conflicts/cfl_000000000000000000000000/resolve", json={})
    assert r.status_code == 404
    assert writer.post("/v1/identity/conflicts/nope/resolve", json={}).status_code == 404
    for body, field in [({"order": ["email", "fax"]}, "order.1"),
                        ({"order": ["external_id", "email", "email"]}, "order"),
                        ({"order": ["email", "phone"]}, "order"),
                        ({"order": []}, "order"),
                        ({"order": ["external_id"], "extra": 1}, "extra"),
                        ({}, "order")]:
        r = tenant.http.put("/v1/identity/settings", json=body)
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
    assert tenant.http.get("/v1/identity/settings").json()["updated_at"] is None  # nothing stored
    for params, field in [({"status": "closed"}, "status"), ({"limit": 0}, "limit"),
                          ({"cursor": "garbage"}, "cursor")]:
        r = tenant.http.get("/v1/identity/conflicts", params=params)
        assert r.status_code == 422 and r.json()["field"] == field, (params, r.text)
    r = tenant.http.post("/v1/identity/conflicts/cfl_000000000000000000000000/resolve",
                         json={"note": "x" * 501})
    assert r.status_code == 422 and r.json()["field"] == "note"


def test_requests_per_100_records_are_as_documented(tenant):
    new = [(f"n-{i}", {"email": f"n{i}@example.com", "name": {"given": f"N{i}"}}) for i in range(100)]
    with dynamodb_calls() as calls:
        out = upsert(tenant, new)
    assert {r.status for r in out} == {"created"}
    # 5 items a customer (profile, 2 guards, 2 search entries): 20 a transaction; the
    # plan limit's first look at this tenant (its plan and live count, then cached)
    assert calls == {"BatchGetItem": 3, "TransactWriteItems": 5, "GetItem": 2}, calls
    with dynamodb_calls() as calls:
        out = upsert(tenant, new)
    assert {r.status for r in out} == {"unchanged"}
    assert calls == {"BatchGetItem": 4}, calls
    changed = [(xid, {**p, "locale": "en"}) for xid, p in new]
    with dynamodb_calls() as calls:
        out = upsert(tenant, changed)
    assert {r.status for r in out} == {"updated"}
    assert calls == {"BatchGetItem": 4, "TransactWriteItems": 1}, calls
    # a new source for the same customers: linked by email, a guard each
    with dynamodb_calls() as calls:
        out = identity.upsert(tenant.ctx, "erp", [(f"e-{i}", {"email": f"n{i}@example.com"}) for i in range(100)])
    assert {(r.status, r.matched_by) for r in out} == {("updated", "email")}
    assert calls == {"BatchGetItem": 4, "TransactWriteItems": 2}, calls
