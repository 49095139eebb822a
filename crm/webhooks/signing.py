"""The Standard Webhooks headers of one delivery, signed by the spec's own library.

``webhook-id`` (the message id, the same on every retry of a message, so receivers
de-duplicate on it), ``webhook-timestamp`` (epoch seconds), ``webhook-signature``: one
``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` per secret, space-separated (during a
rotation's overlap, the new secret's and the old one's: a receiver holding either
verifies), and ``content-type: application/json``. The body is signed as the exact
string sent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime


def _utc(timestamp: datetime) -> datetime:
    """Naive: already UTC. The library replaces the zone rather than converting it, so an
    aware time in another zone is converted here first."""
    return timestamp.replace(tzinfo=UTC) if timestamp.tzinfo is None else timestamp.astimezone(UTC)


def headers(secrets: Sequence[str], msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The headers to send ``body`` with, signed by each of ``secrets`` (current first)."""
    from standardwebhooks import Webhook

    if not secrets:
        raise ValueError("at least one secret signs a delivery")
    at = _utc(timestamp)
    signatures = [Webhook(secret).sign(msg_id, at, body) for secret in dict.fromkeys(secrets)]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
    }
