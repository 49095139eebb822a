"""Rate limiting per tenant at its plan's requests per second, across Lambda containers,
at under 0.05 DynamoDB requests per API call (docs/performance.md, docs/limits.md).

Each container keeps a token bucket per tenant (capacity: one second of the plan's
rate). The containers share what they admit through the tenant's usage item: every
``FLUSH_EVERY`` admitted calls (or after ``MAX_AGE`` seconds with any pending) one
UpdateItem ADDs them to the month's ``api_calls`` and to the current ``WINDOW``-second
window's total ``rl#<window>``, and reads back the totals (ReturnValues ALL_NEW).
From it the container estimates the tenant's global rate over the last window (the
previous window weighted by the part of it still inside, as a sliding window) and its
own part of it; while the global rate is near the limit, the bucket refills at the
plan's rate times the container's share, so that N busy containers together admit
about the plan's rate. One write per 25 calls: 0.04 requests per call at most.

Tolerance: a container learns of the others only when it flushes, so per window the
tenant may get up to ``FLUSH_EVERY`` calls more per busy container than the limit, plus
the buckets' bursts (tests/integration/test_ratelimit.py measures it).

The alternative the issue names, API Gateway usage plans with a Lambda authorizer's
``usageIdentifierKey``, enforces per API key (not per tenant) in API Gateway's own
distributed, approximate token buckets at no DynamoDB cost, but needs a REST API (not
HTTP APIs or function URLs), one API Gateway API key per Rapport key kept in sync, a
usage plan per plan (moving a key between plans on every upgrade), an authorizer call
per request (cached) and its 429 has none of the RateLimit-* headers. See docs/limits.md.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

FLUSH_EVERY = 25  # admitted calls per tenant per container between two flushes
MAX_AGE = 300.0  # seconds: a quiet container still flushes what it has (the api_calls counter)
WINDOW = 10  # seconds: the shared totals' window
NEAR = 0.8  # scale down to the container's share once the global rate passes this share of the limit
MIN_SHARE = 0.05
MAX_BUCKETS = 50_000  # per container (tenants and source addresses); idle ones are dropped past it


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int  # requests per second
    remaining: int
    reset: int  # seconds until the bucket is full again
    retry_after: int = 0  # seconds (429 only)

    def headers(self) -> dict[str, str]:
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
            "RateLimit-Policy": f"{self.limit};w=1",
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out


@dataclass
class _Bucket:
    rate: float
    tokens: float
    at: float  # monotonic time of the last refill
    share: float = 1.0
    pending: int = 0  # admitted, not yet flushed
    flushed_at: float = 0.0
    born: float = 0.0  # a young bucket's estimate spans only its age, not the whole window
    windows: dict[int, int] = field(default_factory=dict)  # window -> this container's admitted
    globals: dict[int, int] = field(default_factory=dict)  # window -> the last global total seen
    written: set[int] = field(default_factory=set)  # windows this container ADDed to (removed later)


Store = Callable[[str, dict[str, int], tuple[str, ...], tuple[str, ...]], dict[str, int]]


def _dynamo_store(tenant_id: str, adds: dict[str, int], remove: tuple[str, ...], returns: tuple[str, ...]) -> dict:
    from crm.billing import usage

    return usage.update(tenant_id, adds, remove=remove, returns=returns)


def scale() -> float:
    """``RAPPORT_RATE_LIMIT_SCALE`` multiplies every plan's rate (load tests, the test
    suite); 1 in production."""
    import os

    return max(0.001, float(os.environ.get("RAPPORT_RATE_LIMIT_SCALE", "1") or 1))


class Limiter:
    """One per container (``limiter()``); tests make several to stand for containers."""

    def __init__(
        self,
        *,
        store: Store = _dynamo_store,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        flush_every: int = FLUSH_EVERY,
    ) -> None:
        self._store, self._wall, self._mono, self._flush_every = store, wall, monotonic, flush_every
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def pending(self, key: str) -> int:
        with self._lock:
            b = self._buckets.get(key)
            return b.pending if b is not None else 0

    def admit(self, key: str, rate: float, *, shared: bool = True) -> Decision:
        """Take one token for ``key`` (a tenant id; for unauthenticated routes a source
        address with ``shared=False``: local only, nothing written)."""
        rate = max(1.0, rate)
        now = self._mono()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._buckets = {k: v for k, v in self._buckets.items() if v.pending}  # idle ones go
                b = self._buckets[key] = _Bucket(rate, rate, now, flushed_at=now, born=now)
            elif b.rate != rate:  # the plan changed: the new rate, the counts kept
                b.rate, b.tokens = rate, min(b.tokens, rate)
            refill = rate * b.share
            b.tokens = min(rate, b.tokens + (now - b.at) * refill)
            b.at = now
            allowed = b.tokens >= 1.0
            if allowed:
                b.tokens -= 1.0
                if shared:
                    b.pending += 1
                    w = int(self._wall() // WINDOW)
                    b.windows[w] = b.windows.get(w, 0) + 1
            due = shared and b.pending and (b.pending >= self._flush_every or now - b.flushed_at >= MAX_AGE)
            decision = Decision(
                allowed,
                int(rate),
                int(b.tokens),
                math.ceil((rate - b.tokens) / refill) if b.tokens < rate else 0,
                0 if allowed else max(1, math.ceil((1.0 - b.tokens) / refill)),
            )
        if due:
            self.flush(key)
        return decision

    def flush(self, key: str) -> None:
        """Send the pending calls (1 UpdateItem) and rescale the bucket from the answer.
        A failed write keeps them pending (the next flush sends them)."""
        from crm.billing import usage

        with self._lock:
            b = self._buckets.get(key)
            if b is None or not b.pending:
                return
            n, b.pending, b.flushed_at = b.pending, 0, self._mono()
            wall = self._wall()
            w = int(wall // WINDOW)
            stale = tuple(sorted(f"rl#{x}" for x in b.written if x < w - 1))
            b.written = {x for x in b.written if x >= w - 1} | {w}
            for x in [x for x in b.windows if x < w - 1]:
                del b.windows[x]
        month = time.strftime("%Y-%m", time.gmtime(wall))
        adds = {usage.attr("api_calls", month): n, f"rl#{w}": n}
        try:
            got = self._store(key, adds, stale, (f"rl#{w}", f"rl#{w - 1}"))
        except Exception:  # noqa: BLE001 - counting must never fail a request
            with self._lock:
                b.pending += n
            return
        with self._lock:
            b.globals = {w: got.get(f"rl#{w}", 0), w - 1: got.get(f"rl#{w - 1}", 0)}
            frac = (wall % WINDOW) / WINDOW
            total = b.globals[w] + b.globals[w - 1] * (1 - frac)
            mine = b.windows.get(w, 0) + b.windows.get(w - 1, 0) * (1 - frac)
            span = max(1.0, min(float(WINDOW), self._mono() - b.born))
            if total / span > NEAR * b.rate and total > 0:
                b.share = max(MIN_SHARE, min(1.0, mine / total))
            else:
                b.share = 1.0


def pending(tenant_id: str) -> int:
    """Calls this container admitted for the tenant and has not flushed yet (GET /v1/billing
    adds them, so a tenant's own calls show at once; other containers' within 25 calls)."""
    return _limiter.pending(tenant_id) if _limiter is not None else 0


_limiter: Limiter | None = None
_ANON_RATE = 50.0  # per source address per container, for routes without an API key


def limiter() -> Limiter:
    global _limiter
    if _limiter is None:
        _limiter = Limiter()
    return _limiter


def check(tenant_id: str, plan_rate: int) -> Decision:
    """The API's call for an authenticated request."""
    return limiter().admit(tenant_id, plan_rate * scale())


def check_anonymous(source: str | None) -> Decision:
    """Routes without an API key (webhooks, the docs): a per-container bucket per source
    address, never shared (nothing is written; API Gateway's stage throttling bounds the
    total). Webhook senders retry a 429."""
    return limiter().admit(f"ip:{source or 'unknown'}", _ANON_RATE * scale(), shared=False)
