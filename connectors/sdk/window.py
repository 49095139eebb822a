"""Incremental windows: a cursor with a lookback overlap, and exact de-duplication.

A run reads records updated at or after ``cursor - lookback`` (vendors index updates a
little late, and many records share the boundary second), so it re-reads the tail of
the previous run. ``seen`` remembers the ``(id, updated_at)`` of that tail and the run
skips exactly those, so nothing is lost at the boundary and nothing is written twice.

State (JSON, checkpointed after every page)::

    {"cursor": "...Z",          # every record updated before it was read
     "since": "...Z" | None,    # the window being read (None: from the beginning)
     "page": <vendor token> | None,  # where the window resumes after a crash or a pause
     "high": "...Z" | None,     # the latest updated_at read in this window
     "started": "...Z" | None,  # when this window's first page was asked for (our clock)
     "seen": {id: updated_at}}  # records read whose updated_at >= cursor - lookback

The cursor only moves when a window completes: vendors page in id order, not update
order, so a half-read window says nothing about which updates were read. And it never
passes the window's start: a record updated while the window was being read, behind the
page already read, has ``updated_at >= started``; a later record seen in the same window
may carry a much later stamp (a window can span several invocations), so ``high`` alone
would skip that update.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from common import clock

LOOKBACK = timedelta(minutes=5)
MAX_SEEN = 4_000  # ~200 KB of state at most; beyond it the idempotent writes still dedupe


class Window:
    def __init__(self, state: dict[str, Any] | None, *, backfill: bool = False, lookback: timedelta = LOOKBACK) -> None:
        s = dict(state or {})
        self.lookback = lookback
        self.cursor: str | None = s.get("cursor")
        self.seen: dict[str, str] = dict(s.get("seen") or {})
        if s.get("open") and s.get("page") is not None:
            # a window was interrupted: resume it where its checkpoint says
            self.since, self.page, self.high = s["since"], s.get("page"), s.get("high")
            self.started: str | None = s.get("started")
        else:
            self.page, self.high = None, None
            self.started = clock.now_iso()
            self.since = None if backfill or not self.cursor else clock.iso(clock.parse(self.cursor) - lookback)

    @property
    def resumed(self) -> bool:
        return self.page is not None

    def fresh(self, records: list[Any]) -> list[Any]:
        """The records not already read at the same update time."""
        out = []
        for r in records:
            key = getattr(r, "external_id", None)
            stamp = getattr(r, "updated_at", None)
            if key is not None and stamp is not None and self.seen.get(key) == stamp:
                continue
            out.append(r)
        return out

    def advance(self, records: list[Any], next_page: Any) -> dict[str, Any]:
        """Note a page as read; the returned state resumes after it."""
        for r in records:
            stamp = getattr(r, "updated_at", None)
            if stamp is None or getattr(r, "external_id", None) is None:
                continue
            stamp = clock.iso(clock.parse(stamp))
            self.seen[r.external_id] = r.updated_at
            if self.high is None or stamp > self.high:
                self.high = stamp
        self.page = next_page
        if next_page is None:
            self._close()
            return self.state()
        self._prune()
        return {**self.state(), "page": next_page, "open": True}

    def _floor(self) -> str | None:
        """The oldest update still needed: this window re-reads from ``since`` (the previous
        window's overlap), and the next one from its cursor (the earlier of the latest
        update read and when this window started) minus the lookback; the cursor only
        rises, so what is below both now is never needed again."""
        high = self.high
        if high is not None and self.started is not None and self.started < high:
            high = self.started
        if high is None or (self.cursor is not None and self.cursor > high):
            high = self.cursor
        floor = None if high is None else clock.iso(clock.parse(high) - self.lookback)
        if floor is not None and self.since is not None and self.since < floor:
            floor = self.since
        return floor

    def _prune(self) -> None:
        """Keep ``seen`` to the overlaps, so the checkpoint of a 10,000-record backfill stays
        small (DynamoDB items are at most 400 KB)."""
        floor = self._floor()
        if floor is not None:
            self.seen = {k: v for k, v in self.seen.items() if clock.iso(clock.parse(v)) >= floor}
        if len(self.seen) > MAX_SEEN:
            newest = sorted(self.seen.items(), key=lambda kv: clock.iso(clock.parse(kv[1])))[-MAX_SEEN:]
            self.seen = dict(newest)

    def _close(self) -> None:
        high = self.high
        if high is not None and self.started is not None and self.started < high:
            high = self.started
        if high is not None and (self.cursor is None or high > self.cursor):
            self.cursor = high
        self.high = self.since = None
        self._prune()
        self.started = None

    def state(self) -> dict[str, Any]:
        """A snapshot: reading the next page must not change a checkpoint already handed
        out (a run that fails after fetching a page saves the previous page's state; if
        ``seen`` were shared, it would hold the failed page's records and the resumed run
        would skip them as read)."""
        return {
            "cursor": self.cursor,
            "since": self.since,
            "page": self.page,
            "high": self.high,
            "started": self.started,
            "seen": dict(self.seen),
        }
