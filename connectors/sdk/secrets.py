"""Secret config fields: marked in the schema (``Secret``), never returned; and the
webhook signature helpers. Rapport seals the marked fields with KMS when a connection is
saved (connectors/sealing.py, outside the SDK: the SDK needs no AWS library)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel, Field
from pydantic.fields import FieldInfo

SECRET_MARK = "x-rapport-secret"


def header_safe(value: str) -> str:
    """Tokens travel in HTTP headers (and sign webhooks): printable ASCII only, so a pasted
    "shpat_…" placeholder or a stray newline is refused when saved, not by the worker.
    The message never repeats the value."""
    if not all(" " <= ch <= "~" for ch in value) or value != value.strip():
        raise ValueError(
            "must be printable ASCII without spaces around it or line breaks (paste the real token, not a placeholder)"
        )
    return value


Secret = Annotated[
    str,
    Field(min_length=1, max_length=512, json_schema_extra={SECRET_MARK: True, "writeOnly": True}),
    AfterValidator(header_safe),
]


def printable(value: str) -> str:
    """A secret that never travels in a header (a webhook signing secret) may be any
    printable text, accents included (EasyPost's golden vector signs with "sécret"); no
    line breaks, no spaces around it. The message never repeats the value."""
    if not value.isprintable() or value != value.strip():
        raise ValueError("must be printable text without spaces around it or line breaks")
    return value


TextSecret = Annotated[
    str,
    Field(min_length=1, max_length=512, json_schema_extra={SECRET_MARK: True, "writeOnly": True}),
    AfterValidator(printable),
]


def _is_mark(meta: Any) -> bool:
    return (
        isinstance(meta, FieldInfo)
        and isinstance(meta.json_schema_extra, dict)
        and bool(meta.json_schema_extra.get(SECRET_MARK))
    )


def _marked(annotation: Any) -> bool:
    """Whether ``Secret`` appears anywhere in a type (``Secret | None`` keeps it inside the union)."""
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        return any(_is_mark(m) for m in meta) or _marked(base)
    return any(_marked(arg) for arg in get_args(annotation))


def secret_fields(config: type[BaseModel]) -> set[str]:
    """The config fields typed ``Secret`` (also optional ones): sealed, never returned."""
    return {
        name
        for name, info in config.model_fields.items()
        if _is_mark(info) or any(_is_mark(m) for m in info.metadata) or _marked(info.annotation)
    }


def hmac_base64(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, body)): Shopify's and WooCommerce's webhook signature."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def same(a: str | None, b: str) -> bool:
    """Constant-time comparison of a received signature with the expected one."""
    return a is not None and hmac.compare_digest(a.encode(), b.encode())
