"""Deliveries: every change an endpoint asked for, sent signed, retried for a day and a
half, logged for 30 days, replayable.

How a change reaches an endpoint:

- The stream dispatcher appends a batch's events to the change feed (crm/changes.py)
  and then sends the tenant a ``{"type": "changes"}`` message on the webhooks queue.
- The worker (functions/webhooks.py) runs :func:`fan_out` for each enabled endpoint of
  the tenant: it takes the endpoint's lease (``WebhookCursorItem``), reads the feed from
  the endpoint's cursor, and writes one ``WebhookDeliveryItem`` per matching change in
  the same transaction that moves the cursor (so a crash repeats nothing and loses
  nothing), then makes the first attempts.
- An attempt that fails is due again on the Standard Webhooks schedule (:data:`SCHEDULE`,
  with jitter, never sooner than the endpoint's ``Retry-After``) and listed on gsi2
  ``WEBHOOK_DUE#0``; the retry schedule (:func:`due`) hands due deliveries back to the
  worker. After the last attempt a delivery is ``failed`` (it can be replayed).
- A 410 disables the endpoint at once; an endpoint whose failures go on for 5 days is
  disabled (``failing_5_days``); either way its status says so and a
  ``webhook.endpoint_disabled`` change enters the feed.
- An ``ordered`` endpoint gets its changes strictly in feed order: a delivery waits
  until the one before it was delivered (or given up on). Other endpoints get each
  change as soon as it can be sent, and a failing one never holds up the rest.

One endpoint's work never waits for another's: each has its own lease and cursor, and
a slow endpoint only costs its own worker time (15 s timeout per attempt).

A delivery's ``webhook-id`` is the change's id, on every attempt and every replay, so a
receiver de-duplicates on it. Costs per change and endpoint are in docs/performance.md.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from crm import clock
from crm.context import TenantContext
from crm.errors import Invalid

# seconds after each failed attempt (the Standard Webhooks schedule): the first attempt is
# immediate, the 10th and last comes about 3 days after the change
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
ATTEMPTS = len(SCHEDULE) + 1
DISABLE_AFTER = timedelta(days=5)
LOG_DAYS = 30
LEASE_SECONDS = 100  # the worker's timeout is 120 s
PAGE = 99  # feed entries per fan-out page: with the cursor, one TransactWriteItems (100 items)
PER_TX = 99  # deliveries + the cursor: TransactWriteItems' limit is 100
PARALLEL = 8  # attempts in flight per endpoint (not ordered)
ORDERED_PAGE = 20  # an ordered drain often stops after a few: read its queue in small pages
DUE_PK = "WEBHOOK_DUE#0"
STATUSES = ("pending", "delivered", "failed")


class Attempt(Protocol):
    """What a send answers (connectors/outbound.py ``Attempt``)."""

    @property
    def status(self) -> int | None: ...
    @property
    def latency_ms(self) -> int: ...
    @property
    def excerpt(self) -> str: ...
    @property
    def retry_after(self) -> float | None: ...
    @property
    def error(self) -> str | None: ...


Send = Callable[[str, dict[str, str], str], Attempt]


# --- pure: what an attempt's outcome means --------------------------------------------------


def retry_scale() -> float:
    """A factor on the schedule (tests and local development shorten it; 1 in AWS)."""
    return float(os.environ.get("RAPPORT_WEBHOOK_RETRY_SCALE", "1"))


def delivered(attempt: Attempt) -> bool:
    return attempt.error is None and attempt.status is not None and 200 <= attempt.status < 300


def next_delay(tries: int, retry_after: float | None, rng: random.Random | None = None) -> float | None:
    """Seconds until the next attempt after ``tries`` failed ones (None: give up). Full
    schedule entry with ±20 % jitter, never less than ``Retry-After``."""
    if tries >= ATTEMPTS:
        return None
    base = SCHEDULE[tries - 1] * retry_scale()
    delay = base * (rng or random).uniform(0.8, 1.2)
    return max(delay, retry_after or 0.0)


@dataclass(frozen=True)
class Outcome:
    status: str  # pending | delivered | failed
    due_at: str | None
    disable: str | None  # a reason to disable the endpoint (gone_410), else None


def outcome(attempt: Attempt, tries: int, now: datetime, rng: random.Random | None = None) -> Outcome:
    """What the ``tries``-th attempt's answer means for the delivery."""
    if delivered(attempt):
        return Outcome("delivered", None, None)
    if attempt.status == 410:
        return Outcome("failed", None, "gone_410")
    delay = next_delay(tries, attempt.retry_after, rng)
    if delay is None:
        return Outcome("failed", None, None)
    return Outcome("pending", clock.iso(now + timedelta(seconds=delay)), None)


# --- storage ----------------------------------------------------------------------------------


def _pk(ctx: TenantContext, endpoint_id: str) -> str:
    return ctx.key("WHE", endpoint_id)


def _sk(seq: str) -> str:
    return f"D#{seq}"


def _due_sk(ctx: TenantContext, endpoint_id: str, due_at: str, seq: str) -> str:
    return f"{due_at}#{ctx.tenant_id}#{endpoint_id}#{seq}"


def _ttl() -> datetime:
    return clock.now() + timedelta(days=LOG_DAYS)


def _lease(ctx: TenantContext, endpoint_id: str) -> Any:
    """Take the endpoint's lease (1 UpdateItem); the cursor item as it now is, or None
    when another worker holds it."""
    from crm.storage import WebhookCursorItem, condition_failed

    now = clock.now()
    item = WebhookCursorItem(_pk(ctx, endpoint_id), "CURSOR")
    try:
        item.update(
            actions=[
                WebhookCursorItem.lease_until.set(clock.iso(now + timedelta(seconds=LEASE_SECONDS))),
                WebhookCursorItem.kind.set(WebhookCursorItem),
            ],
            condition=WebhookCursorItem.lease_until.does_not_exist() | (WebhookCursorItem.lease_until < clock.iso(now)),
        )
    except Exception as exc:
        if condition_failed(exc):
            return None
        raise
    return item


def _release(ctx: TenantContext, endpoint_id: str) -> None:
    from crm.storage import WebhookCursorItem

    WebhookCursorItem(_pk(ctx, endpoint_id), "CURSOR").update(actions=[WebhookCursorItem.lease_until.remove()])


# --- fan-out and attempts ---------------------------------------------------------------------


def fan_out(ctx: TenantContext, endpoint: Any, send: Send) -> int | None:
    """Deliveries for the changes after the endpoint's cursor, then their first attempts
    (an ordered endpoint: in order, up to the first failure). Returns how many changes
    were fanned out, or None when another worker holds the endpoint's lease."""
    from crm import changes

    leased = _lease(ctx, endpoint.id)
    if leased is None:
        return None
    cursor = getattr(leased, "seq", None)
    made = 0
    try:
        if cursor:
            after = int(cursor)
        else:  # its first fan-out: the changes committed since it was made (seq ~ commit time)
            after = int(clock.parse(endpoint.created_at).timestamp() * 1_000_000)
            _start_at(ctx, endpoint.id, after)
        while True:
            entries, last = changes.entries_after(ctx, after, PAGE)
            if last is None:
                break
            wanted = [e for e in entries if _wants(endpoint, e.type)]
            created = _create(ctx, endpoint.id, wanted, after, last)
            made += len(wanted)
            after = last
            if not endpoint.ordered:
                _attempt_all(ctx, endpoint, created, send)
        if endpoint.ordered:
            drain_ordered(ctx, endpoint, send, getattr(leased, "ordered_from", None))
    finally:
        _release(ctx, endpoint.id)
    return made


def _start_at(ctx: TenantContext, endpoint_id: str, seq: int) -> None:
    """The cursor's first value (1 UpdateItem, only if it has none)."""
    from crm import changes
    from crm.storage import WebhookCursorItem

    WebhookCursorItem(_pk(ctx, endpoint_id), "CURSOR").update(
        actions=[WebhookCursorItem.seq.set(changes.seq_str(seq))], condition=WebhookCursorItem.seq.does_not_exist()
    )


def _wants(endpoint: Any, event_type: str) -> bool:
    from crm.webhooks import endpoints

    return endpoints.matches(endpoint, event_type)


def _create(ctx: TenantContext, endpoint_id: str, entries: list[Any], after: int, last: int) -> list[Any]:
    """The deliveries of ``entries`` and the cursor moved from ``after`` to ``last``: one
    TransactWriteItems per 99 (the cursor's condition makes a second worker's copy fail)."""
    from crm import changes
    from crm.storage import WebhookCursorItem, WebhookDeliveryItem
    from crm.tx import Tx

    now = clock.now_iso()
    items = [
        WebhookDeliveryItem(
            _pk(ctx, endpoint_id),
            _sk(e.sk),
            endpoint_id=endpoint_id,
            change_id=e.change_id,
            type=e.type,
            seq=e.sk,
            status="pending",
            attempts=[],
            created_at=now,
            updated_at=now,
            ttl=_ttl(),
        )
        for e in entries
    ]
    chunks = [items[i : i + PER_TX] for i in range(0, len(items), PER_TX)] or [[]]
    for n, chunk in enumerate(chunks):
        tx = Tx()
        upto = chunk[-1].seq if n < len(chunks) - 1 and chunk else changes.seq_str(last)
        tx.update_key(
            WebhookCursorItem,
            _pk(ctx, endpoint_id),
            "CURSOR",
            [WebhookCursorItem.seq.set(upto)],
            WebhookCursorItem.seq == changes.seq_str(after),
            role="cursor",
        )
        for item in chunk:
            tx.save(item, WebhookDeliveryItem.pk.does_not_exist(), role="delivery")
        tx.run()
        after = int(upto)
    return items


def _attempt_all(ctx: TenantContext, endpoint: Any, items: list[Any], send: Send) -> None:
    if not items:
        return
    secrets = _secrets(ctx, endpoint)
    bodies = _bodies(ctx, [i.seq for i in items])
    try:
        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(items))) as pool:
            list(pool.map(lambda i: attempt(ctx, endpoint, i, bodies.get(i.seq), secrets, send), items))
    finally:
        _record(items)


def _record(items: list[Any]) -> None:
    """The attempts' outcomes, written whole: 1 BatchWriteItem per 25 deliveries (the
    caller holds the endpoint's lease, or claimed each delivery). A crash before this
    write repeats the attempts later (receivers de-duplicate on ``webhook-id``)."""
    from crm.storage import WebhookDeliveryItem

    with WebhookDeliveryItem.batch_write() as batch:
        for item in items:
            batch.save(item)


def _secrets(ctx: TenantContext, endpoint: Any) -> list[str]:
    from crm.webhooks import endpoints

    return endpoints.signing_secrets(ctx, endpoint)


def _bodies(ctx: TenantContext, seqs: Iterable[str]) -> dict[str, str]:
    """The feed entries' JSON (the payload), by seq: 1 BatchGetItem per 100."""
    from crm import changes

    return {
        seq: json.dumps(change, separators=(",", ":"), sort_keys=True)
        for seq, change in changes.entries(ctx, list(seqs)).items()
    }


def attempt(ctx: TenantContext, endpoint: Any, item: Any, body: str | None, secrets: list[str], send: Send) -> str:
    """One attempt of one delivery (signed now), recorded on ``item`` in memory (the
    caller writes it with :func:`_record`); the endpoint's health follows. Returns the
    delivery's status."""
    from crm.webhooks import endpoints, signing

    now = clock.now()
    if body is None:  # the change expired from the feed before it could be sent
        result: Attempt = _Missing()
    else:
        headers = signing.headers(secrets, item.change_id, now, body)
        result = send(endpoint.url, headers, body)
    tries = len(item.attempts or []) + 1
    out = outcome(result, tries, now)
    log = {
        "at": clock.iso(now),
        "status": result.status,
        "latency_ms": result.latency_ms,
        "excerpt": result.excerpt,
        "error": result.error,
    }
    # recorded in memory; the caller writes a page of them at once (``_record``)
    item.attempts = [*(item.attempts or []), log]
    item.status = out.status
    item.updated_at = clock.iso(now)
    item.due_at = out.due_at
    item.gsi2pk = DUE_PK if out.due_at else None
    item.gsi2sk = _due_sk(ctx, endpoint.id, out.due_at, item.seq) if out.due_at else None
    # the endpoint's health: written when it changes (the copy in hand follows, so a
    # drain or a page of attempts writes it once, not per delivery)
    if out.status == "delivered":
        if endpoint.failing_since:
            endpoints.mark_healthy(ctx, endpoint.id)
            endpoint.failing_since = None
    elif out.disable:
        endpoints.disable(ctx, endpoint.id, out.disable)
    else:
        since = endpoint.failing_since
        if not since:
            since = endpoint.failing_since = clock.iso(now)
            endpoints.mark_failing(ctx, endpoint.id, since)
        if now - clock.parse(since) >= DISABLE_AFTER:
            endpoints.disable(ctx, endpoint.id, "failing_5_days")
    return out.status


@dataclass(frozen=True)
class _Missing:
    status: int | None = None
    latency_ms: int = 0
    excerpt: str = ""
    retry_after: float | None = None
    error: str | None = "the change is no longer in the feed (past its retention)"


def drain_ordered(ctx: TenantContext, endpoint: Any, send: Send, ordered_from: str | None) -> int:
    """An ordered endpoint's deliveries from ``ordered_from`` (the first one not yet done:
    the cursor's mark), oldest first, until one fails or is not due yet; then the mark
    moves to where it stopped (1 UpdateItem, after the outcomes are written). 1 Query +
    1 BatchGetItem (payloads) per 20 deliveries read, 1 BatchWriteItem per 25 attempted.
    Returns how many were delivered. Called under the endpoint's lease."""
    from crm.storage import WebhookCursorItem

    pk = _pk(ctx, endpoint.id)
    tried: list[Any] = []
    try:
        sent, mark = _drain(ctx, endpoint, send, ordered_from, pk, tried)
    finally:
        _record(tried)  # before the mark moves past them
    if mark != ordered_from and mark is not None:
        WebhookCursorItem(pk, "CURSOR").update(actions=[WebhookCursorItem.ordered_from.set(mark)])
    return sent


def _drain(
    ctx: TenantContext, endpoint: Any, send: Send, ordered_from: str | None, pk: str, tried: list[Any]
) -> tuple[int, str | None]:
    """The attempts of :func:`drain_ordered`: (delivered, the new mark)."""
    from crm.storage import WebhookDeliveryItem

    sent = 0
    secrets: list[str] | None = None
    now = clock.now_iso()
    low = _sk(ordered_from or "")
    mark = ordered_from
    start = None
    stopped = False
    while not stopped:
        rows = WebhookDeliveryItem.query(
            pk,
            WebhookDeliveryItem.sk.between(low, "D#~"),
            limit=ORDERED_PAGE,
            page_size=ORDERED_PAGE,
            last_evaluated_key=start,
        )
        page = list(rows)
        bodies = _bodies(ctx, [i.seq for i in page if i.status == "pending"])
        for item in page:
            if item.status == "pending":
                if item.due_at and item.due_at > now:
                    stopped = True  # the oldest pending one waits for its time: so do the rest
                    break
                secrets = secrets if secrets is not None else _secrets(ctx, endpoint)
                tried.append(item)
                if attempt(ctx, endpoint, item, bodies.get(item.seq), secrets, send) != "delivered":
                    stopped = True
                    break
                sent += 1
            mark = changes_next(item.seq)
        start = rows.last_evaluated_key
        if start is None:
            break
    return sent, mark


def changes_next(seq: str) -> str:
    """The seq right after ``seq`` (the mark past a delivery that is done)."""
    from crm import changes

    return changes.seq_str(int(seq) + 1)


# --- the retry schedule ------------------------------------------------------------------------


def due(limit: int = 100) -> list[dict[str, Any]]:
    """Deliveries whose next attempt is due, across tenants, oldest due first: 1 Query of
    gsi2 ``WEBHOOK_DUE#0``. One ``{"type": "due", tenant_id, endpoint_id, seqs}`` message
    per endpoint."""
    from crm.storage import WebhookDeliveryItem

    now = clock.now_iso()
    rows = WebhookDeliveryItem.gsi2.query(
        DUE_PK, WebhookDeliveryItem.gsi2sk <= f"{now}#~", limit=limit, page_size=limit
    )
    per: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        _, tenant, endpoint_id, seq = row.gsi2sk.rsplit("#", 3)
        per.setdefault((tenant, endpoint_id), []).append(seq)
    return [{"type": "due", "tenant_id": t, "endpoint_id": e, "seqs": s} for (t, e), s in per.items()]


def retry(ctx: TenantContext, endpoint_id: str, seqs: list[str], send: Send) -> int:
    """Attempt the named deliveries that are still pending and due (an ordered
    endpoint: its queue from the oldest). Returns how many attempts were made."""
    from crm.errors import NotFound
    from crm.storage import WebhookDeliveryItem
    from crm.webhooks import endpoints

    try:
        endpoint = endpoints.get(ctx, endpoint_id)
    except NotFound:
        return 0
    if not endpoint.enabled:
        return 0  # kept pending: re-enabling (or a replay) sends them
    if endpoint.ordered:  # under the lease: one drain at a time keeps the order
        leased = _lease(ctx, endpoint_id)
        if leased is None:
            return 0  # the holder drains them
        try:
            return drain_ordered(ctx, endpoint, send, getattr(leased, "ordered_from", None))
        finally:
            _release(ctx, endpoint_id)
    now = clock.now_iso()
    keys = [(_pk(ctx, endpoint_id), _sk(s)) for s in seqs]
    items = [
        i
        for i in WebhookDeliveryItem.batch_get(keys)
        if i.status == "pending" and (i.due_at is None or i.due_at <= now) and _claim(i)
    ]
    _attempt_all(ctx, endpoint, items, send)
    return len(items)


def _claim(item: Any) -> bool:
    """Take a due delivery off the schedule before attempting it (1 UpdateItem, on the
    due time read), so two sweeps that saw it do not both send it."""
    from crm.storage import WebhookDeliveryItem, condition_failed

    try:
        item.update(
            actions=[WebhookDeliveryItem.gsi2pk.remove(), WebhookDeliveryItem.gsi2sk.remove()],
            condition=WebhookDeliveryItem.due_at == item.due_at,
        )
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise
    return True


# --- the log and replay ------------------------------------------------------------------------


def log(
    ctx: TenantContext, endpoint_id: str, status: str | None, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """The endpoint's deliveries, newest first: 1 Query (``status``: a filter in it)."""
    from crm.paging import decode_cursor, encode_cursor, start_key
    from crm.storage import WebhookDeliveryItem
    from crm.webhooks import endpoints

    endpoints.get(ctx, endpoint_id)  # 404 for another tenant's or an unknown endpoint
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {list(STATUSES)}", field="status")
    pk = _pk(ctx, endpoint_id)
    after = decode_cursor(cursor, "webhook_deliveries")
    if after is not None and not after.startswith("D#"):
        raise Invalid("cursor is malformed or belongs to a different list", field="cursor")
    rows = WebhookDeliveryItem.query(
        pk,
        WebhookDeliveryItem.sk.startswith("D#"),
        scan_index_forward=False,
        filter_condition=(WebhookDeliveryItem.status == status) if status else None,
        limit=limit,
        page_size=limit,
        last_evaluated_key=start_key(pk=pk, sk=after) if after else None,
    )
    out = [as_delivery(r) for r in rows]
    last = rows.last_evaluated_key
    return out, (encode_cursor("webhook_deliveries", last["sk"]["S"]) if last else None)


def as_delivery(item: Any) -> dict[str, Any]:
    return {
        "id": item.change_id,
        "type": item.type,
        "status": item.status,
        "attempts": item.attempts or [],
        "next_attempt_at": item.due_at,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
    }


MAX_REPLAY = 10_000


def replay(
    ctx: TenantContext,
    endpoint_id: str,
    event_ids: list[str] | None,
    since: str | None,
    until: str | None,
) -> int:
    """Send changes again, as new attempts of their deliveries (the same ``webhook-id``):
    by event id (at most 100: 1 BatchGetItem of the feed's guards) or committed in a time
    range (the feed's Query, at most 10,000). Deliveries are (re)made pending and due
    now; the worker sends them. Returns how many."""
    from crm import changes
    from crm.webhooks import endpoints

    endpoint = endpoints.get(ctx, endpoint_id)
    if not endpoint.enabled:
        raise Invalid("the endpoint is disabled: enable it first", field="endpoint")
    if bool(event_ids) == bool(since or until):
        raise Invalid("give either event_ids or since/until", field="event_ids")
    if event_ids:
        entries = changes.entries_by_id(ctx, event_ids)
    else:
        entries = changes.entries_between(ctx, since, until, MAX_REPLAY)
    entries = [e for e in entries if endpoints.matches(endpoint, e.type)]
    _requeue(ctx, endpoint_id, entries)
    seqs = [e.sk for e in entries]
    from crm import queues

    queues.send(
        "webhooks",
        [
            {"type": "due", "tenant_id": ctx.tenant_id, "endpoint_id": endpoint_id, "seqs": seqs[i : i + 500]}
            for i in range(0, len(seqs), 500)
        ],
    )
    return len(entries)


def _requeue(ctx: TenantContext, endpoint_id: str, entries: list[Any]) -> None:
    """Each entry's delivery pending and due now (made if it was never made): 1
    UpdateItem each, keeping its attempts (the log shows the replay as more attempts);
    an ordered endpoint's mark goes back to the oldest (1 UpdateItem)."""
    from crm.storage import WebhookCursorItem, WebhookDeliveryItem, condition_failed

    now = clock.now_iso()
    if entries:
        oldest = min(e.sk for e in entries)
        try:
            WebhookCursorItem(_pk(ctx, endpoint_id), "CURSOR").update(
                actions=[WebhookCursorItem.ordered_from.set(oldest)],
                condition=WebhookCursorItem.ordered_from > oldest,
            )
        except Exception as exc:
            if not condition_failed(exc):
                raise
    for e in entries:
        item = WebhookDeliveryItem(_pk(ctx, endpoint_id), _sk(e.sk))
        item.update(
            actions=[
                WebhookDeliveryItem.kind.set(WebhookDeliveryItem),
                WebhookDeliveryItem.endpoint_id.set(endpoint_id),
                WebhookDeliveryItem.change_id.set(e.change_id),
                WebhookDeliveryItem.type.set(e.type),
                WebhookDeliveryItem.seq.set(e.sk),
                WebhookDeliveryItem.status.set("pending"),
                WebhookDeliveryItem.attempts.set(WebhookDeliveryItem.attempts | []),
                WebhookDeliveryItem.created_at.set(WebhookDeliveryItem.created_at | now),
                WebhookDeliveryItem.updated_at.set(now),
                WebhookDeliveryItem.due_at.set(now),
                WebhookDeliveryItem.gsi2pk.set(DUE_PK),
                WebhookDeliveryItem.gsi2sk.set(_due_sk(ctx, endpoint_id, now, e.sk)),
                WebhookDeliveryItem.ttl.set(_ttl()),
            ]
        )
