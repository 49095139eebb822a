"""The tenant's suppression list: addresses it never sends marketing to again.

Keyed by the SHA-256 of the trimmed, lower-cased address, so the list survives an
erasure without keeping the address (docs/email.md)."""

from __future__ import annotations

import hashlib


def digest(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def pk(ctx: object) -> str:
    return ctx.key("SUPPRESSED")  # type: ignore[attr-defined]
