"""The embedded AWS emulator: moto's server on loopback, made safe for concurrency.

moto runs each DynamoDB request on its own thread without isolation: a transaction
checks its conditions, writes, and on a cancellation restores a copy of the whole
table taken when it began, wiping what other requests wrote meanwhile. Real DynamoDB
transactions are serializable, so the local stack serializes DynamoDB requests (a
lock around moto's DynamoDB handler). Without it, races that are safe on AWS lose
writes locally (tests/integration/test_concurrency.py shows it).
"""
from __future__ import annotations

import functools
import logging
import threading
from typing import Any

_LOCK = threading.RLock()


def make_dynamodb_serializable() -> None:
    """Idempotent: wrap moto's DynamoDB request handler in one process-wide lock."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler, "_rapport_serialized", False):
        return
    original = DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with _LOCK:
            return original(self)

    DynamoHandler.call_action = call_action
    DynamoHandler._rapport_serialized = True


def start(port: int) -> Any:
    """Start moto's server on 127.0.0.1:<port>; return it (``.stop()`` ends it)."""
    from moto.server import ThreadedMotoServer

    make_dynamodb_serializable()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server
