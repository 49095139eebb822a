"""Token-bucket math (crm/email/throttle.py): refill, a batch's grant from two buckets,
the deficit's delay with jitter."""
from __future__ import annotations

import random

from crm.email.throttle import Bucket, deficit_seconds, grant, refill, retry_delay


def test_refill_adds_for_elapsed_time_up_to_one_second_of_rate():
    b = Bucket(tokens=0, refilled_at=1_000, rate=14)
    assert refill(b, 1_500).tokens == 7
    assert refill(b, 10_000).tokens == 14  # capacity: one second's worth
    assert refill(b, 500) == Bucket(0, 1_000, 14)  # a clock behind adds nothing, never goes back
    assert refill(Bucket(0.5, 0, 0.5), 3_000).tokens == 1  # slow rates still reach one token


def test_grant_takes_the_same_number_from_every_bucket():
    tenant, account = Bucket(10, 0, 10), Bucket(3, 0, 14)
    n, after = grant([tenant, account], 5, 0)
    assert n == 3 and [b.tokens for b in after] == [7, 0]
    n, after = grant(after, 5, 500)  # half a second later: account 7, tenant 10 (capped)
    assert n == 5 and [b.tokens for b in after] == [5, 2]
    n, _ = grant([Bucket(0.99, 0, 1)], 3, 0)
    assert n == 0


def test_the_sum_granted_never_exceeds_the_rate():
    b, at, total = [Bucket(14, 0, 14)], 0, 0
    rng = random.Random(1)
    for _ in range(2_000):
        at += rng.randint(0, 40)
        n, b = grant(b, rng.randint(1, 20), at)
        total += n
    seconds = at / 1000
    assert total <= 14 * seconds + 14  # the rate, plus the initial burst


def test_deficit_delay_is_proportional_with_jitter():
    after = [Bucket(0, 0, 10), Bucket(0, 0, 2)]
    assert deficit_seconds(after, 10) == 5.0  # the slower bucket decides
    delays = {retry_delay(after, 10, random.Random(seed)) for seed in range(50)}
    assert min(delays) >= 5 and max(delays) <= 10 and len(delays) > 3  # spread, not one instant
    assert retry_delay([Bucket(0, 0, 0.001)], 100, random.Random(0)) == 900  # SQS's maximum
    assert retry_delay([Bucket(0, 0, 1000)], 1, random.Random(0)) >= 1
