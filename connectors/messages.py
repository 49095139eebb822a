"""The ``sync`` queue's message format, and the send, below the API (which queues runs
and verified webhooks) and functions/sync.py (which consumes them).

- ``{"type": "sync", "tenant_id", "connection_id", "run_id"}``: run or resume a sync.
- ``{"type": "hook", "tenant_id", "connection_id", "delivery_id", "headers", "body"}``: a
  verified, de-duplicated vendor webhook; ``body`` is base64.
"""
from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

QUEUE = "sync"


def sync_message(tenant_id: str, connection_id: str, run_id: str) -> dict[str, Any]:
    return {"type": "sync", "tenant_id": tenant_id, "connection_id": connection_id, "run_id": run_id}


def hook_message(tenant_id: str, connection_id: str, delivery_id: str, headers: dict[str, Any],
                 body: bytes) -> dict[str, Any]:
    return {"type": "hook", "tenant_id": tenant_id, "connection_id": connection_id,
            "delivery_id": delivery_id, "headers": headers, "body": base64.b64encode(body).decode()}


def send(messages: Iterable[dict[str, Any]], delay: int = 0) -> int:
    from crm import queues

    return queues.send(QUEUE, messages, delay=delay)
