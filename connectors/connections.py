"""Connections: a tenant's installed connector, its sealed secrets, sync state and runs.

DynamoDB requests (docs/performance.md):
- create: 1 TransactWriteItems (connection, state, webhook route) + 1 KMS Encrypt
- get / update: 1 GetItem (+1 PutItem conditional on the version, +1 KMS on a secret change)
- list: 1 Query on gsi1 ``P CONNECTIONS`` + 1 BatchGetItem of the page's sync states
  (``active_run``, ``last_error``)
- delete: (cancel the active run: 1 GetItem + 1 TransactWriteItems) + 1 Query of the
  connection's partition + BatchWriteItem per 25 items + 1 DeleteItem (route)
- start a run: 1 TransactWriteItems (run + state lock, conditional on no active run)
- cancel / stop a run: 1 BatchGetItem + 1 GetItem + 1 TransactWriteItems (the run ended,
  flagged ``stop_requested``, and the lock released)
- runs: 1 Query (newest first); a run: 1 GetItem
"""
from __future__ import annotations

import hashlib
import os
import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from connectors import sealing
from connectors.schemas import Connection, ConnectionCreate, ConnectionPatch, ConnectorInfo, Run
from connectors.sdk import registry, secrets
from connectors.store import ACTIVE_INDEX, SCHEDULE_INDEX, ConnectionItem, HookRouteItem, RunItem, SyncStateItem
from crm import clock, retry
from crm.context import TenantContext
from crm.errors import EXPECTED_VERSION, Conflict, Invalid, NotFound, PreconditionFailed, field_errors
from crm.paging import Page, decode_cursor, encode_cursor
from crm.storage import condition_failed
from crm.tx import FAILED, Cancelled, Tx

CONN, STATE, RUN = "CONN", "STATE", "RUN#"
SCHEDULE_SHARD = "0"
FINISHED = ("succeeded", "failed", "cancelled")


def stall_seconds() -> float:
    """A run without a checkpoint for this long has lost its worker (``stalled``)."""
    return float(os.environ.get("RAPPORT_SYNC_STALL_SECONDS", str(15 * 60)))


def active_keys(ctx: TenantContext, connection_id: str, at: str) -> tuple[str, str]:
    """The state's keys on the active-run index: due for the stall check at ``at`` (the
    last checkpoint, or when a paused run resumes)."""
    return f"{ACTIVE_INDEX}#{SCHEDULE_SHARD}", f"{at}#{ctx.tenant_id}#{connection_id}"


def _ulid(prefix: str) -> str:
    from ulid import ULID

    return f"{prefix}_{ULID()}"


def pk(ctx: TenantContext, connection_id: str) -> str:
    return ctx.key("CONN", connection_id)


# --- connectors -------------------------------------------------------------------

def connector(name: str) -> Any:
    cls = registry.get(name)
    if cls is None:
        raise Invalid(f"no connector is named {name!r} (GET /v1/connectors lists them)", field="connector")
    return cls


def describe(cls: Any) -> ConnectorInfo:
    return ConnectorInfo(name=cls.name, title=cls.title or cls.name, kind=cls.kind, version=cls.version,
                         streams=[s.name for s in cls.streams], webhooks=bool(cls.webhooks),
                         config_schema=cls.Config.model_json_schema())


def list_connectors() -> list[ConnectorInfo]:
    return [describe(cls) for cls in registry.available().values()]


# --- config -----------------------------------------------------------------------

def _validate(cls: Any, config: dict[str, Any]) -> BaseModel:
    try:
        return cls.Config.model_validate(config)
    except ValidationError as exc:
        errors = [{**e, "field": f"config.{e['field']}"} for e in field_errors(exc)]
        raise Invalid(f"config is not valid for the {cls.name} connector", field=errors[0]["field"],
                      errors=errors) from None


class ConfigUnusable(Invalid):
    """A stored config that no longer validates (saved before a rule existed)."""


def config_problem(exc: ValidationError) -> str:
    """A stored config that no longer validates, said without any of its values (secrets)."""
    return "; ".join(f"config.{e['field']}: {e['message'].removeprefix('Value error, ')}"
                     for e in field_errors(exc))


def _split(cls: Any, config: BaseModel) -> tuple[dict[str, Any], dict[str, str]]:
    names = secrets.secret_fields(cls.Config)
    data = config.model_dump(mode="json")
    plain = {k: v for k, v in data.items() if k not in names}
    hidden = {k: v for k, v in data.items() if k in names and v is not None}
    return plain, hidden


_CONFIG_CACHE: dict[tuple[str, str, int], tuple[float, Any]] = {}
CONFIG_CACHE_SECONDS = 300
CONFIG_CACHE_MAX = 256


def config_of(ctx: TenantContext, item: ConnectionItem) -> BaseModel:
    """The validated config with its secrets decrypted (1 KMS Decrypt, cached per version
    for a few minutes so a burst of webhooks does not call KMS per delivery)."""
    key = (ctx.tenant_id, item.connection_id, int(item.version or 0))
    hit = _CONFIG_CACHE.get(key)
    if hit and time.monotonic() - hit[0] < CONFIG_CACHE_SECONDS:
        return hit[1]
    cls = connector(item.connector)
    hidden = sealing.unseal(ctx.tenant_id, item.connection_id, item.sealed or {})
    try:
        config = cls.Config.model_validate({**(item.config or {}), **hidden})
    except ValidationError as exc:
        # pydantic's message repeats the input: a secret must not reach an error or a log
        raise ConfigUnusable(f"the connection's saved config is not valid: {config_problem(exc)}; "
                             "PATCH the connection", field="config", code="config_invalid") from None
    if len(_CONFIG_CACHE) >= CONFIG_CACHE_MAX:  # a warm Lambda serving many connections
        _CONFIG_CACHE.clear()
    _CONFIG_CACHE[key] = (time.monotonic(), config)
    return config


# --- CRUD -------------------------------------------------------------------------

def to_connection(item: ConnectionItem, state: SyncStateItem | None = None) -> Connection:
    """``webhook_url`` is the path here; the API makes it absolute (api/routes/connections.py)."""
    cls = registry.get(item.connector)
    return Connection(id=item.connection_id, connector=item.connector, name=item.name,
                      config=item.config or {}, secrets_set=sorted(item.secret_names or []),
                      schedule_minutes=int(item.schedule_minutes) if item.schedule_minutes else None,
                      status=item.status,
                      webhook_url=f"/v1/hooks/{item.connection_id}" if cls is not None and cls.webhooks else None,
                      active_run=state.active_run if state is not None else None,
                      last_error=state.last_error if state is not None else None,
                      created_at=item.created_at, updated_at=item.updated_at, version=item.version)


def _schedule(ctx: TenantContext, item: ConnectionItem, now: str) -> None:
    """List an active, scheduled connection on the cross-tenant schedule index, keyed by
    when its next incremental sync is due."""
    if item.schedule_minutes and item.status == "active":
        due = clock.iso(clock.parse(now) + timedelta(minutes=int(item.schedule_minutes)))
        item.gsi2pk = f"{SCHEDULE_INDEX}#{SCHEDULE_SHARD}"
        item.gsi2sk = f"{due}#{ctx.tenant_id}#{item.connection_id}"
    else:
        item.gsi2pk = item.gsi2sk = None


def create(ctx: TenantContext, body: ConnectionCreate) -> Connection:
    """402 plan_limit past the plan's connections (1 COUNT Query of the tenant's few)."""
    from crm.billing import limits, usage

    cls = connector(body.connector)
    config = _validate(cls, body.config)
    limits.check_connections(ctx, usage.connections(ctx))
    plain, hidden = _split(cls, config)
    cid, now = _ulid("con"), clock.now_iso()
    item = ConnectionItem(pk(ctx, cid), CONN, connection_id=cid, connector=cls.name, name=body.name,
                          config=plain, sealed=sealing.seal(ctx.tenant_id, cid, hidden) if hidden else {},
                          secret_names=sorted(hidden), schedule_minutes=body.schedule_minutes,
                          status="active", created_at=now, updated_at=now,
                          gsi1pk=ctx.key("CONNECTIONS"), gsi1sk=cid)
    _schedule(ctx, item, now)
    state = SyncStateItem(pk(ctx, cid), STATE, connection_id=cid, streams={}, updated_at=now)
    tx = Tx()
    tx.save(item, ConnectionItem.pk.does_not_exist(), role="connection")
    tx.save(state, SyncStateItem.pk.does_not_exist(), role="state")
    tx.save(HookRouteItem(f"HOOK#{cid}", "HOOK", tenant_id=ctx.tenant_id), role="hook_route")
    tx.run()  # new ids: a cancellation is not expected and is an error
    item.version = 1
    return to_connection(item, state)


def load(ctx: TenantContext, connection_id: str) -> tuple[ConnectionItem, SyncStateItem]:
    """1 BatchGetItem (consistent) of the connection and its sync state."""
    if not connection_id.startswith("con_") or len(connection_id) != 30:
        raise NotFound(f"connection {connection_id} not found")
    from crm.storage import Item

    # both items by key, through the base model: a query on ConnectionItem filters on its
    # discriminator and never returned the STATE item (the runner lost its checkpoints),
    # and CONN..STATE spans every run too
    key = pk(ctx, connection_id)
    found = {i.sk: i for i in Item.batch_get([(key, CONN), (key, STATE)], consistent_read=True)}
    item, state = found.get(CONN), found.get(STATE)
    if not isinstance(item, ConnectionItem):
        raise NotFound(f"connection {connection_id} not found")
    if not isinstance(state, SyncStateItem):
        state = SyncStateItem(pk(ctx, connection_id), STATE, connection_id=connection_id, streams={},
                              updated_at=item.updated_at)
    return item, state


def get(ctx: TenantContext, connection_id: str) -> Connection:
    return to_connection(*load(ctx, connection_id))


def list_connections(ctx: TenantContext, *, limit: int, cursor: str | None) -> Page:
    after = decode_cursor(cursor, "connections")
    kwargs: dict[str, Any] = {"limit": limit}
    if after:
        kwargs["last_evaluated_key"] = {"pk": {"S": pk(ctx, after)}, "sk": {"S": CONN},
                                        "gsi1pk": {"S": ctx.key("CONNECTIONS")}, "gsi1sk": {"S": after}}
    result = ConnectionItem.gsi1.query(ctx.key("CONNECTIONS"), **kwargs)
    conns = [i for i in result if isinstance(i, ConnectionItem)]
    states: dict[str, SyncStateItem] = {}
    if conns:
        from crm.storage import Item

        # each connection's sync state (its active run, its last error): one BatchGetItem
        for s in Item.batch_get([(i.pk, STATE) for i in conns], consistent_read=True):
            if isinstance(s, SyncStateItem):
                states[s.pk] = s
    items = [to_connection(i, states.get(i.pk)) for i in conns]
    last = result.last_evaluated_key
    return Page(items, encode_cursor("connections", last["gsi1sk"]["S"]) if last else None)


def update(ctx: TenantContext, connection_id: str, patch: ConnectionPatch, if_match: int | None) -> Connection:
    item, state = load(ctx, connection_id)
    if if_match is not None and if_match != item.version:
        raise PreconditionFailed(f"the connection is at version {item.version}, not {if_match}",
                                 field=EXPECTED_VERSION, current_version=item.version)
    cls = connector(item.connector)
    given = patch.model_dump(exclude_unset=True)
    if "config" in given and given["config"] is not None:
        # the stored values as they are (they may not validate any more: the PATCH fixes them)
        current = {**(item.config or {}), **sealing.unseal(ctx.tenant_id, connection_id, item.sealed or {})}
        config = _validate(cls, {**current, **given["config"]})
        plain, hidden = _split(cls, config)
        item.config = plain
        if set(given["config"]) & secrets.secret_fields(cls.Config) or sorted(hidden) != sorted(item.secret_names or []):
            item.sealed = sealing.seal(ctx.tenant_id, connection_id, hidden) if hidden else {}
            item.secret_names = sorted(hidden)
    if given.get("name") is not None:
        item.name = given["name"]
    if "schedule_minutes" in given:
        item.schedule_minutes = given["schedule_minutes"]
    if given.get("status") is not None:
        item.status = given["status"]
    now = clock.now_iso()
    item.updated_at = now
    _schedule(ctx, item, now)
    from pynamodb.exceptions import PutError

    try:
        item.save()
    except PutError as exc:
        if condition_failed(exc):
            raise PreconditionFailed("the connection changed concurrently; read it again",
                                     field=EXPECTED_VERSION) from None
        raise
    return to_connection(item, state)


def delete(ctx: TenantContext, connection_id: str) -> None:
    """Removes the connection, its state, runs and delivery guards. Records already synced stay."""
    _item, state = load(ctx, connection_id)
    if state.active_run:
        # its worker stops at its next page: the checkpoint finds the run gone
        stop_run(ctx, connection_id, state.active_run, "cancelled")
    from crm.storage import Item

    with Item.batch_write() as batch:
        for child in Item.query(pk(ctx, connection_id), consistent_read=True):
            batch.delete(child)
    HookRouteItem(f"HOOK#{connection_id}", "HOOK").delete()


def tenant_active(ctx: Any, cache: dict[str, bool] | None = None) -> bool:
    """Whether the tenant is active (1 GetItem; cached per schedule run when given a cache)."""
    from crm import tenants
    from crm.errors import NotFound

    if cache is not None and ctx.tenant_id in cache:
        return cache[ctx.tenant_id]
    try:
        active = tenants.get(ctx).status == "active"
    except NotFound:
        active = False
    if cache is not None:
        cache[ctx.tenant_id] = active
    return active


# --- runs ---------------------------------------------------------------------------

def run_sk(run_id: str) -> str:
    return RUN + run_id


ERROR_CODES = ("auth", "config", "rate_limited", "vendor", "stalled", "internal")


def to_run(item: RunItem) -> Run:
    data = dict(item.data)
    if data.get("error") is not None and data["error"] not in ERROR_CODES:
        # a run that failed before errors were classified kept its message in ``error``
        data["error_detail"], data["error"] = data.get("error_detail") or data["error"], "vendor"
    return Run(id=item.run_id, connection_id=item.connection_id, **data)


def _stale(ctx: TenantContext, connection_id: str, run_id: str) -> bool:
    try:
        run = RunItem.get(pk(ctx, connection_id), run_sk(run_id), consistent_read=True)
    except RunItem.DoesNotExist:
        return True
    data = run.data
    if data.get("status") in FINISHED:
        return True
    beat = data.get("heartbeat_at") or data.get("created_at")
    return (clock.now() - clock.parse(beat)).total_seconds() > stall_seconds() and data.get("status") != "paused"


def start_run(ctx: TenantContext, connection_id: str, mode: str, trigger: str,
              upload_id: str | None = None) -> Run:
    """Queue a run, unless one is active (409 naming it). The state item holds the lock,
    taken in the same transaction that writes the run."""
    item, state = load(ctx, connection_id)
    if item.status != "active" and trigger == "schedule":
        raise Conflict("the connection is paused", code="connection_paused")
    cls = connector(item.connector)
    if cls.kind == "file" and upload_id is None:
        raise Invalid("a file connector imports an upload: give upload_id (POST …/uploads)", field="upload_id")
    if cls.kind != "file" and upload_id is not None:
        raise Invalid("only file connectors take an upload_id", field="upload_id")
    if cls.kind == "file":
        from connectors import uploads

        uploads.require(ctx, connection_id, upload_id)  # 422 upload_missing / upload_too_large
    previous = state.active_run
    if previous and not _stale(ctx, connection_id, previous):
        raise Conflict(f"run {previous} is in progress", code="sync_in_progress", run_id=previous)
    if previous:  # its worker died: the run ends, classified, before another takes the lock
        try:
            stop_run(ctx, connection_id, previous, "failed", error="stalled",
                     detail=f"the run wrote no checkpoint for {int(stall_seconds() // 60)} minutes; "
                            "a new run took over")
        except NotFound:
            pass
    run_id, now = _ulid("run"), clock.now_iso()
    data = {"mode": mode, "trigger": trigger, "status": "queued", "created_at": now, "streams": {},
            "rejected": [], "rejected_total": 0, "invocations": 0, "heartbeat_at": now,
            "upload_id": upload_id}
    run = RunItem(pk(ctx, connection_id), run_sk(run_id), connection_id=connection_id, run_id=run_id,
                  data=data)
    tx = Tx()
    tx.save(run, RunItem.pk.does_not_exist(), role="run")
    cond = SyncStateItem.active_run.does_not_exist() if previous is None \
        else SyncStateItem.active_run == previous
    ipk, isk = active_keys(ctx, connection_id, now)
    tx.update(SyncStateItem(pk(ctx, connection_id), STATE),
              [SyncStateItem.active_run.set(run_id), SyncStateItem.connection_id.set(connection_id),
               SyncStateItem.last_run.set(run_id), SyncStateItem.gsi2pk.set(ipk),
               SyncStateItem.gsi2sk.set(isk), SyncStateItem.updated_at.set(now)],
              cond | SyncStateItem.active_run.does_not_exist(), role="lock")
    try:
        tx.run()
    except Cancelled:  # whichever part: another run got in first
        raise Conflict("another run started at the same time", code="sync_in_progress") from None
    return to_run(run)


def error_of(code: str, detail: str, run_id: str, at: str, trace_id: str | None = None) -> dict[str, Any]:
    return {"code": code, "detail": detail, "run_id": run_id, "at": at, "trace_id": trace_id}


def stop_run(ctx: TenantContext, connection_id: str, run_id: str, status: str, *,
             error: str | None = None, detail: str | None = None, trace_id: str | None = None,
             only_if_beat_before: str | None = None) -> Run | None:
    """End a run from outside its worker (cancel, delete, a stall, a dead-lettered
    message): the run is written ended and flagged ``stop_requested``, and the lock
    released, in one transaction; a worker still going finds the flag at its next
    checkpoint and stops without writing. None if the run had already ended (or, with
    ``only_if_beat_before``, has checkpointed since)."""
    for _ in retry.backoff(5):  # a worker's checkpoint in between: read the run again
        try:
            run = RunItem.get(pk(ctx, connection_id), run_sk(run_id), consistent_read=True)
        except RunItem.DoesNotExist:
            raise NotFound(f"run {run_id} not found") from None
        data = run.data
        if data.get("status") in FINISHED:
            return None
        beat = data.get("heartbeat_at") or data.get("created_at")
        if only_if_beat_before is not None and (beat > only_if_beat_before or data.get("status") == "paused"
                                                and (data.get("resume_at") or "") > only_if_beat_before):
            return None
        now = clock.now_iso()
        started = data.get("started_at") or data["created_at"]
        run.data = {**data, "status": status, "finished_at": now, "resume_at": None, "error": error,
                    "error_detail": detail, "trace_id": trace_id,
                    "duration_ms": int((clock.parse(now) - clock.parse(started)).total_seconds() * 1000)}
        run.stop_requested = now
        actions = [SyncStateItem.active_run.remove(), SyncStateItem.gsi2pk.remove(), SyncStateItem.gsi2sk.remove(),
                   SyncStateItem.updated_at.set(now)]
        if error is not None:
            actions.append(SyncStateItem.last_error.set(error_of(error, detail or "", run_id, now, trace_id)))
        tx = Tx()
        tx.save(run, RunItem.data == data, role="run")  # still as read
        tx.update(SyncStateItem(pk(ctx, connection_id), STATE), actions,
                  SyncStateItem.active_run == run_id, role="lock")
        try:
            tx.run()
            return to_run(run)
        except Cancelled as exc:
            if exc.codes == [None, FAILED]:
                # the lock is not this run's (never taken, or taken over): end the run alone
                from pynamodb.exceptions import PutError

                try:
                    run.save(condition=RunItem.data == data)
                    return to_run(run)
                except PutError:
                    continue
    raise Conflict(f"run {run_id} kept changing; try again", code="transaction_conflict")


def cancel_run(ctx: TenantContext, connection_id: str, run_id: str) -> Run:
    """Cancel a queued, running or paused run: it ends ``cancelled`` at once and its worker
    stops at its next page. 409 if it had already ended."""
    load(ctx, connection_id)
    run = stop_run(ctx, connection_id, run_id, "cancelled")
    if run is None:
        current = get_run(ctx, connection_id, run_id)
        raise Conflict(f"run {run_id} has already ended ({current.status})", code="run_finished",
                       run_id=run_id, run_status=current.status)
    return run


def get_run(ctx: TenantContext, connection_id: str, run_id: str) -> Run:
    try:
        return to_run(RunItem.get(pk(ctx, connection_id), run_sk(run_id), consistent_read=True))
    except RunItem.DoesNotExist:
        raise NotFound(f"run {run_id} not found") from None


def list_runs(ctx: TenantContext, connection_id: str, *, limit: int, cursor: str | None) -> Page:
    load(ctx, connection_id)
    after = decode_cursor(cursor, "runs")
    kwargs: dict[str, Any] = {"limit": limit, "scan_index_forward": False, "consistent_read": True}
    if after:
        kwargs["last_evaluated_key"] = {"pk": {"S": pk(ctx, connection_id)}, "sk": {"S": run_sk(after)}}
    result = RunItem.query(pk(ctx, connection_id), RunItem.sk.startswith(RUN), **kwargs)
    items = [to_run(i) for i in result]
    last = result.last_evaluated_key
    return Page(items, encode_cursor("runs", last["sk"]["S"][len(RUN):]) if last else None)


def delivery_digest(delivery_id: str) -> str:
    return hashlib.sha256(delivery_id.encode()).hexdigest()[:32]


def reschedule(ctx: TenantContext, connection_id: str, now: str) -> None:
    """Move a scheduled connection's next due time on (1 UpdateItem, skipped if gone)."""
    from pynamodb.exceptions import UpdateError

    try:
        item, _ = load(ctx, connection_id)
    except NotFound:
        return
    _schedule(ctx, item, now)
    try:
        if item.gsi2pk:
            item.update(actions=[ConnectionItem.gsi2sk.set(item.gsi2sk)], condition=ConnectionItem.pk.exists())
        else:
            item.update(actions=[ConnectionItem.gsi2pk.remove(), ConnectionItem.gsi2sk.remove()],
                        condition=ConnectionItem.pk.exists())
    except UpdateError:
        pass  # deleted meanwhile


def check(ctx: TenantContext, connection_id: str):
    """Try the credentials: the connector's own check against the vendor. 200 when it
    works; 422 ``check_failed`` with the vendor's reason (its status, never its body)
    otherwise. Never a 5xx: whatever goes wrong is the config's or the vendor's answer."""
    from connectors.schemas import CheckResult
    from connectors.sdk.errors import RateLimited, VendorError, check_error

    item, _ = load(ctx, connection_id)
    cls = connector(item.connector)

    def failed(detail: str, kind: str, status: int | None = None) -> Invalid:
        return Invalid(detail, field="config", code="check_failed", ok=False, error=kind, vendor_status=status)

    try:
        config = config_of(ctx, item)
    except ConfigUnusable as exc:
        raise failed(exc.detail, "config") from None
    conn = cls()
    client = None
    try:
        client = conn.client(config)
        conn.check(config, client)
    except VendorError as exc:
        cause = check_error(exc)  # a connector may wrap the client's error without its status
        raise failed(str(exc), cause.kind, cause.status) from None
    except RateLimited as exc:
        raise failed(f"{cls.title or cls.name} is rate limiting: {exc}", "rate_limited") from None
    except Exception as exc:
        import logging

        logging.getLogger(__name__).warning("connection check failed", exc_info=True)
        raise failed(f"the check could not complete ({type(exc).__name__}): check the config", "config") from None
    finally:
        if client is not None:
            client.close()
    return CheckResult(ok=True, detail=f"{cls.title or cls.name} answered; the credentials work")
