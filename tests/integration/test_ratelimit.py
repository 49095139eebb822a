"""Rate limiting (crm/billing/ratelimit.py): 429 with Retry-After and RateLimit-* over HTTP,
the headers on every route, the global limit across two containers sharing counts
through the emulator, and the DynamoDB requests it costs per API call."""
from __future__ import annotations

import collections
import re

import pytest

from crm.billing import ratelimit
from crm.billing.ratelimit import FLUSH_EVERY, WINDOW, Limiter
from tests.dynamo_calls import dynamodb_calls

HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@pytest.fixture()
def real_rates(monkeypatch):
    """Plans' rates as sold (x0.1: a free tenant gets 1 request/s, so a burst is
    certain to run over however slow the machine), and a fresh limiter."""
    monkeypatch.setenv("RAPPORT_RATE_LIMIT_SCALE", "0.1")
    monkeypatch.setattr(ratelimit, "_limiter", None)
    yield
    monkeypatch.setattr(ratelimit, "_limiter", None)


def test_a_burst_gets_429_with_retry_after_and_headers(real_rates, tenant) -> None:
    first = tenant.http.get("/v1/customers")
    assert first.status_code == 200
    assert {h: first.headers.get(h) for h in HEADERS} == {
        "RateLimit-Limit": "1", "RateLimit-Remaining": "0", "RateLimit-Reset": first.headers["RateLimit-Reset"]}
    for _ in range(20):
        r = tenant.http.get("/v1/customers")
        if r.status_code == 429:
            break
    assert r.status_code == 429, "20 requests at a 1/s limit were all admitted"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["RateLimit-Remaining"] == "0"
    assert int(r.headers["RateLimit-Reset"]) >= 1
    assert r.headers["RateLimit-Limit"] == "1"


def test_one_tenant_over_its_limit_leaves_another_alone(real_rates, tenant, other_tenant) -> None:
    for _ in range(20):
        if tenant.http.get("/v1/customers").status_code == 429:
            break
    assert other_tenant.http.get("/v1/customers").status_code == 200


def test_every_route_answers_with_the_headers(api_url, tenant, anon) -> None:
    """Whatever the status (200, 401, 404, 422...), every operation of the API and the
    routes outside it (the document, the catch-all) carry the three headers."""
    from api.http import OPERATIONS

    seen = 0
    for op in OPERATIONS:
        path = re.sub(r"\{[^}]+\}", "x0", op.path)
        for client in (tenant.http, anon):
            r = client.request(op.method, path)
            missing = [h for h in HEADERS if h not in r.headers]
            assert not missing, f"{op.method} {op.path} -> {r.status_code} lacks {missing}"
            seen += 1
    for path in ("/openapi.json", "/v1/openapi.json", "/v1/docs", "/nowhere/at/all"):
        r = anon.get(path)
        assert all(h in r.headers for h in HEADERS), f"GET {path} -> {r.status_code}"
    assert seen >= 2 * 40


def _offered(limiters, rate, seconds, clock):
    """Each limiter ("container") offered twice the plan's rate; admitted per window."""
    per = collections.Counter()
    step = 1 / (2 * rate)
    for n in range(int(seconds / step)):
        clock[0] = n * step
        for lim in limiters:
            if lim.admit("tglobal000000", rate).allowed:
                per[int((1_000_000 + clock[0]) // WINDOW)] += 1
    return per


def test_two_containers_share_the_limit_through_the_table(table) -> None:
    """Two limiters against the emulator, each offered twice the plan's rate: together they
    admit the plan's rate per window, within the documented tolerance (per busy
    container: one flush interval and one bucket), never twice it."""
    clock = [0.0]
    rate = 10
    make = lambda: Limiter(wall=lambda: 1_000_000 + clock[0], monotonic=lambda: clock[0])
    per = _offered([make(), make()], rate, 6 * WINDOW, clock)
    tolerance = 2 * (FLUSH_EVERY + rate)
    windows = sorted(per)[:-1]  # the last one is partial
    assert len(windows) >= 5
    for w in windows:
        assert per[w] <= rate * WINDOW + tolerance, dict(per)
    for w in windows[1:]:  # after the first flushes, close to the limit, not starved
        assert rate * WINDOW * 0.6 <= per[w] <= rate * WINDOW * 1.25, dict(per)


def test_alone_a_container_gets_the_whole_rate_back(table) -> None:
    clock = [0.0]
    make = lambda: Limiter(wall=lambda: 2_000_000 + clock[0], monotonic=lambda: clock[0])
    a, b = make(), make()
    _offered([a, b], 10, 3 * WINDOW, clock)
    start, admitted = clock[0], 0
    while clock[0] < start + 4 * WINDOW:  # b goes quiet; a alone at 2x the rate
        clock[0] += 0.05
        admitted += a.admit("tglobal000000", 10).allowed
    assert admitted >= 10 * 4 * WINDOW * 0.8


def test_dynamodb_requests_per_api_call_stay_below_five_hundredths(table) -> None:
    """A workload of many tenants at different paces, through one container: every
    DynamoDB request the limiter sends (its flushes, which also count api_calls)."""
    clock = [0.0]
    lim = Limiter(wall=lambda: 3_000_000 + clock[0], monotonic=lambda: clock[0])
    calls = 0
    with dynamodb_calls() as sent:
        for n in range(3000):
            clock[0] = n * 0.02
            tenant = f"tcost0000000{n % 7}" if n % 10 else "tcostbusy0000"
            lim.admit(tenant, 200)
            calls += 1
    per_call = sum(sent.values()) / calls
    assert sent and set(sent) == {"UpdateItem"}
    assert per_call < 0.05, per_call


def test_api_calls_are_counted_per_month_over_http(tenant) -> None:
    """Every admitted call counts once in the month's api_calls (flushed every
    FLUSH_EVERY calls with the window's total)."""
    from crm.billing import usage

    for _ in range(FLUSH_EVERY * 2):
        assert tenant.http.get("/v1/customers").status_code == 200
    raw = usage.read(tenant.id, consistent=True)
    assert raw[usage.attr("api_calls", usage.period())] == FLUSH_EVERY * 2


def test_get_billing_shows_the_calls_just_made_before_they_are_flushed(tenant) -> None:
    """A tenant checking its usage sees its own calls at once, not only every 25th."""
    for _ in range(3):
        assert tenant.http.get("/v1/customers").status_code == 200
    shown = tenant.http.get("/v1/billing").json()["usage"]["api_calls"]
    assert 3 <= shown < FLUSH_EVERY  # its own GET is admitted before the summary is read, so 4


def test_the_cli_waits_out_a_429_instead_of_failing(real_rates, tenant, api_url) -> None:
    """`rapport import|sync` call the API in a row; at the limit they wait as Retry-After
    says and go on (a 429 changed nothing), rather than ending the command."""
    from rich.console import Console

    from rapport.cli import _Api

    client = _Api(api_url, tenant.key, Console())
    answers = [tenant.http.get("/v1/customers").status_code for _ in range(5)]
    assert 429 in answers  # the tenant is over its 1 request/s now
    for _ in range(3):
        assert "data" in client.call("GET", "/v1/customers", 200)
