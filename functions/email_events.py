"""SES events through EventBridge (the ``delivery`` queue): campaign stats, suppression,
consent and timeline (crm/email/delivery.py). Issue 13.

No idempotency records (functions/consumer.py): every write of crm/email/delivery.py is
idempotent on its own (a guard item per counted event, conditional puts, consent left
alone once denied, timeline ids derived from the event), so a redelivered or late event
changes nothing more. A message that is not an SES event is logged and dropped: retrying
it could never succeed."""

from __future__ import annotations

from typing import Any


def handle(message: dict[str, Any]) -> None:
    from crm.email import delivery
    from functions.lambda_env import logger

    try:
        plan = delivery.plan(delivery.record_of(message))
    except delivery.NotAnEvent as exc:
        logger().warning(
            "not an SES event: dropped", extra={"reason": str(exc), "detail_type": message.get("detail-type")}
        )
        return
    outcome = delivery.apply(plan)
    logger().info(
        "SES event",
        extra={
            "event_type": plan.event_type,
            "ses_id": plan.message_id,
            "tenant_id": plan.origin.tenant_id if plan.origin else None,
            "ignored": outcome.ignored,
            "counted": outcome.counted,
            "suppressed": len(outcome.suppressed),
            "revoked": outcome.revoked,
        },
    )


def handle_batch(event: dict[str, Any], lambda_context: Any = None) -> dict[str, Any]:
    from functions.consumer import consume

    return consume("delivery", event, handle, lambda_context)
