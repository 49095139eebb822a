"""Shared fixtures: moto's server on loopback (over HTTP, never in-process mocks),
the table created from infra/, and the Chalice app served over HTTP against it."""
from __future__ import annotations

import os
import socket

import pytest

TABLE = "rapport-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The environment must be set before crm.storage is imported (PynamoDB reads the
# table name at class creation), so it is set when pytest loads this file.
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "RAPPORT_TABLE": TABLE,
    "RAPPORT_KEY_CACHE_SECONDS": "0",
    "RAPPORT_LOCAL_DEV": "1",  # vendor fakes listen on loopback (connectors/sdk/net.py)
    # every plan's requests/s x 1000: tests drive a tenant faster than a free plan's 10/s;
    # tests/integration/test_ratelimit.py sets it back to 1 (or lower) to test the limiter
    "RAPPORT_RATE_LIMIT_SCALE": "1000",
})
os.environ.pop("AWS_PROFILE", None)


def pytest_collection_modifyitems(config, items) -> None:
    """The longest files first (bulk, then slow and e2e ones), the rest in their order:
    with ``--dist loadfile --no-loadscope-reorder`` each worker takes the next file when
    it is free, so the long ones overlap with the many short ones instead of ending the
    run on one worker while the other idles (longest-first scheduling)."""
    def rank(item) -> int:
        for n, marker in enumerate(("bulk", "slow", "e2e")):
            if item.get_closest_marker(marker) is not None:
                return n
        return 3

    items.sort(key=rank)  # stable: a file's tests stay together and in order


SLOWEST_FILES = int(os.environ.get("SLOWEST_FILES", 15))  # the list after a run
_FILE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report) -> None:
    """Sum setup, call and teardown per test file (under xdist the controller receives
    every worker's reports, so this sees the whole run)."""
    path = report.nodeid.split("::", 1)[0]
    _FILE_SECONDS[path] = _FILE_SECONDS.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter, config) -> None:
    """The suite's slowest files, to keep an eye on the budget (docs/testing.md)."""
    if hasattr(config, "workerinput") or not _FILE_SECONDS:
        return
    slowest = sorted(_FILE_SECONDS.items(), key=lambda kv: kv[1], reverse=True)[:SLOWEST_FILES]
    terminalreporter.write_sep("=", f"{len(slowest)} slowest files (setup + call + teardown)")
    for path, seconds in slowest:
        terminalreporter.write_line(f"{seconds:8.1f}s  {path}")


@pytest.fixture(scope="session")
def _moto() -> str:
    """moto's server, started once per session (per xdist worker) on a free loopback port."""
    from rapport import emulator

    port = _free_port()
    server = emulator.start(port)
    url = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL"] = url
    yield url
    server.stop()


def fresh_emulator(endpoint: str) -> None:
    """Forget everything the emulator holds (moto's ``/moto-api/reset``), then create the
    table, the queues, the KMS key and the uploads bucket from infra/ again: the same
    names, so queue URLs and the app's environment stay valid."""
    import httpx

    from crm import apikeys
    from infra.bootstrap import connector_env, create_bucket, create_key, create_queues, create_table
    from rapport import env

    httpx.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
    create_table(_client("dynamodb"), TABLE)
    env.configure_queues(create_queues(_client("sqs"), TABLE).queues)
    names = connector_env(TABLE)
    create_key(_client("kms"), names["RAPPORT_KMS_KEY"])
    create_bucket(_client("s3"), names["RAPPORT_UPLOADS_BUCKET"])
    os.environ.update(names)
    from infra.bootstrap import create_email_resources

    public_url = os.environ.get("RAPPORT_PUBLIC_URL", "http://127.0.0.1")  # the dev stack's, once it started
    os.environ.update(create_email_resources(_session(), TABLE, public_url))
    apikeys.clear_cache()


_CLIENTS: dict = {}


def _session():
    import boto3

    return boto3.session.Session()


def _client(service: str):
    """boto3 clients made once per process (~50 ms each)."""
    if service not in _CLIENTS:
        import boto3

        _CLIENTS[service] = boto3.client(service)
    return _CLIENTS[service]


@pytest.fixture(scope="module")
def aws_endpoint(_moto: str) -> str:
    """The emulator, empty at the start of each test module: a module's time and results do
    not depend on which modules ran before it in the same worker (docs/testing.md)."""
    fresh_emulator(_moto)
    return _moto


@pytest.fixture(scope="module")
def table(aws_endpoint: str) -> str:
    """The table (and queues, key, bucket) of ``infra/``, in the module's fresh emulator."""
    return TABLE


@pytest.fixture(scope="session")
def _stack(_moto: str):
    from rapport.devstack import DevStack

    stack = DevStack(_free_port(), _moto, TABLE, seed=False, pollers=False)
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def dev_stack(_stack, table: str):
    """The local stack without its seed, and without event pollers until a test asks
    for them (``event_pipeline``): the table, the queues, the app over HTTP. The HTTP
    server lives for the session; the emulator behind it is fresh for each module."""
    return _stack


@pytest.fixture(scope="module")
def api_url(dev_stack) -> str:
    """The Chalice app served over HTTP (the same server `rapport dev` runs)."""
    return f"http://127.0.0.1:{dev_stack.port}"


@pytest.fixture()
def event_pipeline(dev_stack):
    """app.py's event handlers fed by the local pollers (rapport/pollers.py) for one
    test, from the stream's current end: what the test writes is dispatched, queued and
    consumed. ``event_pipeline.wait_idle()`` waits until all of it is done."""
    pipeline = dev_stack.start_pollers(starting_position="LATEST")
    assert pipeline.wait_started(), "the pollers did not start"
    yield pipeline
    dev_stack.stop_pollers()


class Tenant:
    """A tenant with an admin key, and an httpx client that sends it."""

    def __init__(self, base_url: str, name: str) -> None:
        import httpx

        from crm import apikeys, tenants
        from crm.context import TenantContext

        t = tenants.create(name)
        self.id = t.id
        self.ctx = TenantContext(t.id)
        self.key = apikeys.create(self.ctx, "admin", ["admin"]).secret
        self.http = httpx.Client(base_url=base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {self.key}"})

    def key_with(self, *scopes: str) -> str:
        from crm import apikeys

        return apikeys.create(self.ctx, "scoped", list(scopes)).secret

    def create_customer(self, **fields) -> dict:
        r = self.http.post("/v1/customers", json=fields)
        assert r.status_code == 201, r.text
        return r.json()


@pytest.fixture(scope="module")
def tail(table: str):
    """The table's stream from where it stood when the module's first test asked."""
    from tests.streams import StreamTail

    return StreamTail(table)


@pytest.fixture()
def deliver(tail):
    """Every stream record so far, through the dispatcher's decoding, to the loyalty and
    timeline handlers (what Lambda and `rapport dev`'s pollers run), until nothing new
    comes out; returns the events derived."""
    from functions import loyalty, timeline
    from functions.dispatch import events_of, route

    def run() -> list[dict]:
        seen = []
        while True:
            events = [e for r in tail.records() for e in events_of(r)]
            if not events:
                return seen
            routed = route(events)
            for event in routed["loyalty"]:
                loyalty.apply(event)
            for event in routed["timeline"]:
                timeline.apply(event)
            seen += events
    return run


@pytest.fixture()
def tenant(api_url: str) -> Tenant:
    return Tenant(api_url, "Acme")


@pytest.fixture()
def other_tenant(api_url: str) -> Tenant:
    return Tenant(api_url, "Globex")


@pytest.fixture()
def anon(api_url: str):
    import httpx

    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def raw_table(table: str):
    """The table through boto3 over HTTP, to prove what was (not) written."""
    import boto3

    return boto3.resource("dynamodb").Table(table)


FEED_KINDS = ("change", "change_guard", "change_head")


def partition_items(raw_table, tenant: Tenant) -> list[dict]:
    """Every item of a tenant, for read-backs in tests (a test-only Scan), but its usage
    counters (crm/billing/usage.py) and its change feed (crm/changes.py): the API's flush
    and the stream dispatcher write them whenever they run, from earlier writes, not the
    request a test checks ("wrote nothing")."""
    from boto3.dynamodb.conditions import Attr

    items, kwargs = [], {"FilterExpression": Attr("pk").begins_with(f"T#{tenant.id}#")}
    while True:
        page = raw_table.scan(**kwargs)
        items += [i for i in page["Items"] if i["sk"] != "USAGE" and i.get("kind") not in FEED_KINDS]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


from tests.stripe_helpers import stripe_double  # noqa: F401  (the Stripe double fixture)
from tests.postgres import postgres_server, postgres_url  # noqa: F401,E402  (the agent's PostgreSQL)
