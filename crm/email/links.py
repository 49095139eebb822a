"""Signed unsubscribe links: ``<public URL>/v1/unsubscribe/<token>``.

The token names the tenant, the customer and what sent the email (a campaign or a
journey), signed with HMAC-SHA256 under ``RAPPORT_EMAIL_LINK_SECRET``: opaque to the
reader, unforgeable, and usable without an API key (RFC 8058 one-click unsubscribe
POSTs to it with no credentials). It holds ids only, never an address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from crm import settings

_SIG_BYTES = 16  # 128-bit tag: forging one is out of reach, and the URL stays short


class InvalidToken(ValueError):
    """The token is malformed or its signature does not match."""


@dataclass(frozen=True)
class Unsubscribe:
    tenant_id: str
    customer_id: str
    ref: str  # what sent it: "cmp_…" (a campaign) or "jrn_…" (a journey)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload: bytes) -> bytes:
    return hmac.new(settings.email_link_secret(), payload, hashlib.sha256).digest()[:_SIG_BYTES]


def token(tenant_id: str, customer_id: str, ref: str) -> str:
    for part in (tenant_id, customer_id, ref):
        if not part or "|" in part:
            raise ValueError(f"an unsubscribe token part must be a non-empty id: {part!r}")
    payload = f"{tenant_id}|{customer_id}|{ref}".encode()
    return f"{_b64(payload)}.{_b64(_sign(payload))}"


def parse(text: str) -> Unsubscribe:
    try:
        body, sig = text.split(".", 1)
        payload, given = _unb64(body), _unb64(sig)
        parts = payload.decode().split("|")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken("malformed unsubscribe token") from exc
    if len(parts) != 3 or not hmac.compare_digest(given, _sign(payload)):
        raise InvalidToken("unsubscribe token signature does not match")
    return Unsubscribe(*parts)


def url(tenant_id: str, customer_id: str, ref: str) -> str:
    return f"{settings.public_url()}/v1/unsubscribe/{token(tenant_id, customer_id, ref)}"
