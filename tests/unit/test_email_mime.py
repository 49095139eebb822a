"""The raw MIME of a campaign email (crm/email/mime.py): headers real clients read."""
from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy

from crm.email import mime

URL = "https://api.example.com/v1/unsubscribe/" + "A" * 120 + "." + "B" * 22


def build(**over) -> email.message.EmailMessage:
    args = dict(sender="hello@shop.example", to="ann@example.com", subject="Spring — 20 % off, Ännä",
                html="<p>Hi</p>", text="Hi", ref="cmp_X", unsubscribe_url=URL,
                at=datetime(2026, 3, 1, 9, 0, tzinfo=UTC), message_key="cmp_X.cus_Y")
    args.update(over)
    raw = mime.build(**args)
    assert b"\r\n" in raw and max(len(line) for line in raw.split(b"\r\n")) <= 998
    return email.message_from_bytes(raw, policy=policy.default)


def test_marketing_headers_rfc8058():
    msg = build()
    assert msg["List-Unsubscribe"] == f"<{URL}>"  # one token, never encoded-words
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-Rapport-Ref"] == "cmp_X"
    assert msg["From"] == "hello@shop.example" and msg["To"] == "ann@example.com"
    assert msg["Subject"] == "Spring — 20 % off, Ännä"
    assert msg["Message-ID"] == "<cmp_X.cus_Y@shop.example>"  # stable: a re-send is the same message
    assert msg["Date"] == "Sun, 01 Mar 2026 09:00:00 +0000"


def test_multipart_alternative_text_then_html():
    msg = build(html="<p>Héllo</p>", text="Héllo")
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert [p.get_content().strip() for p in msg.iter_parts()] == ["Héllo", "<p>Héllo</p>"]


def test_transactional_has_no_unsubscribe_and_names_the_sender():
    msg = build(unsubscribe_url=None, from_name="Acme Shop", reply_to="help@shop.example", message_key=None)
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
    assert msg["From"] == "Acme Shop <hello@shop.example>" and msg["Reply-To"] == "help@shop.example"
    assert msg["Message-ID"].endswith("@shop.example>")
