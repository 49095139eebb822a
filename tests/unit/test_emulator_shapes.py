"""The emulator patches moto's internals (rapport/emulator.py): it checks at start that
each still has the shape relied on, and fails loudly, naming it and the pinned range."""
from __future__ import annotations

import sys
import tomllib
import types
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from rapport import emulator
from rapport.emulator import Internal, MotoMismatch
from rapport.emulator import _gsi_window as emulator_window

ROOT = Path(__file__).resolve().parents[2]


def _dev_requirement(name: str) -> Requirement:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    return next(r for r in map(Requirement, dev) if r.name == name)


def test_the_installed_moto_has_every_patched_internal():
    emulator.check_moto()  # raises MotoMismatch otherwise
    assert len(emulator.INTERNALS) >= 10


@pytest.mark.parametrize("name", ["moto", "chalice"])
def test_moto_and_chalice_are_pinned_with_an_upper_bound_the_lock_satisfies(name):
    req = _dev_requirement(name)
    assert any(s.operator == "<" for s in req.specifier), f"{name} has no upper bound: {req}"
    assert req.specifier.contains(version(name))


def test_the_pinned_range_named_in_errors_is_pyprojects():
    assert str(_dev_requirement("moto").specifier) == str(Requirement(f"moto{emulator.MOTO_PINNED}").specifier)


@pytest.fixture()
def changed_moto(monkeypatch):
    """A stand-in for a moto release whose internals moved."""
    module = types.ModuleType("moto_next")

    class Backend:
        def __init__(self) -> None:
            self.iterators = {}  # renamed from shard_iterators

        def get_records(self, shard_iterator: str, limit: int) -> dict:  # a parameter renamed
            return {}

    module.Backend = Backend
    monkeypatch.setitem(sys.modules, "moto_next", module)
    return module


def test_a_renamed_parameter_a_gone_attribute_and_a_changed_body_each_fail_by_name(changed_moto):
    internals = (
        Internal("moto_next.Backend.get_records", ("self", "iterator_arn", "limit")),
        Internal("moto_next.Backend.call_action", ("self",)),
        Internal("moto_next.Backend.__init__", source_has=("self.shard_iterators",)),
        Internal("moto_next.Backend.get_records", ("self", "shard_iterator")),  # this one still fits
    )
    with pytest.raises(MotoMismatch) as caught:
        emulator.check_moto(internals)
    message = str(caught.value)
    assert "moto_next.Backend.get_records has no parameter iterator_arn" in message
    assert "moto_next.Backend.call_action is gone" in message
    assert "moto_next.Backend.__init__ no longer uses self.shard_iterators" in message
    assert f"moto{emulator.MOTO_PINNED}" in message and version("moto") in message
    assert message.count("moto_next.") == 3


def test_start_refuses_a_changed_moto_before_serving(changed_moto, monkeypatch):
    import socket

    monkeypatch.setattr(emulator, "INTERNALS", (Internal("moto_next.Backend.call_action", ("self",)),))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MotoMismatch, match="moto_next.Backend.call_action is gone"):
        emulator.start(port)
    with socket.socket() as s:  # nothing was started on the port
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_cheap_query_answers_as_motos_own_over_the_whole_table():
    """make_queries_cheap reads only the partition; moto's own Query (the wrapped
    original) walks every item: pages, order, filters and absent keys must agree."""
    import boto3
    from moto import mock_aws
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType

    emulator.make_queries_cheap()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}])
        for p in range(5):
            for s in range(30):
                ddb.put_item(TableName="t", Item={"pk": {"S": f"p{p}"}, "sk": {"S": f"s{s:03}"},
                                                  "n": {"N": str(s % 7)}})
        table = dynamodb_backends["123456789012"]["us-east-1"].tables["t"]
        original = type(table).query.__wrapped__
        for hash_key in ("p0", "p3", "absent"):
            for args in [(None, [], 10, None, True, None), ("BEGINS_WITH", [DynamoType({"S": "s01"})], 4, None, False, None),
                         (None, [], 7, {"pk": {"S": hash_key}, "sk": {"S": "s012"}}, True, None)]:
                key = DynamoType({"S": hash_key})
                cheap = table.query(key, *args)
                assert "all_items" not in vars(table)  # the swap is undone
                own = original(table, key, *args)
                assert [i.to_json() for i in cheap[0]] == [i.to_json() for i in own[0]]
                assert cheap[1:] == own[1:]
        assert len(table.query(DynamoType({"S": "p1"}), None, [], 100, None, True, None)[0]) == 30


def test_a_cheap_index_query_pages_as_motos_own_walk(monkeypatch):
    """Every page of GSI Queries (both directions, range conditions, duplicate index
    range keys, items without the index keys) equals moto's walk of the whole table."""
    import random

    import boto3
    from moto import mock_aws
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType

    from infra.bootstrap import create_table

    emulator.make_queries_cheap()
    windows = []
    monkeypatch.setattr(emulator, "_gsi_window", lambda *a: windows.append(emulator_window(*a)) or windows[-1])
    rnd = random.Random(7)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(ddb, "t")
        for n in range(250):
            item = {"pk": {"S": f"P#{rnd.randrange(60)}"}, "sk": {"S": f"S#{n:04}"}}
            if rnd.random() < 0.8:  # the rest are not in the index
                item |= {"gsi1pk": {"S": f"G#{rnd.randrange(3)}"}, "gsi1sk": {"S": f"k{rnd.randrange(40):02}"}}
            ddb.put_item(TableName="t", Item=item)
        table = dynamodb_backends["123456789012"]["us-east-1"].tables["t"]
        original = type(table).query.__wrapped__
        conditions = [(None, []), ("BEGINS_WITH", [DynamoType({"S": "k1"})]),
                      ("BETWEEN", [DynamoType({"S": "k05"}), DynamoType({"S": "k22"})]),
                      ("GE", [DynamoType({"S": "k30"})])]
        pages = 0
        for value in ("G#0", "G#2", "G#9"):
            hash_conditions = [("gsi1pk", DynamoType({"S": value}))]
            for comparison, objs in conditions:
                ranges = [("gsi1sk", comparison, objs)] if comparison else None
                for forward in (True, False):
                    for limit in (3, 50):
                        start = None
                        while True:
                            args = (None, comparison, objs, limit, start, forward, None, "gsi1")
                            kw = {"hash_key_conditions": hash_conditions, "range_key_conditions": ranges}
                            cheap, own = table.query(*args, **kw), original(table, *args, **kw)
                            assert [i.to_json() for i in cheap[0]] == [i.to_json() for i in own[0]]
                            assert cheap[1:] == own[1:]
                            pages += 1
                            if not own[2]:
                                break
                            start = {k: v.to_json() if hasattr(v, "to_json") else v for k, v in own[2].items()}
        assert pages > 100  # the comparison really paged
        assert len(windows) == pages and all(w is not None for w in windows)  # and took the shortcut
