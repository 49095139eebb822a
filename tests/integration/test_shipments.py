"""Shipments over HTTP (docs/shipping.md): registered with POST /v1/shipments, which
creates the tracker at the provider's fake server; provider webhooks (out of order,
replayed, forged) and the re-poll schedule keep the shipment, its order and the
customer's timeline and 360 current; "where is my order" by tracking number."""
from __future__ import annotations

import pytest

from tests.conftest import partition_items
from tests.dynamo_calls import dynamodb_calls
from tests.fakes.aftership import FakeAfterShip
from tests.fakes.easypost import FakeEasyPost

SECRET = "sécret-hooks"  # EasyPost signs with the NFKD form of any text secret
AS_SECRET = "as-whsec-1"
FAR_FUTURE = "2100-01-01T00:00:00.000Z"


@pytest.fixture()
def easypost():
    with FakeEasyPost() as fake:
        yield fake


@pytest.fixture()
def aftership():
    with FakeAfterShip() as fake:
        yield fake


def _connection(tenant, connector: str, fake, secret: str, base: str) -> str:
    key = fake.api_key
    r = tenant.http.post("/v1/connections", json={
        "connector": connector, "name": connector,
        "config": {"api_key": key, "webhook_secret": secret, "base_url": fake.url + base}})
    assert r.status_code == 201, r.text
    assert key not in r.text and secret not in r.text  # secrets are sealed, never answered
    return r.json()["id"]


def _order(tenant, external_id: str = "o-1", email: str | None = None) -> tuple[str, str]:
    customer = tenant.create_customer(email=email or f"{external_id}@ship.example")
    r = tenant.http.post("/v1/orders", json={
        "customer": {"id": customer["id"]}, "source": "pos", "external_id": external_id, "channel": "web",
        "currency": "EUR", "placed_at": "2025-05-01T10:00:00Z", "total": 1000,
        "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 1000}]})
    assert r.status_code == 201, r.text
    return customer["id"], r.json()["id"]


@pytest.fixture()
def shop(tenant, easypost):
    con = _connection(tenant, "easypost", easypost, SECRET, "/v2")
    customer_id, order_id = _order(tenant)
    return tenant, con, customer_id, order_id


def _register(tenant, order_id: str, con: str, number: str, carrier: str = "USPS", **kw):
    return tenant.http.post("/v1/shipments", json={"order_id": order_id, "carrier": carrier,
                                                   "tracking_number": number, "connection_id": con}, **kw)


def test_register_creates_the_tracker_and_a_repeat_answers_the_same_shipment(shop, easypost):
    tenant, con, customer_id, order_id = shop
    r = _register(tenant, order_id, con, "9400 1000 0000 0000 0001", headers={"Idempotency-Key": "k1"})
    assert r.status_code == 201, r.text
    shipment = r.json()
    assert r.headers["Location"] == f"/v1/shipments/{shipment['id']}"
    assert (shipment["order_id"], shipment["customer_id"], shipment["status"]) == (order_id, customer_id, "pre_transit")
    assert shipment["provider"] == "easypost" and shipment["connection_id"] == con
    [created] = easypost.sent("POST", "/v2/trackers")
    assert created.body == {"tracker": {"tracking_code": "9400 1000 0000 0000 0001", "carrier": "USPS"}}
    assert created.headers["authorization"].startswith("Basic ")
    # the provider's first scan came with the tracker
    assert [c["status"] for c in shipment["checkpoints"]] == ["pre_transit"]
    # the same Idempotency-Key replays the first answer; another key finds the same parcel (200)
    assert _register(tenant, order_id, con, "9400 1000 0000 0000 0001",
                     headers={"Idempotency-Key": "k1"}).json()["id"] == shipment["id"]
    again = _register(tenant, order_id, con, "9400100000000000 0001", headers={"Idempotency-Key": "k2"})
    assert again.status_code == 200 and again.json()["id"] == shipment["id"]
    assert len(easypost.sent("POST", "/v2/trackers")) == 1  # no second tracker
    # where is my order: by tracking number, however it is typed
    found = tenant.http.get("/v1/shipments", params={"tracking_number": "94001000000000000001"}).json()["data"]
    assert [s["id"] for s in found] == [shipment["id"]]
    assert tenant.http.get("/v1/shipments", params={"tracking_number": "NOPE123"}).json()["data"] == []
    assert tenant.http.get(f"/v1/shipments/{shipment['id']}").json()["tracking_number"] == "9400 1000 0000 0000 0001"
    assert [s["id"] for s in tenant.http.get(f"/v1/orders/{order_id}/shipments").json()["data"]] == [shipment["id"]]
    order = tenant.http.get(f"/v1/orders/{order_id}").json()
    assert [p["id"] for p in order["shipments"]] == [shipment["id"]] and order["shipped_at"] is None
    # the same tracking number on another order is refused, naming the existing shipment
    _, other_order = _order(tenant, "o-2")
    taken = _register(tenant, other_order, con, "94001000000000000001")
    assert taken.status_code == 409 and taken.json()["code"] == "tracking_number_taken"
    assert taken.json()["existing_shipment_id"] == shipment["id"]


def test_bad_registrations_get_a_clear_4xx_and_write_nothing(shop, easypost, raw_table):
    from tests.plan_helpers import set_plan

    tenant, con, _, order_id = shop
    set_plan(tenant, "starter")  # a second connection
    made = tenant.http.post("/v1/connections", json={"connector": "csv", "name": "file",
                                                     "config": {"mapping": {"E-mail": "email"}}})
    assert made.status_code == 201, made.text
    csv = made.json()["id"]
    easypost.refused.add("BADNUMBER1")
    before = partition_items(raw_table, tenant)
    cases = [
        ({"order_id": "ord_01ARZ3NDEKTSV4RRFFQ69G5FAV"}, 422, "order_not_found", "order_id"),
        ({"connection_id": "con_01ARZ3NDEKTSV4RRFFQ69G5FAV"}, 422, "connection_not_found", "connection_id"),
        ({"connection_id": csv}, 422, "not_a_shipping_connector", "connection_id"),
        ({"tracking_number": "BADNUMBER1"}, 422, "provider_refused", "tracking_number"),
        ({"tracking_number": "x"}, 422, "validation_error", "tracking_number"),
        ({"carrier": ""}, 422, "validation_error", "carrier"),
        ({"order_id": None}, 422, "validation_error", "order_id"),
    ]
    for change, status, code, field in cases:
        body = {"order_id": order_id, "carrier": "USPS", "tracking_number": "9400111", "connection_id": con, **change}
        r = tenant.http.post("/v1/shipments", json=body)
        assert (r.status_code, r.json()["code"], r.json()["field"]) == (status, code, field), (change, r.text)
        assert easypost.api_key not in r.text
    refused = tenant.http.post("/v1/shipments", json={"order_id": order_id, "carrier": "USPS",
                                                      "tracking_number": "BADNUMBER1", "connection_id": con})
    assert refused.json()["vendor_status"] == 422
    assert partition_items(raw_table, tenant) == before  # nothing written for any of them
    # the provider down: 503, nothing written; it works once the provider is back
    easypost.fail_next_with(1, 429, {"Retry-After": "120"})
    r = _register(tenant, order_id, con, "9400222")
    assert r.status_code == 503 and r.json()["code"] == "provider_unavailable"
    assert partition_items(raw_table, tenant) == before
    assert _register(tenant, order_id, con, "9400222").status_code == 201


def test_webhooks_out_of_order_and_replayed_converge_and_stamp_the_order(shop, easypost, anon, raw_table,
                                                                         event_pipeline):
    tenant, con, customer_id, order_id = shop
    sid = _register(tenant, order_id, con, "9400333").json()["id"]
    easypost.scan("9400333", "in_transit", "2025-05-10T08:00:00Z", "Picked up", "HOUSTON")
    in_transit = easypost.signed_webhook(SECRET, "9400333")
    easypost.scan("9400333", "out_for_delivery", "2025-05-11T07:00:00Z", "Out for delivery", "AUSTIN")
    out = easypost.signed_webhook(SECRET, "9400333")
    easypost.scan("9400333", "delivered", "2025-05-11T15:30:00Z", "Delivered, front door", "AUSTIN")
    delivered = easypost.signed_webhook(SECRET, "9400333")
    hook = f"/v1/hooks/{con}"
    # the newest first, then the older ones, then the newest again (EasyPost retries)
    for headers, body in (delivered, in_transit, out):
        r = anon.post(hook, headers=headers, content=body)
        assert r.status_code == 202, r.text
    replay = anon.post(hook, headers=delivered[0], content=delivered[1])
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert event_pipeline.wait_idle(timeout=60)
    shipment = tenant.http.get(f"/v1/shipments/{sid}").json()
    assert shipment["status"] == "delivered" and shipment["status_at"] == "2025-05-11T15:30:00.000Z"
    assert [c["status"] for c in shipment["checkpoints"]] == ["pre_transit", "in_transit", "out_for_delivery",
                                                              "delivered"]
    assert shipment["shipped_at"] == "2025-05-10T08:00:00.000Z"
    order = tenant.http.get(f"/v1/orders/{order_id}").json()
    assert order["shipped_at"] == "2025-05-10T08:00:00.000Z" and order["delivered_at"] == "2025-05-11T15:30:00.000Z"
    assert order["shipments"][0]["status"] == "delivered"
    events = tenant.http.get(f"/v1/customers/{customer_id}/events", params={"limit": 50}).json()["data"]
    shipping = sorted(e["type"] for e in events if e["type"].startswith("shipment."))
    assert shipping == ["shipment.delivered", "shipment.registered"]  # the older news came after: not news
    [done] = [e for e in events if e["type"] == "shipment.delivered"]
    assert done["occurred_at"] == "2025-05-11T15:30:00.000Z" and "9400333" in done["summary"]
    # an older webhook delivered again under a new event id changes nothing (but its delivery guard)
    def items():
        return [i for i in partition_items(raw_table, tenant) if i["kind"] != "hook_delivery"]

    before = items()
    headers, body = easypost.signed_webhook(SECRET, "9400333", event_id="evt_late_copy",
                                            tracker={**easypost.by_code("9400333"),
                                                     "tracking_details": easypost.by_code("9400333")[
                                                         "tracking_details"][:2],
                                                     "updated_at": "2025-05-10T09:00:00Z"})
    assert anon.post(hook, headers=headers, content=body).status_code == 202
    assert event_pipeline.wait_idle(timeout=60)
    assert items() == before


def test_a_forged_webhook_is_refused_and_writes_nothing(shop, easypost, anon, raw_table, event_pipeline):
    tenant, con, _, order_id = shop
    _register(tenant, order_id, con, "9400444")
    easypost.scan("9400444", "delivered", "2025-05-11T15:30:00Z")
    before = partition_items(raw_table, tenant)
    headers, body = easypost.forged_webhook("9400444")
    r = anon.post(f"/v1/hooks/{con}", headers=headers, content=body)
    assert r.status_code == 401 and r.json()["code"] == "invalid_signature"
    good, _ = easypost.signed_webhook(SECRET, "9400444")
    assert anon.post(f"/v1/hooks/{con}", headers=good, content=body + b" ").status_code == 401
    assert event_pipeline.wait_idle(timeout=60)
    assert partition_items(raw_table, tenant) == before


def test_the_360_shows_the_latest_shipments_in_one_query(shop, easypost):
    from crm.customer360 import view_360

    tenant, con, customer_id, order_id = shop
    first = _register(tenant, order_id, con, "9400555").json()["id"]
    second = _register(tenant, order_id, con, "9400556").json()["id"]
    with dynamodb_calls() as calls:
        view = view_360(tenant.ctx, customer_id)
    assert calls == {"Query": 1}
    assert [s.id for s in view.recent_shipments] == [second, first]
    body = tenant.http.get(f"/v1/customers/{customer_id}/360").json()
    assert [s["id"] for s in body["recent_shipments"]] == [second, first]
    assert body["recent_shipments"][0]["tracking_number"] == "9400556"
    assert {e["type"] for e in body["timeline"]} >= {"shipment.registered"}
    import httpx

    reader = httpx.Client(base_url=str(tenant.http.base_url), headers={
        "Authorization": f"Bearer {tenant.key_with('customers:read')}"})
    assert reader.get(f"/v1/customers/{customer_id}/360").json()["recent_shipments"] is None


def test_lookup_costs_two_requests_and_never_scans(shop):
    from crm.shipments import service

    tenant, con, _, order_id = shop
    _register(tenant, order_id, con, "9400666")
    with dynamodb_calls() as calls:
        [found] = service.by_tracking_number(tenant.ctx, "9400666")
    assert found.tracking_number == "9400666"
    assert calls == {"GetItem": 1, "BatchGetItem": 1}


def test_the_schedule_recovers_a_missed_webhook_and_an_outage(shop, easypost):
    from functions import shipments as schedule

    tenant, con, customer_id, order_id = shop
    sid = _register(tenant, order_id, con, "9400777").json()["id"]
    easypost.scan("9400777", "in_transit", "2025-05-10T08:00:00Z", "Picked up")  # no webhook came
    easypost.fail_next_with(50, 429, {"Retry-After": "600"})  # the provider throttles every call
    first = schedule.run_schedule(now=FAR_FUTURE)
    assert first["postponed"] >= 1
    assert tenant.http.get(f"/v1/shipments/{sid}").json()["status"] == "pre_transit"  # nothing lost, nothing made up
    easypost.fail_next_with(0, 429)
    easypost._faults.clear()
    easypost.scan("9400777", "delivered", "2025-05-11T15:30:00Z", "Delivered")
    schedule.run_schedule(now=FAR_FUTURE)
    shipment = tenant.http.get(f"/v1/shipments/{sid}").json()
    assert shipment["status"] == "delivered" and [c["status"] for c in shipment["checkpoints"]] == [
        "pre_transit", "in_transit", "delivered"]
    assert tenant.http.get(f"/v1/orders/{order_id}").json()["delivered_at"] == "2025-05-11T15:30:00.000Z"
    types = [e["type"] for e in tenant.http.get(f"/v1/customers/{customer_id}/events").json()["data"]]
    assert "shipment.delivered" in types
    # delivered is terminal: it left the re-poll index, a next run does not ask again
    polls = len(easypost.sent("GET", "/v2/trackers/"))
    schedule.run_schedule(now=FAR_FUTURE)
    assert len(easypost.sent("GET", "/v2/trackers/")) == polls


def test_an_imported_fulfilment_registers_its_parcel_and_the_schedule_creates_its_tracker(shop, easypost):
    """A Shopify order with a fulfilment's tracking number: the sink registers the parcel
    as POST /v1/shipments does (without a provider call), and the schedule creates the
    tracker through the tenant's shipping connection."""
    import copy

    from connectors import sink
    from connectors.shopify import mapping
    from functions import shipments as schedule
    from tests.fakes import fixture

    tenant, con, _, _ = shop
    order = copy.deepcopy(fixture("shopify", "python_api_order.json")["order"])
    order.update(id=88001, email="fulfilled@ship.example")
    order["customer"] = {**order["customer"], "id": 88002, "email": "fulfilled@ship.example"}
    order["fulfillments"][0].update(status="success", tracking_company="UPS", tracking_numbers=["1Z999AA10123456784"])
    written = sink.write(tenant.ctx, "shopify", "orders", [mapping.order(order)])
    assert written.counts["created"] == 1
    sink.write(tenant.ctx, "shopify", "orders", [mapping.order(order)])  # a re-read page registers nothing again
    [shipment] = tenant.http.get("/v1/shipments", params={"tracking_number": "1Z999AA10123456784"}).json()["data"]
    assert (shipment["source"], shipment["carrier"], shipment["provider"]) == ("shopify", "UPS", None)
    assert shipment["shipped_at"] == "2014-01-22T20:58:27.000Z"  # the fulfilment's date
    schedule.run_schedule(now=FAR_FUTURE)
    [created] = easypost.sent("POST", "/v2/trackers")
    assert created.body["tracker"] == {"tracking_code": "1Z999AA10123456784", "carrier": "UPS"}
    again = tenant.http.get(f"/v1/shipments/{shipment['id']}").json()
    assert again["provider"] == "easypost" and again["connection_id"] == con


def test_aftership_register_webhook_and_sync(tenant, aftership, anon, event_pipeline):
    from tests.connector_helpers import wait_run

    con = _connection(tenant, "aftership", aftership, AS_SECRET, "/tracking/2026-07")
    assert tenant.http.post(f"/v1/connections/{con}/check").status_code == 200
    customer_id, order_id = _order(tenant, "as-1")
    r = _register(tenant, order_id, con, "111111111111", carrier="FedEx")
    assert r.status_code == 201, r.text
    [created] = aftership.sent("POST", "/trackings")
    assert created.body == {"tracking_number": "111111111111", "slug": "fedex", "order_id": order_id}
    assert created.headers["as-api-key"] == aftership.api_key
    # scans in three time zones, posted newest first
    aftership.scan("111111111111", "InTransit", "2025-05-10T08:00:00Z", "Picked up", utc_offset_hours=8)
    early = aftership.signed_webhook(AS_SECRET, "111111111111")
    aftership.scan("111111111111", "Delivered", "2025-05-12T01:00:00Z", "Delivered", utc_offset_hours=-5)
    late = aftership.signed_webhook(AS_SECRET, "111111111111")
    for headers, body in (late, early):
        assert anon.post(f"/v1/hooks/{con}", headers=headers, content=body).status_code == 202
    assert anon.post(f"/v1/hooks/{con}", headers=late[0], content=late[1]).json()["status"] == "duplicate"
    forged = aftership.forged_webhook("111111111111")
    assert anon.post(f"/v1/hooks/{con}", headers=forged[0], content=forged[1]).status_code == 401
    assert event_pipeline.wait_idle(timeout=60)
    [shipment] = tenant.http.get(f"/v1/orders/{order_id}/shipments").json()["data"]
    assert shipment["status"] == "delivered" and shipment["delivered_at"] == "2025-05-12T01:00:00.000Z"
    assert [c["at"] for c in shipment["checkpoints"]] == ["2025-05-10T08:00:00.000Z", "2025-05-12T01:00:00.000Z"]
    # a sync reads the trackings updated since: the one known, and one nobody registered
    aftership.add("999999999999")
    run = tenant.http.post(f"/v1/connections/{con}/sync", json={"mode": "backfill"}).json()
    done = wait_run(tenant, con, run["id"])
    assert done["status"] == "succeeded", done
    counts = done["streams"]["shipments"]
    assert counts["read"] == 2 and counts["unchanged"] == 1 and counts["rejected"] == 1
    assert "999999999999" in done["rejected"][0]["reason"]


def test_another_tenant_never_sees_a_shipment(shop, other_tenant, raw_table):
    tenant, con, _, order_id = shop
    sid = _register(tenant, order_id, con, "9400888").json()["id"]
    before = partition_items(raw_table, tenant)
    b = other_tenant
    assert b.http.get(f"/v1/shipments/{sid}").status_code == 404
    assert b.http.get("/v1/shipments", params={"tracking_number": "9400888"}).json()["data"] == []
    assert b.http.get(f"/v1/orders/{order_id}/shipments").status_code == 404
    _, b_order = _order(b, "b-1")
    on_a = b.http.post("/v1/shipments", json={"order_id": b_order, "carrier": "USPS", "tracking_number": "9400999",
                                              "connection_id": con})
    assert on_a.status_code == 422 and on_a.json()["code"] == "connection_not_found"
    assert partition_items(raw_table, tenant) == before


def test_request_counts_of_register_update_and_repeat(shop, easypost):
    """The counts docs/performance.md gives ("Shipments")."""
    from connectors import shipping
    from crm.shipments import service
    from crm.shipments.schemas import ShipmentCreate

    tenant, con, _, order_id = shop
    body = ShipmentCreate(order_id=order_id, carrier="USPS", tracking_number="9400123", connection_id=con)
    shipping.create(tenant.ctx, body)  # warms the connection's config cache (KMS)
    body2 = body.model_copy(update={"tracking_number": "9400124"})
    with dynamodb_calls() as calls:
        shipping.create(tenant.ctx, body2)
    # tracking number, the order (pointer + order), the connection, then the provider; then the
    # registration: tracking number, order pointer, one batch of the partition, the transaction
    assert calls == {"GetItem": 5, "BatchGetItem": 2, "TransactWriteItems": 1}
    with dynamodb_calls() as calls:
        shipping.create(tenant.ctx, body2)  # a repeat: found by tracking number
    assert calls == {"GetItem": 2, "BatchGetItem": 2}
    easypost.scan("9400124", "in_transit", "2025-05-10T08:00:00Z")
    record = easypost.by_code("9400124")
    from connectors.easypost import mapping

    tracker = shipping.to_tracker(mapping.tracker(record), con, "easypost")
    with dynamodb_calls() as calls:
        assert service.apply(tenant.ctx, tracker).status == "updated"
    assert calls == {"GetItem": 1, "BatchGetItem": 1, "TransactWriteItems": 1}
    with dynamodb_calls() as calls:
        assert service.apply(tenant.ctx, tracker).status == "unchanged"
    assert calls == {"GetItem": 1, "BatchGetItem": 1}


def test_a_tracker_the_merchant_gave_the_shops_order_id_links_to_that_order(tenant, aftership):
    """AfterShip trackings created outside Rapport (by the shop's own app) keep the shop's
    order id: a sync links each to the order of that external id in one of the tenant's
    connected sources, registering the shipment; an id no connected source has is
    rejected with a reason naming it."""
    from tests.connector_helpers import wait_run
    from tests.fakes.woocommerce import FakeWooCommerce
    from tests.plan_helpers import set_plan

    set_plan(tenant, "starter")  # a shop and a carrier: two connections
    con = _connection(tenant, "aftership", aftership, AS_SECRET, "/tracking/2026-07")
    with FakeWooCommerce() as woo:
        r = tenant.http.post("/v1/connections", json={"connector": "woocommerce", "name": "shop", "config": {
            "store_url": woo.url, "consumer_key": woo.key, "consumer_secret": woo.secret}})
        assert r.status_code == 201, r.text
    customer = tenant.create_customer(email="ref@ship.example")
    r = tenant.http.post("/v1/orders", json={
        "customer": {"id": customer["id"]}, "source": "woocommerce", "external_id": "5001", "channel": "web",
        "currency": "EUR", "placed_at": "2025-05-01T10:00:00Z", "total": 1000,
        "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 1000}]})
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    aftership.add("777000000001", "dhl", order_id="5001")
    aftership.add("777000000002", "dhl", order_id="no-such-order")
    run = tenant.http.post(f"/v1/connections/{con}/sync", json={"mode": "backfill"}).json()
    from connectors import runner

    runner.run_to_end(tenant.ctx, con, run["id"])
    done = wait_run(tenant, con, run["id"])
    counts = done["streams"]["shipments"]
    assert (counts["created"], counts["rejected"]) == (1, 1), done
    assert "'no-such-order'" in done["rejected"][0]["reason"]
    [shipment] = tenant.http.get(f"/v1/orders/{order_id}/shipments").json()["data"]
    assert (shipment["tracking_number"], shipment["carrier"]) == ("777000000001", "dhl")
    assert shipment["customer_id"] == customer["id"]


def test_a_tracker_with_only_the_order_number_links_to_the_one_order_of_that_number(tenant, aftership):
    """A merchant often gives the carrier app only the number the buyer sees (Shopify's
    ``#1001``): the sync links such a tracking to the one order with that number, whether
    written ``#1001`` or ``1001``; a number two orders share is refused with a reason that
    names both, never guessed; GET /v1/orders?number= finds the orders by number."""
    import copy

    from connectors import runner, sink
    from connectors.shopify import mapping
    from tests.connector_helpers import wait_run
    from tests.fakes import fixture

    con = _connection(tenant, "aftership", aftership, AS_SECRET, "/tracking/2026-07")
    order = copy.deepcopy(fixture("shopify", "python_api_order.json")["order"])
    order.update(fulfillments=[], name="#1001")
    assert sink.write(tenant.ctx, "shopify", "orders", [mapping.order(order)]).counts["created"] == 1
    [shop_order] = tenant.http.get("/v1/orders", params={"number": "1001"}).json()["data"]
    assert (shop_order["source"], shop_order["number"]) == ("shopify", "#1001")
    assert tenant.http.get("/v1/orders", params={"number": "#1001 "}).json()["data"] == [shop_order]
    _, pos_one = _order(tenant, "pos-1")
    customer = tenant.create_customer(email="twice@ship.example")
    for source in ("pos", "marketplace"):  # the same number in two channels
        r = tenant.http.post("/v1/orders", json={
            "customer": {"id": customer["id"]}, "source": source, "external_id": "x-7", "number": "#2002",
            "channel": "web", "currency": "EUR", "placed_at": "2025-05-01T10:00:00Z", "total": 1000,
            "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 1000}]})
        assert r.status_code == 201, r.text
    assert len(tenant.http.get("/v1/orders", params={"number": "2002"}).json()["data"]) == 2
    for query in ({"number": "#"}, {"number": "2002", "source": "pos", "external_id": "x-7"}):
        bad = tenant.http.get("/v1/orders", params=query)
        assert (bad.status_code, bad.json().get("field") or bad.json()["errors"][0]["field"]) == (422, "number"), bad.text

    aftership.add("888000000001", "ups", order_number="1001")
    aftership.add("888000000002", "ups", order_number="#2002")
    aftership.add("888000000003", "ups", order_number="#9999")
    run = tenant.http.post(f"/v1/connections/{con}/sync", json={"mode": "backfill"}).json()
    runner.run_to_end(tenant.ctx, con, run["id"])
    done = wait_run(tenant, con, run["id"])
    assert (done["streams"]["shipments"]["created"], done["streams"]["shipments"]["rejected"]) == (1, 2), done
    reasons = " | ".join(r["reason"] for r in done["rejected"])
    assert "order number '#2002' names 2 orders (marketplace x-7, pos x-7)" in reasons
    assert "or the number '#9999'" in reasons
    [shipment] = tenant.http.get(f"/v1/orders/{shop_order['id']}/shipments").json()["data"]
    assert (shipment["tracking_number"], shipment["carrier"]) == ("888000000001", "ups")
    assert tenant.http.get(f"/v1/orders/{pos_one}/shipments").json()["data"] == []


def _page_world(tenant, easypost) -> list:
    """Two customers, three orders, four registered parcels (no tracker yet); a page of
    provider records that brings each its tracker (one twice, later on the page) and names
    a number nobody registered."""
    from connectors import shipping
    from connectors.easypost import mapping
    from crm.shipments import service

    _, first = _order(tenant, "pg-1", "pg1@ship.example")
    customer = tenant.http.get(f"/v1/orders/{first}").json()["customer_id"]
    r = tenant.http.post("/v1/orders", json={
        "customer": {"id": customer}, "source": "pos", "external_id": "pg-2", "channel": "web",
        "currency": "EUR", "placed_at": "2025-05-02T10:00:00Z", "total": 1000,
        "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 1000}]})
    second = r.json()["id"]
    _, other = _order(tenant, "pg-3", "pg3@ship.example")
    for order_id, number in ((first, "PG01"), (first, "PG02"), (second, "PG03"), (other, "PG04")):
        service.register(tenant.ctx, order_id, "USPS", number)
    for number in ("PG01", "PG02", "PG03", "PG04", "PG05"):
        easypost.add(number, "USPS")
    easypost.scan("PG01", "in_transit", "2025-05-10T08:00:00Z")
    easypost.scan("PG03", "out_for_delivery", "2025-05-10T09:00:00Z")
    easypost.scan("PG04", "delivered", "2025-05-10T10:00:00Z")
    page = [mapping.tracker(easypost.by_code(n)) for n in ("PG01", "PG02", "PG03", "PG04", "PG05")]
    easypost.scan("PG01", "delivered", "2025-05-11T08:00:00Z")
    page.append(mapping.tracker(easypost.by_code("PG01")))  # the same parcel again, later, on the page
    return [shipping.to_tracker(r, None, "easypost") for r in page]


def _page_state(who) -> tuple:
    """Every registered parcel of the page world, its order's stamps and its customer's
    shipment timeline, as a user reads them."""
    shipments = sorted((s for n in ("PG01", "PG02", "PG03", "PG04")
                        for s in who.http.get("/v1/shipments", params={"tracking_number": n}).json()["data"]),
                       key=lambda s: s["tracking_number"])
    orders = {o["external_id"]: (o.get("shipped_at"), o.get("delivered_at"))
              for o in who.http.get("/v1/orders").json()["data"]}
    timeline = sorted((e["type"], e["payload"].get("tracking_number")) for c in {s["customer_id"] for s in shipments}
                      for e in who.http.get(f"/v1/customers/{c}/events").json()["data"]
                      if e["type"].startswith("shipment."))
    parcels = {c: [(p["tracking_number"], p["status"]) for p in who.http.get(f"/v1/customers/{c}/360").json()["recent_shipments"]]
               for c in {s["customer_id"] for s in shipments}}
    return ([(s["tracking_number"], s["status"], len(s["checkpoints"])) for s in shipments], orders, timeline,
            sorted(map(sorted, parcels.values())))


def test_a_page_of_trackers_shares_its_reads_and_ends_as_one_by_one_would(tenant, other_tenant):
    """A sync page goes through ``apply_page``: the reads of the page's registered parcels
    are shared (2 BatchGetItem for the page) and the changes packed into transactions
    (one customer's parcels never share one, each built on the last commit: 4 for 5
    changes here), and the result (every shipment, order stamp, customer timeline and
    360's parcels) is what applying the records one by one gives; re-applying the page
    writes nothing and reads in two requests (plus the one the unregistered number costs)."""
    from crm.shipments import service

    states = []
    for who, together in ((tenant, True), (other_tenant, False)):
        with FakeEasyPost() as easypost:
            trackers = _page_world(who, easypost)
        if together:
            with dynamodb_calls() as calls:
                outcomes = service.apply_page(who.ctx, trackers)
            assert calls == {"BatchGetItem": 2, "TransactWriteItems": 4, "GetItem": 1}, calls  # GetItem: PG05
        else:
            outcomes = [service.apply(who.ctx, t) for t in trackers]
        assert [o.status for o in outcomes] == ["updated"] * 4 + ["rejected", "updated"]
        states.append(_page_state(who))
        if together:
            with dynamodb_calls() as calls:
                again = service.apply_page(who.ctx, trackers)
            assert [o.status for o in again] == ["unchanged"] * 4 + ["rejected", "unchanged"]
            assert calls == {"BatchGetItem": 2, "GetItem": 1}, calls
    assert states[0] == states[1]
    assert states[0][0][0][1] == "delivered" and states[0][1]["pg-3"][1] is not None


def test_a_packed_transaction_lost_to_a_concurrent_write_falls_back_and_loses_nothing(
        tenant, other_tenant, monkeypatch):
    """Another writer changes a customer's parcels after the page was read: the packed
    transaction holding that customer's first parcel is cancelled (its PARCELS version
    moved), so that parcel and the customer's later ones go one by one from fresh reads;
    the end state is still the one-by-one state."""
    from crm.shipments import service

    with FakeEasyPost() as easypost:
        expected = _page_world(other_tenant, easypost)
    for t in expected:
        service.apply(other_tenant.ctx, t)
    with FakeEasyPost() as easypost:
        trackers = _page_world(tenant, easypost)
    staged, raced = service._staged, []

    def racing(ctx, tracker, got):
        if not raced:  # before the first parcel's parts are built: another writer takes PG02
            raced.append("racing")
            raced[0] = service.apply(ctx, trackers[1]).status
        return staged(ctx, tracker, got)

    monkeypatch.setattr(service, "_staged", racing)
    outcomes = service.apply_page(tenant.ctx, trackers)
    assert raced == ["updated"]
    assert [o.status for o in outcomes] == ["updated", "unchanged", "updated", "updated", "rejected", "updated"]
    assert _page_state(tenant) == _page_state(other_tenant)
