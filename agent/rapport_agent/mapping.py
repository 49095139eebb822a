"""Pure mapping between local columns and Rapport fields, and the change planning that
compares them with the last-synced values ("bases").

Every value is compared in one normal form, the one the cloud stores: both a local column
value and a cloud value go through :func:`normalize` (the connector SDK's field helpers),
so ``ADA@Example.com`` locally and ``ada@example.com`` in Rapport are the same value and a
merely touched row uploads nothing. A value the helpers cannot read (a malformed email)
keeps its raw text: the server rejects that record with a reason and it is parked, rather
than a typo silently clearing the cloud's value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from common import clock
from connectors.sdk import fields

MISSING: Any = object()  # "never synced": the record carries no base


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, (datetime, date)):
        value = value.isoformat()
    return fields.text(value, limit)


def _tags(value: Any) -> list[str] | None:
    if value is None:
        return None
    items: list[Any]
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raw = str(value).strip()
        if raw.startswith("["):
            try:
                loaded = json.loads(raw)
            except ValueError:
                loaded = None
            items = loaded if isinstance(loaded, list) else raw.split(",")
        else:
            items = raw.split(",")
    seen: dict[str, str] = {}  # Rapport's rule: case-insensitive, the first spelling kept
    for item in items:
        tag = fields.text(item, 64)
        if tag:
            seen.setdefault(tag.casefold(), tag)
    return list(seen.values()) or None


def _birth_date(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raw = fields.text(value, 32)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw[:10]).isoformat()
    except ValueError:
        return raw


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, datetime):
        return clock.iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return value
    raw = str(value).strip()
    return raw or None


def normalize(path: str, value: Any) -> Any:
    """A value of Rapport field ``path`` (a local column's or the cloud's) in the form the
    cloud stores it; None for empty."""
    if path == "email":
        raw = fields.text(value, 254)
        return None if raw is None else (fields.email(raw) or raw)
    if path == "phone":
        raw = fields.text(value, 32)
        return None if raw is None else (fields.phone(raw) or raw)
    if path in ("name.given", "name.family"):
        return _text(value, 200)
    if path == "gender":
        raw = _text(value, 32)
        return raw.lower() if raw else None
    if path == "locale":
        return _text(value, 35)
    if path == "birth_date":
        return _birth_date(value)
    if path == "tags":
        return _tags(value)
    return _scalar(value)  # attributes.<key>


def cloud_value(profile: dict[str, Any], path: str) -> Any:
    """Field ``path`` of a fetched customer's profile, normalized."""
    node: Any = profile
    for part in path.split(".", 1) if path.startswith("attributes.") else path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return normalize(path, node)


def local_value(path: str, value: Any, current: Any) -> Any:
    """A cloud value as it is written to a local column whose current value is ``current``:
    tags as the column keeps them (a list for a JSON/array column, else comma-separated)."""
    if path == "tags" and value is not None and not isinstance(current, list):
        return ", ".join(value)
    if path == "tags" and value is None:
        return [] if isinstance(current, list) else None
    return value


@dataclass(frozen=True)
class Ref:
    """What the outbox knows of one field of one row: ``synced`` (the value the cloud
    confirmed last, MISSING if never) and ``ref`` (the last value queued, parked or synced:
    what a scan compares the local value with); ``pending`` is the seq of a queued record
    that carries the field."""

    synced: Any = MISSING
    ref: Any = MISSING
    pending: int | None = None

    def base(self) -> Any:
        """The base a new record sends: what the cloud should hold once the records before
        it are applied (the last queued value), else the last synced one."""
        return self.ref if self.pending is not None else self.synced


def changed(local: dict[str, Any], refs: dict[str, Ref]) -> dict[str, Any]:
    """The fields whose normalized local value differs from what the outbox last handled
    (a never-synced field counts when it has a value)."""
    out = {}
    for path, value in local.items():
        ref = refs.get(path, Ref())
        if ref.ref is MISSING:
            if value is not None:
                out[path] = value
        elif value != ref.ref:
            out[path] = value
    return out


def customer_fields(
    changes: dict[str, Any], refs: dict[str, Ref], rules: dict[str, str], hlc: str
) -> dict[str, dict[str, Any]]:
    """The ``fields`` of an upload record."""
    out: dict[str, dict[str, Any]] = {}
    for path, value in changes.items():
        entry: dict[str, Any] = {"value": value, "rule": rules[path], "hlc": hlc}
        base = refs.get(path, Ref()).base()
        if base is not MISSING:
            entry["base"] = base
        out[path] = entry
    return out


# --- orders ------------------------------------------------------------------------------


def utc(value: Any) -> str | None:
    """A local time column (datetime, ISO text, unix seconds) as Rapport's UTC string."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return clock.iso(value)
    if isinstance(value, date):
        return clock.iso(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        seconds = float(value) / (1000 if value > 10**11 else 1)
        return clock.iso(datetime.fromtimestamp(seconds, UTC))
    return fields.utc(str(value).strip().replace(" ", "T", 1))


def _int(value: Any, name: str) -> int:
    if value in (None, ""):
        return 0
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if number != number.to_integral_value():
        raise ValueError(f"{name} must be an integer amount in minor units (cents): {value!r}")
    return int(number)


def order(
    row: dict[str, Any],
    columns: dict[str, str],
    external_id: str,
    *,
    currency: str | None,
    channel: str,
    customer_prefix: str,
    updated_at: Any,
) -> dict[str, Any]:
    """The SDK's ``OrderRecord`` as JSON for a local order row. Raises ValueError naming the
    bad column (the record is then parked locally).

    Lines: a ``lines`` column holding a JSON list of ``{sku, name, quantity, unit_price}``
    (amounts in minor units); without one the order is a single line worth
    ``total + discount - shipping - tax``."""

    def col(name: str) -> Any:
        return row.get(columns[name]) if name in columns else None

    total = _int(col("total"), "total")
    discount, shipping, tax = (_int(col(n), n) for n in ("discount", "shipping", "tax"))
    placed_at = utc(col("placed_at"))
    if placed_at is None:
        raise ValueError("placed_at is empty")
    number = fields.order_number(col("number"))
    raw_lines = col("lines")
    if "lines" in columns:
        if isinstance(raw_lines, str):
            try:
                raw_lines = json.loads(raw_lines)
            except ValueError:
                raise ValueError("lines is not JSON") from None
        if not isinstance(raw_lines, list) or not raw_lines:
            raise ValueError("lines must be a non-empty JSON list")
        lines = []
        for i, line in enumerate(raw_lines):
            if not isinstance(line, dict):
                raise ValueError(f"lines[{i}] is not an object")  # noqa: TRY004 - the caller parks ValueErrors
            out = {
                "sku": fields.text(line.get("sku"), 64) or "ITEM",
                "name": fields.text(line.get("name"), 200) or fields.text(line.get("sku"), 200) or "Item",
                "quantity": _int(line.get("quantity", 1), f"lines[{i}].quantity"),
                "unit_price": _int(line.get("unit_price"), f"lines[{i}].unit_price"),
            }
            if line.get("category"):
                out["category"] = fields.text(line["category"], 64)
            lines.append(out)
    else:
        lines = [
            {
                "sku": "ORDER",
                "name": f"Order {number or external_id}",
                "quantity": 1,
                "unit_price": total + discount - shipping - tax,
            }
        ]
    record: dict[str, Any] = {
        "external_id": external_id,
        "updated_at": utc(updated_at) or placed_at,
        "channel": fields.text(col("channel"), 32) or channel,
        "currency": (fields.text(col("currency"), 3) or currency or "").upper(),
        "placed_at": placed_at,
        "lines": lines,
        "total": total,
        "discount": discount,
        "shipping": shipping,
        "tax": tax,
    }
    buyer = col("customer")
    if buyer not in (None, ""):
        record["customer"] = {"external_id": f"{customer_prefix}{buyer}"}
    elif (email := normalize("email", col("email"))) is not None:
        record["email"] = email
    if number:
        record["number"] = number
    for name in ("paid_at", "fulfilled_at", "cancelled_at"):
        if (when := utc(col(name))) is not None:
            record[name] = when
    if (reason := fields.text(col("cancel_reason"), 200)) is not None:
        record["cancel_reason"] = reason
    return record


def digest(payload: Any) -> str:
    """A stable hash of a JSON value: an order uploads again only when it changed."""
    import hashlib

    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
