"""Local delivery of the events Lambda delivers in AWS, to the same handlers.

In AWS, Lambda's event source mappings read the table's stream and the subscribers'
queues and invoke ``app.dispatch``, ``app.loyalty_events``, ``app.timeline_events``,
``app.segments_events``; EventBridge invokes ``app.loyalty_schedule`` and
``app.segments_schedule``. Locally (``rapport dev``) these pollers
do it, each in a daemon thread, with events shaped as Lambda shapes them, and honour
the answer as Lambda does (docs/architecture.md, "Local event delivery"):

* :class:`StreamPoller` reads every shard of the table's stream (from TRIM_HORIZON, so
  what the seed wrote is processed too; new shards are followed, a child after its
  parent), every 0.2 s, and delivers batches of up to 100 records. A handler answering
  ``batchItemFailures`` (or raising) gets the batch again from the first failed record;
  after ``MaximumRetryAttempts`` retries (resources.json) the rest of that batch is
  given up and an on-failure record, as Lambda writes it, goes to the stream DLQ.
  Bisecting a failed batch is not emulated.
* :class:`QueuePoller` long-polls a queue (1 s, up to 10 messages), deletes the messages
  the handler did not report as failed, and leaves the failed ones to come back after
  the visibility timeout. The queue's RedrivePolicy moves a message to its DLQ after
  5 receives (moto's server honours it, as SQS does).
* :class:`ScheduleTicker` invokes a schedule handler with an EventBridge "Scheduled
  Event" every N seconds (5 by default), whatever the rate in app.py.

A handler is any callable ``handler(event_dict, context)``, as Lambda calls it; Chalice's
decorated handlers are such callables. A handler that raises is logged and counted, and
the poller carries on. The pollers' own AWS clients are marked (:func:`is_plumbing`), so
that tests recording what the *functions* call can leave them out.
"""
from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

log = logging.getLogger("rapport.pollers")

Handler = Callable[[dict[str, Any], Any], Any]
_PLUMBING = "_rapport_plumbing"


def plumbing_client(service: str) -> Any:
    """A boto3 client of the pollers themselves (its own session: thread-safe creation)."""
    import boto3

    client = boto3.session.Session().client(service)
    setattr(client, _PLUMBING, True)
    return client


def is_plumbing(client: Any) -> bool:
    """True for the clients the pollers use to play Lambda (not the functions' calls)."""
    return getattr(client, _PLUMBING, False)


@functools.lru_cache(maxsize=1)
def _chalice_config() -> dict[str, Any]:
    import json
    from pathlib import Path

    try:
        return json.loads((Path(__file__).resolve().parent.parent / ".chalice" / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def configured_timeout(function_name: str) -> float:
    """The function's timeout as .chalice/config.json gives it to Lambda (its own
    ``lambda_timeout``, else the app's), so a handler that plans by its remaining time
    (a build step, the RFM cut points) plans locally as it does in AWS."""
    config = _chalice_config()
    own = (config.get("lambda_functions") or {}).get(function_name) or {}
    return float(own.get("lambda_timeout") or config.get("lambda_timeout") or 30)


class LambdaContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    def __init__(self, function_name: str, region: str, account: str = "000000000000",
                 timeout_seconds: float | None = None, memory_mb: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        if timeout_seconds is None:
            timeout_seconds = configured_timeout(function_name)
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class Stats:
    invocations: int = 0    # handler calls
    records: int = 0        # records or messages delivered, redeliveries included
    failed: int = 0         # of which reported failed (batchItemFailures) or in a batch that raised
    errors: int = 0         # handler calls that raised
    dead_lettered: int = 0  # stream records given up after the retries (sent to the stream DLQ)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _region_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else "us-east-1"


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4] else "000000000000"


class Poller:
    """A daemon thread calling :meth:`poll_once` until stopped."""

    def __init__(self, name: str, interval: float) -> None:
        self.name = name
        self.interval = interval
        self.stats = Stats()
        self.cycles = 0  # completed poll_once calls, for wait_idle
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._polling_failures = 0

    # -- lifecycle --
    def start(self) -> "Poller":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"rapport-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            delivered = self._cycle()
            if delivered == 0:
                pause = self.interval * 2 ** min(self._polling_failures, 5)
                self._stop.wait(min(pause, 5.0))

    def _cycle(self) -> int:
        delivered = 0
        try:
            delivered = self.poll_once()
            self._polling_failures = 0
        except Exception:  # noqa: BLE001 - e.g. the emulator went away; keep trying, quietly
            self._polling_failures += 1
            if self._polling_failures in (1, 10) or self._polling_failures % 100 == 0:
                log.exception("%s: polling failed (%d in a row)", self.name, self._polling_failures)
        with self._cond:
            self.cycles += 1
            self._cond.notify_all()
        return delivered

    def wait_cycles(self, cycles: int, deadline: float) -> bool:
        """Wait until ``self.cycles >= cycles`` or the monotonic deadline passes."""
        with self._cond:
            return self._cond.wait_for(lambda: self.cycles >= cycles or not self.running,
                                       timeout=max(0.0, deadline - time.monotonic())) \
                and self.cycles >= cycles

    def drained(self) -> bool:
        """Nothing is waiting to be delivered (as far as this poller knows)."""
        return True

    # -- delivery --
    def poll_once(self) -> int:
        """One poll; returns how many records were delivered."""
        raise NotImplementedError

    def _invoke(self, handler: Handler, event: dict[str, Any], context: LambdaContext,
                records: int) -> tuple[Any, BaseException | None]:
        self.stats.invocations += 1
        self.stats.records += records
        try:
            return handler(event, context), None
        except Exception as exc:  # noqa: BLE001 - Lambda reports it; so do we, and go on
            self.stats.errors += 1
            log.exception("%s: the handler raised (%d records): the batch failed", self.name, records)
            return None, exc


def _failed_identifiers(result: Any, ids: list[str], name: str) -> set[str] | None:
    """The ids a Powertools-style answer reports failed; None means the whole batch
    (Lambda treats an empty, null or unknown itemIdentifier as a complete failure)."""
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return set()
    failed = set()
    for entry in result["batchItemFailures"]:
        ident = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        if not ident or ident not in ids:
            log.warning("%s: batchItemFailures names %r, which is not in the batch: "
                        "the whole batch failed", name, ident)
            return None
        failed.add(ident)
    return failed


# -- DynamoDB stream ---------------------------------------------------------------


def _lambda_json(value: Any) -> Any:
    """boto3's attribute values -> the JSON Lambda puts in an event (binary as base64)."""
    if isinstance(value, dict):
        return {k: _lambda_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lambda_json(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


@dataclass
class _Shard:
    id: str
    parent: str | None
    position: str                 # how to get the first iterator
    after: str | None = None      # AFTER_SEQUENCE_NUMBER this, when an iterator expired
    iterator: str | None = None
    closed: bool = False          # GetRecords returned no NextShardIterator
    buffer: list[dict[str, Any]] = field(default_factory=list)
    failing: str | None = None    # sequence number the last failed batch started at
    failures: int = 0             # failed invocations of batches starting there
    not_before: float = 0.0

    @property
    def done(self) -> bool:
        return self.closed and not self.buffer


class StreamPoller(Poller):
    """Deliver a table's stream to a handler the way a Lambda event source mapping does."""

    def __init__(self, table: str, handler: Handler, *, function_name: str = "dispatch",
                 batch_size: int = 100, max_retries: int | None = None,
                 dead_letter_url: str | None = None, starting_position: str = "TRIM_HORIZON",
                 interval: float = 0.2, retry_delay: float = 0.2) -> None:
        super().__init__(f"{table} stream -> {function_name}", interval)
        if max_retries is None:
            from infra.bootstrap import stream_event_source

            max_retries = int(stream_event_source()["MaximumRetryAttempts"])
        self.table, self.handler, self.function_name = table, handler, function_name
        self.batch_size, self.max_retries = batch_size, max_retries
        self.dead_letter_url = dead_letter_url
        self.starting_position = starting_position
        self.retry_delay = retry_delay
        self.stream_arn: str | None = None
        self._streams = plumbing_client("dynamodbstreams")
        self._sqs = plumbing_client("sqs") if dead_letter_url else None
        self._shards: dict[str, _Shard] = {}
        self._next_describe = 0.0

    def drained(self) -> bool:
        return all(not s.buffer for s in self._shards.values())

    def poll_once(self) -> int:
        if time.monotonic() >= self._next_describe or self.stream_arn is None:
            self._refresh_shards()
            self._next_describe = time.monotonic() + 1.0
        delivered = 0
        for shard in list(self._shards.values()):
            if shard.done or self._stop.is_set():
                continue
            parent = self._shards.get(shard.parent or "")
            if parent is not None and not parent.done:
                continue  # a child shard's records come after its parent's
            self._fetch(shard)
            delivered += self._deliver(shard)
        return delivered

    def _refresh_shards(self) -> None:
        streams = self._streams.list_streams(TableName=self.table).get("Streams", [])
        if not streams:
            return
        arn = streams[-1]["StreamArn"]
        first = self.stream_arn is None
        if arn != self.stream_arn:  # first sight, or the table was re-created
            self.stream_arn, self._shards = arn, {}
        kwargs: dict[str, Any] = {"StreamArn": arn}
        while True:
            description = self._streams.describe_stream(**kwargs)["StreamDescription"]
            for shard in description.get("Shards", []):
                if shard["ShardId"] not in self._shards:
                    # new shards found later hold only new records: read them whole
                    self._shards[shard["ShardId"]] = _Shard(
                        shard["ShardId"], shard.get("ParentShardId"),
                        self.starting_position if first else "TRIM_HORIZON")
            last = description.get("LastEvaluatedShardId")
            if not last:
                break
            kwargs["ExclusiveStartShardId"] = last

    def _fetch(self, shard: _Shard) -> None:
        if shard.closed or len(shard.buffer) >= self.batch_size:
            return
        if shard.iterator is None:
            kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard.id}
            if shard.after is not None:
                kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.after)
            else:
                kwargs["ShardIteratorType"] = shard.position
            shard.iterator = self._streams.get_shard_iterator(**kwargs)["ShardIterator"]
        try:
            answer = self._streams.get_records(ShardIterator=shard.iterator, Limit=1000)
        except self._streams.exceptions.ExpiredIteratorException:
            shard.iterator = None  # the next poll asks for a new one after what we have
            return
        records = answer.get("Records", [])
        if records:
            shard.buffer.extend(records)
            shard.after = records[-1]["dynamodb"]["SequenceNumber"]
        shard.iterator = answer.get("NextShardIterator")
        if shard.iterator is None:
            shard.closed = True

    def _lambda_record(self, raw: dict[str, Any]) -> dict[str, Any]:
        d = raw["dynamodb"]
        created = d.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            created = int(created.timestamp())
        dynamodb: dict[str, Any] = {"ApproximateCreationDateTime": created}
        for key in ("Keys", "NewImage", "OldImage"):
            if key in d:
                dynamodb[key] = _lambda_json(d[key])
        dynamodb.update(SequenceNumber=d["SequenceNumber"], SizeBytes=d["SizeBytes"],
                        StreamViewType=d["StreamViewType"])
        record = {"eventID": raw["eventID"], "eventName": raw["eventName"], "eventVersion": "1.1",
                  "eventSource": "aws:dynamodb", "awsRegion": _region_of(self.stream_arn or ""),
                  "dynamodb": dynamodb, "eventSourceARN": self.stream_arn}
        if "userIdentity" in raw:  # TTL deletions
            record["userIdentity"] = raw["userIdentity"]
        return record

    def _deliver(self, shard: _Shard) -> int:
        if not shard.buffer or time.monotonic() < shard.not_before:
            return 0
        batch = shard.buffer[:self.batch_size]
        seqs = [r["dynamodb"]["SequenceNumber"] for r in batch]
        context = LambdaContext(self.function_name, _region_of(self.stream_arn or ""),
                                _account_of(self.stream_arn or ""))
        event = {"Records": [self._lambda_record(r) for r in batch]}
        result, error = self._invoke(self.handler, event, context, len(batch))
        failed = None if error is not None else _failed_identifiers(result, seqs, self.name)
        if failed == set():
            del shard.buffer[:len(batch)]
            shard.failing, shard.failures = None, 0
            return len(batch)
        first = 0 if failed is None else min(seqs.index(s) for s in failed)
        self.stats.failed += len(batch) - first
        del shard.buffer[:first]  # checkpointed: Lambda retries from the first failed record
        if seqs[first] == shard.failing:
            shard.failures += 1
        else:
            shard.failing, shard.failures = seqs[first], 1
        if shard.failures <= self.max_retries:
            shard.not_before = time.monotonic() + self.retry_delay
            log.warning("%s: record %s failed; retry %d of %d", self.name, seqs[first],
                        shard.failures, self.max_retries)
            return len(batch)
        given_up = batch[first:]
        del shard.buffer[:len(given_up)]
        shard.failing, shard.failures = None, 0
        self.stats.dead_lettered += len(given_up)
        self._on_failure(shard, given_up, context, self.max_retries + 1, error is not None)
        return len(batch)

    def _on_failure(self, shard: _Shard, records: list[dict[str, Any]], context: LambdaContext,
                    attempts: int, raised: bool) -> None:
        """Lambda's on-failure record for a stream batch: where it is, not what it holds."""
        def arrival(record: dict[str, Any]) -> str:
            created = record["dynamodb"].get("ApproximateCreationDateTime")
            if isinstance(created, datetime):
                return created.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
            return _now_iso()

        message = {
            "requestContext": {"requestId": context.aws_request_id,
                               "functionArn": context.invoked_function_arn,
                               "condition": "RetryAttemptsExhausted",
                               "approximateInvokeCount": attempts},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                                **({"functionError": "Unhandled"} if raised else {})},
            "version": "1.0",
            "timestamp": _now_iso(),
            "DDBStreamBatchInfo": {
                "shardId": shard.id,
                "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": arrival(records[0]),
                "approximateArrivalOfLastRecord": arrival(records[-1]),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
        if self._sqs is None:
            log.error("%s: gave up on %d records (%s..%s) and there is no on-failure queue",
                      self.name, len(records), message["DDBStreamBatchInfo"]["startSequenceNumber"],
                      message["DDBStreamBatchInfo"]["endSequenceNumber"])
            return
        self._sqs.send_message(QueueUrl=self.dead_letter_url, MessageBody=json.dumps(message))
        log.error("%s: gave up on %d records after %d attempts; their location is in %s",
                  self.name, len(records), attempts, self.dead_letter_url)


# -- SQS --------------------------------------------------------------------------------


def _lambda_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in attributes.items():
        entry: dict[str, Any] = {"stringListValues": [], "binaryListValues": [],
                                 "dataType": value["DataType"]}
        if "StringValue" in value:
            entry["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            entry["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
        out[name] = entry
    return out


class QueuePoller(Poller):
    """Deliver a queue's messages to a handler the way a Lambda event source mapping does."""

    def __init__(self, queue_url: str, handler: Handler, *, function_name: str,
                 batch_size: int = 10, wait_seconds: int = 1, interval: float = 0.2) -> None:
        super().__init__(f"{queue_url.rsplit('/', 1)[-1]} -> {function_name}", interval)
        self.queue_url, self.handler, self.function_name = queue_url, handler, function_name
        self.batch_size, self.wait_seconds = batch_size, wait_seconds
        self.queue_arn: str | None = None
        self._sqs = plumbing_client("sqs")

    def drained(self) -> bool:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return not any(int(v) for v in attributes.values())

    def _lambda_record(self, message: dict[str, Any]) -> dict[str, Any]:
        record = {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                  "body": message["Body"], "attributes": message.get("Attributes", {}),
                  "messageAttributes": _lambda_message_attributes(message.get("MessageAttributes", {})),
                  "md5OfBody": message["MD5OfBody"]}
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        record.update(eventSource="aws:sqs", eventSourceARN=self.queue_arn,
                      awsRegion=_region_of(self.queue_arn or ""))
        return record

    def poll_once(self) -> int:
        if self.queue_arn is None:
            self.queue_arn = self._sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        messages = self._sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_seconds, AttributeNames=["All"],
            MessageAttributeNames=["All"]).get("Messages", [])
        if not messages:
            return 0
        ids = [m["MessageId"] for m in messages]
        context = LambdaContext(self.function_name, _region_of(self.queue_arn),
                                _account_of(self.queue_arn))
        result, error = self._invoke(self.handler, {"Records": [self._lambda_record(m) for m in messages]},
                                     context, len(messages))
        failed = set(ids) if error is not None else _failed_identifiers(result, ids, self.name)
        failed = set(ids) if failed is None else failed
        self.stats.failed += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            answer = self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
            for failure in answer.get("Failed", []):
                log.warning("%s: could not delete a handled message: %s", self.name, failure)
        if failed:
            log.warning("%s: %d of %d messages failed; they come back after the visibility "
                        "timeout", self.name, len(failed), len(messages))
        return len(messages)


# -- schedules --------------------------------------------------------------------------


class ScheduleTicker(Poller):
    """Invoke a schedule handler with an EventBridge scheduled event every N seconds."""

    def __init__(self, handler: Handler, *, function_name: str, every_seconds: float = 5.0,
                 region: str = "us-east-1", account: str = "000000000000") -> None:
        super().__init__(f"every {every_seconds:g} s -> {function_name}", every_seconds)
        self.handler, self.function_name = handler, function_name
        self.region, self.account = region, account

    def _run(self) -> None:  # the first tick after one interval, like a rate() rule
        while not self._stop.wait(self.interval):
            self._cycle()

    def poll_once(self) -> int:
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                 "source": "aws.events", "account": self.account,
                 "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "region": self.region,
                 "resources": [f"arn:aws:events:{self.region}:{self.account}:rule/{self.function_name}"],
                 "detail": {}}
        self._invoke(self.handler, event, LambdaContext(self.function_name, self.region, self.account), 1)
        return 1


# -- all of an app's event sources -----------------------------------------------------------


class EventPipeline:
    """The pollers for every event source of a Chalice app, started and stopped together."""

    def __init__(self, pollers: list[Poller]) -> None:
        self.pollers = pollers

    @classmethod
    def for_chalice_app(cls, app: Any, *, table: str, queues: dict[str, str],
                        stream_dead_letter: str | None, schedule_seconds: float = 5.0,
                        starting_position: str | None = None) -> "EventPipeline":
        """Map the app's ``on_dynamodb_record``, ``on_sqs_message`` and ``schedule``
        declarations to pollers: the stream is this table's, the queue ``<app>-<name>``
        is the local queue of subscriber ``<name>`` (``queues``: {subscriber: URL})."""
        from chalice.app import DynamoDBEventConfig, ScheduledEventConfig, SQSEventConfig

        import boto3

        region = boto3.session.Session().region_name or "us-east-1"
        pollers: list[Poller] = []
        for source in app.event_sources:
            handler = app.handler_map[source.name]
            function_name = source.name
            if isinstance(source, DynamoDBEventConfig):
                pollers.append(StreamPoller(
                    table, handler, function_name=function_name, batch_size=source.batch_size,
                    dead_letter_url=stream_dead_letter,
                    starting_position=starting_position or source.starting_position))
            elif isinstance(source, SQSEventConfig):
                name = source.queue or (source.queue_arn or "").rsplit(":", 1)[-1]
                subscriber = name.removeprefix(f"{app.app_name}-")
                if subscriber not in queues:
                    raise LookupError(f"{source.name} reads queue {name!r}, which has no local "
                                      f"queue (known: {sorted(queues)})")
                pollers.append(QueuePoller(queues[subscriber], handler, function_name=function_name,
                                           batch_size=min(source.batch_size, 10)))
            elif isinstance(source, ScheduledEventConfig):
                pollers.append(ScheduleTicker(handler, function_name=function_name,
                                              every_seconds=schedule_seconds, region=region))
            else:
                log.warning("%s: %s event sources are not delivered locally", source.name,
                            type(source).__name__)
        return cls(pollers)

    def start(self) -> "EventPipeline":
        for poller in self.pollers:
            poller.start()
        return self

    def stop(self) -> None:
        for poller in self.pollers:
            poller._stop.set()
        for poller in self.pollers:
            poller.stop()

    def wait_started(self, timeout: float = 30.0) -> bool:
        """Wait until every poller completed a first poll (a stream poller starting at
        LATEST has then taken its position: what is written afterwards reaches it)."""
        deadline = time.monotonic() + timeout
        return all(p.wait_cycles(1, deadline) for p in self.pollers if not isinstance(p, ScheduleTicker))

    def describe(self) -> list[str]:
        return [p.name for p in self.pollers]

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the stream is read to its end, the queues are empty (failed messages
        included: they are retried or reach their DLQ) and nothing was delivered meanwhile.
        For tests and tools; the schedule ticker does not count.

        Only the stream pollers' cycles are waited for (0.2 s each): a queue's long poll
        takes a second, and waiting for two of them made every wait at least 2 s. Empty
        queues (in-flight messages count) say every queue handler has finished, its writes
        made before it deleted its message; two stream cycles after that read those writes'
        records, and the queues are checked again at the end."""
        streams = [p for p in self.pollers if isinstance(p, StreamPoller)]
        queues = [p for p in self.pollers if isinstance(p, QueuePoller)]
        counted = streams + queues
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not all(q.drained() for q in queues):
                time.sleep(0.05)
                continue
            marks = {p: p.cycles for p in streams}
            delivered = sum(p.stats.records for p in counted)
            # two cycles: the second one began after the marks were taken
            if not all(p.wait_cycles(marks[p] + 2, deadline) for p in streams):
                return False
            if sum(p.stats.records for p in counted) == delivered and all(p.drained() for p in counted):
                return True
        return False
