"""The connector SDK: what a built-in or partner connector imports.

A connector subclasses :class:`Connector`, declares a pydantic ``Config`` (secret fields
marked with :data:`Secret`), ``check`` and its :class:`Stream` s, and registers itself
under the ``rapport.connectors`` entry-point group. The SDK owns HTTP (retries, backoff,
``Retry-After``, rate-limit pauses), pagination, incremental windows with a lookback
overlap, checkpoints and webhook signature helpers; ``connectors.runner`` drives a sync
and ``connectors.sink`` writes the records through the same crm services as the API.
See docs/connectors.md.
"""

from importlib import import_module
from typing import Any

# name -> the submodule that defines it. Loaded on first use (PEP 562), so that code which
# only needs the registry or the secrets (the connections API, webhook intake) does not
# pay for httpx at a cold start; ``from connectors.sdk import Client`` works as before.
_EXPORTS = {
    **dict.fromkeys(
        (
            "AccountRecord",
            "CheckoutRecord",
            "Connector",
            "CustomerRecord",
            "InvoiceRecord",
            "OrderLine",
            "OrderRecord",
            "OrderTracking",
            "Page",
            "ReadContext",
            "Rejected",
            "RefundRecord",
            "SHIPMENT_STATUSES",
            "ShipmentCheckpoint",
            "ShipmentRecord",
            "Stream",
            "WebhookDelivery",
        ),
        "base",
    ),
    **dict.fromkeys(("CheckFailed", "RateLimited", "VendorError", "WebhookRejected"), "errors"),
    "Client": "http",
    **dict.fromkeys(("link_next", "page_numbers"), "paging"),
    **dict.fromkeys(("Secret", "hmac_base64", "hmac_hex"), "secrets"),
    "Window": "window",
}
__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - the lazily loaded names, listed once above


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'connectors.sdk' has no attribute {name!r}")
    value = getattr(import_module(f"connectors.sdk.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
