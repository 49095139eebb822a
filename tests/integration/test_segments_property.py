"""Live segments, as a property: for random customers, orders, payments, refunds,
cancellations, tag changes, merges, erasures and clock moves (through the real services
and storage, moto over HTTP; the events through the dispatcher's decoding to the
segments subscriber's Lambda handler, delivered at random points), the incrementally
maintained metrics and memberships equal a from-scratch evaluation of every rule over
the customer's stored orders and profile at that instant, every member item is there
exactly when the membership is, and every ``member_count`` is exact. Time conditions
flip when the due customers are reconciled at the (simulated) instant.

``SEGMENTS_EXAMPLES`` raises the number of examples (default 8).
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.streams import StreamTail

pytestmark = pytest.mark.slow

RULES = {
    "seg_big": {"all": [{"field": "orders.net_spend", "op": ">=", "value": 5000}]},
    "seg_repeat": {"all": [{"field": "orders.count", "op": ">=", "value": 2}]},
    "seg_lapsed": {"all": [{"field": "orders.last_at", "op": "older_than", "value": "P20D"}]},
    "seg_recent": {"all": [{"field": "rfm.r", "op": ">=", "value": 4}]},
    "seg_gold": {"all": [{"field": "tags", "op": "contains", "value": "gold"}]},
    "seg_mixed": {"any": [{"all": [{"field": "orders.count", "op": ">=", "value": 2},
                                   {"field": "orders.last_at", "op": "older_than", "value": "P10D"}]},
                          {"field": "tags", "op": "contains", "value": "gold"}]},
}
CUSTOMERS = 3

ops = st.lists(st.one_of(
    # (order, customer, amount in hundreds, placed days ago, paid, refund percent, cancelled)
    st.tuples(st.just("order"), st.integers(0, CUSTOMERS - 1), st.integers(1, 80), st.integers(0, 30),
              st.booleans(), st.sampled_from([0, 0, 50, 100]), st.booleans()),
    st.tuples(st.just("tag"), st.integers(0, CUSTOMERS - 1), st.booleans()),
    st.tuples(st.just("clock"), st.integers(1, 25)),
    st.tuples(st.just("deliver")),
    st.tuples(st.just("merge"), st.integers(0, CUSTOMERS - 1), st.integers(0, CUSTOMERS - 1)),
    st.tuples(st.just("erase"), st.integers(0, CUSTOMERS - 1)),
), min_size=1, max_size=10)


def _sqs_event(events: list[dict]) -> dict:
    return {"Records": [{"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": json.dumps(e),
                         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                         "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:rapport-segments",
                         "awsRegion": "us-east-1"} for i, e in enumerate(events)]}


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class Run:
    """One example: a tenant of its own, its segments, a simulated clock."""

    def __init__(self, tail: StreamTail, sim: list[datetime]) -> None:
        from crm import tenants
        from crm.context import TenantContext
        from crm.customers import service as customers
        from crm.customers.schemas import CustomerCreate
        from tests.integration.test_segments_maintain import make_segment

        self.tail, self.sim = tail, sim
        tail.records()  # what earlier examples left
        self.ctx = TenantContext(tenants.create("Segments property").id)
        for sid, rule in RULES.items():
            make_segment(self.ctx, sid, sid, rule)
        self.ids = [customers.create(self.ctx, CustomerCreate(email=f"p{i}@example.com")).id
                    for i in range(CUSTOMERS)]
        self.status = {cid: "active" for cid in self.ids}
        self.n = 0

    @property
    def now(self) -> datetime:
        return self.sim[0]

    def deliver(self) -> None:
        from functions import segments
        from functions.dispatch import events_of, route

        while events := [e for r in self.tail.records() for e in events_of(r)
                         if e["tenant_id"] == self.ctx.tenant_id]:
            batch = route(events)["segments"]
            for i in range(0, len(batch), 10):  # SQS batches of 10, as Lambda receives them
                answer = segments.handle_batch(_sqs_event(batch[i:i + 10]))
                assert answer == {"batchItemFailures": []}, answer

    def tick(self) -> None:
        """What the schedule does at the simulated instant, for this example's customers."""
        from crm.segments import maintain

        at = _iso(self.now)
        for cid in self.ids:
            item = stored(self.ctx, cid)
            if item is not None and item.due_at and item.due_at <= at:
                maintain.reconcile(self.ctx, cid, now=at)

    def step(self, op: tuple) -> None:
        from crm import merge
        from crm.customers import service as customers
        from crm.customers.schemas import CustomerPatch
        from crm.orders import service as orders
        from crm.orders.schemas import CancellationCreate, OrderCreate, PaymentCreate, RefundCreate

        kind = op[0]
        if kind == "order":
            _, i, units, days, paid, refund, cancelled = op
            cid = self.ids[i]
            if self.status[cid] != "active":
                return
            self.n += 1
            total = units * 100
            placed = self.now - timedelta(days=days, minutes=5)
            order, _ = orders.create(self.ctx, OrderCreate(
                customer={"id": cid}, source="prop", external_id=f"o-{self.n}", channel="web",
                currency="EUR", lines=[{"sku": "s", "name": "n", "quantity": 1, "unit_price": total}],
                total=total, placed_at=placed))
            if paid:
                orders.pay(self.ctx, order.id, PaymentCreate(paid_at=placed + timedelta(minutes=1)))
                if refund:
                    orders.refund(self.ctx, order.id, RefundCreate(amount=max(1, total * refund // 100)))
            elif cancelled:
                orders.cancel(self.ctx, order.id, CancellationCreate())
        elif kind == "tag":
            cid = self.ids[op[1]]
            if self.status[cid] == "active":
                customers.update(self.ctx, cid, CustomerPatch(tags=["gold"] if op[2] else []))
        elif kind == "clock":
            self.sim[0] = self.now + timedelta(days=op[1])
            self.deliver()
            self.tick()
            self.check()
        elif kind == "merge":
            a, b = self.ids[op[1]], self.ids[op[2]]
            if a != b and self.status[a] == self.status[b] == "active":
                merge.merge(self.ctx, a, b)
                self.status[b] = "merged"
        elif kind == "erase":
            cid = self.ids[op[1]]
            if self.status[cid] == "active":
                customers.erase(self.ctx, cid)
                self.status[cid] = "erased"
        else:
            self.deliver()

    def expected(self, cid: str) -> tuple[dict, set[str]]:
        """From scratch: the customer's stored orders and profile, every rule, now."""
        from crm import timeline
        from crm.customers import records
        from crm.segments import maintain, plan
        from crm.storage import CustomerItem, SegmentCatalogueItem

        profile = CustomerItem.get(records.profile_pk(self.ctx, cid), "PROFILE", consistent_read=True)
        cat = maintain.catalogue_of(SegmentCatalogueItem.get(self.ctx.prefix, "SEGMENTS", consistent_read=True))
        m = plan.measure(timeline.image(profile, "customer"), None, {}, maintain.orders_of(self.ctx, cid), cat, {},
                         _iso(self.now))
        return json.loads(json.dumps(m.agg)), set(m.memberships)

    def check(self) -> None:
        from crm.storage import SegmentItem, SegmentMemberItem

        wanted: dict[str, set[str]] = {sid: set() for sid in RULES}
        for cid in self.ids:
            item = stored(self.ctx, cid)
            if self.status[cid] != "active":
                assert item is None, f"{cid} is {self.status[cid]} and still measured"
                continue
            agg, segments = self.expected(cid)
            assert item is not None
            if not agg["by_currency"]:  # no order yet: measured before the tenant's currency was known
                agg["currency"] = item.agg.get("currency")
            assert item.agg == agg, (cid, item.agg, agg)
            assert set(item.memberships) == segments, (cid, _iso(self.now), item.memberships, segments, item.facts)
            for sid in segments:
                wanted[sid].add(cid)
        for sid, cids in wanted.items():
            members = {m.customer_id for m in SegmentMemberItem.query(
                self.ctx.key("SEG", sid), SegmentMemberItem.sk.startswith("M#"), consistent_read=True)}
            assert members == cids, (sid, members, cids)
            count = SegmentItem.get(self.ctx.key("SEG", sid), "SEGMENT", consistent_read=True).member_count
            assert int(count) == len(cids), (sid, count, cids)


def stored(ctx, cid: str):
    from crm.customers import records
    from crm.storage import MetricsItem

    try:
        return MetricsItem.get(records.profile_pk(ctx, cid), "METRICS", consistent_read=True)
    except MetricsItem.DoesNotExist:
        return None


@pytest.fixture(scope="module")
def world(table):
    """The stream, and a clock that starts 300 days ago and only moves forward."""
    import crm.clock

    sim = [datetime.now(timezone.utc) - timedelta(days=300)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(crm.clock, "now", lambda: sim[0])
        yield StreamTail(table), sim


@settings(max_examples=int(os.environ.get("SEGMENTS_EXAMPLES", 8)), deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate]
          + ([Phase.shrink] if os.environ.get("SEGMENTS_SHRINK") else []),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=ops)
def test_maintained_memberships_equal_a_from_scratch_evaluation(world, steps):
    tail, sim = world
    sim[0] = datetime.now(timezone.utc) - timedelta(days=300)
    run = Run(tail, sim)
    for op in steps:
        run.step(op)
    run.deliver()
    run.deliver()  # a second pass: nothing left to do
    run.tick()
    run.check()
