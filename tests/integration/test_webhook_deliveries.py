"""Webhook deliveries (crm/webhooks/deliveries.py, functions/webhooks.py) against the
emulator and receivers on 127.0.0.1: every change delivered, signed, retried through a
receiver that fails at random, in order where asked, logged, replayable; a 410 and five
days of failures disable the endpoint."""
from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.webhook_receiver import Receiver, verify

BASE = "/v1/webhooks/endpoints"


class Flaky:
    """A receiver that fails at random: 5xx, 429 with Retry-After, an answer too slow for
    the sender's timeout, a reset connection; it verifies every request's signature and
    keeps the ids it accepted (a 2xx), in the order it accepted them."""

    def __init__(self, secret: str, seed: int, fail: float = 0.25) -> None:
        self.secret, self.rng, self.fail = secret, random.Random(seed), fail
        self.accepted: list[dict[str, Any]] = []
        self.requests = 0
        self.lock = threading.Lock()

    def __enter__(self) -> Flaky:
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                request = {"body": raw, "headers": {k.lower(): v for k, v in self.headers.items()}}
                verify(flaky.secret, request)  # a forged or unsigned request fails the test
                with flaky.lock:
                    flaky.requests += 1
                    roll = flaky.rng.random()
                if roll < flaky.fail * 0.5:
                    self._answer(503)
                elif roll < flaky.fail * 0.75:
                    self._answer(429, {"Retry-After": "0"})
                elif roll < flaky.fail * 0.85:
                    time.sleep(0.6)  # past the sender's timeout in these tests: it counts as failed
                    self._answer(200)
                elif roll < flaky.fail:
                    self.connection.shutdown(2)  # a reset, no answer
                    self.close_connection = True
                else:
                    with flaky.lock:
                        flaky.accepted.append({"id": request["headers"]["webhook-id"], "body": json.loads(raw)})
                    self._answer(200)

            def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:
                    pass  # the sender gave up waiting (the timeout case)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"


def _send(url, headers, body):
    from connectors import outbound

    return outbound.post(url, headers, body, timeout=0.3)


def _endpoint(tenant, url, types=("*",), **fields) -> dict:
    r = tenant.http.post(BASE, json={"url": url, "types": list(types), **fields})
    assert r.status_code == 201, r.text
    return r.json()


def _events(tenant, n: int, objects: int, start: int = 0) -> list[dict]:
    """``n`` customer.updated changes over ``objects`` customers, each with its version."""
    out = []
    for i in range(start, start + n):
        cid = f"cus_{i % objects:026d}"
        version = i // objects + 1
        out.append({"id": f"customer.updated:{cid}:{version}", "type": "customer.updated", "tenant_id": tenant.id,
                    "customer_id": cid, "occurred_at": "2026-12-01T00:00:00.000Z",
                    "data": {"customer_id": cid, "version": version, "changed": ["tags"]}})
    return out


def _run(tenant, send=_send, seconds: float = 240) -> None:
    """What the queue and the schedule do, in the test's process: fan out, then hand due
    deliveries back until none is left pending."""
    from crm.context import TenantContext
    from crm.storage import WebhookDeliveryItem
    from crm.webhooks import deliveries, endpoints
    from functions import webhooks

    ctx = TenantContext(tenant.id)
    for endpoint in endpoints.list_enabled(ctx):
        webhooks.handle({"type": "endpoint", "tenant_id": tenant.id, "endpoint_id": endpoint.id}, send=send)
    deadline = time.monotonic() + seconds
    pending: list = []
    while time.monotonic() < deadline:
        due = [m for m in deliveries.due(limit=500) if m["tenant_id"] == tenant.id]
        for message in due:
            webhooks.handle(message, send=send)
        if due:
            continue
        pending = [d for e in endpoints.list_enabled(ctx) for d in WebhookDeliveryItem.query(
            deliveries._pk(ctx, e.id), filter_condition=WebhookDeliveryItem.status == "pending")]
        if not pending:
            return
        time.sleep(0.1)
    raise AssertionError(f"{len(pending)} deliveries still pending, e.g. "
                         f"{[(d.seq, d.due_at, len(d.attempts)) for d in pending[:5]]}")


@pytest.fixture()
def fast_retries(monkeypatch):
    monkeypatch.setenv("RAPPORT_WEBHOOK_RETRY_SCALE", "0.00002")  # 5 s -> 0.1 ms, 24 h -> 1.7 s


def test_a_thousand_changes_through_a_flaky_receiver_arrive_once_each_and_in_order(tenant, fast_retries):
    from crm import changes

    ordered_secret = unordered_secret = None
    ordered_ep = _endpoint(tenant, "http://127.0.0.1:9/placeholder", ordered=True)
    unordered_ep = _endpoint(tenant, "http://127.0.0.1:9/placeholder")
    ordered_secret, unordered_secret = ordered_ep["secret"], unordered_ep["secret"]
    with Flaky(ordered_secret, seed=1, fail=0.1) as ordered, Flaky(unordered_secret, seed=2) as unordered:
        for ep, receiver in ((ordered_ep, ordered), (unordered_ep, unordered)):
            r = tenant.http.patch(f"{BASE}/{ep['id']}", json={"url": receiver.url},
                                  headers={"If-Match": str(ep["version"])})
            assert r.status_code == 200, r.text
        events = _events(tenant, 1000, objects=40)
        changes.append(events)
        _run(tenant)

        want = {e["id"] for e in events}
        for receiver in (ordered, unordered):
            ids = [a["id"] for a in receiver.accepted]
            assert set(ids) == want  # every change, from the receiver's de-duplicated view
            assert receiver.requests > len(want)  # and it did fail along the way
        # the ordered endpoint: each customer's versions in order (first acceptance of each)
        first: dict[str, int] = {}
        seen: dict[str, list[int]] = defaultdict(list)
        for a in ordered.accepted:
            if a["id"] not in first:
                first[a["id"]] = 1
                seen[a["body"]["object"]["id"]].append(a["body"]["data"]["version"])
        assert all(v == sorted(v) for v in seen.values()) and len(seen) == 40
        # the payload is the feed's change, as GET /v1/changes shows it
        sample = next(a["body"] for a in unordered.accepted)
        assert set(sample) == {"id", "type", "occurred_at", "committed_at", "object", "customer_id", "data"}

    # the delivery log: every delivery delivered, its attempts listed
    log = tenant.http.get(f"{BASE}/{unordered_ep['id']}/deliveries", params={"limit": 100}).json()
    assert log["data"] and all(d["status"] == "delivered" for d in log["data"])
    retried = [d for d in log["data"] if len(d["attempts"]) > 1]
    assert retried and all(a["status"] != 200 or a["error"] for a in retried[0]["attempts"][:-1])


def test_replay_resends_with_the_same_webhook_id_and_the_feed_and_log_show_it(tenant, fast_retries):
    from crm import changes

    with Receiver() as receiver:
        ep = _endpoint(tenant, receiver.url + "/hook", types=["customer.*"])
        events = _events(tenant, 5, objects=5)
        changes.append(events)
        _run(tenant)
        assert sorted(r["headers"]["webhook-id"] for r in receiver.requests) == sorted(e["id"] for e in events)
        receiver.requests.clear()
        log_before = tenant.http.get(f"{BASE}/{ep['id']}/deliveries").json()["data"]
        for _ in range(2):  # the stream replayed twice: no new change, no new delivery, nothing sent
            changes.append(events)
            _run(tenant)
        assert receiver.requests == []
        assert tenant.http.get(f"{BASE}/{ep['id']}/deliveries").json()["data"] == log_before

        r = tenant.http.post(f"{BASE}/{ep['id']}/replay", json={"event_ids": [events[0]["id"], events[3]["id"]]})
        assert r.status_code == 202 and r.json()["replayed"] == 2, r.text
        _run(tenant)
        assert sorted(x["headers"]["webhook-id"] for x in receiver.requests) == sorted([events[0]["id"], events[3]["id"]])
        verify(ep["secret"], receiver.requests[0])
        receiver.requests.clear()

        since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        r = tenant.http.post(f"{BASE}/{ep['id']}/replay", json={"since": since})
        assert r.status_code == 202 and r.json()["replayed"] == 5
        _run(tenant)
        assert len(receiver.requests) == 5
    log = tenant.http.get(f"{BASE}/{ep['id']}/deliveries").json()["data"]
    assert {d["id"]: len(d["attempts"]) for d in log}[events[0]["id"]] == 3

    for body, field in (({}, "event_ids"), ({"event_ids": ["x"], "since": since}, "event_ids"),
                        ({"since": "yesterday"}, "since"), ({"event_ids": ["x"] * 101}, "event_ids")):
        r = tenant.http.post(f"{BASE}/{ep['id']}/replay", json=body)
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)


def test_a_410_disables_at_once_and_five_days_of_failures_disable_too(tenant, raw_table, fast_retries):
    from crm import changes

    with Receiver(status=410) as gone:
        ep = _endpoint(tenant, gone.url + "/gone")
        changes.append(_events(tenant, 3, objects=3))
        _run(tenant)
        assert len(gone.requests) >= 1
    after = tenant.http.get(f"{BASE}/{ep['id']}").json()
    assert after["enabled"] is False and after["disabled_reason"] == "gone_410"

    with Receiver(status=500) as failing:
        ep2 = _endpoint(tenant, failing.url + "/failing")
        changes.append(_events(tenant, 1, objects=1, start=100))
        from crm.context import TenantContext
        from crm.webhooks import endpoints
        from functions import webhooks

        webhooks.handle({"type": "endpoint", "tenant_id": tenant.id, "endpoint_id": ep2["id"]}, send=_send)
        assert tenant.http.get(f"{BASE}/{ep2['id']}").json()["failing_since"]
        # the streak began 6 days ago: the next failure disables it
        six_days = (datetime.now(UTC) - timedelta(days=6)).isoformat().replace("+00:00", "Z")
        ctx = TenantContext(tenant.id)
        item = endpoints.load(ctx, ep2["id"])
        item.update(actions=[type(item).failing_since.set(six_days)])
        changes.append(_events(tenant, 1, objects=1, start=200))
        webhooks.handle({"type": "endpoint", "tenant_id": tenant.id, "endpoint_id": ep2["id"]}, send=_send)
    after = tenant.http.get(f"{BASE}/{ep2['id']}").json()
    assert after["enabled"] is False and after["disabled_reason"] == "failing_5_days"


def test_a_slow_endpoint_does_not_hold_up_another(tenant, fast_retries):
    """Each endpoint is its own message: the fast one's deliveries are done while the
    slow one's attempt is still waiting for its answer."""
    from crm import changes
    from functions import webhooks

    with Receiver(delay=2.0) as slow, Receiver() as fast:
        slow_ep = _endpoint(tenant, slow.url + "/slow")
        fast_ep = _endpoint(tenant, fast.url + "/fast")
        changes.append(_events(tenant, 1, objects=1))
        from crm import queues

        sent: list[dict] = []
        real = queues.send
        try:
            queues.send = lambda name, bodies, delay=0: sent.extend(bodies) or len(sent)
            webhooks.handle({"type": "changes", "tenant_id": tenant.id})
        finally:
            queues.send = real
        assert sorted(m["endpoint_id"] for m in sent) == sorted([slow_ep["id"], fast_ep["id"]])
        slow_msg = next(m for m in sent if m["endpoint_id"] == slow_ep["id"])
        fast_msg = next(m for m in sent if m["endpoint_id"] == fast_ep["id"])
        t = threading.Thread(target=webhooks.handle, args=(slow_msg,), kwargs={"send": _send_slow})
        t.start()
        webhooks.handle(fast_msg, send=_send_slow)
        assert len(fast.requests) == 1 and t.is_alive()  # the slow one still waits
        t.join()


def _send_slow(url, headers, body):
    from connectors import outbound

    return outbound.post(url, headers, body, timeout=5)


def test_through_the_running_stack_a_change_reaches_the_endpoint_signed(tenant, event_pipeline):
    """The whole path: an API write, the stream, the feed, the webhooks queue, the worker."""
    with Receiver() as receiver:
        ep = _endpoint(tenant, receiver.url + "/e2e", types=["customer.created"])
        cid = tenant.create_customer(email="hook@example.com")["id"]
        deadline = time.time() + 60
        while not receiver.requests and time.time() < deadline:
            event_pipeline.wait_idle(timeout=10)
        assert receiver.requests, "no delivery"
        request = receiver.requests[0]
        payload = verify(ep["secret"], request)
        assert payload["type"] == "customer.created" and payload["object"] == {"type": "customer", "id": cid}
        assert request["headers"]["webhook-id"] == f"customer.created:{cid}"
        page = tenant.http.get("/v1/changes", params={"types": "customer.created"}).json()
        assert payload["id"] in {c["id"] for c in page["data"]}


def test_one_tenants_endpoint_never_receives_anothers_change(tenant, other_tenant, fast_retries):
    from crm import changes

    with Receiver() as mine, Receiver() as theirs:
        _endpoint(tenant, mine.url + "/mine")
        _endpoint(other_tenant, theirs.url + "/theirs")
        events = _events(tenant, 3, objects=3)
        changes.append(events)
        _run(tenant)
        _run(other_tenant)
        assert sorted(r["headers"]["webhook-id"] for r in mine.requests) == sorted(e["id"] for e in events)
        assert theirs.requests == []
