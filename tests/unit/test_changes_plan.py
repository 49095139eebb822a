"""The change feed's pure parts: seqs, objects, type patterns, cursors."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm import changes
from crm.errors import Invalid


@given(last=st.integers(0, 10**15), now=st.integers(0, 10**15), n=st.integers(1, 60))
def test_seqs_increase_past_the_last_and_stay_near_now(last, now, n):
    seqs = changes.next_seqs(last, now, n)
    assert len(seqs) == n and seqs[0] > last and seqs[0] >= now
    assert all(b == a + 1 for a, b in zip(seqs, seqs[1:]))
    assert [changes.seq_str(s) for s in seqs] == sorted(changes.seq_str(s) for s in seqs)


def test_cursor_round_trip_and_refusal():
    assert changes.decode(changes.encode(1234)) == 1234
    with pytest.raises(Invalid):
        changes.decode("garbage")
    from crm.paging import encode_cursor

    with pytest.raises(Invalid):  # another list's cursor
        changes.decode(encode_cursor("customers", "cus_1"))


def test_type_patterns():
    assert changes.expand_types(["order.*"]) >= {"order.paid", "order.placed"}
    assert all(t.startswith("order.") for t in changes.expand_types(["order.*"]))
    assert changes.expand_types(["order.paid", "tier.changed"]) == {"order.paid", "tier.changed"}
    from crm.events import TYPES

    assert changes.expand_types(["*"]) == TYPES
    for bad in ("order", "order.nope", "nope.*", ""):
        with pytest.raises(Invalid):
            changes.expand_types([bad])


def test_the_object_of_each_kind_of_event():
    assert changes.object_of({"type": "order.paid", "data": {"order_id": "ord_1"}}) == ("order", "ord_1")
    assert changes.object_of({"type": "points.earned", "customer_id": "cus_1", "data": {}}) == ("loyalty", "cus_1")
    seg = {"type": "segment.entered", "data": {"segment_id": "seg_1", "customer_id": "cus_1"}}
    assert changes.object_of(seg) == ("segment_membership", "seg_1:cus_1")
    assert changes.object_of({"type": "shipment.delivered", "data": {"shipment_id": "shp_1"}}) == ("shipment", "shp_1")
