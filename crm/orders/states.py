"""The order state machine, written once (pure): which action moves an order from which
status to which, and what it stamps. The API's moves (crm/orders/service.py) and an
import's (crm/orders/imports.py: a new order built in the vendor's state, an existing
one brought forward to it) both ask this module, so they cannot disagree.

    placed --pay--> paid --fulfill--> fulfilled
    placed --cancel--> cancelled            (a paid order is refunded instead)
    paid | fulfilled | partially_refunded --refund--> partially_refunded | refunded
    an edit moves refunded <-> partially_refunded as the new total requires

Imports move forward only: a vendor state is reached by applying ``IMPORT_ORDER``'s
actions that it has and the order lacks; nothing is ever undone.
"""

from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("placed", "paid", "fulfilled", "cancelled", "partially_refunded", "refunded")
REFUNDABLE = ("paid", "fulfilled", "partially_refunded")


@dataclass(frozen=True)
class Move:
    action: str  # the API's verb: pay | fulfill | cancel | refund
    past: str  # how a vendor reports it: paid | fulfilled | cancelled | refunded
    sources: tuple[str, ...]  # the statuses it is allowed from
    target: str | None  # None: a refund's target depends on the amounts
    stamp: str | None  # the data field recording when (a refund keeps its own time)


MOVES = {
    m.action: m
    for m in (
        Move("pay", "paid", ("placed",), "paid", "paid_at"),
        Move("fulfill", "fulfilled", ("paid",), "fulfilled", "fulfilled_at"),
        Move("cancel", "cancelled", ("placed",), "cancelled", "cancelled_at"),
        Move("refund", "refunded", REFUNDABLE, None, None),
    )
}
IMPORT_ORDER = ("pay", "fulfill", "refund", "cancel")  # how an import brings an order forward


class IllegalMove(Exception):
    """``action`` is not allowed from ``status``; ``allowed`` lists where it is."""

    def __init__(self, action: str, status: str) -> None:
        super().__init__(f"cannot {action} an order that is {status}")
        self.action, self.status = action, status
        self.allowed = MOVES[action].sources


def after(action: str, status: str, *, refunded: int = 0, total: int = 0) -> str:
    """The status ``action`` leaves an order in; ``refunded`` is the refunded amount
    including this refund. Raises :class:`IllegalMove`."""
    move = MOVES[action]
    if status not in move.sources:
        raise IllegalMove(action, status)
    if move.target is None:
        return "refunded" if refunded == total else "partially_refunded"
    return move.target


def after_edit(status: str, refunded: int, total: int) -> str:
    """An edited total can reopen a fully refunded order or complete a partial one."""
    if status == "refunded" and refunded < total:
        return "partially_refunded"
    if status == "partially_refunded" and refunded == total:
        return "refunded"
    return status
