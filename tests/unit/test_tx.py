"""crm.tx: a cancellation's reasons name the parts by role, in the order PynamoDB sends
them (checks, deletes, puts, updates), whatever order they were added in."""
from __future__ import annotations

import pytest
from pynamodb.exceptions import CancellationReason, TransactWriteError, VerboseClientError

from crm import tx as txm
from crm.errors import Conflict, Invalid, PreconditionFailed
from crm.storage import CustomerItem, GuardItem


class _Cancelling:
    """A connection whose TransactWriteItems is cancelled with ``codes`` (in the sent order)."""

    def __init__(self, codes, error="TransactionCanceledException"):
        self.codes, self.error, self.sent = codes, error, None

    def transact_write_items(self, **kw):
        self.sent = kw
        reasons = [CancellationReason(code=c) if c else None for c in self.codes]
        cause = VerboseClientError({"Error": {"Code": self.error, "Message": "x"}}, "TransactWriteItems",
                                   cancellation_reasons=reasons)
        raise TransactWriteError("cancelled", cause=cause)


@pytest.fixture
def cancel(monkeypatch):
    def install(codes, error="TransactionCanceledException"):
        conn = _Cancelling(codes, error)
        monkeypatch.setattr("crm.storage.connection", lambda: conn)
        return conn
    return install


def _tx() -> txm.Tx:
    t = txm.Tx()
    # added out of the sent order on purpose: save, check, delete
    t.save(GuardItem("T#t1#U#email#a@b.c", "U", customer_id="c1"), GuardItem.pk.does_not_exist(), role="guard")
    t.check(CustomerItem, "T#t1#C#c1", "PROFILE", CustomerItem.status == "active", role="customer")
    t.delete(GuardItem("T#t1#U#email#old@b.c", "U", customer_id="c1"), role="old_guard",
             add_version_condition=False)
    return t


def test_a_failed_condition_maps_to_the_error_of_its_role(cancel):
    conn = cancel([None, None, "ConditionalCheckFailed"])  # sent: check, delete, save
    with pytest.raises(Conflict) as err:
        _tx().run({"guard": Conflict("email taken", field="email"),
                   "customer": Invalid("customer erased", field="customer")})
    assert err.value.field == "email"
    assert [len(conn.sent[k]) for k in ("condition_check_items", "delete_items", "put_items")] == [1, 1, 1]


def test_the_first_failed_part_in_the_sent_order_wins(cancel):
    cancel(["ConditionalCheckFailed", None, "ConditionalCheckFailed"])
    with pytest.raises(Invalid):
        _tx().run({"guard": Conflict("email taken"), "customer": Invalid("customer erased")})


def test_a_callable_entry_sees_the_cancellation_and_may_pass(cancel):
    cancel([None, "ConditionalCheckFailed", None])
    with pytest.raises(PreconditionFailed):
        _tx().run({"old_guard": lambda c: PreconditionFailed("changed") if c.failed_role("old_guard") else None,
                   "guard": Conflict("never"), "customer": Invalid("never")})
    cancel([None, "ConditionalCheckFailed", None])
    with pytest.raises(txm.Cancelled) as err:
        _tx().run({"old_guard": lambda c: None})
    assert err.value.first_failed == "old_guard" and not err.value.lost_race


def test_a_lost_race_is_told_apart_and_may_map_to_a_retryable_error(cancel):
    cancel([None, "TransactionConflict", None])
    with pytest.raises(txm.Cancelled) as err:
        _tx().run({"guard": Conflict("never")})
    assert err.value.lost_race and err.value.failed == []
    cancel(["TransactionConflict", None, None])
    retry = Conflict("retry", code="transaction_conflict")
    with pytest.raises(Conflict) as err2:
        _tx().run(race=retry)
    assert err2.value is retry


def test_a_race_beside_a_failed_condition_is_not_a_lost_race(cancel):
    cancel(["TransactionConflict", None, "ConditionalCheckFailed"])
    with pytest.raises(txm.Cancelled) as err:
        _tx().run(race=Conflict("retry"))
    assert not err.value.lost_race and err.value.first_failed == "guard"


def test_other_errors_propagate_unchanged(cancel):
    cancel([], error="ValidationException")
    with pytest.raises(TransactWriteError):
        _tx().run({"guard": Conflict("never")})
