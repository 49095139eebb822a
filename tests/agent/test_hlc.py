"""The contract's HLC: string order is clock order; local events are strictly increasing
whatever the wall clock does; an event after a remote time orders after it, even when the
local clock is far behind (the skew that makes edits "not stick" elsewhere)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapport_agent import hlc
from rapport_agent.hlc import HLC

ms = st.integers(min_value=0, max_value=9_999_999_999_999)
clocks = st.builds(HLC, ms, st.integers(min_value=0, max_value=hlc.MAX_COUNTER))


@given(clocks, clocks)
def test_string_order_is_clock_order(a, b):
    assert (str(a) < str(b)) == (a < b)
    assert HLC.parse(str(a)) == a
    assert len(str(a)) == 19


@given(clocks, st.lists(ms, min_size=1, max_size=50))
def test_local_events_strictly_increase_whatever_the_wall_clock_does(start, walls):
    last = start
    for wall in walls:
        nxt = hlc.tick(last, wall)
        assert nxt > last
        assert nxt.pt >= wall
        last = nxt


@given(clocks, clocks, ms)
def test_an_event_after_a_remote_time_orders_after_it(local, remote, wall):
    """The local wall clock may be hours behind the cloud's: the edit still orders later."""
    seen = hlc.observe(local, remote)
    event = hlc.tick(seen, wall)
    assert event > remote and event > local


def test_remote_times_parse_from_hlc_and_iso():
    assert hlc.remote("1764763200123-00004") == HLC(1764763200123, 4)
    assert hlc.remote("2025-12-03T12:00:00.123Z") == HLC(1764763200123, 0)
    assert hlc.remote("garbage") is None and hlc.remote(None) is None


def test_the_clock_is_persisted(tmp_path):
    from rapport_agent.outbox import Store

    store = Store(tmp_path / "s.sqlite")
    store.observe("9999999999999-00000")
    first = store.tick(wall_ms=1)
    store.close()
    again = Store(tmp_path / "s.sqlite")
    assert again.tick(wall_ms=1) > first > "9999999999999-00000"


@given(skew=st.integers(min_value=-86_400_000, max_value=86_400_000), later=st.integers(min_value=1, max_value=10_000))
@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_store_corrects_local_events_by_the_offset_measured_against_the_server(skew, later, tmp_path_factory):
    """A clock ``skew`` ms off (ahead or behind): after one answer from the server, an
    edit made ``later`` ms after a cloud edit is stamped after it, and one made before is
    stamped before it, so ``latest`` picks the edit that really came last."""
    from rapport_agent.outbox import Store

    store = Store(tmp_path_factory.mktemp("clock") / "state.sqlite")
    try:
        server_now = 1_764_763_200_000
        store.observe(str(HLC(server_now)), local_ms=server_now + skew)  # the server answered
        cloud_edit = server_now + 50_000
        stamp = HLC.parse(store.tick(wall_ms=cloud_edit + later + skew))
        assert stamp > HLC(cloud_edit)
        store.put("hlc", str(HLC(server_now)))
        before = HLC.parse(store.tick(wall_ms=cloud_edit - later + skew))
        assert before < HLC(cloud_edit)
    finally:
        store.close()
