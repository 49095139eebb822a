"""Campaigns: CRUD and the state machine (docs/campaigns.md).

::

    draft --send--> sending          (send_at absent or past)
    draft --send--> scheduled --(schedule, send_at reached)--> sending
    sending --pause--> paused --resume--> sending
    sending --(audience resolved, every recipient final)--> sent
    draft | scheduled | sending | paused --cancel--> cancelled

Any other transition is 409 ``invalid_transition``. PATCH only while draft; DELETE only
draft, sent or cancelled. Storage: ``T#<tenant>#CAMPAIGNS`` / ``<campaign id>`` (CampaignItem);
while scheduled or sending it is on gsi2 ``CAMPAIGN_DUE`` / ``<when>#<tenant>#<id>``
(when to start it, or when to check a send for a stall: functions/campaigns.py).
Each transition is one conditional UpdateItem on the status read, so two racing
requests (or a request and the schedule) cannot both win.
"""

from __future__ import annotations

import re
from typing import Any

from ulid import ULID

from crm import clock
from crm.context import TenantContext
from crm.email import audience, senders, sending
from crm.email.schemas_campaigns import (
    Campaign,
    CampaignCreate,
    CampaignPatch,
    CampaignProgress,
    CampaignStats,
)
from crm.errors import Conflict, Invalid, NotFound, PreconditionFailed, stale_version
from crm.paging import Page, by_sort_key
from crm.storage import CampaignItem, condition_failed

CAMPAIGN_ID = re.compile(r"^cmp_[0-9A-HJKMNP-TV-Z]{26}$")
TRANSITIONS = {
    "send": ("draft",),
    "pause": ("sending",),
    "resume": ("paused",),
    "cancel": ("draft", "scheduled", "sending", "paused"),
}
DELETABLE = ("draft", "sent", "cancelled")


def new_id() -> str:
    return f"cmp_{ULID()}"


# --- conversion -----------------------------------------------------------------------------


def rate(item: CampaignItem, now: Any = None) -> float:
    """Emails sent per second since the send started, time paused left out."""
    if not item.started_at:
        return 0.0
    now = now or clock.now()
    end = clock.parse(item.finished_at) if item.finished_at else now
    seconds = (end - clock.parse(item.started_at)).total_seconds() - float(item.paused_seconds or 0)
    if item.status == "paused" and item.paused_at:
        seconds -= (now - clock.parse(item.paused_at)).total_seconds()
    return round(int(item.sent or 0) / max(1.0, seconds), 2)


def to_campaign(item: CampaignItem) -> Campaign:
    n = lambda v: max(0, int(v or 0))
    return Campaign(
        id=item.campaign_id,
        name=item.name,
        template_id=item.template_id,
        segment_id=item.segment_id,
        sender=item.sender,
        status=item.status,  # type: ignore[arg-type]
        paused_reason=item.paused_reason if item.status == "paused" else None,
        send_at=item.send_at,
        progress=CampaignProgress(
            total=n(item.total),
            sent=n(item.sent),
            skipped=n(item.skipped),
            failed=n(item.failed),
            deferred=n(item.deferred),
            rate=rate(item),
            resolved=bool((item.audience or {}).get("resolved")),
        ),
        stats=CampaignStats(
            delivered=n(item.delivered),
            bounced=n(item.bounced),
            complained=n(item.complained),
            opened=n(item.opened),
            clicked=n(item.clicked),
            unsubscribed=n(item.unsubscribed),
        ),
        created_at=item.created_at,
        updated_at=item.updated_at,
        started_at=item.started_at,
        finished_at=item.finished_at,
        version=int(item.version or 0),
    )


# --- reads ----------------------------------------------------------------------------------


def _not_found(campaign_id: str) -> NotFound:
    return NotFound(f"campaign {campaign_id} not found", code="campaign_not_found")


def load(ctx: TenantContext, campaign_id: str) -> CampaignItem:
    if not CAMPAIGN_ID.match(campaign_id):
        raise _not_found(campaign_id)
    try:
        item = CampaignItem.get(sending.campaigns_pk(ctx), campaign_id, consistent_read=True)
    except CampaignItem.DoesNotExist:
        raise _not_found(campaign_id) from None
    if not item.name:  # a counter ADDed after a delete: no campaign
        raise _not_found(campaign_id)
    return item


def get(ctx: TenantContext, campaign_id: str) -> Campaign:
    """1 GetItem: the campaign, its progress and stats."""
    return to_campaign(load(ctx, campaign_id))


def list_(ctx: TenantContext, cursor: str | None, limit: int) -> Page:
    """1 Query of ``P CAMPAIGNS`` (by id: oldest first)."""
    rows, nxt = by_sort_key(CampaignItem, sending.campaigns_pk(ctx), "campaign", CAMPAIGN_ID, cursor, limit)
    return Page([to_campaign(r) for r in rows if r.name], nxt)


# --- checks -----------------------------------------------------------------------------------


def _references(ctx: TenantContext, template_id: str | None, segment_id: str | None) -> dict[str, Any]:
    """The template and segment named (1 BatchGetItem); 422 naming the missing one."""
    from crm.segments.membership import segment_pk
    from crm.storage import Item, SegmentItem, TemplateItem

    keys = []
    if template_id:
        keys.append((ctx.key(sending.TEMPLATES), template_id))
    if segment_id:
        keys.append((segment_pk(ctx, segment_id), "SEGMENT"))
    found = {type(i): i for i in Item.batch_get(keys, consistent_read=True)} if keys else {}
    template, segment = found.get(TemplateItem), found.get(SegmentItem)
    if template_id and template is None:
        raise Invalid(f"template {template_id} does not exist", field="template_id", code="template_not_found")
    if segment_id and (segment is None or not getattr(segment, "name", None)):
        raise Invalid(f"segment {segment_id} does not exist", field="segment_id", code="segment_not_found")
    return {"template": template, "segment": segment}


def _check_sender(ctx: TenantContext, sender: str | None) -> None:
    if sender and not senders.verified(ctx, sender):
        raise Invalid(
            f"sender {sender} is not a verified identity of the tenant (POST /v1/email/senders)",
            field="sender",
            code="sender_not_verified",
        )


# --- writes -----------------------------------------------------------------------------------


def create(ctx: TenantContext, body: CampaignCreate) -> Campaign:
    """1 BatchGetItem (template, segment) [+ 1 BatchGetItem: the sender] + 1 PutItem."""
    _references(ctx, body.template_id, body.segment_id)
    _check_sender(ctx, body.sender)
    now = clock.now_iso()
    item = CampaignItem(
        sending.campaigns_pk(ctx),
        new_id(),
        name=body.name,
        template_id=body.template_id,
        segment_id=body.segment_id,
        sender=body.sender,
        status="draft",
        audience={},
        created_at=now,
        updated_at=now,
    )
    item.campaign_id = item.sk
    item.save(CampaignItem.pk.does_not_exist())
    return to_campaign(item)


def _stale(if_match: int | None, item: CampaignItem) -> None:
    if if_match is not None and if_match != int(item.version or 0):
        raise stale_version(if_match, int(item.version or 0))


def _invalid_transition(item: CampaignItem, action: str) -> Conflict:
    allowed = [a for a, states in TRANSITIONS.items() if item.status in states]
    return Conflict(
        f"cannot {action} a campaign that is {item.status}",
        code="invalid_transition",
        campaign_status=item.status,
        allowed=allowed,
    )


def update(ctx: TenantContext, campaign_id: str, patch: CampaignPatch, if_match: int | None) -> Campaign:
    """1 GetItem + checks + 1 conditional PutItem (version and status ``draft``)."""
    item = load(ctx, campaign_id)
    _stale(if_match, item)
    if item.status != "draft":
        raise _invalid_transition(item, "change")
    given = patch.model_fields_set
    _references(
        ctx,
        patch.template_id if "template_id" in given else None,
        patch.segment_id if "segment_id" in given else None,
    )
    if "sender" in given:
        _check_sender(ctx, patch.sender)
        item.sender = patch.sender
    for name in ("name", "template_id", "segment_id"):
        value = getattr(patch, name)
        if name in given and value is not None:
            setattr(item, name, value)
    item.updated_at = clock.now_iso()
    try:
        item.save(CampaignItem.status == "draft")
    except Exception as exc:
        if condition_failed(exc):
            raise PreconditionFailed("the campaign changed meanwhile; read it again", code="stale_version") from None
        raise
    return to_campaign(item)


def delete(ctx: TenantContext, campaign_id: str, if_match: int | None) -> None:
    """1 GetItem + 1 conditional DeleteItem (draft, sent or cancelled). Its send records
    expire by TTL."""
    item = load(ctx, campaign_id)
    _stale(if_match, item)
    if item.status not in DELETABLE:
        raise Conflict(
            f"only a draft, sent or cancelled campaign can be deleted; this one is {item.status} (cancel it first)",
            code="invalid_transition",
            campaign_status=item.status,
        )
    try:
        item.delete(CampaignItem.status.is_in(*DELETABLE))
    except Exception as exc:
        if condition_failed(exc):
            raise PreconditionFailed("the campaign changed meanwhile; read it again", code="stale_version") from None
        raise


def _transition(item: CampaignItem, action: str, actions: list, extra: Any = None) -> None:
    """One conditional UpdateItem: the status is still the one read (and the version)."""
    condition = CampaignItem.status == item.status
    if extra is not None:
        condition &= extra
    try:
        item.update(actions=actions, condition=condition)
    except Exception as exc:
        if condition_failed(exc):
            fresh = CampaignItem.get(item.pk, item.sk, consistent_read=True)
            raise _invalid_transition(fresh, action) from None
        raise


def send(ctx: TenantContext, campaign_id: str, send_at: Any = None) -> Campaign:
    """draft -> sending (now) or scheduled (``send_at`` in the future). 409 unless draft,
    or if the template, the segment or a verified sender is missing now."""
    item = load(ctx, campaign_id)
    if item.status not in TRANSITIONS["send"]:
        raise _invalid_transition(item, "send")
    try:
        found = _references(ctx, item.template_id, item.segment_id)
    except Invalid as exc:
        raise Conflict(exc.detail, field=exc.field, code=exc.extra.get("code", "reference_missing")) from None
    segment = found["segment"]
    if getattr(segment, "status", None) != "ready":
        # its members are still being written: the audience would be whoever is there so far
        raise Conflict(
            f"segment {item.segment_id} is {getattr(segment, 'status', None)}: send once it is ready "
            "(GET /v1/segments/{id})",
            field="segment_id",
            code="segment_not_ready",
        )
    from crm.storage import EmailSettingsItem

    try:
        settings_item: Any = EmailSettingsItem.get(ctx.prefix, sending.EMAIL_SETTINGS, consistent_read=True)
    except EmailSettingsItem.DoesNotExist:
        settings_item = None
    kind = getattr(found["template"], "template_kind", None) or "marketing"
    if kind == "marketing" and not getattr(settings_item, "postal_address", None):
        raise Conflict(
            "a marketing email must show the sender's postal address: set it first (PUT /v1/email/settings)",
            field="postal_address",
            code="postal_address_missing",
        )
    sender: str | None = item.sender or getattr(settings_item, "default_sender", None)
    if not sender:
        raise Conflict(
            "the campaign has no sender and the tenant no default sender (PUT /v1/email/settings)",
            field="sender",
            code="no_sender",
        )
    if not senders.verified(ctx, sender):
        raise Conflict(
            f"sender {sender} is not verified: sending from it is refused (GET /v1/email/senders)",
            field="sender",
            code="sender_not_verified",
        )
    now = clock.now()
    at = clock.iso(now)
    common = [CampaignItem.updated_at.set(at), CampaignItem.template_kind.set(kind)]
    if send_at is not None and send_at > now:
        when = clock.iso(send_at)
        actions = [
            CampaignItem.status.set("scheduled"),
            CampaignItem.send_at.set(when),
            CampaignItem.gsi2pk.set(audience.DUE_PK),
            CampaignItem.gsi2sk.set(audience.due_sk(when, ctx, campaign_id)),
            *common,
        ]
        _transition(item, "send", actions)
        return to_campaign(item)
    _start(ctx, item, common, "send")
    return to_campaign(item)


def _start(ctx: TenantContext, item: CampaignItem, extra_actions: list, action: str) -> None:
    """-> sending: the audience from its start, on the due index for stall checks; then
    the first page's message. A crash between the two is picked up by the schedule."""
    from crm import queues

    at = clock.now_iso()
    actions = [
        CampaignItem.status.set("sending"),
        CampaignItem.started_at.set(at),
        CampaignItem.audience.set({"cursor": None, "pages": 0, "resolved": False, "at": at}),
        CampaignItem.audience_pages.set(0),
        CampaignItem.progress_at.set(at),
        CampaignItem.gsi2pk.set(audience.DUE_PK),
        CampaignItem.gsi2sk.set(audience.next_check(ctx, item.campaign_id)),
        *extra_actions,
    ]
    _transition(item, action, actions)
    queues.send("email", [audience.page_message(ctx, item)])


def start_scheduled(ctx: TenantContext, campaign_id: str) -> bool:
    """scheduled -> sending (the schedule, once ``send_at`` has come); False if it is
    no longer scheduled (cancelled meanwhile, or another run started it)."""
    from crm.errors import DomainError

    try:
        item = load(ctx, campaign_id)
    except NotFound:
        return False
    if item.status != "scheduled":
        return False
    try:
        _start(ctx, item, [CampaignItem.updated_at.set(clock.now_iso())], "start")
    except DomainError:
        return False
    return True


def pause(ctx: TenantContext, campaign_id: str) -> Campaign:
    """sending -> paused: batches in flight see it at their next read and come back
    later (nothing is re-sent on resume: every recipient has one send record)."""
    item = load(ctx, campaign_id)
    if item.status not in TRANSITIONS["pause"]:
        raise _invalid_transition(item, "pause")
    at = clock.now_iso()
    _transition(
        item,
        "pause",
        [
            CampaignItem.status.set("paused"),
            CampaignItem.paused_at.set(at),
            CampaignItem.paused_reason.remove(),
            CampaignItem.updated_at.set(at),
            CampaignItem.gsi2pk.remove(),
            CampaignItem.gsi2sk.remove(),
        ],
    )
    return to_campaign(item)


def resume(ctx: TenantContext, campaign_id: str) -> Campaign:
    """paused -> sending; the parked batches come back spread over a minute (jittered)
    and draw from the token buckets: no thundering herd."""
    item = load(ctx, campaign_id)
    if item.status not in TRANSITIONS["resume"]:
        raise _invalid_transition(item, "resume")
    from crm.billing import limits
    from crm.email import allowance

    plan = limits.plan_of(ctx, fresh=True)
    if allowance.remaining(ctx, plan) == 0:  # paused by the allowance, or would be at once
        raise allowance.refusal(ctx, plan)
    now = clock.now()
    paused = (now - clock.parse(item.paused_at)).total_seconds() if item.paused_at else 0.0
    _transition(
        item,
        "resume",
        [
            CampaignItem.status.set("sending"),
            CampaignItem.paused_seconds.add(round(max(0.0, paused), 3)),
            CampaignItem.paused_at.remove(),
            CampaignItem.paused_reason.remove(),
            CampaignItem.updated_at.set(clock.iso(now)),
            CampaignItem.gsi2pk.set(audience.DUE_PK),
            CampaignItem.gsi2sk.set(audience.next_check(ctx, campaign_id)),
        ],
    )
    if sending.finish_if_done(ctx, campaign_id):
        item = load(ctx, campaign_id)
    return to_campaign(item)


def cancel(ctx: TenantContext, campaign_id: str) -> Campaign:
    """-> cancelled (final): batches in flight drop their work at their next read; a
    recipient whose SES call is under way is still sent (and recorded)."""
    item = load(ctx, campaign_id)
    if item.status not in TRANSITIONS["cancel"]:
        raise _invalid_transition(item, "cancel")
    at = clock.now_iso()
    _transition(
        item,
        "cancel",
        [
            CampaignItem.status.set("cancelled"),
            CampaignItem.finished_at.set(at),
            CampaignItem.updated_at.set(at),
            CampaignItem.gsi2pk.remove(),
            CampaignItem.gsi2sk.remove(),
        ],
    )
    return to_campaign(item)
