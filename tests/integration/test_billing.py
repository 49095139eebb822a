"""Billing over HTTP: GET /v1/billing, checkout, the portal and Stripe's signed webhooks,
with the official stripe library against the Stripe double (tests/stripe_helpers.py)."""
from __future__ import annotations

import json
import time

from tests.conftest import Tenant, partition_items
from tests.stripe_helpers import complete_checkout, post_helper, stripe_client

WEBHOOK = "/v1/billing/stripe/webhook"


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def billing(t: Tenant) -> dict:
    r = t.http.get("/v1/billing")
    assert r.status_code == 200, r.text
    return r.json()


def checkout(t: Tenant, plan="starter", expect=201) -> dict:
    r = t.http.post("/v1/billing/checkout", json={"plan": plan})
    assert r.status_code == expect, r.text
    return r.json()


def subscribe(t: Tenant, double, plan="starter") -> dict:
    """Checkout + pay; waits until every event is answered."""
    session = checkout(t, plan)
    complete_checkout(stripe_client(double.url), session["session_id"])
    assert double.wait_idle(20)
    return session


def test_a_new_tenant_is_on_free(tenant, stripe_double):
    b = billing(tenant)
    assert (b["plan"], b["status"], b["grace_until"]) == ("free", "free", None)
    assert b["limits"] == {"customers": 500, "connections": 1, "emails_per_month": 1000, "requests_per_second": 10,
                           "email_per_second": 2, "marketing_cap_hours": 16}
    assert b["features"] == [] and b["checkout"] is None


def test_upgrade_free_to_starter_through_checkout(tenant, stripe_double):
    session = checkout(tenant)
    assert session["url"].startswith("http") and session["session_id"].startswith("cs_")
    stripe = stripe_client(stripe_double.url)
    created = stripe.v1.checkout.sessions.retrieve(session["session_id"])
    assert created.client_reference_id == tenant.id and created.mode == "subscription"
    assert billing(tenant)["checkout"]["session_id"] == session["session_id"]
    complete_checkout(stripe, session["session_id"])
    assert stripe_double.wait_idle(20)
    b = billing(tenant)
    assert (b["plan"], b["status"]) == ("starter", "active"), b
    assert b["limits"]["customers"] == 10_000 and b["current_period"]["end"] > b["current_period"]["start"]
    sub = stripe.v1.subscriptions.retrieve(b["subscription"])
    assert sub.metadata["tenant_id"] == tenant.id
    assert b["checkout"] is None
    assert all(e["delivered"] for e in stripe_double.events())


def _public(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in ("delivered", "attempts")}


def post_event(anon, event: dict, secret: str, t: int | None = None, headers: dict | None = None):
    """Deliver an event as Stripe does (signed at ``t``), returning the response."""
    from rapport.stripe_double_delivery import signature

    body = json.dumps(event).encode()
    sig = signature(secret, body, int(time.time()) if t is None else t)
    return anon.post(WEBHOOK, content=body, headers={"Content-Type": "application/json",
                                                     "Stripe-Signature": sig, **(headers or {})})


def stored(t: Tenant):
    from crm.billing import service

    return service.as_state(service.load(t.id))


def test_the_webhooks_alone_apply_the_plan(tenant, stripe_double):
    session = checkout(tenant)
    complete_checkout(stripe_client(stripe_double.url), session["session_id"])
    assert stripe_double.wait_idle(20)
    s = stored(tenant)  # read before any GET /v1/billing (which would look the session up itself)
    assert (s.plan, s.status) == ("starter", "active")
    types = {e["type"] for e in stripe_double.events()}
    assert {"checkout.session.completed", "customer.subscription.created", "invoice.paid"} <= types
    assert all(a["status"] == 200 for e in stripe_double.events() for a in e["attempts"])


def test_duplicate_deliveries_change_nothing(tenant, stripe_double, anon, raw_table):
    subscribe(tenant, stripe_double)
    before = partition_items(raw_table, tenant)
    for event in stripe_double.events():
        assert stripe_double.redeliver(event["id"])["status"] == 200
        r = post_event(anon, _public(event), stripe_double.webhook_secret)
        from crm.billing.webhooks import HANDLED

        expected = "duplicate" if event["type"] in HANDLED else "ignored"
        assert r.status_code == 200 and r.json() == {"status": expected, "event_id": event["id"]}
    assert partition_items(raw_table, tenant) == before
    assert billing(tenant)["plan"] == "starter"


def test_forged_stale_missing_and_thin_signatures_get_400_and_write_nothing(tenant, stripe_double, anon,
                                                                          raw_table):
    session = checkout(tenant)
    stripe_double.hold()
    complete_checkout(stripe_client(stripe_double.url), session["session_id"])
    events = [_public(e) for e in stripe_double.events()]
    before = partition_items(raw_table, tenant)
    secret = stripe_double.webhook_secret
    for event in events:
        forged = post_event(anon, event, "whsec_forged")
        stale = post_event(anon, event, secret, t=int(time.time()) - 301)  # a replay of an old delivery
        missing = anon.post(WEBHOOK, content=json.dumps(event).encode(), headers={"Content-Type": "application/json"})
        for r in (forged, stale, missing):
            assert r.status_code == 400, r.text
            assert r.json()["code"] == "invalid_signature" and r.json()["field"] == "Stripe-Signature"
            assert secret not in r.text
    thin = {"id": "evt_234", "object": "v2.core.event", "type": "v1.billing.meter.error_report_triggered",
            "livemode": True, "created": "2022-02-15T00:27:45.330Z"}  # fixtures/stripe/v2_thin_event.json
    r = post_event(anon, thin, secret)
    assert r.status_code == 400 and r.json()["code"] == "unsupported_event"
    tampered = dict(events[0], type="customer.subscription.deleted")
    from rapport.stripe_double_delivery import signature

    good_sig = signature(secret, json.dumps(events[0]).encode(), int(time.time()))
    r = anon.post(WEBHOOK, content=json.dumps(tampered).encode(), headers={"Stripe-Signature": good_sig})
    assert r.status_code == 400
    assert partition_items(raw_table, tenant) == before
    assert stored(tenant).plan == "free"
    stripe_double.release()
    assert stripe_double.wait_idle(20)
    assert stored(tenant).plan == "starter"


def test_several_secrets_are_accepted_while_rotating(tenant, stripe_double, anon, monkeypatch):
    monkeypatch.setenv("RAPPORT_STRIPE_WEBHOOK_SECRETS", f"whsec_new_one,{stripe_double.webhook_secret}")
    subscribe(tenant, stripe_double)
    assert stored(tenant).plan == "starter"
    event = _public(next(e for e in stripe_double.events() if e["type"] == "invoice.paid"))
    monkeypatch.setenv("RAPPORT_STRIPE_WEBHOOK_SECRETS", "whsec_new_one")  # the old secret retired
    assert post_event(anon, event, stripe_double.webhook_secret).status_code == 400
    assert post_event(anon, event, "whsec_new_one").json()["status"] == "duplicate"


def test_unhandled_event_types_are_acknowledged_and_ignored(tenant, stripe_double, anon, raw_table):
    before = partition_items(raw_table, tenant)
    event = {"id": "evt_other", "object": "event", "api_version": "2025-03-31.basil", "created": int(time.time()),
             "type": "charge.refunded", "data": {"object": {"id": "ch_1", "object": "charge", "customer": "cus_x"}},
             "livemode": False, "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}}
    r = post_event(anon, event, stripe_double.webhook_secret)
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert partition_items(raw_table, tenant) == before


def test_checkout_refuses_unknown_and_free_plans_and_bad_urls(tenant, stripe_double, raw_table):
    before = partition_items(raw_table, tenant)
    for body in ({"plan": "platinum"}, {"plan": "free"}):
        r = tenant.http.post("/v1/billing/checkout", json=body)
        assert r.status_code == 422 and r.json()["field"] == "plan", r.text
    r = tenant.http.post("/v1/billing/checkout", json={"plan": "starter", "success_url": "javascript:alert(1)"})
    assert r.status_code == 422 and r.json()["field"] == "success_url"
    assert partition_items(raw_table, tenant) == before


def test_a_second_checkout_while_subscribed_is_409_and_the_portal_works(tenant, stripe_double):
    r = tenant.http.post("/v1/billing/portal")
    assert r.status_code == 409 and r.json()["code"] == "no_stripe_customer"
    subscribe(tenant, stripe_double)
    r = tenant.http.post("/v1/billing/checkout", json={"plan": "growth"})
    assert r.status_code == 409 and r.json()["code"] == "subscription_exists"
    portal = tenant.http.post("/v1/billing/portal")
    assert portal.status_code == 200 and portal.json()["url"].startswith("http")


def test_the_same_checkout_twice_returns_the_open_session(tenant, stripe_double):
    first = checkout(tenant)
    again = checkout(tenant, expect=200)
    assert again == first
    other = checkout(tenant, "growth")  # changed their mind: the starter session is expired
    assert other["session_id"] != first["session_id"]
    stripe = stripe_client(stripe_double.url)
    assert stripe.v1.checkout.sessions.retrieve(first["session_id"]).status == "expired"


def test_two_concurrent_checkouts_open_at_most_one_session(tenant, stripe_double):
    import threading

    barrier, results = threading.Barrier(4), []

    def go():
        barrier.wait()
        r = tenant.http.post("/v1/billing/checkout", json={"plan": "starter"})
        results.append((r.status_code, r.json()))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(status in (200, 201, 409) for status, _ in results), results
    ids = {body["session_id"] for status, body in results if status in (200, 201)}
    assert len(ids) == 1, results
    assert [s for s, _ in results].count(201) == 1
    assert all(b["code"] == "checkout_in_progress" for s, b in results if s == 409)
    stripe = stripe_client(stripe_double.url)
    customer = stored(tenant)
    from crm.billing import service

    sessions = stripe.v1.checkout.sessions.list({"customer": service.load(tenant.id).stripe_customer}).data
    assert [s.id for s in sessions if s.status == "open"] == list(ids), customer


def test_two_paid_subscriptions_the_webhook_side_cancels_the_newer(tenant, stripe_double):
    """If Stripe still ends up with two (a session made outside Rapport for the tenant's
    customer), the older subscription stays the tenant's and the newer is cancelled."""
    subscribe(tenant, stripe_double)
    first = billing(tenant)["subscription"]
    from crm.billing import service

    stripe = stripe_client(stripe_double.url)
    price = stripe.v1.prices.list({"lookup_keys": ["rapport_growth_monthly"]}).data[0]
    extra = stripe.v1.checkout.sessions.create({
        "mode": "subscription", "customer": service.load(tenant.id).stripe_customer,
        "line_items": [{"price": price.id, "quantity": 1}], "client_reference_id": tenant.id,
        "subscription_data": {"metadata": {"tenant_id": tenant.id}}, "success_url": "https://example.com/ok"})
    complete_checkout(stripe, extra.id)
    assert stripe_double.wait_idle(20)
    b = billing(tenant)
    assert (b["subscription"], b["plan"], b["status"]) == (first, "starter", "active")
    subs = stripe.v1.subscriptions.list({"customer": service.load(tenant.id).stripe_customer, "status": "all"}).data
    assert sorted((s.id == first, s.status) for s in subs) == [(False, "canceled"), (True, "active")]


def _sub_id(t: Tenant) -> str:
    return stored(t).subscription


def test_past_due_has_a_seven_day_grace_then_402_then_paid_is_active_again(tenant, stripe_double, monkeypatch):
    """A failed renewal at Stripe -> past_due: writes work for 7 days, then answer 402
    payment_required (reads keep working) until the invoice is paid, then work again."""
    from datetime import datetime, timedelta

    from crm import clock

    subscribe(tenant, stripe_double)
    stripe = stripe_client(stripe_double.url)
    sub = _sub_id(tenant)
    post_helper(stripe, f"/v1/test_helpers/subscriptions/{sub}/fail_renewal")
    assert stripe_double.wait_idle(20)
    b = billing(tenant)
    assert (b["plan"], b["status"]) == ("starter", "past_due"), b
    renewal = stripe.v1.subscriptions.retrieve(sub)["items"]["data"][0]["current_period_start"]
    parse = datetime.fromisoformat
    assert parse(b["past_due_since"]).timestamp() == renewal
    assert parse(b["grace_until"]) - parse(b["past_due_since"]) == timedelta(days=7)
    assert b["current_period"]["start"] == b["past_due_since"]
    assert tenant.http.post("/v1/customers", json={"email": "in-grace@example.com"}).status_code == 201
    after_grace = parse(b["grace_until"]) + timedelta(minutes=1)
    monkeypatch.setattr(clock, "now", lambda: after_grace)  # until the end
    refused = tenant.http.post("/v1/customers", json={"email": "overdue@example.com"})
    assert refused.status_code == 402, refused.text
    assert (refused.json()["code"], refused.json()["grace_until"]) == ("payment_required", b["grace_until"])
    assert [c["email"] for c in tenant.http.get("/v1/customers").json()["data"]] == ["in-grace@example.com"]
    [invoice] = [i for i in stripe.v1.invoices.list({"customer": stripe.v1.subscriptions.retrieve(sub).customer}).data
                 if i.status == "open"]
    stripe.v1.invoices.pay(invoice.id)
    assert stripe_double.wait_idle(20)
    b = billing(tenant)
    assert (b["plan"], b["status"], b["grace_until"], b["past_due_since"]) == ("starter", "active", None, None)
    assert tenant.http.post("/v1/customers", json={"email": "overdue@example.com"}).status_code == 201


def test_cancel_goes_back_to_free_and_deletes_nothing(tenant, stripe_double):
    subscribe(tenant, stripe_double)
    customer = tenant.create_customer(email="kept@acme.example")
    stripe = stripe_client(stripe_double.url)
    stripe.v1.subscriptions.cancel(_sub_id(tenant))
    assert stripe_double.wait_idle(20)
    b = billing(tenant)
    assert (b["plan"], b["status"], b["limits"]["customers"]) == ("free", "canceled", 500), b
    assert tenant.http.get(f"/v1/customers/{customer['id']}").status_code == 200
    again = checkout(tenant)  # canceled: a new checkout is allowed
    assert again["session_id"]


def test_a_late_webhook_does_not_keep_a_paying_tenant_waiting(tenant, stripe_double):
    """Deliveries held (Stripe is late): GET /v1/billing looks the open session up and
    shows the plan paid for; the late events then change nothing."""
    session = checkout(tenant)
    stripe_double.hold()
    complete_checkout(stripe_client(stripe_double.url), session["session_id"])
    assert stored(tenant).plan == "free"
    b = billing(tenant)
    assert (b["plan"], b["status"], b["checkout"]) == ("starter", "active", None), b
    stripe_double.release("reverse")
    assert stripe_double.wait_idle(20)
    after = billing(tenant)
    for seen in (b, after):  # api_calls counts the GETs in between
        seen["usage"].pop("api_calls")
    assert after == b


def test_every_order_of_a_burst_ends_in_the_same_state(api_url, stripe_double):
    """past_due then paid: invoice.payment_failed, customer.subscription.updated, invoice.paid,
    customer.subscription.updated, delivered in each of their 24 orders (one tenant each; the
    tenants' bursts are held together and released one tenant after another)."""
    import itertools

    stripe = stripe_client(stripe_double.url)
    orders = list(itertools.permutations(range(4)))
    tenants = [Tenant(api_url, f"Burst {n}") for n in range(len(orders))]
    for t in tenants:
        complete_checkout(stripe, checkout(t)["session_id"])
    assert stripe_double.wait_idle(60)
    known = {e["id"] for e in stripe_double.events()}
    stripe_double.hold()
    release = []
    for t, order in zip(tenants, orders, strict=True):
        sub = _sub_id(t)
        post_helper(stripe, f"/v1/test_helpers/subscriptions/{sub}/fail_renewal")
        customer = stripe.v1.subscriptions.retrieve(sub).customer
        [invoice] = [i for i in stripe.v1.invoices.list({"customer": customer}).data if i.status == "open"]
        stripe.v1.invoices.pay(invoice.id)
        burst = [e["id"] for e in stripe_double.events() if e["id"] not in known and
                 e["type"] in ("invoice.payment_failed", "customer.subscription.updated", "invoice.paid")]
        assert len(burst) == 4, [e["type"] for e in stripe_double.events() if e["id"] not in known]
        known |= {e["id"] for e in stripe_double.events()}
        release += [burst[i] for i in order]
    stripe_double.release(release)
    assert stripe_double.wait_idle(60)
    for t, order in zip(tenants, orders, strict=True):
        s = stored(t)
        assert (s.plan, s.status, s.grace_until, s.past_due_since) == ("starter", "active", None, None), (order, s)


def test_one_tenants_session_or_webhook_never_changes_another(api_url, stripe_double, raw_table):
    """A session for A's customer that names B (client_reference_id, metadata) changes
    neither: B has no such customer, and A's subscriptions naming B are not A's."""
    a, b = Tenant(api_url, "Billing A"), Tenant(api_url, "Billing B")
    subscribe(a, stripe_double)
    a_before, b_before = billing(a), partition_items(raw_table, b)
    from crm.billing import service

    stripe = stripe_client(stripe_double.url)
    price = stripe.v1.prices.list({"lookup_keys": ["rapport_growth_monthly"]}).data[0]
    crossing = stripe.v1.checkout.sessions.create({
        "mode": "subscription", "customer": service.load(a.id).stripe_customer,
        "line_items": [{"price": price.id, "quantity": 1}], "client_reference_id": b.id,
        "metadata": {"tenant_id": b.id}, "subscription_data": {"metadata": {"tenant_id": b.id}},
        "success_url": "https://example.com/ok"})
    complete_checkout(stripe, crossing.id)
    assert stripe_double.wait_idle(20)
    assert partition_items(raw_table, b) == b_before
    assert billing(b)["plan"] == "free"
    after = billing(a)
    assert (after["plan"], after["subscription"]) == (a_before["plan"], a_before["subscription"])
    # B's own checkout and payment leave A as it was
    subscribe(b, stripe_double, "growth")
    assert billing(b)["plan"] == "growth" and billing(a)["plan"] == "starter"


def test_a_failure_while_applying_is_5xx_and_the_retry_is_applied(tenant, stripe_double, anon, monkeypatch,
                                                                 raw_table):
    """Stripe unreachable while the handler fetches: 503 (Stripe retries), and the event's guard
    is not left behind, so the retry is applied rather than taken for a duplicate."""
    session = checkout(tenant)
    stripe_double.hold()
    complete_checkout(stripe_client(stripe_double.url), session["session_id"])
    event = _public(next(e for e in stripe_double.events() if e["type"] == "customer.subscription.created"))
    before = partition_items(raw_table, tenant)
    monkeypatch.setenv("RAPPORT_STRIPE_API_BASE", "http://127.0.0.1:9")  # nothing listens there
    r = post_event(anon, event, stripe_double.webhook_secret)
    assert r.status_code == 503 and r.json()["code"] == "stripe_unavailable", r.text
    assert partition_items(raw_table, tenant) == before
    monkeypatch.setenv("RAPPORT_STRIPE_API_BASE", stripe_double.url)
    r = post_event(anon, event, stripe_double.webhook_secret)
    assert r.status_code == 200 and r.json()["status"] == "applied"
    assert stored(tenant).plan == "starter"
    stripe_double.release()
    assert stripe_double.wait_idle(20)


def test_an_event_naming_a_tenant_for_a_customer_not_its_own_is_ignored(tenant, stripe_double, anon, raw_table):
    """A signed event whose subscription names the tenant but belongs to another (or an
    unknown) Stripe customer changes nothing."""
    subscribe(tenant, stripe_double)
    before = partition_items(raw_table, tenant)
    stranger = stripe_client(stripe_double.url).v1.customers.create({"metadata": {"tenant_id": "nosuchtenant"}})
    for customer in (stranger.id, "cus_unknown"):
        event = {"id": f"evt_forged_{customer}", "object": "event", "api_version": "2025-03-31.basil",
                 "created": int(time.time()), "type": "customer.subscription.deleted", "livemode": False,
                 "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
                 "data": {"object": {"id": "sub_x", "object": "subscription", "customer": customer,
                                     "status": "canceled", "metadata": {"tenant_id": tenant.id}}}}
        r = post_event(anon, event, stripe_double.webhook_secret)
        assert r.status_code == 200 and r.json()["status"] == "ignored", r.text
    assert partition_items(raw_table, tenant) == before
    assert billing(tenant)["plan"] == "starter"


def test_without_stripe_settings_billing_answers_503_and_writes_nothing(tenant, anon, raw_table, monkeypatch):
    for name in ("RAPPORT_STRIPE_API_KEY", "RAPPORT_STRIPE_WEBHOOK_SECRETS"):
        monkeypatch.delenv(name, raising=False)
    before = partition_items(raw_table, tenant)
    assert billing(tenant)["plan"] == "free"  # the plan needs no Stripe
    r = tenant.http.post("/v1/billing/checkout", json={"plan": "starter"})
    assert r.status_code == 503 and r.json()["code"] == "billing_not_configured"
    r = anon.post(WEBHOOK, content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
    assert r.status_code == 503 and r.json()["code"] == "billing_not_configured"
    assert partition_items(raw_table, tenant) == before


def test_checkout_completed_links_a_customer_stripe_created(tenant, stripe_double):
    """A session opened for the tenant without a customer (Checkout creates one): its
    checkout.session.completed links that customer to the tenant (client_reference_id), once."""
    from crm.billing import service
    from crm.storage import BillingItem

    stripe = stripe_client(stripe_double.url)
    price = stripe.v1.prices.list({"lookup_keys": ["rapport_starter_monthly"]}).data[0]
    session = stripe.v1.checkout.sessions.create({
        "mode": "subscription", "customer_email": "owner@acme.example", "client_reference_id": tenant.id,
        "line_items": [{"price": price.id, "quantity": 1}], "success_url": "https://example.com/ok",
        "subscription_data": {"metadata": {"tenant_id": tenant.id}}})
    service.ensure(tenant.id)
    BillingItem(tenant.ctx.prefix, "BILLING").update(actions=[BillingItem.checkout_session.set(session.id)])
    complete_checkout(stripe, session.id)
    assert stripe_double.wait_idle(20)
    s, item = stored(tenant), service.load(tenant.id)
    assert (s.plan, s.status) == ("starter", "active")
    assert item.stripe_customer == stripe.v1.checkout.sessions.retrieve(session.id).customer
    assert [i.gsi1sk for i in service.billed_tenants() if i.gsi1sk == tenant.id] == [tenant.id]

