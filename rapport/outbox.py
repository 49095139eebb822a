"""The local outbox: every email the emulator's SES accepted, as `rapport dev` serves it
at ``GET /_dev/outbox`` (an HTML page, or JSON with ``Accept: application/json``) and
`rapport outbox` prints it. Local only: the deployed app has no ``/_dev`` path (the dev
server answers it before the app, rapport/devstack.py).

moto keeps each raw message it accepted in its in-process SES backend
(``ses_backends[account][region].sent_messages``); the emulator `rapport dev` and the
tests start runs in this process (rapport/emulator.py), so that is read directly. moto
records no sending time: :func:`install` stamps one on each message as moto accepts it.
"""
from __future__ import annotations

import email
import email.policy
import functools
import html
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import getaddresses, parseaddr
from typing import Any

_LOCK = threading.Lock()


@dataclass(frozen=True)
class Sent:
    """One message moto's SES accepted."""

    message_id: str
    source: str
    destinations: tuple[str, ...]  # bare addresses, lower case, each once
    raw: str
    sent_at: str | None  # ISO-8601 UTC, when moto accepted it


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def install() -> None:
    """Idempotent: moto's SES stamps ``rapport_sent_at`` on each message it accepts."""
    from moto.ses.models import SESBackend

    if getattr(SESBackend, "_rapport_stamped", False):
        return
    original = SESBackend.send_raw_email

    @functools.wraps(original)
    def send_raw_email(self: Any, *args: Any, **kwargs: Any) -> Any:
        message = original(self, *args, **kwargs)
        message.rapport_sent_at = _now()
        return message

    SESBackend.send_raw_email = send_raw_email
    SESBackend._rapport_stamped = True


def _bare(address: str) -> str:
    return (parseaddr(address)[1] or address).strip().lower()


def sent_messages() -> list[Sent]:
    """Every raw message moto's in-process SES accepted, oldest first (empty when moto
    does not run in this process)."""
    try:
        from moto.ses.models import ses_backends
    except ImportError:  # pragma: no cover - moto is a dev dependency
        return []
    out = []
    with _LOCK:
        for account in list(ses_backends.keys()):
            regions = ses_backends[account]
            for region in list(regions.keys()):
                for message in list(regions[region].sent_messages):
                    raw = getattr(message, "raw_data", None)
                    if raw is None:
                        continue  # a simple or templated send: we send raw messages only
                    destinations = tuple(dict.fromkeys(_bare(d) for d in message.destinations or ()))
                    out.append(Sent(message.id, message.source or "", destinations, raw,
                                    getattr(message, "rapport_sent_at", None)))
    return out


def _text(part: Any) -> str:
    try:
        return part.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken encoding
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


def render(sent: Sent) -> dict[str, Any]:
    """The message as the outbox shows it: ``{"id", "to", "from", "subject", "headers",
    "html", "text", "sent_at"}`` (headers: name -> value, repeated ones joined by a newline)."""
    message = email.message_from_string(sent.raw, policy=email.policy.default)
    headers: dict[str, str] = {}
    for name, value in message.items():
        headers[name] = f"{headers[name]}\n{value}" if name in headers else str(value)
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    to = [a for _, a in getaddresses([str(v) for v in message.get_all("To", [])]) if a] or list(sent.destinations)
    return {
        "id": sent.message_id,
        "to": to,
        "from": str(message.get("From", sent.source)),
        "subject": str(message.get("Subject", "")),
        "headers": headers,
        "html": _text(html_part) if html_part is not None else None,
        "text": _text(text_part) if text_part is not None else None,
        "sent_at": sent.sent_at,
    }


def latest(limit: int | None = None) -> list[dict[str, Any]]:
    """The sent emails, newest first."""
    messages = list(reversed(sent_messages()))
    return [render(m) for m in (messages[:limit] if limit else messages)]


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f3f4f6;color:#111827}
header{background:#111827;color:#fff;padding:1rem 1.5rem}header h1{margin:0;font-size:1.2rem}
header p{margin:.25rem 0 0;color:#9ca3af;font-size:.85rem}
main{padding:1rem 1.5rem;display:grid;gap:1rem}
article{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:1rem 1.25rem}
article h2{margin:0 0 .5rem;font-size:1.1rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:0 0 .75rem;font-size:.9rem}
dt{color:#6b7280}dd{margin:0;word-break:break-all}
details{margin:.5rem 0;font-size:.8rem}table{border-collapse:collapse;width:100%}
td{border-top:1px solid #e5e7eb;padding:.2rem .4rem;vertical-align:top;font-family:ui-monospace,monospace;
word-break:break-all}td:first-child{white-space:nowrap;color:#374151}
iframe{width:100%;height:420px;border:1px solid #e5e7eb;border-radius:6px;background:#fff}
pre{white-space:pre-wrap;background:#f9fafb;border:1px solid #e5e7eb;border-radius:6px;padding:.75rem}
.empty{color:#6b7280}
"""


def page(emails: list[dict[str, Any]]) -> str:
    """The outbox as an HTML page: each email's subject, sender, recipients and time, its
    headers, and its HTML part rendered in a sandboxed iframe (no scripts, no same origin:
    an email's content never runs in this page) or its text part."""
    e = html.escape
    cards = []
    for m in emails:
        rows = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in m["headers"].items())
        if m["html"] is not None:
            body = (f'<iframe title="{e(m["subject"])}" sandbox="" referrerpolicy="no-referrer" '
                    f'srcdoc="{e(m["html"], quote=True)}"></iframe>')
        else:
            body = f"<pre>{e(m['text'] or '')}</pre>"
        text = (f"<details><summary>Text part</summary><pre>{e(m['text'])}</pre></details>"
                if m["html"] is not None and m["text"] else "")
        cards.append(
            f'<article data-message-id="{e(m["id"])}"><h2>{e(m["subject"]) or "(no subject)"}</h2><dl>'
            f"<dt>From</dt><dd>{e(m['from'])}</dd><dt>To</dt><dd>{e(', '.join(m['to']))}</dd>"
            f"<dt>Sent</dt><dd>{e(m['sent_at'] or '-')}</dd>"
            + (f"<dt>List-Unsubscribe</dt><dd>{e(m['headers']['List-Unsubscribe'])}</dd>"
               if "List-Unsubscribe" in m["headers"] else "")
            + f"</dl><details><summary>Headers ({len(m['headers'])})</summary><table>{rows}</table></details>"
            f"{body}{text}</article>")
    content = "".join(cards) or '<p class="empty">No email sent yet.</p>'
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>Outbox ({len(emails)})</title><style>{_STYLE}</style></head><body>"
            f"<header><h1>Outbox</h1><p>{len(emails)} email(s) the local SES accepted, newest first "
            "(rapport dev only: nothing is delivered)</p></header>"
            f"<main>{content}</main></body></html>")


# the outbox page runs no script; its iframes render each email without scripts either
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; frame-src 'self'",
    "Cache-Control": "no-store",
}


def respond(path: str, accept: str) -> tuple[int, dict[str, str], bytes]:
    """The dev server's answer to ``GET /_dev/outbox[?limit=N]``: (status, headers, body)."""
    import json
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(path)
    if parts.path.rstrip("/") != "/_dev/outbox":
        return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"not found\n"
    try:
        limit = int(parse_qs(parts.query).get("limit", ["0"])[0]) or None
    except ValueError:
        return 400, {"Content-Type": "text/plain; charset=utf-8"}, b"limit must be a number\n"
    emails = latest(limit)
    wants_json = "application/json" in accept and "text/html" not in accept
    if wants_json:
        return 200, {"Content-Type": "application/json"}, json.dumps(emails).encode()
    return 200, {"Content-Type": "text/html; charset=utf-8", **PAGE_HEADERS}, page(emails).encode()
