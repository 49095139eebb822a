"""Tenant isolation as a property: with tenant B's key, every route on tenant A's ids
(customers, orders, loyalty, API keys, segments) answers exactly as for an id that does not
exist (404), lists, lookups, segment previews and the RFM grid never include A's records,
and A's stored items never change."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Tenant, partition_items

A_EMAILS = ["ann@a.example", "bob@a.example", "cy@a.example"]


@pytest.fixture(scope="module")
def world(api_url, raw_table):
    a, b = Tenant(api_url, "Tenant A"), Tenant(api_url, "Tenant B")
    a_customers = []
    for i, email in enumerate(A_EMAILS):
        c = a.create_customer(email=email, phone=f"+1415555{2670 + i}", tags=["secret-tag"],
                              external_ids={"shopify": f"a-{i}"})
        a.http.post(f"/v1/customers/{c['id']}/events", json={"type": "call.logged", "summary": "a only"})
        a_customers.append(c["id"])
    a_key_id = a.http.get("/v1/api-keys").json()["data"][0]["id"]
    a_orders = [a.http.post("/v1/orders", json={
        "customer": {"id": cid}, "source": "shopify", "external_id": f"ao-{i}", "channel": "web",
        "currency": "EUR", "placed_at": "2026-02-01T10:00:00Z", "total": 1000,
        "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 1000}]}).json()["id"]
        for i, cid in enumerate(a_customers)]
    a.http.post(f"/v1/orders/{a_orders[0]}/pay", json={})
    a.http.put("/v1/loyalty/program", json={"currency": "EUR", "earn_rates": {"EUR": 1}})
    for cid in a_customers:
        a.http.post(f"/v1/customers/{cid}/loyalty/adjustments", json={"points": 500, "reason": "a only"})
    b.create_customer(email="own@b.example")
    a_segments = _a_segments(a, a_customers, raw_table)
    return {"a": a, "b": b, "a_customers": a_customers, "a_key_id": a_key_id, "a_orders": a_orders,
            "a_segments": a_segments, "a_items": partition_items(raw_table, a)}


def _a_segments(a, a_customers, raw_table) -> list[str]:
    """A's segments (their builds not queued), its customers' METRICS as maintenance writes
    them (every one a VIP, in A's first segment) and A's RFM grid counts."""
    import types

    from crm import clock
    from crm.segments import service
    from crm.storage import MetricsItem, SegmentMemberItem

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(service, "_build", lambda: types.SimpleNamespace(start=lambda *a: None, drop=lambda *a: None))
        ids = [a.http.post("/v1/segments", json={"name": f"A only {i}", "rule": VIP}).json()["id"] for i in range(3)]
    for cid in a_customers:
        MetricsItem(a.ctx.key("C", cid), "METRICS", customer_id=cid, gsi1pk=a.ctx.key("METRICS"), gsi1sk=cid,
                    facts={"vip": True, "tags": ["secret-tag"]}, updated_at=clock.now_iso(),
                    memberships={ids[0]: {"since": clock.now_iso(), "v": 1, "name": "A only 0"}}).save()
        SegmentMemberItem(a.ctx.key("SEG", ids[0]), f"M#{cid}", segment_id=ids[0], customer_id=cid,
                          since=clock.now_iso()).save()
    raw_table.put_item(Item={"pk": a.ctx.prefix, "sk": "RFM", "kind": "rfm_grid", "c55": len(a_customers)})
    return ids


MISSING_CUSTOMER = "cus_01ARZ3NDEKTSV4RRFFQ69G5FAV"
MISSING_KEY = "zzzzzzzzzz"
MISSING_ORDER = "ord_01ARZ3NDEKTSV4RRFFQ69G5FAV"
MISSING_SEGMENT = "seg_01ARZ3NDEKTSV4RRFFQ69G5FAV"
VIP = {"all": [{"field": "vip", "op": "=", "value": True}]}

CUSTOMER_ROUTES = [
    ("GET", "/v1/customers/{id}", None),
    ("PATCH", "/v1/customers/{id}", {"locale": "en"}),
    ("DELETE", "/v1/customers/{id}", None),
    ("GET", "/v1/customers/{id}/events", None),
    ("POST", "/v1/customers/{id}/events", {"type": "note.added"}),
    ("GET", "/v1/customers/{id}/360", None),
    ("GET", "/v1/customers/{id}/loyalty", None),
    ("GET", "/v1/customers/{id}/loyalty/ledger", None),
    ("POST", "/v1/customers/{id}/loyalty/redemptions", {"points": 1}),
    ("POST", "/v1/customers/{id}/loyalty/adjustments", {"points": -1, "reason": "b"}),
    ("GET", "/v1/customers/{id}/no-such-route", None),  # the catch-all: 404 either way
    ("GET", "/v1/customers/{id}/export", None),
    ("GET", "/v1/customers/{id}/segments", None),
]
KEY_ROUTES = [("DELETE", "/v1/api-keys/{id}", None), ("POST", "/v1/api-keys/{id}/rotate", None)]
ORDER_ROUTES = [
    ("GET", "/v1/orders/{id}", None),
    ("POST", "/v1/orders/{id}/pay", {}),
    ("POST", "/v1/orders/{id}/fulfill", {}),
    ("POST", "/v1/orders/{id}/cancel", {}),
    ("POST", "/v1/orders/{id}/refunds", {"amount": 1}),
    ("GET", "/v1/orders?customer_id={customer}", None),
    ("PUT", "/v1/orders/{id}/anything/else", {}),
]
SEGMENT_ROUTES = [
    ("GET", "/v1/segments/{id}", None),
    ("PATCH", "/v1/segments/{id}", {"name": "taken by b", "rule": VIP}),
    ("DELETE", "/v1/segments/{id}", None),
    ("GET", "/v1/segments/{id}/members", None),
]


def _shape(response):
    body = response.json()
    return response.status_code, body.get("code"), body.get("title")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(CUSTOMER_ROUTES + KEY_ROUTES + ORDER_ROUTES + SEGMENT_ROUTES), pick=st.integers(0, 2))
def test_b_cannot_touch_a_by_id(world, route, pick):
    b = world["b"]
    method, template, body = route
    if "api-keys" in template:
        target, missing = world["a_key_id"], MISSING_KEY
    elif template.startswith("/v1/segments"):
        target, missing = world["a_segments"][pick], MISSING_SEGMENT
    elif "orders" in template:
        target, missing = world["a_orders"][pick], MISSING_ORDER
    else:
        target, missing = world["a_customers"][pick], MISSING_CUSTOMER
    fill = lambda i, c: template.format(id=i, customer=c)  # noqa: E731
    headers = {"Idempotency-Key": f"b-{pick}"} if "redemptions" in template else {}
    on_a = b.http.request(method, fill(target, world["a_customers"][pick]), json=body, headers=headers)
    on_missing = b.http.request(method, fill(missing, MISSING_CUSTOMER), json=body, headers=headers)
    assert on_a.status_code == 404, (method, template, on_a.text)
    assert _shape(on_a) == _shape(on_missing)  # nothing distinguishes "A's" from "nobody's"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.sampled_from([
    {"email": e} for e in A_EMAILS] + [{"phone": "+14155552670"}, {"source": "shopify", "external_id": "a-1"}]))
def test_b_lookups_never_find_a(world, query):
    r = world["b"].http.get("/v1/customers/lookup", params=query)
    assert r.status_code == 200 and r.json()["data"] == []


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.fixed_dictionaries({}, optional={
    "tag": st.just("secret-tag"), "limit": st.integers(1, 100),
    "updated_since": st.just("2000-01-01T00:00:00Z")}))
def test_b_lists_never_include_a(world, params):
    b, a_ids = world["b"], set(world["a_customers"])
    seen, cursor = [], None
    while True:
        page = b.http.get("/v1/customers", params={**params, **({"cursor": cursor} if cursor else {})}).json()
        seen += [c["id"] for c in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert not a_ids & set(seen)
    assert all(c["email"] not in A_EMAILS for c in b.http.get("/v1/customers").json()["data"])
    keys = b.http.get("/v1/api-keys").json()["data"]
    assert world["a_key_id"] not in {k["id"] for k in keys}
    assert b.http.get("/v1/orders", params={"limit": 100}).json()["data"] == []
    for status in ("placed", "paid"):
        assert b.http.get("/v1/orders", params={"status": status}).json()["data"] == []
    assert b.http.get("/v1/orders", params={"source": "shopify", "external_id": "ao-0"}).json()["data"] == []
    assert world["a"].http.get("/v1/orders", params={"status": "paid"}).json()["data"]  # A sees its own
    assert b.http.get("/v1/loyalty/program").status_code == 404  # A's program is A's
    assert b.http.get("/v1/segments", params={"limit": params.get("limit", 25)}).json()["data"] == []


def test_b_segment_previews_and_rfm_grid_never_count_a(world):
    """A preview evaluates the key's tenant's customers only (its gsi1 ``P METRICS``); the
    RFM grid and the catalogue are the tenant's; a cursor of A's segment list pages B's."""
    a, b = world["a"], world["b"]
    assert a.http.post("/v1/segments/preview", json={"rule": VIP}).json()["count"] == len(world["a_customers"])
    got = b.http.post("/v1/segments/preview", json={"rule": VIP, "limit": 100}).json()
    assert got["count"] == 0 and got["sample"] == [] and got["evaluated"] == 0
    tagged = {"all": [{"field": "tags", "op": "contains", "value": "secret-tag"}]}
    assert b.http.post("/v1/segments/preview", json={"rule": tagged}).json()["count"] == 0
    assert a.http.get("/v1/segments/rfm").json()["customers"] == len(world["a_customers"])
    assert b.http.get("/v1/segments/rfm").json()["customers"] == 0
    cursor = a.http.get("/v1/segments", params={"limit": 1}).json()["next_cursor"]
    page = b.http.get("/v1/segments", params={"cursor": cursor})
    assert page.status_code == 200 and not set(world["a_segments"]) & {s["id"] for s in page.json()["data"]}
    members = a.http.get(f"/v1/segments/{world['a_segments'][0]}/members").json()["data"]
    assert {m["customer_id"] for m in members} == set(world["a_customers"])  # what B's 404s hide


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.sampled_from(["ann", "a", "bob@a.example", "cy@", "+1415555", "14155552670"]),
       limit=st.integers(1, 5))
def test_b_search_never_finds_a(world, q, limit):
    """A's search entries are under A's prefix; a cursor of A's search pages B's own."""
    a, b = world["a"], world["b"]
    assert {c["id"] for c in a.http.get("/v1/customers/search", params={"q": q}).json()["data"]}
    seen, cursor = [], None
    while True:
        page = b.http.get("/v1/customers/search",
                          params={"q": q, "limit": limit, **({"cursor": cursor} if cursor else {})}).json()
        seen += [c["id"] for c in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert not set(world["a_customers"]) & set(seen)
    a_cursor = a.http.get("/v1/customers/search", params={"q": "1415", "limit": 1}).json()["next_cursor"]
    page = b.http.get("/v1/customers/search", params={"q": "1415", "cursor": a_cursor})
    assert page.status_code == 200 and not set(world["a_customers"]) & {c["id"] for c in page.json()["data"]}


def test_b_can_use_a_email_without_learning_it_exists(world):
    """A uniqueness 409 would reveal A's customer: guards are per tenant, so B gets 201."""
    b = world["b"]
    r = b.http.post("/v1/customers", json={"email": A_EMAILS[0], "external_ids": {"shopify": "a-0"}})
    assert r.status_code == 201
    assert r.json()["id"] not in world["a_customers"]
    batch = b.http.post("/v1/customers/batch", json={"records": [{"email": A_EMAILS[1]}]}).json()
    assert batch["results"][0]["status"] == "created"


def test_b_cannot_place_an_order_on_a_customer_by_email(world):
    """An order names its customer by email: A's email is as unknown to B as nobody's."""
    order = {"source": "pos", "external_id": "b-probe", "channel": "store", "currency": "EUR",
             "placed_at": "2026-02-01T10:00:00Z", "total": 100,
             "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 100}]}
    on_a = world["b"].http.post("/v1/orders", json={**order, "customer": {"email": A_EMAILS[2]}})  # B never made it
    on_missing = world["b"].http.post("/v1/orders", json={**order, "customer": {"email": "nobody@b.example"}})
    assert on_a.status_code == 422 and _shape(on_a) == _shape(on_missing)
    assert on_a.json()["detail"] == on_missing.json()["detail"]


def test_a_cursor_cannot_reach_another_tenant(world):
    """A cursor carries only the sort-key part; the tenant comes from the key."""
    a, b = world["a"], world["b"]
    cursor = a.http.get("/v1/customers", params={"limit": 1}).json()["next_cursor"]
    page = b.http.get("/v1/customers", params={"cursor": cursor}).json()
    assert not set(world["a_customers"]) & {c["id"] for c in page["data"]}


def test_b_change_feed_never_holds_a_changes(world, api_url):
    """GET /v1/changes: A's changes (appended as the dispatcher does) are never in B's
    feed, from its start, from 'now', or from a cursor of A's feed. (Another A: the
    world's A must stay unchanged.)"""
    from crm import changes

    a, b = Tenant(api_url, "Feed A"), world["b"]
    a_customers = [a.create_customer(email=f"feed{i}@a.example")["id"] for i in range(3)]
    start = a.http.get("/v1/changes", params={"cursor": "now"}).json()["next_cursor"]
    changes.append([{"id": f"customer.updated:{cid}:99", "type": "customer.updated", "tenant_id": a.id,
                     "customer_id": cid, "occurred_at": "2026-02-01T00:00:00.000Z",
                     "data": {"customer_id": cid, "changed": ["tags"]}} for cid in a_customers])
    a_page = a.http.get("/v1/changes", params={"cursor": start, "limit": 1}).json()
    assert a_page["data"] and a_page["data"][0]["customer_id"] in a_customers
    for cursor in (None, start, a_page["next_cursor"], "now"):
        page = b.http.get("/v1/changes", params={"cursor": cursor} if cursor else {}).json()
        assert not {c["customer_id"] for c in page["data"]} & set(a_customers)


def test_a_data_is_unchanged_after_all_of_b_attempts(world, raw_table):
    test_b_cannot_touch_a_by_id.hypothesis.inner_test(world, CUSTOMER_ROUTES[2], 0)  # a DELETE
    test_b_cannot_touch_a_by_id.hypothesis.inner_test(world, KEY_ROUTES[1], 0)  # a rotate
    test_b_cannot_touch_a_by_id.hypothesis.inner_test(world, ORDER_ROUTES[4], 0)  # a refund
    test_b_cannot_touch_a_by_id.hypothesis.inner_test(world, CUSTOMER_ROUTES[8], 0)  # a redemption
    test_b_cannot_touch_a_by_id.hypothesis.inner_test(world, CUSTOMER_ROUTES[9], 1)  # an adjustment
    test_b_cannot_touch_a_by_id.hypothesis.inner_test(world, SEGMENT_ROUTES[1], 0)  # a segment's PATCH
    test_b_cannot_touch_a_by_id.hypothesis.inner_test(world, SEGMENT_ROUTES[2], 1)  # a segment's DELETE
    assert partition_items(raw_table, world["a"]) == world["a_items"]
    a = world["a"]
    assert a.http.get(f"/v1/customers/{world['a_customers'][0]}").json()["email"] == A_EMAILS[0]


def test_b_cannot_read_or_cancel_a_connections_runs(api_url):
    """The connection routes (issue 9 added POST …/runs/{run_id}/cancel): B's key on A's
    connection and run answers 404, and A's run is untouched."""
    a, b = Tenant(api_url, "Runs A"), Tenant(api_url, "Runs B")
    conn = a.http.post("/v1/connections", json={"connector": "csv", "name": "a only",
                                                "config": {"mapping": {"E-mail": "email"}}}).json()
    from connectors import connections

    upload = a.http.post(f"/v1/connections/{conn['id']}/uploads").json()
    import httpx

    httpx.put(upload["url"], content=b"E-mail\nx@a.example\n", headers=upload["headers"])
    run = connections.start_run(a.ctx, conn["id"], "backfill", "cli", upload_id=upload["upload_id"])
    base = f"/v1/connections/{conn['id']}"
    for method, path in [("GET", base), ("GET", f"{base}/runs"), ("GET", f"{base}/runs/{run.id}"),
                         ("POST", f"{base}/runs/{run.id}/cancel"), ("POST", f"{base}/check"),
                         ("DELETE", base)]:
        r = b.http.request(method, path)
        assert r.status_code == 404, (method, path, r.text)
    assert a.http.get(f"{base}/runs/{run.id}").json()["status"] == "queued"
    assert a.http.post(f"{base}/runs/{run.id}/cancel").status_code == 200


def test_billing_routes_never_reach_another_tenant(api_url, stripe_double, raw_table):
    """GET /v1/billing, POST /v1/billing/checkout and /portal act on the key's tenant only, and
    a Stripe webhook (POST /v1/billing/stripe/webhook) changes only the tenant whose Stripe
    customer it names: B's key and B's checkout leave A's billing item as it was."""
    from crm.billing import service
    from tests.integration.test_billing import billing, subscribe

    a, b = Tenant(api_url, "Billing iso A"), Tenant(api_url, "Billing iso B")
    subscribe(a, stripe_double)
    a_items = partition_items(raw_table, a)
    assert b.http.get("/v1/billing").json()["plan"] == "free"
    assert b.http.post("/v1/billing/portal").status_code == 409  # B has no Stripe customer, A's is not B's
    session = b.http.post("/v1/billing/checkout", json={"plan": "growth"})
    assert session.status_code == 201  # B is not blocked by A's live subscription
    assert service.load(b.id).stripe_customer != service.load(a.id).stripe_customer
    from tests.stripe_helpers import complete_checkout, stripe_client

    complete_checkout(stripe_client(stripe_double.url), session.json()["session_id"])
    assert stripe_double.wait_idle(20)
    assert billing(b)["plan"] == "growth"
    assert partition_items(raw_table, a) == a_items  # B's webhooks touched nothing of A's
    assert billing(a)["plan"] == "starter"


MISSING_TEMPLATE = "tpl_01ARZ3NDEKTSV4RRFFQ69G5FAV"
MISSING_CAMPAIGN = "cmp_01ARZ3NDEKTSV4RRFFQ69G5FAV"
MISSING_JOURNEY = "jrn_01ARZ3NDEKTSV4RRFFQ69G5FAV"
EMAIL_HTML = '<p>Hi {{ customer.name.given | default("there") }}</p><p>{{ postal_address }}</p>' \
             '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
EMAIL_ROUTES = [
    ("GET", "/v1/email/templates/{template}", None),
    ("PATCH", "/v1/email/templates/{template}", {"name": "taken by b"}),
    ("DELETE", "/v1/email/templates/{template}", None),
    ("POST", "/v1/email/templates/{template}/preview", {"customer_id": "{customer}"}),
    ("GET", "/v1/email/campaigns/{campaign}", None),
    ("PATCH", "/v1/email/campaigns/{campaign}", {"name": "taken by b"}),
    ("DELETE", "/v1/email/campaigns/{campaign}", None),
    ("POST", "/v1/email/campaigns/{campaign}/send", {}),
    ("POST", "/v1/email/campaigns/{campaign}/pause", None),
    ("POST", "/v1/email/campaigns/{campaign}/resume", None),
    ("POST", "/v1/email/campaigns/{campaign}/cancel", None),
    ("GET", "/v1/email/senders/{sender}", None),
    ("DELETE", "/v1/email/senders/{sender}", None),
    ("GET", "/v1/journeys/{journey}", None),
    ("PATCH", "/v1/journeys/{journey}", {"name": "taken by b", "status": "active"}),
    ("DELETE", "/v1/journeys/{journey}", None),
    ("GET", "/v1/customers/{customer}/journeys", None),
    ("POST", "/v1/checkouts", {"customer_id": "{customer}", "checkout_id": "b-probe"}),
]


@pytest.fixture(scope="module")
def email_world(api_url, raw_table):
    """A's email settings, a template, a sender domain and a draft campaign to A's segment;
    B has its own settings (the dev sender every tenant gets) and nothing else."""
    import types

    from crm.segments import service

    a, b = Tenant(api_url, "Email A"), Tenant(api_url, "Email B")
    customer = a.create_customer(email="ann@email-a.example")["id"]
    sender = a.http.get("/v1/email/settings").json()["default_sender"]
    assert a.http.put("/v1/email/settings", json={"postal_address": "1 A Street", "default_sender": sender}
                      ).status_code == 200
    template = a.http.post("/v1/email/templates", json={"name": "A only", "kind": "marketing", "subject": "Hi",
                                                        "html": EMAIL_HTML}).json()["id"]
    domain = f"{a.id.lower().replace('_', '-')}.example"
    assert a.http.post("/v1/email/senders", json={"identity": domain}).status_code == 201
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(service, "_build", lambda: types.SimpleNamespace(start=lambda *a: None, drop=lambda *a: None))
        segment = a.http.post("/v1/segments", json={"name": "A only", "rule": VIP}).json()["id"]
    campaign = a.http.post("/v1/email/campaigns", json={"name": "A only", "template_id": template,
                                                        "segment_id": segment})
    assert campaign.status_code == 201, campaign.text
    journey = a.http.post("/v1/journeys", json={"name": "A only", "trigger": {"type": "checkout.started"},
                                                "steps": [{"type": "send_email", "template_id": template}]})
    assert journey.status_code == 201, journey.text
    return {"a": a, "b": b, "customer": customer, "template": template, "campaign": campaign.json()["id"],
            "journey": journey.json()["id"], "sender": domain, "a_items": partition_items(raw_table, a)}


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(EMAIL_ROUTES))
def test_b_cannot_touch_a_email_by_id(email_world, route):
    """Templates, their preview (for A's customer too), campaigns and their actions, sender
    identities, journeys, a customer's journey runs, a checkout for A's customer: B's key
    on A's ids answers as on ids nobody has."""
    w, (method, template, body) = email_world, route
    a_ids = {"template": w["template"], "campaign": w["campaign"], "sender": w["sender"], "customer": w["customer"],
             "journey": w["journey"]}
    missing = {"template": MISSING_TEMPLATE, "campaign": MISSING_CAMPAIGN, "sender": "nobody-here.example",
               "customer": MISSING_CUSTOMER, "journey": MISSING_JOURNEY}
    on_a = w["b"].http.request(method, _fill(template, a_ids), json=_fill(body, a_ids))
    on_missing = w["b"].http.request(method, _fill(template, missing), json=_fill(body, missing))
    assert on_a.status_code == 404, (method, template, on_a.text)
    assert _shape(on_a) == _shape(on_missing)


def test_b_email_lists_settings_and_previews_are_its_own(email_world, raw_table):
    """B's lists never show A's templates, campaigns or senders; B's settings are B's; B's
    own template cannot be previewed for A's customer; B's campaign cannot use A's template;
    after all of it A's items are as they were."""
    w = email_world
    a, b = w["a"], w["b"]
    assert b.http.get("/v1/email/templates").json()["data"] == []
    assert b.http.get("/v1/email/campaigns").json()["data"] == []
    assert b.http.get("/v1/journeys").json()["data"] == []
    b_journey = b.http.post("/v1/journeys", json={"name": "probe", "trigger": {"type": "customer.created"},
                                                  "steps": [{"type": "send_email", "template_id": w["template"]}]})
    assert b_journey.status_code == 422 and b_journey.json()["code"] == "template_not_found"  # A's template
    assert w["sender"] not in {s["identity"] for s in b.http.get("/v1/email/senders").json()["data"]}
    assert b.http.get("/v1/email/settings").json().get("postal_address") != "1 A Street"
    a_cursor = a.http.get("/v1/email/templates", params={"limit": 1}).json().get("next_cursor")
    if a_cursor:
        assert b.http.get("/v1/email/templates", params={"cursor": a_cursor}).json()["data"] == []
    own = b.http.post("/v1/email/templates", json={"name": "B's", "kind": "transactional", "subject": "Hi",
                                                   "html": "<p>{{ customer.email }}</p>"}).json()["id"]
    on_a = b.http.post(f"/v1/email/templates/{own}/preview", json={"customer_id": w["customer"]})
    on_missing = b.http.post(f"/v1/email/templates/{own}/preview", json={"customer_id": MISSING_CUSTOMER})
    assert on_a.status_code in (404, 422) and _shape(on_a) == _shape(on_missing)
    with_a_template = b.http.post("/v1/email/campaigns", json={"name": "probe", "template_id": w["template"],
                                                               "segment_id": MISSING_SEGMENT})
    assert with_a_template.status_code == 422
    for route in EMAIL_ROUTES:  # every write again, then A is unchanged
        if route[0] != "GET":
            test_b_cannot_touch_a_email_by_id.hypothesis.inner_test(w, route)
    assert partition_items(raw_table, a) == w["a_items"]


# --- B2B accounts and invoices (issue 14, docs/accounts.md) ----------------------------------

MISSING_ACCOUNT = "acc_01ARZ3NDEKTSV4RRFFQ69G5FAV"
MISSING_INVOICE = "inv_01ARZ3NDEKTSV4RRFFQ69G5FAV"
ACCOUNT_ROUTES = [
    ("GET", "/v1/accounts/{account}", None),
    ("PATCH", "/v1/accounts/{account}", {"name": "taken by b"}),
    ("GET", "/v1/accounts/{account}/contacts", None),
    ("POST", "/v1/accounts/{account}/contacts", {"customer_id": "{customer}"}),
    ("DELETE", "/v1/accounts/{account}/contacts/{customer}", None),
    ("GET", "/v1/accounts/{account}/360", None),
    ("GET", "/v1/invoices/{invoice}", None),
]


@pytest.fixture(scope="module")
def account_world(api_url, raw_table):
    """A's account with a contact, a B2B order and an open invoice (through the sink, as a
    connector writes them); B has an account and a customer of its own."""
    from connectors import sink
    from connectors.sdk.base import InvoiceRecord, OrderLine, OrderRecord

    a, b = Tenant(api_url, "Accounts A"), Tenant(api_url, "Accounts B")
    account = a.http.post("/v1/accounts", json={"name": "Secret Corp", "external_ids": {"erpnext": "A-ONLY"}}).json()
    customer = a.create_customer(email="contact@secret.example")["id"]
    assert a.http.post(f"/v1/accounts/{account['id']}/contacts", json={"customer_id": customer}).status_code == 201
    line = [OrderLine("s", "n", 1, 1000)]
    sink.write(a.ctx, "erpnext", "test", [
        OrderRecord("A-SO", "2026-03-01T10:00:00Z", "web", "EUR", "2026-03-01T09:00:00Z", line, 1000, account="A-ONLY"),
        InvoiceRecord("A-INV", "2026-03-01T10:00:00Z", "A-INV", "EUR", "2026-03-01T00:00:00Z", 1000, 1000,
                      account="A-ONLY")])
    invoice = a.http.get("/v1/invoices", params={"account_id": account["id"]}).json()["data"][0]["id"]
    b.http.post("/v1/accounts", json={"name": "Secret B", "external_ids": {"erpnext": "B-ONLY"}})
    b_customer = b.create_customer(email="own@accounts-b.example")["id"]
    return {"a": a, "b": b, "account": account["id"], "customer": customer, "invoice": invoice,
            "b_customer": b_customer, "a_items": partition_items(raw_table, a)}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ACCOUNT_ROUTES), own_customer=st.booleans())
def test_b_cannot_touch_a_accounts_or_invoices_by_id(account_world, route, own_customer):
    """Every account and invoice route by id: B's key on A's account (with A's customer, or
    B's own) or invoice answers as on ids nobody has."""
    w, (method, template, body) = account_world, route
    customer = w["b_customer"] if own_customer else w["customer"]
    a_ids = {"account": w["account"], "customer": customer, "invoice": w["invoice"]}
    missing = {"account": MISSING_ACCOUNT, "customer": customer, "invoice": MISSING_INVOICE}
    on_a = w["b"].http.request(method, _fill(template, a_ids), json=_fill(body, a_ids))
    on_missing = w["b"].http.request(method, _fill(template, missing), json=_fill(body, missing))
    assert on_a.status_code == 404, (method, template, on_a.text)
    assert _shape(on_a) == _shape(on_missing)


def test_b_account_lists_lookups_searches_and_invoices_never_include_a(account_world, raw_table):
    w = account_world
    a, b = w["a"], w["b"]
    assert [x["name"] for x in b.http.get("/v1/accounts").json()["data"]] == ["Secret B"]
    assert b.http.get("/v1/accounts", params={"name": "secret"}).json()["data"][0]["name"] == "Secret B"
    assert len(b.http.get("/v1/accounts", params={"name": "secret"}).json()["data"]) == 1
    assert b.http.get("/v1/accounts/lookup", params={"source": "erpnext", "external_id": "A-ONLY"}
                      ).json()["data"] == []
    for params in ({}, {"status": "open"}, {"account_id": w["account"]}, {"customer_id": w["customer"]}):
        assert b.http.get("/v1/invoices", params=params).json()["data"] == [], params
    assert a.http.get("/v1/invoices", params={"account_id": w["account"]}).json()["data"]  # what B cannot see
    a_cursor = a.http.get("/v1/accounts", params={"limit": 1, "name": "s"}).json()["next_cursor"]
    if a_cursor:
        assert b.http.get("/v1/accounts", params={"cursor": a_cursor}).status_code == 422
    # B's customer by A's external id is B's own: no 409 naming A's account
    own = b.http.post("/v1/accounts", json={"name": "Mine", "external_ids": {"erpnext": "A-ONLY"}})
    assert own.status_code == 201
    for route in ACCOUNT_ROUTES:  # every write again, then A is unchanged
        if route[0] != "GET":
            test_b_cannot_touch_a_accounts_or_invoices_by_id.hypothesis.inner_test(w, route, False)
    assert partition_items(raw_table, a) == w["a_items"]
MISSING_SHIPMENT = "shp_AAAAAAAAAAAAAAAAAAAAAAAAAA"


def test_b_cannot_reach_a_shipments(api_url, raw_table):
    """The shipment routes (issue 14 §4): with B's key, A's shipment, A's order's shipments,
    A's tracking number and A's shipping connection answer exactly as ids nobody has, and
    A's items are untouched."""
    from tests.fakes.easypost import FakeEasyPost

    a, b = Tenant(api_url, "Ship A"), Tenant(api_url, "Ship B")
    with FakeEasyPost() as fake:
        con = a.http.post("/v1/connections", json={"connector": "easypost", "name": "a only", "config": {
            "api_key": fake.api_key, "base_url": fake.url + "/v2"}}).json()["id"]
        cid = a.create_customer(email="ship@a.example")["id"]
        order = a.http.post("/v1/orders", json={
            "customer": {"id": cid}, "source": "pos", "external_id": "ship-a", "channel": "web", "currency": "EUR",
            "placed_at": "2026-02-01T10:00:00Z", "total": 100,
            "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 100}]}).json()["id"]
        shipment = a.http.post("/v1/shipments", json={"order_id": order, "carrier": "USPS",
                                                      "tracking_number": "A0SHIP001", "connection_id": con})
        assert shipment.status_code == 201, shipment.text
        sid = shipment.json()["id"]
        a_items = partition_items(raw_table, a)
        b_cid = b.create_customer(email="ship@b.example")["id"]
        b_order = b.http.post("/v1/orders", json={
            "customer": {"id": b_cid}, "source": "pos", "external_id": "ship-b", "channel": "web", "currency": "EUR",
            "placed_at": "2026-02-01T10:00:00Z", "total": 100,
            "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 100}]}).json()["id"]
        pairs = [
            (("GET", f"/v1/shipments/{sid}", None), ("GET", f"/v1/shipments/{MISSING_SHIPMENT}", None)),
            (("GET", f"/v1/orders/{order}/shipments", None), ("GET", f"/v1/orders/{MISSING_ORDER}/shipments", None)),
            (("POST", "/v1/shipments", {"order_id": order, "carrier": "USPS", "tracking_number": "B0SHIP001",
                                        "connection_id": con}),
             ("POST", "/v1/shipments", {"order_id": MISSING_ORDER, "carrier": "USPS", "tracking_number": "B0SHIP001",
                                        "connection_id": con})),
            (("POST", "/v1/shipments", {"order_id": b_order, "carrier": "USPS", "tracking_number": "B0SHIP002",
                                        "connection_id": con}),
             ("POST", "/v1/shipments", {"order_id": b_order, "carrier": "USPS", "tracking_number": "B0SHIP002",
                                        "connection_id": "con_01ARZ3NDEKTSV4RRFFQ69G5FAV"})),
        ]
        for (method, path, body), (m2, p2, body2) in pairs:
            on_a = b.http.request(method, path, json=body)
            on_missing = b.http.request(m2, p2, json=body2)
            assert on_a.status_code in (404, 422), (path, on_a.text)
            assert _shape(on_a) == _shape(on_missing) and on_a.json().get("field") == on_missing.json().get("field")
        assert b.http.get("/v1/shipments", params={"tracking_number": "A0SHIP001"}).json()["data"] == []
        assert a.http.get("/v1/shipments", params={"tracking_number": "A0SHIP001"}).json()["data"][0]["id"] == sid
        assert partition_items(raw_table, a) == a_items
        assert len(fake.sent("POST", "/v2/trackers")) == 1  # only A's own registration reached the provider


MISSING_WEBHOOK_ENDPOINT = "whe_01ARZ3NDEKTSV4RRFFQ69G5FAV"
WEBHOOK_ROUTES = [
    ("GET", "/v1/webhooks/endpoints/{id}", None),
    ("PATCH", "/v1/webhooks/endpoints/{id}", {"url": "https://b.example.com/steal", "types": ["*"]}),
    ("DELETE", "/v1/webhooks/endpoints/{id}", None),
    ("POST", "/v1/webhooks/endpoints/{id}/rotate-secret", {"overlap_seconds": 0}),
    ("POST", "/v1/webhooks/endpoints/{id}/test", None),
    ("GET", "/v1/webhooks/endpoints/{id}/deliveries", None),
    ("POST", "/v1/webhooks/endpoints/{id}/replay", {"since": "2026-01-01T00:00:00Z"}),
]


def test_b_cannot_touch_a_webhook_endpoints(api_url, raw_table):
    """Every webhook endpoint route (issue 15): B's key on A's endpoint answers as on an id
    nobody has (404, same problem), B's list never shows A's, a cursor of A's list pages
    B's own, and A's endpoints (and sealed secrets) are unchanged after all of it."""
    a, b = Tenant(api_url, "Hooks A"), Tenant(api_url, "Hooks B")
    a_ids = [a.http.post("/v1/webhooks/endpoints", json={"url": f"https://a{i}.example.com/hooks",
                                                          "types": ["order.*"]}).json()["id"] for i in range(2)]
    a_items = partition_items(raw_table, a)
    b.http.post("/v1/webhooks/endpoints", json={"url": "https://b.example.com/hooks", "types": ["*"]})
    for method, template, body in WEBHOOK_ROUTES:
        on_a = b.http.request(method, template.format(id=a_ids[0]), json=body)
        on_missing = b.http.request(method, template.format(id=MISSING_WEBHOOK_ENDPOINT), json=body)
        assert on_a.status_code == 404, (method, template, on_a.text)
        assert _shape(on_a) == _shape(on_missing)
    listed = b.http.get("/v1/webhooks/endpoints").json()["data"]
    assert not set(a_ids) & {e["id"] for e in listed} and len(listed) == 1
    cursor = a.http.get("/v1/webhooks/endpoints", params={"limit": 1}).json()["next_cursor"]
    page = b.http.get("/v1/webhooks/endpoints", params={"cursor": cursor})
    assert page.status_code == 200 and not set(a_ids) & {e["id"] for e in page.json()["data"]}
    from crm.webhooks import endpoints

    assert not endpoints.disable(b.ctx, a_ids[0], "manual")  # the engine's calls take the tenant too
    assert not endpoints.mark_failing(b.ctx, a_ids[0], "2026-01-01T00:00:00.000Z")
    assert partition_items(raw_table, a) == a_items
    assert {e["id"] for e in a.http.get("/v1/webhooks/endpoints").json()["data"]} == set(a_ids)


MISSING_AGENT = "agt_01arz3ndektsv4rrffq69g5fav"
AGENT_ROUTES = [
    ("GET", "/v1/agents/{id}", None),
    ("DELETE", "/v1/agents/{id}", None),
    ("POST", "/v1/agents/{id}/key", None),
    ("POST", "/v1/agents/{id}/heartbeat", {"version": "1", "queued": 0, "parked": 0, "hlc": "1764763200123-00000"}),
    ("POST", "/v1/agents/{id}/uploads", {"records": [{"seq": 99, "kind": "customer", "external_id": "x",
                                                      "hlc": "1764763200123-00000",
                                                      "fields": {"email": {"value": "b@b.example", "rule": "local",
                                                                           "hlc": "1764763200123-00000"}}}]}),
    ("POST", "/v1/agents/{id}/fetch", "customer_ids"),
    ("GET", "/v1/agents/{id}/parked", None),
    ("GET", "/v1/agents/{id}/conflicts", None),
]


def test_b_cannot_touch_a_agents(api_url, raw_table):
    """Every agent route (issue 16): B's admin key and B's agent key on A's agent answer as
    on an id nobody has (404, same problem); B's list never shows A's agent; B's agent
    cannot fetch A's customers; A's agent, its key and its records are unchanged."""
    import httpx

    a, b = Tenant(api_url, "Agents A"), Tenant(api_url, "Agents B")
    a_agent = a.http.post("/v1/agents", json={"name": "a only", "source": "pos"}).json()
    a_client = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {a_agent['key']}"})
    up = a_client.post(f"/v1/agents/{a_agent['id']}/uploads", json={"records": [
        {"seq": 1, "kind": "customer", "external_id": "1", "hlc": "1764763200123-00000",
         "fields": {"email": {"value": "agent@a.example", "rule": "local", "hlc": "1764763200123-00000"}}}]})
    a_customer = up.json()["results"][0]["customer_id"]
    a_items = partition_items(raw_table, a)
    b_agent = b.http.post("/v1/agents", json={"name": "b's", "source": "pos"})  # the source is per tenant
    assert b_agent.status_code == 201
    b_client = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {b_agent.json()['key']}"})
    for who in (b.http, b_client):
        for method, template, body in AGENT_ROUTES:
            if body == "customer_ids":
                body = {"customer_ids": [a_customer]}
            on_a = who.request(method, template.format(id=a_agent["id"]), json=body)
            on_missing = who.request(method, template.format(id=MISSING_AGENT), json=body)
            if who is b_client and (method == "DELETE" or template.endswith("/key")):  # admin routes: 403 first
                assert on_a.status_code == 403 and _shape(on_a) == _shape(on_missing), (template, on_a.text)
                continue
            assert on_a.status_code == 404, (method, template, on_a.text)
            assert _shape(on_a) == _shape(on_missing)
    own = b_client.post(f"/v1/agents/{b_agent.json()['id']}/fetch", json={"customer_ids": [a_customer]})
    assert own.status_code == 200 and own.json()["data"] == []
    assert [x["id"] for x in b.http.get("/v1/agents").json()["data"]] == [b_agent.json()["id"]]
    assert b_client.get("/v1/agents/me").json()["id"] == b_agent.json()["id"]
    assert partition_items(raw_table, a) == a_items
    assert a_client.get("/v1/agents/me").json()["status"] == "active"
    # another agent of A: 403 on every route of A's first agent (its own tenant's id exists)
    sibling = a.http.post("/v1/agents", json={"name": "sibling"}).json()
    s_client = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {sibling['key']}"})
    for method, template, body in AGENT_ROUTES:
        if body == "customer_ids":
            body = {"customer_ids": [a_customer]}
        r = s_client.request(method, template.format(id=a_agent["id"]), json=body)
        assert r.status_code == 403 and r.json()["code"] == "insufficient_scope", (template, r.text)
