"""DynamoDB requests per API operation, counted through the real HTTP API.

Starts moto's server on a free loopback port and the Chalice app over HTTP (the
same in-process ``DevStack`` that ``rapport dev`` runs, without its event pollers),
then drives each operation with httpx and counts the DynamoDB requests the app sent
while serving it. What the event handlers send afterwards is bench/events.py's.

How requests are counted: botocore event hooks. A ``before-call.dynamodb`` and a
``before-send.dynamodb`` handler are added to ``botocore.handlers.BUILTIN_HANDLERS``
before any botocore session exists, so every session registers them: PynamoDB's
(it makes a fresh session for each ``Connection``, including the ones
``TransactWrite`` is given), boto3's default session (the idempotency store's
client) and any other. ``before-call`` fires once per API call, ``before-send``
once per HTTP attempt (so a retry would show as a difference). As a cross-check the
emulator's WSGI app is wrapped to count the requests it received: a request the
hooks missed makes the bench stop with an error instead of printing a low figure.

The emulator is the local stack's (``rapport.emulator.start``): moto with DynamoDB
requests serialized and cheap transaction rollbacks. What the app sends and what the
emulator answers are the same as with plain moto. Nothing here measures time.

    python3 -m uv run python bench/requests_per_operation.py
"""
from __future__ import annotations

import math
import os
import re
import socket
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TABLE = "rapport-bench"
DYNAMODB_TX_LIMIT = 100  # TransactWriteItems actions per request (AWS, since 2022-09)
BATCH_GET_LIMIT = 100  # BatchGetItem keys per request


# --- counting ----------------------------------------------------------------

class ClientCounter:
    """botocore event hooks on every session: API calls and HTTP attempts by operation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.sends: Counter[str] = Counter()

    def install(self) -> None:
        from botocore import handlers

        handlers.BUILTIN_HANDLERS.append(("before-call.dynamodb", self._on_call))
        handlers.BUILTIN_HANDLERS.append(("before-send.dynamodb", self._on_send))

    def _on_call(self, model: Any = None, **_: Any) -> None:
        with self._lock:
            self.calls[model.name] += 1

    def _on_send(self, event_name: str = "", **_: Any) -> None:
        with self._lock:
            self.sends[event_name.rsplit(".", 1)[-1]] += 1

    def take(self) -> tuple[Counter[str], Counter[str]]:
        with self._lock:
            calls, sends = self.calls, self.sends
            self.calls, self.sends = Counter(), Counter()
        return calls, sends


class ServerCounter:
    """WSGI middleware on the emulator: what actually arrived, by X-Amz-Target."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: Counter[str] = Counter()

    def wrap(self, app: Callable) -> Callable:
        def counted(environ: dict, start_response: Callable) -> Any:
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if target.startswith("DynamoDB_"):
                with self._lock:
                    self.ops[target.split(".", 1)[1]] += 1
            return app(environ, start_response)

        return counted

    def take(self) -> Counter[str]:
        with self._lock:
            ops, self.ops = self.ops, Counter()
        return ops


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fmt(counts: Counter[str] | dict[str, int]) -> str:
    parts = [f"{n} {op}" for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n]
    return " + ".join(parts) or "0"


def batch_minimum(records: int, items_per_record: int, guard_keys: int,
                  matched_profiles: int) -> Counter[str]:
    """The fewest requests a batch can take: guards and matched profiles read in
    BatchGetItems of 100 keys, and each record's items written atomically, i.e. whole
    records packed into TransactWriteItems of at most 100 items."""
    per_tx = DYNAMODB_TX_LIMIT // items_per_record
    return Counter({
        "BatchGetItem": math.ceil(guard_keys / BATCH_GET_LIMIT)
        + math.ceil(matched_profiles / BATCH_GET_LIMIT),
        "TransactWriteItems": math.ceil(records / per_tx),
    })


# --- the run -------------------------------------------------------------------

@dataclass
class Row:
    operation: str
    http: str
    counts: Counter[str]
    target: Counter[str] | None
    source: str  # where the target comes from
    note: str = ""
    retries: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        if self.total > sum(self.target.values()):
            return "ABOVE"
        return "met" if +self.counts == +self.target else "differs"


@dataclass
class Bench:
    http: Any
    clients: ClientCounter
    server: ServerCounter | None
    rows: list[Row] = field(default_factory=list)

    def measure(self, operation: str, method: str, path: str, *, expect: int,
                target: dict[str, int] | None, source: str, note: str = "",
                check: Callable[[Any], bool] | None = None, **kwargs: Any) -> Any:
        self.clients.take()
        if self.server:
            self.server.take()
        response = self.http.request(method, path, **kwargs)
        calls, sends = self.clients.take()
        if response.status_code != expect:
            raise SystemExit(f"{operation}: HTTP {response.status_code}, expected {expect}: "
                             f"{response.text[:500]}")
        if check is not None and not check(response.json()):
            raise SystemExit(f"{operation}: unexpected response (the count would not mean "
                             f"what the row says): {response.text[:500]}")
        if self.server:
            seen = self.server.take()
            if +seen != +sends:
                raise SystemExit(f"{operation}: the emulator received {fmt(seen)} but the "
                                 f"botocore hooks saw {fmt(sends)}: a client is not hooked")
        shown_path = re.sub(r"/(cus|ord)_[0-9A-Za-z]+", "/{id}", path.split("?")[0])
        self.rows.append(Row(operation, f"{method} {shown_path}", calls,
                             Counter(target) if target is not None else None, source, note,
                             retries=sum(sends.values()) - sum(calls.values())))
        return response


def start_emulator(server_counter: ServerCounter, table: str, key_cache_seconds: int) -> tuple[Any, str, bool]:
    """The local stack's moto (serializable transactions) on a free port, its WSGI app
    wrapped by ``server_counter`` when possible, and the process pointed at it. Before
    anything imports crm: PynamoDB reads the table name at class creation."""
    from rapport import emulator

    moto_port = free_port()
    moto = emulator.start(moto_port)
    wsgi = getattr(moto, "_server", None)
    cross_check = wsgi is not None and hasattr(wsgi, "app")
    if cross_check:
        wsgi.app = server_counter.wrap(wsgi.app)
    endpoint = f"http://127.0.0.1:{moto_port}"
    os.environ.update({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "RAPPORT_TABLE": table,
        "RAPPORT_KEY_CACHE_SECONDS": str(key_cache_seconds),
    })
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        os.environ.pop(name, None)
    return moto, endpoint, cross_check


def start(counter: ClientCounter, server_counter: ServerCounter):
    moto, endpoint, cross_check = start_emulator(server_counter, TABLE, key_cache_seconds=60)
    import boto3

    from infra.bootstrap import create_table
    from rapport.devstack import DevStack

    create_table(boto3.client("dynamodb"), TABLE)
    # Without the event pollers: a row counts what serving the request sent, not what the
    # event handlers (or the 5 s schedule) happened to send meanwhile (bench/events.py).
    stack = DevStack(free_port(), endpoint_url=endpoint, table=TABLE, seed=False, pollers=False)
    running = stack.start()
    return moto, stack, running, cross_check


def run(bench: Bench) -> None:  # noqa: PLR0915 - one scenario, read top to bottom
    from crm import apikeys

    m = bench.measure
    tx1 = {"TransactWriteItems": 1}
    read_then_tx = {"GetItem": 1, "TransactWriteItems": 1}

    # A request on another route first, so that only the row that says so pays for
    # the API-key lookup.
    bench.http.get("/v1/customers", params={"limit": 1})

    # -- create with uniqueness: profile + email guard + external-id guard + phone + tag
    ada = {"email": "ada@example.com", "phone": "+14155552671",
           "name": {"given": "Ada", "family": "Lovelace"},
           "external_ids": {"shop": "1001"}, "tags": ["vip"]}
    r = m("create (email + external id + phone + tag)", "POST", "/v1/customers", expect=201,
          target=tx1, source="issue", json=ada,
          note="5 items in one transaction: profile, 2 guards, 2 lookup entries")
    cid = r.json()["id"]
    m("create, duplicate email (409)", "POST", "/v1/customers", expect=409,
      target={"TransactWriteItems": 1, "GetItem": 1}, source="docstring",
      json={"email": "ADA@example.com"}, note="the GetItem reads the guard to name the holder")

    # -- get: the first request of a container pays the API-key lookup
    apikeys.clear_cache()
    m("get (cold API-key cache)", "GET", f"/v1/customers/{cid}", expect=200,
      target={"BatchGetItem": 2}, source="issue + auth",
      note="auth: 1 BatchGetItem (key + tenant), then cached 60 s")
    m("get (warm)", "GET", f"/v1/customers/{cid}", expect=200, target={"BatchGetItem": 1},
      source="issue", note="the profile and its segment METRICS (the metrics block)")

    # -- timeline: 30 events on one customer
    m("timeline add", "POST", f"/v1/customers/{cid}/events", expect=201, target=tx1,
      source="docstring", json={"type": "call.logged", "channel": "phone", "summary": "#1"},
      note="ConditionCheck (customer active) + Put")
    for i in range(2, 31):
        bench.http.post(f"/v1/customers/{cid}/events",
                        json={"type": "call.logged", "summary": f"#{i}"}).raise_for_status()
    m("timeline list (page of 25 of 30)", "GET", f"/v1/customers/{cid}/events", expect=200,
      target={"Query": 1}, source="docstring",
      check=lambda b: len(b["data"]) == 25 and b["next_cursor"])
    m("360 view (profile + 20 latest of 30 events)", "GET", f"/v1/customers/{cid}/360",
      expect=200, target={"Query": 1}, source="issue",
      check=lambda b: b["customer"]["id"] == cid and len(b["timeline"]) == 20)

    # -- batch upserts (the target is the minimum the 100-item transaction allows)
    simple = [{"email": f"bulk{i}@example.com"} for i in range(100)]
    m("batch upsert: 100 new (email)", "POST", "/v1/customers/batch", expect=200,
      target=batch_minimum(100, 2, 100, 0), source="issue (tx limit)",
      json={"records": simple}, check=lambda b: b["created"] == 100,
      note="2 items per record: 50 records per transaction")
    updates = [{"email": f"bulk{i}@example.com", "locale": "en-GB"} for i in range(100)]
    m("batch upsert: 100 updates (matched by email)", "POST", "/v1/customers/batch",
      expect=200, target=batch_minimum(100, 1, 100, 100), source="issue (tx limit)",
      json={"records": updates}, check=lambda b: b["updated"] == 100,
      note="guards, then profiles; 1 item per record (the profile, version-checked)")
    rich = [{"email": f"rich{i}@example.com", "external_ids": {"shop": f"r{i}"},
             "tags": ["bench"]} for i in range(100)]
    m("batch upsert: 100 new (email + external id + tag)", "POST", "/v1/customers/batch",
      expect=200, target=batch_minimum(100, 4, 200, 0), source="issue (tx limit)",
      json={"records": rich}, check=lambda b: b["created"] == 100,
      note="200 guard keys; 4 items per record: 25 records per transaction")

    # -- list pages (201 active customers by now)
    def full(b: dict) -> bool:
        return len(b["data"]) == 25 and bool(b["next_cursor"])

    r = m("list page (default: 25 by id)", "GET", "/v1/customers", expect=200,
          target={"Query": 1}, source="issue", check=full)
    m("list page 2 (cursor)", "GET", "/v1/customers", expect=200, target={"Query": 1},
      source="issue", params={"cursor": r.json()["next_cursor"]}, check=full)
    m("list page (updated_since)", "GET", "/v1/customers", expect=200, target={"Query": 1},
      source="issue", params={"updated_since": "2000-01-01T00:00:00Z"}, check=full)
    m("list page (by tag: 25 of 100)", "GET", "/v1/customers", expect=200,
      target={"Query": 1}, source="issue", params={"tag": "bench"}, check=full,
      note="tag entries hold only the customer id: + BatchGetItem of the profiles")

    # -- lookups
    def found(b: dict) -> bool:
        return [c["id"] for c in b["data"]] == [cid]

    m("lookup by email", "GET", "/v1/customers/lookup", expect=200, target={"GetItem": 2},
      source="docstring", params={"email": "ada@example.com"}, check=found,
      note="guard, then profile")
    m("lookup by phone", "GET", "/v1/customers/lookup", expect=200,
      target={"Query": 1, "GetItem": 1}, source="docstring",
      params={"phone": "+14155552671"}, check=found,
      note="1 match: GetItem; several: BatchGetItem")
    m("lookup by external id", "GET", "/v1/customers/lookup", expect=200,
      target={"GetItem": 2}, source="docstring",
      params={"source": "shop", "external_id": "1001"}, check=found,
      note="guard, then profile")

    # -- PATCH
    r = m("PATCH (name)", "PATCH", f"/v1/customers/{cid}", expect=200, target=read_then_tx,
          source="docstring", json={"name": {"given": "Augusta Ada"}})
    m("PATCH (new email, If-Match)", "PATCH", f"/v1/customers/{cid}", expect=200,
      target=read_then_tx, source="docstring", json={"email": "ada.lovelace@example.com"},
      headers={"If-Match": r.headers["ETag"]},
      note="one transaction: profile + delete old guard + put new guard")

    # -- Idempotency-Key (no target in the issue; see docs/performance.md)
    body, key = {"email": "grace@example.com"}, {"Idempotency-Key": "bench-1"}
    m("create with Idempotency-Key (first)", "POST", "/v1/customers", expect=201,
      target=None, source="-", json=body, headers=key,
      note="Powertools: claim (PutItem) + create + save the response (UpdateItem)")
    r = m("create with Idempotency-Key (replay)", "POST", "/v1/customers", expect=201,
          target=None, source="-", json=body, headers=key,
          note="the failed claim returns the stored response (ALL_OLD)")
    if r.headers.get("Idempotent-Replayed") != "true":
        raise SystemExit("the Idempotency-Key replay was not served from the store")

    # -- erase (the customer with 30 timeline events)
    m("erase (30 timeline events)", "DELETE", f"/v1/customers/{cid}", expect=200,
      target={"GetItem": 1, "TransactWriteItems": 1, "Query": 1, "BatchWriteItem": 2},
      source="docstring", check=lambda b: b["status"] == "erased",
      note="BatchWriteItem deletes 25 events per request")

    run_orders(bench)


ORDER_DAY0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def order_body(customer: dict, external_id: str, placed_at: datetime) -> dict:
    """A valid order: total = 2 * 1500 + 900 - 400 + 500 + 0 = 4000."""
    return {"customer": customer, "source": "shop", "external_id": external_id,
            "channel": "web", "currency": "EUR",
            "placed_at": placed_at.isoformat().replace("+00:00", "Z"),
            "lines": [{"sku": "TEE-1", "name": "Tee", "category": "apparel", "quantity": 2,
                       "unit_price": 1500},
                      {"sku": "MUG-1", "name": "Mug", "quantity": 1, "unit_price": 900}],
            "discount": 400, "shipping": 500, "tax": 0, "total": 4000}


def run_orders(bench: Bench) -> None:  # noqa: PLR0915 - one scenario, read top to bottom
    """Orders: a buyer with 30 timeline events and 30 orders (placed on 30 days at 09:00),
    another customer with 30 orders (same days, 15:00), and one without orders."""
    m, http = bench.measure, bench.http
    read_tx = {"GetItem": 1, "BatchGetItem": 1, "TransactWriteItems": 1}

    def customer(body: dict) -> str:
        r = http.post("/v1/customers", json=body)
        r.raise_for_status()
        return r.json()["id"]

    buyer = customer({"email": "buyer@example.com", "external_ids": {"shop": "c-1"}})
    other = customer({"email": "other.buyer@example.com"})
    no_orders = customer({"email": "no.orders@example.com"})
    for i in range(30):
        http.post(f"/v1/customers/{buyer}/events",
                  json={"type": "email.opened", "summary": f"#{i}"}).raise_for_status()

    def placed(day: int, hour: int) -> datetime:
        return ORDER_DAY0 + timedelta(days=day, hours=hour)

    ids: dict[str, list[str]] = {buyer: [], other: []}  # by placing time, oldest first
    for day in range(30):
        for who, hour in ((buyer, 9), (other, 15)):
            if who == buyer and day >= 27:
                continue  # the buyer's last three are the measured creates
            r = http.post("/v1/orders", json=order_body({"id": who}, f"{who}-{day}",
                                                        placed(day, hour)))
            if r.status_code != 201:
                raise SystemExit(f"order setup: HTTP {r.status_code}: {r.text[:500]}")
            ids[who].append(r.json()["id"])
    # The setup takes a while (each transaction copies moto's table once): refill the
    # API-key cache (60 s) so that no order row pays for authentication.
    from crm import apikeys

    apikeys.clear_cache()
    http.get("/v1/customers", params={"limit": 1}).raise_for_status()

    # -- create: by id, by email, by external id; then a repeat of the first
    def placed_for(ref: str) -> Callable[[dict], bool]:
        return lambda b: b["customer_id"] == buyer and b["status"] == "placed" \
            and b["total"] == 4000 and b["external_id"] == ref

    by_id = order_body({"id": buyer}, f"{buyer}-27", placed(27, 9))
    r = m("order create (customer by id)", "POST", "/v1/orders", expect=201,
          target={"BatchGetItem": 1, "TransactWriteItems": 1}, source="docstring",
          json=by_id, check=placed_for(f"{buyer}-27"),
          note="profile + recent orders read together; tx: guard, order, pointer, recent list")
    first = r.json()
    ids[buyer].append(first["id"])
    r = m("order create (customer by email)", "POST", "/v1/orders", expect=201,
          target={"GetItem": 1, "BatchGetItem": 1, "TransactWriteItems": 1}, source="docstring",
          json=order_body({"email": "buyer@example.com"}, f"{buyer}-28", placed(28, 9)),
          check=placed_for(f"{buyer}-28"), note="+ GetItem of the email guard")
    ids[buyer].append(r.json()["id"])
    r = m("order create (customer by external id)", "POST", "/v1/orders", expect=201,
          target={"GetItem": 1, "BatchGetItem": 1, "TransactWriteItems": 1}, source="docstring",
          json=order_body({"source": "shop", "external_id": "c-1"}, f"{buyer}-29",
                          placed(29, 9)),
          check=placed_for(f"{buyer}-29"), note="+ GetItem of the external-id guard")
    ids[buyer].append(r.json()["id"])
    m("order create, repeat of (source, external_id) (200)", "POST", "/v1/orders",
      expect=200, target=None, source="- (docstring: none)", json=by_id,
      check=lambda b: b == first,
      note="cancelled tx (guard exists), GetItem of the guard, then as GET: pointer + "
           "BatchGetItem")

    # -- get and lists (60 orders in the tenant, 30 of them the buyer's)
    newest = ids[buyer][-1]
    m("order get", "GET", f"/v1/orders/{newest}", expect=200,
      target={"GetItem": 2}, source="docstring",
      check=lambda b: b["id"] == newest and b["customer_id"] == buyer,
      note="pointer, then the order (both consistent)")

    everyone = sorted(ids[buyer] + ids[other], reverse=True)

    def page_of(expected: list[str], more: bool) -> Callable[[dict], bool]:
        return lambda b: [o["id"] for o in b["data"]] == expected \
            and bool(b["next_cursor"]) == more

    r = m("order list, tenant (25 of 60)", "GET", "/v1/orders", expect=200,
          target={"Query": 1}, source="docstring", check=page_of(everyone[:25], True),
          note="gsi1, newest first")
    m("order list, tenant page 2 (cursor)", "GET", "/v1/orders", expect=200,
      target={"Query": 1}, source="docstring",
      params={"cursor": r.json()["next_cursor"]}, check=page_of(everyone[25:50], True))
    since, before = placed(10, 0), placed(20, 0)
    window = [o for o in everyone if o in set(ids[buyer][10:20] + ids[other][10:20])]
    m("order list, tenant, placed_since + placed_before (20 of 60)", "GET", "/v1/orders",
      expect=200, target={"Query": 1}, source="docstring",
      params={"placed_since": since.isoformat(), "placed_before": before.isoformat()},
      check=page_of(window, False), note="order-id bounds from the dates: BETWEEN on gsi1sk")
    mine = sorted(ids[buyer], reverse=True)
    r = m("order list, by customer_id (25 of 30)", "GET", "/v1/orders", expect=200,
          target={"Query": 1}, source="docstring", params={"customer_id": buyer},
          check=page_of(mine[:25], True), note="the customer's partition, A#ORD#..., consistent")
    m("order list, by customer_id page 2 (cursor)", "GET", "/v1/orders", expect=200,
      target={"Query": 1}, source="docstring",
      params={"customer_id": buyer, "cursor": r.json()["next_cursor"]},
      check=page_of(mine[25:], False))
    m("order list, by customer_id + placed_since/before (10 of 30)", "GET", "/v1/orders",
      expect=200, target={"Query": 1}, source="docstring",
      params={"customer_id": buyer, "placed_since": since.isoformat(),
              "placed_before": before.isoformat()},
      check=page_of(sorted(ids[buyer][10:20], reverse=True), False))
    m("order list, by customer_id (customer with no orders)", "GET", "/v1/orders",
      expect=200, target={"Query": 1, "GetItem": 1}, source="docstring",
      params={"customer_id": no_orders}, check=page_of([], False),
      note="an empty first page reads the profile: 404 for an unknown customer")

    # -- lifecycle (the newest order and the one before it are in the recent list)
    def now_status(oid: str, status: str) -> Callable[[dict], bool]:
        return lambda b: b["id"] == oid and b["status"] == status

    m("order pay", "POST", f"/v1/orders/{newest}/pay", expect=200, target=read_tx,
      source="docstring (_load + 1 tx)", json={}, check=now_status(newest, "paid"),
      note="read as GET, then order + its summary in the recent list, version-checked")
    m("order fulfill", "POST", f"/v1/orders/{newest}/fulfill", expect=200, target=read_tx,
      source="docstring (_load + 1 tx)", json={}, check=now_status(newest, "fulfilled"))
    m("order refund (partial)", "POST", f"/v1/orders/{newest}/refunds", expect=200,
      target=read_tx, source="docstring (_load + 1 tx)",
      json={"amount": 1000, "reason": "damaged"},
      check=lambda b: now_status(newest, "partially_refunded")(b)
      and b["refunded_amount"] == 1000)
    second = ids[buyer][-2]
    m("order cancel", "POST", f"/v1/orders/{second}/cancel", expect=200, target=read_tx,
      source="docstring (_load + 1 tx)", json={"reason": "changed mind"},
      check=now_status(second, "cancelled"))
    oldest = ids[buyer][0]
    m("order cancel (not in the recent list)", "POST", f"/v1/orders/{oldest}/cancel",
      expect=200, target=read_tx, source="docstring (_load + 1 tx)", json={},
      check=now_status(oldest, "cancelled"), note="the transaction holds the order only")

    # -- the 360 view of the buyer: profile + 10 latest of 30 orders + 20 of 30 events
    def view(b: dict) -> bool:
        recent = b["recent_orders"]
        return (b["customer"]["id"] == buyer and len(b["timeline"]) == 20
                and [o["id"] for o in recent] == mine[:10]
                and recent[0]["status"] == "partially_refunded"
                and recent[0]["refunded_amount"] == 1000 and recent[1]["status"] == "cancelled")

    m("360 view (profile + 10 latest of 30 orders + 20 of 30 events)", "GET",
      f"/v1/customers/{buyer}/360", expect=200, target={"Query": 1}, source="docstring",
      check=view, note="PROFILE, ORDERS, then EV#...: Limit 22")


def print_table(rows: list[Row], cross_check: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    table = Table(title="DynamoDB requests per API operation (counted, not timed)")
    for name in ("operation", "HTTP", "DynamoDB requests", "n", "target", "source", "vs target",
                 "note"):
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(row.operation, row.http, fmt(row.counts), str(row.total),
                      fmt(row.target) if row.target is not None else "-", row.source,
                      row.verdict, row.note)
    console.print(table)
    retries = sum(r.retries for r in rows)
    console.print(f"HTTP retries seen (before-send minus before-call): {retries}")
    console.print("cross-check against the requests moto received: "
                  + ("every request was seen by the hooks" if cross_check else "unavailable"))
    above = [r for r in rows if r.verdict == "ABOVE"]
    if above:
        console.print()
        console.print("Above target: " + "; ".join(
            f"{r.operation}: {fmt(r.counts)} vs {fmt(r.target)}" for r in above))


def main() -> None:
    counter, server_counter = ClientCounter(), ServerCounter()
    counter.install()  # before any botocore session exists
    moto, stack, running, cross_check = start(counter, server_counter)
    try:
        import httpx

        from crm import apikeys, tenants
        from crm.context import TenantContext

        tenant = tenants.create("Bench")
        key = apikeys.create(TenantContext(tenant.id), "bench", ["admin"]).secret
        base = running.api_url.removesuffix("/v1")
        with httpx.Client(base_url=base, timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as http:
            bench = Bench(http, counter, server_counter if cross_check else None)
            run(bench)
        print_table(bench.rows, cross_check)
    finally:
        stack.stop()
        moto.stop()


if __name__ == "__main__":
    main()
