"""The DynamoDB stream dispatcher: table changes -> domain events -> subscriber queues.

Which events each subscriber receives is declared in ``ROUTES``. Deriving is pure
(crm/events.py); a record that cannot be decoded is reported as a partial batch
failure (Lambda retries from it, then sends it to the stream's on-failure queue).
Sending is all-or-nothing per batch: a failed send fails the batch, and the resent
events are de-duplicated by the subscribers.
"""
from __future__ import annotations

from typing import Any

ROUTES: dict[str, frozenset[str]] = {
    "loyalty": frozenset({"order.paid", "order.refunded", "order.updated"}),
    # Nothing: every event with a timeline entry writes it in its fact's own transaction
    # (crm/timeline.py). The queue stays for a later event that has no such transaction.
    "timeline": frozenset(),
}


def image(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stream image as plain Python values, decoded by the item's own PynamoDB class
    (JSON attributes parsed, versions as int); None for items that stand for no event
    (idempotency records, guards, timeline entries…), which are not decoded at all."""
    from crm.events import KINDS

    if not raw or raw.get("kind", {}).get("S") not in KINDS:
        return None
    from crm.storage import Item

    values = dict(Item.from_raw_data(raw).attribute_values)
    values["kind"] = raw["kind"]["S"]  # PynamoDB gives the class; events want the name
    return values


def events_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    from crm.events import derive

    change = record.get("dynamodb") or {}
    return derive(image(change.get("OldImage")), image(change.get("NewImage")))


def route(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {name: [e for e in events if e["type"] in types] for name, types in ROUTES.items()}


def handle(raw_event: dict[str, Any]) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    from crm import queues

    derived: list[dict[str, Any]] = []

    def record_handler(record: Any) -> None:
        derived.extend(events_of(record.raw_event))

    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    response = process_partial_response(event=raw_event, record_handler=record_handler,
                                        processor=processor)
    for subscriber, events in route(derived).items():
        queues.send(subscriber, events)
    return response
