"""Per-process boto3 clients, created on first use (cold starts stay small): the AWS
services the domain calls (KMS, S3, SQS...) and a DynamoDB client for the idempotency
records (PynamoDB keeps its own). The Lambda plumbing (Powertools' logger, the Lambda
context) belongs to the entry points: api/lambda_env.py, functions/lambda_env.py."""

from __future__ import annotations

import threading
from typing import Any

from crm import settings

_lock = threading.Lock()
_client: Any = None


def dynamodb_client() -> Any:
    global _client
    with _lock:
        if _client is None:
            import boto3

            _client = boto3.client("dynamodb", region_name=settings.region())
        return _client


_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    """A boto3 client per service for this process (KMS, S3, SQS...), created on first use."""
    with _lock:
        if service not in _clients:
            import boto3

            _clients[service] = boto3.client(service, region_name=settings.region())
        return _clients[service]
