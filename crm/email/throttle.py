"""Token buckets shared by every sending Lambda: the tenant's plan rate and the SES
account's send rate (docs/campaigns.md, "Throttling").

A bucket is one ``EmailRateItem`` (``EMAILRATE#<tenant id or ACCOUNT>`` / ``BUCKET``):
``tokens`` left at ``refilled_at`` (epoch ms), refilled at ``rate`` tokens a second up
to ``capacity`` (one second's worth: a burst never exceeds a second of the rate). A
batch takes up to N tokens from both buckets at once: 1 BatchGetItem reads them, the
refill is computed here (:func:`refill`, :func:`grant`: pure, unit-tested), and 1
TransactWriteItems writes both, each conditional on the ``refilled_at`` it read (an
optimistic lock: a concurrent taker makes it retry with fresh values, never overdraw).
What a batch cannot get is re-queued with a delay proportional to its deficit, with
jitter (:func:`retry_delay`), so a queue of parked batches does not wake at once.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass

ACCOUNT = "ACCOUNT"
SK = "BUCKET"
DEFAULT_ACCOUNT_RATE = 14.0  # SES's default sending rate out of the sandbox (emails/s)
MAX_TRIES = 5


def account_rate() -> float:
    """The SES account's send rate (``RAPPORT_SES_SEND_RATE``, default 14/s): the
    account's ``MaxSendRate`` (SES GetAccount), set by the deployment."""
    return max(0.001, float(os.environ.get("RAPPORT_SES_SEND_RATE") or DEFAULT_ACCOUNT_RATE))


# --- the math (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    tokens: float
    refilled_at: int  # epoch ms
    rate: float  # tokens per second

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate)  # one second's worth


def refill(bucket: Bucket, now_ms: int) -> Bucket:
    """The bucket at ``now_ms``: tokens added for the time elapsed, capped at capacity.
    A clock behind ``refilled_at`` (another Lambda's clock ahead) adds nothing."""
    elapsed = max(0, now_ms - bucket.refilled_at)
    tokens = min(bucket.capacity, bucket.tokens + elapsed * bucket.rate / 1000.0)
    return Bucket(tokens, max(now_ms, bucket.refilled_at), bucket.rate)


def grant(buckets: list[Bucket], wanted: int, now_ms: int) -> tuple[int, list[Bucket]]:
    """How many of ``wanted`` tokens every bucket can give now (the same number from
    each: a send needs one from each) and the buckets after taking them."""
    filled = [refill(b, now_ms) for b in buckets]
    n = max(0, min([wanted] + [math.floor(b.tokens + 1e-9) for b in filled]))
    return n, [Bucket(b.tokens - n, b.refilled_at, b.rate) for b in filled]


def deficit_seconds(buckets: list[Bucket], missing: int) -> float:
    """How long until ``missing`` more tokens exist in every bucket (after a grant)."""
    if missing <= 0:
        return 0.0
    return max((missing - max(0.0, b.tokens)) / b.rate for b in buckets)


def retry_delay(buckets: list[Bucket], missing: int, rng: random.Random | None = None) -> int:
    """SQS delay (whole seconds, 1..900) for a batch short of ``missing`` tokens: the
    deficit's time, plus up to as much again in jitter, so batches parked together
    spread out instead of all coming back in the same second (no thundering herd)."""
    base = deficit_seconds(buckets, missing)
    jitter = (rng or random).uniform(0, max(1.0, base))
    return max(1, min(900, math.ceil(base + jitter)))


# --- the buckets in DynamoDB -----------------------------------------------------------


def bucket_pk(name: str) -> str:
    return f"EMAILRATE#{name}"


def take(tenant_id: str, tenant_rate: float, wanted: int, now_ms: int | None = None) -> tuple[int, int]:
    """Take up to ``wanted`` tokens from the tenant's bucket and the account's: returns
    (granted, delay seconds for the rest; 0 when all were granted). 1 BatchGetItem +
    1 TransactWriteItems per try (a lost optimistic race retries, at most MAX_TRIES)."""
    from pynamodb.exceptions import TransactWriteError
    from pynamodb.transactions import TransactWrite

    from crm.storage import EmailRateItem, connection

    if wanted <= 0:
        return 0, 0
    names = [tenant_id, ACCOUNT]
    rates = {tenant_id: float(tenant_rate), ACCOUNT: account_rate()}
    for attempt in range(MAX_TRIES):
        at = now_ms if now_ms is not None else int(time.time() * 1000)
        found = {i.pk: i for i in EmailRateItem.batch_get([(bucket_pk(n), SK) for n in names], consistent_read=True)}
        buckets = []
        for n in names:
            item = found.get(bucket_pk(n))
            if item is None:  # a new bucket starts full
                buckets.append(Bucket(max(1.0, rates[n]), at, rates[n]))
            else:
                buckets.append(Bucket(float(item.tokens or 0), int(item.refilled_at or 0), rates[n]))
        n_granted, after = grant(buckets, wanted, at)
        if n_granted == 0:
            return 0, retry_delay(after, wanted)
        try:
            with TransactWrite(connection=connection()) as tx:
                for n, b in zip(names, after, strict=True):
                    item = found.get(bucket_pk(n))
                    cond = (
                        EmailRateItem.pk.does_not_exist()
                        if item is None
                        else EmailRateItem.refilled_at == int(item.refilled_at or 0)
                    )
                    if item is not None and int(item.refilled_at or 0) == b.refilled_at:
                        # same instant as the last taker: lock on the tokens as well
                        cond = cond & (EmailRateItem.tokens == item.tokens)
                    tx.save(
                        EmailRateItem(
                            bucket_pk(n), SK, tokens=round(b.tokens, 6), refilled_at=b.refilled_at, rate=b.rate
                        ),
                        condition=cond,
                    )
        except TransactWriteError as exc:
            if exc.cause_response_code != "TransactionCanceledException":
                raise
            time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
            continue
        missing = wanted - n_granted
        return n_granted, (retry_delay(after, missing) if missing else 0)
    return 0, 1  # contended: try again in a second
