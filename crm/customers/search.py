"""Prefix search over given name, family name, email and phone, without a Scan.

Each active profile has one search entry per token (an ``IndexEntryItem``), written in
the profile's own transaction (crm/customers/writes.py), so a profile and its entries
never disagree after a commit:

    pk ``P S#<first character of the token>``   sk ``<token>#<customer id>``

Tokens: each word of the given and family names (accents dropped, case-folded,
punctuation removed: "Zoë O'Brien" -> ``zoe``, ``obrien``), the normalized email
(``ann.lee@example.com``) and the phone's E.164 digits (``14155552671``). A customer
has at most ``MAX_TOKENS`` entries (typically 3-4). Partitioning by the first character
spreads a tenant's entries over ~40 partition keys.

A page of ``q`` is 1 Query (``begins_with(sk, <query token>)``) + 1 BatchGetItem of the
profiles: 2 requests. Every entry is checked against its profile (an erased, merged or
changed profile, or an entry a crash left behind, is never shown), and a customer with
several matching tokens is listed at its first one only, so it appears once across pages.
A query of several words uses its longest word for the Query and the others as filters.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from crm.context import TenantContext
from crm.errors import Invalid
from crm.paging import Page, decode_cursor, encode_cursor, start_key
from crm.storage import IndexEntryItem

MAX_TOKENS = 12
MAX_TOKEN_CHARS = 100
_PHONE_QUERY = re.compile(r"^\+?[\d\s().\-]*\d[\d\s().\-]*$")
_EMAILISH = re.compile(r"[@.]")


def _fold(text: str) -> str:
    """Case-folded, without accents (NFKD, combining marks dropped)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _name_words(text: str) -> list[str]:
    words = (re.sub(r"[^\w]", "", w) for w in re.split(r"[\s\-‐-―]+", _fold(text)))
    return [w[:MAX_TOKEN_CHARS] for w in words if w]


def tokens(data: dict[str, Any]) -> set[str]:
    """The search tokens of a profile's data (empty for an erased or merged one)."""
    out: set[str] = set()
    name = data.get("name") or {}
    for part in (name.get("given"), name.get("family")):
        if part:
            out.update(_name_words(part))
    if data.get("email"):
        out.add(data["email"][:MAX_TOKEN_CHARS])
    if data.get("phone"):
        digits = re.sub(r"\D", "", data["phone"])
        if digits:
            out.add(digits)
    return set(sorted(out)[:MAX_TOKENS])


def entry_pk(ctx: TenantContext, token: str) -> str:
    return ctx.key("S", token[0])


def entries(ctx: TenantContext, customer_id: str, data: dict[str, Any]) -> set[tuple[str, str]]:
    """(pk, sk) of every search entry the profile should have."""
    return {(entry_pk(ctx, t), f"{t}#{customer_id}") for t in tokens(data)}


def entry_items(ctx: TenantContext, customer_id: str, data: dict[str, Any]) -> list[IndexEntryItem]:
    return [IndexEntryItem(pk, sk, customer_id=customer_id) for pk, sk in sorted(entries(ctx, customer_id, data))]


def query_words(q: str) -> list[str]:
    """The query as tokens: a phone-like query is its digits, a word with ``@`` or ``.``
    an email prefix, any other word a name word."""
    q = q.strip()
    if _PHONE_QUERY.match(q):
        return [re.sub(r"\D", "", q)[:MAX_TOKEN_CHARS]]
    words: list[str] = []
    for raw in q.split():
        if _EMAILISH.search(raw):
            words.append(_fold(raw)[:MAX_TOKEN_CHARS])
        else:
            words += _name_words(raw)
    return list(dict.fromkeys(w for w in words if w))


def search(ctx: TenantContext, q: str, *, limit: int, cursor: str | None = None) -> Page:
    """1 Query + 1 BatchGetItem per page (none when the Query finds nothing)."""
    from crm.customers import records
    from crm.customers.service import resolved_profiles

    if re.search("[\ud800-\udfff]", q):
        raise Invalid("q is not valid Unicode text", field="q")
    words = query_words(q)
    if not words:
        raise Invalid("q must contain a letter or a digit", field="q")
    lead = max(words, key=len)
    kind = "search:" + " ".join(sorted(words))
    after = decode_cursor(cursor, kind)
    pk = entry_pk(ctx, lead)
    start = None if after is None else start_key(pk=pk, sk=after)
    rows = list(
        IndexEntryItem.query(
            pk,
            IndexEntryItem.sk.startswith(lead),
            limit=limit + 1,
            page_size=limit + 1,
            last_evaluated_key=start,
            consistent_read=True,
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    profiles = resolved_profiles(ctx, [r.customer_id for r in rows]) if rows else {}
    found = []
    for row in rows:
        profile = profiles.get(row.customer_id)
        if profile is None or profile.status != "active" or profile.customer_id != row.customer_id:
            continue
        own = tokens(profile.data or {})
        if not all(any(t.startswith(w) for t in own) for w in words):
            continue
        token = row.sk.rsplit("#", 1)[0]
        if token != min(t for t in own if t.startswith(lead)):
            continue  # listed at its first matching token
        found.append(records.to_customer(profile))
    nxt = encode_cursor(kind, rows[-1].sk) if more else None
    return Page(found, nxt)
