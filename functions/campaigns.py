"""Campaign sending (the ``email`` queue) and the campaigns schedule (docs/campaigns.md).

The ``email`` queue carries two kinds of message (batch size 1, so one failure retries
one message): ``page`` (read 200 of the audience, enqueue their batches, checkpoint:
crm/email/audience.py) and ``batch`` (send up to 20 recipients exactly once:
crm/email/sending.py). What a batch cannot do now (tokens short, a frequency cap, a live
lease, a paused campaign) goes back on the queue as new messages with a delay; an
unexpected error fails the message, which SQS delivers again (every step is idempotent).
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("rapport.campaigns")
SCHEDULE_LIMIT = 100  # due campaigns per run; the rest are due at the next run
TIME_RESERVE_MS = 10_000


def handle_message(body: dict[str, Any]) -> dict[str, Any]:
    from crm import queues
    from crm.context import TenantContext
    from crm.email import audience, sending

    ctx = TenantContext(body["tenant"])
    if body.get("op") == "page":
        result = audience.run_page(ctx, body["campaign"], int(body.get("pages") or 0), body.get("cursor"))
        if "requeue" in result:
            queues.send("email", [body], delay=int(result["requeue"]))
        return result
    if body.get("op") == "batch":
        outcome = sending.process(ctx, body["campaign"], body["template"], list(body.get("customers") or []))
        for ids, delay in _grouped(outcome.requeue):
            queues.send("email", [{**body, "customers": ids}], delay=delay)
        if not outcome.dropped and (outcome.sent or outcome.skipped or outcome.failed or outcome.done):
            sending.finish_if_done(ctx, body["campaign"])
        return {
            "sent": outcome.sent,
            "skipped": outcome.skipped,
            "failed": outcome.failed,
            "deferred": outcome.deferred,
            "requeued": sum(len(ids) for ids, _ in outcome.requeue),
        }
    log.warning("email queue: unknown message %s", body.get("op"))
    return {}


def _grouped(requeue: list[tuple[list[str], int]]) -> list[tuple[list[str], int]]:
    """Re-queues with the same delay travel together (at most a batch a message)."""
    from crm.email.sending import BATCH

    by: dict[int, list[str]] = {}
    for ids, delay in requeue:
        by.setdefault(delay, []).extend(ids)
    return [(ids[i : i + BATCH], delay) for delay, ids in sorted(by.items()) for i in range(0, len(ids), BATCH)]


def handle_batch(event: dict[str, Any], lambda_context: Any = None) -> dict[str, Any]:
    failures = []
    for record in event.get("Records") or []:
        try:
            handle_message(json.loads(record["body"]))
        except Exception:
            log.exception("email queue: a message failed")
            failures.append({"itemIdentifier": record.get("messageId")})
    return {"batchItemFailures": failures}


def run_schedule(now: str | None = None, lambda_context: Any = None) -> dict[str, Any]:
    """Campaigns on the due index (gsi2 ``CAMPAIGN_DUE``) whose time has come: a
    scheduled one starts; a sending one with no checkpoint for a while is checked:
    finished if every recipient is final, else its audience is re-enqueued from its
    checkpoint (not resolved) or its unfinished records are (resolved). 1 Query, then
    per campaign 1 GetItem and what it does."""
    from crm import clock
    from crm.context import TenantContext
    from crm.email import audience, campaigns
    from crm.storage import CampaignItem

    at = now or clock.now_iso()
    counts = {"started": 0, "checked": 0, "resumed": 0, "finished": 0}
    rows = list(CampaignItem.gsi2.query(audience.DUE_PK, CampaignItem.gsi2sk <= f"{at}#~", limit=SCHEDULE_LIMIT))
    for row in rows:
        if lambda_context is not None and lambda_context.get_remaining_time_in_millis() < TIME_RESERVE_MS:
            break
        try:
            _, tenant, campaign_id = row.gsi2sk.rsplit("#", 2)
            ctx = TenantContext(tenant)
            if row.status == "scheduled":
                counts["started"] += int(campaigns.start_scheduled(ctx, campaign_id))
            elif row.status == "sending":
                counts["checked"] += 1
                result = check_stalled(ctx, campaign_id)
                counts["resumed"] += int(result == "resumed")
                counts["finished"] += int(result == "finished")
        except Exception:
            log.exception("campaigns schedule: %s failed", row.gsi2sk)
    return counts


def check_stalled(ctx: Any, campaign_id: str) -> str:
    """A sending campaign past its check time: finished, or its work re-enqueued (a
    page from the checkpoint; the records not final whose lease ran out or whose
    deferral is due). Re-enqueued work is idempotent: duplicates change nothing."""
    from crm import clock, queues
    from crm.email import audience, sending
    from crm.storage import CampaignItem, SendItem

    if sending.finish_if_done(ctx, campaign_id):
        return "finished"
    try:
        item = CampaignItem.get(sending.campaigns_pk(ctx), campaign_id, consistent_read=True)
    except CampaignItem.DoesNotExist:
        return "gone"
    if item.status != "sending":
        return item.status
    sending.update_campaign(
        ctx,
        campaign_id,
        [CampaignItem.gsi2sk.set(audience.next_check(ctx, campaign_id))],
        CampaignItem.status == "sending",
    )
    if not (item.audience or {}).get("resolved"):
        queues.send("email", [audience.page_message(ctx, item)])
        return "resumed"
    now = clock.now_iso()
    stuck = []
    rows = SendItem.query(
        sending.record_pk(ctx, campaign_id), filter_condition=SendItem.state.is_in("sending", "deferred")
    )
    for record in rows:
        due = record.lease_until if record.state == "sending" else record.until
        if (due or "") <= now:
            stuck.append(record.customer_id)
    if stuck:
        queues.send("email", audience.batch_messages(ctx, item, stuck))
        return "resumed"
    return "waiting"
