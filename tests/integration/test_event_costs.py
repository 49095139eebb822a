"""What an order costs in DynamoDB requests end to end, once its events are handled
(docs/performance.md, "Events and loyalty"; bench/events.py measures the same paths):
placed + paid + points with a tier change at most 8 requests, a partial refund at most
6. Counted, never timed.

The writes are the service calls the API routes make (the API key's authentication is
cached and not part of a step). The stream records they cause go through the
dispatcher's decoding and routing (``functions.dispatch``: pure, no request) and each
subscriber's messages through its Lambda handler (``functions.loyalty.handle_batch``,
``functions.timeline.handle_batch``) as SQS delivers them, all in this thread, so every
request an event causes is counted. Then every message is delivered again, shuffled
(SQS's at-least-once, unordered delivery): nothing changes.
"""
from __future__ import annotations

import random
from collections import Counter

import pytest

from tests.dynamo_calls import dynamodb_calls
from tests.streams import sqs_event

PROGRAM = {
    "earns_from": "2000-01-01T00:00:00Z", "currency": "EUR", "earn_rates": {"EUR": 1}, "rounding": "floor",
    "first_order_bonus": 100, "tier_basis": "spend",
    "tiers": [{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 7000, "multiplier": 1.25}],
    "return_window_days": 14, "expiry_months": 12, "expiring_notice_days": 14,
}



class Events:
    """The stream since the last call -> dispatcher -> subscribers' Lambda handlers."""

    def __init__(self, table: str, tenant_id: str) -> None:
        from tests.streams import StreamTail

        self.tail, self.tenant_id = StreamTail(table), tenant_id
        self.messages: dict[str, list[dict]] = {}

    def handle(self) -> dict[str, list[dict]]:
        """Until nothing new comes out (a subscriber's writes are stream records too);
        returns what each subscriber was sent."""
        from functions import loyalty, timeline
        from functions.dispatch import events_of, route

        handlers = {"loyalty": loyalty.handle_batch, "timeline": timeline.handle_batch}
        sent: dict[str, list[dict]] = {name: [] for name in handlers}
        while events := [e for r in self.tail.records() for e in events_of(r)
                         if e["tenant_id"] == self.tenant_id]:
            routed = route(events)
            # segments' own costs: tests/integration/test_segments_maintain.py; journeys':
            # tests/integration/test_journeys.py (1 Query per batch for a tenant without any)
            assert set(routed) - {"segments", "journeys"} == set(handlers)
            routed.pop("segments", None)
            routed.pop("journeys", None)
            for name, batch in routed.items():
                if batch:
                    answer = handlers[name](sqs_event(batch))
                    assert answer == {"batchItemFailures": []}, answer
                sent[name] += batch
                self.messages.setdefault(name, []).extend(batch)
        return sent


@pytest.fixture()
def world(table, tenant):
    from crm.loyalty import service
    from crm.loyalty.schemas import ProgramFields

    service.put_program(tenant.ctx, ProgramFields(**PROGRAM), None)
    cid = tenant.create_customer(email="costs@example.com")["id"]
    return tenant, cid, Events(table, tenant.id)


def _order(cid: str):
    from datetime import datetime, timedelta, timezone

    from crm.orders.schemas import OrderCreate

    return OrderCreate(customer={"id": cid}, source="shop", external_id="costs-1", channel="web",
                       currency="EUR", lines=[{"sku": "s", "name": "n", "quantity": 1, "unit_price": 4000}],
                       discount=0, shipping=0, tax=0, total=4000,
                       placed_at=datetime.now(timezone.utc) - timedelta(hours=1))


def _timeline(tenant, cid: str) -> list[dict]:
    """As a customers:read key sees it (order and points entries included)."""
    key = tenant.key_with("customers:read")
    r = tenant.http.get(f"/v1/customers/{cid}/events", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_placed_paid_and_points_with_a_tier_change_cost_at_most_8_requests(world):
    from crm.orders import service as orders
    from crm.orders.schemas import PaymentCreate

    tenant, cid, events = world
    with dynamodb_calls() as calls:
        order, created = orders.create(tenant.ctx, _order(cid))
        orders.pay(tenant.ctx, order.id, PaymentCreate())
        routed = events.handle()
    assert created and [e["type"] for e in routed["loyalty"]] == ["order.paid"]
    # placed: 1 BatchGetItem + 1 TransactWriteItems; paid: 1 GetItem + 1 BatchGetItem +
    # 1 TransactWriteItems; the points (and the tier): 1 BatchGetItem + 1 TransactWriteItems.
    # Every timeline entry was written in its fact's transaction.
    assert calls == {"BatchGetItem": 3, "TransactWriteItems": 3, "GetItem": 1}, calls
    assert sum(calls.values()) <= 8
    assert routed["timeline"] == []
    entries = _timeline(tenant, cid)
    assert Counter(e["type"] for e in entries) == Counter(
        {"order.placed": 1, "order.paid": 1, "points.earned": 1, "tier.changed": 1})
    tier = next(e for e in entries if e["type"] == "tier.changed")
    assert tier["summary"] == "Tier changed from none to Bronze"
    assert tenant.http.get(f"/v1/customers/{cid}/loyalty").json()["tier"] == "Bronze"

    # every message again, shuffled: reads only, nothing new
    again = [e for batch in events.messages.values() for e in batch] * 2
    random.Random(3).shuffle(again)
    from functions import loyalty

    with dynamodb_calls() as calls:
        loyalty.handle_batch(sqs_event(again))
    assert calls == {"BatchGetItem": len(again)}, calls
    assert _timeline(tenant, cid) == entries


def test_a_partial_refund_costs_at_most_6_requests(world):
    from crm.orders import service as orders
    from crm.orders.schemas import PaymentCreate, RefundCreate

    tenant, cid, events = world
    order, _ = orders.create(tenant.ctx, _order(cid))
    orders.pay(tenant.ctx, order.id, PaymentCreate())
    events.handle()
    with dynamodb_calls() as calls:
        orders.refund(tenant.ctx, order.id, RefundCreate(amount=1000))
        routed = events.handle()
    assert [e["type"] for e in routed["loyalty"]] == ["order.refunded"]
    # refund: 1 GetItem + 1 BatchGetItem + 1 TransactWriteItems; the reversal: 1
    # BatchGetItem + 1 TransactWriteItems
    assert calls == {"BatchGetItem": 2, "TransactWriteItems": 2, "GetItem": 1}, calls
    assert sum(calls.values()) <= 6
    types = Counter(e["type"] for e in _timeline(tenant, cid))
    assert types["order.refunded"] == 1 and types["points.reversed"] == 1


def test_expiry_notices_for_more_lots_than_a_transaction_holds_are_written_in_steps(world):
    """Each expiry notice is a timeline entry in the book's transaction (at most 100
    items), so a catch-up counts notices like ledger entries and writes them 45 at a
    time: 100 lots announced at once take 3 transactions, each notice once."""
    from datetime import datetime, timedelta

    from crm.loyalty import service

    tenant, cid, _ = world
    for i in range(100):
        r = tenant.http.post(f"/v1/customers/{cid}/loyalty/adjustments", json={"points": 1, "reason": f"r{i}"})
        assert r.status_code == 201, r.text
    lots = tenant.http.get(f"/v1/customers/{cid}/loyalty").json()["lots"]
    first = min(datetime.fromisoformat(lot["expires_at"].replace("Z", "+00:00")) for lot in lots)
    notice = (first - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S.000Z")  # inside the 14-day notice
    with dynamodb_calls() as calls:
        service.maintain(tenant.ctx, cid, notice)
    assert calls == {"BatchGetItem": 3, "TransactWriteItems": 3}, calls
    types = Counter(e["type"] for e in _timeline_all(tenant, cid))
    assert types["points.expiring"] == 100 and types["points.adjusted"] == 100


def _timeline_all(tenant, cid: str) -> list[dict]:
    out, cursor = [], None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = tenant.http.get(f"/v1/customers/{cid}/events", params=params).json()
        out += page["data"]
        cursor = page.get("next_cursor")
        if not cursor:
            return out
