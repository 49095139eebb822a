"""Customers by id for an agent (a row it must refresh): one BatchGetItem of their
profiles; ids unknown to the tenant are absent. A merged customer is answered as its
tombstone (``merged_into`` names the survivor), an erased one with an empty profile."""

from __future__ import annotations

from crm.agents.schemas import FetchedCustomer, FetchedProfile
from crm.context import TenantContext
from crm.customers.service import batch_profiles
from crm.storage import CustomerItem

PROFILE_FIELDS = ("name", "email", "phone", "birth_date", "gender", "locale", "tags", "attributes")


def fetched(item: CustomerItem, source: str) -> FetchedCustomer:
    data = item.data or {}
    shown = {k: data[k] for k in PROFILE_FIELDS if data.get(k) is not None} if item.status != "erased" else {}
    return FetchedCustomer(
        customer_id=item.customer_id,
        status=item.status,
        updated_at=item.updated_at,
        external_id=(data.get("external_ids") or {}).get(source),
        merged_into=item.merged_into,
        profile=FetchedProfile(**shown),
    )


def fetch(ctx: TenantContext, source: str, customer_ids: list[str]) -> list[FetchedCustomer]:
    """In the order asked (each id once): 1 BatchGetItem (at most 100 ids)."""
    found = batch_profiles(ctx, customer_ids)
    return [fetched(found[cid], source) for cid in dict.fromkeys(customer_ids) if cid in found]
