"""A backfill that pauses right after a stream's last page (the invocation ran short of
time) must not start that stream again from the beginning when it resumes (issue 9:
2,699 records read for 1,500)."""
from __future__ import annotations

from tests.fakes.shopify import FakeShopify
from tests.plan_helpers import set_plan


def test_a_backfill_paused_after_its_last_page_does_not_start_again(tenant):
    from connectors import connections, runner

    set_plan(tenant, "starter")  # 600 customers: more than free's 500

    with FakeShopify() as shop:
        shop.seed(customers=600, orders=0)
        r = tenant.http.post("/v1/connections", json={
            "connector": "shopify", "name": "paused shop",
            "config": {"shop_url": shop.url, "access_token": shop.token}})
        cid = r.json()["id"]
        run_id = connections.start_run(tenant.ctx, cid, "backfill", "cli").id
        short = {"now": False}

        def progress(stream, counts):
            # the customers' last page (600 = 250 + 250 + 100): the invocation runs short now
            short["now"] = stream == "customers" and counts["pages"] == 3

        outcomes = []
        for _ in range(5):
            outcome = runner.execute(tenant.ctx, cid, run_id, progress=progress,
                                     time_left=lambda: 0.0 if short["now"] else float("inf"),
                                     client_options={"sleep": lambda s: None})
            outcomes.append(outcome.status)
            short["now"] = False
            if outcome.status != "paused":
                break
        assert outcomes == ["paused", "succeeded"]
        run = tenant.http.get(f"/v1/connections/{cid}/runs/{run_id}").json()
        customers = run["streams"]["customers"]
        assert (customers["read"], customers["pages"], customers["created"]) == (600, 3, 600), customers
        assert run["invocations"] == 2
