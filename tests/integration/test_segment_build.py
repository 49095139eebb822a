"""A segment's background build (crm/segments/build.py) and the RFM cut points
(crm/segments/cuts.py) over a tenant of a few hundred customers, created before any
segment existed (so the first build backfills their METRICS).

The steps are driven here one page at a time, as successive Lambda invocations would be
(a Lambda context whose time runs out after one page): the progress between steps is
what ``GET /v1/segments/{id}`` shows, and a step can be made to crash at a chosen point.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import Tenant
from tests.plan_helpers import set_plan

pytestmark = pytest.mark.slow  # a minute: 300 customers, each measured once by the first build

CUSTOMERS = 300
PAGE = 40  # a step's page: 300 customers take 8 steps
NOW = "2026-06-01T12:00:00Z"


class OnePage:
    """A Lambda context with time for exactly one page per step."""

    def __init__(self) -> None:
        self.calls = 0

    def get_remaining_time_in_millis(self) -> int:
        self.calls += 1
        return 60_000 if self.calls == 1 else 0


@pytest.fixture(scope="module")
def shop(api_url: str):
    """300 customers: every 3rd tagged ``gold``; every 5th with orders (1 to 4 of them),
    made in-process (the build reads the table, not how it was written)."""
    from crm.customers import service
    from crm.customers.schemas import CustomerCreate
    from crm.orders import service as orders
    from crm.orders.schemas import OrderCreate

    tenant = Tenant(api_url, "Segment builds")
    set_plan(tenant, "starter")
    people: dict[str, dict] = {}
    for n in range(CUSTOMERS):
        tags = ["gold"] if n % 3 == 0 else ["plain"]
        customer = service.create(tenant.ctx, CustomerCreate.model_validate({"email": f"b{n}@example.com", "tags": tags}))
        count = 1 + n % 4 if n % 5 == 0 else 0
        for k in range(count):
            price = 1000 * (1 + (n * 7 + k) % 13)
            orders.create(tenant.ctx, OrderCreate.model_validate({
                "customer": {"id": customer.id}, "source": "shop", "external_id": f"o{n}-{k}",
                "channel": "web", "currency": "EUR", "placed_at": f"2026-0{1 + (n + k) % 5}-1{k}T10:00:00Z",
                "lines": [{"sku": "S", "name": "Thing", "category": "home", "quantity": 1, "unit_price": price}],
                "discount": 0, "shipping": 0, "tax": 0, "total": price}))
        people[customer.id] = {"gold": n % 3 == 0, "orders": count}
    tenant.people = people
    return tenant


@pytest.fixture(autouse=True)
def small_pages(monkeypatch):
    from crm.segments import build

    monkeypatch.setattr(build, "PAGE", PAGE)
    monkeypatch.setattr(build, "DROP_PAGE", 25)


def define(tenant: Tenant, segment_id: str, rule: dict, version: int = 1) -> None:
    """Save (or edit) a segment as the API does (SegmentItem + catalogue entry), then
    start its build."""
    from crm import clock
    from crm.segments import build, rules
    from crm.storage import SegmentCatalogueItem, SegmentItem

    ctx, now = tenant.ctx, clock.now_iso()
    parsed = rules.parse(rule)
    pk = build.segment_pk(ctx, segment_id)
    try:
        item = SegmentItem.get(pk, "SEGMENT", consistent_read=True)
        item.update(actions=[SegmentItem.rule.set(parsed), SegmentItem.rule_version.set(version),
                             SegmentItem.status.set("building")])
    except SegmentItem.DoesNotExist:
        SegmentItem(pk, "SEGMENT", segment_id=segment_id, name=segment_id, rule=parsed, rule_version=version,
                    created_at=now, updated_at=now, gsi1pk=ctx.key("SEGMENTS"), gsi1sk=segment_id).save()
    try:
        catalogue = SegmentCatalogueItem.get(ctx.prefix, "SEGMENTS", consistent_read=True)
        segments = dict(catalogue.segments or {})
        segments[segment_id] = {"name": segment_id, "rule": parsed, "v": version}
        catalogue.update(actions=[SegmentCatalogueItem.segments.set(segments)])
    except SegmentCatalogueItem.DoesNotExist:
        SegmentCatalogueItem(ctx.prefix, "SEGMENTS",
                             segments={segment_id: {"name": segment_id, "rule": parsed, "v": version}}).save()
    build.start(ctx, segment_id, version)


def remove(tenant: Tenant, segment_id: str) -> None:
    """Delete a segment as the API does, then queue the drop of its members."""
    from crm.segments import build
    from crm.storage import SegmentCatalogueItem, SegmentItem

    SegmentItem.get(build.segment_pk(tenant.ctx, segment_id), "SEGMENT").delete()
    catalogue = SegmentCatalogueItem.get(tenant.ctx.prefix, "SEGMENTS", consistent_read=True)
    catalogue.update(actions=[SegmentCatalogueItem.segments.set(
        {k: v for k, v in catalogue.segments.items() if k != segment_id})])
    build.drop(tenant.ctx, segment_id)


def state(tenant: Tenant, segment_id: str):
    from crm.segments import build
    from crm.storage import SegmentItem

    return SegmentItem.get(build.segment_pk(tenant.ctx, segment_id), "SEGMENT", consistent_read=True)


def members(tenant: Tenant, segment_id: str) -> set[str]:
    from crm.segments import build
    from crm.storage import SegmentMemberItem

    pk = build.segment_pk(tenant.ctx, segment_id)
    return {m.customer_id for m in SegmentMemberItem.query(pk, SegmentMemberItem.sk.startswith("M#"),
                                                           consistent_read=True)}


def metrics(tenant: Tenant) -> dict:
    from crm.storage import MetricsItem

    return {m.customer_id: m for m in MetricsItem.gsi1.query(tenant.ctx.key("METRICS"))
            if isinstance(m, MetricsItem)}


def holders(tenant: Tenant, segment_id: str) -> set[str]:
    """Customers whose METRICS say they are members (the other side of the member items)."""
    return {cid for cid, m in metrics(tenant).items() if segment_id in (m.memberships or {})}


def run_steps(tenant: Tenant, segment_id: str, version: int | None, *, drop: bool = False) -> int:
    """Every step of a build (or drop) until it asks for no next one; how many ran."""
    from crm.segments import build

    message = build.message(tenant.id, segment_id, version, drop=drop)
    steps = 0
    while message is not None:
        message = build.step(message, OnePage())
        steps += 1
        assert steps < 100, "the build does not end"
    return steps


def gold_or_repeat(people: dict) -> set[str]:
    return {cid for cid, p in people.items() if p["gold"] or p["orders"] >= 2}


GOLD_OR_REPEAT = {"any": [{"field": "tags", "op": "contains", "value": "gold"},
                          {"field": "orders.count", "op": ">=", "value": 2}]}


def test_a_build_gives_the_exact_membership_and_shows_its_progress(shop, tail):
    from crm.segments import build
    from functions.dispatch import events_of

    tail.records()  # the stream from here on

    define(shop, "seg_gold", GOLD_OR_REPEAT)
    assert state(shop, "seg_gold").status == "building"
    seen = []
    message = build.message(shop.id, "seg_gold", 1)
    while message is not None:
        message = build.step(message, OnePage())
        item = state(shop, "seg_gold")
        seen.append((item.status, item.build["percent"]))
    statuses = [s for s, _ in seen]
    assert statuses[-1] == "ready" and set(statuses[:-1]) == {"building"} and len(seen) > 2
    percents = [p for _, p in seen]
    assert percents == sorted(percents) and 0 < percents[0] < 100 and percents[-1] == 100
    expected = gold_or_repeat(shop.people)
    item = state(shop, "seg_gold")
    assert item.member_count == len(expected) == len(members(shop, "seg_gold"))
    assert members(shop, "seg_gold") == expected == holders(shop, "seg_gold")
    assert len(metrics(shop)) == CUSTOMERS  # the first build backfilled every customer's METRICS
    assert build.step(build.message(shop.id, "seg_gold", 1), OnePage()) is None  # a duplicate: nothing to do
    assert state(shop, "seg_gold").member_count == len(expected)
    events = [e for r in tail.records() for e in events_of(r)]
    assert not [e for e in events if e["type"].startswith("segment.")]  # a build is quiet: no entered/exited


def test_a_crash_after_a_checkpoint_resumes_without_counting_twice(shop, monkeypatch):
    from crm.segments import build

    define(shop, "seg_crash", GOLD_OR_REPEAT)
    real = build._checkpoint
    calls = {"n": 0}

    def crashing(ctx, segment_id, state, **kwargs):
        calls["n"] += state["phase"] == "members" and state["cursor"] is not None
        if calls["n"] == 2:  # the second page is committed, its checkpoint never written
            raise RuntimeError("the invocation died")
        return real(ctx, segment_id, state, **kwargs)

    monkeypatch.setattr(build, "_checkpoint", crashing)
    message = build.message(shop.id, "seg_crash", 1)
    with pytest.raises(RuntimeError):
        while message is not None:
            message = build.step(message, OnePage())
    assert 0 < state(shop, "seg_crash").member_count  # the pages before the crash were committed
    monkeypatch.setattr(build, "_checkpoint", real)
    run_steps(shop, "seg_crash", 1)  # the redelivered message resumes from the checkpoint
    expected = gold_or_repeat(shop.people)
    assert state(shop, "seg_crash").member_count == len(expected)
    assert members(shop, "seg_crash") == expected == holders(shop, "seg_crash")


def test_an_edit_during_a_build_supersedes_it(shop):
    from crm.segments import build

    define(shop, "seg_edit", {"all": [{"field": "tags", "op": "contains", "value": "plain"}]})
    build.step(build.message(shop.id, "seg_edit", 1), OnePage())
    build.step(build.message(shop.id, "seg_edit", 1), OnePage())
    assert members(shop, "seg_edit")  # the first pages of the old rule made members
    define(shop, "seg_edit", {"all": [{"field": "tags", "op": "contains", "value": "gold"}]}, version=2)
    before = state(shop, "seg_edit").build
    assert build.step(build.message(shop.id, "seg_edit", 1), OnePage()) is None  # the old build stops
    assert state(shop, "seg_edit").build == before
    run_steps(shop, "seg_edit", 2)
    gold = {cid for cid, p in shop.people.items() if p["gold"]}
    item = state(shop, "seg_edit")
    assert item.status == "ready" and item.build["version"] == 2
    assert members(shop, "seg_edit") == gold == holders(shop, "seg_edit") and item.member_count == len(gold)


def test_deleting_a_segment_drops_its_members(shop):
    from crm.segments import build

    define(shop, "seg_drop", GOLD_OR_REPEAT)
    run_steps(shop, "seg_drop", 1)
    assert len(members(shop, "seg_drop")) > 25  # more than one batch
    assert run_steps(shop, "seg_drop", None, drop=True) == 1  # a stale drop: the segment exists
    assert members(shop, "seg_drop")
    remove(shop, "seg_drop")
    assert run_steps(shop, "seg_drop", None, drop=True) > 1  # one batch per step
    assert members(shop, "seg_drop") == set()
    assert build.step(build.message(shop.id, "seg_drop", 1), OnePage()) is None  # a deleted segment's build stops


def test_recomputed_cut_points_move_the_scores(shop):
    from crm.segments import cuts, maintain, rfm
    from crm.storage import SegmentCatalogueItem

    catalogue = SegmentCatalogueItem.get(shop.ctx.prefix, "SEGMENTS", consistent_read=True)
    # cut points nobody reaches: every buyer scores 1 on frequency and monetary
    skewed = {"r": [1, 2, 3, 4], "f": [100, 200, 300, 400], "m": [10**9, 2 * 10**9, 3 * 10**9, 4 * 10**9]}
    catalogue.update(actions=[SegmentCatalogueItem.cuts.set(skewed), SegmentCatalogueItem.vip_threshold.set(10**12)])
    for cid in shop.people:
        maintain.reconcile(shop.ctx, cid, now=NOW)
    before = {cid: dict(m.scores) for cid, m in metrics(shop).items()}
    assert {s["f"] for s in before.values() if s.get("f")} == {1}

    report = cuts.recompute(shop.ctx, NOW)

    catalogue = SegmentCatalogueItem.get(shop.ctx.prefix, "SEGMENTS", consistent_read=True)
    assert catalogue.cuts_at == NOW and catalogue.cuts != skewed
    assert all(len(catalogue.cuts[k]) == 4 for k in ("r", "f", "m"))
    assert catalogue.vip_threshold is not None and catalogue.vip_threshold < 10**12
    after = metrics(shop)
    for m in after.values():  # every customer scored under the new figures
        fresh = rfm.score_all(m.agg, catalogue.cuts, catalogue.vip_threshold, NOW)
        assert {k: m.scores.get(k) for k in ("r", "f", "m", "vip")} == {k: fresh[k] for k in ("r", "f", "m", "vip")}
    moved = {cid for cid, m in after.items()
             if any(m.scores.get(k) != before[cid].get(k) for k in ("r", "f", "m", "vip"))}
    assert moved and report["rescored"] == len(moved)
    assert any(m.scores.get("vip") for m in after.values())  # the top fifth by value is VIP now
    assert cuts.recompute(shop.ctx, NOW)["rescored"] == 0  # nothing moves twice


def test_the_schedule_recomputes_a_tenant_daily_and_a_new_one_at_once():
    from crm.segments import cuts
    from crm.storage import SegmentCatalogueItem

    def catalogue(cuts_at, with_cuts=True):
        return SegmentCatalogueItem("T#x#", "SEGMENTS", cuts_at=cuts_at,
                                    cuts={"r": [1, 2, 3, 4], "f": [1, 2, 3, 4], "m": [1, 2, 3, 4]} if with_cuts else None)

    assert not cuts.due(None, NOW)  # no catalogue: never an order (its currency creates one)
    assert cuts.due(catalogue(None), NOW)
    assert not cuts.due(catalogue("2026-06-01T00:00:00Z"), NOW)
    assert cuts.due(catalogue("2026-05-31T12:00:00Z"), NOW)
    assert not cuts.due(catalogue("2026-06-01T11:30:00Z", with_cuts=False), NOW)  # no orders yet: hourly
    assert cuts.due(catalogue("2026-06-01T10:30:00Z", with_cuts=False), NOW)


def test_the_daily_schedule_recomputes_each_tenant_once_a_day(shop):
    from crm.storage import SegmentCatalogueItem
    from functions import segment_jobs

    later = "2026-06-03T12:00:00Z"  # two days after the last computation (NOW)
    assert segment_jobs.run_cuts(now=later)["recomputed"] >= 1
    assert SegmentCatalogueItem.get(shop.ctx.prefix, "SEGMENTS", consistent_read=True).cuts_at == later
    segment_jobs.run_cuts(now="2026-06-03T13:00:00Z")  # an hour later: done for the day
    assert SegmentCatalogueItem.get(shop.ctx.prefix, "SEGMENTS", consistent_read=True).cuts_at == later

def test_the_sync_queue_runs_a_build_to_the_end_one_step_per_message(shop, event_pipeline, monkeypatch):
    """build.start's message goes through app.sync_work (functions/sync.py), each step
    queues the next, and the chain ends with the segment ready."""
    from crm.segments import build

    pages = {"n": 0}

    class OnePageClock(build._Clock):
        """Time for one page per step, so every page is a message of its own."""

        def another(self) -> bool:
            first = not getattr(self, "used", False)
            self.used = True
            pages["n"] += first
            return first

    monkeypatch.setattr(build, "_Clock", OnePageClock)
    define(shop, "seg_queued", {"all": [{"field": "orders.count", "op": ">=", "value": 1}]})
    assert event_pipeline.wait_idle(timeout=120)
    item = state(shop, "seg_queued")
    buyers = {cid for cid, p in shop.people.items() if p["orders"]}
    assert item.status == "ready" and item.build["percent"] == 100
    assert members(shop, "seg_queued") == buyers and item.member_count == len(buyers)
    assert pages["n"] >= CUSTOMERS // PAGE  # a message per page: the chain went through the queue


def test_a_build_whose_message_was_lost_is_sent_on_by_the_schedule(shop, monkeypatch):
    """The API's write committed but its build's message never left (or its chain ended in
    the DLQ): the hourly schedule finds the build that stopped checkpointing and sends a
    step again, which runs it to the end from where it was."""
    from crm import clock, queues
    from crm.segments import build, cuts

    sent: list[dict] = []
    monkeypatch.setattr(queues, "send", lambda queue, bodies, delay=0: sent.extend(bodies) or len(sent))
    define(shop, "seg_lost", GOLD_OR_REPEAT)
    sent.clear()  # the start's message: lost
    assert state(shop, "seg_lost").status == "building"
    now = clock.parse(clock.now_iso())
    soon = clock.iso(now + timedelta(seconds=60))
    later = clock.iso(now + timedelta(seconds=build.STALL_SECONDS + 60))
    assert build.resume_stalled(shop.ctx, soon) == 0  # still within its time: not stalled
    assert cuts.run_all(later).get("builds_resumed", 0) >= 1
    resent = [m for m in sent if m.get("segment_id") == "seg_lost"]
    assert resent == [build.message(shop.id, "seg_lost", 1)]
    message: dict | None = resent[0]
    while message is not None:
        message = build.step(message, OnePage())
    expected = gold_or_repeat(shop.people)
    item = state(shop, "seg_lost")
    assert item.status == "ready" and item.member_count == len(expected) == len(members(shop, "seg_lost"))
    assert build.resume_stalled(shop.ctx, later) == 0  # ready: nothing to send on
