"""The shape every SQS subscriber shares: a Powertools ``BatchProcessor`` over the
batch (failed messages go back to the queue, then to its DLQ) and idempotency per
domain event id."""
from __future__ import annotations

import json
from typing import Any, Callable


def consume(subscriber: str, raw_event: dict[str, Any], handle: Callable[[dict[str, Any]], Any],
            lambda_context: Any = None) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    from functions.idempotency import once

    def record_handler(record: Any) -> None:
        once(subscriber, json.loads(record.body), handle, lambda_context)

    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=raw_event, record_handler=record_handler,
                                    processor=processor)
