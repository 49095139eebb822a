"""Sealing secrets with KMS: connectors' secret config fields (connectors/sealing.py) and
outbound webhook signing secrets (crm/webhooks/endpoints.py).

One KMS ``Encrypt`` per save, of the secrets as JSON (at most 4096 bytes: KMS's limit for
direct encryption, so no data key and no crypto library in the Lambda zip). The caller's
encryption context names the tenant and the record the secrets belong to, so a blob
copied to another tenant, or to another record, does not decrypt. Only the ciphertext
is stored: ``{"format": "kms", "blob": base64(CiphertextBlob)}``.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

MAX_PLAINTEXT_BYTES = 4096  # KMS Encrypt's limit on the plaintext
FORMAT = "kms"


def key_id() -> str:
    return os.environ.get("RAPPORT_KMS_KEY", "alias/rapport-connections")


def _kms() -> Any:
    from crm.aws import client

    return client("kms")


def plaintext(secrets: dict[str, Any]) -> bytes:
    """What is encrypted (and what its size limit applies to)."""
    return json.dumps(secrets, separators=(",", ":"), ensure_ascii=False).encode()


def seal(context: dict[str, str], secrets: dict[str, Any]) -> dict[str, str]:
    """1 KMS Encrypt, bound to ``context``. The caller checks the size first (its error
    names its own field); KMS refuses more than :data:`MAX_PLAINTEXT_BYTES` anyway."""
    answer = _kms().encrypt(KeyId=key_id(), Plaintext=plaintext(secrets), EncryptionContext=context)
    return {"format": FORMAT, "blob": base64.b64encode(answer["CiphertextBlob"]).decode()}


def is_sealed(sealed: dict[str, str] | None) -> bool:
    """A blob this module sealed (not the AES-GCM envelope of earlier versions)."""
    return bool(sealed) and (sealed or {}).get("format") == FORMAT


def unseal(context: dict[str, str], sealed: dict[str, str]) -> dict[str, Any]:
    """1 KMS Decrypt with the same context (another context: KMS refuses it)."""
    answer = _kms().decrypt(CiphertextBlob=base64.b64decode(sealed["blob"]), EncryptionContext=context)
    secrets: dict[str, Any] = json.loads(answer["Plaintext"])
    return secrets
