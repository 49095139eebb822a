"""Normalizers for identity fields: they decide what counts as "the same customer"."""

from __future__ import annotations

from common.normalize import email, phone  # the same rules as the connector SDK

__all__ = ["PREVIOUS_EMAIL_DAYS", "email", "phone", "previous_emails"]

PREVIOUS_EMAIL_DAYS = 90  # a replaced email stays findable and guarded this long


def previous_emails(old: dict, new: dict, now: str) -> list[dict] | None:
    """The profile's replaced emails after a change from ``old`` to ``new``: a replaced
    email is kept (findable, and guarded so no one else takes it) for 90 days, then
    dropped at the profile's next write; the current email is never among them."""
    from datetime import timedelta

    from crm import clock

    floor = clock.iso(clock.parse(now) - timedelta(days=PREVIOUS_EMAIL_DAYS))
    kept = [p for p in old.get("previous_emails") or () if p["replaced_at"] > floor]
    if old.get("email") and old.get("email") != new.get("email"):
        kept = [{"email": old["email"], "replaced_at": now}] + [p for p in kept if p["email"] != old["email"]]
    kept = [p for p in kept if p["email"] != new.get("email")][:20]
    return kept or None
