"""The shape every SQS subscriber shares: a Powertools ``BatchProcessor`` over the
batch (failed messages go back to the queue, then to its DLQ) and idempotency per
domain event id."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def consume(subscriber: str, raw_event: dict[str, Any], handle: Callable[[dict[str, Any]], Any],
            lambda_context: Any = None) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    from functions.idempotency import once
    from functions.lambda_env import logger

    def record_handler(record: Any) -> None:
        event = json.loads(record.body)
        try:
            once(subscriber, event, handle, lambda_context)
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
