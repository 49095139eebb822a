"""End to end: `rapport dev` as a subprocess on a free port, driven with httpx as a client."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e
RAPPORT = str(Path(sys.executable).with_name("rapport"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAPPORT_"))}
    return env


class _PoliteTransport(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(30):
            response = super().handle_request(request)
            if response.status_code != 429:
                return response
            response.read()
            response.close()
            time.sleep(float(response.headers.get("Retry-After", "1")))
        return response


class DevProcess:
    def __init__(self, *args: str, sigint_ignored: bool = False) -> None:
        self.port = _free_port()
        # a shell's background job starts with SIGINT ignored; Ctrl-C must still work
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
        self.proc = subprocess.Popen([RAPPORT, "dev", "--port", str(self.port), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=_env(), preexec_fn=ignore)
        self.lines: list[str] = []
        self.info: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while "Rapport API" not in self.info or ("--no-seed" not in args and "Demo API key" not in self.info):
            line = self.proc.stdout.readline()
            assert line or self.proc.poll() is None, "rapport dev exited:\n" + "".join(self.lines)
            assert time.monotonic() < deadline, "rapport dev did not come up:\n" + "".join(self.lines)
            self.lines.append(line)
            if ": " in line:
                k, _, v = line.strip().partition(": ")
                self.info[k] = v
        self.base = self.info["Rapport API"].removesuffix("/v1")
        # from here a thread reads the output (a line per request: an unread pipe would
        # fill up and block the server)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, prefix: str, timeout: float = 240) -> str:
        """The first output line starting with ``prefix``."""
        deadline = time.monotonic() + timeout
        while True:
            seen = next((line for line in list(self.lines) if line.startswith(prefix)), None)
            if seen is not None:
                return seen
            assert self.proc.poll() is None, "rapport dev exited:\n" + "".join(self.lines)
            assert time.monotonic() < deadline, f"no {prefix!r} line:\n" + "".join(self.lines)
            time.sleep(0.1)

    def client(self, key: str) -> httpx.Client:
        """A client that waits out a 429 as Retry-After says (the demo tenant is on free: 10
        requests/s, and these tests read every demo customer's 360 in a row)."""
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {key}"}, timeout=30,
                            transport=_PoliteTransport())

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def dev():
    stack = DevProcess()
    yield stack
    stack.stop()


def test_dev_prints_the_api_url_and_a_working_demo_key(dev):
    assert dev.info["Rapport API"] == f"http://127.0.0.1:{dev.port}/v1"
    assert httpx.get(dev.base + "/v1/health").json()["status"] == "ok"
    with dev.client(dev.info["Demo API key"]) as http:
        page = http.get("/v1/customers", params={"limit": 100}).json()
        assert 45 <= len(page["data"]) <= 55
        views = [http.get(f"/v1/customers/{c['id']}/360").json() for c in page["data"][:10]]
        assert all(v["timeline"] for v in views), "the demo customers have timelines"
        assert any(v["recent_orders"] for v in views), "and orders"
        statuses = {o["status"] for o in http.get("/v1/orders", params={"limit": 100}).json()["data"]}
        assert {"placed", "paid", "fulfilled"} <= statuses


def test_dev_starts_the_stripe_double_and_prints_its_url_and_webhook_secret(dev):
    import stripe

    url, secret = dev.info["Stripe API (emulator)"], dev.info["Stripe webhook secret"]
    assert url.startswith("http://127.0.0.1:") and secret.startswith("whsec_")
    client = stripe.StripeClient("sk_test_e2e", base_addresses={"api": url}, stripe_version="2025-03-31.basil")
    prices = client.v1.prices.list(params={"lookup_keys": ["rapport_starter_monthly"]}).data
    assert [p.lookup_key for p in prices] == ["rapport_starter_monthly"]
    control = httpx.get(f"{url}/_double/").json()
    assert control["webhook_url"] == f"{dev.base}/v1/billing/stripe/webhook"
    assert secret not in json.dumps(control)
    session = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": prices[0].id, "quantity": 1}],
        "client_reference_id": "t_e2e", "success_url": "https://rapport.test/ok"})
    assert httpx.post(session.url).status_code == 303  # the double's checkout page pays it
    deadline = time.monotonic() + 30
    while not all(e["attempts"] for e in httpx.get(f"{url}/_double/events").json()["data"]):
        assert time.monotonic() < deadline, "the double's events never reached the API"
        time.sleep(0.1)
    first = httpx.get(f"{url}/_double/events").json()["data"][0]
    assert first["type"] == "checkout.session.completed"
    assert first["attempts"][0]["url"] == control["webhook_url"] and first["attempts"][0]["status"]


def test_dev_logs_a_line_per_request(dev):
    assert httpx.get(dev.base + "/v1/health?probe=e2e").status_code == 200
    line = dev.wait_for("GET /v1/health 200 ", timeout=10)
    assert line.rstrip().endswith(" ms") and "probe" not in line


def test_customer_lifecycle_as_a_client(dev):
    with dev.client(dev.info["Demo API key"]) as http:
        r = http.post("/v1/customers", json={"email": "e2e@example.com", "name": {"given": "Eve"}})
        assert r.status_code == 201
        c = r.json()
        got = http.get(f"/v1/customers/{c['id']}")
        assert got.json() == c and got.headers["etag"] == '"1"'
        ok = http.patch(f"/v1/customers/{c['id']}", json={"locale": "en-GB"}, headers={"If-Match": '"1"'})
        assert ok.status_code == 200 and ok.headers["etag"] == '"2"'
        stale = http.patch(f"/v1/customers/{c['id']}", json={"locale": "fr-FR"}, headers={"If-Match": '"1"'})
        assert stale.status_code == 412
        assert http.get(f"/v1/customers/{c['id']}").json()["locale"] == "en-GB"
        http.post(f"/v1/customers/{c['id']}/events", json={"type": "store.visit", "summary": "hello"})
        view = http.get(f"/v1/customers/{c['id']}/360").json()
        assert view["customer"]["locale"] == "en-GB"
        assert [e["summary"] for e in view["timeline"]] == ["hello"]


def test_paging_and_batch_upsert_with_a_bad_record(dev):
    with dev.client(dev.info["Demo API key"]) as http:
        records = [{"email": f"batch{i}@example.com", "tags": ["e2e-batch"]} for i in range(30)]
        records.insert(7, {"email": "broken", "tags": ["e2e-batch"]})
        body = http.post("/v1/customers/batch", json={"records": records}).json()
        assert body["created"] == 30 and body["failed"] == 1
        assert body["results"][7]["status"] == "error"
        assert body["results"][7]["error"]["errors"][0]["field"] == "email"
        ids, cursor, pages = [], None, 0
        while True:
            params = {"limit": 20, **({"cursor": cursor} if cursor else {})}
            page = http.get("/v1/customers", params=params).json()
            ids += [c["id"] for c in page["data"]]
            pages += 1
            if not (cursor := page["next_cursor"]):
                break
        assert pages >= 3 and len(ids) == len(set(ids)) and ids == sorted(ids)
        created = {r["id"] for r in body["results"] if r["status"] == "created"}
        assert created <= set(ids)


def test_tenants_create_against_the_running_stack(dev):
    out = subprocess.run([RAPPORT, "tenants", "create", "Second Shop", "--json",
                          "--endpoint-url", dev.info["AWS endpoint (emulator)"]],
                         capture_output=True, text=True, env=_env(), timeout=60, check=True)
    created = json.loads(out.stdout)
    with dev.client(created["api_key"]) as http:
        assert http.get("/v1/customers").json()["data"] == []  # a fresh tenant sees no demo data
        assert http.post("/v1/customers", json={"email": "e2e@example.com"}).status_code == 201


def test_a_port_in_use_gets_a_clear_error(dev):
    r = subprocess.run([RAPPORT, "dev", "--port", str(dev.port), "--no-seed"], capture_output=True,
                       text=True, env=_env(), timeout=60)
    assert r.returncode == 2
    assert f"port {dev.port} on 127.0.0.1 is already in use" in r.stdout + r.stderr


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "background-job"])
def test_ctrl_c_shuts_down_cleanly(sigint_ignored):
    stack = DevProcess("--no-seed", sigint_ignored=sigint_ignored)
    assert httpx.get(stack.base + "/v1/health").status_code == 200
    assert stack.stop() == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(stack.base + "/v1/health", timeout=2)


def test_an_order_placed_as_a_client_shows_in_the_360(dev):
    with dev.client(dev.info["Demo API key"]) as http:
        c = http.post("/v1/customers", json={"email": "e2e-order@example.com"}).json()
        body = {"customer": {"email": "e2e-order@example.com"}, "source": "pos", "external_id": "e2e-1",
                "channel": "store", "currency": "USD", "placed_at": "2026-06-01T12:00:00Z",
                "lines": [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": 1800}], "total": 3600}
        order = http.post("/v1/orders", json=body)
        assert order.status_code == 201
        assert http.post("/v1/orders", json=body).json()["id"] == order.json()["id"]  # a retry
        assert http.post(f"/v1/orders/{order.json()['id']}/pay", json={}).json()["status"] == "paid"
        view = http.get(f"/v1/customers/{c['id']}/360").json()
        assert [(o["id"], o["status"], o["total"]) for o in view["recent_orders"]] == \
            [(order.json()["id"], "paid", 3600)]


def test_dev_runs_the_event_pollers_and_dlq_list_reads_its_queues(dev):
    pollers = dev.info["Event pollers"]
    for part in ("rapport stream -> dispatch", "rapport-loyalty -> loyalty_events",
                 "rapport-timeline -> timeline_events", "-> loyalty_schedule"):
        assert part in pollers, pollers
    out = subprocess.run([RAPPORT, "dlq", "list", "--limit", "0",
                          "--endpoint-url", dev.info["AWS endpoint (emulator)"]],
                         capture_output=True, text=True, env={**_env(), "COLUMNS": "200"},
                         timeout=60, check=True)
    for dlq in ("rapport-loyalty-dlq", "rapport-timeline-dlq", "rapport-sync-dlq", "rapport-stream-dlq"):
        assert dlq in out.stdout, out.stdout
    down = subprocess.run([RAPPORT, "dlq", "list", "--endpoint-url", f"http://127.0.0.1:{_free_port()}"],
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert down.returncode == 2 and "cannot reach SQS" in down.stdout + down.stderr


def _until(fetch, ok, timeout: float = 120):
    """Poll ``fetch()`` until ``ok(value)``; the events are handled in the background."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"gave up waiting; last: {value}"
        time.sleep(0.2)


def test_the_demo_customers_have_points_and_tiers(dev):
    dev.wait_for("Demo events processed")
    with dev.client(dev.info["Demo API key"]) as http:
        assert http.get("/v1/loyalty/program").json()["tiers"][0]["name"] == "Bronze"
        customers = http.get("/v1/customers", params={"limit": 100}).json()["data"]
        views = [http.get(f"/v1/customers/{c['id']}/360").json() for c in customers]
        with_points = [v for v in views if v["loyalty"] and v["loyalty"]["lifetime_earned"] > 0]
        assert len(with_points) >= 10
        assert {v["loyalty"]["tier"] for v in with_points} >= {"Bronze", "Silver"}
        assert any(e["type"] == "points.earned" for v in with_points for e in v["timeline"])


def test_an_order_turns_into_points_and_a_refund_takes_them_back(dev):
    with dev.client(dev.info["Demo API key"]) as http:
        c = http.post("/v1/customers", json={"email": "e2e-points@example.com"}).json()
        body = {"customer": {"id": c["id"]}, "source": "web", "external_id": "e2e-points-1",
                "channel": "mobile", "currency": "USD", "placed_at": "2026-01-10T12:00:00Z",
                "lines": [{"sku": "HOOD", "name": "Hoodie", "quantity": 1, "unit_price": 6900}],
                "total": 6900}
        order = http.post("/v1/orders", json=body).json()
        http.post(f"/v1/orders/{order['id']}/pay", json={"paid_at": "2026-01-10T12:05:00Z"})
        # 69 USD x 1 x 2 (mobile) + 100 first-order bonus, active (the 14-day window is over)
        # the points, then (one hop later: ledger entry -> dispatcher -> timeline) the entries
        view = _until(lambda: http.get(f"/v1/customers/{c['id']}/360").json(),
                      lambda v: v["loyalty"] and v["loyalty"]["available"] == 238
                      and "points.earned" in {e["type"] for e in v["timeline"]})
        assert {"order.placed", "order.paid", "points.earned"} <= {e["type"] for e in view["timeline"]}
        r = http.post(f"/v1/orders/{order['id']}/refunds", json={"amount": 6900, "reason": "returned"})
        assert r.status_code == 200
        view = _until(lambda: http.get(f"/v1/customers/{c['id']}/360").json(),
                      lambda v: v["loyalty"]["available"] == 0)
        assert view["loyalty"]["lifetime_earned"] == 0 and view["loyalty"]["owed"] == 0
        _until(lambda: http.get(f"/v1/customers/{c['id']}/events").json()["data"],
               lambda events: any(e["type"] == "points.reversed" for e in events))
        ledger = http.get(f"/v1/customers/{c['id']}/loyalty/ledger").json()["data"]
        assert [e["type"] for e in ledger] == ["reverse", "earn"] or \
            [e["type"] for e in ledger] == ["reverse", "activate", "pending"]


def test_a_csv_import_with_the_cli_against_the_running_stack(dev, tmp_path):
    """As a user would: `rapport import` against `rapport dev` (the file goes to the local
    S3 through a presigned URL, the sync_work poller imports it); then a re-import."""
    key = dev.info["Demo API key"]
    csv = tmp_path / "people.csv"
    csv.write_text("E-mail,First name,Last name\ne2e-csv-1@example.com,Lin,Okafor\n"
                   "e2e-csv-2@example.com,Sam,Berg\nnot-an-email,Bad,Row\n")
    cmd = [RAPPORT, "import", str(csv), "--api", f"{dev.base}/v1", "--key", key]
    first = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "succeeded" in first.stdout and "Rejected records (1)" in first.stdout
    assert "row 4" in first.stdout.split("Rejected records")[1]
    with dev.client(key) as http:
        found = http.get("/v1/customers/lookup", params={"email": "e2e-csv-2@example.com"}).json()["data"]
        assert [c["name"]["given"] for c in found] == ["Sam"]
        conns = http.get("/v1/connections").json()["data"]
        csv_conn = next(c for c in conns if c["connector"] == "csv")
    again = subprocess.run([*cmd, "--connection", csv_conn["id"]], capture_output=True, text=True,
                           env=_env(), timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    with dev.client(key) as http:
        run = http.get(f"/v1/connections/{csv_conn['id']}/runs", params={"limit": 1}).json()["data"][0]
    counts = run["streams"]["customers"]
    assert (counts["created"], counts["updated"], counts["unchanged"], counts["rejected"]) == (0, 0, 2, 1), counts
