"""The fields a segment rule may name, their types and the operators each type takes.

One table for validation (crm/segments/rules.py), the docs (docs/segments.md, "Fields and
operators") and the facts a customer is measured by (crm/segments/aggregate.py builds them
under exactly these names). Pure: no I/O.
"""

from __future__ import annotations

from typing import get_args

from crm.customers.schemas import ATTRIBUTE_KEY, Channel, ConsentStatus
from crm.orders.schemas import OrderChannel
from crm.segments.rfm import NAMED

# field -> type; types: bool, number, string, time (ISO 8601 instant), date (YYYY-MM-DD),
# list (of strings). ``attributes.<name>`` ("any") and ``consent.<channel>`` ("string")
# are families, resolved by ``field_type``.
FIELDS: dict[str, str] = {
    "tags": "list",
    "locale": "string",
    "address.country": "string",
    "created_at": "time",
    "source": "list",
    "birth_date": "date",
    "orders.count": "number",
    "orders.net_spend": "number",
    "orders.first_at": "time",
    "orders.last_at": "time",
    "orders.aov": "number",
    "orders.channels": "list",
    "orders.categories": "list",
    "loyalty.tier": "string",
    "loyalty.balance": "number",
    "rfm.r": "number",
    "rfm.f": "number",
    "rfm.m": "number",
    "rfm.segment": "string",
    "ltv.historical": "number",
    "ltv.predicted": "number",
    "vip": "bool",
}

_EQ = frozenset({"=", "!=", "exists"})
_ORDER = frozenset({">", ">=", "<", "<="})

# type -> the operators that fit it
OPS: dict[str, frozenset[str]] = {
    "bool": _EQ,
    "number": _EQ | _ORDER | {"in"},
    "string": _EQ | {"in"},
    "time": _EQ | _ORDER | {"older_than", "within"},
    "date": _EQ | _ORDER | {"birthday_within"},
    # ``!=`` on a list: the list does not include the value; ``in``: it includes any of them
    "list": frozenset({"contains", "!=", "in", "exists"}),
    "any": _EQ | _ORDER | {"in", "contains"},
}

CHANNELS: frozenset[str] = frozenset(get_args(Channel))
CONSENT_STATUSES: frozenset[str] = frozenset(get_args(ConsentStatus))
ORDER_CHANNELS: frozenset[str] = frozenset(get_args(OrderChannel))


def field_type(name: str) -> str | None:
    """The type of a field a rule names, None if there is no such field."""
    if name in FIELDS:
        return FIELDS[name]
    family, _, rest = name.partition(".")
    if family == "attributes" and ATTRIBUTE_KEY.match(rest):
        return "any"
    if family == "consent" and rest in CHANNELS:
        return "string"
    return None


def choices(name: str) -> frozenset[str] | None:
    """The only values a field can hold, when it has a fixed set (a value outside it is
    a mistake the rule's author wants to hear about, not a condition that never holds)."""
    if name == "rfm.segment":
        return frozenset(NAMED)
    if name.startswith("consent."):
        return CONSENT_STATUSES
    if name == "orders.channels":
        return ORDER_CHANNELS
    return None
