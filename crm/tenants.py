"""Tenants: created by an operator; a suspended tenant is refused on every route."""

from __future__ import annotations

from dataclasses import dataclass

from crm import clock, ids
from crm.context import TenantContext
from crm.errors import Invalid, NotFound
from crm.storage import TenantItem

STATUSES = ("active", "suspended")


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    status: str
    plan: str | None
    created_at: str


def _to_tenant(item: TenantItem) -> Tenant:
    return Tenant(item.pk.split("#")[1], item.name, item.status, item.plan, item.created_at)


def _item(ctx: TenantContext) -> TenantItem:
    return TenantItem(ctx.prefix, "TENANT")


def create(name: str) -> Tenant:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("tenant name must be 1-200 characters", field="name")
    tid = ids.tenant_id()
    item = TenantItem(
        f"T#{tid}#",
        "TENANT",
        name=name,
        status="active",
        created_at=clock.now_iso(),
        gsi1pk="TENANTS",
        gsi1sk=tid,
    )
    item.save(condition=TenantItem.pk.does_not_exist())
    _dev_sender(TenantContext(tid))
    return _to_tenant(item)


def _dev_sender(ctx: TenantContext) -> None:
    """Locally only (``rapport dev``, the tests): the tenant's ``hello@<tenant id>.<domain>``
    sender, already verified in the emulator, as its default sender (crm/email/senders.py)."""
    from crm import settings

    domain = settings.dev_sender_domain()
    if domain:
        from crm.email import senders

        senders.dev_sender(ctx, domain)


def get(ctx: TenantContext) -> Tenant:
    try:
        return _to_tenant(TenantItem.get(ctx.prefix, "TENANT", consistent_read=True))
    except TenantItem.DoesNotExist:
        raise NotFound(f"tenant {ctx.tenant_id} does not exist") from None


def set_status(ctx: TenantContext, status: str) -> Tenant:
    if status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", field="status")
    get(ctx)
    item = _item(ctx)
    item.update(actions=[TenantItem.status.set(status)], condition=TenantItem.pk.exists())
    return get(ctx)


def list_all() -> list[Tenant]:
    """Operator listing (CLI only): one Query on gsi1 per page, never a Scan, and one
    BatchGetItem per 100 tenants for their plans (crm/billing: no billing item is free)."""
    from dataclasses import replace

    from crm.storage import BillingItem, Item

    found = [_to_tenant(i) for i in TenantItem.gsi1.query("TENANTS")]
    plans: dict[str, str] = {}
    keys = [(f"T#{t.id}#", "BILLING") for t in found]
    for item in Item.batch_get(keys):
        if isinstance(item, BillingItem):
            plans[item.pk] = item.plan
    return [replace(t, plan=plans.get(f"T#{t.id}#", "free")) for t in found]
