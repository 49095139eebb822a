"""What a tenant costs to run: a plan's reference workload x the request counts the
benches measure x AWS list prices -> line items. Pure (no I/O, no AWS): bench/cost.py
measures the counts and prints; tests/unit/test_cost_model.py checks the arithmetic.

Every price is us-east-1, on-demand, without free tiers (a free tier is per account, not
per tenant). Sources and the date they were checked are in docs/cost.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

Gateway = Literal["rest", "http", "function_url"]
LAMBDA_FULL_VCPU_MB = 1769  # Lambda gives one full vCPU at 1,769 MB, proportionally less below


@dataclass(frozen=True)
class Prices:
    """USD, us-east-1, on-demand list prices (checked 2026-12-01; docs/cost.md)."""

    api_rest_per_million: float = 3.50       # API Gateway REST API, first 333 M a month
    api_http_per_million: float = 1.00       # API Gateway HTTP API, first 300 M a month
    lambda_per_million: float = 0.20         # Lambda requests (invocations)
    lambda_gb_second: float = 0.0000166667   # Lambda duration, x86
    dynamodb_wru_per_million: float = 0.625  # on-demand write request units (since 2024-11)
    dynamodb_rru_per_million: float = 0.125  # on-demand read request units
    dynamodb_gb_month: float = 0.25          # table + index storage (Standard table class)
    streams_rru_per_100k: float = 0.02       # GetRecords; free when read by a Lambda trigger
    sqs_per_million: float = 0.40            # standard queue requests (per 64 KB chunk)
    ses_per_1000: float = 0.10               # outbound email
    kms_per_10k: float = 0.03                # symmetric key requests
    s3_put_per_1000: float = 0.005           # PUT, COPY, POST, LIST
    s3_get_per_1000: float = 0.0004          # GET and others


@dataclass(frozen=True)
class Workload:
    """A tenant-month of one plan: what is stored and what happens."""

    plan: str
    customers: int          # stored all month
    orders: int             # placed, paid and fulfilled through the API this month
    emails: int             # sent this month
    api_calls: int          # every other API call this month (the measured mix)
    sync_runs: int = 0      # scheduled connector runs (1 KMS Decrypt each for the sealed secrets)
    uploads: int = 0        # CSV uploads, each with its run (S3 requests)
    order_months_stored: int = 12  # how many months of orders the table holds
    note: str = ""


@dataclass(frozen=True)
class PerUnit:
    """Measured counts for one unit of work (an API call of the mix, or one order's
    three API calls + everything its events cause)."""

    api_requests: float = 0.0        # HTTP requests through the gateway
    rru: float = 0.0                 # DynamoDB read request units
    wru: float = 0.0                 # DynamoDB write request units (GSI writes included)
    dynamodb_requests: float = 0.0   # requests (for the I/O part of the duration)
    lambda_invocations: float = 0.0  # API + event handlers
    lambda_cpu_seconds: float = 0.0  # handler thread CPU, measured on one full core
    stream_records: float = 0.0      # DynamoDB stream records (read by Lambda triggers)
    sqs_requests: float = 0.0        # sends + the event source mapping's receives/deletes

    def __add__(self, other: PerUnit) -> PerUnit:
        return PerUnit(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})

    def scaled(self, by: float) -> PerUnit:
        return PerUnit(**{k: getattr(self, k) * by for k in self.__dataclass_fields__})


@dataclass(frozen=True)
class Measured:
    api_call: PerUnit                  # one call of the mix (weighted average)
    order: PerUnit                     # one order: placed + paid + fulfilled, events included
    bytes_per_customer: float          # stored, with its guards, search entries, GSI copies
    bytes_per_order: float             # stored: order, pointer, guard, timeline, ledger, GSI copies
    sync_run: PerUnit = PerUnit()      # one connector run's own cost (no API call)
    kms_per_sync_run: float = 1.0      # connectors/connections.py config_of: <= 1 Decrypt per run
    s3_puts_per_upload: float = 1.0    # the client's presigned PUT (+ any PUT-class request)
    s3_gets_per_upload: float = 1.0    # GET-class requests (HeadObject, GetObject)


@dataclass(frozen=True)
class Settings:
    memory_mb: int = 1024              # .chalice/config.json (prod stage)
    io_ms_per_request: float = 5.0     # assumed DynamoDB/SQS latency, counted in the duration
    gateway: Gateway = "rest"          # what Chalice deploys today
    rate_limit_requests_per_call: float = 0.04  # the rate limiter's bound: 1 UpdateItem per 25 calls


@dataclass(frozen=True)
class LineItem:
    name: str
    quantity: float
    unit: str
    dollars: float
    how: str = ""


@dataclass
class Bill:
    plan: str
    items: list[LineItem] = field(default_factory=list)
    price: float = 0.0     # what the plan charges for the workload, USD

    @property
    def total(self) -> float:
        return sum(i.dollars for i in self.items)

    @property
    def biggest(self) -> LineItem:
        return max(self.items, key=lambda i: i.dollars)

    def item(self, name: str) -> LineItem:
        return next(i for i in self.items if i.name == name)


def lambda_seconds_per_invocation(cpu_seconds: float, dynamodb_requests: float, settings: Settings) -> float:
    """Billed duration of one invocation: the measured CPU stretched to the configured
    memory's share of a vCPU, plus the assumed latency of each request it waits for,
    rounded up to the next millisecond as Lambda bills."""
    stretch = max(1.0, LAMBDA_FULL_VCPU_MB / settings.memory_mb)
    seconds = cpu_seconds * stretch + dynamodb_requests * settings.io_ms_per_request / 1000
    return math.ceil(seconds * 1000) / 1000


def plan_price(plan: dict, workload: Workload) -> float:
    """USD a month: the flat price, plus the metered part (e.g. scale: per 1,000 customers)."""
    price = plan.get("monthly_price", 0) / 100
    metered = plan.get("metered")
    if metered and metered.get("unit") == "customers":
        price += math.ceil(workload.customers / metered["per"]) * metered["unit_price"] / 100
    return price


def bill(workload: Workload, measured: Measured, prices: Prices = Prices(),
         settings: Settings = Settings(), price: float = 0.0) -> Bill:
    """Line items for one tenant-month. Quantities are workload x measured per-unit counts."""
    usage = (measured.api_call.scaled(workload.api_calls) + measured.order.scaled(workload.orders)
             + measured.sync_run.scaled(workload.sync_runs + workload.uploads))
    out = Bill(workload.plan, price=price)
    add = out.items.append

    calls = usage.api_requests
    if settings.gateway == "rest":
        add(LineItem("API Gateway (REST)", calls, "calls", calls / 1e6 * prices.api_rest_per_million,
                     f"${prices.api_rest_per_million}/M calls"))
    elif settings.gateway == "http":
        add(LineItem("API Gateway (HTTP API)", calls, "calls", calls / 1e6 * prices.api_http_per_million,
                     f"${prices.api_http_per_million}/M calls"))
    else:
        add(LineItem("Lambda function URL", calls, "calls", 0.0, "no charge beyond Lambda's"))

    invocations = usage.lambda_invocations
    add(LineItem("Lambda requests", invocations, "invocations",
                 invocations / 1e6 * prices.lambda_per_million, f"${prices.lambda_per_million}/M"))
    per_inv = lambda_seconds_per_invocation(
        usage.lambda_cpu_seconds / invocations if invocations else 0.0,
        usage.dynamodb_requests / invocations if invocations else 0.0, settings)
    gb_s = invocations * per_inv * settings.memory_mb / 1024
    add(LineItem("Lambda duration", gb_s, "GB-s", gb_s * prices.lambda_gb_second,
                 f"{per_inv * 1000:.0f} ms x {settings.memory_mb} MB per invocation"))

    add(LineItem("DynamoDB writes", usage.wru, "WRU", usage.wru / 1e6 * prices.dynamodb_wru_per_million,
                 f"${prices.dynamodb_wru_per_million}/M WRU"))
    add(LineItem("DynamoDB reads", usage.rru, "RRU", usage.rru / 1e6 * prices.dynamodb_rru_per_million,
                 f"${prices.dynamodb_rru_per_million}/M RRU"))
    limiter = (workload.api_calls * measured.api_call.api_requests
               + workload.orders * measured.order.api_requests) * settings.rate_limit_requests_per_call
    add(LineItem("DynamoDB rate limit + usage counters", limiter, "WRU",
                 limiter / 1e6 * prices.dynamodb_wru_per_million,
                 f"{settings.rate_limit_requests_per_call} writes per call (rate limiter)"))
    stored_gb = (workload.customers * measured.bytes_per_customer
                 + workload.orders * workload.order_months_stored * measured.bytes_per_order) / 1e9
    add(LineItem("DynamoDB storage", stored_gb, "GB-month", stored_gb * prices.dynamodb_gb_month,
                 f"{workload.order_months_stored} months of orders"))
    add(LineItem("DynamoDB Streams", usage.stream_records, "records", 0.0,
                 "read by Lambda triggers: no GetRecords charge"))

    add(LineItem("SQS", usage.sqs_requests, "requests", usage.sqs_requests / 1e6 * prices.sqs_per_million,
                 f"${prices.sqs_per_million}/M"))
    add(LineItem("SES", workload.emails, "emails", workload.emails / 1000 * prices.ses_per_1000,
                 f"${prices.ses_per_1000}/1,000"))
    kms = workload.sync_runs * measured.kms_per_sync_run
    add(LineItem("KMS", kms, "requests", kms / 1e4 * prices.kms_per_10k, f"${prices.kms_per_10k}/10k"))
    puts, gets = workload.uploads * measured.s3_puts_per_upload, workload.uploads * measured.s3_gets_per_upload
    add(LineItem("S3 requests", puts + gets, "requests",
                 puts / 1000 * prices.s3_put_per_1000 + gets / 1000 * prices.s3_get_per_1000,
                 "PUT + GET per upload"))
    return out


def with_gateway(settings: Settings, gateway: Gateway) -> Settings:
    return replace(settings, gateway=gateway)


# --- DynamoDB item sizes (for request units and storage) ------------------------------------


def value_size(value: dict) -> int:
    """Bytes of one attribute value in DynamoDB's low-level JSON, as DynamoDB sizes it:
    strings and binaries by length, numbers ~1 byte per 2 digits + 1, 1 byte for a
    boolean or null, 3 bytes + contents for a list or map."""
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "B":
        return len(v) if isinstance(v, (bytes, bytearray)) else len(v.encode())
    if kind == "N":
        digits = v.lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS"):
        return sum(value_size({kind[0]: x}) for x in v)
    if kind == "NS":
        return sum(value_size({"N": x}) for x in v)
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(x) for k, x in v.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict) -> int:
    """Bytes of an item: attribute names + values."""
    return sum(len(k.encode()) + value_size(v) for k, v in item.items())


def read_units(size: int, consistent: bool) -> float:
    """RRU of reading ``size`` bytes: 4 KB a unit, half for an eventually consistent read."""
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


def write_units(size: int, transactional: bool = False) -> float:
    """WRU of writing an item of ``size`` bytes: 1 KB a unit, twice in a transaction."""
    return max(1, math.ceil(size / 1024)) * (2.0 if transactional else 1.0)


GSIS = (("gsi1pk", "gsi1sk"), ("gsi2pk", "gsi2sk"))  # infra/resources.json, both ProjectionType ALL


def gsi_write_units(old: dict | None, new: dict | None, gsis: tuple[tuple[str, str], ...] = GSIS) -> float:
    """WRU the indexes add to one item change (a stream record's old and new images): an
    index entry put, updated or deleted is one write of the projected item (ALL: the whole
    item); a changed index key is a delete of the old entry and a put of the new one."""
    units = 0.0
    for names in gsis:
        before = tuple(old[n]["S"] for n in names) if old and all(n in old for n in names) else None
        after = tuple(new[n]["S"] for n in names) if new and all(n in new for n in names) else None
        if before and after and before != after:
            units += write_units(item_size(old or {})) + write_units(item_size(new or {}))
        elif after:
            units += write_units(item_size(new or {}))
        elif before:
            units += write_units(item_size(old or {}))
    return units


def request_units(op: str, params: dict, parsed: dict) -> tuple[float, float]:
    """(RRU, WRU) of one DynamoDB request on the table, from what was sent and what came
    back; index writes are counted from the stream records (gsi_write_units)."""
    rru = wru = 0.0
    consistent = bool(params.get("ConsistentRead")) and not params.get("IndexName")
    if op == "GetItem":
        rru = read_units(item_size(parsed.get("Item") or {}), consistent)
    elif op in ("Query", "Scan"):
        rru = read_units(sum(item_size(i) for i in parsed.get("Items") or []), consistent)
    elif op == "BatchGetItem":
        for table, request in params.get("RequestItems", {}).items():
            got = (parsed.get("Responses") or {}).get(table) or []
            left = len(((parsed.get("UnprocessedKeys") or {}).get(table) or {}).get("Keys") or [])
            strong = bool(request.get("ConsistentRead"))
            rru += sum(read_units(item_size(i), strong) for i in got)
            rru += max(0, len(request.get("Keys", [])) - len(got) - left) * read_units(0, strong)
    elif op == "TransactGetItems":
        rru = sum(2 * read_units(item_size(i.get("Item") or {}), True) for i in parsed.get("Responses") or [])
    elif op == "PutItem":
        wru = write_units(item_size(params["Item"]))
    elif op in ("UpdateItem", "DeleteItem"):
        touched = {**params.get("Key", {}), **(parsed.get("Attributes") or {})}
        wru = write_units(item_size(touched) + item_size(params.get("ExpressionAttributeValues") or {}))
    elif op == "BatchWriteItem":
        for requests in params.get("RequestItems", {}).values():
            for r in requests:
                if "PutRequest" in r:
                    wru += write_units(item_size(r["PutRequest"]["Item"]))
                else:
                    wru += write_units(0)
    elif op == "TransactWriteItems":
        for action in params.get("TransactItems", []):
            (kind, body), = action.items()
            if kind == "Put":
                wru += write_units(item_size(body["Item"]), transactional=True)
            elif kind == "Update":
                size = item_size(body["Key"]) + item_size(body.get("ExpressionAttributeValues") or {})
                wru += write_units(size, transactional=True)
            else:  # Delete, ConditionCheck: a ConditionCheck is billed as a transactional write
                wru += write_units(0, transactional=True)
    return rru, wru
