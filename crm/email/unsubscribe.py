"""One-click unsubscribe (RFC 8058): what a POST to ``links.url(...)`` does.

The link is opaque and signed (crm/email/links.py): whoever holds it may unsubscribe that
customer, without an API key, which is what RFC 8058 asks of the mail client's POST.
A GET only shows a page with a button (api/routes/unsubscribe.py): link scanners follow
GETs and must not unsubscribe anyone.

An unsubscribe sets the customer's email consent to ``{"status": "denied", "source":
"unsubscribe", "at": now}`` through the customers service (its version, its
``customer.updated`` event and the segments follow), puts the profile's address on the
tenant's suppression list (reason ``unsubscribe``), ADDs ``unsubscribed`` on the campaign
once per (campaign, customer) and writes an ``email.unsubscribed`` timeline entry. Every
part is idempotent: a second POST changes nothing more. A merged customer's survivor is
unsubscribed (the same person); an erased or unknown one changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from crm.email import links


@dataclass(frozen=True)
class Target:
    """A verified link's tenant, customer and sender, and the tenant's name for the page."""

    link: links.Unsubscribe
    tenant_name: str | None


@dataclass(frozen=True)
class Done:
    revoked: bool  # consent changed now (False: it was denied already, or nobody to change)
    suppressed: bool
    counted: bool


def verify(token: str) -> Target:
    """The link's target, or NotFound, the same for a malformed, forged or foreign token
    (never why). 1 GetItem (the tenant, for its name)."""
    from crm import ids, tenants
    from crm.context import TenantContext
    from crm.errors import NotFound

    try:
        link = links.parse(token)
        ctx = TenantContext(link.tenant_id)
    except ValueError:  # InvalidToken, or a signed but malformed tenant id
        raise NotFound("this unsubscribe link is not valid") from None
    if not ids.CUSTOMER_ID.match(link.customer_id):
        raise NotFound("this unsubscribe link is not valid")
    try:
        name: str | None = tenants.get(ctx).name
    except NotFound:
        raise NotFound("this unsubscribe link is not valid") from None
    return Target(link, name)


def unsubscribe(target: Target) -> Done:
    """Apply the unsubscribe (see the module's doc). 1-2 GetItem for the profile, then
    only what is not done yet: 1 GetItem + 1 TransactWriteItems for the consent, 1 PutItem
    for the suppression, 1 TransactWriteItems for the campaign's count, 1 for the timeline."""
    from crm import clock
    from crm.context import TenantContext
    from crm.customers import service
    from crm.email import delivery
    from crm.errors import NotFound

    link = target.link
    ctx = TenantContext(link.tenant_id)
    try:
        profile = service.resolve(ctx, link.customer_id)
    except NotFound:
        return Done(False, False, False)
    if profile.status != "active":
        return Done(False, False, False)  # erased: nothing of it is left to change
    now = clock.now_iso()
    revoked = delivery.revoke_consent(ctx, profile.customer_id, "unsubscribe", now)
    email = (profile.data or {}).get("email") or ""
    suppressed = delivery.suppress(ctx, email, "unsubscribe", at=now) if email else False
    counted = False
    if link.ref.startswith("cmp_"):
        counted = delivery.add_once(ctx, f"{link.ref}#unsubscribe#{link.customer_id}", link.ref, "unsubscribed", now)
    if revoked:  # once per unsubscribe that changed the consent: a repeat writes none
        delivery.timeline(
            ctx,
            profile.customer_id,
            "email.unsubscribed",
            f"unsubscribe:{link.ref}:{now}",
            now,
            "Unsubscribed from marketing emails (one-click link)",
            {"ref": link.ref},
        )
    return Done(revoked, suppressed, counted)
