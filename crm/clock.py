"""UTC timestamps as ISO-8601 strings with a ``Z`` suffix (DESIGN: times are UTC).

The format is common/clock.py's (the connector SDK uses it too); ``now`` is defined
here so that patching ``crm.clock.now`` moves the domain's clock."""

from __future__ import annotations

from datetime import UTC, datetime

from common.clock import iso, parse

__all__ = ["iso", "now", "now_iso", "parse"]


def now() -> datetime:
    return datetime.now(UTC)


def now_iso() -> str:
    return iso(now())
