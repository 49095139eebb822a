"""Connector work from the ``sync`` queue, and the schedule that fans syncs out.

Messages (JSON):
- ``{"type": "sync", "tenant_id", "connection_id", "run_id"}``: run or resume a sync. A
  run that must pause (vendor throttle, invocation out of time) is checkpointed and its
  message sent again, delayed until it may continue; a crash leaves the message to be
  redelivered and the run resumes from its checkpoint. A finished run is a no-op.
- ``{"type": "hook", "tenant_id", "connection_id", "delivery_id", "headers", "body"}``: a
  verified vendor webhook (verified and de-duplicated by the API before it was queued),
  parsed and written through the sink.

The schedule reads the sparse ``SYNC_SCHEDULE`` index (connections whose next sync is
due) and queues one message per connection (SQS batches of 10).
"""
from __future__ import annotations

import base64
import json
from typing import Any

SCHEDULE_BATCH = 500
MAX_DELAY_SECONDS = 900  # SQS's limit; a longer throttle is re-queued again when it comes back


def _time_left(lambda_context: Any):
    if lambda_context is None:
        return lambda: float("inf")
    return lambda: lambda_context.get_remaining_time_in_millis() / 1000.0


def sync_message(tenant_id: str, connection_id: str, run_id: str) -> dict[str, Any]:
    return {"type": "sync", "tenant_id": tenant_id, "connection_id": connection_id, "run_id": run_id}


def run(message: dict[str, Any], lambda_context: Any = None) -> str:
    from connectors import runner
    from crm.context import TenantContext
    from functions import queues

    ctx = TenantContext(message["tenant_id"])
    outcome = runner.execute(ctx, message["connection_id"], message["run_id"],
                             time_left=_time_left(lambda_context))
    if outcome.status == "paused":
        queues.send("sync", [message], delay=min(MAX_DELAY_SECONDS, int(outcome.retry_after + 0.999)))
    return outcome.status


def hook(message: dict[str, Any]) -> dict[str, int]:
    from connectors import connections, sink
    from connectors.sdk.base import OrderRecord
    from crm.context import TenantContext

    ctx = TenantContext(message["tenant_id"])
    item, _ = connections.load(ctx, message["connection_id"])
    cls = connections.connector(item.connector)
    config = connections.config_of(ctx, item)
    delivery = cls().parse_webhook(config, message["headers"], base64.b64decode(message["body"]))
    streams: dict[str, list] = {}
    for record in delivery.records:
        streams.setdefault("orders" if isinstance(record, OrderRecord) else "customers", []).append(record)
    counts: dict[str, int] = {}
    for stream, records in streams.items():
        for key, value in sink.write(ctx, cls.source(config), stream, records).counts.items():
            counts[key] = counts.get(key, 0) + value
    return counts


def handle_batch(raw_event: dict[str, Any], lambda_context: Any = None) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    from crm.aws import logger

    def record_handler(record: Any) -> None:
        message = json.loads(record.body)
        try:
            if message.get("type") == "hook":
                hook(message)
            elif message.get("type") == "sync":
                run(message, lambda_context)
            else:
                raise ValueError(f"unknown sync message type {message.get('type')!r}")
        except Exception:
            logger().exception("sync message failed", extra={
                "type": message.get("type"), "tenant_id": message.get("tenant_id"),
                "connection_id": message.get("connection_id"), "message_id": record.message_id,
                "receive_count": record.attributes.approximate_receive_count})
            raise

    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=raw_event, record_handler=record_handler, processor=processor)


def run_schedule(now: str | None = None, lambda_context: Any = None) -> dict[str, int]:
    """Queue an incremental run for every connection whose schedule is due: 1 Query on
    the schedule index, then per connection 1 Query + 1 TransactWriteItems (the run and
    its lock) + 1 UpdateItem (its next due time), and one SQS message."""
    from connectors import connections
    from connectors.store import SCHEDULE_INDEX, ConnectionItem
    from crm import clock
    from crm.context import TenantContext
    from crm.errors import DomainError
    from functions import queues

    at = now or clock.now_iso()
    queued = skipped = 0
    messages = []
    due = ConnectionItem.gsi2.query(f"{SCHEDULE_INDEX}#{connections.SCHEDULE_SHARD}",
                                    ConnectionItem.gsi2sk < f"{at}#~", limit=SCHEDULE_BATCH)
    for entry in list(due):
        _, tenant, cid = entry.gsi2sk.rsplit("#", 2)
        ctx = TenantContext(tenant)
        try:
            run_ = connections.start_run(ctx, cid, "incremental", "schedule")
            messages.append(sync_message(tenant, cid, run_.id))
            queued += 1
        except DomainError:
            skipped += 1  # a run is in progress, or the connection was paused or deleted
        connections.reschedule(ctx, cid, at)
    queues.send("sync", messages)
    return {"queued": queued, "skipped": skipped}
