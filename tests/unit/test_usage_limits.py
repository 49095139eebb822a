"""Pure parts of the usage counters, limits and rate limiter: the dispatcher's count of a
stream record, the 402's fields, a lone container's bucket and headers, meter windows."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crm.billing import meter, plans
from crm.billing.limits import refusal
from crm.billing.ratelimit import Limiter
from functions.dispatch import customer_counts


def _profile(status: str, tenant: str = "tabc", created: str = "2026-12-01T10:00:00Z") -> dict:
    return {"pk": {"S": f"T#{tenant}#C#cus_1"}, "sk": {"S": "PROFILE"}, "kind": {"S": "customer"},
            "status": {"S": status}, "created_at": {"S": created}}


@pytest.mark.parametrize(("old", "new", "expected"), [
    (None, "active", ("tabc", 1, "2026-12")),
    ("active", "active", ("tabc", 0, None)),
    ("active", "erased", ("tabc", -1, None)),
    ("active", "merging", ("tabc", 0, None)),
    ("merging", "merged", ("tabc", -1, None)),
    ("active", None, ("tabc", -1, None)),
])
def test_a_profile_change_moves_the_live_count(old, new, expected) -> None:
    record = {"dynamodb": {"OldImage": _profile(old) if old else None, "NewImage": _profile(new) if new else None}}
    assert customer_counts(record) == expected


def test_other_items_do_not_count() -> None:
    order = {"pk": {"S": "T#tabc#C#cus_1"}, "sk": {"S": "A#ORD#o1"}, "kind": {"S": "order"}}
    assert customer_counts({"dynamodb": {"NewImage": order}}) is None


def test_a_refusal_names_the_limit_usage_plan_and_the_plan_that_allows_more() -> None:
    err = refusal("customers", 500, plans.get("free"), 501, field="records[3]")
    assert err.extra == {"code": "plan_limit", "limit": "customers", "allowed": 500, "usage": 500,
                         "plan": "free", "upgrade_to": "starter"}
    assert err.field == "records[3]"
    assert refusal("customers", 20_000, plans.get("free"), 20_001).extra["upgrade_to"] == "growth"
    assert refusal("connections", 10, plans.get("growth"), 11).extra["upgrade_to"] == "scale"


def test_a_lone_container_admits_a_burst_then_the_rate() -> None:
    clock = [0.0]
    lim = Limiter(store=lambda *a: {}, wall=lambda: clock[0], monotonic=lambda: clock[0])
    got = [lim.admit("t", 10) for _ in range(12)]
    assert [d.allowed for d in got] == [True] * 10 + [False] * 2
    assert got[0].headers() == {"RateLimit-Limit": "10", "RateLimit-Remaining": "9", "RateLimit-Reset": "1",
                                "RateLimit-Policy": "10;w=1"}
    assert got[-1].headers()["Retry-After"] == "1" and got[-1].remaining == 0
    clock[0] = 0.5
    assert sum(lim.admit("t", 10).allowed for _ in range(10)) == 5
    assert lim.admit("other", 10).allowed  # per tenant


def test_meter_identifiers_are_per_tenant_meter_and_hour() -> None:
    at = datetime(2026, 12, 1, 5, 59, 59, tzinfo=UTC)
    assert meter.window(at) == "2026-12-01T05"
    assert meter.identifier("tabc", "rapport_customers", meter.window(at)) == "tabc:rapport_customers:2026-12-01T05"


def test_a_feature_outside_the_plan_is_a_402_naming_the_plan_that_has_it(monkeypatch) -> None:
    from crm.billing.limits import require_feature
    from crm.context import PlanState, TenantContext
    from crm.errors import PaymentRequired
    from crm.storage import BillingItem

    fresh_reads = []

    def no_billing_item(*args, **kwargs):  # the fresh read before refusing: still free
        fresh_reads.append(kwargs.get("consistent_read"))
        raise BillingItem.DoesNotExist()

    monkeypatch.setattr(BillingItem, "get", no_billing_item)

    growth = TenantContext("tabcdefghijkl", key_id="k1", billing=PlanState("growth", "active"))
    require_feature(growth, "journeys")
    with pytest.raises(PaymentRequired) as caught:
        require_feature(TenantContext("tabcdefghijkl", key_id="k1"), "journeys")
    assert caught.value.extra == {"code": "feature_not_in_plan", "feature": "journeys", "plan": "free",
                                  "upgrade_to": "growth"}
    assert fresh_reads == [True]  # refused only after reading the plan afresh (a cached key may predate an upgrade)


def test_a_plan_change_keeps_the_pending_count() -> None:
    sent = []
    clock = [0.0]
    lim = Limiter(store=lambda t, adds, *a: sent.append(adds) or {}, wall=lambda: 100.0, monotonic=lambda: clock[0],
                  flush_every=5)
    for _ in range(3):
        lim.admit("t", 10)
    for _ in range(2):
        lim.admit("t", 50)  # upgraded mid-way
    assert [sum(v for k, v in adds.items() if k.endswith("api_calls")) for adds in sent] == [5]
    assert lim.admit("t", 50).limit == 50


def test_past_due_refuses_writes_but_not_reads_nor_the_billing_routes(monkeypatch) -> None:
    from api.http import Operation, _past_due
    from crm.billing import limits
    from crm.context import PlanState, TenantContext
    from crm.errors import PaymentRequired

    stored: dict[str, PlanState] = {}  # what a refusal reads afresh (the table, in the service)
    monkeypatch.setattr(limits, "state_now", lambda ctx: stored.get(ctx.tenant_id, ctx.billing))

    def op(method: str, path: str) -> Operation:
        return Operation(path, method, "x", "x", "customers:write", None, None, {200: None}, (), "t", False, False, 1)

    late = TenantContext("tabcdefghijkl", key_id="k1",
                         billing=PlanState("starter", "past_due", "2020-01-01T00:00:00.000Z"))
    with pytest.raises(PaymentRequired) as caught:
        _past_due(op("POST", "/v1/customers"), late)
    assert caught.value.extra["code"] == "payment_required"
    _past_due(op("GET", "/v1/customers"), late)
    _past_due(op("POST", "/v1/billing/checkout"), late)
    _past_due(op("POST", "/v1/billing/portal"), late)
    in_grace = TenantContext("tabcdefghijkl", key_id="k1",
                             billing=PlanState("starter", "past_due", "2999-01-01T00:00:00.000Z"))
    _past_due(op("DELETE", "/v1/customers/{customer_id}"), in_grace)
    stored[late.tenant_id] = PlanState("starter", "active")  # paid since the key was cached
    _past_due(op("POST", "/v1/customers"), late)
