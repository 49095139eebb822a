"""Campaigns over HTTP against the emulator (api/routes/campaigns.py, crm/email/): CRUD
and its validation, a send to a small segment where every consented member gets exactly
one email (read back from the emulator's SES) and the others are skipped, pause, resume,
cancel, a scheduled send, the frequency cap deferring (never dropping), and 409s.

Settings and templates go through the API; the sender is the dev sender each tenant gets
locally. A segment's members are written directly, as crm/segments/build.py writes them,
so each test names its exact audience without waiting for a build."""
from __future__ import annotations

import email
import json
import time
from datetime import timedelta

import pytest

from tests.conftest import Tenant

HTML = ('<p>Hello {{ customer.name.given }}, you have {{ customer.loyalty.balance if customer.loyalty is defined '
        'else 0 }} points.</p><a href="{{ unsubscribe_url }}">Unsubscribe</a><p>{{ postal_address }}</p>')
TEXT = "Hello {{ customer.name.given }}\nUnsubscribe: {{ unsubscribe_url }}\n{{ postal_address }}"


# --- what other parts write ------------------------------------------------------------------


def sender_of(tenant: Tenant) -> str:
    return f"hello@{tenant.id}.example.test"


def setup_email(tenant: Tenant) -> str:
    """The tenant's postal address, through the API; the default sender is the dev sender
    every tenant gets locally (verified in the emulator's SES, crm/email/senders.py)."""
    r = tenant.http.put("/v1/email/settings", json={"postal_address": "1 Main St, Springfield",
                                                    "default_sender": sender_of(tenant)})
    assert r.status_code == 200, r.text
    return sender_of(tenant)


def make_template(tenant: Tenant, kind: str = "marketing") -> str:
    r = tenant.http.post("/v1/email/templates", json={"name": "Spring", "kind": kind,
                                                      "subject": "Hi {{ customer.name.given }}",
                                                      "html": HTML, "text": TEXT})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def make_segment(tenant: Tenant, customer_ids: list[str], status: str = "ready") -> str:
    from ulid import ULID

    from crm import clock
    from crm.segments.membership import segment_pk
    from crm.storage import SegmentItem, SegmentMemberItem

    sid, now = f"seg_{ULID()}", clock.now_iso()
    pk = segment_pk(tenant.ctx, sid)
    SegmentItem(pk, "SEGMENT", segment_id=sid, name=f"S {sid[-6:]}", status=status, gsi1pk=tenant.ctx.key("SEGMENTS"),
                gsi1sk=sid, member_count=len(customer_ids), created_at=now, updated_at=now).save()
    with SegmentMemberItem.batch_write() as batch:
        for cid in customer_ids:
            batch.save(SegmentMemberItem(pk, f"M#{cid}", segment_id=sid, customer_id=cid, since=now))
    return sid


def make_customers(tenant: Tenant, n: int, consent: str | None = "granted", prefix: str = "c") -> list[str]:
    from crm.customers import service
    from crm.customers.schemas import CustomerCreate

    out = []
    for i in range(n):
        fields: dict = {"email": f"{prefix}{i}.{tenant.id}@example.com".lower(), "name": {"given": f"Ann{i}"}}
        if consent:
            fields["consent"] = {"email": {"status": consent, "source": "test"}}
        out.append(service.create(tenant.ctx, CustomerCreate(**fields)).id)
    return out


def suppress(tenant: Tenant, address: str) -> None:
    from crm import clock
    from crm.email import suppression
    from crm.storage import SuppressionItem

    SuppressionItem(suppression.pk(tenant.ctx), suppression.digest(address), reason="bounce",
                    at=clock.now_iso()).save()


# --- the emulator's SES ------------------------------------------------------------------------


def sent_messages(ref: str) -> list[email.message.Message]:
    """Every message the emulator's SES accepted with ``X-Rapport-Ref: ref``."""
    from moto.ses.models import ses_backends

    out = []
    messages = [m for account in list(ses_backends.values()) for backend in list(account.values())
                for m in list(backend.sent_messages)]
    for m in messages:
        raw = getattr(m, "raw_data", None)
        if raw:
            parsed = email.message_from_string(raw)
            if parsed["X-Rapport-Ref"] == ref:
                out.append(parsed)
    return out


def recipients(ref: str) -> list[str]:
    return [m["To"] for m in sent_messages(ref)]


def wait_status(tenant: Tenant, cid: str, statuses: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = tenant.http.get(f"/v1/email/campaigns/{cid}").json()
        if body["status"] in statuses or time.monotonic() > deadline:
            assert body["status"] in statuses, body
            return body
        time.sleep(0.2)


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    """The emulator's SES at a high account rate, a paused batch back in about a second."""
    from crm.email import sending

    monkeypatch.setenv("RAPPORT_SES_SEND_RATE", "1000")
    monkeypatch.setattr(sending, "PAUSED_RECHECK_SECONDS", 1)


def new_campaign(tenant: Tenant, template: str, segment: str, **extra) -> dict:
    r = tenant.http.post("/v1/email/campaigns", json={"name": "Spring sale", "template_id": template,
                                                      "segment_id": segment, **extra})
    assert r.status_code == 201, r.text
    return r.json()


# --- tests -----------------------------------------------------------------------------------


def test_create_validate_list_patch_delete(tenant):
    setup_email(tenant)
    tpl, seg = make_template(tenant), make_segment(tenant, [])
    missing_tpl = "tpl_" + "0" * 26
    r = tenant.http.post("/v1/email/campaigns", json={"name": "x", "template_id": missing_tpl, "segment_id": seg})
    assert r.status_code == 422 and r.json()["field"] == "template_id", r.text
    r = tenant.http.post("/v1/email/campaigns", json={"name": "x", "template_id": tpl, "segment_id": "seg_" + "0" * 26})
    assert r.status_code == 422 and r.json()["field"] == "segment_id", r.text
    r = tenant.http.post("/v1/email/campaigns", json={"name": "x", "template_id": tpl, "segment_id": seg,
                                                      "sender": "nobody@unverified.example"})
    assert r.status_code == 422 and r.json()["field"] == "sender" and r.json()["code"] == "sender_not_verified"
    made = [new_campaign(tenant, tpl, seg, name=f"C{i}") for i in range(3)]
    c = made[0]
    assert c["status"] == "draft" and c["id"].startswith("cmp_") and c["sender"] is None
    assert c["progress"] == {"total": 0, "sent": 0, "skipped": 0, "failed": 0, "deferred": 0, "rate": 0.0,
                             "resolved": False}
    assert set(c["stats"]) == {"delivered", "bounced", "complained", "opened", "clicked", "unsubscribed"}
    page = tenant.http.get("/v1/email/campaigns", params={"limit": 2}).json()
    rest = tenant.http.get("/v1/email/campaigns", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [x["id"] for x in page["data"] + rest["data"]] == [x["id"] for x in made] and rest["next_cursor"] is None
    got = tenant.http.get(f"/v1/email/campaigns/{c['id']}")
    assert got.status_code == 200 and got.headers["etag"] == f'"{c["version"]}"'
    stale = tenant.http.patch(f"/v1/email/campaigns/{c['id']}", json={"name": "New"},
                              headers={"If-Match": f'"{c["version"] + 5}"'})
    assert stale.status_code == 412
    ok = tenant.http.patch(f"/v1/email/campaigns/{c['id']}", json={"name": "New", "sender": sender_of(tenant)},
                           headers={"If-Match": got.headers["etag"]})
    assert ok.status_code == 200 and ok.json()["name"] == "New" and ok.json()["sender"] == sender_of(tenant)
    assert tenant.http.delete(f"/v1/email/campaigns/{c['id']}").status_code == 204
    assert tenant.http.get(f"/v1/email/campaigns/{c['id']}").status_code == 404
    # scopes and isolation
    reader = tenant.key_with("email:read")
    r = tenant.http.post(f"/v1/email/campaigns/{made[1]['id']}/send", json={},
                         headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403
    assert tenant.http.get(f"/v1/email/campaigns/{made[1]['id']}",
                           headers={"Authorization": f"Bearer {reader}"}).status_code == 200
    other = Tenant(str(tenant.http.base_url), "Other")
    assert other.http.get(f"/v1/email/campaigns/{made[1]['id']}").status_code == 404
    assert other.http.post(f"/v1/email/campaigns/{made[1]['id']}/cancel").status_code == 404
    # not sent while the segment is building (a partial audience) or without a postal address
    building = new_campaign(tenant, tpl, make_segment(tenant, [], status="building"))
    r = tenant.http.post(f"/v1/email/campaigns/{building['id']}/send", json={})
    assert r.status_code == 409 and r.json()["code"] == "segment_not_ready" and r.json()["field"] == "segment_id"
    settings = tenant.http.get("/v1/email/settings").json()
    tenant.http.put("/v1/email/settings", json={"default_sender": settings["default_sender"]})  # address cleared
    r = tenant.http.post(f"/v1/email/campaigns/{made[1]['id']}/send", json={})
    assert r.status_code == 409 and r.json()["code"] == "postal_address_missing", r.text
    for still in (building, made[1]):
        assert tenant.http.get(f"/v1/email/campaigns/{still['id']}").json()["status"] == "draft"


def test_send_reaches_every_consented_member_exactly_once(tenant, event_pipeline):
    from crm.storage import SendItem

    setup_email(tenant)
    consented = make_customers(tenant, 6)
    denied = make_customers(tenant, 2, consent="denied", prefix="d")
    unknown = make_customers(tenant, 1, consent=None, prefix="u")
    bounced = make_customers(tenant, 1, prefix="b")
    suppress(tenant, f"b0.{tenant.id}@example.com")
    c = new_campaign(tenant, make_template(tenant), make_segment(tenant, consented + denied + unknown + bounced))
    r = tenant.http.post(f"/v1/email/campaigns/{c['id']}/send", json={})
    assert r.status_code == 200 and r.json()["status"] == "sending", r.text
    assert tenant.http.post(f"/v1/email/campaigns/{c['id']}/send", json={}).status_code == 409
    done = wait_status(tenant, c["id"], ("sent",))
    records = {r.customer_id: r for r in SendItem.query(tenant.ctx.key("SEND", c["id"]))}
    assert done["progress"] | {"rate": 0} == {"total": 10, "sent": 6, "skipped": 4, "failed": 0, "deferred": 0,
                                              "rate": 0, "resolved": True}, [r.reason for r in records.values()]
    assert done["finished_at"] and done["progress"]["rate"] > 0
    got = recipients(c["id"])
    assert sorted(got) == sorted(f"c{i}.{tenant.id}@example.com" for i in range(6))  # once each
    assert tenant.http.get("/v1/billing").json()["usage"]["emails_sent"] == 6  # the month's usage
    message = sent_messages(c["id"])[0]
    assert message["From"] == sender_of(tenant) and message["Subject"].startswith("Hi Ann")
    assert message["List-Unsubscribe"].startswith("<http") and "/v1/unsubscribe/" in message["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative" and message["Message-ID"] and message["Date"]
    html = [p for p in message.walk() if p.get_content_type() == "text/html"][0].get_payload(decode=True).decode()
    assert "1 Main St, Springfield" in html and message["List-Unsubscribe"][1:-1] in html
    assert {cid for cid, r in records.items() if r.state == "sent" and r.message_id} == set(consented)
    reasons = {cid: r.reason for cid, r in records.items() if r.state == "skipped"}
    assert reasons == {denied[0]: "no_consent", denied[1]: "no_consent", unknown[0]: "no_consent",
                       bounced[0]: "suppressed"}
    # SES's delivery events find the campaign by the message's tags (the local SES double
    # publishes them through EventBridge to the delivery queue)
    from rapport.ses_events import parse_tags

    to = int(message["To"].split(".")[0][1:])  # c<i>.<tenant>@example.com
    assert parse_tags(message["X-SES-MESSAGE-TAGS"]) == {
        "rapport_tenant": [tenant.id], "rapport_customer": [consented[to]], "rapport_ref": [c["id"]],
        "rapport_kind": ["marketing"]}
    deadline = time.monotonic() + 30
    while (stats := tenant.http.get(f"/v1/email/campaigns/{c['id']}").json()["stats"])["delivered"] < 6:
        assert time.monotonic() < deadline, stats
        time.sleep(0.2)
    assert stats["delivered"] == 6 and stats["bounced"] == 0, stats
    # a redelivered batch (or a duplicate message) sends nothing more and counts nothing more
    from functions import campaigns as handler

    handler.handle_message({"op": "batch", "tenant": tenant.id, "campaign": c["id"], "template": c["template_id"],
                            "customers": consented + denied})
    assert len(recipients(c["id"])) == 6
    assert tenant.http.get(f"/v1/email/campaigns/{c['id']}").json()["progress"]["sent"] == 6
    # final: not cancelled, but it can be deleted
    assert tenant.http.post(f"/v1/email/campaigns/{c['id']}/cancel").status_code == 409
    assert tenant.http.delete(f"/v1/email/campaigns/{c['id']}").status_code == 204
    assert tenant.http.get(f"/v1/email/campaigns/{c['id']}").status_code == 404


def test_pause_resume_cancel(tenant, event_pipeline, monkeypatch):
    from crm.email import sending

    setup_email(tenant)
    people = make_customers(tenant, 45)
    c = new_campaign(tenant, make_template(tenant), make_segment(tenant, people))
    assert tenant.http.post(f"/v1/email/campaigns/{c['id']}/pause").status_code == 409  # a draft
    assert tenant.http.post(f"/v1/email/campaigns/{c['id']}/resume").status_code == 409
    slow = sending.ses_send

    def slower(*args, **kwargs):  # about 20 a second: time to pause in the middle
        time.sleep(0.05)
        return slow(*args, **kwargs)

    monkeypatch.setattr(sending, "ses_send", slower)
    assert tenant.http.post(f"/v1/email/campaigns/{c['id']}/send", json={}).status_code == 200
    deadline = time.monotonic() + 30
    while len(recipients(c["id"])) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    r = tenant.http.post(f"/v1/email/campaigns/{c['id']}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused", r.text
    assert tenant.http.post(f"/v1/email/campaigns/{c['id']}/pause").status_code == 409
    # a batch in flight sees the pause at its next status check (every half a second of
    # sending): wait until nothing new has gone out for 1.5 s (on a loaded machine a send
    # can take longer than the check's period)
    at_pause, quiet_since, deadline = len(recipients(c["id"])), time.monotonic(), time.monotonic() + 20
    while time.monotonic() - quiet_since < 1.5:
        assert time.monotonic() < deadline, "the campaign kept sending after its pause"
        time.sleep(0.1)
        if (n := len(recipients(c["id"]))) != at_pause:
            at_pause, quiet_since = n, time.monotonic()
    time.sleep(2.5)  # paused batches come back (about every second here) and park again
    assert len(recipients(c["id"])) == at_pause < 45
    r = tenant.http.post(f"/v1/email/campaigns/{c['id']}/resume")
    assert r.status_code == 200 and r.json()["status"] in ("sending", "sent"), r.text
    done = wait_status(tenant, c["id"], ("sent",))
    assert sorted(recipients(c["id"])) == sorted(f"c{i}.{tenant.id}@example.com" for i in range(45))
    assert done["progress"]["sent"] == 45 and done["progress"]["total"] == 45
    # cancel: a paused campaign stops for good; what was not sent is never sent
    c2 = new_campaign(tenant, make_template(tenant), make_segment(tenant, make_customers(tenant, 3, prefix="x")))
    tenant.http.post(f"/v1/email/campaigns/{c2['id']}/send", json={})
    tenant.http.post(f"/v1/email/campaigns/{c2['id']}/pause")
    r = tenant.http.post(f"/v1/email/campaigns/{c2['id']}/cancel")
    assert r.status_code in (200, 409), r.text  # 409: it finished before the pause
    if r.status_code == 200:
        time.sleep(1.2)  # a batch in flight sees the cancel within half a second
        before = len(recipients(c2["id"]))
        time.sleep(2)
        assert len(recipients(c2["id"])) == before
        assert tenant.http.post(f"/v1/email/campaigns/{c2['id']}/resume").status_code == 409
        assert tenant.http.delete(f"/v1/email/campaigns/{c2['id']}").status_code == 204


def test_unverified_sender_is_refused(tenant):
    setup_email(tenant)
    tpl, seg = make_template(tenant), make_segment(tenant, make_customers(tenant, 1))
    r = tenant.http.post("/v1/email/campaigns", json={"name": "X", "template_id": tpl, "segment_id": seg,
                                                      "sender": "news@not-verified.example"})
    assert r.status_code == 422 and r.json()["code"] == "sender_not_verified", r.text
    # a sender verified when the campaign was made, gone by the time it is sent
    own = f"news@{tenant.id}-shop.example".lower()
    assert tenant.http.post("/v1/email/senders", json={"identity": own}).status_code == 201
    assert tenant.http.get(f"/v1/email/senders/{own}").json()["status"] == "verified"
    c = new_campaign(tenant, tpl, seg, sender=own)
    assert tenant.http.delete(f"/v1/email/senders/{own}").status_code == 204
    r = tenant.http.post(f"/v1/email/campaigns/{c['id']}/send", json={})
    assert r.status_code == 409 and r.json()["code"] == "sender_not_verified", r.text
    assert tenant.http.get(f"/v1/email/campaigns/{c['id']}").json()["status"] == "draft"


def test_scheduled_send_starts_when_due(tenant, event_pipeline):
    from crm import clock
    from functions import campaigns as handler

    setup_email(tenant)
    people = make_customers(tenant, 3)
    c = new_campaign(tenant, make_template(tenant), make_segment(tenant, people))
    at = clock.now() + timedelta(hours=1)
    r = tenant.http.post(f"/v1/email/campaigns/{c['id']}/send", json={"send_at": clock.iso(at)})
    assert r.status_code == 200 and r.json()["status"] == "scheduled" and r.json()["send_at"] == clock.iso(at)
    assert handler.run_schedule(now=clock.iso(at - timedelta(minutes=1)))["started"] == 0
    assert tenant.http.get(f"/v1/email/campaigns/{c['id']}").json()["status"] == "scheduled"
    assert handler.run_schedule(now=clock.iso(at + timedelta(seconds=1)))["started"] == 1
    wait_status(tenant, c["id"], ("sent",))
    assert sorted(recipients(c["id"])) == sorted(f"c{i}.{tenant.id}@example.com" for i in range(3))
    # cancelling a scheduled campaign takes it off the schedule
    c2 = new_campaign(tenant, make_template(tenant), make_segment(tenant, people))
    tenant.http.post(f"/v1/email/campaigns/{c2['id']}/send", json={"send_at": clock.iso(at)})
    assert tenant.http.post(f"/v1/email/campaigns/{c2['id']}/cancel").json()["status"] == "cancelled"
    assert handler.run_schedule(now=clock.iso(at + timedelta(seconds=1)))["started"] == 0


def test_frequency_cap_defers_then_sends(tenant, event_pipeline):
    from crm import clock
    from crm.email import sending
    from crm.storage import EmailCapItem

    setup_email(tenant)
    people = make_customers(tenant, 2)
    first = new_campaign(tenant, make_template(tenant), make_segment(tenant, people))
    tenant.http.post(f"/v1/email/campaigns/{first['id']}/send", json={})
    wait_status(tenant, first["id"], ("sent",))
    second = new_campaign(tenant, make_template(tenant), make_segment(tenant, people))
    tenant.http.post(f"/v1/email/campaigns/{second['id']}/send", json={})
    deadline = time.monotonic() + 30
    while tenant.http.get(f"/v1/email/campaigns/{second['id']}").json()["progress"]["deferred"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    body = tenant.http.get(f"/v1/email/campaigns/{second['id']}").json()
    assert body["status"] == "sending" and body["progress"]["sent"] == 0 and recipients(second["id"]) == []
    # 17 hours later (the cap is 16): the deferred recipients go out, once
    for cid in people:
        cap = EmailCapItem.get(tenant.ctx.key("C", cid), "C#EMAILCAP")
        cap.last_marketing_at = clock.iso(clock.now() - timedelta(hours=17))
        cap.save()
    records = sending.read_recipients(tenant.ctx, second["id"], people)
    assert {r.facts.record_state for r in records.values()} == {"deferred"}
    out = sending.process(tenant.ctx, second["id"], second["template_id"], people)
    assert out.sent == 2
    sending.finish_if_done(tenant.ctx, second["id"])
    done = tenant.http.get(f"/v1/email/campaigns/{second['id']}").json()
    assert done["status"] == "sent" and done["progress"]["deferred"] == 0 and done["progress"]["sent"] == 2
    assert sorted(recipients(second["id"])) == sorted(f"c{i}.{tenant.id}@example.com" for i in range(2))


def test_cli_list_show_watch(tenant, api_url, event_pipeline):
    from typer.testing import CliRunner

    from rapport.cli import app

    setup_email(tenant)
    c = new_campaign(tenant, make_template(tenant), make_segment(tenant, make_customers(tenant, 3)))
    env = {"COLUMNS": "200", "RAPPORT_API_URL": "", "RAPPORT_API_KEY": ""}
    key = tenant.key_with("email:read")

    def run(*args: str):
        return CliRunner().invoke(app, ["campaigns", *args, "--api", f"{api_url}/v1", "--key", key], env=env)

    listed = run("list")
    assert listed.exit_code == 0 and c["id"] in listed.output and "draft" in listed.output, listed.output
    tenant.http.post(f"/v1/email/campaigns/{c['id']}/send", json={})
    watched = run("watch", c["id"], "--interval", "0.2", "--timeout", "60")
    assert watched.exit_code == 0, watched.output
    assert "sent 3 of 3" in watched.output and "3/3" in watched.output
    shown = run("show", c["id"], "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["progress"]["sent"] == 3
    assert run("show", "cmp_" + "0" * 26).exit_code == 2  # a 404: the request was wrong


def test_the_months_email_allowance_pauses_a_campaign_until_the_plan_allows_more(tenant, event_pipeline):
    """The free plan's 1,000 emails a month, 998 used: 2 go out, the campaign pauses itself
    (paused_reason plan_limit), resume is 402 until an upgrade, then the rest go out once."""
    from crm.billing import usage
    from tests.plan_helpers import set_plan

    setup_email(tenant)
    usage.add(tenant.ctx, "emails_sent", 998)
    people = make_customers(tenant, 5)
    c = new_campaign(tenant, make_template(tenant), make_segment(tenant, people))
    assert tenant.http.post(f"/v1/email/campaigns/{c['id']}/send", json={}).status_code == 200
    paused = wait_status(tenant, c["id"], ("paused",))
    assert paused["paused_reason"] == "plan_limit" and paused["progress"]["sent"] == 2
    assert len(recipients(c["id"])) == 2
    refused = tenant.http.post(f"/v1/email/campaigns/{c['id']}/resume")
    assert refused.status_code == 402 and refused.json()["code"] == "plan_limit"
    assert refused.json()["limit"] == "emails_per_month" and refused.json()["upgrade_to"] == "starter"
    set_plan(tenant, "starter")
    resumed = tenant.http.post(f"/v1/email/campaigns/{c['id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["paused_reason"] is None
    done = wait_status(tenant, c["id"], ("sent",), timeout=120)
    assert done["progress"]["sent"] == 5 and sorted(recipients(c["id"])) == sorted(
        f"c{i}.{tenant.id}@example.com" for i in range(5))
    assert tenant.http.get("/v1/billing").json()["usage"]["emails_sent"] == 1003
