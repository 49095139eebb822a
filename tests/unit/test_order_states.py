"""crm/orders/states.py: every allowed transition, every illegal move, and the forward
moves an import makes, without the emulator."""
from __future__ import annotations

import pytest

from crm.orders import states

ALLOWED = {  # (action, from) -> to, for a refund of part and of all of the total
    ("pay", "placed"): "paid",
    ("fulfill", "paid"): "fulfilled",
    ("cancel", "placed"): "cancelled",
    ("refund", "paid"): "partially_refunded",
    ("refund", "fulfilled"): "partially_refunded",
    ("refund", "partially_refunded"): "partially_refunded",
}
STAMPS = {"pay": "paid_at", "fulfill": "fulfilled_at", "cancel": "cancelled_at", "refund": None}


@pytest.mark.parametrize("action", sorted(states.MOVES))
@pytest.mark.parametrize("status", states.STATUSES)
def test_every_action_from_every_status(action, status):
    if (action, status) in ALLOWED:
        assert states.after(action, status, refunded=40, total=100) == ALLOWED[action, status]
        return
    with pytest.raises(states.IllegalMove) as err:
        states.after(action, status, refunded=40, total=100)
    assert err.value.status == status and err.value.action == action
    assert status not in err.value.allowed
    assert set(err.value.allowed) == {s for (a, s) in ALLOWED if a == action}


@pytest.mark.parametrize("status", states.REFUNDABLE)
def test_a_refund_of_everything_left_makes_it_refunded(status):
    assert states.after("refund", status, refunded=100, total=100) == "refunded"


def test_terminal_statuses_allow_no_action():
    for status in ("cancelled", "refunded"):
        for action in states.MOVES:
            with pytest.raises(states.IllegalMove):
                states.after(action, status, refunded=100, total=100)


def test_each_move_stamps_its_time():
    assert {a: m.stamp for a, m in states.MOVES.items()} == STAMPS


@pytest.mark.parametrize(("status", "refunded", "total", "expected"), [
    ("refunded", 100, 150, "partially_refunded"),  # the total grew: there is more to refund
    ("partially_refunded", 100, 100, "refunded"),  # the total fell to what was refunded
    ("refunded", 100, 100, "refunded"),
    ("partially_refunded", 40, 100, "partially_refunded"),
    ("paid", 0, 80, "paid"),
    ("placed", 0, 80, "placed"),
    ("fulfilled", 0, 80, "fulfilled"),
    ("cancelled", 0, 80, "cancelled"),
])
def test_an_edit_moves_between_refunded_and_partially_refunded_only(status, refunded, total, expected):
    assert states.after_edit(status, refunded, total) == expected


def test_an_import_reaches_every_vendor_state_forward_only():
    """Applying IMPORT_ORDER from placed reaches each state a vendor can report, and never
    goes back: no status is reached twice along a path."""
    paths = {
        ("pay",): "paid",
        ("pay", "fulfill"): "fulfilled",
        ("pay", "refund"): "refunded",
        ("pay", "fulfill", "refund"): "refunded",
        ("cancel",): "cancelled",
    }
    for path, end in paths.items():
        assert list(path) == [a for a in states.IMPORT_ORDER if a in path]
        status, seen = "placed", ["placed"]
        for action in path:
            status = states.after(action, status, refunded=100, total=100)
            assert status not in seen
            seen.append(status)
        assert status == end
