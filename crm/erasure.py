"""Right to erasure (GDPR art. 17), driven by the declared schema (crm/schema.py).

Erasing a customer has two parts:

- **In the request** (crm.customers.service.erase): the profile becomes a tombstone, its
  guards, lookup and search entries go in the same transaction, and every item of the
  customer's partition is treated as its kind declares (``partition``): 1 Query per
  1 MB of the partition, 1 BatchWriteItem per 25 deleted items (timeline entries), and
  1 PutItem per order whose free text is blanked. The tombstone records
  ``erasure = {"status": "pending", "terms": [...]}``: digests of the identifiers
  (id, emails, phones, name words) the follow-up looks for, no personal data itself.
- **A follow-up job** (a ``{"type": "erasure"}`` message on the sync queue,
  functions/erasure.py): every other declared kind with personal data has a hook
  registered here (``register``) that finds the customer's data with Queries (per
  connection, per partition; never a table Scan) and deletes or blanks it: identity
  conflicts, stored Idempotency-Key responses; connectors register theirs (run
  rejection reports, uploaded CSV files). Then ``terms`` is dropped and the status
  becomes ``complete``. Repeating it is harmless.

A kind with personal data and no way to erase it fails tests/unit/test_schema.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

from crm import schema
from crm.context import TenantContext

Terms = list[str]
Hook = Callable[[TenantContext, str, Terms], int]
# kinds erased in the profile's own transaction (guards and entries follow the profile)
IN_PROFILE_WRITE = ("customer", "guard", "index")
_HOOKS: dict[str, Hook] = {}
MIN_TERM = 3  # shorter name words would match other people's data
MIN_INSIDE = 5  # a shorter name word ("Exa") is only found as a word, not in "example"
MAX_WORD = 64  # longer words are not searched for a name inside them


def message(tenant_id: str, customer_id: str) -> dict[str, Any]:
    """The follow-up's message on the sync queue (handled by functions/erasure.py)."""
    return {"type": "erasure", "tenant_id": tenant_id, "customer_id": customer_id}


def register(kind: str, hook: Hook) -> Hook:
    """``hook(ctx, customer_id, terms)`` erases the customer's data of ``kind`` outside the
    customer's partition and returns how many items (or files) it changed."""
    _HOOKS[kind] = hook
    return hook


def missing() -> list[str]:
    """Declared kinds holding personal data that nothing erases."""
    out = []
    for name, kind in schema.kinds().items():
        if kind.erasure == "keep" or name in IN_PROFILE_WRITE or name in _HOOKS:
            continue
        if kind.pk != schema.CUSTOMER_PARTITION:
            out.append(name)
    return out


def _digest(customer_id: str, token: str) -> str:
    return hashlib.sha256(f"{customer_id}:{token}".encode()).hexdigest()[:32]


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"\w+", unicodedata.normalize("NFC", text).casefold()) if len(w) >= MIN_TERM]


def terms_of(customer_id: str, data: dict[str, Any], *, names: bool = True) -> Terms:
    """Digests of what identifies the person in free data: the id, emails, phone digits,
    name words. Digests, so the tombstone holds no personal data while the follow-up is
    pending; ``mentions`` digests the tokens of a value the same way."""
    out = {customer_id}
    aliases = data.get("aliases") or {}
    out.update(x.casefold() for x in [data.get("email"), *(aliases.get("emails") or ())] if x)
    out.update(p["email"].casefold() for p in data.get("previous_emails") or () if p.get("email"))
    for phone in [data.get("phone"), *(aliases.get("phones") or ())]:
        if phone and re.sub(r"\D", "", phone):
            out.add(re.sub(r"\D", "", phone))
    name = data.get("name") or {}
    words = {w for part in (name.get("given"), name.get("family")) for w in _words(part or "")} if names else set()
    # a long name word is looked for inside longer words too ("annleeford"): its length says where
    lengths = {f"len:{len(w)}" for w in words if len(w) >= MIN_INSIDE}
    return sorted({_digest(customer_id, t) for t in out | words} | lengths)


_EMAIL = re.compile(r"[^\s\"'<>(),;:\[\]\\]+@[^\s\"'<>(),;:\[\]\\]+")
_PHONE = re.compile(r"\+?\d[\d\s().\-]{4,}\d")
_ID = re.compile(r"cus_[0-9A-Z]{26}")


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, a JSON text inside a string parsed too."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        if value[:1] in "{[":
            try:
                yield from _strings(json.loads(value))
                return
            except ValueError:
                pass
        yield value
    elif value is not None:
        yield str(value)


def tokens(value: Any) -> set[str]:
    """What ``terms_of`` digests, as found in a stored value (any JSON, or text)."""
    out: set[str] = set()
    for text in _strings(value):
        out.update(e.casefold().rstrip(".") for e in _EMAIL.findall(text))
        out.update(re.sub(r"\D", "", p) for p in _PHONE.findall(text))
        out.update(re.findall(r"\d{6,}", text))
        out.update(_ID.findall(text))
        out.update(_words(text))
    return out


def mentions(value: Any, terms: Terms, customer_id: str) -> bool:
    """Whether a stored value contains one of the customer's (digested) terms."""
    wanted = set(terms)
    lengths = sorted({int(t[4:]) for t in terms if t.startswith("len:")})
    for token in tokens(value):
        if _digest(customer_id, token) in wanted:
            return True
        for n in lengths:
            if n < len(token) <= MAX_WORD and any(
                _digest(customer_id, token[i : i + n]) in wanted for i in range(len(token) - n + 1)
            ):
                return True
    return False


def _blank(data: Any, path: list[str]) -> Any:
    """``data`` without the attribute at ``path`` (lists are mapped over)."""
    if isinstance(data, list):
        return [_blank(x, path) for x in data]
    if not isinstance(data, dict) or not path:
        return data
    head, rest = path[0], path[1:]
    if head not in data:
        return data
    if not rest:
        return {k: v for k, v in data.items() if k != head}
    return {**data, head: _blank(data[head], rest)}


def blanked(item: Any, kind: schema.Kind) -> bool:
    """Blank the declared personal attributes of ``item`` in place; True if it changed."""
    changed = False
    for attr in kind.pii:
        name, *path = attr.split(".")
        old = getattr(item, name, None)
        new = _blank(old, path) if path else None
        if new != old:
            setattr(item, name, new)
            changed = True
    return changed


def partition(ctx: TenantContext, customer_id: str) -> int:
    """Every item of the customer's partition as its kind declares (the profile aside):
    delete or blank. 1 Query per page, 1 BatchWriteItem per 25 deletes, 1 PutItem per
    blanked item (retried on a concurrent change). Returns the items changed."""
    from crm.customers import records
    from crm.storage import Item

    pk = records.profile_pk(ctx, customer_id)
    changed, deletes = 0, []
    for item in Item.query(pk, consistent_read=True):
        kind = schema.declared(type(item))
        if kind is None or type(item).__name__ == "CustomerItem" or kind.erasure == "keep":
            continue
        if kind.erasure == "delete":
            deletes.append(item)
        elif _save_blanked(item, kind):
            changed += 1
    with Item.batch_write() as batch:
        for item in deletes:
            batch.delete(item)
    return changed + len(deletes)


def _save_blanked(item: Any, kind: schema.Kind) -> bool:
    from pynamodb.exceptions import PutError

    from crm.storage import condition_failed

    for _ in range(5):
        if not blanked(item, kind):
            return False
        try:
            item.save()
            return True
        except PutError as exc:
            if not condition_failed(exc):
                raise
            try:
                item.refresh(consistent_read=True)
            except type(item).DoesNotExist:
                return False  # deleted meanwhile (segment metrics: by the segments subscriber)
    raise RuntimeError(f"{item.pk} {item.sk} kept changing while it was being erased")


def follow_up(ctx: TenantContext, customer_id: str, terms: Terms) -> dict[str, int]:
    """Run every registered hook (the tenant-wide part); raises when a declared kind has
    none, so a new kind cannot be forgotten silently."""
    lacking = missing()
    if lacking:
        raise RuntimeError(f"no erasure for the declared kinds {lacking}")
    return {name: hook(ctx, customer_id, terms) for name, hook in sorted(_HOOKS.items())}


# --- crm's own tenant-wide kinds ------------------------------------------------------


def _conflicts(ctx: TenantContext, customer_id: str, terms: Terms) -> int:
    """Delete the identity conflicts that name the customer or their identifiers: 1 Query
    per page of the tenant's conflict list (gsi1), 1 BatchWriteItem per 25 deleted."""
    from crm.storage import IdentityConflictItem

    found = [c for c in IdentityConflictItem.gsi1.query(ctx.key("CONFLICTS")) if mentions(c.data, terms, customer_id)]
    with IdentityConflictItem.batch_write() as batch:
        for item in found:
            batch.delete(item)
    return len(found)


def _idempotency(ctx: TenantContext, customer_id: str, terms: Terms) -> int:
    """Delete the stored Idempotency-Key responses (and subscriber records) that mention the
    customer: 1 Query per 1 MB of the tenant's ``IDEM`` partition, 1 BatchWriteItem per 25."""
    from crm import settings
    from crm.aws import dynamodb_client

    client, table, deleted = dynamodb_client(), settings.table_name(), 0
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": ctx.key("IDEM")}},
        "ConsistentRead": True,
    }
    while True:
        page = client.query(**kwargs)
        doomed = [
            {"DeleteRequest": {"Key": {"pk": i["pk"], "sk": i["sk"]}}}
            for i in page.get("Items", [])
            if mentions(i.get("data", {}).get("S", ""), terms, customer_id)
        ]
        for start in range(0, len(doomed), 25):
            pending = {table: doomed[start : start + 25]}
            while pending:
                pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        deleted += len(doomed)
        if "LastEvaluatedKey" not in page:
            return deleted
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


register("identity_conflict", _conflicts)
register("idempotency", _idempotency)


def _account_contacts(ctx: TenantContext, customer_id: str, terms: Terms) -> int:
    """The erased customer's contact links to B2B accounts (crm/accounts/contacts.py)."""
    from crm.accounts import contacts

    return contacts.erase_links(ctx, customer_id, terms)


register("account_contact", _account_contacts)


def _changes(ctx: TenantContext, customer_id: str, terms: Terms) -> int:
    """The data of the erased customer's changes still in the change feed (crm/changes.py)."""
    from crm import changes

    return changes.erase(ctx, customer_id)


register("change", _changes)


def _agent_conflicts(ctx: TenantContext, customer_id: str, terms: Terms) -> int:
    """The on-premise agents' conflicts about the erased customer (crm/agents/conflicts.py)."""
    from crm.agents import conflicts

    return conflicts.erase(ctx, customer_id)


register("agent_conflict", _agent_conflicts)
