"""The embedded emulator (rapport/emulator.py): a cancelled DynamoDB transaction changes
nothing, not even items it updated in place or the stream, concurrent ones never undo
each other, and its fast responses are what moto's own serializer renders (check mode)."""
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


# --- check mode: the fast responses are moto's own, byte for byte in meaning --------------

@pytest.fixture()
def check_mode():
    """The emulator in check mode for one test (RAPPORT_EMULATOR_CHECK=1 at start does the
    same): each item operation's response is rendered by moto's serializer too and compared."""
    from rapport import emulator

    emulator.CHECKED.clear()
    emulator.MISMATCHES.clear()
    emulator.make_responses_fast(check=True)
    yield emulator
    emulator.make_responses_fast(check=False)


def _workload(tenant, deliver) -> None:
    """Customers, orders, loyalty, transactions and GSI queries, through the API and the
    event handlers: every item operation the fast path answers."""
    from tests.loyalty_helpers import place_order

    program = {"earns_from": "2000-01-01T00:00:00Z", "currency": "EUR", "earn_rates": {"EUR": 1},
               "first_order_bonus": 10, "tier_basis": "spend", "return_window_days": 0,
               "tiers": [{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 5000}]}
    assert tenant.http.put("/v1/loyalty/program", json=program).status_code == 201
    ada = tenant.create_customer(email="ada@example.com", name={"given": "Ada"}, phone="+14155550101",
                                 tags=["vip"], attributes={"n": 1, "nested": {"list": [1, "x", None]}})
    batch = tenant.http.post("/v1/customers/batch", json={"records": [
        {"email": f"check{i}@example.com", "tags": ["check"], "external_ids": {"shop": f"c{i}"}}
        for i in range(5)]})
    assert batch.status_code == 200, batch.text
    assert tenant.http.patch(f"/v1/customers/{ada['id']}", json={"name": {"given": "Ada", "family": "Lovelace"}}).status_code == 200
    paid = place_order(tenant, {"id": ada["id"]}, "w1", total=6000, paid_days_ago=1)
    place_order(tenant, {"email": "check1@example.com"}, "w2", total=1500)
    assert tenant.http.post(f"/v1/orders/{paid['id']}/refunds", json={"amount": 500}).status_code in (200, 201)
    deliver()
    assert tenant.http.post(f"/v1/customers/{ada['id']}/loyalty/adjustments",
                            json={"points": 7, "reason": "check"}).status_code in (200, 201)
    assert tenant.http.post(f"/v1/customers/{ada['id']}/loyalty/redemptions", json={"points": 5},
                            headers={"Idempotency-Key": "check-1"}).status_code in (200, 201)
    deliver()
    for path, params in [("/v1/customers", {"tag": "check", "limit": 2}), ("/v1/customers/lookup", {"email": "ada@example.com"}),
                         ("/v1/customers/lookup", {"source": "shop", "external_id": "c3"}),
                         ("/v1/orders", {"status": "paid"}), (f"/v1/customers/{ada['id']}/360", {}),
                         (f"/v1/customers/{ada['id']}/events", {}), (f"/v1/customers/{ada['id']}/loyalty/ledger", {}),
                         (f"/v1/customers/{ada['id']}/loyalty", {}), ("/v1/customers/search", {"q": "ada"})]:
        r = tenant.http.get(path, params=params)
        assert r.status_code == 200, (path, r.text)
    other = tenant.http.get("/v1/customers/lookup", params={"email": "check2@example.com"}).json()["data"][0]
    assert tenant.http.post(f"/v1/customers/{ada['id']}/merge", json={"other_id": other["id"]}).status_code == 200
    deliver()
    assert tenant.http.delete(f"/v1/customers/{other['id']}").status_code in (200, 204, 404)
    key = tenant.http.post("/v1/api-keys", json={"name": "check", "scopes": ["customers:read"]}).json()
    assert tenant.http.delete(f"/v1/api-keys/{key['id']}").status_code in (200, 204)


def _every_attribute_type(table: str) -> None:
    """Every DynamoDB attribute type (binary ones too) back through GetItem,
    TransactGetItems (which Rapport itself does not send) and Query."""
    ddb = boto3.client("dynamodb")
    key = {"pk": {"S": "EMU#types"}, "sk": {"S": "1"}}
    ddb.put_item(TableName=table, Item={**key, "s": {"S": "é"}, "n": {"N": "-1.5"}, "b": {"B": b"\x00\xff"},
                                        "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]},
                                        "bs": {"BS": [b"\x01", b"\x02"]}, "null": {"NULL": True},
                                        "bool": {"BOOL": False}, "l": {"L": [{"S": "x"}, {"N": "1"}]},
                                        "m": {"M": {"k": {"B": b"\x03"}}}})
    item = ddb.get_item(TableName=table, Key=key)["Item"]
    assert item["b"] == {"B": b"\x00\xff"} and item["m"]["M"]["k"] == {"B": b"\x03"}
    [got] = ddb.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": key}}])["Responses"]
    assert got["Item"] == item
    assert ddb.query(TableName=table, KeyConditionExpression="pk = :p",
                     ExpressionAttributeValues={":p": key["pk"]})["Items"] == [item]


def test_a_workload_in_check_mode_gets_the_same_responses_as_motos_serializer(tenant, deliver, table, check_mode):
    _workload(tenant, deliver)
    _every_attribute_type(table)
    assert check_mode.MISMATCHES == []
    assert set(check_mode.CHECKED) == check_mode.FAST_SERIALIZED  # every fast operation was compared


def test_check_mode_fails_on_a_fast_response_that_differs(table, check_mode, monkeypatch):
    from botocore.config import Config
    from botocore.exceptions import ClientError

    ddb = boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1}))
    key = {"pk": {"S": "EMU#differs"}, "sk": {"S": "1"}}
    ddb.put_item(TableName=table, Item={**key, "x": {"S": "y"}})
    monkeypatch.setattr(check_mode, "_without_none", lambda value: {})  # a fast path that loses the item
    with pytest.raises(ClientError):
        ddb.get_item(TableName=table, Key=key)
    assert len(check_mode.MISMATCHES) == 1 and check_mode.MISMATCHES[0].startswith("fast GetItem response differs")
