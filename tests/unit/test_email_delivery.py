"""crm/email/delivery.py's pure part: SES's published event records (the fixtures, as
AWS's developer guide prints them) -> who they are about and what follows.

The fixtures carry no rapport tags (they are AWS's samples); :func:`tagged` derives the
variant our sender's emails produce (``mail.tags`` with the ``rapport_*`` tags, values as
lists, as SES publishes them) and :func:`eventbridge` wraps a record in the envelope
EventBridge delivers to the queue."""
from __future__ import annotations

import copy
import uuid

import pytest

from crm.email import delivery
from tests.fakes import fixture

TENANT = "t0123456789ab"
CUSTOMER = "cus_01ARZ3NDEKTSV4RRFFQ69G5FAV"
CAMPAIGN = "cmp_01ARZ3NDEKTSV4RRFFQ69G5FAV"
RECORDS = {
    "Send": "sns_send.json", "Delivery": "sns_delivery.json", "Bounce": "sns_bounce.json",
    "Complaint": "sns_complaint.json", "Reject": "sns_reject.json", "Open": "sns_open.json",
    "Click": "sns_click.json", "Rendering Failure": "sns_rendering_failure.json",
    "DeliveryDelay": "sns_delivery_delay.json", "Subscription": "sns_subscription.json",
}
DETAIL_TYPE = {v: k for k, v in delivery.DETAIL_TYPES.items()}


def record(event_type: str) -> dict:
    return fixture("ses", RECORDS[event_type])


def tagged(rec: dict, tenant: str = TENANT, customer: str = CUSTOMER, ref: str = CAMPAIGN,
           kind: str = "marketing", message_id: str | None = None, address: str | None = None) -> dict:
    """The record as SES publishes it for an email our sender tagged (a copy)."""
    rec = copy.deepcopy(rec)
    mail = rec["mail"]
    mail.setdefault("tags", {}).update({"rapport_tenant": [tenant], "rapport_customer": [customer],
                                        "rapport_ref": [ref], "rapport_kind": [kind]})
    if message_id:
        mail["messageId"] = message_id
    if address:
        old = mail["destination"][0]
        mail["destination"] = [address]
        for section, key in (("bounce", "bouncedRecipients"), ("complaint", "complainedRecipients")):
            for r in (rec.get(section) or {}).get(key, []):
                r["emailAddress"] = address
        if "delivery" in rec:
            rec["delivery"]["recipients"] = [address if r == old else r for r in rec["delivery"]["recipients"]]
    return rec


def eventbridge(rec: dict) -> dict:
    """The EventBridge event SES puts on the default bus for ``rec``."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": DETAIL_TYPE[rec["eventType"]],
            "source": "aws.ses", "account": "123456789012", "time": rec["mail"]["timestamp"][:19] + "Z",
            "region": "us-east-1", "resources": [], "detail": rec}


@pytest.mark.parametrize("event_type", sorted(RECORDS))
def test_every_published_record_without_our_tags_is_someone_elses(event_type):
    rec = record(event_type)
    assert rec["eventType"] == event_type
    p = delivery.plan(delivery.record_of(eventbridge(rec)))
    assert p.event_type == event_type and p.message_id == rec["mail"]["messageId"]
    assert p.origin is None and p.stat is None and p.suppress is None and p.revoke is None and p.timeline is None


@pytest.mark.parametrize("event_type", sorted(RECORDS))
def test_eventbridge_envelope_sns_message_and_bare_record_read_the_same(event_type):
    import json

    rec = tagged(record(event_type))
    plans = [delivery.plan(delivery.record_of(m)) for m in (
        eventbridge(rec), rec, {"Type": "Notification", "Message": json.dumps(rec)})]
    assert plans[0] == plans[1] == plans[2]


EXPECTED = {  # event type -> (stat, suppress, revoke, timeline)
    "Send": (None, None, None, None),
    "Delivery": ("delivered", None, None, None),
    "Bounce": ("bounced", "bounce", "bounce", "email.bounced"),
    "Complaint": ("complained", "complaint", "complaint", "email.complained"),
    "Reject": (None, None, None, None),
    "Open": ("opened", None, None, "email.opened"),
    "Click": ("clicked", None, None, "email.clicked"),
    "Rendering Failure": (None, None, None, None),
    "DeliveryDelay": (None, None, None, None),
    "Subscription": (None, None, None, None),
}


@pytest.mark.parametrize("event_type", sorted(RECORDS))
def test_our_tagged_records_plan_stats_suppression_consent_and_timeline(event_type):
    p = delivery.plan(delivery.record_of(eventbridge(tagged(record(event_type)))))
    assert p.origin == delivery.Origin(TENANT, CUSTOMER, CAMPAIGN, "marketing")
    assert p.origin.campaign_id == CAMPAIGN
    assert (p.stat, p.suppress, p.revoke, p.timeline) == EXPECTED[event_type]
    assert p.recipients == ("recipient@example.com",) or event_type == "Reject"  # Reject's destination is the sender
    assert p.at.endswith("Z")


def test_a_bounce_names_its_bounced_recipients_and_times_from_the_bounce():
    p = delivery.plan(tagged(record("Bounce"), address="Ann.Smith@Example.com"))
    assert p.recipients == ("ann.smith@example.com",)
    assert p.at == "2017-08-05T00:41:02.669Z"  # the bounce's time, not the send's
    assert p.payload["bounce_type"] == "Permanent" and "5.1.1" not in p.summary


def test_a_transient_bounce_changes_no_consent_and_counts_no_bounce():
    rec = tagged(record("Bounce"))
    rec["bounce"]["bounceType"], rec["bounce"]["bounceSubType"] = "Transient", "MailboxFull"
    p = delivery.plan(rec)
    assert (p.stat, p.suppress, p.revoke) == (None, None, None)
    assert p.timeline == "email.bounced" and "transient" in p.summary


@pytest.mark.parametrize("bad", [
    {"rapport_tenant": ["not-a-tenant"]},
    {"rapport_customer": ["cus_nope"]},
    {"rapport_ref": []},
    {"rapport_kind": ["bulk"]},
])
def test_malformed_tags_are_not_ours(bad):
    rec = tagged(record("Complaint"))
    rec["mail"]["tags"].update(bad)
    assert delivery.plan(rec).origin is None


def test_a_journey_ref_has_no_campaign():
    p = delivery.plan(tagged(record("Delivery"), ref="jrn_01ARZ3NDEKTSV4RRFFQ69G5FAV", kind="transactional"))
    assert p.origin.campaign_id is None and p.origin.kind == "transactional" and p.stat == "delivered"


@pytest.mark.parametrize("message", [
    {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
    {"hello": "world"},
    {"Type": "Notification", "Message": "not json"},
])
def test_messages_that_are_not_ses_events_are_refused(message):
    with pytest.raises(delivery.NotAnEvent):
        delivery.plan(delivery.record_of(message))


def test_moto_identity_feedback_is_not_an_event_record():
    """moto's SNS feedback (identity notifications, placeholder notificationType) is not
    configuration-set event publishing: refused, not misread."""
    common = fixture("ses", "moto_feedback_common_mail.json")
    message = {**common, "bounce": fixture("ses", "moto_feedback_bounce.json")}
    with pytest.raises(delivery.NotAnEvent):
        delivery.plan(delivery.record_of(message))


def test_the_click_link_is_kept_for_the_timeline():
    p = delivery.plan(tagged(record("Click")))
    assert p.payload["link"].startswith("http://docs.aws.amazon.com/")
    assert p.payload["message_id"] == record("Click")["mail"]["messageId"]


def test_guard_keys_differ_per_message_event_and_recipient_but_not_per_delivery():
    a = delivery.guard_key("m1", "Open", "a@example.com")
    assert a == delivery.guard_key("m1", "Open", " A@Example.com ")
    assert len({a, delivery.guard_key("m2", "Open", "a@example.com"), delivery.guard_key("m1", "Click", "a@example.com"),
                delivery.guard_key("m1", "Open", "b@example.com")}) == 4
    assert "a@example.com" not in a  # a digest, never the address
