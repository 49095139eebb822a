"""Contacts: a customer linked to at most one account, with a role.

The link is two items written in one TransactWriteItems: the account's ``CONTACT#<customer>``
and the customer's profile, whose data carries ``account_id``/``account_role`` (so their
360 names the account) and, for a link a connector made, ``account_link`` (its source and
the vendor's time: an older record never moves a newer link). The profile write is
conditional on its version, which is what keeps a customer in one account at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm import clock, packing, retry
from crm.accounts import keys
from crm.accounts.schemas import Contact
from crm.context import TenantContext
from crm.customers import records
from crm.errors import Conflict, DomainError, Gone, NotFound
from crm.paging import Page, decode_cursor, encode_cursor, start_key
from crm.storage import AccountItem, ContactItem, CustomerItem, Item
from crm.tx import Cancelled, Tx

LINK_FIELDS = ("account_id", "account_role", "account_link")


@dataclass
class Linked:
    contact: Contact | None
    status: str  # created | updated (moved, or another role) | unchanged


def to_contact(item: ContactItem, profile: CustomerItem | None) -> Contact:
    data = (profile.data or {}) if profile is not None and profile.status == "active" else {}
    return Contact(
        customer_id=item.customer_id,
        role=item.role,
        linked_at=item.linked_at,
        source=item.source or "api",
        name=data.get("name"),
        email=data.get("email"),
        phone=data.get("phone"),
    )


def _read(ctx: TenantContext, account_id: str, customer_id: str) -> tuple[Any, Any, Any]:
    """1 BatchGetItem: the account, the customer's profile and the account's contact item."""
    apk, cpk = keys.account_pk(ctx, account_id), records.profile_pk(ctx, customer_id)
    found = {
        (i.pk, i.sk): i
        for i in Item.batch_get(
            [(apk, keys.PROFILE), (cpk, records.PROFILE), (apk, keys.contact_sk(customer_id))], consistent_read=True
        )
    }
    return (
        found.get((apk, keys.PROFILE)),
        found.get((cpk, records.PROFILE)),
        found.get((apk, keys.contact_sk(customer_id))),
    )


def _customer(ctx: TenantContext, account_id: str, customer_id: str) -> tuple[Any, CustomerItem, Any]:
    """The account, the active profile (a merged id: its survivor's, +1 BatchGetItem)
    and the contact item; 404 for an unknown account or customer, 410 for an erased one."""
    if not keys.ACCOUNT_ID.match(account_id):
        raise NotFound(f"account {account_id} not found")
    account, profile, contact = _read(ctx, account_id, customer_id)
    for _ in range(3):
        target = records.survivor(profile)
        if target is None:
            break
        account, profile, contact = _read(ctx, account_id, target)
    if not isinstance(account, AccountItem):
        raise NotFound(f"account {account_id} not found")
    if not isinstance(profile, CustomerItem):
        raise NotFound(f"customer {customer_id} not found", field="customer_id")
    if profile.status != "active":
        raise Gone(f"customer {customer_id} was erased", field="customer_id")
    return account, profile, contact


def link(
    ctx: TenantContext,
    account_id: str,
    customer_id: str,
    role: str | None,
    *,
    source: str = "api",
    source_updated_at: str | None = None,
) -> Linked:
    """Make the customer a contact of the account (or change their role). Through the
    API a customer of another account is a 409 (unlink them there first); a connector's
    link moves them (the vendor says so), unless the link it would replace is newer.
    1 BatchGetItem + 1 TransactWriteItems (+1 DeleteItem-in-transaction for a move)."""
    from crm import ids

    if not ids.CUSTOMER_ID.match(customer_id):
        raise NotFound(f"customer {customer_id} not found", field="customer_id")
    for _ in retry.backoff():
        account, profile, contact = _customer(ctx, account_id, customer_id)
        plan = _plan(ctx, account_id, profile, contact, role, source, source_updated_at)
        if isinstance(plan, Linked):
            return plan
        tx = Tx()
        tx.check(AccountItem, account.pk, keys.PROFILE, AccountItem.pk.exists(), role="account")
        _add(tx, plan)
        try:
            tx.run()
        except Cancelled:
            continue  # the profile changed meanwhile: read again
        return plan.linked()
    raise Conflict("the customer is being changed by many requests at once; retry", code="transaction_conflict")


@dataclass
class _LinkPlan:
    """A link to write: the profile (changed in place), the contact item, the old
    account's contact item to delete on a move, and the status the run shows."""

    profile: CustomerItem
    item: ContactItem
    moved_from: ContactItem | None
    status: str

    @property
    def size(self) -> int:
        return 3 if self.moved_from else 2

    def linked(self) -> Linked:
        return Linked(to_contact(self.item, self.profile), self.status)


def _plan(ctx: TenantContext, account_id: str, profile: CustomerItem, contact: Any, role: str | None, source: str,
          source_updated_at: str | None) -> Linked | _LinkPlan:  # fmt: skip
    """``unchanged`` (an older record, or nothing to change) or the writes of the link;
    through the API, a customer of another account is a 409 (pure)."""
    cid = profile.customer_id
    data = dict(profile.data or {})
    current, current_link = data.get("account_id"), data.get("account_link") or {}
    if (
        source != "api"
        and current_link.get("source") == source
        and source_updated_at
        and (current_link.get("updated_at") or "") > source_updated_at
    ):
        return Linked(to_contact(contact, profile) if contact else None, "unchanged")  # an older record
    if current and current != account_id and source == "api":
        raise Conflict(
            f"customer {cid} is a contact of account {current}; remove them there first "
            f"(DELETE /v1/accounts/{current}/contacts/{cid})",
            field="customer_id",
            code="contact_of_another_account",
            account_id=current,
        )
    stamp = {"source": source, "updated_at": source_updated_at} if source != "api" else None
    if (
        current == account_id
        and isinstance(contact, ContactItem)
        and contact.role == role
        and (stamp is None or current_link == stamp)
    ):
        return Linked(to_contact(contact, profile), "unchanged")
    now = clock.now_iso()
    new = {k: v for k, v in data.items() if k not in LINK_FIELDS}
    new["account_id"] = account_id
    if role:
        new["account_role"] = role
    if stamp:
        new["account_link"] = stamp
    profile.data, profile.updated_at = new, now
    records.set_list_keys(ctx, profile)
    item = ContactItem(
        keys.account_pk(ctx, account_id),
        keys.contact_sk(cid),
        account_id=account_id,
        customer_id=cid,
        role=role,
        source=source,
        source_updated_at=source_updated_at,
        linked_at=contact.linked_at if isinstance(contact, ContactItem) else now,
        gsi1pk=keys.contact_index(ctx, cid),
        gsi1sk=account_id,
    )
    if not isinstance(contact, ContactItem):
        status = "created"
    elif current == account_id and contact.role == role:
        status = "unchanged"  # only the vendor's stamp moved: nothing a user sees changed
    else:
        status = "updated"
    moved = bool(current) and current != account_id  # a connector moved the contact
    old = ContactItem(keys.account_pk(ctx, str(current)), keys.contact_sk(cid)) if moved else None
    return _LinkPlan(profile, item, old, status)


def _add(tx: Tx, plan: _LinkPlan) -> None:
    tx.save(plan.profile, CustomerItem.status == "active", role="customer")
    tx.save(plan.item, role="contact")
    if plan.moved_from is not None:
        tx.delete(plan.moved_from, role="old", add_version_condition=False)


def link_many(ctx: TenantContext, source: str, links: list[tuple[str, str, str | None, str | None]],
              ) -> list[Linked | DomainError]:  # fmt: skip
    """A connector's page of links, ``(account id, customer id, role, vendor time)``, as
    :func:`link` makes them one by one. 1 BatchGetItem per 100 keys (the profiles, the
    contact items), then the links that change something packed into
    TransactWriteItems of up to 100 items (one check of each account per transaction);
    an unchanged link writes nothing. A link the batch cannot decide (a merged or erased
    customer, the same customer twice) or whose transaction was cancelled (an unknown
    account among them) is made alone by :func:`link`; its error is returned in its place."""
    wanted: list[tuple[str, str]] = []
    for aid, cid, _, _ in links:  # the accounts are not read: each transaction checks them
        wanted += [(records.profile_pk(ctx, cid), records.PROFILE), (keys.account_pk(ctx, aid), keys.contact_sk(cid))]
    found: dict[tuple[str, str], Any] = {}
    for keyed in packing.chunks(list(dict.fromkeys(wanted)), 100):
        found.update({(i.pk, i.sk): i for i in Item.batch_get(keyed, consistent_read=True)})
    out: list[Linked | DomainError | None] = [None] * len(links)
    alone: list[int] = []
    taken: set[str] = set()
    groups: dict[str, list[tuple[int, _LinkPlan]]] = {}
    for n, (aid, cid, role, at) in enumerate(links):
        apk = keys.account_pk(ctx, aid)
        profile = found.get((records.profile_pk(ctx, cid), records.PROFILE))
        if (cid in taken or not keys.ACCOUNT_ID.match(aid) or not isinstance(profile, CustomerItem)
                or profile.status != "active" or records.survivor(profile)):  # fmt: skip
            alone.append(n)
            continue
        taken.add(cid)
        plan = _plan(ctx, aid, profile, found.get((apk, keys.contact_sk(cid))), role, source, at)
        if isinstance(plan, Linked):
            out[n] = plan
        else:
            groups.setdefault(aid, []).append((n, plan))

    def builder(aid: str, chunk: list[tuple[int, _LinkPlan]]) -> Any:
        def build(tx: Tx) -> None:
            tx.check(AccountItem, keys.account_pk(ctx, aid), keys.PROFILE, AccountItem.pk.exists(), role="account")
            for _, plan in chunk:
                _add(tx, plan)

        return build

    units: list[packing.Unit] = []
    for aid, group in groups.items():
        chunk: list[tuple[int, _LinkPlan]] = []
        for entry in [*group, None]:
            if chunk and (entry is None or 1 + sum(p.size for _, p in chunk) + entry[1].size > packing.MAX_ITEMS):
                units.append(packing.Unit(1 + sum(p.size for _, p in chunk), builder(aid, chunk), aid, chunk))
                chunk = []
            if entry is not None:
                chunk.append(entry)
    for unit, ok in packing.run(units):
        for n, plan in unit.members:
            if ok:
                out[n] = plan.linked()
            else:
                alone.append(n)
    for n in sorted(alone):
        aid, cid, role, at = links[n]
        try:
            out[n] = link(ctx, aid, cid, role, source=source, source_updated_at=at)
        except DomainError as exc:
            out[n] = exc
    return out  # type: ignore[return-value]


def unlink(ctx: TenantContext, account_id: str, customer_id: str) -> None:
    """1 BatchGetItem + 1 TransactWriteItems: the contact item goes and the profile forgets
    the account. 404 when the customer is not a contact of the account."""
    from crm import ids

    if not ids.CUSTOMER_ID.match(customer_id) or not keys.ACCOUNT_ID.match(account_id):
        raise NotFound(f"customer {customer_id} is not a contact of account {account_id}")
    for _ in retry.backoff():
        account, profile, contact = _read(ctx, account_id, customer_id)
        if not isinstance(account, AccountItem) or not isinstance(contact, ContactItem):
            raise NotFound(f"customer {customer_id} is not a contact of account {account_id}")
        tx = Tx()
        tx.delete(contact, ContactItem.pk.exists(), role="contact", add_version_condition=False)
        if isinstance(profile, CustomerItem) and (profile.data or {}).get("account_id") == account_id:
            profile.data = {k: v for k, v in (profile.data or {}).items() if k not in LINK_FIELDS}
            profile.updated_at = clock.now_iso()
            records.set_list_keys(ctx, profile)
            tx.save(profile, role="customer")
        try:
            tx.run()
            return
        except Cancelled:
            continue
    raise Conflict("the customer is being changed by many requests at once; retry", code="transaction_conflict")


def list_contacts(ctx: TenantContext, account_id: str, *, limit: int, cursor: str | None = None) -> Page:
    """Newest customer first. 1 Query (from ``PROFILE`` down, so the first page proves the
    account exists) + 1 BatchGetItem of the contacts' profiles (name, email, phone)."""
    if not keys.ACCOUNT_ID.match(account_id):
        raise NotFound(f"account {account_id} not found")
    pk = keys.account_pk(ctx, account_id)
    after = decode_cursor(cursor, f"contacts@{account_id}")
    if after is not None and not after.startswith(keys.CONTACT):
        from crm.errors import Invalid

        raise Invalid("cursor is malformed", field="cursor")
    rows = list(
        Item.query(
            pk,
            Item.sk.between(keys.CONTACT, keys.PROFILE),
            scan_index_forward=False,
            limit=limit + (2 if after is None else 1),
            page_size=limit + (2 if after is None else 1),
            last_evaluated_key=None if after is None else start_key(pk=pk, sk=after),
            consistent_read=True,
        )
    )
    if after is None:
        if not rows or not isinstance(rows[0], AccountItem):
            raise NotFound(f"account {account_id} not found")
        rows = rows[1:]
    contacts = [r for r in rows if isinstance(r, ContactItem)]
    more, contacts = len(contacts) > limit, contacts[:limit]
    return Page(
        with_profiles(ctx, contacts), encode_cursor(f"contacts@{account_id}", contacts[-1].sk) if more else None
    )


def with_profiles(ctx: TenantContext, contacts: list[ContactItem]) -> list[Contact]:
    """1 BatchGetItem (none for no contacts); an erased customer's link, waiting for its
    erasure's follow-up, is left out."""
    from crm.customers.service import batch_profiles

    profiles = batch_profiles(ctx, [c.customer_id for c in contacts]) if contacts else {}
    return [
        to_contact(c, profiles.get(c.customer_id))
        for c in contacts
        if c.customer_id in profiles and profiles[c.customer_id].status == "active"
    ]


# --- merge and erasure (crm/merge.py, crm/erasure.py) ----------------------------------


def on_merge(ctx: TenantContext, survivor_id: str, other_id: str, other_data: dict[str, Any],
             survivor_data: dict[str, Any]) -> None:  # fmt: skip
    """The merged-away customer's link: the survivor's profile already names the account
    it keeps (its own, or the other's when it had none: crm/merge.merged_profile), so the
    other's contact item moves to the survivor when that is the same account, and is
    dropped otherwise (the survivor's own account wins, like its own fields).
    1 BatchGetItem + 1 TransactWriteItems; nothing when the other was no contact."""
    account_id = other_data.get("account_id")
    if not account_id:
        return
    pk = keys.account_pk(ctx, account_id)
    found = {i.sk: i for i in ContactItem.batch_get([(pk, keys.contact_sk(other_id)), (pk, keys.contact_sk(survivor_id))],
                                                     consistent_read=True)}  # fmt: skip
    theirs, mine = found.get(keys.contact_sk(other_id)), found.get(keys.contact_sk(survivor_id))
    if theirs is None:
        return  # moved already (a repeated merge)
    tx = Tx()
    if survivor_data.get("account_id") == account_id and mine is None:
        tx.save(
            ContactItem(
                pk,
                keys.contact_sk(survivor_id),
                account_id=account_id,
                customer_id=survivor_id,
                role=survivor_data.get("account_role"),
                source=theirs.source,
                source_updated_at=theirs.source_updated_at,
                linked_at=theirs.linked_at,
                gsi1pk=keys.contact_index(ctx, survivor_id),
                gsi1sk=account_id,
            ),
            role="survivor",
        )
    tx.delete(theirs, role="other", add_version_condition=False)
    tx.run()


def erase_links(ctx: TenantContext, customer_id: str, terms: list[str]) -> int:
    """The erasure follow-up's hook: delete the erased customer's contact items (their
    profile forgot the account in the erasure's own write). 1 Query on gsi1 + 1
    BatchWriteItem per 25."""
    found = list(ContactItem.gsi1.query(keys.contact_index(ctx, customer_id)))
    with ContactItem.batch_write() as batch:
        for item in found:
            batch.delete(item)
    return len(found)
