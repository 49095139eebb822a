"""One declaration per item kind: key pattern, owner, personal data, erasure, merge, events.

Every item class (a subclass of ``crm.storage.Item``) carries ``KIND = Kind(...)``;
items that something else writes in the table (the Powertools idempotency records)
are declared with ``register``. Merge, erasure and export read these declarations, so a
new kind that forgets one fails tests/unit/test_schema.py instead of silently keeping
personal data after an erasure or losing data in a merge. ``connectors`` declares its
own kinds the same way (crm never imports connectors).

The key table in docs/architecture.md is generated from the declarations
(``markdown_table``) and checked by the same test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Owner = Literal["tenant", "customer", "account", "connection", "global"]
# erasure: delete the item; blank the ``pii`` attributes (or the personal keys inside a
# JSON attribute, see ``pii``); keep it (it holds no personal data)
Erasure = Literal["delete", "blank", "keep"]
# merge: move into the survivor's partition; recompute from what moved; drop (the
# other's copy is deleted, the survivor has its own); keep (not the customer's)
Merge = Literal["move", "recompute", "drop", "keep"]


@dataclass(frozen=True)
class Kind:
    """What a kind of item is, declared once. ``pii`` names the attributes (or
    ``attribute.key`` inside a JSON attribute) that may hold personal data."""

    label: str
    pk: str
    sk: str
    owner: Owner
    pii: tuple[str, ...] = ()
    erasure: Erasure = "keep"
    merge: Merge = "keep"
    events: bool = False
    gsi: str = ""
    export: bool = False  # part of GET /v1/customers/{id}/export
    merge_keeps_survivors: bool = False  # moved: where both partitions hold the key, the survivor's wins

    def __post_init__(self) -> None:
        if self.pii and self.erasure == "keep":
            raise ValueError(f"{self.label}: personal data must be deleted or blanked on erasure")
        if self.owner != "customer" and self.merge not in ("keep", "drop"):
            raise ValueError(f"{self.label}: only a customer's items move or are recomputed")


_OTHERS: dict[str, Kind] = {}


def register(name: str, kind: Kind) -> Kind:
    """Declare a kind no PynamoDB class stands for (records other code writes)."""
    _OTHERS[name] = kind
    return kind


def item_classes() -> list[type]:
    """Every imported subclass of ``crm.storage.Item`` (the models of loaded modules)."""
    from crm.storage import Item

    out, todo = [], list(Item.__subclasses__())
    while todo:
        cls = todo.pop(0)
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def declared(cls: type) -> Kind | None:
    """A class's own declaration (an inherited one does not count)."""
    kind = cls.__dict__.get("KIND")
    return kind if isinstance(kind, Kind) else None


def name_of(cls: type) -> str:
    """The class's discriminator value (what the ``kind`` attribute stores)."""
    from crm.storage import Item

    return Item._attributes["kind"].get_discriminator(cls)  # type: ignore[attr-defined]


def undeclared() -> list[type]:
    """Item classes without their own declaration (tests/unit/test_schema.py)."""
    return [cls for cls in item_classes() if declared(cls) is None]


def kinds() -> dict[str, Kind]:
    """Discriminator (or registered name) -> declaration, of every loaded kind."""
    out = {}
    for cls in item_classes():
        kind = declared(cls)
        if kind is not None:
            out[name_of(cls)] = kind
    return {**out, **_OTHERS}


def classes_of(owner: Owner) -> list[type]:
    return [c for c in item_classes() if (k := declared(c)) and k.owner == owner]


CUSTOMER_PARTITION = "P C#<id>"


def customer_sort_prefixes() -> dict[str, str]:
    """Kinds in the customer's partition -> the fixed part of their sort key."""
    return {
        name_of(cls): kind.sk.split("<", 1)[0]
        for cls in item_classes()
        if (kind := declared(cls)) and kind.pk == CUSTOMER_PARTITION
    }


def markdown_table() -> str:
    """The key table of docs/architecture.md (``P`` is ``T#<tenant>#``)."""
    rows = [
        "| item | pk | sk | owner | personal data | erasure | merge | events | GSIs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, k in sorted(kinds().items(), key=lambda kv: (kv[1].owner, kv[1].pk, kv[1].sk)):
        pii = ", ".join(f"`{p}`" for p in k.pii) or "—"
        rows.append(
            f"| {k.label} (`{name}`) | `{k.pk}` | `{k.sk}` | {k.owner} | {pii} | "
            f"{k.erasure} | {k.merge} | {'yes' if k.events else '—'} | {k.gsi or '—'} |"
        )
    return "\n".join(rows)


IDEMPOTENCY = register(
    "idempotency",
    Kind(
        "idempotency record (Powertools; API Idempotency-Key responses and subscriber records)",
        "P IDEM",
        "<operation or subscriber>#<hash of the key>",
        "tenant",
        pii=("data",),
        erasure="delete",
        gsi="— (expires by TTL)",
    ),
)


def write_docs(path: str = "docs/architecture.md") -> bool:
    """Regenerate the table between the schema markers; True when the file changed
    (the modules that declare kinds must be imported first)."""
    from pathlib import Path

    file = Path(path)
    text = file.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}"
    file.write_text(new)
    return new != text


BEGIN = "<!-- schema:begin (crm/schema.py markdown_table) -->"
END = "<!-- schema:end -->"

if __name__ == "__main__":  # python -m crm.schema: refresh docs/architecture.md
    import importlib

    schema = importlib.import_module("crm.schema")  # the module the models import (this runs as __main__)

    for module in ("crm.storage", "connectors.store", "connectors.uploads"):  # every declaring module
        importlib.import_module(module)

    print("updated" if schema.write_docs() else "up to date")
