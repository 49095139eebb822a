"""Batch upsert: up to 100 records, each matched by external id or email, with a
result per record. One bad record never blocks or partially writes the others.

Requests for 100 records: 1 BatchGetItem per 100 guard keys, 1 BatchGetItem per
100 matched profiles, then TransactWriteItems packed up to 100 items each (a new
customer with an email is 2 items, so 100 of them take 2 transactions). If a packed
transaction is cancelled (a race, a conflict), its records are retried one by one
so each gets its own precise result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from crm import clock
from crm.billing import limits
from crm.context import TenantContext
from crm.customers import records
from crm.customers.schemas import CustomerPatch
from crm.customers.service import batch_profiles, new_data, new_item, patched_data, require_identity
from crm.customers.writes import ProfileWrite, execute_packed
from crm.errors import Conflict, DomainError, Invalid, field_errors
from crm.storage import GuardItem

MAX_RECORDS = 100


@dataclass
class RecordResult:
    index: int
    status: str  # created | updated | unchanged | error
    id: str | None = None
    error: DomainError | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


def _chunks(seq: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def upsert(ctx: TenantContext, raw_records: list[Any]) -> list[RecordResult]:
    if not 1 <= len(raw_records) <= MAX_RECORDS:
        raise Invalid(f"records must hold 1 to {MAX_RECORDS} items", field="records")
    results: list[RecordResult | None] = [None] * len(raw_records)
    parsed: dict[int, CustomerPatch] = {}
    for i, raw in enumerate(raw_records):
        try:
            parsed[i] = CustomerPatch.model_validate(raw)
        except ValidationError as exc:
            results[i] = RecordResult(
                i, "error", error=Invalid("record is invalid", field=f"records[{i}]"), errors=field_errors(exc)
            )
    now = clock.now_iso()

    # Which guards each record names, and duplicates inside the batch.
    wanted: dict[int, list[str]] = {}
    claimed: dict[str, int] = {}
    for i, rec in parsed.items():
        keys = list(records.guards(ctx, new_data(rec, now)))
        if not keys:
            results[i] = RecordResult(
                i,
                "error",
                error=Invalid("a record needs an email or external_ids to match on", field=f"records[{i}].email"),
            )
            continue
        dup = next((claimed[k] for k in keys if k in claimed), None)
        if dup is not None:
            results[i] = RecordResult(
                i,
                "error",
                error=Invalid(
                    f"record {dup} of this batch has the same email or external id",
                    field=f"records[{i}]",
                    code="duplicate_in_batch",
                ),
            )
            continue
        claimed.update({k: i for k in keys})
        wanted[i] = keys

    holders: dict[str, str] = {}
    for chunk in _chunks(list(claimed), 100):
        holders.update(
            {g.pk: g.customer_id for g in GuardItem.batch_get([(k, "U") for k in chunk], consistent_read=True)}
        )
    profiles = batch_profiles(ctx, list(set(holders.values())))

    plans: list[tuple[int, ProfileWrite]] = []
    planned: dict[str, int] = {}  # customer id -> the record that already writes it
    budget = limits.Budget(ctx)  # the plan's customers limit, per new record
    for i, keys in wanted.items():
        rec = parsed[i]
        matched = {holders[k] for k in keys if k in holders}
        if len(matched) > 1:
            results[i] = RecordResult(
                i,
                "error",
                error=Conflict(
                    "the record's email and external ids belong to different customers",
                    field=f"records[{i}]",
                    customer_ids=sorted(matched),
                    code="ambiguous_match",
                ),
            )
            continue
        if matched and next(iter(matched)) in planned:
            results[i] = RecordResult(
                i,
                "error",
                error=Invalid(
                    f"record {planned[next(iter(matched))]} of this batch matches the same customer",
                    field=f"records[{i}]",
                    code="duplicate_in_batch",
                ),
            )
            continue
        try:
            if matched:
                item = profiles[matched.pop()]
                planned[item.customer_id] = i
                old = item.data or {}
                data = patched_data(old, rec, now)
                if data == old:
                    results[i] = RecordResult(i, "unchanged", id=item.customer_id)
                    continue
                require_identity(data)
                item.data, item.updated_at = data, now
                records.set_list_keys(ctx, item)
                plans.append((i, ProfileWrite.plan(ctx, item, old, data, is_new=False)))
            else:
                data = new_data(rec, now)
                require_identity(data)
                refused = budget.take(field=f"records[{i}]")
                if refused is not None:
                    results[i] = RecordResult(i, "error", error=refused)
                    continue
                item = new_item(ctx, data, now)
                plans.append((i, ProfileWrite.plan(ctx, item, None, data, is_new=True)))
        except DomainError as exc:
            results[i] = RecordResult(i, "error", error=exc)

    for i, w, failed in execute_packed(plans):
        if failed is not None:
            failed.field = f"records[{i}].{failed.field}" if failed.field else f"records[{i}]"
            results[i] = RecordResult(i, "error", error=failed)
        else:
            results[i] = RecordResult(i, "created" if w.is_new else "updated", id=w.item.customer_id)
    budget.done(sum(1 for r in results if r is not None and r.status == "created"))
    return [r for r in results if r is not None]
