"""Cursor pagination shared by every list: pages, opaque cursors, start keys.

A cursor carries only the sort-key part of the last item and the kind of list it
belongs to; the partition key is always rebuilt from the caller's TenantContext, so a
cursor can never lead into another tenant's data.
"""

from __future__ import annotations

import base64
import json
import re
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


def by_sort_key(model: Any, pk: str, kind: str, id_pattern: re.Pattern[str], cursor: str | None,
                limit: int) -> tuple[list[Any], str | None]:  # fmt: skip
    """One page of a partition whose sort key is the item's id (templates, campaigns,
    journeys: oldest first, ids being ULIDs): 1 Query of ``limit + 1`` items. The cursor is
    the last id, checked against ``id_pattern``. Returns (items, next cursor)."""
    after = decode_cursor(cursor, kind)
    start = None
    if after is not None:
        if not id_pattern.match(after):
            raise Invalid("cursor is malformed or belongs to a different list", field="cursor")
        start = start_key(pk=pk, sk=after)
    rows = list(model.query(pk, limit=limit + 1, page_size=limit + 1, last_evaluated_key=start))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(kind, rows[-1].sk) if more and rows else None)
