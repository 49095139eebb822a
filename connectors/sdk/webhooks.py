"""Webhook helpers for a connector's ``verify_webhook``, ``webhook_delivery_id`` and
``parse_webhook``: an HMAC signature header, a delivery id header and a JSON body mapped
to one record. The header names stay the connector's (they are the vendor's)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from connectors.sdk.base import Record, Rejected, WebhookDelivery
from connectors.sdk.errors import WebhookRejected
from connectors.sdk.fields import header
from connectors.sdk.secrets import hmac_base64, same


def verify_hmac_base64(headers: Any, name: str, secret: str | None, body: bytes, *, vendor: str) -> None:
    """Raise ``WebhookRejected`` unless header ``name`` is base64(HMAC-SHA256(secret, body))."""
    if not secret:
        raise WebhookRejected(f"no webhook secret is configured for this {vendor} connection")
    signature = header(headers, name)
    if not signature:
        raise WebhookRejected(f"missing {name}")
    if not same(signature.strip(), hmac_base64(secret, body)):
        raise WebhookRejected(f"{name} does not match the body")


def header_id(headers: Any, name: str) -> str:
    """The delivery id in header ``name`` (a vendor's retry keeps it), "" when there is none."""
    return (header(headers, name) or "").strip()[:200]


def json_delivery(
    delivery_id: str, topic: str, body: bytes, map_item: Callable[[Any], Record | None] | None
) -> WebhookDelivery:
    """The delivery's record: the JSON body through ``map_item`` (none when it gives None),
    a rejection when the body is not JSON, nothing for a topic without ``map_item``."""
    if map_item is None:
        return WebhookDelivery(delivery_id, topic, [])
    try:
        item = json.loads(body)
    except ValueError:
        return WebhookDelivery(delivery_id, topic, [Rejected(None, f"{topic}: the body is not JSON")])
    record = map_item(item)
    return WebhookDelivery(delivery_id, topic, [record] if record is not None else [])
