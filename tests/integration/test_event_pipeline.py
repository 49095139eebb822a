"""The event backbone end to end on the emulator, with app.py's real handlers fed by
the local pollers: an order's payment turns into points and timeline entries without
the request waiting, and a poison message ends in the subscriber's DLQ without holding
up the rest."""
from __future__ import annotations

import json
import time

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
