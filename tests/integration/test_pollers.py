"""The local pollers (rapport/pollers.py) against moto's server over HTTP: Lambda-shaped
events, Lambda's answers to batchItemFailures, the DLQs, and `rapport dlq`.

Handlers here are test doubles (plain callables and a small Chalice app), so these
tests need neither app.py's handlers nor functions/. Nothing asserts a duration: every
wait polls for a condition until a generous deadline.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Callable

import boto3
import pytest
from typer.testing import CliRunner

from infra.bootstrap import LocalQueues, create_queues
from rapport import cli
from rapport.pollers import EventPipeline, QueuePoller, ScheduleTicker, StreamPoller

DEADLINE = 60.0


def eventually(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Recorder:
    """A handler(event, context) that records each call and answers with ``answer(event)``."""

    def __init__(self, answer: Callable[[dict], Any] | None = None) -> None:
        self.answer = answer or (lambda event: {"batchItemFailures": []})
        self.calls: list[tuple[dict, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict, context: Any) -> Any:
        with self._lock:
            self.calls.append((json.loads(json.dumps(event)), context))
        return self.answer(event)

    def records(self) -> list[dict]:
        with self._lock:
            return [r for event, _ in self.calls for r in event.get("Records", [])]


@pytest.fixture()
def queues(table) -> tuple[str, LocalQueues]:
    """This test's own queues (a fresh prefix), with a 1 s visibility timeout."""
    prefix = f"pt{uuid.uuid4().hex[:10]}"
    return prefix, create_queues(boto3.client("sqs"), prefix, visibility_timeout=1)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """`rapport dlq list` tables, wide enough that ids and events are not folded."""
    from rich.console import Console

    monkeypatch.setattr(cli, "console", Console(width=300))
    monkeypatch.setattr(cli, "err", Console(width=300, stderr=True))


@pytest.fixture()
def started():
    pollers = []

    def start(poller):
        pollers.append(poller.start())
        assert poller.wait_cycles(1, time.monotonic() + DEADLINE), "the poller did not poll"
        return poller

    yield start
    for poller in pollers:
        poller.stop()


def _s(value: str) -> dict:
    return {"S": value}


def _mine(pk: str) -> Callable[[dict], bool]:
    return lambda r: r.get("dynamodb", {}).get("Keys", {}).get("pk") == _s(pk)


# -- the stream ----------------------------------------------------------------------


def test_stream_records_reach_the_handler_shaped_as_lambda_delivers_them(table, started):
    ddb = boto3.client("dynamodb")
    handler = Recorder()
    started(StreamPoller(table, handler, starting_position="LATEST", interval=0.05))
    pk = f"POLL#{uuid.uuid4().hex}"
    key = {"pk": _s(pk), "sk": _s("1")}
    ddb.put_item(TableName=table, Item={**key, "n": {"N": "1.5"}, "b": {"B": b"\x00\x01"}})
    ddb.update_item(TableName=table, Key=key, UpdateExpression="SET x = :x",
                    ExpressionAttributeValues={":x": _s("y")})
    mine = eventually(lambda: (m := [r for r in handler.records() if _mine(pk)(r)]) and len(m) >= 2 and m,
                      "the put and the update")
    insert, modify = mine
    stream_arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    for record in mine:
        assert list(record) == ["eventID", "eventName", "eventVersion", "eventSource", "awsRegion",
                                "dynamodb", "eventSourceARN"]
        assert record["eventSource"] == "aws:dynamodb" and record["eventVersion"] == "1.1"
        assert record["eventSourceARN"] == stream_arn and record["awsRegion"] == "us-east-1"
        d = record["dynamodb"]
        assert isinstance(d["ApproximateCreationDateTime"], int)
        assert d["Keys"] == key and d["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert isinstance(d["SequenceNumber"], str) and isinstance(d["SizeBytes"], int)
    assert insert["eventName"] == "INSERT" and "OldImage" not in insert["dynamodb"]
    assert insert["dynamodb"]["NewImage"] == {**key, "n": {"N": "1.5"}, "b": {"B": "AAE="}}
    assert modify["eventName"] == "MODIFY"
    assert modify["dynamodb"]["OldImage"] == insert["dynamodb"]["NewImage"]
    assert modify["dynamodb"]["NewImage"]["x"] == _s("y")
    assert int(modify["dynamodb"]["SequenceNumber"]) > int(insert["dynamodb"]["SequenceNumber"])
    event, context = handler.calls[0]
    assert set(event) == {"Records"} and len(event["Records"]) <= 100
    assert context.get_remaining_time_in_millis() > 0 and context.aws_request_id


def _transaction(table: str, pks: list[str]) -> None:
    boto3.client("dynamodb").transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": {"pk": _s(pk), "sk": _s("1")}}} for pk in pks])


def test_a_failed_record_is_delivered_again_with_the_records_after_it(table, started):
    tag = uuid.uuid4().hex
    pks = [f"POLL#{tag}#{i}" for i in range(4)]
    failed_once = threading.Event()

    def answer(event):
        for record in event["Records"]:
            if _mine(pks[1])(record) and not failed_once.is_set():
                failed_once.set()
                return {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
        return {"batchItemFailures": []}

    handler = Recorder(answer)
    started(StreamPoller(table, handler, starting_position="LATEST", interval=0.05, retry_delay=0.05))
    _transaction(table, pks)  # one request: its four records are read together, in one batch
    ours = lambda event: [r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]  # noqa: E731
                          if r["dynamodb"]["Keys"]["pk"]["S"].startswith(f"POLL#{tag}")]
    batches = eventually(lambda: (b := [ours(e) for e, _ in handler.calls if ours(e)])
                         and len(b) >= 2 and b, "the retried batch")
    assert batches[0] == pks                   # the first delivery, with pks[1] reported failed
    assert batches[1] == pks[1:]               # again from the failed record, not before it
    time.sleep(0.3)
    assert len([e for e, _ in handler.calls if ours(e)]) == 2, "succeeded on the retry: done"


def test_a_poison_record_goes_to_the_stream_dlq_after_the_retries_and_the_shard_moves_on(
        table, queues, started):
    prefix, local = queues
    poison, after = f"POLL#{uuid.uuid4().hex}", f"POLL#{uuid.uuid4().hex}"

    def answer(event):
        failed = [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]}
                  for r in event["Records"] if _mine(poison)(r)]
        return {"batchItemFailures": failed[:1]}

    handler = Recorder(answer)
    poller = started(StreamPoller(table, handler, starting_position="LATEST", max_retries=2,
                                  dead_letter_url=local.stream_dead_letter, interval=0.05,
                                  retry_delay=0.05))
    ddb = boto3.client("dynamodb")
    ddb.put_item(TableName=table, Item={"pk": _s(poison), "sk": _s("1")})
    eventually(lambda: poller.stats.dead_lettered, "the poller to give up")
    ddb.put_item(TableName=table, Item={"pk": _s(after), "sk": _s("1")})
    eventually(lambda: any(_mine(after)(r) for r in handler.records()), "the next record")
    assert len([r for r in handler.records() if _mine(poison)(r)]) == 3  # 1 try + 2 retries

    sqs = boto3.client("sqs")
    [message] = eventually(lambda: sqs.receive_message(
        QueueUrl=local.stream_dead_letter, WaitTimeSeconds=1, VisibilityTimeout=0).get("Messages"),
        "the on-failure record")
    body = json.loads(message["Body"])
    info = body["DDBStreamBatchInfo"]
    poison_seq = next(r for r in handler.records() if _mine(poison)(r))["dynamodb"]["SequenceNumber"]
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert body["requestContext"]["approximateInvokeCount"] == 3
    assert info["startSequenceNumber"] == poison_seq and info["batchSize"] >= 1
    assert info["streamArn"] == ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]

    runner = CliRunner()
    listed = runner.invoke(cli.app, ["dlq", "list", "stream", "--table", prefix])
    assert listed.exit_code == 0, listed.output
    assert "RetryAttemptsExhausted" in listed.output and message["MessageId"] in listed.output
    printed = runner.invoke(cli.app, ["dlq", "redrive", "stream", "--yes", "--table", prefix])
    assert printed.exit_code == 0, printed.output
    assert "nothing can be put back into a stream" in " ".join(printed.output.split())
    assert poison in printed.output  # the record the on-failure message points at


def test_stream_readers_never_see_a_cancelled_transaction(table, started):
    """rapport/emulator.py: stream reads take the DynamoDB lock, so the records a
    cancelled transaction wrote before its rollback are never delivered. (Without it a
    reader gets phantoms, and then skips the records that reuse their sequence numbers.)"""
    tag = uuid.uuid4().hex
    ddb = boto3.client("dynamodb")
    taken = {"pk": _s(f"POLL#{tag}#taken"), "sk": _s("1")}
    ddb.put_item(TableName=table, Item=taken)
    handler = Recorder()
    started(StreamPoller(table, handler, starting_position="LATEST", interval=0.0))
    for i in range(30):  # 99 puts written, then the 100th item's condition fails
        with pytest.raises(ddb.exceptions.TransactionCanceledException):
            ddb.transact_write_items(TransactItems=[
                *({"Put": {"TableName": table, "Item": {"pk": _s(f"POLL#{tag}#phantom{i}.{n}"),
                                                         "sk": _s("1")}}} for n in range(99)),
                {"Put": {"TableName": table, "Item": taken,
                         "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
    ddb.put_item(TableName=table, Item={"pk": _s(f"POLL#{tag}#end"), "sk": _s("1")})
    eventually(lambda: any(_mine(f"POLL#{tag}#end")(r) for r in handler.records()), "the last put",
               timeout=20)
    assert not [r for r in handler.records() if "phantom" in r["dynamodb"]["Keys"]["pk"]["S"]]


# -- queues ------------------------------------------------------------------------------


def _count(url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_queues_are_created_from_resources_json_and_idempotently(table, queues):
    prefix, local = queues
    sqs = boto3.client("sqs")
    assert create_queues(sqs, prefix, visibility_timeout=1) == local
    assert set(local.queues) == set(local.dead_letter) == {"loyalty", "timeline", "sync", "segments", "email", "delivery",
                                                             "journeys", "webhooks"}
    for subscriber, url in local.queues.items():
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert url.endswith(f"/{prefix}-{subscriber}")
        redrive = json.loads(attributes["RedrivePolicy"])
        dlq_arn = sqs.get_queue_attributes(QueueUrl=local.dead_letter[subscriber],
                                           AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        assert redrive == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
        assert attributes["VisibilityTimeout"] == "1" and attributes["SqsManagedSseEnabled"] == "true"
    for url in (*local.dead_letter.values(), local.stream_dead_letter):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    assert local.env() == {"RAPPORT_QUEUE_LOYALTY_URL": local.queues["loyalty"],
                           "RAPPORT_QUEUE_TIMELINE_URL": local.queues["timeline"],
                           "RAPPORT_QUEUE_SYNC_URL": local.queues["sync"],
                           "RAPPORT_QUEUE_SEGMENTS_URL": local.queues["segments"],
                           "RAPPORT_QUEUE_EMAIL_URL": local.queues["email"],
                           "RAPPORT_QUEUE_DELIVERY_URL": local.queues["delivery"],
                           "RAPPORT_QUEUE_JOURNEYS_URL": local.queues["journeys"],
                           "RAPPORT_QUEUE_WEBHOOKS_URL": local.queues["webhooks"]}


def test_handled_messages_are_deleted_and_failed_ones_come_back(queues, started):
    _, local = queues
    url = local.queues["loyalty"]
    sqs = boto3.client("sqs")
    for body in ("ok", "fail-once"):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"type": "test", "id": body}),
                         MessageAttributes={"kind": {"DataType": "String", "StringValue": body}})
    failed: set[str] = set()

    def answer(event):
        out = []
        for record in event["Records"]:
            if json.loads(record["body"])["id"] == "fail-once" and not failed:
                failed.add(record["messageId"])
                out.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": out}

    handler = Recorder(answer)
    started(QueuePoller(url, handler, function_name="loyalty_events", wait_seconds=1, interval=0.05))
    eventually(lambda: len(handler.records()) >= 3 and _count(url) == 0, "both handled")
    by_body = {}
    for record in handler.records():
        by_body.setdefault(json.loads(record["body"])["id"], []).append(record)
    assert len(by_body["ok"]) == 1, "deleted after it succeeded: never delivered again"
    assert [r["attributes"]["ApproximateReceiveCount"] for r in by_body["fail-once"]] == ["1", "2"]
    record = by_body["ok"][0]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert list(record) == ["messageId", "receiptHandle", "body", "attributes", "messageAttributes",
                            "md5OfBody", "md5OfMessageAttributes", "eventSource", "eventSourceARN",
                            "awsRegion"]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == arn
    assert record["messageAttributes"] == {"kind": {"stringValue": "ok", "stringListValues": [],
                                                    "binaryListValues": [], "dataType": "String"}}
    assert {"SentTimestamp", "ApproximateFirstReceiveTimestamp", "SenderId"} <= set(record["attributes"])


def test_a_handler_that_raises_fails_the_whole_batch(queues, started):
    _, local = queues
    url = local.queues["timeline"]
    sqs = boto3.client("sqs")
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(2)])
    calls = []

    def answer(event):
        calls.append(len(event["Records"]))
        if len(calls) == 1:
            raise RuntimeError("boom (expected by the test)")
        return None  # like a handler without partial failures: all succeeded

    handler = Recorder(answer)
    poller = started(QueuePoller(url, handler, function_name="timeline_events", interval=0.05))
    eventually(lambda: _count(url) == 0 and poller.stats.errors == 1, "the redelivery")
    bodies = [r["body"] for r in handler.records()]
    assert sorted(bodies) == ["m0", "m0", "m1", "m1"], "both failed with the raise, both redelivered"


def test_after_five_failed_receives_the_message_is_in_the_dlq_and_redrive_puts_it_back(
        queues, started):
    prefix, local = queues
    url, dlq = local.queues["loyalty"], local.dead_letter["loyalty"]
    sqs = boto3.client("sqs")
    message_id = sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
        {"type": "order.placed", "id": "evt_poison"}))["MessageId"]
    healthy = threading.Event()

    def answer(event):
        if healthy.is_set():
            return {"batchItemFailures": []}
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    handler = Recorder(answer)
    started(QueuePoller(url, handler, function_name="loyalty_events", interval=0.05))
    eventually(lambda: _count(dlq) == 1, "the message in the DLQ")
    receives = [r["attributes"]["ApproximateReceiveCount"] for r in handler.records()]
    assert receives == ["1", "2", "3", "4", "5"]
    assert _count(url) == 0

    runner = CliRunner()
    listed = runner.invoke(cli.app, ["dlq", "list", "--table", prefix])
    assert listed.exit_code == 0, listed.output
    assert message_id in listed.output and "order.placed evt_poison" in listed.output
    assert f"{prefix}-loyalty-dlq" in listed.output and f"{prefix}-stream-dlq" in listed.output

    healthy.set()  # the cause is fixed; put the message back
    moved = runner.invoke(cli.app, ["dlq", "redrive", "loyalty", "--yes", "--table", prefix])
    assert moved.exit_code == 0, moved.output
    assert "Moved 1 message(s)" in moved.output
    eventually(lambda: len(handler.records()) == 6 and _count(url) == 0 and _count(dlq) == 0,
               "the redriven message handled")
    again = handler.records()[-1]
    assert json.loads(again["body"])["id"] == "evt_poison"
    assert again["attributes"]["ApproximateReceiveCount"] == "1"


def test_redrive_asks_first_and_respects_max(queues):
    prefix, local = queues
    sqs = boto3.client("sqs")
    dlq, url = local.dead_letter["timeline"], local.queues["timeline"]
    sqs.send_message_batch(QueueUrl=dlq, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(3)])
    runner = CliRunner()
    declined = runner.invoke(cli.app, ["dlq", "redrive", "timeline", "--table", prefix], input="n\n")
    assert declined.exit_code != 0 and _count(dlq) == 3 and _count(url) == 0
    moved = runner.invoke(cli.app, ["dlq", "redrive", "timeline", "--max", "2", "--table", prefix],
                          input="y\n")
    assert moved.exit_code == 0, moved.output
    assert _count(dlq) == 1 and _count(url) == 2


def test_dlq_commands_fail_clearly_without_a_stack(aws_endpoint, monkeypatch):
    from rapport.devstack import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_endpoint)  # --endpoint-url sets it in-process
    runner = CliRunner()
    missing = runner.invoke(cli.app, ["dlq", "list", "--table", f"none{uuid.uuid4().hex[:8]}"])
    assert missing.exit_code == 2 and "do not exist" in missing.output
    unknown = runner.invoke(cli.app, ["dlq", "redrive", "billing", "--yes"])
    assert unknown.exit_code == 2 and "unknown queue" in unknown.output
    down = runner.invoke(cli.app, ["dlq", "list", "--endpoint-url", f"http://127.0.0.1:{free_port()}"])
    assert down.exit_code == 2 and "cannot reach SQS" in down.output


# -- schedules and a whole app ------------------------------------------------------------


def test_the_schedule_ticker_ticks_with_scheduled_events():
    handler = Recorder(lambda event: None)
    ticker = ScheduleTicker(handler, function_name="loyalty_schedule", every_seconds=0.05)
    ticker.start()
    try:
        eventually(lambda: len(handler.calls) >= 3, "three ticks")
    finally:
        ticker.stop()
    event, context = handler.calls[0]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region",
                          "resources", "detail"}
    assert context.function_name == "loyalty_schedule"
    assert ticker.stats.invocations >= 3 and ticker.stats.errors == 0


def test_a_chalice_apps_event_sources_are_wired_to_pollers(table, queues, monkeypatch):
    """EventPipeline.for_chalice_app: the Chalice decorators' handlers, called as Lambda
    calls them: a put reaches the stream handler, which queues a message (through
    crm/queues.py) that reaches the queue handler; the schedule ticks."""
    from chalice import Chalice

    from crm import queues as fq

    _, local = queues
    for name, value in local.env().items():
        monkeypatch.setenv(name, value)
    seen: dict[str, list] = {"stream": [], "loyalty": [], "schedule": []}
    capp = Chalice(app_name="rapport")

    @capp.on_dynamodb_record(stream_arn="arn:aws:dynamodb:us-east-1:0:table/x/stream/y", batch_size=100,
                             starting_position="TRIM_HORIZON", name="dispatch")
    def dispatch(event):
        for record in event:
            if record.keys["pk"]["S"].startswith("WIRE#"):
                seen["stream"].append(record.sequence_number)
                fq.send("loyalty", [{"type": "test", "id": record.keys["pk"]["S"]}])
        return {"batchItemFailures": []}

    @capp.on_sqs_message(queue="rapport-loyalty", batch_size=10, name="loyalty_events")
    def loyalty_events(event):
        seen["loyalty"].extend(json.loads(r.body)["id"] for r in event)
        return {"batchItemFailures": []}

    @capp.schedule("rate(15 minutes)", name="loyalty_schedule")
    def loyalty_schedule(event):
        seen["schedule"].append(event.detail_type)

    pipeline = EventPipeline.for_chalice_app(capp, table=table, queues=local.queues,
                                             stream_dead_letter=local.stream_dead_letter,
                                             schedule_seconds=0.05, starting_position="LATEST")
    assert [type(p).__name__ for p in pipeline.pollers] == ["StreamPoller", "QueuePoller", "ScheduleTicker"]
    pipeline.start()
    try:
        assert pipeline.wait_started()
        pk = f"WIRE#{uuid.uuid4().hex}"
        boto3.client("dynamodb").put_item(TableName=table, Item={"pk": _s(pk), "sk": _s("1")})
        assert pipeline.wait_idle(DEADLINE)
        assert seen["loyalty"] == [pk] and len(seen["stream"]) == 1
        eventually(lambda: seen["schedule"], "a tick")
        assert seen["schedule"][0] == "Scheduled Event"
    finally:
        pipeline.stop()
