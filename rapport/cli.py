"""``rapport``: run the local stack, administer tenants, inspect and redrive DLQs; import,
sync and show segments as a tenant.

Operator commands talk to DynamoDB and SQS directly (the emulator with --endpoint-url
or AWS_ENDPOINT_URL; AWS otherwise), never through a tenant's API key; ``import``,
``sync`` and ``segments`` go through the HTTP API with the tenant's key.
"""
from __future__ import annotations

import json
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
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
billing_app = typer.Typer(help="Billing on Stripe (operator): reconcile tenants with Stripe.",
                          no_args_is_help=True)
app.add_typer(billing_app, name="billing")
from rapport.cli_outbox import outbox as _outbox  # noqa: E402  (`rapport outbox`, issue 13)
app.command("outbox")(_outbox)
console = Console()
err = Console(stderr=True)

EndpointOpt = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                           help="AWS endpoint, e.g. the running dev stack's emulator URL")
TableOpt = typer.Option("rapport", "--table", envvar="RAPPORT_TABLE", help="DynamoDB table name")
NO_ENDPOINT = ("no AWS endpoint: pass --endpoint-url URL (the emulator URL `rapport dev` prints) "
               "or set AWS_ENDPOINT_URL; for AWS itself, configure AWS credentials")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"rapport {version('rapport')}")
        raise typer.Exit()


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="print the version and exit")) -> None:
    """Rapport: a multi-tenant CRM backend."""


def _configure(endpoint_url: str | None, table: str | None = None, *, aws: bool = False) -> None:
    """Point the process at the endpoint (rapport/env.py). Without one, and without AWS
    credentials to go to AWS instead, say so in one line and exit 2 (rather than the
    traceback of the first request's NoCredentialsError)."""
    import os

    from rapport import env

    env.configure(endpoint_url, table)
    if endpoint_url or os.environ.get("AWS_ENDPOINT_URL"):
        return
    import boto3

    if boto3.session.Session().get_credentials() is None:
        _fail(NO_ENDPOINT if not aws else "no AWS credentials for --stack: configure them "
              "(AWS_PROFILE, aws configure) or use --endpoint-url for the local stack")


@app.command()
def dev(port: int = typer.Option(8000, help="port of the API on 127.0.0.1"),
        endpoint_url: Optional[str] = typer.Option(
            None, "--endpoint-url", help="use this emulator (e.g. LocalStack) instead of starting moto"),
        table: str = TableOpt,
        seed: bool = typer.Option(True, "--seed/--no-seed", help="seed the demo tenant"),
        schedule_seconds: float = typer.Option(
            5.0, "--schedule-seconds", min=0.1,
            help="invoke the scheduled handlers this often (in AWS: their rate in app.py)")) -> None:
    """Run Rapport locally: emulator, table, queues, API, event pollers, a demo tenant, a Stripe double.

    Ctrl-C stops it.
    """
    from rapport.devstack import DevStack, PortInUse

    stack = DevStack(port, endpoint_url, table, seed, schedule_seconds=schedule_seconds, stripe=True)
    try:
        with console.status("Starting the emulator, creating the table, seeding the demo tenant…"):
            running = stack.start()
    except PortInUse as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    print(f"AWS endpoint (emulator): {running.endpoint_url}", flush=True)
    print(f"Stripe API (emulator): {running.stripe_url}", flush=True)
    print(f"Stripe webhook secret: {running.stripe_webhook_secret}", flush=True)
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
    _configure(endpoint_url, table)
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

    _configure(endpoint_url, table)
    from crm import tenants

    out = Table("id", "name", "status", "plan", "created")
    for t in tenants.list_all():
        out.add_row(t.id, t.name, t.status, t.plan or "-", t.created_at)
    console.print(out)


@tenants_app.command("show")
def tenants_show(tenant_id: str, as_json: bool = typer.Option(False, "--json", help="print JSON"),
                 endpoint_url: Optional[str] = EndpointOpt, table: str = TableOpt) -> None:
    """A tenant's plan, subscription status, period, limits, usage and features (as GET /v1/billing)."""
    _configure(endpoint_url, table)
    from crm import tenants
    from crm.billing import service
    from crm.context import TenantContext
    from crm.errors import DomainError

    try:
        ctx = TenantContext(tenant_id)
        tenant = tenants.get(ctx)
        billing = service.summary(ctx)
    except (DomainError, ValueError) as exc:
        err.print(f"[red]error:[/red] {getattr(exc, 'detail', exc)}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps({"tenant_id": tenant.id, "name": tenant.name, "tenant_status": tenant.status, **billing}))
        return
    _print_billing(tenant, billing)


def _print_billing(tenant, billing: dict) -> None:
    from rich.table import Table

    period = billing["current_period"] or {}
    console.print(f"Tenant: [bold]{tenant.id}[/bold] ({tenant.name}, {tenant.status})")
    console.print(f"Plan: [bold]{billing['plan']}[/bold]   Status: {billing['status']}"
                  + (f"   Subscription: {billing['subscription']}" if billing["subscription"] else ""))
    if period:
        console.print(f"Period: {period.get('start') or '-'} -> {period.get('end') or '-'}"
                      + ("   (cancels at its end)" if billing["cancel_at_period_end"] else ""))
    if billing["grace_until"]:
        console.print(f"Past due since {billing['past_due_since']}: writes answer 402 from {billing['grace_until']}")
    if billing["checkout"]:
        console.print(f"Checkout open: {billing['checkout']['session_id']} ({billing['checkout']['plan']})")
    out = Table("limit", "value", "usage")
    usage = dict(billing["usage"])
    used = {"customers": usage.get("customers"), "connections": usage.get("connections"),
            "emails_per_month": usage.get("emails_sent")}
    for name, value in billing["limits"].items():
        out.add_row(name, "unlimited" if value is None else str(value),
                    "-" if used.get(name) is None else str(used[name]))
    console.print(out)
    rest = {k: v for k, v in usage.items() if k not in ("customers", "connections", "emails_sent")}
    if rest:
        console.print("Usage: " + ", ".join(f"{k} {v}" for k, v in rest.items()))
    console.print("Features: " + (", ".join(billing["features"]) or "-"))
    metering = billing.get("metering")
    if metering:
        console.print(f"Metering ({metering['meter']}): reported through {metering['reported_through'] or '-'}, "
                      f"{metering['reported_in_period']} in the period"
                      + (f", {metering['pending']} pending" if metering["pending"] else ""))


@billing_app.command("reconcile")
def billing_reconcile(as_json: bool = typer.Option(False, "--json", help="print JSON"),
                      endpoint_url: Optional[str] = EndpointOpt, table: str = TableOpt) -> None:
    """Compare every tenant that has a Stripe customer with Stripe (subscriptions, entitlements,
    undelivered events of the last 30 days) and repair drift; prints what it repaired."""
    _configure(endpoint_url, table)
    from crm.billing import reconcile, stripe_api

    if not stripe_api.configured():
        _fail("billing is not configured: set RAPPORT_STRIPE_API_KEY (and RAPPORT_STRIPE_API_BASE for "
              "the Stripe double `rapport dev` prints)")
    report = reconcile.run()
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        for repair in report.repaired:
            changes = ", ".join(f"{k} {before or '-'} -> {after or '-'}"
                                for k, (before, after) in repair["changes"].items())
            console.print(f"repaired {repair['tenant']}: {changes}")
        for sub in report.cancelled:
            console.print(f"cancelled duplicate subscription {sub}")
        for failure in report.failed:
            err.print(f"[red]failed[/red] {failure}")
        console.print(f"{report.tenants} tenant(s) checked, {len(report.repaired)} repaired, "
                      f"{len(report.events_applied)} undelivered event(s) applied")
    if report.failed:
        raise typer.Exit(1)


def _set_status(tenant_id: str, status: str, endpoint_url: str | None, table: str) -> None:
    _configure(endpoint_url, table)
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
    name: str              # loyalty, timeline, sync or stream
    queue_url: str | None  # None for the stream DLQ: nothing can be put back in a stream
    dlq_url: str


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", soft_wrap=True)  # one line, whatever the width
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

    from crm.queues import SUBSCRIBERS
    from infra.bootstrap import STREAM_DLQ, local_queue_names, queue_logical_id

    _configure(endpoint_url, aws=bool(stack))
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
                 None, help="loyalty, timeline, sync, segments, email, delivery or stream (the stream's "
                            "on-failure queue); all of them without"),
             limit: int = typer.Option(10, "--limit", min=0, help="messages to show per DLQ"),
             endpoint_url: Optional[str] = EndpointOpt, table: str = DlqPrefixOpt,
             stack: Optional[str] = StackOpt) -> None:
    """Message counts of the queues and their DLQs, and a look at the DLQs' messages.

    Laid out for 80 columns: a table of counts, then each message as a short block.
    """
    from rich import box
    from rich.table import Column, Table

    sqs, targets = _resolve(subscriber, endpoint_url, table, stack)
    summary = Table(Column("queue", no_wrap=True), Column("waiting", justify="right"),
                    Column("in flight", justify="right"), Column("dead-letter queue", no_wrap=True),
                    Column("in DLQ", justify="right"), box=box.SIMPLE_HEAD)
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
    width = max(40, min(console.width, 120)) - 4
    for target, total, messages in peeks:
        console.print(f"[bold]{target.dlq_url.rsplit('/', 1)[-1]}[/bold]: {len(messages)} of {total}",
                      highlight=False)
        for m in messages:
            attributes = m.get("Attributes", {})
            console.print(f"  {m['MessageId']}  {attributes.get('ApproximateReceiveCount', '-')} receives, "
                          f"first {_timestamp(attributes.get('ApproximateFirstReceiveTimestamp'))}",
                          highlight=False, overflow="fold")
            console.print(f"    {_excerpt(_describe_event(m['Body']), width)}", highlight=False,
                          markup=False, no_wrap=True, overflow="ellipsis")
            console.print(f"    {_excerpt(m['Body'], width)}", highlight=False, markup=False,
                          no_wrap=True, overflow="ellipsis")
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
def dlq_redrive(subscriber: str = typer.Argument(..., help="loyalty, timeline, sync, segments, email or delivery "
                                                                  "(or stream: see below)"),
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


# -- CSV import and sync progress, through the HTTP API with a tenant's API key --------

ApiOpt = typer.Option(None, "--api", envvar="RAPPORT_API_URL", show_envvar=True,
                      help="the API's URL, e.g. http://127.0.0.1:8000/v1 (`rapport dev` prints it)")
KeyOpt = typer.Option(None, "--key", envvar="RAPPORT_API_KEY", show_envvar=True,
                      help="an API key with the admin scope")
TimeoutOpt = typer.Option(3600.0, "--timeout", min=1, help="stop following the run after this many seconds")
RUN_FINISHED = ("succeeded", "failed", "cancelled")
POLL_SECONDS = 0.5
# header (lower case, "_" as a space) -> target: what `rapport import` guesses without --map
GUESSES = {
    "email": "email", "e-mail": "email", "mail": "email", "email address": "email", "e-mail address": "email",
    "phone": "phone", "mobile": "phone", "phone number": "phone", "mobile phone": "phone", "telephone": "phone",
    "first name": "name.given", "firstname": "name.given", "given name": "name.given",
    "last name": "name.family", "lastname": "name.family", "surname": "name.family", "family name": "name.family",
    "id": "external_id", "customer id": "external_id", "external id": "external_id",
    "tags": "tags", "locale": "locale", "gender": "gender",
    "birth date": "birth_date", "birthday": "birth_date", "date of birth": "birth_date",
}


class _Api:
    """The API over HTTP with an admin key; a refused request ends the command: exit 2
    for a 4xx (the request or the key is wrong), 1 otherwise."""

    def __init__(self, api: str | None, key: str | None, out: Console) -> None:
        import httpx

        if not api or not key:
            missing = " and ".join(n for n, v in (("--api (RAPPORT_API_URL)", api), ("--key (RAPPORT_API_KEY)", key))
                                   if not v)
            _fail(f"give {missing}")
        self.base = api.rstrip("/").removesuffix("/v1")
        self.out = out
        self.http = httpx.Client(base_url=self.base, timeout=30,
                                 headers={"Authorization": f"Bearer {key}", "User-Agent": "rapport-cli"})

    RATE_LIMIT_RETRIES = 8  # a 429 is waited out (Retry-After, at most 10 s each) this many times

    def call(self, method: str, path: str, expect: int, **kwargs) -> dict:
        """A 429 (the tenant's rate limit) changed nothing at the API, so it is waited out
        as its Retry-After says and sent again; any other refusal ends the command."""
        import time

        import httpx

        for attempt in range(self.RATE_LIMIT_RETRIES + 1):
            try:
                r = self.http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                err.print(f"[red]error:[/red] cannot reach the API at {self.base}: {exc}")
                raise typer.Exit(1) from None
            if r.status_code != 429 or attempt == self.RATE_LIMIT_RETRIES:
                break
            try:
                wait = float(r.headers.get("retry-after") or 1)
            except ValueError:
                wait = 1.0
            time.sleep(min(10.0, max(0.1, wait)))
        if r.status_code != expect:
            try:
                body = r.json()
                detail = body.get("detail") or r.text
                errors = body.get("errors") or []
            except ValueError:
                detail, errors = r.text[:500], []
            err.print(f"[red]error:[/red] {method} {path}: {r.status_code} {detail}")
            for e in errors[1:5]:
                err.print(f"  {e.get('field')}: {e.get('message')}")
            raise typer.Exit(2 if 400 <= r.status_code < 500 else 1)
        return r.json() if r.content else {}


def _header(path, delimiter: str, encoding: str) -> list[str]:
    import csv
    import io

    try:
        raw = b""
        with open(path, "rb") as f:  # only the header's bytes are decoded: the run checks the rest
            for line in f:
                raw += line
                if raw.count(b'"') % 2 == 0:  # not inside a quoted value
                    break
        header = next(csv.reader(io.StringIO(raw.decode(encoding), newline=""), delimiter=delimiter), None)
    except (OSError, UnicodeDecodeError, LookupError, csv.Error) as exc:
        _fail(f"cannot read the header of {path}: {exc}")
    if not header or not any(h.strip() for h in header):
        _fail(f"{path} has no header row: the first row must name the columns")
    return [h.strip() for h in header]


def _guess_mapping(header: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for column in header:
        target = GUESSES.get(" ".join(column.lower().replace("_", " ").split()))
        if target and target not in mapping.values():
            mapping[column] = target
    return mapping


def _parse_maps(maps: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in maps:
        column, sep, target = item.rpartition("=")
        if not sep or not column.strip() or not target.strip():
            _fail(f"--map {item!r}: write COLUMN=FIELD, e.g. --map 'E-mail=email'")
        mapping[column.strip()] = target.strip()
    return mapping


def _check_columns(mapping: dict[str, str], header: list[str], path) -> None:
    missing = [c for c in mapping if c not in header]
    if missing:
        _fail(f"{path} has no column {', '.join(repr(c) for c in missing)}; its columns: "
              f"{', '.join(repr(h) for h in header)}")


def _show_mapping(out: Console, mapping: dict[str, str], source: str, guessed: bool) -> None:
    from rich.table import Table

    table = Table("column", "customer field", title="Mapping", title_justify="left")
    for column, target in mapping.items():
        table.add_row(column, target)
    out.print(table)
    if guessed:
        out.print("The mapping was guessed from the header; give it with --map COLUMN=FIELD.")
    out.print(f"External ids are recorded under the source {source!r}.")


def _follow_run(api: _Api, connection_id: str, run: dict, timeout: float) -> int:
    """Show a run's progress until it finishes (a bar per stream: records read of the
    total when the source tells it, an indeterminate bar otherwise), then its counts and
    rejected records. The exit code: 0 succeeded, 1 failed or still going at the timeout."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = api.out
    path = f"/v1/connections/{connection_id}/runs/{run['id']}"
    deadline = time.monotonic() + timeout
    tasks: dict[str, int] = {}
    status = None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=out) as progress:
        while True:
            if run["status"] != status:
                status = run["status"]
                if status == "paused":
                    progress.console.print(f"run {run['id']}: paused until {run.get('resume_at') or '?'}: the "
                                           "run resumes on its own (a vendor's rate limit, or a long import "
                                           "continuing)")
                elif status == "failed":
                    progress.console.print(f"run {run['id']}: failed ({run.get('error') or 'no reason given'})")
                else:
                    progress.console.print(f"run {run['id']}: {status}")
            for name, counts in (run.get("streams") or {}).items():
                if name not in tasks:
                    tasks[name] = progress.add_task(name, total=counts.get("total"), note="")
                done = counts.get("done") or status in RUN_FINISHED
                total = counts.get("total")
                if done and total is None:
                    total = counts.get("read", 0)
                note = f"{counts.get('rejected', 0)} rejected" if counts.get("rejected") else ""
                progress.update(tasks[name], completed=counts.get("read", 0), total=total, note=note)
            if status in RUN_FINISHED or time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
            run = api.call("GET", path, 200)
    _report(out, run)
    if run["status"] == "succeeded":
        return 0
    if run["status"] == "failed":
        why = run.get("error_detail") or "no reason given"
        err.print(f"[red]run {run['id']} failed ({run.get('error') or 'error'}):[/red] {why}"
                  + (f" (trace id {run['trace_id']})" if run.get("trace_id") else ""))
    elif run["status"] == "cancelled":
        err.print(f"run {run['id']} was cancelled")
    else:
        err.print(f"run {run['id']} is still {run['status']} after {timeout:.0f} s; follow it with "
                  f"GET {api.base}{path}")
    return 1


def _report(out: Console, run: dict) -> None:
    from rich.table import Column, Table

    keys = ("read", "created", "updated", "unchanged", "rejected", "conflicts")
    table = Table("stream", *(Column(k, justify="right") for k in keys), title=f"Run {run['id']}: {run['status']}")
    sums = dict.fromkeys(keys, 0)
    for name, counts in (run.get("streams") or {}).items():
        table.add_row(name, *(str(counts.get(k, 0)) for k in keys))
        for k in keys:
            sums[k] += counts.get(k, 0)
    if len(run.get("streams") or {}) > 1:
        table.add_row("total", *(str(v) for v in sums.values()))
    out.print(table)
    rejected = run.get("rejected") or []
    if rejected:
        total = run.get("rejected_total", len(rejected))
        shown = f"the first {len(rejected)} of {total}" if total > len(rejected) else f"{total}"
        rows = Table(Column("record", no_wrap=True), "stream", Column("reason", overflow="fold"),
                     title=f"Rejected records ({shown})")
        for r in rejected:
            ident = r.get("external_id") or "-"
            reason = (r.get("reason") or "").removeprefix(f"{ident}: ")
            details = "; ".join(f"{e.get('field')}: {str(e.get('message')).removeprefix('Value error, ')}"
                                for e in r.get("errors") or [])
            rows.add_row(ident, r.get("stream") or "", f"{reason}: {details}" if details else reason)
        out.print(rows)
    took = f" in {run['duration_ms'] / 1000:.1f} s" if run.get("duration_ms") is not None else ""
    out.print(f"Run {run['id']} {run['status']}{took}.")


def _import_name(file: Path) -> str:
    return f"CSV import: {file.name}"[:100]


def _import_connection(api: _Api, file: Path) -> dict | None:
    """The csv connection an earlier ``rapport import`` of a file of this name created, so
    importing it again updates the same customers' source and keeps one connection."""
    name, cursor = _import_name(file), None
    while True:
        page = api.call("GET", "/v1/connections", 200, params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        for conn in page.get("data") or []:
            if conn.get("connector") == "csv" and conn.get("name") == name:
                return conn
        cursor = page.get("next_cursor")
        if not cursor:
            return None


@app.command("import")
def import_csv(
        file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="the CSV file"),
        maps: Optional[list[str]] = typer.Option(None, "--map", help="COLUMN=FIELD, repeatable, e.g. "
                                                 "--map 'E-mail=email' --map 'Id=external_id'"),
        connection: Optional[str] = typer.Option(None, "--connection", help="import into this csv "
                                                 "connection (con_…) instead of creating one"),
        source: Optional[str] = typer.Option(None, "--source", help="the system the file's ids belong to "
                                             "(customers get external_ids[SOURCE]); default csv"),
        delimiter: str = typer.Option(",", "--delimiter", help="one character, e.g. ';'"),
        encoding: str = typer.Option("utf-8-sig", "--encoding", help="utf-8, utf-8-sig or latin-1"),
        api_url: Optional[str] = ApiOpt, key: Optional[str] = KeyOpt,
        timeout: float = TimeoutOpt) -> None:
    """Import customers from a CSV file.

    Creates a csv connection (the mapping guessed from the header unless --map says it),
    or reuses the one an earlier import of a file of the same name created (or
    --connection ID), uploads the file, syncs it and shows the progress, the counts and the rejected rows.
    Exit code 0 when the run succeeds (rows may be rejected), 1 when it fails, 2 for a
    usage error.
    """
    from pydantic import ValidationError

    from connectors.csvfile import Config
    from crm.errors import field_errors

    out = Console()
    api = _Api(api_url, key, out)
    header = _header(file, delimiter, encoding)
    reused = None
    mapping = _parse_maps(maps) if maps else None
    if connection:
        conn = api.call("GET", f"/v1/connections/{connection}", 200)
        if conn["connector"] != "csv":
            _fail(f"{connection} is a {conn['connector']} connection, not a csv one")
        config = dict(conn["config"])
        if mapping is not None or source is not None:
            config.update({k: v for k, v in (("mapping", mapping), ("source", source)) if v is not None})
    else:
        reused = _import_connection(api, file)
        config = {"mapping": mapping, "source": source or "csv", "delimiter": delimiter, "encoding": encoding}
        if reused is not None:
            # the file's connection again: its mapping and source stay unless given
            config = {**config, "mapping": mapping if mapping is not None else reused["config"].get("mapping"),
                      "source": source or reused["config"].get("source") or "csv"}
    guessed = config.get("mapping") is None
    if guessed:
        config["mapping"] = _guess_mapping(header)
    _check_columns(config["mapping"], header, file)
    try:
        Config.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(f"{e['field']}: {e['message'].removeprefix('Value error, ')}" for e in field_errors(exc))
        hint = " (pass --map COLUMN=FIELD)" if guessed else ""
        _fail(f"the mapping does not work{hint}: {problems}")
    _show_mapping(out, config["mapping"], config.get("source") or "csv", guessed)
    if connection:
        cid = connection
        if mapping is not None or source is not None:
            api.call("PATCH", f"/v1/connections/{cid}", 200, json={"config": {
                k: config[k] for k in ("mapping", "source") if k in config}})
    elif reused is not None:
        cid = reused["id"]
        changed = {k: config[k] for k in ("mapping", "source", "delimiter", "encoding")
                   if config.get(k) != reused["config"].get(k)}
        if changed:
            api.call("PATCH", f"/v1/connections/{cid}", 200, json={"config": changed})
        out.print(f"Using connection {cid} (created for {file.name}; --connection ID picks another).")
    else:
        cid = api.call("POST", "/v1/connections", 201, json={
            "connector": "csv", "name": _import_name(file), "config": config})["id"]
        out.print(f"Created connection {cid}.")
    upload = api.call("POST", f"/v1/connections/{cid}/uploads", 201)
    size = file.stat().st_size
    if size > upload.get("max_bytes", size):
        _fail(f"{file} is {size} bytes; the limit is {upload['max_bytes']}: split the file")
    import httpx

    from contextlib import nullcontext

    with out.status(f"Uploading {file.name} ({size:,} bytes)…") if out.is_terminal else nullcontext():
        try:
            with open(file, "rb") as f:
                put = httpx.request(upload["method"], upload["url"], content=f, timeout=300,
                                    headers={**upload["headers"], "Content-Length": str(size)})
        except httpx.HTTPError as exc:
            err.print(f"[red]error:[/red] the upload failed: {exc}")
            raise typer.Exit(1) from None
    if put.status_code >= 300:
        err.print(f"[red]error:[/red] the upload failed: {put.status_code} {put.text[:300]}")
        raise typer.Exit(1)
    out.print(f"Uploaded {file.name} ({size:,} bytes) as {upload['upload_id']}.")
    run = api.call("POST", f"/v1/connections/{cid}/sync", 202,
                   json={"mode": "backfill", "upload_id": upload["upload_id"]})
    raise typer.Exit(_follow_run(api, cid, run, timeout))


@app.command("sync")
def sync_connection(
        connection_id: str = typer.Argument(..., help="the connection (con_…)"),
        mode: str = typer.Option("incremental", "--mode", help="backfill (everything) or incremental"),
        upload: Optional[str] = typer.Option(None, "--upload", help="file connectors: the upload to import"),
        api_url: Optional[str] = ApiOpt, key: Optional[str] = KeyOpt,
        timeout: float = TimeoutOpt) -> None:
    """Sync a connection and show its progress.

    Exit code 0 when the run succeeds, 1 when it fails, 2 for a usage error.
    """
    if mode not in ("backfill", "incremental"):
        _fail(f"--mode is backfill or incremental, not {mode!r}")
    api = _Api(api_url, key, Console())
    body = {"mode": mode, **({"upload_id": upload} if upload else {})}
    run = api.call("POST", f"/v1/connections/{connection_id}/sync", 202, json=body)
    raise typer.Exit(_follow_run(api, connection_id, run, timeout))


# -- segments, through the HTTP API with a tenant's API key ------------------------------

segments_app = typer.Typer(help="A tenant's segments and RFM grid, through the API with its key "
                                "(segments:read).", no_args_is_help=True)
app.add_typer(segments_app, name="segments")
# one color per named RFM segment, in the order GET /v1/segments/rfm lists them
RFM_COLORS = ("bold green", "green", "cyan", "bright_cyan", "blue", "yellow", "bright_yellow",
              "red", "bold red", "magenta", "bright_black")
SAMPLE_MEMBERS = 10


def _segment_pages(api: _Api) -> list[dict]:
    segments, cursor = [], None
    while True:
        page = api.call("GET", "/v1/segments", 200, params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        segments += page["data"]
        if not (cursor := page["next_cursor"]):
            return segments


def _status(segment: dict) -> str:
    return "ready" if segment["status"] == "ready" else f"building {segment['build']['percent']}%"


def _print_rfm(out: Console, grid: dict) -> None:
    """The 5 x 5 grid, recency 5 (recent) at the top, frequency 1 to 5 left to right, each
    cell colored as its named segment; the named segments' counts below."""
    from rich.table import Table
    from rich.text import Text

    colors = {s["name"]: RFM_COLORS[i % len(RFM_COLORS)] for i, s in enumerate(grid["segments"])}
    table = Table(title="RFM: customers by R x F", show_lines=True)
    table.add_column("R / F", justify="right")
    for f in range(1, 6):
        table.add_column(f"F{f}", justify="right")
    for r in range(5, 0, -1):
        counts, names = grid["grid"][r - 1], grid["names"][r - 1]
        cells = [Text(f"{n:,}", style=colors.get(name, "")) for n, name in zip(counts, names, strict=True)]
        table.add_row(f"R{r}", *cells)
    out.print(table)
    out.print(Text("  ").join(Text(f"{s['name']} {s['count']:,}", style=colors[s["name"]]) for s in grid["segments"]))
    cuts = "default cut points" if grid["default_cuts"] else f"cut points of {grid['cuts_at']}"
    out.print(f"{grid['customers']:,} customers with orders; {cuts}")


@segments_app.command("list")
def segments_list(as_json: bool = typer.Option(False, "--json", help="print JSON"),
                  api_url: Optional[str] = ApiOpt, key: Optional[str] = KeyOpt) -> None:
    """The tenant's segments (name, status or build progress, members), then its RFM grid."""
    from rich.table import Table

    out = Console()
    api = _Api(api_url, key, out)
    segments = _segment_pages(api)
    grid = api.call("GET", "/v1/segments/rfm", 200)
    if as_json:
        print(json.dumps({"segments": segments, "rfm": grid}))
        return
    table = Table("id", "name", "status")
    table.add_column("members", justify="right")
    for s in segments:
        table.add_row(s["id"], s["name"], _status(s), f"{s['member_count']:,}")
    out.print(table)
    _print_rfm(out, grid)


@segments_app.command("show")
def segments_show(segment_id: str = typer.Argument(..., help="a segment id (seg_…), or rfm for the RFM grid"),
                  as_json: bool = typer.Option(False, "--json", help="print JSON"),
                  api_url: Optional[str] = ApiOpt, key: Optional[str] = KeyOpt) -> None:
    """A segment: its rule, status, member count and a sample of members; or the RFM grid."""
    out = Console()
    api = _Api(api_url, key, out)
    if segment_id == "rfm":
        grid = api.call("GET", "/v1/segments/rfm", 200)
        if as_json:
            print(json.dumps(grid))
        else:
            _print_rfm(out, grid)
        return
    segment = api.call("GET", f"/v1/segments/{segment_id}", 200)
    members = api.call("GET", f"/v1/segments/{segment_id}/members", 200, params={"limit": SAMPLE_MEMBERS})["data"]
    if as_json:
        print(json.dumps({"segment": segment, "members": members}))
        return
    from rich.syntax import Syntax

    out.print(f"[bold]{segment['name']}[/bold] ({segment['id']})" +
              (f": {segment['description']}" if segment.get("description") else ""))
    out.print(f"Status: {_status(segment)}   Members: [bold]{segment['member_count']:,}[/bold]   "
              f"Rule version: {segment['rule_version']}")
    out.print(Syntax(json.dumps(segment["rule"], indent=2), "json", background_color="default"))
    if members:
        note = " (provisional: the segment is building)" if any(m["provisional"] for m in members) else ""
        out.print(f"Members (first {len(members)}){note}:")
        for m in members:
            out.print(f"  {m['customer_id']}  since {m['since']}")
    else:
        out.print("No members.")


from rapport.cli_campaigns import campaigns_app  # noqa: E402 - after _Api, which its commands use

app.add_typer(campaigns_app, name="campaigns")

def main() -> None:
    """The console script: a botocore error that no command handled (the endpoint went
    away mid-command, credentials expired) is one line, not a traceback."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - reported below, or re-raised
        from botocore.exceptions import EndpointConnectionError, NoCredentialsError

        cause = exc
        while cause is not None and not isinstance(cause, (EndpointConnectionError, NoCredentialsError)):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        err.print(f"[red]error:[/red] {NO_ENDPOINT if isinstance(cause, NoCredentialsError) else cause}",
                  soft_wrap=True, highlight=False)
        raise SystemExit(2) from None
