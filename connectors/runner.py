"""Drive one sync run: read each stream page by page, write, checkpoint, and stop cleanly.

A run survives anything: after every page the stream's state (``Window``) and the run's
counts are written in one transaction, so a crash (the process killed between pages or
inside one) resumes from the last checkpoint on the next invocation; what the crashed
page had already written is written again as "unchanged" (writes are idempotent), never
twice. A vendor throttle longer than the run may sleep, or an invocation running out of
time, *pauses* the run: it is checkpointed, and the caller re-queues it (with a delay
for a throttle). Requests per page: 1 TransactWriteItems for the checkpoint, plus what
the records cost (connectors/sink.py).
"""
from __future__ import annotations

import time
from datetime import timedelta
from dataclasses import dataclass
from typing import Any, Callable

from connectors import connections
from connectors.sdk.base import ReadContext
from connectors.sdk.errors import RateLimited, VendorError
from connectors.store import RunItem, SyncStateItem
from crm import clock
from crm.aws import logger
from crm.context import TenantContext

MAX_REJECTED_KEPT = 100
TIME_RESERVE_SECONDS = 20.0  # stop reading when an invocation has less than this left
FINISHED = ("succeeded", "failed")


@dataclass
class Outcome:
    status: str               # succeeded | failed | paused
    retry_after: float = 0.0  # paused: seconds until it may continue


Progress = Callable[[str, dict[str, Any]], None]


def _checkpoint(ctx: TenantContext, run: RunItem, state: SyncStateItem, *, release: bool = False) -> None:
    from pynamodb.transactions import TransactWrite

    from crm.storage import connection

    now = clock.now_iso()
    run.data = {**run.data, "heartbeat_at": now}
    state.updated_at = now
    if release and state.active_run == run.run_id:
        state.active_run = None
    with TransactWrite(connection=connection()) as tx:
        tx.save(run)
        tx.save(state)


def _finish(ctx: TenantContext, run: RunItem, state: SyncStateItem, status: str,
            error: str | None = None) -> None:
    now = clock.now_iso()
    started = run.data.get("started_at") or run.data["created_at"]
    run.data = {**run.data, "status": status, "finished_at": now, "error": error, "resume_at": None,
                "duration_ms": int((clock.parse(now) - clock.parse(started)).total_seconds() * 1000)}
    _checkpoint(ctx, run, state, release=True)


def execute(ctx: TenantContext, connection_id: str, run_id: str, *,
            time_left: Callable[[], float] = lambda: float("inf"),
            progress: Progress | None = None, client_options: dict[str, Any] | None = None) -> Outcome:
    """Run (or resume) ``run_id`` until it finishes, fails, or must pause. Idempotent: a
    finished run is left alone, so a redelivered message does nothing."""
    from connectors import sink

    item, state = connections.load(ctx, connection_id)
    run = RunItem.get(connections.pk(ctx, connection_id), connections.run_sk(run_id), consistent_read=True)
    if run.data.get("status") in FINISHED:
        return Outcome(run.data["status"])
    if state.active_run not in (None, run_id):
        _finish(ctx, run, state, "failed", f"superseded by run {state.active_run}")
        return Outcome("failed")
    state.active_run = run_id
    cls = connections.connector(item.connector)
    conn = cls()
    try:
        config = connections.config_of(ctx, item)
    except Exception as exc:  # noqa: BLE001 - a config that no longer validates fails the run
        _finish(ctx, run, state, "failed", f"the connection's config is not usable: {exc}")
        return Outcome("failed")
    now = clock.now_iso()
    run.data = {**run.data, "status": "running", "started_at": run.data.get("started_at") or now,
                "invocations": run.data.get("invocations", 0) + 1, "resume_at": None}
    _checkpoint(ctx, run, state)
    client = conn.client(config) if cls.kind != "file" else None
    if client is not None:
        client.time_left = time_left
        for key, value in (client_options or {}).items():
            setattr(client, key, value)
    mode = run.data["mode"]
    rc = ReadContext(config=config, client=client, mode=mode, tenant_id=ctx.tenant_id,
                     connection_id=connection_id, run_id=run_id, upload_id=run.data.get("upload_id"))
    source = cls.source(config)
    try:
        for stream_cls in cls.streams:
            name = stream_cls.name
            counts = dict(run.data["streams"].get(name) or {})
            if counts.get("done"):
                continue
            stream_state = dict((state.streams or {}).get(name) or {})
            if mode == "backfill" and not counts.get("started"):
                # a backfill reads (and re-writes, as unchanged) everything; the cursor it
                # closes with is where the next incremental run starts
                stream_state = {"cursor": stream_state.get("cursor")}
            counts["started"] = True
            for page in stream_cls().read(rc, stream_state):
                written = sink.write(ctx, source, name, page.records)
                for key, value in written.counts.items():
                    counts[key] = counts.get(key, 0) + value
                counts["pages"] = counts.get("pages", 0) + 1
                if page.total is not None:
                    counts["total"] = page.total
                kept = run.data.get("rejected", [])
                room = MAX_REJECTED_KEPT - len(kept)
                run.data = {**run.data, "rejected": kept + written.rejected[:max(room, 0)],
                            "rejected_total": run.data.get("rejected_total", 0) + len(written.rejected),
                            "streams": {**run.data["streams"], name: counts}}
                state.streams = {**(state.streams or {}), name: page.state}
                _checkpoint(ctx, run, state)
                if progress is not None:
                    progress(name, counts)
                if time_left() < TIME_RESERVE_SECONDS:
                    return _pause(ctx, run, state, 0.0, "the invocation ran out of time")
            counts["done"] = True
            run.data = {**run.data, "streams": {**run.data["streams"], name: counts}}
            _checkpoint(ctx, run, state)
    except RateLimited as exc:
        return _pause(ctx, run, state, exc.retry_after, str(exc))
    except VendorError as exc:
        logger().warning("sync failed", extra={"connection": connection_id, "run": run_id, "error": str(exc)})
        _finish(ctx, run, state, "failed", str(exc))
        return Outcome("failed")
    finally:
        if client is not None:
            client.close()
    _finish(ctx, run, state, "succeeded")
    return Outcome("succeeded")


def _pause(ctx: TenantContext, run: RunItem, state: SyncStateItem, retry_after: float, why: str) -> Outcome:
    resume = clock.iso(clock.now() + timedelta(seconds=retry_after))
    run.data = {**run.data, "status": "paused", "resume_at": resume, "error": None, "paused_because": why}
    _checkpoint(ctx, run, state)
    return Outcome("paused", retry_after)


def run_to_end(ctx: TenantContext, connection_id: str, run_id: str, *,
               sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> Outcome:
    """Keep invoking until the run finishes (the CLI and tests; Lambda re-queues instead)."""
    while True:
        outcome = execute(ctx, connection_id, run_id, **kwargs)
        if outcome.status != "paused":
            return outcome
        sleep(outcome.retry_after)
