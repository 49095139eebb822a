"""Each customer's metrics and memberships stay right after every change, and a time
condition flips at its instant (crm/segments/maintain.py), on the emulator with app.py's
handlers fed by the local pollers: an order makes a customer a member, a refund takes
them out, replays change nothing, the due schedule flips a lapse at its instant, an
erasure and a merge clean up, every count stays exact, and each entry and exit is on
the timeline once. Requests are counted per change (at most 2 + 1 per membership that
changes: the issue's target)."""
from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from tests.dynamo_calls import dynamodb_calls
from tests.loyalty_helpers import iso, place_order


def make_segment(ctx, sid: str, name: str, rule: dict) -> None:
    """A segment as the segments API stores it, after its build on an empty tenant: the
    SegmentItem (ready) and its rule in the tenant's catalogue (backfilled: from now on
    every customer is measured). Members come from maintenance only."""
    from crm.segments import rules
    from crm.storage import SegmentCatalogueItem, SegmentItem

    normalized = rules.parse(rule)
    now = iso(datetime.now(timezone.utc))
    SegmentItem(ctx.key("SEG", sid), "SEGMENT", segment_id=sid, name=name, rule=normalized, status="ready",
                created_at=now, updated_at=now).save()
    try:
        catalogue = SegmentCatalogueItem.get(ctx.prefix, "SEGMENTS", consistent_read=True)
    except SegmentCatalogueItem.DoesNotExist:
        catalogue = SegmentCatalogueItem(ctx.prefix, "SEGMENTS")
    catalogue.segments = {**(catalogue.segments or {}), sid: {"name": name, "rule": normalized, "v": 1}}
    catalogue.backfilled_at = catalogue.backfilled_at or now  # as after its (empty tenant's) first build
    catalogue.save()


def member_count(ctx, sid: str) -> int:
    from crm.storage import SegmentItem

    return int(SegmentItem.get(ctx.key("SEG", sid), "SEGMENT", consistent_read=True).member_count)


def members(ctx, sid: str) -> set[str]:
    from crm.storage import SegmentMemberItem

    return {m.customer_id for m in SegmentMemberItem.query(ctx.key("SEG", sid), SegmentMemberItem.sk.startswith("M#"),
                                                           consistent_read=True)}


def grid(raw_table, ctx) -> dict[str, int]:
    """The tenant's RFM grid: customers per recency x frequency cell (``c<r><f>``)."""
    item = raw_table.get_item(Key={"pk": ctx.prefix, "sk": "RFM"}, ConsistentRead=True).get("Item") or {}
    return {k: int(v) for k, v in item.items() if k.startswith("c") and int(v)}


def metrics(tenant, cid: str) -> dict | None:
    r = tenant.http.get(f"/v1/customers/{cid}")
    assert r.status_code == 200, r.text
    return r.json()["metrics"]


def timeline_types(tenant, cid: str) -> Counter:
    r = tenant.http.get(f"/v1/customers/{cid}/events", params={"limit": 100})
    assert r.status_code == 200, r.text
    return Counter(e["type"] for e in r.json()["data"])


def stored(ctx, cid: str):
    from crm.customers import records
    from crm.storage import MetricsItem

    try:
        return MetricsItem.get(records.profile_pk(ctx, cid), "METRICS", consistent_read=True)
    except MetricsItem.DoesNotExist:
        return None


def order_state(ctx, order_id: str) -> dict:
    """What an order event carries (crm/events.py): the order as stored now."""
    from crm.customers import records
    from crm.storage import OrderItem, OrderPointerItem

    cid = OrderPointerItem.get(ctx.key("O", order_id), "O", consistent_read=True).customer_id
    item = OrderItem.get(records.profile_pk(ctx, cid), "A#ORD#" + order_id, consistent_read=True)
    return {"order_id": item.order_id, "customer_id": item.customer_id, "status": item.status,
            "data": item.data, "updated_at": item.updated_at, "version": item.version}


SPENDERS = {"all": [{"field": "orders.net_spend", "op": ">=", "value": 5000}]}


def test_an_order_makes_a_member_and_a_refund_takes_them_out(tenant, event_pipeline):
    make_segment(tenant.ctx, "seg_spenders", "Spenders", SPENDERS)
    cid = tenant.create_customer(email="spender@example.com")["id"]
    other = tenant.create_customer(email="small@example.com")["id"]
    order = place_order(tenant, {"id": cid}, "sp-1", total=8000, paid_days_ago=1, channel="web",
                        category="shoes")
    place_order(tenant, {"id": other}, "sm-1", total=1000, paid_days_ago=1)
    assert event_pipeline.wait_idle(timeout=60)

    block = metrics(tenant, cid)
    assert block["orders"]["count"] == 1 and block["orders"]["net_spend"] == 8000
    assert block["orders"]["currency"] == "EUR" and block["orders"]["channels"] == ["web"]
    assert block["orders"]["categories"] == ["shoes"]
    assert [s["id"] for s in block["segments"]] == ["seg_spenders"] and block["segments"][0]["name"] == "Spenders"
    assert block["rfm"]["r"] is not None and block["ltv"]["historical"] == 8000
    assert metrics(tenant, other)["segments"] == []
    assert member_count(tenant.ctx, "seg_spenders") == 1 and members(tenant.ctx, "seg_spenders") == {cid}
    view = tenant.http.get(f"/v1/customers/{cid}/360").json()
    assert view["customer"]["metrics"] == block  # the 360 shows the same block, in its one Query

    r = tenant.http.post(f"/v1/orders/{order['id']}/refunds", json={"amount": 5000})
    assert r.status_code == 200, r.text
    assert event_pipeline.wait_idle(timeout=60)
    block = metrics(tenant, cid)
    assert block["orders"]["net_spend"] == 3000 and block["segments"] == []
    assert member_count(tenant.ctx, "seg_spenders") == 0 and members(tenant.ctx, "seg_spenders") == set()
    types = timeline_types(tenant, cid)
    assert types["segment.entered"] == 1 and types["segment.exited"] == 1
    entries = tenant.http.get(f"/v1/customers/{cid}/events", params={"limit": 100}).json()["data"]
    assert "Entered segment Spenders" in {e["summary"] for e in entries}


def test_replayed_duplicated_and_reordered_order_events_give_the_same_result(tenant):
    from crm.orders import service as orders
    from crm.orders.schemas import PaymentCreate, RefundCreate
    from crm.segments import maintain
    from functions import segments

    make_segment(tenant.ctx, "seg_spenders", "Spenders", SPENDERS)
    cid = tenant.create_customer(email="replay@example.com")["id"]
    order = place_order(tenant, {"id": cid}, "rp-1", total=9000)
    states = [order_state(tenant.ctx, order["id"])]
    orders.pay(tenant.ctx, order["id"], PaymentCreate())
    states.append(order_state(tenant.ctx, order["id"]))
    orders.refund(tenant.ctx, order["id"], RefundCreate(amount=6000))
    states.append(order_state(tenant.ctx, order["id"]))
    maintain.reconcile(tenant.ctx, cid, states)
    item = stored(tenant.ctx, cid)
    assert item.agg["net_spend"] == 3000 and item.memberships == {}
    version = item.version

    shuffled = states * 3
    random.Random(7).shuffle(shuffled)
    for state in shuffled:  # one at a time: the older ones never overwrite the newest
        assert maintain.reconcile(tenant.ctx, cid, [state])["written"] is False
    events = [{"id": f"order.x:{i}", "type": "order.paid", "tenant_id": tenant.id, "customer_id": cid,
               "occurred_at": s["data"]["placed_at"], "data": s} for i, s in enumerate(shuffled)]
    from tests.streams import sqs_event

    assert segments.handle_batch(sqs_event(events, "rapport-segments")) == {"batchItemFailures": []}
    again = stored(tenant.ctx, cid)
    assert again.version == version and again.agg == item.agg and again.memberships == {}
    assert member_count(tenant.ctx, "seg_spenders") == 0


def test_a_time_condition_flips_when_the_schedule_runs_at_its_instant(tenant, event_pipeline):
    from functions import segments

    lapsed = {"all": [{"field": "orders.last_at", "op": "older_than", "value": "P30D"}]}
    make_segment(tenant.ctx, "seg_lapsed", "Lapsed", lapsed)
    cid = tenant.create_customer(email="lapsing@example.com")["id"]
    place_order(tenant, {"id": cid}, "lp-1", total=2000, paid_days_ago=10)
    assert event_pipeline.wait_idle(timeout=60)
    item = stored(tenant.ctx, cid)
    assert item.memberships == {} and item.due_at is not None
    last = datetime.fromisoformat(item.agg["last_at"].replace("Z", "+00:00"))
    flip = last + timedelta(days=30)
    assert item.due_at <= iso(flip)  # due by the lapse at the latest (a score may move first)
    assert item.gsi2sk.startswith(item.due_at)

    segments.run_schedule(now=iso(flip - timedelta(milliseconds=5)))
    assert stored(tenant.ctx, cid).memberships == {}  # not a moment early
    at = iso(flip + timedelta(milliseconds=1))
    segments.run_schedule(now=at)
    item = stored(tenant.ctx, cid)
    assert set(item.memberships) == {"seg_lapsed"} and item.memberships["seg_lapsed"]["since"] == at
    assert member_count(tenant.ctx, "seg_lapsed") == 1
    segments.run_schedule(now=at)  # again at the same instant: nothing new
    assert member_count(tenant.ctx, "seg_lapsed") == 1
    assert event_pipeline.wait_idle(timeout=60)
    assert timeline_types(tenant, cid)["segment.entered"] == 1


def test_erasure_and_merge_leave_every_segment_with_exact_counts(tenant, event_pipeline, raw_table):
    make_segment(tenant.ctx, "seg_buyers", "Buyers", {"all": [{"field": "orders.count", "op": ">=", "value": 1}]})
    make_segment(tenant.ctx, "seg_repeat", "Repeat", {"all": [{"field": "orders.count", "op": ">=", "value": 2}]})
    erased = tenant.create_customer(email="erase-me@example.com")["id"]
    survivor = tenant.create_customer(email="survivor@example.com")["id"]
    other = tenant.create_customer(email="other@example.com")["id"]
    for cid, ext in ((erased, "er-1"), (survivor, "sv-1"), (other, "ot-1")):
        place_order(tenant, {"id": cid}, ext, total=3000, paid_days_ago=2)
    assert event_pipeline.wait_idle(timeout=60)
    assert members(tenant.ctx, "seg_buyers") == {erased, survivor, other}
    assert member_count(tenant.ctx, "seg_buyers") == 3 and member_count(tenant.ctx, "seg_repeat") == 0
    assert sum(grid(raw_table, tenant.ctx).values()) == 3  # each customer with orders in one cell

    assert tenant.http.delete(f"/v1/customers/{erased}").status_code == 200
    r = tenant.http.post(f"/v1/customers/{survivor}/merge", json={"other_id": other})
    assert r.status_code == 200, r.text
    assert event_pipeline.wait_idle(timeout=60)
    assert stored(tenant.ctx, erased) is None and stored(tenant.ctx, other) is None
    assert members(tenant.ctx, "seg_buyers") == {survivor} and member_count(tenant.ctx, "seg_buyers") == 1
    assert members(tenant.ctx, "seg_repeat") == {survivor} and member_count(tenant.ctx, "seg_repeat") == 1
    block = metrics(tenant, survivor)
    assert block["orders"]["count"] == 2 and block["orders"]["net_spend"] == 6000
    r, f = block["rfm"]["r"], block["rfm"]["f"]
    assert grid(raw_table, tenant.ctx) == {f"c{r}{f}": 1}  # the erased and the merged left the grid
    assert metrics(tenant, other)["orders"]["count"] == 2  # a merged id answers with its survivor
    entries = tenant.http.get(f"/v1/customers/{survivor}/events", params={"limit": 100}).json()["data"]
    summaries = Counter(e["summary"] for e in entries if e["type"].startswith("segment."))
    # its own entry into Buyers and the other's (moved by the merge: the other's history),
    # Repeat once; no exit: the survivor stayed in Buyers throughout
    assert summaries == {"Entered segment Buyers": 2, "Entered segment Repeat": 1}


@pytest.mark.parametrize("segments", [1, 40])
def test_a_change_costs_at_most_2_requests_plus_1_per_membership_change(tenant, segments):
    """A customer with METRICS: 1 BatchGetItem + 1 TransactWriteItems for an order that
    moves them into (then out of) every segment; an unchanged replay only reads."""
    from crm.orders import service as orders
    from crm.orders.schemas import RefundCreate
    from crm.segments import maintain

    for i in range(segments):
        make_segment(tenant.ctx, f"seg_c{i:02d}", f"Spend {i}",
                     {"all": [{"field": "orders.net_spend", "op": ">=", "value": 1000 + i}]})
    cid = tenant.create_customer(email=f"costs-{segments}@example.com")["id"]
    maintain.reconcile(tenant.ctx, cid)  # METRICS exists, as after customer.created
    order = place_order(tenant, {"id": cid}, f"cost-{segments}", total=5000, paid_days_ago=1)
    state = order_state(tenant.ctx, order["id"])
    with dynamodb_calls() as calls:
        result = maintain.reconcile(tenant.ctx, cid, [state])
    assert len(result["entered"]) == segments
    assert sum(calls.values()) <= 2 + segments
    assert calls["BatchGetItem"] == 1 and calls["TransactWriteItems"] == -(-segments // 30), calls
    orders.refund(tenant.ctx, order["id"], RefundCreate(amount=4500))
    refunded = order_state(tenant.ctx, order["id"])
    with dynamodb_calls() as calls:
        result = maintain.reconcile(tenant.ctx, cid, [refunded])
    assert len(result["exited"]) == segments and sum(calls.values()) <= 2 + segments, calls
    with dynamodb_calls() as calls:
        assert maintain.reconcile(tenant.ctx, cid, [state])["written"] is False
    assert calls == {"BatchGetItem": 1}, calls
    assert all(member_count(tenant.ctx, f"seg_c{i:02d}") == 0 for i in range(segments))


def test_a_builds_batched_write_adds_members_quietly_and_retries_a_stale_read(tenant):
    """commit_many (a segment's build): exact count, member items, no entry or exit
    events; a row read before another write (a stale gsi1 page) is re-read, not lost."""
    from crm.events import derive
    from crm.segments import maintain
    from crm.storage import SegmentCatalogueItem

    cids = [tenant.create_customer(email=f"build-{i}@example.com")["id"] for i in range(3)]
    for i, cid in enumerate(cids):
        place_order(tenant, {"id": cid}, f"bd-{i}", total=2000 * (i + 1), paid_days_ago=1)
        maintain.reconcile(tenant.ctx, cid)
    rows = [stored(tenant.ctx, cid) for cid in cids]
    # the segment appears in the catalogue; its build writes the members
    make_segment(tenant.ctx, "seg_build", "Built", {"all": [{"field": "orders.net_spend", "op": ">=", "value": 4000}]})
    catalogue = SegmentCatalogueItem.get(tenant.ctx.prefix, "SEGMENTS", consistent_read=True)
    maintain.reconcile(tenant.ctx, cids[2])  # a change meanwhile: rows[2] is now stale
    before = [stored(tenant.ctx, cid) for cid in cids]
    now = iso(datetime.now(timezone.utc))
    desired = [(row, row.agg["net_spend"] >= 4000) for row in rows]
    added = maintain.commit_many(tenant.ctx, desired, catalogue, "seg_build", now)
    assert added == 1  # cids[2] entered with its own change, cids[1] by the build
    assert members(tenant.ctx, "seg_build") == {cids[1], cids[2]} and member_count(tenant.ctx, "seg_build") == 2
    after = stored(tenant.ctx, cids[1])
    assert after.quiet == ["seg_build"] and set(after.memberships) == {"seg_build"}
    from crm.timeline import image

    assert derive(image(before[1], "metrics"), image(after, "metrics")) == []  # a build is news to no one
    assert maintain.commit_many(tenant.ctx, [(stored(tenant.ctx, c), True) for c in cids[1:]], catalogue,
                                "seg_build", now) == 0  # done already: nothing written


def test_more_orders_than_are_kept_are_recomputed_from_the_orders(tenant, monkeypatch):
    from crm.segments import aggregate, maintain

    monkeypatch.setattr(aggregate, "MAX_ORDERS", 2)
    cid = tenant.create_customer(email="large@example.com")["id"]
    for i in range(3):
        place_order(tenant, {"id": cid}, f"lg-{i}", total=1000, paid_days_ago=1)
    maintain.reconcile(tenant.ctx, cid)
    item = stored(tenant.ctx, cid)
    assert item.large is True and item.orders == {} and item.agg["count"] == 3
    place_order(tenant, {"id": cid}, "lg-3", total=500, paid_days_ago=1)
    maintain.reconcile(tenant.ctx, cid)  # no order state given: the orders themselves count
    item = stored(tenant.ctx, cid)
    assert item.agg["count"] == 4 and item.agg["net_spend"] == 3500


def test_a_deleted_segments_membership_goes_quietly_at_the_next_change(tenant):
    from crm.segments import maintain
    from crm.storage import SegmentCatalogueItem, SegmentItem

    make_segment(tenant.ctx, "seg_gone", "Gone soon", {"all": [{"field": "orders.count", "op": ">=", "value": 0}]})
    cid = tenant.create_customer(email="gone@example.com")["id"]
    assert maintain.reconcile(tenant.ctx, cid)["entered"] == ["seg_gone"]
    SegmentItem.get(tenant.ctx.key("SEG", "seg_gone"), "SEGMENT").delete()
    catalogue = SegmentCatalogueItem.get(tenant.ctx.prefix, "SEGMENTS", consistent_read=True)
    catalogue.segments = {}
    catalogue.save()
    assert maintain.reconcile(tenant.ctx, cid)["exited"] == []  # no exit event for a deleted segment
    assert stored(tenant.ctx, cid).memberships == {} and members(tenant.ctx, "seg_gone") == set()
    assert timeline_types(tenant, cid)["segment.exited"] == 0


def test_concurrent_changes_of_many_customers_keep_the_count_exact(tenant):
    """Every member's transaction ADDs to the same count and RFM grid: concurrent ones
    conflict, re-read and retry, and none is lost or counted twice."""
    from concurrent.futures import ThreadPoolExecutor

    from crm.segments import maintain

    make_segment(tenant.ctx, "seg_all", "Everyone", {"all": [{"field": "orders.count", "op": ">=", "value": 0}]})
    cids = [tenant.create_customer(email=f"many-{i}@example.com")["id"] for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda cid: maintain.reconcile(tenant.ctx, cid), cids * 2))
    assert sorted(c for r in results for c in r["entered"]) == ["seg_all"] * 12  # each entered once
    assert member_count(tenant.ctx, "seg_all") == 12 and members(tenant.ctx, "seg_all") == set(cids)


def test_the_schedule_skips_a_suspended_tenant_and_stops_when_short_of_time(tenant):
    """A suspended tenant's customers stay due and flip once it is active again; an
    invocation about to time out leaves the rest due for the next run."""
    from crm import tenants
    from crm.segments import maintain
    from functions import segments
    from functions.idempotency import LocalContext

    make_segment(tenant.ctx, "seg_quiet", "Quiet", {"all": [{"field": "orders.last_at", "op": "older_than", "value": "P5D"}]})
    cid = tenant.create_customer(email="suspended-seg@example.com")["id"]
    place_order(tenant, {"id": cid}, "sus-1", total=1000, paid_days_ago=1)
    maintain.reconcile(tenant.ctx, cid)
    last = datetime.fromisoformat(stored(tenant.ctx, cid).agg["last_at"].replace("Z", "+00:00"))
    at = iso(last + timedelta(days=5, seconds=1))
    tenants.set_status(tenant.ctx, "suspended")
    try:
        ran = segments.run_schedule(now=at)
        assert ran.get("skipped", 0) >= 1 and stored(tenant.ctx, cid).memberships == {}
    finally:
        tenants.set_status(tenant.ctx, "active")
    short = segments.run_schedule(now=at, lambda_context=LocalContext(remaining_ms=1_000))
    assert short["stopped_early"] == 1 and stored(tenant.ctx, cid).memberships == {}
    segments.run_schedule(now=at)
    assert set(stored(tenant.ctx, cid).memberships) == {"seg_quiet"}


def test_a_timeline_page_still_finds_the_next_one_with_metrics_in_the_range(tenant, deliver):
    """PROFILE, ORDERS, METRICS and LOYALTY all sort above the entries: the first page of
    the timeline reads past all four and still knows there is more."""
    from crm.segments import maintain
    from tests.integration.test_loyalty_360 import PROGRAM

    assert tenant.http.put("/v1/loyalty/program", json=PROGRAM).status_code == 201
    cid = tenant.create_customer(email="pages@example.com")["id"]
    place_order(tenant, {"id": cid}, "pg-1", total=12000, paid_days_ago=3)
    place_order(tenant, {"id": cid}, "pg-2", total=3000, paid_days_ago=2)
    deliver()
    maintain.reconcile(tenant.ctx, cid)
    everything = tenant.http.get(f"/v1/customers/{cid}/events", params={"limit": 100}).json()["data"]
    assert len(everything) >= 4 and stored(tenant.ctx, cid) is not None
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = tenant.http.get(f"/v1/customers/{cid}/events", params=params).json()
        seen += page["data"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert [e["id"] for e in seen] == [e["id"] for e in everything]
    for i in range(20):  # the 360 view still shows its 20 newest entries
        assert tenant.http.post(f"/v1/customers/{cid}/events", json={"type": "note.added",
                                                                     "summary": f"n{i}"}).status_code == 201
    view = tenant.http.get(f"/v1/customers/{cid}/360").json()
    assert len(view["timeline"]) == 20 and view["customer"]["metrics"] and view["loyalty"]
