"""The change feed (GET /v1/changes) over the running stack: every domain event of the
tenant, in commit order, each object's changes in order, exactly once, by cursor."""
from __future__ import annotations

import time

from tests.integration.test_loyalty_api import place


def _all(tenant, cursor=None, **params) -> tuple[list[dict], str]:
    out = []
    while True:
        q = {"limit": 3, **params, **({"cursor": cursor} if cursor else {})}
        r = tenant.http.get("/v1/changes", params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["data"]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            return out, cursor


def test_changes_arrive_in_commit_order_once_and_resume_from_a_cursor(tenant, other_tenant, event_pipeline):
    start = tenant.http.get("/v1/changes", params={"cursor": "now"}).json()
    assert start["data"] == [] and start["has_more"] is False
    cid = tenant.create_customer(email="feed@example.com")["id"]
    order = place(tenant, cid, "feed-1", total=5000, paid_days_ago=1)
    other_tenant.create_customer(email="feed@example.com")  # never in tenant's feed
    assert event_pipeline.wait_idle(timeout=60)

    changes, cursor = _all(tenant, start["next_cursor"])
    types = [c["type"] for c in changes]
    assert types.index("customer.created") < types.index("order.placed") < types.index("order.paid")
    assert len({c["id"] for c in changes}) == len(changes)  # exactly once
    assert all(c["customer_id"] == cid for c in changes)
    paid = next(c for c in changes if c["type"] == "order.paid")
    assert paid["object"] == {"type": "order", "id": order["id"]}
    assert paid["data"]["status"] == "paid" and paid["data"]["order_id"] == order["id"]
    assert paid["committed_at"] >= paid["occurred_at"][:10]
    # the whole feed from its start holds the same, and nothing of the other tenant
    everything, _ = _all(tenant)
    assert [c["id"] for c in everything] == [c["id"] for c in changes]

    # nothing new after the cursor; a later change comes after it
    assert tenant.http.get("/v1/changes", params={"cursor": cursor}).json()["data"] == []
    assert tenant.http.post(f"/v1/orders/{order['id']}/refunds", json={"amount": 5000}).status_code in (200, 201)
    assert event_pipeline.wait_idle(timeout=60)
    later, _ = _all(tenant, cursor)
    assert [c["type"] for c in later if c["type"].startswith("order.")] == ["order.refunded"]


def test_types_filter_and_bad_input(tenant, event_pipeline):
    start = tenant.http.get("/v1/changes", params={"cursor": "now"}).json()["next_cursor"]
    cid = tenant.create_customer(email="types@example.com")["id"]
    place(tenant, cid, "types-1", total=1000, paid_days_ago=1)
    assert event_pipeline.wait_idle(timeout=60)
    orders, _ = _all(tenant, start, types="order.*")
    assert orders and {c["type"] for c in orders} == {"order.placed", "order.paid"}
    one = tenant.http.get("/v1/changes", params={"cursor": start, "types": "order.*", "limit": 1}).json()
    assert [c["type"] for c in one["data"]] == ["order.placed"] and one["has_more"] is True  # a full page, not an empty one
    rest = tenant.http.get("/v1/changes", params={"cursor": one["next_cursor"], "types": "order.*"}).json()
    assert [c["type"] for c in rest["data"]] == ["order.paid"]
    exact, _ = _all(tenant, start, types="customer.created,order.paid")
    assert sorted(c["type"] for c in exact) == ["customer.created", "order.paid"]

    for params, field in (({"types": "order.bogus"}, "types"), ({"types": "nope.*"}, "types"),
                          ({"cursor": "not-a-cursor"}, "cursor"), ({"limit": 0}, "limit"),
                          ({"limit": 501}, "limit")):
        r = tenant.http.get("/v1/changes", params=params)
        assert r.status_code == 422 and r.json()["field"] == field, (params, r.text)


def test_a_cursor_past_retention_is_gone_and_names_the_oldest(tenant):
    from crm import changes

    old = changes.encode(changes.horizon(time.time_ns() // 1000, 31))
    r = tenant.http.get("/v1/changes", params={"cursor": old})
    assert r.status_code == 410
    body = r.json()
    assert body["code"] == "cursor_expired" and body["retention_days"] == 30
    assert tenant.http.get("/v1/changes", params={"cursor": body["oldest_cursor"]}).status_code == 200


def test_the_feed_scope(tenant):
    import httpx

    feed_only = httpx.Client(base_url=str(tenant.http.base_url),
                             headers={"Authorization": f"Bearer {tenant.key_with('changes:read')}"})
    assert feed_only.get("/v1/changes").status_code == 200
    assert feed_only.get("/v1/customers").status_code == 403
    customers_only = httpx.Client(base_url=str(tenant.http.base_url),
                                  headers={"Authorization": f"Bearer {tenant.key_with('customers:read')}"})
    assert customers_only.get("/v1/changes").status_code == 403


def test_replaying_the_stream_twice_changes_nothing(tenant, tail, raw_table):
    """Every stream record delivered again (twice) to the feed's append: no entry is
    added or changed, and the seqs stay where they were."""
    from crm import changes
    from functions.dispatch import events_of

    tail.records()  # from here on
    cid = tenant.create_customer(email="replay@example.com")["id"]
    place(tenant, cid, "replay-1", total=2000, paid_days_ago=1)
    records = tail.records()
    events = [e for r in records for e in events_of(r)]
    assert {"customer.created", "order.placed", "order.paid"} <= {e["type"] for e in events}
    changes.append(events)

    def feed() -> list[dict]:
        return raw_table.query(KeyConditionExpression="pk = :p",
                               ExpressionAttributeValues={":p": tenant.ctx.key("CHANGES")})["Items"]

    first = feed()
    assert len(first) == len({e["id"] for e in events})
    for _ in range(2):
        changes.append(events)
        assert feed() == first
