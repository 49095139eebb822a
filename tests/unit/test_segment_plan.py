"""crm/segments/plan.py: what a customer's METRICS should hold, computed without I/O."""
from __future__ import annotations

from crm.segments import plan
from crm.segments.rules import parse

NOW = "2026-06-01T00:00:00.000Z"


def order(oid: str, placed: str, total: int, currency: str = "EUR", status: str = "paid", version: int = 1,
          updated: str | None = None, refunds: list | None = None) -> dict:
    data = {"placed_at": placed, "currency": currency, "total": total, "refunds": refunds or [], "lines": []}
    if status == "cancelled":
        data["cancelled_at"] = placed
    return {"order_id": oid, "customer_id": "cus_1", "status": status, "data": data,
            "updated_at": updated or placed, "version": version}


def test_the_tenant_currency_is_the_first_counted_order_s_once_and_then_stays():
    contribs = plan.contributions({}, [order("o2", "2026-02-01T00:00:00.000Z", 100, "USD"),
                                       order("o1", "2026-01-01T00:00:00.000Z", 100, "GBP", status="cancelled"),
                                       order("o3", "2026-03-01T00:00:00.000Z", 100, "EUR")])
    assert plan.tenant_currency(None, contribs) == "USD"  # the cancelled GBP one is not counted
    assert plan.tenant_currency("EUR", contribs) == "EUR"
    assert plan.tenant_currency(None, {}) is None


def test_an_older_state_never_replaces_a_newer_one():
    paid = order("o1", "2026-01-01T00:00:00.000Z", 5000, updated="2026-01-02T00:00:00.000Z", version=2)
    refunded = order("o1", "2026-01-01T00:00:00.000Z", 5000, updated="2026-01-03T00:00:00.000Z", version=3,
                     refunds=[{"id": "r1", "amount": 4000, "refunded_at": "2026-01-03T00:00:00.000Z"}])
    newest = plan.contributions({}, [refunded])
    assert plan.contributions(newest, [paid]) == newest
    assert plan.contributions(plan.contributions({}, [paid]), [refunded]) == newest


def test_a_continuing_membership_keeps_its_since_and_takes_the_new_rule_version():
    rule = parse({"all": [{"field": "orders.count", "op": ">=", "value": 1}]})
    segments = {"seg_a": {"name": "A", "rule": rule, "v": 3}}
    old = {"seg_a": {"since": "2026-01-01T00:00:00.000Z", "v": 2, "name": "A"}}
    facts = {"orders.count": 2}
    assert plan.memberships(old, segments, facts, NOW) == {
        "seg_a": {"since": "2026-01-01T00:00:00.000Z", "v": 3, "name": "A"}}
    assert plan.memberships({}, segments, facts, NOW)["seg_a"]["since"] == NOW
    assert plan.memberships(old, segments, {"orders.count": 0}, NOW) == {}
    assert [sid for sid, _, _ in plan.changes(old, {})] == ["seg_a"]
    assert plan.changes(old, old) == []


def test_the_due_time_is_the_earliest_flip_in_the_index_s_format():
    lapse = parse({"all": [{"field": "orders.last_at", "op": "older_than", "value": "P30D"}]})
    agg = {"count": 1, "net_spend": 100, "first_at": "2026-05-20T00:00:00.000Z",
           "last_at": "2026-05-20T00:00:00.000Z", "aov": 100, "currency": "EUR"}
    facts = {"orders.last_at": "2026-05-20T00:00:00.000Z"}
    due = plan.due_at({"seg_l": {"rule": lapse}}, facts, agg, None, NOW)
    assert due is not None and due <= "2026-06-19T00:00:00.000Z" and due > NOW
    assert len(due) == len(NOW) and due.endswith("Z")
    assert plan.due_at({}, {}, {"count": 0}, None, NOW) is None
    assert plan.cell({"r": 5, "f": 1}) == "c51" and plan.cell({"r": None, "f": None}) is None
