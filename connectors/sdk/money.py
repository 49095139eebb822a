"""Vendor amounts (decimal strings or numbers in major units) to Rapport's integer minor units.

The exponent comes from ISO 4217: most currencies have 2 decimals, a few none (JPY, KRW...)
and a few 3 (BHD, KWD...). Amounts go through ``Decimal`` built from the vendor's text, never
through binary floats, so "0.1" + "0.2" is exactly 30 minor units.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from common.currency import EXPONENTS, exponent  # noqa: F401 - the SDK's public money helpers


def currency_code(value: Any) -> str | None:
    """A vendor's currency as an upper-case three-letter code, None when it is not one."""
    code = str(value or "").upper()
    return code if len(code) == 3 and code.isalpha() else None


def minor_units(amount: Any, currency: str) -> int:
    """``"199.00"``, ``199``, ``"0.9"`` in ``currency`` → integer minor units (half up when the
    vendor gives more decimals than the currency has). Raises ``ValueError`` on anything else."""
    if amount is None or isinstance(amount, bool) or amount == "":
        raise ValueError(f"missing amount ({amount!r})")
    try:
        value = Decimal(str(amount).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"not an amount: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"not an amount: {amount!r}")
    return int((value.scaleb(exponent(currency))).quantize(Decimal(1), rounding=ROUND_HALF_UP))
