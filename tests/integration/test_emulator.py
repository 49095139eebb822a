"""The embedded emulator's DynamoDB transactions: a cancelled one changes nothing,
not even items it updated in place or the stream, and concurrent ones never undo
each other (rapport/emulator.py)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest


@pytest.fixture()
def ddb(table):
    return boto3.client("dynamodb")


def _stream_count(ddb, table) -> int:
    streams = boto3.client("dynamodbstreams")
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    return len(streams.get_records(ShardIterator=it["ShardIterator"], Limit=1000)["Records"])


def test_a_cancelled_transaction_changes_nothing(ddb, table):
    s = lambda v: {"S": v}  # noqa: E731
    ddb.put_item(TableName=table, Item={"pk": s("EMU#a"), "sk": s("1"), "x": s("before")})
    ddb.put_item(TableName=table, Item={"pk": s("EMU#c"), "sk": s("1")})
    before = _stream_count(ddb, table)
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=[
            {"Update": {"TableName": table, "Key": {"pk": s("EMU#a"), "sk": s("1")},
                        "UpdateExpression": "SET x = :v", "ExpressionAttributeValues": {":v": s("after")}}},
            {"Put": {"TableName": table, "Item": {"pk": s("EMU#b"), "sk": s("1")}}},
            {"Put": {"TableName": table, "Item": {"pk": s("EMU#c"), "sk": s("1")},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
    assert ddb.get_item(TableName=table, Key={"pk": s("EMU#a"), "sk": s("1")})["Item"]["x"] == s("before")
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": s("EMU#b"), "sk": s("1")})
    assert _stream_count(ddb, table) == before


def test_concurrent_transactions_never_undo_each_other(ddb, table):
    s = lambda v: {"S": v}  # noqa: E731
    ddb.put_item(TableName=table, Item={"pk": s("EMU#taken"), "sk": s("1")})

    def write(i: int) -> None:
        items = [{"Put": {"TableName": table, "Item": {"pk": s(f"EMU#ok{i}"), "sk": s("1")}}}]
        if i % 2:  # every other transaction is cancelled by a failing condition
            items.append({"Put": {"TableName": table, "Item": {"pk": s("EMU#taken"), "sk": s("1")},
                                  "ConditionExpression": "attribute_not_exists(pk)"}})
        try:
            ddb.transact_write_items(TransactItems=items)
        except ddb.exceptions.TransactionCanceledException:
            pass

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(40)))
    present = {i for i in range(40)
               if "Item" in ddb.get_item(TableName=table, Key={"pk": s(f"EMU#ok{i}"), "sk": s("1")})}
    assert present == set(range(0, 40, 2))
