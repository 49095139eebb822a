"""The embedded AWS emulator: moto's server on loopback, made safe for concurrency.

moto runs each DynamoDB request on its own thread without isolation: a transaction
checks its conditions, writes, and on a cancellation restores a copy of the whole
table taken when it began, wiping what other requests wrote meanwhile. Real DynamoDB
transactions are serializable, so the local stack serializes DynamoDB requests (a
lock around moto's DynamoDB handler). Without it, races that are safe on AWS lose
writes locally (tests/integration/test_concurrency.py shows it).

moto's whole-table copy per transaction item also makes every transaction cost
O(table size); with requests serialized, :func:`make_transactions_cheap` replaces it
by an undo record of just what a transaction can change.

A cancelled transaction's rollback also truncates the table's stream. DynamoDB Streams
requests take the same lock (:func:`make_streams_consistent`), so a stream reader (the
local stack's poller, rapport/pollers.py) never sees the records of a transaction that
is then cancelled; it also bounds moto's list of shard iterators, which otherwise keeps
every iterator it ever issued (a poller asks for a new one five times a second).
"""
from __future__ import annotations

import functools
import itertools
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


MAX_SHARD_ITERATORS = 10_000  # AWS expires an iterator after 15 minutes; moto never does


def make_streams_consistent() -> None:
    """Idempotent: DynamoDB Streams requests run under the DynamoDB lock, and only the
    newest MAX_SHARD_ITERATORS shard iterators are kept."""
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    if getattr(DynamoDBStreamsHandler, "_rapport_serialized", False):
        return
    original = DynamoDBStreamsHandler.call_action

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with _LOCK:
            return original(self)

    original_get_records = DynamoDBStreamsBackend.get_records

    @functools.wraps(original_get_records)
    def get_records(self: Any, iterator_arn: str, limit: int) -> Any:
        result = original_get_records(self, iterator_arn, limit)
        excess = len(self.shard_iterators) - MAX_SHARD_ITERATORS
        if excess > 0:  # dicts keep insertion order: the oldest go first
            for arn in list(itertools.islice(self.shard_iterators, excess)):
                del self.shard_iterators[arn]
        return result

    DynamoDBStreamsHandler.call_action = call_action
    DynamoDBStreamsBackend.get_records = get_records
    DynamoDBStreamsHandler._rapport_serialized = True


_STATE = threading.local()


def make_transactions_cheap() -> None:
    """Idempotent: roll a cancelled transaction back from a shallow snapshot (the
    item index, deep copies of the items it updates in place, the stream length)
    instead of moto's deep copy of the whole table. Needs the serializing lock."""
    import copy
    from collections import defaultdict

    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    backend = models.DynamoDBBackend
    if getattr(backend, "_rapport_cheap", False):
        return

    class _NoTableCopy:
        """moto's ``copy`` module, except that a table is not copied during a transaction."""

        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

        @staticmethod
        def deepcopy(obj: Any, memo: Any = None) -> Any:
            if isinstance(obj, Table) and getattr(_STATE, "in_transaction", False):
                return obj  # moto's rollback then re-assigns the same table: ours restores it
            return copy.deepcopy(obj, memo)

    def snapshot(table: Table, transact_items: list[dict[str, Any]]) -> tuple:
        updated = set()
        for entry in transact_items:
            kind, op = next(iter(entry.items()))
            if kind == "Update" and op.get("TableName") == table.name and table.range_key_attr:
                key = op["Key"]
                updated.add((DynamoType(key[table.hash_key_attr]), DynamoType(key[table.range_key_attr])))
        items = defaultdict(dict)
        for hash_key, value in table.items.items():
            if isinstance(value, dict):
                items[hash_key] = {rk: (copy.deepcopy(it) if (hash_key, rk) in updated else it)
                                   for rk, it in value.items()}
            else:
                items[hash_key] = copy.deepcopy(value)
        shard = table.stream_shard
        return items, (len(shard.items) if shard is not None else 0)

    def restore(table: Table, saved: tuple) -> None:
        table.items, stream_length = saved
        if table.stream_shard is not None:
            del table.stream_shard.items[stream_length:]  # a cancelled write emits nothing

    original = backend.transact_write_items

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        names = {next(iter(e.values())).get("TableName") for e in transact_items}
        saved = {n: snapshot(self.tables[n], transact_items) for n in names if n in self.tables}
        _STATE.in_transaction = True
        try:
            return original(self, transact_items)
        except Exception:
            for name, snap in saved.items():
                restore(self.tables[name], snap)
            raise
        finally:
            _STATE.in_transaction = False

    models.copy = _NoTableCopy()
    backend.transact_write_items = transact_write_items
    backend._rapport_cheap = True


def start(port: int) -> Any:
    """Start moto's server on 127.0.0.1:<port>; return it (``.stop()`` ends it)."""
    from moto.server import ThreadedMotoServer

    make_dynamodb_serializable()
    make_transactions_cheap()
    make_streams_consistent()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server
