"""The operator CLI as a user runs it: `rapport --version`, a clear line when no endpoint
is configured, `rapport dlq` over all four queues at 80 columns, and what `rapport dev`'s
server does (a log line per request, each error once, its port free again at once)."""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

RAPPORT = str(Path(sys.executable).with_name("rapport"))


def _run(*args: str, env: dict | None = None, aws: bool = True) -> subprocess.CompletedProcess:
    """``rapport ARGS`` as a subprocess at 80 columns. ``aws=False``: with no AWS endpoint,
    no credentials and no config files (a fresh shell on a laptop)."""
    base = {k: v for k, v in os.environ.items() if aws or not k.startswith(("AWS_", "RAPPORT_"))}
    if not aws:
        base.update({"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                     "AWS_EC2_METADATA_DISABLED": "true"})
    return subprocess.run([RAPPORT, *args], capture_output=True, text=True, timeout=120,
                          env={**base, "COLUMNS": "80", **(env or {})})


def test_version():
    from importlib.metadata import version

    r = _run("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"rapport {version('rapport')}"


def test_a_command_without_an_endpoint_says_so_in_one_line():
    for args in (["tenants", "list"], ["tenants", "create", "Shop"], ["tenants", "suspend", "t000000000000"],
                 ["dlq", "list"], ["dlq", "redrive", "loyalty", "--yes"]):
        r = _run(*args, aws=False)
        out = (r.stdout + r.stderr).strip()
        assert r.returncode != 0, (args, out)
        assert "Traceback" not in out and len(out.splitlines()) == 1, (args, out)
        assert "--endpoint-url" in out and "AWS_ENDPOINT_URL" in out, (args, out)


def _sqs(dev_stack):
    import boto3

    return boto3.client("sqs"), dev_stack.queues


def _drain(sqs, url: str) -> None:
    """Empty a queue (PurgeQueue is allowed once a minute per queue)."""
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                       VisibilityTimeout=0).get("Messages", []):
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])


def test_dlq_list_names_every_queue_and_fits_80_columns(dev_stack, aws_endpoint):
    sqs, queues = _sqs(dev_stack)
    sqs.send_message(QueueUrl=queues.dead_letter["sync"], MessageBody=json.dumps(
        {"type": "sync.run", "id": "msg-for-the-list", "connection_id": "con_x"}))
    try:
        r = _run("dlq", "list", "--endpoint-url", aws_endpoint, "--table", dev_stack.table)
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert all(len(line) <= 80 for line in lines), r.stdout
        for name in ("loyalty", "timeline", "sync", "segments", "stream"):
            dlq = f"{dev_stack.table}-{name}-dlq"
            assert any(dlq in line for line in lines), (dlq, r.stdout)  # never cut or folded
        assert "sync.run msg-for-the-list" in r.stdout
    finally:
        _drain(sqs, queues.dead_letter["sync"])


def test_dlq_redrive_sync_moves_its_messages_back(dev_stack, aws_endpoint):
    sqs, queues = _sqs(dev_stack)
    body = json.dumps({"type": "sync.run", "id": "redrive-me"})
    sqs.send_message(QueueUrl=queues.dead_letter["sync"], MessageBody=body)
    try:
        r = _run("dlq", "redrive", "sync", "--yes", "--endpoint-url", aws_endpoint, "--table", dev_stack.table)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"Moved 1 message(s) from {dev_stack.table}-sync-dlq to {dev_stack.table}-sync" in r.stdout
        got = sqs.receive_message(QueueUrl=queues.queues["sync"], WaitTimeSeconds=1).get("Messages", [])
        assert [m["Body"] for m in got] == [body]
    finally:
        _drain(sqs, queues.queues["sync"])
        _drain(sqs, queues.dead_letter["sync"])


def test_dev_server_logs_a_line_per_request_and_each_error_once(dev_stack, tenant, monkeypatch):
    from crm.customers import service

    written: list[tuple[str, str]] = []  # (handler, message) for every line any handler writes
    real = logging.Handler.handle

    def handle(self, record):
        if not type(self).__module__.startswith("_pytest"):
            written.append((type(self).__name__, record.getMessage()))
        return real(self, record)
    monkeypatch.setattr(logging.Handler, "handle", handle)

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom in the handler")
    base = f"http://127.0.0.1:{dev_stack.port}"
    assert httpx.get(base + "/v1/health").status_code == 200
    tenant.http.get("/v1/customers", params={"limit": 1, "tag": "secret@example.com"})
    monkeypatch.setattr(service, "get", boom)
    assert tenant.http.get("/v1/customers/cus_01ARZ3NDEKTSV4RRFFQ69G5FAV").status_code == 500
    time.sleep(0.2)  # the access line is written once the response is sent
    access = [m for _, m in written if m.startswith(("GET ", "POST "))]
    assert any(re.fullmatch(r"GET /v1/health 200 \d+\.\d ms", m) for m in access), access
    assert any(re.fullmatch(r"GET /v1/customers 200 \d+\.\d ms", m) for m in access), access
    assert "secret@example.com" not in " ".join(access)  # no query strings (PII, cursors)
    errored = [m for m in access if m.startswith("GET /v1/customers/cus_01ARZ3NDEKTSV4RRFFQ69G5FAV ")]
    assert len(errored) == 1 and " 500 " in errored[0], access
    assert [h for h, m in written if m == "unhandled error"] != []
    assert len([h for h, m in written if m == "unhandled error"]) == 1, written  # once, not twice


def test_a_port_left_in_time_wait_is_free_for_the_next_dev_server():
    """After a crash the kernel keeps the port's closed connections in TIME_WAIT for 60 s;
    `rapport dev` (SO_REUSEADDR) must bind it again at once, yet still refuse a live one."""
    from chalice.local import ThreadedHTTPServer

    from rapport.devstack import PortInUse, check_port

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end stays in TIME_WAIT
    time.sleep(0.1)
    client.close()
    server.close()  # the crash: nothing listens any more
    check_port(port)  # raises PortInUse without SO_REUSEADDR
    assert ThreadedHTTPServer.allow_reuse_address
    live = socket.socket()
    live.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    live.bind(("127.0.0.1", port))
    live.listen()
    try:
        check_port(port)
        raise AssertionError("a port something listens on must be refused")
    except PortInUse:
        pass
    finally:
        live.close()
