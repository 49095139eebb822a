"""The follow-up of a customer's erasure, from the ``sync`` queue (crm/erasure.py).

Message: ``{"type": "erasure", "tenant_id", "customer_id"}`` (``crm.erasure.message``), sent by
``DELETE /v1/customers/{id}`` (again by a repeated DELETE while it is pending). It runs
every declared kind's erasure hook (Queries per partition and connection, never a table
Scan), then marks the tombstone ``erasure: {"status": "complete"}``. A failure leaves the
message to be retried; every hook is idempotent.
"""
from __future__ import annotations

from typing import Any


def run(message: dict[str, Any]) -> dict[str, int]:
    import connectors.erasure  # noqa: F401  (registers the connectors' hooks)
    from crm.context import TenantContext
    from crm.customers import service

    return service.finish_erasure(TenantContext(message["tenant_id"]), message["customer_id"])
