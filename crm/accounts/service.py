"""Account operations. Each docstring names its DynamoDB request count (docs/performance.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm import clock, packing, retry
from crm.accounts import keys
from crm.accounts.schemas import Account, AccountCreate, AccountFields, AccountPatch
from crm.context import TenantContext
from crm.errors import EXPECTED_VERSION, Conflict, Invalid, NotFound, PreconditionFailed, stale_version
from crm.paging import Page, decode_cursor, encode_cursor, start_key
from crm.storage import AccountGuardItem, AccountItem, AccountSummaryItem, Item
from crm.tx import Cancelled, Tx

MERGED_FIELDS = ("attributes", "external_ids")


# --- pure: data, keys, conversion ---------------------------------------------------


def new_data(fields: AccountFields) -> dict[str, Any]:
    data = {k: v for k, v in fields.model_dump(mode="json", include=fields.model_fields_set).items() if v is not None}
    for name in MERGED_FIELDS:
        if name in data:
            data[name] = {k: v for k, v in data[name].items() if v is not None}
            if not data[name]:
                del data[name]
    if not data.get("tags"):
        data.pop("tags", None)
    return data


def patched_data(old: dict[str, Any], patch: AccountFields) -> dict[str, Any]:
    """Given fields replace, null removes; the maps merge key by key (RFC 7396)."""
    data = dict(old)
    dumped = patch.model_dump(mode="json", include=patch.model_fields_set)
    for name in patch.model_fields_set:
        value = dumped[name]
        if name in MERGED_FIELDS and value is not None:
            merged = dict(data.get(name) or {})
            for key, sub in value.items():
                if sub is None:
                    merged.pop(key, None)
                else:
                    merged[key] = sub
            value = merged or None
        if value is None or (value == [] and name == "tags"):
            data.pop(name, None)
        else:
            data[name] = value
    return data


def set_index_keys(ctx: TenantContext, item: AccountItem) -> None:
    """Listed by id on gsi1; by normalised name on gsi2 once it has a searchable name."""
    item.gsi1pk, item.gsi1sk = keys.list_pk(ctx), item.account_id
    name = keys.normalised_name((item.data or {}).get("name") or "")
    if name:
        item.gsi2pk, item.gsi2sk = keys.name_pk(ctx), f"{name}#{item.account_id}"
    else:
        item.gsi2pk = item.gsi2sk = None


def guards(ctx: TenantContext, data: dict[str, Any]) -> dict[str, str]:
    """Guard pk -> the field it protects."""
    return {
        keys.guard_pk(ctx, "account", source, xid): f"external_ids.{source}"
        for source, xid in (data.get("external_ids") or {}).items()
    }


def to_account(item: AccountItem, summary: AccountSummaryItem | None = None, *, with_balance: bool = True) -> Account:
    data = {k: v for k, v in (item.data or {}).items() if k in Account.model_fields}
    balance = {k: v for k, v in ((summary.balance if summary else None) or {}).items() if v}
    return Account(
        id=item.account_id,
        stub=bool(item.stub),
        created_at=item.created_at,
        updated_at=item.updated_at,
        version=item.version,
        balance=balance if with_balance else None,
        open_invoices=int(summary.open_invoices or 0) if summary and with_balance else (0 if with_balance else None),
        **data,
    )


# --- reads --------------------------------------------------------------------------


def _check_id(account_id: str) -> None:
    if not keys.ACCOUNT_ID.match(account_id):
        raise NotFound(f"account {account_id} not found")


def load(ctx: TenantContext, account_id: str) -> tuple[AccountItem, AccountSummaryItem | None]:
    """1 BatchGetItem: the profile and its summary (the balance)."""
    _check_id(account_id)
    pk = keys.account_pk(ctx, account_id)
    found = {i.sk: i for i in Item.batch_get([(pk, keys.PROFILE), (pk, keys.SUMMARY)], consistent_read=True)}
    profile = found.get(keys.PROFILE)
    if not isinstance(profile, AccountItem):
        raise NotFound(f"account {account_id} not found")
    summary = found.get(keys.SUMMARY)
    return profile, summary if isinstance(summary, AccountSummaryItem) else None


def get(ctx: TenantContext, account_id: str) -> Account:
    """1 BatchGetItem (profile + summary)."""
    return to_account(*load(ctx, account_id))


def list_accounts(ctx: TenantContext, *, limit: int, cursor: str | None = None, name: str | None = None) -> Page:
    """By id (creation order): 1 Query on gsi1. By name prefix (normalised,
    case- and accent-insensitive, in name order): 1 Query on gsi2."""
    if name is None:
        pk = keys.list_pk(ctx)
        after = decode_cursor(cursor, "accounts")
        if after is not None and not keys.ACCOUNT_ID.match(after):
            raise Invalid("cursor is malformed", field="cursor")
        start = (
            None
            if after is None
            else start_key(gsi1pk=pk, gsi1sk=after, pk=keys.account_pk(ctx, after), sk=keys.PROFILE)
        )
        rows = list(AccountItem.gsi1.query(pk, limit=limit + 1, page_size=limit + 1, last_evaluated_key=start))
        more, rows = len(rows) > limit, rows[:limit]
        nxt = encode_cursor("accounts", rows[-1].account_id) if more else None
    else:
        prefix = keys.normalised_name(name)
        if not prefix:
            raise Invalid("name must contain a letter or a digit", field="name")
        pk, kind = keys.name_pk(ctx), "accounts:name:" + prefix
        after = decode_cursor(cursor, kind)
        start = None
        if after is not None:
            aid = after.rsplit("#", 1)[-1]
            if not after.startswith(prefix) or not keys.ACCOUNT_ID.match(aid):
                raise Invalid("cursor is malformed", field="cursor")
            start = start_key(gsi2pk=pk, gsi2sk=after, pk=keys.account_pk(ctx, aid), sk=keys.PROFILE)
        rows = list(
            AccountItem.gsi2.query(
                pk,
                AccountItem.gsi2sk.startswith(prefix),
                limit=limit + 1,
                page_size=limit + 1,
                last_evaluated_key=start,
            )
        )
        more, rows = len(rows) > limit, rows[:limit]
        nxt = encode_cursor(kind, rows[-1].gsi2sk) if more else None
    return Page([to_account(r, with_balance=False) for r in rows], nxt)


def find(ctx: TenantContext, source: str, external_id: str) -> str | None:
    """The account id of an external id (1 GetItem of its guard), None if unknown."""
    try:
        return AccountGuardItem.get(keys.guard_pk(ctx, "account", source, external_id), keys.GUARD,
                                    consistent_read=True).target_id  # fmt: skip
    except AccountGuardItem.DoesNotExist:
        return None


def lookup(ctx: TenantContext, source: str, external_id: str) -> list[Account]:
    """1 GetItem (the guard) + 1 BatchGetItem (profile + summary); [] when unknown."""
    aid = find(ctx, source, external_id)
    if aid is None:
        return []
    try:
        return [get(ctx, aid)]
    except NotFound:
        return []


# --- writes ---------------------------------------------------------------------------


def _explain(ctx: TenantContext, exc: Cancelled) -> Exception:
    for part in exc.failed:
        if isinstance(part.item, AccountGuardItem) and part.kind == "save":
            try:
                holder: str | None = AccountGuardItem.get(part.item.pk, keys.GUARD, consistent_read=True).target_id
            except AccountGuardItem.DoesNotExist:
                holder = None
            return Conflict(
                f"another account already has this {part.role}",
                field=part.role,
                existing_account_id=holder,
                code="duplicate_account",
            )
        if isinstance(part.item, AccountItem):
            return PreconditionFailed(
                f"account {part.item.account_id} was changed by another request; re-read it and retry",
                field=EXPECTED_VERSION,
            )
    if exc.lost_race:
        return Conflict("the write conflicted with a concurrent request; retry", code="transaction_conflict")
    return exc


def _write(ctx: TenantContext, item: AccountItem, old: dict[str, Any] | None, *, is_new: bool) -> None:
    """1 TransactWriteItems: the profile (new: must not exist; else conditional on its
    version) with the guards of its external ids added and removed."""
    tx = Tx()
    for part in _parts(ctx, item, old, is_new=is_new):
        part(tx)
    try:
        tx.run()
    except Cancelled as exc:
        raise _explain(ctx, exc) from None


def _parts(ctx: TenantContext, item: AccountItem, old: dict[str, Any] | None, *, is_new: bool) -> list[Any]:
    """What :func:`_write` sends, as callables adding each item to a Tx."""
    parts: list[Any] = [lambda tx: tx.save(item, AccountItem.pk.does_not_exist() if is_new else None, role="profile")]
    before, after = guards(ctx, old or {}), guards(ctx, item.data or {})
    for pk, field in after.items():
        if pk not in before:
            guard = AccountGuardItem(pk, keys.GUARD, target_id=item.account_id)
            parts.append(lambda tx, g=guard, f=field: tx.save(g, AccountGuardItem.pk.does_not_exist(), role=f))
    for pk, field in before.items():
        if pk not in after:
            guard = AccountGuardItem(pk, keys.GUARD, target_id=item.account_id)
            parts.append(lambda tx, g=guard, f=field: tx.delete(g, AccountGuardItem.target_id == item.account_id,
                                                                 role=f, add_version_condition=False))  # fmt: skip
    return parts


def new_item(ctx: TenantContext, data: dict[str, Any], now: str, *, stub: bool = False) -> AccountItem:
    aid = keys.account_id()
    item = AccountItem(keys.account_pk(ctx, aid), keys.PROFILE, account_id=aid, status="active", stub=stub,
                       data=data, created_at=now, updated_at=now)  # fmt: skip
    set_index_keys(ctx, item)
    return item


def create(ctx: TenantContext, body: AccountCreate) -> Account:
    """1 TransactWriteItems: the profile and the guards of its external ids (+1 GetItem on
    a 409, to name the account that holds the external id)."""
    item = new_item(ctx, new_data(body), clock.now_iso())
    _write(ctx, item, None, is_new=True)
    return to_account(item, None)


def update(ctx: TenantContext, account_id: str, patch: AccountPatch, if_match: int | None = None) -> Account:
    """1 BatchGetItem + 1 TransactWriteItems, conditional on the version read: with
    If-Match a stale version is 412; without, a concurrent change is re-read and retried."""
    for _ in retry.backoff():
        item, summary = load(ctx, account_id)
        if if_match is not None and item.version != if_match:
            raise stale_version(if_match, item.version)
        old = item.data or {}
        data = patched_data(old, patch)
        if data == old:
            return to_account(item, summary)
        item.data, item.updated_at = data, clock.now_iso()
        set_index_keys(ctx, item)
        try:
            _write(ctx, item, old, is_new=False)
            return to_account(item, summary)
        except PreconditionFailed:
            if if_match is not None:
                raise stale_version(if_match, None) from None
        except Conflict as exc:
            if exc.extra.get("code") != "transaction_conflict":
                raise
    raise Conflict("the account is being changed by many requests at once; retry", code="transaction_conflict")


# --- the sink's side: resolve by external id, stubs, upserts --------------------------


def resolve(ctx: TenantContext, source: str, external_ids: list[str]) -> dict[str, str]:
    """external id -> account id, creating a stub account for each one not known yet
    (order independence: a contact, order or invoice may arrive before its account's
    record, which later fills the stub). 1 BatchGetItem per 100 ids + 1
    TransactWriteItems per 50 stubs created (a stub and its guard); a transaction
    cancelled (a stub created concurrently) makes its stubs one by one."""
    wanted = list(dict.fromkeys(x for x in external_ids if x))
    out: dict[str, str] = {}
    for chunk in packing.chunks(wanted, 100):
        pks = {keys.guard_pk(ctx, "account", source, x): x for x in chunk}
        for g in AccountGuardItem.batch_get([(pk, keys.GUARD) for pk in pks], consistent_read=True):
            out[pks[g.pk]] = g.target_id
    now = clock.now_iso()
    stubs = [(xid, new_item(ctx, {"external_ids": {source: xid}}, now, stub=True)) for xid in wanted if xid not in out]
    units = [packing.Unit(2, _adder(ctx, item), None, [(xid, item)]) for xid, item in stubs]
    for unit, ok in packing.run(units):
        for xid, item in unit.members:
            out[xid] = item.account_id if ok else _stub(ctx, source, xid)
    return out


def _adder(ctx: TenantContext, item: AccountItem) -> Any:
    """Adds a new account's profile and its guards to a transaction (as :func:`_write`)."""
    parts = _parts(ctx, item, None, is_new=True)

    def add(tx: Tx) -> None:
        for part in parts:
            part(tx)

    return add


def _stub(ctx: TenantContext, source: str, external_id: str) -> str:
    item = new_item(ctx, {"external_ids": {source: external_id}}, clock.now_iso(), stub=True)
    try:
        _write(ctx, item, None, is_new=True)
        return item.account_id
    except Conflict:  # created concurrently: that one is the account
        found = find(ctx, source, external_id)
        if found is None:
            raise
        return found


@dataclass
class Upserted:
    status: str  # created | updated | unchanged | error
    account_id: str | None = None
    error: str | None = None
    errors: list[dict[str, Any]] | None = None


def _patch(source: str, external_id: str, profile: dict[str, Any]) -> AccountPatch | Upserted:
    """The record as a patch that sets its external id, or the error that rejects it."""
    from pydantic import ValidationError

    from crm.errors import field_errors

    if "external_ids" in (profile or {}):
        return Upserted("error", error="external_ids are the sink's to set", errors=[])
    try:
        return AccountPatch.model_validate({**(profile or {}), "external_ids": {source: external_id}})
    except ValidationError as exc:
        errs = field_errors(exc)
        return Upserted("error", error=f"invalid account: {errs[0]['field']}: {errs[0]['message']}", errors=errs)


def _created(ctx: TenantContext, source: str, updated_at: str, patch: AccountPatch) -> AccountItem | Upserted:
    if not patch.name:
        return Upserted("error", error="an account needs a name", errors=[])
    data = new_data(patch)
    data["source_updated_at"] = {source: updated_at}
    return new_item(ctx, data, clock.now_iso())


def _applied(ctx: TenantContext, source: str, updated_at: str, patch: AccountPatch, item: AccountItem,
             ) -> Upserted | tuple[dict[str, Any], str]:  # fmt: skip
    """The record applied to the stored ``item`` (changed in place): its old data and the
    status, or ``unchanged`` (an older or the same version) or an error: no write."""
    aid = item.account_id
    old = item.data or {}
    seen = (old.get("source_updated_at") or {}).get(source)
    if seen and updated_at < seen:
        return Upserted("unchanged", aid)
    data = patched_data(old, patch)
    same = data == old and not item.stub
    if same and seen == updated_at:
        return Upserted("unchanged", aid)
    if not data.get("name"):
        return Upserted("error", aid, error="an account needs a name", errors=[])
    # the stamp advances even when nothing else changed, so a late older version
    # cannot undo this one
    data["source_updated_at"] = {**(old.get("source_updated_at") or {}), source: updated_at}
    was_stub = bool(item.stub)
    item.data, item.stub, item.updated_at = data, False, clock.now_iso()
    set_index_keys(ctx, item)
    return old, "unchanged" if same else "created" if was_stub else "updated"


def upsert(ctx: TenantContext, source: str, external_id: str, updated_at: str, profile: dict[str, Any]) -> Upserted:
    """An account record of a connector: created, filled (a stub) or updated by its
    external id; an older ``updated_at`` than the one last applied from this source
    changes nothing. 1 GetItem (guard) + 1 BatchGetItem + 1 TransactWriteItems."""
    patch = _patch(source, external_id, profile)
    if isinstance(patch, Upserted):
        return patch
    for _ in retry.backoff():
        aid = find(ctx, source, external_id)
        if aid is None:
            item = _created(ctx, source, updated_at, patch)
            if isinstance(item, Upserted):
                return item
            try:
                _write(ctx, item, None, is_new=True)
                return Upserted("created", item.account_id)
            except Conflict:
                continue  # its guard was taken meanwhile (a stub): apply to that one
        try:
            item, _ = load(ctx, aid)
        except NotFound:
            continue
        applied = _applied(ctx, source, updated_at, patch, item)
        if isinstance(applied, Upserted):
            return applied
        old, status = applied
        try:
            _write(ctx, item, old, is_new=False)
            return Upserted(status, aid)
        except (PreconditionFailed, Conflict) as exc:
            if isinstance(exc, Conflict) and exc.extra.get("code") == "duplicate_account":
                return Upserted("error", aid, error=exc.detail, errors=[])
            continue
    return Upserted("error", error="the account kept changing concurrently; sync again", errors=[])


def upsert_many(ctx: TenantContext, source: str, incoming: list[tuple[str, str, dict[str, Any]]]) -> list[Upserted]:
    """A page of account records, ``(external id, updated_at, profile)``, each as
    :func:`upsert` writes it: 1 BatchGetItem per 100 guards + 1 BatchGetItem per 100
    profiles of the known ones, then the accounts that change packed into
    TransactWriteItems of up to 100 items; an unchanged record writes nothing. A record
    whose transaction was cancelled (or the batch cannot decide) goes through
    :func:`upsert` alone."""
    out: list[Upserted | None] = [None] * len(incoming)
    patches: dict[int, AccountPatch] = {}
    seen: set[str] = set()
    alone: list[int] = []
    for n, (xid, _, profile) in enumerate(incoming):
        patch = _patch(source, xid, profile)
        if isinstance(patch, Upserted):
            out[n] = patch
        elif xid in seen:
            alone.append(n)  # the same account twice: after the first
        else:
            seen.add(xid)
            patches[n] = patch
    gpks = {n: keys.guard_pk(ctx, "account", source, incoming[n][0]) for n in patches}
    held: dict[str, str] = {}
    for chunk in packing.chunks([(pk, keys.GUARD) for pk in gpks.values()], 100):
        held.update((g.pk, g.target_id) for g in AccountGuardItem.batch_get(chunk, consistent_read=True))
    profiles: dict[str, Any] = {}
    for chunk in packing.chunks([(keys.account_pk(ctx, a), keys.PROFILE) for a in dict.fromkeys(held.values())], 100):
        profiles.update((i.pk, i) for i in Item.batch_get(chunk, consistent_read=True))
    units: list[packing.Unit] = []
    for n, patch in patches.items():
        xid, updated_at, _ = incoming[n]
        aid = held.get(gpks[n])
        if aid is None:
            created = _created(ctx, source, updated_at, patch)
            if isinstance(created, Upserted):
                out[n] = created
                continue
            parts, item, status = _parts(ctx, created, None, is_new=True), created, "created"
        else:
            item = profiles.pop(keys.account_pk(ctx, aid), None)  # popped: one record per account here
            if not isinstance(item, AccountItem):
                alone.append(n)
                continue
            applied = _applied(ctx, source, updated_at, patch, item)
            if isinstance(applied, Upserted):
                out[n] = applied
                continue
            parts, status = _parts(ctx, item, applied[0], is_new=False), applied[1]

        def build(tx: Tx, parts: list[Any] = parts) -> None:
            for part in parts:
                part(tx)

        units.append(packing.Unit(len(parts), build, None, [(n, item.account_id, status)]))
    for unit, ok in packing.run(units):
        for n, aid, status in unit.members:
            if ok:
                out[n] = Upserted(status, aid)
            else:
                alone.append(n)
    for n in sorted(alone):
        out[n] = upsert(ctx, source, *incoming[n])
    return out  # type: ignore[return-value]
