"""Events and loyalty: DynamoDB requests per order end to end, and what the stream
dispatcher costs in CPU per record, as a ratio against only decoding the records.

Part 1, requests per order (counted, not timed). Starts the local stack in-process
(``rapport.devstack.DevStack`` on the local emulator, no seed) with the pollers
``rapport dev`` runs: the table's stream to ``app.dispatch``, the subscriber queues to
``app.loyalty_events`` and ``app.timeline_events`` (which receives nothing since the
facts write their own timeline entries: crm/timeline.py). Creates a tenant, an admin key,
a loyalty program (``PUT /v1/loyalty/program``) and customers, then drives orders
through the HTTP API: placed, paid, refunded in part (each customer's first order;
after the payment, the messages it caused are sent to the queues once more, as SQS's
at-least-once delivery may), then placed, paid, fulfilled, refunded in part (the
second), the loyalty schedule (nothing due; then activating the pending points) and a
redemption. After each step it waits until the pipeline is idle
(``EventPipeline.wait_idle``) and attributes the DynamoDB requests of that step to
the component that sent them:

- ``api``: the Chalice app serving the HTTP request (the local server's threads);
- ``dispatch``, ``loyalty_events``, ``timeline_events``: the event handlers, which the
  pollers invoke in their own threads. Each poller's handler is wrapped so that its
  thread is labelled while the handler runs (and, for the stream, the Lambda-shaped
  records it was given are kept for part 2);
- ``schedule``: ``functions.loyalty.run_schedule`` (what ``app.loyalty_schedule``
  calls), invoked by the bench with an explicit ``now``: the pollers' own 5 s ticker
  is set to an hour here, so it never fires during the run.

Two settings differ from ``rapport dev``, neither changes what a handler sends: the
queue pollers short-poll every 0.2 s instead of long-polling for 1 s (so waiting for
an idle pipeline takes about 2 s a step rather than 5), and the API-key cache lasts an
hour (authentication is requests_per_operation.py's row, not paid by any step here).
How many records or messages share one invocation, and so the dispatcher's
SendMessageBatch count per order, depends on timing, locally as in Lambda.

DynamoDB requests are counted with ``ClientCounter`` / ``ServerCounter`` from
bench/requests_per_operation.py (botocore hooks on every session, cross-checked
against what the emulator received, per step); the subclass here also keys each
call by the component of the calling thread. The pollers' own clients stand in for
Lambda's event source mappings and are not counted: stream reads are DynamoDB
*Streams* requests (another botocore service, not hooked), and their SQS receives and
deletes are made with clients ``rapport.pollers.is_plumbing`` marks. SQS requests of
the functions (the dispatcher's SendMessageBatch) are counted with a spy on botocore's
``BaseClient._make_api_call`` that skips plumbing clients.

Part 2, dispatcher CPU (a ratio, never a time). The stream records the dispatcher
received in part 1 (every kind of item this scenario writes: orders, the order
guards, pointers and recent lists, ledger entries, points books with tier changes,
customers inserted and modified, timeline entries, idempotency records) are cycled
to ``--records`` records and, with the stack stopped, run through:

- the baseline: decoding only (boto3's ``TypeDeserializer`` over each record's
  NewImage and OldImage);
- ``functions.dispatch.events_of`` per record + ``route`` per batch of 100: the
  dispatcher's own work;
- ``functions.dispatch.handle`` per batch of 100 (Powertools' batch processor, the JSON
  encoding of the messages), with the SQS client replaced by a stub that counts
  (sending is I/O: counted, not timed).

CPU is ``time.thread_time()`` of the measuring thread (so the emulator's and the
pollers' threads never count, even if they were running), interleaved rounds, median.
Objects that exist before timing starts (and, in part 1, before the measured steps)
are frozen out of garbage collection (``gc.freeze``): the emulator's tables live in
this process and would otherwise make every full collection far costlier than in a
Lambda container.

The same clock, read around each handler invocation in the pollers' threads in part 1,
gives each handler's CPU per record or message there (including botocore's and
PynamoDB's work for its requests; not the emulator's, which answers in other threads,
nor the waits), shown as ratios to the same decoding baseline and to
``dispatch.handle`` per record. Indicative: it varies by about +-30 % between runs.

    python3 -m uv run python bench/events.py [--customers 5] [--records 2000] [--rounds 7]
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.requests_per_operation import (  # noqa: E402 - after the path is set
    ClientCounter,
    ServerCounter,
    fmt,
    free_port,
    order_body,
    start_emulator,
)

TABLE = "rapport-bench-events"
STREAM_BATCH = 100  # app.dispatch's batch_size

API, BENCH, SCHEDULE = "api", "bench", "schedule"
COMPONENTS = (API, "dispatch", "loyalty_events", "timeline_events", SCHEDULE)

# Tiers by 12-month spend in EUR cents: each customer's first paid order (40.00 EUR) makes
# them Bronze, the second paid order Silver (70.00 EUR after the first one's 10.00 refund),
# and the second refund takes them back to Bronze.
PROGRAM = {
    "earns_from": "2000-01-01T00:00:00Z",  # backdated orders earn (default: the program's creation)
    "currency": "EUR", "earn_rates": {"EUR": 1}, "rounding": "floor", "first_order_bonus": 100,
    "tier_basis": "spend",
    "tiers": [{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 7000,
                                                    "multiplier": 1.25}],
    "return_window_days": 14, "expiry_months": 12, "expiring_notice_days": 14,
}
REFUND = 1000
REDELIVERED = "1st order: paid, its messages delivered again"


# --- who sent it --------------------------------------------------------------------

_label = threading.local()


def component() -> str:
    """The component of the calling thread: a labelled handler, the bench's own thread,
    or else one of the local HTTP server's request threads (the API)."""
    name = getattr(_label, "name", None)
    if name:
        return name
    return BENCH if threading.current_thread() is threading.main_thread() else API


class ComponentCounter(ClientCounter):
    """requests_per_operation's hooks, with each API call also keyed by component."""

    def __init__(self) -> None:
        super().__init__()
        self.by_component: Counter[tuple[str, str]] = Counter()

    def _on_call(self, model: Any = None, **kwargs: Any) -> None:
        super()._on_call(model=model, **kwargs)
        with self._lock:
            self.by_component[(component(), model.name)] += 1

    def take_all(self) -> tuple[Counter[tuple[str, str]], Counter[str], Counter[str]]:
        with self._lock:
            by, self.by_component = self.by_component, Counter()
        calls, sends = self.take()
        return by, calls, sends


class SqsCounter:
    """SQS requests and messages sent by the functions (not by the pollers' plumbing),
    and any DynamoDB request a plumbing client made (there should be none)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.messages: Counter[tuple[str, str]] = Counter()  # (component, queue URL)
        self.sent: list[tuple[str, str]] = []  # (queue URL, body) of SendMessageBatch entries
        self.plumbing_dynamodb = 0

    def install(self) -> None:
        from botocore.client import BaseClient

        from rapport.pollers import is_plumbing

        original = BaseClient._make_api_call
        counter = self

        def counted(client: Any, operation_name: str, api_params: dict) -> Any:
            service = client.meta.service_model.service_name
            if service == "sqs" and not is_plumbing(client):
                with counter._lock:
                    who = component()
                    counter.requests[(who, operation_name)] += 1
                    entries = len(api_params.get("Entries", [])) if operation_name == "SendMessageBatch" \
                        else int(operation_name == "SendMessage")
                    if entries:
                        counter.messages[(who, api_params.get("QueueUrl", ""))] += entries
                    counter.sent.extend((api_params.get("QueueUrl", ""), e["MessageBody"])
                                        for e in api_params.get("Entries", []))
            elif service == "dynamodb" and is_plumbing(client):
                with counter._lock:
                    counter.plumbing_dynamodb += 1
            return original(client, operation_name, api_params)

        BaseClient._make_api_call = counted

    def take(self) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]], list[tuple[str, str]]]:
        with self._lock:
            requests, messages, sent = self.requests, self.messages, self.sent
            self.requests, self.messages, self.sent = Counter(), Counter(), []
        return requests, messages, sent


@dataclass
class HandlerStats:
    invocations: int = 0
    records: int = 0   # stream records or SQS messages (1 per scheduled event)
    cpu: float = 0.0   # time.thread_time() inside the handler, in its poller's thread


class LabelledHandlers:
    """Wrap each poller's handler: label the thread while it runs, count invocations
    and records, read its thread's CPU clock, keep the stream records it was given."""

    def __init__(self, pipeline: Any) -> None:
        from rapport.pollers import StreamPoller

        self._lock = threading.Lock()
        self.stats: dict[str, HandlerStats] = defaultdict(HandlerStats)
        self.step_records: list[dict] = []  # stream records since the last take()
        self.all_records: list[dict] = []   # every stream record of the run
        for poller in pipeline.pollers:
            if not hasattr(poller, "function_name"):  # the SES events double: AWS's work, no function
                continue
            poller.handler = self._wrap(poller.function_name, poller.handler,
                                        isinstance(poller, StreamPoller))

    def _wrap(self, name: str, inner: Callable, stream: bool) -> Callable:
        def handler(event: dict, context: Any) -> Any:
            records = event.get("Records")
            copies = json.loads(json.dumps(records)) if stream else None
            _label.name = name
            start = time.thread_time()
            try:
                return inner(event, context)
            finally:
                cpu = time.thread_time() - start
                _label.name = None
                with self._lock:
                    stats = self.stats[name]
                    stats.invocations += 1
                    stats.records += len(records) if records is not None else 1
                    stats.cpu += cpu
                    if copies is not None:
                        self.step_records.extend(copies)
                        self.all_records.extend(copies)

        return handler

    def take(self) -> tuple[dict[str, HandlerStats], list[dict]]:
        with self._lock:
            stats, records = dict(self.stats), self.step_records
            self.stats, self.step_records = defaultdict(HandlerStats), []
        return stats, records


def record_kind(record: dict) -> str:
    change = record.get("dynamodb") or {}
    image = change.get("NewImage") or change.get("OldImage") or {}
    if "kind" in image:
        return image["kind"]["S"]
    return "idempotency" if "#IDEM" in image.get("pk", {}).get("S", "") else "(no kind)"


# --- steps -----------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    per: int                    # the unit count the figures are divided by
    unit: str
    dynamodb: Counter[tuple[str, str]]
    sqs: Counter[tuple[str, str]]
    messages: Counter[str]      # by subscriber
    handlers: dict[str, HandlerStats]
    records: Counter[str]       # stream records delivered, by item kind
    events: Counter[str]        # domain events derived from them, by type
    fixed: Counter[tuple[str, str]] = field(default_factory=Counter)  # not divided (per run)
    sent: list[tuple[str, str]] = field(default_factory=list)  # (queue URL, body) the step sent

    def per_unit(self, who: str) -> Counter[str]:
        """Requests by operation for one unit, the fixed part left out."""
        counts = Counter({op: n - self.fixed[(c, op)] for (c, op), n in self.dynamodb.items()
                          if c == who})
        return Counter({op: n / self.per for op, n in counts.items() if n})

    def total_per_unit(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for who in COMPONENTS:
            out.update(self.per_unit(who))
        return out


def num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def fmt_num(counts: Counter[str]) -> str:
    parts = [f"{num(n)} {op}" for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n]
    return " + ".join(parts) or "0"


class Bench:
    def __init__(self, http: Any, stack: Any, counter: ComponentCounter, server: ServerCounter | None,
                 sqs: SqsCounter, handlers: LabelledHandlers) -> None:
        self.http, self.stack, self.counter, self.server = http, stack, counter, server
        self.sqs, self.handlers = sqs, handlers
        self.pipeline = stack.pipeline
        self.subscriber_of = {url: name for name, url in stack.queues.queues.items()}
        self.steps: list[Step] = []

    def idle(self) -> None:
        if not self.pipeline.wait_idle(timeout=120):
            raise SystemExit("the event pipeline did not become idle within 120 s")
        dead = sum(p.stats.dead_lettered + p.stats.errors + p.stats.failed for p in self.pipeline.pollers)
        if dead:
            raise SystemExit(f"a handler failed (errors, failed or dead-lettered records: {dead}); "
                             "the counts would not mean what they say")

    def reset(self) -> None:
        self.counter.take_all()
        if self.server:
            self.server.take()
        self.sqs.take()
        self.handlers.take()

    def step(self, name: str, per: int, unit: str, action: Callable[[], Any],
             fixed: Counter[tuple[str, str]] | None = None) -> Step:
        from functions.dispatch import events_of

        self.reset()
        action()
        self.idle()
        by, calls, sends = self.counter.take_all()
        if self.server:
            seen = self.server.take()
            if +seen != +sends:
                raise SystemExit(f"{name}: the emulator received {fmt(seen)} but the botocore hooks "
                                 f"saw {fmt(sends)}: a client is not hooked")
        if sum(sends.values()) != sum(calls.values()):
            raise SystemExit(f"{name}: {fmt(sends)} sent for {fmt(calls)} called: retries would "
                             "inflate the counts; run again")
        if any(c == BENCH for c, _ in by):
            raise SystemExit(f"{name}: the bench's own thread sent DynamoDB requests: {by}")
        requests, messages, sent = self.sqs.take()
        handlers, records = self.handlers.take()
        events = Counter(e["type"] for r in records for e in events_of(r))
        by_subscriber: Counter[str] = Counter()
        for (_, url), n in messages.items():
            by_subscriber[self.subscriber_of.get(url, url)] += n
        step = Step(name, per, unit, by, requests, by_subscriber, handlers,
                    Counter(record_kind(r) for r in records), events, fixed or Counter(), sent)
        self.steps.append(step)
        return step


# --- the scenario --------------------------------------------------------------------------


def scenario(bench: Bench, customers: int) -> None:  # noqa: PLR0915 - read top to bottom
    from crm import apikeys

    http = bench.http

    def ok(r: Any, expect: int = 200) -> dict:
        if r.status_code != expect:
            raise SystemExit(f"{r.request.method} {r.request.url.path}: HTTP {r.status_code}, "
                             f"expected {expect}: {r.text[:500]}")
        return r.json()

    # -- setup (not measured): the program, customers (created, then modified), and a
    # warm-up customer whose order goes through every step, so that every handler and
    # route has imported what it needs before anything is measured.
    ok(http.put("/v1/loyalty/program", json=PROGRAM), 201)
    ids = [ok(http.post("/v1/customers", json={"email": f"buyer{i}@example.com"}), 201)["id"]
           for i in range(customers)]
    warm = ok(http.post("/v1/customers", json={"email": "warm.up@example.com"}), 201)["id"]
    for cid in ids + [warm]:
        ok(http.patch(f"/v1/customers/{cid}", json={"name": {"given": "Bench"}}))
    placed = datetime.now(timezone.utc) - timedelta(hours=2)
    w = ok(http.post("/v1/orders", json=order_body({"id": warm}, "warm-1", placed)), 201)["id"]
    ok(http.post(f"/v1/orders/{w}/pay", json={}))
    ok(http.post(f"/v1/orders/{w}/fulfill", json={}))
    ok(http.post(f"/v1/orders/{w}/refunds", json={"amount": 4000}))  # all: no points left due
    ok(http.get(f"/v1/customers/{warm}/loyalty"))
    bench.idle()
    apikeys.clear_cache()
    http.get("/v1/customers", params={"limit": 1}).raise_for_status()  # the key, cached 1 h
    # Exempt what exists by now (imports, the emulator's state) from garbage collection,
    # so that a collection in a handler's thread costs about what it would in Lambda.
    gc.collect()
    gc.freeze()

    orders: dict[int, list[str]] = {1: [], 2: []}

    def place(round_: int) -> Callable[[], None]:
        def action() -> None:
            at = placed + timedelta(minutes=round_)
            for cid in ids:
                orders[round_].append(ok(http.post("/v1/orders", json=order_body(
                    {"id": cid}, f"{cid}-{round_}", at)), 201)["id"])
        return action

    def each(round_: int, verb: str, body: dict) -> Callable[[], None]:
        def action() -> None:
            for oid in orders[round_]:
                ok(http.post(f"/v1/orders/{oid}/{verb}", json=body))
        return action

    refund = {"amount": REFUND, "reason": "damaged"}
    n = customers
    bench.step("1st order: placed", n, "order", place(1))
    paid = bench.step("1st order: paid", n, "order", each(1, "pay", {}))

    def redeliver() -> None:
        """What SQS's at-least-once delivery can do: the paid step's messages again."""
        from rapport.pollers import plumbing_client

        sqs = plumbing_client("sqs")  # the bench's, not the functions': not counted
        for url, body in paid.sent:
            sqs.send_message(QueueUrl=url, MessageBody=body)

    bench.step(REDELIVERED, n, "order", redeliver)
    bench.step("1st order: refunded in part", n, "order", each(1, "refunds", refund))
    bench.step("2nd order: placed", n, "order", place(2))
    bench.step("2nd order: paid (-> Silver)", n, "order", each(2, "pay", {}))
    bench.step("2nd order: fulfilled", n, "order", each(2, "fulfill", {}))
    bench.step("2nd order: refunded in part (-> Bronze)", n, "order", each(2, "refunds", refund))

    from functions import loyalty

    due: dict[str, int] = {}

    def schedule(now: datetime) -> Callable[[], None]:
        def action() -> None:
            _label.name = SCHEDULE
            try:
                due.update(loyalty.run_schedule(now.strftime("%Y-%m-%dT%H:%M:%S.000Z")))
            finally:
                _label.name = None
        return action

    idle = bench.step("schedule run, nothing due", 1, "run", schedule(datetime.now(timezone.utc)))
    if due["customers"]:
        raise SystemExit(f"the first schedule run found {due['customers']} customers due; expected none")
    activation = datetime.now(timezone.utc) + timedelta(days=PROGRAM["return_window_days"] + 1)
    bench.step("schedule run, activating pending points", n, "due customer", schedule(activation),
               fixed=idle.dynamodb)  # per customer: the run's Queries left out
    if due["customers"] != n:
        raise SystemExit(f"the schedule found {due['customers']} customers due, expected {n}")

    def redeem() -> None:
        for i, cid in enumerate(ids):
            ok(http.post(f"/v1/customers/{cid}/loyalty/redemptions", json={"points": 20},
                         headers={"Idempotency-Key": f"bench-redeem-{i}"}), 201)

    bench.step("redemption (API, Idempotency-Key)", n, "redemption", redeem)


# --- printing part 1 -------------------------------------------------------------------------


def print_requests(console: Any, steps: list[Step]) -> None:
    from rich.table import Table

    table = Table(title="DynamoDB requests per unit, by component (counted, not timed)")
    for name in ("step", "per", "component", "DynamoDB requests", "n", "handled",
                 "SQS (functions)"):
        table.add_column(name, overflow="fold")
    for step in steps:
        first = True
        for who in COMPONENTS:
            counts = step.per_unit(who)
            stats = step.handlers.get(who)
            sqs = Counter({op: n / step.per for (c, op), n in step.sqs.items() if c == who})
            if not counts and not stats and not sqs:
                continue
            handled = "-"
            if stats:
                what = "records" if who == "dispatch" else "messages" if who != SCHEDULE else "runs"
                handled = f"{num(stats.records / step.per)} {what} / {num(stats.invocations / step.per)} inv."
            table.add_row(step.name if first else "", step.unit if first else "", who,
                          fmt_num(counts), num(sum(counts.values())), handled,
                          fmt_num(sqs) if sqs else "-")
            first = False
        total = step.total_per_unit()
        table.add_row("", "", "[b]total[/b]", f"[b]{fmt_num(total)}[/b]",
                      f"[b]{num(sum(total.values()))}[/b]", "", "", end_section=True)
    console.print(table)


IDEMPOTENCY = {"PutItem": 1, "UpdateItem": 1}  # Powertools: claim the id, then store the result
# What the docstrings say one event costs each subscriber. Neither keeps idempotency
# records (functions/consumer.py: only subscribers with outside effects do), and the
# timeline queue receives nothing: the entries are written in the facts' transactions.
PER_MESSAGE = {
    "loyalty_events": (Counter({"BatchGetItem": 1, "TransactWriteItems": 1}),
                       "apply_order: 1 BatchGetItem + 1 TransactWriteItems (the book changed, "
                       "with its timeline entries)"),
    "timeline_events": (Counter({"TransactWriteItems": 1}), "record_event: 1 TransactWriteItems"),
}
DUPLICATE = {"loyalty_events": (Counter({"BatchGetItem": 1}), "a duplicate: apply_order's read finds "
                                "nothing to do"),
             "timeline_events": (Counter({"TransactWriteItems": 1}), "a duplicate: the cancelled Put")}
# End to end, per order (issue 10): the API request and everything its events cause.
TARGETS = {"1st order placed + paid (earn path, new book)": 8,
           "1st order refunded in part (reversal path)": 6}


def verdict(counts: Counter[str], target: Counter[str]) -> str:
    if sum(counts.values()) > sum(target.values()):
        return "ABOVE"
    return "met" if +counts == +target else "differs"


def print_per_message(console: Any, steps: list[Step]) -> None:
    """What one SQS message (one domain event) costs each subscriber."""
    from rich.table import Table

    table = Table(title="Per domain event handled by a subscriber (DynamoDB requests / messages)")
    for name in ("step", "subscriber", "messages", "per message", "docstring", "vs docstring"):
        table.add_column(name, overflow="fold")
    for step in steps:
        for who in ("loyalty_events", "timeline_events"):
            stats = step.handlers.get(who)
            if not stats or not stats.records:
                continue
            counts = Counter({op: n / stats.records for (c, op), n in step.dynamodb.items() if c == who})
            target, source = PER_MESSAGE[who]
            if step.name == REDELIVERED:
                target, source = DUPLICATE[who]
            table.add_row(step.name, who, str(stats.records), fmt_num(counts), source,
                          verdict(counts, target))
    console.print(table)


def print_flow(console: Any, steps: list[Step]) -> None:
    from rich.table import Table

    table = Table(title="Stream records and domain events per unit")
    for name in ("step", "stream records (by item kind)", "domain events derived", "SQS messages"):
        table.add_column(name, overflow="fold")
    for step in steps:
        def listed(counts: Counter[str], total: bool = True) -> str:
            parts = ", ".join(f"{k} {num(v / step.per)}"
                              for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
            if not total or not counts:
                return parts or "0"
            return f"{num(sum(counts.values()) / step.per)}: {parts}"

        table.add_row(step.name, listed(step.records), listed(step.events),
                      listed(step.messages, total=False))
    console.print(table)


def print_summary(console: Any, steps: list[Step]) -> None:
    from rich.table import Table

    by_name = {s.name: s for s in steps}

    def total(*names: str, who: tuple[str, ...] = COMPONENTS) -> Counter[str]:
        out: Counter[str] = Counter()
        for name in names:
            for w in who:
                out.update(by_name[name].per_unit(w))
        return out

    from crm.loyalty.service import DUE_SHARDS

    events = tuple(c for c in COMPONENTS if c != API)
    tx = {"BatchGetItem": 1, "TransactWriteItems": 1}
    rows = [  # path, steps, the docstrings' count of the part they name (or None)
        ("1st order placed + paid (earn path, new book)", ("1st order: placed", "1st order: paid"), None),
        ("1st order paid: its messages delivered again (duplicates)", (REDELIVERED,), None),
        ("1st order refunded in part (reversal path)", ("1st order: refunded in part",), None),
        ("2nd order placed + paid (earn path, tier up)", ("2nd order: placed", "2nd order: paid (-> Silver)"),
         None),
        ("2nd order fulfilled", ("2nd order: fulfilled",), None),
        ("2nd order refunded in part (reversal path, tier down)",
         ("2nd order: refunded in part (-> Bronze)",), None),
        ("redemption", ("redemption (API, Idempotency-Key)",),
         (API, Counter({**tx, **IDEMPOTENCY}), "API: _change 1 BatchGetItem + 1 TransactWriteItems "
                                               "+ idempotency 2")),
        ("schedule, per due customer (activation)", ("schedule run, activating pending points",),
         (SCHEDULE, Counter({**tx, "GetItem": 1 / by_name["schedule run, activating pending points"].per}),
          "run_schedule: 1 BatchGetItem + 1 TransactWriteItems per customer, 1 GetItem per tenant")),
        ("schedule, per run (1 Query per shard)", ("schedule run, nothing due",),
         (SCHEDULE, Counter({"Query": DUE_SHARDS}), f"run_schedule: 1 Query per shard ({DUE_SHARDS})")),
    ]
    table = Table(title="End to end, per unit: the API request + everything its events cause")
    for name in ("path", "API", "events (dispatch + subscribers + schedule)", "total", "n",
                 "target (n)", "docstring", "vs docstring"):
        table.add_column(name, overflow="fold")
    for label, names, expected in rows:
        api, evt, all_ = total(*names, who=(API,)), total(*names, who=events), total(*names)
        check = ("-", "-")
        if expected is not None:
            who, target, source = expected
            check = (source, verdict(total(*names, who=(who,)), target))
        goal = TARGETS.get(label)
        met = "-" if goal is None else f"<= {goal}: " + ("met" if sum(all_.values()) <= goal else "ABOVE")
        table.add_row(label, fmt_num(api), fmt_num(evt), fmt_num(all_), num(sum(all_.values())), met,
                      *check)
    console.print(table)
    dispatched = sum(sum(s.per_unit("dispatch").values()) for s in steps)
    console.print(f"The dispatcher's own DynamoDB requests in every step: {num(dispatched)} "
                  "(its docstring: deriving is pure; it only sends to SQS).")


# --- part 2: dispatcher CPU -----------------------------------------------------------------


class _StubSqs:
    """Stands in for the SQS client in crm/queues.py: counts, sends nothing."""

    def __init__(self) -> None:
        self.requests = 0
        self.messages: Counter[str] = Counter()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:  # noqa: N803 - boto3's names
        self.requests += 1
        self.messages[QueueUrl] += len(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def _variants(sample: list[dict], stub: _StubSqs) -> dict[str, Callable[[], None]]:
    from boto3.dynamodb.types import TypeDeserializer

    from functions import dispatch

    deserializer = TypeDeserializer()
    batches = [sample[i:i + STREAM_BATCH] for i in range(0, len(sample), STREAM_BATCH)]

    def decode() -> None:
        for record in sample:
            change = record["dynamodb"]
            for key in ("OldImage", "NewImage"):
                if key in change:
                    deserializer.deserialize({"M": change[key]})

    def derive_route() -> None:
        for batch in batches:
            derived: list[dict] = []
            for record in batch:
                derived.extend(dispatch.events_of(record))
            dispatch.route(derived)

    def handle() -> None:
        for batch in batches:
            dispatch.handle({"Records": batch})

    return {"decode only (baseline)": decode, "events_of + route": derive_route,
            "dispatch.handle (SQS stubbed)": handle}


def _time(variants: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(rounds + 1):  # round 0 warms up and is dropped
        for name, run in variants.items():
            start = time.thread_time()
            run()
            elapsed = time.thread_time() - start
            if round_:
                samples[name].append(elapsed)
    return samples


def dispatcher_cpu(console: Any, records: list[dict], n: int, rounds: int,
                   live: dict[str, HandlerStats]) -> None:
    from rich.table import Table

    from crm import queues  # the SQS sender the dispatcher uses
    from functions import dispatch

    stub = _StubSqs()
    original_client = queues._client
    queues._client = lambda: stub  # the sends are counted, not timed
    # What exists now (the emulator's tables, part 1's leftovers) is exempted from garbage
    # collection, so that it does not make collections costlier than in a Lambda container.
    gc.collect()
    gc.freeze()
    try:
        sample = [records[i % len(records)] for i in range(n)]
        samples = _time(_variants(sample, stub), rounds)
        stub.requests, stub.messages = 0, Counter()
        _variants(sample, stub)["dispatch.handle (SQS stubbed)"]()  # once more, to count the sends
        derived = [e for r in sample for e in dispatch.events_of(r)]
        events = len(derived)
        routed = set().union(*dispatch.ROUTES.values())
        nowhere = Counter(e["type"] for e in derived if e["type"] not in routed)

        names = list(samples)
        base = statistics.median(samples[names[0]])
        table = Table(title=f"Dispatcher CPU per stream record / decoding it ({n} records from this run's "
                            f"stream, {len(records)} distinct; thread CPU, median of {rounds} rounds)")
        for col in ("work per record", "CPU ratio (median)", "per-round min-max",
                    "records/s/core vs decoding"):
            table.add_column(col)
        for name in names:
            ratio = statistics.median(samples[name]) / base
            per_round = [v / b for v, b in zip(samples[name], samples[names[0]], strict=True)]
            table.add_row(name, f"{ratio:.2f}x", f"{min(per_round):.2f}x - {max(per_round):.2f}x",
                          f"{1 / ratio:.2f}x")
        console.print(table)
        subscriber_of = {url: s for s, url in ((s, queues.url(s)) for s in queues.SUBSCRIBERS)}
        per100 = 100 / n
        console.print(
            f"Per 100 stream records (batches of {STREAM_BATCH}): {events * per100:.1f} domain events "
            f"derived ({sum(nowhere.values()) * per100:.1f} of them routed to no subscriber: "
            + ", ".join(f"{t} {c * per100:.1f}" for t, c in sorted(nowhere.items()))
            + "); SQS messages " + ", ".join(
                f"{subscriber_of.get(u, u)} {m * per100:.1f}" for u, m in sorted(stub.messages.items()))
            + f"; {stub.requests * per100:.1f} SendMessageBatch requests.")

        kinds: dict[str, list[dict]] = defaultdict(list)
        for record in records:
            kinds[f"{record_kind(record)} {record['eventName']}"].append(record)
        rows = []
        for kind, group in kinds.items():
            sub = group * math.ceil(300 / len(group))  # at least 300 records a timing
            variants = _variants(sub, stub)
            timed = _time({k: variants[k] for k in list(variants)[:2]}, rounds)
            b, m = (statistics.median(v) for v in timed.values())
            events_per = sum(len(dispatch.events_of(r)) for r in group) / len(group)
            rows.append((kind, len(group), events_per, m / b, m / len(sub) * len(group)))
        spent = sum(r[4] for r in rows)
        table = Table(title="By item kind and change (this run's stream): CPU of events_of + route / "
                            "decoding the same records, and each kind's share of the dispatcher's CPU")
        for col in ("records", "share of the records", "events per record", f"CPU ratio (median of {rounds})",
                    "share of events_of + route CPU"):
            table.add_column(col)
        for kind, count, events_per, ratio, cpu in sorted(rows, key=lambda r: -r[4]):
            table.add_row(kind, f"{count / len(records):.0%}", f"{events_per:.2f}", f"{ratio:.2f}x",
                          f"{cpu / spent:.0%}")
        console.print(table)
        idle = [r for r in rows if r[2] == 0]
        console.print(f"Records that derive no event: {sum(r[1] for r in idle) / len(records):.0%} of the "
                      f"records, {sum(r[4] for r in idle) / spent:.0%} of the events_of + route CPU "
                      f"({', '.join(r[0] for r in sorted(idle, key=lambda r: -r[4]))}).")

        # The handlers as they ran in part 1, on the same clock and baseline.
        decode_per_record = base / n
        handle_per_record = statistics.median(samples[names[2]]) / n
        table = Table(title="Handlers as the pollers ran them in part 1: thread CPU per record or message "
                            "(includes botocore's and PynamoDB's work for its requests, not the emulator's)")
        for col in ("handler", "invocations", "records or messages",
                    "/ decoding a record", "/ dispatch.handle per record (stubbed)"):
            table.add_column(col)
        for name in ("dispatch", "loyalty_events", "timeline_events"):
            stats = live.get(name)
            if stats and stats.records:
                per = stats.cpu / stats.records
                table.add_row(name, str(stats.invocations), str(stats.records),
                              f"{per / decode_per_record:.0f}x", f"{per / handle_per_record:.0f}x")
        console.print(table)
    finally:
        gc.unfreeze()
        queues._client = original_client


# --- main -------------------------------------------------------------------------------------


def start(counter: ComponentCounter, server_counter: ServerCounter) -> tuple[Any, Any, Any, bool]:
    # authentication is requests_per_operation's row: keys stay cached for the whole run
    moto, endpoint, cross_check = start_emulator(server_counter, TABLE, key_cache_seconds=3600)

    from rapport.devstack import DevStack

    # The pollers as `rapport dev` runs them, except the schedule ticker (the bench runs
    # the schedule itself, with an explicit time).
    stack = DevStack(free_port(), endpoint_url=endpoint, table=TABLE, seed=False,
                     schedule_seconds=3600)
    running = stack.start()
    # Short polls instead of 1 s long polls on the subscriber queues: messages are picked
    # up every 0.2 s and wait_idle() returns sooner; what the handlers send is the same.
    from rapport.pollers import QueuePoller

    for poller in stack.pipeline.pollers:
        if isinstance(poller, QueuePoller):
            poller.wait_seconds = 0
    return moto, stack, running, cross_check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=5,
                        help="customers, each with two orders (default 5)")
    parser.add_argument("--records", type=int, default=2000,
                        help="stream records for the dispatcher CPU ratio (default 2000)")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds (default 7)")
    args = parser.parse_args()

    from rich.console import Console

    console = Console(width=200)
    counter, server_counter, sqs = ComponentCounter(), ServerCounter(), SqsCounter()
    counter.install()  # before any botocore session exists
    sqs.install()
    moto, stack, running, cross_check = start(counter, server_counter)
    stopped = False
    try:
        handlers = LabelledHandlers(stack.pipeline)  # before anything is written
        import httpx

        from crm import apikeys, tenants
        from crm.context import TenantContext

        tenant = tenants.create("Bench events")
        key = apikeys.create(TenantContext(tenant.id), "bench", ["admin"]).secret
        base = running.api_url.removesuffix("/v1")
        with httpx.Client(base_url=base, timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as http:
            bench = Bench(http, stack, counter, server_counter if cross_check else None, sqs,
                          handlers)
            scenario(bench, args.customers)
        if sqs.plumbing_dynamodb:
            raise SystemExit(f"the pollers' plumbing clients sent {sqs.plumbing_dynamodb} DynamoDB "
                             "requests: they would be missing from the counts")
        live: dict[str, HandlerStats] = defaultdict(HandlerStats)
        for step in bench.steps:
            if step.name == REDELIVERED:
                continue  # first deliveries only: a duplicate is one failed claim
            for name, stats in step.handlers.items():
                live[name].invocations += stats.invocations
                live[name].records += stats.records
                live[name].cpu += stats.cpu
        records = list(handlers.all_records)
        stopped = True  # nothing runs in the background while part 2 measures
        stack.stop()
        moto.stop()

        console.print(f"[b]Part 1[/b]: {args.customers} customers with 2 orders each "
                      f"(every figure is per unit: per order, due customer, run or redemption)")
        print_requests(console, bench.steps)
        print_per_message(console, bench.steps)
        print_flow(console, bench.steps)
        print_summary(console, bench.steps)
        console.print("cross-check against the requests the emulator received, per step: "
                      + ("every request was seen by the hooks" if cross_check else "unavailable")
                      + "; HTTP retries: 0; handler failures: 0")
        console.print()
        console.print("[b]Part 2[/b]: dispatcher CPU")
        dispatcher_cpu(console, records, args.records, args.rounds, live)
    finally:
        if not stopped:
            stack.stop()
            moto.stop()


if __name__ == "__main__":
    main()
