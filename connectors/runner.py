"""Drive one sync run: read each stream page by page, write, checkpoint, and stop cleanly.

A run survives anything: after every page the stream's state (``Window``) and the run's
counts are written in one transaction, so a crash (the process killed between pages or
inside one) resumes from the last checkpoint on the next invocation; what the crashed
page had already written is written again as "unchanged" (writes are idempotent), never
twice. A vendor throttle longer than the run may sleep, or an invocation running out of
time, *pauses* the run: it is checkpointed, and the caller re-queues it (with a delay
for a throttle). Requests per page: 1 TransactWriteItems for the checkpoint, plus what
the records cost (connectors/sink.py).

Every run ends. Whatever a run raises ends it ``failed`` with a classified ``error``:
``auth`` (the vendor refused the credentials), ``config`` (bad URL, DNS, TLS, a config
that no longer validates), ``rate_limited`` (throttled past ``RATE_LIMIT_BUDGET``),
``vendor`` (errors after retries), ``internal`` (our bug: ``trace_id`` is in the log
line). A run whose worker dies is found by the schedule (``stalled``, functions/sync.py).
The connection's sync state keeps the last error (``last_error``) until a run succeeds.
A run stopped from outside (cancelled, found stalled, its connection deleted) is flagged
on its item; each checkpoint is conditional on that flag's absence, so the worker stops
at its next page without writing over the ending.

A failed run may be resumed: a redriven message (``rapport dlq redrive sync``) or a
duplicate picks the newest run up again from its checkpoint, with the connection's
current config (after a PATCH that fixed it), provided no other run holds the lock.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from connectors import connections
from connectors.sdk.base import ReadContext
from connectors.sdk.errors import RateLimited, VendorError
from connectors.store import RunItem, SyncStateItem
from crm import clock
from crm.context import TenantContext
from crm.errors import DomainError
from crm.tx import Tx

_log = logging.getLogger("rapport.connectors")  # through Powertools' JSON logger in Lambda
MAX_REJECTED_KEPT = 100
TIME_RESERVE_SECONDS = 20.0  # stop reading when an invocation has less than this left
FINISHED = connections.FINISHED


def rate_limit_budget() -> float:
    """Seconds a run may spend paused for the vendor's throttling before it fails ``rate_limited``."""
    return float(os.environ.get("RAPPORT_SYNC_RATE_LIMIT_BUDGET_SECONDS", str(6 * 3600)))


@dataclass
class Outcome:
    status: str               # succeeded | failed | paused | cancelled
    retry_after: float = 0.0  # paused: seconds until it may continue


class Stopped(Exception):
    """The run was ended from outside (cancelled, stalled, deleted): stop, write nothing."""


Progress = Callable[[str, dict[str, Any]], None]


def _checkpoint(ctx: TenantContext, run: RunItem, state: SyncStateItem, *, release: bool = False,
                due: str | None = None, reopen: dict[str, Any] | None = None) -> None:
    """The run and the stream states in one transaction, conditional on the run not
    having been stopped from outside (then :class:`Stopped`); ``reopen``: a failed run
    taken up again, conditional on it being unchanged since it was read."""
    now = clock.now_iso()
    run.data = {**run.data, "heartbeat_at": now}
    state.updated_at = now
    if release and state.active_run == run.run_id:
        state.active_run = None
    if state.active_run:
        state.gsi2pk, state.gsi2sk = connections.active_keys(ctx, run.connection_id, max(now, due or now))
    else:
        state.gsi2pk = state.gsi2sk = None
    tx = Tx()
    if reopen is not None:
        run.stop_requested = None
        tx.save(run, RunItem.data == reopen, role="run")
    else:
        tx.save(run, RunItem.pk.exists() & RunItem.stop_requested.does_not_exist(), role="run")
    tx.save(state, role="state")
    tx.run({"run": Stopped()})


def _finish(ctx: TenantContext, run: RunItem, state: SyncStateItem, status: str,
            error: str | None = None, detail: str | None = None, trace_id: str | None = None) -> None:
    now = clock.now_iso()
    started = run.data.get("started_at") or run.data["created_at"]
    run.data = {**run.data, "status": status, "finished_at": now, "error": error, "error_detail": detail,
                "trace_id": trace_id, "resume_at": None,
                "duration_ms": int((clock.parse(now) - clock.parse(started)).total_seconds() * 1000)}
    if status == "succeeded":
        state.last_error = None
    elif error is not None:
        state.last_error = connections.error_of(error, detail or "", run.run_id, now, trace_id)
    _checkpoint(ctx, run, state, release=True)


def classify(exc: BaseException, trace_id: str) -> tuple[str, str]:
    """(error code, a message a tenant can act on); never a config value."""
    from pydantic import ValidationError

    if isinstance(exc, VendorError):
        return exc.kind, str(exc)
    if isinstance(exc, connections.ConfigUnusable):
        return "config", f"{exc.detail}, then sync again"
    if isinstance(exc, DomainError):  # e.g. the connector is no longer installed
        return "config", exc.detail
    if isinstance(exc, ValidationError):
        return "config", (f"the connection's config is not usable: {connections.config_problem(exc)}; "
                          "PATCH the connection, then sync again")
    return "internal", (f"an internal error stopped the run ({type(exc).__name__}); it is logged "
                        f"with trace id {trace_id}")


def _reopen(ctx: TenantContext, run: RunItem, state: SyncStateItem) -> bool:
    """A failed run comes back (a redriven message): resumable if it is the connection's
    newest run and nothing holds the lock."""
    return run.data.get("status") == "failed" and state.active_run is None \
        and state.last_run in (None, run.run_id)


def execute(ctx: TenantContext, connection_id: str, run_id: str, *,
            time_left: Callable[[], float] = lambda: float("inf"),
            progress: Progress | None = None, client_options: dict[str, Any] | None = None,
            trace_id: str | None = None) -> Outcome:
    """Run (or resume) ``run_id`` until it finishes, fails, or must pause. Idempotent: a
    finished run is left alone, so a redelivered message does nothing (a failed run that
    may be resumed is resumed). Never raises for what the run met: the run ends failed."""
    trace_id = trace_id or uuid.uuid4().hex
    try:
        item, state = connections.load(ctx, connection_id)
        run = RunItem.get(connections.pk(ctx, connection_id), connections.run_sk(run_id), consistent_read=True)
    except (connections.NotFound, RunItem.DoesNotExist):
        return Outcome("cancelled")  # the connection was deleted meanwhile
    status = run.data.get("status")
    if status in FINISHED and not _reopen(ctx, run, state):
        return Outcome(status)
    if state.active_run not in (None, run_id):
        if status not in FINISHED:
            try:
                _finish(ctx, run, state, "failed", "stalled", f"superseded by run {state.active_run}")
            except Stopped:
                return Outcome("cancelled")
        return Outcome("failed")
    try:
        return _execute(ctx, item, state, run, time_left=time_left, progress=progress,
                        client_options=client_options, trace_id=trace_id)
    except Stopped:
        return Outcome("cancelled" if _status(ctx, connection_id, run_id) == "cancelled" else "failed")


def _status(ctx: TenantContext, connection_id: str, run_id: str) -> str | None:
    try:
        return RunItem.get(connections.pk(ctx, connection_id), connections.run_sk(run_id),
                           consistent_read=True).data.get("status")
    except RunItem.DoesNotExist:
        return "cancelled"


def _execute(ctx: TenantContext, item: Any, state: SyncStateItem, run: RunItem, *, time_left: Callable[[], float],
             progress: Progress | None, client_options: dict[str, Any] | None, trace_id: str) -> Outcome:
    from connectors import sink

    connection_id, run_id = item.connection_id, run.run_id
    reopen = dict(run.data) if run.data.get("status") == "failed" else None
    state.active_run = run_id
    state.last_run = run_id
    now = clock.now_iso()
    run.data = {**run.data, "status": "running", "started_at": run.data.get("started_at") or now,
                "invocations": run.data.get("invocations", 0) + 1, "resume_at": None,
                "error": None, "error_detail": None, "trace_id": None, "finished_at": None,
                "duration_ms": None}
    _checkpoint(ctx, run, state, reopen=reopen)
    client = None
    try:
        cls = connections.connector(item.connector)
        conn = cls()
        config = connections.config_of(ctx, item)
        client = conn.client(config) if cls.kind != "file" else None
        if client is not None:
            client.time_left = time_left
            for key, value in (client_options or {}).items():
                setattr(client, key, value)
        mode = run.data["mode"]
        rc = ReadContext(config=config, client=client, mode=mode, tenant_id=ctx.tenant_id,
                         connection_id=connection_id, run_id=run_id, upload_id=run.data.get("upload_id"))
        source = cls.source(config)
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
            elif counts.get("last_page"):
                # paused right after the stream's last page: it is read, do not start over
                counts["done"] = True
                run.data = {**run.data, "streams": {**run.data["streams"], name: counts}}
                continue
            counts["started"] = True
            pages = iter(stream_cls().read(rc, stream_state))
            page = next(pages, None)
            while page is not None:
                written = sink.write(ctx, source, name, page.records, connection_id=item.connection_id)
                if page.records:  # the plan's connector_records counter: one ADD per page
                    from crm.billing import usage

                    usage.add(ctx, "connector_records", len(page.records))
                for key, value in written.counts.items():
                    counts[key] = counts.get(key, 0) + value
                counts["pages"] = counts.get("pages", 0) + 1
                if page.total is not None:
                    counts["total"] = page.total
                kept = run.data.get("rejected", [])
                room = MAX_REJECTED_KEPT - len(kept)
                state.streams = {**(state.streams or {}), name: page.state}
                # a page that closes the window is the stream's last: a pause right after
                # it must not have the next invocation take the closed window for a new one
                counts["last_page"] = _closes(page.state)
                run.data = {**run.data, "rejected": kept + written.rejected[:max(room, 0)],
                            "rejected_total": run.data.get("rejected_total", 0) + len(written.rejected),
                            "streams": {**run.data["streams"], name: counts}}
                _checkpoint(ctx, run, state)
                if progress is not None:
                    progress(name, counts)
                if time_left() < TIME_RESERVE_SECONDS:
                    return _pause(ctx, run, state, 0.0, "the invocation ran out of time")
                page = next(pages, None)
            counts["done"] = True
            counts.pop("last_page", None)
            run.data = {**run.data, "streams": {**run.data["streams"], name: counts}}
            _checkpoint(ctx, run, state)
    except Stopped:
        raise
    except RateLimited as exc:
        waited = run.data.get("throttled_seconds", 0.0) + exc.retry_after
        if waited > rate_limit_budget():
            _finish(ctx, run, state, "failed", "rate_limited",
                    f"the vendor kept throttling: {waited:.0f} s of pauses, past the budget of "
                    f"{rate_limit_budget():.0f} s; sync again later", trace_id)
            return Outcome("failed")
        run.data = {**run.data, "throttled_seconds": waited}
        return _pause(ctx, run, state, exc.retry_after, str(exc))
    except Exception as exc:  # noqa: BLE001 - every run ends: classified, never left "running"
        code, detail = classify(exc, trace_id)
        log = _log.exception if code == "internal" else _log.warning
        log("sync run failed", extra={"tenant_id": ctx.tenant_id, "connection_id": connection_id,
                                      "run_id": run_id, "error": code, "trace_id": trace_id,
                                      "detail": detail})
        _finish(ctx, run, state, "failed", code, detail, trace_id if code == "internal" else None)
        return Outcome("failed")
    finally:
        if client is not None:
            client.close()
    _finish(ctx, run, state, "succeeded")
    return Outcome("succeeded")


def _closes(state: dict[str, Any]) -> bool:
    """Whether a stream state closes its window (connectors/sdk/window.py: no page left)."""
    return "page" in state and state.get("page") is None and not state.get("open")


def _pause(ctx: TenantContext, run: RunItem, state: SyncStateItem, retry_after: float, why: str) -> Outcome:
    resume = clock.iso(clock.now() + timedelta(seconds=retry_after))
    run.data = {**run.data, "status": "paused", "resume_at": resume, "error": None, "paused_because": why}
    _checkpoint(ctx, run, state, due=resume)
    return Outcome("paused", retry_after)


def run_to_end(ctx: TenantContext, connection_id: str, run_id: str, *,
               sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> Outcome:
    """Keep invoking until the run finishes (the CLI and tests; Lambda re-queues instead)."""
    while True:
        outcome = execute(ctx, connection_id, run_id, **kwargs)
        if outcome.status != "paused":
            return outcome
        sleep(outcome.retry_after)
