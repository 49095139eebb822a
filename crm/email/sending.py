"""The exactly-once send of one recipient batch (docs/campaigns.md, "Exactly once").

A batch message names a campaign and up to :data:`BATCH` customers. For each one:

1. **read** (per batch): 1 BatchGetItem of the campaign, its template, the tenant's
   email settings, the tenant and its plan; 1 BatchGetItem of each recipient's profile,
   segment metrics, points book, frequency cap and send record (5 keys x 20 = 100, the
   BatchGetItem limit); 1 BatchGetItem of the suppression entries of their addresses.
2. **decide** (:func:`decide`, pure): ``done`` (a final record: sent, skipped, failed),
   ``wait`` (another worker holds a live lease), ``skip`` (no consent, suppressed, no
   address, erased), ``defer`` (frequency cap), ``send`` (new, deferred and due, or a
   ``sending`` record whose lease expired: a takeover).
3. **tokens** (per batch): the sends take tokens from the tenant's and the account's
   buckets (crm/email/throttle.py); what does not get one is re-queued with a delay.
4. per send: **acquire** (1 TransactWriteItems: the record ``sending`` with a lease,
   conditional on the state read, with the frequency cap's reservation), the **SES
   call**, **complete** (1 TransactWriteItems: the record ``sent`` with SES's message id,
   conditional on still holding the attempt, and the campaign's ``sent`` ADD).

Every counter (``sent``, ``skipped``, ``failed``, ``deferred``) moves in the
transaction that moves a record into (or out of) that state, conditional on the state
read: a redelivered batch, a duplicate message or two workers on one recipient can
never count twice. The campaign is ``sent`` once its audience is resolved and
``sent + skipped + failed == total`` (:func:`finish_if_done`, a conditional update).

The step functions (:func:`acquire`, :func:`ses_send`, :func:`complete`) are module
attributes looked up at each call, so the crash test replaces them to kill the sender at
every step.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from crm import clock
from crm.context import TenantContext

BATCH = 20  # recipients per message: 5 keys each in one BatchGetItem (at most 100 keys)
PAUSED_RECHECK_SECONDS = 60  # a paused campaign's batch comes back after this (+ jitter)
STATUS_RECHECK_SECONDS = 0.5  # a batch re-reads its campaign's status this often while sending
RECORD_TTL_DAYS = 400
TEMPLATES, CAMPAIGNS, EMAIL_SETTINGS, CAP_SK = "TEMPLATES", "CAMPAIGNS", "EMAIL", "C#EMAILCAP"
FINAL = frozenset({"sent", "skipped", "failed"})
MAX_SQS_DELAY = 900


def lease_seconds() -> float:
    """How long a ``sending`` record belongs to the worker that wrote it: longer than the
    email_work Lambda's timeout (300 s), so a record is taken over only once its worker
    is surely gone (``RAPPORT_EMAIL_LEASE_SECONDS``; the crash test shortens it)."""
    return float(os.environ.get("RAPPORT_EMAIL_LEASE_SECONDS") or 330)


def record_pk(ctx: TenantContext, campaign_id: str) -> str:
    return ctx.key("SEND", campaign_id)


def record_sk(customer_id: str) -> str:
    return f"R#{customer_id}"


def campaigns_pk(ctx: TenantContext) -> str:
    return ctx.key(CAMPAIGNS)


# --- the decision (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the decision sees about one recipient (all read in the batch's BatchGetItems)."""

    customer_id: str
    profile_status: str | None = None  # None: no profile
    email: str | None = None
    consent: str | None = None  # profile data consent.email.status
    suppressed: bool = False
    last_marketing_at: str | None = None  # the frequency cap's item
    record_state: str | None = None  # None: no send record yet
    record_attempt: int = 0
    lease_until: str | None = None
    until: str | None = None  # a deferred record's time


Action = Literal["send", "skip", "defer", "wait", "done"]


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str | None = None
    at: str | None = None  # defer: not before; wait: the lease's end
    takeover: bool = False  # send: a ``sending`` record whose lease expired


def decide(f: Facts, *, marketing: bool, cap_hours: float, now: datetime) -> Decision:
    """What to do with one recipient now. Consent and suppression are checked at every
    send, a takeover's included; the frequency cap only before the first send (a
    takeover's cap was reserved by its first attempt); transactional is exempt from
    consent and the cap, never from suppression."""
    if f.record_state in FINAL:
        return Decision("done")
    takeover = False
    if f.record_state == "sending":
        if f.lease_until and clock.parse(f.lease_until) > now:
            return Decision("wait", at=f.lease_until)
        takeover = True
    if f.profile_status is None:
        return Decision("skip", "not_found")
    if f.profile_status != "active":
        return Decision("skip", f.profile_status)  # erased | merged
    if not f.email:
        return Decision("skip", "no_address")
    if marketing and f.consent != "granted":
        return Decision("skip", "no_consent")
    if f.suppressed:
        return Decision("skip", "suppressed")
    if marketing and not takeover and cap_hours > 0 and f.last_marketing_at:
        allowed = clock.parse(f.last_marketing_at) + timedelta(hours=cap_hours)
        if allowed > now:
            return Decision("defer", "frequency_cap", at=clock.iso(allowed))
    return Decision("send", takeover=takeover)


def delay_until(at: str, now: datetime) -> int:
    """SQS delay to ``at``: at most 900 s (SQS's maximum), so a longer wait is a chain of
    re-queues, each checking again."""
    seconds = (clock.parse(at) - now).total_seconds()
    return max(1, min(MAX_SQS_DELAY, int(seconds) + 1))


# --- the batch's context ------------------------------------------------------------------


@dataclass
class Context:
    """The batch-level reads (1 BatchGetItem)."""

    campaign: Any
    template: Any
    settings: Any
    tenant_name: str
    plan: Any
    tenant_status: str = "active"

    @property
    def marketing(self) -> bool:
        return (self.campaign.template_kind or getattr(self.template, "template_kind", "marketing")) != "transactional"


def load_context(ctx: TenantContext, campaign_id: str, template_id: str) -> Context | None:
    from crm.billing import plans
    from crm.storage import BillingItem, CampaignItem, EmailSettingsItem, Item, TemplateItem, TenantItem

    keys = [
        (campaigns_pk(ctx), campaign_id),
        (ctx.key(TEMPLATES), template_id),
        (ctx.prefix, EMAIL_SETTINGS),
        (ctx.prefix, "TENANT"),
        (ctx.prefix, "BILLING"),
    ]
    found = list(Item.batch_get(keys, consistent_read=True))
    by = {type(i): i for i in found}
    campaign = by.get(CampaignItem)
    if campaign is None:
        return None
    billing = by.get(BillingItem)
    tenant = by.get(TenantItem)
    return Context(
        campaign=campaign,
        template=by.get(TemplateItem),
        settings=by.get(EmailSettingsItem),
        tenant_name=getattr(tenant, "name", "") or "",
        tenant_status=getattr(tenant, "status", "active") or "active",
        plan=plans.get(getattr(billing, "plan", None)),
    )


def current_status(ctx: TenantContext, campaign_id: str) -> str | None:
    """The campaign's status now (1 GetItem of one attribute), None once deleted."""
    from crm.storage import CampaignItem

    try:
        item = CampaignItem.get(
            campaigns_pk(ctx), campaign_id, consistent_read=True, attributes_to_get=["status", "pk", "sk", "kind"]
        )
    except CampaignItem.DoesNotExist:
        return None
    return str(item.status)


def tenant_rate(plan: Any) -> float:
    """The plan's emails per second (x ``RAPPORT_RATE_LIMIT_SCALE``, as the API's limits)."""
    from crm.billing import ratelimit

    return float(plan.limits.email_per_second) * ratelimit.scale()


# --- the recipients' reads ------------------------------------------------------------------


@dataclass
class Recipient:
    facts: Facts
    profile: Any = None
    metrics: Any = None
    loyalty: Any = None


def read_recipients(ctx: TenantContext, campaign_id: str, customer_ids: list[str]) -> dict[str, Recipient]:
    """1 BatchGetItem (profile, metrics, points book, cap, record: 5 keys a recipient) +
    1 BatchGetItem of the suppression entries of the addresses found."""
    from crm.customers import records
    from crm.email import suppression
    from crm.storage import (
        CustomerItem,
        EmailCapItem,
        Item,
        LoyaltyItem,
        MetricsItem,
        SendItem,
        SuppressionItem,
    )

    keys = []
    for cid in customer_ids:
        pk = records.profile_pk(ctx, cid)
        keys += [(pk, records.PROFILE), (pk, "METRICS"), (pk, "LOYALTY"), (pk, CAP_SK)]
        keys.append((record_pk(ctx, campaign_id), record_sk(cid)))
    rows: dict[str, dict[type, Any]] = {cid: {} for cid in customer_ids}
    for item in Item.batch_get(keys, consistent_read=True):
        owner = getattr(item, "customer_id", None)
        if owner in rows:
            rows[str(owner)][type(item)] = item
    digests: dict[str, str] = {}
    for cid, row in rows.items():
        profile = row.get(CustomerItem)
        email = ((profile.data or {}).get("email") if profile is not None else None) or None
        if email:
            digests[cid] = suppression.digest(email)
    suppressed: set[str] = set()
    if digests:
        spk = suppression.pk(ctx)
        found = {
            i.sk for i in SuppressionItem.batch_get([(spk, d) for d in set(digests.values())], consistent_read=True)
        }
        suppressed = {cid for cid, d in digests.items() if d in found}
    out = {}
    for cid in customer_ids:
        row = rows[cid]
        profile, record, cap = row.get(CustomerItem), row.get(SendItem), row.get(EmailCapItem)
        data = (profile.data or {}) if profile is not None else {}
        consent = ((data.get("consent") or {}).get("email") or {}).get("status")
        facts = Facts(
            customer_id=cid,
            profile_status=None if profile is None else profile.status,
            email=data.get("email") or None,
            consent=consent,
            suppressed=cid in suppressed,
            last_marketing_at=getattr(cap, "last_marketing_at", None),
            record_state=getattr(record, "state", None),
            record_attempt=int(getattr(record, "attempt", 0) or 0),
            lease_until=getattr(record, "lease_until", None),
            until=getattr(record, "until", None),
        )
        out[cid] = Recipient(facts, profile, row.get(MetricsItem), row.get(LoyaltyItem))
    return out


def customer_json(recipient: Recipient) -> dict[str, Any]:
    """The customer as ``GET /v1/customers/{id}`` returns it (with ``metrics``), plus
    ``loyalty`` {balance, tier} when the customer has a points book."""
    from crm.customers import records
    from crm.segments.view import metrics_block

    customer = records.to_customer(recipient.profile)
    if recipient.metrics is not None:
        customer.metrics = metrics_block(recipient.metrics)
    out = customer.model_dump(mode="json")
    if recipient.loyalty is not None:
        book = recipient.loyalty.book or {}
        out["loyalty"] = {"balance": int(book.get("available") or 0), "tier": book.get("tier")}
    return out


# --- the writes ------------------------------------------------------------------------------


class Gone(Exception):
    """The campaign no longer exists (deleted): its remaining work is dropped."""


class LostRace(Exception):
    """Another worker moved the record first: this one leaves it (retried later)."""


class Capped(Exception):
    """Another send reserved the customer's frequency cap first: defer."""


def _campaign_add(tx: Any, ctx: TenantContext, campaign_id: str, **counts: int) -> None:
    """ADD a campaign's counters in ``tx``; a journey's send (ref ``jrn_…``) has no
    campaign item: its run counts (crm/journeys/runner.py)."""
    from crm.storage import CampaignItem

    if not campaign_id.startswith("cmp_"):
        return
    actions = [getattr(CampaignItem, name).add(n) for name, n in counts.items() if n]
    if actions:
        tx.update_key(CampaignItem, campaigns_pk(ctx), campaign_id, actions, CampaignItem.pk.exists(), role="campaign")


def update_campaign(ctx: TenantContext, campaign_id: str, actions: list, condition: Any) -> None:
    """One UpdateItem of the campaign that neither checks nor bumps its ``version`` (the
    counters, the checkpoint); :class:`LostRace` when ``condition`` fails."""
    from crm.storage import CampaignItem, condition_failed

    try:
        CampaignItem._get_connection().update_item(
            campaigns_pk(ctx), range_key=campaign_id, actions=actions, condition=condition
        )
    except Exception as exc:
        if condition_failed(exc):
            raise LostRace() from None
        raise


def _record_condition(f: Facts) -> Any:
    from crm.storage import SendItem

    if f.record_state is None:
        return SendItem.pk.does_not_exist()
    return (SendItem.state == f.record_state) & (SendItem.attempt == f.record_attempt)


def _new_record(ctx: TenantContext, campaign_id: str, customer_id: str, now: str, **attrs: Any) -> Any:
    from crm.storage import SendItem

    return SendItem(
        record_pk(ctx, campaign_id),
        record_sk(customer_id),
        send_id=campaign_id,
        customer_id=customer_id,
        created_at=now,
        updated_at=now,
        ttl=clock.now() + timedelta(days=RECORD_TTL_DAYS),
        **attrs,
    )


def _run(tx: Any) -> None:
    from crm.tx import Cancelled

    try:
        tx.run()
    except Cancelled as exc:
        if exc.failed_role("campaign", "run"):  # deleted, or the journey run moved on (exited)
            raise Gone() from None
        if exc.failed_role("cap"):
            raise Capped() from None
        raise LostRace() from None


def finalize(ctx: TenantContext, campaign_id: str, f: Facts, state: str, reason: str, now: str) -> None:
    """A record into ``skipped`` or ``failed`` (from none, deferred or an expired
    ``sending``) with its counter: 1 TransactWriteItems."""
    from crm.storage import SendItem
    from crm.tx import Tx

    tx = Tx()
    if f.record_state is None:
        tx.save(
            _new_record(ctx, campaign_id, f.customer_id, now, state=state, reason=reason, attempt=0),
            _record_condition(f),
            role="record",
        )
    else:
        tx.update_key(
            SendItem,
            record_pk(ctx, campaign_id),
            record_sk(f.customer_id),
            [
                SendItem.state.set(state),
                SendItem.reason.set(reason),
                SendItem.updated_at.set(now),
                SendItem.lease_until.remove(),
            ],
            _record_condition(f),
            role="record",
        )
    counts = {state: 1}
    if f.record_state == "deferred":
        counts["deferred"] = -1
    _campaign_add(tx, ctx, campaign_id, **counts)
    _run(tx)


def defer(ctx: TenantContext, campaign_id: str, f: Facts, until: str, now: str) -> None:
    """A new record ``deferred`` until the cap allows (counted in ``deferred``); an
    existing deferred record is left as it is (its message is just re-queued)."""
    from crm.storage import SendItem
    from crm.tx import Tx

    if f.record_state == "deferred":
        return
    tx = Tx()
    if f.record_state is None:
        tx.save(
            _new_record(ctx, campaign_id, f.customer_id, now, state="deferred", until=until, attempt=0),
            _record_condition(f),
            role="record",
        )
        _campaign_add(tx, ctx, campaign_id, deferred=1)
    else:  # an expired sending record cannot be capped (its cap was its own): not reached
        tx.update_key(
            SendItem,
            record_pk(ctx, campaign_id),
            record_sk(f.customer_id),
            [SendItem.until.set(until), SendItem.updated_at.set(now)],
            _record_condition(f),
            role="record",
        )
    _run(tx)


def acquire(
    ctx: TenantContext,
    campaign_id: str,
    f: Facts,
    *,
    marketing: bool,
    cap_hours: float,
    now: datetime,
    guard: Callable[[Any], None] | None = None,
) -> int:
    """The record into ``sending`` with a lease, before the SES call: 1 TransactWriteItems
    (conditional on the state read; with the frequency cap's reservation for a first
    marketing send). ``guard`` adds a part to the transaction (a journey's ConditionCheck
    that its run is still at the step, role ``run``: :class:`Gone` when it moved on).
    Returns the attempt number this worker holds."""
    from crm.storage import EmailCapItem, SendItem
    from crm.tx import Tx

    at = clock.iso(now)
    lease = clock.iso(now + timedelta(seconds=lease_seconds()))
    attempt = f.record_attempt + 1
    tx = Tx()
    if f.record_state is None:
        tx.save(
            _new_record(ctx, campaign_id, f.customer_id, at, state="sending", attempt=attempt, lease_until=lease),
            _record_condition(f),
            role="record",
        )
    else:
        tx.update_key(
            SendItem,
            record_pk(ctx, campaign_id),
            record_sk(f.customer_id),
            [
                SendItem.state.set("sending"),
                SendItem.attempt.set(attempt),
                SendItem.lease_until.set(lease),
                SendItem.updated_at.set(at),
                SendItem.until.remove(),
            ],
            _record_condition(f),
            role="record",
        )
    if f.record_state == "deferred":
        _campaign_add(tx, ctx, campaign_id, deferred=-1)
    if marketing and f.record_state != "sending":
        from crm.customers import records

        cap = EmailCapItem(
            records.profile_pk(ctx, f.customer_id), CAP_SK, customer_id=f.customer_id, last_marketing_at=at
        )
        condition = None
        if cap_hours > 0:
            threshold = clock.iso(now - timedelta(hours=cap_hours))
            condition = EmailCapItem.pk.does_not_exist() | (EmailCapItem.last_marketing_at <= threshold)
        tx.save(cap, condition, role="cap")
    if guard is not None:
        guard(tx)
    _run(tx)
    return attempt


def ses_send(sender: str, to: str, raw: bytes, tags: Any) -> str:
    """The SES call (crm/email/ses.py)."""
    from crm.email import ses

    return ses.send_raw(sender, to, raw, tags)


def complete(ctx: TenantContext, campaign_id: str, customer_id: str, attempt: int, message_id: str, now: str) -> bool:
    """The record ``sent`` with SES's message id and the campaign's ``sent`` ADD, in 1
    TransactWriteItems conditional on this worker still holding ``attempt``. False: a
    takeover completed (or will complete) it instead, and counts it."""
    from crm.storage import SendItem
    from crm.tx import Tx

    tx = Tx()
    tx.update_key(
        SendItem,
        record_pk(ctx, campaign_id),
        record_sk(customer_id),
        [
            SendItem.state.set("sent"),
            SendItem.message_id.set(message_id),
            SendItem.updated_at.set(now),
            SendItem.lease_until.remove(),
        ],
        (SendItem.state == "sending") & (SendItem.attempt == attempt),
        role="record",
    )
    _campaign_add(tx, ctx, campaign_id, sent=1)
    try:
        _run(tx)
    except LostRace:
        return False
    return True


def fail_held(ctx: TenantContext, campaign_id: str, customer_id: str, attempt: int, reason: str, now: str) -> None:
    """A record this worker holds into ``failed`` (SES refused the message for good)."""
    f = Facts(customer_id, record_state="sending", record_attempt=attempt)
    try:
        finalize(ctx, campaign_id, f, "failed", reason[:300], now)
    except LostRace:
        pass


def release(ctx: TenantContext, campaign_id: str, customer_id: str, attempt: int, now: str) -> None:
    """Give a lease back (SES answered an error: nothing was sent), so the retry takes
    over at once instead of waiting for the lease to run out."""
    from crm.storage import SendItem

    try:
        SendItem(record_pk(ctx, campaign_id), record_sk(customer_id)).update(
            actions=[SendItem.lease_until.set(now)],
            condition=(SendItem.state == "sending") & (SendItem.attempt == attempt),
        )
    except Exception as exc:
        from crm.storage import condition_failed

        if not condition_failed(exc):
            raise


# --- one batch -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a batch did, and what it re-queues: (customer ids, delay seconds)."""

    sent: int = 0
    skipped: int = 0
    failed: int = 0
    deferred: int = 0
    done: int = 0
    requeue: list[tuple[list[str], int]] = field(default_factory=list)
    dropped: bool = False  # the campaign is gone, cancelled or finished: nothing to do
    allowance_used: bool = False  # the month's email allowance ran out: the campaign pauses after the sends

    def later(self, ids: list[str], delay: int) -> None:
        if ids:
            self.requeue.append((ids, max(0, min(MAX_SQS_DELAY, delay))))


def message_tags(ctx: TenantContext, c: Context, customer_id: str) -> Any:
    """The SES message tags of one recipient's email (``crm.email.ses.Tags``): how its
    delivery events find the campaign and the customer again."""
    from crm.email import ses

    return ses.Tags(ctx.tenant_id, customer_id, c.campaign.campaign_id, "marketing" if c.marketing else "transactional")


def render_message(
    ctx: TenantContext, c: Context, recipient: Recipient, now: datetime, event: dict[str, Any] | None = None
) -> tuple[bytes, str]:
    """The raw MIME for one recipient, and the sender it goes from (``event``: a journey's
    trigger, ``{{ event }}`` in the template)."""
    from crm.email import links, mime, render, variables

    campaign = c.campaign
    unsubscribe = links.url(ctx.tenant_id, recipient.facts.customer_id, campaign.campaign_id)
    settings = c.settings
    rendered = render.render(
        c.template,
        variables.build(
            customer_json(recipient),
            {"id": ctx.tenant_id, "name": c.tenant_name},
            event,
            unsubscribe,
            (getattr(settings, "postal_address", None) or ""),
        ),
    )
    sender = campaign.sender or getattr(settings, "default_sender", None) or ""
    raw = mime.build(
        sender=sender,
        to=recipient.facts.email or "",
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        ref=campaign.campaign_id,
        unsubscribe_url=unsubscribe if c.marketing else None,
        at=now,
        from_name=getattr(settings, "from_name", None),
        reply_to=getattr(settings, "reply_to", None),
        message_key=f"{campaign.campaign_id}.{recipient.facts.customer_id}",
        ses_tags=message_tags(ctx, c, recipient.facts.customer_id).header(),
    )
    return raw, sender


def process(ctx: TenantContext, campaign_id: str, template_id: str, customer_ids: list[str]) -> Outcome:
    """Send one batch (see the module's docstring). Raises on an unexpected error (the
    message is retried: every step is idempotent); the re-queues are in the outcome.
    A suspended tenant's batches wait like a paused campaign's."""
    from crm.email import throttle

    out = Outcome()
    c = load_context(ctx, campaign_id, template_id)
    if c is None or c.campaign.status in ("draft", "cancelled", "sent"):
        out.dropped = True
        return out
    if c.campaign.status in ("paused", "scheduled") or c.tenant_status != "active":
        out.later(customer_ids, PAUSED_RECHECK_SECONDS + random.randint(0, PAUSED_RECHECK_SECONDS))
        return out
    now = clock.now()
    at = clock.iso(now)
    marketing = c.marketing
    cap_hours = float(c.plan.limits.marketing_cap_hours)
    recipients = read_recipients(ctx, campaign_id, customer_ids)
    sends: list[tuple[Recipient, Decision]] = []
    try:
        for cid in customer_ids:
            r = recipients[cid]
            d = decide(r.facts, marketing=marketing, cap_hours=cap_hours, now=now)
            if d.action == "done":
                out.done += 1
            elif d.action == "wait":
                out.later([cid], delay_until(d.at or at, now))
            elif d.action == "skip":
                try:
                    finalize(ctx, campaign_id, r.facts, "skipped", d.reason or "", at)
                    out.skipped += 1
                except LostRace:
                    out.later([cid], 1)
            elif d.action == "defer":
                try:
                    defer(ctx, campaign_id, r.facts, d.at or at, at)
                    out.deferred += 1
                except LostRace:
                    out.later([cid], 1)
                else:
                    out.later([cid], delay_until(d.at or at, now))
            else:
                sends.append((r, d))
        if not sends:
            return out
        if c.template is None:  # deleted since the send started: nothing can be rendered
            for r, _ in sends:
                try:
                    finalize(ctx, campaign_id, r.facts, "failed", "template_deleted", at)
                    out.failed += 1
                except LostRace:
                    out.later([r.facts.customer_id], 1)
            return out
        from crm.email import allowance

        room = allowance.remaining(ctx, c.plan)
        if room is not None and room < len(sends):  # the month's allowance: send what fits, then pause
            out.later([r.facts.customer_id for r, _ in sends[room:]],
                      PAUSED_RECHECK_SECONDS + random.randint(0, PAUSED_RECHECK_SECONDS))  # fmt: skip
            sends = sends[:room]
            out.allowance_used = True
            if not sends:
                return out
        granted, delay = throttle.take(ctx.tenant_id, tenant_rate(c.plan), len(sends))
        if granted < len(sends):
            out.later([r.facts.customer_id for r, _ in sends[granted:]], delay)
            sends = sends[:granted]
        checked = time.monotonic()
        for n, (r, _d) in enumerate(sends):
            if time.monotonic() - checked > STATUS_RECHECK_SECONDS:
                checked = time.monotonic()
                status = current_status(ctx, campaign_id)
                if status != "sending":  # paused or cancelled meanwhile: stop within a second
                    rest = [x.facts.customer_id for x, _ in sends[n:]]
                    if status == "paused":
                        out.later(rest, PAUSED_RECHECK_SECONDS + random.randint(0, PAUSED_RECHECK_SECONDS))
                    else:
                        out.dropped = True
                    break
            _send_one(ctx, c, r, marketing, cap_hours, out)
    except Gone:
        out.dropped = True
        out.requeue.clear()
    finally:
        count_sent(ctx, out.sent)
        if out.allowance_used:
            pause_for_allowance(ctx, campaign_id)
    return out


def pause_for_allowance(ctx: TenantContext, campaign_id: str) -> None:
    """``sending`` -> ``paused`` with ``paused_reason: plan_limit`` (1 conditional
    UpdateItem; nothing when it is no longer sending): its other batches wait as for a
    user's pause, and GET shows why."""
    from crm.storage import CampaignItem

    at = clock.now_iso()
    try:
        update_campaign(ctx, campaign_id, [
            CampaignItem.status.set("paused"), CampaignItem.paused_at.set(at),
            CampaignItem.paused_reason.set("plan_limit"), CampaignItem.updated_at.set(at),
            CampaignItem.gsi2pk.remove(), CampaignItem.gsi2sk.remove(),
        ], CampaignItem.status == "sending")  # fmt: skip
    except LostRace:
        pass


def count_sent(ctx: TenantContext, n: int) -> None:
    """The month's ``emails_sent`` usage counter (GET /v1/billing): 1 UpdateItem per batch
    that sent any. After the sends: a crash in between leaves them uncounted (an
    undercount, never a double count of one email)."""
    if n:
        from crm.billing import usage

        usage.add(ctx, "emails_sent", n)


def _send_one(ctx: TenantContext, c: Context, r: Recipient, marketing: bool, cap_hours: float, out: Outcome) -> None:
    from botocore.exceptions import BotoCoreError, ClientError
    from jinja2 import TemplateError

    from crm.email import ses

    campaign_id = c.campaign.campaign_id
    cid = r.facts.customer_id
    now = clock.now()
    try:
        raw, sender = render_message(ctx, c, r, now)
    except TemplateError as exc:
        try:
            finalize(ctx, campaign_id, r.facts, "failed", f"render_error: {exc}"[:300], clock.iso(now))
            out.failed += 1
        except LostRace:
            out.later([cid], 1)
        return
    try:
        attempt = acquire(ctx, campaign_id, r.facts, marketing=marketing, cap_hours=cap_hours, now=now)
    except LostRace:
        out.later([cid], 1)
        return
    except Capped:  # another campaign or journey took the cap slot since the read
        out.later([cid], 5)
        return
    tags = message_tags(ctx, c, cid)
    try:
        message_id = ses_send(sender, r.facts.email or "", raw, tags)
    except ses.Permanent as exc:
        fail_held(ctx, campaign_id, cid, attempt, str(exc), clock.now_iso())
        out.failed += 1
        return
    except ClientError:  # an answer from SES: nothing was sent; the lease goes back
        release(ctx, campaign_id, cid, attempt, clock.now_iso())
        out.later([cid], 2 + random.randint(0, 5))
        return
    except BotoCoreError:  # no answer (a timeout): it may have been sent; the lease stands
        out.later([cid], delay_until(clock.iso(now + timedelta(seconds=lease_seconds())), clock.now()))
        return
    if complete(ctx, campaign_id, cid, attempt, message_id, clock.now_iso()):
        out.sent += 1


# --- the campaign's end ----------------------------------------------------------------------------


def finish_if_done(ctx: TenantContext, campaign_id: str) -> bool:
    """``sending`` -> ``sent`` once the audience is resolved and every recipient enqueued
    reached a final state (``sent + skipped + failed >= total``): 1 GetItem, + 1
    conditional UpdateItem when done. Safe to call any number of times, concurrently."""
    from crm.storage import CampaignItem, condition_failed

    try:
        item = CampaignItem.get(campaigns_pk(ctx), campaign_id, consistent_read=True)
    except CampaignItem.DoesNotExist:
        return False
    if not done(item):
        return False
    if item.status != "sending":
        return item.status == "sent"
    at = clock.now_iso()
    try:
        item.update(
            actions=[
                CampaignItem.status.set("sent"),
                CampaignItem.finished_at.set(at),
                CampaignItem.updated_at.set(at),
                CampaignItem.gsi2pk.remove(),
                CampaignItem.gsi2sk.remove(),
            ],
            condition=CampaignItem.status == "sending",
        )
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def done(item: Any) -> bool:
    audience = item.audience or {}
    finals = int(item.sent or 0) + int(item.skipped or 0) + int(item.failed or 0)
    return bool(audience.get("resolved")) and finals >= int(item.total or 0)
