"""Normalizers for identity fields: they decide what counts as "the same customer".
The domain (crm/customers) and the connector SDK use these same functions."""

from __future__ import annotations

import functools

# A sync meets each email and phone several times (the customer, then the buyer of each
# of their orders, in the mapping and again in the domain's validation); both functions
# are pure and cost tens of microseconds, so their results are kept per process.
_CACHED = 8192


@functools.lru_cache(maxsize=_CACHED)
def email(value: str) -> str:
    """Syntax-checked, IDNA/Unicode-normalized, and lower-cased as a whole.

    Mailbox local parts are case-insensitive in practice, and a CRM that treated
    Ann@x.com and ann@x.com as two people would split one customer in two.
    """
    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None
    return result.normalized.lower()


@functools.lru_cache(maxsize=_CACHED)
def phone(value: str) -> str:
    """E.164 (``+14155552671``). A number must carry its country code (``+`` or ``00``)."""
    import phonenumbers

    raw = value.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+"):
        raise ValueError("phone must be in international format, starting with + and the country code")
    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a valid phone number: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number for its country code")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
