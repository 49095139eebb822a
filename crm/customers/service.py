"""Customer operations. Each docstring names its DynamoDB request count (docs/performance.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crm import clock, ids, retry
from crm.context import TenantContext
from crm.customers import records
from crm.customers.schemas import (
    Customer,
    CustomerCreate,
    CustomerFields,
    CustomerPatch,
    TimelineEvent,
    TimelineEventCreate,
)
from crm.customers.writes import ProfileWrite, execute
from crm.errors import EXPECTED_VERSION, Conflict, Gone, Invalid, NotFound, PreconditionFailed
from crm.paging import Page, decode_cursor, encode_cursor, start_key
from crm.storage import CustomerItem, EventItem, GuardItem, IndexEntryItem, Item
from crm.tx import Cancelled, Tx

MERGED_FIELDS = ("attributes", "consent", "external_ids")
MAX_HOPS = 3  # merged -> survivor links are kept one hop long (crm/merge.py); more is a fallback


# --- reads -----------------------------------------------------------------


def _load(ctx: TenantContext, customer_id: str) -> CustomerItem:
    if not ids.CUSTOMER_ID.match(customer_id):
        raise NotFound(f"customer {customer_id} not found")
    try:
        return CustomerItem.get(records.profile_pk(ctx, customer_id), records.PROFILE, consistent_read=True)
    except CustomerItem.DoesNotExist:
        raise NotFound(f"customer {customer_id} not found") from None


def follow(ctx: TenantContext, item: CustomerItem) -> CustomerItem:
    """A merged (or merging) profile's survivor: 1 GetItem (a merge keeps every merged
    id one hop from its survivor); the profile itself otherwise, with no request."""
    for _ in range(MAX_HOPS):
        target = records.survivor(item)
        if target is None:
            return item
        item = _load(ctx, target)
    return item


def resolve(ctx: TenantContext, customer_id: str) -> CustomerItem:
    """The profile a customer id stands for: its own, or its survivor's if it was merged."""
    return follow(ctx, _load(ctx, customer_id))


def survivor_id(ctx: TenantContext, customer_id: str) -> str | None:
    """The survivor of a merged customer id (1-2 GetItem), None if it was not merged."""
    if not ids.CUSTOMER_ID.match(customer_id):
        return None
    try:
        item = resolve(ctx, customer_id)
    except NotFound:
        return None
    return item.customer_id if item.customer_id != customer_id else None


def _load_active(ctx: TenantContext, customer_id: str) -> CustomerItem:
    item = resolve(ctx, customer_id)
    if item.status != "active":
        raise Gone(f"customer {customer_id} was erased at {item.erased_at}")
    return item


def get(ctx: TenantContext, customer_id: str) -> Customer:
    """1 BatchGetItem: the profile and its segment ``METRICS`` (the ``metrics`` block);
    a merged id: +1 BatchGetItem, and the survivor is returned."""
    from crm.segments.view import metrics_block
    from crm.storage import MetricsItem

    def read(customer_id: str) -> tuple[CustomerItem, Any]:
        if not ids.CUSTOMER_ID.match(customer_id):
            raise NotFound(f"customer {customer_id} not found")
        pk = records.profile_pk(ctx, customer_id)
        found = {i.sk: i for i in Item.batch_get([(pk, records.PROFILE), (pk, "METRICS")], consistent_read=True)}
        profile = found.get(records.PROFILE)
        if not isinstance(profile, CustomerItem):
            raise NotFound(f"customer {customer_id} not found")
        return profile, found.get("METRICS")

    profile, metrics = read(customer_id)
    for _ in range(MAX_HOPS):
        target = records.survivor(profile)
        if target is None:
            break
        profile, metrics = read(target)
    customer = records.to_customer(profile)
    if isinstance(metrics, MetricsItem) and profile.status == "active":
        customer.metrics = metrics_block(metrics)
    return customer


def batch_profiles(ctx: TenantContext, customer_ids: list[str]) -> dict[str, CustomerItem]:
    """1 BatchGetItem per 100 ids: the profiles as stored (a merged one as its tombstone)."""
    keys = [(records.profile_pk(ctx, cid), records.PROFILE) for cid in dict.fromkeys(customer_ids)]
    return {i.customer_id: i for i in CustomerItem.batch_get(keys, consistent_read=True)} if keys else {}


def resolved_profiles(ctx: TenantContext, customer_ids: list[str]) -> dict[str, CustomerItem]:
    """As ``batch_profiles``, but a merged id maps to its survivor's profile (+1
    BatchGetItem when some were merged)."""
    found = batch_profiles(ctx, customer_ids)
    for _ in range(MAX_HOPS):
        merged = {cid: records.survivor(item) for cid, item in found.items() if records.survivor(item)}
        if not merged:
            break
        survivors = batch_profiles(ctx, [cid for cid in merged.values() if cid])
        for cid, target in merged.items():
            if target in survivors:
                found[cid] = survivors[target]
            else:
                del found[cid]
    return found


def list_customers(
    ctx: TenantContext,
    *,
    limit: int,
    cursor: str | None = None,
    tag: str | None = None,
    updated_since: datetime | None = None,
) -> Page:
    """By id: 1 Query on gsi1. Since a time: 1 Query on gsi2 (oldest change first).
    By tag: 1 Query of the tag's entries + 1 BatchGetItem of the profiles."""
    since = clock.iso(updated_since) if updated_since else None
    if tag is not None:
        return _list_by_tag(ctx, tag, limit, cursor, since)
    pk = records.list_pk(ctx)
    if since is None:
        after = decode_cursor(cursor, "id")
        start = (
            None
            if after is None
            else start_key(gsi1pk=pk, gsi1sk=after, pk=records.profile_pk(ctx, after), sk=records.PROFILE)
        )
        rows = list(CustomerItem.gsi1.query(pk, limit=limit + 1, page_size=limit + 1, last_evaluated_key=start))
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = encode_cursor("id", rows[-1].customer_id) if more else None
    else:
        after = decode_cursor(cursor, "updated:" + since)
        if after is None:
            cond, start = CustomerItem.gsi2sk >= since, None
        else:
            cid = after.rsplit("#", 1)[-1]
            cond = CustomerItem.gsi2sk >= since
            start = start_key(gsi2pk=pk, gsi2sk=after, pk=records.profile_pk(ctx, cid), sk=records.PROFILE)
        rows = list(CustomerItem.gsi2.query(pk, cond, limit=limit + 1, page_size=limit + 1, last_evaluated_key=start))
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = encode_cursor("updated:" + since, rows[-1].gsi2sk) if more else None
    return Page([records.to_customer(r) for r in rows], nxt)


def _list_by_tag(ctx: TenantContext, tag: str, limit: int, cursor: str | None, since: str | None) -> Page:
    pk = records.tag_entry(ctx, tag)
    after = decode_cursor(cursor, "tag:" + tag.casefold())
    start = None if after is None else start_key(pk=pk, sk=after)
    rows = list(
        IndexEntryItem.query(pk, limit=limit + 1, page_size=limit + 1, last_evaluated_key=start, consistent_read=True)
    )
    more = len(rows) > limit
    rows = rows[:limit]
    profiles = resolved_profiles(ctx, [r.customer_id for r in rows])
    wanted = tag.casefold()
    found = list(
        {
            profiles[r.customer_id].customer_id: profiles[r.customer_id] for r in rows if r.customer_id in profiles
        }.values()
    )
    found = [
        p
        for p in found
        if p.status == "active"
        and (since is None or p.updated_at >= since)
        and wanted in {t.casefold() for t in (p.data or {}).get("tags", ())}
    ]
    nxt = encode_cursor("tag:" + tag.casefold(), rows[-1].sk) if more else None
    return Page([records.to_customer(p) for p in found], nxt)


def lookup(
    ctx: TenantContext,
    *,
    email: str | None = None,
    phone: str | None = None,
    source: str | None = None,
    external_id: str | None = None,
) -> list[Customer]:
    """Email or external id: 2 GetItems (guard, profile). Phone: 1 Query + 1 BatchGetItem."""
    from crm.customers import normalize

    given = [k for k, v in (("email", email), ("phone", phone), ("external_id", external_id)) if v]
    if len(given) != 1 or (external_id and not source) or (source and not external_id):
        raise Invalid("give exactly one of email, phone, or source with external_id", field="query")
    try:
        if email:
            guard_pk = records.email_guard(ctx, normalize.email(email))
        elif external_id:
            guard_pk = records.xid_guard(ctx, source or "", external_id)
        else:
            normalized_phone = normalize.phone(phone or "")
            phone_pk = records.phone_entry(ctx, normalized_phone)
    except ValueError as exc:
        raise Invalid(str(exc), field=given[0]) from None
    if phone:
        cids = [e.customer_id for e in IndexEntryItem.query(phone_pk, limit=100, consistent_read=True)]
    else:
        try:
            cids = [GuardItem.get(guard_pk, "U", consistent_read=True).customer_id]
        except GuardItem.DoesNotExist:
            return []
    profiles = resolved_profiles(ctx, cids) if len(cids) > 1 else {c: resolve(ctx, c) for c in cids}
    # An entry is checked against its profile (see writes.ProfileWrite.before/after);
    # a merged customer's guards and entries lead to its survivor, listed once.
    out: dict[str, Customer] = {}
    for c in cids:
        p = profiles.get(c)
        if (
            p is not None
            and p.status == "active"
            and p.customer_id not in out
            and (not phone or normalized_phone in records.phones(p.data or {}))
        ):
            out[p.customer_id] = records.to_customer(p)
    return list(out.values())


# --- writes ----------------------------------------------------------------


def _consent(value: Any, now: str) -> dict[str, str]:
    at = clock.iso(value.at) if value.at else now
    return {"status": value.status, "source": value.source, "at": at}


def _dump(fields: CustomerFields, names: set[str]) -> dict[str, Any]:
    return fields.model_dump(mode="json", include=names)


def new_data(fields: CustomerFields, now: str) -> dict[str, Any]:
    data = {k: v for k, v in _dump(fields, fields.model_fields_set - {"consent"}).items() if v is not None}
    for name in ("attributes", "external_ids"):  # a PATCH-shaped record may carry nulls
        if name in data:
            data[name] = {k: v for k, v in data[name].items() if v is not None} or None
            if data[name] is None:
                del data[name]
    consent = {ch: _consent(c, now) for ch, c in (fields.consent or {}).items() if c is not None}
    if consent:
        data["consent"] = consent
    return data


def patched_data(old: dict[str, Any], patch: CustomerFields, now: str) -> dict[str, Any]:
    """Given fields replace; the maps merge key by key with null removing (RFC 7396)."""
    data = dict(old)
    dumped = _dump(patch, patch.model_fields_set)
    for name in patch.model_fields_set:
        value = dumped[name]
        if name in MERGED_FIELDS and value is not None:
            merged = dict(data.get(name) or {})
            for key, sub in value.items():
                if sub is None:
                    merged.pop(key, None)
                elif name == "consent":
                    merged[key] = _consent(getattr(patch, name)[key], now)
                else:
                    merged[key] = sub
            value = merged or None
        if value is None or value == [] and name == "tags":
            data.pop(name, None)
        else:
            data[name] = value
    from crm.customers.normalize import previous_emails

    kept = previous_emails(old, data, now)  # a replaced email stays findable for a while
    if kept:
        data["previous_emails"] = kept
    else:
        data.pop("previous_emails", None)
    return data


def require_identity(data: dict[str, Any]) -> None:
    if not (data.get("email") or data.get("phone") or data.get("external_ids")):
        raise Invalid("a customer needs an email, a phone or an external id", field="email")


def new_item(ctx: TenantContext, data: dict[str, Any], now: str) -> CustomerItem:
    cid = ids.customer_id()
    item = CustomerItem(
        records.profile_pk(ctx, cid),
        records.PROFILE,
        customer_id=cid,
        status="active",
        data=data,
        created_at=now,
        updated_at=now,
    )
    records.set_list_keys(ctx, item)
    return item


def create(ctx: TenantContext, fields: CustomerCreate) -> Customer:
    """1 TransactWriteItems: profile + guards + lookup entries (2 on a 409, to name the holder);
    402 plan_limit past the plan's customers (crm/billing/limits.py: usually no request)."""
    from crm.billing import limits

    now = clock.now_iso()
    data = new_data(fields, now)
    require_identity(data)
    limits.check_customers(ctx)
    item = new_item(ctx, data, now)
    for _ in retry.backoff():  # only a TransactionConflict is retried; a taken email is 409
        try:
            execute([ProfileWrite.plan(ctx, item, None, data, is_new=True)])
            limits.created(ctx, 1)
            return records.to_customer(item)
        except Conflict as exc:
            if exc.extra.get("code") != "transaction_conflict":
                raise
    raise Conflict("the write conflicted with many concurrent requests; retry", code="transaction_conflict")


def update(ctx: TenantContext, customer_id: str, patch: CustomerPatch, if_match: int | None = None) -> Customer:
    """1 GetItem + 1 TransactWriteItems; the write is conditional on the version read, so
    a concurrent change gets 412 with If-Match, or a fresh re-read after a backoff without
    it (crm/retry.py): only If-Match produces 412."""
    for _ in retry.backoff():
        item = _load_active(ctx, customer_id)
        if if_match is not None and item.version != if_match:
            raise PreconditionFailed(
                f"If-Match {if_match} does not match the current version {item.version}",
                field=EXPECTED_VERSION,
                current_version=item.version,
            )
        try:
            return _apply(ctx, item, patch)
        except PreconditionFailed:
            if if_match is not None:
                raise
        except Conflict as exc:  # a TransactionConflict: re-read (with If-Match, re-check it)
            if exc.extra.get("code") != "transaction_conflict":
                raise
    raise Conflict("the customer is being changed by many requests at once; retry", code="transaction_conflict")


def _apply(ctx: TenantContext, item: CustomerItem, patch: CustomerFields) -> Customer:
    now = clock.now_iso()
    old = item.data or {}
    data = patched_data(old, patch, now)
    if data == old:
        return records.to_customer(item)
    require_identity(data)
    item.data, item.updated_at = data, now
    records.set_list_keys(ctx, item)
    execute([ProfileWrite.plan(ctx, item, old, data, is_new=False)])
    return records.to_customer(item)


def erase(ctx: TenantContext, customer_id: str) -> Customer:
    """Right to erasure (crm/erasure.py): the profile becomes a tombstone (id, status,
    times, ``erasure``), its guards, lookup and search entries go in the same transaction,
    and every item of its partition is deleted or blanked as its kind declares (timeline
    entries deleted; orders kept as financial records, their free text blanked). The rest
    of the tenant (conflicts, stored responses, run reports, uploads) is the follow-up's
    (``erasure.status`` stays ``pending`` until it ran; the caller queues it).

    1 GetItem + 1 TransactWriteItems + 1 Query per page of the partition, 1 BatchWriteItem
    per 25 deleted entries and 1 PutItem per blanked order. Repeating it is safe and
    finishes a purge that a crash interrupted. A merged id erases its survivor (+1
    GetItem): the person is one customer now. While a merge into the customer runs: 409.
    """
    from crm import erasure

    for _ in retry.backoff():  # a concurrent write is no reason to refuse: re-read, erase
        item = resolve(ctx, customer_id)
        incoming = (item.merge or {}).get("from")
        if incoming:
            raise Conflict(
                f"customer {incoming} is being merged into {item.customer_id}; finish that "
                f"merge (repeat its POST …/merge) first",
                code="merge_in_progress",
                other_id=incoming,
            )
        if item.status != "active":
            break
        old = item.data or {}
        now = clock.now_iso()
        item.status, item.data, item.erased_at, item.updated_at = "erased", {}, now, now
        item.erasure = {"status": "pending", "terms": erasure.terms_of(item.customer_id, old)}
        records.set_list_keys(ctx, item)
        try:
            execute([ProfileWrite.plan(ctx, item, old, {}, is_new=False)])
            break
        except PreconditionFailed:
            continue
        except Conflict as exc:
            if exc.extra.get("code") != "transaction_conflict":
                raise
    else:
        raise Conflict("the customer is being changed by many requests at once; retry", code="transaction_conflict")
    if item.status == "erased":
        if item.erasure is None:  # erased before follow-ups existed: look for its id at least
            item.update(
                actions=[
                    CustomerItem.erasure.set({"status": "pending", "terms": erasure.terms_of(item.customer_id, {})})
                ]
            )
        erasure.partition(ctx, item.customer_id)
    return records.to_customer(item)


def erasure_pending(ctx: TenantContext, customer_id: str) -> bool:
    """Whether the customer's erasure still waits for its follow-up (1 GetItem)."""
    item = resolve(ctx, customer_id)
    return item.status == "erased" and (item.erasure or {}).get("status") == "pending"


def finish_erasure(ctx: TenantContext, customer_id: str) -> dict[str, int]:
    """The follow-up (functions/erasure.py): every declared kind's hook, then the tombstone
    forgets the terms and says ``complete`` (1 GetItem + the hooks' requests + 1 UpdateItem).
    Nothing to do for a customer that is not erased or already complete."""
    from crm import erasure

    item = _load(ctx, customer_id)
    state = item.erasure or {}
    if item.status != "erased" or state.get("status") != "pending":
        return {}
    done = erasure.follow_up(ctx, item.customer_id, state.get("terms") or [item.customer_id])
    item.update(actions=[CustomerItem.erasure.set({"status": "complete"})], condition=CustomerItem.status == "erased")
    return done


# --- timeline --------------------------------------------------------------


def event_item(ctx: TenantContext, customer_id: str, body: TimelineEventCreate, *, key: str | None = None) -> EventItem:
    """The timeline item for ``body`` (sk ``EV#<occurred_at>#<event id>``). With ``key`` (a
    fact's name) the id, and so the sort key, is derived from the key and the time it
    occurred, so writing it twice writes one entry; without, the id is new."""
    now = clock.now()
    occurred = body.occurred_at or now
    eid = ids.derived_event_id(occurred, key) if key is not None else ids.event_id()
    data = body.model_dump(mode="json", exclude_none=True, exclude={"occurred_at"})
    data["occurred_at"] = clock.iso(occurred)
    return EventItem(
        records.profile_pk(ctx, customer_id),
        f"{records.EVENT_PREFIX}{data['occurred_at']}#{eid}",
        event_id=eid,
        customer_id=customer_id,
        data=data,
        created_at=clock.iso(now),
    )


def _entry_tx(event: EventItem) -> Tx:
    """A timeline entry put once, on a customer that is active (a ConditionCheck)."""
    tx = Tx()
    tx.check(CustomerItem, event.pk, records.PROFILE, CustomerItem.status == "active", role="customer")
    tx.save(event, EventItem.pk.does_not_exist(), role="entry")
    return tx


def add_event(ctx: TenantContext, customer_id: str, body: TimelineEventCreate) -> TimelineEvent:
    """1 TransactWriteItems: a ConditionCheck that the customer is active + the Put."""
    if not ids.CUSTOMER_ID.match(customer_id):
        raise NotFound(f"customer {customer_id} not found")
    for _ in retry.backoff():  # a lost race re-tries after a backoff; a merge hops (bounded too)
        event = event_item(ctx, customer_id, body)
        try:
            _entry_tx(event).run()
            return records.to_event(event)
        except Cancelled as exc:
            if exc.lost_race:  # the profile was being written: try again
                continue
            item = _load(ctx, customer_id)  # raises 404
            target = records.survivor(item)
            if target is None:
                _load_active(ctx, customer_id)  # raises 410
                raise
            customer_id = target  # merged: the entry goes to the survivor (+1 GetItem)
    raise Conflict("the customer changed concurrently; retry", code="transaction_conflict")


def record_event(ctx: TenantContext, customer_id: str, key: str, body: TimelineEventCreate) -> bool:
    """A timeline entry for a domain event, written at most once per ``key`` (its id is
    derived from it). 1 TransactWriteItems; False when it exists already or the customer
    is erased (nothing to do either way). A merged customer's entry goes to its survivor
    (+1 GetItem and 1 TransactWriteItems): an entry moved there by the merge has the
    same id, so a late event is still written once."""
    for _ in range(MAX_HOPS):
        event = event_item(ctx, customer_id, body, key=key)
        try:
            _entry_tx(event).run()
            return True
        except Cancelled as exc:
            if not exc.failed:
                raise
            if exc.first_failed != "customer":
                return False  # the entry exists
            try:
                target = records.survivor(_load(ctx, customer_id))
            except NotFound:
                return False
            if target is None:
                return False  # erased
            customer_id = target
    return False


def timeline_query(ctx: TenantContext, customer_id: str, limit: int, after: str | None) -> list[Any]:
    """Newest first: the profile (sk PROFILE), the latest shipments (sk PARCELS), the recent orders (sk ORDERS), the segment
    metrics (sk METRICS), the points book (sk LOYALTY), then the EV# entries. Orders (sk A#ORD#...) and ledger entries
    (B#LED#...) sort below this range. From the top (``after`` None), a merged
    customer's profile leads to its survivor's rows (+1 Query)."""
    for _ in range(MAX_HOPS + 1):
        pk = records.profile_pk(ctx, customer_id)
        start = None if after is None else start_key(pk=pk, sk=after)
        rows = list(
            Item.query(
                pk,
                Item.sk.between(records.EVENT_PREFIX, records.PROFILE),
                scan_index_forward=False,
                limit=limit,
                page_size=limit,
                last_evaluated_key=start,
                consistent_read=True,
            )
        )
        target = records.survivor(rows[0]) if after is None and rows else None
        if target is None:
            return rows
        customer_id = target
    return rows


def list_events(ctx: TenantContext, customer_id: str, *, limit: int, cursor: str | None = None) -> Page:
    """1 Query: the first page also returns the profile, which proves the customer exists."""
    if not ids.CUSTOMER_ID.match(customer_id):
        raise NotFound(f"customer {customer_id} not found")
    kind = "event"
    try:
        after = decode_cursor(cursor, kind)
    except Invalid:
        # a page of a merged customer's timeline is its survivor's (cursor "event@<id>")
        target = survivor_id(ctx, customer_id)
        if target is None:
            raise
        customer_id, kind = target, f"event@{target}"
        after = decode_cursor(cursor, kind)
    if after is not None and not after.startswith(records.EVENT_PREFIX):
        raise Invalid("cursor is malformed", field="cursor")
    # page 1 also holds the profile, the latest shipments, the recent orders, the segment
    # metrics and the points book, above EV#
    rows = timeline_query(ctx, customer_id, limit + 6, after)
    if after is None:
        if not rows or not isinstance(rows[0], CustomerItem):
            raise NotFound(f"customer {customer_id} not found")
        if rows[0].customer_id != customer_id:
            kind = f"event@{rows[0].customer_id}"
        rows = rows[1:]
    events = [r for r in rows if isinstance(r, EventItem)]
    more = len(events) > limit
    events = events[:limit]
    nxt = encode_cursor(kind, events[-1].sk) if more else None
    return Page([records.to_event(e) for e in events], nxt)
