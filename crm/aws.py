"""Per-process Lambda plumbing, created on first use (cold starts stay small): one
boto3 DynamoDB client for the Powertools utilities (PynamoDB keeps its own), and the
Powertools structured logger."""
from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=1)
def logger() -> Any:
    """Powertools' structured JSON logger."""
    from aws_lambda_powertools import Logger

    return Logger(service="rapport")
