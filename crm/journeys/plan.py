"""One customer's run of a journey, as a pure state machine (docs/journeys.md). No I/O:
the handlers (not built yet) read a run and the customer, call one of these functions
and write the run back conditionally on the version read, carrying out its actions.

A run is keyed by (journey, customer, occurrence) (:func:`occurrence_for`), so a
replayed trigger finds its run and starts nothing. Its life:

- :func:`start`: a trigger event for an active journey starts a run (re-entry rule
  applied), ``waiting`` until its first due time;
- :func:`on_due`: the due index (or EventBridge Scheduler) fires: the exit rule and
  the exit events the customer view knows of are checked, then steps run in order
  until one must wait: a ``wait`` (a later due time), a marketing send the frequency
  cap defers (due again at the next allowed time: deferred, never dropped), or a
  send (the run goes ``sending``);
- :func:`on_sent`: the exactly-once sender recorded the step's send (or skipped or
  failed it): the run moves past the step, due at once;
- :func:`on_event`: an exit event (or a checkout's order) ends the run if it happened
  at or after the trigger, whenever it arrives: a send not yet recorded is cancelled.

**Sends map onto crm/email/sending.py**, the campaigns' exactly-once mechanism, with
:attr:`Send.ref` in place of the campaign id: one send record
``record_pk(ctx, ref)`` / ``record_sk(customer_id)``, written ``sending`` with a lease
before the SES call, so a re-fired timer, a duplicate message or a crashed worker
re-emits the same ref and the sender's :func:`~crm.email.sending.decide` answers
``wait`` or ``done``, never a second email. The acquire must also check (a
ConditionCheck in its TransactWriteItems) that the run is still ``sending`` at that
step: that is what makes an exit event's :class:`Cancel` win over a send not yet
recorded. The sender's own cap check stays (another campaign may take the slot
between the planner's read and the acquire): its ``defer`` then holds a ``deferred``
record, which :class:`Cancel` turns ``skipped`` (reason ``exited``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from crm import clock
from crm.journeys.schemas import (
    BirthdayTrigger,
    CheckoutStartedTrigger,
    ConditionStep,
    CustomerCreatedTrigger,
    JourneyDefinition,
    PointsExpiringTrigger,
    ReentryAfter,
    ReentryNever,
    SegmentEnteredTrigger,
    SendEmailStep,
    TierChangedTrigger,
    Trigger,
    UpdateStep,
    WaitStep,
)
from crm.segments import rules

Event = dict[str, Any]
RunStatus = Literal["waiting", "sending", "done", "exited"]
BIRTHDAY = "birthday"
PAUSED_RECHECK = timedelta(hours=1)  # a paused journey's due runs look again this often
# a sending run is due again after this: its Send is emitted again if the sender's
# message was lost (same ref: never a second email); longer than the sender's lease
SEND_RECHECK = timedelta(minutes=15)
ORDER_PLACED = "order.placed"


@dataclass(frozen=True)
class Journey:
    """A stored journey: its id (``jrn_…``) and definition."""

    id: str
    definition: JourneyDefinition


@dataclass(frozen=True)
class Settings:
    """The tenant's values the planner needs."""

    tz: str = "UTC"  # IANA time zone: birthdays and ``wait until``
    cap_hours: float = 16  # the plan's marketing_cap_hours (0: no cap)
    kinds: Mapping[str, str] = field(default_factory=dict)  # template id -> its kind; unknown: marketing (capped)


@dataclass(frozen=True)
class CustomerView:
    """What the handler read of the customer when a run is due."""

    facts: Mapping[str, Any] = field(default_factory=dict)  # crm/segments/aggregate.py facts: conditions, exit rule
    last_marketing_at: str | None = None  # the frequency cap's item (across campaigns and journeys)
    # event type -> the newest occurred_at known for the customer (order.placed: the
    # newest order's placed_at): catches an exit event that arrived before its run started
    latest: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    journey_id: str
    customer_id: str
    occurrence: str
    started_at: str  # the trigger's occurred_at: exit events count from here (event time)
    trigger_id: str  # the trigger event's id (templates see the event)
    step: int = 0  # the step to run at ``due_at`` (len(steps): past the end)
    status: RunStatus = "waiting"
    due_at: str | None = None
    seen: tuple[str, ...] = ()  # event ids applied: a duplicate is a no-op
    sent: tuple[tuple[int, str, str], ...] = ()  # (step, recorded at, sent | skipped | failed)
    reason: str | None = None  # why it exited
    ended_at: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.journey_id, self.customer_id, self.occurrence)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "exited")


@dataclass(frozen=True)
class Send:
    """Send step ``step``'s template: the sender's record is (``ref``, customer)."""

    ref: str
    customer_id: str
    template_id: str
    marketing: bool
    step: int
    sender: str | None = None


@dataclass(frozen=True)
class Cancel:
    """A send emitted but not recorded is void: its record, if not ``sending`` or final,
    goes ``skipped`` (reason ``exited``); an acquired one is out of reach."""

    ref: str
    customer_id: str


@dataclass(frozen=True)
class Update:
    customer_id: str
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    set_attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Schedule:
    """Be due at ``at`` (past or now: run :func:`on_due` at once)."""

    at: str


Action = Send | Cancel | Update | Schedule


@dataclass(frozen=True)
class Outcome:
    run: Run
    actions: tuple[Action, ...] = ()


# --- occurrences ----------------------------------------------------------------------------


def occurrence_for(trigger: Trigger, event: Event) -> str | None:
    """The occurrence an event is for this trigger, None if the event does not match it.

    - ``customer.created``: ``created`` (one per customer, ever);
    - ``checkout.started``: the checkout id (one per checkout);
    - ``birthday``: the birthday's year, e.g. ``2027`` (:func:`birthday_event`);
    - ``segment.entered``: the membership's ``since`` (the event's occurred_at): leaving
      and entering again is a new occurrence, a replay of the same entry is not;
    - ``tier.changed``: the time of the change (the tier's ``tier_since``);
    - ``points.expiring``: the lot id.
    """
    data = event.get("data") or {}
    if event.get("type") != trigger.type:
        return None
    if isinstance(trigger, CustomerCreatedTrigger):
        return "created"
    if isinstance(trigger, CheckoutStartedTrigger):
        return _text(data.get("checkout_id"))
    if isinstance(trigger, BirthdayTrigger):
        return _text(data.get("year"))
    if isinstance(trigger, SegmentEnteredTrigger):
        return _text(event.get("occurred_at")) if data.get("segment_id") == trigger.segment_id else None
    if isinstance(trigger, TierChangedTrigger):
        if trigger.to is not None and data.get("to") != trigger.to:
            return None
        return _text(event.get("occurred_at"))
    return _text(data.get("lot"))  # points.expiring


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def run_id(journey_id: str, customer_id: str, occurrence: str) -> str:
    """A short, key-safe id of a run (occurrences hold ``:`` and times)."""
    digest = hashlib.sha256(f"{customer_id}\x00{occurrence}".encode()).hexdigest()[:16]
    return f"{journey_id}.{digest}"


def send_ref(run: Run, step: int) -> str:
    """The ref of a run's send at ``step``: the same on every attempt, so the sender's
    record (ref, customer) de-duplicates re-fired timers and duplicate messages."""
    return f"{run_id(run.journey_id, run.customer_id, run.occurrence)}.s{step}"


# --- start ----------------------------------------------------------------------------------


def start(journey: Journey, event: Event, existing: Iterable[Run], now: datetime) -> Outcome | None:
    """A new run for ``event``, or None: the journey is not active, the event does not
    match its trigger, the occurrence already has a run (a replay, a duplicate), or
    the re-entry rule refuses. ``existing``: the customer's runs of this journey."""
    spec = journey.definition
    if spec.status != "active" or not event.get("customer_id"):
        return None
    occurrence = occurrence_for(spec.trigger, event)
    if occurrence is None:
        return None
    runs = list(existing)
    if any(r.occurrence == occurrence for r in runs):
        return None
    occurred = clock.parse(event["occurred_at"])
    if runs and isinstance(spec.reentry, ReentryNever):
        return None
    if runs and isinstance(spec.reentry, ReentryAfter):
        last = max(clock.parse(r.started_at) for r in runs)
        if occurred < rules.add_duration(last, spec.reentry.duration):
            return None
    due = clock.iso(_first_due(spec.trigger, event, occurred))
    run = Run(
        journey_id=journey.id,
        customer_id=str(event["customer_id"]),
        occurrence=occurrence,
        started_at=clock.iso(occurred),
        trigger_id=str(event.get("id") or ""),
        due_at=due,
    )
    return Outcome(run, (Schedule(due),))


def _first_due(trigger: Trigger, event: Event, occurred: datetime) -> datetime:
    """When the first step runs: a checkout's ``wait`` after it started; ``days_before``
    a lot expires (at once if later); otherwise when the trigger happened."""
    if isinstance(trigger, CheckoutStartedTrigger):
        return rules.add_duration(occurred, trigger.wait)
    if isinstance(trigger, PointsExpiringTrigger):
        expires = (event.get("data") or {}).get("expires_at")
        if isinstance(expires, str):
            return max(occurred, clock.parse(expires) - timedelta(days=trigger.days_before))
    return occurred


# --- exits ----------------------------------------------------------------------------------


def exit_events(spec: JourneyDefinition) -> frozenset[str]:
    """The event types that end a run: the journey's, and order.placed for a checkout."""
    implicit = {ORDER_PLACED} if isinstance(spec.trigger, CheckoutStartedTrigger) else set()
    return frozenset(set(spec.exit.events) | implicit)


def _counts(spec: JourneyDefinition, run: Run, type_: str, occurred_at: str) -> bool:
    """An exit event counts if it happened at or after the run's trigger; one of the
    trigger's own type only if strictly after (a newer checkout, not this one)."""
    at, began = clock.parse(occurred_at), clock.parse(run.started_at)
    return at > began if type_ == spec.trigger.type else at >= began


def _exit(run: Run, reason: str, now: datetime) -> Outcome:
    actions: tuple[Action, ...] = ()
    if run.status == "sending":
        actions = (Cancel(send_ref(run, run.step), run.customer_id),)
    ended = replace(run, status="exited", reason=reason, due_at=None, ended_at=clock.iso(now))
    return Outcome(ended, actions)


def on_event(journey: Journey, run: Run, event: Event, now: datetime) -> Outcome:
    """Apply an event to a run: an exit event that happened at or after the trigger ends
    it, even if it arrives after the step's timer fired (event time, not arrival). A
    duplicate (its id seen), an event for a finished run or one that is no exit changes
    nothing."""
    eid = str(event.get("id") or "")
    if run.finished or eid in run.seen or eid == run.trigger_id or event.get("customer_id") != run.customer_id:
        return Outcome(run)
    type_, occurred = event.get("type"), event.get("occurred_at")
    if type_ not in exit_events(journey.definition) or not isinstance(occurred, str):
        return Outcome(run)
    seen = replace(run, seen=(*run.seen, eid))
    if not _counts(journey.definition, run, str(type_), occurred):
        return Outcome(seen)  # it happened before the run began
    return _exit(seen, str(type_), now)


def _known_exit(spec: JourneyDefinition, run: Run, view: CustomerView, now: datetime) -> str | None:
    """An exit the customer view shows: an exit event newer than the trigger (arrived
    before the run existed, or its fan-out was lost), or the exit rule holding."""
    for type_ in sorted(exit_events(spec)):
        at = view.latest.get(type_)
        if at and _counts(spec, run, type_, at):
            return type_
    if spec.exit.rule is not None and rules.evaluate(spec.exit.rule, dict(view.facts), clock.iso(now)):
        return "exit_rule"
    return None


# --- due ------------------------------------------------------------------------------------


def on_due(journey: Journey, run: Run, view: CustomerView, now: datetime, settings: Settings | None = None) -> Outcome:
    """The run's due time came: run steps until one waits. Early or repeated calls are
    harmless: before ``due_at`` nothing happens; a run ``sending`` re-emits the same
    :class:`Send` (same ref: the sender never sends twice)."""
    settings = settings or Settings()
    spec = journey.definition
    if run.finished:
        return Outcome(run)
    if run.due_at is not None and clock.parse(run.due_at) > now:
        return Outcome(run, (Schedule(run.due_at),))
    if spec.status == "archived":
        return _exit(run, "archived", now)
    if spec.status != "active":  # paused (or back to draft): hold, look again later
        at = clock.iso(now + PAUSED_RECHECK)
        return Outcome(replace(run, due_at=at), (Schedule(at),))
    reason = _known_exit(spec, run, view, now)
    if reason is not None:
        return _exit(run, reason, now)
    if run.status == "sending":  # the sender's message was lost, or this is a re-fire
        step = spec.steps[run.step]
        assert isinstance(step, SendEmailStep)
        again = replace(run, due_at=clock.iso(now + SEND_RECHECK))
        return Outcome(again, (_send(again, step, settings), Schedule(str(again.due_at))))
    actions: list[Action] = []
    at = clock.iso(now)
    index = run.step
    while True:  # steps only jump forward: this ends
        if index >= len(spec.steps):
            return Outcome(replace(run, step=index, status="done", due_at=None, ended_at=at), tuple(actions))
        step = spec.steps[index]
        if isinstance(step, WaitStep):
            due = clock.iso(wait_until(step, now, settings.tz))
            return Outcome(replace(run, step=index + 1, due_at=due), (*actions, Schedule(due)))
        if isinstance(step, ConditionStep):
            holds = rules.evaluate(step.rule, dict(view.facts), at)
            target = step.then if holds else step.else_
            if target == "exit":
                ended = replace(run, step=index, status="exited", reason="condition", due_at=None, ended_at=at)
                return Outcome(ended, tuple(actions))
            index = index + 1 if target == "next" else int(target)
            continue
        if isinstance(step, UpdateStep):
            actions.append(
                Update(run.customer_id, tuple(step.add_tags), tuple(step.remove_tags), dict(step.set_attributes))
            )
            index += 1
            continue
        assert isinstance(step, SendEmailStep)
        allowed = next_allowed(step.template_id, view, now, settings)
        if allowed is not None:  # the cap: deferred to the next allowed time, never dropped
            due = clock.iso(allowed)
            return Outcome(replace(run, step=index, due_at=due), (*actions, Schedule(due)))
        recheck = clock.iso(now + SEND_RECHECK)
        sending = replace(run, step=index, status="sending", due_at=recheck)
        return Outcome(sending, (*actions, _send(sending, step, settings), Schedule(recheck)))


def _send(run: Run, step: SendEmailStep, settings: Settings) -> Send:
    return Send(
        send_ref(run, run.step),
        run.customer_id,
        step.template_id,
        marketing(step.template_id, settings),
        run.step,
        step.sender,
    )


def marketing(template_id: str, settings: Settings) -> bool:
    """Marketing unless the template is transactional (unknown: marketing, the capped side)."""
    return settings.kinds.get(template_id, "marketing") != "transactional"


def next_allowed(template_id: str, view: CustomerView, now: datetime, settings: Settings) -> datetime | None:
    """When the frequency cap next allows a marketing email to this customer, None if
    now (or the email is transactional: exempt)."""
    if not marketing(template_id, settings) or settings.cap_hours <= 0 or not view.last_marketing_at:
        return None
    allowed = clock.parse(view.last_marketing_at) + timedelta(hours=settings.cap_hours)
    return allowed if allowed > now else None


def on_sent(journey: Journey, run: Run, ref: str, at: datetime, state: str = "sent") -> Outcome:
    """The sender finished the step's record (``sent``, or ``skipped``/``failed``: no
    consent, suppressed, SES refused): the run moves on, due at once. A report for
    another ref (a stale one) changes nothing; one for a run that exited meanwhile (its
    cancel came too late: the record was acquired) is kept, the run stays exited."""
    if run.status not in ("sending", "exited") or ref != send_ref(run, run.step):
        return Outcome(run)
    if any(s == run.step for s, _, _ in run.sent):
        return Outcome(run)
    recorded = (*run.sent, (run.step, clock.iso(at), state))
    if run.status == "exited":
        return Outcome(replace(run, sent=recorded))
    due = clock.iso(at)
    return Outcome(replace(run, sent=recorded, step=run.step + 1, status="waiting", due_at=due), (Schedule(due),))


# --- time -----------------------------------------------------------------------------------


def wait_until(step: WaitStep, now: datetime, tz: str) -> datetime:
    """The end of a wait from ``now``: a duration later, or the next ``HH:MM`` in the
    tenant's time zone (strictly after now: a wait always waits). A local time the
    clocks skip (spring forward) is read with the offset before the change."""
    if step.duration is not None:
        return rules.add_duration(now, step.duration)
    assert step.until is not None
    hour, minute = (int(x) for x in step.until.split(":"))
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    for days in range(3):
        d = local.date() + timedelta(days=days)
        candidate = datetime.combine(d, time(hour, minute), tzinfo=zone)
        if candidate > now:
            return candidate.astimezone(now.tzinfo)
    raise AssertionError("unreachable: a time of day recurs within a day")


def birthday_on(born: date, year: int) -> date:
    """The birthday in ``year``: 29 February is 28 February in other years (the last day
    of the birth month, and the segments' ``birthday_within`` reads it so too)."""
    if (born.month, born.day) == (2, 29) and not _leap(year):
        return date(year, 2, 28)
    return date(year, born.month, born.day)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def birthday_start(born: date, year: int, trigger: BirthdayTrigger, tz: str) -> datetime:
    """When the ``year`` birthday's run starts: ``hour`` local, ``days_before`` days
    before the birthday (which may be in the year before)."""
    day = birthday_on(born, year) - timedelta(days=trigger.days_before)
    local = datetime.combine(day, time(trigger.hour), tzinfo=ZoneInfo(tz))
    return local.astimezone(ZoneInfo("UTC"))


def next_birthday(born: date, trigger: BirthdayTrigger, tz: str, after: datetime) -> tuple[int, datetime]:
    """The first birthday whose start is strictly after ``after`` (the last one
    scheduled, or the customer's creation): (its year, its start)."""
    for year in range(after.year - 1, after.year + 3):
        at = birthday_start(born, year, trigger, tz)
        if at > after:
            return year, at
    raise AssertionError("unreachable: a birthday recurs within a year")


def birthday_event(customer_id: str, born: date, year: int, trigger: BirthdayTrigger, tz: str) -> Event:
    """The event a birthday's due time stands for (there is no stored fact): its id
    names the customer and year, so a re-fired timer starts nothing twice."""
    at = birthday_start(born, year, trigger, tz)
    return {
        "id": f"{BIRTHDAY}:{customer_id}:{year}",
        "type": BIRTHDAY,
        "customer_id": customer_id,
        "occurred_at": clock.iso(at),
        "data": {"customer_id": customer_id, "year": year, "birthday": birthday_on(born, year).isoformat()},
    }
