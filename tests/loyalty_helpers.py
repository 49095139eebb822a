"""Helpers for the loyalty and merge tests over HTTP: API times and orders placed (and
paid) through the API. The ``tail`` and ``deliver`` fixtures are in tests/conftest.py."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def place_order(tenant, customer: dict, ext: str, *, total: int = 10000,
                paid_days_ago: float | None = None, channel: str = "web", category: str | None = None,
                statuses: tuple[int, ...] = (201,), number: str | None = None) -> dict:
    """POST /v1/orders for ``customer`` (an id, email or external id reference), one line of
    ``total``; paid ``paid_days_ago`` days ago when given (placed just before). ``statuses``:
    what the POST may answer (200 for a repeat of an existing order)."""
    now = datetime.now(timezone.utc)
    placed = now - timedelta(days=(paid_days_ago or 0) + 0.01)
    line = {"sku": "S-" + ext, "name": "Item", **({"category": category} if category is not None else {}),
            "quantity": 1, "unit_price": total}
    body = {"customer": customer, "source": "shop", "external_id": ext, "channel": channel,
            "currency": "EUR", "placed_at": iso(placed), "total": total, "lines": [line],
            **({"number": number} if number else {})}
    r = tenant.http.post("/v1/orders", json=body)
    assert r.status_code in statuses, r.text
    order = r.json()
    if paid_days_ago is not None:
        r = tenant.http.post(f"/v1/orders/{order['id']}/pay",
                             json={"paid_at": iso(now - timedelta(days=paid_days_ago))})
        assert r.status_code == 200, r.text
        order = r.json()
    return order
