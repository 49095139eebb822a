"""GET /v1/accounts/{id}/360: the account, its balance, contacts, latest orders and
invoices in 2 requests."""

from __future__ import annotations

from crm import clock
from crm.accounts import contacts, invoices, keys
from crm.accounts.schemas import Account360, AccountOrder
from crm.accounts.service import to_account
from crm.context import TenantContext
from crm.errors import NotFound
from crm.storage import AccountItem, AccountSummaryItem, ContactItem, Item

CONTACTS_IN_360 = 50


def view_360(ctx: TenantContext, account_id: str) -> Account360:
    """1 Query: ``sk >= CONTACT#`` newest first reads ``SUMMARY`` (balance, 10 latest
    orders and invoices in brief), ``PROFILE`` and up to 50 contacts, which sort right
    below it (orders and invoices, ``A#…``, sort below the contacts); + 1 BatchGetItem of
    those contacts' profiles (name, email, phone). No contacts: the Query alone."""
    if not keys.ACCOUNT_ID.match(account_id):
        raise NotFound(f"account {account_id} not found")
    n = 2 + CONTACTS_IN_360 + 1
    rows = list(
        Item.query(
            keys.account_pk(ctx, account_id),
            Item.sk >= keys.CONTACT,
            scan_index_forward=False,
            limit=n,
            page_size=n,
            consistent_read=True,
        )
    )
    profile = next((r for r in rows if isinstance(r, AccountItem)), None)
    if profile is None:
        raise NotFound(f"account {account_id} not found")
    summary = next((r for r in rows if isinstance(r, AccountSummaryItem)), None)
    linked = [r for r in rows if isinstance(r, ContactItem)]
    now = clock.now_iso()
    return Account360(
        account=to_account(profile, summary),
        contacts=contacts.with_profiles(ctx, linked[:CONTACTS_IN_360]),
        more_contacts=len(linked) > CONTACTS_IN_360,
        recent_orders=[AccountOrder.model_validate(o) for o in (summary.orders if summary else None) or []],
        recent_invoices=[invoices.to_summary(i, now) for i in (summary.invoices if summary else None) or []],
    )
