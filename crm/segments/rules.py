"""Segment rules: the JSON format, its validation, evaluation, and the next instant a
rule's answer changes for a customer by the passing of time alone. Pure: no I/O.

A rule is a group ``{"all": [...]}`` or ``{"any": [...]}`` of conditions
``{"field", "op", "value"}`` and nested groups (docs/segments.md, "Rules").

Time conditions are exact at the millisecond, and true from their instant on (a
half-open interval), so ``next_flip`` names the first instant at which ``evaluate``
answers differently, never an approximation:
- ``older_than D``: ``value + D <= now``;
- ``within D``: ``value <= now < value + D``;
- ``birthday_within N``: the next birthday (today counting) is at most N days away, by
  UTC dates (Feb 29 is Feb 28 in other years); it flips at UTC midnights.
A missing field (absent, null) makes every condition false except ``!=`` (true) and
``exists false`` (true).
"""

from __future__ import annotations

import difflib
import math
import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from dateutil.relativedelta import relativedelta

from common import clock
from common.clock import iso
from crm.segments.aggregate import instant
from crm.segments.fields import CHANNELS, FIELDS, OPS, choices, field_type

MAX_CONDITIONS = 50
MAX_DEPTH = 5
MAX_IN = 100
MAX_STRING = 256
MAX_BIRTHDAY_DAYS = 366
MAX_DURATION = timedelta(days=36_525)  # 100 years

ALL_OPS = frozenset().union(*OPS.values())
_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_DURATION_UNITS = ("Y", "M", "W", "D", "H", "M", "S")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FAR = datetime(9999, 12, 31, tzinfo=UTC)
_HORIZON = timedelta(days=9 * 366)  # birthdays repeat within any 9 years (leap years)
_DURATION_HINT = "value must be an ISO 8601 duration such as P90D"


class RuleError(ValueError):
    """A rule that does not validate; ``path`` names the group or condition."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# -- parsing ---------------------------------------------------------------------------


def parse(rule: Any) -> dict[str, Any]:
    """Validate a rule and return it normalized (JSON-able, deterministic): times as
    ``...Z`` to the millisecond, durations canonical, ``in`` lists without duplicates,
    ``exists`` with its value. A bare condition is wrapped in ``{"all": [...]}``."""
    count = [0]
    if isinstance(rule, dict) and "field" in rule:
        return {"all": [_condition(rule, "rule", count)]}
    return _group(rule, "rule", 1, count)


def _group(node: Any, path: str, depth: int, count: list[int]) -> dict[str, Any]:
    if not isinstance(node, dict) or len(node) != 1 or next(iter(node)) not in ("all", "any"):
        raise RuleError(path, 'a group is an object with exactly one key, "all" or "any", holding a list')
    if depth > MAX_DEPTH:
        raise RuleError(path, f"groups nest at most {MAX_DEPTH} levels deep")
    key, items = next(iter(node.items()))
    if not isinstance(items, list) or not items:
        raise RuleError(f"{path}.{key}", "must be a non-empty list of conditions and groups")
    out = []
    for i, item in enumerate(items):
        where = f"{path}.{key}[{i}]"
        if isinstance(item, dict) and ("all" in item or "any" in item) and "field" not in item:
            out.append(_group(item, where, depth + 1, count))
        else:
            out.append(_condition(item, where, count))
    return {key: out}


def _condition(node: Any, path: str, count: list[int]) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise RuleError(path, 'a condition is an object {"field", "op", "value"}')
    count[0] += 1
    if count[0] > MAX_CONDITIONS:
        raise RuleError(path, f"a rule has at most {MAX_CONDITIONS} conditions")
    extra = sorted(set(node) - {"field", "op", "value"})
    if extra:
        raise RuleError(path, f'unexpected key "{extra[0]}" (a condition has "field", "op" and "value")')
    field, op = node.get("field"), node.get("op")
    if not isinstance(field, str):
        raise RuleError(path, '"field" must be a string')
    typ = field_type(field)
    if typ is None:
        near = difflib.get_close_matches(field, [*FIELDS, *(f"consent.{c}" for c in CHANNELS)], n=1)
        hint = f' (did you mean "{near[0]}"?)' if near else ""
        raise RuleError(path, f'unknown field "{field[:MAX_STRING]}"{hint}')
    if not isinstance(op, str) or op not in ALL_OPS:
        shown = op[:MAX_STRING] if isinstance(op, str) else op
        raise RuleError(path, f'unknown op "{shown}" (one of {", ".join(sorted(ALL_OPS))})')
    if op not in OPS[typ]:
        kind = "an attribute" if typ == "any" else f"a {typ}"
        raise RuleError(path, f'op "{op}" does not fit {kind} field ({field}); it takes {", ".join(sorted(OPS[typ]))}')
    if "value" not in node and op != "exists":
        raise RuleError(path, '"value" is missing')
    return {"field": field, "op": op, "value": _value(path, field, typ, op, node.get("value", True))}


def _value(path: str, field: str, typ: str, op: str, value: Any) -> Any:
    if op == "exists":
        if not isinstance(value, bool):
            raise RuleError(path, "value must be true or false")
        return value
    if op in ("older_than", "within"):
        if not isinstance(value, str):
            raise RuleError(path, _DURATION_HINT)
        return _canonical_duration(path, value)
    if op == "birthday_within":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BIRTHDAY_DAYS:
            raise RuleError(path, f"value must be a whole number of days from 0 to {MAX_BIRTHDAY_DAYS}")
        return value
    if op == "in":
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN:
            raise RuleError(path, f"value must be a list of 1 to {MAX_IN} values")
        out: list[Any] = []
        for i, v in enumerate(value):
            v = _scalar(f"{path}.value[{i}]", field, "string" if typ == "list" else typ, op, v)
            if not any(_same(v, seen) for seen in out):
                out.append(v)
        return out
    return _scalar(path, field, "string" if typ == "list" else typ, op, value)


def _scalar(path: str, field: str, typ: str, op: str, value: Any) -> Any:
    if typ == "bool":
        if not isinstance(value, bool):
            raise RuleError(path, "value must be true or false")
        return value
    if typ == "number" or (typ == "any" and isinstance(value, int | float) and not isinstance(value, bool)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise RuleError(path, "value must be a number")
        return value
    if typ == "time":
        try:
            if not isinstance(value, str) or len(value) > MAX_STRING:
                raise ValueError
            dt = clock.parse(value)
            if dt.tzinfo is None:
                raise ValueError
        except ValueError:
            raise RuleError(
                path, "value must be an ISO 8601 time with a time zone such as 2024-01-31T00:00:00Z"
            ) from None
        return iso(dt)
    if typ == "date":
        try:
            if not isinstance(value, str) or not _DATE.match(value):
                raise ValueError
            date.fromisoformat(value)
        except ValueError:
            raise RuleError(path, "value must be a date such as 1990-05-17") from None
        return value
    if typ == "any" and isinstance(value, bool) and op in ("=", "!=", "in", "contains"):
        return value
    if not isinstance(value, str):
        wanted = "a string or a number" if typ == "any" else "a string"
        raise RuleError(path, f"value must be {wanted}")
    if len(value) > MAX_STRING:
        raise RuleError(path, f"value must be at most {MAX_STRING} characters")
    allowed = choices(field)
    if allowed is not None and value not in allowed:
        raise RuleError(path, f'value "{value}" is not one of: {", ".join(sorted(allowed))}')
    return value


def _canonical_duration(path: str, value: str) -> str:
    m = _DURATION.match(value.upper()) if len(value) <= 64 else None
    if m is None or value.upper().endswith("T") or not any(m.groups()):
        raise RuleError(path, _DURATION_HINT)
    parts = [int(g or 0) for g in m.groups()]
    if not any(parts):
        raise RuleError(path, "value must be a duration longer than zero")
    date_part = "".join(f"{n}{u}" for n, u in zip(parts[:4], _DURATION_UNITS[:4], strict=True) if n)
    time_part = "".join(f"{n}{u}" for n, u in zip(parts[4:], _DURATION_UNITS[4:], strict=True) if n)
    text = "P" + date_part + (f"T{time_part}" if time_part else "")
    base = datetime(2000, 1, 1, tzinfo=UTC)
    try:
        too_long = base + _duration(text) - base > MAX_DURATION
    except (OverflowError, ValueError):
        too_long = True
    if too_long:
        raise RuleError(path, "value must be a duration of at most 100 years")
    return text


def canonical_duration(value: str, path: str = "duration") -> str:
    """An ISO 8601 duration validated and canonical (``P1W`` stays, ``p90d`` is ``P90D``):
    the rule language's durations, shared with journeys' waits; :class:`RuleError` naming
    ``path`` otherwise."""
    return _canonical_duration(path, value)


def add_duration(dt: datetime, duration: str) -> datetime:
    """``dt`` plus a canonical duration (calendar months and years, as rules count them)."""
    return _plus(dt, duration)


@lru_cache(maxsize=1024)
def _duration(text: str) -> relativedelta:
    m = _DURATION.match(text)
    assert m is not None
    y, mo, w, d, h, mi, s = (int(g or 0) for g in m.groups())
    return relativedelta(years=y, months=mo, days=7 * w + d, hours=h, minutes=mi, seconds=s)


def _plus(dt: datetime, duration: str) -> datetime:
    try:
        return dt + _duration(duration)
    except (OverflowError, ValueError):
        return _FAR


# -- evaluation ------------------------------------------------------------------------


def _at(now: str) -> datetime:
    dt = clock.parse(now)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def fields_of(rule: dict[str, Any]) -> set[str]:
    """The fields a rule reads."""
    return {c["field"] for c in _conditions(rule)}


def _conditions(node: dict[str, Any]) -> list[dict[str, Any]]:
    if "field" in node:
        return [node]
    return [c for item in next(iter(node.values())) for c in _conditions(item)]


def evaluate(rule: dict[str, Any], facts: dict[str, Any], now: str) -> bool:
    """Whether a customer with these facts is in the rule (as ``parse`` returns it) at ``now``."""
    return _eval(rule, facts, _at(now))


def _eval(node: dict[str, Any], facts: dict[str, Any], now: datetime) -> bool:
    if "field" in node:
        return _holds(node, facts, now)
    if "all" in node:
        return all(_eval(item, facts, now) for item in node["all"])
    return any(_eval(item, facts, now) for item in node["any"])


def _lookup(facts: dict[str, Any], field: str) -> Any:
    family, _, rest = field.partition(".")
    if family in ("attributes", "consent") and field not in FIELDS:
        return (facts.get(family) or {}).get(rest)
    return facts.get(field)


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps booleans apart from numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _time_or_none(value: Any) -> datetime | None:
    try:
        return instant(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _compare(op: str, a: Any, b: Any) -> bool:
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
    if not numbers and not (isinstance(a, str) and isinstance(b, str)) and not isinstance(a, datetime):
        return False
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    if op == "<":
        return bool(a < b)
    return bool(a <= b)


def _holds(cond: dict[str, Any], facts: dict[str, Any], now: datetime) -> bool:
    field, op, want = cond["field"], cond["op"], cond["value"]
    typ = field_type(field)
    value = _lookup(facts, field)
    if typ == "list" and value is not None and not isinstance(value, list):
        value = None
    if op == "exists":
        present = bool(value) if typ == "list" else value is not None
        return present == want
    if value is None:
        return op == "!="
    if typ == "time":
        at = _time_or_none(value)
        if at is None:
            return op == "!="
        if op == "older_than":
            return _plus(at, want) <= now
        if op == "within":
            return at <= now < _plus(at, want)
        other = instant(want)
        if op in ("=", "!="):
            return (at == other) == (op == "=")
        return _compare(op, at, other)
    if op == "birthday_within":
        born = _birth(value)
        return born is not None and _days_to_birthday(born, now.date()) <= want
    if typ == "list":
        if op == "contains":
            return want in value
        if op == "!=":
            return want not in value
        return any(w in value for w in want)  # in
    if op == "=":
        return _same(value, want)
    if op == "!=":
        return not _same(value, want)
    if op == "in":
        return any(_same(value, w) for w in want)
    if op == "contains":
        if isinstance(value, list):
            return any(_same(v, want) for v in value)
        return isinstance(value, str) and isinstance(want, str) and want in value
    return _compare(op, value, want)


# -- birthdays -------------------------------------------------------------------------


def _birth(value: Any) -> tuple[int, int] | None:
    try:
        born = date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return (born.month, born.day) if born else None


def _birthday(born: tuple[int, int], year: int) -> date:
    month, day = born
    if (month, day) == (2, 29) and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        return date(year, 2, 28)
    return date(year, month, day)


def _days_to_birthday(born: tuple[int, int], today: date) -> int:
    this = _birthday(born, today.year)
    nxt = this if this >= today else _birthday(born, today.year + 1)
    return (nxt - today).days


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


# -- the next flip ---------------------------------------------------------------------


def _candidates(cond: dict[str, Any], facts: dict[str, Any], now: datetime) -> list[datetime]:
    """Instants after ``now`` at which an ``older_than`` or ``within`` condition's answer
    may change (a superset of its real changes)."""
    if cond["op"] not in ("older_than", "within"):
        return []
    at = _time_or_none(_lookup(facts, cond["field"]))
    if at is None:
        return []
    points = [_plus(at, cond["value"])] + ([at] if cond["op"] == "within" else [])
    return [t for t in points if now < t < _FAR]


def _birthday_candidates(cond: dict[str, Any], facts: dict[str, Any], now: datetime, until: datetime) -> list[datetime]:
    """The UTC midnights in (now, until] at which a ``birthday_within`` condition may
    change: N days before each birthday (it becomes true) and the day after (it may
    become false)."""
    born = _birth(_lookup(facts, cond["field"]))
    if cond["op"] != "birthday_within" or born is None:
        return []
    out = []
    for year in range(now.year - 1, min(until.year + 2, 9999)):
        b = _birthday(born, year)
        out += [_midnight(b - timedelta(days=cond["value"])), _midnight(b + timedelta(days=1))]
    return [t for t in out if now < t <= until]


def next_flip(rule: dict[str, Any], facts: dict[str, Any], now: str) -> str | None:
    """The earliest instant after ``now`` at which ``evaluate`` answers differently with
    these facts (time alone moving), or None if it never does."""
    t0 = _at(now)
    conditions = _conditions(rule)
    points = {t for cond in conditions for t in _candidates(cond, facts, t0)}
    # after the last one-off change, birthdays repeat: 9 more years show every pattern
    until = min(max(points | {t0}) + _HORIZON, _FAR)
    points |= {t for cond in conditions for t in _birthday_candidates(cond, facts, t0, until)}
    before = _eval(rule, facts, t0)
    for t in sorted(points):
        if _eval(rule, facts, t) != before:
            return iso(t)
    return None
