"""Sealing a connection's secret config fields with KMS, outside the SDK (which partners
import, and which runs without boto3 in the on-premise agent).

One KMS ``Encrypt`` per save, of the secrets as JSON (at most 4096 bytes: KMS's limit for
direct encryption, so no data key and no crypto library in the Lambda zip). The encryption
context names the tenant and the connection, so a blob copied to another tenant's
connection, or to another connection, does not decrypt. Only the ciphertext is stored.
"""
from __future__ import annotations

import base64
import json
import os
from typing import Any

from crm.errors import Invalid

MAX_PLAINTEXT_BYTES = 4096  # KMS Encrypt's limit on the plaintext
FORMAT = "kms"              # sealed = {"format": "kms", "blob": base64(CiphertextBlob)}


def key_id() -> str:
    return os.environ.get("RAPPORT_KMS_KEY", "alias/rapport-connections")


def _kms() -> Any:
    from crm.aws import client

    return client("kms")


def _context(tenant_id: str, connection_id: str) -> dict[str, str]:
    return {"tenant": tenant_id, "connection": connection_id}


def _plaintext(secrets: dict[str, str]) -> bytes:
    return json.dumps(secrets, separators=(",", ":"), ensure_ascii=False).encode()


def check_size(secrets: dict[str, str]) -> None:
    """Raise Invalid (422) naming the largest secret field when the secrets together are
    more than one KMS Encrypt takes. The message never repeats a value."""
    size = len(_plaintext(secrets))
    if size > MAX_PLAINTEXT_BYTES:
        name = max(secrets, key=lambda k: len(secrets[k].encode()))
        raise Invalid(f"the secret config fields take {size} bytes, more than the {MAX_PLAINTEXT_BYTES} "
                      f"bytes that can be sealed: shorten config.{name}", field=f"config.{name}")


def seal(tenant_id: str, connection_id: str, secrets: dict[str, str]) -> dict[str, str]:
    check_size(secrets)
    answer = _kms().encrypt(KeyId=key_id(), Plaintext=_plaintext(secrets),
                            EncryptionContext=_context(tenant_id, connection_id))
    return {"format": FORMAT, "blob": base64.b64encode(answer["CiphertextBlob"]).decode()}


def unseal(tenant_id: str, connection_id: str, sealed: dict[str, str]) -> dict[str, str]:
    if not sealed:
        return {}
    if sealed.get("format") != FORMAT:  # the AES-GCM envelope of earlier versions
        raise Invalid("the connection's secrets were sealed by an earlier version of Rapport: "
                      "PATCH the connection with its secret fields again", field="config",
                      code="config_invalid")
    answer = _kms().decrypt(CiphertextBlob=base64.b64decode(sealed["blob"]),
                            EncryptionContext=_context(tenant_id, connection_id))
    secrets: dict[str, str] = json.loads(answer["Plaintext"])
    return secrets
