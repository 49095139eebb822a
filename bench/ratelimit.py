"""DynamoDB requests per API call of the rate limiter (crm/billing/ratelimit.py), and how
close several containers keep a tenant to its limit.

    python3 -m uv run python bench/ratelimit.py

The limiter's shared counts go to the local emulator (rapport/emulator.py, in this
process); time is simulated (each workload's calls are spread over its duration on a
fake clock), so the figures are counts, never times. Requests are counted with
``ClientCounter`` (bench/requests_per_operation.py). The baseline, measured in the same
run on the same emulator: a shared counter per call (one UpdateItem per API call, what a
limiter that checks a global counter on every request costs); each workload's requests
per call are printed beside it as a ratio.
"""

from __future__ import annotations

import collections
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.requests_per_operation import ClientCounter, ServerCounter, start_emulator

TABLE = "rapport-bench-ratelimit"


def workload(name: str, tenants: int, containers: int, rate: int, calls_per_second: float, seconds: float,
             counter: ClientCounter, *, flush_every: int | None = None, burst: int = 1) -> dict:
    """``tenants`` each offered ``calls_per_second`` (in bursts of ``burst``) spread over
    ``containers`` round-robin, for ``seconds`` of simulated time."""
    from crm.billing.ratelimit import FLUSH_EVERY, WINDOW, Limiter

    clock = [0.0]
    base = 5_000_000 + hash(name) % 1000 * 100
    limiters = [Limiter(wall=lambda: base + clock[0], monotonic=lambda: clock[0],
                        flush_every=flush_every or FLUSH_EVERY) for _ in range(containers)]
    offered = admitted = 0
    per_window: collections.Counter[int] = collections.Counter()
    gap = burst / calls_per_second
    counter.take()
    n, t = 0, 0.0
    while t < seconds:
        for tenant in range(tenants):
            for _ in range(burst):
                clock[0] = t + tenant * gap / max(tenants, 1) / 2
                lim = limiters[n % containers]
                n += 1
                offered += 1
                if lim.admit(f"t{tenant:06d}{zlib.crc32(name.encode()) % 10**6:06d}", rate).allowed:  # a tenant id
                    admitted += 1
                    if tenant == 0:
                        per_window[int((base + clock[0]) // WINDOW)] += 1
        t += gap
    calls, _ = counter.take()
    requests = sum(calls.values())
    full = sorted(per_window)[1:-1] or sorted(per_window)
    return {"name": name, "calls": offered, "admitted": admitted, "requests": requests,
            "per_call": requests / offered, "window_max": max((per_window[w] for w in full), default=0),
            "limit_per_window": rate * WINDOW}


def main() -> None:
    counter, server = ClientCounter(), ServerCounter()
    counter.install()
    moto, _endpoint, _ = start_emulator(server, TABLE, key_cache_seconds=60)
    try:
        import boto3

        from infra.bootstrap import create_table

        create_table(boto3.client("dynamodb"), TABLE)
        baseline = workload("baseline: a shared counter per call", 1, 1, 10, 10, 60, counter, flush_every=1)
        rows = [
            workload("one tenant at its limit (free, 10/s), 1 container, 10 min", 1, 1, 10, 12, 600, counter),
            workload("one tenant at 2x its limit (starter, 50/s), 4 containers", 1, 4, 50, 100, 120, counter),
            workload("starter reference: 300,000 calls a month (1 per 8.6 s), 1 day", 1, 1, 50, 0.116, 86_400,
                     counter),
            workload("bursts of 100 calls every 10 minutes, 1 day", 1, 1, 200, 100 / 600, 86_400, counter,
                     burst=100),
            workload("50 tenants at 1 call/s each, 2 containers, 10 min", 50, 2, 10, 1, 600, counter),
        ]
    finally:
        moto.stop()
    b = baseline["per_call"]
    print(f"{'workload':66} {'calls':>8} {'requests':>9} {'per call':>9} {'x baseline':>10} "
          f"{'max/window':>10} {'limit':>6}")
    for r in [baseline, *rows]:
        print(f"{r['name']:66} {r['calls']:>8} {r['requests']:>9} {r['per_call']:>9.4f} "
              f"{r['per_call'] / b:>10.4f} {r['window_max']:>10} {r['limit_per_window']:>6}")
    total_calls = sum(r["calls"] for r in rows)
    total_requests = sum(r["requests"] for r in rows)
    print(f"\nall workloads: {total_requests} DynamoDB requests for {total_calls} API calls = "
          f"{total_requests / total_calls:.4f} per call ({total_requests / total_calls / b:.4f} x the baseline)")


if __name__ == "__main__":
    main()
