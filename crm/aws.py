"""One boto3 DynamoDB client per process, for the Powertools utilities (PynamoDB keeps
its own). Created on first use: boto3 is the heaviest import of a cold start."""
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
