"""Sender identities: a domain or an address the tenant sends from, created in SES with
the DKIM records to publish; its status is refreshed from SES when read
(docs/email.md, "Senders").

Storage: ``T#<tenant>#SENDERS`` / ``<identity, lower case>`` (SenderItem). SES holds the
identity for the whole account, tagged with the tenant (crm/email/ses_identities.py):
a domain one tenant holds is 409 ``identity_taken`` for every other.

``verified(ctx, address)`` is what sending asks: is the address, or its domain, a
verified identity of this tenant?
"""

from __future__ import annotations

import re
from typing import Any

from crm import clock
from crm.context import TenantContext
from crm.email import ses_identities
from crm.email.schemas_templates import IDENTITY_PATTERN, Sender
from crm.errors import Conflict, NotFound
from crm.storage import Item, SenderItem

MAX_SENDERS = 50  # per tenant
_IDENTITY = re.compile(IDENTITY_PATTERN)
DEV_SENDER_LOCAL = "hello"


def list_pk(ctx: TenantContext) -> str:
    return ctx.key("SENDERS")


def normalize(identity: str) -> str:
    return identity.strip().lower()


def to_sender(item: SenderItem) -> Sender:
    return Sender(
        identity=item.identity,
        type=item.type,  # type: ignore[arg-type]
        status=item.status,  # type: ignore[arg-type]
        dkim=item.dkim or [],
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


def _not_found(identity: str) -> NotFound:
    return NotFound(f"sender {identity} not found", code="sender_not_found")


def _load(ctx: TenantContext, identity: str) -> SenderItem:
    if len(identity) > 254 or not _IDENTITY.match(identity):
        raise _not_found(identity)
    try:
        return SenderItem.get(list_pk(ctx), normalize(identity), consistent_read=True)
    except SenderItem.DoesNotExist:
        raise _not_found(identity) from None


def _refresh(item: SenderItem) -> SenderItem:
    """1 GetEmailIdentity; the item updated (1 UpdateItem) when the status or the DKIM
    records changed. An identity gone from SES is ``failed``."""
    try:
        found = ses_identities.get(item.identity)
        status, dkim = found.status, found.dkim or item.dkim or []
    except ses_identities.IdentityMissing:
        status, dkim = "failed", item.dkim or []
    if status != item.status or dkim != (item.dkim or []):
        item.status, item.dkim, item.updated_at = status, dkim, clock.now_iso()
        item.update(
            actions=[
                SenderItem.status.set(status),
                SenderItem.dkim.set(dkim),
                SenderItem.updated_at.set(item.updated_at),
            ],
            condition=SenderItem.pk.exists(),
        )
    return item


def create(ctx: TenantContext, identity: str) -> tuple[Sender, bool]:
    """The identity in SES (1 GetEmailIdentity + 1 CreateEmailIdentity) and its item
    (1 PutItem); (sender, created). Asking again for the tenant's own identity returns it
    (200). 409 ``identity_taken`` (another tenant's) or ``sender_limit``."""
    identity = normalize(identity)
    try:
        existing = _load(ctx, identity)
        return to_sender(existing), False
    except NotFound:
        pass
    if SenderItem.count(list_pk(ctx)) >= MAX_SENDERS:
        raise Conflict(f"the tenant has {MAX_SENDERS} sender identities, the most it may have; delete one first",
                       field="identity", code="sender_limit", limit=MAX_SENDERS)  # fmt: skip
    try:
        found = ses_identities.create(identity, ctx.tenant_id)
    except ses_identities.IdentityTaken:
        raise Conflict(
            f"{identity} is a sender identity of another account holder: it cannot be added",
            field="identity",
            code="identity_taken",
        ) from None
    now = clock.now_iso()
    item = SenderItem(
        list_pk(ctx),
        identity,
        identity=identity,
        type="address" if "@" in identity else "domain",
        status=found.status,
        dkim=found.dkim,
        created_at=now,
        updated_at=now,
    )
    item.save()
    return to_sender(item), True


def get(ctx: TenantContext, identity: str) -> Sender:
    """1 GetItem + the status refreshed from SES (1 GetEmailIdentity, 1 UpdateItem if changed)."""
    return to_sender(_refresh(_load(ctx, identity)))


def list_(ctx: TenantContext) -> list[Sender]:
    """1 Query; pending identities are refreshed from SES (1 GetEmailIdentity each)."""
    items = list(SenderItem.query(list_pk(ctx)))
    return [to_sender(_refresh(i) if i.status == "pending" else i) for i in items]


def delete(ctx: TenantContext, identity: str) -> None:
    """1 GetItem (the settings: the default sender cannot go) + 1 GetItem + 1
    DeleteEmailIdentity + 1 DeleteItem. 409 ``sender_in_use``."""
    from crm.email import settings

    item = _load(ctx, identity)
    current = settings.load(ctx)
    default = (current.default_sender or "") if current else ""
    if default and (default == item.identity or default.rsplit("@", 1)[-1] == item.identity):
        raise Conflict(
            f"{item.identity} sends the tenant's default sender {default}: change the default "
            "(PUT /v1/email/settings) first",
            field="identity",
            code="sender_in_use",
        )
    ses_identities.delete(item.identity)
    item.delete()


def verified(ctx: TenantContext, address: str) -> bool:
    """Whether the tenant may send from ``address``: the address, or its domain, is a
    verified identity of this tenant. 1 BatchGetItem; an identity still pending is
    checked with SES (1 GetEmailIdentity) and its item updated."""
    address = normalize(address)
    if "@" not in address:
        return False
    keys = [(list_pk(ctx), address), (list_pk(ctx), address.rsplit("@", 1)[1])]
    items: list[Any] = [i for i in Item.batch_get(keys, consistent_read=True) if isinstance(i, SenderItem)]
    if any(i.status == "verified" for i in items):
        return True
    return any(_refresh(i).status == "verified" for i in items if i.status == "pending")


def dev_sender(ctx: TenantContext, domain: str) -> str:
    """Locally (``crm.settings.dev_sender_domain()``): ``hello@<tenant id>.<domain>``
    verified in the emulator's SES and set as the tenant's default sender. The emulator
    accepts a send from any identity it holds (moto's ``_is_verified_address``), so one
    CreateEmailIdentity does what SES's verification would; then 1 TransactWriteItems
    (the sender and the settings)."""
    from crm.storage import EmailSettingsItem
    from crm.tx import Tx

    address = f"{DEV_SENDER_LOCAL}@{ctx.tenant_id}.{domain}".lower()
    ses_identities.create(address, ctx.tenant_id, fresh=True)
    now = clock.now_iso()
    tx = Tx()
    tx.save(SenderItem(list_pk(ctx), address, identity=address, type="address", status="verified", dkim=[],
                       created_at=now, updated_at=now), role="sender")  # fmt: skip
    tx.save(EmailSettingsItem(ctx.prefix, "EMAIL", default_sender=address, updated_at=now), role="settings")
    tx.run()
    return address
