"""Everything Rapport holds about a person, as JSON (GDPR art. 20), from the declarations.

``GET /v1/customers/{id}/export`` pages through two sources, both read by Query:

1. the customer's partition, in sort-key order: every item whose kind is declared with
   ``export=True`` (crm/schema.py) goes to its section (orders, ledger, timeline, the
   points book, …; a kind added later appears under its own name). The first page also
   has the profile, its identities and its consent. 1 GetItem (+1 for a merged id) + 1
   Query a page.
2. the tenant's identity conflicts (gsi1 ``P CONFLICTS``), keeping those that name the
   customer or their identifiers: 1 Query a page.

``next_cursor`` leads from one page to the next (the cursor names the customer, so it
cannot page through another's export); null on the last page.
"""

from __future__ import annotations

from typing import Any, cast

from crm import erasure, schema
from crm.context import TenantContext
from crm.errors import Invalid
from crm.paging import decode_cursor, encode_cursor, start_key

# discriminator -> section of the export; an exported kind not named here keeps its name
SECTIONS = {
    "event": "timeline",
    "order": "orders",
    "ledger": "ledger",
    "loyalty": "loyalty",
    "identity_conflict": "conflicts",
    "checkout": "checkouts",
    "customer_invoice": "invoices",
}
_KEYS = {"pk", "sk", "kind", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "ttl"}
IDENTITY_FIELDS = ("email", "phone", "external_ids", "previous_emails", "aliases")


def _plain(item: Any) -> dict[str, Any]:
    return {k: v for k, v in item.attribute_values.items() if k not in _KEYS}


def export(ctx: TenantContext, customer_id: str, *, limit: int, cursor: str | None = None) -> dict[str, Any]:
    from crm.customers import records, service
    from crm.storage import CustomerItem, IdentityConflictItem, Item

    profile = service.resolve(ctx, customer_id)
    cid = profile.customer_id
    kind = f"export@{cid}"
    after = decode_cursor(cursor, kind)
    phase, _, position = (after or "p:").partition(":")
    if phase not in ("p", "c"):
        raise Invalid("cursor is malformed", field="cursor")
    out: dict[str, Any] = {"customer_id": cid, "sections": {}}
    if after is None:
        data = profile.data or {}
        out["profile"] = records.to_customer(profile).model_dump(mode="json")
        out["identities"] = {k: data[k] for k in IDENTITY_FIELDS if data.get(k)}
        out["consent"] = data.get("consent") or {}
    exported = {
        cls
        for cls in schema.item_classes()
        if (k := schema.declared(cls)) and k.export and k.pk == schema.CUSTOMER_PARTITION
    }
    nxt = None
    if phase == "p":
        pk = records.profile_pk(ctx, cid)
        start = start_key(pk=pk, sk=position) if position else None
        rows = list(
            Item.query(pk, limit=limit + 1, page_size=limit + 1, last_evaluated_key=start, consistent_read=True)
        )
        more, rows = len(rows) > limit, rows[:limit]
        for row in rows:
            if type(row) in exported and not isinstance(row, CustomerItem):
                name = schema.name_of(type(row))
                out["sections"].setdefault(SECTIONS.get(name, name), []).append(_plain(row))
        nxt = f"p:{rows[-1].sk}" if more else "c:"
    else:
        terms = erasure.terms_of(cid, profile.data or {}, names=False)  # id, emails, phones
        index = ctx.key("CONFLICTS")
        start = None
        if position:
            conflict = position.rsplit("#", 1)[-1]
            start = start_key(gsi1pk=index, gsi1sk=position, pk=ctx.key("CONFLICT", conflict), sk="CONFLICT")
        rows = list(
            IdentityConflictItem.gsi1.query(index, limit=limit + 1, page_size=limit + 1, last_evaluated_key=start)
        )
        more, rows = len(rows) > limit, rows[:limit]
        section = out["sections"].setdefault(SECTIONS["identity_conflict"], [])
        section += [_plain(r) for r in rows if erasure.mentions(cast(Any, r).data, terms, cid)]
        nxt = f"c:{rows[-1].gsi1sk}" if more else None
    out["next_cursor"] = encode_cursor(kind, nxt) if nxt else None
    return out
