"""The SQS queues that domain events and connector work fan out to, one per subscriber.

Below connectors/ and functions/ alike: the dispatcher (functions/dispatch.py) and the
API's sync and webhook routes (through connectors/messages.py) send with it.

A queue's URL comes from ``RAPPORT_QUEUE_<NAME>_URL`` (set by infra/resources.json in
AWS and by infra/bootstrap.py on the emulator). Each queue has a dead-letter queue
``<name>-dlq`` that receives a message after ``MAX_RECEIVES`` failed deliveries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

# sync: connector runs and webhooks (connectors/messages.py); segments: metrics and
# memberships (functions/segments.py); email: campaign audience pages and sends
# (functions/campaigns.py); delivery: SES's events through EventBridge (functions/email_events.py);
# journeys: runs started and ended by events, birthday backfills (functions/journeys.py);
# webhooks: new changes to fan out to a tenant's endpoints, deliveries due (functions/webhooks.py)
SUBSCRIBERS = ("loyalty", "timeline", "sync", "segments", "email", "delivery", "journeys", "webhooks")
MAX_RECEIVES = 5


def env_name(subscriber: str) -> str:
    return f"RAPPORT_QUEUE_{subscriber.upper()}_URL"


def url(subscriber: str) -> str:
    try:
        return os.environ[env_name(subscriber)]
    except KeyError:
        raise RuntimeError(f"{env_name(subscriber)} is not set: the {subscriber} queue is unknown") from None


@lru_cache(maxsize=1)
def _client() -> Any:
    import boto3

    return boto3.client("sqs")


def send(subscriber: str, bodies: Iterable[dict[str, Any]], delay: int = 0) -> int:
    """Send JSON bodies in batches of 10 (SQS's limit); raise if any entry fails, so the
    stream batch is retried (a resent message is harmless: consumers are idempotent).
    ``delay``: seconds (at most 900) before the messages become visible."""
    batch: list[dict[str, Any]] = []
    sent = 0
    for body in bodies:
        entry: dict[str, Any] = {"Id": str(len(batch)), "MessageBody": json.dumps(body, separators=(",", ":"))}
        if delay:
            entry["DelaySeconds"] = delay
        batch.append(entry)
        if len(batch) == 10:
            sent += _flush(subscriber, batch)
            batch = []
    if batch:
        sent += _flush(subscriber, batch)
    return sent


def _flush(subscriber: str, batch: list[dict[str, Any]]) -> int:
    answer = _client().send_message_batch(QueueUrl=url(subscriber), Entries=batch)
    if answer.get("Failed"):
        raise RuntimeError(
            f"SQS refused {len(answer['Failed'])} messages for {subscriber}: {answer['Failed'][0].get('Message')}"
        )
    return len(batch)
