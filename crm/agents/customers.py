"""A batch's customer records applied to the cloud: find each record's customer, plan its
fields by the rules (crm/agents/rules.py), write through identity resolution.

A record's customer is, in this order: the one holding its external id
``{source: external_id}`` (the guard); else the ``customer_id`` it names, which then gains
the external id (a local row inserted from a cloud customer); else identity resolution
finds one by email or phone, or creates one. A new record is first written only into the
gaps of a customer it matches (``fill_only``: its fields against a customer's non-empty
values are conflicts), then the fields whose rule says local wins are applied.

Records of one external id in a batch are applied in order, one round each (round k takes
the k-th record of every external id).

DynamoDB requests per round (docs/performance.md): 1 BatchGetItem of the external-id
guards, 1 of the profiles (+1 when one was merged), then identity resolution's (crm/identity.py)
for the known customers' changes and for the new records (and once more for a new record
matched to a customer where a local value wins), 1 TransactWriteItems per linked record
(crm/customers/service.py update), and 1 BatchGetItem of the profiles as they end, for the
answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crm import identity
from crm.agents import hlc, rules
from crm.agents.conflicts import Resolved
from crm.agents.records import CustomerRecord, Refused
from crm.context import TenantContext
from crm.customers import records as keys
from crm.customers.service import resolved_profiles
from crm.storage import CustomerItem, GuardItem, Item


@dataclass
class Outcome:
    seq: int
    status: str  # created | updated | unchanged | duplicate
    customer_id: str | None = None
    conflicts: list[dict[str, str]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    updated_at: str | None = None


@dataclass
class Applied:
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    refused: list[Refused] = field(default_factory=list)
    conflicts: list[Resolved] = field(default_factory=list)


def _guards(ctx: TenantContext, source: str, xids: list[str]) -> dict[str, str]:
    """external id -> the customer holding its guard: 1 BatchGetItem per 100."""
    wanted = [(keys.xid_guard(ctx, source, x), "U") for x in dict.fromkeys(xids)]
    found = {i.pk: i.customer_id for i in Item.batch_get(wanted, consistent_read=True) if isinstance(i, GuardItem)}
    return {x: found[g] for x in xids if (g := keys.xid_guard(ctx, source, x)) in found}


def _active(profiles: dict[str, CustomerItem], cid: str | None) -> CustomerItem | None:
    item = profiles.get(cid) if cid else None
    return item if item is not None and item.status == "active" else None


def _body(values: dict[str, Any]) -> dict[str, Any]:
    """A new record's non-empty values as a profile (a clear of nothing is nothing)."""
    return rules.patch({p: v for p, v in values.items() if not rules.empty(v)}, {})


def _refuse(r: CustomerRecord, reason: str, errors: list[dict[str, Any]] | None = None) -> Refused:
    return Refused(r.index, r.seq, "customer", r.external_id, reason, errors or [])


def _identity_refusal(r: CustomerRecord, res: identity.Resolution) -> Refused:
    if res.status == "conflict":
        return _refuse(
            r,
            f"identity conflict {res.conflict_id}, recorded for review (GET /v1/identity/conflicts): "
            f"{getattr(res.error, 'detail', '') or 'the record matches another customer'}",
        )
    error = res.error
    errors = [{k: v for k, v in e.items() if k != "input"} for e in res.errors or []]
    return _refuse(r, getattr(error, "detail", None) or str(error) or "rejected", errors)


class _Batch:
    def __init__(self, ctx: TenantContext, agent_id: str, source: str) -> None:
        self.ctx, self.agent_id, self.source = ctx, agent_id, source
        self.out = Applied()

    def _plan(self, r: CustomerRecord, item: CustomerItem) -> dict[str, Any]:
        """The record's fields against the customer: conflicts kept, the patch to write."""
        data, cloud = item.data or {}, hlc.of_iso(item.updated_at)
        plan = rules.plan(r.changes, data, cloud)
        by_path = {c.path: c for c in r.changes}
        outcome = self.out.outcomes[r.index]
        for d in plan.conflicts:
            change = by_path[d.path]
            self.out.conflicts.append(
                Resolved(
                    r.seq,
                    item.customer_id,
                    r.external_id,
                    d.path,
                    change.value,
                    d.cur,
                    d.winner or "cloud",
                    change.rule,
                    change.hlc,
                    cloud,
                )
            )
            outcome.conflicts.append({"field": d.path, "winner": d.winner or "cloud", "rule": change.rule})
        return rules.patch(plan.applied, data)

    def round(self, batch: list[CustomerRecord]) -> None:
        ctx, source = self.ctx, self.source
        held = _guards(ctx, source, [r.external_id for r in batch])
        named = [r.customer_id for r in batch if r.external_id not in held and r.customer_id]
        profiles = resolved_profiles(ctx, [*held.values(), *named])
        known: list[tuple[CustomerRecord, dict[str, Any]]] = []
        new: list[CustomerRecord] = []
        for r in batch:
            self.out.outcomes[r.index] = Outcome(r.seq, "unchanged")
            item = _active(profiles, held.get(r.external_id))
            if item is not None:
                self.out.outcomes[r.index].customer_id = item.customer_id
                body = self._plan(r, item)
                if body:
                    known.append((r, body))
            elif r.external_id in held:
                self._refused(r, _refuse(r, "the customer this external id was linked to is no longer active"))
            elif r.customer_id:
                self._link(r, _active(profiles, r.customer_id))
            else:
                new.append(r)
        self._write(known, fill_only=False)
        matched = self._create(new)
        self._write(matched, fill_only=False)

    def _refused(self, r: CustomerRecord, refusal: Refused) -> None:
        self.out.outcomes.pop(r.index, None)
        self.out.refused.append(refusal)
        self.out.conflicts = [c for c in self.out.conflicts if c.seq != r.seq]

    def _link(self, r: CustomerRecord, item: CustomerItem | None) -> None:
        """Attach the external id to the customer the record names, with the fields its
        rules apply (1 TransactWriteItems)."""
        from crm.customers import service
        from crm.customers.schemas import CustomerPatch
        from crm.errors import DomainError

        if item is None:
            self._refused(
                r,
                _refuse(
                    r,
                    f"customer {r.customer_id} not found",
                    [{"field": "customer_id", "code": "not_found", "detail": "no active customer has this id"}],
                ),
            )
            return
        self.out.outcomes[r.index].customer_id = item.customer_id
        body = self._plan(r, item)
        try:
            patch = CustomerPatch.model_validate({**body, "external_ids": {self.source: r.external_id}})
            service.update(self.ctx, item.customer_id, patch)
        except DomainError as exc:
            self._refused(r, _refuse(r, exc.detail if hasattr(exc, "detail") else str(exc)))
            return
        self.out.outcomes[r.index].status = "updated"

    def _write(self, todo: list[tuple[CustomerRecord, dict[str, Any]]], *, fill_only: bool) -> None:
        if not todo:
            return
        results = identity.upsert(
            self.ctx, self.source, [(r.external_id, body) for r, body in todo], fill_only=fill_only
        )
        for (r, _), res in zip(todo, results, strict=True):
            if res.status in ("conflict", "error"):
                self._refused(r, _identity_refusal(r, res))
            elif res.status == "updated":
                self.out.outcomes[r.index].status = "updated"

    def _create(self, new: list[CustomerRecord]) -> list[tuple[CustomerRecord, dict[str, Any]]]:
        """New to the cloud: created, or matched (by email or phone) and filled; returns the
        matched records' fields that the rules then apply over the customer's values."""
        if not new:
            return []
        bodies = [_body({c.path: c.value for c in r.changes}) for r in new]
        results = identity.upsert(
            self.ctx, self.source, list(zip([r.external_id for r in new], bodies, strict=True)), fill_only=True
        )
        follow: list[tuple[CustomerRecord, dict[str, Any]]] = []
        for r, res in zip(new, results, strict=True):
            outcome = self.out.outcomes[r.index]
            if res.status in ("conflict", "error"):
                self._refused(r, _identity_refusal(r, res))
                continue
            outcome.customer_id = res.customer_id
            outcome.status = "created" if res.status == "created" else "updated"
            if res.status != "created" and res.profile is not None:
                body = self._plan(r, res.profile)
                if body:
                    follow.append((r, body))
        return follow

    def describe(self, records: list[CustomerRecord]) -> None:
        """Each answered record's values and updated_at as the cloud holds them now
        (1 BatchGetItem, +1 for merged ones)."""
        ids = [o.customer_id for o in self.out.outcomes.values() if o.customer_id]
        profiles = resolved_profiles(self.ctx, ids) if ids else {}
        for r in records:
            outcome = self.out.outcomes.get(r.index)
            item = profiles.get(outcome.customer_id) if outcome and outcome.customer_id else None
            if outcome is None or item is None:
                continue
            outcome.customer_id = item.customer_id
            outcome.values = rules.values(r.paths, item.data or {})
            outcome.updated_at = item.updated_at


def rounds(records: list[CustomerRecord]) -> list[list[CustomerRecord]]:
    """Round k holds the k-th record of each external id (in the batch's order)."""
    out: list[list[CustomerRecord]] = []
    seen: dict[str, int] = {}
    for r in records:
        k = seen.get(r.external_id, 0)
        seen[r.external_id] = k + 1
        if k == len(out):
            out.append([])
        out[k].append(r)
    return out


def apply(ctx: TenantContext, agent_id: str, source: str, records: list[CustomerRecord]) -> Applied:
    """Apply the (new, valid) customer records of a batch; nothing raised for one record."""
    batch = _Batch(ctx, agent_id, source)
    for todo in rounds(records):
        batch.round(todo)
    batch.describe(records)
    return batch.out


def current(ctx: TenantContext, source: str, records: list[CustomerRecord]) -> dict[int, Outcome]:
    """Duplicates: nothing written; the customer each external id is linked to now and its
    values (1 BatchGetItem of guards, 1 of profiles)."""
    held = _guards(ctx, source, [r.external_id for r in records])
    profiles = resolved_profiles(ctx, list(held.values())) if held else {}
    out = {}
    for r in records:
        item = profiles.get(held.get(r.external_id, ""))
        out[r.index] = Outcome(
            r.seq,
            "duplicate",
            customer_id=item.customer_id if item else None,
            values=rules.values(r.paths, item.data or {}) if item else {},
            updated_at=item.updated_at if item else None,
        )
    return out
