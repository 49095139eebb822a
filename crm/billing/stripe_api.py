"""The one place Rapport builds its Stripe client (the official ``stripe`` library).

Settings (environment): ``RAPPORT_STRIPE_API_KEY`` (``sk_…``), ``RAPPORT_STRIPE_API_BASE``
(unset in production; ``rapport dev`` and the tests point it at the Stripe double),
``RAPPORT_STRIPE_WEBHOOK_SECRETS`` (comma-separated ``whsec_…``: several while rotating).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from crm.errors import Unavailable

if TYPE_CHECKING:
    import stripe

API_VERSION = "2025-03-31.basil"  # the object shapes crm/billing reads (periods on subscription items)


def configured() -> bool:
    return bool(os.environ.get("RAPPORT_STRIPE_API_KEY"))


def client() -> stripe.StripeClient:
    """A client for this deployment's Stripe account; 503 ``billing_not_configured`` without a key."""
    import stripe

    key = os.environ.get("RAPPORT_STRIPE_API_KEY")
    if not key:
        raise Unavailable(
            "billing is not configured on this deployment (RAPPORT_STRIPE_API_KEY)", code="billing_not_configured"
        )
    base = os.environ.get("RAPPORT_STRIPE_API_BASE")
    return stripe.StripeClient(
        key,
        stripe_version=API_VERSION,
        base_addresses={"api": base} if base else None,
        max_network_retries=2,
        http_client=stripe.HTTPXClient(
            timeout=20, allow_sync_methods=True
        ),  # requests is not in the zip (infra/requirements.py)
    )


def webhook_secrets() -> list[str]:
    return [s.strip() for s in os.environ.get("RAPPORT_STRIPE_WEBHOOK_SECRETS", "").split(",") if s.strip()]
