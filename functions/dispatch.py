"""The DynamoDB stream dispatcher: table changes -> domain events -> subscriber queues.

Which events each subscriber receives is declared in ``ROUTES``. Deriving is pure
(crm/events.py); a record that cannot be decoded is reported as a partial batch
failure (Lambda retries from it, then sends it to the stream's on-failure queue).
Sending is all-or-nothing per batch: a failed send fails the batch, and the resent
events are de-duplicated by the subscribers.

Before any send, the batch's events are appended to the tenants' change feed
(crm/changes.py; a repeat adds nothing), and each tenant with new changes is told on
the webhooks queue (functions/webhooks.py), so no subscriber or webhook hears of a
change the feed lacks.
"""
from __future__ import annotations

from typing import Any

from crm.events import TYPES

ROUTES: dict[str, frozenset[str]] = {
    "loyalty": frozenset({"order.paid", "order.refunded", "order.updated"}),
    # Nothing: every event with a timeline entry writes it in its fact's own transaction
    # (crm/timeline.py). The queue stays for a later event that has no such transaction.
    "timeline": frozenset(),
    # what a customer is measured by (crm/segments/maintain.py): its orders, its profile,
    # its loyalty tier and balance; never segment.* (its own writes' news)
    "segments": frozenset(
        {
            "order.placed", "order.paid", "order.fulfilled", "order.cancelled", "order.refunded",
            "order.updated", "customer.created", "customer.updated", "customer.merged",
            "customer.erased", "tier.changed", "points.earned", "points.activated",
            "points.redeemed", "points.expired", "points.adjusted", "points.reversed",
        }
    ),
    # what starts a journey run (its trigger) or ends one (an exit event): any event a
    # journey may name (crm/journeys/schemas.py EXIT_EVENTS); the handler reads the
    # tenant's journeys once per batch and stops there when it has none
    "journeys": TYPES,
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


_LIVE = ("active", "merging")  # profiles that count against the plan's customers limit


def _tenant(raw: dict[str, Any] | None) -> str | None:
    pk = ((raw or {}).get("pk") or {}).get("S") or ""
    return pk.split("#", 2)[1] if pk.startswith("T#") and pk.count("#") >= 2 else None


def customer_counts(record: dict[str, Any]) -> tuple[str, int, str | None] | None:
    """(tenant, change of the live customer count, month of a creation or None) of one
    stream record of a customer profile; None for any other item. Live: active or
    merging (an erasure or a merge takes one away, a removal too)."""
    change = record.get("dynamodb") or {}
    old, new = change.get("OldImage"), change.get("NewImage")
    if "customer" not in ((old or {}).get("kind", {}).get("S"), (new or {}).get("kind", {}).get("S")):
        return None
    tenant = _tenant(new or old)
    if tenant is None:
        return None
    def live(raw: dict[str, Any] | None) -> int:
        return int(bool(raw) and raw.get("kind", {}).get("S") == "customer"
                   and (raw.get("status") or {}).get("S", "active") in _LIVE)
    created = None
    if not old and new and new.get("kind", {}).get("S") == "customer":
        created = ((new.get("created_at") or {}).get("S") or "")[:7] or None
    return tenant, live(new) - live(old), created


def count_usage(records: list[dict[str, Any]]) -> int:
    """One UpdateItem (ADD) per tenant with customer changes in the batch: the live count
    and the month's creations (crm/billing/usage.py). Sent after the subscribers' messages,
    so a failed send (the batch is retried) never counts twice; a failed ADD fails the
    batch (the sends are repeated and de-duplicated downstream). Returns the UpdateItems."""
    from crm.billing import usage

    per: dict[str, dict[str, int]] = {}
    for record in records:
        found = customer_counts(record)
        if found is None:
            continue
        tenant, delta, month = found
        adds = per.setdefault(tenant, {})
        if delta:
            adds["customers"] = adds.get("customers", 0) + delta
        if month:
            name = usage.attr("customers_created", month)
            adds[name] = adds.get(name, 0) + 1
    sent = 0
    for tenant, adds in per.items():
        adds = {k: v for k, v in adds.items() if v}
        if adds:
            usage.update(tenant, adds)
            sent += 1
    return sent


def handle(raw_event: dict[str, Any]) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    from crm import changes, queues

    derived: list[dict[str, Any]] = []
    handled: list[dict[str, Any]] = []
    failed: list[bool] = []

    def record_handler(record: Any) -> None:
        # Lambda retries a shard from its first failed record: the records after it are
        # failed too, so nothing after a failure reaches the feed before it (per-object order)
        if failed:
            raise RuntimeError("an earlier record of this batch failed")
        try:
            derived.extend(events_of(record.raw_event))
        except Exception:
            failed.append(True)
            raise
        handled.append(record.raw_event)

    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    response = process_partial_response(event=raw_event, record_handler=record_handler,
                                        processor=processor)
    # the feed first: a subscriber or a webhook never hears of a change the feed lacks
    appended = changes.append(derived)
    if appended:  # then the tenants' webhook endpoints hear of them (functions/webhooks.py)
        from functions import webhooks

        webhooks.wake(sorted(appended))
    for subscriber, events in route(derived).items():
        queues.send(subscriber, events)
    count_usage(handled)
    return response
