"""Metering: tenants on a metered plan (``scale``) report their customers to the plan's
Stripe Billing Meter, from an hourly schedule (functions/billing.py).

How the money follows (docs/limits.md): the meter aggregates with ``sum`` (Stripe's
default and what the Stripe double builds). Each hour a tenant reports the growth of its
live customer count above the highest count already reported in the current billing
period (0 is not sent), so the period's sum is the period's peak live count. The plan's
metered price divides that sum by ``per`` (1,000, rounded up: ``transform_quantity``)
and charges ``unit_price`` for each unit: 2,345 customers at peak is 3 × $5.00.

Exactly once: every event carries a deterministic ``identifier``
``<tenant>:<meter>:<hour>``; Stripe refuses a second event with the same identifier
(``resource_already_exists``), so a retried send or a second run in the same hour is
never counted twice. What is about to be sent is written first (``meter_pending``), so a
run that died between the send and its bookkeeping resends the same value under the
same identifier rather than a new one; ``metered_through`` (the last hour done) makes a
repeated run a no-op. Requests per metered tenant per hour: 1 consistent GetItem, up to
2 UpdateItem and 1 Stripe call; tenants come from the billing items' sparse gsi1
``BILLED`` (one Query page per 100 paying tenants, never a Scan).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crm import aws, clock, settings
from crm.billing import plans, service, usage

log = logging.getLogger("rapport")
METERED_STATUSES = ("active", "trialing", "past_due")


def window(now: datetime) -> str:
    """The hour an event stands for: ``YYYY-MM-DDTHH`` (UTC)."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H")


def status(tenant_id: str, plan: plans.Plan) -> dict[str, Any] | None:
    """What GET /v1/billing shows of the hourly reports (1 GetItem; None: not metered)."""
    if plan.metered is None:
        return None
    raw = usage.read(tenant_id)
    return {
        "meter": plan.metered.meter,
        "reported_through": raw.get("metered_through"),  # the last hour reported (UTC)
        "billing_period": raw.get("metered_period"),
        "reported_in_period": int(raw.get("metered_total") or 0),
        "pending": raw.get("meter_pending"),  # an hour sent but not yet booked (resent, same identifier)
    }


def identifier(tenant_id: str, meter: str, hour: str) -> str:
    return f"{tenant_id}:{meter}:{hour}"


@dataclass
class Report:
    tenant: str
    hour: str
    value: int
    sent: bool  # False: nothing to send (no growth) or already done


def _set(
    tenant_id: str,
    sets: dict[str, Any],
    *,
    remove: tuple[str, ...] = (),
    condition: str | None = None,
    names: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
) -> bool:
    """One UpdateItem of the usage item; False when ``condition`` failed."""
    n: dict[str, str] = dict(names or {})
    v: dict[str, Any] = dict(values or {})
    parts = []
    for i, (name, value) in enumerate(sets.items()):
        n[f"#s{i}"] = name
        v[f":s{i}"] = {"N": str(value)} if isinstance(value, int) else {"S": value}
        parts.append(f"#s{i} = :s{i}")
    expr = "SET " + ", ".join(parts)
    if remove:
        expr += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        n.update({f"#r{i}": name for i, name in enumerate(remove)})
    kwargs: dict[str, Any] = {"ConditionExpression": condition} if condition else {}
    try:
        aws.dynamodb_client().update_item(
            TableName=settings.table_name(),
            Key=usage.key(tenant_id),
            UpdateExpression=expr,
            ExpressionAttributeNames=n,
            ExpressionAttributeValues=v,
            **kwargs,
        )
    except aws.dynamodb_client().exceptions.ConditionalCheckFailedException:
        return False
    return True


def _send(stripe: Any, meter: str, customer: str, ident: str, value: int, timestamp: int) -> None:
    import stripe as stripe_lib

    try:
        stripe.v1.billing.meter_events.create(
            params={
                "event_name": meter,
                "identifier": ident,
                "timestamp": timestamp,
                "payload": {"stripe_customer_id": customer, "value": str(value)},
            }
        )
    except stripe_lib.InvalidRequestError as exc:
        if getattr(exc, "code", None) != "resource_already_exists":
            raise
        log.info("meter event already reported", extra={"identifier": ident})  # a retry: counted once


def report(tenant_id: str, customer: str, plan: plans.Plan, period: str, now: datetime, stripe: Any) -> Report:
    """This hour's report for one tenant (idempotent: see the module docstring)."""
    assert plan.metered is not None
    meter, hour = plan.metered.meter, window(now)
    raw = usage.read(tenant_id, consistent=True)
    pending = raw.get("meter_pending")
    if pending and pending != hour and pending != raw.get("metered_through"):
        # an earlier run died after deciding (maybe after sending): finish that hour first,
        # under its own identifier, before counting this hour's growth
        old_period = raw.get("metered_period_pending") or period
        old_base = int(raw.get("metered_total") or 0) if raw.get("metered_period") == old_period else 0
        _finish(
            tenant_id,
            meter,
            customer,
            pending,
            int(raw.get("meter_pending_value") or 0),
            old_base,
            old_period,
            now,
            stripe,
        )
        raw = usage.read(tenant_id, consistent=True)
    if raw.get("metered_through") == hour:
        return Report(tenant_id, hour, 0, False)
    base = int(raw.get("metered_total") or 0) if raw.get("metered_period") == period else 0
    if raw.get("meter_pending") == hour and raw.get("metered_period_pending") == period:
        value = int(raw.get("meter_pending_value") or 0)  # resend exactly what may have gone out
    else:
        value = max(0, max(0, int(raw.get("customers") or 0)) - base)
        _set(tenant_id, {"meter_pending": hour, "meter_pending_value": value, "metered_period_pending": period})
    done = _finish(tenant_id, meter, customer, hour, value, base, period, now, stripe)
    return Report(tenant_id, hour, value, bool(value) and done)


def _finish(
    tenant_id: str, meter: str, customer: str, hour: str, value: int, base: int, period: str, now: datetime, stripe: Any
) -> bool:
    """Send the hour's event (if it has growth) and book it; False if another run booked it."""
    if value:
        _send(stripe, meter, customer, identifier(tenant_id, meter, hour), value, int(now.timestamp()))
    return _set(
        tenant_id,
        {"metered_through": hour, "metered_total": base + value, "metered_period": period},
        remove=("meter_pending", "meter_pending_value", "metered_period_pending"),
        condition="attribute_not_exists(#t) OR #t <> :h",
        names={"#t": "metered_through"},
        values={":h": {"S": hour}},
    )


def run(now: datetime | None = None) -> dict[str, int]:
    """The hourly schedule: one report per tenant on a metered plan. One tenant's failure
    is logged and does not stop the others (the next hour's run picks it up: the growth
    is still unreported)."""
    from crm.billing import stripe_api

    now = now or clock.now()
    out = {"tenants": 0, "reported": 0, "skipped": 0, "failed": 0}
    stripe = None
    for item in service.billed_tenants():
        plan = plans.get(item.plan)
        if plan.metered is None or item.status not in METERED_STATUSES or not item.stripe_customer:
            continue
        out["tenants"] += 1
        tenant_id = item.pk.split("#")[1]
        period = item.period_start or now.strftime("%Y-%m")
        try:
            stripe = stripe or stripe_api.client()
            done = report(tenant_id, item.stripe_customer, plan, period, now, stripe)
        except Exception:
            log.exception("meter report failed", extra={"tenant": tenant_id})
            out["failed"] += 1
            continue
        out["reported" if done.sent else "skipped"] += 1
    return out
