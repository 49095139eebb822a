"""A journey step's email, through the campaigns' exactly-once sender
(crm/email/sending.py; docs/journeys.md, "Exactly once").

The send record is ``T#<tenant>#SEND#<ref>`` / ``R#<customer>``, ``ref`` the step's
(:func:`crm.journeys.plan.send_ref`: the same on every attempt). The acquire carries a
ConditionCheck that the run is still ``sending`` at this step, so an exit event that
ended the run first wins (:class:`~crm.email.sending.Gone`), and a re-fired timer or a
duplicate message finds the record and never sends twice. The frequency cap is the
planner's (the run waits for the next allowed time); a cap slot taken by a campaign
between the read and the acquire defers the same way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from crm import clock
from crm.context import TenantContext
from crm.journeys import plan

CAPPED_RETRY = timedelta(minutes=5)


@dataclass(frozen=True)
class Result:
    """``sent``, ``skipped``, ``failed`` (final: the run moves on), ``defer`` (not before
    ``at``), ``wait`` (held by another worker or throttled: the run's recheck), ``gone``
    (the run moved on: nothing sent)."""

    state: str
    at: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Reads:
    """The batch-level facts the sender needs (read by the runner in its BatchGetItem)."""

    template: Any
    settings: Any
    tenant_name: str
    plan: Any


def _context(ref: str, send: plan.Send, reads: Reads) -> Any:
    from crm.email.sending import Context

    kind = "marketing" if send.marketing else "transactional"
    owner = SimpleNamespace(campaign_id=ref, sender=send.sender, template_kind=kind, status="sending")
    return Context(campaign=owner, template=reads.template, settings=reads.settings,
                   tenant_name=reads.tenant_name, plan=reads.plan)  # fmt: skip


def send(ctx: TenantContext, run_key: tuple[str, str], send: plan.Send, reads: Reads,
         event: dict[str, Any] | None, now: datetime) -> Result:  # fmt: skip
    """One step's email: read, decide, throttle, acquire (with the run's check), SES, complete."""
    from botocore.exceptions import BotoCoreError, ClientError
    from jinja2 import TemplateError

    from crm.email import sending, ses, throttle
    from crm.storage import JourneyRunItem

    ref, cid = send.ref, send.customer_id
    at = clock.iso(now)
    cap_hours = float(reads.plan.limits.marketing_cap_hours)
    r = sending.read_recipients(ctx, ref, [cid])[cid]
    d = sending.decide(r.facts, marketing=send.marketing, cap_hours=cap_hours, now=now)
    if d.action == "done":
        return Result(r.facts.record_state or "sent")
    if d.action == "wait":
        return Result("wait", d.at)
    if d.action == "defer":
        return Result("defer", d.at)
    if d.action == "skip" or reads.template is None:
        state, reason = ("skipped", d.reason) if d.action == "skip" else ("failed", "template_deleted")
        try:
            sending.finalize(ctx, ref, r.facts, state, reason or "", at)
        except sending.LostRace:
            return Result("wait", clock.iso(now + timedelta(seconds=1)))
        return Result(state, reason=reason)
    from crm.email import allowance

    if allowance.remaining(ctx, reads.plan) == 0:  # the month's allowance is used up: wait
        return Result("defer", clock.iso(allowance.retry_at(now)), reason="plan_limit")
    granted, delay = throttle.take(ctx.tenant_id, sending.tenant_rate(reads.plan), 1)
    if not granted:
        return Result("wait", clock.iso(now + timedelta(seconds=delay)))
    c = _context(ref, send, reads)
    try:
        raw, sender = sending.render_message(ctx, c, r, now, event)
    except TemplateError as exc:
        sending.finalize(ctx, ref, r.facts, "failed", f"render_error: {exc}"[:300], at)
        return Result("failed", reason="render_error")

    def still_sending(tx: Any) -> None:
        tx.check(JourneyRunItem, run_key[0], run_key[1],
                 (JourneyRunItem.status == "sending") & (JourneyRunItem.step == send.step), role="run")  # fmt: skip

    try:
        attempt = sending.acquire(ctx, ref, r.facts, marketing=send.marketing, cap_hours=cap_hours, now=now,
                                  guard=still_sending)  # fmt: skip
    except sending.Gone:
        return Result("gone")
    except sending.LostRace:
        return Result("wait", clock.iso(now + timedelta(seconds=1)))
    except sending.Capped:  # a campaign took the cap slot since the read: the run waits
        return Result("defer", clock.iso(now + CAPPED_RETRY))
    try:
        message_id = sending.ses_send(sender, r.facts.email or "", raw, sending.message_tags(ctx, c, cid))
    except ses.Permanent as exc:
        sending.fail_held(ctx, ref, cid, attempt, str(exc), clock.now_iso())
        return Result("failed", reason="rejected")
    except ClientError:  # an answer: nothing was sent; the lease goes back
        sending.release(ctx, ref, cid, attempt, clock.now_iso())
        return Result("wait", clock.iso(now + timedelta(seconds=5)))
    except BotoCoreError:  # no answer: it may have been sent; the lease stands until it expires
        return Result("wait", clock.iso(now + timedelta(seconds=sending.lease_seconds())))
    sending.complete(ctx, ref, cid, attempt, message_id, clock.now_iso())
    sending.count_sent(ctx, 1)
    return Result("sent")
