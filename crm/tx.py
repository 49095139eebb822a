"""One TransactWriteItems whose parts have names, and one reading of why it was cancelled.

DynamoDB answers a cancelled transaction with one reason per part, in the order the
parts were sent; PynamoDB sends condition checks, then deletes, then puts, then updates,
whatever order they were added in. ``Tx`` keeps each part's role beside it in that same
order, so a caller maps "the guard's condition failed" to its domain error by name
instead of counting positions::

    tx = Tx()
    tx.check(CustomerItem, pk, PROFILE, CustomerItem.status == "active", role="customer")
    tx.save(guard, GuardItem.pk.does_not_exist(), role="guard")
    tx.run({"customer": Invalid("customer was erased", field="customer")})

``run`` raises the error of the first part (in the order sent) whose condition failed and
that has an entry; a cancellation nothing maps raises :class:`Cancelled`, which tells a
lost race (``TransactionConflict`` only: retry) from a failed condition. Any other error
(validation, throttling after the SDK's retries) propagates unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

FAILED = "ConditionalCheckFailed"
RACE = "TransactionConflict"
_SENT = {"check": 0, "delete": 1, "save": 2, "update": 3}

Explain = Exception | Callable[["Cancelled"], "Exception | None"]  # usually a DomainError


@dataclass
class Part:
    role: str
    kind: str  # check | delete | save | update
    item: Any  # the model instance (for a check: its class)
    code: str | None = None  # DynamoDB's cancellation reason, None when this part was fine


class Cancelled(Exception):
    """A cancelled transaction; ``parts`` in the order sent, each with its reason."""

    def __init__(self, parts: list[Part]) -> None:
        codes = sorted({p.code for p in parts if p.code})
        super().__init__(f"transaction cancelled ({', '.join(codes) or 'no reason given'})")
        self.parts = parts

    @property
    def codes(self) -> list[str | None]:
        return [p.code for p in self.parts]

    @property
    def failed(self) -> list[Part]:
        """The parts whose condition failed, in the order sent."""
        return [p for p in self.parts if p.code == FAILED]

    def failed_role(self, *roles: str) -> bool:
        """Whether a part with one of ``roles`` failed its condition."""
        return any(p.role in roles for p in self.failed)

    @property
    def first_failed(self) -> str | None:
        return self.failed[0].role if self.failed else None

    @property
    def lost_race(self) -> bool:
        """Cancelled only because another transaction held an item: nothing was wrong with
        this write, so re-reading and retrying is the answer."""
        return RACE in self.codes and FAILED not in self.codes


class Tx:
    """Collects the parts of one TransactWriteItems (at most 100), each with a role."""

    def __init__(self) -> None:
        self._parts: list[tuple[Part, Callable[[Any], None]]] = []

    def __len__(self) -> int:
        return len(self._parts)

    def extend(self, other: Tx) -> None:
        """Add ``other``'s parts (one record's share of a packed transaction, crm/packing.py)."""
        self._parts.extend(other._parts)

    def _add(self, role: str, kind: str, item: Any, op: Callable[[Any], None]) -> None:
        self._parts.append((Part(role, kind, item), op))

    def check(self, model: Any, hash_key: Any, range_key: Any, condition: Any, *, role: str = "check") -> None:
        self._add(role, "check", model, lambda tx: tx.condition_check(model, hash_key, range_key, condition=condition))

    def save(self, item: Any, condition: Any = None, *, role: str = "save") -> None:
        self._add(role, "save", item, lambda tx: tx.save(item, condition=condition))

    def delete(
        self, item: Any, condition: Any = None, *, role: str = "delete", add_version_condition: bool = True
    ) -> None:
        self._add(
            role,
            "delete",
            item,
            lambda tx: tx.delete(item, condition=condition, add_version_condition=add_version_condition),
        )

    def update(
        self,
        item: Any,
        actions: list,
        condition: Any = None,
        *,
        role: str = "update",
        add_version_condition: bool = True,
    ) -> None:
        self._add(
            role,
            "update",
            item,
            lambda tx: tx.update(
                item, actions=actions, condition=condition, add_version_condition=add_version_condition
            ),
        )

    def update_key(
        self, model: Any, hash_key: str, range_key: str, actions: list, condition: Any = None, *, role: str = "update"
    ) -> None:
        """An UpdateItem by key that leaves the item's version alone: a counter ADDed on an
        item whose version guards something else (a segment's definition and If-Match)."""

        def op(tx: Any) -> None:
            from pynamodb.constants import KEY

            tx._update_items.append(
                model._get_connection().get_operation_kwargs(
                    hash_key, range_key=range_key, key=KEY, actions=actions, condition=condition
                )
            )

        self._add(role, "update", model, op)

    def put_as_is(self, item: Any, *, role: str = "save") -> None:
        """A Put of ``item`` exactly as it is, version included: PynamoDB's ``save`` would
        bump and check the version, which a copy into another partition has not got there."""

        def op(tx: Any) -> None:
            from pynamodb.constants import ITEM

            attrs = item.serialize(null_check=True)
            hk, rk = attrs.pop("pk")["S"], attrs.pop("sk")["S"]
            tx._put_items.append(
                item._get_connection().get_operation_kwargs(hk, range_key=rk, key=ITEM, attributes=attrs)
            )

        self._add(role, "save", item, op)

    def run(self, explain: Mapping[str, Explain] | None = None, *, race: Exception | None = None) -> None:
        """Commit. On a cancellation: the mapped error of the first failed part (a
        callable entry may return None to pass), else ``race`` for a lost race, else
        :class:`Cancelled`."""
        from pynamodb.exceptions import TransactWriteError
        from pynamodb.transactions import TransactWrite

        from crm.storage import connection

        sent = sorted(self._parts, key=lambda p: _SENT[p[0].kind])  # stable: order added within a kind
        try:
            with TransactWrite(connection=connection()) as tx:
                for _, op in sent:
                    op(tx)
        except TransactWriteError as exc:
            if exc.cause_response_code != "TransactionCanceledException":
                raise
            reasons = list(exc.cancellation_reasons or [])
            parts = [
                Part(p.role, p.kind, p.item, getattr(r, "code", None))
                for (p, _), r in zip(sent, reasons + [None] * len(sent), strict=False)
            ]
            raise _explained(Cancelled(parts), explain or {}, race) from None


def _explained(cancelled: Cancelled, explain: Mapping[str, Explain], race: Exception | None) -> Exception:
    for part in cancelled.failed:
        entry = explain.get(part.role)
        error = entry(cancelled) if callable(entry) else entry
        if error is not None:
            return error
    if race is not None and cancelled.lost_race:
        return race
    return cancelled
