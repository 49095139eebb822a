"""segment.entered / segment.exited, derived from a customer's METRICS images: what
journeys and webhooks will act on, and what lands on the timeline."""
from __future__ import annotations

from crm.events import derive

T = "T#t0000000000aa#"


def metrics(memberships: dict, quiet=None, updated_at="2026-03-01T00:00:00.000Z", **extra) -> dict:
    return {"kind": "metrics", "pk": T + "C#cus_1", "sk": "METRICS", "customer_id": "cus_1",
            "memberships": memberships, "quiet": quiet, "updated_at": updated_at, "version": 1, **extra}


VIP = {"since": "2026-02-01T00:00:00.000Z", "v": 1, "name": "VIPs"}
LAPSED = {"since": "2026-03-01T00:00:00.000Z", "v": 2, "name": "Lapsed"}


def test_entering_and_leaving_are_events_named_by_the_membership():
    old = metrics({"seg_vip": VIP})
    new = metrics({"seg_lapsed": LAPSED})
    events = {e["type"]: e for e in derive(old, new)}
    entered, exited = events["segment.entered"], events["segment.exited"]
    assert entered["id"] == "segment.entered:cus_1:seg_lapsed:2026-03-01T00:00:00.000Z"
    assert entered["occurred_at"] == LAPSED["since"] and entered["tenant_id"] == "t0000000000aa"
    assert entered["data"] == {"customer_id": "cus_1", "segment_id": "seg_lapsed", "name": "Lapsed"}
    # an exit is named by the membership it ends (its since), so entering again later is new
    assert exited["id"] == "segment.exited:cus_1:seg_vip:2026-02-01T00:00:00.000Z"
    assert exited["occurred_at"] == "2026-03-01T00:00:00.000Z"
    assert exited["data"] == {"customer_id": "cus_1", "segment_id": "seg_vip", "name": "VIPs"}
    assert derive(new, new) == []  # the same write replayed: nothing new


def test_a_first_metrics_item_enters_its_segments_and_a_deleted_one_leaves_them():
    [e] = derive(None, metrics({"seg_vip": VIP}))
    assert e["type"] == "segment.entered" and e["data"]["segment_id"] == "seg_vip"
    [e] = derive(metrics({"seg_vip": VIP}), None)  # erased or merged: METRICS deleted
    assert e["type"] == "segment.exited" and e["id"].endswith(":seg_vip:" + VIP["since"])


def test_a_new_rule_version_or_name_of_a_kept_membership_is_no_event():
    old = metrics({"seg_vip": VIP})
    new = metrics({"seg_vip": {**VIP, "v": 2, "name": "Top customers"}})
    assert derive(old, new) == []


def test_a_builds_quiet_changes_are_no_events_but_the_others_in_the_write_are():
    old = metrics({"seg_vip": VIP})
    new = metrics({"seg_lapsed": LAPSED}, quiet=["seg_lapsed"])
    [e] = derive(old, new)
    assert e["type"] == "segment.exited" and e["data"]["segment_id"] == "seg_vip"
    assert derive(None, metrics({"seg_vip": VIP}, quiet=["seg_vip"])) == []


def test_segment_events_have_timeline_entries_and_reach_only_the_journeys_queue():
    """Never the segments subscriber (its own writes' news); journeys, whose
    ``segment.entered`` trigger starts runs."""
    from crm import timeline
    from crm.context import TenantContext
    from functions.dispatch import ROUTES

    assert {"segment.entered", "segment.exited"} <= timeline.TYPES
    assert not any({"segment.entered", "segment.exited"} & types for name, types in ROUTES.items()
                   if name != "journeys")
    assert {"segment.entered", "segment.exited"} <= ROUTES["journeys"]
    ctx = TenantContext("t0000000000aa")
    entries = timeline.of_change(ctx, "cus_1", metrics({"seg_vip": VIP}), metrics({"seg_lapsed": LAPSED}))
    summaries = sorted(e.data["summary"] for e in entries)
    assert summaries == ["Entered segment Lapsed", "Left segment VIPs"]
    again = timeline.of_change(ctx, "cus_1", metrics({"seg_vip": VIP}), metrics({"seg_lapsed": LAPSED}))
    assert sorted(e.sk for e in again) == sorted(e.sk for e in entries)  # a replay writes the same entries


def test_order_events_carry_the_items_time_and_version_for_the_newest_state_to_win():
    order = {"kind": "order", "pk": T + "C#cus_1", "sk": "A#ORD#ord_1", "order_id": "ord_1",
             "customer_id": "cus_1", "status": "placed", "updated_at": "2026-01-01T00:00:00.000Z",
             "version": 3, "data": {"placed_at": "2026-01-01T00:00:00.000Z", "refunds": [], "total": 1000,
                                    "currency": "EUR"}}
    [e] = derive(None, order)
    assert (e["data"]["updated_at"], e["data"]["version"]) == ("2026-01-01T00:00:00.000Z", 3)


def test_the_segments_subscriber_groups_a_batch_per_customer():
    from functions.segments import group

    paid = {"type": "order.paid", "tenant_id": "t1", "customer_id": "cus_1", "data": {"order_id": "o1"}}
    refunded = {"type": "order.refunded", "tenant_id": "t1", "customer_id": "cus_1", "data": {"order_id": "o1"}}
    updated = {"type": "customer.updated", "tenant_id": "t1", "customer_id": "cus_2", "data": {}}
    merged = {"type": "customer.merged", "tenant_id": "t1", "customer_id": "cus_3",
              "data": {"customer_id": "cus_3", "merged_into": "cus_2"}}
    groups = group([paid, updated, refunded, merged, paid])
    assert groups[("t1", "cus_1")] == {"orders": [paid["data"], refunded["data"], paid["data"]],
                                       "merged_into": None}
    assert groups[("t1", "cus_2")] == {"orders": [], "merged_into": None}
    assert groups[("t1", "cus_3")]["merged_into"] == "cus_2"
