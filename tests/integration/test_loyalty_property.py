"""Loyalty against a plain reference model (tests/loyalty_model.py).

Random sequences of orders, payments, refunds, redemptions, clock advances and
scheduled runs go through the real services and storage (moto over HTTP). The order
events are read from the table's DynamoDB stream, decoded by the dispatcher, and
delivered to the loyalty handler *twice each, in shuffled order*. After every step
the stored book must satisfy the invariants, and at the end balances, tier and the
ledger must equal the model's.

The clock is the only thing replaced (crm.clock.now, the project's own seam), so
months pass in milliseconds. The stack's background pollers are not running here:
delivery is under the test's control.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from unittest import mock

import os
import uuid

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.loyalty_model import Model
from tests.streams import StreamTail

pytestmark = pytest.mark.slow

PROGRAM = {
    "earns_from": "2000-01-01T00:00:00Z",  # backdated orders earn (default: the program's creation)
    "currency": "USD", "earn_rates": {"USD": 1, "EUR": 1.2}, "rounding": "nearest",
    "channel_multipliers": {"mobile": 2}, "category_multipliers": {"coffee": 1.5},
    "sku_multipliers": {"gift-card": 0}, "first_order_bonus": 25, "birthday_multiplier": 2,
    "tier_basis": "spend",
    "tiers": [{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 20000, "multiplier": 1.25},
              {"name": "Gold", "threshold": 60000, "multiplier": 1.5}],
    "return_window_days": 14, "expiry_months": 3, "expiring_notice_days": 7,
}
START = datetime(2021, 3, 1, tzinfo=timezone.utc)
LATEST = datetime(2025, 12, 31, tzinfo=timezone.utc)

orders = st.tuples(st.just("order"), st.integers(1, 400), st.sampled_from(["web", "mobile", "store"]),
                   st.sampled_from(["coffee", "tea", "gift"]), st.sampled_from(["USD", "USD", "EUR"]),
                   st.sampled_from([True, True, True, False]))
steps = st.lists(st.one_of(
    orders, orders, orders,
    st.tuples(st.just("pay"), st.integers(0, 30)),
    st.tuples(st.just("refund"), st.integers(0, 30), st.integers(1, 100)),
    st.tuples(st.just("redeem"), st.integers(1, 300)),
    st.tuples(st.just("redeem"), st.integers(1, 50)),
    st.tuples(st.just("advance"), st.integers(1, 100)),
    st.tuples(st.just("advance"), st.integers(1, 30)),
    st.tuples(st.just("schedule")),
    st.tuples(st.just("deliver")),
), min_size=10, max_size=40)


@pytest.fixture(scope="module")
def world(table):
    from crm import tenants
    from crm.context import TenantContext
    from crm.loyalty import service
    from crm.loyalty.schemas import ProgramFields

    ctx = TenantContext(tenants.create("Loyalty property").id)
    service.put_program(ctx, ProgramFields(**PROGRAM), None)
    return ctx, StreamTail(table)


class Run:
    def __init__(self, ctx, tail, rnd) -> None:
        from crm.customers import service as customers
        from crm.customers.schemas import CustomerCreate

        self.ctx, self.tail, self.rnd = ctx, tail, rnd
        self.now = START
        with self.clock():
            self.customer = customers.create(ctx, CustomerCreate(
                email=f"p-{uuid.uuid4().hex}@example.com", birth_date="1990-05-17")).id
        self.model = Model(PROGRAM)
        self.orders: list[tuple[str, str]] = []  # (order id, status as the model sees it)
        self.undelivered: list[dict] = []

    def clock(self):
        return mock.patch("crm.clock.now", lambda: self.now)

    @property
    def iso(self) -> str:
        from crm import clock

        return clock.iso(self.now)

    def collect(self) -> None:
        from functions.dispatch import ROUTES, events_of

        for record in self.tail.records():
            self.undelivered += [e for e in events_of(record)
                                 if e["type"] in ROUTES["loyalty"] and e["customer_id"] == self.customer]

    def deliver(self) -> None:
        """Everything so far, each event twice, shuffled: the at-least-once, unordered queue."""
        from crm.loyalty import service

        self.collect()
        batch = self.undelivered * 2
        self.rnd.shuffle(batch)
        self.undelivered = []
        for event in batch:
            service.apply_order(self.ctx, event["data"], now=self.iso)
        self.check_invariants()

    def book(self):
        from crm.loyalty.book import Book
        from crm.storage import LoyaltyItem

        try:
            item = LoyaltyItem.get(f"T#{self.ctx.tenant_id}#C#{self.customer}", "LOYALTY", consistent_read=True)
        except LoyaltyItem.DoesNotExist:
            return Book(None, PROGRAM)
        return Book(item.book, PROGRAM)

    def check_invariants(self) -> None:
        book = self.book()
        book.check()  # available == sum of active lots >= 0, pending == sum of pending lots

    def step(self, op: tuple) -> None:
        from crm.errors import Conflict, Invalid
        from crm.loyalty import service
        from crm.loyalty.schemas import RedemptionCreate
        from crm.orders import service as orders
        from crm.orders.schemas import OrderCreate, PaymentCreate, RefundCreate

        kind = op[0]
        if kind in ("order", "redeem", "advance", "schedule"):
            self.deliver()  # these read what earlier events produced
        if kind == "order":
            _, units, channel, category, currency, pay_now = op
            n = len(self.orders)
            lines = [{"sku": "gift-card" if category == "gift" else f"sku-{category}", "name": category,
                      "category": category, "quantity": 1 + n % 2, "unit_price": units * 100}]
            subtotal = lines[0]["quantity"] * lines[0]["unit_price"]
            discount = (subtotal // 10) if n % 3 == 0 else 0
            order, _ = orders.create(self.ctx, OrderCreate(
                customer={"id": self.customer}, source="prop", external_id=f"{self.customer}-{n}",
                channel=channel, currency=currency, lines=lines, discount=discount, shipping=499,
                tax=0, total=subtotal - discount + 499, placed_at=self.now))
            assert order.loyalty.model_dump() == self.model.stamp(self.iso, birthday=self.now.month == 5)
            self.orders.append((order.id, "placed"))
            if pay_now:
                self.step(("pay", n))
        elif kind == "pay" and self.orders:
            oid, status = self.orders[op[1] % len(self.orders)]
            if status != "placed":
                with pytest.raises(Conflict):
                    orders.pay(self.ctx, oid, PaymentCreate(paid_at=self.now))
                return
            order = orders.pay(self.ctx, oid, PaymentCreate(paid_at=self.now))
            self.model.pay(oid, order.model_dump(mode="json"), self.iso)
            self.orders[op[1] % len(self.orders)] = (oid, "paid")
        elif kind == "refund" and self.orders:
            oid, status = self.orders[op[1] % len(self.orders)]
            order = orders.get(self.ctx, oid)
            left = order.total - order.refunded_amount
            amount = max(1, left * op[2] // 100)
            if status != "paid" or left == 0:
                with pytest.raises((Conflict, Invalid)):
                    orders.refund(self.ctx, oid, RefundCreate(amount=amount))
                return
            order = orders.refund(self.ctx, oid, RefundCreate(amount=amount))
            self.model.refund(oid, order.refunds[-1].id, amount, self.iso)
        elif kind == "redeem":
            key = uuid.uuid4().hex
            try:
                change, _ = service.redeem(self.ctx, self.customer, RedemptionCreate(points=op[1]), key)
                source = f"redemption:{change.id}"
            except Invalid as exc:
                assert exc.extra["available"] < op[1]
                source = None
            assert self.model.redeem(op[1], self.iso, source or "-") == (source is not None)
        elif kind == "advance":
            # orders and payments must not be dated after tomorrow (real time): stay before 2026
            self.now = min(self.now + timedelta(days=op[1]), LATEST)
        elif kind == "schedule":
            service.maintain(self.ctx, self.customer, self.iso)
            self.model.advance(self.iso)
        elif kind == "deliver":
            self.deliver()
        self.check_invariants()

    def finish(self) -> None:
        from crm.loyalty import service
        from crm.storage import LedgerItem

        self.deliver()
        service.maintain(self.ctx, self.customer, self.iso)
        self.model.advance(self.iso)
        book = self.book()
        book.catch_up(self.iso)  # a no-op for a stored book (maintain ran); the tier of an empty one
        s = book.s
        m = self.model
        assert (s["available"], s["pending"], s["owed"], s["lifetime"]) == \
            (m.available, m.pending, m.owed, m.lifetime)
        assert s["tier"] == m.tier(self.iso)
        entries = [i.entry for i in LedgerItem.query(f"T#{self.ctx.tenant_id}#C#{self.customer}",
                                                     LedgerItem.sk.startswith("B#LED#"), consistent_read=True)]
        for type_ in {e["type"] for e in entries}:
            event(f"ledger has {type_}")
        event(f"tier {s['tier']}")
        if s["owed"] or any(e["type"] == "reverse" and e["detail"]["owed"] for e in entries):
            event("reversal of spent points (owed)")
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))  # no gaps, no repeats
        assert Counter((e["type"], e["points"], e["source"]) for e in entries) == Counter(m.ledger)
        view = service.view(self.ctx, self.customer)
        assert (view.available, view.pending, view.tier) == (m.available, m.pending, m.tier(self.iso))


@settings(max_examples=int(os.environ.get("LOYALTY_EXAMPLES", 25)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ops=steps, rnd=st.randoms(use_true_random=False))
def test_points_match_the_reference_model_under_duplicate_shuffled_delivery(world, ops, rnd):
    ctx, tail = world
    run = Run(ctx, tail, rnd)
    with run.clock():
        for op in ops:
            run.step(op)
        run.finish()
