"""What a template sees. The same names at save-time validation, preview and send.

* ``customer``: the customer as ``GET /v1/customers/{id}`` returns it (profile, consent,
  ``metrics`` aggregates and scores) plus ``loyalty`` (balance, tier) when the tenant has
  a program
* ``tenant``: ``{"id", "name"}``
* ``event``: the triggering event (a journey's), ``{}`` for a campaign
* ``unsubscribe_url``: the recipient's signed one-click link (crm/email/links.py)
* ``postal_address``: the tenant's postal address (its email settings)
"""

from __future__ import annotations

from typing import Any

NAMES = ("customer", "tenant", "event", "unsubscribe_url", "postal_address")
# a marketing template must use both (CAN-SPAM, RFC 8058): checked at save
REQUIRED_FOR_MARKETING = ("unsubscribe_url", "postal_address")


def build(
    customer: dict[str, Any],
    tenant: dict[str, Any],
    event: dict[str, Any] | None,
    unsubscribe_url: str,
    postal_address: str,
) -> dict[str, Any]:
    return {
        "customer": customer,
        "tenant": tenant,
        "event": event or {},
        "unsubscribe_url": unsubscribe_url,
        "postal_address": postal_address,
    }
