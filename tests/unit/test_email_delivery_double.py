"""The local SES events double (rapport/ses_events.py) publishes records of the shapes SES
publishes (AWS's samples in ../shared/fixtures/ses), which crm/email/delivery.py maps back
to the sender's tags; the outbox (rapport/outbox.py) reads the raw message as sent; and
the deployed app has no /_dev path."""
from __future__ import annotations

from email.message import EmailMessage

from crm.email import delivery
from rapport import outbox, ses_events
from tests.fakes import fixture

TAGS = "rapport_tenant=t0123456789ab, rapport_customer=cus_01ARZ3NDEKTSV4RRFFQ69G5FAV, " \
       "rapport_ref=cmp_01ARZ3NDEKTSV4RRFFQ69G5FAV, rapport_kind=marketing"


def sent(*to: str, tags_header: str = "X-SES-MESSAGE-TAGS") -> outbox.Sent:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Acme <hello@t0123456789ab.example.test>", ", ".join(to), "Hi"
    msg[tags_header] = TAGS
    msg["List-Unsubscribe"] = "<http://127.0.0.1/v1/unsubscribe/x>"
    msg.set_content("text part")
    msg.add_alternative("<p>html part</p>", subtype="html")
    return outbox.Sent("0100-abc", "hello@t0123456789ab.example.test", tuple(to), msg.as_string(),
                       "2026-03-01T10:00:00.000Z")


def _keys(value, prefix=""):
    """Every key path of a JSON value (lists: their first item's)."""
    if isinstance(value, dict):
        return {f"{prefix}{k}" for k in value} | {p for k, v in value.items() for p in _keys(v, f"{prefix}{k}.")}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return _keys(value[0], prefix)
    return set()


def test_the_double_publishes_records_shaped_like_ses_samples():
    records = ses_events.records_for(sent("ann@example.com", "bounce@simulator.amazonses.com",
                                          "complaint+x@simulator.amazonses.com"), "rapport")
    assert [r["eventType"] for r in records] == ["Send", "Delivery", "Bounce", "Delivery", "Complaint"]
    samples = {"Send": "sns_send.json", "Delivery": "sns_delivery.json", "Bounce": "sns_bounce.json",
               "Complaint": "sns_complaint.json"}
    for rec in records:
        sample = fixture("ses", samples[rec["eventType"]])
        # every field of AWS's sample is there (the sample's custom tags aside)
        missing = {k for k in _keys(sample) - _keys(rec) if not k.startswith("mail.tags.")}
        assert not missing, (rec["eventType"], missing)


def test_the_double_records_map_back_to_the_sender_tags_and_the_simulated_outcome():
    records = ses_events.records_for(sent("bounce@simulator.amazonses.com"), "rapport")
    plans = [delivery.plan(r) for r in records]
    assert {p.origin for p in plans} == {delivery.Origin("t0123456789ab", "cus_01ARZ3NDEKTSV4RRFFQ69G5FAV",
                                                         "cmp_01ARZ3NDEKTSV4RRFFQ69G5FAV", "marketing")}
    bounce = plans[1]
    assert (bounce.event_type, bounce.suppress, bounce.recipients) == (
        "Bounce", "bounce", ("bounce@simulator.amazonses.com",))
    assert records[0]["mail"]["tags"]["ses:configuration-set"] == ["rapport"]
    assert all(h["name"] != "X-SES-MESSAGE-TAGS" for h in records[0]["mail"]["headers"])  # SES strips it


def test_x_rapport_tags_is_read_too_and_untagged_mail_maps_to_nobody():
    [send, _] = ses_events.records_for(sent("ann@example.com", tags_header="X-Rapport-Tags"), "rapport")
    assert delivery.plan(send).origin is not None
    msg = sent("ann@example.com")
    bare = outbox.Sent(msg.message_id, msg.source, msg.destinations, msg.raw.replace("X-SES-MESSAGE-TAGS", "X-Other"),
                       msg.sent_at)
    assert delivery.plan(ses_events.records_for(bare, "rapport")[0]).origin is None


def test_the_outbox_renders_parts_and_headers():
    m = outbox.render(sent("ann@example.com"))
    assert m["to"] == ["ann@example.com"] and m["subject"] == "Hi" and m["sent_at"] == "2026-03-01T10:00:00.000Z"
    assert m["html"].strip() == "<p>html part</p>" and m["text"].strip() == "text part"
    assert m["headers"]["List-Unsubscribe"] == "<http://127.0.0.1/v1/unsubscribe/x>"
    page = outbox.page([m, {**m, "html": "<script>alert(1)</script>\"'><b>x</b>"}])
    assert page.count('sandbox=""') == 2
    assert "<script>alert(1)" not in page  # escaped into srcdoc, run by nobody
    status, _headers, _ = outbox.respond("/_dev/nope", "")
    assert status == 404


def test_the_deployed_app_has_no_dev_path():
    import app
    from api.openapi import document

    assert not [p for p in app.app.routes if p.startswith("/_dev")]
    assert not [p for p in document()["paths"] if p.startswith("/_dev")]
