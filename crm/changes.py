"""The change feed: every domain event of a tenant, durably, in commit order, by cursor.

The stream dispatcher (functions/dispatch.py) derives a batch's events from the table's
changes and appends them here before any subscriber hears of them. A change is in the
feed once its write committed (the stream only carries committed writes), exactly once
(a guard per event id: a redelivered or replayed stream record adds nothing), and the
changes of one object (one item: an order, a profile, a shipment...) in the order the
object changed (the stream keeps one item's changes in order, and the dispatcher
appends a batch in stream order).

Order across objects: each append moves the tenant's head (``ChangeHeadItem``) with a
condition on the value it read, in the same transaction as the entries, so entries
become visible in ``seq`` order and a reader that has seen ``seq`` n never later finds
an entry below n (nothing is skipped by a cursor). Writes to different objects less
than a stream batch apart may appear in either order.

``seq`` is ``max(last + 1, now in microseconds)``, 16 digits: strictly increasing per
tenant and close to the commit time, so a cursor is also a time, and a cursor older
than the retention period (``RAPPORT_CHANGES_RETENTION_DAYS``, at least 30) is
recognised without a read (410). Entries expire by TTL after the retention period;
reads never return an entry past it, whether or not DynamoDB has deleted it yet.

Costs: appending n events of one tenant is 1 GetItem (the head) + 1 TransactWriteItems
of 2n + 1 items per 49 events; reading a page is 1 Query.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from crm import clock
from crm.context import TenantContext
from crm.errors import Gone, Invalid

SEQ_DIGITS = 16
PER_TX = 49  # 2 items per event + the head: TransactWriteItems' limit is 100
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
FILTERED_READ = 1000  # entries a page filtered by type looks at (still one Query)
MIN_RETENTION_DAYS = 30
CURSOR_KIND = "changes"
GRACE_US = 3_600_000_000  # a cursor just past retention still reads on (oldest_cursor is one)
NOW = "now"

# the object a change is about, by the event type's prefix: (object type, its id)
_OBJECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "order": ("order", ("order_id",)),
    "customer": ("customer", ("customer_id",)),
    "points": ("loyalty", ("customer_id",)),
    "tier": ("loyalty", ("customer_id",)),
    "segment": ("segment_membership", ("segment_id", "customer_id")),
    "checkout": ("checkout", ("checkout_id",)),
    "shipment": ("shipment", ("shipment_id",)),
    "webhook": ("webhook_endpoint", ("endpoint_id",)),
}


def retention_days() -> int:
    return max(MIN_RETENTION_DAYS, int(os.environ.get("RAPPORT_CHANGES_RETENTION_DAYS", "30")))


# --- pure: seqs, objects, type patterns, cursors ----------------------------------------


def seq_str(value: int) -> str:
    return str(value).zfill(SEQ_DIGITS)


def next_seqs(last: int, now_us: int, n: int) -> list[int]:
    """The seqs of ``n`` new entries after ``last``: increasing, and close to now."""
    first = max(last + 1, now_us)
    return list(range(first, first + n))


def horizon(now_us: int, days: int) -> int:
    """The lowest seq still inside the retention period."""
    return now_us - days * 86_400_000_000


def object_of(event: dict[str, Any]) -> tuple[str, str]:
    """(object type, object id) of a domain event: what "in the order of each object's
    changes" is about."""
    prefix = event["type"].split(".", 1)[0]
    kind, fields = _OBJECTS.get(prefix, (prefix, ("customer_id",)))
    data = event.get("data") or {}
    return kind, ":".join(str(data.get(f) or event.get(f) or "") for f in fields)


def expand_types(patterns: Iterable[str], field: str = "types") -> frozenset[str]:
    """Event types named by ``patterns``: exact types, ``prefix.*`` or ``*``. An unknown
    type or prefix is a 422 naming ``field``."""
    from crm.events import TYPES

    out: set[str] = set()
    for raw in patterns:
        pattern = raw.strip()
        if pattern == "*":
            out |= TYPES
        elif pattern.endswith(".*") and (found := {t for t in TYPES if t.startswith(pattern[:-1])}):
            out |= found
        elif pattern in TYPES:
            out.add(pattern)
        else:
            raise Invalid(
                f"unknown event type {pattern!r}: use one of {sorted(TYPES)}, a prefix such as 'order.*', or '*'",
                field=field,
            )
    return frozenset(out)


def encode(seq: int) -> str:
    from crm.paging import encode_cursor

    return encode_cursor(CURSOR_KIND, seq_str(seq))


def decode(cursor: str) -> int:
    from crm.paging import decode_cursor

    value = decode_cursor(cursor, CURSOR_KIND)
    if value is None or not value.isdigit() or len(value) != SEQ_DIGITS:
        raise Invalid("cursor is malformed or belongs to a different list", field="cursor")
    return int(value)


def as_change(item: Any) -> dict[str, Any]:
    """An entry as the API and webhooks show it."""
    return {
        "id": item.change_id,
        "type": item.type,
        "occurred_at": item.occurred_at,
        "committed_at": item.committed_at,
        "object": {"type": item.object_type, "id": item.object_id},
        "customer_id": item.customer_id,
        "data": item.data or {},
    }


# --- I/O ---------------------------------------------------------------------------------


def _now_us() -> int:
    return time.time_ns() // 1000


def append(events: list[dict[str, Any]]) -> dict[str, int]:
    """Append derived events to their tenants' feeds, in the order given; events already
    in a feed are skipped. Returns each tenant's last seq."""
    per: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, str]] = set()
    for event in events:
        key = (event["tenant_id"], event["id"])
        if key not in seen:
            seen.add(key)
            per.setdefault(event["tenant_id"], []).append(event)
    return {tenant: _append_tenant(TenantContext(tenant), evs) for tenant, evs in per.items()}


def _append_tenant(ctx: TenantContext, events: list[dict[str, Any]]) -> int:
    import random

    from crm.tx import Cancelled

    pending = list(events)
    last = 0
    attempts = 0
    while pending:
        chunk = pending[:PER_TX]
        last = head(ctx)
        try:
            last = _commit(ctx, chunk, last)
        except Cancelled as cancelled:
            attempts += 1
            if attempts > 50:
                raise
            there = {int(p.role.split(":", 1)[1]) for p in cancelled.failed if p.role.startswith("guard:")}
            if there:  # already in the feed (a redelivered record): drop them, keep the rest
                chunk_ids = {id(e) for i, e in enumerate(chunk) if i in there}
                pending = [e for e in pending if id(e) not in chunk_ids]
            else:  # another writer moved the head first: read it again
                time.sleep(random.uniform(0, 0.02 * min(attempts, 10)))
            continue
        pending = pending[len(chunk) :]
    return last


def _commit(ctx: TenantContext, chunk: list[dict[str, Any]], last: int) -> int:
    from crm.storage import ChangeGuardItem, ChangeHeadItem, ChangeItem
    from crm.tx import Tx

    now = clock.now()
    committed = clock.iso(now)
    expires = now + timedelta(days=retention_days())
    seqs = next_seqs(last, _now_us(), len(chunk))
    tx = Tx()
    condition = ChangeHeadItem.seq == seq_str(last) if last else ChangeHeadItem.pk.does_not_exist()
    tx.save(ChangeHeadItem(ctx.prefix, "CHANGES", seq=seq_str(seqs[-1])), condition, role="head")
    for i, (event, seq) in enumerate(zip(chunk, seqs, strict=True)):
        guard = ChangeGuardItem(ctx.key("CHG", event["id"]), "CHG", seq=seq_str(seq), ttl=expires)
        tx.save(guard, ChangeGuardItem.pk.does_not_exist(), role=f"guard:{i}")
        object_type, object_id = object_of(event)
        tx.save(
            ChangeItem(
                ctx.key("CHANGES"),
                seq_str(seq),
                change_id=event["id"],
                type=event["type"],
                occurred_at=event.get("occurred_at") or committed,
                committed_at=committed,
                object_type=object_type,
                object_id=object_id,
                customer_id=event.get("customer_id"),
                data=event.get("data") or {},
                ttl=expires,
            ),
            role="entry",
        )
    tx.run()
    return seqs[-1]


def head(ctx: TenantContext) -> int:
    """The tenant's last seq (0 for an empty feed): 1 GetItem."""
    from crm.storage import ChangeHeadItem

    try:
        return int(ChangeHeadItem.get(ctx.prefix, "CHANGES", consistent_read=True).seq)
    except ChangeHeadItem.DoesNotExist:
        return 0


def page(
    ctx: TenantContext, cursor: str | None, types: frozenset[str] | None, limit: int = DEFAULT_LIMIT
) -> tuple[list[dict[str, Any]], str, bool]:
    """One page of changes after ``cursor`` (None: the oldest kept; ``now``: from the
    head, nothing returned): 1 Query (``now``: 1 GetItem). Returns (changes, the cursor
    to read on from, whether more are there already). Raises ``Gone`` for a cursor
    past the retention period (410, ``cursor_expired``, naming ``oldest_cursor``)."""
    from crm.storage import ChangeItem

    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    days = retention_days()
    oldest = horizon(_now_us(), days)
    if cursor == NOW:  # the head (or the horizon, when all before it expired): a new seq is above both
        return [], encode(max(head(ctx), oldest - 1)), False
    after = max(decode(cursor), oldest - 1) if cursor else oldest - 1
    if cursor and decode(cursor) < oldest - GRACE_US:
        raise Gone(
            f"the cursor is older than the feed's retention ({days} days): read on from oldest_cursor",
            field="cursor",
            code="cursor_expired",
            oldest_cursor=encode(oldest - 1),
            retention_days=days,
        )
    from crm.events import TYPES

    filtered = types is not None and types != TYPES
    # a filtered page looks at up to FILTERED_READ entries in its one Query (DynamoDB
    # stops at 1 MB), so a rare type does not come back as a run of empty pages
    kwargs: dict[str, Any] = {"page_size": FILTERED_READ if filtered else limit}
    if filtered:
        kwargs["filter_condition"] = ChangeItem.type.is_in(*sorted(types or ()))
    rows = ChangeItem.query(ctx.key("CHANGES"), ChangeItem.sk > seq_str(after), **kwargs)
    raw = next(rows.page_iter)  # exactly one Query, even when the filter keeps none
    items = [ChangeItem.from_raw_data(r) for r in raw.get("Items", [])]
    last_key = raw.get("LastEvaluatedKey")
    more = bool(last_key)
    if len(items) > limit:  # read past the page: go on from its last change
        items, more = items[:limit], True
        after = int(items[-1].sk)
    elif last_key:
        after = int(last_key["sk"]["S"])
    elif items:
        after = int(items[-1].sk)
    return [as_change(i) for i in items], encode(after), more


def entries_after(ctx: TenantContext, after: int, limit: int) -> tuple[list[Any], int | None]:
    """Up to ``limit`` entries after seq ``after`` (1 Query) and the last one's seq (None
    when there are none): the webhook fan-out's read."""
    from crm.storage import ChangeItem

    rows = list(ChangeItem.query(ctx.key("CHANGES"), ChangeItem.sk > seq_str(after), limit=limit, page_size=limit))
    return rows, (int(rows[-1].sk) if rows else None)


def entries(ctx: TenantContext, seqs: list[str]) -> dict[str, dict[str, Any]]:
    """The changes at ``seqs`` as the feed shows them: 1 BatchGetItem per 100."""
    from crm.storage import ChangeItem

    keys = [(ctx.key("CHANGES"), s) for s in dict.fromkeys(seqs)]
    return {item.sk: as_change(item) for item in ChangeItem.batch_get(keys)} if keys else {}


def entries_by_id(ctx: TenantContext, change_ids: list[str]) -> list[Any]:
    """The entries of these event ids still kept, in feed order: 1 BatchGetItem of their
    guards + 1 of the entries (per 100)."""
    from crm.storage import ChangeGuardItem, ChangeItem

    guards = ChangeGuardItem.batch_get([(ctx.key("CHG", i), "CHG") for i in dict.fromkeys(change_ids)])
    keys = [(ctx.key("CHANGES"), g.seq) for g in guards]
    return sorted(ChangeItem.batch_get(keys), key=lambda e: e.sk) if keys else []


def entries_between(ctx: TenantContext, since: str | None, until: str | None, most: int) -> list[Any]:
    """The entries committed in [since, until) (ISO times; seq is the commit time in
    microseconds): Queries of the feed, at most ``most`` entries."""
    from crm.storage import ChangeItem

    oldest = horizon(_now_us(), retention_days())
    low = max(_us(since) if since else oldest, oldest)
    high = _us(until) if until else _now_us() + 1
    if high <= low:
        raise Invalid("until must be after since (and inside the retention period)", field="until")
    rows = ChangeItem.query(ctx.key("CHANGES"), ChangeItem.sk.between(seq_str(low), seq_str(high - 1)), limit=most + 1)
    found = list(rows)
    if len(found) > most:
        raise Invalid(f"more than {most} changes in that range: replay a shorter one", field="since")
    return found


def _us(iso: str) -> int:
    try:
        moment = clock.parse(iso)
    except ValueError:
        raise Invalid(f"not a time: {iso!r}", field="since") from None
    if moment.tzinfo is None:
        raise Invalid("a time needs its timezone (Z or +hh:mm)", field="since")
    return int(moment.timestamp() * 1_000_000)


def erase(ctx: TenantContext, customer_id: str) -> int:
    """Blank the data of a customer's changes still kept (erasure's follow-up): Queries
    over the retention period filtered on the customer (a job, not a request path: 1
    Query per MB of the tenant's feed), 1 UpdateItem per change. The change itself stays
    (type, object id, time), so a feed reader's sequence is not torn."""
    from crm.storage import ChangeItem

    oldest = horizon(_now_us(), retention_days())
    done = 0
    for item in ChangeItem.query(
        ctx.key("CHANGES"),
        ChangeItem.sk > seq_str(oldest - 1),
        filter_condition=ChangeItem.customer_id == customer_id,
    ):
        if item.data != {"erased": True}:
            item.update(actions=[ChangeItem.data.set({"erased": True})])
            done += 1
    return done
