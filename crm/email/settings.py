"""The tenant's email settings: postal address, default sender, from name, reply-to
(``T#<tenant>#`` / ``EMAIL``; docs/email.md, "Settings")."""

from __future__ import annotations

from pynamodb.exceptions import PutError

from crm import clock
from crm.context import TenantContext
from crm.email.schemas_templates import EmailSettings, EmailSettingsPut
from crm.errors import Conflict, Invalid
from crm.storage import EmailSettingsItem, condition_failed

SK = "EMAIL"


def load(ctx: TenantContext) -> EmailSettingsItem | None:
    """1 GetItem (consistent); None before the first PUT (or the dev sender)."""
    try:
        return EmailSettingsItem.get(ctx.prefix, SK, consistent_read=True)
    except EmailSettingsItem.DoesNotExist:
        return None


def to_settings(item: EmailSettingsItem | None) -> EmailSettings:
    if item is None:
        return EmailSettings(postal_address=None, default_sender=None, from_name=None, reply_to=None,
                             ses_tenant=None, time_zone="UTC", updated_at=None, version=0)  # fmt: skip
    return EmailSettings(
        postal_address=item.postal_address,
        default_sender=item.default_sender,
        from_name=item.from_name,
        reply_to=item.reply_to,
        ses_tenant=item.ses_tenant,
        time_zone=item.time_zone or "UTC",
        updated_at=item.updated_at,
        version=int(item.version or 0),
    )


def get(ctx: TenantContext) -> EmailSettings:
    return to_settings(load(ctx))


def put(ctx: TenantContext, body: EmailSettingsPut) -> EmailSettings:
    """The whole settings (a field left out is cleared). The default sender must be an
    address whose identity (or its domain's) the tenant has verified: 422
    ``sender_not_verified``. 1-3 GetItem/BatchGetItem + 1 PutItem."""
    from crm.email import senders

    default = body.default_sender.lower() if body.default_sender else None
    if default and not senders.verified(ctx, default):
        raise Invalid(
            f"{default} is not a verified sender of this tenant: create its identity (or its domain's) "
            "with POST /v1/email/senders and wait for it to be verified",
            field="default_sender",
            code="sender_not_verified",
        )
    item = load(ctx) or EmailSettingsItem(ctx.prefix, SK)
    item.postal_address = body.postal_address
    item.default_sender = default
    item.from_name = body.from_name
    item.reply_to = body.reply_to.lower() if body.reply_to else None
    item.time_zone = body.time_zone
    item.updated_at = clock.now_iso()
    try:
        item.save()  # conditional on the version read
    except PutError as exc:
        if not condition_failed(exc):
            raise
        raise Conflict("the email settings changed meanwhile; retry", code="concurrent_update") from None
    return to_settings(item)
