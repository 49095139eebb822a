"""UTC timestamps as ISO-8601 strings with a ``Z`` suffix (DESIGN: times are UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """Millisecond precision, so strings sort in time order and fit a sort key."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse(value: str) -> datetime:
    """The inverse of :func:`iso` (any ISO-8601 with ``Z`` or an offset)."""
    return datetime.fromisoformat(value)


def now_iso() -> str:
    return iso(now())
