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

These patches reach into moto's internals, so moto is pinned (pyproject.toml,
:data:`MOTO_PINNED`) and :func:`check_moto` verifies at start that every internal
patched still has the shape relied on: a newer moto fails loudly, naming what changed,
instead of silently losing writes.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import itertools
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

_LOCK = threading.RLock()

MOTO_PINNED = ">=5.2,<5.3"  # pyproject.toml's moto pin (tests/unit/test_emulator_shapes.py keeps them equal)


@dataclass(frozen=True)
class Internal:
    """A moto internal the patches below rely on: it exists, its signature has
    ``params``, and its source (of the function, or of ``__init__`` for a class
    attribute set there) mentions each of ``source_has``."""
    path: str
    params: tuple[str, ...] = ()
    source_has: tuple[str, ...] = ()


INTERNALS = (
    # make_dynamodb_serializable, make_responses_fast
    Internal("moto.dynamodb.responses.DynamoHandler.call_action", ("self",)),
    Internal("moto.dynamodb.responses.DynamoHandler.serialized", ("self", "action_result")),
    Internal("moto.dynamodb.responses.DynamoHandler._get_action", ("self",)),
    Internal("moto.core.responses.BaseResponse.setup_class", source_has=("self.response_headers",)),
    Internal("moto.core.responses.ActionResult.result"),
    Internal("moto.dynamodb.responses.DynamoResult.__init__", ("self", "result"), ("dynamo_to_dict(",)),
    Internal("moto.dynamodb.responses.DynamoHandler.get_item", source_has=("DynamoResult(",)),
    # make_streams_consistent
    Internal("moto.dynamodbstreams.responses.DynamoDBStreamsHandler.call_action", ("self",)),
    Internal("moto.dynamodbstreams.models.DynamoDBStreamsBackend.get_records", ("self", "iterator_arn", "limit")),
    Internal("moto.dynamodbstreams.models.DynamoDBStreamsBackend.__init__", source_has=("self.shard_iterators",)),
    # make_transactions_cheap: moto backs a transaction up with copy.deepcopy(table) and
    # rolls back by assigning the copy; the undo record needs the table's item layout
    Internal("moto.dynamodb.models.DynamoDBBackend.transact_write_items", ("self", "transact_items"),
             ("copy.deepcopy(", "self.tables[table_name] = original_table_state[table_name]")),
    Internal("moto.dynamodb.models.copy.deepcopy"),
    Internal("moto.dynamodb.models.table.Table.__init__",
             source_has=("self.name", "self.items", "self.hash_key_attr", "self.range_key_attr")),
    Internal("moto.dynamodb.models.table.Table.set_stream_specification", source_has=("self.stream_shard",)),
    Internal("moto.dynamodb.models.table.StreamShard.__init__", source_has=("self.items",)),
    Internal("moto.dynamodb.models.dynamo_type.DynamoType.__init__", ("self", "type_as_dict")),
    # make_queries_cheap: a table Query filters ``self.all_items()`` by hash key
    Internal("moto.dynamodb.models.table.Table.query",
             ("self", "hash_key", "range_comparison", "range_objs", "limit", "exclusive_start_key",
              "scan_index_forward", "projection_expressions", "index_name"),
             ("for item in self.all_items()", "item.hash_key == hash_key", "self.sorted_items(",
              "self._item_comes_before_dct(", "reached_length_limit")),
    Internal("moto.dynamodb.models.table.Table._generate_attr_to_sort_by",
             source_has=("gsi_range_keys", "table_hash_key", "table_range_key")),
    Internal("moto.dynamodb.models.table.Table.all_items"),
    # start
    Internal("moto.server.ThreadedMotoServer.__init__", ("self", "ip_address", "port", "verbose")),
)


class MotoMismatch(RuntimeError):
    """The installed moto is not the one the emulator's patches were written for."""


def _resolve(path: str) -> Any:
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = inspect.getattr_static(obj, name) if isinstance(obj, type) else getattr(obj, name)
        return obj
    raise ImportError(path)


def _problem(internal: Internal) -> str | None:
    try:
        obj = _resolve(internal.path)
    except (ImportError, AttributeError) as exc:
        return f"{internal.path} is gone ({type(exc).__name__}: {exc})"
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if internal.params:
        try:
            have = list(inspect.signature(obj).parameters)
        except (TypeError, ValueError):
            return f"{internal.path} is no longer a function"
        missing = [p for p in internal.params if p not in have]
        if missing:
            return f"{internal.path} has no parameter {', '.join(missing)} (it takes {', '.join(have)})"
    if internal.source_has:
        try:
            source = inspect.getsource(inspect.unwrap(obj))
        except (OSError, TypeError):
            return f"{internal.path}: its source cannot be read to check it"
        missing = [s for s in internal.source_has if s not in source]
        if missing:
            return f"{internal.path} no longer uses {', '.join(missing)}"
    return None


def check_moto(internals: tuple[Internal, ...] | None = None) -> None:
    """Raise :class:`MotoMismatch` naming every patched moto internal whose shape changed."""
    problems = [p for p in map(_problem, INTERNALS if internals is None else internals) if p]
    if problems:
        from importlib.metadata import version

        raise MotoMismatch(
            f"moto {version('moto')} does not match what rapport/emulator.py patches "
            f"(moto{MOTO_PINNED}, pinned in pyproject.toml):\n  " + "\n  ".join(problems)
            + f"\nInstall the pinned moto (python3 -m uv sync --locked) or update rapport/emulator.py.")


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
    """Idempotent: roll a cancelled transaction back from an undo record (a copy of each
    item the transaction names, or that it was absent, and the stream length) instead
    of moto's deep copy of the whole table: O(transaction), not O(table). Needs the
    serializing lock."""
    import copy
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

    def _key(table: Table, op: dict[str, Any]) -> tuple[Any, Any]:
        key = op.get("Key") or {k: op["Item"][k] for k in (table.hash_key_attr, table.range_key_attr) if k}
        return (DynamoType(key[table.hash_key_attr]),
                DynamoType(key[table.range_key_attr]) if table.range_key_attr else None)

    def snapshot(table: Table, transact_items: list[dict[str, Any]]) -> tuple:
        """An undo record: each item the transaction names, as it was (None: absent)."""
        undo = []
        for entry in transact_items:
            op = next(iter(entry.values()))
            if op.get("TableName") != table.name:
                continue
            hash_key, range_key = _key(table, op)
            part = table.items.get(hash_key)
            old = (part.get(range_key) if isinstance(part, dict) else None) if range_key is not None else part
            undo.append((hash_key, range_key, copy.deepcopy(old) if old is not None else None))
        shard = table.stream_shard
        return undo, (len(shard.items) if shard is not None else 0)

    def restore(table: Table, saved: tuple) -> None:
        undo, stream_length = saved
        for hash_key, range_key, old in reversed(undo):
            if range_key is None:
                if old is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = old
                continue
            part = table.items.get(hash_key)
            if old is not None:
                table.items[hash_key][range_key] = old
            elif isinstance(part, dict):
                part.pop(range_key, None)
                if not part:
                    table.items.pop(hash_key, None)
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


def _gsi_window(table: Any, bound: Any) -> list[Any] | None:
    """The few items of an index Query's page, found without moto's walk: the items of
    the index partition (a pass over the table comparing plain strings), sorted by
    (index range key, table hash key, table range key) as plain strings, the
    exclusive start key found by bisection, then items up to ``Limit`` + 1 that meet the
    range condition. ``None`` where the shortcut does not apply (not a string-keyed GSI
    with one hash and at most one range attribute, or legacy KeyConditions): moto's
    own walk answers."""
    import bisect

    a = bound.arguments
    index = next((i for i in table.global_indexes if i.name == a.get("index_name")), None)
    conditions = a.get("hash_key_conditions") or []
    if (index is None or a.get("filter_kwargs") or a.get("consistent_read") or not table.range_key_attr
            or len(conditions) != 1 or len(a.get("range_key_conditions") or []) > 1):
        return None
    hashes = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
    ranges = [k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"]
    if len(hashes) != 1 or len(ranges) > 1 or conditions[0][0] != hashes[0] or conditions[0][1].type != "S":
        return None
    h, r = hashes[0], (ranges[0] if ranges else None)
    th, tr = table.hash_key_attr, table.range_key_attr
    wanted = conditions[0][1].value
    keyed = []
    for part in table.items.values():
        for item in part.values():
            value = item.attrs.get(h)
            if value is None or value.value != wanted or value.type != "S":
                continue
            key = []
            for name in (r, th, tr) if r else (th, tr):
                v = item.attrs.get(name)
                if v is None:
                    break
                if v.type != "S":
                    return None
                key.append(v.value)
            else:
                keyed.append((tuple(key), item))
    keyed.sort(key=lambda pair: pair[0])
    keys = [k for k, _ in keyed]
    forward = a.get("scan_index_forward") is not False
    start = a.get("exclusive_start_key")
    if start:
        try:
            at = tuple(start[name]["S"] for name in ((r, th, tr) if r else (th, tr)))
        except (KeyError, TypeError):
            return None
        ordered = keyed[bisect.bisect_right(keys, at):] if forward else keyed[:bisect.bisect_left(keys, at)][::-1]
    else:
        ordered = keyed if forward else keyed[::-1]
    comparison, objs, limit = a.get("range_comparison"), a.get("range_objs"), a.get("limit")
    window, matched = [], 0
    for _, item in ordered:
        window.append(item)
        if not comparison or item.attrs[r or th].compare(comparison, objs):
            matched += 1
            if limit is not None and matched > limit:
                break
    return window


def make_queries_cheap() -> None:
    """Idempotent: a Query reads only what its page needs.

    moto answers every Query by walking every item of the table (``all_items()``),
    keeping those of the key, sorting them with moto's own comparison (Python code per
    comparison) and walking past the exclusive start key: O(table) per page, so a bench
    tenant of 100,000 customers took tens of seconds per page of 200 and a test run
    slowed as its table grew. Here a table Query reads its partition
    (``table.items[hash_key]``), and a GSI Query gets the page's window from
    :func:`_gsi_window`; moto's own code then sorts, pages, filters and projects just
    those items, so responses, ``LastEvaluatedKey`` and errors are moto's.
    tests/unit/test_emulator_shapes.py compares both with moto's walk. Needs the
    serializing lock: ``all_items`` is swapped on the instance for the call."""
    import inspect as _inspect

    from moto.dynamodb.models.table import Table

    if getattr(Table, "_rapport_cheap_query", False):
        return
    original = Table.query
    signature = _inspect.signature(original)

    @functools.wraps(original)
    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        hash_key = bound.arguments.get("hash_key")
        if bound.arguments.get("index_name"):
            window = _gsi_window(self, bound)
            if window is None:
                return original(*bound.args, **bound.kwargs)
            bound.arguments["exclusive_start_key"] = None  # the window starts after it
            items = window
        elif self.range_key_attr and hash_key is not None:
            partition = self.items.get(hash_key)
            items = list(partition.values()) if isinstance(partition, dict) else []
        else:
            return original(*bound.args, **bound.kwargs)
        self.all_items = lambda: items
        try:
            return original(*bound.args, **bound.kwargs)
        finally:
            del self.all_items

    Table.query = query
    Table._rapport_cheap_query = True


FAST_SERIALIZED = frozenset({"BatchGetItem", "BatchWriteItem", "DeleteItem", "GetItem", "PutItem",
                             "Query", "TransactGetItems", "TransactWriteItems", "UpdateItem"})


@functools.lru_cache(maxsize=None)
def _output_members(action: str) -> frozenset[str]:
    """The top-level members of an operation's response, as botocore's model declares them."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("dynamodb")
    return frozenset(model.operation_model(action).output_shape.members)


def _wire(value: Any) -> str:
    """Binary attribute values (``{"B": b"..."}`` in moto's results) go over the wire as base64."""
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not DynamoDB wire JSON")


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


CHECKED: dict[str, int] = {}  # check mode: responses rendered both ways, per operation
MISMATCHES: list[str] = []     # check mode: every difference seen


def make_responses_fast(check: bool = False) -> None:
    """Answer the item operations with ``json.dumps`` of moto's result.

    moto renders every response through botocore's shape-driven serializer, which took
    most of the emulator's time in a 10,000-record sync (a BatchGetItem of 100 orders
    spent ~100 ms there). The item operations' results are already DynamoDB's wire JSON
    (attribute values as ``{"S": ...}``), so the JSON is the same; errors and every other
    operation keep moto's serializer. ``check=True`` renders both, counts it in
    :data:`CHECKED` and fails on any difference (recorded in :data:`MISMATCHES`);
    tests/integration/test_emulator.py runs a workload that way. Calling it again with
    the other ``check`` switches the mode (process-wide)."""
    import json

    from moto.core.responses import ActionResult
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    plain = (ActionResult, DynamoResult)  # not subclasses that page or transform further
    mode = "check" if check else "fast"
    if getattr(DynamoHandler, "_rapport_fast", None) == mode:
        return
    original = getattr(DynamoHandler, "_rapport_original_serialized", DynamoHandler.serialized)

    def serialized(self: Any, action_result: Any) -> Any:
        result = getattr(action_result, "result", None)
        action = self._get_action()
        if (type(action_result) not in plain or not isinstance(result, dict)
                or action not in FAST_SERIALIZED):
            return original(self, action_result)
        shape = _output_members(action)  # moto's results may hold more (DeleteItem's ConsumedCapacityUnits)
        wire = {k: v for k, v in result.items() if k in shape}
        body = json.dumps(_without_none(wire), separators=(",", ":"), default=_wire)
        if check:
            status, headers, slow = original(self, action_result)
            CHECKED[action] = CHECKED.get(action, 0) + 1
            if json.loads(slow) != json.loads(body) or status != 200:
                MISMATCHES.append(f"fast {action} response differs: {slow[:300]} vs {body[:300]}")
                raise AssertionError(MISMATCHES[-1])
        headers = {"Content-Type": "application/x-amz-json-1.0"}
        headers.update(self.response_headers)
        return 200, headers, body

    DynamoHandler._rapport_original_serialized = original
    DynamoHandler.serialized = serialized
    DynamoHandler._rapport_fast = mode


def start(port: int) -> Any:
    """Start moto's server on 127.0.0.1:<port>; return it (``.stop()`` ends it)."""
    from moto.server import ThreadedMotoServer

    check_moto()
    make_dynamodb_serializable()
    make_transactions_cheap()
    make_streams_consistent()
    make_queries_cheap()
    make_responses_fast(check=os.environ.get("RAPPORT_EMULATOR_CHECK") == "1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server
