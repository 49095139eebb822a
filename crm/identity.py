"""Identity resolution: which customer is a record from a source system?

``upsert(ctx, source, records)`` takes up to 250 ``(external_id, profile)`` pairs from one
source (a connector's sync) and links each to a customer, creating one when nothing
matches. ``profile`` holds CustomerPatch fields without ``external_ids``: linking or
creating sets ``external_ids[source] = external_id`` itself. A third element may give the
vendor's times, ``{"updated_at", "created_at"}``: the customer keeps, per source, the
version last applied (``source_updated_at``; a record not newer than it is
``unchanged``, so a late page or a replayed webhook never reverts newer data; it advances
only with a change) and the earliest first-seen time (``source_created_at``). Consent
merges per channel by time: a record's consent older than the stored one is not applied.

Rules, in the tenant's order (settings item ``P SETTINGS`` / ``IDENTITY``, default
``external_id, email, phone``; ``PUT /v1/identity/settings``):

- ``external_id``: the ``(source, external id)`` guard ``P U#xid#<source>#<id>``. It cannot
  be left out of the order (a source's record must keep landing on the customer it made),
  but it may come after email or phone.
- ``email``: the normalized email's guard ``P U#email#<email>``.
- ``phone``: the lookup entries ``P I#phone#<e164>`` (a Query), consulted only when no
  earlier rule matched and the record has a phone; every entry is checked against its
  profile.

The first rule that matches picks the customer; the record's fields are applied to it as
a PATCH and it gains ``external_ids[source]``. A record whose data changes nothing is
``unchanged`` and costs no write. Nothing matched: a new customer (``created``).

Conflicts are recorded for review and never guessed. The record's status is
``conflict`` and nothing is written for it, when:

- ``ambiguous_phone``: the phone matches several customers;
- ``different_external_id``: the customer its email (or phone) matches already has
  another external id for this source;
- ``matches_disagree``: two rules match different customers (its external id's and its
  email's, or its phone's and either). One exception: when the external id picked the
  customer and only the email points elsewhere, the external id's customer *is*
  updated, without the email (the source's own key says whose record it is; the email
  stays with the customer that holds it);
- ``email_taken``: email matching is disabled (left out of the order) and the email
  belongs to a customer no other rule found: a new customer cannot have it.

A conflict is an item ``P CONFLICT#<id>`` / ``CONFLICT`` whose id is a hash of (source,
external id, reason, candidate customers), written with ``attribute_not_exists``: the
same conflict seen by every later sync is stored once (and one that was resolved stays
resolved). gsi1 ``P CONFLICTS`` and gsi2 ``P CONFLICTS#<status>`` list them newest first
(``<detected_at>#<id>``); a list is eventually consistent, as every GSI read.

Records of one call that resolve to the same customer are applied in order to one
write (later fields win); a record whose email or external id an earlier record
claims resolves to that record's customer, so one email never makes two customers. A
record that needs a value another record of the call gives up (an email moving from
one customer to another) is resolved in a second round, after the first round's
writes, with fresh reads; so is a record whose packed transaction was cancelled by a
concurrent writer (after one retry on its own).

DynamoDB requests per call of 100 records (each with an external id and an email;
measured in tests/integration/test_identity.py, table in docs/performance.md):

- reads: the settings item and every guard in BatchGetItems of 100 keys (201 keys:
  3 BatchGetItem), then the matched profiles (1 BatchGetItem per 100), then 1 Query per
  distinct phone of the records that reach the phone rule;
- writes: whole customers (profile, new guards, lookup and search entries) packed into
  TransactWriteItems of at most 100 items (a new customer with an external id, an
  email and a given name is 5 items: profile, 2 guards, 2 search entries; so 20 a
  transaction); 1 PutItem per new conflict;
- so 100 new: 3 + 5 TransactWriteItems = 8; 100 repeats: 3 + 1 = 4, no write; 100
  changed: 3 + 1 + 1 = 5; 100 existing customers first linked by email: 3 + 1 + 2 = 6;
- the plan's customers limit (crm/billing/limits.py), only when a call creates someone:
  the live count (1 GetItem) and, for a context without an API key (a sync), the plan
  (1 GetItem), each cached per container for 10 s; near the limit the count is re-read.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import TypeAdapter, ValidationError

from crm import clock, retry
from crm.billing import limits
from crm.context import TenantContext
from crm.customers import records as customer_keys
from crm.customers.schemas import SOURCE_PATTERN, CustomerPatch, ExternalId
from crm.customers.service import batch_profiles, new_data, new_item, patched_data, require_identity
from crm.customers.writes import ProfileWrite, execute_packed
from crm.errors import Conflict, DomainError, Invalid, NotFound, field_errors
from crm.identity_schemas import (
    DEFAULT_ORDER,
    ConflictStatus,
    IdentityConflict,
    IdentitySettings,
    IdentitySettingsFields,
)
from crm.paging import Page, decode_cursor, encode_cursor, start_key
from crm.storage import (
    CustomerItem,
    GuardItem,
    IdentityConflictItem,
    IdentitySettingsItem,
    IndexEntryItem,
    Item,
    condition_failed,
)

MAX_RECORDS = 250
SETTINGS_SK = "IDENTITY"
CONFLICT_SK = "CONFLICT"
ROUNDS = 3
CONFLICT_ID = re.compile(r"^cfl_[0-9a-f]{24}$")
_EXTERNAL_ID = TypeAdapter(ExternalId)


@dataclass
class Resolution:
    index: int
    status: str  # created | updated | unchanged | conflict | error
    customer_id: str | None = None
    matched_by: str | None = None  # external_id | email | phone
    error: DomainError | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    conflict_id: str | None = None
    # the profile as this call last read or wrote it (created, updated, unchanged): a
    # caller writing beside it next (the sink's order import) need not read it again
    profile: CustomerItem | None = field(default=None, repr=False, compare=False)


# --- settings ------------------------------------------------------------------


def _settings_key(ctx: TenantContext) -> tuple[str, str]:
    return ctx.key("SETTINGS"), SETTINGS_SK


def _settings(item: Any) -> IdentitySettings:
    if isinstance(item, IdentitySettingsItem):
        return IdentitySettings(order=item.data["order"], updated_at=item.updated_at)
    return IdentitySettings(order=list(DEFAULT_ORDER))


def get_settings(ctx: TenantContext) -> IdentitySettings:
    """1 GetItem; the defaults while none were PUT."""
    try:
        return _settings(IdentitySettingsItem.get(*_settings_key(ctx), consistent_read=True))
    except IdentitySettingsItem.DoesNotExist:
        return _settings(None)


def put_settings(ctx: TenantContext, fields: IdentitySettingsFields) -> IdentitySettings:
    """1 PutItem. Applies to the records resolved from then on."""
    item = IdentitySettingsItem(*_settings_key(ctx), data={"order": list(fields.order)}, updated_at=clock.now_iso())
    item.save()
    return _settings(item)


# --- conflicts -----------------------------------------------------------------


def conflict_id(source: str, external_id: str | None, reason: str, candidates: list[str]) -> str:
    raw = "\x1f".join([source, external_id or "", reason, *sorted(candidates)])
    return "cfl_" + hashlib.sha256(raw.encode()).hexdigest()[:24]


def _conflict_pk(ctx: TenantContext, cid: str) -> str:
    return ctx.key("CONFLICT", cid)


def _to_conflict(item: IdentityConflictItem) -> IdentityConflict:
    return IdentityConflict(
        id=item.conflict_id,
        status=cast(ConflictStatus, item.status),
        detected_at=item.detected_at,
        resolved_at=item.resolved_at,
        **item.data,
    )


def _conflict_item(
    ctx: TenantContext,
    source: str,
    external_id: str | None,
    rule: str,
    reason: str,
    candidates: list[str],
    rec: CustomerPatch,
    now: str,
) -> IdentityConflictItem:
    cid = conflict_id(source, external_id, reason, candidates)
    item = IdentityConflictItem(
        _conflict_pk(ctx, cid),
        CONFLICT_SK,
        conflict_id=cid,
        status="open",
        detected_at=now,
        data={
            "source": source,
            "external_id": external_id,
            "rule": rule,
            "reason": reason,
            "candidate_customer_ids": candidates,
            "email": rec.email,
            "phone": rec.phone,
        },
    )
    _set_conflict_keys(ctx, item)
    return item


def _set_conflict_keys(ctx: TenantContext, item: IdentityConflictItem) -> None:
    item.gsi1pk = ctx.key("CONFLICTS")
    item.gsi2pk = ctx.key("CONFLICTS", item.status)
    item.gsi1sk = item.gsi2sk = f"{item.detected_at}#{item.conflict_id}"


def _save_conflict(item: IdentityConflictItem) -> bool:
    """1 PutItem, conditional on the conflict not being stored yet; False if it was."""
    from pynamodb.exceptions import PutError

    try:
        item.save(condition=IdentityConflictItem.pk.does_not_exist())
        return True
    except PutError as exc:
        if condition_failed(exc):
            return False
        raise


def list_conflicts(ctx: TenantContext, *, limit: int, cursor: str | None = None, status: str | None = None) -> Page:
    """Newest first: 1 Query on gsi1 (every status) or gsi2 (one status)."""
    kind = "conflict:" + (status or "all")
    after = decode_cursor(cursor, kind)
    if after is not None:
        _, _, cid = after.rpartition("#")
        if not CONFLICT_ID.match(cid):
            raise Invalid("cursor is malformed", field="cursor")
    index: Any
    if status is None:
        pk, index, names = ctx.key("CONFLICTS"), IdentityConflictItem.gsi1, ("gsi1pk", "gsi1sk")
    else:
        pk, index, names = ctx.key("CONFLICTS", status), IdentityConflictItem.gsi2, ("gsi2pk", "gsi2sk")
    start = (
        None
        if after is None
        else start_key(
            **{names[0]: pk, names[1]: after}, pk=_conflict_pk(ctx, after.rpartition("#")[2]), sk=CONFLICT_SK
        )
    )
    rows = list(
        index.query(pk, scan_index_forward=False, limit=limit + 1, page_size=limit + 1, last_evaluated_key=start)
    )
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(kind, f"{rows[-1].detected_at}#{rows[-1].conflict_id}") if more else None
    return Page([_to_conflict(r) for r in rows], nxt)


def get_conflict(ctx: TenantContext, conflict_id_: str) -> IdentityConflict:
    """1 GetItem."""
    return _to_conflict(_load_conflict(ctx, conflict_id_))


def _load_conflict(ctx: TenantContext, cid: str) -> IdentityConflictItem:
    if not CONFLICT_ID.match(cid):
        raise NotFound(f"conflict {cid} not found")
    try:
        return IdentityConflictItem.get(_conflict_pk(ctx, cid), CONFLICT_SK, consistent_read=True)
    except IdentityConflictItem.DoesNotExist:
        raise NotFound(f"conflict {cid} not found") from None


def resolve_conflict(ctx: TenantContext, cid: str, note: str | None = None) -> IdentityConflict:
    """Mark a conflict resolved (what to do about the customers is the reviewer's call,
    through the customer routes). 1 GetItem + 1 PutItem conditional on it being open;
    resolving a resolved conflict returns it unchanged."""
    from pynamodb.exceptions import PutError

    for _ in retry.backoff(3):  # a concurrent resolve in between: read it again
        item = _load_conflict(ctx, cid)
        if item.status == "resolved":
            return _to_conflict(item)
        item.status, item.resolved_at = "resolved", clock.now_iso()
        item.data = {**item.data, "note": note, "resolved_by": ctx.key_id}
        _set_conflict_keys(ctx, item)
        try:
            item.save(condition=IdentityConflictItem.status == "open")
            return _to_conflict(item)
        except PutError as exc:
            if not condition_failed(exc):
                raise
    raise Conflict("the conflict changed concurrently; retry", code="transaction_conflict")


# --- resolution ----------------------------------------------------------------


def _validate(i: int, external_id: Any, profile: Any) -> tuple[str | None, CustomerPatch] | Resolution:
    errors: list[dict[str, Any]] = []
    rec = None
    if not isinstance(profile, dict):
        errors.append({"field": "profile", "message": "must be an object", "type": "dict_type"})
    elif "external_ids" in profile:
        errors.append(
            {
                "field": "external_ids",
                "type": "extra_forbidden",
                "message": "external_ids is set from the source and the external id",
            }
        )
    else:
        try:
            rec = CustomerPatch.model_validate(profile)
        except ValidationError as exc:
            errors += field_errors(exc)
    if external_id is not None:
        try:
            external_id = _EXTERNAL_ID.validate_python(external_id)
        except ValidationError as exc:
            errors += [{**e, "field": "external_id"} for e in field_errors(exc)]
    if not errors and rec is not None and not (external_id or rec.email or rec.phone):
        errors.append(
            {
                "field": "external_id",
                "type": "missing",
                "message": "a record needs an external id, an email or a phone to match on",
            }
        )
    if errors or rec is None:
        return Resolution(i, "error", error=Invalid("record is invalid", field=f"records[{i}]"), errors=errors)
    return external_id, rec


def upsert(
    ctx: TenantContext, source: str, records: list[tuple[str | None, dict]], *, fill_only: bool = False
) -> list[Resolution]:
    """Resolve and write up to 250 records of ``source``; one Resolution per record, in order.
    Request counts: the module docstring. ``fill_only``: a matched customer only gains the
    link and the fields it lacks (an order's snapshot of its buyer is not the profile's
    source of truth: applying it would undo the customers stream on every sync)."""
    if not isinstance(source, str) or not re.match(SOURCE_PATTERN, source):
        raise Invalid(f"source must match {SOURCE_PATTERN}", field="source")
    if not 1 <= len(records) <= MAX_RECORDS:
        raise Invalid(f"records must hold 1 to {MAX_RECORDS} items", field="records")
    results: list[Resolution | None] = [None] * len(records)
    parsed: dict[int, tuple[str | None, CustomerPatch]] = {}
    facts: dict[int, dict[str, str]] = {}
    for i, pair in enumerate(records):
        rest: list[Any]
        try:
            external_id, profile, *rest = pair
        except (TypeError, ValueError):
            external_id, profile, rest = None, None, []
        checked = _validate(i, external_id, profile)
        if isinstance(checked, Resolution):
            results[i] = checked
            continue
        parsed[i] = checked
        facts[i] = _facts(rest[0] if rest else None) if checked[0] is not None else {}
    pending = list(parsed)
    budget = limits.Budget(ctx)  # the plan's customers limit: a new customer past it is a 402 record
    for n in range(ROUNDS):
        if not pending:
            break
        pending = _Round(
            ctx, source, parsed, results, last=n == ROUNDS - 1, fill_only=fill_only, facts=facts, budget=budget
        ).run(pending)
    for i in pending:  # still deferred after the last round (not expected)
        results[i] = Resolution(
            i,
            "error",
            error=Conflict("the record kept conflicting with concurrent writes; retry", code="transaction_conflict"),
        )
    budget.done(sum(1 for r in results if r is not None and r.status == "created"))
    return [r for r in results if r is not None]


def _facts(raw: Any) -> dict[str, str]:
    """The vendor's ``updated_at`` / ``created_at`` of a record, as UTC ISO strings (those
    that parse)."""
    out: dict[str, str] = {}
    for name in ("updated_at", "created_at"):
        value = (raw or {}).get(name) if isinstance(raw, dict) else None
        if value:
            try:
                out[name] = clock.iso(clock.parse(value))
            except (TypeError, ValueError):
                pass
    return out


def _stale(current: dict[str, Any], source: str, xid: str | None, facts: dict[str, str]) -> bool:
    """Whether Rapport already holds this version of the source's record, or a newer one:
    the vendor's ``updated_at`` seen last for (source, external id). A replayed webhook
    or a late page then changes nothing, whatever path it came by."""
    seen = (current.get("source_updated_at") or {}).get(source)
    return bool(
        xid is not None
        and seen
        and facts.get("updated_at")
        and (current.get("external_ids") or {}).get(source) == xid
        and facts["updated_at"] <= seen
    )


def _stamp(data: dict[str, Any], source: str, facts: dict[str, str], *, fill_only: bool) -> None:
    """Record the vendor's times of the source's record: its first-seen time (the earliest
    kept) and, for a full record, the version applied."""
    created = facts.get("created_at")
    have = (data.get("source_created_at") or {}).get(source)
    if created and (have is None or created < have):
        data["source_created_at"] = {**(data.get("source_created_at") or {}), source: created}
    if not fill_only and facts.get("updated_at"):
        data["source_updated_at"] = {**(data.get("source_updated_at") or {}), source: facts["updated_at"]}


def _newest_consent(old: dict[str, Any], data: dict[str, Any]) -> None:
    """Per channel the consent with the latest time wins: a synced consent never
    replaces a newer one (e.g. one given through the API since)."""
    before = old.get("consent") or {}
    for channel, now_ in list((data.get("consent") or {}).items()):
        kept = before.get(channel)
        if kept and now_ is not kept and kept.get("at", "") > now_.get("at", ""):
            data["consent"] = {**data["consent"], channel: kept}


def _missing_only(current: dict[str, Any], rec: CustomerPatch) -> CustomerPatch:
    """The part of ``rec`` that only fills what the profile lacks (attributes key by key)."""
    update: dict[str, Any] = {}
    for name in rec.model_fields_set:
        value = getattr(rec, name)
        if name in ("attributes", "consent", "external_ids"):
            have = current.get(name) or {}
            missing = {k: v for k, v in (value or {}).items() if k not in have}
            if missing:
                update[name] = missing
        elif current.get(name) in (None, "", [], {}):
            update[name] = value
    return type(rec).model_construct(_fields_set=set(update), **update)


def _keep_consent_times(old: dict[str, Any], data: dict[str, Any], rec: CustomerPatch) -> None:
    """A consent given without ``at`` that restates the stored status and source keeps the
    stored time, so re-syncing the same record changes nothing."""
    for channel, given in (rec.consent or {}).items():
        before = (old.get("consent") or {}).get(channel)
        if (
            given is not None
            and given.at is None
            and before
            and (before["status"], before["source"]) == (given.status, given.source)
        ):
            data["consent"][channel] = before


@dataclass(frozen=True)
class Decision:
    """What identity resolution decided for one record (pure: see :func:`decide`).

    ``outcome``: ``new`` (nothing matched: create), ``match`` (update ``customer_id``),
    ``conflict`` (write nothing; ``rule``, ``reason`` and ``candidates`` describe it), or
    ``match_without_email`` (a ``matches_disagree`` conflict is recorded, and the external
    id's customer is updated without the email another customer holds)."""

    outcome: str
    customer_id: str | None = None
    matched_by: str | None = None  # external_id | email | phone
    rule: str | None = None
    reason: str | None = None
    candidates: tuple[str, ...] = ()


def decide(
    order: tuple[str, ...] | list[str],
    external_id: str | None,
    *,
    by_external_id: str | None,
    by_email: str | None,
    by_phone: list[str] | None,
    linked: dict[str, str | None],
) -> Decision:
    """The tenant's rules applied to what was found (the module docstring's rules and
    conflicts), with no I/O: ``by_external_id`` / ``by_email`` the customer holding the
    record's guard (None: none), ``by_phone`` the customers whose phone is the record's
    (None: the record has no phone), ``linked`` each candidate's external id for this
    source (None: not linked to it)."""
    picked = by = None
    for rule in order:
        if rule == "phone":
            if by_phone is None:
                continue
            if len(by_phone) > 1:
                return Decision("conflict", rule="phone", reason="ambiguous_phone", candidates=tuple(by_phone))
            if by_phone:
                picked, by = by_phone[0], "phone"
                break
        else:
            holder = by_external_id if rule == "external_id" else by_email
            if holder is not None:
                picked, by = holder, rule
                break
    others = [(rule, c) for rule, c in (("external_id", by_external_id), ("email", by_email)) if c and c != picked]
    if picked is None:
        if others:  # email matching is disabled and another customer holds the email
            return Decision("conflict", rule="email", reason="email_taken", candidates=(others[0][1],))
        return Decision("new")
    have = linked.get(picked)
    if external_id is not None and have is not None and have != external_id:
        return Decision("conflict", matched_by=by, rule=by, reason="different_external_id", candidates=(picked,))
    if others:
        rule, other = others[0]
        if by == "external_id" and [r for r, _ in others] == ["email"]:
            return Decision(
                "match_without_email", picked, by, rule="email", reason="matches_disagree", candidates=(picked, other)
            )
        return Decision("conflict", matched_by=by, rule=rule, reason="matches_disagree", candidates=(picked, other))
    return Decision("match", picked, by)


@dataclass
class _Plan:
    """A customer as this round will write it: its first state, its current one, and the
    records that contributed (index, status, matched_by, conflict)."""

    item: CustomerItem
    old: dict[str, Any] | None
    data: dict[str, Any]
    records: list[tuple[int, str, str | None, IdentityConflictItem | None]] = field(default_factory=list)


class _Round:
    def __init__(
        self,
        ctx: TenantContext,
        source: str,
        parsed: dict,
        results: list,
        *,
        last: bool,
        fill_only: bool = False,
        facts: dict[int, dict[str, str]] | None = None,
        budget: limits.Budget | None = None,
    ):
        self.ctx, self.source, self.parsed, self.results, self.last = ctx, source, parsed, results, last
        self.budget = budget or limits.Budget(ctx)
        self.fill_only = fill_only
        self.facts = facts or {}
        self.now = clock.now_iso()
        self.holders: dict[str, str] = {}  # guard pk -> customer id
        self.released: set[str] = set()  # guards a planned write gives up
        self.profiles: dict[str, CustomerItem] = {}
        self.phones: dict[str, set[str]] = {}  # e164 -> customers listed under it (read)
        self.plans: dict[str, _Plan] = {}  # customer id -> plan, in first-touch order
        self.conflicts: dict[str, IdentityConflictItem] = {}
        self.unwritten: set[str] = set()  # customers whose planned write failed
        self.order: tuple[str, ...] = DEFAULT_ORDER

    # -- reads --
    def _read(self, pending: list[int]) -> None:
        keys = [_settings_key(self.ctx)]
        for i in pending:
            xid, rec = self.parsed[i]
            if xid is not None:
                keys.append((customer_keys.xid_guard(self.ctx, self.source, xid), "U"))
            if rec.email:
                keys.append((customer_keys.email_guard(self.ctx, rec.email), "U"))
        found = list(Item.batch_get(list(dict.fromkeys(keys)), consistent_read=True))
        for item in found:
            if isinstance(item, IdentitySettingsItem):
                self.order = tuple(item.data["order"])
            elif isinstance(item, GuardItem):
                self.holders[item.pk] = item.customer_id
        wanted = sorted(
            {rec.phone for i in pending for xid, rec in [self.parsed[i]] if rec.phone and self._reaches_phone(xid, rec)}
        )
        for phone in wanted:
            self.phones[phone] = {
                e.customer_id
                for e in IndexEntryItem.query(
                    customer_keys.phone_entry(self.ctx, phone), limit=100, consistent_read=True
                )
            }
        ids = set(self.holders.values()).union(*self.phones.values())
        read = batch_profiles(self.ctx, sorted(ids))
        # a guard or entry still naming a merged customer stands for its survivor (one more
        # BatchGetItem, only when there are such)
        survivor: Callable[[Any], str | None] = getattr(customer_keys, "survivor", lambda item: None)
        moved = {c: s for c, p in read.items() if (s := survivor(p))}
        if moved:
            read.update(batch_profiles(self.ctx, sorted(set(moved.values()) - set(read))))
        self.profiles = {c: p for c, p in read.items() if p.status == "active"}
        self.holders = {k: moved.get(c, c) for k, c in self.holders.items()}
        self.holders = {k: c for k, c in self.holders.items() if c in self.profiles}
        self.phones = {ph: {moved.get(c, c) for c in cs} for ph, cs in self.phones.items()}

    def _reaches_phone(self, xid: str | None, rec: CustomerPatch) -> bool:
        for rule in self.order:
            if rule == "phone":
                return True
            if self._holder(rule, xid, rec) is not None:
                return False
        return False

    def _holder(self, rule: str, xid: str | None, rec: CustomerPatch) -> str | None:
        if rule == "external_id" and xid is not None:
            return self.holders.get(customer_keys.xid_guard(self.ctx, self.source, xid))
        if rule == "email" and rec.email:
            return self.holders.get(customer_keys.email_guard(self.ctx, rec.email))
        return None

    def _data(self, cid: str) -> dict[str, Any]:
        plan = self.plans.get(cid)
        return plan.data if plan else (self.profiles[cid].data or {})

    def _phone_matches(self, phone: str) -> list[str]:
        cands = self.phones.get(phone, set()) | set(self.plans)
        return sorted(
            c for c in cands if (c in self.plans or c in self.profiles) and self._data(c).get("phone") == phone
        )

    # -- planning --
    def run(self, pending: list[int]) -> list[int]:
        self._read(pending)
        deferred = []
        for i in pending:
            if not self._plan_record(i):
                deferred.append(i)
        deferred += self._write()
        for item in self.conflicts.values():
            _save_conflict(item)
        for i in pending:
            r = self.results[i]
            if r is not None and r.customer_id and r.status in ("created", "updated", "unchanged"):
                plan = self.plans.get(r.customer_id)
                if r.customer_id not in self.unwritten:
                    r.profile = plan.item if plan is not None else self.profiles.get(r.customer_id)
        return sorted(deferred)

    def _conflict(
        self,
        i: int,
        xid: str | None,
        rec: CustomerPatch,
        rule: str,
        reason: str,
        candidates: list[str],
        matched_by: str | None = None,
        customer_id: str | None = None,
    ) -> IdentityConflictItem:
        item = _conflict_item(self.ctx, self.source, xid, rule, reason, list(candidates), rec, self.now)
        item = self.conflicts.setdefault(item.conflict_id, item)
        self.results[i] = Resolution(
            i,
            "conflict",
            customer_id=customer_id,
            matched_by=matched_by,
            conflict_id=item.conflict_id,
            error=Conflict(
                _REASONS[reason],
                field=rule,
                code="identity_conflict",
                conflict_id=item.conflict_id,
                reason=reason,
                customer_ids=list(candidates),
            ),
        )
        return item

    def _plan_record(self, i: int) -> bool:
        """Plan record ``i``; False to defer it to the next round."""
        xid, rec = self.parsed[i]
        ctx, source = self.ctx, self.source
        mine = [customer_keys.xid_guard(ctx, source, xid)] if xid is not None else []
        mine += [customer_keys.email_guard(ctx, rec.email)] if rec.email else []
        if any(g in self.released for g in mine):
            return False
        x = self._holder("external_id", xid, rec)
        e = self._holder("email", xid, rec)
        phones = self._phone_matches(rec.phone) if rec.phone else None
        linked = {
            c: (self._data(c).get("external_ids") or {}).get(source) for c in {x, e, *(phones or [])} if c is not None
        }
        d = decide(self.order, xid, by_external_id=x, by_email=e, by_phone=phones, linked=linked)
        if d.outcome == "new":
            return self._create(i, xid, rec)
        if d.outcome == "match":
            assert d.customer_id is not None and d.matched_by is not None
            return self._apply(i, d.customer_id, d.matched_by, xid, rec, None)
        assert d.rule is not None and d.reason is not None  # a conflict, or a match without the email
        if d.outcome == "conflict":
            self._conflict(i, xid, rec, d.rule, d.reason, list(d.candidates), matched_by=d.matched_by)
            return True
        # the external id's customer, updated without the email another customer holds
        conflict = self._conflict(
            i, xid, rec, d.rule, d.reason, list(d.candidates), matched_by=d.matched_by, customer_id=d.customer_id
        )
        assert d.customer_id is not None and d.matched_by is not None
        trimmed = rec.model_copy(update={"email": None})
        trimmed.model_fields_set.discard("email")
        return self._apply(i, d.customer_id, d.matched_by, xid, trimmed, conflict)

    def _claim(self, cid: str, old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
        """Record the guards ``new`` takes and gives up; False if it takes one that another
        customer holds or that a write of this round gives up (defer the record)."""
        before, after = customer_keys.guards(self.ctx, old or {}), customer_keys.guards(self.ctx, new)
        for pk in after.keys() - before.keys():
            if pk in self.released or self.holders.get(pk, cid) != cid:
                return False
        for pk in after.keys() - before.keys():
            self.holders[pk] = cid
        for pk in before.keys() - after.keys():
            self.holders.pop(pk, None)
            self.released.add(pk)
        return True

    def _apply(
        self, i: int, cid: str, by: str, xid: str | None, rec: CustomerPatch, conflict: IdentityConflictItem | None
    ) -> bool:
        current = self._data(cid)
        facts = self.facts.get(i, {})
        if not self.fill_only and _stale(current, self.source, xid, facts):
            self.results[i] = Resolution(i, "unchanged", customer_id=cid, matched_by=by)
            return True  # an older (or the same) version of what was applied already
        if self.fill_only:
            rec = _missing_only(current, rec)
        data = patched_data(current, rec, self.now)
        _keep_consent_times(current, data, rec)
        _newest_consent(current, data)
        if xid is not None:
            data["external_ids"] = {**(data.get("external_ids") or {}), self.source: xid}
            _stamp(data, self.source, facts, fill_only=True)
        status = "conflict" if conflict else "updated"
        if data == current:  # the same data under a newer version costs no write either
            if not conflict:
                self.results[i] = Resolution(i, "unchanged", customer_id=cid, matched_by=by)
            return True
        if xid is not None:
            _stamp(data, self.source, facts, fill_only=self.fill_only)
        try:
            require_identity(data)
        except DomainError as exc:
            self.results[i] = Resolution(i, "error", customer_id=cid, matched_by=by, error=exc)
            return True
        if not self._claim(cid, current, data):
            self.results[i] = None
            return False
        plan = self.plans.get(cid)
        if plan is None:
            plan = self.plans[cid] = _Plan(self.profiles[cid], self.profiles[cid].data or {}, data)
        plan.data = data
        plan.records.append((i, status, by, conflict))
        return True

    def _create(self, i: int, xid: str | None, rec: CustomerPatch) -> bool:
        data = new_data(rec, self.now)
        if xid is not None:
            data["external_ids"] = {self.source: xid}
            _stamp(data, self.source, self.facts.get(i, {}), fill_only=self.fill_only)
        try:
            require_identity(data)
        except DomainError as exc:
            self.results[i] = Resolution(i, "error", error=exc)
            return True
        refused = self.budget.take(field=f"records[{i}]")
        if refused is not None:
            self.results[i] = Resolution(i, "error", error=refused)
            return True
        item = new_item(self.ctx, data, self.now)
        if not self._claim(item.customer_id, None, data):
            return False
        self.plans[item.customer_id] = _Plan(item, None, data, [(i, "created", None, None)])
        return True

    # -- writing --
    def _write(self) -> list[int]:
        """Pack the planned customers into transactions; returns the records to defer."""
        writes = []
        for plan in self.plans.values():
            item = plan.item
            item.data, item.updated_at = plan.data, self.now
            customer_keys.set_list_keys(self.ctx, item)
            writes.append((plan, ProfileWrite.plan(self.ctx, item, plan.old, plan.data, is_new=plan.old is None)))
        deferred: list[int] = []
        for plan, w, exc in execute_packed(writes):
            if exc is not None:
                self.unwritten.add(w.item.customer_id)
            if exc is None:
                for i, status, by, conflict in plan.records:
                    if conflict is not None:
                        continue  # its Resolution (status conflict, customer id) is set
                    self.results[i] = Resolution(i, status, customer_id=w.item.customer_id, matched_by=by)
            elif self.last:
                for i, *_ in plan.records:
                    self.results[i] = Resolution(i, "error", customer_id=w.item.customer_id, error=exc)
            else:
                deferred += [i for i, *_ in plan.records]
                if plan.old is None:
                    self.budget.give_back()  # planned again next round
        return deferred


_REASONS = {
    "ambiguous_phone": "the phone matches several customers; nothing was linked",
    "different_external_id": "the matching customer already has another external id for this source",
    "matches_disagree": "the record's identifiers match different customers; nothing was guessed",
    "email_taken": "the email belongs to a customer that no enabled rule links this record to",
}
