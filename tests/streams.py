"""Reading the table's DynamoDB stream from the emulator, as a test-side consumer, and
the SQS batches subscribers receive, shaped as Lambda delivers them."""
from __future__ import annotations

import json


def sqs_event(events: list[dict], queue: str = "rapport-x") -> dict:
    """A subscriber's SQS batch of ``events`` (message bodies), shaped as Lambda delivers it."""
    return {"Records": [{"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": json.dumps(e),
                         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                         "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": f"arn:aws:sqs:us-east-1:000000000000:{queue}",
                         "awsRegion": "us-east-1"} for i, e in enumerate(events)]}


class StreamTail:
    """New stream records since the last call, from every shard, in order."""

    def __init__(self, table: str) -> None:
        import boto3

        self.client = boto3.client("dynamodbstreams")
        self.arn = boto3.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.last: dict[str, str] = {}
        for shard in self._shards():
            # start after what is already there: only this test's changes count
            it = self.client.get_shard_iterator(StreamArn=self.arn, ShardId=shard,
                                                ShardIteratorType="LATEST")["ShardIterator"]
            self._drain(shard, it)

    def _shards(self) -> list[str]:
        desc = self.client.describe_stream(StreamArn=self.arn)["StreamDescription"]
        return [s["ShardId"] for s in desc["Shards"]]

    def _drain(self, shard: str, iterator: str) -> list[dict]:
        out = []
        while iterator:
            page = self.client.get_records(ShardIterator=iterator, Limit=1000)
            out += page["Records"]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
        if out:
            self.last[shard] = out[-1]["dynamodb"]["SequenceNumber"]
        return out

    def records(self) -> list[dict]:
        out = []
        for shard in self._shards():
            if shard in self.last:
                kwargs = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self.last[shard]}
            else:
                kwargs = {"ShardIteratorType": "TRIM_HORIZON"}
            it = self.client.get_shard_iterator(StreamArn=self.arn, ShardId=shard, **kwargs)["ShardIterator"]
            out += self._drain(shard, it)
        return out
