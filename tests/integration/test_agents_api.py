"""/v1/agents against the running stack (issue 16; the protocol in docs/api.md "Agents"):
keys shown once and revocable, status from heartbeats, uploads that create and update
customers under the agent's source, every conflict rule recorded, a bad record parked
while the batch applies, a duplicate seq that writes nothing, orders, fetch."""
from __future__ import annotations

import httpx

from tests.conftest import partition_items

HLC_OLD = "0000000000001-00000"
HLC_FUTURE = "9999999999999-00000"


def _agent(tenant, name="shop pos", **extra):
    r = tenant.http.post("/v1/agents", json={"name": name, **extra})
    assert r.status_code == 201, r.text
    body = r.json()
    client = httpx.Client(base_url=str(tenant.http.base_url), timeout=30,
                          headers={"Authorization": f"Bearer {body['key']}"})
    return body, client


def _customer(seq, xid, fields, **extra):
    return {"seq": seq, "kind": "customer", "external_id": xid, "hlc": "1764763200123-00000", "fields": fields,
            **extra}


def _f(value, rule="latest", hlc="1764763200123-00000", **base):
    return {"value": value, "rule": rule, "hlc": hlc, **base}


def test_create_list_get_me_revoke_reissue(tenant):
    body, agent = _agent(tenant)
    assert body["key"].startswith("rpk_") and body["id"].startswith("agt_")
    assert body["source"] == f"agent:{body['id']}" and body["status"] == "active" and not body["online"]
    path = f"/v1/agents/{body['id']}"
    listed = tenant.http.get("/v1/agents").json()["data"]
    assert [a["id"] for a in listed] == [body["id"]] and "key" not in listed[0]
    assert "key" not in tenant.http.get(path).json()
    me = agent.get("/v1/agents/me")
    assert me.status_code == 200 and me.json()["id"] == body["id"] and "key" not in me.json()
    assert agent.get(path).status_code == 200
    assert agent.get("/v1/agents").status_code == 403  # admin only
    assert tenant.http.get("/v1/agents/me").status_code == 403  # an admin key is no agent
    assert agent.get("/v1/changes").status_code == 200  # agent implies changes:read
    assert agent.get("/v1/customers").status_code == 403
    keys = tenant.http.get("/v1/api-keys").json()["data"]
    assert any(k.get("agent_id") == body["id"] and k["scopes"] == ["agent"] for k in keys)
    refused = tenant.http.post("/v1/api-keys", json={"name": "x", "scopes": ["agent"]})
    assert refused.status_code == 422
    agent_key = next(k for k in keys if k.get("agent_id") == body["id"])
    assert tenant.http.post(f"/v1/api-keys/{agent_key['id']}/rotate").status_code == 422

    revoked = tenant.http.delete(path)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked" and "key" not in revoked.json()
    assert agent.get("/v1/agents/me").status_code == 401
    assert agent.post(f"{path}/heartbeat", json=_beat()).status_code == 401
    again = tenant.http.post(f"{path}/key")
    assert again.status_code == 201 and again.json()["status"] == "active" and again.json()["key"] != body["key"]
    assert again.json()["key_prefix"] != body["key_prefix"]
    assert agent.get("/v1/agents/me").status_code == 401  # the old key stays revoked
    fresh = httpx.Client(base_url=str(tenant.http.base_url), headers={"Authorization": f"Bearer {again.json()['key']}"})
    assert fresh.get("/v1/agents/me").json()["status"] == "active"


def test_source_taken_and_validation(tenant):
    _agent(tenant, "a", source="pos")
    r = tenant.http.post("/v1/agents", json={"name": "b", "source": "pos"})
    assert r.status_code == 409 and r.json()["code"] == "source_taken"
    assert tenant.http.post("/v1/agents", json={"name": ""}).status_code == 422
    assert tenant.http.post("/v1/agents", json={"name": "c", "source": "agent:agt_x"}).status_code == 422
    assert tenant.http.get("/v1/agents/agt_nope").status_code == 404


def _beat(**over):
    return {"version": "1.2.3", "queued": 4, "parked": 1, "lag_seconds": 2.5,
            "last_sync_at": "2026-01-01T00:00:00Z", "last_error": "db timeout", "hlc": "1764763200123-00000", **over}


def test_heartbeat_status(tenant):
    body, agent = _agent(tenant)
    path = f"/v1/agents/{body['id']}"
    r = agent.post(f"{path}/heartbeat", json=_beat())
    assert r.status_code == 200, r.text
    assert len(r.json()["hlc"]) == 19
    shown = tenant.http.get(path).json()
    assert shown["online"] and shown["version"] == "1.2.3" and shown["queued"] == 4 and shown["parked"] == 1
    assert shown["lag_seconds"] == 2.5 and shown["last_error"] == "db timeout"
    assert shown["last_sync_at"].startswith("2026-01-01T00:00:00")
    cleared = agent.post(f"{path}/heartbeat", json=_beat(last_error=None, lag_seconds=None)).json()["agent"]
    assert cleared["last_error"] is None and cleared["lag_seconds"] is None
    assert tenant.http.post(f"{path}/heartbeat", json=_beat()).status_code == 403  # not the agent's key
    assert agent.post(f"{path}/heartbeat", json=_beat(queued=-1)).status_code == 422


def test_uploads_create_update_and_conflicts(tenant):
    body, agent = _agent(tenant)
    path, source = f"/v1/agents/{body['id']}", body["source"]
    r = agent.post(f"{path}/uploads", json={"records": [
        _customer(1, "42", {"email": _f("Ada@Example.com"), "name.given": _f("Ada"), "name.family": _f("L"),
                            "tags": _f(["vip"]), "attributes.store": _f("north")})]})
    assert r.status_code == 200, r.text
    [res] = r.json()["results"]
    assert res["status"] == "created" and r.json()["acked_seq"] == 1
    assert res["values"]["email"] == "ada@example.com" and res["values"]["name.given"] == "Ada"
    cid = res["customer_id"]
    customer = tenant.http.get(f"/v1/customers/{cid}").json()
    assert customer["external_ids"] == {source: "42"} and customer["attributes"] == {"store": "north"}

    # the cloud changes the fields; then the agent uploads its own edits on the same fields
    assert tenant.http.patch(f"/v1/customers/{cid}", json={
        "name": {"given": "Cloud", "family": "Side"}, "locale": "fr", "attributes": {"store": "south"},
        "tags": ["cloud"]}).status_code == 200
    r = agent.post(f"{path}/uploads", json={"records": [_customer(2, "42", {
        "name.given": _f("Local", rule="cloud", base="Ada"),
        "name.family": _f("Mine", rule="local", base="L"),
        "locale": _f("de", rule="latest", hlc=HLC_OLD),  # older than the cloud's edit: cloud wins
        "attributes.store": _f("west", rule="latest", hlc=HLC_FUTURE, base="north"),  # newer: local wins
        "tags": _f(["cloud"], rule="cloud", base=["vip"]),  # same value: nothing
        "email": _f("ada@example.com", base="ada@example.com"),  # unchanged
    })]})
    [res] = r.json()["results"]
    assert res["status"] == "updated", res
    won = {c["field"]: (c["winner"], c["rule"]) for c in res["conflicts"]}
    assert won == {"name.given": ("cloud", "cloud"), "name.family": ("local", "local"),
                   "locale": ("cloud", "latest"), "attributes.store": ("local", "latest")}
    assert res["values"] == {"name.given": "Cloud", "name.family": "Mine", "locale": "fr",
                             "attributes.store": "west", "tags": ["cloud"], "email": "ada@example.com"}
    listed = agent.get(f"{path}/conflicts").json()["data"]
    assert {c["field"] for c in listed} == set(won)
    given = next(c for c in listed if c["field"] == "name.given")
    assert given["local_value"] == "Local" and given["cloud_value"] == "Cloud" and given["customer_id"] == cid
    assert given["id"].startswith("acf_") and given["seq"] == 2 and given["external_id"] == "42"
    assert tenant.http.get(path).json()["conflicts"] == 4
    assert tenant.http.get(f"{path}/conflicts", params={"limit": 1}).json()["next_cursor"]
    # a base equal to the cloud's value applies without a conflict
    r = agent.post(f"{path}/uploads", json={"records": [_customer(3, "42", {
        "locale": _f("it", rule="cloud", base="fr")})]}).json()
    assert r["results"][0]["conflicts"] == [] and r["results"][0]["values"] == {"locale": "it"}


def test_link_to_cloud_customer_and_identity_match(tenant):
    body, agent = _agent(tenant)
    path = f"/v1/agents/{body['id']}"
    cloud = tenant.create_customer(email="cloud@example.com", locale="en")
    r = agent.post(f"{path}/uploads", json={"records": [
        _customer(5, "row-1", {"locale": _f("en", base="en")}, customer_id=cloud["id"]),
        _customer(6, "row-2", {"email": _f("other@example.com")}, customer_id="cus_01ARZ3NDEKTSV4RRFFQ69G5FAV")]})
    first, second = r.json()["results"]
    assert first["status"] == "updated" and first["customer_id"] == cloud["id"]
    assert tenant.http.get(f"/v1/customers/{cloud['id']}").json()["external_ids"] == {body["source"]: "row-1"}
    assert second["status"] == "rejected" and "not found" in second["reason"]
    # a new row whose email a cloud customer has: attached to it, then the rules apply
    other = tenant.create_customer(email="match@example.com", name={"given": "Cloudy"})
    r = agent.post(f"{path}/uploads", json={"records": [_customer(7, "row-3", {
        "email": _f("match@example.com"), "name.given": _f("Localy", rule="local"), "locale": _f("pt")})]})
    [res] = r.json()["results"]
    assert res["customer_id"] == other["id"] and res["status"] == "updated"
    assert res["values"] == {"email": "match@example.com", "name.given": "Localy", "locale": "pt"}
    assert res["conflicts"] == [{"field": "name.given", "winner": "local", "rule": "local"}]


def test_rejected_record_is_parked_and_the_rest_apply(tenant):
    body, agent = _agent(tenant)
    path = f"/v1/agents/{body['id']}"
    r = agent.post(f"{path}/uploads", json={"records": [
        _customer(1, "a", {"email": _f("a@example.com")}),
        _customer(2, "b", {"email": _f("not an email")}),
        {"seq": 3, "kind": "customer", "external_id": "c"},
        _customer(4, "d", {"nope": _f("x")}),
        {"seq": 5, "kind": "spaceship"},
        _customer(6, "e", {"email": _f("e@example.com")})]})
    assert r.status_code == 200, r.text
    statuses = [x["status"] for x in r.json()["results"]]
    assert statuses == ["created", "rejected", "rejected", "rejected", "rejected", "created"]
    assert r.json()["acked_seq"] == 6
    bad = r.json()["results"][1]
    assert bad["errors"][0]["field"] == "fields.email.value" and "not an email" not in str(bad)
    parked = agent.get(f"{path}/parked").json()["data"]
    assert [p["seq"] for p in parked] == [5, 4, 3, 2]
    assert parked[-1]["external_id"] == "b" and parked[-1]["reason"]
    assert tenant.http.get(path).json()["rejected"] == 4
    # a whole-request error: records is not a list of objects with a seq
    assert agent.post(f"{path}/uploads", json={"records": [{"kind": "customer"}]}).status_code == 422
    assert agent.post(f"{path}/uploads", json={"records": [{"seq": 0}]}).status_code == 422
    assert agent.post(f"{path}/uploads", json={"records": [{"seq": 1}] * 101}).status_code == 422


def test_duplicate_seq_writes_nothing(tenant, raw_table):
    body, agent = _agent(tenant)
    path = f"/v1/agents/{body['id']}"
    batch = {"records": [_customer(10, "dup", {"email": _f("dup@example.com")}),
                         _customer(11, "bad", {"email": _f("nope")})]}
    first = agent.post(f"{path}/uploads", json=batch).json()
    before = partition_items(raw_table, tenant)
    again = agent.post(f"{path}/uploads", json=batch)
    assert again.status_code == 200
    results = again.json()["results"]
    assert [x["status"] for x in results] == ["duplicate", "duplicate"]
    assert results[0]["customer_id"] == first["results"][0]["customer_id"]
    assert results[0]["values"] == {"email": "dup@example.com"} and again.json()["acked_seq"] == 11
    assert partition_items(raw_table, tenant) == before
    # a lower seq with other content is a duplicate too: nothing is applied
    r = agent.post(f"{path}/uploads", json={"records": [_customer(3, "dup", {"email": _f("x@example.com")})]})
    assert r.json()["results"][0]["status"] == "duplicate" and partition_items(raw_table, tenant) == before


ORDER = {"updated_at": "2026-02-01T10:00:00Z", "channel": "store", "currency": "EUR",
         "placed_at": "2026-02-01T09:00:00Z", "total": 1000,
         "lines": [{"sku": "s1", "name": "Soap", "quantity": 2, "unit_price": 500}]}


def test_orders_upload_and_fetch(tenant):
    body, agent = _agent(tenant)
    path = f"/v1/agents/{body['id']}"
    r = agent.post(f"{path}/uploads", json={"records": [
        _customer(1, "c1", {"email": _f("buyer@example.com")}),
        {"seq": 2, "kind": "order", "external_id": "o1", "hlc": "1764763200123-00000",
         "order": {**ORDER, "customer": {"external_id": "c1"}}},
        {"seq": 3, "kind": "order", "external_id": "o2", "hlc": "1764763200123-00000",
         "order": {**ORDER, "email": "guest@example.com"}},
        {"seq": 4, "kind": "order", "external_id": "o3", "hlc": "1764763200123-00000",
         "order": {"total": "lots"}}]})
    assert r.status_code == 200, r.text
    cust, o1, o2, o3 = r.json()["results"]
    assert o1["status"] == "created" and o1["order_id"].startswith("ord_") and o1["customer_id"] == cust["customer_id"]
    assert o2["status"] == "created" and o3["status"] == "rejected"
    order = tenant.http.get(f"/v1/orders/{o1['order_id']}").json()
    assert order["customer_id"] == cust["customer_id"] and order["total"] == 1000
    again = agent.post(f"{path}/uploads", json={"records": [
        {"seq": 2, "kind": "order", "external_id": "o1", "hlc": "1764763200123-00000", "order": ORDER}]})
    assert again.json()["results"][0] == {**again.json()["results"][0], "status": "duplicate",
                                          "order_id": o1["order_id"]}
    fetched = agent.post(f"{path}/fetch", json={"customer_ids": [cust["customer_id"], "cus_01ARZ3NDEKTSV4RRFFQ69G5FAV"]})
    assert fetched.status_code == 200, fetched.text
    [one] = fetched.json()["data"]
    assert one["customer_id"] == cust["customer_id"] and one["external_id"] == "c1"
    assert one["profile"]["email"] == "buyer@example.com" and one["status"] == "active" and one["merged_into"] is None
    assert fetched.json()["hlc"]
    assert tenant.http.post(f"{path}/fetch", json={"customer_ids": [cust["customer_id"]]}).status_code == 403


def test_another_agent_of_the_tenant_is_refused(tenant):
    _, a1 = _agent(tenant, "one")
    two, _ = _agent(tenant, "two")
    for method, suffix, json in [("GET", "", None), ("POST", "/heartbeat", _beat()),
                                 ("POST", "/uploads", {"records": []}), ("GET", "/parked", None),
                                 ("GET", "/conflicts", None), ("POST", "/fetch",
                                                                {"customer_ids": ["cus_01ARZ3NDEKTSV4RRFFQ69G5FAV"]})]:
        r = a1.request(method, f"/v1/agents/{two['id']}{suffix}", json=json)
        assert r.status_code == 403 and r.json()["code"] == "insufficient_scope", (suffix, r.text)
    for method, suffix in [("DELETE", ""), ("POST", "/key")]:
        assert a1.request(method, f"/v1/agents/{two['id']}{suffix}").status_code == 403


def test_agent_limit(tenant, monkeypatch):
    from crm.agents import registry

    monkeypatch.setattr(registry, "MAX_AGENTS", 1)  # the server runs in this process
    _agent(tenant, "only")
    r = tenant.http.post("/v1/agents", json={"name": "too many"})
    assert r.status_code == 422 and r.json()["code"] == "agent_limit"


def test_erasure_deletes_the_customers_conflicts(tenant):
    from crm import erasure
    from crm.agents import conflicts

    body, agent = _agent(tenant)
    path = f"/v1/agents/{body['id']}"
    cid = agent.post(f"{path}/uploads", json={"records": [_customer(1, "x", {"email": _f("er@example.com"),
                                                                             "locale": _f("en")})]}
                     ).json()["results"][0]["customer_id"]
    tenant.http.patch(f"/v1/customers/{cid}", json={"locale": "fr"})
    agent.post(f"{path}/uploads", json={"records": [_customer(2, "x", {"locale": _f("de", rule="cloud", base="en")})]})
    assert len(agent.get(f"{path}/conflicts").json()["data"]) == 1
    assert erasure._HOOKS["agent_conflict"](tenant.ctx, cid, []) == 1
    assert agent.get(f"{path}/conflicts").json()["data"] == []
    assert conflicts.erase(tenant.ctx, cid) == 0
