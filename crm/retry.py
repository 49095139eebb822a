"""Re-read and retry a write that lost a race, with capped exponential backoff and full
jitter, so that many concurrent writers to one item all get through instead of most of
them being told to retry (only a request that sent If-Match asks to be told).

Bounded: at most ``MAX_ATTEMPTS`` attempts within ``BUDGET_SECONDS`` (well under API
Gateway's 29 s); a caller that runs out answers 409 ``transaction_conflict``. Every re-read
loop in crm/ and connectors/ uses it; what a cancelled transaction means is crm/tx.py's
(``Cancelled.lost_race``)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

MAX_ATTEMPTS = 40
BASE_SECONDS = 0.01
CAP_SECONDS = 0.5
BUDGET_SECONDS = 15.0


def backoff(
    max_attempts: int = MAX_ATTEMPTS,
    budget_seconds: float = BUDGET_SECONDS,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[int]:
    """Attempt numbers: 0 at once, each next one after a random wait of up to
    ``min(CAP_SECONDS, BASE_SECONDS * 2**n)``. Stops early rather than overrun the budget."""
    started = clock()
    for attempt in range(max_attempts):
        if attempt:
            delay = random.uniform(0, min(CAP_SECONDS, BASE_SECONDS * 2**attempt))
            if clock() - started + delay > budget_seconds:
                return
            sleep(delay)
        yield attempt
