"""The connector SDK: what a built-in or partner connector imports.

A connector subclasses :class:`Connector`, declares a pydantic ``Config`` (secret fields
marked with :data:`Secret`), ``check`` and its :class:`Stream` s, and registers itself
under the ``rapport.connectors`` entry-point group. The SDK owns HTTP (retries, backoff,
``Retry-After``, rate-limit pauses), pagination, incremental windows with a lookback
overlap, checkpoints and webhook signature helpers; ``connectors.runner`` drives a sync
and ``connectors.sink`` writes the records through the same crm services as the API.
See docs/connectors.md.
"""
from connectors.sdk.base import (
    Connector,
    CustomerRecord,
    OrderLine,
    OrderRecord,
    Page,
    ReadContext,
    Rejected,
    RefundRecord,
    Stream,
    WebhookDelivery,
)
from connectors.sdk.errors import CheckFailed, RateLimited, VendorError, WebhookRejected
from connectors.sdk.http import Client
from connectors.sdk.paging import link_next, page_numbers
from connectors.sdk.secrets import Secret, hmac_base64, hmac_hex
from connectors.sdk.window import Window

__all__ = [
    "CheckFailed", "Client", "Connector", "CustomerRecord", "OrderLine", "OrderRecord", "Page",
    "RateLimited", "ReadContext", "RefundRecord", "Rejected", "Secret", "Stream", "VendorError",
    "WebhookDelivery", "WebhookRejected", "Window", "hmac_base64", "hmac_hex", "link_next",
    "page_numbers",
]
