"""How accounts and invoices map onto keys (pure: no I/O).

One tenant, ``P = T#<tenant>#``:

| item | pk | sk |
|---|---|---|
| account profile | ``P A#<account>`` | ``PROFILE`` |
| balance, latest orders and invoices | ``P A#<account>`` | ``SUMMARY`` |
| contact | ``P A#<account>`` | ``CONTACT#<customer>`` |
| account order | ``P A#<account>`` | ``A#ORD#<source>#<external id>`` |
| account's invoice copy | ``P A#<account>`` | ``A#INV#<issued_at>#<invoice>`` |
| customer's invoice copy | ``P C#<customer>`` | ``A#INV#<issued_at>#<invoice>`` |
| invoice | ``P INV#<invoice>`` | ``INVOICE`` |
| external-id guard | ``P U#account#<source>#<xid>``, ``P U#invoice#<source>#<xid>`` | ``U`` |

Descending from ``SUMMARY``, the account's partition reads SUMMARY, PROFILE, then the
contacts; orders and invoices (``A#``) sort below them, out of the 360's way.
"""

from __future__ import annotations

import re
import unicodedata

from ulid import ULID

from crm.context import TenantContext

PROFILE = "PROFILE"
SUMMARY = "SUMMARY"
CONTACT = "CONTACT#"
ORDER = "A#ORD#"
INVOICE = "A#INV#"
HOME = "INVOICE"
GUARD = "U"

ACCOUNT_ID = re.compile(r"^acc_[0-9A-HJKMNP-TV-Z]{26}$")
INVOICE_ID = re.compile(r"^inv_[0-9A-HJKMNP-TV-Z]{26}$")
ACCOUNT_ID_PATTERN = ACCOUNT_ID.pattern
INVOICE_ID_PATTERN = INVOICE_ID.pattern


def account_id() -> str:
    return f"acc_{ULID()}"


def invoice_id() -> str:
    return f"inv_{ULID()}"


def account_pk(ctx: TenantContext, aid: str) -> str:
    return ctx.key("A", aid)


def list_pk(ctx: TenantContext) -> str:
    return ctx.key("ACCOUNTS")


def name_pk(ctx: TenantContext) -> str:
    return ctx.key("ACCOUNTS", "NAME")


def guard_pk(ctx: TenantContext, what: str, source: str, external_id: str) -> str:
    """``what``: account or invoice."""
    return ctx.key("U", what, source, external_id)


def contact_sk(customer_id: str) -> str:
    return CONTACT + customer_id


def contact_index(ctx: TenantContext, customer_id: str) -> str:
    return ctx.key("CONTACT", customer_id)


def order_sk(source: str, external_id: str) -> str:
    return f"{ORDER}{source}#{external_id}"


def invoice_pk(ctx: TenantContext, iid: str) -> str:
    return ctx.key("INV", iid)


def invoice_copy_sk(issued_at: str, iid: str) -> str:
    return f"{INVOICE}{issued_at}#{iid}"


def normalised_name(name: str) -> str:
    """What name search compares: accents dropped, case folded, runs of space and
    punctuation one space ("Café  Müller-GmbH" and "cafe muller gmbh" are the same)."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return re.sub(r"[\W_]+", " ", plain).strip()
