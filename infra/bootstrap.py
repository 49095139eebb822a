"""Create the resources of ``infra/resources.json`` on an emulator (moto, LocalStack).

The same JSON that `chalice package --merge-template` deploys is translated into
boto3 calls here, so the local table has exactly the production keys, GSIs, stream
and TTL. Idempotent: existing resources are left as they are.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESOURCES = Path(__file__).with_name("resources.json")


def table_properties() -> dict[str, Any]:
    template = json.loads(RESOURCES.read_text())
    return template["Resources"]["RapportTable"]["Properties"]


def create_table(client: Any, table_name: str) -> bool:
    """Create the table (and its TTL) unless it exists; return True if created."""
    props = table_properties()
    try:
        client.describe_table(TableName=table_name)
        return False
    except client.exceptions.ResourceNotFoundException:
        pass
    client.create_table(
        TableName=table_name,
        BillingMode=props["BillingMode"],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"],
        StreamSpecification={"StreamEnabled": True, **props["StreamSpecification"]},
        SSESpecification={"Enabled": props["SSESpecification"]["SSEEnabled"]},
    )
    client.get_waiter("table_exists").wait(TableName=table_name)
    ttl = props["TimeToLiveSpecification"]
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": ttl["Enabled"]},
    )
    return True
