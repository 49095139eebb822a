"""An uploaded record, validated on its own: a bad record is rejected (and parked) with
its reason and errors while the rest of the batch applies. Only ``seq`` is checked for
the whole request (api/schemas.py ``AgentUpload``).

Errors name where (``field``), a ``code`` and a ``detail``; never the value sent, so a
parked record holds no personal data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, ValidationError

from crm.agents.hlc import PATTERN as HLC_PATTERN
from crm.agents.rules import PLAIN, Change
from crm.customers.schemas import ATTRIBUTE_KEY, CustomerPatch, ExternalId

MAX_FIELDS = 60
CUSTOMER_ID_PATTERN = r"^cus_[0-9A-HJKMNP-TV-Z]{26}$"
Hlc = Annotated[str, StringConstraints(pattern=HLC_PATTERN)]
PATHS = (*PLAIN, "name.given", "name.family")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldIn(_Strict):
    value: JsonValue
    base: JsonValue = None
    rule: Literal["cloud", "local", "latest"]
    hlc: Hlc


class CustomerIn(_Strict):
    seq: int = Field(ge=1)
    kind: Literal["customer"]
    external_id: ExternalId
    hlc: Hlc
    customer_id: Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)] | None = None
    fields: dict[str, FieldIn] = Field(max_length=MAX_FIELDS)


class OrderIn(_Strict):
    seq: int = Field(ge=1)
    kind: Literal["order"]
    external_id: ExternalId
    hlc: Hlc
    order: dict[str, JsonValue]


@dataclass
class CustomerRecord:
    index: int
    seq: int
    external_id: str
    hlc: str
    customer_id: str | None
    changes: list[Change]

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.changes]


@dataclass
class OrderRecord:
    index: int
    seq: int
    external_id: str
    hlc: str
    order: dict[str, Any]


@dataclass
class Refused:
    index: int
    seq: int
    kind: str
    external_id: str | None
    reason: str
    errors: list[dict[str, Any]] = field(default_factory=list)


Parsed = CustomerRecord | OrderRecord | Refused


def _errors(exc: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    """pydantic's errors without the input values: where, code, what is wrong."""
    out = []
    for e in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in e.get("loc", ()))
        out.append(
            {"field": f"{prefix}{loc}" if loc else prefix.rstrip(".") or None, "code": e["type"], "detail": e["msg"]}
        )
    return out


def _plain_str(value: Any, limit: int = 128) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def path_ok(path: str) -> bool:
    if path in PATHS:
        return True
    head, _, key = path.partition(".")
    return head == "attributes" and bool(ATTRIBUTE_KEY.match(key))


def _nested(paths: dict[str, Any]) -> dict[str, Any]:
    """``{"name.given": v, "attributes.k": w, "email": x}`` as a CustomerPatch body."""
    out: dict[str, Any] = {}
    for path, value in paths.items():
        head, _, rest = path.partition(".")
        if rest:
            out.setdefault(head, {})[rest] = value
        else:
            out[head] = value
    return out


def normalized(paths: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The values as the cloud stores them (emails and phones normalized, dates as ISO
    strings, tags deduplicated), or the errors naming ``fields.<path>.value``."""
    try:
        model = CustomerPatch.model_validate(_nested(paths))
    except ValidationError as exc:
        errors = []
        for e in _errors(exc):
            where = str(e["field"] or "")
            head, _, rest = where.partition(".")
            path = f"{head}.{rest.split('.')[0]}" if head in ("name", "attributes") and rest else head
            errors.append({**e, "field": f"fields.{path}.value"})
        return {}, errors
    dumped = model.model_dump(mode="json", exclude_unset=True)
    out = {}
    for path in paths:
        head, _, rest = path.partition(".")
        value = dumped.get(head)
        out[path] = value.get(rest) if rest and isinstance(value, dict) else value
    return out, []


def parse(index: int, raw: dict[str, Any]) -> Parsed:
    """One record of ``records`` (its ``seq`` already checked)."""
    seq = int(raw["seq"])
    given = raw.get("kind")
    kind = given if isinstance(given, str) else "unknown"
    xid = _plain_str(raw.get("external_id"))
    if kind == "order":
        try:
            o = OrderIn.model_validate(raw)
        except ValidationError as exc:
            return Refused(index, seq, kind, xid, "invalid order record", _errors(exc))
        return OrderRecord(index, seq, o.external_id, o.hlc, dict(o.order))
    if kind != "customer":
        return Refused(
            index,
            seq,
            kind[:20],
            xid,
            "kind must be customer or order",
            [{"field": "kind", "code": "literal_error", "detail": "must be customer or order"}],
        )
    try:
        c = CustomerIn.model_validate(raw)
    except ValidationError as exc:
        return Refused(index, seq, kind, xid, "invalid customer record", _errors(exc))
    bad = [p for p in c.fields if not path_ok(p)]
    if bad:
        return Refused(
            index,
            seq,
            kind,
            c.external_id,
            "unknown field path",
            [
                {
                    "field": f"fields.{re.sub(r'[^A-Za-z0-9_.]', '?', p)[:80]}",
                    "code": "unknown_field",
                    "detail": f"a field is one of {', '.join(PATHS)} or attributes.<key>",
                }
                for p in bad
            ],
        )
    values, errors = normalized({p: f.value for p, f in c.fields.items()})
    if errors:
        return Refused(index, seq, kind, c.external_id, "invalid field value", errors)
    bases, _ = normalized({p: f.base for p, f in c.fields.items() if "base" in f.model_fields_set})
    changes = [
        Change(p, values[p], f.rule, f.hlc, bases.get(p, f.base), "base" in f.model_fields_set)
        for p, f in c.fields.items()
    ]
    return CustomerRecord(index, seq, c.external_id, c.hlc, c.customer_id, changes)
