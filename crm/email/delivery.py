"""SES events applied: campaign stats, suppression, consent and the customer's timeline.

SES publishes an event record for each email sent with our configuration set (send,
delivery, bounce, complaint, reject, open, click, rendering failure, delivery delay,
subscription) to EventBridge; a rule routes them to the ``delivery`` queue
(infra/resources.json) and functions/email_events.py hands each message here.

:func:`plan` is pure: the message (an EventBridge event, or the bare SES record) -> a
:class:`Plan` naming who it is about (the ``rapport_*`` message tags the sender put on
the email, crm/email/ses.py) and what follows from it. :func:`apply` does the writes,
each idempotent and independent of the order events arrive in:

* campaign stats: an UpdateItem ADD on the CampaignItem (``delivered``, ``bounced``,
  ``complained``, ``opened``, ``clicked``) that neither checks nor bumps its ``version``,
  in one TransactWriteItems with an :class:`~crm.storage.EmailEventItem` put
  ``attribute_not_exists``: a redelivered event counts once. Opens and clicks count
  once per recipient and message (unique opens and clicks).
* a permanent bounce or a complaint puts the address on the tenant's suppression list
  (its SHA-256, crm/email/suppression.py) and revokes the customer's email consent
  (``{"status": "denied", "source": "bounce"|"complaint", "at": <the event's time>}``)
  through the customers service. A transient bounce changes nothing but the timeline.
* the customer's timeline gets ``email.bounced``, ``email.complained``, ``email.opened``
  or ``email.clicked``, its id derived from the message and the event (written once).

An event without our tags (another sender on the account) is ignored and logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from crm import ids

log = logging.getLogger("rapport.email.delivery")

# EventBridge ``detail-type`` -> the record's ``eventType`` (AWS's "Amazon Simple Email
# Service events" reference; the SES record is the event's ``detail``)
DETAIL_TYPES = {
    "Email Sent": "Send",
    "Email Delivered": "Delivery",
    "Email Bounced": "Bounce",
    "Email Complaint Received": "Complaint",
    "Email Rejected": "Reject",
    "Email Opened": "Open",
    "Email Clicked": "Click",
    "Email Rendering Failed": "Rendering Failure",
    "Email Delivery Delayed": "DeliveryDelay",
    "Email Subscribed": "Subscription",
}
EVENT_TYPES = frozenset(DETAIL_TYPES.values())
# the section of the record holding an event's details (and its timestamp)
SECTIONS = {
    "Send": "send",
    "Delivery": "delivery",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Reject": "reject",
    "Open": "open",
    "Click": "click",
    "Rendering Failure": "failure",
    "DeliveryDelay": "deliveryDelay",
    "Subscription": "subscription",
}
STATS = {"Delivery": "delivered", "Bounce": "bounced", "Complaint": "complained", "Open": "opened", "Click": "clicked"}
TIMELINE = {
    "Bounce": "email.bounced",
    "Complaint": "email.complained",
    "Open": "email.opened",
    "Click": "email.clicked",
}
TAGS = ("rapport_tenant", "rapport_customer", "rapport_ref", "rapport_kind")
GUARD_DAYS = 30  # an EmailEventItem is kept this long: SES redelivers within hours


@dataclass(frozen=True)
class Origin:
    """Who an email was for, from its ``rapport_*`` tags."""

    tenant_id: str
    customer_id: str
    ref: str  # "cmp_…" (a campaign) or "jrn_…" (a journey)
    kind: str  # marketing | transactional

    @property
    def campaign_id(self) -> str | None:
        return self.ref if self.ref.startswith("cmp_") else None


@dataclass(frozen=True)
class Plan:
    """What one SES event record means for us."""

    event_type: str  # the record's eventType: Delivery, Bounce, ...
    message_id: str
    at: str  # when it happened (the section's timestamp, else the send's)
    origin: Origin | None  # None: not one of ours
    recipients: tuple[str, ...] = ()  # the addresses it concerns (lower case)
    stat: str | None = None  # the campaign counter to ADD
    suppress: str | None = None  # reason to suppress the recipients: bounce | complaint
    revoke: str | None = None  # consent source when it revokes email consent
    timeline: str | None = None  # the timeline entry's type
    summary: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


class NotAnEvent(ValueError):
    """The message is neither an EventBridge event from SES nor an SES event record."""


def record_of(message: dict[str, Any]) -> dict[str, Any]:
    """The SES event record in a queue message: an EventBridge event's ``detail``, or
    the record itself (the SNS shape's ``Message``, parsed, is accepted too)."""
    import json

    if isinstance(message.get("detail"), dict) and message.get("source") == "aws.ses":
        record = dict(message["detail"])
        if "eventType" not in record and message.get("detail-type") in DETAIL_TYPES:
            record["eventType"] = DETAIL_TYPES[message["detail-type"]]
        return record
    if message.get("Type") == "Notification" and isinstance(message.get("Message"), str):
        try:
            return record_of(json.loads(message["Message"]))
        except ValueError as exc:
            raise NotAnEvent("an SNS notification whose Message is not JSON") from exc
    if "eventType" in message and isinstance(message.get("mail"), dict):
        return message
    raise NotAnEvent("not an SES event (EventBridge source aws.ses, or an SES event record)")


def _tag(tags: dict[str, Any], name: str) -> str | None:
    value = tags.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def origin(mail: dict[str, Any]) -> Origin | None:
    """Our tags on the email (``mail.tags``: each value a list), or None when they are
    missing or malformed (not an email we sent)."""
    tags = mail.get("tags") or {}
    tenant, customer, ref = (_tag(tags, n) for n in TAGS[:3])
    kind = _tag(tags, "rapport_kind") or "marketing"
    if not (tenant and customer and ref) or not ids.TENANT_ID.match(tenant) or not ids.CUSTOMER_ID.match(customer):
        return None
    if kind not in ("marketing", "transactional") or "|" in ref or len(ref) > 64:
        return None
    return Origin(tenant, customer, ref, kind)


def _addresses(values: Any, key: str | None = None) -> tuple[str, ...]:
    out = []
    for value in values or []:
        address = value.get(key) if key and isinstance(value, dict) else value
        if isinstance(address, str) and "@" in address:
            out.append(_bare(address))
    return tuple(dict.fromkeys(out))


def _bare(address: str) -> str:
    from email.utils import parseaddr

    return (parseaddr(address)[1] or address).strip().lower()


def plan(record: dict[str, Any]) -> Plan:
    """What an SES event record means (pure). Raises :class:`NotAnEvent` for a record
    without an event type or a message id."""
    event_type = record.get("eventType") or record.get("notificationType")
    mail = record.get("mail") or {}
    message_id = mail.get("messageId")
    if event_type not in EVENT_TYPES or not isinstance(message_id, str) or not message_id:
        raise NotAnEvent(f"an SES record with event type {event_type!r} and message id {message_id!r}")
    section = record.get(SECTIONS[event_type]) or {}
    at = _time(section.get("timestamp") if isinstance(section, dict) else None) or _time(mail.get("timestamp"))
    who = origin(mail)
    base = {"event_type": event_type, "message_id": message_id, "at": at or "", "origin": who}
    destination = _addresses(mail.get("destination"))
    if who is None:
        return Plan(**base, recipients=destination)
    ref = {"message_id": message_id, "ref": who.ref}
    if event_type == "Bounce":
        kind = section.get("bounceType") or "Undetermined"
        recipients = _addresses(section.get("bouncedRecipients"), "emailAddress") or destination
        permanent = kind == "Permanent"
        return Plan(
            **base,
            recipients=recipients,
            stat="bounced" if permanent else None,
            suppress="bounce" if permanent else None,
            revoke="bounce" if permanent else None,
            timeline="email.bounced",
            summary=f"Email bounced ({kind.lower()}"
            + (f", {section['bounceSubType']})" if section.get("bounceSubType") else ")"),
            payload={**ref, "bounce_type": kind, "bounce_subtype": section.get("bounceSubType")},
        )
    if event_type == "Complaint":
        recipients = _addresses(section.get("complainedRecipients"), "emailAddress") or destination
        feedback = section.get("complaintFeedbackType")
        return Plan(
            **base,
            recipients=recipients,
            stat="complained",
            suppress="complaint",
            revoke="complaint",
            timeline="email.complained",
            summary="Marked the email as spam" + (f" ({feedback})" if feedback else ""),
            payload={**ref, "feedback_type": feedback},
        )
    if event_type == "Delivery":
        return Plan(**base, recipients=_addresses(section.get("recipients")) or destination, stat="delivered")
    if event_type == "Open":
        return Plan(
            **base,
            recipients=destination,
            stat="opened",
            timeline="email.opened",
            summary="Opened the email",
            payload=ref,
        )
    if event_type == "Click":
        link = section.get("link") if isinstance(section.get("link"), str) else None
        return Plan(
            **base,
            recipients=destination,
            stat="clicked",
            timeline="email.clicked",
            summary="Clicked a link in the email",
            payload={**ref, "link": link[:500] if link else None},
        )
    # Send (the sender counts its own sends), Reject, Rendering Failure, DeliveryDelay,
    # Subscription (SES's own list management, which we do not use): nothing to apply
    return Plan(**base, recipients=destination)


def _time(value: Any) -> str | None:
    from crm import clock

    if not isinstance(value, str):
        return None
    try:
        return clock.iso(clock.parse(value))
    except ValueError:
        return None


# --- I/O ---------------------------------------------------------------------


@dataclass
class Outcome:
    """What :func:`apply` did (for logs and tests)."""

    counted: bool = False  # the stat was ADDed now (False: a duplicate, or nothing to count)
    suppressed: list[str] = field(default_factory=list)  # digests newly put
    revoked: bool = False
    timeline: bool = False
    ignored: str | None = None  # why nothing was done


def apply(p: Plan) -> Outcome:
    """Do what the plan says; safe to repeat and in any order (see the module's doc)."""
    from crm.context import TenantContext

    out = Outcome()
    if p.origin is None:
        log.info("SES event without rapport tags ignored", extra={"event_type": p.event_type, "ses_id": p.message_id})
        out.ignored = "untagged"
        return out
    ctx = TenantContext(p.origin.tenant_id)
    if p.stat:
        out.counted = count(ctx, p)
    if p.suppress:
        for address in p.recipients:
            if suppress(ctx, address, p.suppress, message_id=p.message_id, at=p.at):
                from crm.email import suppression

                out.suppressed.append(suppression.digest(address))
    if p.revoke:
        out.revoked = revoke_consent(ctx, p.origin.customer_id, p.revoke, p.at, addresses=p.recipients)
    if p.timeline:
        out.timeline = timeline(
            ctx, p.origin.customer_id, p.timeline, f"ses:{p.message_id}:{p.event_type}", p.at, p.summary, p.payload
        )
    return out


def guard_key(message_id: str, event_type: str, address: str) -> str:
    from crm.email import suppression

    return f"{message_id}#{event_type}#{suppression.digest(address)}"


def count(ctx: Any, p: Plan) -> bool:
    """ADD the plan's stat once per (message, event type, recipient): 1 TransactWriteItems
    (the EmailEventItem guard + the CampaignItem ADD). False for a duplicate. An event of a
    journey (no campaign) or of a deleted campaign writes the guard alone."""
    assert p.origin is not None and p.stat is not None
    address = p.recipients[0] if p.recipients else ""
    return add_once(ctx, guard_key(p.message_id, p.event_type, address), p.origin.campaign_id, p.stat, p.at)


def add_once(ctx: Any, guard: str, campaign_id: str | None, stat: str, at: str) -> bool:
    """1 TransactWriteItems: put the EmailEventItem ``guard`` (attribute_not_exists) and ADD
    1 to the campaign's ``stat`` (if the campaign exists; its version untouched). False when
    the guard was there already (counted before)."""
    from crm import clock
    from crm.storage import CampaignItem, EmailEventItem
    from crm.tx import Cancelled, Tx

    item = EmailEventItem(ctx.key("EMAILEVT"), guard, at=at or clock.now_iso(), ttl=timedelta(days=GUARD_DAYS))
    with_campaign = campaign_id is not None
    for _ in range(2):
        tx = Tx()
        tx.save(item, EmailEventItem.pk.does_not_exist(), role="guard")
        if with_campaign and campaign_id is not None:
            attribute = getattr(CampaignItem, stat)
            tx.update_key(
                CampaignItem,
                ctx.key("CAMPAIGNS"),
                campaign_id,
                actions=[attribute.add(1)],
                condition=CampaignItem.pk.exists(),
                role="campaign",
            )
        try:
            tx.run()
            return True
        except Cancelled as exc:
            if exc.failed_role("guard"):
                return False
            if exc.failed_role("campaign"):
                with_campaign = False  # deleted (or never ours): keep the guard only
                continue
            raise
    return False


def suppress(ctx: Any, address: str, reason: str, *, message_id: str | None = None, at: str | None = None) -> bool:
    """Put the address on the tenant's suppression list (1 PutItem, attribute_not_exists:
    the first reason stays). True when it was not there yet."""
    from crm import clock
    from crm.email import suppression
    from crm.storage import SuppressionItem, condition_failed

    if not address or "@" not in address:
        return False
    item = SuppressionItem(
        suppression.pk(ctx), suppression.digest(address), reason=reason, message_id=message_id, at=at or clock.now_iso()
    )
    try:
        item.save(SuppressionItem.pk.does_not_exist())
        return True
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise


def revoke_consent(ctx: Any, customer_id: str, source: str, at: str, *, addresses: tuple[str, ...] = ()) -> bool:
    """Set the customer's email consent to ``denied`` (``source``, ``at``) through the
    customers service, so the profile's version, its ``customer.updated`` event and the
    segments follow. Nothing changes when consent is denied already, when a newer
    decision was recorded after ``at`` (the customer opted in again since), for an erased
    or unknown customer, or, given ``addresses``, when the profile's email is none of
    them (the customer has changed address since: only the old one is suppressed).
    A merged id revokes its survivor's consent. 1-2 GetItem + 1 TransactWriteItems."""
    from crm import clock
    from crm.customers import service
    from crm.customers.schemas import CustomerPatch
    from crm.errors import Gone, NotFound

    try:
        item = service.resolve(ctx, customer_id)
    except NotFound:
        return False
    if item.status != "active":
        return False
    data = item.data or {}
    if addresses and (data.get("email") or "").strip().lower() not in addresses:
        return False
    current = (data.get("consent") or {}).get("email") or {}
    if current.get("status") == "denied":
        return False
    when = at or clock.now_iso()
    if current.get("at") and clock.parse(current["at"]) > clock.parse(when):
        return False
    patch = CustomerPatch.model_validate({"consent": {"email": {"status": "denied", "source": source, "at": when}}})
    try:
        service.update(ctx, item.customer_id, patch)
    except (Gone, NotFound):
        return False
    return True


def timeline(ctx: Any, customer_id: str, type_: str, key: str, at: str, summary: str, payload: dict[str, Any]) -> bool:
    """The customer's timeline entry, written once per ``key`` (its id derives from it)."""
    from crm import clock
    from crm.customers import service
    from crm.customers.schemas import TimelineEventCreate

    body = TimelineEventCreate(
        type=type_,
        channel="email",
        occurred_at=clock.parse(at) if at else None,
        summary=summary[:500] or None,
        payload={k: v for k, v in payload.items() if v is not None} or None,
    )
    return service.record_event(ctx, customer_id, key, body)
