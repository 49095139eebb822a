"""Email campaigns: emails per second per core through render + send (as a ratio to
rendering alone), DynamoDB requests per recipient, and a campaign's duplicate and skip
counts when the sender is killed at every step (docs/campaigns.md, docs/performance.md).

Setup. The local emulator in-process (``rapport.emulator``: moto with serialized
DynamoDB), the table, the queues and the SES configuration set from infra/; a tenant
with a verified sender, email settings and a marketing template; ``--recipients``
customers with email consent granted (plus a tenth as many without: skipped) written
directly (BatchWriteItem, not counted), all members of one segment. No HTTP server: the
campaign is started with ``crm.email.campaigns.send`` and the ``email`` queue is drained
by this process, one message at a time, through ``functions.campaigns.handle_batch`` (what
``app.email_work`` runs in Lambda). The account's and the plan's send rates are set high
(``RAPPORT_SES_SEND_RATE``, ``RAPPORT_RATE_LIMIT_SCALE``): the bench measures the sender,
not the throttle.

1. *Render alone*: each recipient's customer JSON and the raw MIME (render + mime, no
   I/O), ``--render-rounds`` times; emails per second on one thread.
2. *Render + send*: a campaign to every recipient, no failures. Emails per second
   through the whole path (reads, records, SES, completion: one thread, so one core,
   with the emulator in the same process), the ratio to (1), and the DynamoDB requests
   per recipient by operation (botocore hooks on this thread: the sender's own requests,
   batch-level and page-level reads included).
3. *Kill at every step*: a second campaign to the same audience, with the frequency cap
   off, where each recipient's first pass is killed with probability ``--kill`` at one
   of four steps (before the send record, after it, after the SES call, before the
   completion): the message fails, SQS delivers it again, the lease (1 s here) runs out,
   the record is taken over. Reported: recipients without an email (skips), recipients
   with more than one outside the documented window, and inside it (killed after SES
   accepted the message: the one unavoidable duplicate), messages dead-lettered.

    python3 -m uv run python bench/campaigns.py [--recipients 10000] [--kill 0.005]
"""

from __future__ import annotations

import argparse
import email
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TABLE = "rapport-bench-campaigns"
STEPS = ("before_record", "after_record", "after_ses", "before_completion")
WINDOW = {"after_ses", "before_completion"}


class Killed(RuntimeError):
    pass


def setup_env() -> Any:
    from bench.requests_per_operation import free_port
    from rapport import emulator

    port = free_port()
    server = emulator.start(port)
    os.environ.update({
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "RAPPORT_TABLE": TABLE,
        "RAPPORT_RATE_LIMIT_SCALE": "100000", "RAPPORT_SES_SEND_RATE": "100000",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    })
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        os.environ.pop(name, None)
    import boto3

    from infra.bootstrap import create_email_resources, create_queues, create_table
    from rapport import env

    create_table(boto3.client("dynamodb"), TABLE)
    queues = create_queues(boto3.client("sqs"), TABLE, visibility_timeout=1)
    env.configure_queues(queues.queues)
    os.environ.update(create_email_resources(boto3.session.Session(), TABLE, "http://127.0.0.1:9"))
    return server, queues


def seed(n: int) -> dict[str, Any]:
    """A tenant, its sender, settings, template, ``n`` consented customers (+ n/10 not)
    and a segment of them all; written directly, not counted."""
    from ulid import ULID

    from crm import clock, tenants
    from crm.context import TenantContext
    from crm.customers import records
    from crm.email import settings as email_settings
    from crm.email.schemas_templates import EmailSettingsPut
    from crm.segments.membership import segment_pk
    from crm.storage import (
        CustomerItem,
        SegmentItem,
        SegmentMemberItem,
        TemplateItem,
    )

    t = tenants.create("Bench shop")
    ctx = TenantContext(t.id)
    now = clock.now_iso()
    from crm.storage import BillingItem

    # the scale plan: no monthly email allowance stops a 10,000-recipient campaign
    BillingItem(ctx.prefix, "BILLING", plan="scale", status="active", updated_at=now).save()
    sender = f"hello@{t.id}.example.test"  # the dev sender every local tenant gets, verified
    email_settings.put(ctx, EmailSettingsPut(postal_address="1 Bench Way", default_sender=sender))
    tid = f"tpl_{ULID()}"
    TemplateItem(ctx.key("TEMPLATES"), tid, template_id=tid, name="Bench", template_kind="marketing",
                 subject="{{ customer.name.given }}, spring is here",
                 html='<html><body><h1 style="color:#333">Hello {{ customer.name.given }}</h1>'
                      "<p>You have {{ customer.loyalty.balance if customer.loyalty is defined else 0 }} points"
                      " and {{ customer.metrics.orders.count if customer.metrics else 0 }} orders.</p>"
                      '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ postal_address }}</p></body></html>',
                 text="Hello {{ customer.name.given }}\nUnsubscribe: {{ unsubscribe_url }}\n{{ postal_address }}",
                 created_at=now, updated_at=now).save()
    ids, consented = [], set()
    with CustomerItem.batch_write() as batch:
        for i in range(n + n // 10):
            cid = f"cus_{ULID()}"
            data: dict[str, Any] = {"email": f"r{i}@bench.example", "name": {"given": f"R{i}"}}
            if i < n:
                data["consent"] = {"email": {"status": "granted", "source": "bench", "at": now}}
                consented.add(cid)
            batch.save(CustomerItem(records.profile_pk(ctx, cid), records.PROFILE, customer_id=cid, data=data,
                                    created_at=now, updated_at=now, version=1))
            ids.append(cid)
    sid = f"seg_{ULID()}"
    pk = segment_pk(ctx, sid)
    SegmentItem(pk, "SEGMENT", segment_id=sid, name="Bench all", status="ready", member_count=len(ids),
                created_at=now, updated_at=now).save()
    with SegmentMemberItem.batch_write() as batch:
        for cid in ids:
            batch.save(SegmentMemberItem(pk, f"M#{cid}", segment_id=sid, customer_id=cid, since=now))
    address = {cid: f"r{i}@bench.example" for i, cid in enumerate(ids)}
    return {"ctx": ctx, "template": tid, "segment": sid, "ids": ids, "consented": consented, "address": address}


def campaign(world: dict[str, Any], name: str) -> str:
    from crm.email import campaigns
    from crm.email.schemas_campaigns import CampaignCreate

    c = campaigns.create(world["ctx"], CampaignCreate(name=name, template_id=world["template"],
                                                      segment_id=world["segment"]))
    campaigns.send(world["ctx"], c.id)
    return c.id


def drain(queue_url: str, ctx: Any, campaign_id: str, timeout: float) -> int:
    """Receive and handle the email queue's messages until the campaign is sent; a failed
    message is made visible again at once (a Lambda's failure, without the wait)."""
    import boto3

    from crm.email import campaigns
    from functions import campaigns as handler

    sqs = boto3.client("sqs")
    failures = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  AttributeNames=["All"]).get("Messages", [])
        if not got and campaigns.get(ctx, campaign_id).status == "sent":
            return failures
        for m in got:
            result = handler.handle_batch({"Records": [{"messageId": m["MessageId"], "body": m["Body"]}]})
            if result["batchItemFailures"]:
                failures += 1
                sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"],
                                              VisibilityTimeout=0)
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    raise SystemExit(f"campaign {campaign_id} not sent after {timeout:.0f} s")


def sent_to(campaign_id: str) -> Counter[str]:
    from moto.ses.models import ses_backends

    out: Counter[str] = Counter()
    for account in list(ses_backends.values()):
        for backend in list(account.values()):
            for m in list(backend.sent_messages):
                raw = getattr(m, "raw_data", None)
                if raw and f"X-Rapport-Ref: {campaign_id}" in raw:
                    out[email.message_from_string(raw)["To"]] += 1
    return out


class ThreadCalls:
    """DynamoDB API calls of one thread, by operation (botocore's before-call hook)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.thread = threading.get_ident()

    def install(self) -> None:
        from botocore import handlers

        handlers.BUILTIN_HANDLERS.append(("before-call.dynamodb", self._on))

    def _on(self, model: Any = None, **_: Any) -> None:
        if threading.get_ident() == self.thread:
            self.calls[model.name] += 1


def render_rate(world: dict[str, Any], rounds: int) -> float:
    from crm import clock
    from crm.email import sending

    ctx, ids = world["ctx"], [c for c in world["ids"] if c in world["consented"]][:2000]
    probe = f"cmp_{'0' * 26}"

    class _C:  # the campaign as render_message reads it
        campaign_id, sender, template_kind = probe, None, "marketing"

    from crm.billing import plans
    from crm.storage import EmailSettingsItem, TemplateItem

    context = sending.Context(campaign=_C(), template=TemplateItem.get(ctx.key("TEMPLATES"), world["template"]),
                              settings=EmailSettingsItem.get(ctx.prefix, "EMAIL"), tenant_name="Bench shop",
                              plan=plans.get(None))
    recipients = []
    for i in range(0, len(ids), sending.BATCH):
        recipients += list(sending.read_recipients(ctx, probe, ids[i : i + sending.BATCH]).values())
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        for r in recipients:
            sending.render_message(ctx, context, r, clock.now())
        best = max(best, len(recipients) / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000, help="consented recipients (default 10000)")
    parser.add_argument("--kill", type=float, default=0.005,
                        help="probability that a recipient's first pass is killed at each step (default 0.005)")
    parser.add_argument("--render-rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()

    server, queues = setup_env()
    counter = ThreadCalls()
    counter.install()
    world = seed(args.recipients)
    n_all = len(world["ids"])
    print(f"[campaigns] {args.recipients:,} consented recipients + {n_all - args.recipients:,} without consent",
          flush=True)

    per_render = render_rate(world, args.render_rounds)
    print(f"[campaigns] render alone: {per_render:,.0f} emails/s (one thread)", flush=True)

    counter.calls.clear()
    started = time.perf_counter()
    first = campaign(world, "bench clean")
    drain(queues.queues["email"], world["ctx"], first, args.timeout)
    seconds = time.perf_counter() - started
    got = sent_to(first)
    calls = dict(counter.calls)
    requests = sum(calls.values())
    rate = args.recipients / seconds
    print(f"[campaigns] render + send: {rate:,.0f} emails/s (one thread, emulator in-process), "
          f"{rate / per_render:.3f} of render alone", flush=True)
    print(f"[campaigns] DynamoDB requests per recipient: {requests / n_all:.2f} "
          f"({', '.join(f'{k} {v / n_all:.2f}' for k, v in sorted(calls.items()))}); "
          f"per email sent: {requests / max(1, sum(got.values())):.2f}", flush=True)
    dup = sum(1 for v in got.values() if v > 1)
    miss = sum(1 for cid in world["consented"] if got[world["address"][cid]] == 0)
    print(f"[campaigns] clean run: {sum(got.values()):,} emails, duplicates {dup}, skipped {miss}", flush=True)

    # 3. kill at every step; the frequency cap off (the first campaign just set it)
    from crm.email import sending

    os.environ["RAPPORT_EMAIL_LEASE_SECONDS"] = "1"
    from crm.billing import plans

    original_get = plans.get

    def uncapped(name: Any) -> Any:
        plan = original_get(name)
        return plan.model_copy(update={"limits": plan.limits.model_copy(update={"marketing_cap_hours": 0})})

    plans.get = uncapped  # type: ignore[assignment]
    rng = random.Random(13)
    kills = {cid: rng.choice(STEPS) for cid in world["consented"] if rng.random() < args.kill * len(STEPS)}
    fired: dict[str, str] = {}
    acquire, ses_send, complete = sending.acquire, sending.ses_send, sending.complete

    def die(cid: str, step: str) -> None:
        if kills.get(cid) == step and cid not in fired:
            fired[cid] = step
            raise Killed(step)

    def acquire_(ctx, campaign_id, f, **kw):
        die(f.customer_id, "before_record")
        attempt = acquire(ctx, campaign_id, f, **kw)
        die(f.customer_id, "after_record")
        return attempt

    def ses_send_(sender, to, raw, tags):
        message_id = ses_send(sender, to, raw, tags)
        die(tags.customer_id, "after_ses")
        return message_id

    def complete_(ctx, campaign_id, customer_id, attempt, message_id, now):
        die(customer_id, "before_completion")
        return complete(ctx, campaign_id, customer_id, attempt, message_id, now)

    sending.acquire, sending.ses_send, sending.complete = acquire_, ses_send_, complete_  # type: ignore[assignment]
    import logging

    logging.getLogger("rapport.campaigns").setLevel(logging.CRITICAL)  # the kills' tracebacks
    started = time.perf_counter()
    second = campaign(world, "bench killed")
    failures = drain(queues.queues["email"], world["ctx"], second, args.timeout)
    seconds = time.perf_counter() - started
    got = sent_to(second)
    window = {cid for cid, step in fired.items() if step in WINDOW}
    skipped = [cid for cid in world["consented"] if got[world["address"][cid]] == 0]
    dup_outside = [cid for cid in world["consented"] if got[world["address"][cid]] > 1 and cid not in window]
    dup_inside = [cid for cid in window if got[world["address"][cid]] > 1]
    non_consented = sum(got[world["address"][cid]] for cid in world["ids"] if cid not in world["consented"])
    import boto3

    dead = int(boto3.client("sqs").get_queue_attributes(
        QueueUrl=queues.dead_letter["email"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"])
    from crm.email import campaigns

    final = campaigns.get(world["ctx"], second)
    print(f"[campaigns] killed run: {len(fired):,} kills ({', '.join(f'{s} {n}' for s, n in sorted(Counter(fired.values()).items()))}), "
          f"{failures:,} failed messages redelivered, {seconds:.1f} s", flush=True)
    print(f"[campaigns] killed run: skipped {len(skipped)}, duplicates outside the window {len(dup_outside)}, "
          f"inside the window {len(dup_inside)} of {len(window)} killed there, emails to non-consented "
          f"{non_consented}, dead-lettered {dead}; campaign {final.status}, sent {final.progress.sent:,} "
          f"skipped {final.progress.skipped:,} of {final.progress.total:,}", flush=True)
    ok = not skipped and not dup_outside and not non_consented and not dead and not miss and not dup
    server.stop()
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
