"""Journeys at work (docs/journeys.md): events start and end runs, the due index runs
their steps. The decisions are the pure planner's (crm/journeys/plan.py); this module
reads, writes conditionally and carries out the planner's actions.

A run is a ``JourneyRunItem`` in the customer's partition, written conditionally on its
version (a concurrent writer makes this one re-read and decide again). The order of a
due step's effects makes every crash safe: an ``update`` step's change (idempotent) is
applied before the run is written past it; a send step's run is written ``sending``
before the email, whose record the sender writes before the SES call
(crm/journeys/sender.py), so a crash anywhere re-runs the step and never sends twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from datetime import date, datetime
from typing import Any

from crm import clock
from crm.context import TenantContext
from crm.journeys import plan, store
from crm.journeys.schemas import BirthdayTrigger, JourneyDefinition
from crm.storage import JourneyRunItem, condition_failed

DUE_SHARDS = 4
DUE_PREFIX = "JOURNEY_DUE#"
RUN_SK = "C#JRUN#"
BIRTHDAY_RUN = "birthday"  # the schedule's occurrence: C#JRUN#<journey id>.birthday
MAX_STEPS = 60  # steps one advance runs before leaving the rest to the due index
RETRIES = 5
BACKFILL_PAGE = 200
Journeys = dict[str, tuple[Any, JourneyDefinition]]


class Busy(Exception):
    """The run kept changing under this worker: the message is retried."""


# --- keys and conversion ---------------------------------------------------------------------


def _pk(ctx: TenantContext, customer_id: str) -> str:
    from crm.customers import records

    return records.profile_pk(ctx, customer_id)


def _shard(ctx: TenantContext, customer_id: str) -> int:
    return int(hashlib.sha256(f"{ctx.tenant_id}#{customer_id}".encode()).hexdigest()[:4], 16) % DUE_SHARDS


def run_sk(run: plan.Run) -> str:
    return f"{RUN_SK}{plan.run_id(run.journey_id, run.customer_id, run.occurrence)}"


def birthday_sk(journey_id: str) -> str:
    return f"{RUN_SK}{journey_id}.{BIRTHDAY_RUN}"


def to_run(item: JourneyRunItem) -> plan.Run:
    state = dict(item.state or {})
    state["seen"] = tuple(state.get("seen") or ())
    state["sent"] = tuple(tuple(s) for s in state.get("sent") or ())
    return plan.Run(**state)


def _index(ctx: TenantContext, item: JourneyRunItem, due_at: str | None) -> None:
    item.due_at = due_at
    if due_at:
        item.gsi2pk = f"{DUE_PREFIX}{_shard(ctx, item.customer_id)}"
        item.gsi2sk = f"{due_at}#{ctx.tenant_id}#{item.customer_id}"
    else:
        item.gsi2pk = item.gsi2sk = None


def _fill(ctx: TenantContext, item: JourneyRunItem, run: plan.Run) -> None:
    item.state = asdict(run)
    item.status, item.step, item.updated_at = run.status, run.step, clock.now_iso()
    _index(ctx, item, run.due_at)


def new_item(ctx: TenantContext, run: plan.Run, event: dict[str, Any] | None) -> JourneyRunItem:
    item = JourneyRunItem(_pk(ctx, run.customer_id), run_sk(run), customer_id=run.customer_id,
                          journey_id=run.journey_id, event=event)  # fmt: skip
    _fill(ctx, item, run)
    return item


def _save(ctx: TenantContext, item: JourneyRunItem, run: plan.Run, *, new: bool = False) -> bool:
    """Write the run (new: only if absent; else on the version read). False: lost a race."""
    _fill(ctx, item, run)
    try:
        item.save(JourneyRunItem.pk.does_not_exist() if new else None)
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def customer_runs(ctx: TenantContext, customer_id: str) -> list[JourneyRunItem]:
    """The customer's runs and birthday schedules: 1 Query (``begins_with C#JRUN#``)."""
    return list(JourneyRunItem.query(_pk(ctx, customer_id), JourneyRunItem.sk.startswith(RUN_SK),
                                     consistent_read=True))  # fmt: skip


def _reload(item: JourneyRunItem) -> JourneyRunItem | None:
    try:
        return JourneyRunItem.get(item.pk, item.sk, consistent_read=True)
    except JourneyRunItem.DoesNotExist:
        return None


def _count_end(ctx: TenantContext, before: plan.Run, after: plan.Run) -> None:
    if before.finished or not after.finished:
        return
    store.count(ctx, after.journey_id, **({"completed": 1} if after.status == "done" else {"exited": 1}))


# --- events ------------------------------------------------------------------------------------


def journeys_of(ctx: TenantContext, cache: dict[str, Journeys] | None = None) -> Journeys:
    """The tenant's journeys by id (1 Query; once per tenant per ``cache``)."""
    if cache is not None and ctx.tenant_id in cache:
        return cache[ctx.tenant_id]
    found = {item.journey_id: (item, spec) for item, spec in store.all_of(ctx)}
    if cache is not None:
        cache[ctx.tenant_id] = found
    return found


def handle_event(ctx: TenantContext, event: dict[str, Any], cache: dict[str, Journeys] | None = None) -> dict[str, int]:
    """A domain event: apply it to the customer's live runs (exits), start the runs it
    triggers, keep birthday schedules in step with the profile. 1 Query of the tenant's
    journeys (cached per batch) and, when there is one, 1 Query of the customer's runs."""
    journeys = journeys_of(ctx, cache)
    out = {"started": 0, "exited": 0}
    customer_id = event.get("customer_id") or (event.get("data") or {}).get("customer_id")
    if not journeys or not customer_id or not _plan_runs_journeys(ctx):
        return out
    event = {**event, "customer_id": customer_id}
    now = clock.now()
    runs = customer_runs(ctx, customer_id)
    for journey_id, (_, spec) in sorted(journeys.items()):
        journey = plan.Journey(journey_id, spec)
        mine = [r for r in runs if r.journey_id == journey_id and r.status != "scheduled"]
        for item in mine:
            if _apply_event(ctx, journey, item, event, now):
                out["exited"] += 1
        started = _start(ctx, journey, event, mine, now, journeys)
        out["started"] += started
    if event.get("type") in ("customer.created", "customer.updated"):
        _birthdays_follow(ctx, customer_id, journeys, runs, event)
    return out


def _apply_event(ctx: TenantContext, journey: plan.Journey, item: JourneyRunItem, event: dict[str, Any],
                 now: datetime) -> bool:  # fmt: skip
    current: JourneyRunItem | None = item
    for _ in range(RETRIES):
        if current is None:
            return False
        run = to_run(current)
        outcome = plan.on_event(journey, run, event, now)
        if outcome.run == run:
            return False
        if _save(ctx, current, outcome.run):
            _count_end(ctx, run, outcome.run)
            return outcome.run.status == "exited"
        current = _reload(current)
    raise Busy(f"run {item.sk} kept changing")


def _start(ctx: TenantContext, journey: plan.Journey, event: dict[str, Any], mine: list[JourneyRunItem],
           now: datetime, journeys: Journeys) -> int:  # fmt: skip
    outcome = plan.start(journey, event, [to_run(i) for i in mine], now)
    if outcome is None:
        return 0
    item = new_item(ctx, outcome.run, _event_for_template(event))
    if not _save(ctx, item, outcome.run, new=True):
        return 0  # a duplicate delivery started it meanwhile
    store.count(ctx, journey.id, started=1)
    mine.append(item)
    if outcome.run.due_at and clock.parse(outcome.run.due_at) <= clock.now():
        advance(ctx, item, journeys)
    return 1


def _plan_runs_journeys(ctx: TenantContext) -> bool:
    """A tenant whose plan no longer includes journeys (a downgrade) starts and ends no
    runs; its due runs hold (:func:`advance`). The billing item, cached per container."""
    from crm.billing import limits

    # a cached plan may predate an upgrade: read it afresh before ignoring an event
    return limits.plan_of(ctx).allows("journeys") or limits.plan_of(ctx, fresh=True).allows("journeys")


def _event_for_template(event: dict[str, Any]) -> dict[str, Any]:
    """What ``{{ event }}`` shows: the trigger's type, time and data."""
    return {k: event.get(k) for k in ("id", "type", "occurred_at", "data")}


# --- due runs ----------------------------------------------------------------------------------


def due(shard: int, now: str, limit: int) -> Any:
    """(tenant, customer) with a run due by ``now``: Queries on gsi2 ``JOURNEY_DUE#<shard>``
    (1 per 100 rows); a customer with several due runs is named once."""
    seen: set[tuple[str, str]] = set()
    for row in JourneyRunItem.gsi2.query(f"{DUE_PREFIX}{shard}", JourneyRunItem.gsi2sk <= f"{now}#~",
                                         limit=limit, page_size=min(limit, 100)):  # fmt: skip
        _, tenant, customer = row.gsi2sk.rsplit("#", 2)
        if (tenant, customer) not in seen:
            seen.add((tenant, customer))
            yield tenant, customer


def run_due(ctx: TenantContext, customer_id: str, now: str, cache: dict[str, Journeys] | None = None) -> int:
    """Every run of the customer due by ``now``: 1 Query of its runs, then each one's
    advance. Returns the runs advanced."""
    journeys = journeys_of(ctx, cache)
    n = 0
    for item in customer_runs(ctx, customer_id):
        if item.due_at and item.due_at <= now:
            advance(ctx, item, journeys)
            n += 1
    return n


def advance(ctx: TenantContext, item: JourneyRunItem, journeys: Journeys) -> None:
    """Run a due run's steps until one waits (or :data:`MAX_STEPS`)."""
    if item.status == "scheduled":
        _birthday_due(ctx, item, journeys)
        return
    current: JourneyRunItem | None = item
    conflicts = 0
    for _ in range(MAX_STEPS):
        if current is None:
            return
        run = to_run(current)
        found = journeys.get(run.journey_id)
        now = clock.now()
        if found is None:  # deleted: the run ends
            if run.finished:
                return
            ended = replace(run, status="exited", reason="deleted", due_at=None, ended_at=clock.iso(now))
            if _save(ctx, current, ended):
                return
            current, conflicts = _reload(current), conflicts + 1
            continue
        journey = plan.Journey(run.journey_id, found[1])
        view, settings, reads = _read(ctx, run.customer_id, found[1])
        if not reads[0].plan.allows("journeys"):  # downgraded: a due run holds, as if paused
            if not run.finished and run.due_at and clock.parse(run.due_at) <= now:
                _save(ctx, current, replace(run, due_at=clock.iso(now + plan.PAUSED_RECHECK)))
            return
        outcome = plan.on_due(journey, run, view, now, settings)
        if outcome.run == run:
            return
        for action in outcome.actions:
            if isinstance(action, plan.Update):
                _update_customer(ctx, action)
        if not _save(ctx, current, outcome.run):
            conflicts += 1
            if conflicts > RETRIES:
                raise Busy(f"run {current.sk} kept changing")
            current = _reload(current)
            continue
        _count_end(ctx, run, outcome.run)
        send = next((a for a in outcome.actions if isinstance(a, plan.Send)), None)
        if send is not None:
            current = _send(ctx, current, journey, outcome.run, send, reads, now)
            continue
        due_at = outcome.run.due_at
        if outcome.run.finished or not due_at or clock.parse(due_at) > clock.now():
            return


def _send(ctx: TenantContext, item: JourneyRunItem, journey: plan.Journey, run: plan.Run, send: plan.Send,
          reads: Any, now: datetime) -> JourneyRunItem | None:  # fmt: skip
    """The step's email, then the run past it (``on_sent``); a deferral or a wait moves
    the run's due time. None when the run needs nothing more now."""
    from crm.journeys import sender

    base, templates = reads
    result = sender.send(ctx, (item.pk, item.sk), send, replace(base, template=templates.get(send.template_id)),
                         item.event, now)  # fmt: skip
    for _ in range(RETRIES):
        if result.state in ("sent", "skipped", "failed"):
            after = plan.on_sent(journey, run, send.ref, clock.now(), result.state).run
        elif result.state in ("defer", "wait") and result.at:
            # deferred (the cap): back to waiting at the same step; held or throttled: look again then
            status = "waiting" if result.state == "defer" else run.status
            after = replace(run, status=status, due_at=result.at)
        else:  # gone: the run moved on meanwhile
            return None
        if after == run:
            return None
        if _save(ctx, item, after):
            if result.state == "sent" and after != run:
                store.count(ctx, run.journey_id, emails=1)
            _count_end(ctx, run, after)
            return item if after.due_at and clock.parse(after.due_at) <= clock.now() else None
        reloaded = _reload(item)
        if reloaded is None:
            return None
        item, run = reloaded, to_run(reloaded)
    raise Busy(f"run {item.sk} kept changing")


def _read(
    ctx: TenantContext, customer_id: str, spec: JourneyDefinition
) -> tuple[plan.CustomerView, plan.Settings, tuple[Any, dict[str, Any]]]:
    """1 BatchGetItem: the customer (profile, METRICS, points book, frequency cap), the
    tenant (name, billing, email settings) and the journey's templates."""
    from crm.billing import plans
    from crm.customers import records
    from crm.email import sending
    from crm.journeys.sender import Reads
    from crm.segments import aggregate
    from crm.storage import (
        BillingItem,
        CustomerItem,
        EmailCapItem,
        EmailSettingsItem,
        Item,
        LoyaltyItem,
        MetricsItem,
        TemplateItem,
        TenantItem,
    )

    pk = _pk(ctx, customer_id)
    templates = sorted(spec.template_ids())
    keys = [(pk, records.PROFILE), (pk, "METRICS"), (pk, "LOYALTY"), (pk, sending.CAP_SK),
            (ctx.prefix, sending.EMAIL_SETTINGS), (ctx.prefix, "TENANT"), (ctx.prefix, "BILLING")]  # fmt: skip
    keys += [(ctx.key(sending.TEMPLATES), t) for t in templates]
    by: dict[Any, Any] = {}
    for found in Item.batch_get(keys, consistent_read=True):
        by[found.sk if isinstance(found, TemplateItem) else type(found)] = found
    profile, metrics, book = by.get(CustomerItem), by.get(MetricsItem), by.get(LoyaltyItem)
    facts: dict[str, Any] = {}
    if profile is not None:
        image = {"data": profile.data or {}, "created_at": profile.created_at}
        facts = aggregate.facts(image, getattr(book, "book", None), dict(getattr(metrics, "agg", None) or {}),
                                dict(getattr(metrics, "scores", None) or {}))  # fmt: skip
        facts["segments"] = sorted(getattr(metrics, "memberships", None) or {})
    latest = {"order.placed": facts["orders.last_at"]} if facts.get("orders.last_at") else {}
    cap = by.get(EmailCapItem)
    settings_item = by.get(EmailSettingsItem)
    billing, tenant = by.get(BillingItem), by.get(TenantItem)
    tier = plans.get(getattr(billing, "plan", None))
    settings = plan.Settings(
        tz=getattr(settings_item, "time_zone", None) or "UTC",
        cap_hours=float(tier.limits.marketing_cap_hours),
        kinds={t: by[t].template_kind for t in templates if t in by},
    )
    view = plan.CustomerView(facts=facts, last_marketing_at=getattr(cap, "last_marketing_at", None), latest=latest)
    reads = Reads(template=None, settings=settings_item, tenant_name=getattr(tenant, "name", "") or "", plan=tier)
    return view, settings, (reads, {t: by[t] for t in templates if t in by})


def _update_customer(ctx: TenantContext, action: plan.Update) -> None:
    """An ``update`` step: tags added and removed, attributes set (null removes), through
    the customers service (its events follow); idempotent, so a repeat changes nothing."""
    from crm import retry
    from crm.customers import service
    from crm.customers.schemas import CustomerPatch
    from crm.errors import NotFound, PreconditionFailed

    for _ in retry.backoff():
        try:
            current = service.get(ctx, action.customer_id)
        except NotFound:
            return  # erased or merged meanwhile: nothing to change
        tags = [t for t in (current.tags or []) if t.lower() not in {r.lower() for r in action.remove_tags}]
        tags += [t for t in action.add_tags if t.lower() not in {x.lower() for x in tags}]
        fields: dict[str, Any] = {}
        if tags != list(current.tags or []):
            fields["tags"] = tags
        attributes = dict(action.set_attributes)
        if attributes:
            fields["attributes"] = attributes
        if not fields:
            return
        try:
            service.update(ctx, action.customer_id, CustomerPatch.model_validate(fields), if_match=current.version)
            return
        except PreconditionFailed:
            continue


# --- birthdays ---------------------------------------------------------------------------------


def _birth_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def schedule_birthday(ctx: TenantContext, customer_id: str, journey_id: str, trigger: BirthdayTrigger,
                      born: date, tz: str, after: datetime,
                      existing: JourneyRunItem | None = None) -> JourneyRunItem:  # fmt: skip
    """The customer's next birthday of the journey on the due index, to save (a PutItem
    conditional on ``existing``'s version, or on there being none)."""
    year, at = plan.next_birthday(born, trigger, tz, after)
    item = JourneyRunItem(_pk(ctx, customer_id), birthday_sk(journey_id), customer_id=customer_id,
                          journey_id=journey_id, status="scheduled", step=0, event=None,
                          state={"born": born.isoformat(), "year": year, "tz": tz})  # fmt: skip
    if existing is not None and existing.version is not None:  # a backfill's BatchWriteItem sets none
        item.version = existing.version
    item.updated_at = clock.now_iso()
    _index(ctx, item, clock.iso(at))
    return item


def _birthdays_follow(ctx: TenantContext, customer_id: str, journeys: Journeys, runs: list[JourneyRunItem],
                      event: dict[str, Any]) -> None:  # fmt: skip
    """A new customer, or a changed ``birth_date``: each active birthday journey's
    schedule follows the profile (put, moved or removed)."""
    changed = (event.get("data") or {}).get("changed")
    if event.get("type") == "customer.updated" and "birth_date" not in (changed or []):
        return
    birthday = {jid: spec for jid, (_, spec) in journeys.items()
                if isinstance(spec.trigger, BirthdayTrigger) and spec.status == "active"}  # fmt: skip
    if not birthday:
        return
    from crm.customers import service
    from crm.errors import NotFound

    try:
        born = _birth_date(service.get(ctx, customer_id).birth_date)
    except NotFound:
        born = None
    schedules = {r.journey_id: r for r in runs if r.status == "scheduled"}
    tz = _time_zone(ctx)
    for jid, spec in birthday.items():
        existing = schedules.get(jid)
        if born is None:
            if existing is not None:
                _delete(existing)
            continue
        if existing is not None and (existing.state or {}).get("born") == born.isoformat():
            continue
        assert isinstance(spec.trigger, BirthdayTrigger)
        _put(schedule_birthday(ctx, customer_id, jid, spec.trigger, born, tz, clock.now(), existing))


def _time_zone(ctx: TenantContext) -> str:
    from crm.email import settings

    item = settings.load(ctx)
    return getattr(item, "time_zone", None) or "UTC"


def _birthday_due(ctx: TenantContext, item: JourneyRunItem, journeys: Journeys) -> None:
    """A birthday came: start its run (the event id names customer and year: a re-fired
    schedule starts nothing twice), then schedule the next one."""
    found = journeys.get(item.journey_id)
    state = dict(item.state or {})
    born = _birth_date(state.get("born"))
    if found is None or born is None or not isinstance(found[1].trigger, BirthdayTrigger):
        _delete(item)  # the journey is gone (or no longer a birthday one)
        return
    spec = found[1]
    trigger = spec.trigger
    assert isinstance(trigger, BirthdayTrigger)
    tz = str(state.get("tz") or "UTC")
    year = int(state["year"])
    if spec.status == "active":
        event = plan.birthday_event(item.customer_id, born, year, trigger, tz)
        journey = plan.Journey(item.journey_id, spec)
        mine = [r for r in customer_runs(ctx, item.customer_id)
                if r.journey_id == item.journey_id and r.status != "scheduled"]  # fmt: skip
        _start(ctx, journey, event, mine, clock.now(), journeys)
    after = plan.birthday_start(born, year, trigger, tz)
    _put(schedule_birthday(ctx, item.customer_id, item.journey_id, trigger, born, _time_zone(ctx), after, item))


def _delete(item: JourneyRunItem) -> None:
    try:
        item.delete()
    except Exception as exc:
        if not condition_failed(exc):
            raise


def _put(item: JourneyRunItem) -> None:
    """Save a schedule; losing the race to another writer of it (a duplicate message, the
    schedule and an event at once) is fine: theirs is as new."""
    try:
        item.save()
    except Exception as exc:
        if not condition_failed(exc):
            raise


def queue_backfill(ctx: TenantContext, journey_id: str) -> None:
    """Schedule every customer's next birthday for a journey that became active: a job
    on the journeys queue, a page of customers per message (:func:`backfill_step`)."""
    from crm import queues

    queues.send("journeys", [{"job": "birthdays", "tenant_id": ctx.tenant_id, "journey_id": journey_id,
                              "cursor": None}])  # fmt: skip


def backfill_step(ctx: TenantContext, journey_id: str, cursor: dict[str, Any] | None) -> dict[str, Any] | None:
    """One page of the tenant's customers (gsi1 ``P CUSTOMERS``, :data:`BACKFILL_PAGE` a
    Query): each one with a ``birth_date`` and no schedule yet gets one (BatchWriteItem).
    Returns the next page's cursor, None at the end (or once the journey is not an
    active birthday journey)."""
    from crm.customers import records
    from crm.storage import CustomerItem, Item

    try:
        item = store.load(ctx, journey_id)
    except Exception:  # noqa: BLE001 - deleted meanwhile: the job ends
        return None
    spec = store.definition_of(item)
    if spec.status != "active" or not isinstance(spec.trigger, BirthdayTrigger):
        return None
    tz, now = _time_zone(ctx), clock.now()
    query = CustomerItem.gsi1.query(records.list_pk(ctx), limit=BACKFILL_PAGE, page_size=BACKFILL_PAGE,
                                    last_evaluated_key=cursor)  # fmt: skip
    rows = list(query)
    wanted = []
    for profile in rows:
        born = _birth_date((profile.data or {}).get("birth_date"))
        if profile.status == "active" and born is not None:
            wanted.append((profile.customer_id, born))
    if wanted:
        have = {i.pk for i in Item.batch_get([(_pk(ctx, c), birthday_sk(journey_id)) for c, _ in wanted],
                                             consistent_read=True)}  # fmt: skip
        with JourneyRunItem.batch_write() as batch:
            for cid, born in wanted:
                if _pk(ctx, cid) not in have:
                    batch.save(schedule_birthday(ctx, cid, journey_id, spec.trigger, born, tz, now))
    return query.last_evaluated_key if len(rows) == BACKFILL_PAGE else None


# --- reading runs --------------------------------------------------------------------------------


def list_runs(ctx: TenantContext, customer_id: str, cursor: str | None, limit: int) -> Any:
    """A customer's journey runs (``GET /v1/customers/{id}/journeys``): 1 GetItem of the
    profile (404 unknown) + 1 Query of its runs, by journey and occurrence; birthday
    schedules are not runs and are left out."""
    from crm.customers import service
    from crm.errors import Invalid
    from crm.journeys.api_schemas import JourneyRun
    from crm.paging import Page, decode_cursor, encode_cursor, start_key

    customer_id = service.resolve(ctx, customer_id).customer_id
    pk = _pk(ctx, customer_id)
    after = decode_cursor(cursor, f"runs@{customer_id}")
    start = None
    if after is not None:
        if not after.startswith(RUN_SK):
            raise Invalid("cursor is malformed or belongs to a different list", field="cursor")
        start = start_key(pk=pk, sk=after)
    rows: list[JourneyRunItem] = []
    last = None
    query = JourneyRunItem.query(pk, JourneyRunItem.sk.startswith(RUN_SK), consistent_read=True,
                                 page_size=limit + 1, last_evaluated_key=start)  # fmt: skip
    more = False
    for row in query:
        if row.status == "scheduled":
            continue
        if len(rows) == limit:
            more = True
            break
        rows.append(row)
        last = row.sk
    data = []
    for row in rows:
        run = to_run(row)
        data.append(JourneyRun(
            journey_id=run.journey_id, occurrence=run.occurrence, status=run.status, step=run.step,
            due_at=run.due_at, started_at=run.started_at, ended_at=run.ended_at, reason=run.reason,
            sends=[{"step": s, "at": at, "state": state} for s, at, state in run.sent],
        ))  # fmt: skip
    return Page(data, encode_cursor(f"runs@{customer_id}", last) if more and last else None)
