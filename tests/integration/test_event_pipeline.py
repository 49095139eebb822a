"""The event backbone end to end on the emulator, with app.py's real handlers fed by
the local pollers: an order's payment turns into points and timeline entries without
the request waiting, and a poison message ends in the subscriber's DLQ without holding
up the rest."""
from __future__ import annotations

import json
import time
from collections import Counter

from tests.integration.test_loyalty_api import PROGRAM, loyalty, place


def _dlq_messages(sqs, url: str) -> list[dict]:
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                               WaitTimeSeconds=0).get("Messages", [])


def test_an_order_becomes_points_and_timeline_through_the_pollers(tenant, event_pipeline):
    assert tenant.http.put("/v1/loyalty/program", json=PROGRAM).status_code == 201
    cid = tenant.create_customer(email="pipeline@example.com")["id"]
    order = place(tenant, cid, "p1", total=10000, paid_days_ago=1)
    assert event_pipeline.wait_idle(timeout=60)
    assert loyalty(tenant, cid)["pending"] == 150
    types = {e["type"] for e in tenant.http.get(f"/v1/customers/{cid}/events").json()["data"]}
    assert {"order.placed", "order.paid", "points.earned"} <= types
    tenant.http.post(f"/v1/orders/{order['id']}/refunds", json={"amount": 10000})
    assert event_pipeline.wait_idle(timeout=60)
    assert loyalty(tenant, cid)["pending"] == 0


def test_a_poison_message_lands_in_the_dlq_and_the_others_go_through(tenant, event_pipeline, dev_stack):
    from rapport.pollers import plumbing_client

    sqs = plumbing_client("sqs")
    dlq = dev_stack.queues.dead_letter["loyalty"]
    poison = {"id": "order.paid:ord_poison", "type": "order.paid", "tenant_id": "not-a-tenant",
              "customer_id": "cus_x", "occurred_at": "2026-01-01T00:00:00.000Z", "data": {}}
    sqs.send_message(QueueUrl=dev_stack.queues.queues["loyalty"], MessageBody=json.dumps(poison))
    assert tenant.http.put("/v1/loyalty/program", json=PROGRAM).status_code == 201
    cid = tenant.create_customer(email="alongside@example.com")["id"]
    place(tenant, cid, "p2", total=10000, paid_days_ago=1)
    deadline = time.monotonic() + 90
    while not (found := [m for m in _dlq_messages(sqs, dlq) if json.loads(m["Body"])["id"] == poison["id"]]):
        assert time.monotonic() < deadline, "the poison message never reached the DLQ"
        time.sleep(0.5)
    assert loyalty(tenant, cid)["pending"] == 150  # the good event was not held up
    for m in found:
        sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])


def _order_state(ctx, order_id: str) -> dict:
    """What an order event carries (crm/events.py): the order as stored now."""
    from crm.customers import records
    from crm.storage import OrderItem, OrderPointerItem

    cid = OrderPointerItem.get(ctx.key("O", order_id), "O", consistent_read=True).customer_id
    item = OrderItem.get(records.profile_pk(ctx, cid), "A#ORD#" + order_id, consistent_read=True)
    return {"order_id": item.order_id, "customer_id": item.customer_id, "status": item.status,
            "data": item.data}


def test_entries_written_with_their_facts_follow_a_merge_and_are_never_doubled(tenant, raw_table,
                                                                              monkeypatch):
    """The timeline entries the facts' transactions write (crm/timeline.py) move with a
    merge, and a fact recorded while the merge runs, after the timeline was moved (the
    other's points, reversed before the books are combined), goes straight to the
    survivor's timeline. A customers:read key sees them all, once each."""
    from crm import merge
    from crm.customers import records
    from crm.loyalty import service as loyalty_service
    from crm.orders import service as orders
    from crm.orders.schemas import FulfilmentCreate, RefundCreate
    from crm.storage import CustomerItem
    from tests.conftest import partition_items

    assert tenant.http.put("/v1/loyalty/program", json=PROGRAM).status_code == 201
    survivor = tenant.create_customer(email="stays@example.com")["id"]
    other = tenant.create_customer(email="goes@example.com")["id"]
    order = place(tenant, other, "mv-1", total=5000, paid_days_ago=1)  # placed, paid before
    assert loyalty_service.apply_order(tenant.ctx, _order_state(tenant.ctx, order["id"])) > 0
    pair = [CustomerItem.get(records.profile_pk(tenant.ctx, c), records.PROFILE, consistent_read=True)
            for c in (survivor, other)]
    assert merge._mark(tenant.ctx, *pair)  # the merge has started: the other is `merging`
    orders.fulfill(tenant.ctx, order["id"], FulfilmentCreate())  # a move while it runs
    combine = loyalty_service.combine

    def refund_first(ctx, survivor_id, other_id, now):
        # timeline and orders are moved; the other's book is still open: its points are
        # reversed in its own book, their entry goes on the survivor's timeline
        orders.refund(ctx, order["id"], RefundCreate(amount=1000))
        assert loyalty_service.apply_order(ctx, _order_state(ctx, order["id"])) > 0
        return combine(ctx, survivor_id, other_id, now)

    monkeypatch.setattr(loyalty_service, "combine", refund_first)
    merge.merge(tenant.ctx, survivor, other)  # resumed and finished

    key = tenant.key_with("customers:read")
    page = tenant.http.get(f"/v1/customers/{survivor}/events", params={"limit": 50},
                           headers={"Authorization": f"Bearer {key}"}).json()["data"]
    types = Counter(e["type"] for e in page)
    assert {t: n for t, n in types.items() if t.startswith(("order.", "points."))} == {
        "order.placed": 1, "order.paid": 1, "order.fulfilled": 1, "order.refunded": 1,
        "points.earned": 1, "points.reversed": 1}, types
    assert types["customer.merged"] == 1
    left = [i for i in partition_items(raw_table, tenant)
            if i["pk"].endswith(f"C#{other}") and i["sk"].startswith("EV#")]
    assert left == []
