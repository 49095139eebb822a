"""RFM scores, the named segments, lifetime value and VIP, and ``next_change``: the next
instant a score or the predicted value changes by time alone, exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.clock import iso, parse
from crm.segments import rfm

MS = timedelta(milliseconds=1)
DAY = timedelta(days=1)


def agg(count, net, first, last):
    return {
        "count": count,
        "net_spend": net,
        "first_at": first,
        "last_at": last,
        "aov": net // count if count else None,
    }


def test_the_named_segments_cover_every_cell_exactly_once():
    for r in range(1, 6):
        for f in range(1, 6):
            owners = [n for n, c in rfm.NAMED.items() if c["r"][0] <= r <= c["r"][1] and c["f"][0] <= f <= c["f"][1]]
            assert len(owners) == 1, (r, f, owners)
            assert rfm.named(r, f) == owners[0]
    assert list(rfm.NAMED) == [
        "Champions",
        "Loyal",
        "Potential loyalist",
        "New",
        "Promising",
        "Need attention",
        "About to sleep",
        "At risk",
        "Can't lose them",
        "Hibernating",
        "Lost",
    ]


@pytest.mark.parametrize(
    ("r", "f", "name"),
    [
        (5, 5, "Champions"),
        (5, 1, "New"),
        (1, 5, "Can't lose them"),
        (1, 1, "Lost"),
        (2, 2, "Hibernating"),
        (3, 3, "Need attention"),
    ],
)
def test_named_cells(r, f, name):
    assert rfm.named(r, f) == name


def test_cut_points_are_quintile_boundaries():
    assert rfm.cut_points(list(range(1, 101))) == pytest.approx([20.8, 40.6, 60.4, 80.2])
    assert rfm.cut_points([7]) == [7, 7, 7, 7]
    assert rfm.cut_points([]) == []
    assert rfm.cut_points([5, 1, 3, 2, 4]) == [1.8, 2.6, 3.4, 4.2]


def test_scores_with_the_default_cuts():
    now = "2026-06-01T00:00:00.000Z"
    a = agg(4, 30_000, "2025-01-01T00:00:00.000Z", "2026-05-25T00:00:00.000Z")
    assert rfm.scores(a, None, now) == {"r": 5, "f": 4, "m": 5, "segment": "Champions"}
    # on a boundary the better score: 30 whole days since the last order is still r=5
    assert rfm.scores(a, None, "2026-06-24T23:59:59.999Z")["r"] == 5
    assert rfm.scores(a, None, "2026-06-25T00:00:00.000Z")["r"] == 4
    assert rfm.scores({"count": 0, "net_spend": 0}, None, now) == {"r": None, "f": None, "m": None, "segment": None}


def test_the_tenants_cuts_replace_the_defaults():
    a = agg(2, 500, "2026-01-01T00:00:00.000Z", "2026-05-01T00:00:00.000Z")
    cuts = {"r": [10, 20, 40, 80], "f": [1, 1, 1, 1], "m": [100, 200, 300, 400]}
    got = rfm.scores(a, cuts, "2026-06-01T00:00:00.000Z")
    assert (got["r"], got["f"], got["m"]) == (3, 5, 5)
    # a malformed measure falls back to the defaults for that measure only
    got = rfm.scores(a, {"r": [1, 2], "f": [1, 1, 1, 1]}, "2026-06-01T00:00:00.000Z")
    assert (got["r"], got["f"], got["m"]) == (4, 5, 1)


def test_predicted_value_worked_example():
    """4 orders in 300 days, 400.00 net: usual gap 100 days, 3.65 orders a year of
    100.00 = 365.00 a year; halved after 100 days without an order, again after 200."""
    a = agg(4, 40_000, "2025-01-01T00:00:00.000Z", "2025-10-28T00:00:00.000Z")
    assert rfm.ltv(a, "2025-10-28T00:00:00.000Z") == {"historical": 40_000, "predicted": 36_500}
    assert rfm.ltv(a, "2026-02-04T23:59:59.999Z")["predicted"] == 36_500
    assert rfm.next_change(a, {"r": [1000, 2000, 3000, 4000], "f": [], "m": []}, "2025-11-01T00:00:00.000Z") == (
        "2026-02-05T00:00:00.000Z"
    )
    assert rfm.ltv(a, "2026-02-05T00:00:00.000Z")["predicted"] == 18_250
    assert rfm.ltv(a, "2026-05-16T00:00:00.000Z")["predicted"] == 9_125


def test_one_order_predicts_one_a_year():
    a = agg(1, 5_000, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z")
    assert rfm.ltv(a, "2026-06-01T00:00:00.000Z") == {"historical": 5_000, "predicted": 5_000}
    assert rfm.ltv(a, "2027-01-01T00:00:00.000Z")["predicted"] == 2_500
    assert rfm.ltv({"count": 0, "net_spend": 0}, "2027-01-01T00:00:00.000Z") == {"historical": 0, "predicted": 0}


def test_vip_is_the_top_fifth():
    values = list(range(1, 11))  # top 20 % of 10: 10 and 9
    threshold = rfm.vip_threshold(values)
    assert threshold == 9
    assert [v for v in values if rfm.vip({"historical": v}, threshold)] == [9, 10]
    assert rfm.vip_threshold([]) is None
    assert rfm.vip_threshold([3]) == 3
    assert not rfm.vip({"historical": 10**9}, None)
    assert not rfm.vip({"historical": 0}, rfm.vip_threshold([0, 0, 0]))


def test_measures_are_what_cut_points_are_computed_from():
    a = agg(3, 7_000, "2026-01-01T00:00:00.000Z", "2026-05-01T12:00:00.000Z")
    assert rfm.measures(a, "2026-06-01T11:59:59.999Z") == {"r": 30, "f": 3, "m": 7_000}
    assert rfm.measures({"count": 0, "net_spend": 0}, "2026-06-01T00:00:00.000Z") is None
    population = [
        rfm.measures(
            agg(n, 1000 * n, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z"), "2026-03-01T00:00:00.000Z"
        )
        for n in range(1, 11)
    ]
    cuts = {k: rfm.cut_points([m[k] for m in population if m]) for k in "rfm"}
    top = rfm.scores(
        agg(10, 10_000, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z"), cuts, "2026-03-01T00:00:00.000Z"
    )
    assert (top["f"], top["m"]) == (5, 5)


def test_score_all():
    a = agg(1, 5_000, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z")
    got = rfm.score_all(a, None, 4_000.0, "2026-01-02T00:00:00.000Z")
    assert got == {
        "r": 5,
        "f": 1,
        "m": 2,
        "segment": "New",
        "ltv": {"historical": 5_000, "predicted": 5_000},
        "vip": True,
    }


# -- the property: nothing changes before next_change, and something does at it ---------

BASE = datetime(2026, 3, 10, tzinfo=UTC)
ms_offsets = st.integers(-3 * 365 * 86_400_000, 86_400_000)


@st.composite
def cases(draw):
    count = draw(st.integers(0, 30))
    first = BASE + timedelta(milliseconds=draw(ms_offsets))
    last = first + timedelta(milliseconds=draw(st.integers(0, 2 * 365 * 86_400_000))) if count > 1 else first
    net = draw(st.integers(0, 10**7))
    a = agg(count, net, iso(first), iso(last)) if count else {"count": 0, "net_spend": 0}
    cut = st.lists(st.integers(0, 800), min_size=4, max_size=4)
    cuts = draw(st.none() | st.fixed_dictionaries({"r": cut, "f": cut, "m": cut}))
    now = BASE + timedelta(milliseconds=draw(st.integers(-86_400_000, 3 * 365 * 86_400_000)))
    return a, cuts, now


def timed(a, cuts, t):
    got = rfm.score_all(a, cuts, 1000.0, iso(t))
    return got["r"], got["ltv"]["predicted"]


@settings(max_examples=200, deadline=None)
@given(case=cases(), later=st.lists(st.integers(0, 4 * 365 * 86_400_000), max_size=20))
def test_next_change_is_exact(case, later):
    a, cuts, now = case
    change = rfm.next_change(a, cuts, iso(now))
    before = timed(a, cuts, now)
    samples = [now + timedelta(milliseconds=ms) for ms in later]
    if change is None:
        assert all(timed(a, cuts, t) == before for t in samples)
        return
    at = parse(change)
    assert at > now
    assert timed(a, cuts, at) != before
    # R and the predicted value only ever go down with time, so equal just before the
    # change means equal all the way from now
    assert timed(a, cuts, at - MS) == before
    for t in sorted(samples):
        r, p = timed(a, cuts, t)
        assert (r is None or r <= before[0]) and p <= before[1]
        if t < at:
            assert (r, p) == before


def test_the_documented_table_is_the_one_in_the_code():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "segments.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in rfm.NAMED:
            rows[cells[0]] = {
                k: [int(x) for x in v.split("–")] * (2 if "–" not in v else 1)
                for k, v in zip("rf", cells[1:], strict=True)
            }
    assert rows == rfm.NAMED
