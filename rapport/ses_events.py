"""A test double of SES event publishing, for the local stack only.

moto's SES accepts emails but publishes no events. In AWS, SES publishes an event record
for each email sent with our configuration set to EventBridge's default bus (source
``aws.ses``), and the rule of infra/resources.json routes them to the ``delivery`` queue.
This double plays SES's part: for each message the emulator's SES accepted it puts, on
the emulator's default bus, the records SES would publish, in the shapes of AWS's
published samples (../shared/fixtures/ses/sns_*.json, the ``detail`` of each event):

* a ``Send`` record for the message, then for each recipient
* ``Delivery``; or, for SES's mailbox simulator addresses, what they simulate:
  ``bounce@simulator.amazonses.com`` a permanent bounce (``General``, 5.1.1),
  ``suppressionlist@simulator.amazonses.com`` a permanent bounce
  (``OnAccountSuppressionList``), ``complaint@simulator.amazonses.com`` a delivery then a
  complaint (``abuse``). Addresses ``bounce+…@simulator…`` / ``complaint+…`` (SES's
  labels) simulate the same.

The message's real id, source, destination and headers are used. Its tags: moto keeps
neither ``EmailTags`` nor the configuration set given to ``send_email``, so they are read
from the raw message's ``X-SES-MESSAGE-TAGS`` header (SES's own header for message tags;
SES removes it before delivery and, when the API call passes ``EmailTags`` too, uses
those), or ``X-Rapport-Tags`` in the same ``name=value, name=value`` form. The
configuration set is ``X-SES-CONFIGURATION-SET`` or the stack's. Nothing is published for
opens and clicks (nobody reads these emails).

It runs as one more poller of the local event pipeline (rapport/pollers.py), so
``wait_idle`` waits for it too. Its client is plumbing: AWS's work, not the functions'.
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from rapport.pollers import Poller, plumbing_client

log = logging.getLogger("rapport.ses_events")

SIMULATOR = "simulator.amazonses.com"
DETAIL_TYPES = {"Send": "Email Sent", "Delivery": "Email Delivered", "Bounce": "Email Bounced",
                "Complaint": "Email Complaint Received"}
ACCOUNT = "123456789012"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_tags(value: str | None) -> dict[str, list[str]]:
    """``name=value, name=value`` (SES's header form) -> ``{"name": ["value"]}`` (the event's)."""
    tags: dict[str, list[str]] = {}
    for part in (value or "").split(","):
        name, sep, tag = part.strip().partition("=")
        if sep and name.strip():
            tags[name.strip()] = [tag.strip()]
    return tags


def simulated(address: str) -> str | None:
    """What a mailbox-simulator address simulates: bounce | suppressionlist | complaint | None."""
    local, _, domain = address.lower().partition("@")
    if domain != SIMULATOR:
        return None
    kind = local.split("+", 1)[0]
    return kind if kind in ("bounce", "suppressionlist", "complaint") else None


def records_for(sent: Any, configuration_set: str, region: str = "us-east-1") -> list[dict[str, Any]]:
    """The event records SES would publish for one sent message (``rapport.outbox.Sent``)."""
    import email
    import email.policy

    message = email.message_from_string(sent.raw, policy=email.policy.default)
    tags = parse_tags(message.get("X-SES-MESSAGE-TAGS")) or parse_tags(message.get("X-Rapport-Tags"))
    from_domain = (sent.source.rsplit("@", 1)[-1] if "@" in sent.source else "").rstrip(">").lower()
    tags.update({
        "ses:configuration-set": [str(message.get("X-SES-CONFIGURATION-SET") or configuration_set)],
        "ses:source-ip": ["127.0.0.1"],
        "ses:from-domain": [from_domain],
        "ses:caller-identity": ["rapport"],
    })
    sent_at = datetime.fromisoformat(sent.sent_at) if sent.sent_at else datetime.now(UTC)
    headers = [{"name": k, "value": str(v)} for k, v in message.items()
               if k.upper() not in ("X-SES-MESSAGE-TAGS", "X-SES-CONFIGURATION-SET")]
    mail = {
        "timestamp": _iso(sent_at),
        "source": sent.source,
        "sourceArn": f"arn:aws:ses:{region}:{ACCOUNT}:identity/{from_domain}",
        "sendingAccountId": ACCOUNT,
        "messageId": sent.message_id,
        "destination": list(sent.destinations),
        "headersTruncated": False,
        "headers": headers,
        "commonHeaders": {
            "from": [str(message.get("From", sent.source))],
            "to": [str(v) for v in message.get_all("To", [])] or list(sent.destinations),
            "messageId": sent.message_id,
            "subject": str(message.get("Subject", "")),
        },
        "tags": tags,
    }
    later = _iso(sent_at + timedelta(seconds=1))
    records: list[dict[str, Any]] = [{"eventType": "Send", "mail": mail, "send": {}}]
    for address in sent.destinations:
        kind = simulated(address)
        if kind in ("bounce", "suppressionlist"):
            records.append({"eventType": "Bounce", "mail": mail, "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General" if kind == "bounce" else "OnAccountSuppressionList",
                "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1",
                                       "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                "timestamp": later, "feedbackId": f"{sent.message_id}-bounce",
                "reportingMTA": "dsn; rapport.local"}})
            continue
        records.append({"eventType": "Delivery", "mail": mail, "delivery": {
            "timestamp": later, "processingTimeMillis": 1000, "recipients": [address],
            "smtpResponse": "250 2.6.0 Message received", "reportingMTA": "rapport.local"}})
        if kind == "complaint":
            records.append({"eventType": "Complaint", "mail": mail, "complaint": {
                "complainedRecipients": [{"emailAddress": address}], "timestamp": later,
                "feedbackId": f"{sent.message_id}-complaint", "userAgent": "rapport ses double",
                "complaintFeedbackType": "abuse", "arrivalDate": later}})
    return records


class SesEventsDouble(Poller):
    """Publishes the events of each message the emulator's SES accepted, once. With
    ``skip_existing`` the messages already sent when it starts are left alone (a test's
    pipeline starting at LATEST)."""

    def __init__(self, configuration_set: str, *, skip_existing: bool = False, interval: float = 0.2) -> None:
        super().__init__("SES (emulator) -> EventBridge events", interval)
        self.configuration_set = configuration_set
        self._seen: set[str] | None = None
        self._skip_existing = skip_existing
        self._events = plumbing_client("events")
        self._region = self._events.meta.region_name or "us-east-1"

    def poll_once(self) -> int:
        from rapport import outbox

        messages = outbox.sent_messages()
        if self._seen is None:
            self._seen = {m.message_id for m in messages} if self._skip_existing else set()
        published = 0
        for sent in messages:
            if sent.message_id in self._seen:
                continue
            records = records_for(sent, self.configuration_set, self._region)
            entries = [{"Source": "aws.ses", "DetailType": DETAIL_TYPES[r["eventType"]], "Detail": json.dumps(r)}
                       for r in records]
            for i in range(0, len(entries), 10):
                answer = self._events.put_events(Entries=entries[i:i + 10])
                if answer.get("FailedEntryCount"):
                    raise RuntimeError(f"EventBridge refused SES events: {answer['Entries']}")
            self._seen.add(sent.message_id)
            self.stats.records += len(records)
            published += len(records)
        return published
