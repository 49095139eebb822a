"""ISO 4217 minor units: how many decimals each currency has (most 2, a few none or 3),
for the SDK's vendor amounts and the domain's points alike."""

from __future__ import annotations

# ISO 4217 currencies whose minor unit is not 2 decimals (the rest are 2).
EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def exponent(currency: str) -> int:
    """Decimals of ``currency``'s minor unit (2 unless ISO 4217 says otherwise)."""
    return EXPONENTS.get(currency.upper(), 2)
