"""The raw MIME message SES sends (``Content.Raw``): the headers are ours, so they are
real in the emulator's outbox too.

``multipart/alternative`` with the text part first and the HTML part last (a client
shows the last it understands), ``From``/``To``/``Subject``/``Date``/``Message-ID``,
``X-Rapport-Ref`` (the campaign or journey: the dev outbox groups by it) and, for
marketing, RFC 8058 one-click unsubscribe: ``List-Unsubscribe: <url>`` with
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (a POST to the URL unsubscribes,
a GET only shows a page). Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid

REF_HEADER = "X-Rapport-Ref"
# lines up to RFC 5322's hard limit: a long List-Unsubscribe URL must stay one token as it
# is (the default 78 would fold it into RFC 2047 encoded-words, which no client reads as a URL)
POLICY = SMTP.clone(max_line_length=998)


def build(
    *,
    sender: str,
    to: str,
    subject: str,
    html: str,
    text: str,
    ref: str,
    unsubscribe_url: str | None,
    at: datetime,
    from_name: str | None = None,
    reply_to: str | None = None,
    message_key: str | None = None,
    ses_tags: str | None = None,
) -> bytes:
    """The message's bytes (CRLF line ends). ``unsubscribe_url``: a marketing email's
    one-click link (None: transactional, no List-Unsubscribe). ``message_key`` makes the
    Message-ID stable for one (campaign, recipient) so a re-send after a takeover is
    recognisably the same message. ``ses_tags``: the ``X-SES-MESSAGE-TAGS`` header
    (crm/email/ses.py ``Tags.header``)."""
    domain = sender.rsplit("@", 1)[-1]
    msg = EmailMessage(policy=POLICY)
    msg["From"] = formataddr((from_name, sender)) if from_name else sender
    msg["To"] = str(Address(addr_spec=to))
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = f"<{message_key}@{domain}>" if message_key else make_msgid(domain=domain)
    msg["MIME-Version"] = "1.0"
    msg[REF_HEADER] = ref
    if ses_tags:
        msg["X-SES-MESSAGE-TAGS"] = ses_tags
    if unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text, subtype="plain", charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg.as_bytes()
