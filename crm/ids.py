"""Identifiers. Customer and event ids are ULIDs: time-sortable, so lists by id are
in creation order. Tenant and key ids are short random lowercase tokens that contain
no ``_`` or ``#``, so they can be embedded in API keys and storage keys safely."""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from ulid import ULID

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
TENANT_ID = re.compile(r"^t[0-9a-z]{12}$")
KEY_ID = re.compile(r"^[0-9a-z]{10}$")
CUSTOMER_ID = re.compile(r"^cus_[0-9A-HJKMNP-TV-Z]{26}$")
ORDER_ID = re.compile(r"^ord_[0-9A-HJKMNP-TV-Z]{26}$")


def _token(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def tenant_id() -> str:
    return "t" + _token(12)


def key_id() -> str:
    return _token(10)


def key_secret() -> str:
    return secrets.token_urlsafe(24).replace("_", "x").replace("-", "y")


def customer_id() -> str:
    return f"cus_{ULID()}"


def order_id(placed_at: datetime) -> str:
    """A ULID whose time part is ``placed_at``: order ids sort by when they were placed."""
    return f"ord_{ULID.from_datetime(placed_at)}"


def order_id_bound(at: datetime, *, upper: bool) -> str:
    """The smallest (or largest) order id placed at ``at``, for date-range queries."""
    prefix = str(ULID.from_datetime(at))[:10]
    return f"ord_{prefix}{'Z' * 16 if upper else '0' * 16}"


def event_id() -> str:
    return f"evt_{ULID()}"


def derived_event_id(occurred_at: datetime, key: str) -> str:
    """A timeline id that is a function of the fact it records: a ULID of ``occurred_at``
    whose random part is a hash of ``key``, so a redelivered event maps to the same id."""
    import hashlib

    ms = int(occurred_at.timestamp() * 1000)
    raw = ms.to_bytes(6, "big") + hashlib.sha256(key.encode()).digest()[:10]
    return f"evt_{ULID.from_bytes(raw)}"
