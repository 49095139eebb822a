"""Segments: create, read, change and delete them, preview a rule, page the members, a
customer's segments, the RFM grid. Each docstring names its DynamoDB request count
(docs/performance.md).

Storage (crm/storage.py, ``P = T#<tenant>#``):

| item | pk | sk | gsi1 |
|---|---|---|---|
| segment | ``P SEG#<id>`` | ``SEGMENT`` | ``P SEGMENTS`` / ``<id>`` |
| member | ``P SEG#<id>`` | ``M#<customer id>`` | - |
| catalogue (every rule) | ``P`` | ``SEGMENTS`` | - |
| RFM grid counts | ``P`` | ``RFM`` | - |
| a customer's metrics | ``P C#<id>`` | ``METRICS`` | ``P METRICS`` / ``<id>`` |

A segment and its catalogue entry are written in one transaction, the catalogue's part
conditional on the catalogue's version: two writers never lose each other's segment, and
a name is unique (ignoring case) because each writer checked it against the version it
wrote on. Builds are crm/segments/build.py's (``build.start``, ``build.drop``), called
after the transaction; membership (counts, member items) is crm/segments/maintain.py's.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from pynamodb.exceptions import UpdateError
from ulid import ULID

from crm import clock, retry
from crm.context import TenantContext
from crm.errors import Conflict, Invalid, NotFound, stale_version
from crm.paging import Page, decode_cursor, encode_cursor, start_key
from crm.segments.membership import metrics_index, segment_pk
from crm.segments.schemas import (
    CustomerSegment,
    Preview,
    PreviewSample,
    RfmGrid,
    RfmSegmentCount,
    Segment,
    SegmentBuild,
    SegmentCreate,
    SegmentMember,
    SegmentPatch,
)
from crm.storage import (
    CustomerItem,
    Item,
    MetricsItem,
    SegmentCatalogueItem,
    SegmentItem,
    SegmentMemberItem,
    condition_failed,
)
from crm.tx import Cancelled, Tx

MAX_SEGMENTS = 50  # per tenant: every customer change evaluates every rule (docs/segments.md)
# a rule as stored, in bytes of JSON: 50 of them fit the one catalogue item (400 KB a DynamoDB item)
MAX_RULE_BYTES = 7_000
SEGMENT_ID = re.compile(r"^seg_[0-9A-HJKMNP-TV-Z]{26}$")
SEGMENT_SK, MEMBER_PREFIX = "SEGMENT", "M#"
CATALOGUE_SK, RFM_SK, METRICS_SK, PROFILE_SK = "SEGMENTS", "RFM", "METRICS", "PROFILE"
# a preview reads at most this many customers' metrics, for at most this long; beyond,
# the count is extrapolated from what it read (``exact: false``)
PREVIEW_MAX_CUSTOMERS = 20_000
PREVIEW_BUDGET_SECONDS = 8.0
PREVIEW_PAGE = 1000


# --- keys ------------------------------------------------------------------------------


def list_pk(ctx: TenantContext) -> str:
    return ctx.key("SEGMENTS")


def new_id() -> str:
    return f"seg_{ULID()}"


def _build() -> Any:
    """crm/segments/build.py, imported when a build starts or is dropped (tests replace it)."""
    import importlib

    return importlib.import_module("crm.segments.build")


# --- conversion ------------------------------------------------------------------------


def _fresh_build(rule_version: int, now: str) -> dict[str, Any]:
    return {
        "version": rule_version,
        "cursor": None,
        "processed": 0,
        "total": None,
        "started_at": now,
        "finished_at": None,
    }


def _percent(item: SegmentItem) -> int:
    build = item.build or {}
    if item.status == "ready":
        return 100
    total, processed = build.get("total"), build.get("processed") or 0
    if not total:
        return 0
    return max(0, min(99, int(processed * 100 // total)))


def to_segment(item: SegmentItem) -> Segment:
    build = item.build or {}
    return Segment(
        id=item.segment_id,
        name=item.name,
        description=item.description,
        rule=item.rule or {},
        rule_version=int(item.rule_version or 1),
        status="ready" if item.status == "ready" else "building",
        build=SegmentBuild(
            percent=_percent(item),
            processed=int(build.get("processed") or 0),
            total=None if build.get("total") is None else int(build["total"]),
            started_at=build.get("started_at"),
            finished_at=build.get("finished_at"),
        ),
        member_count=max(0, int(item.member_count or 0)),
        created_at=item.created_at,
        updated_at=item.updated_at,
        version=int(item.version or 0),
    )


# --- reads -----------------------------------------------------------------------------


def _not_found(segment_id: str) -> NotFound:
    return NotFound(f"segment {segment_id} not found", code="segment_not_found")


def _load(ctx: TenantContext, segment_id: str) -> SegmentItem:
    if not SEGMENT_ID.match(segment_id):
        raise _not_found(segment_id)
    try:
        item = SegmentItem.get(segment_pk(ctx, segment_id), SEGMENT_SK, consistent_read=True)
    except SegmentItem.DoesNotExist:
        raise _not_found(segment_id) from None
    if not item.name:  # a member count ADDed after the segment was deleted: no segment
        raise _not_found(segment_id)
    return item


def get(ctx: TenantContext, segment_id: str) -> Segment:
    """1 GetItem: the segment, its build's progress and its exact member count."""
    return to_segment(_load(ctx, segment_id))


def list_(ctx: TenantContext, cursor: str | None, limit: int) -> Page:
    """1 Query of gsi1 ``P SEGMENTS`` (by id: oldest first)."""
    pk = list_pk(ctx)
    after = decode_cursor(cursor, "segment")
    start = None
    if after is not None:
        if not SEGMENT_ID.match(after):
            raise Invalid("cursor is malformed or belongs to a different list", field="cursor")
        start = start_key(gsi1pk=pk, gsi1sk=after, pk=segment_pk(ctx, after), sk=SEGMENT_SK)
    rows = list(SegmentItem.gsi1.query(pk, limit=limit + 1, page_size=limit + 1, last_evaluated_key=start))
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor("segment", rows[-1].segment_id) if more and rows else None
    return Page([to_segment(r) for r in rows if r.name], nxt)


def catalogue(ctx: TenantContext) -> SegmentCatalogueItem | None:
    """The tenant's catalogue (1 GetItem), None before its first segment."""
    try:
        return SegmentCatalogueItem.get(ctx.prefix, CATALOGUE_SK, consistent_read=True)
    except SegmentCatalogueItem.DoesNotExist:
        return None


# --- writes ----------------------------------------------------------------------------


def parse_rule(raw: Any) -> dict[str, Any]:
    """The rule as ``rules.parse`` normalizes it; 422 ``invalid_rule`` naming the condition."""
    from crm.segments import rules

    try:
        rule = rules.parse(raw)
    except rules.RuleError as exc:
        path = exc.path if str(exc.path or "").startswith("rule") else f"rule.{exc.path}" if exc.path else "rule"
        raise Invalid(f"invalid rule: {path}: {exc.message}", field=path, code="invalid_rule", condition=path) from None
    size = len(json.dumps(rule, separators=(",", ":")).encode())
    if size > MAX_RULE_BYTES:
        raise Invalid(
            f"invalid rule: rule: {size} bytes as stored; a rule holds at most {MAX_RULE_BYTES:,} "
            "(shorten its in lists, or split it into segments)",
            field="rule",
            code="invalid_rule",
            condition="rule",
            max_bytes=MAX_RULE_BYTES,
        )
    return rule


def _check_name(segments: dict[str, Any], name: str, segment_id: str | None) -> None:
    wanted = name.casefold()
    for sid, entry in segments.items():
        if sid != segment_id and str(entry.get("name", "")).casefold() == wanted:
            raise Conflict(
                f"a segment named {entry.get('name')!r} exists already ({sid}); names are unique (ignoring case)",
                field="name",
                code="segment_name_taken",
                existing_segment_id=sid,
            )


def _write_catalogue(tx: Tx, ctx: TenantContext, cat: SegmentCatalogueItem | None, segments: dict, now: str) -> None:
    """The catalogue's part of the transaction, conditional on the version read: a Put
    of a new catalogue, else an update of ``segments`` alone (the schedule's cut points
    and threshold, on the same item, are left as they are)."""
    if cat is None:
        tx.save(SegmentCatalogueItem(ctx.prefix, CATALOGUE_SK, segments=segments, updated_at=now), role="catalogue")
    else:
        tx.update(
            cat,
            [SegmentCatalogueItem.segments.set(segments), SegmentCatalogueItem.updated_at.set(now)],
            role="catalogue",
        )


def _conflict() -> Conflict:
    return Conflict(
        "the tenant's segments are being changed by many requests at once; retry", code="transaction_conflict"
    )


def create(ctx: TenantContext, body: SegmentCreate) -> Segment:
    """1 GetItem (the catalogue) + 1 TransactWriteItems (the segment, the catalogue), then
    ``build.start`` (1 SendMessage). 409 ``segment_name_taken`` or ``segment_limit``."""
    rule = parse_rule(body.rule)
    for _ in retry.backoff():
        cat = catalogue(ctx)
        segments = dict(cat.segments or {}) if cat else {}
        _check_name(segments, body.name, None)
        if len(segments) >= MAX_SEGMENTS:
            raise Conflict(
                f"the tenant has {len(segments)} segments, the most it may have ({MAX_SEGMENTS}); delete one first",
                field="name",
                code="segment_limit",
                limit=MAX_SEGMENTS,
            )
        now, sid = clock.now_iso(), new_id()
        item = SegmentItem(
            segment_pk(ctx, sid),
            SEGMENT_SK,
            segment_id=sid,
            name=body.name,
            description=body.description,
            rule=rule,
            rule_version=1,
            status="building",
            build=_fresh_build(1, now),
            member_count=0,
            created_at=now,
            updated_at=now,
            gsi1pk=list_pk(ctx),
            gsi1sk=sid,
        )
        segments[sid] = {"name": body.name, "rule": rule, "v": 1}
        tx = Tx()
        tx.save(item, SegmentItem.pk.does_not_exist(), role="segment")
        _write_catalogue(tx, ctx, cat, segments, now)
        try:
            tx.run()
            break
        except Cancelled:
            continue  # the catalogue changed (or a lost race): re-read, re-check the name
    else:
        raise _conflict()
    _build().start(ctx, sid, 1)
    return to_segment(item)


def update(ctx: TenantContext, segment_id: str, body: SegmentPatch, if_match: int | None = None) -> Segment:
    """1 GetItem + 1 UpdateItem (a description alone) or + 1 GetItem (the catalogue) +
    1 TransactWriteItems (a name or a rule); a new rule bumps ``rule_version``, sets
    ``building`` and calls ``build.start``. With If-Match, a stale version is 412."""
    given = body.model_fields_set  # a null name or rule leaves it as it is
    rule = parse_rule(body.rule) if body.rule is not None else None
    for _ in retry.backoff():
        item = _load(ctx, segment_id)
        if if_match is not None and item.version != if_match:
            raise stale_version(if_match, item.version)
        now = clock.now_iso()
        name = body.name if body.name is not None else item.name
        description = body.description if "description" in given else item.description
        new_rule = rule is not None and rule != item.rule
        if name == item.name and description == item.description and not new_rule:
            return to_segment(item)
        rule_version = int(item.rule_version or 1) + (1 if new_rule else 0)
        actions: list[Any] = [SegmentItem.updated_at.set(now), SegmentItem.name.set(name)]
        actions.append(
            SegmentItem.description.set(description) if description is not None else SegmentItem.description.remove()
        )
        if new_rule:
            actions += [
                SegmentItem.rule.set(rule),
                SegmentItem.rule_version.set(rule_version),
                SegmentItem.status.set("building"),
                SegmentItem.build.set(_fresh_build(rule_version, now)),
            ]
        try:
            if name != item.name or new_rule:
                cat = catalogue(ctx)
                segments = dict(cat.segments or {}) if cat else {}
                _check_name(segments, name, segment_id)
                segments[segment_id] = {"name": name, "rule": rule if new_rule else item.rule, "v": rule_version}
                tx = Tx()
                tx.update(item, actions, SegmentItem.pk.exists(), role="segment")
                _write_catalogue(tx, ctx, cat, segments, now)
                tx.run()
            else:
                item.update(actions=actions, condition=SegmentItem.pk.exists())
        except (Cancelled, UpdateError) as exc:
            if isinstance(exc, UpdateError) and not condition_failed(exc):
                raise
            segment_moved = isinstance(exc, UpdateError) or exc.failed_role("segment")
            if if_match is not None and segment_moved:
                current = _load(ctx, segment_id).version
                if current != if_match:
                    raise stale_version(if_match, current) from None
            continue
        break
    else:
        raise _conflict()
    item.name, item.description, item.updated_at = name, description, now
    if new_rule:
        item.rule, item.rule_version, item.status = rule, rule_version, "building"
        item.build = _fresh_build(rule_version, now)
        _build().start(ctx, segment_id, rule_version)
    return to_segment(item)


def delete(ctx: TenantContext, segment_id: str, if_match: int | None = None) -> None:
    """1 GetItem (the segment) + 1 GetItem (the catalogue) + 1 TransactWriteItems, then
    ``build.drop`` removes its member items in the background. Conditional on the version
    only with If-Match (a build's progress changes it all the time)."""
    for _ in retry.backoff():
        item = _load(ctx, segment_id)
        if if_match is not None and item.version != if_match:
            raise stale_version(if_match, item.version)
        cat = catalogue(ctx)
        tx = Tx()
        tx.delete(item, SegmentItem.pk.exists(), role="segment", add_version_condition=if_match is not None)
        if cat is not None and segment_id in (cat.segments or {}):
            segments = {k: v for k, v in cat.segments.items() if k != segment_id}
            _write_catalogue(tx, ctx, cat, segments, clock.now_iso())
        try:
            tx.run()
            break
        except Cancelled:
            continue  # re-read: gone (404), changed (412 with If-Match) or the catalogue moved
    else:
        raise _conflict()
    _build().drop(ctx, segment_id)


# --- preview ---------------------------------------------------------------------------


def _profiles(ctx: TenantContext, customer_ids: list[str]) -> dict[str, CustomerItem]:
    keys = [(ctx.key("C", cid), PROFILE_SK) for cid in customer_ids]
    return {i.customer_id: i for i in CustomerItem.batch_get(keys)} if keys else {}


def preview(ctx: TenantContext, rule: Any, limit: int = 10, *, profiles: bool = True) -> Preview:
    """The rule evaluated now on the tenant's customers' metrics: Query pages of gsi1
    ``P METRICS`` (the ``facts`` attribute only; about 1 page per 1,000 customers), at most
    PREVIEW_MAX_CUSTOMERS customers or PREVIEW_BUDGET_SECONDS; + 1 BatchGetItem of the
    sample's profiles (``profiles``: names and emails); + 1 GetItem (the tenant's customer
    count) when it stopped early, to extrapolate the count."""
    from crm.segments import rules

    normalized = parse_rule(rule)
    now = clock.now_iso()
    started = time.monotonic()
    evaluated, matched, exact = 0, 0, True
    sample: list[str] = []
    rows = MetricsItem.gsi1.query(
        metrics_index(ctx),
        attributes_to_get=["pk", "sk", "kind", "customer_id", "facts"],
        page_size=PREVIEW_PAGE,
    )
    for row in rows:
        if evaluated >= PREVIEW_MAX_CUSTOMERS or time.monotonic() - started > PREVIEW_BUDGET_SECONDS:
            exact = False
            break
        evaluated += 1
        if rules.evaluate(normalized, row.facts or {}, now):
            matched += 1
            if len(sample) < limit:
                sample.append(row.customer_id)
    count = matched
    if not exact:
        from crm.billing import usage

        total = max(evaluated, usage.live_customers(ctx.tenant_id))
        count = round(matched * total / evaluated) if evaluated else 0
    found = _profiles(ctx, sample) if profiles else {}
    out = []
    for cid in sample:
        p = found.get(cid)
        data = (p.data or {}) if p is not None and p.status == "active" else {}
        out.append(PreviewSample(customer_id=cid, name=data.get("name"), email=data.get("email")))
    return Preview(count=count, sample=out, evaluated=evaluated, exact=exact)


# --- members ---------------------------------------------------------------------------


def members(ctx: TenantContext, segment_id: str, cursor: str | None, limit: int) -> Page:
    """1 GetItem (the segment: 404, and whether it is building) + 1 Query of its
    ``M#`` items, by customer id. Members are provisional while the segment builds."""
    item = _load(ctx, segment_id)
    kind = f"members:{segment_id}"
    after = decode_cursor(cursor, kind)
    pk = segment_pk(ctx, segment_id)
    start = None if after is None else start_key(pk=pk, sk=MEMBER_PREFIX + after)
    rows = list(
        SegmentMemberItem.query(
            pk,
            SegmentMemberItem.sk.startswith(MEMBER_PREFIX),
            limit=limit + 1,
            page_size=limit + 1,
            last_evaluated_key=start,
            consistent_read=True,
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    provisional = item.status != "ready"
    data = [SegmentMember(customer_id=r.customer_id, since=r.since, provisional=provisional) for r in rows]
    return Page(data, encode_cursor(kind, rows[-1].customer_id) if more and rows else None)


# --- a customer's segments -------------------------------------------------------------


def of_customer(ctx: TenantContext, customer_id: str) -> list[CustomerSegment]:
    """1 BatchGetItem (the profile, its METRICS, the catalogue); a merged id: its
    survivor's (+1 BatchGetItem). Names are the catalogue's (a renamed segment shows its
    new name); a deleted segment is left out at once."""
    from crm import ids
    from crm.customers import records

    if not ids.CUSTOMER_ID.match(customer_id):
        raise NotFound(f"customer {customer_id} not found")
    cid = customer_id
    for _ in range(3):
        keys = [(ctx.key("C", cid), PROFILE_SK), (ctx.key("C", cid), METRICS_SK), (ctx.prefix, CATALOGUE_SK)]
        found = {i.sk: i for i in Item.batch_get(keys, consistent_read=True)}
        profile = found.get(PROFILE_SK)
        if not isinstance(profile, CustomerItem):
            raise NotFound(f"customer {customer_id} not found")
        target = records.survivor(profile)
        if target is None:
            break
        cid = target
    else:
        raise NotFound(f"customer {customer_id} not found")
    metrics, cat = found.get(METRICS_SK), found.get(CATALOGUE_SK)
    if profile.status != "active" or not isinstance(metrics, MetricsItem):
        return []
    segments = cat.segments or {} if isinstance(cat, SegmentCatalogueItem) else {}
    out = [
        CustomerSegment(
            id=sid,
            name=segments[sid]["name"],
            since=m.get("since") or "",
            provisional=m.get("v") != segments[sid].get("v"),
        )
        for sid, m in (metrics.memberships or {}).items()
        if sid in segments
    ]
    return sorted(out, key=lambda s: (s.name.casefold(), s.id))


# --- RFM grid --------------------------------------------------------------------------


def rfm_grid(ctx: TenantContext) -> RfmGrid:
    """1 BatchGetItem (the grid's counts, the catalogue's cut points). The grid's counts
    are attributes ``c<r><f>`` ADDed as customers' scores move (crm/segments/maintain.py),
    which PynamoDB does not declare: read raw."""
    from crm import aws, settings
    from crm.segments import rfm

    table = settings.table_name()
    request = {
        table: {
            "Keys": [{"pk": {"S": ctx.prefix}, "sk": {"S": sk}} for sk in (RFM_SK, CATALOGUE_SK)],
            "ConsistentRead": True,
        }
    }
    raw: dict[str, dict] = {}
    for _ in range(5):  # unprocessed keys (throttling) are asked again
        out = aws.dynamodb_client().batch_get_item(RequestItems=request)
        raw.update({i["sk"]["S"]: i for i in out.get("Responses", {}).get(table, [])})
        request = out.get("UnprocessedKeys") or {}
        if not request:
            break
    grid_item, cat = raw.get(RFM_SK, {}), raw.get(CATALOGUE_SK, {})
    grid = [[max(0, int(grid_item.get(f"c{r}{f}", {}).get("N", "0"))) for f in range(1, 6)] for r in range(1, 6)]
    names = [[rfm.named(r, f) for f in range(1, 6)] for r in range(1, 6)]
    counts: dict[str, int] = {name: 0 for name in _named_order(rfm)}
    for r in range(5):
        for f in range(5):
            counts[names[r][f]] = counts.get(names[r][f], 0) + grid[r][f]
    cuts = json.loads(cat["cuts"]["S"]) if "S" in cat.get("cuts", {}) else None
    return RfmGrid(
        grid=grid,
        names=names,
        segments=[RfmSegmentCount(name=n, count=c) for n, c in counts.items()],
        customers=sum(map(sum, grid)),
        cuts=cuts or dict(rfm.DEFAULT_CUTS),
        default_cuts=cuts is None,
        cuts_at=cat.get("cuts_at", {}).get("S"),
    )


def _named_order(rfm: Any) -> list[str]:
    """The named RFM segments in the documented table's order (rfm.NAMED), each once."""
    table = rfm.NAMED
    if isinstance(table, dict):
        values = list(table.keys()) if all(isinstance(k, str) for k in table) else list(table.values())
    else:
        values = [row[0] if isinstance(row, (tuple, list)) else row for row in table]
    return list(dict.fromkeys(v for v in values if isinstance(v, str)))
