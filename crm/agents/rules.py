"""The per-field conflict rules of an agent's upload: pure planning, no I/O.

For each field of an uploaded customer record, against the customer's current value
``cur``: ``value == cur`` changes nothing; ``base == cur`` (or no base and no ``cur``)
applies it; otherwise both sides changed it, a conflict the field's rule resolves:
``cloud`` keeps ``cur``, ``local`` applies, ``latest`` applies iff the field's HLC is after
the cloud's time (the customer's ``updated_at`` as HLC); a tie keeps the cloud's.

Paths: ``email``, ``phone``, ``name.given``, ``name.family``, ``birth_date``, ``gender``,
``locale``, ``tags``, ``attributes.<key>``; a null value clears.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

Rule = Literal["cloud", "local", "latest"]
PLAIN = ("email", "phone", "birth_date", "gender", "locale", "tags")
NAME_PARTS = ("given", "family")


@dataclass(frozen=True)
class Change:
    """One field of a record: the local value, the base the agent last synced (``has_base``
    False: it never synced one), the rule and when the agent saw the local change."""

    path: str
    value: Any
    rule: Rule
    hlc: str
    base: Any = None
    has_base: bool = False


@dataclass(frozen=True)
class Decision:
    path: str
    action: Literal["same", "apply", "keep"]
    winner: Literal["local", "cloud"] | None = None  # set when it was a conflict
    cur: Any = None


@dataclass
class Plan:
    """A record's changes against one customer: the fields to write, the conflicts."""

    applied: dict[str, Any] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)

    @property
    def conflicts(self) -> list[Decision]:
        return [d for d in self.decisions if d.winner is not None]


def empty(value: Any) -> bool:
    return value is None or value == [] or value == {} or value == ""


def same(a: Any, b: Any) -> bool:
    """Values equal as the cloud stores them (an absent value is null; [] and "" too)."""
    if empty(a) or empty(b):
        return empty(a) and empty(b)
    return bool(a == b)


def get(data: dict[str, Any], path: str) -> Any:
    """The value at a record path in a profile's data (None when absent)."""
    head, _, rest = path.partition(".")
    value = (data or {}).get(head)
    if rest:
        return value.get(rest) if isinstance(value, dict) else None
    return value


def decide(change: Change, cur: Any, cloud_hlc: str) -> Decision:
    """One field's fate (the module docstring's rules)."""
    if same(change.value, cur):
        return Decision(change.path, "same", cur=cur)
    if (change.has_base and same(change.base, cur)) or (not change.has_base and empty(cur)):
        return Decision(change.path, "apply", cur=cur)
    if change.rule == "local":
        winner: Literal["local", "cloud"] = "local"
    elif change.rule == "latest":
        winner = "local" if change.hlc > cloud_hlc else "cloud"
    else:
        winner = "cloud"
    return Decision(change.path, "apply" if winner == "local" else "keep", winner, cur=cur)


def plan(changes: list[Change], data: dict[str, Any], cloud_hlc: str) -> Plan:
    """Every field of a record against the customer's data."""
    out = Plan()
    for change in changes:
        d = decide(change, get(data, change.path), cloud_hlc)
        out.decisions.append(d)
        if d.action == "apply":
            out.applied[change.path] = change.value
    return out


def patch(applied: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The CustomerPatch body that writes ``applied`` onto ``data``: a name part keeps the
    other part; attributes merge key by key (null removes); the rest replace."""
    out: dict[str, Any] = {}
    for path, value in applied.items():
        head, _, rest = path.partition(".")
        if head == "name":
            if "name" not in out:
                have = data.get("name")
                have = have if isinstance(have, dict) else {}
                out["name"] = {k: have[k] for k in NAME_PARTS if have.get(k) is not None}
            out["name"][rest] = value
        elif head == "attributes":
            out.setdefault("attributes", {})[rest] = value
        else:
            out[head] = value
    if "name" in out:
        parts = {k: v for k, v in out["name"].items() if v is not None}
        out["name"] = parts or None
    return out


def values(paths: list[str], data: dict[str, Any]) -> dict[str, Any]:
    """``{path: the value now in the cloud}`` for a record's fields (null when absent)."""
    return {p: (None if empty(v := get(data, p)) else v) for p in paths}


def conflict_id(agent_id: str, seq: int, path: str) -> str:
    """Deterministic: a retried upload records the same conflict once."""
    raw = "\x1f".join([agent_id, str(seq), path])
    return "acf_" + hashlib.sha256(raw.encode()).hexdigest()[:24]
