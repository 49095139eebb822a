"""Usage counters per tenant: the live customer count and, per calendar month (UTC), API
calls, customers created, emails sent and connector records.

All of a tenant's counters live on one item (``T#<tenant>#`` / ``USAGE``, crm/storage.py
``UsageItem``), written only with ADD, so that every writer (the API's flush, the stream
dispatcher, the sync, the email sender) is one UpdateItem that never conflicts, and
``summary`` is one GetItem (+ one COUNT Query of the tenant's few connections).

Who counts what (docs/limits.md):
- ``api_calls``: the API, per container, flushed with the rate limiter's window total
  (crm/billing/ratelimit.py), at most one UpdateItem per 25 calls or per 5 minutes.
- ``customers`` (live: active or merging profiles) and ``customers_created``: the stream
  dispatcher (functions/dispatch.py), one UpdateItem per tenant per stream batch. No
  customer-create transaction touches a shared item (concurrent creates would conflict);
  the price is a lag of about a second (the stream's delivery) behind the profiles.
- ``emails_sent``: ``add(ctx, "emails_sent", n)`` by whatever sends them.
- ``connector_records``: the sync, one ADD per page (connectors/runner.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from crm import aws, clock, settings
from crm.context import TenantContext

SK = "USAGE"
Counter = Literal["api_calls", "customers_created", "emails_sent", "connector_records"]
COUNTERS: tuple[str, ...] = ("api_calls", "customers_created", "emails_sent", "connector_records")


def period(now: datetime | None = None) -> str:
    """The calendar month (UTC) a count belongs to: ``YYYY-MM``."""
    return (now or clock.now()).strftime("%Y-%m")


def attr(counter: str, month: str) -> str:
    return f"m#{month}#{counter}"


def key(tenant_id: str) -> dict[str, Any]:
    """The usage item's key, built through the tenant context (a malformed tenant id
    raises instead of reaching some other partition)."""
    return {"pk": {"S": TenantContext(tenant_id).prefix}, "sk": {"S": SK}}


def update(
    tenant_id: str,
    adds: dict[str, int],
    *,
    remove: tuple[str, ...] = (),
    returns: tuple[str, ...] = (),
) -> dict[str, int]:
    """One UpdateItem: ADD each attribute of ``adds`` (names as stored), REMOVE ``remove``;
    returns the new values of ``returns`` (0 when absent). ReturnValues ALL_NEW: the item is
    small, and UPDATED_NEW may leave out an attribute an ADD of 0 did not change (moto
    does). The item's ``kind`` is set on the way, so the first ADD makes a well-formed item."""
    names: dict[str, str] = {"#k": "kind"}
    values: dict[str, Any] = {":k": {"S": "usage"}}
    parts = []
    for i, (name, n) in enumerate(adds.items()):
        names[f"#a{i}"] = name
        values[f":a{i}"] = {"N": str(int(n))}
        parts.append(f"#a{i} :a{i}")
    expr = "SET #k = :k" + (" ADD " + ", ".join(parts) if parts else "")
    if remove:
        for i, name in enumerate(remove):
            names[f"#r{i}"] = name
        expr += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
    out = aws.dynamodb_client().update_item(
        TableName=settings.table_name(),
        Key=key(tenant_id),
        UpdateExpression=expr,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ReturnValues="ALL_NEW" if returns else "NONE",
    )
    got = out.get("Attributes") or {}
    return {name: int(got[name]["N"]) if name in got else 0 for name in returns}


def add(ctx: TenantContext, counter: Counter, n: int = 1, *, now: datetime | None = None) -> None:
    """Count ``n`` more of ``counter`` in this month (1 UpdateItem). For the email sender:
    ``usage.add(ctx, "emails_sent", n)``."""
    if counter not in COUNTERS:
        raise ValueError(f"not a usage counter: {counter}")
    if n:
        update(ctx.tenant_id, {attr(counter, period(now)): n})


def read(tenant_id: str, *, consistent: bool = False) -> dict[str, Any]:
    """The raw counters (1 GetItem): attribute name -> int or str."""
    out = aws.dynamodb_client().get_item(TableName=settings.table_name(), Key=key(tenant_id), ConsistentRead=consistent)
    item = out.get("Item") or {}
    return {k: int(v["N"]) if "N" in v else v.get("S") for k, v in item.items() if k not in ("pk", "sk")}


def live_customers(tenant_id: str, *, consistent: bool = False) -> int:
    return max(0, int(read(tenant_id, consistent=consistent).get("customers") or 0))


def connections(ctx: TenantContext) -> int:
    """The tenant's connections: a COUNT Query of its gsi1 list ``T#<tenant>#CONNECTIONS``
    (a few items; connectors/connections.py keeps it)."""
    client, total = aws.dynamodb_client(), 0
    kwargs: dict[str, Any] = {}
    while True:
        page = client.query(
            TableName=settings.table_name(),
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :p",
            ExpressionAttributeValues={":p": {"S": ctx.key("CONNECTIONS")}},
            Select="COUNT",
            **kwargs,
        )
        total += int(page.get("Count", 0))
        if "LastEvaluatedKey" not in page:
            return total
        kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def summary(ctx: TenantContext, *, now: datetime | None = None) -> dict[str, Any]:
    """What GET /v1/billing shows: 1 GetItem + 1 COUNT Query. ``api_calls`` includes the
    calls this container has not flushed yet (crm/billing/ratelimit.py)."""
    from crm.billing import ratelimit

    month = period(now)
    raw = read(ctx.tenant_id)
    return {
        "period": month,
        "api_calls": int(raw.get(attr("api_calls", month)) or 0)
        + (ratelimit.pending(ctx.tenant_id) if now is None else 0),
        "customers": max(0, int(raw.get("customers") or 0)),
        "customers_created": int(raw.get(attr("customers_created", month)) or 0),
        "emails_sent": int(raw.get(attr("emails_sent", month)) or 0),
        "connector_records": int(raw.get(attr("connector_records", month)) or 0),
        "connections": connections(ctx),
    }
