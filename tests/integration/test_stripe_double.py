"""The Stripe double driven by the official ``stripe`` library over HTTP, its events delivered
signed to a local receiver (the app's webhook route is tested with the app, elsewhere)."""
from __future__ import annotations

import random

import httpx
import pytest
import stripe

from crm.billing import plans
from rapport.stripe_double import StripeDouble
from tests.stripe_helpers import WebhookReceiver, complete_checkout, post_helper, stripe_client

FAST = (0.05, 0.1, 0.2)


@pytest.fixture()
def receiver():
    r = WebhookReceiver()
    yield r
    r.stop()


@pytest.fixture()
def double(receiver):
    d = StripeDouble(receiver.url, retry_delays=FAST)
    d.start()
    yield d
    d.stop()


@pytest.fixture()
def client(double):
    return stripe_client(double.url)


def _price(client, plan: str):
    lookup_key = plans.get(plan).lookup_key
    return client.v1.prices.list(params={"lookup_keys": [lookup_key]}).data[0]


def _checkout(client, plan: str = "starter", tenant: str = "t_acme", **extra):
    price = _price(client, plan)
    item = {"price": price.id, "quantity": 1}
    params = {"mode": "subscription", "line_items": [item],
              "client_reference_id": tenant, "customer_email": f"{tenant}@example.com",
              "subscription_data": {"metadata": {"tenant": tenant}}, "metadata": {"tenant": tenant},
              "success_url": "https://rapport.test/billing?session={CHECKOUT_SESSION_ID}",
              "cancel_url": "https://rapport.test/billing", **extra}
    return client.v1.checkout.sessions.create(params=params)


def _subscribe(client, plan: str = "starter", tenant: str = "t_acme", **extra):
    if plans.get(plan).metered:
        extra.setdefault("line_items", [{"price": _price(client, plan).id}])
    session = complete_checkout(client, _checkout(client, plan, tenant, **extra).id)
    return client.v1.subscriptions.retrieve(session.subscription)


def _types(double) -> list[str]:
    return [e["type"] for e in double.events()]


def test_one_price_per_sold_plan_by_lookup_key(client):
    for plan in plans.sold():
        price = _price(client, plan.name)
        assert price.lookup_key == plan.lookup_key and price.recurring.interval == "month"
        product = client.v1.products.retrieve(price.product)
        assert product.default_price == price.id
        if plan.metered:
            assert price.recurring.usage_type == "metered"
            meter = client.v1.billing.meters.retrieve(price.recurring.meter)
            assert meter.event_name == plan.metered.meter
        else:
            assert price.unit_amount == plan.monthly_price and price.recurring.usage_type == "licensed"
    assert len(client.v1.prices.list(params={"limit": 100}).data) == len(plans.sold())


def test_checkout_complete_makes_an_active_subscription_with_the_tenant(client, double):
    session = _checkout(client)
    assert session.status == "open" and session.url.startswith(double.url)
    assert session.client_reference_id == "t_acme" and session.mode == "subscription"
    done = complete_checkout(client, session.id)
    assert done.status == "complete" and done.payment_status == "paid"
    sub = client.v1.subscriptions.retrieve(done.subscription)
    assert sub.status == "active" and sub.metadata.to_dict() == {"tenant": "t_acme"}
    item = sub["items"].data[0]
    assert item.price.lookup_key == "rapport_starter_monthly"
    assert item.current_period_start < item.current_period_end
    assert "current_period_end" not in sub  # Basil: the period lives on the items only
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.status == "paid" and invoice.amount_paid == plans.get("starter").monthly_price
    assert invoice.parent.subscription_details.subscription == sub.id
    assert invoice.to_dict().get("subscription") is None  # Basil: only under parent.subscription_details
    assert client.v1.customers.retrieve(sub.customer).email == "t_acme@example.com"
    assert client.v1.checkout.sessions.list(params={"customer": sub.customer}).data[0].id == session.id
    assert _types(double) == ["checkout.session.completed", "customer.subscription.created", "invoice.paid",
                              "entitlements.active_entitlement_summary.updated"]
    again = httpx.post(f"{double.url}/v1/test_helpers/checkout/sessions/{session.id}/complete",
                       headers={"Authorization": "Bearer sk_test_x"})
    assert again.status_code == 400 and again.json()["error"]["type"] == "invalid_request_error"


def test_trial_period_days_starts_trialing(client):
    sub = _subscribe(client, subscription_data={"metadata": {"tenant": "t_trial"}, "trial_period_days": 14})
    assert sub.status == "trialing" and sub.trial_end - sub.trial_start == 14 * 86400
    assert sub["items"].data[0].current_period_end == sub.trial_end


def test_events_are_signed_and_verify_with_the_official_library(client, double, receiver):
    _subscribe(client)
    assert double.wait_idle(10)
    assert [e["type"] for e in receiver.events()] == _types(double)
    assert all(e["delivered"] and len(e["attempts"]) == 1 for e in double.events())
    for request in receiver.requests:
        event = stripe.Webhook.construct_event(request["body"], request["headers"]["Stripe-Signature"],
                                               double.webhook_secret)
        assert event.api_version == "2025-03-31.basil" and event.object == "event"
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(request["body"], request["headers"]["Stripe-Signature"],
                                           "whsec_not_the_secret")
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(request["body"].replace(b'"livemode": false', b'"livemode": true'),
                                           request["headers"]["Stripe-Signature"], double.webhook_secret)
    created = next(e for e in receiver.events() if e["type"] == "customer.subscription.created")
    assert created["data"]["object"]["metadata"] == {"tenant": "t_acme"}


def test_held_events_are_released_in_reverse_order(client, double, receiver):
    double.hold()
    _subscribe(client)
    assert double.wait_idle(5) and receiver.requests == []
    assert not any(e["delivered"] for e in double.events())
    ids = [e["id"] for e in double.events()]
    assert double.release("reverse") == ids[::-1]
    assert [e["id"] for e in receiver.events()] == ids[::-1]
    assert all(e["delivered"] for e in double.events())


def test_release_in_a_chosen_or_random_order(client, double, receiver):
    double.hold()
    _subscribe(client)
    ids = [e["id"] for e in double.events()]
    chosen = [ids[2], ids[0], ids[3], ids[1]]
    double.release(chosen)
    assert [e["id"] for e in receiver.events()] == chosen
    double.hold()
    _subscribe(client, tenant="t_other")
    later = [e["id"] for e in double.events()][len(ids):]
    expected = later[:]
    random.Random(7).shuffle(expected)
    assert double.release(random.Random(7)) == expected
    assert [e["id"] for e in receiver.events()][len(ids):] == expected


def test_a_failed_delivery_is_retried_until_it_is_answered_2xx(client, double, receiver):
    receiver.statuses = {"checkout.session.completed": [500, 503]}
    session = _checkout(client)
    complete_checkout(client, session.id)
    assert double.wait_idle(10)
    first = double.events()[0]
    assert [a["status"] for a in first["attempts"]] == [500, 503, 200] and first["delivered"]
    assert sum(1 for e in receiver.events() if e["id"] == first["id"]) == 3


def test_undelivered_events_are_listed_with_delivery_success_false(client, double, receiver):
    receiver.statuses = {"checkout.session.completed": [500] * (1 + len(FAST))}  # every attempt fails
    _subscribe(client)
    assert double.wait_idle(10)
    failed = double.events()[0]
    assert not failed["delivered"] and len(failed["attempts"]) == 1 + len(FAST)
    undelivered = client.v1.events.list(params={"delivery_success": False}).data
    assert [e.id for e in undelivered] == [failed["id"]]
    assert undelivered[0].pending_webhooks == 1
    delivered = client.v1.events.list(params={"delivery_success": True, "limit": 100}).data
    assert failed["id"] not in [e.id for e in delivered] and len(delivered) == len(double.events()) - 1
    assert double.redeliver(failed["id"])["status"] == 200
    assert client.v1.events.list(params={"delivery_success": False}).data == []


def test_redeliver_sends_the_same_event_again(client, double, receiver):
    _subscribe(client)
    assert double.wait_idle(10)
    first = double.events()[0]["id"]
    double.redeliver(first)
    assert [e["id"] for e in receiver.events()].count(first) == 2


def test_fail_renewal_then_pay_the_invoice(client, double):
    sub = _subscribe(client)
    start = sub["items"].data[0].current_period_end
    post_helper(client, f"/v1/test_helpers/subscriptions/{sub.id}/fail_renewal")
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due" and sub["items"].data[0].current_period_start == start
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.status == "open" and invoice.billing_reason == "subscription_cycle"
    assert _types(double)[-2:] == ["invoice.payment_failed", "customer.subscription.updated"]
    updated = double.events()[-1]
    assert updated["data"]["previous_attributes"]["status"] == "active"
    assert client.v1.invoices.pay(invoice.id).status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    assert _types(double)[-2:] == ["invoice.paid", "customer.subscription.updated"]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(invoice.id)


def test_advance_renews_and_cancel_at_period_end_ends(client, double):
    sub = _subscribe(client)
    end = sub["items"].data[0].current_period_end
    post_helper(client, f"/v1/test_helpers/subscriptions/{sub.id}/advance")
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active" and sub["items"].data[0].current_period_start == end
    assert client.v1.invoices.retrieve(sub.latest_invoice).status == "paid"
    client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert double.events()[-1]["data"]["previous_attributes"]["cancel_at_period_end"] is False
    post_helper(client, f"/v1/test_helpers/subscriptions/{sub.id}/advance")
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    assert "customer.subscription.deleted" in _types(double)[-2:]


def test_cancel_emits_deleted_and_drops_entitlements(client, double):
    sub = _subscribe(client, "growth")
    listed = client.v1.entitlements.active_entitlements.list(params={"customer": sub.customer}).data
    assert sorted(e.lookup_key for e in listed) == sorted(plans.get("growth").features)
    summary = double.events()[-1]
    assert summary["type"] == "entitlements.active_entitlement_summary.updated"
    assert summary["data"]["object"]["customer"] == sub.customer
    assert client.v1.subscriptions.cancel(sub.id).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as again:  # Stripe: a canceled one is gone for cancel
        client.v1.subscriptions.cancel(sub.id)
    assert again.value.http_status == 404 and again.value.code == "resource_missing"
    assert _types(double)[-2:] == ["customer.subscription.deleted", "entitlements.active_entitlement_summary.updated"]
    assert double.events()[-1]["data"]["object"]["entitlements"]["data"] == []
    assert client.v1.subscriptions.list(params={"customer": sub.customer}).data == []
    assert len(client.v1.subscriptions.list(params={"customer": sub.customer, "status": "all"}).data) == 1


def test_plan_change_updates_the_item_and_the_entitlements(client, double):
    sub = _subscribe(client, "starter")
    item = sub["items"].data[0]
    growth = _price(client, "growth")
    client.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "price": growth.id}],
                                                   "metadata": {"note": "upgraded"}})
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub["items"].data[0].price.id == growth.id and sub.metadata.to_dict() == {"tenant": "t_acme",
                                                                                       "note": "upgraded"}
    updated = next(e for e in reversed(double.events()) if e["type"] == "customer.subscription.updated")
    assert updated["data"]["previous_attributes"]["items"]["data"][0]["price"]["lookup_key"] == \
        "rapport_starter_monthly"
    summary = double.events()[-1]
    assert [e["lookup_key"] for e in summary["data"]["object"]["entitlements"]["data"]] == \
        list(plans.get("growth").features)


def test_pause_and_resume(client, double):
    sub = _subscribe(client)
    post_helper(client, f"/v1/test_helpers/subscriptions/{sub.id}/pause")
    assert client.v1.subscriptions.retrieve(sub.id).status == "paused"
    assert "customer.subscription.paused" in _types(double)
    assert client.v1.subscriptions.resume(sub.id).status == "active"
    assert "customer.subscription.resumed" in _types(double)


def test_a_repeated_meter_event_identifier_is_refused_and_counted_once(client, double):
    sub = _subscribe(client, "scale")
    event = {"event_name": plans.get("scale").metered.meter, "identifier": "t_acme:rapport_customers:2026-12",
             "payload": {"stripe_customer_id": sub.customer, "value": "1500"}}
    assert client.v1.billing.meter_events.create(params=event).identifier == event["identifier"]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.billing.meter_events.create(params={**event, "payload": {**event["payload"], "value": "9"}})
    assert refused.value.http_status == 400 and "already exists" in refused.value.user_message
    assert refused.value.headers["Stripe-Should-Retry"] == "false"
    assert [m["payload"]["value"] for m in double.meter_events()] == ["1500"]
    with pytest.raises(stripe.InvalidRequestError) as no_value:
        client.v1.billing.meter_events.create(params={"event_name": event["event_name"],
                                                      "payload": {"stripe_customer_id": sub.customer}})
    assert no_value.value.code == "parameter_missing" and no_value.value.param == "payload[value]"


def test_stripe_error_shapes(double, client):
    bare = httpx.get(f"{double.url}/v1/prices")
    assert bare.status_code == 401 and bare.json()["error"]["type"] == "invalid_request_error"
    live = httpx.get(f"{double.url}/v1/prices", headers={"Authorization": "Bearer sk_live_secretvalue"})
    assert live.status_code == 401 and "sk_live_secretvalue" not in live.text
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.customers.retrieve("cus_missing")
    assert gone.value.http_status == 404 and gone.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as no_price:
        client.v1.checkout.sessions.create(params={"mode": "subscription", "line_items": [{"quantity": 1}]})
    assert no_price.value.code == "parameter_missing" and no_price.value.param == "line_items[0][price]"
    with pytest.raises(stripe.InvalidRequestError) as bad_price:
        client.v1.checkout.sessions.create(params={"mode": "subscription", "line_items": [{"price": "price_x"}]})
    assert bad_price.value.code == "resource_missing" and bad_price.value.http_status == 400
    body = httpx.get(f"{double.url}/v1/nothing", headers={"Authorization": "Bearer sk_test_x"}).json()
    assert set(body["error"]) == {"type", "code", "message", "param"}


def test_portal_session_and_events_filters(client, double):
    sub = _subscribe(client)
    portal = client.v1.billing_portal.sessions.create(params={"customer": sub.customer,
                                                              "return_url": "https://rapport.test/billing"})
    assert portal.url.startswith(double.url) and portal.customer == sub.customer
    paid = client.v1.events.list(params={"type": "invoice.paid"}).data
    assert [e.type for e in paid] == ["invoice.paid"]
    first = double.events()[0]
    assert client.v1.events.retrieve(first["id"]).type == first["type"]
    newest_first = client.v1.events.list(params={"created": {"gte": first["created"]}}).data
    assert [e.id for e in newest_first] == [e["id"] for e in reversed(double.events())]
    assert client.v1.events.list(params={"created": {"gt": first["created"] + 3600}}).data == []


def test_the_stripe_double_fixture_points_the_app_at_it(stripe_double, api_url):
    from crm.billing import stripe_api

    assert stripe_double.webhook_url == f"{api_url}/v1/billing/stripe/webhook"
    assert stripe_api.webhook_secrets() == [stripe_double.webhook_secret]
    prices = stripe_api.client().v1.prices.list(params={"lookup_keys": [plans.get("starter").lookup_key]})
    assert [p.lookup_key for p in prices.data] == [plans.get("starter").lookup_key]


def test_the_controls_over_http(client, double, receiver):
    control = f"{double.url}/_double"
    assert httpx.post(f"{control}/hold").json() == {"held": True}
    _subscribe(client)
    events = httpx.get(f"{control}/events").json()["data"]
    assert len(events) == 4 and not any(e["delivered"] for e in events)
    assert double.webhook_secret not in httpx.get(f"{control}/").text
    ids = [e["id"] for e in events]
    assert httpx.post(f"{control}/release", content=b"[1]").status_code == 400
    bad = httpx.post(f"{control}/release", json={"order": ["evt_unknown"]})
    assert bad.status_code == 400 and receiver.requests == []
    released = httpx.post(f"{control}/release", json={"order": "reverse"}).json()["delivered"]
    assert released == ids[::-1] and [e["id"] for e in receiver.events()] == ids[::-1]
    assert httpx.post(f"{control}/redeliver/{ids[0]}").json()["status"] == 200
    assert httpx.post(f"{control}/wait_idle", json={"timeout": 5}).json() == {"idle": True}
    assert httpx.get(f"{control}/meter_events").json() == {"data": []}
    httpx.post(f"{control}/hold")
    _subscribe(client, tenant="t_seeded")
    later = [e["id"] for e in double.events()][len(ids):]
    expected = later[:]
    random.Random(3).shuffle(expected)
    assert httpx.post(f"{control}/release", json={"seed": 3}).json()["delivered"] == expected
    httpx.post(f"{control}/webhook_url", json={"url": None})
    assert double.webhook_url is None


def test_the_checkout_page_pays_and_redirects_to_success_url(client, double):
    session = _checkout(client)
    page = httpx.get(session.url)
    assert page.status_code == 200 and "Pay" in page.text
    paid = httpx.post(session.url)
    assert paid.status_code == 303
    assert paid.headers["location"] == f"https://rapport.test/billing?session={session.id}"
    assert client.v1.checkout.sessions.retrieve(session.id).status == "complete"


def test_an_idempotency_key_replays_the_first_answer(double):
    headers = {"Authorization": "Bearer sk_test_x", "Idempotency-Key": "k-1"}
    first = httpx.post(f"{double.url}/v1/customers", data={"email": "a@example.com"}, headers=headers)
    again = httpx.post(f"{double.url}/v1/customers", data={"email": "a@example.com"}, headers=headers)
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    listed = httpx.get(f"{double.url}/v1/customers", headers=headers).json()["data"]
    assert [c["id"] for c in listed] == [first.json()["id"]]


def test_metered_usage_is_summarised_and_billed_at_renewal(client, double):
    scale = plans.get("scale")
    price = _price(client, "scale")
    with pytest.raises(stripe.InvalidRequestError) as with_quantity:
        client.v1.checkout.sessions.create(params={"mode": "subscription", "line_items": [
            {"price": price.id, "quantity": 1}]})  # a metered price takes no quantity
    assert with_quantity.value.param == "line_items[0][quantity]"
    session = complete_checkout(client, _checkout(client, "scale", line_items=[{"price": price.id}]).id)
    sub = client.v1.subscriptions.retrieve(session.subscription)
    item = sub["items"].data[0]
    for n, value in enumerate(("1200", "800")):
        client.v1.billing.meter_events.create(params={
            "event_name": scale.metered.meter, "identifier": f"u{n}", "timestamp": item.current_period_start,
            "payload": {"stripe_customer_id": sub.customer, "value": value}})
    summary = client.v1.billing.meters.event_summaries.list(price.recurring.meter, params={
        "customer": sub.customer, "start_time": item.current_period_start, "end_time": item.current_period_end})
    assert summary.data[0].aggregated_value == 2000
    post_helper(client, f"/v1/test_helpers/subscriptions/{sub.id}/advance")
    invoice = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert invoice.amount_paid == 2 * scale.metered.unit_price  # 2,000 customers at unit_price per 1,000


def test_trial_will_end_and_a_plan_change_without_features_still_emit(client, double):
    sub = _subscribe(client, subscription_data={"metadata": {"tenant": "t_trial"}, "trial_period_days": 7})
    post_helper(client, f"/v1/test_helpers/subscriptions/{sub.id}/trial_will_end")
    assert _types(double)[-1] == "customer.subscription.trial_will_end"
    client.v1.subscriptions.cancel(sub.id)
    assert _types(double)[-2:] == ["customer.subscription.deleted", "entitlements.active_entitlement_summary.updated"]


PLACEHOLDERS = (1234567890, "obj_123", "cus_QXg1o8vcGmoR32", "prod_QXg1hqf4jFNsqG", "message", "quote")


def _leaks(node, path=""):
    if isinstance(node, dict):
        return [leak for k, v in node.items() for leak in _leaks(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [leak for i, v in enumerate(node) for leak in _leaks(v, f"{path}[{i}]")]
    return [path] if not isinstance(node, bool) and node in PLACEHOLDERS else []


def test_objects_carry_no_placeholder_values_of_the_fixtures(client, double):
    sub = _subscribe(client, "growth")
    post_helper(client, f"/v1/test_helpers/subscriptions/{sub.id}/fail_renewal")
    objects = [e["data"]["object"] for e in double.events()]
    objects += [p.to_dict() for p in client.v1.prices.list(params={"limit": 100}).data]
    objects += [p.to_dict() for p in client.v1.products.list(params={"limit": 100}).data]
    objects += [m.to_dict() for m in client.v1.billing.meters.list().data]
    objects.append(client.v1.customers.retrieve(sub.customer).to_dict())
    assert [leak for o in objects for leak in _leaks(o, o["object"])] == []
