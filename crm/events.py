"""Domain events, derived from the table's changes (the DynamoDB stream's OLD/NEW images).

Nothing in the request path publishes events: a committed write *is* the event, so an
event is never emitted for a write that did not happen, nor lost for one that did.
Each event's ``id`` is derived from the fact it reports (``order.paid:<order id>``,
``points.earned:<customer>:<seq>``), so a redelivered or replayed stream record yields
the same ids and every subscriber can de-duplicate on them. The facts' own timeline
entries are derived here too, in memory, from the images of the write that records the
fact, and written in its transaction (crm/timeline.py).

A merge (crm/merge.py) moves items between customers' partitions: the copies it
inserts carry a mark (an order's ``data.moved_from``, a ledger entry's
``detail.merged_from``, a lot's ``merged_from``) and stand for no new fact, so they
derive nothing; the deletes in the old partition derive nothing either. The merge
itself is one event, ``customer.merged``, from the other profile's change of status.

Segment membership (crm/segments/maintain.py) is news too: ``segment.entered`` and
``segment.exited`` are derived from a customer's ``METRICS`` item, its ``memberships``
before and after the write. A build's writes name the segments they changed in ``quiet``
(a new segment's first members are not news); a deleted ``METRICS`` (erasure, merge)
exits every membership it held.
"""

from __future__ import annotations

from typing import Any

from crm.shipments.status import STATUSES

Event = dict[str, Any]
_POINTS_EVENTS = {
    "pending": "points.earned",
    "earn": "points.earned",
    "activate": "points.activated",
    "redeem": "points.redeemed",
    "expire": "points.expired",
    "adjust": "points.adjusted",
    "reverse": "points.reversed",
}


# a shipment's statuses that are news (shipment.<status>); pre_transit is where it starts
_SHIPMENT_NEWS = ("registered", *(s for s in STATUSES if s != "pre_transit"))


# Every event type derive() emits (docs/architecture.md has what each stands for).
TYPES = frozenset(
    {
        "order.placed",
        "order.paid",
        "order.fulfilled",
        "order.cancelled",
        "order.refunded",
        "order.updated",
        "customer.created",
        "customer.updated",
        "customer.erased",
        "customer.merged",
        *_POINTS_EVENTS.values(),
        "points.expiring",
        "tier.changed",
        "segment.entered",
        "segment.exited",
        "checkout.started",
        *(f"shipment.{s}" for s in _SHIPMENT_NEWS),
        "webhook.endpoint_disabled",
    }
)


def _tenant(pk: str) -> str:
    return pk.split("#", 2)[1]


def _event(type_: str, key: str, item: dict[str, Any], occurred_at: str, data: dict[str, Any]) -> Event:
    return {
        "id": f"{type_}:{key}",
        "type": type_,
        "tenant_id": _tenant(item["pk"]),
        "customer_id": item.get("customer_id"),
        "occurred_at": occurred_at,
        "data": data,
    }


def derive(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Event]:
    """The domain events one item change stands for (plain Python images; either may be None)."""
    item = new or old
    kind = (item or {}).get("kind")
    handler = _BY_KIND.get(kind) if isinstance(kind, str) else None
    return handler(old, new) if handler else []


def _order(old: dict | None, new: dict | None) -> list[Event]:
    if new is None:
        return []
    if old is None and (new.get("data") or {}).get("moved_from"):
        return []  # moved to another customer's partition by a merge: no new fact
    oid, data, status = new["order_id"], new["data"], new["status"]
    # the item's time and version too: segments keep the newest state of each order
    # (crm/segments/aggregate.py ``newer``), as the customer's orders read back give it
    state = {
        "order_id": oid,
        "customer_id": new["customer_id"],
        "status": status,
        "data": data,
        "updated_at": new.get("updated_at"),
        "version": new.get("version"),
    }
    before = (old or {}).get("data") or {}
    events = []
    if old is None:
        events.append(_event("order.placed", oid, new, data["placed_at"], state))
    elif data.get("revision", 0) > before.get("revision", 0):  # edited at the vendor
        events.append(
            _event("order.updated", f"{oid}:{data['revision']}", new, data.get("edited_at") or new["updated_at"], state)
        )
    for stamp, type_ in (
        ("paid_at", "order.paid"),
        ("fulfilled_at", "order.fulfilled"),
        ("cancelled_at", "order.cancelled"),
    ):
        if data.get(stamp) and not before.get(stamp):
            events.append(_event(type_, oid, new, data[stamp], state))
    seen = {r["id"] for r in before.get("refunds", [])}
    for refund in data.get("refunds", []):
        if refund["id"] not in seen:
            events.append(
                _event(
                    "order.refunded", f"{oid}:{refund['id']}", new, refund["refunded_at"], {**state, "refund": refund}
                )
            )
    return events


def _customer(old: dict | None, new: dict | None) -> list[Event]:
    if new is None:
        return []
    cid, version = new["customer_id"], new.get("version")
    summary = {"customer_id": cid, "version": version, "status": new.get("status")}
    if old is None:
        return [_event("customer.created", cid, new, new["created_at"], summary)]
    if new.get("status") == "erased" and old.get("status") != "erased":
        return [_event("customer.erased", cid, new, new.get("erased_at") or new["updated_at"], summary)]
    if new.get("status") == "merged" and old.get("status") != "merged":
        return [
            _event("customer.merged", cid, new, new["updated_at"], {**summary, "merged_into": new.get("merged_into")})
        ]
    if new.get("status") in ("merging", "merged"):
        return []  # a merge's progress: its one event is customer.merged
    if new.get("version") != old.get("version"):
        changed = sorted(
            k
            for k in set(new.get("data") or {}) | set(old.get("data") or {})
            if (new.get("data") or {}).get(k) != (old.get("data") or {}).get(k)
        )
        if not changed and new.get("status") == old.get("status"):
            return []  # only bookkeeping changed (a merge's marker on its survivor)
        return [_event("customer.updated", f"{cid}:{version}", new, new["updated_at"], {**summary, "changed": changed})]
    return []


def _loyalty(old: dict | None, new: dict | None) -> list[Event]:
    if new is None:
        return []
    cid = new["customer_id"]
    book, before = new.get("book") or {}, (old or {}).get("book") or {}
    if book.get("merged_into"):
        return []  # closed by a merge: its points went on to the survivor's book
    events = []
    if book.get("tier") != before.get("tier") and book.get("tier_since"):
        events.append(
            _event(
                "tier.changed",
                f"{cid}:{book['tier_since']}",
                new,
                book["tier_since"],
                {"customer_id": cid, "from": before.get("tier"), "to": book.get("tier")},
            )
        )
    old_lots = before.get("lots") or {}
    for lid, lot in (book.get("lots") or {}).items():
        if lid not in old_lots and lot.get("merged_from"):
            continue  # came with a merged book: announced there already, if due
        if lot.get("warned") and not (old_lots.get(lid) or {}).get("warned"):
            events.append(
                _event(
                    "points.expiring",
                    f"{cid}:{lid}",
                    new,
                    new["updated_at"],
                    {"customer_id": cid, "lot": lid, "points": lot["left"], "expires_at": lot["expires_at"]},
                )
            )
    return events


def _ledger(old: dict | None, new: dict | None) -> list[Event]:
    if new is None or old is not None:
        return []  # entries are append-only: only an insert is news
    entry = new["entry"]
    if (entry.get("detail") or {}).get("merged_from"):
        return []  # a merged customer's entry, copied to the survivor's ledger
    type_ = _POINTS_EVENTS[entry["type"]]
    return [
        _event(
            type_,
            f"{new['customer_id']}:{entry['seq']}",
            new,
            entry["at"],
            {"customer_id": new["customer_id"], **entry},
        )
    ]


def _metrics(old: dict | None, new: dict | None) -> list[Event]:
    """Memberships gained and lost by one write of a customer's ``METRICS``. Ids name the
    membership (customer, segment, the ``since`` it began), so a replay gives the same
    ids and leaving then re-entering later is a new pair of events."""
    item = new or old
    assert item is not None
    cid = item["customer_id"]
    before = (old or {}).get("memberships") or {}
    after = (new or {}).get("memberships") or {}
    quiet = set((new or {}).get("quiet") or ())
    at = (new or old or {}).get("updated_at") or ""
    events = []
    for sid in sorted(set(before) | set(after)):
        if sid in quiet:
            continue
        was, now = before.get(sid), after.get(sid)
        if was and now and was.get("since") == now.get("since"):
            continue  # still a member (a rule's new version, a new name)
        if was:
            data = {"customer_id": cid, "segment_id": sid, "name": was.get("name")}
            events.append(_event("segment.exited", f"{cid}:{sid}:{was.get('since')}", item, at, data))
        if now:
            data = {"customer_id": cid, "segment_id": sid, "name": now.get("name")}
            events.append(
                _event("segment.entered", f"{cid}:{sid}:{now.get('since')}", item, now.get("since") or at, data)
            )
    return events


def _checkout(old: dict | None, new: dict | None) -> list[Event]:
    """A started checkout (``POST /v1/checkouts``): its insert is the news; the id is the
    checkout's, so a replay or a repeated POST is the same event."""
    if new is None or old is not None:
        return []
    data = {"customer_id": new["customer_id"], "checkout_id": new["checkout_id"], **(new.get("data") or {})}
    return [_event("checkout.started", f"{new['customer_id']}:{new['checkout_id']}", new, new["started_at"], data)]


def _shipment(old: dict | None, new: dict | None) -> list[Event]:
    """A parcel registered (its insert) and each status it reaches, by checkpoint time:
    ``shipment.<status>:<shipment>:<status_at>``, so a replay or a re-poll that finds
    the same status is the same event. A merge's copy of a shipment that had moved on
    (``updated_at`` after ``created_at``) stands for no new fact."""
    if new is None:
        return []
    sid = new["shipment_id"]
    last = (new.get("checkpoints") or [{}])[-1]
    data = {
        "shipment_id": sid,
        "order_id": new["order_id"],
        "customer_id": new["customer_id"],
        "carrier": new["carrier"],
        "tracking_number": new["tracking_number"],
        "status": new["status"],
        "status_at": new.get("status_at"),
        "message": last.get("message"),
        "location": last.get("location"),
    }
    events = []
    if old is None:
        if new.get("updated_at") != new.get("created_at"):
            return []
        events.append(_event("shipment.registered", sid, new, new["created_at"], data))
    elif old.get("status") == new["status"] and old.get("status_at") == new.get("status_at"):
        return []
    if new["status"] in _SHIPMENT_NEWS and (old or {}).get("status") != new["status"]:
        at = new.get("status_at") or new["updated_at"]
        events.append(_event(f"shipment.{new['status']}", f"{sid}:{at}", new, at, data))
    return events


def _webhook_endpoint(old: dict | None, new: dict | None) -> list[Event]:
    """An endpoint the delivery engine disabled (a 410, or 5 days of failures): the
    tenant hears of it in the feed (a manual disable is the tenant's own doing)."""
    if not old or not new or not old.get("enabled") or new.get("enabled"):
        return []
    reason = new.get("disabled_reason")
    if reason not in ("gone_410", "failing_5_days"):
        return []
    eid = new["endpoint_id"]
    data = {"endpoint_id": eid, "reason": reason, "failing_since": new.get("failing_since")}
    at = new.get("updated_at") or ""
    return [_event("webhook.endpoint_disabled", f"{eid}:{new.get('version')}", new, at, data)]


_BY_KIND = {
    "order": _order,
    "customer": _customer,
    "loyalty": _loyalty,
    "ledger": _ledger,
    "metrics": _metrics,
    "checkout": _checkout,
    "shipment": _shipment,
    "webhook_endpoint": _webhook_endpoint,
}
KINDS = frozenset(_BY_KIND)  # items of other kinds never stand for an event
