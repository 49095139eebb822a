"""``rapport``: run the local stack, administer tenants, inspect and redrive DLQs.

Operator commands talk to DynamoDB and SQS directly (the emulator with --endpoint-url
or AWS_ENDPOINT_URL; AWS otherwise), never through a tenant's API key.
"""
from __future__ import annotations

import json
import signal
import threading
from dataclasses import dataclass
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(help="Rapport: a multi-tenant CRM backend.", no_args_is_help=True,
                  add_completion=False)
tenants_app = typer.Typer(help="Create and manage tenants (operator).", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
dlq_app = typer.Typer(help="Inspect and redrive the dead-letter queues (operator).",
                      no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
console = Console()
err = Console(stderr=True)

EndpointOpt = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                           help="AWS endpoint, e.g. the running dev stack's emulator URL")
TableOpt = typer.Option("rapport", "--table", envvar="RAPPORT_TABLE", help="DynamoDB table name")


@app.command()
def dev(port: int = typer.Option(8000, help="port of the API on 127.0.0.1"),
        endpoint_url: Optional[str] = typer.Option(
            None, "--endpoint-url", help="use this emulator (e.g. LocalStack) instead of starting moto"),
        table: str = TableOpt,
        seed: bool = typer.Option(True, "--seed/--no-seed", help="seed the demo tenant"),
        schedule_seconds: float = typer.Option(
            5.0, "--schedule-seconds", min=0.1,
            help="invoke the scheduled handlers this often (in AWS: their rate in app.py)")) -> None:
    """Run Rapport locally: emulator, table, queues, API, event pollers, a demo tenant.

    Ctrl-C stops it.
    """
    from rapport.devstack import DevStack, PortInUse

    stack = DevStack(port, endpoint_url, table, seed, schedule_seconds=schedule_seconds)
    try:
        with console.status("Starting the emulator, creating the table, seeding the demo tenant…"):
            running = stack.start()
    except PortInUse as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    print(f"AWS endpoint (emulator): {running.endpoint_url}", flush=True)
    if running.pollers:
        print(f"Event pollers: {', '.join(running.pollers)}", flush=True)
    if running.tenant_id:
        print(f"Demo tenant: {running.tenant_id}", flush=True)
    print(f"Rapport API: {running.api_url}", flush=True)
    if running.api_key:
        print(f"Demo API key: {running.api_key}", flush=True)
    print(f"Table {running.table}. Emulator state is in memory: it is lost when this stops (Ctrl-C).",
          flush=True)
    if running.api_key:
        print(f"Try: curl -H 'Authorization: Bearer {running.api_key}' '{running.api_url}/customers?limit=3'",
              flush=True)
    stop = threading.Event()
    # Explicit handlers: a shell starts background jobs with SIGINT ignored, and
    # Python then never raises KeyboardInterrupt; Ctrl-C and kill must both stop us.
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if running.api_key and stack.pipeline is not None:
        _await_demo_events(stack.pipeline, stop)
    while not stop.wait(0.5):
        pass
    console.print("Shutting down…")
    stack.stop()


def _await_demo_events(pipeline, stop: threading.Event) -> None:
    """The seed's orders are earned into points by the event handlers, like any order;
    show that work until it is done (the API answers meanwhile)."""
    import time

    started = time.monotonic()
    done = threading.Event()
    threading.Thread(target=lambda: done.set() if pipeline.wait_idle(timeout=300) else None,
                     daemon=True).start()
    with console.status("") as status:
        while not done.wait(0.25) and not stop.is_set() and time.monotonic() - started < 300:
            handled = sum(p.stats.records for p in pipeline.pollers)
            status.update(f"Processing the demo's events (points, tiers, timelines): {handled} delivered…")
    if done.is_set():
        handled = sum(p.stats.records for p in pipeline.pollers)
        print(f"Demo events processed: {handled} deliveries in {time.monotonic() - started:.0f} s; "
              "points and tiers are up to date.", flush=True)


@tenants_app.command("create")
def tenants_create(name: str, as_json: bool = typer.Option(False, "--json", help="print JSON"),
                   endpoint_url: Optional[str] = EndpointOpt, table: str = TableOpt) -> None:
    """Create a tenant and print its id and first admin API key (shown once)."""
    from rapport import env

    env.configure(endpoint_url, table)
    from crm import apikeys, tenants
    from crm.context import TenantContext
    from crm.errors import DomainError

    try:
        tenant = tenants.create(name)
    except DomainError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    key = apikeys.create(TenantContext(tenant.id), "admin", ["admin"])
    if as_json:
        print(json.dumps({"tenant_id": tenant.id, "api_key": key.secret}))
    else:
        console.print(f"Tenant: [bold]{tenant.id}[/bold] ({tenant.name})")
        console.print(f"Admin API key (shown once): [bold]{key.secret}[/bold]")


@tenants_app.command("list")
def tenants_list(endpoint_url: Optional[str] = EndpointOpt, table: str = TableOpt) -> None:
    """List tenants with their status and plan."""
    from rich.table import Table

    from rapport import env

    env.configure(endpoint_url, table)
    from crm import tenants

    out = Table("id", "name", "status", "plan", "created")
    for t in tenants.list_all():
        out.add_row(t.id, t.name, t.status, t.plan or "-", t.created_at)
    console.print(out)


def _set_status(tenant_id: str, status: str, endpoint_url: str | None, table: str) -> None:
    from rapport import env

    env.configure(endpoint_url, table)
    from crm import tenants
    from crm.context import TenantContext
    from crm.errors import DomainError

    try:
        tenant = tenants.set_status(TenantContext(tenant_id), status)
    except (DomainError, ValueError) as exc:
        err.print(f"[red]error:[/red] {getattr(exc, 'detail', exc)}")
        raise typer.Exit(2) from None
    console.print(f"{tenant.id} is now {tenant.status} (API keys see it within 60 s)")


@tenants_app.command("suspend")
def tenants_suspend(tenant_id: str, endpoint_url: Optional[str] = EndpointOpt,
                    table: str = TableOpt) -> None:
    """Suspend a tenant: every route answers 403."""
    _set_status(tenant_id, "suspended", endpoint_url, table)


@tenants_app.command("activate")
def tenants_activate(tenant_id: str, endpoint_url: Optional[str] = EndpointOpt,
                     table: str = TableOpt) -> None:
    """Re-activate a suspended tenant."""
    _set_status(tenant_id, "active", endpoint_url, table)


# -- dead-letter queues ----------------------------------------------------------------

DlqPrefixOpt = typer.Option("rapport", "--table", envvar="RAPPORT_TABLE",
                            help="the local stack's table: its queues are <table>-<subscriber>[-dlq]")
StackOpt = typer.Option(None, "--stack", help="a deployed CloudFormation stack: take the queue "
                                              "URLs from its outputs (AWS)")


@dataclass
class _Queues:
    name: str              # loyalty, timeline or stream
    queue_url: str | None  # None for the stream DLQ: nothing can be put back in a stream
    dlq_url: str


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _sqs_client(service: str = "sqs"):
    import boto3
    from botocore.config import Config

    return boto3.client(service, config=Config(connect_timeout=3, retries={"total_max_attempts": 2}))


def _where(endpoint_url: str | None) -> str:
    import os

    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "AWS"


def _resolve(subscriber: str | None, endpoint_url: str | None, table: str,
             stack: str | None) -> tuple[object, list[_Queues]]:
    from botocore.exceptions import BotoCoreError, ClientError

    from functions.queues import SUBSCRIBERS
    from infra.bootstrap import STREAM_DLQ, local_queue_names, queue_logical_id
    from rapport import env

    env.configure(endpoint_url)
    known = (*SUBSCRIBERS, STREAM_DLQ)
    if subscriber is not None and subscriber not in known:
        _fail(f"unknown queue {subscriber!r}: one of {', '.join(known)}")
    wanted = [subscriber] if subscriber else list(known)
    sqs = _sqs_client()
    found = []
    try:
        if stack:
            outputs = {o["OutputKey"]: o["OutputValue"] for o in _sqs_client("cloudformation")
                       .describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])}
            for name in wanted:
                base = queue_logical_id(name).removesuffix("Queue")
                queue = None if name == STREAM_DLQ else outputs.get(f"{base}QueueUrl")
                dlq = outputs.get(f"{base}DeadLetterQueueUrl")
                if dlq is None or (name != STREAM_DLQ and queue is None):
                    _fail(f"stack {stack} has no {base}QueueUrl/{base}DeadLetterQueueUrl outputs")
                found.append(_Queues(name, queue, dlq))
        else:
            names = local_queue_names(table)
            for name in wanted:
                q = names[name]
                url = lambda n: sqs.get_queue_url(QueueName=n)["QueueUrl"]  # noqa: E731
                found.append(_Queues(name, url(q.queue) if q.queue else None, url(q.dlq)))
    except sqs.exceptions.QueueDoesNotExist:
        _fail(f"the queues of table {table!r} do not exist at {_where(endpoint_url)}: is "
              f"`rapport dev` (with --table {table}) running there? For AWS pass --stack NAME.")
    except BotoCoreError as exc:  # EndpointConnectionError, NoCredentialsError, ...
        _fail(f"cannot reach SQS at {_where(endpoint_url)}: {exc}. Is the stack running? "
              "(`rapport dev` prints its emulator endpoint; pass it as --endpoint-url)")
    except ClientError as exc:
        _fail(f"{exc.response['Error'].get('Code')}: {exc.response['Error'].get('Message')}")
    return sqs, found


def _counts(sqs, url: str) -> dict[str, int]:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return {"waiting": int(attributes["ApproximateNumberOfMessages"]),
            "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"])}


def _peek(sqs, url: str, limit: int) -> list[dict]:
    """Up to ``limit`` messages, made visible again at once (each peek counts as a receive)."""
    seen: dict[str, dict] = {}
    handles = []
    while len(seen) < limit:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, limit - len(seen)),
                                    VisibilityTimeout=30, WaitTimeSeconds=1, AttributeNames=["All"],
                                    MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            break
        for message in batch:
            seen.setdefault(message["MessageId"], message)
            handles.append(message["ReceiptHandle"])
    for i in range(0, len(handles), 10):
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": 0}
            for n, h in enumerate(handles[i:i + 10])])
    return list(seen.values())


def _describe_event(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return "-"
    if not isinstance(data, dict):
        return "-"
    if "DDBStreamBatchInfo" in data:  # Lambda's on-failure record of a stream batch
        info = data["DDBStreamBatchInfo"]
        return (f"{data.get('requestContext', {}).get('condition', '?')}: {info.get('batchSize')} "
                f"records {info.get('startSequenceNumber')}..{info.get('endSequenceNumber')}")
    kind = next((data[k] for k in ("type", "event_type", "detail-type", "eventName") if k in data), None)
    ident = next((data[k] for k in ("id", "event_id", "eventID") if k in data), None)
    return " ".join(str(p) for p in (kind, ident) if p is not None) or "-"


def _timestamp(ms: str | None) -> str:
    from datetime import datetime, timezone

    if not ms:
        return "-"
    return datetime.fromtimestamp(int(ms) / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _excerpt(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


@dlq_app.command("list")
def dlq_list(subscriber: Optional[str] = typer.Argument(
                 None, help="loyalty, timeline or stream (the stream's on-failure queue); all without"),
             limit: int = typer.Option(10, "--limit", min=0, help="messages to show per DLQ"),
             endpoint_url: Optional[str] = EndpointOpt, table: str = DlqPrefixOpt,
             stack: Optional[str] = StackOpt) -> None:
    """Message counts of the queues and their DLQs, and a look at the DLQs' messages."""
    from rich.table import Column, Table

    sqs, targets = _resolve(subscriber, endpoint_url, table, stack)
    summary = Table("queue", "waiting", "in flight", Column("dead-letter queue", overflow="fold"),
                    "DLQ messages")
    peeks = []
    for target in targets:
        main = _counts(sqs, target.queue_url) if target.queue_url else None
        dlq = _counts(sqs, target.dlq_url)
        summary.add_row(target.name, str(main["waiting"]) if main else "-",
                        str(main["in_flight"]) if main else "-", target.dlq_url.rsplit("/", 1)[-1],
                        str(dlq["waiting"] + dlq["in_flight"]))
        if dlq["waiting"] and limit:
            peeks.append((target, dlq["waiting"], _peek(sqs, target.dlq_url, limit)))
    console.print(summary)
    for target, total, messages in peeks:
        out = Table(Column("message id", overflow="fold"), "receives",
                    Column("first received", overflow="fold"), Column("event", overflow="fold"),
                    Column("body", no_wrap=True, overflow="ellipsis"),
                    title=f"{target.dlq_url.rsplit('/', 1)[-1]}: {len(messages)} of {total}")
        for m in messages:
            attributes = m.get("Attributes", {})
            out.add_row(m["MessageId"], attributes.get("ApproximateReceiveCount", "-"),
                        _timestamp(attributes.get("ApproximateFirstReceiveTimestamp")),
                        _describe_event(m["Body"]), _excerpt(m["Body"]))
        console.print(out)
    if not peeks:
        console.print("The dead-letter queues are empty.")


def _print_stream_records(messages: list[dict]) -> int:
    """Print, as JSON lines, the stream records each on-failure record points at."""
    from rapport.pollers import _lambda_json

    streams = _sqs_client("dynamodbstreams")
    printed = 0
    for message in messages:
        info = json.loads(message["Body"]).get("DDBStreamBatchInfo", {})
        start, end = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
        try:
            iterator = streams.get_shard_iterator(
                StreamArn=info["streamArn"], ShardId=info["shardId"],
                ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=str(start))["ShardIterator"]
            done = False
            while iterator and not done:
                answer = streams.get_records(ShardIterator=iterator, Limit=1000)
                if not answer.get("Records"):
                    break
                for record in answer["Records"]:
                    if int(record["dynamodb"]["SequenceNumber"]) > end:
                        done = True
                        break
                    print(json.dumps(_lambda_json(record), default=str), flush=True)
                    printed += 1
                iterator = answer.get("NextShardIterator")
        except Exception as exc:  # noqa: BLE001 - trimmed (older than 24 h), stream gone, ...
            err.print(f"[yellow]records {start}..{end} of {info.get('shardId')} cannot be read "
                      f"from the stream:[/yellow] {exc}")
    return printed


@dlq_app.command("redrive")
def dlq_redrive(subscriber: str = typer.Argument(..., help="loyalty or timeline (or stream: see below)"),
                max_messages: Optional[int] = typer.Option(None, "--max", min=1,
                                                           help="move at most N messages"),
                yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
                endpoint_url: Optional[str] = EndpointOpt, table: str = DlqPrefixOpt,
                stack: Optional[str] = StackOpt) -> None:
    """Move messages from a subscriber's DLQ back to its queue.

    Each message is received, sent to the queue, then deleted from the DLQ: none is
    lost, at worst one is sent twice. The stream's DLQ cannot be redriven; for it this
    offers to print the stream records its messages point at.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    sqs, [target] = _resolve(subscriber, endpoint_url, table, stack)
    dlq_name = target.dlq_url.rsplit("/", 1)[-1]
    waiting = _counts(sqs, target.dlq_url)["waiting"]
    if target.queue_url is None:
        console.print(
            f"{dlq_name} holds Lambda's on-failure records ({waiting} now): each names a range of "
            "the table's stream (shard, first and last sequence number), not the records, and "
            "nothing can be put back into a stream, so there is nothing to redrive. Fix the "
            "cause, then replay the changes by hand; in AWS the stream keeps records for 24 hours.")
        if not waiting:
            return
        if not yes and not typer.confirm("Print the records of these ranges from the stream?"):
            return
        messages = _peek(sqs, target.dlq_url, max_messages or waiting)
        printed = _print_stream_records(messages)
        err.print(f"{printed} records of {len(messages)} ranges printed; the messages stay in {dlq_name}.")
        return
    queue_name = target.queue_url.rsplit("/", 1)[-1]
    total = min(waiting, max_messages) if max_messages else waiting
    if not total:
        console.print(f"{dlq_name} is empty: nothing to redrive.")
        return
    if not yes:
        typer.confirm(f"Move {total} message(s) from {dlq_name} back to {queue_name}?", abort=True)
    moved = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err) as progress:
        task = progress.add_task(f"{dlq_name} → {queue_name}", total=total)
        while moved < total:
            batch = sqs.receive_message(QueueUrl=target.dlq_url, MaxNumberOfMessages=min(10, total - moved),
                                        VisibilityTimeout=60, WaitTimeSeconds=1, AttributeNames=["All"],
                                        MessageAttributeNames=["All"]).get("Messages", [])
            if not batch:
                break
            entries = []
            for i, m in enumerate(batch):
                entry = {"Id": str(i), "MessageBody": m["Body"]}
                attributes = {k: {f: v[f] for f in ("DataType", "StringValue", "BinaryValue") if f in v}
                              for k, v in m.get("MessageAttributes", {}).items()}
                if attributes:
                    entry["MessageAttributes"] = attributes
                entries.append(entry)
            answer = sqs.send_message_batch(QueueUrl=target.queue_url, Entries=entries)
            sent = [batch[int(e["Id"])] for e in answer.get("Successful", [])]
            if sent:  # only what the main queue accepted leaves the DLQ
                sqs.delete_message_batch(QueueUrl=target.dlq_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(sent)])
            moved += len(sent)
            progress.advance(task, len(sent))
            if answer.get("Failed"):
                for failure in answer["Failed"]:
                    err.print(f"[red]not sent:[/red] {failure.get('Code')}: {failure.get('Message')}")
                break  # they stay in the DLQ (visible again in 60 s)
    console.print(f"Moved {moved} message(s) from {dlq_name} to {queue_name}.")
    if moved < total:
        raise typer.Exit(1)


def main() -> None:
    app()
