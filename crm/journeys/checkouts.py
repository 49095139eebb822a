"""Started checkouts (``POST /v1/checkouts``): the ``checkout.started`` fact that cart
abandonment journeys start from (docs/journeys.md). One ``CheckoutItem`` in the
customer's partition, put once: its insert is the event (crm/events.py), so a repeated
POST, a retry or a connector's replay is the same checkout and starts nothing twice."""

from __future__ import annotations

from crm import clock
from crm.context import TenantContext
from crm.journeys.api_schemas import CheckoutStart, StartedCheckout
from crm.storage import CheckoutItem, condition_failed


def _sk(checkout_id: str) -> str:
    return f"C#CHECKOUT#{checkout_id}"


def _out(item: CheckoutItem, created: bool) -> StartedCheckout:
    data = dict(item.data or {})
    return StartedCheckout(
        customer_id=item.customer_id,
        checkout_id=item.checkout_id,
        started_at=item.started_at,
        currency=data.get("currency"),
        total=data.get("total"),
        url=data.get("url"),
        items=list(data.get("items") or []),
        created=created,
    )


def record(ctx: TenantContext, body: CheckoutStart) -> StartedCheckout:
    """1 GetItem (the customer: 404 unknown, 410 erased; a merged id is followed to its
    survivor) + 1 PutItem (``attribute_not_exists``); a checkout recorded before
    is returned as it was (``created: false``), whatever this body says."""
    from crm.customers import records, service

    profile = service.resolve(ctx, body.customer_id)
    customer_id = profile.customer_id
    if profile.status != "active":
        from crm.errors import Gone

        raise Gone(f"customer {body.customer_id} was erased")
    now = clock.now_iso()
    data = body.model_dump(mode="json", include={"currency", "total", "url", "items"}, exclude_none=True)
    item = CheckoutItem(
        records.profile_pk(ctx, customer_id),
        _sk(body.checkout_id),
        customer_id=customer_id,
        checkout_id=body.checkout_id,
        started_at=clock.iso(body.started_at) if body.started_at else now,
        data=data,
        created_at=now,
    )
    try:
        item.save(CheckoutItem.pk.does_not_exist())
    except Exception as exc:
        if not condition_failed(exc):
            raise
        return _out(CheckoutItem.get(item.pk, item.sk, consistent_read=True), False)
    return _out(item, True)
