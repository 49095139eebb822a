"""Pure decisions of a sync, kept apart from I/O so they can be tested alone:
what an upload result does to the bases and the local row, and what a fetched cloud
customer does to a local row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rapport_agent.mapping import MISSING, Ref, cloud_value, normalize


@dataclass
class FieldUpdate:
    path: str
    ref: Ref


@dataclass
class ResultPlan:
    refs: list[FieldUpdate] = field(default_factory=list)
    # path -> (the value sent, the cloud's value): write the cloud's value locally if the
    # local value is still the one sent
    writebacks: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def customer_result(seq: int, payload: dict[str, Any], result: dict[str, Any], refs: dict[str, Ref]) -> ResultPlan:
    """An accepted customer record's result (created/updated/unchanged/duplicate).

    Each field's base becomes the cloud's value now (``values``). When the cloud kept a
    different value (it won the conflict, or stores another form) the local row gets it
    back, unless the field is owned locally (then the local value stays the reference: an
    owner ``local`` field never loops) or a newer local change is already queued."""
    plan = ResultPlan()
    values = result.get("values") or {}
    for path, sent_entry in (payload.get("fields") or {}).items():
        sent = sent_entry.get("value")
        cloud = normalize(path, values[path]) if path in values else sent
        old = refs.get(path, Ref())
        if old.pending != seq:  # a newer record carries the field: it decides the local value
            plan.refs.append(FieldUpdate(path, Ref(cloud, old.ref, old.pending)))
            continue
        if cloud == sent:
            plan.refs.append(FieldUpdate(path, Ref(cloud, cloud, None)))
        elif sent_entry.get("rule") == "local":
            plan.refs.append(FieldUpdate(path, Ref(cloud, sent, None)))
        else:
            plan.refs.append(FieldUpdate(path, Ref(cloud, cloud, None)))
            plan.writebacks[path] = (sent, cloud)
    return plan


@dataclass
class DownPlan:
    writes: dict[str, Any] = field(default_factory=dict)  # path -> the cloud value to write locally
    refs: dict[str, Ref] = field(default_factory=dict)  # path -> its new bases


def customer_down(
    profile: dict[str, Any], local: dict[str, Any], refs: dict[str, Ref], rules: Mapping[str, str]
) -> DownPlan:
    """A cloud customer's fields against a linked local row (``local``: normalized values
    by path). Per field: the cloud value differs from the base and the local value is still
    the base → write it locally and make it the base; the local value changed → leave it
    (the upload of that change resolves the conflict by its rule); a field with a queued
    record → leave it (its result decides); owner ``local`` → never written down."""
    plan = DownPlan()
    for path, rule in rules.items():
        ref = refs.get(path, Ref())
        if ref.pending is not None:
            continue
        cloud = cloud_value(profile, path)
        mine = local.get(path)
        if mine == cloud:
            if ref.synced != cloud or ref.ref != cloud:
                plan.refs[path] = Ref(cloud, cloud, None)
            continue
        if rule == "local":
            continue
        base = None if ref.synced is MISSING else ref.synced
        if cloud == base and ref.synced is not MISSING:
            continue  # the cloud did not change this field; the local change uploads
        if mine == base:
            plan.writes[path] = cloud
            plan.refs[path] = Ref(cloud, cloud, None)
    return plan


def customer_insert(profile: dict[str, Any], paths: list[str]) -> DownPlan:
    """A cloud customer with no local row, for a source that inserts them: every mapped
    field that has a value."""
    plan = DownPlan()
    for path in paths:
        cloud = cloud_value(profile, path)
        plan.refs[path] = Ref(cloud, cloud, None)
        if cloud is not None:
            plan.writes[path] = cloud
    return plan
