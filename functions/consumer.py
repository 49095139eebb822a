"""The shape every SQS subscriber shares: a Powertools ``BatchProcessor`` over the
batch (failed messages go back to the queue, then to its DLQ).

Idempotency records (functions/idempotency.py) are opt-in, per subscriber: they cost
2 requests per event (a PutItem claiming the event id, an UpdateItem storing the
result) and only pay for themselves where a repeat would be seen outside (an email, a
webhook, a Stripe call). A subscriber that is idempotent on its own (loyalty reconciles
the book with the order's state; the timeline writes an entry whose id is derived from
the event) passes ``at_most_once=False`` and relies on that. None with outside effects
exists yet; the first one passes ``at_most_once=True``.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def consume(subscriber: str, raw_event: dict[str, Any], handle: Callable[[dict[str, Any]], Any],
            lambda_context: Any = None, at_most_once: bool = False) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    from functions.lambda_env import logger

    def record_handler(record: Any) -> None:
        event = json.loads(record.body)
        try:
            if at_most_once:
                from functions.idempotency import once

                once(subscriber, event, handle, lambda_context)
            else:
                handle(event)
        except Exception:
            # the message goes back to the queue (and, after 5 receives, to the DLQ)
            logger().exception("event failed", extra={
                "subscriber": subscriber, "event_id": event.get("id"), "event_type": event.get("type"),
                "tenant_id": event.get("tenant_id"), "message_id": record.message_id,
                "receive_count": record.attributes.approximate_receive_count})
            raise

    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=raw_event, record_handler=record_handler,
                                    processor=processor)
