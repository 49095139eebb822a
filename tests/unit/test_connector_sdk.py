"""The SDK parts every connector relies on: the HTTP client's retries, backoff and
Retry-After, the rate-limit pause, pagination helpers and the incremental window."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from hypothesis import given, settings, strategies as st

from connectors.sdk import Client, RateLimited, VendorError, Window, link_next, page_numbers
from connectors.sdk.http import retry_after


class Script:
    """A local server answering with a scripted list of (status, headers) then 200s."""

    def __init__(self, answers):
        self.answers, self.seen = list(answers), 0
        script = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                script.seen += 1
                status, headers = script.answers.pop(0) if script.answers else (200, {})
                body = json.dumps({"n": script.seen}).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def script():
    servers = []

    def make(*answers):
        servers.append(Script(answers))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


def _client(url, **kw):
    sleeps = []
    return Client(url, sleep=sleeps.append, **kw), sleeps


def test_server_errors_are_retried_with_jittered_exponential_backoff(script):
    server = script((500, {}), (502, {}), (504, {}))
    client, sleeps = _client(server.url, backoff=1.0, max_backoff=30)
    body, _ = client.get_json("/x")
    assert body == {"n": 4} and server.seen == 4
    assert len(sleeps) == 3 and all(0 <= s <= 2 ** i for i, s in enumerate(sleeps))


def test_retries_give_up_with_a_vendor_error_naming_the_status(script):
    server = script(*[(503, {})] * 10)
    client, sleeps = _client(server.url, retries=2)
    with pytest.raises(VendorError) as err:
        client.get("/x")
    assert err.value.status == 503 and server.seen == 3 and len(sleeps) == 2


def test_a_client_error_is_not_retried(script):
    server = script((404, {}))
    client, sleeps = _client(server.url)
    with pytest.raises(VendorError) as err:
        client.get("/missing")
    assert err.value.status == 404 and server.seen == 1 and sleeps == []


def test_a_short_throttle_is_slept_through_as_retry_after_says(script):
    server = script((429, {"Retry-After": "2"}), (429, {"Retry-After": "1.5"}))
    client, sleeps = _client(server.url, retries=0)
    assert client.get_json("/x")[0] == {"n": 3}
    assert sleeps == [2.0, 1.5] and client.throttled == 2  # throttles do not use up retries


def test_a_long_throttle_pauses_the_run_instead_of_sleeping(script):
    server = script((429, {"Retry-After": "120"}))
    client, sleeps = _client(server.url, max_wait=10)
    with pytest.raises(RateLimited) as err:
        client.get("/x")
    assert err.value.retry_after == 120 and sleeps == []


def test_a_throttle_longer_than_the_time_left_pauses_too(script):
    server = script((429, {"Retry-After": "4"}))
    client, sleeps = _client(server.url, max_wait=10, time_left=lambda: 6.0)
    with pytest.raises(RateLimited):
        client.get("/x")
    assert sleeps == []


def test_retry_after_accepts_seconds_and_http_dates():
    def resp(value):
        return httpx.Response(429, headers={"Retry-After": value} if value else {})
    assert retry_after(resp("7"), 1) == 7
    assert retry_after(resp(None), 3) == 3
    assert retry_after(resp("Wed, 21 Oct 2015 07:28:00 GMT"), 5) == 0  # in the past
    assert retry_after(resp("soon"), 4) == 4


def test_connection_errors_are_retried_then_reported():
    client, sleeps = _client("http://127.0.0.1:9", retries=1, timeout=1)
    with pytest.raises(VendorError):
        client.get("/x")
    assert len(sleeps) == 1


def test_link_header_and_page_number_helpers():
    r = httpx.Response(200, headers={"Link": '<https://s/a?page_info=p>; rel="previous", '
                                             '<https://s/a?page_info=n&limit=250>; rel="next"'})
    assert link_next(r) == "https://s/a?page_info=n&limit=250"
    assert link_next(httpx.Response(200, headers={"Link": '<https://s/a?p=1>; rel="previous"'})) is None
    assert page_numbers(httpx.Response(200, headers={"X-WP-TotalPages": "3"}), 2) == 3
    assert page_numbers(httpx.Response(200, headers={"X-WP-TotalPages": "3"}), 3) is None


class R:
    def __init__(self, external_id, updated_at):
        self.external_id, self.updated_at = external_id, updated_at


def test_window_overlaps_the_last_cursor_and_skips_exactly_what_it_read():
    w = Window(None)
    assert w.since is None
    page = [R("a", "2026-01-01T10:00:00Z"), R("b", "2026-01-01T10:00:00Z")]
    state = w.advance(w.fresh(page), None)
    assert state["cursor"] == "2026-01-01T10:00:00.000Z"
    w2 = Window(state)
    assert w2.since == "2026-01-01T09:55:00.000Z"  # five minutes of overlap
    # the vendor returns the boundary records again, one of them changed, plus a late one
    again = [R("a", "2026-01-01T10:00:00Z"), R("b", "2026-01-01T10:00:01Z"), R("c", "2026-01-01T09:59:00Z")]
    assert [r.external_id for r in w2.fresh(again)] == ["b", "c"]


def test_a_window_interrupted_mid_way_resumes_at_its_page_and_keeps_its_cursor():
    w = Window({"cursor": "2026-01-01T00:00:00.000Z", "seen": {}})
    state = w.advance([R("a", "2026-01-02T00:00:00Z")], "page-2")
    resumed = Window(state)
    assert resumed.resumed and resumed.page == "page-2" and resumed.since == w.since
    assert resumed.cursor == "2026-01-01T00:00:00.000Z"  # moves only when the window completes
    done = resumed.advance([R("b", "2026-01-03T00:00:00Z")], None)
    assert done["cursor"] == "2026-01-03T00:00:00.000Z" and done["page"] is None


def test_a_checkpoint_is_not_changed_by_reading_the_next_page():
    """Regression (found by the conformance kit): a page's state shared ``seen`` with the
    window, so fetching the next page added that page's records to the checkpoint already
    handed out. A run failing between the fetch and the write saved it, and the resumed run
    skipped the failed page's records as read: lost."""
    w = Window(None)
    first = w.advance([R("a", "2026-01-01T10:00:00Z")], "page-2")
    kept = json.loads(json.dumps(first))
    w.advance([R("b", "2026-01-01T10:00:01Z")], "page-3")
    assert first == kept
    resumed = Window(first)
    assert [r.external_id for r in resumed.fresh([R("b", "2026-01-01T10:00:01Z")])] == ["b"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20),  # how far the clock moves before the batch
                          st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 9)), max_size=6)),
                min_size=1, max_size=6),
       st.integers(1, 3))
def test_every_version_of_every_record_is_read_exactly_once(batches, page_size):
    """A vendor whose records change between runs, with updates indexed up to 9 s late
    (within the 10 s lookback) and many sharing a second: each run reads everything
    updated at or after its window start, in pages. Every version current when a run
    ran is delivered once and only once, and no version twice."""
    from datetime import timedelta

    vendor: dict[str, str] = {}
    delivered: list[tuple[str, str]] = []
    state, now = None, 100
    for tick, updates in batches:
        now += tick
        for key, lag in updates:
            stamp = f"2026-01-01T00:{(now - lag) // 60:02d}:{(now - lag) % 60:02d}Z"
            if stamp > vendor.get(key, ""):
                vendor[key] = stamp
        w = Window(state, lookback=timedelta(seconds=10))
        rows = sorted((k, v) for k, v in vendor.items() if w.since is None or v >= w.since[:19] + "Z")
        pages = [rows[i:i + page_size] for i in range(0, len(rows), page_size)] or [[]]
        for n, rows_ in enumerate(pages):
            got = w.fresh([R(k, v) for k, v in rows_])
            delivered += [(r.external_id, r.updated_at) for r in got]
            state = w.advance(got, n + 1 if n + 1 < len(pages) else None)
        assert set(vendor.items()) <= set(delivered)
    assert len(delivered) == len(set(delivered))


def test_the_checkpoint_of_a_long_backfill_keeps_only_the_overlap():
    """10,000 records a minute apart, read in pages of 250: the state that is saved after
    each page (one DynamoDB item) holds the overlap, not every record read."""
    w = Window(None, backfill=True)
    sizes = []
    for page in range(40):
        rows = [R(f"id{page * 250 + i}", f"2020-01-{1 + (page * 250 + i) // 1440:02d}T"
                  f"{(page * 250 + i) % 1440 // 60:02d}:{(page * 250 + i) % 60:02d}:00Z")
                for i in range(250)]
        state = w.advance(w.fresh(rows), page + 1 if page < 39 else None)
        sizes.append(len(state["seen"]))
    assert max(sizes) <= 6  # five minutes of overlap: the records of the last 5-6 minutes
    assert state["cursor"] == "2020-01-07T22:39:00.000Z"
