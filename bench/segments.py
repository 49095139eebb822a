"""Live segments: DynamoDB requests per customer change, time from a write to the
membership being visible, and a segment's initial build (rate, and as a ratio to only
reading the same customers back), at a given tenant size.

Setup. Starts the local stack in-process (``rapport.devstack.DevStack`` on the local
emulator, no seed; as bench/events.py), creates a tenant and seeds ``--customers``
customers directly in the table (BatchWriteItem, not timed, not counted): each
profile, and its ``METRICS`` item made by the same pure code maintenance uses
(``crm.segments.plan.measure``) from 0 to 5 synthetic orders' contributions; the catalogue
is marked backfilled (every customer has METRICS, as after a tenant's first build).
Only then do the pollers start (from the stream's end: the seed is not dispatched),
with the schedule ticker set to an hour and the queues short-polled every 0.2 s.

1. *Read back* (the baseline): page through gsi1 ``P METRICS``, the items a build
   reads, ``build.PAGE`` at a time, as the build does; ``--rounds`` rounds, median.
2. *First cut points*: the seed scored every customer by the default cut points, as
   maintenance does before the tenant's first ``cuts.recompute``; the bench runs it
   (from its own thread) and counts its requests per customer it rescored, and the
   handlers' requests the rescoring's writes caused.
3. *Initial build*: ``POST /v1/segments`` with a rule on net spend (about a fifth of
   the customers match), then wait until the segment is ``ready`` (the build runs on
   the ``sync`` queue through ``app.sync_work``, steps of at most the Lambda's time).
   Reported: customers per second, the ratio build time / read-back time, DynamoDB
   requests per customer, and whether ``member_count`` equals the members the seed
   implies.
4. *Customer changes*: a second segment (``tags contains bench-vip``) is built, then
   ``--changes`` customers get the tag (``PATCH /v1/customers/{id}``: one membership
   enters each) and as many change an attribute no rule reads (no membership
   changes). After each PATCH the bench polls the customer's ``METRICS`` (a
   consistent GetItem every 10 ms, from its own thread, not counted) until the
   membership is there: the time from the PATCH's answer to the membership being
   visible, median and p95, as multiples of the PATCH's own round trip (median, the
   baseline; the milliseconds of this run are printed too). Then it waits for the pipeline to be idle and counts the
   DynamoDB requests every event handler sent for that change (the API's own write is
   shown apart): target at most 2 + 1 per membership that changes.

Requests are counted as bench/events.py counts them (botocore hooks, keyed by the
component of the calling thread; the pollers' plumbing clients not counted). Times are
only ever reported as ratios or as latencies in this run, never checked.

    python3 -m uv run python bench/segments.py [--customers 2000] [--changes 20] [--rounds 3] [--skip-cuts]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.events import BENCH, ComponentCounter, LabelledHandlers, fmt_num
from bench.requests_per_operation import ServerCounter, free_port, start_emulator

TABLE = "rapport-bench-segments"
API = "api"
VIP_TAG = "bench-vip"
SCHEDULES_NEVER = 10**7  # seconds
CATEGORIES = ("apparel", "home", "beauty", "toys")
CHANNELS = ("web", "pos", "marketplace")


def start(counter: ComponentCounter, server_counter: ServerCounter) -> tuple[Any, Any, Any, bool]:
    moto, endpoint, cross_check = start_emulator(server_counter, TABLE, key_cache_seconds=3600)
    import boto3

    from infra.bootstrap import create_table
    from rapport.devstack import DevStack

    create_table(boto3.client("dynamodb"), TABLE)
    # the schedules never tick during a run: at 100,000 customers the hourly cut points
    # would rescore the tenant in the middle of a build and starve the API's requests
    stack = DevStack(free_port(), endpoint_url=endpoint, table=TABLE, seed=False, pollers=False,
                     schedule_seconds=SCHEDULES_NEVER)
    running = stack.start()
    return moto, stack, running, cross_check


def start_pipeline(stack: Any) -> Any:
    from rapport.pollers import QueuePoller

    pipeline = stack.start_pollers(starting_position="LATEST")
    if not pipeline.wait_started():
        raise SystemExit("the pollers did not start")
    for poller in pipeline.pollers:
        if isinstance(poller, QueuePoller):
            poller.wait_seconds = 0
    return pipeline


# --- seed --------------------------------------------------------------------------------


def seed(ctx: Any, customers: int, rng: random.Random, now: datetime) -> dict[str, int]:
    """Profiles and their METRICS, 25 items per BatchWriteItem; returns customer id ->
    net spend (what the bench's rules read)."""
    from crm import clock
    from crm.customers import service
    from crm.segments import plan
    from crm.storage import Item, MetricsItem, SegmentCatalogueItem

    at = clock.iso(now)
    catalogue = plan.Catalogue(currency="EUR")
    spend: dict[str, int] = {}
    with Item.batch_write() as batch:
        for n in range(customers):
            data = {"email": f"c{n}@bench.example", "first_name": f"C{n}", "tags": ["bench"],
                    "locale": "en-GB", "attributes": {"n": n}}
            profile = service.new_item(ctx, data, at)
            profile.version = 1
            contributions = {}
            for k in range(rng.choice((0, 0, 1, 1, 2, 3, 5))):
                placed = now - timedelta(days=rng.uniform(1, 700))
                contributions[f"o{n}x{k}"] = {
                    "at": clock.iso(placed), "cur": "EUR", "net": rng.randrange(500, 30000),
                    "ch": rng.choice(CHANNELS), "cat": sorted(rng.sample(CATEGORIES, 2)), "live": True,
                    "u": clock.iso(placed), "v": 1,
                }
            image = {"customer_id": profile.customer_id, "status": "active", "data": data, "created_at": at}
            measured = plan.measure(image, None, contributions, (), catalogue, {}, at)
            metrics = MetricsItem(
                ctx.key("C", profile.customer_id), "METRICS", customer_id=profile.customer_id,
                orders=measured.orders, agg=measured.agg, scores=measured.scores, facts=measured.facts,
                memberships={}, updated_at=at, version=1, gsi1pk=ctx.key("METRICS"), gsi1sk=profile.customer_id,
            )
            agg = measured.agg
            batch.save(profile)
            batch.save(metrics)
            spend[profile.customer_id] = int(agg.get("net_spend") or 0)
    SegmentCatalogueItem(ctx.prefix, "SEGMENTS", segments={}, currency="EUR", backfilled_at=at,
                         updated_at=at).save()
    return spend


# --- measures ----------------------------------------------------------------------------


def read_back(ctx: Any, rounds: int) -> tuple[float, int]:
    """Median seconds to page through every METRICS item on gsi1, the build's page size."""
    from crm.segments import build
    from crm.storage import MetricsItem

    times, count = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        count = sum(1 for _ in MetricsItem.gsi1.query(ctx.key("METRICS"), page_size=build.PAGE))
        times.append(time.perf_counter() - started)
    return statistics.median(times), count


def segment_state(ctx: Any, segment_id: str) -> Any:
    from crm.storage import SegmentItem

    return SegmentItem.get(ctx.key("SEG", segment_id), "SEGMENT", consistent_read=True)


def build_segment(http: Any, ctx: Any, pipeline: Any, name: str, rule: dict, timeout: float) -> tuple[str, float]:
    """POST the segment and wait until it is ready; the seconds it took."""
    started = time.perf_counter()
    r = http.post("/v1/segments", json={"name": name, "rule": rule})
    if r.status_code != 201:
        raise SystemExit(f"POST /v1/segments answered {r.status_code}: {r.text}")
    segment_id = r.json()["id"]
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if segment_state(ctx, segment_id).status == "ready":
            elapsed = time.perf_counter() - started
            if not pipeline.wait_idle(timeout=120):
                raise SystemExit("the event pipeline did not become idle")
            return segment_id, elapsed
        time.sleep(0.05)
    raise SystemExit(f"the segment {name!r} was not ready within {timeout:.0f} s")


def visible(ctx: Any, customer_id: str, segment_id: str, since: float, timeout: float = 60) -> float:
    """Seconds from ``since`` until the customer's METRICS holds the membership."""
    from crm.storage import MetricsItem

    while time.perf_counter() - since < timeout:
        item = MetricsItem.get(ctx.key("C", customer_id), "METRICS", consistent_read=True)
        if segment_id in (item.memberships or {}):
            return time.perf_counter() - since
        time.sleep(0.01)
    raise SystemExit(f"{customer_id} did not enter {segment_id} within {timeout} s")


def handlers_only(by: Counter[tuple[str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (who, op), n in by.items():
        if who not in (API, BENCH):
            out[op] += n
    return out


def by_handler(by: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    return Counter({key: n for key, n in by.items() if key[0] not in (API, BENCH)})


def fmt_handlers(by: Counter[tuple[str, str]], n: int) -> str:
    """``handler: requests`` per handler, per unit."""
    names = sorted({who for who, _ in by})
    return "; ".join(
        f"{who}: {fmt_num(Counter({op: c / n for (w, op), c in by.items() if w == who}))}" for who in names
    ) or "none"


def api_only(by: Counter[tuple[str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (who, op), n in by.items():
        if who == API:
            out[op] += n
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def per(counts: Counter[str], n: int) -> Counter[str]:
    return Counter({op: c / n for op, c in counts.items()})


def run(args: argparse.Namespace) -> None:
    import logging

    from rich.console import Console

    logging.getLogger("rapport.dev").setLevel(logging.WARNING)  # the local server's access log
    console = Console(width=160)
    counter, server_counter = ComponentCounter(), ServerCounter()
    counter.install()
    moto, stack, running, _ = start(counter, server_counter)
    logging.getLogger("rapport.dev").setLevel(logging.WARNING)  # the local server's access log (set by start)
    try:
        import httpx

        from crm import apikeys, tenants
        from crm.context import TenantContext
        from crm.storage import BillingItem

        tenant = tenants.create("Bench segments")
        ctx = TenantContext(tenant.id)
        BillingItem(ctx.prefix, "BILLING", plan="scale", status="active", updated_at="2026-01-01T00:00:00Z").save()
        key = apikeys.create(ctx, "bench", ["admin"]).secret
        rng = random.Random(12)
        now = datetime.now(UTC)
        seeded = time.perf_counter()
        spend = seed(ctx, args.customers, rng, now)
        console.print(f"seeded {args.customers} customers with METRICS in {time.perf_counter() - seeded:.1f} s "
                      "(not part of any figure)")

        baseline, read = read_back(ctx, args.rounds)
        pipeline = start_pipeline(stack)
        handlers = LabelledHandlers(pipeline)
        base = running.api_url.removesuffix("/v1")
        with httpx.Client(base_url=base, timeout=600, headers={"Authorization": f"Bearer {key}"}) as http:
            # 2. the tenant's first cut points (the seed scored everyone by the defaults)
            from crm.segments import cuts

            counter.take_all()
            handlers.take()
            recomputed: dict = {}
            cuts_took = 0.0
            cuts_own: Counter[str] = Counter()
            cuts_after: Counter[str] = Counter()
            if not args.skip_cuts:
                started = time.perf_counter()
                recomputed = cuts.recompute(ctx)
                cuts_took = time.perf_counter() - started
                if not pipeline.wait_idle(timeout=args.timeout):
                    raise SystemExit("the event pipeline did not become idle")
                by, _, _ = counter.take_all()
                cuts_own = Counter({op: c for (who, op), c in by.items() if who == BENCH})
                cuts_after = handlers_only(by)

            # 3. the initial build of a rule a fifth of the customers match
            ordered = sorted(spend.values())
            threshold = max(1, ordered[int(len(ordered) * 0.8)])
            expected = sum(1 for v in spend.values() if v >= threshold)
            counter.take_all()
            handlers.take()
            segment_id, took = build_segment(
                http, ctx, pipeline, "Big spenders",
                {"all": [{"field": "orders.net_spend", "op": ">=", "value": threshold}]}, args.timeout)
            by, _, _ = counter.take_all()
            built = segment_state(ctx, segment_id)
            build_requests = handlers_only(by)
            build_by = by_handler(by)

            # 4. changes: one membership enters, or none changes
            vip_id, _ = build_segment(http, ctx, pipeline, "Tagged VIP",
                                      {"all": [{"field": "tags", "op": "contains", "value": VIP_TAG}]}, args.timeout)
            ids = rng.sample(sorted(spend), min(len(spend), 2 * args.changes))
            entering, quiet = ids[: args.changes], ids[args.changes:]
            latencies: list[float] = []
            enter_counts: Counter[str] = Counter()
            enter_by: Counter[tuple[str, str]] = Counter()
            enter_api: Counter[str] = Counter()
            round_trips: list[float] = []
            for cid in entering:
                counter.take_all()
                sent = time.perf_counter()
                r = http.patch(f"/v1/customers/{cid}", json={"tags": ["bench", VIP_TAG]})
                answered = time.perf_counter()
                round_trips.append(answered - sent)
                if r.status_code != 200:
                    raise SystemExit(f"PATCH answered {r.status_code}: {r.text}")
                latencies.append(visible(ctx, cid, vip_id, answered))
                if not pipeline.wait_idle(timeout=120):
                    raise SystemExit("the event pipeline did not become idle")
                by, _, _ = counter.take_all()
                enter_counts.update(handlers_only(by))
                enter_by.update(by_handler(by))
                enter_api.update(api_only(by))
            quiet_counts: Counter[str] = Counter()
            quiet_by: Counter[tuple[str, str]] = Counter()
            for cid in quiet:
                counter.take_all()
                r = http.patch(f"/v1/customers/{cid}", json={"attributes": {"bench_note": "x"}})
                if r.status_code != 200:
                    raise SystemExit(f"PATCH answered {r.status_code}: {r.text}")
                if not pipeline.wait_idle(timeout=120):
                    raise SystemExit("the event pipeline did not become idle")
                by, _, _ = counter.take_all()
                quiet_counts.update(handlers_only(by))
                quiet_by.update(by_handler(by))
            vip = segment_state(ctx, vip_id)

        n = args.customers
        console.print()
        console.print(f"[b]Tenant of {n} customers[/b] ({sum(1 for v in spend.values() if v)} with orders)")
        console.print(f"read back (gsi1 P METRICS, {read} items, median of {args.rounds}): baseline 1.00")
        if args.skip_cuts:
            console.print("first cut points: not run (--skip-cuts)")
        else:
            moved = int(recomputed["rescored"])
            console.print(f"first cut points: {moved} of {n} customers rescored ({recomputed['busy']} left to the "
                          f"subscriber); time / read back = {cuts_took / baseline:.1f}; requests: "
                          f"{fmt_num(cuts_own)} (= {sum(cuts_own.values()) / max(1, moved):.2f} per rescored "
                          f"customer), then the handlers {fmt_num(cuts_after)}")
        console.print(f"initial build: {n / took:.0f} customers/s; build / read back = {took / baseline:.1f}; "
                      f"member_count {int(built.member_count)} (expected {expected}: "
                      f"{'exact' if int(built.member_count) == expected else 'WRONG'})")
        console.print(f"  DynamoDB requests per customer (event handlers): {fmt_num(per(build_requests, n))} "
                      f"= {sum(build_requests.values()) / n:.3f} ({fmt_handlers(build_by, n)})")
        k = len(entering)
        console.print(f"customer change entering one segment ({k} changes): handlers "
                      f"{fmt_num(per(enter_counts, k))} = {sum(enter_counts.values()) / k:.2f} per change "
                      f"(target <= 3); by handler: {fmt_handlers(enter_by, k)}; "
                      f"the API's own write: {fmt_num(per(enter_api, k))}")
        q = len(quiet)
        if q:
            console.print(f"customer change entering none ({q} changes): handlers "
                          f"{fmt_num(per(quiet_counts, q))} = {sum(quiet_counts.values()) / q:.2f} per change "
                          f"(target <= 2); by handler: {fmt_handlers(quiet_by, q)}")
        patch = statistics.median(round_trips)
        console.print(f"write -> membership visible ({k} changes): median {statistics.median(latencies) / patch:.1f}, "
                      f"p95 {p95(latencies) / patch:.1f} PATCH round trips (median, the baseline); in this run "
                      f"{statistics.median(latencies) * 1000:.0f} ms / {p95(latencies) * 1000:.0f} ms; "
                      f"segment count {int(vip.member_count)} (expected {k})")
    finally:
        stack.stop()
        moto.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2000, help="tenant size (default 2000)")
    parser.add_argument("--changes", type=int, default=20, help="customer changes of each kind (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="read-back rounds (default 3)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a build may take (default 3600)")
    parser.add_argument("--skip-cuts", action="store_true",
                        help="leave out stage 2, the first cut points (the longest stage at 100,000 customers)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
