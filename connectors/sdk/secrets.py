"""Secret config fields: marked in the schema, sealed with a KMS data key, never returned.

Envelope encryption: each save asks KMS for a fresh data key (GenerateDataKey, AES-256),
encrypts the secret fields with AES-GCM under it, and keeps only the KMS-encrypted copy of
the key beside the ciphertext. The encryption context names the tenant and the
connection, so a sealed blob copied to another tenant's connection does not decrypt.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel, Field
from pydantic.fields import FieldInfo

SECRET_MARK = "x-rapport-secret"


def header_safe(value: str) -> str:
    """Tokens travel in HTTP headers (and sign webhooks): printable ASCII only, so a pasted
    "shpat_…" placeholder or a stray newline is refused when saved, not by the worker.
    The message never repeats the value."""
    if not all(" " <= ch <= "~" for ch in value) or value != value.strip():
        raise ValueError("must be printable ASCII without spaces around it or line breaks "
                         "(paste the real token, not a placeholder)")
    return value


Secret = Annotated[str, Field(min_length=1, max_length=512, json_schema_extra={SECRET_MARK: True, "writeOnly": True}),
                   AfterValidator(header_safe)]


def _is_mark(meta: Any) -> bool:
    return isinstance(meta, FieldInfo) and isinstance(meta.json_schema_extra, dict) \
        and bool(meta.json_schema_extra.get(SECRET_MARK))


def _marked(annotation: Any) -> bool:
    """Whether ``Secret`` appears anywhere in a type (``Secret | None`` keeps it inside the union)."""
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        return any(_is_mark(m) for m in meta) or _marked(base)
    return any(_marked(arg) for arg in get_args(annotation))


def secret_fields(config: type[BaseModel]) -> set[str]:
    """The config fields typed ``Secret`` (also optional ones): sealed, never returned."""
    return {name for name, info in config.model_fields.items()
            if _is_mark(info) or any(_is_mark(m) for m in info.metadata) or _marked(info.annotation)}


def key_id() -> str:
    return os.environ.get("RAPPORT_KMS_KEY", "alias/rapport-connections")


def _kms():
    from crm.aws import client

    return client("kms")


def seal(tenant_id: str, connection_id: str, secrets: dict[str, str]) -> dict[str, str]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    context = {"tenant": tenant_id, "connection": connection_id}
    key = _kms().generate_data_key(KeyId=key_id(), KeySpec="AES_256", EncryptionContext=context)
    nonce = os.urandom(12)
    aad = json.dumps(context, sort_keys=True).encode()
    blob = AESGCM(key["Plaintext"]).encrypt(nonce, json.dumps(secrets).encode(), aad)
    return {"key": base64.b64encode(key["CiphertextBlob"]).decode(),
            "nonce": base64.b64encode(nonce).decode(), "data": base64.b64encode(blob).decode()}


def unseal(tenant_id: str, connection_id: str, sealed: dict[str, str]) -> dict[str, str]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not sealed:
        return {}
    context = {"tenant": tenant_id, "connection": connection_id}
    key = _kms().decrypt(CiphertextBlob=base64.b64decode(sealed["key"]), EncryptionContext=context)
    aad = json.dumps(context, sort_keys=True).encode()
    plain = AESGCM(key["Plaintext"]).decrypt(base64.b64decode(sealed["nonce"]),
                                             base64.b64decode(sealed["data"]), aad)
    return json.loads(plain)


def hmac_base64(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, body)): Shopify's and WooCommerce's webhook signature."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def same(a: str | None, b: str) -> bool:
    """Constant-time comparison of a received signature with the expected one."""
    return a is not None and hmac.compare_digest(a.encode(), b.encode())
