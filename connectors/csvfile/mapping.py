"""CSV columns → a customer: the mapping's targets, and one row → a record or a rejection.

A target is a path into a customer (docs/connectors.md, "CSV import"):

- ``email``, ``phone``, ``name.given``, ``name.family``, ``birth_date``, ``locale``,
  ``gender``, ``tags`` (split on the config's ``tag_separator``), ``external_id`` (the
  row's id in the system the file comes from, recorded under the config's ``source``);
- ``attributes.<key>`` (a string attribute);
- ``address.label|line1|line2|city|region|postal_code|country`` (one address; line1 and
  country are required when any address column is mapped);
- ``consent.email|sms|phone|postal``: granted / denied / pending (yes/no/true/false/1/0
  too), given with source ``import``.

Every row is validated with the API's own model (``CustomerPatch``), so a bad row is
rejected with the column and the problem, e.g. ``row 17: column E-mail: not a valid
email address: …``, and never half-written. An empty cell sets nothing (it does not erase
what the customer has).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from connectors.sdk.base import CustomerRecord, Rejected
from crm.customers.schemas import ATTRIBUTE_KEY, CustomerPatch, ExternalId

SIMPLE = ("email", "phone", "name.given", "name.family", "birth_date", "locale", "gender", "tags",
          "external_id")
ADDRESS_FIELDS = ("label", "line1", "line2", "city", "region", "postal_code", "country")
CHANNELS = ("email", "sms", "phone", "postal")
IDENTIFYING = ("email", "phone", "external_id")
CONSENT_SOURCE = "import"
CONSENT_WORDS = {"granted": "granted", "denied": "denied", "pending": "pending",
                 "yes": "granted", "y": "granted", "true": "granted", "1": "granted",
                 "no": "denied", "n": "denied", "false": "denied", "0": "denied"}
_EXTERNAL_ID = TypeAdapter(ExternalId)

# clearer words than a regular expression for the pattern-checked fields
_PATTERN_MESSAGES = {"address.country": "must be a two-letter ISO 3166-1 country code, e.g. FR",
                     "locale": "must be a language tag like en or fr-CA",
                     "tags": "a tag may not contain # or control characters"}


def describe_targets() -> str:
    return (", ".join(SIMPLE) + ", attributes.<key>, "
            + ", ".join(f"address.{f}" for f in ADDRESS_FIELDS) + ", "
            + ", ".join(f"consent.{c}" for c in CHANNELS))


def check_target(target: str) -> str:
    """A valid target, or ValueError saying what the valid ones are."""
    target = target.strip()
    if target in SIMPLE:
        return target
    head, _, rest = target.partition(".")
    if head == "attributes" and rest:
        if not ATTRIBUTE_KEY.match(rest):
            raise ValueError(f"attribute name {rest!r} must match {ATTRIBUTE_KEY.pattern}")
        return target
    if head == "address" and rest in ADDRESS_FIELDS:
        return target
    if head == "consent" and rest in CHANNELS:
        return target
    raise ValueError(f"{target!r} is not a customer field; one of: {describe_targets()}")


def check_mapping(mapping: dict[str, str]) -> dict[str, str]:
    """Across columns: one column per target, an identifying target, a whole address."""
    by_target: dict[str, list[str]] = {}
    for column, target in mapping.items():
        by_target.setdefault(target, []).append(column)
    twice = {t: cs for t, cs in by_target.items() if len(cs) > 1}
    if twice:
        t, cs = next(iter(twice.items()))
        raise ValueError(f"columns {', '.join(repr(c) for c in cs)} all map to {t}: map one column per field")
    if not any(t in by_target for t in IDENTIFYING):
        raise ValueError("map at least one column to email, phone or external_id: a row must "
                         "identify its customer")
    if any(t.startswith("address.") for t in by_target):
        missing = [f"address.{f}" for f in ("line1", "country") if f"address.{f}" not in by_target]
        if missing:
            raise ValueError(f"an address needs {' and '.join(missing)} mapped too")
    return mapping


@dataclass
class Plan:
    """The mapping bound to the file's header: which cell feeds which target."""

    header: list[str]
    columns: dict[str, int]         # target -> cell index
    names: dict[str, str]           # target -> column name (as in the mapping)
    tag_separator: str = ";"
    seen: dict[int, int] = field(default_factory=dict)  # digest of an email / external id -> first row

    @classmethod
    def bind(cls, header: list[str], mapping: dict[str, str], tag_separator: str) -> Plan:
        """Raises ValueError naming mapped columns the header lacks (or has twice)."""
        stripped = [h.strip() for h in header]
        positions: dict[str, list[int]] = {}
        for i, h in enumerate(stripped):
            positions.setdefault(h, []).append(i)
        missing = [c for c in mapping if c.strip() not in positions]
        if missing:
            raise ValueError(
                f"the file has no column {', '.join(repr(c) for c in missing)} (named in the "
                f"connection's mapping); its header is: {', '.join(repr(h) for h in stripped)}")
        twice = [c for c in mapping if len(positions[c.strip()]) > 1]
        if twice:
            raise ValueError(f"column {twice[0]!r} appears {len(positions[twice[0].strip()])} times in "
                             "the header: rename one")
        columns = {t: positions[c.strip()][0] for c, t in mapping.items()}
        return cls(stripped, columns, {t: c for c, t in mapping.items()}, tag_separator)

    def record(self, row: int, cells: list[str], updated_at: str) -> CustomerRecord | Rejected:
        """One data row (``row``: its number as a spreadsheet shows it, the header is 1)."""
        if len(cells) > len(self.header) and any(c.strip() for c in cells[len(self.header):]):
            return Rejected(f"row {row}", f"row {row}: {len(cells)} values but the header has "
                                          f"{len(self.header)} columns (a delimiter inside an unquoted value?)")
        values = {t: cells[i].strip() for t, i in self.columns.items() if i < len(cells) and cells[i].strip()}
        if not any(t in values for t in IDENTIFYING):
            named = [self.names[t] for t in IDENTIFYING if t in self.names]
            return Rejected(f"row {row}", f"row {row}: no email, phone or external id: column"
                                          f"{'s' if len(named) > 1 else ''} {', '.join(named)} "
                                          f"{'are' if len(named) > 1 else 'is'} empty")
        external_id, profile = self._profile(values)
        problems: list[str] = []
        if external_id is not None:
            try:
                external_id = _EXTERNAL_ID.validate_python(external_id)
            except ValidationError as exc:
                problems += [f"column {self.names['external_id']}: {_message(e)}" for e in exc.errors()]
        try:
            patch = CustomerPatch.model_validate(profile)
        except ValidationError as exc:
            patch = None
            problems += [self._explain(e) for e in exc.errors()]
        if problems:
            return Rejected(f"row {row}", f"row {row}: " + "; ".join(dict.fromkeys(problems)))
        keys = []
        if patch.email:
            keys.append(("email", "e:" + patch.email))
        if external_id is not None:
            keys.append(("external_id", "x:" + external_id))
        for target, key in keys:
            first = self.seen.get(_digest(key))
            if first is not None and first != row:
                what = "email" if target == "email" else "external id"
                return Rejected(f"row {row}", f"row {row}: column {self.names[target]}: the same {what} "
                                              f"as row {first}; only the first row of a customer is imported")
        for _, key in keys:
            self.seen.setdefault(_digest(key), row)
        return CustomerRecord(external_id, updated_at, profile)

    def _profile(self, values: dict[str, str]) -> tuple[str | None, dict[str, Any]]:
        profile: dict[str, Any] = {}
        address: dict[str, str] = {}
        external_id = None
        for target, value in values.items():
            head, _, rest = target.partition(".")
            if target == "external_id":
                external_id = value
            elif target == "tags":
                tags = [t.strip() for t in value.split(self.tag_separator) if t.strip()]
                if tags:
                    profile["tags"] = tags
            elif target == "gender":
                profile["gender"] = value.lower().replace("-", "_").replace(" ", "_")
            elif head == "name":
                profile.setdefault("name", {})[rest] = value
            elif head == "attributes":
                profile.setdefault("attributes", {})[rest] = value
            elif head == "address":
                address[rest] = value.upper() if rest == "country" else value
            elif head == "consent":
                status = CONSENT_WORDS.get(value.lower(), value)
                profile.setdefault("consent", {})[rest] = {"status": status, "source": CONSENT_SOURCE}
            else:
                profile[target] = value
        if address:
            profile["addresses"] = [address]
        return external_id, profile

    def _explain(self, error: dict[str, Any]) -> str:
        loc = [str(p) for p in error["loc"]]
        target = _target_of(loc)
        column = self.names.get(target) if target else None
        if column is None and target == "attributes":
            column = ", ".join(c for t, c in self.names.items() if t.startswith("attributes."))
        message = _message(error)
        if error["type"] == "string_pattern_mismatch" and target in _PATTERN_MESSAGES:
            message = _PATTERN_MESSAGES[target]
        if error["type"] == "missing" and target and target.startswith("address."):
            message = f"an address needs {target} (the other address columns have values)"
            column = column or target
        return f"column {column}: {message}" if column else f"{'.'.join(loc)}: {message}"


def _target_of(loc: list[str]) -> str | None:
    """The mapping target a pydantic error location points at."""
    if not loc:
        return None
    head = loc[0]
    if head in ("email", "phone", "birth_date", "locale", "gender", "tags"):
        return head
    if head == "name" and len(loc) > 1:
        return f"name.{loc[1]}"
    if head == "addresses" and len(loc) > 2:
        return f"address.{loc[2]}"
    if head == "consent" and len(loc) > 1:
        return f"consent.{loc[1]}"
    if head == "attributes":
        return f"attributes.{loc[1]}" if len(loc) > 1 else "attributes"
    return None


def _message(error: dict[str, Any]) -> str:
    message = str(error.get("msg") or "invalid")
    return message.removeprefix("Value error, ")


def _digest(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
