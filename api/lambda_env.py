"""Lambda plumbing of the HTTP entry point: Powertools' structured JSON logger on the
``rapport`` logger. crm/ and connectors/ log with the standard library under
``rapport.*``, so their lines come out through it without importing Powertools."""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=1)
def logger() -> Any:
    from aws_lambda_powertools import Logger

    return Logger(service="rapport")
