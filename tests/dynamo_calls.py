"""Counting the DynamoDB requests a block of in-process code sends (its own thread only,
so the API server's threads and the event pollers are not counted)."""
from __future__ import annotations

import contextlib
import threading
from collections import Counter


@contextlib.contextmanager
def dynamodb_calls():
    """Yields a Counter of DynamoDB operation names, filled while the block runs."""
    from botocore.client import BaseClient

    calls: Counter[str] = Counter()
    me = threading.get_ident()
    original = BaseClient._make_api_call

    def spy(self, operation_name, api_params):
        if self.meta.service_model.service_name == "dynamodb" and threading.get_ident() == me:
            calls[operation_name] += 1
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = spy
    try:
        yield calls
    finally:
        BaseClient._make_api_call = original
