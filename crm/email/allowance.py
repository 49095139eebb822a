"""The plan's monthly email allowance (``emails_per_month``, docs/limits.md): what the
senders may still send this month. Read before sending (1 consistent GetItem of the
usage item); when it is used up a campaign pauses itself (``paused_reason:
plan_limit``: resuming it is refused until the plan allows more or the month turns) and
a journey's email waits (looked at again hourly, at the latest on the 1st). Batches in
flight when the allowance runs out may pass it by at most one batch each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from crm.context import TenantContext

RECHECK = timedelta(hours=1)  # a held journey email looks again this often (an upgrade releases it)


def sent_this_month(ctx: TenantContext) -> int:
    from crm.billing import usage

    raw = usage.read(ctx.tenant_id, consistent=True)
    return int(raw.get(usage.attr("emails_sent", usage.period())) or 0)


def remaining(ctx: TenantContext, plan: Any) -> int | None:
    """Emails the plan still allows this month; None: no limit (no read)."""
    cap = plan.limit("emails_per_month")
    if cap is None:
        return None
    return max(0, int(cap) - sent_this_month(ctx))


def refusal(ctx: TenantContext, plan: Any) -> Exception:
    """402 ``plan_limit`` naming ``emails_per_month``, the month's usage and the plan
    that allows more."""
    from crm.billing import limits

    sent = sent_this_month(ctx)
    return limits.refusal("emails_per_month", sent, plan, sent + 1)


def retry_at(now: datetime) -> datetime:
    """When a held email looks again: in an hour, or at the month's turn if sooner."""
    first = (now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)).replace(day=1)
    return min(now + RECHECK, first.astimezone(UTC))
