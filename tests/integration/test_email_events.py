"""SES events end to end on the local stack: the records SES publishes (AWS's samples in
../shared/fixtures/ses, with our tags as our sender's emails carry them) put on the
emulator's EventBridge bus as SES puts them, routed by the rule of infra/resources.json
to the delivery queue, consumed by functions/email_events.py through the local pollers.

What a user relies on: a permanent bounce or a complaint suppresses the address and
revokes email consent within seconds; the campaign's stats count each event once, in
whatever order and however often the events arrive; events of other senders change
nothing."""
from __future__ import annotations

import json
import time

import pytest

from tests.conftest import TABLE, partition_items
from tests.unit.test_email_delivery import DETAIL_TYPE, record, tagged

pytestmark = pytest.mark.slow


def campaign(tenant) -> str:
    from tests.integration.test_unsubscribe import campaign as make

    return make(tenant)


def stats(tenant, cid) -> dict:
    from crm.storage import CampaignItem

    item = CampaignItem.get(tenant.ctx.key("CAMPAIGNS"), cid, consistent_read=True)
    return {k: int(getattr(item, k)) for k in ("delivered", "bounced", "complained", "opened", "clicked")} | {
        "version": item.version}


def ours(rec: dict) -> dict:
    """As SES publishes it for an email sent with the local stack's configuration set."""
    rec["mail"]["tags"]["ses:configuration-set"] = [TABLE]
    return rec


def publish(*records: dict) -> None:
    """Put the records on the default bus the way SES does (source aws.ses)."""
    import boto3

    events = boto3.client("events")
    entries = [{"Source": "aws.ses", "DetailType": DETAIL_TYPE[r["eventType"]], "Detail": json.dumps(r)}
               for r in records]
    for i in range(0, len(entries), 10):
        answer = events.put_events(Entries=entries[i:i + 10])
        assert answer["FailedEntryCount"] == 0, answer


def consent(tenant, customer_id) -> dict:
    return tenant.http.get(f"/v1/customers/{customer_id}").json()["consent"].get("email") or {}


def suppressed(tenant, address):
    from crm.email import suppression
    from crm.storage import SuppressionItem

    try:
        return SuppressionItem.get(suppression.pk(tenant.ctx), suppression.digest(address), consistent_read=True)
    except SuppressionItem.DoesNotExist:
        return None


def timeline_types(tenant, customer_id) -> list[str]:
    return [e["type"] for e in tenant.http.get(f"/v1/customers/{customer_id}/events").json()["data"]]


def granted(tenant, email):
    return tenant.create_customer(email=email, consent={"email": {"status": "granted", "source": "checkout",
                                                                  "at": "2017-01-01T00:00:00Z"}})


def test_bounce_and_complaint_suppress_and_revoke_within_seconds_and_stats_count_once(tenant, event_pipeline):
    cid = campaign(tenant)
    ann, bob = granted(tenant, "ann@example.com"), granted(tenant, "bob@example.com")
    version = stats(tenant, cid)["version"]

    def of(event_type, customer, message_id):
        return ours(tagged(record(event_type), tenant=tenant.id, customer=customer["id"], ref=cid,
                           message_id=message_id, address=customer["email"]))

    batch = [of("Send", ann, "m-ann"), of("Delivery", ann, "m-ann"), of("Open", ann, "m-ann"),
             of("Click", ann, "m-ann"), of("Bounce", bob, "m-bob"), of("Complaint", ann, "m-ann"),
             of("Reject", ann, "m-ann2"), of("Rendering Failure", ann, "m-ann3"), of("DeliveryDelay", ann, "m-ann"),
             of("Subscription", ann, "m-ann")]
    started = time.monotonic()
    publish(*batch)
    deadline = started + 15
    while consent(tenant, bob["id"]).get("status") != "denied" or consent(tenant, ann["id"]).get("status") != "denied":
        assert time.monotonic() < deadline, "consent was not revoked within 15 s"
        time.sleep(0.2)
    assert event_pipeline.wait_idle(60)
    assert consent(tenant, bob["id"])["source"] == "bounce"
    assert consent(tenant, bob["id"])["at"] == "2017-08-05T00:41:02.669Z"  # when it bounced
    assert consent(tenant, ann["id"])["source"] == "complaint"
    assert suppressed(tenant, "bob@example.com").reason == "bounce"
    assert suppressed(tenant, "ann@example.com").reason == "complaint"
    want = {"delivered": 1, "bounced": 1, "complained": 1, "opened": 1, "clicked": 1, "version": version}
    assert stats(tenant, cid) == want  # counted, and the campaign's version untouched
    assert sorted(t for t in timeline_types(tenant, ann["id"]) if t.startswith("email.")) == [
        "email.clicked", "email.complained", "email.opened"]
    assert [t for t in timeline_types(tenant, bob["id"]) if t.startswith("email.")] == ["email.bounced"]

    # SES (and EventBridge) deliver at least once: the same events again, in reverse order
    before = partition_items_but_profiles(tenant)
    publish(*reversed(batch))
    assert event_pipeline.wait_idle(60)
    assert stats(tenant, cid) == want
    assert partition_items_but_profiles(tenant) == before


def partition_items_but_profiles(tenant):
    import boto3

    return [i for i in partition_items(boto3.resource("dynamodb").Table(TABLE), tenant)
            if i["sk"] not in ("METRICS",)]


def test_out_of_order_bounce_before_delivery_and_a_transient_bounce(tenant, event_pipeline):
    """A bounce can arrive before the delivery of another recipient's copy, or before the
    send event: each counts on its own. A transient bounce (mailbox full) changes no consent."""
    cid = campaign(tenant)
    cy, dee = granted(tenant, "cy@example.com"), granted(tenant, "dee@example.com")
    bounce = ours(tagged(record("Bounce"), tenant=tenant.id, customer=cy["id"], ref=cid, message_id="m-cy",
                         address="cy@example.com"))
    soft = ours(tagged(record("Bounce"), tenant=tenant.id, customer=dee["id"], ref=cid, message_id="m-dee",
                       address="dee@example.com"))
    soft["bounce"]["bounceType"], soft["bounce"]["bounceSubType"] = "Transient", "MailboxFull"
    delivered = ours(tagged(record("Delivery"), tenant=tenant.id, customer=dee["id"], ref=cid, message_id="m-dee",
                            address="dee@example.com"))
    send = ours(tagged(record("Send"), tenant=tenant.id, customer=cy["id"], ref=cid, message_id="m-cy",
                       address="cy@example.com"))
    publish(bounce, soft)
    assert event_pipeline.wait_idle(60)
    publish(delivered, send)
    assert event_pipeline.wait_idle(60)
    got = stats(tenant, cid)
    assert (got["bounced"], got["delivered"]) == (1, 1)
    assert consent(tenant, cy["id"])["status"] == "denied"
    assert consent(tenant, dee["id"])["status"] == "granted"  # transient: nothing changes
    assert suppressed(tenant, "dee@example.com") is None
    assert "email.bounced" in timeline_types(tenant, dee["id"])


def test_a_bounce_of_an_old_address_suppresses_it_but_keeps_the_new_ones_consent(tenant, event_pipeline):
    cid = campaign(tenant)
    eve = granted(tenant, "eve@old.example")
    assert tenant.http.patch(f"/v1/customers/{eve['id']}", json={"email": "eve@new.example"}).status_code == 200
    publish(ours(tagged(record("Bounce"), tenant=tenant.id, customer=eve["id"], ref=cid, message_id="m-eve",
                        address="eve@old.example")))
    assert event_pipeline.wait_idle(60)
    assert suppressed(tenant, "eve@old.example") is not None
    assert consent(tenant, eve["id"])["status"] == "granted"


def test_a_newer_opt_in_stands_against_an_older_complaint(tenant, event_pipeline):
    """Order independence for consent: the customer opted in again after the complaint (the
    complaint's event arrives late): the newer decision stands; the address stays suppressed."""
    cid = campaign(tenant)
    fay = tenant.create_customer(email="fay@example.com", consent={"email": {
        "status": "granted", "source": "preference_center", "at": "2020-01-01T00:00:00Z"}})
    publish(ours(tagged(record("Complaint"), tenant=tenant.id, customer=fay["id"], ref=cid, message_id="m-fay",
                        address="fay@example.com")))  # the sample complaint is of 2017
    assert event_pipeline.wait_idle(60)
    assert consent(tenant, fay["id"])["status"] == "granted"
    assert suppressed(tenant, "fay@example.com").reason == "complaint"
    assert stats(tenant, cid)["complained"] == 1


def test_events_of_other_senders_change_nothing(tenant, event_pipeline, dev_stack, raw_table):
    """Another configuration set's events never match the rule; an event without our tags
    that reaches the queue anyway (as if the rule were wider) is logged and dropped, not
    retried into the dead-letter queue."""
    from crm import queues
    from rapport.pollers import plumbing_client

    granted(tenant, "recipient@example.com")
    before = partition_items(raw_table, tenant)
    publish(*(record(t) for t in ("Bounce", "Complaint", "Delivery")))  # AWS's samples: ConfigSet, no tags
    sqs = plumbing_client("sqs")
    untagged = ours(record("Complaint"))  # our configuration set, but no rapport tags
    sqs.send_message(QueueUrl=queues.url("delivery"), MessageBody=json.dumps({
        "version": "0", "id": "x", "detail-type": "Email Complaint Received", "source": "aws.ses",
        "detail": untagged}))
    sqs.send_message(QueueUrl=queues.url("delivery"), MessageBody=json.dumps({"source": "aws.events"}))
    assert event_pipeline.wait_idle(60)
    assert partition_items(raw_table, tenant) == before
    dlq = dev_stack.queues.dead_letter["delivery"]
    depth = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert depth["ApproximateNumberOfMessages"] == "0"


def send_raw(tenant, customer, ref, to=None, subject="Spring sale", kind="marketing") -> str:
    """An email as crm/email/ses.py sends one: raw MIME with the rapport tags both as SES's
    X-SES-MESSAGE-TAGS header and as EmailTags (which the emulator drops), through the
    emulator's SES v2 ``send_email``. Returns SES's message id."""
    from email.message import EmailMessage

    import boto3

    sender = f"hello@{tenant.id}.example.test"
    boto3.client("ses").verify_email_identity(EmailAddress=sender)  # the dev sender, verified
    tags = {"rapport_tenant": tenant.id, "rapport_customer": customer["id"], "rapport_ref": ref, "rapport_kind": kind}
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = f"Acme <{sender}>", to or customer["email"], subject
    msg["X-SES-MESSAGE-TAGS"] = ", ".join(f"{k}={v}" for k, v in tags.items())
    msg["X-Rapport-Ref"] = ref
    msg.set_content("Hello")
    msg.add_alternative("<p>Hello</p>", subtype="html")
    answer = boto3.client("sesv2").send_email(
        FromEmailAddress=sender, Destination={"ToAddresses": [to or customer["email"]]},
        Content={"Raw": {"Data": msg.as_bytes()}}, ConfigurationSetName=TABLE,
        EmailTags=[{"Name": k, "Value": v} for k, v in tags.items()])
    return answer["MessageId"]


def test_the_local_ses_double_publishes_what_ses_would(tenant, event_pipeline):
    """rapport/ses_events.py: an email the emulator's SES accepted gets its Send and Delivery
    events; SES's mailbox simulator addresses bounce and complain, as in AWS."""
    cid = campaign(tenant)
    ann = granted(tenant, "ann.local@example.com")
    bouncer = granted(tenant, "bounce@simulator.amazonses.com")
    complainer = granted(tenant, "complaint@simulator.amazonses.com")
    for customer in (ann, bouncer, complainer):
        send_raw(tenant, customer, cid)
    assert event_pipeline.wait_idle(60)
    got = stats(tenant, cid)
    assert (got["delivered"], got["bounced"], got["complained"]) == (2, 1, 1)
    assert consent(tenant, ann["id"])["status"] == "granted"
    assert consent(tenant, bouncer["id"])["source"] == "bounce"
    assert consent(tenant, complainer["id"])["source"] == "complaint"
    assert suppressed(tenant, "bounce@simulator.amazonses.com").reason == "bounce"
