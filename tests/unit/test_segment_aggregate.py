"""What a customer is measured by: order contributions (exact under replay), the
aggregate, and the flat facts rules read."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from crm import events
from crm.segments import aggregate as ag
from crm.segments.fields import FIELDS


def order_image(oid="ord_1", version=1, updated="2026-01-01T10:00:00.000Z", **data):
    base = {
        "channel": "web",
        "currency": "EUR",
        "total": 10_000,
        "lines": [
            {"sku": "a", "name": "A", "category": "shoes", "quantity": 1, "unit_price": 6_000},
            {"sku": "b", "name": "B", "category": "bags", "quantity": 1, "unit_price": 4_000},
            {"sku": "c", "name": "C", "quantity": 1, "unit_price": 0},
        ],
        "refunds": [],
        "placed_at": "2026-01-01T10:00:00Z",
        "status": "placed",
    }
    return {
        "pk": "T#t1#C#cus_1",
        "kind": "order",
        "order_id": oid,
        "customer_id": "cus_1",
        "status": data.get("status", "placed"),
        "data": {**base, **data},
        "created_at": "2026-01-01T10:00:00.000Z",
        "updated_at": updated,
        "version": version,
    }


def test_a_contribution_from_the_order_event_and_from_the_stream_image():
    image = order_image(
        refunds=[{"id": "r1", "amount": 2_500, "refunded_at": "2026-01-03T00:00:00Z"}], status="partially_refunded"
    )
    from_image = ag.contribution(image)
    assert from_image == {
        "at": "2026-01-01T10:00:00.000Z",
        "cur": "EUR",
        "net": 7_500,
        "ch": "web",
        "cat": ["bags", "shoes"],
        "live": True,
        "u": "2026-01-01T10:00:00.000Z",
        "v": 1,
    }
    placed = events.derive(None, image)[0]
    from_event = ag.contribution(placed["data"])
    # the event's state carries the item's updated_at and version (crm/events.py), so an
    # event and the order read back give the same contribution
    assert from_event == from_image
    bare = {k: v for k, v in placed["data"].items() if k not in ("updated_at", "version")}
    # a state without them: its latest fact (the refund) stands in
    assert ag.contribution(bare) == {**from_image, "u": "2026-01-03T00:00:00.000Z", "v": 0}


def test_a_cancelled_order_is_worth_nothing_and_does_not_count():
    c = ag.contribution(order_image(status="cancelled", cancelled_at="2026-01-02T00:00:00Z"))
    assert (c["net"], c["live"]) == (0, False)
    got = ag.aggregate({"ord_1": c, "ord_2": ag.contribution(order_image("ord_2", channel="store"))}, "EUR")
    assert got["count"] == 1
    assert got["channels"] == ["store"]
    assert got["net_spend"] == 10_000


def test_newer():
    old = ag.contribution(order_image(version=2, updated="2026-01-02T00:00:00.000Z"))
    assert ag.newer(old, None)
    assert not ag.newer(old, old)  # the same state twice changes nothing
    assert not ag.newer(ag.contribution(order_image(version=1, updated="2026-01-01T00:00:00.000Z")), old)
    assert ag.newer(ag.contribution(order_image(version=3, updated="2026-01-02T00:00:00.000Z")), old)
    refunded = ag.contribution(
        order_image(
            version=2,
            updated="2026-01-02T00:00:00.000Z",
            refunds=[{"id": "r", "amount": 1, "refunded_at": "2026-01-01T11:00:00Z"}],
        )
    )
    # equal stamps (events carry no version): the refund is the later state, whichever comes first
    assert ag.newer(refunded, old) and not ag.newer(old, refunded)


def test_aggregate_in_the_tenants_currency():
    contribs = {
        "a": {"at": "2026-01-05T00:00:00.000Z", "cur": "EUR", "net": 3_000, "ch": "web", "cat": ["x"], "live": True},
        "b": {"at": "2026-01-01T00:00:00.000Z", "cur": "USD", "net": 9_000, "ch": "store", "cat": ["y"], "live": True},
        "c": {
            "at": "2026-02-01T00:00:00.000Z",
            "cur": "EUR",
            "net": 2_001,
            "ch": "tv",
            "cat": ["x", "z"],
            "live": True,
        },
        "d": {"at": "2026-03-01T00:00:00.000Z", "cur": "EUR", "net": 0, "ch": "mobile", "cat": ["w"], "live": False},
    }
    got = ag.aggregate(contribs, "EUR")
    assert got == {
        "count": 3,
        "net_spend": 5_001,
        "first_at": "2026-01-01T00:00:00.000Z",
        "last_at": "2026-02-01T00:00:00.000Z",
        "aov": 2_500,
        "channels": ["store", "tv", "web"],
        "categories": ["x", "y", "z"],
        "currency": "EUR",
        "by_currency": {"EUR": 5_001, "USD": 9_000},
    }
    # no tenant currency yet: the customer's first counted order's
    assert ag.aggregate(contribs, None)["currency"] == "USD"
    empty = ag.aggregate({}, "EUR")
    assert (empty["count"], empty["net_spend"], empty["aov"], empty["last_at"]) == (0, 0, None, None)


@st.composite
def histories(draw):
    """Orders, each a sequence of states (placed, refunded, cancelled...) with growing
    version and updated_at."""
    orders = {}
    for n in range(draw(st.integers(1, 5))):
        oid = f"ord_{n}"
        states, refunds = [], []
        total = draw(st.integers(1, 50_000))
        for v in range(1, draw(st.integers(1, 5)) + 1):
            step = draw(st.sampled_from(["refund", "edit", "cancel"]))
            cancelled = None
            if step == "refund":
                refunds = [
                    *refunds,
                    {"id": f"r{v}", "amount": draw(st.integers(1, 1_000)), "refunded_at": f"2026-01-0{v}T00:00:00Z"},
                ]
            elif step == "cancel":
                cancelled = f"2026-01-0{v}T12:00:00Z"
            image = order_image(
                oid,
                version=v,
                updated=f"2026-01-0{v}T12:00:00.000Z",
                total=total,
                refunds=refunds,
                cancelled_at=cancelled,
                currency=draw(st.sampled_from(["EUR", "EUR", "USD"])),
                channel=draw(st.sampled_from(["web", "store"])),
            )
            states.append(image)
        orders[oid] = states
    return orders


@settings(max_examples=100, deadline=None)
@given(orders=histories(), seed=st.integers(0, 2**32))
def test_replayed_and_reordered_states_give_the_final_aggregate(orders, seed):
    deliveries = [s for states in orders.values() for s in states]
    deliveries += random.Random(seed).choices(deliveries, k=len(deliveries))  # redeliveries
    random.Random(seed).shuffle(deliveries)
    stored: dict[str, dict] = {}
    for image in deliveries:
        c = ag.contribution(image)
        if ag.newer(c, stored.get(image["order_id"])):
            stored[image["order_id"]] = c
    final = {oid: ag.contribution(states[-1]) for oid, states in orders.items()}
    assert stored == final
    assert ag.aggregate(stored, "EUR") == ag.aggregate(dict(reversed(list(final.items()))), "EUR")


def test_facts_from_a_profile_a_book_an_aggregate_and_scores():
    profile = {
        "customer_id": "cus_1",
        "status": "active",
        "created_at": "2026-01-01T00:00:00.000Z",
        "data": {
            "tags": ["vip", "newsletter"],
            "attributes": {"plan": "pro"},
            "consent": {"email": {"status": "granted", "source": "api", "at": "2026-01-01T00:00:00Z"}},
            "locale": "en-GB",
            "addresses": [{"line1": "1 Road", "country": "GB"}, {"line1": "2 Rue", "country": "FR"}],
            "external_ids": {"shopify": "123"},
            "source_created_at": {"pos": "2024-05-01T00:00:00Z"},
            "birth_date": "1990-03-15",
        },
    }
    agg = ag.aggregate({"a": ag.contribution(order_image())}, "EUR")
    scores = {"r": 5, "f": 1, "m": 3, "segment": "New", "ltv": {"historical": 10_000, "predicted": 10_000}, "vip": True}
    facts = ag.facts(profile, {"tier": "gold", "available": 420, "pending": 10}, agg, scores)
    assert facts == {
        "tags": ["newsletter", "vip"],
        "attributes": {"plan": "pro"},
        "consent": {"email": "granted"},
        "locale": "en-GB",
        "address.country": "GB",
        "created_at": "2024-05-01T00:00:00.000Z",  # customer_since
        "source": ["pos", "shopify"],
        "birth_date": "1990-03-15",
        "orders.count": 1,
        "orders.net_spend": 10_000,
        "orders.first_at": "2026-01-01T10:00:00.000Z",
        "orders.last_at": "2026-01-01T10:00:00.000Z",
        "orders.aov": 10_000,
        "orders.channels": ["web"],
        "orders.categories": ["bags", "shoes"],
        "loyalty.tier": "gold",
        "loyalty.balance": 420,
        "rfm.r": 5,
        "rfm.f": 1,
        "rfm.m": 3,
        "rfm.segment": "New",
        "ltv.historical": 10_000,
        "ltv.predicted": 10_000,
        "vip": True,
    }
    # every static field is in the facts, under the name rules use
    assert set(FIELDS) <= set(facts)


def test_facts_of_a_bare_customer():
    facts = ag.facts(
        {"customer_id": "c", "status": "erased", "data": {}, "created_at": "2026-01-01T00:00:00Z"},
        None,
        ag.aggregate({}, None),
        {},
    )
    assert facts["orders.count"] == 0 and facts["orders.last_at"] is None
    assert facts["loyalty.tier"] is None and facts["loyalty.balance"] == 0
    assert facts["rfm.r"] is None and facts["vip"] is False and facts["ltv.predicted"] == 0
    assert facts["tags"] == [] and facts["address.country"] is None
