"""Validation errors in plain words ("unknown field 'q'", "must be a list") rather than
the validation library's, for the API's 422s and the per-record errors of batches."""

from __future__ import annotations

_TYPES = {
    "string": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "an object",
    "model": "an object",
    "datetime": "a date-time",
    "date": "a date (YYYY-MM-DD)",
    "decimal": "a number",
    "json": "JSON",
    "enum": "one of the listed values",
}
_PLAIN = {
    "missing": "is required",
    "string_too_short": "must be at least {min_length} characters",
    "string_too_long": "must be at most {max_length} characters",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "string_pattern_mismatch": "has the wrong format",
    "literal_error": "must be {expected}",
    "enum": "must be {expected}",
    "int_from_float": "must be a whole number",
    "finite_number": "must be a finite number",
    "timezone_aware": "needs a timezone (e.g. 2026-01-01T09:00:00Z)",
    "union_tag_invalid": "has an unknown kind",
}


def plain_message(error: dict) -> str:
    """One error in the words an API user expects."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"unknown field '{error['loc'][-1] if error['loc'] else ''}'"
    if kind in ("value_error", "assertion_error"):
        return error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in _PLAIN:
        try:
            return _PLAIN[kind].format(**ctx)
        except (KeyError, IndexError):
            return _PLAIN[kind]
    base = kind.split("_")[0]
    if (kind.endswith(("_type", "_parsing"))) and base in _TYPES:
        return f"must be {_TYPES[base]}"
    return error["msg"][:1].lower() + error["msg"][1:]
