"""A campaign's audience, resolved at send time: the segment's members, page by page,
become recipient batches on the ``email`` queue (docs/campaigns.md, "Audience").

A page message names the campaign, the page number ``k`` and the cursor (the last
member's sort key of page ``k - 1``). Its handler reads 200 members from the cursor,
enqueues their batches, and only THEN checkpoints: one UpdateItem that moves the cursor,
sets ``audience_pages = k + 1`` and ADDs the page's members to ``total``, conditional on
``audience_pages == k``. So a crash before the checkpoint re-reads the same page (its
batches enqueued twice: harmless, every recipient has one send record), never skips
one; a duplicate page message loses the condition and stops; and ``total`` counts each
page once (the lesson of listmonk#3022, which moved its checkpoint at fetch time).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from crm import clock
from crm.context import TenantContext

PAGE = 200
DUE_PK = "CAMPAIGN_DUE"


def stall_seconds() -> float:
    """A sending campaign with no checkpoint for this long is checked by the schedule
    (``RAPPORT_EMAIL_STALL_SECONDS``, default 300)."""
    return float(os.environ.get("RAPPORT_EMAIL_STALL_SECONDS") or 300)


def due_sk(at: str, ctx: TenantContext, campaign_id: str) -> str:
    return f"{at}#{ctx.tenant_id}#{campaign_id}"


def next_check(ctx: TenantContext, campaign_id: str) -> str:
    return due_sk(clock.iso(clock.now() + timedelta(seconds=stall_seconds())), ctx, campaign_id)


def page_message(ctx: TenantContext, campaign: Any) -> dict[str, Any]:
    audience = campaign.audience or {}
    return {
        "op": "page",
        "tenant": ctx.tenant_id,
        "campaign": campaign.campaign_id,
        "pages": int(campaign.audience_pages or 0),
        "cursor": audience.get("cursor"),
    }


def batch_messages(ctx: TenantContext, campaign: Any, customer_ids: list[str]) -> list[dict[str, Any]]:
    from crm.email.sending import BATCH

    return [
        {
            "op": "batch",
            "tenant": ctx.tenant_id,
            "campaign": campaign.campaign_id,
            "template": campaign.template_id,
            "customers": customer_ids[i : i + BATCH],
        }
        for i in range(0, len(customer_ids), BATCH)
    ]


def members_page(ctx: TenantContext, segment_id: str, cursor: str | None) -> tuple[list[str], str | None, bool]:
    """1 Query: up to PAGE member ids after ``cursor``; (ids, last sort key, more?)."""
    from crm.paging import start_key
    from crm.segments.membership import segment_pk
    from crm.storage import SegmentMemberItem

    pk = segment_pk(ctx, segment_id)
    start = start_key(pk=pk, sk=cursor) if cursor else None
    rows = SegmentMemberItem.query(
        pk, SegmentMemberItem.sk.startswith("M#"), limit=PAGE, page_size=PAGE, last_evaluated_key=start
    )
    ids = [r.customer_id for r in rows]
    more = rows.last_evaluated_key is not None
    return ids, (f"M#{ids[-1]}" if ids else cursor), more


def run_page(ctx: TenantContext, campaign_id: str, pages: int, cursor: str | None) -> dict[str, Any]:
    """One audience page (see the module's docstring). Returns what it did; a paused
    campaign's page comes back later (``{"requeue": delay}``)."""
    import random

    from crm import queues
    from crm.email import sending
    from crm.storage import CampaignItem

    try:
        campaign = CampaignItem.get(sending.campaigns_pk(ctx), campaign_id, consistent_read=True)
    except CampaignItem.DoesNotExist:
        return {"dropped": "gone"}
    if campaign.status == "paused":
        return {"requeue": sending.PAUSED_RECHECK_SECONDS + random.randint(0, sending.PAUSED_RECHECK_SECONDS)}
    if campaign.status != "sending":
        return {"dropped": campaign.status}
    audience = campaign.audience or {}
    if audience.get("resolved") or int(campaign.audience_pages or 0) != pages:
        return {"dropped": "stale"}  # a duplicate: this page was checkpointed already
    ids, last, more = members_page(ctx, campaign.segment_id, cursor)
    queues.send("email", batch_messages(ctx, campaign, ids))
    now = clock.now_iso()
    new_audience = {"cursor": last, "pages": pages + 1, "resolved": not more, "at": now}
    actions = [
        CampaignItem.audience.set(new_audience),
        CampaignItem.audience_pages.set(pages + 1),
        CampaignItem.total.add(len(ids)),
        CampaignItem.progress_at.set(now),
        CampaignItem.updated_at.set(now),
        CampaignItem.gsi2sk.set(next_check(ctx, campaign_id)),
    ]
    try:
        sending.update_campaign(
            ctx,
            campaign_id,
            actions,
            (CampaignItem.audience_pages == pages) & CampaignItem.status.is_in("sending", "paused"),
        )
    except sending.LostRace:
        return {"dropped": "stale"}
    if more:
        campaign.audience, campaign.audience_pages = new_audience, pages + 1
        queues.send("email", [page_message(ctx, campaign)])
    else:
        sending.finish_if_done(ctx, campaign_id)
    return {"members": len(ids), "more": more}
