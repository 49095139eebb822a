"""Lambda plumbing of the event entry points: Powertools' structured JSON logger on the
``rapport`` logger (as api/lambda_env.py for the HTTP one), and what a handler reads from
its Lambda context."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


@functools.lru_cache(maxsize=1)
def logger() -> Any:
    from aws_lambda_powertools import Logger

    return Logger(service="rapport")


def time_left(lambda_context: Any) -> Callable[[], float]:
    """Seconds this invocation has left (unbounded outside Lambda)."""
    if lambda_context is None:
        return lambda: float("inf")
    return lambda: lambda_context.get_remaining_time_in_millis() / 1000.0


def trace_id(lambda_context: Any) -> str:
    """The invocation's request id, or a fresh one outside Lambda."""
    import uuid

    return getattr(lambda_context, "aws_request_id", None) or uuid.uuid4().hex
