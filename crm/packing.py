"""Many records' writes packed into few TransactWriteItems (the sink writes a page at once).

A :class:`Unit` is what one or more records add to a transaction: ``size`` items, built
into the transaction only when it is sent (``build``), so a unit may depend on what the
transactions before it committed (an account's SUMMARY carried from one to the next).
DynamoDB allows one operation per item in a transaction, so units that write the same
item once per transaction (an account's SUMMARY, the condition check on its PROFILE) name
it as their ``key`` and never share a transaction. A cancelled transaction writes
nothing: its units are reported not committed and the caller writes their records again
one by one from fresh reads (the single-record paths, with their retries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from crm.tx import Cancelled, Tx

MAX_ITEMS = 100  # DynamoDB's limit of items per TransactWriteItems


@dataclass
class Unit:
    size: int
    build: Callable[[Tx], None]
    key: str | None = None  # an item the unit writes that no other unit of its transaction may
    members: list[Any] = field(default_factory=list)  # the caller's records, for its fallback


def pack(units: Iterable[Unit], limit: int = MAX_ITEMS) -> Iterator[list[Unit]]:
    """Consecutive units, at most ``limit`` items and no ``key`` twice per group (pure)."""
    group: list[Unit] = []
    size, keys = 0, set[str]()
    for unit in units:
        if group and (size + unit.size > limit or (unit.key is not None and unit.key in keys)):
            yield group
            group, size, keys = [], 0, set()
        group.append(unit)
        size += unit.size
        if unit.key is not None:
            keys.add(unit.key)
    if group:
        yield group


def run(units: Iterable[Unit], skip: Callable[[Unit], bool] = lambda u: False) -> Iterator[tuple[Unit, bool]]:
    """Send the packed transactions one after another; yields ``(unit, committed)`` for
    every unit of a transaction once it ran. ``skip`` is asked as each transaction is
    built (after the caller saw the previous one's outcome): a skipped unit is not sent
    and is reported not committed."""
    for group in pack(units):
        live = [u for u in group if not skip(u)]
        tx = Tx()
        for unit in live:
            unit.build(tx)
        ok = True
        if len(tx):
            try:
                tx.run()
            except Cancelled:
                ok = False
        for unit in group:
            yield unit, ok and any(unit is u for u in live)


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
