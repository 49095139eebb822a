"""The hybrid logical clock of the agent protocol (/work contract, docs/agent.md).

An HLC is ``"<13-digit unix ms>-<5-digit counter>"``; string order is clock order. A local
event takes ``pt = max(last.pt, wall_ms)`` and counts up within one millisecond; a remote
time (every API answer's ``hlc``, a change's ``committed_at``, a fetched customer's
``updated_at``) only moves ``last`` forward. So an edit the agent sees after it has seen a
cloud value orders after that value, whatever the local wall clock says.

Pure: the store (outbox.py) persists ``last``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MAX_COUNTER = 99_999
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class HLC:
    pt: int  # physical time, unix milliseconds
    counter: int = 0

    def __str__(self) -> str:
        return f"{self.pt:013d}-{self.counter:05d}"

    @classmethod
    def parse(cls, value: str) -> HLC:
        pt, sep, counter = value.partition("-")
        if not sep or len(pt) != 13 or len(counter) != 5 or not pt.isdigit() or not counter.isdigit():
            raise ValueError(f"not an HLC (<13-digit ms>-<5-digit counter>): {value!r}")
        return cls(int(pt), int(counter))

    @classmethod
    def from_iso(cls, value: str) -> HLC:
        """A cloud time (``2026-03-01T10:00:00.123Z``) as an HLC with counter 0."""
        dt = datetime.fromisoformat(value)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return cls((dt - EPOCH) // timedelta(milliseconds=1))


ZERO = HLC(0, 0)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def tick(last: HLC, now_ms: int) -> HLC:
    """The time of a local event after ``last``."""
    pt = max(last.pt, now_ms)
    if pt == last.pt:
        if last.counter >= MAX_COUNTER:  # 100,000 events in one ms: borrow the next millisecond
            return HLC(pt + 1, 0)
        return HLC(pt, last.counter + 1)
    return HLC(pt, 0)


def observe(last: HLC, remote: HLC) -> HLC:
    """``last`` after seeing a remote time: the later of the two."""
    return max(last, remote)


def remote(value: str | None) -> HLC | None:
    """A remote time as an HLC: an HLC string or an ISO time; None for none or garbage
    (a bad value from the server never stops a sync, it just teaches the clock nothing)."""
    if not value:
        return None
    try:
        return HLC.parse(value) if "T" not in value else HLC.from_iso(value)
    except ValueError:
        return None
