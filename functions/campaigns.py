"""Campaign sending (the ``email`` queue) and the campaigns schedule. Issue 13."""

from __future__ import annotations

from typing import Any


def handle_batch(event: dict[str, Any], lambda_context: Any = None) -> dict[str, Any]:
    return {"batchItemFailures": []}


def run_schedule(lambda_context: Any = None) -> dict[str, Any]:
    return {}
