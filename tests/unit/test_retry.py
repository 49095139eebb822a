"""crm.retry: bounded attempts, growing jittered waits, a time budget."""
from __future__ import annotations

from crm import retry


def test_backoff_is_bounded_and_waits_grow_within_the_cap():
    waits: list[float] = []
    now = [0.0]

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    attempts = list(retry.backoff(10, 1000, sleep=sleep, clock=lambda: now[0]))
    assert attempts == list(range(10)) and len(waits) == 9
    assert all(0 <= w <= min(retry.CAP_SECONDS, retry.BASE_SECONDS * 2 ** (i + 1)) for i, w in enumerate(waits))


def test_backoff_stops_before_its_budget():
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    list(retry.backoff(10_000, 2.0, sleep=sleep, clock=lambda: now[0]))
    assert now[0] <= 2.0

