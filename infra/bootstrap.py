"""Create the resources of ``infra/resources.json`` on an emulator (moto, LocalStack).

The same JSON that `chalice package --merge-template` deploys is translated into
boto3 calls here, so the local table has exactly the production keys, GSIs, stream
and TTL, and the queues the production redrive policy, retention and encryption.
Idempotent: existing resources are left as they are.

Local queue names derive from a prefix (the stack's table name, ``rapport`` by
default): ``<prefix>-<subscriber>``, its dead-letter queue ``<prefix>-<subscriber>-dlq``
and the stream's on-failure queue ``<prefix>-stream-dlq``. In AWS, CloudFormation names
them. One thing differs on purpose: the visibility timeout is
``LOCAL_VISIBILITY_TIMEOUT`` (2 s) instead of 180 s, so a message whose handler failed
is delivered again about 2 s later, and reaches its DLQ after 5 failures in about 10 s.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESOURCES = Path(__file__).with_name("resources.json")
LOCAL_VISIBILITY_TIMEOUT = 2  # seconds; 180 in AWS (6 x the 30 s function timeout)
STREAM_DLQ = "stream"         # the name `rapport dlq` uses for the stream's on-failure queue


def _resources() -> dict[str, Any]:
    return json.loads(RESOURCES.read_text())["Resources"]


def table_properties() -> dict[str, Any]:
    return _resources()["RapportTable"]["Properties"]


def queue_logical_id(subscriber: str) -> str:
    """``loyalty`` -> ``LoyaltyQueue``, the queue's resource in resources.json."""
    return f"{subscriber.capitalize()}Queue"


def stream_event_source() -> dict[str, Any]:
    """The properties of the stream event source (retries, on-failure destination)."""
    for resource in _resources().values():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if "Stream" in event.get("Properties", {}):
                return event["Properties"]
    raise LookupError("resources.json declares no stream event source")


@dataclass(frozen=True)
class QueueNames:
    queue: str | None  # None for the stream's on-failure queue: nothing redrives into a stream
    dlq: str


def local_queue_names(prefix: str, subscribers: tuple[str, ...] | None = None) -> dict[str, QueueNames]:
    """{subscriber or "stream": names} of the local queues."""
    if subscribers is None:
        from crm.queues import SUBSCRIBERS as subscribers
    names = {s: QueueNames(f"{prefix}-{s}", f"{prefix}-{s}-dlq") for s in subscribers}
    names[STREAM_DLQ] = QueueNames(None, f"{prefix}-{STREAM_DLQ}-dlq")
    return names


@dataclass(frozen=True)
class LocalQueues:
    """The URLs of the queues :func:`create_queues` made."""
    queues: dict[str, str]          # subscriber -> queue URL
    dead_letter: dict[str, str]     # subscriber -> its DLQ URL
    stream_dead_letter: str         # the stream's on-failure destination

    def env(self) -> dict[str, str]:
        """The functions' environment: ``RAPPORT_QUEUE_<NAME>_URL`` per subscriber."""
        from crm.queues import env_name

        return {env_name(s): url for s, url in self.queues.items()}


def _sqs_attributes(props: dict[str, Any]) -> dict[str, str]:
    """CloudFormation AWS::SQS::Queue properties -> CreateQueue attributes (strings)."""
    out = {}
    for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds",
                "MaximumMessageSize", "ReceiveMessageWaitTimeSeconds", "SqsManagedSseEnabled"):
        if key in props:
            value = props[key]
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _ensure_queue(client: Any, name: str, attributes: dict[str, str]) -> str:
    try:
        return client.get_queue_url(QueueName=name)["QueueUrl"]
    except client.exceptions.QueueDoesNotExist:
        return client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]


def _arn(client: Any, url: str) -> str:
    return client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def create_queues(client: Any, prefix: str, subscribers: tuple[str, ...] | None = None,
                  visibility_timeout: int = LOCAL_VISIBILITY_TIMEOUT) -> LocalQueues:
    """Create each subscriber's queue and DLQ, and the stream's on-failure queue, from
    resources.json (unless they exist); return their URLs."""
    resources = _resources()
    names = local_queue_names(prefix, subscribers)
    queues, dead_letter = {}, {}
    for subscriber, name in names.items():
        if name.queue is None:
            continue
        props = resources[queue_logical_id(subscriber)]["Properties"]
        redrive = props["RedrivePolicy"]
        dlq_id = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
        dlq_url = _ensure_queue(client, name.dlq, _sqs_attributes(resources[dlq_id]["Properties"]))
        attributes = _sqs_attributes(props)
        attributes["VisibilityTimeout"] = str(visibility_timeout)
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": _arn(client, dlq_url),
                                                  "maxReceiveCount": redrive["maxReceiveCount"]})
        queues[subscriber] = _ensure_queue(client, name.queue, attributes)
        dead_letter[subscriber] = dlq_url
    destination = stream_event_source()["DestinationConfig"]["OnFailure"]["Destination"]
    stream_props = resources[destination["Fn::GetAtt"][0]]["Properties"]
    stream_dlq = _ensure_queue(client, names[STREAM_DLQ].dlq, _sqs_attributes(stream_props))
    return LocalQueues(queues, dead_letter, stream_dlq)


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


def create_key(client: Any, alias: str) -> str:
    """The KMS key that seals connector secrets (``ConnectionsKey``), under ``alias``
    (``alias/<prefix>-connections``); reused if the alias exists. Returns the alias."""
    try:
        client.describe_key(KeyId=alias)
        return alias
    except client.exceptions.NotFoundException:
        pass
    props = _resources()["ConnectionsKey"]["Properties"]
    key = client.create_key(Description=props["Description"], KeyUsage="ENCRYPT_DECRYPT")
    client.create_alias(AliasName=alias, TargetKeyId=key["KeyMetadata"]["KeyId"])
    return alias


def create_bucket(client: Any, name: str) -> str:
    """The uploads bucket (``UploadsBucket``) for CSV imports; kept if it exists."""
    try:
        client.head_bucket(Bucket=name)
    except Exception:  # noqa: BLE001 - botocore raises a generic ClientError for 404
        client.create_bucket(Bucket=name)
    return name


def connector_env(prefix: str) -> dict[str, str]:
    """The local names the connector code reads (``RAPPORT_KMS_KEY``, ``RAPPORT_UPLOADS_BUCKET``)."""
    return {"RAPPORT_KMS_KEY": f"alias/{prefix}-connections", "RAPPORT_UPLOADS_BUCKET": f"{prefix}-uploads"}


def create_connector_resources(session: Any, prefix: str) -> dict[str, str]:
    """Create the KMS key and the uploads bucket on the emulator; return their env."""
    env = connector_env(prefix)
    create_key(session.client("kms"), env["RAPPORT_KMS_KEY"])
    create_bucket(session.client("s3"), env["RAPPORT_UPLOADS_BUCKET"])
    return env


def email_env(prefix: str, public_url: str) -> dict[str, str]:
    """What the email code reads locally: the API's public URL (unsubscribe links), a
    link-signing secret made for this process, the SES configuration set and the domain
    of each tenant's ready-verified dev sender (``hello@<tenant id>.example.test``)."""
    import secrets

    return {
        "RAPPORT_PUBLIC_URL": public_url,
        "RAPPORT_EMAIL_LINK_SECRET": os.environ.get("RAPPORT_EMAIL_LINK_SECRET") or secrets.token_urlsafe(32),
        "RAPPORT_SES_CONFIGURATION_SET": prefix,
        "RAPPORT_DEV_SENDER_DOMAIN": "example.test",
    }


def create_email_resources(session: Any, prefix: str, public_url: str) -> dict[str, str]:
    """The SES configuration set on the emulator, and the EventBridge rule of
    resources.json (``EmailEventsRule``: SES events of that configuration set -> the
    ``delivery`` queue, which must exist: :func:`create_queues` first); return the email
    env. The emulator's SES publishes no events: locally rapport/ses_events.py puts the
    ones SES would on the bus."""
    env = email_env(prefix, public_url)
    configuration_set = env["RAPPORT_SES_CONFIGURATION_SET"]
    client = session.client("sesv2")
    from botocore.exceptions import ClientError

    try:
        client.create_configuration_set(ConfigurationSetName=configuration_set)
    except ClientError as exc:  # AWS: AlreadyExistsException; moto: ConfigurationSetAlreadyExistsException
        if "AlreadyExists" not in exc.response.get("Error", {}).get("Code", ""):
            raise
    create_email_events_rule(session, prefix, configuration_set)
    return env


def email_events_rule_name(prefix: str) -> str:
    return f"{prefix}-email-events"


def create_email_events_rule(session: Any, prefix: str, configuration_set: str) -> str:
    """``EmailEventsRule`` on the emulator's default bus, its pattern as resources.json
    declares it (the configuration set's name in place of its Ref), targeting the local
    delivery queue. Idempotent (put_rule and put_targets overwrite); returns the rule's ARN."""
    rule = _resources()["EmailEventsRule"]["Properties"]

    def local(value: Any) -> Any:
        if value == {"Ref": "EmailConfigurationSet"}:
            return configuration_set
        if isinstance(value, dict):
            return {k: local(v) for k, v in value.items()}
        if isinstance(value, list):
            return [local(v) for v in value]
        return value

    sqs = session.client("sqs")
    queue_url = sqs.get_queue_url(QueueName=local_queue_names(prefix)["delivery"].queue)["QueueUrl"]
    events = session.client("events")
    name = email_events_rule_name(prefix)
    arn = events.put_rule(Name=name, EventPattern=json.dumps(local(rule["EventPattern"])), State=rule["State"],
                          Description=rule["Description"])["RuleArn"]
    [target] = rule["Targets"]
    events.put_targets(Rule=name, Targets=[{"Id": target["Id"], "Arn": _arn(sqs, queue_url)}])
    return arn
