"""Segment memberships against a from-scratch reference evaluation.

Random customers, orders, payments, refunds, cancellations, tag changes, merges,
erasures and clock moves go through the real services and storage (moto over HTTP).
The events the dispatcher routes to the segments subscriber are read from the table's
stream and delivered *twice each, in shuffled order*; the due schedule runs after
every clock move. After each delivery, every segment's members (its member items, its
``member_count``, and each customer's own ``memberships``) must equal a plain
evaluation of every rule over the test's model of the tenant, written here without
crm/segments: the incremental path is checked against a rescan it never does.

The clock is the only thing replaced (crm.clock.now, the project's own seam). It
starts 400 days back and only moves forward, since orders may not be dated after
tomorrow. The stack's background pollers are not running: delivery is the test's.
The segments are written as the API stores them (tests/integration/test_segments_maintain.py
``make_segment``), ready and empty: this checks maintenance, and test_segment_build.py
checks builds against the same kind of from-scratch count.

``SEGMENT_EXAMPLES`` raises the number of examples (default 8).
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.integration.test_segments_maintain import make_segment
from tests.streams import StreamTail, sqs_event

pytestmark = pytest.mark.slow

DAY = timedelta(days=1)


def _birthday_within(birth: date | None, now: datetime, days: int) -> bool:
    """The next birthday (29 February: the 28th in other years) is at most ``days`` UTC
    dates away, today counting as 0."""
    if birth is None:
        return False
    today = now.date()
    for year in (today.year, today.year + 1):
        day = 28 if (birth.month, birth.day) == (2, 29) and not _leap(year) else birth.day
        when = date(year, birth.month, day)
        if when >= today:
            return (when - today).days <= days
    return False


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


@dataclass
class Order:
    total: int
    channel: str
    category: str
    placed_at: datetime
    status: str = "placed"
    refunded: int = 0


@dataclass
class Person:
    id: str
    tags: set[str] = field(default_factory=set)
    birth: date | None = None
    orders: dict[str, Order] = field(default_factory=dict)

    def counted(self) -> list[Order]:
        return [o for o in self.orders.values() if o.status != "cancelled"]

    def net(self) -> int:
        return sum(o.total - o.refunded for o in self.counted())

    def last(self) -> datetime | None:
        return max((o.placed_at for o in self.counted()), default=None)


# name, rule (the API's format), the reference: (person, now) -> member?
SEGMENTS = [
    ("Big spenders", {"all": [{"field": "orders.net_spend", "op": ">=", "value": 20000}]},
     lambda p, now: p.net() >= 20000),
    ("Repeat buyers", {"all": [{"field": "orders.count", "op": ">=", "value": 2}]},
     lambda p, now: len(p.counted()) >= 2),
    ("Lapsed", {"all": [{"field": "orders.last_at", "op": "older_than", "value": "P30D"}]},
     lambda p, now: p.last() is not None and p.last() <= now - 30 * DAY),
    ("Recent", {"all": [{"field": "orders.last_at", "op": "within", "value": "P14D"}]},
     lambda p, now: p.last() is not None and now - 14 * DAY < p.last() <= now),
    ("VIP tag or web", {"any": [{"field": "tags", "op": "contains", "value": "vip"},
                                {"field": "orders.channels", "op": "contains", "value": "web"}]},
     lambda p, now: "vip" in p.tags or any(o.channel == "web" for o in p.counted())),
    ("Coffee, lately", {"all": [{"field": "orders.categories", "op": "contains", "value": "coffee"},
                                {"any": [{"field": "orders.last_at", "op": "within", "value": "P60D"},
                                         {"field": "tags", "op": "contains", "value": "regular"}]}]},
     lambda p, now: any(o.category == "coffee" for o in p.counted())
     and ((p.last() is not None and now - 60 * DAY < p.last() <= now) or "regular" in p.tags)),
    ("Birthday this week", {"all": [{"field": "birth_date", "op": "birthday_within", "value": 7}]},
     lambda p, now: _birthday_within(p.birth, now, 7)),
    ("No orders yet", {"all": [{"field": "orders.count", "op": "=", "value": 0}]},
     lambda p, now: not p.counted()),
]

ops = st.lists(st.one_of(
    st.tuples(st.just("customer"), st.sampled_from([set(), {"vip"}, {"regular"}]),
              st.one_of(st.none(), st.dates(date(1950, 1, 1), date(2005, 12, 31)))),
    *[st.tuples(st.just("order"), st.integers(0, 9), st.integers(10, 300),
                st.sampled_from(["web", "store", "mobile"]), st.sampled_from(["coffee", "tea"]),
                st.integers(0, 40))] * 3,
    st.tuples(st.just("pay"), st.integers(0, 30)),
    st.tuples(st.just("refund"), st.integers(0, 30), st.integers(1, 100)),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("tag"), st.integers(0, 9), st.sampled_from(["vip", "regular"])),
    st.tuples(st.just("untag"), st.integers(0, 9)),
    st.tuples(st.just("merge"), st.integers(0, 9), st.integers(0, 9)),
    st.tuples(st.just("erase"), st.integers(0, 9)),
    st.tuples(st.just("advance"), st.integers(1, 45)),
    st.tuples(st.just("advance"), st.integers(1, 3)),
    st.tuples(st.just("deliver")),
), min_size=8, max_size=30)


class Run:
    def __init__(self, table: str, rnd) -> None:
        from crm import tenants
        from crm.context import TenantContext

        self.rnd = rnd
        self.now = datetime.now(timezone.utc).replace(microsecond=0) - 400 * DAY
        self.ctx = TenantContext(tenants.create("Segments property").id)
        self.tail = StreamTail(table)
        self.people: dict[str, Person] = {}
        self.gone: list[str] = []
        self.order_ids: list[str] = []
        self.tail.records()  # what earlier examples left
        self.segments = {}
        for n, (name, rule, check) in enumerate(SEGMENTS):
            make_segment(self.ctx, f"seg_p{n}", name, rule)
            self.segments[f"seg_p{n}"] = check

    def clock(self):
        return mock.patch("crm.clock.now", lambda: self.now)

    @property
    def iso(self) -> str:
        from crm import clock

        return clock.iso(self.now)

    def person(self, n: int) -> Person | None:
        live = sorted(self.people)
        return self.people[live[n % len(live)]] if live else None

    def owner(self, order_id: str) -> Person | None:
        return next((p for p in self.people.values() if order_id in p.orders), None)

    def deliver(self) -> None:
        """Everything so far, each event twice, shuffled (an at-least-once, unordered
        queue), to the subscriber's Lambda handler in SQS batches of 10; then the due
        schedule at the model's now (it reads the cross-tenant due index)."""
        from functions import segments
        from functions.dispatch import events_of, route

        while events := [e for r in self.tail.records() for e in events_of(r)
                         if e["tenant_id"] == self.ctx.tenant_id]:
            batch = route(events)["segments"] * 2
            self.rnd.shuffle(batch)
            for n in range(0, len(batch), 10):
                answer = segments.handle_batch(sqs_event(batch[n:n + 10], "rapport-segments"))
                assert answer == {"batchItemFailures": []}, answer
        segments.run_schedule(now=self.iso)
        self.check()

    def check(self) -> None:
        from crm.storage import MetricsItem, SegmentItem, SegmentMemberItem

        p = self.ctx.prefix
        for sid, rule in self.segments.items():
            expected = {c for c, person in self.people.items() if rule(person, self.now)}
            members = {m.customer_id for m in SegmentMemberItem.query(
                f"{p}SEG#{sid}", SegmentMemberItem.sk.startswith("M#"), consistent_read=True)}
            assert members == expected, (sid, self.iso)
            assert SegmentItem.get(f"{p}SEG#{sid}", "SEGMENT", consistent_read=True).member_count == len(expected)
            event(f"a segment with {min(len(expected), 3)}+ members")
        for cid in self.people:
            metrics = MetricsItem.get(f"{p}C#{cid}", "METRICS", consistent_read=True)
            expected = {sid for sid, rule in self.segments.items() if rule(self.people[cid], self.now)}
            assert set(metrics.memberships) == expected, (cid, self.iso)
        for cid in self.gone:  # erased or merged: measured no more, in no segment
            assert MetricsItem.count(f"{p}C#{cid}", MetricsItem.sk == "METRICS", consistent_read=True) == 0

    def step(self, op: tuple) -> None:
        from crm.customers import service as customers
        from crm.customers.schemas import CustomerCreate, CustomerPatch
        from crm.orders import service as orders
        from crm.orders.schemas import CancellationCreate, OrderCreate, PaymentCreate, RefundCreate

        kind = op[0]
        if kind == "customer" or not self.people:
            tags, birth = (op[1], op[2]) if kind == "customer" else (set(), None)
            created = customers.create(self.ctx, CustomerCreate(
                email=f"s-{uuid.uuid4().hex}@example.com", tags=sorted(tags), birth_date=birth))
            self.people[created.id] = Person(created.id, set(tags), birth)
            if kind == "customer":
                return
        if kind == "order":
            _, who, units, channel, category, days_back = op
            person = self.person(who)
            placed = max(self.now - days_back * DAY, self.now - 399 * DAY)
            total = units * 100
            order, _ = orders.create(self.ctx, OrderCreate(
                customer={"id": person.id}, source="prop", external_id=uuid.uuid4().hex, channel=channel,
                currency="USD", lines=[{"sku": category, "name": category, "category": category,
                                        "quantity": 1, "unit_price": total}],
                total=total, placed_at=placed))
            person.orders[order.id] = Order(total, channel, category, placed)
            self.order_ids.append(order.id)
        elif kind in ("pay", "refund", "cancel") and self.order_ids:
            oid = self.order_ids[op[1] % len(self.order_ids)]
            person = self.owner(oid)
            if person is None:  # its customer was erased
                return
            o = person.orders[oid]
            if kind == "pay" and o.status == "placed":
                orders.pay(self.ctx, oid, PaymentCreate(paid_at=self.now))
                o.status = "paid"
            elif kind == "cancel" and o.status == "placed":
                orders.cancel(self.ctx, oid, CancellationCreate())
                o.status = "cancelled"
            elif kind == "refund" and o.status == "paid" and o.refunded < o.total:
                amount = max(1, (o.total - o.refunded) * op[2] // 100)
                orders.refund(self.ctx, oid, RefundCreate(amount=amount))
                o.refunded += amount
        elif kind in ("tag", "untag"):
            person = self.person(op[1])
            tags = person.tags | {op[2]} if kind == "tag" else set()
            customers.update(self.ctx, person.id, CustomerPatch(tags=sorted(tags)))
            person.tags = tags
        elif kind == "merge":
            survivor, other = self.person(op[1]), self.person(op[2])
            if survivor is other:
                return
            from crm.merge import merge

            merged = merge(self.ctx, survivor.id, other.id)
            survivor.orders.update(other.orders)
            # the merged profile's own rules (crm/merge.py) decide tags and birth date
            survivor.tags = set(merged.tags)
            survivor.birth = merged.birth_date
            del self.people[other.id]
            self.gone.append(other.id)
            event("merge")
        elif kind == "erase":
            person = self.person(op[1])
            customers.erase(self.ctx, person.id)
            del self.people[person.id]
            self.gone.append(person.id)
            event("erasure")
        elif kind == "advance":
            self.deliver()  # what happened so far, at the time it happened
            self.now += op[1] * DAY
            self.deliver()
        elif kind == "deliver":
            self.deliver()



@settings(max_examples=int(os.environ.get("SEGMENT_EXAMPLES", 8)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=ops, rnd=st.randoms(use_true_random=False))
def test_memberships_equal_a_from_scratch_evaluation(table, steps, rnd):
    run = Run(table, rnd)
    with run.clock():
        for op in steps:
            run.step(op)
        run.deliver()
