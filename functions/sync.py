"""Connector work from the ``sync`` queue, and the schedule that fans syncs out.

Messages (JSON):
- ``{"type": "sync", "tenant_id", "connection_id", "run_id"}``: run or resume a sync. A
  run that must pause (vendor throttle, invocation out of time) is checkpointed and its
  message sent again, delayed until it may continue; a crash leaves the message to be
  redelivered and the run resumes from its checkpoint. A finished run is a no-op.
- ``{"type": "hook", "tenant_id", "connection_id", "delivery_id", "headers", "body"}``: a
  verified vendor webhook (verified and de-duplicated by the API before it was queued),
  parsed and written through the sink.
- ``{"type": "erasure", "tenant_id", "customer_id"}``: an erasure's follow-up
  (functions/erasure.py).
- ``{"type": "segment_build", "tenant_id", "segment_id", "version"}``: a step of a
  segment's background build, or with ``"drop": true`` of a deleted segment's member
  removal (functions/segment_jobs.py); a step out of time queues the next.

The schedule reads the sparse ``SYNC_SCHEDULE`` index (connections whose next sync is
due) and queues one message per connection (SQS batches of 10), skipping suspended
tenants and paused connections. It also reads the ``SYNC_ACTIVE`` index and fails
every run without a checkpoint for ``RAPPORT_SYNC_STALL_SECONDS`` (``stalled``: its
worker died, e.g. a Lambda timeout or a message dead-lettered), releasing the lock.

Every run ends without an extra Lambda: the runner ends a run ``failed`` (classified)
on whatever it meets and the message is consumed; if the worker itself fails on the
message's last receive (``ApproximateReceiveCount >= SYNC_MAX_RECEIVES``, the queue's
maxReceiveCount), the run is failed ``internal`` before the message goes to the DLQ;
and the schedule catches the rest as ``stalled``. A redriven message resumes its run.
"""
from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from typing import Any

from connectors.messages import sync_message
from functions.lambda_env import logger, time_left
from functions.lambda_env import trace_id as _trace_id

SCHEDULE_BATCH = 500
STALL_BATCH = 100


def max_receives() -> int:
    """The sync queue's maxReceiveCount (infra/resources.json): the last delivery before the DLQ."""
    return int(os.environ.get("RAPPORT_SYNC_MAX_RECEIVES", "5"))
MAX_DELAY_SECONDS = 900  # SQS's limit; a longer throttle is re-queued again when it comes back


def run(message: dict[str, Any], lambda_context: Any = None) -> str:
    from connectors import messages, runner
    from crm.context import TenantContext

    ctx = TenantContext(message["tenant_id"])
    outcome = runner.execute(ctx, message["connection_id"], message["run_id"],
                             time_left=time_left(lambda_context), trace_id=_trace_id(lambda_context))
    if outcome.status == "paused":
        messages.send([message], delay=min(MAX_DELAY_SECONDS, int(outcome.retry_after + 0.999)))
    return outcome.status


def hook_stream(record: Any, topic: str) -> str:
    """The name a webhook's record is written and reported under, by its kind (the sink
    dispatches on the record's type: accounts, people, orders, invoices, checkouts,
    shipments); a
    record the connector could not map goes under the delivery's topic."""
    from connectors.sdk.base import (
        AccountRecord,
        CheckoutRecord,
        InvoiceRecord,
        OrderRecord,
        Rejected,
        ShipmentRecord,
    )

    if isinstance(record, Rejected):
        return topic

    for kind, stream in ((AccountRecord, "accounts"), (OrderRecord, "orders"), (InvoiceRecord, "invoices"),
                         (CheckoutRecord, "checkouts"), (ShipmentRecord, "shipments")):  # fmt: skip
        if isinstance(record, kind):
            return stream
    return "customers"


HOOK_ORDER = ("accounts", "customers", "orders", "invoices", "checkouts", "shipments")  # accounts before what names them


def hook(message: dict[str, Any]) -> dict[str, int]:
    from connectors import connections, sink
    from crm.context import TenantContext

    ctx = TenantContext(message["tenant_id"])
    item, _ = connections.load(ctx, message["connection_id"])
    if item.status != "active" or not connections.tenant_active(ctx):
        return {}  # queued before the pause or the suspension: nothing is written
    cls = connections.connector(item.connector)
    config = connections.config_of(ctx, item)
    delivery = cls().parse_webhook(config, message["headers"], base64.b64decode(message["body"]))
    where = {"tenant_id": ctx.tenant_id, "connection_id": message["connection_id"],
             "delivery_id": message.get("delivery_id"), "topic": delivery.topic}  # fmt: skip
    if delivery.note:  # why a verified delivery writes nothing, or what to fix in the vendor's settings
        logger().info("webhook delivery note", extra={**where, "note": delivery.note,
                                                      "records": len(delivery.records)})
    streams: dict[str, list] = {}
    for record in delivery.records:
        streams.setdefault(hook_stream(record, delivery.topic), []).append(record)
    counts: dict[str, int] = {}
    for stream in sorted(streams, key=lambda s: HOOK_ORDER.index(s) if s in HOOK_ORDER else len(HOOK_ORDER)):
        out = sink.write(ctx, cls.source(config), stream, streams[stream], connection_id=item.connection_id)
        for key, value in out.counts.items():
            counts[key] = counts.get(key, 0) + value
        for rejected in out.rejected:  # no run lists them: the log is where a tenant's support finds them
            logger().warning("webhook record not written", extra={**where, "stream": stream, **{
                k: rejected.get(k) for k in ("external_id", "reason", "conflict_id")}})
    return counts


def handle_batch(raw_event: dict[str, Any], lambda_context: Any = None) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    def record_handler(record: Any) -> None:
        message = json.loads(record.body)
        try:
            if message.get("type") == "hook":
                hook(message)
            elif message.get("type") == "sync":
                run(message, lambda_context)
            elif message.get("type") == "erasure":  # a customer's erasure follow-up
                from functions import erasure

                erasure.run(message)
            elif message.get("type") == "segment_build":  # a segment's build or drop, one step
                from functions import segment_jobs

                segment_jobs.run_build(message, lambda_context)
            else:
                raise ValueError(f"unknown sync message type {message.get('type')!r}")
        except Exception:
            trace_id = _trace_id(lambda_context)
            received = int(record.attributes.approximate_receive_count or 1)
            logger().exception("sync message failed", extra={
                "type": message.get("type"), "tenant_id": message.get("tenant_id"),
                "connection_id": message.get("connection_id"), "message_id": record.message_id,
                "receive_count": received, "trace_id": trace_id})
            if message.get("type") == "sync" and received >= max_receives():
                _fail_dead_lettered(message, trace_id)
            raise

    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=raw_event, record_handler=record_handler, processor=processor)


def _fail_dead_lettered(message: dict[str, Any], trace_id: str) -> None:
    """The message's last receive failed: it goes to the DLQ, so its run ends now."""
    from connectors import connections
    from crm.context import TenantContext

    try:
        connections.stop_run(TenantContext(message["tenant_id"]), message["connection_id"], message["run_id"],
                             "failed", error="internal", trace_id=trace_id,
                             detail=f"the sync worker failed on every delivery; the message is in the sync "
                                    f"DLQ (rapport dlq redrive sync resumes the run); trace id {trace_id}")
    except Exception:  # noqa: BLE001 - the schedule's stall check is the fallback
        logger().exception("could not mark the dead-lettered run failed", extra={"trace_id": trace_id})



def fail_stalled(now: str | None = None) -> int:
    """Fail every run without a checkpoint for the stall time: 1 Query on the active-run
    index, then per stalled run 1 GetItem + 1 TransactWriteItems."""
    from connectors import connections
    from connectors.store import ACTIVE_INDEX, SyncStateItem
    from crm import clock
    from crm.context import TenantContext
    from crm.errors import DomainError

    at = clock.parse(now) if now else clock.now()
    before = clock.iso(at - timedelta(seconds=connections.stall_seconds()))
    failed = 0
    for entry in list(SyncStateItem.gsi2.query(f"{ACTIVE_INDEX}#{connections.SCHEDULE_SHARD}",
                                               SyncStateItem.gsi2sk < f"{before}#~", limit=STALL_BATCH)):
        if not isinstance(entry, SyncStateItem) or not entry.active_run:
            continue
        _, tenant, cid = entry.gsi2sk.rsplit("#", 2)
        minutes = int(connections.stall_seconds() // 60)
        try:
            stopped = connections.stop_run(
                TenantContext(tenant), cid, entry.active_run, "failed", error="stalled", only_if_beat_before=before,
                detail=f"the run wrote no checkpoint for {minutes} minutes (its worker stopped); sync again, "
                       "or redrive its message from the sync DLQ to resume it")
        except DomainError:
            continue
        failed += stopped is not None
    return failed


def run_schedule(now: str | None = None, lambda_context: Any = None) -> dict[str, int]:
    """Fail stalled runs, then queue an incremental run for every connection whose
    schedule is due (suspended tenants and paused connections skipped): 1 Query on the
    schedule index, then per connection 1 GetItem (its tenant, once per run) + 1 Query +
    1 TransactWriteItems (the run and its lock) + 1 UpdateItem (its next due time), and
    one SQS message."""
    from connectors import connections
    from connectors.store import SCHEDULE_INDEX, ConnectionItem
    from crm import clock, queues
    from crm.context import TenantContext
    from crm.errors import DomainError

    at = now or clock.now_iso()
    stalled = fail_stalled(at)
    queued = skipped = 0
    messages = []
    active: dict[str, bool] = {}
    due = ConnectionItem.gsi2.query(f"{SCHEDULE_INDEX}#{connections.SCHEDULE_SHARD}",
                                    ConnectionItem.gsi2sk < f"{at}#~", limit=SCHEDULE_BATCH)
    for entry in list(due):
        _, tenant, cid = entry.gsi2sk.rsplit("#", 2)
        ctx = TenantContext(tenant)
        if not connections.tenant_active(ctx, active):
            skipped += 1  # suspended: not synced; due again when it is active
            connections.reschedule(ctx, cid, at)
            continue
        try:
            run_ = connections.start_run(ctx, cid, "incremental", "schedule")
            messages.append(sync_message(tenant, cid, run_.id))
            queued += 1
        except DomainError:
            skipped += 1  # a run is in progress, or the connection was paused or deleted
        connections.reschedule(ctx, cid, at)
    queues.send("sync", messages)
    return {"queued": queued, "skipped": skipped, "stalled": stalled}
