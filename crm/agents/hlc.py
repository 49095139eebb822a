"""The hybrid logical clock of the agent protocol: ``"<13-digit unix ms>-<5-digit counter>"``,
so string order is clock order. The cloud's time of a customer's field is the customer's
``updated_at`` in milliseconds, counter 0 (coarser than per field: a cloud value may look
newer than it is, never older)."""

from __future__ import annotations

import re
from datetime import datetime

from crm import clock

PATTERN = r"^[0-9]{13}-[0-9]{5}$"
HLC = re.compile(PATTERN)


def of_ms(ms: int, counter: int = 0) -> str:
    return f"{ms:013d}-{counter:05d}"


def of_time(moment: datetime) -> str:
    """A time as an HLC with counter 0."""
    return of_ms(int(moment.timestamp() * 1000))


def of_iso(iso: str) -> str:
    """A stored ISO time (``crm.clock.iso``) as an HLC with counter 0."""
    return of_time(clock.parse(iso))


def now() -> str:
    """The server's now: every answer to an agent carries it (``"hlc"``)."""
    return of_time(clock.now())
