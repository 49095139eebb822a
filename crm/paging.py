"""Cursor pagination shared by every list: pages, opaque cursors, start keys.

A cursor carries only the sort-key part of the last item and the kind of list it
belongs to; the partition key is always rebuilt from the caller's TenantContext, so a
cursor can never lead into another tenant's data.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from crm.errors import Invalid


@dataclass
class Page:
    items: list[Any]
    next_cursor: str | None


# --- cursors: only the sort-key part travels, the tenant part is rebuilt from ctx --


def start_key(**keys: str) -> dict[str, dict[str, str]]:
    """An ExclusiveStartKey in DynamoDB's wire format."""
    return {name: {"S": value} for name, value in keys.items()}


def encode_cursor(kind: str, value: str) -> str:
    raw = json.dumps({"k": kind, "v": value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: str) -> str | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if data["k"] == kind and isinstance(data["v"], str) and data["v"]:
            return data["v"]
    except (ValueError, KeyError, TypeError):
        pass
    raise Invalid("cursor is malformed or belongs to a different list", field="cursor")
