"""A customer's ``METRICS`` as the API shows it: the ``metrics`` block of
``GET /v1/customers/{id}`` and of the 360 view."""

from __future__ import annotations

from crm.customers.schemas import (
    CustomerMetrics,
    LifetimeValue,
    OrdersAggregate,
    RfmScores,
    SegmentMembership,
)
from crm.storage import MetricsItem

_ORDER_FIELDS = ("count", "net_spend", "currency", "first_at", "last_at", "aov", "channels", "categories")


def metrics_block(item: MetricsItem) -> CustomerMetrics:
    agg, scores = item.agg or {}, item.scores or {}
    memberships = sorted((item.memberships or {}).items(), key=lambda kv: (kv[1].get("since") or "", kv[0]))
    return CustomerMetrics(
        orders=OrdersAggregate(**{k: agg[k] for k in _ORDER_FIELDS if agg.get(k) is not None}),
        rfm=RfmScores(**{k: scores.get(k) for k in ("r", "f", "m", "segment")}),
        ltv=LifetimeValue(**(scores.get("ltv") or {})),
        vip=bool(scores.get("vip")),
        segments=[SegmentMembership(id=sid, name=m.get("name"), since=m["since"]) for sid, m in memberships],
        updated_at=item.updated_at,
    )
