"""The emulator's cheap Queries (rapport/emulator.py ``make_queries_cheap``) against
moto's own: the items are written to the running emulator over HTTP, then each Query is
answered both ways from its in-process backend (the server runs in this process) and
compared page by page."""
from __future__ import annotations

from rapport import emulator
from rapport.emulator import _gsi_window as emulator_window

ACCOUNT = "123456789012"  # moto's default account, as the server uses it


def test_a_cheap_query_answers_as_motos_own_over_the_whole_table(aws_endpoint):
    """make_queries_cheap reads only the partition; moto's own Query (the wrapped
    original) walks every item: pages, order, filters and absent keys must agree."""
    import boto3
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType

    # the items go to the emulator over HTTP; the comparison reads its in-process backend
    ddb = boto3.client("dynamodb")
    ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}])
    for p in range(5):
        for s in range(30):
            ddb.put_item(TableName="t", Item={"pk": {"S": f"p{p}"}, "sk": {"S": f"s{s:03}"},
                                              "n": {"N": str(s % 7)}})
    table = dynamodb_backends[ACCOUNT][ddb.meta.region_name].tables["t"]
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


def test_a_cheap_index_query_pages_as_motos_own_walk(aws_endpoint, monkeypatch):
    """Every page of GSI Queries (both directions, range conditions, duplicate index
    range keys, items without the index keys) equals moto's walk of the whole table."""
    import random

    import boto3
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType

    from infra.bootstrap import create_table

    windows = []
    monkeypatch.setattr(emulator, "_gsi_window", lambda *a: windows.append(emulator_window(*a)) or windows[-1])
    rnd = random.Random(7)
    # the items go to the emulator over HTTP; the comparison reads its in-process backend
    ddb = boto3.client("dynamodb")
    create_table(ddb, "t2")
    for n in range(250):
        item = {"pk": {"S": f"P#{rnd.randrange(60)}"}, "sk": {"S": f"S#{n:04}"}}
        if rnd.random() < 0.8:  # the rest are not in the index
            item |= {"gsi1pk": {"S": f"G#{rnd.randrange(3)}"}, "gsi1sk": {"S": f"k{rnd.randrange(40):02}"}}
        ddb.put_item(TableName="t2", Item=item)
    table = dynamodb_backends[ACCOUNT][ddb.meta.region_name].tables["t2"]
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
