"""Journeys over HTTP against the emulator (api/routes/journeys.py, crm/journeys/): CRUD
and its validation, a welcome journey sending once (its event delivered twice) and
updating the customer, cart abandonment from ``POST /v1/checkouts`` (sent when no order
came, cancelled by an order whenever it arrives, and by an exit that beats the send to
its record), the frequency cap deferring a journey email, and birthdays in the tenant's
time zone (backfilled on activation, followed on profile changes, started when due).

Emails are read back from the emulator's SES (raw messages) by their ``X-Rapport-Ref``,
which starts with the journey's id."""
from __future__ import annotations

import email
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import Tenant
from tests.integration.test_campaigns import make_template, setup_email


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setenv("RAPPORT_SES_SEND_RATE", "1000")


@pytest.fixture()
def tenant(api_url):
    """A tenant on the growth plan (journeys are a plan feature, docs/billing.md)."""
    from tests.plan_helpers import set_plan

    t = Tenant(api_url, "Journeys")
    set_plan(t, "growth")
    return t


def journey_messages(journey_id: str) -> list[email.message.Message]:
    from moto.ses.models import ses_backends

    out = []
    for account in list(ses_backends.values()):
        for backend in list(account.values()):
            for m in list(backend.sent_messages):
                raw = getattr(m, "raw_data", None)
                if raw:
                    parsed = email.message_from_string(raw)
                    if (parsed["X-Rapport-Ref"] or "").startswith(journey_id):
                        out.append(parsed)
    return out


def new_journey(tenant: Tenant, **spec) -> dict:
    r = tenant.http.post("/v1/journeys", json={"name": "J", "status": "active", **spec})
    assert r.status_code == 201, r.text
    return r.json()


def consented(tenant: Tenant, n: int = 0, **extra) -> dict:
    return tenant.create_customer(email=f"j{n}.{tenant.id}@example.com".lower(), name={"given": f"Jo{n}"},
                                  consent={"email": {"status": "granted", "source": "test"}}, **extra)


def runs(tenant: Tenant, customer_id: str) -> list[dict]:
    r = tenant.http.get(f"/v1/customers/{customer_id}/journeys")
    assert r.status_code == 200, r.text
    return r.json()["data"]


def wait_for(check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, "timed out"
            return value
        time.sleep(0.2)


def _checkout(tenant: Tenant, customer_id: str, checkout_id: str, started: datetime) -> dict:
    r = tenant.http.post("/v1/checkouts", json={
        "customer_id": customer_id, "checkout_id": checkout_id, "started_at": started.isoformat(),
        "currency": "EUR", "total": 4200, "url": "https://shop.example/cart/1",
        "items": [{"sku": "tea", "name": "Green tea", "quantity": 2, "unit_price": 2100}]})
    assert r.status_code in (200, 201), r.text
    return r.json()


def _order(tenant: Tenant, customer_id: str, n: int, placed: datetime) -> None:
    r = tenant.http.post("/v1/orders", json={
        "customer": {"id": customer_id}, "source": "shopify", "external_id": f"o-{customer_id}-{n}",
        "channel": "web", "currency": "EUR", "placed_at": placed.isoformat(), "total": 4200,
        "lines": [{"sku": "tea", "name": "Green tea", "quantity": 2, "unit_price": 2100}]})
    assert r.status_code == 201, r.text


def test_crud_validation_and_status(tenant):
    setup_email(tenant)
    template = make_template(tenant)
    body = {"name": "Welcome", "trigger": {"type": "customer.created"},
            "steps": [{"type": "send_email", "template_id": template}]}
    bad = [
        ({**body, "steps": [{"type": "send_email", "template_id": "tpl_01ARZ3NDEKTSV4RRFFQ69G5FAV"}]},
         "steps[0].template_id"),
        ({**body, "steps": [{"type": "wait", "duration": "PT1H", "until": "09:00"}]}, "steps"),
        ({**body, "trigger": {"type": "segment.entered", "segment_id": "seg_01ARZ3NDEKTSV4RRFFQ69G5FAV"}},
         "trigger.segment_id"),
        ({**body, "colour": "red"}, "colour"),
        ({**body, "steps": [{"type": "condition", "rule": {"field": "orders.cnt", "op": ">", "value": 1}},
                            {"type": "update", "add_tags": ["x"]}]}, "orders.cnt"),
    ]
    for payload, where in bad:
        r = tenant.http.post("/v1/journeys", json=payload)
        assert r.status_code == 422, (payload, r.text)
        assert where in r.text
    assert tenant.http.get("/v1/journeys").json()["data"] == []  # nothing was stored
    created = tenant.http.post("/v1/journeys", json=body)
    assert created.status_code == 201 and created.headers["Location"] == f"/v1/journeys/{created.json()['id']}"
    j = created.json()
    assert j["status"] == "draft" and j["stats"] == {"started": 0, "active": 0, "completed": 0, "exited": 0,
                                                     "emails": 0}
    assert j["reentry"] == {"type": "always"} and j["steps"][0]["template_id"] == template
    from tests.plan_helpers import set_plan

    set_plan(tenant, "starter")  # a draft on any plan; running one needs journeys in the plan
    refused = tenant.http.patch(f"/v1/journeys/{j['id']}", json={"status": "active"})
    assert refused.status_code == 402 and refused.json()["code"] == "feature_not_in_plan"
    assert refused.json()["upgrade_to"] == "growth"
    set_plan(tenant, "growth")
    got = tenant.http.get(f"/v1/journeys/{j['id']}")
    assert got.json() == j and got.headers["ETag"] == f'"{j["version"]}"'
    assert [x["id"] for x in tenant.http.get("/v1/journeys").json()["data"]] == [j["id"]]
    active = tenant.http.patch(f"/v1/journeys/{j['id']}", json={"status": "active"},
                               headers={"If-Match": f'"{j["version"]}"'})
    assert active.status_code == 200 and active.json()["status"] == "active"
    stale = tenant.http.patch(f"/v1/journeys/{j['id']}", json={"name": "x"}, headers={"If-Match": f'"{j["version"]}"'})
    assert stale.status_code == 412
    bad_step = tenant.http.patch(f"/v1/journeys/{j['id']}", json={"steps": [{"type": "condition", "rule": {
        "field": "vip", "op": "=", "value": True}, "then": 0}]})
    assert bad_step.status_code == 422 and "steps[0].then" in bad_step.text
    assert tenant.http.delete(f"/v1/journeys/{j['id']}").status_code == 409  # active: pause or archive first
    archived = tenant.http.patch(f"/v1/journeys/{j['id']}", json={"status": "archived"})
    assert archived.status_code == 200
    back = tenant.http.patch(f"/v1/journeys/{j['id']}", json={"status": "active"})
    assert back.status_code == 409 and back.json()["code"] == "invalid_transition"
    assert tenant.http.get(f"/v1/journeys/{j['id']}").json()["status"] == "archived"
    assert tenant.http.delete(f"/v1/journeys/{j['id']}").status_code == 204
    assert tenant.http.get(f"/v1/journeys/{j['id']}").status_code == 404
    assert tenant.http.get("/v1/journeys/jrn_nope").status_code == 404


def test_an_exit_that_reaches_the_run_first_beats_the_send_to_its_record(tenant):
    """The run is ``sending`` (its step's email emitted, not yet recorded) when the order
    arrives: the exit wins, the sender's acquire fails its ConditionCheck, nothing is sent."""
    from crm import clock
    from crm.journeys import plan, runner, sender, store

    setup_email(tenant)
    template = make_template(tenant)
    j = new_journey(tenant, trigger={"type": "checkout.started", "wait": "PT1H"},
                    steps=[{"type": "send_email", "template_id": template}])
    cid = consented(tenant)["id"]
    spec = store.definition_of(store.load(tenant.ctx, j["id"]))
    journey = plan.Journey(j["id"], spec)
    started = clock.now() - timedelta(hours=2)
    trigger = {"id": f"checkout.started:{cid}:c1", "type": "checkout.started", "customer_id": cid,
               "occurred_at": clock.iso(started), "data": {"checkout_id": "c1"}}
    outcome = plan.start(journey, trigger, [], clock.now())
    item = runner.new_item(tenant.ctx, outcome.run, trigger)
    item.save()
    view, settings, (base, templates) = runner._read(tenant.ctx, cid, spec)
    due = plan.on_due(journey, outcome.run, view, clock.now(), settings)
    [send] = [a for a in due.actions if isinstance(a, plan.Send)]
    assert runner._save(tenant.ctx, item, due.run)  # the run is sending at step 0
    order = {"id": "order.placed:o1", "type": "order.placed", "customer_id": cid,
             "occurred_at": clock.iso(started + timedelta(minutes=30)), "data": {}}
    assert runner.handle_event(tenant.ctx, order)["exited"] == 1
    reads = type(base)(template=templates[template], settings=base.settings, tenant_name="", plan=base.plan)
    result = sender.send(tenant.ctx, (item.pk, item.sk), send, reads, trigger, clock.now())
    assert result.state == "gone"
    assert journey_messages(j["id"]) == []
    [run] = runs(tenant, cid)
    assert run["status"] == "exited" and run["reason"] == "order.placed"


def test_what_an_event_costs_the_journeys_handler(tenant):
    """A batch of a tenant without journeys: 1 Query (its journeys), nothing more; with an
    active journey the event triggers nothing of: + 1 Query (the customer's runs)."""
    from functions import journeys as handler
    from tests.dynamo_calls import dynamodb_calls
    from tests.streams import sqs_event

    cid = tenant.create_customer(email=f"cost.{tenant.id}@example.com".lower())["id"]
    events = [{"id": f"customer.updated:{cid}:{n}", "type": "customer.updated", "tenant_id": tenant.id,
               "customer_id": cid, "occurred_at": "2026-01-01T00:00:00Z", "data": {"changed": ["tags"]}}
              for n in range(5)]
    with dynamodb_calls() as calls:
        assert handler.handle_batch(sqs_event(events, "rapport-journeys")) == {"batchItemFailures": []}
    assert dict(calls) == {"Query": 1}
    setup_email(tenant)
    new_journey(tenant, trigger={"type": "checkout.started"},
                steps=[{"type": "send_email", "template_id": make_template(tenant)}])
    with dynamodb_calls() as calls:
        assert handler.handle_batch(sqs_event(events, "rapport-journeys")) == {"batchItemFailures": []}
    assert calls.pop("Query") == 1 + len(events)
    assert dict(calls) in ({}, {"GetItem": 1})  # the plan, cached per container


@pytest.fixture(scope="module")
def event_pipeline(dev_stack):
    """One pipeline for the module (starting and stopping the pollers per test cost more
    than the tests): the tests that drive the handlers themselves come first in the file,
    before it starts, so nothing delivers their writes behind their back."""
    pipeline = dev_stack.start_pollers(starting_position="LATEST")
    assert pipeline.wait_started(), "the pollers did not start"
    yield pipeline
    dev_stack.stop_pollers()


def test_welcome_journey_sends_once_and_updates_the_customer(tenant, event_pipeline):
    """customer.created starts the run at once: one email with the customer's name, the
    tag added, the run done; the same event delivered again starts nothing."""
    from crm.journeys import runner

    setup_email(tenant)
    template = make_template(tenant)
    j = new_journey(tenant, trigger={"type": "customer.created"},
                    steps=[{"type": "send_email", "template_id": template},
                           {"type": "update", "add_tags": ["welcomed"], "set_attributes": {"welcome": "sent"}}])
    customer = consented(tenant)
    assert event_pipeline.wait_idle(60)
    got = wait_for(lambda: tenant.http.get(f"/v1/customers/{customer['id']}").json())
    assert "welcomed" in got["tags"] and got["attributes"] == {"welcome": "sent"}
    [message] = journey_messages(j["id"])
    assert message["To"] == customer["email"] and "Jo0" in message["Subject"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [run] = runs(tenant, customer["id"])
    assert run["status"] == "done" and run["occurrence"] == "created" and run["due_at"] is None
    assert [s["state"] for s in run["sends"]] == ["sent"]
    stats = tenant.http.get(f"/v1/journeys/{j['id']}").json()["stats"]
    assert stats == {"started": 1, "active": 0, "completed": 1, "exited": 0, "emails": 1}
    assert tenant.http.get("/v1/billing").json()["usage"]["emails_sent"] == 1  # the month's usage
    # the same customer.created again (a redelivery): no second run, no second email
    event = {"id": f"customer.created:{customer['id']}", "type": "customer.created", "tenant_id": tenant.id,
             "customer_id": customer["id"], "occurred_at": customer["created_at"],
             "data": {"customer_id": customer["id"]}}
    assert runner.handle_event(tenant.ctx, event) == {"started": 0, "exited": 0}
    assert len(journey_messages(j["id"])) == 1 and len(runs(tenant, customer["id"])) == 1


def test_cart_abandonment_sends_without_an_order_and_an_order_cancels_it(tenant, event_pipeline):
    setup_email(tenant)
    template = make_template(tenant)
    j = new_journey(tenant, trigger={"type": "checkout.started", "wait": "PT1H"},
                    steps=[{"type": "send_email", "template_id": template}])
    now = datetime.now(UTC)
    abandoned, bought, late = (consented(tenant, n)["id"] for n in range(3))
    # 1. a checkout two hours old, no order: the reminder goes out at once (its wait is over)
    first = _checkout(tenant, abandoned, "chk-1", now - timedelta(hours=2))
    assert first["created"] is True and first["total"] == 4200
    again = tenant.http.post("/v1/checkouts", json={"customer_id": abandoned, "checkout_id": "chk-1"})
    assert again.status_code == 200 and again.json()["created"] is False and again.json()["total"] == 4200
    # 2. an order placed after the checkout started, recorded before the checkout arrived
    _order(tenant, bought, 1, now - timedelta(minutes=90))
    assert event_pipeline.wait_idle(60)
    _checkout(tenant, bought, "chk-2", now - timedelta(hours=2))
    # 3. a checkout waiting for its hour, then the order
    _checkout(tenant, late, "chk-3", now)
    assert event_pipeline.wait_idle(60)
    [waiting] = runs(tenant, late)
    assert waiting["status"] == "waiting" and waiting["due_at"] > now.isoformat()
    _order(tenant, late, 1, now + timedelta(seconds=1))
    assert event_pipeline.wait_idle(60)
    messages = journey_messages(j["id"])
    assert [m["To"] for m in messages] == [f"j0.{tenant.id}@example.com".lower()]
    [sent] = runs(tenant, abandoned)
    assert sent["status"] == "done" and sent["occurrence"] == "chk-1"
    [cancelled] = runs(tenant, bought)
    assert cancelled["status"] == "exited" and cancelled["reason"] == "order.placed" and cancelled["sends"] == []
    [ended] = runs(tenant, late)
    assert ended["status"] == "exited" and ended["reason"] == "order.placed" and ended["due_at"] is None
    stats = tenant.http.get(f"/v1/journeys/{j['id']}").json()["stats"]
    assert stats == {"started": 3, "active": 0, "completed": 1, "exited": 2, "emails": 1}
    export = tenant.http.get(f"/v1/customers/{abandoned}/export", params={"limit": 100}).json()
    [checkout] = export["sections"]["checkouts"]  # the customer's data export carries the cart
    assert checkout["checkout_id"] == "chk-1" and checkout["data"]["url"] == "https://shop.example/cart/1"


def test_the_frequency_cap_defers_a_journey_email_and_never_drops_it(tenant, event_pipeline):
    from crm import clock
    from crm.journeys import runner
    from crm.storage import EmailCapItem

    setup_email(tenant)
    template = make_template(tenant)
    j = new_journey(tenant, trigger={"type": "checkout.started", "wait": "PT1H"},
                    steps=[{"type": "send_email", "template_id": template}])
    cid = consented(tenant)["id"]
    last = clock.now() - timedelta(hours=1)
    EmailCapItem(tenant.ctx.key("C", cid), "C#EMAILCAP", customer_id=cid, last_marketing_at=clock.iso(last)).save()
    _checkout(tenant, cid, "chk-cap", clock.now() - timedelta(hours=2))
    assert event_pipeline.wait_idle(60)
    [run] = runs(tenant, cid)
    assert run["status"] == "waiting" and run["step"] == 0
    assert run["due_at"] == clock.iso(last + timedelta(hours=16))  # the next allowed time (plan: 16 h)
    assert journey_messages(j["id"]) == []
    # 17 hours later: the same step goes out, once
    cap = EmailCapItem.get(tenant.ctx.key("C", cid), "C#EMAILCAP")
    cap.last_marketing_at = clock.iso(clock.now() - timedelta(hours=17))
    cap.save()
    [item] = [i for i in runner.customer_runs(tenant.ctx, cid) if i.journey_id == j["id"]]
    assert runner._save(tenant.ctx, item, replace(runner.to_run(item), due_at=clock.now_iso()))
    assert runner.run_due(tenant.ctx, cid, clock.now_iso()) == 1
    assert runner.run_due(tenant.ctx, cid, clock.now_iso()) == 0
    assert len(journey_messages(j["id"])) == 1
    assert runs(tenant, cid)[0]["status"] == "done"


def test_birthdays_in_the_tenant_time_zone(tenant, event_pipeline):
    from crm import clock
    from crm.journeys import runner
    from functions import journeys as handler

    sender = setup_email(tenant)
    settings = tenant.http.put("/v1/email/settings", json={"postal_address": "1 Main St, Springfield",
                                                          "default_sender": sender, "time_zone": "Asia/Tokyo"})
    assert settings.status_code == 200 and settings.json()["time_zone"] == "Asia/Tokyo"
    bad = tenant.http.put("/v1/email/settings", json={"default_sender": sender, "time_zone": "Mars/Base"})
    assert bad.status_code == 422 and "time_zone" in bad.text
    template = make_template(tenant)
    before = consented(tenant, 0, birth_date="1992-02-29")
    assert event_pipeline.wait_idle(60)
    j = new_journey(tenant, trigger={"type": "birthday", "days_before": 0, "hour": 9},
                    steps=[{"type": "send_email", "template_id": template}])
    after = consented(tenant, 1, birth_date="1985-07-14")
    assert event_pipeline.wait_idle(60)

    def schedule(cid: str):
        return next((i for i in runner.customer_runs(tenant.ctx, cid) if i.status == "scheduled"), None)

    old = wait_for(lambda: schedule(before["id"]))  # the activation's backfill
    new = wait_for(lambda: schedule(after["id"]))  # the new customer's event
    year = int(old.state["year"])
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    day = f"{year}-02-{29 if leap else 28}"
    assert old.due_at == clock.iso(datetime.fromisoformat(f"{day}T09:00:00+09:00"))  # 9:00 in Tokyo
    assert new.due_at == "2027-07-14T00:00:00.000Z"  # 9:00 in Tokyo is midnight UTC
    # a changed birth date moves the schedule
    tenant.http.patch(f"/v1/customers/{after['id']}", json={"birth_date": "1985-07-20"})
    assert event_pipeline.wait_idle(60)
    assert wait_for(lambda: (schedule(after["id"]).due_at or "")[5:10] == "07-20")
    # a birthday comes (the schedule set to last year's, due now): one run, one email, then
    # the schedule moves on to the next birthday
    year -= 1
    old.state = {**old.state, "year": year}
    runner._index(tenant.ctx, old, clock.now_iso())
    old.save()
    result = handler.run_schedule(now=clock.now_iso())
    assert result["runs"] >= 1
    handler.run_schedule(now=clock.now_iso())  # again: nothing twice
    [message] = journey_messages(j["id"])
    assert message["To"] == before["email"]
    [run] = runs(tenant, before["id"])
    assert run["status"] == "done" and run["occurrence"] == str(year)
    assert int(schedule(before["id"]).state["year"]) == year + 1 and schedule(before["id"]).due_at > clock.now_iso()
    # unused fields stay out of what the API shows
    assert "event" not in json.dumps(run)


def test_segment_entries_tier_changes_and_expiring_points_start_runs(tenant, event_pipeline):
    """The other triggers, from the events the pipeline derives: a customer tagged into a
    segment (segment.entered), a paid order lifting the tier (tier.changed, only to the
    tier named), points flagged as expiring (points.expiring, one run per lot)."""
    from crm.journeys import runner

    setup_email(tenant)
    template = make_template(tenant, kind="transactional")
    send = [{"type": "send_email", "template_id": template}]
    program = {"currency": "EUR", "earn_rates": {"EUR": 1}, "earns_from": "2000-01-01T00:00:00Z",
               "return_window_days": 0, "tier_basis": "spend",
               "tiers": [{"name": "Bronze", "threshold": 0}, {"name": "Gold", "threshold": 5000}]}
    assert tenant.http.put("/v1/loyalty/program", json=program).status_code == 201
    segment = tenant.http.post("/v1/segments", json={
        "name": "VIPs", "rule": {"field": "tags", "op": "contains", "value": "vip"}}).json()["id"]
    wait_for(lambda: tenant.http.get(f"/v1/segments/{segment}").json()["status"] == "ready")
    entered = new_journey(tenant, trigger={"type": "segment.entered", "segment_id": segment}, steps=send)
    gold = new_journey(tenant, trigger={"type": "tier.changed", "to": "Gold"}, steps=send)
    silver = new_journey(tenant, trigger={"type": "tier.changed", "to": "Silver"}, steps=send)
    cid = consented(tenant)["id"]
    assert tenant.http.patch(f"/v1/customers/{cid}", json={"tags": ["vip"]}).status_code == 200
    r = tenant.http.post("/v1/orders", json={
        "customer": {"id": cid}, "source": "shop", "external_id": f"gold-{cid}", "channel": "web",
        "currency": "EUR", "placed_at": datetime.now(UTC).isoformat(), "total": 6000,
        "lines": [{"sku": "s", "name": "n", "quantity": 1, "unit_price": 6000}]})
    assert r.status_code == 201, r.text
    assert tenant.http.post(f"/v1/orders/{r.json()['id']}/pay", json={}).status_code == 200
    assert event_pipeline.wait_idle(90)
    by_journey = {run["journey_id"]: run for run in wait_for(lambda: len(runs(tenant, cid)) >= 2 and runs(tenant, cid))}
    assert set(by_journey) == {entered["id"], gold["id"]}  # not silver's: the change was to Gold
    assert all(run["status"] == "done" for run in by_journey.values())
    assert len(journey_messages(entered["id"])) == 1 and len(journey_messages(gold["id"])) == 1
    assert journey_messages(silver["id"]) == []
    # points.expiring, as the loyalty schedule derives it: one run per lot, once
    expiring = new_journey(tenant, trigger={"type": "points.expiring", "days_before": 7}, steps=send)
    event = {"id": f"points.expiring:{cid}:lot1", "type": "points.expiring", "tenant_id": tenant.id,
             "customer_id": cid, "occurred_at": datetime.now(UTC).isoformat(),
             "data": {"customer_id": cid, "lot": "lot1", "points": 60,
                      "expires_at": (datetime.now(UTC) + timedelta(days=3)).isoformat()}}
    assert runner.handle_event(tenant.ctx, event)["started"] == 1
    assert runner.handle_event(tenant.ctx, event)["started"] == 0
    assert len(journey_messages(expiring["id"])) == 1


def test_a_journey_email_waits_for_the_months_allowance(tenant, event_pipeline):
    from crm import clock
    from crm.billing import usage
    from crm.journeys import runner
    from tests.plan_helpers import set_plan

    setup_email(tenant)
    usage.add(tenant.ctx, "emails_sent", 200_000)  # the growth plan's month, used up
    j = new_journey(tenant, trigger={"type": "customer.created"},
                    steps=[{"type": "send_email", "template_id": make_template(tenant, kind="transactional")}])
    cid = consented(tenant)["id"]
    assert event_pipeline.wait_idle(60)
    [run] = runs(tenant, cid)
    assert run["status"] == "waiting" and run["step"] == 0 and run["sends"] == []
    assert clock.now() < clock.parse(run["due_at"]) <= clock.now() + timedelta(hours=1)  # looks again within the hour
    assert journey_messages(j["id"]) == []
    set_plan(tenant, "scale")  # no monthly limit: the next look sends it
    [item] = runner.customer_runs(tenant.ctx, cid)
    assert runner._save(tenant.ctx, item, replace(runner.to_run(item), due_at=clock.now_iso()))
    assert runner.run_due(tenant.ctx, cid, clock.now_iso()) == 1
    assert len(journey_messages(j["id"])) == 1 and runs(tenant, cid)[0]["status"] == "done"
