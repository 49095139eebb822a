"""crm/billing/state.py: the tenant's billing state from Stripe's objects, and the
order-independence of applying fetches (every permutation of a burst ends the same)."""
from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from crm.billing import state

T, C = "acme", "cus_A"
DAY = 86400
START = 1_767_225_600  # 2026-01-01T00:00:00Z


def sub(id="sub_1", status="active", key="rapport_starter_monthly", created=100, start=START,
        end=START + 31 * DAY, tenant=T, customer=C, **extra):
    return {"id": id, "object": "subscription", "status": status, "created": created, "customer": customer,
            "metadata": {"tenant_id": tenant} if tenant else {}, "cancel_at_period_end": False,
            "items": {"data": [{"price": {"lookup_key": key}, "current_period_start": start,
                                "current_period_end": end}]}, **extra}


def ent(*keys):
    return [{"object": "entitlements.active_entitlement", "lookup_key": k} for k in keys]


def derive(subs, ents=None, seen=1, stored=None):
    return state.derive(T, C, subs, ents, seen=seen, stored=stored)


def test_active_subscription_sets_plan_period_and_features():
    out = derive([sub()], ent("journeys"))
    s = out.state
    assert (s.plan, s.status, s.subscription) == ("starter", "active", "sub_1")
    assert (s.period_start, s.period_end) == ("2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z")
    assert s.features == ("journeys",) and s.grace_until is None and out.cancel == ()


def test_trialing_has_the_plan():
    assert derive([sub(status="trialing", key="rapport_growth_monthly")]).state.plan == "growth"


def test_past_due_grace_is_seven_days_after_the_unpaid_renewal():
    s = derive([sub(status="past_due")]).state
    assert (s.plan, s.status) == ("starter", "past_due")
    assert s.past_due_since == "2026-01-01T00:00:00.000Z" and s.grace_until == "2026-01-08T00:00:00.000Z"


def test_canceled_is_free_and_keeps_the_subscription_id():
    s = derive([sub(status="canceled")]).state
    assert (s.plan, s.status, s.subscription) == ("free", "canceled", "sub_1")


def test_paused_and_incomplete_are_on_free_limits():
    assert derive([sub(status="paused")]).state.plan == "free"
    assert derive([sub(status="incomplete")]).state.plan == "free"
    assert derive([sub(status="incomplete_expired")]).state.status == "canceled"


def test_unknown_price_is_free():
    assert derive([sub(key="someone_elses_price")]).state.plan == "free"


def test_no_subscription_is_free_or_canceled_if_there_was_one():
    assert derive([]).state.status == "free"
    stored = derive([sub()]).state
    after = derive([], stored=stored).state
    assert (after.plan, after.status) == ("free", "canceled")


def test_two_live_subscriptions_the_older_wins_and_the_newer_is_cancelled():
    older, newer = sub("sub_old", created=100), sub("sub_new", created=200, key="rapport_growth_monthly")
    for subs in ([older, newer], [newer, older]):
        out = derive(subs)
        assert out.state.subscription == "sub_old" and out.state.plan == "starter"
        assert out.cancel == ("sub_new",)


def test_paid_in_the_same_second_the_subscription_the_tenant_holds_stays():
    """Stripe's created is in whole seconds: a tie never moves the tenant off what it has."""
    held, newer = sub(id="sub_z", created=100), sub(id="sub_a", key="rapport_growth_monthly", created=100)
    out = derive([newer, held], stored=replace(state.State(), subscription="sub_z"))
    assert (out.state.subscription, out.state.plan, out.cancel) == ("sub_z", "starter", ("sub_a",))
    assert derive([held, newer]).cancel == ("sub_z",)  # nothing held: the id decides, the same way each time


def test_a_live_subscription_beats_an_older_ended_one():
    out = derive([sub("sub_old", status="canceled", created=100), sub("sub_new", created=200)])
    assert out.state.subscription == "sub_new" and out.cancel == ()


def test_a_subscription_naming_another_tenant_or_customer_is_not_the_tenants():
    assert derive([sub(tenant="other")]).state.status == "free"
    assert derive([sub(customer="cus_B")]).state.status == "free"
    assert derive([sub(tenant=None)]).state.status == "active"  # made in the Dashboard for its customer


def test_an_earlier_fetch_never_replaces_a_later_one():
    later = derive([sub(status="canceled")], seen=20).state
    earlier = derive([sub(status="active")], seen=10).state
    assert state.apply(later, earlier) == later
    assert state.apply(earlier, later) == later


# -- a burst of events for one subscription, delivered in every order ---------------------------
# Stripe's state after each event (what a fetch made after it returns); each event's handler
# fetches some time after its event, and the writes land in any order.
TIMELINE = [
    ("customer.subscription.created", [sub(status="trialing")], ent()),
    ("entitlements.active_entitlement_summary.updated", [sub(status="trialing")], ent("journeys")),
    ("customer.subscription.updated", [sub(status="active")], ent("journeys")),
    ("invoice.payment_failed", [sub(status="past_due", start=START + 31 * DAY, end=START + 59 * DAY)],
     ent("journeys")),
    ("invoice.paid", [sub(status="active", start=START + 31 * DAY, end=START + 59 * DAY)], ent("journeys")),
    ("customer.subscription.deleted", [sub(status="canceled", start=START + 31 * DAY, end=START + 59 * DAY)],
     ent()),
]


def _run(order, delays, timeline=TIMELINE):
    """Apply the fetches in ``order`` (a permutation of the events); event k's handler fetched
    Stripe's state at time k + delays[k] (the latest state once past the end)."""
    stored, seen_so_far = None, []
    for k in order:
        at = k + delays[k]
        _, subs, ents = timeline[min(at, len(timeline) - 1)]
        fetched = derive(subs, ents, seen=at + 1, stored=stored).state
        stored = state.apply(stored, fetched)
        seen_so_far.append(stored.seen)
    assert seen_so_far == sorted(seen_so_far), "a stored state was replaced by an earlier fetch"
    return replace(stored, seen=0)


def _final(timeline=TIMELINE):
    _, subs, ents = timeline[-1]
    return replace(derive(subs, ents).state, seen=0)


def test_every_permutation_of_the_burst_ends_in_the_same_state():
    final = _final()
    assert (final.plan, final.status, final.features) == ("free", "canceled", ())
    n = len(TIMELINE)
    for order in itertools.permutations(range(n)):
        assert _run(order, [0] * n) == final, order


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_order_with_late_fetches_ends_in_the_same_state(data):
    """Handlers run concurrently: each fetches some time after its event and the writes land
    in any order; the final state is always the one the latest fetch saw."""
    n = len(TIMELINE)
    order = data.draw(st.permutations(range(n)))
    delays = data.draw(st.lists(st.integers(0, n), min_size=n, max_size=n))
    assert _run(order, delays) == _final()


def test_a_burst_that_ends_past_due_keeps_the_same_grace_whatever_the_order():
    timeline = TIMELINE[:4]
    final = _final(timeline)
    assert final.status == "past_due" and final.grace_until == "2026-02-08T00:00:00.000Z"
    for order in itertools.permutations(range(4)):
        assert _run(order, [0] * 4, timeline) == final
