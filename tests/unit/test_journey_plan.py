"""crm/journeys: the definition's validation and the pure run planner (start, exits by
event time, due steps, the frequency cap as a deferral, birthdays), and a property test
of random event orders and duplicates against a reference model."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from crm import clock
from crm.journeys import plan
from crm.journeys.plan import Cancel, CustomerView, Journey, Schedule, Send, Settings, Update
from crm.journeys.schemas import BirthdayTrigger, JourneyDefinition, WaitStep

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TPL_A, TPL_B = "tpl_" + "A" * 26, "tpl_" + "B" * 26
SEG = "seg_" + "S" * 26
CID = "cus_1"


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def iso(hours: float) -> str:
    return clock.iso(at(hours))


def journey(trigger: dict | None = None, steps: list | None = None, **over) -> Journey:
    spec = {
        "name": "cart",
        "status": "active",
        "trigger": trigger or {"type": "checkout.started", "wait": "PT1H"},
        "steps": steps
        or [{"type": "send_email", "template_id": TPL_A}, {"type": "wait", "duration": "P1D"},
            {"type": "send_email", "template_id": TPL_B}],
        **over,
    }
    return Journey("jrn_1", JourneyDefinition.model_validate(spec))


def event(type_: str, key: str, hours: float, customer: str = CID, **data) -> dict:
    return {"id": f"{type_}:{key}", "type": type_, "customer_id": customer, "occurred_at": iso(hours), "data": data}


def checkout(key: str, hours: float) -> dict:
    return event("checkout.started", key, hours, checkout_id=key)


def order(key: str, hours: float) -> dict:
    return event("order.placed", key, hours, order_id=key)


def started(j: Journey, e: dict, now: float = 0, existing=()) -> plan.Run:
    out = plan.start(j, e, list(existing), at(now))
    assert out is not None
    return out.run


# --- the definition -------------------------------------------------------------------------


def errors(spec: dict) -> str:
    with pytest.raises(ValidationError) as info:
        JourneyDefinition.model_validate({"name": "j", "trigger": {"type": "customer.created"}, **spec})
    return str(info.value)


def test_validation_errors_name_the_step_and_what_is_wrong():
    send = {"type": "send_email", "template_id": TPL_A}
    bad_rule = {"type": "condition", "rule": {"all": [{"field": "orders.cnt", "op": ">=", "value": 1}]}}
    assert 'steps[1].rule.all[0]: unknown field "orders.cnt" (did you mean "orders.count"?)' in errors(
        {"steps": [send, bad_rule]})
    back = {"type": "condition", "rule": {"field": "vip", "op": "=", "value": True}, "then": 0}
    assert "steps[1].then: 0 is not a later step" in errors({"steps": [send, back, send]})
    assert 'exactly one of "duration" and "until"' in errors({"steps": [{"type": "wait"}]})
    assert "ISO 8601 duration" in errors({"steps": [{"type": "wait", "duration": "3 days"}]})
    assert "HH:MM" in errors({"steps": [{"type": "wait", "until": "25:00"}]})
    assert "steps.0.send_email.template" in errors({"steps": [{**send, "template": "x"}]})  # extra key: forbidden
    assert 'unknown event type "order.plaed"' in errors({"steps": [send], "exit": {"events": ["order.plaed"]}})
    assert "is both added and removed" in errors({"steps": [{"type": "update", "add_tags": ["a"], "remove_tags": ["A"]}]})
    assert "at least 1 item" in errors({"steps": []})


def test_the_definition_is_normalized():
    spec = JourneyDefinition.model_validate({
        "name": " Cart ", "trigger": {"type": "checkout.started", "wait": "pt2h"},
        "steps": [{"type": "condition", "rule": {"field": "vip", "op": "=", "value": True}, "else": 1},
                  {"type": "send_email", "template_id": TPL_A}],
        "exit": {"events": ["order.paid", "order.paid"], "rule": {"field": "tags", "op": "contains", "value": "x"}},
    })
    assert spec.name == "Cart" and spec.status == "draft" and spec.reentry.type == "always"
    assert spec.trigger.wait == "PT2H"  # type: ignore[union-attr]
    assert spec.steps[0].rule == {"all": [{"field": "vip", "op": "=", "value": True}]}  # type: ignore[union-attr]
    assert spec.steps[0].else_ == 1  # type: ignore[union-attr]
    assert spec.exit.events == ["order.paid"] and spec.exit.rule is not None
    assert spec.template_ids() == {TPL_A}


# --- occurrences and start --------------------------------------------------------------------


def test_occurrences_per_trigger():
    def occ(trigger: dict, e: dict) -> str | None:
        return plan.occurrence_for(journey(trigger).definition.trigger, e)

    assert occ({"type": "customer.created"}, event("customer.created", CID, 0)) == "created"
    assert occ({"type": "checkout.started"}, checkout("chk_9", 0)) == "chk_9"
    assert occ({"type": "checkout.started"}, order("o", 0)) is None
    entered = event("segment.entered", f"{CID}:{SEG}:x", 5, segment_id=SEG)
    assert occ({"type": "segment.entered", "segment_id": SEG}, entered) == iso(5)
    assert occ({"type": "segment.entered", "segment_id": "seg_" + "T" * 26}, entered) is None
    tier = event("tier.changed", "t", 3, to="gold")
    assert occ({"type": "tier.changed"}, tier) == iso(3)
    assert occ({"type": "tier.changed", "to": "gold"}, tier) == iso(3)
    assert occ({"type": "tier.changed", "to": "silver"}, tier) is None
    assert occ({"type": "points.expiring"}, event("points.expiring", "l", 0, lot="lot_7")) == "lot_7"
    bday = plan.birthday_event(CID, date(1990, 5, 17), 2027, BirthdayTrigger(type="birthday"), "UTC")
    assert occ({"type": "birthday"}, bday) == "2027"


def test_start_only_when_active_and_once_per_occurrence():
    j = journey()
    out = plan.start(j, checkout("c1", 10), [], at(10))
    assert out is not None and out.actions == (Schedule(iso(11)),)  # the checkout's wait, from event time
    assert out.run.status == "waiting" and out.run.started_at == iso(10)
    assert plan.start(j, checkout("c1", 10), [out.run], at(12)) is None  # a replay
    assert plan.start(journey(status="paused"), checkout("c2", 10), [], at(10)) is None
    assert plan.start(j, order("o", 10), [], at(10)) is None
    late = plan.start(j, checkout("c3", 10), [], at(50))  # arrives late: due at once
    assert late is not None and late.run.due_at == iso(11)


def test_reentry_rules_by_event_time():
    first = started(journey(), checkout("c1", 0))
    assert plan.start(journey(reentry={"type": "never"}), checkout("c2", 100), [first], at(100)) is None
    after = journey(reentry={"type": "after", "duration": "P2D"})
    assert plan.start(after, checkout("c2", 47), [first], at(100)) is None
    assert plan.start(after, checkout("c2", 48), [first], at(48)) is not None
    assert plan.start(journey(), checkout("c2", 1), [first], at(1)) is not None  # always


def test_points_expiring_starts_days_before_the_lot_expires():
    j = journey({"type": "points.expiring", "days_before": 3})
    e = event("points.expiring", "l1", 0, lot="l1", expires_at=iso(24 * 10))
    assert started(j, e).due_at == iso(24 * 7)
    late = event("points.expiring", "l2", 24 * 9, lot="l2", expires_at=iso(24 * 10))
    assert started(j, late).due_at == iso(24 * 9)


# --- exits ---------------------------------------------------------------------------------------


def test_an_order_after_the_checkout_exits_one_before_does_not_and_duplicates_are_no_ops():
    j = journey()
    run = started(j, checkout("c1", 10))
    before = plan.on_event(j, run, order("o0", 9), at(12))
    assert before.run.status == "waiting" and before.run.seen == ("order.placed:o0",)
    out = plan.on_event(j, before.run, order("o1", 10), at(12))  # the same instant counts
    assert out.run.status == "exited" and out.run.reason == "order.placed" and out.actions == ()
    assert plan.on_event(j, out.run, order("o2", 11), at(12)).run == out.run
    assert plan.on_event(j, before.run, order("o0", 9), at(12)).run == before.run  # seen
    assert plan.on_event(j, run, checkout("c1", 10), at(12)).run == run  # its own trigger


def test_an_order_that_arrives_after_the_timer_fired_cancels_the_unsent_email():
    j = journey()
    run = started(j, checkout("c1", 10))
    due = plan.on_due(j, run, CustomerView(), at(11))
    send = due.actions[0]
    assert isinstance(send, Send) and due.run.status == "sending"
    out = plan.on_event(j, due.run, order("o1", 10.5), at(11.1))  # placed before the timer, arrived after
    assert out.run.status == "exited" and out.actions == (Cancel(send.ref, CID),)
    # the cancel came too late (the record was acquired): the send is kept, the run stays exited
    late = plan.on_sent(j, out.run, send.ref, at(11.2))
    assert late.run.status == "exited" and late.run.sent == ((0, iso(11.2), "sent"),) and late.actions == ()


def test_a_capped_email_is_deferred_then_an_order_meanwhile_exits_it():
    j = journey()
    run = started(j, checkout("c1", 10))
    capped = plan.on_due(j, run, CustomerView(last_marketing_at=iso(5)), at(11))
    assert capped.actions == (Schedule(iso(21)),) and capped.run.status == "waiting"  # deferred, not dropped
    assert plan.on_event(j, capped.run, order("o", 15), at(16)).run.status == "exited"
    # without the order it is sent at the allowed time
    sent = plan.on_due(j, capped.run, CustomerView(last_marketing_at=iso(5)), at(21))
    assert any(isinstance(a, Send) for a in sent.actions)


def test_exits_the_customer_view_knows_of_and_the_exit_rule():
    j = journey()
    run = started(j, checkout("c1", 10))
    # the order arrived before the checkout did: no event reaches the run, the view shows it
    assert plan.on_due(j, run, CustomerView(latest={"order.placed": iso(10.2)}), at(11)).run.status == "exited"
    assert plan.on_due(j, run, CustomerView(latest={"order.placed": iso(9)}), at(11)).run.status == "sending"
    ruled = journey(exit={"rule": {"field": "tags", "op": "contains", "value": "vip"}})
    run = started(ruled, checkout("c1", 10))
    out = plan.on_due(ruled, run, CustomerView(facts={"tags": ["vip"]}), at(11))
    assert out.run.status == "exited" and out.run.reason == "exit_rule"
    newer = journey(exit={"events": ["checkout.started"]})
    run = started(newer, checkout("c1", 10))
    assert plan.on_event(newer, run, checkout("c2", 10.5), at(11)).run.reason == "checkout.started"


# --- due steps -------------------------------------------------------------------------------


def test_due_runs_steps_until_one_waits_and_refires_are_harmless():
    j = journey()
    settings_ = Settings(kinds={TPL_B: "transactional"})
    run = started(j, checkout("c1", 10))
    assert plan.on_due(j, run, CustomerView(), at(10.5)) == plan.Outcome(run, (Schedule(iso(11)),))  # early
    first = plan.on_due(j, run, CustomerView(), at(11), settings_)
    send = first.actions[0]
    assert isinstance(send, Send) and send.marketing and send.step == 0 and send.template_id == TPL_A
    again = plan.on_due(j, first.run, CustomerView(), at(11.2), settings_)  # re-fired while sending
    assert again.actions == (Schedule(iso(11.25)),)  # not due: the recheck is later
    again = plan.on_due(j, first.run, CustomerView(), at(12), settings_)
    assert isinstance(again.actions[0], Send) and again.actions[0].ref == send.ref  # the same ref
    moved = plan.on_sent(j, first.run, send.ref, at(11.01))
    assert moved.run.step == 1 and moved.run.status == "waiting" and moved.actions == (Schedule(iso(11.01)),)
    assert plan.on_sent(j, moved.run, send.ref, at(11.5)).run == moved.run  # a duplicate report
    waited = plan.on_due(j, moved.run, CustomerView(), at(11.01), settings_)
    assert waited.run.step == 2 and waited.actions == (Schedule(iso(35.01)),)
    # the second email is transactional: the cap does not hold it
    second = plan.on_due(j, waited.run, CustomerView(last_marketing_at=iso(35)), at(35.01), settings_)
    assert isinstance(second.actions[0], Send) and not second.actions[0].marketing
    assert second.actions[0].ref != send.ref
    done = plan.on_due(j, plan.on_sent(j, second.run, second.actions[0].ref, at(35.02)).run, CustomerView(), at(35.02))
    assert done.run.status == "done" and done.run.step == 3


def test_conditions_branch_and_updates_act():
    steps = [
        {"type": "condition", "rule": {"field": "vip", "op": "=", "value": True}, "then": 2, "else": "next"},
        {"type": "update", "add_tags": ["not-vip"]},
        {"type": "update", "set_attributes": {"welcomed": True}},
    ]
    j = journey({"type": "customer.created"}, steps)
    run = started(j, event("customer.created", CID, 0))
    vip = plan.on_due(j, run, CustomerView(facts={"vip": True}), at(0))
    assert vip.actions == (Update(CID, set_attributes={"welcomed": True}),) and vip.run.status == "done"
    other = plan.on_due(j, run, CustomerView(facts={"vip": False}), at(0))
    assert [a.add_tags for a in other.actions if isinstance(a, Update)] == [("not-vip",), ()]
    gate = journey({"type": "customer.created"}, [{**steps[0], "else": "exit"}, *steps[1:]])
    out = plan.on_due(gate, started(gate, event("customer.created", CID, 0)), CustomerView(), at(0))
    assert out.run.status == "exited" and out.run.reason == "condition"


def test_paused_holds_and_archived_ends():
    j = journey()
    run = started(j, checkout("c1", 0))
    paused = Journey(j.id, j.definition.model_copy(update={"status": "paused"}))
    held = plan.on_due(paused, run, CustomerView(), at(1))
    assert held.run.status == "waiting" and held.run.step == 0 and held.actions == (Schedule(iso(2)),)
    archived = Journey(j.id, j.definition.model_copy(update={"status": "archived"}))
    assert plan.on_due(archived, run, CustomerView(), at(1)).run.reason == "archived"


# --- time ------------------------------------------------------------------------------------------


def test_wait_until_a_local_time_of_day():
    until = WaitStep(type="wait", until="09:00")
    now = datetime(2026, 7, 1, 6, 0, tzinfo=UTC)  # 08:00 in Paris (UTC+2)
    assert plan.wait_until(until, now, "Europe/Paris") == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)
    assert plan.wait_until(until, now, "UTC") == datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    assert plan.wait_until(until, datetime(2026, 7, 1, 9, 0, tzinfo=UTC), "UTC") == datetime(2026, 7, 2, 9, tzinfo=UTC)
    # 02:30 does not exist on 2026-03-29 in Paris: read with the offset before (03:30 CEST)
    gap = plan.wait_until(WaitStep(type="wait", until="02:30"), datetime(2026, 3, 29, 0, 0, tzinfo=UTC), "Europe/Paris")
    assert gap == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert plan.wait_until(WaitStep(type="wait", duration="P1M"), datetime(2026, 1, 31, tzinfo=UTC), "UTC") == datetime(
        2026, 2, 28, tzinfo=UTC)


def test_birthdays_in_the_tenant_zone_with_29_february_on_28_february():
    leapling = date(2000, 2, 29)
    assert plan.birthday_on(leapling, 2027) == date(2027, 2, 28)
    assert plan.birthday_on(leapling, 2028) == date(2028, 2, 29)
    trig = BirthdayTrigger(type="birthday", hour=9)
    assert plan.birthday_start(leapling, 2027, trig, "America/New_York") == datetime(2027, 2, 28, 14, tzinfo=UTC)
    early = BirthdayTrigger(type="birthday", days_before=7, hour=9)
    jan = date(1990, 1, 3)
    year, start_at = plan.next_birthday(jan, early, "UTC", datetime(2026, 12, 1, tzinfo=UTC))
    assert (year, start_at) == (2027, datetime(2026, 12, 27, 9, tzinfo=UTC))  # the birthday's year
    assert plan.next_birthday(jan, early, "UTC", start_at) == (2028, datetime(2027, 12, 27, 9, tzinfo=UTC))
    e = plan.birthday_event(CID, leapling, 2027, trig, "Asia/Tokyo")
    assert e["id"] == f"birthday:{CID}:2027" and e["occurred_at"] == "2027-02-28T00:00:00.000Z"
    j = journey({"type": "birthday"})
    run = started(j, e)
    assert run.occurrence == "2027" and plan.start(j, e, [run], at(0)) is None


# --- the property: random event orders and duplicates against a reference model ---------------------

SEND_STEPS = (0, 2)  # the journey's send steps: [send A, wait P1D, send B]
CAP = 16
FLUSH = [170.5 + 12 * i for i in range(40)]  # ticks until every run has surely ended


def reference(checkouts, orders, ticks, kinds, last0):
    """The emails the planner must send, from the event times alone: the checkout's
    (occurred, first arrival) and each order's (occurred, first arrival). A run exists
    once its checkout arrived; at each tick, due runs go in (due, checkout) order; a run
    ends once an order placed at or after its checkout has arrived; marketing emails are
    deferred (never dropped) to 16 h after the last one; a wait counts from the send."""
    runs = {c: {"s": s, "a": a, "due": s + 1, "k": 0, "live": True} for c, (s, a) in checkouts.items()}
    emails, last = set(), last0
    for t in ticks:
        while True:
            due = [(r["due"], c) for c, r in runs.items() if r["live"] and r["a"] < t and r["due"] <= t]
            if not due:
                break
            c = min(due)[1]
            r = runs[c]
            if any(o >= r["s"] and a < t for o, a in orders.values()):
                r["live"] = False
                continue
            marketing = kinds[r["k"]] == "marketing"
            if marketing and last is not None and last + CAP > t:
                r["due"] = last + CAP
                continue
            emails.add((c, SEND_STEPS[r["k"]], t))
            last = t if marketing else last
            if r["k"] == 0:
                r["k"], r["due"] = 1, t + 24
            else:
                r["live"] = False
    return emails


class World:
    """The handler's part, in memory: runs, the sender's records, the customer view."""

    def __init__(self, j: Journey, settings_: Settings, last0):
        self.j, self.settings = j, settings_
        self.runs: dict[str, plan.Run] = {}
        self.records: dict[str, tuple[str, int, float]] = {}  # ref -> (checkout, step, sent at)
        self.last = None if last0 is None else iso(last0)
        self.newest_order: str | None = None

    def view(self) -> CustomerView:
        latest = {"order.placed": self.newest_order} if self.newest_order else {}
        return CustomerView(last_marketing_at=self.last, latest=latest)

    def arrive(self, e: dict, hours: float) -> None:
        now = at(hours)
        if e["type"] == "checkout.started":
            out = plan.start(self.j, e, self.runs.values(), now)
            if out is not None:
                assert out.run.occurrence not in self.runs
                self.runs[out.run.occurrence] = out.run
            return
        self.newest_order = max(self.newest_order or e["occurred_at"], e["occurred_at"])
        for occ, run in list(self.runs.items()):
            out = plan.on_event(self.j, run, e, now)
            assert not [a for a in out.actions if isinstance(a, Cancel)]  # the sender here is immediate
            self.runs[occ] = out.run

    def tick(self, hours: float, rnd) -> None:
        now = at(hours)
        idle = [o for o, r in self.runs.items() if not r.finished and r.due_at and clock.parse(r.due_at) > now]
        for occ in rnd.sample(idle, len(idle)):  # spurious timers: no-ops
            assert plan.on_due(self.j, self.runs[occ], self.view(), now, self.settings).run == self.runs[occ]
        while True:
            due = sorted((r.due_at, o) for o, r in self.runs.items()
                         if not r.finished and r.due_at and clock.parse(r.due_at) <= now)
            if not due:
                return
            occ = due[0][1]
            out = plan.on_due(self.j, self.runs[occ], self.view(), now, self.settings)
            run = out.run
            for action in out.actions:
                if isinstance(action, Send):
                    assert action.ref not in self.records, "a second email for one run and step"
                    self.records[action.ref] = (occ, action.step, hours)
                    if action.marketing:
                        self.last = clock.iso(now)
                    run = plan.on_sent(self.j, run, action.ref, now).run
            self.runs[occ] = run


times = st.integers(0, 72)
lags = st.lists(st.integers(0, 40), min_size=1, max_size=3)  # first arrival, then duplicates


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    checkouts=st.lists(st.tuples(times, lags), min_size=1, max_size=3),
    orders=st.lists(st.tuples(st.integers(0, 100), lags), max_size=3),
    ticks=st.lists(st.integers(0, 168), max_size=25, unique=True),
    kinds=st.tuples(*[st.sampled_from(["marketing", "transactional"])] * 2),
    last0=st.none() | st.integers(-20, 0),
    rnd=st.randoms(use_true_random=False),
)
def test_random_orders_and_duplicates_send_exactly_what_the_reference_model_says(
    checkouts, orders, ticks, kinds, last0, rnd
):
    j = journey()
    world = World(j, Settings(cap_hours=CAP, kinds={TPL_A: kinds[0], TPL_B: kinds[1]}), last0)
    arrivals = []  # (arrival hour, tiebreak, event): arrivals in one hour come in any order
    for i, (s, ls) in enumerate(checkouts):
        arrivals += [(s + lag, rnd.random(), checkout(f"c{i}", s)) for lag in ls]
    for i, (o, ls) in enumerate(orders):
        arrivals += [(o + lag, rnd.random(), order(f"o{i}", o)) for lag in ls]
    clock_ticks = sorted({t + 0.5 for t in ticks} | set(FLUSH))
    timeline = sorted([(a, 0, r, e) for a, r, e in arrivals] + [(t, 1, 0.0, None) for t in clock_ticks],
                      key=lambda x: x[:3])
    for hours, _, _, e in timeline:
        if e is None:
            world.tick(hours, rnd)
        else:
            world.arrive(e, hours)

    first = {f"c{i}": (s, s + min(ls)) for i, (s, ls) in enumerate(checkouts)}
    placed = {f"o{i}": (o, o + min(ls)) for i, (o, ls) in enumerate(orders)}
    sent = set(world.records.values())
    assert sent == reference(first, placed, clock_ticks, kinds, last0)
    for c, _step, t in sent:  # never an email after an order placed since its checkout was known
        s = first[c][0]
        assert not any(o >= s and a < t for o, a in placed.values())
    assert all(r.finished for r in world.runs.values())
