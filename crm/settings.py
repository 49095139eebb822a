"""Settings read from the environment (the same names locally and on Lambda)."""

from __future__ import annotations

import os


def table_name() -> str:
    return os.environ.get("RAPPORT_TABLE", "rapport")


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def key_cache_seconds() -> float:
    """How long a Lambda container may trust a cached API-key lookup (at most 60 s)."""
    return max(0.0, min(60.0, float(os.environ.get("RAPPORT_KEY_CACHE_SECONDS", "60"))))
