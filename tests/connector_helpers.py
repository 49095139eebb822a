"""Helpers for the connector tests: a recording ``sleep``, reading a stream to its end,
what the sink will validate an order record as, and waiting for a connection's run."""
from __future__ import annotations

import time
from dataclasses import asdict

from connectors.sdk.base import OrderRecord, Page, ReadContext
from crm.orders.schemas import OrderCreate


class Sleeps(list):
    """A ``Client(sleep=...)`` that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def read_stream(stream, rc: ReadContext, state: dict | None = None) -> tuple[list, dict, list[Page]]:
    """Every record of ``stream`` from ``state``, the state after the last page, and the pages."""
    records, pages = [], []
    for page in stream().read(rc, state or {}):
        records += page.records
        state = page.state
        pages.append(page)
    return records, state, pages


def as_order_create(record: OrderRecord, source: str) -> OrderCreate:
    """What the sink will validate: the reconciled amounts must satisfy Rapport's invariant."""
    return OrderCreate.model_validate({
        "customer": {"source": source, "external_id": record.customer.external_id}
        if record.customer else {"email": record.email},
        "source": source, "external_id": record.external_id, "channel": record.channel,
        "currency": record.currency, "lines": [asdict(line) for line in record.lines],
        "discount": record.discount, "shipping": record.shipping, "tax": record.tax,
        "total": record.total, "placed_at": record.placed_at})


def wait_run(tenant, connection_id: str, run_id: str, *, timeout: float = 60, poll: float = 0.2) -> dict:
    """Poll GET /v1/connections/{id}/runs/{run_id} until the run succeeded or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = tenant.http.get(f"/v1/connections/{connection_id}/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed"):
            return run
        time.sleep(poll)
    raise AssertionError(f"run {run_id} did not finish: {run}")
