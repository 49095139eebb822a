"""How a customer maps onto items: keys, guard and index items, and conversion.

Layout (one tenant, ``P = T#<tenant>#``):

| item | pk | sk | GSI keys |
|---|---|---|---|
| profile | ``P C#<id>`` | ``PROFILE`` | gsi1 ``P CUSTOMERS``/``<id>``, gsi2 ``P CUSTOMERS``/``<updated_at>#<id>`` |
| timeline entry | ``P C#<id>`` | ``EV#<occurred_at>#<event id>`` | - |
| unique guard | ``P U#email#<email>``, ``P U#xid#<source>#<id>`` | ``U`` | - |
| lookup entry | ``P I#phone#<e164>``, ``P I#tag#<tag>`` | ``<customer id>`` | - |
"""

from __future__ import annotations

from typing import Any, cast

from crm.context import TenantContext
from crm.customers.schemas import Customer, CustomerStatus, ErasureStatus, TimelineEvent
from crm.storage import CustomerItem, EventItem

PROFILE = "PROFILE"
EVENT_PREFIX = "EV#"
MERGED_STATES = ("merging", "merged")  # the profile's id resolves to ``merged_into``


def survivor(item: Any) -> str | None:
    """The customer a merged (or merging) profile resolves to, else None."""
    if getattr(item, "status", None) in MERGED_STATES and getattr(item, "merged_into", None):
        return item.merged_into
    return None


def profile_pk(ctx: TenantContext, customer_id: str) -> str:
    return ctx.key("C", customer_id)


def list_pk(ctx: TenantContext) -> str:
    return ctx.key("CUSTOMERS")


def email_guard(ctx: TenantContext, email: str) -> str:
    return ctx.key("U", "email", email)


def xid_guard(ctx: TenantContext, source: str, external_id: str) -> str:
    return ctx.key("U", "xid", source, external_id)


def phone_entry(ctx: TenantContext, phone: str) -> str:
    return ctx.key("I", "phone", phone)


def tag_entry(ctx: TenantContext, tag: str) -> str:
    return ctx.key("I", "tag", tag.casefold())


def guards(ctx: TenantContext, data: dict[str, Any]) -> dict[str, str]:
    """Guard pk -> the field it protects, for every unique value of the profile."""
    out = {}
    if data.get("email"):
        out[email_guard(ctx, data["email"])] = "email"
    for source, xid in (data.get("external_ids") or {}).items():
        out[xid_guard(ctx, source, xid)] = f"external_ids.{source}"
    for prev in data.get("previous_emails") or ():  # still guarded for a while (see normalize)
        out.setdefault(email_guard(ctx, prev["email"]), "previous_emails")
    aliases = data.get("aliases") or {}
    for email in aliases.get("emails") or ():  # identities a merge brought (crm/merge.py)
        out.setdefault(email_guard(ctx, email), "aliases.emails")
    for alias in aliases.get("external_ids") or ():
        out.setdefault(xid_guard(ctx, alias["source"], alias["external_id"]), "aliases.external_ids")
    return out


def entries(ctx: TenantContext, data: dict[str, Any]) -> set[str]:
    """Lookup-entry pks (phone, tags) the profile should be listed under."""
    out = {tag_entry(ctx, t) for t in data.get("tags") or ()}
    for phone in [data.get("phone"), *((data.get("aliases") or {}).get("phones") or ())]:
        if phone:
            out.add(phone_entry(ctx, phone))
    return out


def phones(data: dict[str, Any]) -> set[str]:
    """Every phone a profile answers to: its own and those a merge brought."""
    return {p for p in [data.get("phone"), *((data.get("aliases") or {}).get("phones") or ())] if p}


def set_list_keys(ctx: TenantContext, item: CustomerItem) -> None:
    """Active profiles appear on both list indexes; a tombstone on neither."""
    if item.status == "active":
        item.gsi1pk = item.gsi2pk = list_pk(ctx)
        item.gsi1sk = item.customer_id
        item.gsi2sk = f"{item.updated_at}#{item.customer_id}"
    else:
        item.gsi1pk = item.gsi1sk = item.gsi2pk = item.gsi2sk = None


def customer_since(created_at: str, data: dict[str, Any]) -> str:
    """The earliest of Rapport's creation and the vendors' first-seen times."""
    return min([created_at, *(data.get("source_created_at") or {}).values()])


def to_customer(item: CustomerItem) -> Customer:
    data = item.data or {}
    return Customer(
        id=item.customer_id,
        status=cast(CustomerStatus, item.status),
        created_at=item.created_at,
        updated_at=item.updated_at,
        erased_at=item.erased_at,
        merged_into=item.merged_into,
        version=item.version,
        erasure=ErasureStatus.model_validate({"status": item.erasure["status"]}) if item.erasure else None,
        customer_since=customer_since(item.created_at, data),
        **data,
    )


def to_event(item: EventItem) -> TimelineEvent:
    return TimelineEvent(id=item.event_id, customer_id=item.customer_id, created_at=item.created_at, **item.data)
