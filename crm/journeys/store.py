"""Journeys: CRUD of the definitions (docs/journeys.md). Storage:
``T#<tenant>#JOURNEYS`` / ``<journey id>`` (JourneyItem). Saving checks what the
definition names (templates, the trigger's segment, senders: 422 naming the step), and a
birthday journey that becomes active queues the backfill of its customers' schedules
(crm/journeys/runner.py)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from ulid import ULID

from crm import clock
from crm.context import TenantContext
from crm.errors import Conflict, Invalid, NotFound, PreconditionFailed, stale_version
from crm.journeys.api_schemas import Journey, JourneyPatch, JourneyStats
from crm.journeys.schemas import BirthdayTrigger, JourneyDefinition, SegmentEnteredTrigger, SendEmailStep
from crm.paging import Page, by_sort_key
from crm.storage import JourneyItem, condition_failed

JOURNEY_ID = re.compile(r"^jrn_[0-9A-HJKMNP-TV-Z]{26}$")
JOURNEYS = "JOURNEYS"
# archived is the end: its runs ended; a new journey is made instead
TRANSITIONS = {
    "draft": {"draft", "active", "archived"},
    "active": {"active", "paused", "archived"},
    "paused": {"paused", "active", "archived", "draft"},
    "archived": {"archived"},
}
DELETABLE = ("draft", "paused", "archived")


def pk(ctx: TenantContext) -> str:
    return ctx.key(JOURNEYS)


def _not_found(journey_id: str) -> NotFound:
    return NotFound(f"journey {journey_id} not found", code="journey_not_found")


def definition_of(item: JourneyItem) -> JourneyDefinition:
    """The stored definition (validated at save), as the planner reads it."""
    return JourneyDefinition.model_validate_json(_json(item.definition), strict=True)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def dump(spec: JourneyDefinition) -> dict[str, Any]:
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def to_journey(item: JourneyItem) -> Journey:
    spec = dict(item.definition or {})
    started, completed, exited = int(item.started or 0), int(item.completed or 0), int(item.exited or 0)
    return Journey(
        id=item.journey_id,
        name=item.name,
        status=item.status,  # type: ignore[arg-type]
        trigger=spec.get("trigger") or {},
        steps=spec.get("steps") or [],
        exit=spec.get("exit") or {},
        reentry=spec.get("reentry") or {},
        stats=JourneyStats(
            started=started,
            active=max(0, started - completed - exited),
            completed=completed,
            exited=exited,
            emails=int(item.emails or 0),
        ),
        created_at=item.created_at,
        updated_at=item.updated_at,
        version=int(item.version or 0),
    )


def load(ctx: TenantContext, journey_id: str) -> JourneyItem:
    if not JOURNEY_ID.match(journey_id):
        raise _not_found(journey_id)
    try:
        item = JourneyItem.get(pk(ctx), journey_id, consistent_read=True)
    except JourneyItem.DoesNotExist:
        raise _not_found(journey_id) from None
    if not item.name:  # a counter ADDed after a delete: no journey
        raise _not_found(journey_id)
    return item


def get(ctx: TenantContext, journey_id: str) -> Journey:
    """1 GetItem."""
    return to_journey(load(ctx, journey_id))


def all_of(ctx: TenantContext) -> list[tuple[JourneyItem, JourneyDefinition]]:
    """The tenant's journeys, as runs follow them (only an active one starts runs; a paused
    or draft one's due runs hold, an archived one's end): 1 Query of ``P JOURNEYS``."""
    return [(item, definition_of(item)) for item in JourneyItem.query(pk(ctx), consistent_read=True) if item.name]


def list_(ctx: TenantContext, cursor: str | None, limit: int) -> Page:
    """1 Query of ``P JOURNEYS`` (by id: oldest first)."""
    rows, nxt = by_sort_key(JourneyItem, pk(ctx), "journey", JOURNEY_ID, cursor, limit)
    return Page([to_journey(r) for r in rows if r.name], nxt)


# --- checks -------------------------------------------------------------------------------


def check_references(ctx: TenantContext, spec: JourneyDefinition) -> None:
    """Every template a step sends and the trigger's segment exist, every sender is
    verified (1 BatchGetItem, + the senders' reads): 422 naming the step otherwise."""
    from crm.email import senders, sending
    from crm.segments.membership import segment_pk
    from crm.storage import Item, SegmentItem, TemplateItem

    keys: list[tuple[str, str]] = [(ctx.key(sending.TEMPLATES), t) for t in sorted(spec.template_ids())]
    if isinstance(spec.trigger, SegmentEnteredTrigger):
        keys.append((segment_pk(ctx, spec.trigger.segment_id), "SEGMENT"))
    found = list(Item.batch_get(keys, consistent_read=True)) if keys else []
    templates = {i.sk for i in found if isinstance(i, TemplateItem)}
    segments = {getattr(i, "segment_id", None) for i in found if isinstance(i, SegmentItem) and i.name}
    for n, step in enumerate(spec.steps):
        if not isinstance(step, SendEmailStep):
            continue
        if step.template_id not in templates:
            raise Invalid(f"steps[{n}]: template {step.template_id} does not exist",
                          field=f"steps[{n}].template_id", code="template_not_found")  # fmt: skip
        if step.sender and not senders.verified(ctx, step.sender):
            raise Invalid(f"steps[{n}]: sender {step.sender} is not a verified identity of the tenant",
                          field=f"steps[{n}].sender", code="sender_not_verified")  # fmt: skip
    if isinstance(spec.trigger, SegmentEnteredTrigger) and spec.trigger.segment_id not in segments:
        raise Invalid(f"trigger: segment {spec.trigger.segment_id} does not exist",
                      field="trigger.segment_id", code="segment_not_found")  # fmt: skip


def _stale(if_match: int | None, item: JourneyItem) -> None:
    if if_match is not None and if_match != int(item.version or 0):
        raise stale_version(if_match, int(item.version or 0))


def _became_active(spec: JourneyDefinition, before: str | None) -> bool:
    return spec.status == "active" and before != "active"


def _activated(ctx: TenantContext, item: JourneyItem, spec: JourneyDefinition, before: str | None) -> None:
    """A birthday journey that becomes active schedules its customers' next birthdays
    (a background job over the tenant's customers: crm/journeys/runner.py)."""
    if _became_active(spec, before) and isinstance(spec.trigger, BirthdayTrigger):
        from crm.journeys import runner

        runner.queue_backfill(ctx, item.journey_id)


# --- writes -------------------------------------------------------------------------------


def _plan_allows(ctx: TenantContext, spec: JourneyDefinition) -> None:
    """Running journeys is a plan feature (docs/billing.md): a draft can be written on
    any plan, activating one needs a plan with ``journeys`` (402 ``feature_not_in_plan``)."""
    if spec.status == "active":
        from crm.billing import limits

        limits.require_feature(ctx, "journeys")


def create(ctx: TenantContext, spec: JourneyDefinition) -> Journey:
    """1 BatchGetItem (templates, segment) [+ the senders' reads] + 1 PutItem."""
    _plan_allows(ctx, spec)
    check_references(ctx, spec)
    now = clock.now_iso()
    journey_id = f"jrn_{ULID()}"
    item = JourneyItem(
        pk(ctx),
        journey_id,
        journey_id=journey_id,
        name=spec.name,
        status=spec.status,
        definition=dump(spec),
        created_at=now,
        updated_at=now,
    )
    item.save(JourneyItem.pk.does_not_exist())
    _activated(ctx, item, spec, None)
    return to_journey(item)


def update(ctx: TenantContext, journey_id: str, patch: JourneyPatch, if_match: int | None) -> Journey:
    """1 GetItem + checks + 1 PutItem conditional on the version read. A change of the
    steps reaches runs at their next due step (a run's step index stays)."""
    item = load(ctx, journey_id)
    _stale(if_match, item)
    before = item.status
    merged = dict(item.definition or {})
    merged["name"], merged["status"] = item.name, item.status
    merged.update(patch.model_dump(mode="json", by_alias=True, exclude_none=True, include=patch.model_fields_set))
    try:
        spec = JourneyDefinition.model_validate_json(_json(merged), strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise Invalid(f"{where}: {first.get('msg')}" if where else str(first.get("msg")), field=where or None) from None
    if spec.status not in TRANSITIONS[before]:
        raise Conflict(f"a journey that is {before} cannot become {spec.status}", code="invalid_transition",
                       journey_status=before, allowed=sorted(TRANSITIONS[before]))  # fmt: skip
    if spec.status != before:
        _plan_allows(ctx, spec)
    check_references(ctx, spec)
    item.name, item.status, item.definition = spec.name, spec.status, dump(spec)
    item.updated_at = clock.now_iso()
    try:
        item.save()  # conditional on the version read
    except Exception as exc:
        if condition_failed(exc):
            raise PreconditionFailed("the journey changed meanwhile; read it again", code="stale_version") from None
        raise
    _activated(ctx, item, spec, before)
    return to_journey(item)


def delete(ctx: TenantContext, journey_id: str, if_match: int | None) -> None:
    """1 GetItem + 1 conditional DeleteItem (not while active: pause or archive it
    first). Its runs end at their next due time (reason ``deleted``)."""
    item = load(ctx, journey_id)
    _stale(if_match, item)
    if item.status not in DELETABLE:
        raise Conflict("an active journey cannot be deleted: pause or archive it first",
                       code="invalid_transition", journey_status=item.status)  # fmt: skip
    try:
        item.delete(JourneyItem.status.is_in(*DELETABLE))
    except Exception as exc:
        if condition_failed(exc):
            raise PreconditionFailed("the journey changed meanwhile; read it again", code="stale_version") from None
        raise


def count(ctx: TenantContext, journey_id: str, **adds: int) -> None:
    """ADD the run counters (1 UpdateItem; the journey's version untouched); nothing
    once the journey is deleted."""
    actions = [getattr(JourneyItem, k).add(v) for k, v in adds.items() if v]
    if not actions:
        return
    try:
        JourneyItem._get_connection().update_item(
            pk(ctx), range_key=journey_id, actions=actions, condition=JourneyItem.name.exists()
        )
    except Exception as exc:
        if not condition_failed(exc):
            raise
