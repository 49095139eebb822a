"""Identifiers. Customer and event ids are ULIDs: time-sortable, so lists by id are
in creation order. Tenant and key ids are short random lowercase tokens that contain
no ``_`` or ``#``, so they can be embedded in API keys and storage keys safely."""
from __future__ import annotations

import re
import secrets

from ulid import ULID

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
TENANT_ID = re.compile(r"^t[0-9a-z]{12}$")
KEY_ID = re.compile(r"^[0-9a-z]{10}$")
CUSTOMER_ID = re.compile(r"^cus_[0-9A-HJKMNP-TV-Z]{26}$")


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


def event_id() -> str:
    return f"evt_{ULID()}"
