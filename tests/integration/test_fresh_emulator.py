"""Each test module starts from a fresh emulator (tests/conftest.py ``fresh_emulator``):
nothing an earlier module wrote is left, and the resources of infra/ are there again
under the same names, so the session's API server and queue URLs keep working."""
from __future__ import annotations

import os

import boto3

from tests.conftest import TABLE, Tenant, fresh_emulator, partition_items


def test_a_reset_leaves_an_empty_table_and_the_same_working_resources(api_url, aws_endpoint, raw_table):
    before = Tenant(api_url, "Before")
    before.create_customer(email="before@example.com")
    sqs = boto3.client("sqs")
    queue = os.environ["RAPPORT_QUEUE_SYNC_URL"]
    sqs.send_message(QueueUrl=queue, MessageBody="{}")
    env = {k: v for k, v in os.environ.items() if k.startswith("RAPPORT_")}

    fresh_emulator(aws_endpoint)

    assert raw_table.scan(Select="COUNT")["Count"] == 0
    assert partition_items(raw_table, before) == []
    assert {k: v for k, v in os.environ.items() if k.startswith("RAPPORT_")} == env
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "RedrivePolicy"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0" and "RedrivePolicy" in attrs["Attributes"]
    kms = boto3.client("kms")
    sealed = kms.encrypt(KeyId=env["RAPPORT_KMS_KEY"], Plaintext=b"x")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=sealed)["Plaintext"] == b"x"
    boto3.client("s3").head_bucket(Bucket=env["RAPPORT_UPLOADS_BUCKET"])
    stream = boto3.client("dynamodb").describe_table(TableName=TABLE)["Table"]["StreamSpecification"]
    assert stream["StreamEnabled"]

    after = Tenant(api_url, "After")  # the session's API server works on the fresh state
    assert after.create_customer(email="before@example.com")["email"] == "before@example.com"
    assert before.http.get("/v1/customers").status_code == 401  # its key is gone with it
